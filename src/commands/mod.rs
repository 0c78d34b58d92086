//! The subcommands other than a session, each a module with what `main`
//! calls.

pub mod cases;
pub mod check;
pub mod import;
pub mod init;
pub mod pin;
pub mod report;
pub mod wrap;
