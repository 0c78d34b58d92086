//! The official Python MCP SDK (PyPI `mcp`, pinned in
//! tests/python/requirements.txt) as the client: a refusal reaches it as
//! an error result it can read.

use std::process::Command;

use serde_json::Value;

use crate::common::*;

#[test]
fn the_python_sdk_reads_refusals_as_error_results() {
    let python = root().join("tests/python/.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run tests/setup",
        python.display()
    );
    let out = Command::new(python)
        .arg(root().join("tests/python/sdk_client.py"))
        .arg(toolwarden_bin())
        .arg(root().join("policies/fractera.json"))
        .arg(mock_server())
        .arg(root().join("examples/tools/fractera.json"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(seen["tools"], serde_json::json!(["retry_deploy"]));
    assert_eq!(seen["allowed"]["isError"], false);
    assert!(
        seen["allowed"]["text"]
            .as_str()
            .unwrap()
            .starts_with("called retry_deploy"),
        "{seen}"
    );
    assert_eq!(seen["refused"]["isError"], true);
    assert_eq!(seen["refused"]["decision"], "not_allowed");
    assert!(
        seen["refused"]["text"]
            .as_str()
            .unwrap()
            .contains("`check_status` refused"),
        "{seen}"
    );
    assert_eq!(seen["invalid"]["isError"], true);
    assert_eq!(seen["invalid"]["decision"], "invalid_arguments");
    assert!(
        seen["invalid"]["text"]
            .as_str()
            .unwrap()
            .contains("/server_token"),
        "{seen}"
    );
}

const APPROVAL_POLICY: &str = r#"{
  "version": "1",
  "tools": {
    "retry_deploy": { "action": "approve", "redact": ["/server_token"] },
    "check_status": {}
  }
}"#;

/// Runs tests/python/approval_client.py in `mode`; returns what it saw
/// and the calls the server received.
fn approval(mode: &str) -> (Value, Vec<String>) {
    let dir = temp_dir(&format!("approval-{mode}"));
    let policy = dir.join("policy.json");
    let record = dir.join("record");
    std::fs::write(&policy, APPROVAL_POLICY).unwrap();
    let out = Command::new(root().join("tests/python/.venv/bin/python"))
        .arg(root().join("tests/python/approval_client.py"))
        .arg(mode)
        .arg(toolwarden_bin())
        .arg(&policy)
        .arg(mock_server())
        .arg(root().join("examples/tools/fractera.json"))
        .arg(&record)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{mode}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let calls = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .filter(|l| l.contains("tools/call"))
        .map(str::to_owned)
        .collect();
    (seen, calls)
}

#[test]
fn an_approved_call_runs() {
    let (seen, calls) = approval("accept");
    assert_eq!(seen["result"]["isError"], false, "{seen}");
    assert!(
        seen["result"]["text"]
            .as_str()
            .unwrap()
            .starts_with("called retry_deploy"),
        "{seen}"
    );
    let prompt = seen["prompts"][0].as_str().unwrap();
    assert!(
        prompt.contains("the tool \"retry_deploy\" with"),
        "{prompt}"
    );
    assert!(
        !prompt.contains("srv_live_8f2a61c0"),
        "the prompt shows the token redacted: {prompt}"
    );
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0].contains("srv_live_8f2a61c0"),
        "the server gets the real arguments"
    );
}

#[test]
fn a_declined_call_never_reaches_the_server() {
    let (seen, calls) = approval("decline");
    assert_eq!(seen["result"]["isError"], true);
    assert_eq!(seen["result"]["decision"], "approval_declined");
    assert!(calls.is_empty(), "{calls:?}");
}

#[test]
fn with_approval_client_a_client_without_elicitation_gets_approval_unavailable() {
    let (seen, calls) = approval("none");
    assert!(seen["prompts"].as_array().unwrap().is_empty());
    assert_eq!(seen["result"]["decision"], "approval_unavailable");
    assert!(calls.is_empty(), "{calls:?}");
}

#[test]
fn other_calls_keep_flowing_while_one_waits_for_approval() {
    let (seen, calls) = approval("concurrent");
    assert_eq!(
        seen["order"],
        serde_json::json!(["check_status", "retry_deploy"])
    );
    assert_eq!(seen["other"]["isError"], false);
    assert_eq!(seen["result"]["isError"], false);
    assert_eq!(calls.len(), 2);
    assert!(
        calls[0].contains("check_status") && calls[1].contains("retry_deploy"),
        "{calls:?}"
    );
}
