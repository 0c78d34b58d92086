//! The reference server, @modelcontextprotocol/server-everything (pinned),
//! driven through one scripted session twice: directly, and through
//! toolwarden with an allow-everything policy. Every answer must be the
//! same, byte for byte.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

/// Answers the server's own requests the same way in both runs, and keeps
/// a record of what the server sent besides responses.
#[derive(Default)]
struct Client {
    transcript: Vec<String>,
    progress: BTreeMap<String, usize>,
}

impl Client {
    fn on_other(&mut self, session: &mut Session, raw: &str, message: &Value) {
        let method = message["method"].as_str().unwrap_or("");
        match (method, message.get("id")) {
            ("notifications/progress", None) => {
                let token = message["params"]["progressToken"].to_string();
                *self.progress.entry(token).or_default() += 1;
            }
            // Logging and list_changed arrive on their own schedule.
            (_, None) => {}
            (method, Some(id)) => {
                self.transcript.push(format!("server asked: {raw}"));
                let result = match method {
                    "roots/list" => {
                        json!({ "roots": [{ "uri": "file:///tmp/toolwarden-root", "name": "root" }] })
                    }
                    "sampling/createMessage" => json!({
                        "role": "assistant",
                        "content": { "type": "text", "text": "sampled answer" },
                        "model": "test-model",
                        "stopReason": "endTurn"
                    }),
                    "elicitation/create" => json!({
                        "action": "accept",
                        "content": { "name": "Ada", "check": true, "email": "ada@example.com", "integer": 42 }
                    }),
                    "ping" => json!({}),
                    other => panic!("unexpected server request {other}"),
                };
                session.send(&json!({ "jsonrpc": "2.0", "id": id, "result": result }).to_string());
            }
        }
    }

    fn ask(&mut self, session: &mut Session, id: u64, method: &str, params: Value) -> Value {
        let line =
            json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }).to_string();
        let raw = session.request(&line, &json!(id), |s, raw, m| self.on_other(s, raw, m));
        self.transcript.push(format!("{id} {method}: {raw}"));
        serde_json::from_str(&raw).unwrap()
    }
}

/// The whole session; returns what the client saw.
fn script(mut session: Session) -> (Vec<String>, BTreeMap<String, usize>) {
    let mut c = Client::default();
    let init = json!({
        "protocolVersion": "2025-11-25",
        "capabilities": { "sampling": {}, "elicitation": { "form": {} }, "roots": { "listChanged": true } },
        "clientInfo": { "name": "toolwarden-tests", "version": "1" }
    });
    c.ask(&mut session, 1, "initialize", init);
    session.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    c.ask(&mut session, 2, "ping", json!({}));
    let list = c.ask(&mut session, 3, "tools/list", json!({}));
    let names = tool_names(&list);
    for needed in [
        "echo",
        "trigger-sampling-request",
        "trigger-elicitation-request",
        "get-roots-list",
    ] {
        assert!(
            names.iter().any(|n| n == needed),
            "{needed} missing from {names:?}"
        );
    }
    c.ask(
        &mut session,
        4,
        "tools/call",
        json!({ "name": "echo", "arguments": { "message": "hello" } }),
    );
    c.ask(&mut session, 5, "tools/call", json!({ "name": "trigger-sampling-request", "arguments": { "prompt": "say hi", "maxTokens": 20 } }));
    c.ask(
        &mut session,
        6,
        "tools/call",
        json!({ "name": "trigger-elicitation-request", "arguments": {} }),
    );
    c.ask(
        &mut session,
        7,
        "tools/call",
        json!({ "name": "get-roots-list", "arguments": {} }),
    );
    c.ask(
        &mut session,
        8,
        "tools/call",
        json!({ "name": "trigger-long-running-operation", "arguments": { "duration": 1, "steps": 3 }, "_meta": { "progressToken": "p8" } }),
    );
    // A long operation, cancelled: no answer to 9 may come, the session
    // goes on.
    session.send(
        &json!({ "jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": { "name": "trigger-long-running-operation", "arguments": { "duration": 3, "steps": 3 } } }).to_string(),
    );
    std::thread::sleep(Duration::from_millis(300));
    session.send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":9,"reason":"test"}}"#);
    c.ask(&mut session, 10, "resources/list", json!({}));
    let resources = c.transcript.last().unwrap().clone();
    let uri = serde_json::from_str::<Value>(resources.split_once(": ").unwrap().1).unwrap()
        ["result"]["resources"][0]["uri"]
        .as_str()
        .unwrap()
        .to_owned();
    c.ask(&mut session, 11, "resources/read", json!({ "uri": uri }));
    c.ask(&mut session, 12, "prompts/list", json!({}));
    c.ask(
        &mut session,
        13,
        "prompts/get",
        json!({ "name": "simple-prompt" }),
    );
    let big = "x".repeat(4 * 1024 * 1024);
    let echoed = c.ask(
        &mut session,
        14,
        "tools/call",
        json!({ "name": "echo", "arguments": { "message": big } }),
    );
    assert!(
        echoed["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .len()
            > 4 * 1024 * 1024
    );
    c.ask(&mut session, 15, "ping", json!({}));
    // Clean stop on EOF: nothing more for the client, no answer to 9.
    session.close_stdin();
    for line in session.rest() {
        let message: Value = serde_json::from_str(&line).unwrap();
        assert_ne!(
            message.get("id"),
            Some(&json!(9)),
            "the cancelled request was answered: {line}"
        );
    }
    let status = session.wait();
    c.transcript.push(format!("exit: {status:?}"));
    (c.transcript, c.progress)
}

fn everything() -> Command {
    let mut cmd = Command::new(npm_bin("mcp-server-everything"));
    cmd.arg("stdio");
    cmd
}

#[test]
fn a_session_through_toolwarden_equals_the_direct_one() {
    let (direct, direct_progress) = script(Session::start(&mut everything()));
    let mut relayed_cmd = toolwarden();
    relayed_cmd
        .arg("--policy")
        .arg(root().join("policies/permissive.json"))
        .arg("--")
        .arg(npm_bin("mcp-server-everything"))
        .arg("stdio");
    // The permissive policy denies destructive-looking names; none of these
    // tools is one, so it behaves as allow-all here.
    let (relayed, relayed_progress) = script(Session::start(&mut relayed_cmd));
    assert_eq!(
        direct.len(),
        relayed.len(),
        "direct:\n{direct:#?}\nrelayed:\n{relayed:#?}"
    );
    for (d, r) in direct.iter().zip(&relayed) {
        assert!(
            d == r,
            "direct and relayed differ:\n direct: {}\nrelayed: {}",
            &d[..d.len().min(600)],
            &r[..r.len().min(600)]
        );
    }
    assert_eq!(
        direct_progress.get("\"p8\""),
        Some(&3),
        "{direct_progress:?}"
    );
    assert_eq!(
        direct_progress.get("\"p8\""),
        relayed_progress.get("\"p8\"")
    );
    assert!(direct.iter().any(|l| l.contains("sampling/createMessage")));
    assert!(direct.iter().any(|l| l.contains("elicitation/create")));
    assert!(direct.iter().any(|l| l.contains("roots/list")));
}
