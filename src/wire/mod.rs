//! The wire: JSON as it is written, JSON-RPC lines, and the framing that
//! bounds them.

pub mod framing;
pub mod json;
pub mod jsonrpc;
