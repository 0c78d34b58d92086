//! One session: the relay between the client and the server, the calls
//! held for a person, and what starts, reloads and stops it.

pub mod approval;
pub mod blocking;
pub mod memory;
pub mod notify;
pub mod relay;
pub mod reload;
pub mod request_state;
pub mod run;
pub mod startup;
pub mod tools_list;
