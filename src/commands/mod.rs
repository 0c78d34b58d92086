//! The subcommands other than a session, each a module whose `run` main
//! calls.
//!
//! Every `run` takes the subcommand's clap arguments and returns
//! `(String, u8)`: the report for stdout, and the exit code. Anything else
//! a command says (errors, "wrote FILE") it writes to stderr as it goes.
//! The report is returned rather than printed so that the library never
//! writes to stdout, where a session speaks the protocol: `print_stdout`
//! is denied, and `main` is the one place exempt. So a report comes out
//! once its command is done, after what it said on stderr.
//!
//! A new command is a module here with such a `run` and one arm in
//! `main`'s match; a pair that shares its work keeps it in the first
//! one's module (as `unwrap` calls `wrap::edit_config`, and `logout` is
//! in login.rs).

pub mod audit;
pub mod cases;
pub mod check;
pub mod completions;
pub mod import;
pub mod init;
pub mod login;
pub mod man;
pub mod pin;
pub mod report;
pub mod state;
pub mod unwrap;
pub mod wrap;

/// `toolwarden approvals ...` lives with the inbox it reads and writes.
pub use crate::inbox::cli as approvals;
