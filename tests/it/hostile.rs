//! Hostile input and faults, through the real binary. Each shape checks
//! (a) what the client receives, (b) what the server received (the mock
//! records every line it reads), and (c) that the session still works.

use std::io::Write;

use serde_json::{json, Value};

use crate::common::*;

const ALLOW_ALL: &str = r#"{"version":"1","default":"allow"}"#;
const PING: &str = r#"{"jsonrpc":"2.0","id":"after","method":"ping"}"#;

/// Sends `bad` under `policy`, then a ping; returns what the client got
/// before the ping's answer and the lines the server recorded.
fn through_policy(
    policy: &str,
    bad: &[u8],
    max_message: Option<&str>,
) -> (Vec<Value>, Vec<String>) {
    let dir = temp_dir(&format!(
        "hostile-{}-{}",
        bad.len(),
        bad.iter().map(|&b| b as usize).sum::<usize>()
    ));
    let record = dir.join("record");
    let policy_file = dir.join("policy.json");
    std::fs::write(&policy_file, policy).unwrap();
    let mut cmd = toolwarden();
    cmd.arg("--policy").arg(&policy_file);
    if let Some(max) = max_message {
        cmd.args(["--max-message-bytes", max]);
    }
    cmd.arg("--")
        .arg(mock_server())
        .arg("--tools")
        .arg(root().join("examples/tools/genieacs.json"))
        .args(["--record", record.to_str().unwrap()]);
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

fn through(bad: &[u8], max_message: Option<&str>) -> (Vec<Value>, Vec<String>) {
    through_policy(ALLOW_ALL, bad, max_message)
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

/// Only retry_task is allowed, as in the shipped GenieACS policy.
const ONLY_RETRY: &str = r#"{"version":"1","tools":{"retry_task":{}}}"#;

/// `bad` is refused by the policy: a refusal for the client, nothing for
/// the server.
fn assert_policy_refuses(bad: &str, id: Value, want: &str) -> Value {
    let (got, recorded) = through_policy(ONLY_RETRY, bad.as_bytes(), None);
    assert_eq!(got.len(), 1, "{bad}: {got:?}");
    assert_eq!(got[0]["id"], id, "{bad}");
    assert_eq!(
        decision(&got[0]).as_deref(),
        Some(want),
        "{bad}: {}",
        got[0]
    );
    assert_eq!(recorded, vec![PING.to_owned()], "{bad}");
    got[0].clone()
}

#[test]
fn duplicate_keys_in_every_place_and_order() {
    let cases: &[(&str, Value)] = &[
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"x"}}"#,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/list","params":{"name":"x"}}"#,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"retry_task","name":"delete_everything"}}"#,
            json!(3),
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"delete_everything","name":"retry_task"}}"#,
            json!(4),
        ),
        (
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"retry_task","arguments":{"task_id":"a","task_id":"b"}}}"#,
            json!(5),
        ),
        (
            r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"retry_task","arguments":{"o":{"k":[{"z":1,"z":2}]}}}}"#,
            json!(6),
        ),
    ];
    for (bad, id) in cases {
        let (got, recorded) = through_policy(ONLY_RETRY, bad.as_bytes(), None);
        assert_eq!(got.len(), 1, "{bad}: {got:?}");
        assert_eq!(
            (got[0]["error"]["code"].clone(), got[0]["id"].clone()),
            (json!(-32600), id.clone()),
            "{bad}"
        );
        assert_eq!(recorded, vec![PING.to_owned()], "{bad}");
    }
}

#[test]
fn names_written_with_escapes_meet_the_policy_decoded() {
    assert_policy_refuses(
        r#"{"jsonrpc":"2.0","id":20,"method":"tools\u002fcall","params":{"name":"delete\u005feverything"}}"#,
        json!(20),
        "not_allowed",
    );
    // An allowed call written with escapes reaches the server exactly as
    // written.
    let allowed = r#"{"jsonrpc":"2.0","id":21,"method":"tools\u002fcall","params":{"name":"retry\u005ftask","arguments":{"task_id":"67abc123def456"}}}"#;
    let (got, recorded) = through_policy(ONLY_RETRY, allowed.as_bytes(), None);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["result"]["isError"], false, "{got:?}");
    assert_eq!(recorded, vec![allowed.to_owned(), PING.to_owned()]);
}

#[test]
fn ids_of_every_shape_are_echoed_exactly_or_refused() {
    // Refusals echo the id byte for byte.
    for id in [
        "12345678901234567890123",
        "1.5",
        "-0",
        r#""\u2603 é \ud83d\ude00""#,
        r#""""#,
        "1e3",
    ] {
        let bad = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"delete_everything"}}}}"#
        );
        let (got, recorded) = through_policy(ONLY_RETRY, bad.as_bytes(), None);
        assert_eq!(recorded, vec![PING.to_owned()], "{id}");
        let mut s = Session::start(
            toolwarden()
                .arg("--policy")
                .arg(root().join("policies/genieacs.json"))
                .arg("--")
                .arg(mock_server()),
        );
        s.send(&bad);
        let raw = s.recv();
        assert!(
            raw.starts_with(&format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"#)),
            "{id}: {raw}"
        );
        assert_eq!(decision(&got[0]).as_deref(), Some("not_allowed"));
    }
    // Ids that are not strings or numbers are refused with a null id.
    for id in [r#"{"a":1}"#, "[1]", "true", "null"] {
        let bad = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"retry_task"}}}}"#
        );
        assert_refused(bad.as_bytes(), -32600, Value::Null);
    }
}

#[test]
fn shapes_that_are_not_one_message() {
    let cases: &[(&[u8], i64, Value)] = &[
        (br#"{"jsonrpc":"2.0","id":30,"method":"tools/call","result":{}}"#, -32600, json!(30)),
        (br#"{"jsonrpc":"2.0","id":31,"method":"tools/call","params":{"name":5}}"#, -32602, json!(31)),
        (br#"{"jsonrpc":"2.0","id":32,"method":"tools/call","params":{"name":"retry_task","arguments":[]}}"#, -32602, json!(32)),
        (br#"{"jsonrpc":"2.0","id":33,"method":"tools/call"}"#, -32602, json!(33)),
        (br#"[{"jsonrpc":"2.0","method":"notifications/initialized"}]"#, -32600, Value::Null),
        (b"{\"jsonrpc\":\"2.0\",\"id\":34,\"method\":\"ping\"} {\"jsonrpc\":\"2.0\",\"id\":35,\"method\":\"ping\"}", -32700, Value::Null),
    ];
    for (bad, code, id) in cases {
        assert_refused(bad, *code, id.clone());
    }
}

#[test]
fn task_augmented_and_stateless_calls_meet_the_policy() {
    assert_policy_refuses(
        r#"{"jsonrpc":"2.0","id":40,"method":"tools/call","params":{"name":"delete_everything","arguments":{},"task":{"ttl":60000}}}"#,
        json!(40),
        "not_allowed",
    );
    let refusal = assert_policy_refuses(
        r#"{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"delete_everything","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        json!(41),
        "not_allowed",
    );
    assert_eq!(refusal["result"]["resultType"], "complete");
}

#[test]
fn a_100_mb_line_keeps_memory_bounded_and_the_session_going() {
    let mut s = Session::start(&mut guarded_mock(
        ALLOW_ALL,
        "examples/tools/genieacs.json",
        &[],
    ));
    let pid = s.child.id();
    let head = br#"{"jsonrpc":"2.0","id":"huge","method":"tools/call","params":{"name":"retry_task","arguments":{"task_id":""#;
    let stdin = s.stdin();
    stdin.write_all(head).unwrap();
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..100 {
        stdin.write_all(&chunk).unwrap();
    }
    s.send(r#""}}}"#);
    let reply = s.recv_json();
    assert_eq!(
        (reply["id"].clone(), reply["error"]["code"].clone()),
        (json!("huge"), json!(-32600))
    );
    s.send(PING);
    assert_eq!(s.recv_json()["id"], "after");
    let peak = peak_rss_kib(pid);
    assert!(
        peak < 100 * 1024,
        "toolwarden peaked at {peak} KiB for a 100 MB line (cap 64 MiB)"
    );
    assert_eq!(s.wait().code(), Some(0));
}

/// Peak memory may be at most this much above an idle toolwarden's peak
/// and twice the largest line.
const SLACK_KIB: u64 = 8 * 1024;

/// The peak resident memory of a toolwarden that relayed one ping: the
/// binary, its libraries and runtime, which grow with the code and not
/// with what a session reads.
fn idle_peak_kib() -> u64 {
    static IDLE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *IDLE.get_or_init(|| {
        let mut s = Session::start(&mut guarded_mock(
            ITEMS_OF_INTEGERS,
            "examples/tools/genieacs.json",
            &[],
        ));
        s.send(PING);
        assert_eq!(s.recv_json()["id"], "after");
        let peak = peak_rss_kib(s.child.id());
        assert_eq!(s.wait().code(), Some(0));
        peak
    })
}

/// The peak resident memory of toolwarden (`pid`), checked against an idle
/// one's, twice the largest line it read, and [`SLACK_KIB`].
fn assert_peak_within(pid: u32, largest_line: usize, what: &str) {
    let peak = peak_rss_kib(pid);
    let idle = idle_peak_kib();
    let bound = idle + 2 * (largest_line as u64 / 1024) + SLACK_KIB;
    eprintln!("{what}: peak {peak} KiB (bound {bound} KiB, idle {idle} KiB)");
    assert!(
        peak <= bound,
        "{what}: toolwarden peaked at {peak} KiB, over {bound} KiB (an idle one's {idle} KiB, \
         twice the line of {largest_line} bytes, and {SLACK_KIB} KiB)"
    );
}

const ITEMS_OF_INTEGERS: &str = r#"{"version":"1","tools":{"retry_task":{"arguments":{"type":"object","properties":{"ids":{"type":"array","items":{"type":"integer"}}}}}}}"#;

#[test]
fn schema_errors_are_capped_in_count_and_text() {
    let mut s = Session::start(&mut guarded_mock(
        ITEMS_OF_INTEGERS,
        "examples/tools/genieacs.json",
        &[],
    ));
    let pid = s.child.id();
    // Strings where integers belong: an error for each, quoting it.
    let element = format!("\"{}\"", "s".repeat(60));
    let ids = |n: usize| vec![element.as_str(); n].join(",");
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"retry_task","arguments":{{"ids":[{}]}}}}}}"#,
        ids(9_000)
    );
    s.send(&line);
    let reply = s.recv_json();
    assert_eq!(decision(&reply).as_deref(), Some("invalid_arguments"));
    let meta = &reply["result"]["_meta"]["toolwarden/decision"];
    assert_eq!(meta["errors"].as_array().unwrap().len(), 10, "{meta}");
    assert_eq!(meta["more_errors"], 8_990);
    let text = reply["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.ends_with("and 8990 more"),
        "{}",
        &text[text.len() - 100..]
    );
    assert!(text.len() < 10 * 1024, "{} bytes of text", text.len());
    // More values than are counted: the first error only.
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"retry_task","arguments":{{"ids":[{}]}}}}}}"#,
        ids(90_000)
    );
    s.send(&line);
    let reply = s.recv_json();
    let meta = &reply["result"]["_meta"]["toolwarden/decision"];
    assert_eq!(meta["errors"].as_array().unwrap().len(), 1, "{meta}");
    let text = reply["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.ends_with("not checked for every error)"), "{text}");
    // A million values are not parsed for a schema at all.
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"retry_task","arguments":{{"ids":[{}]}}}}}}"#,
        vec!["\"\""; 2_000_000].join(",")
    );
    s.send(&line);
    let reply = s.recv_json();
    assert_eq!(decision(&reply).as_deref(), Some("invalid_arguments"));
    let text = reply["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("more than the 100000"), "{text}");
    s.send(PING);
    assert_eq!(s.recv_json()["id"], "after");
    assert_peak_within(pid, line.len(), "schema errors");
    assert_eq!(s.wait().code(), Some(0));
}

#[test]
fn a_large_audited_call_costs_a_bounded_view_of_it() {
    let dir = temp_dir("large-audited");
    let audit = dir.join("audit.jsonl");
    let mut cmd = guarded_mock_with(
        ALLOW_ALL,
        "examples/tools/genieacs.json",
        &["--audit".as_ref(), audit.as_os_str()],
        &[],
    );
    let mut s = Session::start(&mut cmd);
    let pid = s.child.id();
    // 30 MiB of small values: a tree of them would take a gigabyte.
    let items = vec![r#"{"k":[1,2]}"#; 2_500_000].join(",");
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"retry_task","arguments":{{"items":[{items}],"last":1}}}}}}"#
    );
    drop(items);
    s.send(&line);
    let reply = s.recv_json();
    assert_eq!(reply["result"]["isError"], false, "{reply}");
    assert_peak_within(pid, line.len(), "audited call");
    assert_eq!(s.wait().code(), Some(0));
    let text = std::fs::read_to_string(&audit).unwrap();
    let first: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["event"] == "decision")
        .unwrap();
    assert_eq!(first["decision"], "allowed");
    let shown = first["arguments"].to_string();
    assert!(
        shown.len() < 40 * 1024,
        "{} bytes of arguments",
        shown.len()
    );
    let items = first["arguments"]["items"].as_array().unwrap();
    let note = items.last().unwrap().as_str().unwrap();
    assert!(note.ends_with("more items not shown"), "{note}");
    assert!(first["arguments"]["…"]
        .as_str()
        .unwrap()
        .ends_with("1 more members not shown"));
}

#[test]
fn an_object_of_millions_of_keys_is_refused_without_keeping_them() {
    let mut s = Session::start(&mut guarded_mock(
        ALLOW_ALL,
        "examples/tools/genieacs.json",
        &[],
    ));
    let pid = s.child.id();
    let members: Vec<String> = (0..3_000_000).map(|i| format!("\"{i}\":0")).collect();
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":"keys","method":"tools/call","params":{{"name":"retry_task","arguments":{{{}}}}}}}"#,
        members.join(",")
    );
    drop(members);
    s.send(&line);
    let reply = s.recv_json();
    assert_eq!(reply["id"], "keys");
    assert_eq!(reply["error"]["code"], -32700, "{reply}");
    assert!(reply["error"]["message"]
        .as_str()
        .unwrap()
        .contains("keys in the objects open"));
    assert_peak_within(pid, line.len(), "many keys");
    assert_eq!(s.wait().code(), Some(0));
}

#[test]
fn lines_nested_deep_from_either_side_cost_no_more_than_the_line() {
    let dir = temp_dir("deep-server");
    let deep = 30_000_000;
    let answer = dir.join("answer.json");
    let mut text = String::with_capacity(2 * deep + 100);
    text.push_str(r#"{"jsonrpc":"2.0","id":@ID@,"result":{"a":"#);
    text.extend(std::iter::repeat_n('[', deep));
    text.extend(std::iter::repeat_n(']', deep));
    text.push_str("}}");
    std::fs::write(&answer, &text).unwrap();
    drop(text);
    let mut s = Session::start(&mut guarded_mock(
        ALLOW_ALL,
        "examples/tools/genieacs.json",
        &["--answer-with", &format!("deep={}", answer.display())],
    ));
    let pid = s.child.id();
    // From the client: refused, answered with its id.
    let mut line = String::with_capacity(2 * deep + 100);
    line.push_str(r#"{"jsonrpc":"2.0","id":"c","method":"x","params":{"a":"#);
    line.extend(std::iter::repeat_n('[', deep));
    line.extend(std::iter::repeat_n(']', deep));
    line.push_str("}}");
    s.send(&line);
    let reply = s.recv_json();
    assert_eq!(
        (reply["id"].clone(), reply["error"]["code"].clone()),
        (json!("c"), json!(-32700))
    );
    // From the server: never forwarded; the request gets an error.
    s.send(r#"{"jsonrpc":"2.0","id":"s","method":"deep"}"#);
    let reply = s.recv_json();
    assert_eq!(
        (reply["id"].clone(), reply["error"]["code"].clone()),
        (json!("s"), json!(-32603))
    );
    s.send(PING);
    assert_eq!(s.recv_json()["id"], "after");
    assert_peak_within(pid, line.len(), "deep lines");
    assert_eq!(s.wait().code(), Some(0));
}

#[test]
fn filtering_a_huge_tools_list_costs_about_one_copy() {
    let dir = temp_dir("huge-list");
    let answer = dir.join("answer.json");
    let mut text = String::with_capacity(64 << 20);
    text.push_str(r#"{"jsonrpc":"2.0","id":@ID@,"result":{"tools":[{"name":"delete_everything"}"#);
    for _ in 0..20_000_000 {
        text.push_str(",{}");
    }
    text.push_str("]}}");
    let size = text.len();
    std::fs::write(&answer, &text).unwrap();
    drop(text);
    let mut s = Session::start(&mut guarded_mock(
        r#"{"version":"1","default":"allow","tools":{"delete_everything":{"action":"deny"}}}"#,
        "examples/tools/genieacs.json",
        &["--answer-with", &format!("tools/list={}", answer.display())],
    ));
    let pid = s.child.id();
    s.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    let reply = s.recv();
    assert!(
        reply.starts_with(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{},{}"#),
        "{}",
        &reply[..100]
    );
    // The mock writes the id in place of `@ID@`.
    let size = size - "@ID@".len() + "1".len();
    assert_eq!(reply.len(), size - r#"{"name":"delete_everything"},"#.len());
    assert_peak_within(pid, size, "tools/list");
    assert_eq!(s.wait().code(), Some(0));
}

#[test]
fn cancelled_requests_leave_nothing_behind() {
    let mut s = Session::start(&mut guarded_mock(
        ALLOW_ALL,
        "examples/tools/genieacs.json",
        &["--ignore", "never/answered"],
    ));
    let pid = s.child.id();
    let mut batch = |from: u64, to: u64| {
        let mut text = String::new();
        for id in from..to {
            text.push_str(&format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"never/answered\"}}\n{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{{\"requestId\":{id}}}}}\n"
            ));
        }
        s.send_bytes(text.as_bytes());
        s.send(PING);
        assert_eq!(s.recv_json()["id"], "after");
    };
    batch(0, 50_000);
    let settled = rss_kib(pid);
    batch(50_000, 250_000);
    let after = rss_kib(pid);
    assert!(
        after <= settled + 2048,
        "200,000 cancelled requests grew toolwarden from {settled} KiB to {after} KiB"
    );
    assert_eq!(s.wait().code(), Some(0));
}

#[test]
fn calls_held_for_approval_are_bounded_in_bytes() {
    let mut s = Session::start(&mut guarded_mock_with(
        r#"{"version":"1","default":"allow","tools":{"retry_task":{"action":"approve"}}}"#,
        "examples/tools/genieacs.json",
        &["--max-message-bytes".as_ref(), "25000000".as_ref()],
        &[],
    ));
    let pid = s.child.id();
    s.send(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{}},"clientInfo":{"name":"t","version":"1"}}}"#);
    s.recv_json();
    s.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let big = "x".repeat(20_000_000);
    let mut prompts = 0;
    let mut busy = 0;
    for id in 1..=5 {
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"retry_task","arguments":{{"task_id":"{big}"}}}}}}"#
        );
        s.send(&line);
        let reply = s.recv_json();
        if reply["method"] == "elicitation/create" {
            let message = reply["params"]["message"].as_str().unwrap();
            assert!(
                message.len() < 8 * 1024,
                "{} bytes of prompt",
                message.len()
            );
            assert!(message.contains("too long to show whole"), "{message}");
            prompts += 1;
        } else {
            assert_eq!(decision(&reply).as_deref(), Some("approval_unavailable"));
            busy += 1;
        }
    }
    // One call of 20 MB fits --max-message-bytes; a second would not.
    assert_eq!((prompts, busy), (1, 4));
    assert_peak_within(pid, big.len(), "held calls");
    s.close_stdin();
    s.wait();
}
