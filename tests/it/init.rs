//! `toolwarden init` on the real servers: the policy it writes passes
//! `check` against the same server with no warning, and decides as its
//! rules' descriptions say.

use std::process::Command;

use serde_json::Value;

use crate::common::*;

/// The three npm servers, with what they need to list their tools
/// offline.
fn servers() -> Vec<(&'static str, Command)> {
    let mut runpod = Command::new(npm_bin("runpod-mcp"));
    runpod.env("RUNPOD_API_KEY", "offline-test-key");
    let mut td = Command::new(npm_bin("td-mcp-server"));
    td.env("TD_API_KEY", "1/0123456789abcdef0123456789abcdef01234567");
    let everything = Command::new(npm_bin("mcp-server-everything"));
    vec![
        ("runpod", runpod),
        ("treasuredata", td),
        ("everything", everything),
    ]
}

/// `toolwarden SUBCOMMAND ARGS... SERVER`, with the server's environment.
fn with_server(sub: &[&std::ffi::OsStr], server: &Command) -> std::process::Output {
    let mut cmd = toolwarden();
    cmd.args(sub)
        .arg(server.get_program())
        .args(server.get_args());
    for (key, value) in server.get_envs() {
        if let Some(value) = value {
            cmd.env(key, value);
        }
    }
    cmd.output().unwrap()
}

#[test]
fn init_writes_a_policy_that_check_accepts_without_a_warning() {
    for (name, server) in servers() {
        let dir = temp_dir(&format!("init-{name}"));
        let policy = dir.join("policy.json");
        let pins = dir.join("policy.pin.json");
        let out = with_server(
            &[
                "init".as_ref(),
                "--out".as_ref(),
                policy.as_os_str(),
                "--pin".as_ref(),
                pins.as_os_str(),
            ],
            &server,
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&policy).unwrap();
        let file: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(file["default"], "deny");
        let rules = file["tools"].as_object().unwrap();
        assert!(rules.len() > 5, "{name}: {}", rules.len());
        for (tool, rule) in rules {
            let description = rule["description"].as_str().unwrap();
            assert!(!description.is_empty(), "{tool}");
            assert!(rule["arguments"].is_object(), "{name}/{tool}: no schema");
        }
        if name == "everything" {
            // get-env is annotated read-only and returns the server's
            // whole environment, API keys included.
            let get_env = &rules["get-env"];
            assert_eq!(get_env["action"], "approve", "{get_env}");
            let why = get_env["description"].as_str().unwrap();
            assert!(
                why.contains("maybe secrets or the server's environment"),
                "{why}"
            );
            // The tools only a capable client is shown are in the policy.
            assert!(rules.contains_key("trigger-sampling-request"), "{text}");
        }
        let check = with_server(
            &["check".as_ref(), policy.as_os_str(), "--".as_ref()],
            &server,
        );
        let report = String::from_utf8_lossy(&check.stdout);
        assert_eq!(check.status.code(), Some(0), "{name}: {report}");
        assert!(!report.contains("warning"), "{name}: {report}");
        assert!(
            report.contains(" 0 denied, 0 hidden from tools/list"),
            "{name}: {report}"
        );
        // The pin file takes every tool, and nothing has changed since.
        let lock: Value = serde_json::from_str(&std::fs::read_to_string(&pins).unwrap()).unwrap();
        assert_eq!(lock["tools"].as_object().unwrap().len(), rules.len());
        let diff = with_server(
            &[
                "pin".as_ref(),
                "--diff".as_ref(),
                pins.as_os_str(),
                "--".as_ref(),
            ],
            &server,
        );
        assert_eq!(
            diff.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&diff.stdout)
        );
        // init never writes over a file.
        let again = with_server(
            &["init".as_ref(), "--out".as_ref(), policy.as_os_str()],
            &server,
        );
        assert_eq!(again.status.code(), Some(2));
        assert_eq!(std::fs::read_to_string(&policy).unwrap(), text);
    }
}

#[test]
fn an_init_policy_checks_calls_against_the_servers_schema() {
    let (_, runpod) = servers().remove(0);
    let dir = temp_dir("init-runpod-session");
    let policy = dir.join("policy.json");
    let out = with_server(
        &["init".as_ref(), "--out".as_ref(), policy.as_os_str()],
        &runpod,
    );
    assert_eq!(out.status.code(), Some(0));
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&policy).unwrap()).unwrap();
    assert_eq!(file["tools"]["delete-pod"]["action"], "approve");
    assert!(file["tools"]["list-pods"].get("action").is_none());
    assert_eq!(file["tools"]["create-pod"]["limits"][0]["max"], 10);

    let mut s = Session::start(
        toolwarden()
            .arg("--policy")
            .arg(&policy)
            .arg("--state=memory")
            .arg(npm_bin("runpod-mcp"))
            .env("RUNPOD_API_KEY", "offline-test-key"),
    );
    s.send(&initialize("2025-06-18"));
    s.recv();
    s.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    // retry-job's schema requires endpointId and jobId, with a pattern.
    s.send(&call(
        1,
        "retry-job",
        r#"{"endpointId":"ep 1; rm -rf","jobId":"j"}"#,
    ));
    let refused = s.recv_json();
    assert_eq!(decision(&refused).as_deref(), Some("invalid_arguments"));
    assert!(refused.to_string().contains("/endpointId"), "{refused}");
    s.send(&call(
        2,
        "retry-job",
        r#"{"endpointId":"ep-1","jobId":"j-1"}"#,
    ));
    // Allowed: it reaches the server, which fails offline.
    assert_eq!(decision(&s.recv_json()), None);
    assert_eq!(s.wait().code(), Some(0));
}

#[test]
fn a_slow_server_is_said_to_be_waited_for_and_timeout_sets_how_long() {
    let dir = temp_dir("init-slow");
    let policy = dir.join("policy.json");
    std::fs::write(&policy, r#"{"version":"1","default":"allow"}"#).unwrap();
    let slow = |sub: &[&std::ffi::OsStr]| {
        toolwarden()
            .args(sub)
            .arg("--")
            .arg(mock_server())
            .arg("--tools")
            .arg(root().join("examples/tools/flowforge.json"))
            .args(["--slow-list-ms", "2500"])
            .output()
            .unwrap()
    };
    let waited = "toolwarden: waiting for the server's tools/list";
    let check = slow(&[
        "check".as_ref(),
        "--timeout=10s".as_ref(),
        policy.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(waited), "{stderr}");
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("server tools (12)"),
        "{check:?}"
    );
    let pins = dir.join("pins.json");
    for sub in [
        vec![
            "check".as_ref(),
            "--timeout=1500ms".as_ref(),
            policy.as_os_str(),
        ],
        vec!["init".as_ref(), "--timeout".as_ref(), "1500ms".as_ref()],
        vec![
            "pin".as_ref(),
            "--timeout=1500ms".as_ref(),
            "--out".as_ref(),
            pins.as_os_str(),
        ],
    ] {
        let out = slow(&sub);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{sub:?}: {stderr}");
        assert!(stderr.contains(waited), "{sub:?}: {stderr}");
        assert!(
            stderr.contains(
                "the server did not list its tools within 1s 500ms (--timeout gives it longer)"
            ),
            "{sub:?}: {stderr}"
        );
    }
    assert!(!pins.exists());
}
