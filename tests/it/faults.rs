//! Faults on either side: toolwarden keeps its promises when the server
//! crashes or floods, or the client stops reading.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

const GENIEACS: &str = "examples/tools/genieacs.json";
const ALLOW_ALL: &str = r#"{"version":"1","default":"allow"}"#;

#[test]
fn a_crash_answers_every_call_pending_and_keeps_the_status() {
    let mut s = Session::start(&mut guarded_mock(
        ALLOW_ALL,
        GENIEACS,
        &["--crash-on", "crash_now", "--slow-ms", "100"],
    ));
    s.send(&initialize("2025-06-18"));
    s.recv();
    s.send(&call(1, "retry_task", r#"{"task_id":"a"}"#));
    s.send(&call(2, "crash_now", "{}"));
    s.send(&call(3, "retry_task", r#"{"task_id":"b"}"#));
    s.send(&call(4, "retry_task", r#"{"task_id":"c"}"#));
    let mut answers: Vec<Value> = (0..4).map(|_| s.recv_json()).collect();
    answers.sort_by_key(|a| a["id"].as_u64());
    assert_eq!(
        answers[0]["result"]["isError"], false,
        "the call before the crash was answered by the server"
    );
    for a in &answers[1..] {
        assert_eq!(a["error"]["code"], -32603, "{a}");
        assert_eq!(
            a["error"]["message"],
            "the server exited (exit code 3) before answering"
        );
    }
    assert_eq!(s.wait().code(), Some(3));
}

#[test]
fn a_flooding_server_is_slowed_down_not_buffered_and_nothing_is_lost() {
    let notes = 30_000; // about 31 MB of notifications, written at once
    let mut s = Session::start(&mut guarded_mock(
        ALLOW_ALL,
        GENIEACS,
        &["--flood", &notes.to_string()],
    ));
    let pid = s.child.id();
    // The client reads nothing for a while: the flood must wait in the
    // pipes, not in toolwarden.
    std::thread::sleep(Duration::from_secs(2));
    let rss = rss_kib(pid);
    assert!(
        rss < 40 * 1024,
        "toolwarden holds {rss} KiB while the client reads nothing"
    );
    for i in 0..notes {
        let note = s.recv_json();
        assert!(
            note["params"]["data"]
                .as_str()
                .unwrap()
                .starts_with(&format!("flood {i} ")),
            "in order, none lost"
        );
    }
    s.send(&initialize("2025-06-18"));
    assert_eq!(s.recv_json()["id"], 0);
    assert_eq!(s.wait().code(), Some(0));
}

#[test]
fn a_client_that_closes_its_output_early_stops_toolwarden_cleanly() {
    let dir = temp_dir("client-closes");
    let pid_file = dir.join("pid");
    let mut child = guarded_mock(
        ALLOW_ALL,
        GENIEACS,
        &["--pid-file", pid_file.to_str().unwrap()],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    drop(child.stdout.take()); // the client stops reading at once
    use std::io::Write;
    for id in 0..50 {
        // Answers have nowhere to go; toolwarden must notice and stop.
        if writeln!(stdin, "{}", call(id, "retry_task", r#"{"task_id":"a"}"#)).is_err() {
            break;
        }
    }
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "toolwarden did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.code().is_some(), "exited, not killed: {status:?}");
    let server: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let deadline = Instant::now() + PATIENCE;
    while alive(server) {
        assert!(Instant::now() < deadline, "the server outlived toolwarden");
        std::thread::sleep(Duration::from_millis(20));
    }
}
