//! `toolwarden report` on audit logs of real sessions: the mock server
//! behind toolwarden with `--audit`, a log rotated into two files and cut
//! short in its last line, approvals answered in the client and in the
//! inbox, and the page rendered by headless Chromium.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

/// The audit tests' policy: a limit, a schema, an approval and a deny.
use crate::audit::POLICY;

/// In the calls' arguments: no form of the report may show them.
const SECRET: &str = "srv_live_8f2a61c0_SECRET_TOKEN_1";
const SHORT_SECRET: &str = "short-SECRET";

/// A name an agent could send: the page must show it as text.
const HOSTILE: &str = "<img src=x onerror=alert(1)>";

fn report(args: &[&std::ffi::OsStr]) -> Output {
    toolwarden().arg("report").args(args).output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json_report(args: &[&std::ffi::OsStr]) -> Value {
    let mut all = vec!["--json".as_ref()];
    all.extend(args);
    serde_json::from_str(&stdout(&report(&all))).unwrap()
}

/// toolwarden around the mock server with [`POLICY`], its client able to
/// show approval forms, auditing to `audit`.
fn session(dir: &Path, audit: &Path, identity: &str, mock_args: &[&str]) -> Session {
    let policy = dir.join("policy.json");
    std::fs::write(&policy, POLICY).unwrap();
    let mut s = Session::start(
        toolwarden()
            .env("XDG_STATE_HOME", dir.join("state"))
            .arg("--policy")
            .arg(&policy)
            .arg("--audit")
            .arg(audit)
            .args(["--identity", identity, "--state", "memory", "--"])
            .arg(mock_server())
            .arg("--tools")
            .arg(root().join("examples/tools/fractera.json"))
            .args(mock_args),
    );
    s.send(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"elicitation":{}},"clientInfo":{"name":"t","version":"1"}}}"#);
    s.recv();
    s.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    s
}

fn ask(s: &mut Session, id: u64, tool: &str, args: &str) -> Option<String> {
    let answer = s.request(&call(id, tool, args), &json!(id), |_, _, _| {});
    decision(&serde_json::from_str(&answer).unwrap())
}

/// Answers the approval form the next call brings up.
fn approve_in_client(s: &mut Session, id: u64, tool: &str, yes: bool) -> Option<String> {
    s.send(&call(id, tool, r#"{"session_id":"s-1"}"#));
    let prompt = s.recv_json();
    assert_eq!(prompt["method"], "elicitation/create", "{prompt}");
    let content = json!({ "approve": yes });
    s.send(
        &json!({"jsonrpc": "2.0", "id": prompt["id"], "result": {"action": "accept", "content": content}})
            .to_string(),
    );
    decision(&s.recv_json())
}

/// Two real sessions in one log: the first with one call of every kind,
/// the second slow (the server takes 150 ms a call) under another
/// identity. Returns the log's text.
fn two_sessions(dir: &Path) -> String {
    let audit = dir.join("whole.jsonl");
    let token = format!(r#"{{"server_token":"{SECRET}"}}"#);
    let mut s = session(dir, &audit, "ci-agent", &[]);
    assert_eq!(ask(&mut s, 1, "retry_deploy", &token), None);
    assert_eq!(ask(&mut s, 2, "retry_deploy", &token), None);
    assert_eq!(
        ask(&mut s, 3, "retry_deploy", &token).as_deref(),
        Some("rate_limited")
    );
    let short = format!(r#"{{"server_token":"{SHORT_SECRET}"}}"#);
    assert_eq!(
        ask(&mut s, 4, "retry_deploy", &short).as_deref(),
        Some("invalid_arguments")
    );
    assert_eq!(
        ask(&mut s, 5, "drop_database", "{}").as_deref(),
        Some("denied")
    );
    assert_eq!(
        ask(&mut s, 6, HOSTILE, "{}").as_deref(),
        Some("not_allowed")
    );
    assert_eq!(approve_in_client(&mut s, 7, "check_status", true), None);
    assert_eq!(
        approve_in_client(&mut s, 8, "check_status", false).as_deref(),
        Some("approval_declined")
    );
    assert_eq!(s.wait().code(), Some(0));

    let mut s = session(dir, &audit, "laptop", &["--slow-ms", "150"]);
    assert_eq!(ask(&mut s, 1, "retry_deploy", &token), None);
    assert_eq!(ask(&mut s, 2, "retry_deploy", &token), None);
    assert_eq!(
        ask(&mut s, 3, "drop_database", "{}").as_deref(),
        Some("denied")
    );
    assert_eq!(s.wait().code(), Some(0));
    std::fs::read_to_string(&audit).unwrap()
}

/// The log rotated into two files, the newer one cut short in the middle
/// of its last decision, as a write cut off by a crash leaves it; the
/// lines after that decision are gone.
fn rotated_and_cut(dir: &Path, log: &str) -> (PathBuf, PathBuf) {
    let lines: Vec<&str> = log.lines().collect();
    let last_decision = lines
        .iter()
        .rposition(|l| l.contains(r#""event":"decision""#))
        .unwrap();
    assert!(lines[last_decision].contains("drop_database"));
    let split = lines.len() / 2;
    let (older, newer) = (dir.join("audit.jsonl.1"), dir.join("audit.jsonl"));
    std::fs::write(&older, lines[..split].join("\n") + "\n").unwrap();
    let cut = &lines[last_decision][..lines[last_decision].len() / 2];
    let newer_text = lines[split..last_decision].join("\n") + "\n" + cut;
    std::fs::write(&newer, newer_text).unwrap();
    (older, newer)
}

fn tool<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tool"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

#[test]
fn report_sums_up_real_sessions_across_rotated_files_and_a_cut_last_line() {
    let dir = temp_dir("report-rotated");
    let log = two_sessions(&dir);
    let (older, newer) = rotated_and_cut(&dir, &log);
    let r = json_report(&[older.as_os_str(), newer.as_os_str()]);

    let files = r["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["skipped"], 0);
    assert_eq!(files[1]["skipped"], 1, "{r}");
    let cut_line = files[1]["lines"].as_u64().unwrap();
    assert_eq!(
        files[1]["problems"],
        json!([{"line": cut_line, "why": "cut_short"}])
    );
    assert_eq!(r["sessions"], 2);
    // 8 calls in the first session, 2 of the second's 3 (its last is cut).
    assert_eq!(
        (r["calls"].as_u64(), r["allowed"].as_u64()),
        (Some(10), Some(5))
    );

    let retry = tool(&r, "retry_deploy");
    assert_eq!(retry["calls"], 6);
    assert_eq!(retry["allowed"], 4);
    assert_eq!(
        retry["refused"],
        json!({"rate_limited": 1, "invalid_arguments": 1})
    );
    assert_eq!(retry["results"], 4);
    // Two calls answered at once, two after 150 ms: nearest rank.
    let (p50, p95) = (
        retry["p50_ms"].as_f64().unwrap(),
        retry["p95_ms"].as_f64().unwrap(),
    );
    assert!(p50 < 150.0, "{retry}");
    assert!((150.0..10_000.0).contains(&p95), "{retry}");

    let check = tool(&r, "check_status");
    assert_eq!(
        (check["calls"].as_u64(), check["held"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(check["refused"], json!({"approval_declined": 1}));
    assert_eq!(
        check["approvals"],
        json!([
            {"channel": "elicitation", "answer": "approved", "by": "client", "count": 1},
            {"channel": "elicitation", "answer": "denied", "by": "client", "count": 1},
        ])
    );
    let drop = tool(&r, "drop_database");
    assert_eq!(
        drop["refused"],
        json!({"denied": 1}),
        "the cut one is not counted"
    );
    assert_eq!(tool(&r, HOSTILE)["refused"], json!({"not_allowed": 1}));

    let reasons = r["refusals"].as_array().unwrap();
    assert!(reasons.contains(&json!({"decision": "denied", "rule": "drop_database", "reason": "never from an agent", "count": 1})), "{reasons:?}");
    assert_eq!(r["counters"], json!([{"counter": "deploys", "count": 1}]));
    assert_eq!(
        r["identities"],
        json!([
            {"identity": "ci-agent", "calls": 8, "allowed": 3, "refused": 5},
            {"identity": "laptop", "calls": 2, "allowed": 2, "refused": 0},
        ])
    );

    // Rotation changes nothing: the same lines in one file read the same.
    let one = dir.join("one.jsonl");
    let joined =
        std::fs::read_to_string(&older).unwrap() + &std::fs::read_to_string(&newer).unwrap();
    std::fs::write(&one, joined).unwrap();
    let single = json_report(&[one.as_os_str()]);
    for field in [
        "tools",
        "refusals",
        "counters",
        "identities",
        "timeline",
        "calls",
    ] {
        assert_eq!(single[field], r[field], "{field}");
    }

    // The table says the same, and names the cut line.
    let text = stdout(&report(&[older.as_os_str(), newer.as_os_str()]));
    assert!(
        text.starts_with("2 files, 2 sessions, 10 calls (5 allowed, 5 refused), "),
        "{text}"
    );
    let cut_note = format!(
        "{}:{cut_line}: skipped: the last line is cut short",
        newer.display()
    );
    assert!(text.contains(&cut_note), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with("check_status "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.ends_with("approved 1, denied 1"), "{row}");
    assert!(text.contains("  elicitation  approved  client"), "{text}");
    assert!(text.contains("never from an agent"), "{text}");
    assert!(
        text.contains("\ncounters that ran out:\n  times  counter\n      1  deploys\n"),
        "{text}"
    );
    for form in [&text, &r.to_string()] {
        assert!(
            !form.contains(SECRET) && !form.contains(SHORT_SECRET),
            "{form}"
        );
        assert!(
            !form.contains("args_hmac") && !form.contains("[redacted]"),
            "{form}"
        );
    }
}

#[test]
fn since_keeps_the_recent_events_and_a_bad_path_or_time_is_said() {
    let dir = temp_dir("report-since");
    let audit = dir.join("audit.jsonl");
    let mut s = session(&dir, &audit, "default", &[]);
    assert_eq!(
        ask(&mut s, 1, "drop_database", "{}").as_deref(),
        Some("denied")
    );
    assert_eq!(s.wait().code(), Some(0));
    let recent = json_report(&["--since".as_ref(), "1h".as_ref(), audit.as_os_str()]);
    assert_eq!(recent["calls"], 1);
    let future = json_report(&[
        "--since".as_ref(),
        "2999-01-01T00:00:00Z".as_ref(),
        audit.as_os_str(),
    ]);
    assert_eq!(
        (future["calls"].as_u64(), future["events"].as_u64()),
        (Some(0), Some(0))
    );
    let text = stdout(&report(&[
        "--since".as_ref(),
        "2999-01-01".as_ref(),
        audit.as_os_str(),
    ]));
    assert_eq!(
        text,
        "1 file, 0 sessions, 0 calls (0 allowed, 0 refused), no events (since 2999-01-01T00:00:00Z)\n"
    );

    let bad = report(&["--since".as_ref(), "soon".as_ref(), audit.as_os_str()]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("soon: neither a duration"));
    let missing = dir.join("missing.jsonl");
    let out = report(&[audit.as_os_str(), missing.as_os_str()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("missing.jsonl: No such file"), "{said}");
}

/// `toolwarden approvals ARGS...` with its state in `home`.
fn approvals(home: &Path, args: &[&str]) -> Output {
    toolwarden()
        .env("XDG_STATE_HOME", home)
        .arg("approvals")
        .args(args)
        .output()
        .unwrap()
}

/// The id of the call waiting in the inbox, once there is one.
fn waiting(home: &Path) -> String {
    let start = Instant::now();
    loop {
        let out = approvals(home, &["list", "--json"]);
        let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(first) = list.first() {
            return first["id"].as_str().unwrap().to_owned();
        }
        assert!(start.elapsed() < PATIENCE, "no call waiting");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn report_names_who_answered_approvals_in_the_inbox() {
    let dir = temp_dir("report-inbox");
    let home = state_home("report-inbox");
    let audit = dir.join("audit.jsonl");
    let policy = r#"{"version":"1","default":"allow","tools":{"retry_deploy":{"action":"approve","redact":["/server_token"]}}}"#;
    // A client without elicitation: held calls wait in the inbox.
    let mut s = Session::start(
        guarded_mock_with(
            policy,
            "examples/tools/fractera.json",
            &["--audit".as_ref(), audit.as_os_str()],
            &[],
        )
        .env("XDG_STATE_HOME", &home),
    );
    s.send(&initialize("2025-11-25"));
    s.recv_json();
    s.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let token = format!(r#"{{"server_token":"{SECRET}"}}"#);
    s.send(&call(1, "retry_deploy", &token));
    let id = waiting(&home);
    assert!(approvals(&home, &["approve", &id]).status.success());
    assert_eq!(decision(&s.recv_json()), None);
    s.send(&call(2, "retry_deploy", r#"{"server_token":"other"}"#));
    let id = waiting(&home);
    let denied = approvals(&home, &["deny", &id, "--reason", "not during the freeze"]);
    assert!(denied.status.success());
    assert_eq!(
        decision(&s.recv_json()).as_deref(),
        Some("approval_declined")
    );
    assert_eq!(s.wait().code(), Some(0));

    let who = toolwarden::inbox::approver();
    let r = json_report(&[audit.as_os_str()]);
    let retry = tool(&r, "retry_deploy");
    assert_eq!(
        (retry["calls"].as_u64(), retry["allowed"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        retry["approvals"],
        json!([
            {"channel": "inbox", "answer": "approved", "by": who, "count": 1},
            {"channel": "inbox", "answer": "denied", "by": who, "count": 1},
        ])
    );
    assert_eq!(retry["refused"], json!({"approval_declined": 1}));
    let text = stdout(&report(&[audit.as_os_str()]));
    assert!(
        text.contains(&format!("retry_deploy  inbox  approved  {who}")),
        "{text}"
    );
    assert!(!text.contains(SECRET), "{text}");
}

#[test]
fn the_page_renders_in_headless_chromium_and_shows_its_charts() {
    let chromium = Path::new("/usr/bin/chromium");
    let python = root().join("tests/python/.venv/bin/python");
    for needed in [chromium, python.as_path()] {
        assert!(
            needed.exists(),
            "{} is missing: run tests/setup",
            needed.display()
        );
    }
    let dir = temp_dir("report-page");
    let log = two_sessions(&dir);
    let (older, newer) = rotated_and_cut(&dir, &log);
    let page = dir.join("report.html");
    let out = report(&[
        "--html".as_ref(),
        page.as_os_str(),
        older.as_os_str(),
        newer.as_os_str(),
    ]);
    stdout(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrote"));
    let html = std::fs::read_to_string(&page).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&page).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    for absent in [SECRET, SHORT_SECRET, "<img", "<script", "http:", "https:"] {
        assert!(!html.contains(absent), "{absent} in the page");
    }
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    for title in ["Calls over time", "Refusals by reason", "Latency by tool"] {
        assert!(html.contains(title), "{title}");
    }

    let screenshot = dir.join("report.png");
    let shot = std::process::Command::new(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1200,1600",
        ])
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        shot.status.success() && screenshot.exists(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    // The page's background (its style sheet applied under its CSP), the
    // allowed and denied bars, and the p95 bars are on it.
    let (background, allowed, denied, p95) = ("#f3f4f6", "#2e7d32", "#c62828", "#b3cde8");
    let seen = std::process::Command::new(&python)
        .arg(root().join("tests/python/png_pixels.py"))
        .arg(&screenshot)
        .args([background, allowed, denied, p95])
        .output()
        .unwrap();
    assert!(
        seen.status.success(),
        "{}",
        String::from_utf8_lossy(&seen.stderr)
    );
    let seen: Value = serde_json::from_slice(&seen.stdout).unwrap();
    assert_eq!(
        (seen["width"].as_u64(), seen["height"].as_u64()),
        (Some(1200), Some(1600))
    );
    assert!(seen["distinct"].as_u64().unwrap() > 50, "{seen}");
    assert!(seen["not_white"].as_f64().unwrap() > 0.2, "{seen}");
    for colour in [background, allowed, denied, p95] {
        assert!(
            seen["colours"][colour].as_u64().unwrap() > 200,
            "{colour} is not on the page: {seen}"
        );
    }
}
