//! `toolwarden check POLICY`: load and compile a policy and say what it
//! does, without starting anything.

use crate::cli::CheckArgs;
use crate::policy;

/// Prints the policy's summary on stdout (nothing relays here), or the
/// load error on stderr. Returns the exit code: 0 loads, 2 does not.
pub fn main(args: &CheckArgs) -> u8 {
    let policy = match policy::load(&args.policy) {
        Ok(policy) => policy,
        Err(e) => {
            eprintln!("toolwarden: {e:#}");
            return 2;
        }
    };
    let mut out = format!("{}: ok\n", args.policy.display());
    out.push_str(&policy.summary());
    print(&out);
    0
}

/// `check` is a command for people, not a relay: its report is its output.
#[allow(clippy::print_stdout)]
fn print(text: &str) {
    print!("{text}");
}
