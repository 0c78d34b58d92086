//! PolicyLayer's full format end to end: the examples users paste, the
//! example policies shipped in policies/examples/, policies imported from
//! Intercept, and conditions that stop the load.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::common::*;

/// A tools file for the mock server, written to a temp dir.
fn tools_file(name: &str, tools: &[&str]) -> PathBuf {
    let list: Vec<Value> = tools
        .iter()
        .map(|t| json!({"name": t, "inputSchema": {"type": "object"}}))
        .collect();
    let path = temp_dir(name).join("tools.json");
    let file = json!({"server": {"name": "shop-mock", "version": "1"}, "tools": list});
    std::fs::write(&path, file.to_string()).unwrap();
    path
}

fn session(policy: &str, tools: &Path, record: &Path) -> Session {
    let memory = std::ffi::OsStr::new("--state=memory");
    Session::start(&mut guarded_mock_with(
        policy,
        tools.to_str().unwrap(),
        &[memory],
        &["--record", record.to_str().unwrap()],
    ))
}

/// Sends each call and returns each answer's decision (None: it reached
/// the server) with its text.
fn decide(s: &mut Session, calls: &[(&str, &str)]) -> Vec<(Option<String>, String)> {
    calls
        .iter()
        .enumerate()
        .map(|(i, (tool, args))| {
            s.send(&call(100 + i as u64, tool, args));
            let answer = s.recv_json();
            let text = answer["result"]["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (decision(&answer), text)
        })
        .collect()
}

fn calls_recorded(record: &Path) -> Vec<String> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["method"] == "tools/call")
        .map(|m| m["params"]["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_examples_users_paste_decide_as_policylayer_documents() {
    let dir = temp_dir("full-format-paste");
    let tools = tools_file(
        "full-format-paste-tools",
        &["delete_role", "list_roles", "refund_order", "create_charge"],
    );

    // A top-level hide list.
    let record = dir.join("hide");
    let mut s = session(
        r#"{"version": "1", "default": "deny", "hide": ["delete_role"]}"#,
        &tools,
        &record,
    );
    s.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    assert_eq!(tool_names(&s.recv_json()), Vec::<String>::new());
    let got = decide(&mut s, &[("delete_role", r#"{"role":"admin"}"#)]);
    assert_eq!(got[0].0.as_deref(), Some("denied"));
    assert!(
        got[0].1.contains("the policy hides this tool (`hide`)"),
        "{got:?}"
    );
    s.close_stdin();
    s.wait();
    assert_eq!(calls_recorded(&record), Vec::<String>::new());

    // deny_if, require and limits on one tool.
    let record = dir.join("charges");
    let mut s = session(
        r#"{"version": "1", "default": "deny", "tools": {
  "refund_order": {"deny_if": [{"conditions": [], "on_deny": "Requires human approval."}]},
  "create_charge": {"deny_if": [{"conditions": [{"path": "args.amount", "op": "gt", "value": 10000}],
                                 "on_deny": "Charges over 10000 need a person"}],
                    "require": [{"path": "args.currency", "op": "in", "value": ["usd", "eur"]}],
                    "limits": [{"counter": "charges", "window": "minute", "max": 30, "scope": "grant"}]}}}"#,
        &tools,
        &record,
    );
    s.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    assert_eq!(tool_names(&s.recv_json()), vec!["create_charge"]);
    let got = decide(
        &mut s,
        &[
            ("refund_order", r#"{"order":"o_1"}"#),
            ("create_charge", r#"{"amount":10001,"currency":"usd"}"#),
            ("create_charge", r#"{"amount":500,"currency":"gbp"}"#),
            ("create_charge", r#"{"amount":1e4,"currency":"eur"}"#),
            ("create_charge", r#"{"amount":"20000","currency":"usd"}"#),
        ],
    );
    let decisions: Vec<Option<&str>> = got.iter().map(|(d, _)| d.as_deref()).collect();
    assert_eq!(
        decisions,
        vec![
            Some("denied"),
            Some("denied"),
            Some("invalid_arguments"),
            None,
            Some("denied")
        ]
    );
    assert!(
        got[0].1.ends_with("Reason: Requires human approval."),
        "{got:?}"
    );
    assert!(
        got[1]
            .1
            .contains("because /amount > 10000. Reason: Charges over 10000 need a person"),
        "{got:?}"
    );
    assert!(
        got[2].1.contains(r#"/currency in ["usd","eur"]"#),
        "{got:?}"
    );
    s.close_stdin();
    s.wait();
    assert_eq!(calls_recorded(&record), vec!["create_charge"]);
}

#[test]
fn a_condition_that_does_not_compile_stops_the_start_at_its_place() {
    for (condition, at, says) in [
        (
            r#"{"path":"args.amount","op":"greater","value":1}"#,
            "/tools/create_charge/deny_if/0/conditions/0/op",
            "unknown variant `greater`",
        ),
        (
            r#"{"path":"args.name","op":"regex","value":"([a-z]+"}"#,
            "/tools/create_charge/deny_if/0/conditions/0/value",
            "not a usable regex",
        ),
        (
            r#"{"path":"amount","op":"gt","value":1}"#,
            "/tools/create_charge/deny_if/0/conditions/0/path",
            "must start with \"args.\"",
        ),
    ] {
        let dir = temp_dir("full-format-bad");
        let record = dir.join("record");
        let policy = dir.join("policy.json");
        std::fs::write(
            &policy,
            format!(
                r#"{{"version":"1","tools":{{"create_charge":{{"deny_if":[{{"conditions":[{condition}]}}]}}}}}}"#
            ),
        )
        .unwrap();
        let mut s = Session::start(
            toolwarden()
                .arg("--policy")
                .arg(&policy)
                .arg("--")
                .arg(mock_server())
                .args(["--record", record.to_str().unwrap()]),
        );
        assert_eq!(s.wait().code(), Some(2), "{condition}");
        let stderr = s.stderr();
        assert!(
            stderr.contains(&format!("{}: {at}: ", policy.display())),
            "{stderr}"
        );
        assert!(stderr.contains(says), "{stderr}");
        assert!(!record.exists(), "the server was started for {condition}");
        let check = toolwarden().arg("check").arg(&policy).output().unwrap();
        assert_eq!(check.status.code(), Some(2));
    }
}

#[test]
fn the_stripe_example_caps_refunds_and_currencies() {
    let dir = temp_dir("examples-stripe");
    let record = dir.join("record");
    let tools = root().join("examples/tools/stripe.json");
    let mut s = session("policies/examples/stripe.json", &tools, &record);
    s.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    let listed = tool_names(&s.recv_json());
    for gone in [
        "update_dispute",
        "cancel_subscription",
        "update_subscription",
    ] {
        assert!(!listed.contains(&gone.to_owned()), "{gone} in {listed:?}");
    }
    assert!(listed.contains(&"create_refund".to_owned()));
    let refund =
        |pi: &str, amount: u32| format!(r#"{{"payment_intent":"{pi}","amount":{amount}}}"#);
    let got = decide(
        &mut s,
        &[
            ("list_customers", "{}"),
            (
                "create_price",
                r#"{"product":"p","unit_amount":900,"currency":"usd"}"#,
            ),
            (
                "create_price",
                r#"{"product":"p","unit_amount":900,"currency":"jpy"}"#,
            ),
            (
                "create_price",
                r#"{"product":"p","unit_amount":150000,"currency":"eur"}"#,
            ),
            ("create_refund", r#"{"payment_intent":"pi_0"}"#),
            ("create_refund", &refund("pi_1", 60000)),
            ("create_refund", &refund("pi_1", 50000)),
            ("create_refund", &refund("pi_1", 100)),
            ("create_refund", &refund("pi_2", 50000)),
            ("create_refund", &refund("pi_3", 50000)),
            ("create_refund", &refund("pi_4", 50000)),
            ("create_refund", &refund("pi_5", 100)),
            ("cancel_subscription", r#"{"subscription":"sub_1"}"#),
            ("update_dispute", r#"{"dispute":"dp_1"}"#),
        ],
    );
    let decisions: Vec<Option<&str>> = got.iter().map(|(d, _)| d.as_deref()).collect();
    assert_eq!(
        decisions,
        vec![
            None,
            None,
            Some("invalid_arguments"),
            Some("denied"),
            Some("invalid_arguments"),
            Some("denied"),
            None,
            // One refund per payment a day.
            Some("rate_limited"),
            None,
            None,
            None,
            // 2,000.00 a day in all.
            Some("rate_limited"),
            Some("denied"),
            Some("denied"),
        ],
        "{got:#?}"
    );
    assert!(
        got[7].1.contains("One refund per payment a day."),
        "{got:?}"
    );
    assert!(got[11].1.contains("2,000.00 of refunds a day"), "{got:?}");
    s.close_stdin();
    s.wait();
    let reached = calls_recorded(&record);
    assert_eq!(reached.len(), 6, "{reached:?}");
}

#[test]
fn the_github_example_keeps_the_agent_off_main() {
    let dir = temp_dir("examples-github");
    let record = dir.join("record");
    let tools = root().join("examples/tools/github.json");
    let mut s = session("policies/examples/github.json", &tools, &record);
    let file = |owner: &str, branch: &str, path: &str| {
        format!(
            r#"{{"owner":"{owner}","repo":"r","path":"{path}","content":"x","message":"m","branch":"{branch}"}}"#
        )
    };
    let got = decide(
        &mut s,
        &[
            (
                "get_file_contents",
                r#"{"owner":"anyone","repo":"r","path":"README.md"}"#,
            ),
            (
                "create_or_update_file",
                &file("acme", "agent/fix", "src/a.rs"),
            ),
            ("create_or_update_file", &file("acme", "main", "src/a.rs")),
            (
                "create_or_update_file",
                &file("acme", "agent/fix", ".github/workflows/ci.yml"),
            ),
            (
                "create_or_update_file",
                &file("other", "agent/fix", "src/a.rs"),
            ),
            (
                "create_pull_request",
                r#"{"owner":"acme","repo":"r","title":"t","head":"fix","base":"main"}"#,
            ),
            (
                "create_pull_request",
                r#"{"owner":"acme","repo":"r","title":"t","head":"agent/fix","base":"main"}"#,
            ),
            (
                "delete_file",
                r#"{"owner":"acme","repo":"r","path":"a","message":"m","branch":"agent/x"}"#,
            ),
            (
                "merge_pull_request",
                r#"{"owner":"acme","repo":"r","pullNumber":1}"#,
            ),
        ],
    );
    let decisions: Vec<Option<&str>> = got.iter().map(|(d, _)| d.as_deref()).collect();
    assert_eq!(
        decisions,
        vec![
            None,
            None,
            Some("denied"),
            Some("denied"),
            Some("invalid_arguments"),
            Some("invalid_arguments"),
            None,
            Some("denied"),
            // The mock client cannot ask a person.
            Some("approval_unavailable"),
        ],
        "{got:#?}"
    );
    assert!(
        got[2].1.contains("Never commit to the default branch"),
        "{got:?}"
    );
    s.close_stdin();
    s.wait();
    assert_eq!(
        calls_recorded(&record),
        vec![
            "get_file_contents",
            "create_or_update_file",
            "create_pull_request"
        ]
    );
}

#[test]
fn the_full_runpod_example_fits_the_real_server() {
    let policy = root().join("policies/examples/runpod-full.json");
    let out = toolwarden()
        .arg("check")
        .arg(&policy)
        .arg("--")
        .arg(npm_bin("runpod-mcp"))
        .env("RUNPOD_API_KEY", "offline-test-key")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(!report.contains("warning"), "{report}");
    assert!(
        report.contains("server tools (68): 56 allowed, 7 need approval, 5 denied, 5 hidden"),
        "{report}"
    );

    let mut s = Session::start(
        toolwarden()
            .arg("--policy")
            .arg(&policy)
            .arg("--state=memory")
            .arg("--")
            .arg(npm_bin("runpod-mcp"))
            .env("RUNPOD_API_KEY", "offline-test-key"),
    );
    s.send(&initialize("2025-06-18"));
    s.recv_json();
    s.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let pod = |name: &str, count: u32, cloud: &str| {
        format!(
            r#"{{"body":{{"name":"{name}","image":"runpod/base","cloud":"{cloud}","gpu":{{"id":"NVIDIA GeForce RTX 4090","count":{count}}}}}}}"#
        )
    };
    let got = decide(
        &mut s,
        &[
            ("create-pod", &pod("agent-train", 4, "SECURE")),
            ("create-pod", &pod("agent-train", 1, "COMMUNITY")),
            ("create-pod", &pod("train", 1, "SECURE")),
            ("pod-action", r#"{"id":"p1","body":{"action":"terminate"}}"#),
            ("update-ssh-keys", r#"{"body":{}}"#),
            // Allowed: it reaches the server, which fails offline.
            ("create-pod", &pod("agent-train", 1, "SECURE")),
        ],
    );
    let decisions: Vec<Option<&str>> = got.iter().map(|(d, _)| d.as_deref()).collect();
    assert_eq!(
        decisions,
        vec![
            Some("denied"),
            Some("denied"),
            Some("invalid_arguments"),
            Some("denied"),
            Some("denied"),
            None
        ],
        "{got:#?}"
    );
    assert!(
        got[0]
            .1
            .contains("Pods with more than 2 GPUs need a person."),
        "{got:?}"
    );
    s.close_stdin();
    s.wait();
}

/// An Intercept policy with a deny rule, a rate limit, an argument
/// condition and a spend counter.
const INTERCEPT: &str = r#"
version: "1"
description: "Stripe MCP server policies"
tools:
  create_charge:
    rules:
      - name: "max single charge"
        conditions:
          - path: "args.amount"
            op: "lte"
            value: 50000
        on_deny: "Single charge cannot exceed $500.00"
      - name: "daily spend cap"
        conditions:
          - path: "state.create_charge.daily_spend"
            op: "lte"
            value: 100000
        on_deny: "Daily spending cap of $1,000.00 reached"
        state:
          counter: "daily_spend"
          window: "day"
          increment_from: "args.amount"
  create_refund:
    rules:
      - name: "refund limit"
        rate_limit: 2/hour
        on_deny: "Two refunds an hour"
  delete_customer:
    rules:
      - name: "block destructive action"
        action: "deny"
        on_deny: "Customer deletion is not permitted via AI agents"
"#;

#[test]
fn an_intercept_policy_imports_and_decides_as_intercept_does() {
    let dir = temp_dir("import-intercept");
    let yaml = dir.join("stripe.yaml");
    std::fs::write(&yaml, INTERCEPT).unwrap();
    let out = toolwarden().arg("import").arg(&yaml).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let policy = dir.join("stripe.json");
    std::fs::write(&policy, &out.stdout).unwrap();
    let check = toolwarden().arg("check").arg(&policy).output().unwrap();
    assert_eq!(check.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&check.stdout).contains("warning"));

    let tools = tools_file(
        "import-intercept-tools",
        &[
            "create_charge",
            "create_refund",
            "delete_customer",
            "list_customers",
        ],
    );
    let record = dir.join("record");
    let mut s = session(policy.to_str().unwrap(), &tools, &record);
    // Intercept removes from tools/list only what `hide` names.
    s.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    assert_eq!(tool_names(&s.recv_json()).len(), 4);
    let charge = |amount: u32| format!(r#"{{"amount":{amount},"currency":"usd"}}"#);
    let got = decide(
        &mut s,
        &[
            ("delete_customer", r#"{"customer":"cus_1"}"#),
            ("create_charge", &charge(60_000)),
            ("create_charge", &charge(50_000)),
            ("create_charge", &charge(40_000)),
            // 90,000 spent: 20,000 more would pass the cap of 100,000.
            ("create_charge", &charge(20_000)),
            ("create_charge", &charge(10_000)),
            ("create_refund", r#"{"charge":"ch_1"}"#),
            ("create_refund", r#"{"charge":"ch_2"}"#),
            ("create_refund", r#"{"charge":"ch_3"}"#),
            // The default is allow, as in Intercept.
            ("list_customers", "{}"),
        ],
    );
    let decisions: Vec<Option<&str>> = got.iter().map(|(d, _)| d.as_deref()).collect();
    assert_eq!(
        decisions,
        vec![
            Some("denied"),
            Some("invalid_arguments"),
            None,
            None,
            Some("rate_limited"),
            None,
            None,
            None,
            Some("rate_limited"),
            None
        ],
        "{got:#?}"
    );
    for (i, text) in [
        (0, "Customer deletion is not permitted via AI agents"),
        (1, "Single charge cannot exceed $500.00"),
        (4, "Daily spending cap of $1,000.00 reached"),
        (8, "Two refunds an hour"),
    ] {
        assert!(got[i].1.contains(text), "{i}: {got:?}");
    }
    s.close_stdin();
    s.wait();
    assert_eq!(calls_recorded(&record).len(), 6);
}

#[test]
fn an_intercept_policy_that_cannot_be_carried_over_fails_at_its_place() {
    let dir = temp_dir("import-bad");
    let yaml = dir.join("bad.yaml");
    std::fs::write(
        &yaml,
        "version: '1'\ntools:\n  t:\n    rules:\n      - name: odd\n        conditions:\n          - {path: state.t.n, op: gt, value: 3}\n        state: {counter: n, window: hour}\n",
    )
    .unwrap();
    let out = toolwarden().arg("import").arg(&yaml).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yaml: /tools/t/rules/0/conditions/0/op: \"gt\" on a counter"),
        "{stderr}"
    );
}

/// Values a Python SDK server coerces (`"true"` and `1` to `true`, a JSON
/// string to the object it spells, a one-element list kept as a list)
/// meet conditions that fail closed: none of them reaches the server,
/// which would have run each as the policy forbids.
#[test]
fn conditions_fail_closed_on_values_the_server_would_coerce() {
    let python = root().join("tests/python/.venv/bin/python");
    assert!(python.exists(), "run tests/setup");
    let server = root().join("tests/python/coercing_server.py");
    let calls = [
        ("deploy", r#"{"force":"true"}"#),
        ("deploy", r#"{"force":1}"#),
        ("create_pod", r#"{"body":"{\"gpu\":{\"count\":8}}"}"#),
        ("set_region", r#"{"region":["eu"]}"#),
    ];
    let run = |guarded: bool, record: &Path| {
        let mut cmd = if guarded {
            let policy = temp_dir("coerce-policy").join("policy.json");
            std::fs::write(
                &policy,
                r#"{"version": "1", "default": "deny", "tools": {
  "deploy": {"deny_if": [{"conditions": [{"path": "args.force", "op": "eq", "value": true}],
                          "on_deny": "no forced deploys"}]},
  "create_pod": {"deny_if": [{"conditions": [{"path": "args.body.gpu.count", "op": "gt", "value": 2}]}]},
  "set_region": {"require": [{"path": "args.region", "op": "in", "value": ["eu", "us"]}]}}}"#,
            )
            .unwrap();
            let mut cmd = toolwarden();
            cmd.arg("--policy")
                .arg(policy)
                .args(["--state", "memory", "--"]);
            cmd.arg(&python);
            cmd
        } else {
            Command::new(&python)
        };
        cmd.arg(&server).env("RECORD", record);
        let mut s = Session::start(&mut cmd);
        s.send(&initialize("2025-06-18"));
        s.recv_json();
        s.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        let mut answers = decide(&mut s, &calls);
        // A call the policy allows reaches the server, coerced or not.
        answers.extend(decide(&mut s, &[("deploy", r#"{"force":false}"#)]));
        s.close_stdin();
        s.wait();
        let recorded: Vec<Value> = std::fs::read_to_string(record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (answers, recorded)
    };
    let dir = temp_dir("coerce");
    // The bare server runs every one of them as the policy forbids.
    let (_, bare) = run(false, &dir.join("bare"));
    assert_eq!(
        bare,
        vec![
            json!({"tool": "deploy", "arguments": {"force": true}}),
            json!({"tool": "deploy", "arguments": {"force": true}}),
            json!({"tool": "create_pod", "arguments": {"gpu": {"count": 8}}}),
            json!({"tool": "deploy", "arguments": {"force": false}}),
        ],
        "the SDK no longer coerces as this test assumes"
    );
    let (answers, guarded) = run(true, &dir.join("guarded"));
    let decisions: Vec<Option<&str>> = answers.iter().map(|(d, _)| d.as_deref()).collect();
    assert_eq!(
        decisions,
        vec![
            Some("denied"),
            Some("denied"),
            Some("denied"),
            Some("invalid_arguments"),
            None
        ],
        "{answers:?}"
    );
    assert!(
        answers[0].1.contains(r#"because /force == true ("true" is a string, which `eq` true cannot test). Reason: no forced deploys"#),
        "{answers:?}"
    );
    assert!(
        answers[2]
            .1
            .contains("at /body is a string, where an object belongs"),
        "{answers:?}"
    );
    assert_eq!(
        guarded,
        vec![json!({"tool": "deploy", "arguments": {"force": false}})]
    );
}
