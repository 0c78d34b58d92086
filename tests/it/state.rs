//! Counters in a state store, through the real binary: limits hold across
//! processes (at once and one after another) on the default LMDB store, on
//! SQLite and on Redis, a store that cannot be reached or is held too long
//! fails closed and recovers, a process killed mid-charge loses nothing
//! it charged, and `per` and `cost` count as documented.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

const GOOD: &str = r#"{"server_token":"srv_live_8f2a61c0"}"#;

/// toolwarden around the Fractera mock with the shipped policy (10 per
/// minute), its counters in `state` (None: the default store, in the
/// state directory `home`), recording what reaches the server.
fn fractera(home: &Path, state: Option<&str>, record: &Path) -> Command {
    let mut cmd = toolwarden();
    cmd.env("XDG_STATE_HOME", home)
        .arg("--policy")
        .arg(root().join("policies/fractera.json"));
    if let Some(state) = state {
        cmd.args(["--state", state]);
    }
    cmd.arg("--")
        .arg(mock_server())
        .arg("--tools")
        .arg(root().join("examples/tools/fractera.json"))
        .arg("--record")
        .arg(record);
    cmd
}

/// Four processes at once, six calls each, one budget of ten: exactly ten
/// pass and reach a server.
fn four_processes_share_one_budget(dir: &Path, state: Option<&str>) {
    let home = dir.join("home");
    let sessions: Vec<(Session, PathBuf)> = (0..4)
        .map(|i| {
            let record = dir.join(format!("record-{i}"));
            (Session::start(&mut fractera(&home, state, &record)), record)
        })
        .collect();
    let mut sessions = sessions;
    // Every process sends its six calls before any answer is read.
    for (s, _) in &mut sessions {
        for id in 1..=6 {
            s.send(&call(id, "retry_deploy", GOOD));
        }
    }
    let (mut passed, mut refused) = (0, 0);
    for (s, _) in &mut sessions {
        for _ in 1..=6 {
            let answer: Value = s.recv_json();
            match decision(&answer).as_deref() {
                None => passed += 1,
                Some("rate_limited") => refused += 1,
                other => panic!("{other:?}: {answer}"),
            }
        }
    }
    let mut reached = 0;
    for (s, record) in &mut sessions {
        assert_eq!(s.wait().code(), Some(0), "{}", s.stderr());
        reached += std::fs::read_to_string(record)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("tools/call"))
            .count();
    }
    assert_eq!((passed, refused, reached), (10, 14, 10), "{state:?}");
}

#[test]
fn a_budget_holds_across_processes_at_once_on_the_default_store() {
    four_processes_share_one_budget(&temp_dir("state-lmdb-4"), None);
}

#[test]
fn a_budget_holds_across_processes_at_once_on_sqlite() {
    let dir = temp_dir("state-sqlite-4");
    let spec = format!("sqlite:{}", dir.join("state.db").display());
    four_processes_share_one_budget(&dir, Some(&spec));
}

#[test]
fn a_budget_holds_across_processes_at_once_on_redis() {
    let dir = temp_dir("state-redis-4");
    let redis = RedisServer::start(&dir);
    four_processes_share_one_budget(&dir, Some(&redis.spec()));
}

/// A process uses half the budget; the next one finds the other half.
#[test]
fn a_budget_half_used_by_one_process_is_half_used_in_the_next() {
    let dir = temp_dir("state-persist");
    let redis = RedisServer::start(&dir);
    let sqlite = format!("sqlite:{}", dir.join("state.db").display());
    for state in [None, Some(sqlite), Some(redis.spec())] {
        let home = dir.join("home");
        let record = dir.join("record");
        let mut s = Session::start(&mut fractera(&home, state.as_deref(), &record));
        for id in 1..=5 {
            assert_eq!(
                decision(
                    &s.request(&call(id, "retry_deploy", GOOD), &id.into(), |_, _, _| {})
                        .parse::<Value>()
                        .unwrap()
                ),
                None
            );
        }
        s.close_stdin();
        assert_eq!(s.wait().code(), Some(0));
        let mut s = Session::start(&mut fractera(&home, state.as_deref(), &record));
        let mut passed = 0;
        for id in 1..=6 {
            s.send(&call(id, "retry_deploy", GOOD));
            if decision(&s.recv_json()).is_none() {
                passed += 1;
            }
        }
        assert_eq!(passed, 5, "{state:?}");
        s.close_stdin();
        s.wait();
    }
}

#[test]
fn a_redis_that_goes_away_fails_closed_and_recovers() {
    let dir = temp_dir("state-redis-gone");
    let mut redis = RedisServer::start(&dir);
    let policy = r#"{"version":"1","default":"allow","tools":{"retry_task":{"limits":[{"window":"minute","max":100}]}}}"#;
    let mut s = Session::start(&mut guarded_mock_with(
        policy,
        "examples/tools/genieacs.json",
        &["--state".as_ref(), redis.spec().as_ref()],
        &[],
    ));
    let limited = |id| call(id, "retry_task", r#"{"task_id":"67abc123def456"}"#);
    s.send(&limited(1));
    assert_eq!(decision(&s.recv_json()), None);
    redis.stop();
    for id in 2..=4 {
        s.send(&limited(id));
        let answer = s.recv_json();
        assert_eq!(
            decision(&answer).as_deref(),
            Some("state_unavailable"),
            "{answer}"
        );
        let meta = &answer["result"]["_meta"]["toolwarden/decision"];
        assert!(meta["retry_after_ms"].as_u64().unwrap() >= 1000, "{meta}");
    }
    // Everything else is relayed.
    s.send(&call(5, "list_devices", "{}"));
    assert_eq!(decision(&s.recv_json()), None);
    s.send(r#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#);
    assert_eq!(s.recv_json()["id"], "p");
    let redis = RedisServer::start(&dir);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut id = 10;
    loop {
        s.send(&limited(id));
        if decision(&s.recv_json()).is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "calls did not pass again");
        std::thread::sleep(Duration::from_millis(200));
        id += 1;
    }
    drop(redis);
    s.close_stdin();
    s.wait();
    let warnings = s.stderr().matches("cannot be reached").count();
    assert_eq!(warnings, 1, "warned once, not per call:\n{}", s.stderr());
    assert!(
        s.stderr().contains("can be reached again"),
        "{}",
        s.stderr()
    );
}

#[test]
fn per_and_cost_count_as_documented() {
    let policy = r#"{"version":"1","tools":{
        "retry_task":{"limits":[{"counter":"retries","window":"hour","max":2,"per":"/task_id"}]},
        "refresh_device":{"limits":[{"counter":"spend","window":"day","max":100,"cost":"/amount"}]}}}"#;
    let mut s = Session::start(&mut guarded_mock(
        policy,
        "examples/tools/genieacs.json",
        &[],
    ));
    let job = |id, task: &str| call(id, "retry_task", &format!(r#"{{"task_id":"{task}"}}"#));
    let mut got = Vec::new();
    for (id, task) in [(1, "A"), (2, "A"), (3, "A"), (4, "B")] {
        s.send(&job(id, task));
        got.push(decision(&s.recv_json()));
    }
    assert_eq!(got, vec![None, None, Some("rate_limited".into()), None]);
    s.send(&call(5, "refresh_device", r#"{"amount":60}"#));
    assert_eq!(decision(&s.recv_json()), None);
    s.send(&call(6, "refresh_device", r#"{"amount":50}"#));
    let refused = s.recv_json();
    let meta = &refused["result"]["_meta"]["toolwarden/decision"];
    assert_eq!(meta["decision"], "rate_limited");
    // 10 units come back in 10 × 864 s, less the time since the first
    // call.
    let wait = meta["retry_after_ms"].as_u64().unwrap();
    assert!((8_630_000..=8_640_000).contains(&wait), "{meta}");
    s.close_stdin();
    s.wait();
}

#[test]
fn a_bad_state_spec_stops_before_the_server_starts() {
    let dir = temp_dir("state-bad");
    let record = dir.join("record");
    let mut s = Session::start(
        toolwarden()
            .arg("--policy")
            .arg(root().join("policies/fractera.json"))
            .args(["--state", "http://example.com/"])
            .arg("--")
            .arg(mock_server())
            .args(["--record", record.to_str().unwrap()]),
    );
    assert_eq!(s.wait().code(), Some(2));
    assert!(
        s.stderr()
            .contains("--state: \"http://example.com/\" is not a state store"),
        "{}",
        s.stderr()
    );
    assert!(!record.exists());
}

/// `state show` and `state reset` on the default store and on SQLite.
#[test]
fn state_show_and_reset() {
    let dir = temp_dir("state-cli");
    let sqlite = format!("sqlite:{}", dir.join("state.db").display());
    for spec in [None, Some(sqlite.as_str())] {
        let record = dir.join("record");
        let home = dir.join("home");
        let state = |args: &[&str]| {
            let mut cmd = toolwarden();
            cmd.env("XDG_STATE_HOME", &home).arg("state").args(args);
            if let Some(spec) = spec {
                cmd.args(["--state", spec]);
            }
            cmd.output().unwrap()
        };
        let mut s = Session::start(&mut fractera(&home, spec, &record));
        for id in 1..=3 {
            s.send(&call(id, "retry_deploy", GOOD));
            s.recv_json();
        }
        s.close_stdin();
        s.wait();
        let show = state(&["show"]);
        let shown = String::from_utf8_lossy(&show.stdout);
        assert_eq!(show.status.code(), Some(0), "{spec:?}: {shown}");
        let store = match spec {
            Some(spec) => spec.to_owned(),
            None => format!("lmdb:{}", home.join("toolwarden/counters.lmdb").display()),
        };
        assert!(
            shown.starts_with(&format!("{store} (1 bucket)\n")),
            "{shown}"
        );
        // Three taken; one comes back every 6 s.
        assert!(
            ["7", "8"].iter().any(|n| {
                shown.contains(&format!("retry_deploy_rate  grant:default  {n} of 10 left"))
            }),
            "{spec:?}: {shown}"
        );
        let reset = state(&["reset", "retry_deploy_rate", "--identity", "default"]);
        assert_eq!(reset.status.code(), Some(0), "{spec:?}");
        assert!(
            String::from_utf8_lossy(&reset.stdout)
                .contains("1 bucket of retry_deploy_rate emptied"),
            "{spec:?}"
        );
        let show = state(&["show"]);
        assert!(
            String::from_utf8_lossy(&show.stdout).contains("(0 buckets)"),
            "{spec:?}"
        );
    }
}

/// `state reset` of a counter the store does not hold, on SQLite and
/// Redis: said, with the counters it holds, and exit code 1.
#[test]
fn state_reset_of_an_unknown_counter_names_the_counters_there() {
    let dir = temp_dir("state-cli-unknown");
    let redis = RedisServer::start(&dir);
    let db = format!("sqlite:{}", dir.join("state.db").display());
    let map = format!("lmdb:{}", dir.join("counters.lmdb").display());
    for spec in [map, db, redis.spec()] {
        let record = dir.join("record");
        let mut s = Session::start(&mut fractera(&dir.join("home"), Some(&spec), &record));
        s.send(&call(1, "retry_deploy", GOOD));
        s.recv_json();
        s.close_stdin();
        s.wait();
        let reset = toolwarden()
            .args(["state", "reset", "retry_deploy_rat", "--state", &spec])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&reset.stderr);
        assert_eq!(reset.status.code(), Some(1), "{spec}: {said}");
        assert!(
            said.contains(": no counter retry_deploy_rat (a counter is there once a call charged it); it holds retry_deploy_rate"),
            "{spec}: {said}"
        );
        assert!(reset.stdout.is_empty());
    }
}

/// `state show` and `state reset` of a database that is not there say so
/// and create nothing, not even its directory.
#[test]
fn state_commands_create_no_database() {
    let dir = temp_dir("state-cli-none");
    for (scheme, file) in [("sqlite", "state.db"), ("lmdb", "counters.lmdb")] {
        let db = dir.join("not-yet").join(file);
        let spec = format!("{scheme}:{}", db.display());
        let show = toolwarden()
            .args(["state", "show", "--state", &spec])
            .output()
            .unwrap();
        assert_eq!(show.status.code(), Some(0));
        assert_eq!(
            String::from_utf8_lossy(&show.stdout),
            format!("no counters yet: {} does not exist\n", db.display())
        );
        let reset = toolwarden()
            .args(["state", "reset", "retries", "--state", &spec])
            .output()
            .unwrap();
        assert_eq!(reset.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&reset.stderr),
            format!(
                "toolwarden: no counter retries to reset: no counters yet: {} does not exist\n",
                db.display()
            )
        );
        assert!(!db.parent().unwrap().exists(), "nothing was created");
    }
}

/// Runs a command that must succeed.
fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn counters_on_a_redis_server_over_tls() {
    let dir = temp_dir("state-redis-tls");
    // A CA of the test's, and a certificate for localhost signed by it.
    let at = |name: &str| dir.join(name);
    sh(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=toolwarden test CA", "-keyout"])
        .arg(at("ca.key"))
        .arg("-out")
        .arg(at("ca.pem")));
    sh(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(at("server.key"))
        .arg("-out")
        .arg(at("server.csr")));
    std::fs::write(at("san"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    sh(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial", "-in"])
        .arg(at("server.csr"))
        .arg("-CA")
        .arg(at("ca.pem"))
        .arg("-CAkey")
        .arg(at("ca.key"))
        .arg("-extfile")
        .arg(at("san"))
        .arg("-out")
        .arg(at("server.pem")));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
        .arg("--tls-cert-file")
        .arg(at("server.pem"))
        .arg("--tls-key-file")
        .arg(at("server.key"))
        .arg("--tls-ca-cert-file")
        .arg(at("ca.pem"))
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let spec = format!("rediss://localhost:{port}");
    let session = |trusted: bool| {
        let mut cmd = fractera(&dir.join("home"), Some(&spec), &dir.join("record"));
        if trusted {
            cmd.env("SSL_CERT_FILE", at("ca.pem"));
        }
        Session::start(&mut cmd)
    };
    // The server's certificate is checked: signed by an unknown CA, the
    // store cannot be used, and the call is refused.
    let mut s = session(false);
    s.send(&call(1, "retry_deploy", GOOD));
    assert_eq!(
        decision(&s.recv_json()).as_deref(),
        Some("state_unavailable")
    );
    s.close_stdin();
    s.wait();
    // Trusted, the budget holds as on any store.
    let mut s = session(true);
    let mut got = Vec::new();
    for id in 1..=11 {
        s.send(&call(id, "retry_deploy", GOOD));
        got.push(decision(&s.recv_json()));
    }
    assert!(got[..10].iter().all(Option::is_none), "{got:?}");
    assert_eq!(got[10].as_deref(), Some("rate_limited"));
    s.close_stdin();
    s.wait();
    let _ = redis.kill();
    let _ = redis.wait();
}

#[test]
fn an_sqlite_store_locked_too_long_fails_closed_and_recovers() {
    let dir = temp_dir("state-sqlite-locked");
    let db = dir.join("state.db");
    let spec = format!("sqlite:{}", db.display());
    let mut s = Session::start(&mut fractera(
        &dir.join("home"),
        Some(&spec),
        &dir.join("record"),
    ));
    s.send(&call(1, "retry_deploy", GOOD));
    assert_eq!(decision(&s.recv_json()), None);
    // Another process holds the database's write lock past the wait.
    let other = rusqlite::Connection::open(&db).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    s.send(&call(2, "retry_deploy", GOOD));
    let refused = s.recv_json();
    assert_eq!(
        decision(&refused).as_deref(),
        Some("state_unavailable"),
        "{refused}"
    );
    other.execute_batch("COMMIT").unwrap();
    s.send(&call(3, "retry_deploy", GOOD));
    assert_eq!(decision(&s.recv_json()), None);
    s.close_stdin();
    s.wait();
    let stderr = s.stderr();
    assert_eq!(stderr.matches("cannot be used").count(), 1, "{stderr}");
    assert!(stderr.contains("can be used again"), "{stderr}");
}

/// The turn of the default store's file (`counters.lmdb-turn`: a robust
/// pthread mutex at the start of its first page), held by this process
/// until dropped.
struct HeldTurn {
    mutex: *mut libc::pthread_mutex_t,
}

impl HeldTurn {
    fn take(path: &Path) -> HeldTurn {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        // SAFETY: a shared mapping of the file's first page, which the
        // store made 4096 bytes long; locked as toolwarden locks it.
        unsafe {
            let map = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            );
            assert_ne!(map, libc::MAP_FAILED);
            let mutex = map.cast();
            assert_eq!(libc::pthread_mutex_lock(mutex), 0);
            HeldTurn { mutex }
        }
    }
}

impl Drop for HeldTurn {
    fn drop(&mut self) {
        // SAFETY: locked and mapped in take.
        unsafe {
            libc::pthread_mutex_unlock(self.mutex);
            libc::munmap(self.mutex.cast(), 4096);
        }
    }
}

#[test]
fn the_default_store_held_too_long_fails_closed_and_recovers() {
    let dir = temp_dir("state-lmdb-locked");
    let home = dir.join("home");
    let mut s = Session::start(&mut fractera(&home, None, &dir.join("record")));
    s.send(&call(1, "retry_deploy", GOOD));
    assert_eq!(decision(&s.recv_json()), None);
    // Another process holds the store's turn past the wait.
    let held = HeldTurn::take(&home.join("toolwarden/counters.lmdb-turn"));
    let asked = Instant::now();
    s.send(&call(2, "retry_deploy", GOOD));
    let refused = s.recv_json();
    assert_eq!(
        decision(&refused).as_deref(),
        Some("state_unavailable"),
        "{refused}"
    );
    assert!(asked.elapsed() >= Duration::from_secs(2));
    drop(held);
    s.send(&call(3, "retry_deploy", GOOD));
    assert_eq!(decision(&s.recv_json()), None);
    s.close_stdin();
    s.wait();
    let stderr = s.stderr();
    assert_eq!(stderr.matches("cannot be used").count(), 1, "{stderr}");
    assert!(stderr.contains("another process has held it"), "{stderr}");
    assert!(stderr.contains("can be used again"), "{stderr}");
}

/// How many of `burst` units the default store in `home` holds used, as
/// `state show` says (a fresh process opening the store).
fn used(home: &Path, burst: u64) -> u64 {
    let show = toolwarden()
        .env("XDG_STATE_HOME", home)
        .args(["state", "show"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&show.stdout).into_owned();
    assert_eq!(show.status.code(), Some(0), "{shown}");
    let of = format!(" of {burst} left");
    let Some(line) = shown.lines().find(|l| l.contains(&of)) else {
        return 0;
    };
    let before = &line[..line.find(&of).unwrap()];
    let left: u64 = before.rsplit(' ').next().unwrap().parse().unwrap();
    burst - left
}

/// A toolwarden SIGKILLed in the middle of a stream of charges leaves a
/// store the next process opens, with each call charged once: with
/// `--audit-required` a call's decision is written before its charge is
/// taken, so the store holds as many calls as the log, or one fewer (the
/// call whose charge was in flight), and at least as many as were answered.
#[test]
fn a_toolwarden_killed_mid_charges_loses_and_doubles_no_charge() {
    let dir = temp_dir("state-crash");
    let home = dir.join("home");
    let policy = dir.join("crash.json");
    // A unit comes back every 518 s: none does while the test runs.
    std::fs::write(
        &policy,
        r#"{"version":"1","default":"deny","tools":{"echo":{"limits":[
            {"counter":"c","window":2592000,"max":5000,"scope":"global"}]}}}"#,
    )
    .unwrap();
    let audit = dir.join("audit.jsonl");
    let session = || {
        Session::start(
            toolwarden()
                .env("XDG_STATE_HOME", &home)
                .arg("--policy")
                .arg(&policy)
                .arg("--audit")
                .arg(&audit)
                .arg("--audit-required")
                .arg("--")
                .arg(mock_server())
                .arg("--tools")
                .arg(root().join("examples/tools/bench.json")),
        )
    };
    let audited = || {
        std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.contains(r#""event":"decision""#) && l.contains(r#""decision":"allowed""#)
            })
            .count() as u64
    };
    let calls: String = (1..=1000)
        .map(|id| call(id, "echo", r#"{"message":"m"}"#) + "\n")
        .collect();
    let (mut charged, mut logged) = (0, 0);
    let answered = 20;
    for delay in [0, 1, 2, 4, 8] {
        let mut s = session();
        // All 1,000 at once, so that toolwarden charges one after another
        // while it is killed: a moment after the last is written.
        s.stdin().write_all(calls.as_bytes()).unwrap();
        for _ in 0..answered {
            let answer = s.recv_json();
            assert_eq!(decision(&answer), None, "{answer}");
        }
        std::thread::sleep(Duration::from_millis(delay));
        s.signal(libc::SIGKILL);
        s.wait();
        let now_charged = used(&home, 5000);
        let now_logged = audited();
        let (this, log) = (now_charged - charged, now_logged - logged);
        assert!(this >= answered, "{this} charged, {answered} answered");
        assert!(
            this == log || this + 1 == log,
            "{this} charged, {log} in the log"
        );
        (charged, logged) = (now_charged, now_logged);
    }
    // The next session charges on from there.
    let mut s = session();
    for id in 1..=10 {
        s.send(&call(id, "echo", r#"{"message":"m"}"#));
        assert_eq!(decision(&s.recv_json()), None);
    }
    s.close_stdin();
    assert_eq!(s.wait().code(), Some(0), "{}", s.stderr());
    assert_eq!(used(&home, 5000), charged + 10);
}

/// The counters of the SQLite database the default store used to be are
/// read into the new one when it is made, once: a budget half spent
/// before the upgrade is half spent after it.
#[test]
fn the_default_store_reads_the_counters_of_the_old_one_once() {
    let dir = temp_dir("state-upgrade");
    let home = dir.join("home");
    let old = format!("sqlite:{}", home.join("toolwarden/state.db").display());
    let record = dir.join("record");
    let passes = |state: Option<&str>, calls: u64| {
        let mut s = Session::start(&mut fractera(&home, state, &record));
        let mut passed = 0;
        for id in 1..=calls {
            s.send(&call(id, "retry_deploy", GOOD));
            if decision(&s.recv_json()).is_none() {
                passed += 1;
            }
        }
        s.close_stdin();
        s.wait();
        (passed, s.stderr())
    };
    // Before: the default store was state.db.
    assert_eq!(passes(Some(&old), 4).0, 4);
    let (passed, said) = passes(None, 8);
    assert_eq!(passed, 6, "{said}");
    assert!(said.contains("1 bucket read from"), "{said}");
    // Read once: state.db's copy, spent further by an old toolwarden, is
    // not read again, and it is not said again.
    assert_eq!(passes(Some(&old), 6).0, 6);
    let (passed, said) = passes(None, 1);
    assert_eq!(passed, 0, "{said}");
    assert!(!said.contains("read from"), "{said}");
}

/// toolwarden with the policy at `policy` around the GenieACS mock, its
/// counters in `state`; the decisions of `calls` calls of retry_task
/// (None: relayed).
fn retries(policy: &Path, state: &str, options: &[&str], calls: u64) -> Vec<Option<String>> {
    let mut cmd = toolwarden();
    cmd.arg("--policy")
        .arg(policy)
        .args(["--state", state])
        .args(options)
        .arg("--")
        .arg(mock_server())
        .arg("--tools")
        .arg(root().join("examples/tools/genieacs.json"));
    let mut s = Session::start(&mut cmd);
    let got = (1..=calls)
        .map(|id| {
            s.send(&call(id, "retry_task", r#"{"task_id":"t"}"#));
            decision(&s.recv_json())
        })
        .collect();
    s.close_stdin();
    assert_eq!(s.wait().code(), Some(0), "{}", s.stderr());
    got
}

const TWO_A_DAY: &str = r#"{"version": "1", "description": "two a day",
  "tools": {"retry_task": {"limits": [{"counter": "cap", "window": "day", "max": 2, "scope": "global"}]}}}"#;

/// A 2-per-day cap stays spent when only the description and the layout
/// of the file change (and when a rule is added), in a new process; a
/// change of the counter itself starts it afresh.
#[test]
fn an_edit_that_leaves_a_counter_alone_keeps_its_budget() {
    let dir = temp_dir("state-edit");
    let state = format!("sqlite:{}", dir.join("state.db").display());
    let policy = dir.join("cap.json");
    std::fs::write(&policy, TWO_A_DAY).unwrap();
    let limited = Some("rate_limited".to_owned());
    assert_eq!(retries(&policy, &state, &[], 2), vec![None, None]);
    let edited = TWO_A_DAY
        .replace("two a day", "at most two retries a day")
        .replace(
            r#""tools": {"#,
            "\n  \"tools\": {\n    \"other\": {},\n    ",
        );
    std::fs::write(&policy, &edited).unwrap();
    assert_eq!(retries(&policy, &state, &[], 1), vec![limited.clone()]);
    std::fs::write(&policy, edited.replace(r#""max": 2"#, r#""max": 3"#)).unwrap();
    assert_eq!(
        retries(&policy, &state, &[], 4),
        vec![None, None, None, limited]
    );
}

/// `--monitor` counts apart from the enforcing runs of the same policy,
/// with the default namespace and with one given.
#[test]
fn monitoring_never_spends_the_real_budget() {
    let dir = temp_dir("state-monitor");
    let state = format!("sqlite:{}", dir.join("state.db").display());
    let policy = dir.join("cap.json");
    std::fs::write(&policy, TWO_A_DAY).unwrap();
    let limited = Some("rate_limited".to_owned());
    for options in [&[][..], &["--state-namespace", "team"][..]] {
        let monitor = [options, &["--monitor"]].concat();
        // Monitoring relays every call, the third one too.
        assert_eq!(
            retries(&policy, &state, &monitor, 3),
            vec![None, None, None],
            "{options:?}"
        );
        assert_eq!(
            retries(&policy, &state, options, 3),
            vec![None, None, limited.clone()],
            "{options:?}"
        );
    }
    // Nor the budget of a policy whose name is the monitored one's and
    // `-monitor`: no namespace a file's name gives is monitoring's.
    let other = dir.join("cap-monitor.json");
    std::fs::write(&other, TWO_A_DAY).unwrap();
    assert_eq!(
        retries(&other, &state, &[], 3),
        vec![None, None, limited.clone()]
    );
    // A namespace of one's own cannot be made to look like monitoring's.
    let out = toolwarden()
        .args(["--state-namespace", "team/monitor", "--policy"])
        .arg(&policy)
        .args(["--", "true"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`/`"),
        "{out:?}"
    );
}
