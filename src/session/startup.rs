//! A start that fails before the server runs: a policy that does not load,
//! a `--state` or `--audit` that cannot be opened, a server command that
//! cannot be started. Clients show a server that exits at once only as
//! "connection closed", so the client's `initialize`, when one arrives
//! within a moment, is answered with a JSON-RPC error carrying the same
//! message as stderr; then toolwarden exits. A server that exits before
//! it answers `initialize` is told of the same way, with the last lines
//! of its stderr ([`did_not_start`]; the session does the answering).

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::value::RawValue;

/// How long toolwarden waits for the client's `initialize`: clients send
/// it as soon as they have started the server.
pub const WAIT_FOR_INITIALIZE: Duration = Duration::from_secs(2);

/// The most of the client's first line read: an `initialize` is small.
const MAX_LINE: u64 = 1 << 20;

/// The JSON-RPC error code of the answer (implementation-defined range).
const CODE: i32 = -32000;

/// Says why toolwarden cannot start, on stderr and to the client's
/// `initialize`; returns `code`, the exit code to leave with.
pub fn refuse(message: &str, code: u8) -> u8 {
    eprintln!("toolwarden: {message}");
    tell_client(message);
    code
}

/// Answers the client's `initialize` with `message`, when the input is a
/// client (not a terminal) and one comes within a moment.
pub fn tell_client(message: &str) {
    if !io::stdin().is_terminal() {
        answer_initialize(message);
    }
}

fn answer_initialize(message: &str) {
    let (tx, rx) = mpsc::channel();
    // A thread of its own: stdin may never deliver a line, and toolwarden
    // exits without waiting for it.
    let spawned = std::thread::Builder::new()
        .name("start-error".into())
        .spawn(move || {
            let mut line = Vec::new();
            let _ = io::stdin()
                .lock()
                .take(MAX_LINE)
                .read_until(b'\n', &mut line);
            let _ = tx.send(line);
        });
    if spawned.is_err() {
        return;
    }
    let Ok(line) = rx.recv_timeout(WAIT_FOR_INITIALIZE) else {
        return;
    };
    if let Some(answer) = answer(&line, message) {
        let mut out = io::stdout().lock();
        let _ = out.write_all(answer.as_bytes());
        let _ = out.flush();
    }
}

/// The error answer to `line` when it is an `initialize` request.
fn answer(line: &[u8], message: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Request<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
        method: Option<String>,
    }
    let request: Request = serde_json::from_slice(line).ok()?;
    if request.method.as_deref() != Some("initialize") {
        return None;
    }
    let id = request.id?;
    let error = serde_json::json!({
        "code": CODE,
        "message": format!("toolwarden could not start: {message}"),
    });
    Some(format!(r#"{{"jsonrpc":"2.0","id":{},"error":{error}}}"#, id.get()) + "\n")
}

/// Why the server did not start (`why`, "the server exited (exit code 3)
/// before answering"), with the last lines of its stderr, which usually
/// say what went wrong.
pub fn did_not_start(why: &str, stderr_tail: &[String]) -> String {
    if stderr_tail.is_empty() {
        return format!("{why} initialize; it wrote nothing to stderr");
    }
    let mut text = format!("{why} initialize; the last lines of its stderr:");
    for line in stderr_tail {
        text.push_str("\n  ");
        text.push_str(line);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_initialize_request_is_answered_with_its_id() {
        let init = br#"{"jsonrpc":"2.0","id":"a\"1","method":"initialize","params":{}}"#;
        let got = answer(init, "p.json: /version: \"2\"").unwrap();
        assert_eq!(
            got,
            r#"{"jsonrpc":"2.0","id":"a\"1","error":{"code":-32000,"message":"toolwarden could not start: p.json: /version: \"2\""}}"#.to_owned() + "\n"
        );
        for other in [
            &br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#[..],
            br#"{"jsonrpc":"2.0","method":"initialize"}"#,
            b"not json",
            b"",
        ] {
            assert_eq!(answer(other, "x"), None);
        }
    }
}
