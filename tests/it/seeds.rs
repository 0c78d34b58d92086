//! The five servers toolwarden was born for, each with its shipped policy
//! and with the policy PolicyLayer publishes for it, verbatim. Fractera,
//! Flowforge and GenieACS run as the mock server; RunPod and Treasure Data
//! are the real servers from the npm registry (they list their tools
//! offline; a call reaches them and fails on the network, which is how we
//! know it got through).

use std::process::Command;

use serde_json::{json, Value};

use crate::common::*;

struct Seed {
    /// The server command, without toolwarden.
    server: fn() -> Command,
    policy: &'static str,
    policylayer: &'static str,
    tool: &'static str,
    max: u64,
    counter: &'static str,
    good: &'static str,
    /// Arguments that break the shipped policy's schema, and the pointer
    /// the refusal names.
    bad: &'static str,
    bad_pointer: &'static str,
    /// A tool the server has that the policy does not name.
    other: &'static str,
}

fn mock(tools: &'static str) -> Command {
    let mut cmd = Command::new(mock_server());
    cmd.arg("--tools").arg(root().join(tools));
    cmd
}

fn runpod() -> Command {
    let mut cmd = Command::new(npm_bin("runpod-mcp"));
    cmd.env("RUNPOD_API_KEY", "offline-test-key");
    cmd
}

fn treasuredata() -> Command {
    let mut cmd = Command::new(npm_bin("td-mcp-server"));
    cmd.env("TD_API_KEY", "1/0123456789abcdef0123456789abcdef01234567");
    cmd
}

/// toolwarden with `policy` around the seed's server.
fn guarded(seed: &Seed, policy: &std::path::Path) -> Session {
    let server = (seed.server)();
    let mut cmd = toolwarden();
    cmd.arg("--policy")
        .arg(policy)
        .arg("--")
        .arg(server.get_program())
        .args(server.get_args());
    for (key, value) in server.get_envs() {
        if let Some(value) = value {
            cmd.env(key, value);
        }
    }
    Session::start(&mut cmd)
}

fn start(seed: &Seed, policy: &std::path::Path) -> Session {
    let mut s = guarded(seed, policy);
    s.send(&initialize("2025-06-18"));
    assert_eq!(s.recv_json()["id"], 0);
    s.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    s
}

fn list(s: &mut Session) -> Vec<String> {
    let reply = s.request(
        r#"{"jsonrpc":"2.0","id":"list","method":"tools/list"}"#,
        &json!("list"),
        |_, _, _| {},
    );
    tool_names(&serde_json::from_str(&reply).unwrap())
}

fn ask(s: &mut Session, id: u64, tool: &str, args: &str) -> Value {
    let reply = s.request(&call(id, tool, args), &json!(id), |_, _, _| {});
    serde_json::from_str(&reply).unwrap()
}

/// `max` calls reach the server, the next is refused with a retry-after.
fn burst(s: &mut Session, seed: &Seed, first_id: u64) {
    for i in 0..seed.max {
        let reply = ask(s, first_id + i, seed.tool, seed.good);
        assert_eq!(
            decision(&reply),
            None,
            "call {} of {} was refused: {reply}",
            i + 1,
            seed.max
        );
    }
    let refused = ask(s, first_id + seed.max, seed.tool, seed.good);
    assert_eq!(
        decision(&refused).as_deref(),
        Some("rate_limited"),
        "{refused}"
    );
    let meta = &refused["result"]["_meta"]["toolwarden/decision"];
    assert_eq!(meta["counter"], seed.counter);
    let retry_ms = meta["retry_after_ms"].as_u64().unwrap();
    let period_ms = 60_000 / seed.max;
    assert!(
        retry_ms > 0 && retry_ms <= period_ms,
        "retry after {retry_ms} ms, one call every {period_ms} ms"
    );
    let text = refused["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("({} per minute) reached; retry in", seed.max)),
        "{text}"
    );
}

fn check(seed: &Seed) {
    // The shipped policy.
    let mut s = start(seed, &root().join(seed.policy));
    assert_eq!(
        list(&mut s),
        vec![seed.tool.to_owned()],
        "only the allowed tool is listed"
    );
    burst(&mut s, seed, 100);
    let bad = ask(&mut s, 1, seed.tool, seed.bad);
    assert_eq!(
        decision(&bad).as_deref(),
        Some("invalid_arguments"),
        "{bad}"
    );
    let errors = bad["result"]["_meta"]["toolwarden/decision"]["errors"]
        .as_array()
        .unwrap();
    assert!(
        errors.iter().any(|e| e["pointer"] == seed.bad_pointer),
        "{errors:?}"
    );
    let other = ask(&mut s, 2, seed.other, "{}");
    assert_eq!(decision(&other).as_deref(), Some("not_allowed"), "{other}");
    assert!(s.wait().success(), "stderr:\n{}", s.stderr());

    // PolicyLayer's policy, as published: the same behaviour, minus the
    // argument checks it does not have.
    let mut s = start(seed, &root().join(seed.policylayer));
    assert_eq!(list(&mut s), vec![seed.tool.to_owned()]);
    burst(&mut s, seed, 100);
    let other = ask(&mut s, 2, seed.other, "{}");
    assert_eq!(decision(&other).as_deref(), Some("not_allowed"), "{other}");
    assert!(s.wait().success(), "stderr:\n{}", s.stderr());
}

#[test]
fn fractera() {
    check(&Seed {
        server: || mock("examples/tools/fractera.json"),
        policy: "policies/fractera.json",
        policylayer: "tests/it/policylayer/fractera.json",
        tool: "retry_deploy",
        max: 10,
        counter: "retry_deploy_rate",
        good: r#"{"server_token":"srv_live_8f2a61c0"}"#,
        bad: r#"{"server_token":""}"#,
        bad_pointer: "/server_token",
        other: "check_status",
    });
}

#[test]
fn flowforge() {
    check(&Seed {
        server: || mock("examples/tools/flowforge.json"),
        policy: "policies/flowforge.json",
        policylayer: "tests/it/policylayer/flowforge.json",
        tool: "flowforge_retry_run",
        max: 10,
        counter: "flowforge_retry_run_rate",
        good: r#"{"run_id":"run_01H8"}"#,
        bad: r#"{"run_id":"../../etc"}"#,
        bad_pointer: "/run_id",
        other: "flowforge_delete_run",
    });
}

#[test]
fn genieacs() {
    check(&Seed {
        server: || mock("examples/tools/genieacs.json"),
        policy: "policies/genieacs.json",
        policylayer: "tests/it/policylayer/genieacs.json",
        tool: "retry_task",
        max: 30,
        counter: "retry_task_rate",
        good: r#"{"task_id":"67abc123def456"}"#,
        bad: r#"{"task_id":"67abc123def456","extra":1}"#,
        bad_pointer: "",
        other: "reboot_device",
    });
}

#[test]
fn runpod_real_server() {
    check(&Seed {
        server: runpod,
        policy: "policies/runpod.json",
        policylayer: "tests/it/policylayer/runpod.json",
        tool: "retry-job",
        max: 10,
        counter: "retry-job_rate",
        good: r#"{"endpointId":"ep-test","jobId":"job-1"}"#,
        bad: r#"{"endpointId":"ep test","jobId":"job-1"}"#,
        bad_pointer: "/endpointId",
        other: "delete-pod",
    });
}

#[test]
fn treasuredata_real_server() {
    check(&Seed {
        server: treasuredata,
        policy: "policies/treasuredata.json",
        policylayer: "tests/it/policylayer/treasuredata.json",
        tool: "retry_session",
        max: 10,
        counter: "retry_session_rate",
        good: r#"{"session_id":"12345"}"#,
        bad: r#"{"session_id":12345}"#,
        bad_pointer: "/session_id",
        other: "kill_attempt",
    });
}
