//! The audit log: exactly one event per decision and per completed call,
//! no secret in it or in toolwarden's own logs, readable by its owner only.

use std::os::unix::fs::PermissionsExt;

use hmac::{KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Digest;

use crate::common::*;

pub const POLICY: &str = r#"{
  "version": "1",
  "tools": {
    "retry_deploy": {
      "limits": [{ "counter": "deploys", "window": "minute", "max": 2 }],
      "arguments": {
        "type": "object",
        "properties": { "server_token": { "type": "string", "minLength": 20 } },
        "required": ["server_token"]
      },
      "redact": ["/server_token"]
    },
    "check_status": { "action": "approve" },
    "drop_database": { "action": "deny", "reason": "never from an agent" }
  }
}"#;

/// Values that must not appear in the audit log or on stderr.
const SECRETS: &[&str] = &[
    "srv_live_8f2a61c0_SECRET_TOKEN_1",
    "hunter2-PASSWORD",
    "ghp_0123456789abcdefghijABCDEFGHIJ012345",
    "short-SECRET",
    "KEY-SECRET-123",
];

const GOOD_ARGS: &str = r#"{"server_token":"srv_live_8f2a61c0_SECRET_TOKEN_1","password":"hunter2-PASSWORD","note":"ghp_0123456789abcdefghijABCDEFGHIJ012345"}"#;

fn events(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        // The chain's start and end lines (see audit_verify_... below).
        .filter(|e: &Value| !matches!(e["event"].as_str(), Some("session_start" | "session_end")))
        .collect()
}

#[test]
fn a_session_leaves_exactly_its_decisions_and_no_secret() {
    let dir = temp_dir("audit");
    let audit = dir.join("audit.jsonl");
    let policy = dir.join("policy.json");
    std::fs::write(&policy, POLICY).unwrap();
    let mut s = Session::start(
        toolwarden()
            .env("XDG_STATE_HOME", state_home("audit"))
            .arg("--policy")
            .arg(&policy)
            .arg("--audit")
            .arg(&audit)
            .args(["--identity", "ci-agent", "--log-level", "trace", "--"])
            .arg(mock_server())
            .arg("--tools")
            .arg(root().join("examples/tools/fractera.json")),
    );
    s.send(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"elicitation":{}},"clientInfo":{"name":"t","version":"1"}}}"#);
    s.recv();
    s.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let ask = |s: &mut Session, id: u64, tool: &str, args: &str| -> Value {
        serde_json::from_str(&s.request(&call(id, tool, args), &json!(id), |_, _, _| {})).unwrap()
    };
    assert_eq!(decision(&ask(&mut s, 1, "retry_deploy", GOOD_ARGS)), None);
    assert_eq!(decision(&ask(&mut s, 2, "retry_deploy", GOOD_ARGS)), None);
    assert_eq!(
        decision(&ask(&mut s, 3, "retry_deploy", GOOD_ARGS)).as_deref(),
        Some("rate_limited")
    );
    let invalid = ask(
        &mut s,
        4,
        "retry_deploy",
        r#"{"server_token":"short-SECRET"}"#,
    );
    assert_eq!(decision(&invalid).as_deref(), Some("invalid_arguments"));
    assert_eq!(
        decision(&ask(&mut s, 5, "drop_database", "{}")).as_deref(),
        Some("denied")
    );
    assert_eq!(
        decision(&ask(&mut s, 6, "anything_else", "{}")).as_deref(),
        Some("not_allowed")
    );
    // An approved call: the prompt comes first, answered yes.
    s.send(&call(
        7,
        "check_status",
        r#"{"session_id":"s-1","api_key":"KEY-SECRET-123"}"#,
    ));
    let prompt = s.recv_json();
    assert_eq!(prompt["method"], "elicitation/create");
    s.send(&json!({"jsonrpc": "2.0", "id": prompt["id"], "result": {"action": "accept", "content": {"approve": true}}}).to_string());
    assert_eq!(s.recv_json()["id"], 7);
    s.send(r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"retry_deploy"}}"#);
    assert_eq!(s.wait().code(), Some(0));

    let events = events(&audit);
    let summary: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["event"].as_str().unwrap(),
                e["tool"].as_str().unwrap(),
                e["decision"].as_str().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            "decision retry_deploy allowed",
            "result retry_deploy -",
            "decision retry_deploy allowed",
            "result retry_deploy -",
            "decision retry_deploy rate_limited",
            "decision retry_deploy invalid_arguments",
            "decision drop_database denied",
            "decision anything_else not_allowed",
            "decision check_status approval_requested",
            "approval check_status -",
            "decision check_status approved",
            "result check_status -",
            "decision retry_deploy notification_dropped",
        ]
    );
    let approval = events.iter().find(|e| e["event"] == "approval").unwrap();
    assert_eq!(approval["channel"], "elicitation");
    assert_eq!(approval["answer"], "approved");
    assert_eq!(approval["by"], "client");
    for e in &events {
        assert_eq!(e["identity"], "ci-agent");
        assert_eq!(e["session"], events[0]["session"]);
        assert!(e["ts"].as_str().unwrap().ends_with('Z'), "{e}");
    }
    let first = &events[0];
    assert_eq!(first["id"], 1);
    assert_eq!(
        first["arguments"],
        json!({"server_token": "[redacted]", "password": "[redacted]", "note": "[redacted]"})
    );
    let sent = r#"{"server_token":"srv_live_8f2a61c0_SECRET_TOKEN_1","password":"hunter2-PASSWORD","note":"ghp_0123456789abcdefghijABCDEFGHIJ012345"}"#;
    // A keyed hash: the same arguments match, and without the key (0600,
    // in a 0700 directory) a redacted value cannot be guessed from it.
    let hex = |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
    let key_file = state_home("audit").join("toolwarden/audit.key");
    let key_hex = std::fs::read_to_string(&key_file).unwrap();
    let key: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&key_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(sent.as_bytes());
    assert_eq!(first["args_hmac"], hex(&mac.finalize().into_bytes()));
    assert!(first.get("args_sha256").is_none());
    assert_ne!(
        first["args_hmac"],
        hex(&sha2::Sha256::digest(sent.as_bytes()))
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(mode(key_file.parent().unwrap()), 0o700);
    let result = &events[1];
    assert_eq!(result["is_error"], false);
    assert!(result["duration_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(events[4]["counter"], "deploys");
    assert!(events[4]["retry_after_ms"].as_u64().unwrap() > 0);
    assert_eq!(events[5]["errors"][0]["pointer"], "/server_token");
    assert_eq!(events[6]["reason"], "never from an agent");

    let text = std::fs::read_to_string(&audit).unwrap();
    let stderr = s.stderr();
    assert!(
        stderr.contains("TRACE") || stderr.contains("DEBUG"),
        "the log level was trace"
    );
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} is in the audit log");
        assert!(!stderr.contains(secret), "{secret} is on stderr");
    }
    let mode = std::fs::metadata(&audit).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn with_audit_required_nothing_runs_that_cannot_be_written_down() {
    let dir = temp_dir("audit-required");
    let record = dir.join("record");
    // Every write to /dev/full fails: the disk is full.
    let mut s = Session::start(
        toolwarden()
            .arg("--policy")
            .arg(root().join("policies/fractera.json"))
            .args(["--audit", "/dev/full", "--audit-required", "--"])
            .arg(mock_server())
            .arg("--tools")
            .arg(root().join("examples/tools/fractera.json"))
            .args(["--record", record.to_str().unwrap()]),
    );
    for id in 1..=2 {
        s.send(&call(id, "retry_deploy", r#"{"server_token":"t"}"#));
        let reply = s.recv_json();
        assert_eq!(
            decision(&reply).as_deref(),
            Some("audit_unavailable"),
            "{reply}"
        );
    }
    assert_eq!(s.wait().code(), Some(0));
    let calls = std::fs::read_to_string(&record).unwrap_or_default();
    assert!(!calls.contains("tools/call"), "{calls}");
    assert!(
        s.stderr().contains("cannot write the audit log"),
        "{}",
        s.stderr()
    );
}

#[test]
fn an_audit_path_that_cannot_be_opened_stops_before_the_server_starts() {
    let dir = temp_dir("audit-bad-path");
    let record = dir.join("record");
    let mut s = Session::start(
        toolwarden()
            .arg("--policy")
            .arg(root().join("policies/fractera.json"))
            .args(["--audit", "/nonexistent/dir/audit.jsonl", "--"])
            .arg(mock_server())
            .args(["--record", record.to_str().unwrap()]),
    );
    assert_eq!(s.wait().code(), Some(2));
    assert!(
        s.stderr()
            .contains("/nonexistent/dir/audit.jsonl: cannot open the audit log"),
        "{}",
        s.stderr()
    );
    assert!(!record.exists());
}

#[test]
fn secrets_stay_out_in_every_encoding_and_usual_spelling() {
    let dir = temp_dir("audit-encodings");
    let audit = dir.join("audit.jsonl");
    let policy = dir.join("policy.json");
    // Every string must be an integer: each error message quotes a value.
    std::fs::write(
        &policy,
        r#"{"version":"1","default":"allow","tools":{"strict":{"arguments":{
            "type":"object","additionalProperties":{"type":"integer"},
            "properties":{"headers":{"type":"array","items":{"type":"object","properties":{"value":{"type":"integer"}}}}}}}}}"#,
    )
    .unwrap();
    let mut s = Session::start(
        toolwarden()
            .arg("--policy")
            .arg(&policy)
            .arg("--audit")
            .arg(&audit)
            .args(["--log-level", "trace", "--"])
            .arg(mock_server()),
    );
    let secrets = [
        r#"pa"ss\word-SECRET-1"#,
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7",
        "tokens-SECRET-2",
        "accesstoken-SECRET-3",
        "clientsecret-SECRET-4",
        "basic-SECRET-5",
        "url-SECRET-6",
        "pg-SECRET-7",
        "env-SECRET-8",
    ];
    let arguments = json!({
        "password": secrets[0],
        "private_key": format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", secrets[1]),
        "tokens": [secrets[2]],
        "accesstoken": secrets[3],
        "ClientSecret": secrets[4],
        "headers": [{"name": "Authorization", "value": format!("Basic {}", secrets[5])}],
        "repo": format!("https://deploy:{}@git.example/repo.git", secrets[6]),
        "dsn": format!("postgres://app:{}@db.internal:5432/app", secrets[7]),
        "env": [format!("DB_PASSWORD={}", secrets[8]), "LOG_LEVEL=debug"],
    });
    s.send(&call(1, "strict", &arguments.to_string()));
    let reply = s.recv_json();
    assert_eq!(decision(&reply).as_deref(), Some("invalid_arguments"));
    // The same arguments pass where no schema checks them.
    s.send(&call(2, "lenient", &arguments.to_string()));
    s.recv_json();
    // A tool name cannot forge a log line.
    s.send(&call(
        3,
        "x\nFORGED ERROR toolwarden: all checks disabled",
        "{}",
    ));
    s.recv_json();
    assert_eq!(s.wait().code(), Some(0));

    let text = std::fs::read_to_string(&audit).unwrap();
    let stderr = s.stderr();
    for secret in secrets {
        let escaped = serde_json::to_string(secret).unwrap();
        let escaped = escaped.trim_matches('"');
        for form in [secret, escaped] {
            assert!(!text.contains(form), "{form} is in the audit log:\n{text}");
            assert!(!stderr.contains(form), "{form} is on stderr");
        }
    }
    let events = events(&audit);
    let shown = &events[0]["arguments"];
    assert_eq!(
        shown["env"],
        json!(["DB_PASSWORD=[redacted]", "LOG_LEVEL=debug"])
    );
    assert_eq!(
        shown["repo"],
        "https://deploy:[redacted]@git.example/repo.git"
    );
    assert_eq!(shown["headers"][0]["name"], "Authorization");
    assert!(
        events[0]["errors"].as_array().unwrap().len() >= 5,
        "{}",
        events[0]
    );
    assert!(
        !stderr.lines().any(|l| l.starts_with("FORGED")),
        "a tool name forged a log line:\n{stderr}"
    );
}

/// A real log: two sessions appended to one file, each with 4 decisions
/// and 3 results, under the audit key in `dir`'s state directory.
fn two_sessions(dir: &std::path::Path) -> String {
    let audit = dir.join("audit.jsonl");
    for _ in 0..2 {
        let mut s = Session::start(
            guarded_mock_with(
                "policies/genieacs.json",
                "examples/tools/genieacs.json",
                &["--audit".as_ref(), audit.as_os_str()],
                &[],
            )
            .env("XDG_STATE_HOME", dir.join("state")),
        );
        s.send(&initialize("2025-06-18"));
        s.recv();
        for id in 1..=3 {
            s.send(&call(
                id,
                "retry_task",
                r#"{"task_id":"5f1a2b3c4d5e6f7a8b9c0d1e"}"#,
            ));
            s.recv();
        }
        s.send(&call(4, "reboot", "{}"));
        s.recv();
        assert_eq!(s.wait().code(), Some(0));
    }
    std::fs::read_to_string(&audit).unwrap()
}

/// `toolwarden audit verify` on `content`, as `checked.jsonl`, with the
/// audit key of [`two_sessions`] in its usual place: its exit code and its
/// output.
fn verify_in(dir: &std::path::Path, content: &str) -> (i32, String) {
    verify_with(dir, content, &[])
}

fn verify_with(
    dir: &std::path::Path,
    content: &str,
    options: &[&std::ffi::OsStr],
) -> (i32, String) {
    let file = dir.join("checked.jsonl");
    std::fs::write(&file, content).unwrap();
    let out = toolwarden()
        .env("XDG_STATE_HOME", dir.join("state"))
        .args(["audit", "verify"])
        .args(options)
        .arg(&file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn audit_verify_passes_a_real_log_and_names_the_line_that_was_touched() {
    let dir = temp_dir("audit-chain");
    let text = two_sessions(&dir);
    let lines: Vec<&str> = text.lines().collect();
    // Per session: start, 4 decisions, 3 results, end.
    assert_eq!(lines.len(), 18, "{text}");
    let verify = |content: &str| verify_in(&dir, content);
    let (code, out) = verify(&text);
    assert_eq!(
        (code, out.as_str()),
        (0, "ok: 18 lines, 2 sessions, every chain holds\n")
    );
    let joined = |lines: &[String]| lines.join("\n") + "\n";
    let owned: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();

    let mut edited = owned.clone();
    edited[3] = edited[3].replace("\"allowed\"", "\"denied\"");
    assert_ne!(edited[3], owned[3]);
    let (code, out) = verify(&joined(&edited));
    assert_eq!(code, 1);
    assert!(out.contains("checked.jsonl:4: changed"), "{out}");

    let mut deleted = owned.clone();
    deleted.remove(5);
    let (code, out) = verify(&joined(&deleted));
    assert_eq!(code, 1);
    assert!(
        out.contains("checked.jsonl:5: changed, or a line after it was removed"),
        "{out}"
    );

    let mut swapped = owned.clone();
    swapped.swap(2, 3);
    let (code, out) = verify(&joined(&swapped));
    assert_eq!(code, 1);
    assert!(out.contains("checked.jsonl:3: out of order"), "{out}");
}

#[test]
fn audit_verify_names_a_half_written_line_and_checks_the_lines_after_it() {
    let dir = temp_dir("audit-torn");
    let text = two_sessions(&dir);
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let joined = |lines: &[String]| lines.join("\n") + "\n";
    // What a write that failed 40 bytes into a line leaves: the line is
    // not in the chain, so the session's next line chains to the one
    // before it.
    let piece = lines[3][..40].to_owned();

    // An older toolwarden glued the next line to the piece.
    let mut glued = lines.clone();
    glued[3] = format!("{piece}{}", glued[3]);
    let (code, out) = verify_in(&dir, &joined(&glued));
    assert_eq!(code, 1, "{out}");
    let broken: Vec<&str> = out.lines().filter(|l| l.starts_with("broken:")).collect();
    assert_eq!(broken.len(), 1, "{out}");
    assert!(
        broken[0].ends_with("checked.jsonl:4: not a whole audit line (a write cut short, or an edit): the line glued to its end is checked"),
        "{out}"
    );

    // The piece alone on its line, as stderr gets it today; an edit far
    // after it is still found.
    let mut torn = lines.clone();
    torn.insert(3, piece);
    torn[13] = torn[13].replacen("\"ts\":\"2", "\"ts\":\"1", 1);
    let (code, out) = verify_in(&dir, &joined(&torn));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("checked.jsonl:4: not a whole audit line"),
        "{out}"
    );
    assert!(
        out.contains("checked.jsonl:14: changed, or a line after it was removed"),
        "{out}"
    );
}

/// A session as a toolwarden from before keyed chains wrote it: anyone can
/// write one.
fn unkeyed_session(session: &str) -> String {
    let hex = |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
    let mut prev: Option<String> = None;
    let mut out = String::new();
    for (i, rest) in [
        r#""event":"session_start","nonce":"00""#,
        r#""event":"decision","tool":"reboot","decision":"allowed""#,
        r#""event":"session_end","lines":2"#,
    ]
    .iter()
    .enumerate()
    {
        let chained = prev
            .map(|p| format!(r#""prev":"{p}","#))
            .unwrap_or_default();
        let line = format!(
            r#"{{{chained}"ts":"2026-11-28T00:00:0{i}.000Z","session":"{session}","identity":"default",{rest}}}"#
        );
        prev = Some(hex(&sha2::Sha256::digest(line.as_bytes())));
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[test]
fn audit_verify_refuses_a_session_appended_without_the_key() {
    let dir = temp_dir("audit-forged");
    let text = two_sessions(&dir);
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["chain"], "hmac-sha256", "{first}");
    // Someone who can append to the file, but has no key, adds a session.
    let (code, out) = verify_in(&dir, &(text.clone() + &unkeyed_session("f0f0f0f0f0f0f0f0")));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("checked.jsonl:19: session f0f0f0f0f0f0f0f0 is chained without a key, after sessions chained with one"),
        "{out}"
    );
    // A log from before keyed chains still verifies, and says what that is
    // worth.
    let (code, out) = verify_in(&dir, &unkeyed_session("0123456789abcdef"));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("note: session 0123456789abcdef is chained without a key"),
        "{out}"
    );
}

#[test]
fn audit_verify_checks_a_log_from_another_machine_with_its_key() {
    let dir = temp_dir("audit-key");
    let text = two_sessions(&dir);
    let elsewhere = temp_dir("audit-key-elsewhere");
    let key = dir.join("state/toolwarden/audit.key");
    let key_copy = elsewhere.join("their.key");
    std::fs::copy(&key, &key_copy).unwrap();
    // Without the key, nothing is proven.
    let (code, out) = verify_in(&elsewhere, &text);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("which was not given (--key FILE)"), "{out}");
    assert!(!elsewhere.join("state/toolwarden/audit.key").exists());
    let (code, out) = verify_with(&elsewhere, &text, &["--key".as_ref(), key_copy.as_os_str()]);
    assert_eq!(
        (code, out.as_str()),
        (0, "ok: 18 lines, 2 sessions, every chain holds\n")
    );
}

#[test]
fn with_the_audit_log_on_stderr_the_server_cannot_write_a_record() {
    let dir = temp_dir("audit-stderr");
    let forged = unkeyed_session("f0f0f0f0f0f0f0f0");
    let mut mock_args: Vec<&str> = forged.lines().flat_map(|l| ["--stderr", l]).collect();
    mock_args.extend(["--stderr", "mock: ready"]);
    let run = |audit: &[&std::ffi::OsStr]| {
        let mut s = Session::start(
            guarded_mock_with(
                "policies/genieacs.json",
                "examples/tools/genieacs.json",
                audit,
                &mock_args,
            )
            .env("XDG_STATE_HOME", dir.join("state")),
        );
        s.send(&initialize("2025-06-18"));
        s.recv();
        s.send(&call(1, "reboot", "{}"));
        s.recv();
        assert_eq!(s.wait().code(), Some(0));
        s.stderr()
    };
    let stderr = run(&["--audit".as_ref(), "-".as_ref()]);
    // The records are the lines that are JSON objects: only toolwarden's.
    let records: String = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| format!("{l}\n"))
        .collect();
    let (code, out) = verify_in(&dir, &records);
    assert_eq!(
        (code, out.as_str()),
        (0, "ok: 3 lines, 1 session, every chain holds\n"),
        "{stderr}"
    );
    for line in forged.lines().chain(["mock: ready"]) {
        assert!(
            stderr.lines().any(|l| l == format!("[server] {line}")),
            "{line} is not labelled:\n{stderr}"
        );
    }
    // With the audit log elsewhere, the server's stderr passes as it is.
    let audit = dir.join("audit.jsonl");
    let stderr = run(&["--audit".as_ref(), audit.as_os_str()]);
    assert!(stderr.lines().any(|l| l == "mock: ready"), "{stderr}");
    assert!(!stderr.contains("[server]"), "{stderr}");
}
