//! `toolwarden completions SHELL`: a shell completion script, from the
//! command line's own definition.

use clap::CommandFactory;

use crate::cli::Cli;

/// The script, and exit code 0.
pub fn run(shell: clap_complete::Shell) -> (String, u8) {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "toolwarden", &mut script);
    (String::from_utf8_lossy(&script).into_owned(), 0)
}
