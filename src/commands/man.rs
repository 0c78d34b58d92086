//! `toolwarden man`: the man page (roff), from the command line's own
//! definition.

use clap::CommandFactory;

use crate::cli::Cli;

/// The page and exit code 0, or 1 when it cannot be rendered.
pub fn run() -> (String, u8) {
    let mut page = Vec::new();
    match clap_mangen::Man::new(Cli::command()).render(&mut page) {
        Ok(()) => (String::from_utf8_lossy(&page).into_owned(), 0),
        Err(e) => {
            eprintln!("toolwarden: cannot render the man page: {e}");
            (String::new(), 1)
        }
    }
}
