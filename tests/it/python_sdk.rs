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
        .arg(env!("CARGO_BIN_EXE_toolwarden"))
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
