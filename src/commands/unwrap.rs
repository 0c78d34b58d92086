//! `toolwarden unwrap CLIENT [SERVER...]`: toolwarden taken away from the
//! servers `wrap` wrapped; the editing is `wrap`'s, run the other way.

use crate::cli::UnwrapArgs;
use crate::commands::wrap::{self, Change};

/// What changed, and the exit code (0 done or nothing to do, 2 for a file
/// that cannot be read, parsed or written).
pub fn run(args: &UnwrapArgs) -> (String, u8) {
    wrap::edit_config(args.client, &args.servers, &args.file, &Change::Unwrap)
}
