//! Bad lines from the client, through the real binary: each gets its
//! answer, none reaches the server (which records every line it reads),
//! and the session goes on.

use serde_json::{json, Value};

use crate::common::*;

const ALLOW_ALL: &str = r#"{"version":"1","default":"allow"}"#;
const PING: &str = r#"{"jsonrpc":"2.0","id":"after","method":"ping"}"#;

/// Sends `bad`, then a ping; returns what the client got before the ping's
/// answer and the lines the server recorded.
fn through(bad: &[u8], max_message: Option<&str>) -> (Vec<Value>, Vec<String>) {
    let dir = temp_dir(&format!("lines-{}", bad.len()));
    let record = dir.join("record");
    let mut cmd = guarded_mock(
        ALLOW_ALL,
        "examples/tools/genieacs.json",
        &["--record", record.to_str().unwrap()],
    );
    if let Some(max) = max_message {
        // Options go before `--`: rebuild the command with the cap.
        cmd = toolwarden();
        cmd.arg("--policy")
            .arg(root().join("policies/permissive.json"))
            .args(["--max-message-bytes", max, "--"])
            .arg(mock_server())
            .args([
                "--tools",
                root()
                    .join("examples/tools/genieacs.json")
                    .to_str()
                    .unwrap(),
            ])
            .args(["--record", record.to_str().unwrap()]);
    }
    let mut s = Session::start(&mut cmd);
    s.send_bytes(bad);
    s.send(PING);
    let mut got = Vec::new();
    loop {
        let message = s.recv_json();
        if message["id"] == "after" {
            break;
        }
        got.push(message);
    }
    assert_eq!(s.wait().code(), Some(0));
    let recorded = std::fs::read_to_string(&record).unwrap_or_default();
    (got, recorded.lines().map(str::to_owned).collect())
}

fn assert_refused(bad: &[u8], code: i64, id: Value) {
    let (got, recorded) = through(bad, None);
    assert_eq!(
        got.len(),
        1,
        "one answer for {:?}: {got:?}",
        String::from_utf8_lossy(bad)
    );
    assert_eq!(got[0]["error"]["code"], code, "{got:?}");
    assert_eq!(got[0]["id"], id, "{got:?}");
    assert_eq!(
        recorded,
        vec![PING.to_owned()],
        "only the ping reached the server"
    );
}

#[test]
fn each_bad_shape_is_answered_and_never_forwarded() {
    let cases: &[(&[u8], i64, Value)] = &[
        (b"not json", -32700, Value::Null),
        (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}", -32700, Value::Null),
        (br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"retry_task"}}]"#, -32600, Value::Null),
        (br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"a","name":"b"}}"#, -32600, json!(2)),
        (br#"{"jsonrpc":"2.0","id":3,"method":"x","params":{"a":{"b":1,"b":2}}}"#, -32600, json!(3)),
        (b"\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"ping\"}", -32700, Value::Null),
        (b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"ping\"}\r{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"ping\"}", -32700, Value::Null),
        (br#"{"jsonrpc":"2.0","id":7,"method":"x","params":{"s":"\udc00"}}"#, -32700, json!(7)),
        (br#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#, -32600, Value::Null),
        (br#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":["retry_task"]}"#, -32602, json!(8)),
    ];
    for (bad, code, id) in cases {
        assert_refused(bad, *code, id.clone());
    }
}

#[test]
fn deep_nesting_is_refused() {
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"x","params":{{"a":{}{}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert_refused(deep.as_bytes(), -32700, json!(9));
}

#[test]
fn an_overlong_line_is_discarded_and_answered_with_its_id() {
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":"big","method":"tools/call","params":{{"name":"retry_task","arguments":{{"task_id":"{}"}}}}}}"#,
        "a".repeat(3_000_000)
    );
    let (got, recorded) = through(big.as_bytes(), Some("1000000"));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0]["id"].clone(), got[0]["error"]["code"].clone()),
        (json!("big"), json!(-32600))
    );
    assert_eq!(recorded, vec![PING.to_owned()]);
}

#[test]
fn notifications_and_stray_responses_get_no_answer() {
    let cases: &[&[u8]] = &[
        br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"retry_task"}}"#,
        br#"{"jsonrpc":"2.0","method":"x","params":{"a":1,"a":2}}"#,
        br#"{"jsonrpc":"2.0","id":"nobody-asked","result":{}}"#,
        b"",
        b"   ",
    ];
    for bad in cases {
        let (got, recorded) = through(bad, None);
        assert!(
            got.is_empty(),
            "{:?} got {got:?}",
            String::from_utf8_lossy(bad)
        );
        assert_eq!(
            recorded,
            vec![PING.to_owned()],
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn a_server_answer_to_an_id_never_sent_is_dropped() {
    let mut s = Session::start(&mut guarded_mock(
        ALLOW_ALL,
        "examples/tools/genieacs.json",
        &["--stray-response"],
    ));
    s.send(&initialize("2025-06-18"));
    assert_eq!(
        s.recv_json()["id"],
        0,
        "the stray answer never reached the client"
    );
    assert_eq!(s.wait().code(), Some(0));
    assert!(s.stderr().contains("never made"), "{}", s.stderr());
}
