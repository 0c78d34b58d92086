//! The baseline for benchmarks: a relay that starts a server and copies
//! bytes both ways, parsing nothing. What toolwarden costs is measured
//! against this, in the same run.
//!
//! ```text
//! byte_relay -- CMD [ARGS...]
//! ```

use std::io::{Read, Write};
use std::process::{Command, Stdio};

fn main() {
    let args: Vec<String> = std::env::args().skip_while(|a| a != "--").skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: byte_relay -- CMD [ARGS...]");
        std::process::exit(2);
    };
    let mut child = Command::new(program)
        .args(rest)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            eprintln!("byte_relay: cannot start {program}: {e}");
            std::process::exit(127)
        });
    let mut to_server = child.stdin.take().unwrap();
    let mut from_server = child.stdout.take().unwrap();
    let upstream = std::thread::spawn(move || copy(&mut std::io::stdin().lock(), &mut to_server));
    copy(&mut from_server, &mut std::io::stdout().lock());
    let _ = upstream;
    let status = child.wait().map(|s| s.code().unwrap_or(1)).unwrap_or(1);
    std::process::exit(status);
}

/// Copies until end of input, writing each read out at once.
fn copy(from: &mut impl Read, to: &mut impl Write) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).and_then(|_| to.flush()).is_err() {
                    return;
                }
            }
        }
    }
}
