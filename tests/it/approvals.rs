//! Approval out of band: a client that cannot ask gets its call held in
//! the inbox, and a person decides with `toolwarden approvals` from
//! another process that shares the state store.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

mod page;

const POLICY: &str = r#"{"version":"1","default":"allow","tools":{"retry_deploy":{"action":"approve","redact":["/server_token"]}}}"#;

/// A session around the mock server whose client declares no
/// elicitation, with its state in `home`; `options` go to toolwarden.
fn session(home: &Path, record: &Path, options: &[&str]) -> Session {
    let options: Vec<&std::ffi::OsStr> = options.iter().map(|o| o.as_ref()).collect();
    let mut cmd = guarded_mock_with(
        POLICY,
        "examples/tools/fractera.json",
        &options,
        &["--record", record.to_str().unwrap()],
    );
    cmd.env("XDG_STATE_HOME", home);
    let mut s = Session::start(&mut cmd);
    s.send(&initialize("2025-11-25"));
    s.recv_json();
    s.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    s
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

/// The calls waiting, once there are `n` of them.
fn waiting(home: &Path, n: usize) -> Vec<Value> {
    waiting_in(home, &[], n)
}

/// [`waiting`] with more options for `approvals list` (a `--state`).
fn waiting_in(home: &Path, options: &[&str], n: usize) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let out = approvals(home, &[&["list", "--json"], options].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        if list.len() >= n {
            return list;
        }
        assert!(start.elapsed() < PATIENCE, "no {n} calls waiting: {list:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn calls_reached(record: &Path) -> usize {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("tools/call"))
        .count()
}

const TOKEN: &str = r#"{"server_token":"srv_live_8f2a61c0"}"#;

#[test]
fn a_held_call_is_approved_from_another_process() {
    let dir = temp_dir("inbox-approve");
    let (home, record) = (state_home("inbox-approve"), dir.join("record"));
    let audit = dir.join("audit.jsonl");
    let mut s = session(&home, &record, &["--audit", audit.to_str().unwrap()]);
    s.send(&call(1, "retry_deploy", TOKEN));
    let list = waiting(&home, 1);
    let pending = &list[0];
    assert_eq!(pending["tool"], "retry_deploy");
    assert_eq!(pending["identity"], "default");
    assert_eq!(pending["status"], "pending");
    // A person sees the redacted arguments, never the secret.
    assert_eq!(pending["arguments"]["server_token"], "[redacted]");
    assert!(!String::from_utf8_lossy(&approvals(&home, &["list"]).stdout).contains("srv_live"));
    for field in ["id", "requested_at", "expires_at", "server", "namespace"] {
        assert!(pending[field].is_string(), "{field}: {pending}");
    }
    assert_eq!(calls_reached(&record), 0, "held calls wait");

    let id = pending["id"].as_str().unwrap();
    let out = approvals(&home, &["approve", id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = s.recv_json();
    assert_eq!(answer["id"], 1);
    assert_eq!(decision(&answer), None, "{answer}");
    assert!(answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("called retry_deploy"));
    assert_eq!(calls_reached(&record), 1);
    // Decided once: a second yes (or a no) is refused with what happened
    // and who decided, and changes nothing.
    let before = approvals(&home, &["list", "--all", "--json"]).stdout;
    for second in [&["approve", id][..], &["deny", id, "--reason", "late"]] {
        let again = approvals(&home, second);
        assert_eq!(again.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&again.stderr),
            format!(
                "toolwarden: {id}: this call was approved already, by {}, and has been made\n",
                toolwarden::inbox::approver()
            )
        );
    }
    assert_eq!(
        approvals(&home, &["list", "--all", "--json"]).stdout,
        before
    );
    s.close_stdin();
    assert_eq!(s.wait().code(), Some(0));
    // The audit log says how the person was asked, what they said, and who.
    let events: Vec<Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let approval = events
        .iter()
        .find(|e| e["event"] == "approval")
        .unwrap_or_else(|| panic!("no approval event: {events:?}"));
    assert_eq!(approval["channel"], "inbox");
    assert_eq!(approval["answer"], "approved");
    assert_eq!(approval["approval_id"], id);
    assert_eq!(approval["by"], toolwarden::inbox::approver());
    let decisions: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "decision")
        .map(|e| e["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["approval_requested", "approved"]);
}

#[test]
fn a_held_call_is_denied_with_the_reason() {
    let (home, record) = (
        state_home("inbox-deny"),
        temp_dir("inbox-deny").join("record"),
    );
    let mut s = session(&home, &record, &[]);
    s.send(&call(1, "retry_deploy", TOKEN));
    let id = waiting(&home, 1)[0]["id"].as_str().unwrap().to_owned();
    let out = approvals(&home, &["deny", &id, "--reason", "not during the freeze"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = s.recv_json();
    assert_eq!(
        decision(&answer).as_deref(),
        Some("approval_declined"),
        "{answer}"
    );
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("not during the freeze"), "{text}");
    // The same call again is declined too, not filed afresh.
    s.send(&call(2, "retry_deploy", TOKEN));
    assert_eq!(
        decision(&s.recv_json()).as_deref(),
        Some("approval_declined")
    );
    s.close_stdin();
    s.wait();
    assert_eq!(calls_reached(&record), 0);
}

#[test]
fn an_approval_given_after_the_hold_is_redeemed_once_by_the_same_call() {
    let (home, record) = (
        state_home("inbox-redeem"),
        temp_dir("inbox-redeem").join("record"),
    );
    let mut s = session(&home, &record, &["--approval-hold", "1s"]);
    s.send(&call(1, "retry_deploy", TOKEN));
    let answer = s.recv_json();
    assert_eq!(
        decision(&answer).as_deref(),
        Some("approval_pending"),
        "{answer}"
    );
    let meta = &answer["result"]["_meta"]["toolwarden/decision"];
    let id = meta["approval_id"].as_str().unwrap().to_owned();
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("toolwarden approvals approve {id}")),
        "{text}"
    );

    let out = approvals(&home, &["approve", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Other arguments are not covered by it.
    s.send(&call(2, "retry_deploy", r#"{"server_token":"srv_other"}"#));
    let other = s.recv_json();
    assert_eq!(
        decision(&other).as_deref(),
        Some("approval_pending"),
        "{other}"
    );
    assert_ne!(
        other["result"]["_meta"]["toolwarden/decision"]["approval_id"],
        id.as_str()
    );
    // The same call, from another session, redeems it.
    s.close_stdin();
    s.wait();
    let mut s = session(&home, &record, &["--approval-hold", "1s"]);
    s.send(&call(
        3,
        "retry_deploy",
        r#"{ "server_token" : "srv_live_8f2a61c0" }"#,
    ));
    let redeemed = s.recv_json();
    assert_eq!(decision(&redeemed), None, "{redeemed}");
    assert_eq!(calls_reached(&record), 1);
    // Once: the next try waits for a person again.
    s.send(&call(4, "retry_deploy", TOKEN));
    let next = s.recv_json();
    assert_eq!(
        decision(&next).as_deref(),
        Some("approval_pending"),
        "{next}"
    );
    assert_ne!(
        next["result"]["_meta"]["toolwarden/decision"]["approval_id"],
        id.as_str()
    );
    s.close_stdin();
    s.wait();
    assert_eq!(calls_reached(&record), 1);
}

#[test]
fn approvals_says_what_is_wrong_with_an_id_and_a_store() {
    let home = state_home("inbox-errors");
    let _ = std::fs::remove_dir_all(&home);
    // Nothing filed yet: nothing is created either.
    let out = approvals(&home, &["list"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("No calls are waiting"));
    assert!(!home.exists(), "listing created the store");
    let (_, record) = (0, temp_dir("inbox-errors").join("record"));
    let mut s = session(&home, &record, &[]);
    s.send(&call(1, "retry_deploy", TOKEN));
    waiting(&home, 1);
    let out = approvals(&home, &["approve", "nosuchid"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no approval has this id"));
    let out = toolwarden()
        .args(["approvals", "list", "--state", "memory"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--state memory"));
    let out = toolwarden()
        .args(["approvals", "watch", "--state", "memory"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--state memory"));
    s.close_stdin();
    s.wait();
    assert_eq!(calls_reached(&record), 0);
}

#[test]
fn with_state_memory_nobody_out_of_band_can_approve() {
    let (home, record) = (
        state_home("inbox-memory"),
        temp_dir("inbox-memory").join("record"),
    );
    let mut s = session(&home, &record, &["--state", "memory"]);
    s.send(&call(1, "retry_deploy", TOKEN));
    let answer = s.recv_json();
    assert_eq!(decision(&answer).as_deref(), Some("approval_unavailable"));
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("--state memory"), "{text}");
    s.close_stdin();
    s.wait();
}

#[test]
fn machines_sharing_a_redis_share_approvals() {
    let dir = temp_dir("inbox-redis");
    let redis = RedisServer::start(&dir);
    let spec = redis.spec();
    let record = dir.join("record");
    // Two machines: state directories apart, one Redis.
    let (one, other) = (
        state_home("inbox-redis-one"),
        state_home("inbox-redis-other"),
    );
    let mut s = session(&one, &record, &["--state", &spec]);
    s.send(&call(1, "retry_deploy", TOKEN));
    let list = waiting_in(&other, &["--state", &spec], 1);
    let id = list[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(list[0]["arguments"]["server_token"], "[redacted]");
    let out = approvals(&other, &["approve", &id, "--state", &spec]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = s.recv_json();
    assert_eq!(decision(&answer), None, "{answer}");
    assert_eq!(calls_reached(&record), 1);
    let again = approvals(&other, &["deny", &id, "--state", &spec]);
    assert_eq!(again.status.code(), Some(1));

    // After the hold, on the other machine: pending, approved, redeemed
    // once by the same call.
    let mut t = session(
        &other,
        &record,
        &["--state", &spec, "--approval-hold", "1s"],
    );
    t.send(&call(2, "retry_deploy", TOKEN));
    let pending = t.recv_json();
    assert_eq!(
        decision(&pending).as_deref(),
        Some("approval_pending"),
        "{pending}"
    );
    let id = pending["result"]["_meta"]["toolwarden/decision"]["approval_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = approvals(&one, &["approve", &id, "--state", &spec]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.send(&call(3, "retry_deploy", TOKEN));
    assert_eq!(decision(&s.recv_json()), None);
    t.send(&call(4, "retry_deploy", TOKEN));
    assert_eq!(
        decision(&t.recv_json()).as_deref(),
        Some("approval_pending")
    );
    assert_eq!(calls_reached(&record), 2);
    for mut session in [s, t] {
        session.close_stdin();
        session.wait();
    }
}

/// The official TypeScript SDK's client, which declares no elicitation,
/// calling retry_deploy through toolwarden twice (the second time after
/// a line on its stdin); its results, a JSON line each.
fn typescript_client(name: &str, home: &Path, record: &Path, options: &[&str]) -> Session {
    let policy = temp_dir(name).join("policy.json");
    std::fs::write(&policy, POLICY).unwrap();
    let mut cmd = Command::new("node");
    cmd.current_dir(root().join("tests/npm"))
        .env("XDG_STATE_HOME", home)
        .args(["approve.mjs", "retry_deploy", TOKEN])
        .arg(toolwarden_bin())
        .arg("--policy")
        .arg(&policy)
        .args(options)
        .arg("--")
        .arg(mock_server())
        .args([
            "--tools",
            root()
                .join("examples/tools/fractera.json")
                .to_str()
                .unwrap(),
        ])
        .args(["--record", record.to_str().unwrap()]);
    Session::start(&mut cmd)
}

#[test]
fn the_typescript_sdk_client_gets_a_held_call_approved_and_a_pending_one_redeemed() {
    let dir = temp_dir("inbox-ts");
    let (home, record) = (state_home("inbox-ts"), dir.join("record"));
    // Held, and approved from another process meanwhile.
    // (held long enough to approve it, not so long that the second call,
    // which nobody approves, holds the test up)
    let mut client =
        typescript_client("inbox-ts-held", &home, &record, &["--approval-hold", "15s"]);
    let id = waiting(&home, 1)[0]["id"].as_str().unwrap().to_owned();
    assert!(approvals(&home, &["approve", &id]).status.success());
    let first = client.recv_json();
    assert_eq!(first["isError"], false, "{first}");
    assert!(first["text"]
        .as_str()
        .unwrap()
        .contains("called retry_deploy"));
    assert_eq!(calls_reached(&record), 1);
    client.send("again");
    let second = client.recv_json();
    assert_eq!(second["decision"], "approval_pending", "{second}");
    assert_eq!(client.wait().code(), Some(0));

    // Not decided within the hold: pending, then approved, then the
    // retry is forwarded.
    let mut client = typescript_client(
        "inbox-ts-pending",
        &home,
        &record,
        &["--approval-hold", "1s"],
    );
    let first = client.recv_json();
    let pending = second["approvalId"].as_str().unwrap();
    assert_eq!(first["decision"], "approval_pending", "{first}");
    assert_eq!(
        first["approvalId"], pending,
        "the same call waits on the same approval"
    );
    assert!(approvals(&home, &["approve", pending]).status.success());
    client.send("again");
    let retried = client.recv_json();
    assert_eq!(retried["isError"], false, "{retried}");
    assert_eq!(client.wait().code(), Some(0));
    assert_eq!(calls_reached(&record), 2);
}

/// `toolwarden approvals watch` with its state in `home`, driven through
/// a pipe; `until` reads its output to the line that has `text`.
fn watch(home: &Path) -> Session {
    let mut cmd = toolwarden();
    cmd.env("XDG_STATE_HOME", home).args(["approvals", "watch"]);
    Session::start(&mut cmd)
}

fn until(watch: &mut Session, text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let line = watch.recv();
        let done = line.contains(text);
        lines.push(line);
        if done {
            return lines;
        }
    }
}

#[test]
fn watch_shows_a_held_call_and_a_key_approves_it() {
    let dir = temp_dir("inbox-watch-approve");
    let (home, record) = (state_home("inbox-watch-approve"), dir.join("record"));
    let mut s = session(&home, &record, &[]);
    s.send(&call(1, "retry_deploy", TOKEN));
    let id = waiting(&home, 1)[0]["id"].as_str().unwrap().to_owned();
    let mut w = watch(&home);
    let shown = until(&mut w, "arguments:");
    assert!(
        shown.iter().any(|l| l.starts_with(&format!(
            "{id}  `retry_deploy`  (policy policy, identity default)"
        ))),
        "{shown:?}"
    );
    assert!(shown
        .last()
        .unwrap()
        .contains(r#""server_token":"[redacted]""#));
    assert_eq!(calls_reached(&record), 0);
    w.stdin().write_all(b"a").unwrap();
    w.stdin().flush().unwrap();
    let answer = s.recv_json();
    assert_eq!(decision(&answer), None, "{answer}");
    assert_eq!(calls_reached(&record), 1);
    let said = until(&mut w, "approved");
    assert!(
        said.iter().any(|l| l.contains(&format!(
            "{id} `retry_deploy`: approved: the session holding it forwards it"
        ))),
        "{said:?}"
    );
    // The end of its input ends it.
    w.close_stdin();
    assert_eq!(w.wait().code(), Some(0), "{}", w.stderr());
    s.close_stdin();
    s.wait();
}

#[test]
fn watch_denies_a_held_call_with_the_reason_typed() {
    let dir = temp_dir("inbox-watch-deny");
    let (home, record) = (state_home("inbox-watch-deny"), dir.join("record"));
    let mut s = session(&home, &record, &[]);
    s.send(&call(1, "retry_deploy", TOKEN));
    waiting(&home, 1);
    let mut w = watch(&home);
    until(&mut w, "arguments:");
    w.stdin().write_all(b"d").unwrap();
    w.stdin().flush().unwrap();
    w.send("not during the freeze");
    let answer = s.recv_json();
    assert_eq!(
        decision(&answer).as_deref(),
        Some("approval_declined"),
        "{answer}"
    );
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("not during the freeze"), "{text}");
    until(&mut w, "denied: the agent is told so");
    w.close_stdin();
    assert_eq!(w.wait().code(), Some(0), "{}", w.stderr());
    s.close_stdin();
    s.wait();
    assert_eq!(calls_reached(&record), 0);
}

/// A record in the store that does not read, in SQLite and in Redis:
/// `list` names it and lists the others, `approve` says it cannot be
/// read, and the call it was for is never forwarded on its account.
fn a_record_that_does_not_read(name: &str, options: &[&str], spoil: impl Fn(&str)) {
    let dir = temp_dir(name);
    let (home, record) = (state_home(name), dir.join("record"));
    let mut s = session(
        &home,
        &record,
        &[options, &["--approval-hold", "1s"]].concat(),
    );
    let pending_id = |s: &mut Session, id: u64, arguments: &str| {
        s.send(&call(id, "retry_deploy", arguments));
        let answer = s.recv_json();
        assert_eq!(
            decision(&answer).as_deref(),
            Some("approval_pending"),
            "{answer}"
        );
        answer["result"]["_meta"]["toolwarden/decision"]["approval_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let spoilt = pending_id(&mut s, 1, TOKEN);
    let good = pending_id(&mut s, 2, r#"{"server_token":"srv_other"}"#);
    spoil(&spoilt);
    let unreadable = format!(
        "toolwarden: {spoilt}: this approval's record in the store does not read (it was changed outside toolwarden), so it approves nothing: let the agent make the call again\n"
    );
    let out = approvals(&home, &[&["list"], options].concat());
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), unreadable);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.starts_with(&format!("{good}  `retry_deploy`")),
        "{listed}"
    );
    assert!(!listed.contains(&spoilt), "{listed}");
    let out = approvals(&home, &[&["list", "--json"], options].concat());
    assert_eq!(String::from_utf8_lossy(&out.stderr), unreadable);
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], good.as_str());

    let out = approvals(&home, &[&["approve", &spoilt], options].concat());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not read"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same call again is filed afresh, not forwarded.
    let fresh = pending_id(&mut s, 3, TOKEN);
    assert_ne!(fresh, spoilt);
    s.close_stdin();
    s.wait();
    assert_eq!(calls_reached(&record), 0);
}

#[test]
fn a_row_of_the_sqlite_inbox_that_does_not_read_is_named_and_approves_nothing() {
    let home = state_home("inbox-bad-sqlite");
    let db = home.join("toolwarden/state.db");
    a_record_that_does_not_read("inbox-bad-sqlite", &[], |id| {
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute(
                "UPDATE approvals SET status = 'approved', arguments = 'not json' WHERE id = ?1",
                [id],
            )
            .unwrap();
    });
}

#[test]
fn a_hash_of_the_redis_inbox_that_does_not_read_is_named_and_approves_nothing() {
    let dir = temp_dir("inbox-bad-redis-server");
    let redis = RedisServer::start(&dir);
    let spec = redis.spec();
    let client = ::redis::Client::open(spec.as_str()).unwrap();
    a_record_that_does_not_read("inbox-bad-redis", &["--state", &spec], |id| {
        let _: () = ::redis::cmd("HSET")
            .arg(format!("toolwarden-approvals:id:{id}"))
            .arg(&["status", "approved", "record", "{\"tool\": 1}"])
            .query(&mut client.get_connection().unwrap())
            .unwrap();
    });
}

/// A directory holding a stand-in for a notifier named `name`, whose
/// shell `body` runs with the notifier's arguments; `$OUT` is `out`, and
/// `say ARGS...` writes the arguments to it (whole, whatever PATH holds).
fn notifier(dir: &Path, name: &str, body: &str, out: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let mv = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("mv"))
        .find(|p| p.exists())
        .unwrap();
    let script = bin.join(name);
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nOUT='{}'\nsay() {{ printf '%s\\n' \"$@\" > \"$OUT.part\" && '{}' \"$OUT.part\" \"$OUT\"; }}\n{body}\n",
            out.display(),
            mv.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// [`session`] with `path` first on PATH and a session bus named.
fn session_notified(home: &Path, record: &Path, path: &Path, options: &[&str]) -> Session {
    let options: Vec<&std::ffi::OsStr> = options.iter().map(|o| o.as_ref()).collect();
    let mut cmd = guarded_mock_with(
        POLICY,
        "examples/tools/fractera.json",
        &options,
        &["--record", record.to_str().unwrap()],
    );
    let on_path = std::env::join_paths(std::iter::once(path.to_owned()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    cmd.env("XDG_STATE_HOME", home)
        .env("PATH", on_path)
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus");
    let mut s = Session::start(&mut cmd);
    s.send(&initialize("2025-11-25"));
    s.recv_json();
    s.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    s
}

fn read_when_there(path: &Path) -> String {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return text;
            }
        }
        assert!(
            start.elapsed() < PATIENCE,
            "{} never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_desktop_notification_names_the_tool_and_the_command_that_approves_it() {
    let dir = temp_dir("inbox-notify");
    let (home, record, said) = (
        state_home("inbox-notify"),
        dir.join("record"),
        dir.join("said"),
    );
    let bin = notifier(&dir, "notify-send", r#"say "$@""#, &said);
    let mut s = session_notified(&home, &record, &bin, &[]);
    s.send(&call(1, "retry_deploy", TOKEN));
    let id = waiting(&home, 1)[0]["id"].as_str().unwrap().to_owned();
    let argv = read_when_there(&said);
    assert_eq!(
        argv,
        format!("--app-name=toolwarden\n--\ntoolwarden: a call waits for approval\nretry_deploy waits for your approval: toolwarden approvals approve {id}\n")
    );
    assert!(approvals(&home, &["approve", &id]).status.success());
    assert_eq!(decision(&s.recv_json()), None);
    s.close_stdin();
    assert_eq!(s.wait().code(), Some(0));

    // Off with --no-notify, and without a session bus.
    std::fs::remove_file(&said).unwrap();
    let mut s = session_notified(&home, &record, &bin, &["--no-notify"]);
    s.send(&call(2, "retry_deploy", r#"{"server_token":"srv_2"}"#));
    let mut cmd = guarded_mock_with(POLICY, "examples/tools/fractera.json", &[], &[]);
    cmd.env("XDG_STATE_HOME", &home).env(
        "PATH",
        format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
    );
    let mut t = Session::start(&mut cmd);
    t.send(&initialize("2025-11-25"));
    t.recv_json();
    t.send(&call(3, "retry_deploy", r#"{"server_token":"srv_3"}"#));
    waiting(&home, 2);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !said.exists(),
        "{}",
        std::fs::read_to_string(&said).unwrap()
    );
    for mut session in [s, t] {
        session.close_stdin();
        session.wait();
    }
}

#[test]
fn without_notify_send_gdbus_is_asked_and_a_notifier_that_hangs_or_fails_holds_nothing_up() {
    let dir = temp_dir("inbox-notify-gdbus");
    let (home, record, said) = (
        state_home("inbox-notify-gdbus"),
        dir.join("record"),
        dir.join("said"),
    );
    // gdbus alone on PATH: it gets the call, in GVariant's text form.
    let bin = notifier(&dir, "gdbus", r#"say "$@""#, &said);
    let options: Vec<&std::ffi::OsStr> = vec![];
    let mut cmd = guarded_mock_with(
        POLICY,
        "examples/tools/fractera.json",
        &options,
        &["--record", record.to_str().unwrap()],
    );
    cmd.env("XDG_STATE_HOME", &home)
        .env("PATH", &bin)
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus");
    let mut s = Session::start(&mut cmd);
    s.send(&initialize("2025-11-25"));
    s.recv_json();
    s.send(&call(1, "retry_deploy", TOKEN));
    let id = waiting(&home, 1)[0]["id"].as_str().unwrap().to_owned();
    let argv = read_when_there(&said);
    assert!(
        argv.starts_with("call\n--session\n--dest\norg.freedesktop.Notifications\n"),
        "{argv}"
    );
    assert!(
        argv.contains(&format!(
            "\n\"retry_deploy waits for your approval: toolwarden approvals approve {id}\"\n"
        )),
        "{argv}"
    );
    assert!(approvals(&home, &["approve", &id]).status.success());
    assert_eq!(decision(&s.recv_json()), None);
    s.close_stdin();
    assert_eq!(s.wait().code(), Some(0));

    // One that hangs, one that fails: both write to their stdout what
    // would pass for an answer; the session goes on as if they were not
    // there.
    for (name, body) in [
        (
            "hangs",
            r#"echo '{"jsonrpc":"2.0","id":1,"result":{}}'; exec sleep 5"#,
        ),
        (
            "fails",
            r#"echo '{"jsonrpc":"2.0","id":1,"result":{}}'; echo oops >&2; exit 3"#,
        ),
    ] {
        let sub = dir.join(name);
        let bin = notifier(&sub, "notify-send", body, &said);
        let (home, record) = (
            state_home(&format!("inbox-notify-{name}")),
            sub.join("record"),
        );
        let mut s = session_notified(&home, &record, &bin, &[]);
        let started = Instant::now();
        s.send(&call(1, "retry_deploy", TOKEN));
        let id = waiting(&home, 1)[0]["id"].as_str().unwrap().to_owned();
        assert!(approvals(&home, &["approve", &id]).status.success());
        let answer = s.recv_json();
        assert_eq!(decision(&answer), None, "{name}: {answer}");
        assert!(
            answer["result"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("called retry_deploy"),
            "{name}: {answer}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name}: held up"
        );
        s.close_stdin();
        assert_eq!(s.wait().code(), Some(0), "{name}");
        assert!(!s.stderr().contains("oops"), "{name}: {}", s.stderr());
        assert_eq!(calls_reached(&record), 1, "{name}");
    }
}
