//! Approval for 2026-07-28 clients: `input_required` with toolwarden's
//! form and sealed state, and the client's retry with the answer.

use std::path::Path;

use serde_json::{json, Value};

use crate::common::*;

const POLICY: &str = r#"{"version":"1","default":"allow","tools":{"retry_deploy":{"action":"approve","redact":["/server_token"]}}}"#;

const META: &str = r#"{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{"form":{}}}}"#;

/// A session around the mock server, its state in `home`; no initialize
/// (2026-07-28 has none).
fn session(home: &Path, record: &Path, options: &[&str], mock: &[&str]) -> Session {
    let options: Vec<&std::ffi::OsStr> = options.iter().map(|o| o.as_ref()).collect();
    let mock = [&["--record", record.to_str().unwrap()], mock].concat();
    let mut cmd = guarded_mock_with(POLICY, "examples/tools/fractera.json", &options, &mock);
    cmd.env("XDG_STATE_HOME", home);
    Session::start(&mut cmd)
}

/// A 2026-07-28 `tools/call` with `extra` members in its params.
fn call_2026(id: u64, arguments: &str, extra: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"retry_deploy","arguments":{arguments},"_meta":{META}{extra}}}}}"#
    )
}

/// The retry members for an answer to toolwarden's question.
fn answer(state: &str, approve: bool) -> String {
    let responses =
        json!({"toolwarden-approval": {"action": "accept", "content": {"approve": approve}}});
    format!(
        r#","inputResponses":{responses},"requestState":{}"#,
        json!(state)
    )
}

fn calls_received(record: &Path) -> Vec<Value> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["method"] == "tools/call")
        .collect()
}

const ARGS: &str = r#"{"deploy":"d-42","server_token":"srv_live_8f2a61c0"}"#;

/// Asks, and returns toolwarden's state.
fn asked(s: &mut Session, id: u64, arguments: &str) -> String {
    s.send(&call_2026(id, arguments, ""));
    let reply = s.recv_json();
    let result = &reply["result"];
    assert_eq!(result["resultType"], "input_required", "{reply}");
    let form = &result["inputRequests"]["toolwarden-approval"];
    assert_eq!(form["method"], "elicitation/create");
    assert_eq!(form["params"]["mode"], "form");
    let message = form["params"]["message"].as_str().unwrap();
    assert!(message.contains("retry_deploy"), "{message}");
    assert!(
        !message.contains("srv_live"),
        "the person sees no secret: {message}"
    );
    result["requestState"].as_str().unwrap().to_owned()
}

#[test]
fn a_yes_in_the_retry_forwards_the_call_without_toolwardens_parts() {
    let dir = temp_dir("mrtr-yes");
    let (home, record) = (state_home("mrtr-yes"), dir.join("record"));
    let audit = dir.join("audit.jsonl");
    let mut s = session(&home, &record, &["--audit", audit.to_str().unwrap()], &[]);
    let state = asked(&mut s, 1, ARGS);
    assert!(state.starts_with("toolwarden:v1:"), "{state}");
    assert!(
        calls_received(&record).is_empty(),
        "nothing reaches the server unasked"
    );

    s.send(&call_2026(2, ARGS, &answer(&state, true)));
    let reply = s.recv_json();
    assert_eq!(reply["id"], 2);
    assert_eq!(decision(&reply), None, "{reply}");
    let received = calls_received(&record);
    assert_eq!(received.len(), 1);
    let params = &received[0]["params"];
    assert!(params.get("requestState").is_none(), "{params}");
    assert!(params.get("inputResponses").is_none(), "{params}");
    assert_eq!(params["arguments"]["deploy"], "d-42");

    // The same state again: used once.
    s.send(&call_2026(3, ARGS, &answer(&state, true)));
    let reply = s.recv_json();
    assert_eq!(decision(&reply).as_deref(), Some("approval_declined"));
    let text = reply["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("used already"), "{text}");
    assert_eq!(reply["result"]["resultType"], "complete");
    assert_eq!(calls_received(&record).len(), 1);
    s.close_stdin();
    assert_eq!(s.wait().code(), Some(0));

    let events: Vec<Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let approvals: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["event"] == "approval")
        .map(|e| {
            (
                e["channel"].as_str().unwrap(),
                e["answer"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        approvals,
        [("input_required", "approved"), ("input_required", "spent")]
    );
    let yes = events.iter().find(|e| e["event"] == "approval").unwrap();
    assert_eq!(yes["by"], "client");
}

#[test]
fn a_no_a_forged_state_and_other_arguments_are_refused_and_never_forwarded() {
    let dir = temp_dir("mrtr-no");
    let (home, record) = (state_home("mrtr-no"), dir.join("record"));
    let mut s = session(&home, &record, &[], &[]);
    let refused = |s: &mut Session, line: String, words: &str| {
        s.send(&line);
        let reply = s.recv_json();
        assert_eq!(
            decision(&reply).as_deref(),
            Some("approval_declined"),
            "{reply}"
        );
        let text = reply["result"]["content"][0]["text"].as_str().unwrap();
        assert!(text.contains(words), "{text}");
    };

    let state = asked(&mut s, 1, ARGS);
    refused(
        &mut s,
        call_2026(2, ARGS, &answer(&state, false)),
        "did not approve",
    );
    // A no is final for its state.
    refused(
        &mut s,
        call_2026(3, ARGS, &answer(&state, true)),
        "used already",
    );

    let state = asked(&mut s, 4, ARGS);
    let other = r#"{"deploy":"d-43","server_token":"srv_live_8f2a61c0"}"#;
    refused(
        &mut s,
        call_2026(5, other, &answer(&state, true)),
        "another call",
    );
    // Numbers a double cannot tell apart are other arguments.
    let big = r#"{"deploy":"d-42","job":1400000000000000001}"#;
    let state_big = asked(&mut s, 40, big);
    let near = r#"{"deploy":"d-42","job":1400000000000000100}"#;
    refused(
        &mut s,
        call_2026(41, near, &answer(&state_big, true)),
        "another call",
    );
    // Spacing and key order are not other arguments.
    let same = r#"{ "server_token":"srv_live_8f2a61c0", "deploy":"d-42" }"#;
    let mut forged = state.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == '0' { '1' } else { '0' });
    refused(
        &mut s,
        call_2026(6, same, &answer(&forged, true)),
        "not made by toolwarden",
    );
    refused(
        &mut s,
        call_2026(7, same, &answer("toolwarden:v1:a.1.2.3.4.5", true)),
        "not made by toolwarden",
    );
    // No answer to the question: refused, the state kept for the answer.
    refused(
        &mut s,
        call_2026(8, same, &format!(r#","requestState":{}"#, json!(state))),
        "no answer",
    );
    assert!(calls_received(&record).is_empty());
    s.send(&call_2026(9, same, &answer(&state, true)));
    assert_eq!(decision(&s.recv_json()), None);
    assert_eq!(calls_received(&record).len(), 1);
    s.close_stdin();
    assert_eq!(s.wait().code(), Some(0));
}

#[test]
fn an_expired_state_is_refused() {
    let dir = temp_dir("mrtr-expired");
    let (home, record) = (state_home("mrtr-expired"), dir.join("record"));
    let mut s = session(&home, &record, &["--approval-timeout", "300ms"], &[]);
    let state = asked(&mut s, 1, ARGS);
    std::thread::sleep(std::time::Duration::from_millis(400));
    s.send(&call_2026(2, ARGS, &answer(&state, true)));
    let reply = s.recv_json();
    assert_eq!(decision(&reply).as_deref(), Some("approval_declined"));
    assert!(reply["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("expired"));
    assert!(calls_received(&record).is_empty());
}

#[test]
fn the_servers_own_rounds_are_not_asked_again() {
    let dir = temp_dir("mrtr-server");
    let (home, record) = (state_home("mrtr-server"), dir.join("record"));
    let audit = dir.join("audit.jsonl");
    let receiver = crate::telemetry::Receiver::start("mrtr-server-otlp", &[]);
    let otlp = format!("http://127.0.0.1:{}", receiver.port);
    let mut s = session(
        &home,
        &record,
        &["--audit", audit.to_str().unwrap(), "--otlp", &otlp],
        &["--input-required", "retry_deploy"],
    );
    let state = asked(&mut s, 1, ARGS);
    s.send(&call_2026(2, ARGS, &answer(&state, true)));
    // The server asks its own question; its state comes sealed in ours.
    let reply = s.recv_json();
    let result = &reply["result"];
    assert_eq!(result["resultType"], "input_required", "{reply}");
    assert_eq!(
        result["inputRequests"]["mock_question"]["params"]["message"],
        "Which region?"
    );
    let continued = result["requestState"].as_str().unwrap().to_owned();
    assert!(continued.starts_with("toolwarden:v1:"), "{continued}");
    assert!(continued.ends_with("~mock-state~1"), "{continued}");

    // The next round goes to the server unasked, with the server's state.
    let responses = json!({"mock_question": {"action": "accept", "content": {"region": "eu"}}});
    let round = format!(
        r#","inputResponses":{responses},"requestState":{}"#,
        json!(continued)
    );
    s.send(&call_2026(3, ARGS, &round));
    let reply = s.recv_json();
    assert_eq!(decision(&reply), None, "{reply}");
    assert!(reply["result"].get("inputRequests").is_none(), "{reply}");
    let received = calls_received(&record);
    assert_eq!(received.len(), 2);
    assert_eq!(received[1]["params"]["requestState"], "mock-state~1");
    assert_eq!(received[1]["params"]["inputResponses"], responses);

    // That round's state is spent too, and cannot carry other arguments.
    s.send(&call_2026(4, ARGS, &round));
    assert_eq!(
        decision(&s.recv_json()).as_deref(),
        Some("approval_declined")
    );
    let other = r#"{"deploy":"d-43"}"#;
    s.send(&call_2026(5, other, &round));
    assert_eq!(
        decision(&s.recv_json()).as_deref(),
        Some("approval_declined")
    );
    // A state of the server's own on a call that needs approval is no
    // approval: the person is asked, and the server gets its state back.
    s.send(&call_2026(
        6,
        ARGS,
        r#","requestState":"mock-state~1","inputResponses":{"mock_question":{"action":"accept"}}"#,
    ));
    let state = {
        let reply = s.recv_json();
        assert_eq!(reply["result"]["resultType"], "input_required", "{reply}");
        reply["result"]["requestState"].as_str().unwrap().to_owned()
    };
    s.send(&call_2026(7, ARGS, &answer(&state, true)));
    let reply = s.recv_json();
    assert_eq!(decision(&reply), None, "{reply}");
    let received = calls_received(&record);
    assert_eq!(received.len(), 3);
    assert_eq!(received[2]["params"]["requestState"], "mock-state~1");
    assert!(received[2]["params"].get("inputResponses").is_none());
    s.close_stdin();
    assert_eq!(s.wait().code(), Some(0));

    // The audit log (complete once the session ended) tells the server's
    // round from another call: three approved, the second continued.
    let approved: Vec<Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["decision"] == "approved")
        .collect();
    assert_eq!(approved.len(), 3, "{approved:?}");
    assert_eq!(approved[0].get("continued"), None);
    assert_eq!(approved[1]["continued"], true);
    assert_eq!(approved[2].get("continued"), None);

    // Telemetry counts two approved calls, as the audit log does: the
    // server's own round is the first call's.
    let metrics = receiver.exports("metrics");
    let approved: u64 = metrics
        .iter()
        .flat_map(|m| {
            m["body"]["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|m| m["name"] == "toolwarden.decisions")
        .flat_map(|m| {
            m["sum"]["dataPoints"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|p| {
            crate::telemetry::attr(&p["attributes"], "toolwarden.decision")
                == Some(json!("approved"))
        })
        .map(|p| p["asInt"].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(approved, 2, "{metrics:?}");
}

#[test]
fn a_server_state_with_no_room_left_for_toolwardens_is_relayed_as_it_is_and_asked_about_again() {
    let dir = temp_dir("mrtr-no-room");
    let (home, record) = (state_home("mrtr-no-room"), dir.join("record"));
    // The client's retry must fit in --max-message-bytes with room to
    // spare for what it carries back: a limit this small leaves none.
    let mut s = session(
        &home,
        &record,
        &["--max-message-bytes", "16000"],
        &["--input-required", "retry_deploy"],
    );
    let state = asked(&mut s, 1, ARGS);
    s.send(&call_2026(2, ARGS, &answer(&state, true)));
    let reply = s.recv_json();
    assert_eq!(reply["result"]["resultType"], "input_required", "{reply}");
    assert_eq!(reply["result"]["requestState"], "mock-state~1", "{reply}");

    // Without toolwarden's seal the next round is no approval: asked again,
    // and not forwarded.
    let round = r#","inputResponses":{"mock_question":{"action":"accept","content":{"region":"eu"}}},"requestState":"mock-state~1""#;
    s.send(&call_2026(3, ARGS, round));
    let reply = s.recv_json();
    assert!(
        reply["result"]["inputRequests"]["toolwarden-approval"].is_object(),
        "{reply}"
    );
    assert_eq!(calls_received(&record).len(), 1);
    assert!(
        s.stderr().contains("leaves no room for toolwarden's"),
        "{}",
        s.stderr()
    );
    s.close_stdin();
    assert_eq!(s.wait().code(), Some(0));
}

#[test]
fn a_2026_client_without_elicitation_is_held_in_the_inbox() {
    let dir = temp_dir("mrtr-inbox");
    let (home, record) = (state_home("mrtr-inbox"), dir.join("record"));
    let mut s = session(&home, &record, &["--approval-hold", "300ms"], &[]);
    s.send(&format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"retry_deploy","arguments":{ARGS},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
    ));
    let reply = s.recv_json();
    assert_eq!(
        decision(&reply).as_deref(),
        Some("approval_pending"),
        "{reply}"
    );
    assert_eq!(reply["result"]["resultType"], "complete");
    assert!(calls_received(&record).is_empty());
}
