//! The client's end of toolwarden's stdin and stdout comes in several
//! kinds: pipes (most clients), Unix sockets (clients built on Node or
//! Electron spawn children over socketpairs), and plain files (a scripted
//! session redirected from disk). Each must carry the session.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::Stdio;

use serde_json::Value;

use crate::common::*;

/// toolwarden with the Fractera policy around the mock Fractera server.
fn fractera() -> std::process::Command {
    let mut cmd = toolwarden();
    cmd.arg("--policy")
        .arg(root().join("policies/fractera.json"))
        .arg("--")
        .arg(mock_server())
        .arg("--tools")
        .arg(root().join("examples/tools/fractera.json"));
    cmd
}

#[test]
fn the_readme_session_runs_from_a_file() {
    let out = fractera()
        .stdin(std::fs::File::open(root().join("examples/sessions/fractera.jsonl")).unwrap())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_id = |id: u64| {
        answers
            .iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("no answer to {id}"))
    };
    assert_eq!(answers.len(), 16, "every request is answered: {answers:?}");
    assert_eq!(tool_names(by_id(1)), vec!["retry_deploy"]);
    for id in 2..=11 {
        assert_eq!(decision(by_id(id)), None, "call {id} reached the server");
    }
    assert_eq!(decision(by_id(12)).as_deref(), Some("rate_limited"));
    assert_eq!(decision(by_id(13)).as_deref(), Some("invalid_arguments"));
    assert_eq!(decision(by_id(14)).as_deref(), Some("not_allowed"));
}

#[test]
fn a_session_over_unix_sockets() {
    let (ours_in, theirs_in) = UnixStream::pair().unwrap();
    let (ours_out, theirs_out) = UnixStream::pair().unwrap();
    let mut child = fractera()
        .stdin(Stdio::from(OwnedFd::from(theirs_in)))
        .stdout(Stdio::from(OwnedFd::from(theirs_out)))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut writer = ours_in;
    let mut reader = BufReader::new(ours_out);
    let mut line = String::new();
    writeln!(writer, "{}", initialize("2025-06-18")).unwrap();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("fractera-mock"), "{line}");
    writeln!(writer, "{}", call(1, "check_status", "{}")).unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    let reply: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(decision(&reply).as_deref(), Some("not_allowed"));
    writer.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
