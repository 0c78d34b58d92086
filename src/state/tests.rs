//! Every backend makes the same decisions for the same calls at the same
//! times, with the same retry-after values; the stores keep what they
//! charged.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use crate::policy::{ToolCall, Verdict};
use crate::wire::json::Raw;

const POLICY: &str = r#"{
  "version": "1",
  "limits": [{ "counter": "all", "window": "minute", "max": 7, "scope": "global" }],
  "tools": {
    "retry": { "limits": [{ "counter": "retries", "window": "hour", "max": 2, "per": "/job" }] },
    "spend": { "limits": [{ "counter": "spend", "window": "day", "max": 100, "cost": "/amount" }] },
    "mine": { "limits": [{ "counter": "mine", "window": 10, "max": 3, "scope": "session" }] }
  }
}"#;

/// (seconds from the start, tool, arguments)
const SCRIPT: &[(f64, &str, &str)] = &[
    (0.0, "retry", r#"{"job":"a"}"#),
    (0.0, "retry", r#"{"job":"a"}"#),
    (0.0, "retry", r#"{"job":"a"}"#),
    (0.1, "retry", r#"{"job": "b"}"#),
    (0.2, "spend", r#"{"amount":60}"#),
    (0.3, "spend", r#"{"amount":50}"#),
    (0.4, "mine", "{}"),
    (0.5, "mine", "{}"),
    (0.6, "mine", "{}"),
    (0.7, "mine", "{}"),
    (1.0, "spend", r#"{"amount":40}"#),
    (1.5, "retry", r#"{"job":"c"}"#),
    (1800.0, "retry", r#"{"job":"a"}"#),
    (1800.0, "retry", r#"{"job":"a"}"#),
    (1801.0, "mine", "{}"),
    (1802.5, "spend", r#"{"amount":0}"#),
    (1803.0, "spend", r#"{"amount":12.5}"#),
];

/// Each call's outcome: taken, or the counter that refused and its wait
/// in microseconds.
fn run(state: &State) -> Vec<Result<(), (String, u128)>> {
    let policy = Policy::from_json(POLICY).unwrap();
    let start = 1_800_000_000_000_000u64;
    SCRIPT
        .iter()
        .map(|&(at, tool, args)| {
            let call = ToolCall {
                name: tool.into(),
                arguments: Some(Raw::parse(args).unwrap()),
            };
            let Verdict::Allow(charge) = policy.check(&call) else {
                panic!("{tool} {args} is not allowed")
            };
            let now = start + (at * 1e6) as u64;
            match state.take_at(&policy, &charge, true, Some(now)).unwrap() {
                Outcome::Taken => Ok(()),
                Outcome::Short {
                    counter,
                    retry_after,
                } => Err((
                    policy.counters()[counter].name.clone(),
                    retry_after.as_micros(),
                )),
            }
        })
        .collect()
}

/// A Redis server of this test's, on a Unix socket, stopped when dropped.
pub struct RedisServer {
    child: Child,
    dir: PathBuf,
    pub url: String,
}

impl RedisServer {
    pub fn start(name: &str) -> RedisServer {
        let dir =
            std::env::temp_dir().join(format!("toolwarden-redis-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("redis.sock");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (.ci/run installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer {
            child,
            url: format!("redis+unix://{}", socket.display()),
            dir,
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_db(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("toolwarden-state-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("state.db")
}

fn temp_map(name: &str) -> PathBuf {
    temp_db(&format!("lmdb-{name}")).with_file_name("counters.lmdb")
}

fn open(spec: Spec) -> State {
    State::open(spec, "ns".into(), "alice".into()).unwrap()
}

#[test]
fn every_backend_decides_the_same() {
    let memory = run(&open(Spec::Memory));
    let want: Vec<Result<(), (String, u128)>> = vec![
        Ok(()),
        Ok(()),
        Err(("retries".into(), 1_800_000_000)),
        Ok(()),
        Ok(()),
        // 60 of 100 taken: 50 fit once 10 more have come back.
        Err(("spend".into(), 10 * 864_000_000 - 100_000)),
        Ok(()),
        Ok(()),
        Ok(()),
        // `mine` (3 per 10 s) and `all` (7 per minute) are both out: the
        // longer wait is reported.
        Err(("all".into(), 7_871_428)),
        Err(("all".into(), 7_571_428)),
        Err(("all".into(), 7_071_428)),
        Ok(()),
        Err(("retries".into(), 1_800_000_000)),
        Ok(()),
        Ok(()),
        Ok(()),
    ];
    assert_eq!(memory, want);
    let lmdb = run(&open(Spec::Lmdb(temp_map("same"))));
    assert_eq!(lmdb, memory, "LMDB");
    let sqlite = run(&open(Spec::Sqlite(temp_db("same"))));
    assert_eq!(sqlite, memory, "SQLite");
    let redis = RedisServer::start("same");
    assert_eq!(run(&open(Spec::Redis(redis.url.clone()))), memory, "Redis");
}

#[test]
fn the_stores_keep_what_they_charged() {
    let db = temp_db("kept");
    let map = temp_map("kept");
    let redis = RedisServer::start("kept");
    for spec in [
        Spec::Lmdb(map.clone()),
        Spec::Sqlite(db.clone()),
        Spec::Redis(redis.url.clone()),
    ] {
        let policy = Policy::from_json(POLICY).unwrap();
        let call = ToolCall {
            name: "retry".into(),
            arguments: Some(Raw::parse(r#"{"job":"kept"}"#).unwrap()),
        };
        let Verdict::Allow(charge) = policy.check(&call) else {
            panic!()
        };
        // Two processes, one after the other: the second finds the budget
        // the first used.
        assert_eq!(
            open(spec.clone()).take(&policy, &charge, true),
            Ok(Outcome::Taken)
        );
        assert_eq!(
            open(spec.clone()).take(&policy, &charge, true),
            Ok(Outcome::Taken)
        );
        let third = open(spec.clone()).take(&policy, &charge, true).unwrap();
        assert!(matches!(third, Outcome::Short { .. }), "{spec}: {third:?}");
        let shown = open(spec.clone()).show().unwrap();
        assert!(
            shown.contains("retries  grant:alice  per \"kept\"  0 of 2 left"),
            "{shown}"
        );
        assert_eq!(
            open(spec.clone()).reset("retries", Some("alice")).unwrap(),
            Reset::Emptied(1)
        );
        assert_eq!(
            open(spec.clone()).take(&policy, &charge, true),
            Ok(Outcome::Taken)
        );
        // A mistyped counter is said to be none, with the ones there are.
        assert_eq!(
            open(spec.clone()).reset("retires", None).unwrap(),
            Reset::NoSuchCounter {
                known: vec!["all".into(), "retries".into()]
            },
            "{spec}"
        );
    }
    let mode = |p: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(db.parent().unwrap()), 0o700);
    // The approvals beside the map: made as private when a session opens
    // its inbox, before anything is filed.
    crate::inbox::Inbox::open(&Spec::Lmdb(map.clone())).unwrap();
    for file in [
        "counters.lmdb",
        "counters.lmdb-lock",
        "counters.lmdb-turn",
        "state.db",
    ] {
        assert_eq!(mode(&map.with_file_name(file)), 0o600, "{file}");
    }
    assert_eq!(mode(map.parent().unwrap()), 0o700);
}

#[test]
fn an_unreachable_redis_fails_closed_and_recovers() {
    let policy = Policy::from_json(POLICY).unwrap();
    let call = ToolCall {
        name: "retry".into(),
        arguments: Some(Raw::parse(r#"{"job":"x"}"#).unwrap()),
    };
    let Verdict::Allow(charge) = policy.check(&call) else {
        panic!()
    };
    // The socket a server will listen on, once it is started.
    let socket = std::env::temp_dir()
        .join(format!("toolwarden-redis-{}-back", std::process::id()))
        .join("redis.sock");
    let state = open(Spec::Redis(format!("redis+unix://{}", socket.display())));
    let refused = state.take(&policy, &charge, true).unwrap_err();
    assert!(refused.retry_after >= Duration::from_secs(1), "{refused:?}");
    // Within the backoff, no new attempt: refused at once.
    assert!(state.take(&policy, &charge, true).is_err());
    let _redis = RedisServer::start("back");
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(state.take(&policy, &charge, true), Ok(Outcome::Taken));
}

#[test]
fn specs_parse() {
    assert_eq!(Spec::parse("memory"), Ok(Spec::Memory));
    assert_eq!(
        Spec::parse("sqlite:/tmp/x.db"),
        Ok(Spec::Sqlite("/tmp/x.db".into()))
    );
    assert_eq!(
        Spec::parse("/tmp/x.db"),
        Ok(Spec::Sqlite("/tmp/x.db".into()))
    );
    assert!(matches!(
        Spec::parse("redis://127.0.0.1:6379/2"),
        Ok(Spec::Redis(_))
    ));
    assert!(matches!(
        Spec::parse("redis+unix:///run/redis.sock"),
        Ok(Spec::Redis(_))
    ));
    assert!(Spec::parse("http://x").is_err());
    assert!(matches!(
        Spec::parse("rediss://host:6380"),
        Ok(Spec::Redis(_))
    ));
    assert!(Spec::parse("sqlite:").is_err());
    assert!(Spec::parse("lmdb:").is_err());
    assert_eq!(
        Spec::parse("lmdb:/tmp/counters"),
        Ok(Spec::Lmdb("/tmp/counters".into()))
    );
    assert_eq!(Spec::parse("x.lmdb"), Ok(Spec::Lmdb("x.lmdb".into())));
    assert_eq!(
        Spec::Lmdb("/s/counters.lmdb".into()).inbox(),
        Spec::Sqlite("/s/state.db".into())
    );
    assert_eq!(Spec::parse("state.db"), Ok(Spec::Sqlite("state.db".into())));
    assert_eq!(Spec::parse("./state"), Ok(Spec::Sqlite("./state".into())));
    assert_eq!(
        Spec::parse("sqlite:state"),
        Ok(Spec::Sqlite("state".into()))
    );
    // Typos never become a database file named after them.
    for (typo, says) in [
        ("memroy", "did you mean memory?"),
        ("Memory", "did you mean memory?"),
        ("counters", "use memory, lmdb:PATH, sqlite:PATH"),
        (
            "redis:/localhost:6379",
            "`redis:` is no scheme toolwarden knows",
        ),
        ("redis:localhost", "`redis:` is no scheme toolwarden knows"),
    ] {
        let e = Spec::parse(typo).unwrap_err();
        assert!(e.contains(says), "{typo}: {e}");
    }
    assert_eq!(
        Spec::Redis("redis://:hunter2@host:6379".into()).to_string(),
        "redis://[credentials]@host:6379"
    );
}

/// One call made while the clock read 2036 must not lock a 5-per-minute
/// counter for years once the clock is right again: every backend treats
/// a stored time more than a window ahead as one window ahead.
#[test]
fn a_clock_from_the_future_locks_a_budget_for_one_window_at_most() {
    let policy = Policy::from_json(
        r#"{"version": "1", "tools": {"t": {"limits": [
            {"counter": "five", "window": "minute", "max": 5, "scope": "global"}]}}}"#,
    )
    .unwrap();
    let call = ToolCall {
        name: "t".into(),
        arguments: None,
    };
    let Verdict::Allow(charge) = policy.check(&call) else {
        panic!()
    };
    let now = 1_800_000_000_000_000u64;
    let in_2036 = 2_100_000_000_000_000u64;
    let run = |state: &State| {
        let at = |t| state.take_at(&policy, &charge, true, Some(t)).unwrap();
        vec![at(in_2036), at(now), at(now + 12_000_000)]
    };
    let want = vec![
        Outcome::Taken,
        // As if the bucket had just been emptied: one period to wait.
        Outcome::Short {
            counter: 0,
            retry_after: Duration::from_secs(12),
        },
        Outcome::Taken,
    ];
    assert_eq!(run(&open(Spec::Memory)), want, "memory");
    assert_eq!(run(&open(Spec::Lmdb(temp_map("future")))), want, "LMDB");
    assert_eq!(run(&open(Spec::Sqlite(temp_db("future")))), want, "SQLite");
    let redis = RedisServer::start("future");
    assert_eq!(run(&open(Spec::Redis(redis.url.clone()))), want, "Redis");
}

/// An unnamed limit's budget follows the limit, not its place in the list:
/// a limit added in front of it, or the file rewritten, leaves it spent.
#[test]
fn an_unnamed_limit_keeps_its_budget_when_another_is_added_before_it() {
    let before = r#"{"version": "1", "tools": {"t": {"limits": [
        {"window": "day", "max": 1, "scope": "global"}]}}}"#;
    let after = r#"{"version": "1", "description": "now with a burst cap",
      "tools": {"t": {"limits": [
        {"window": "second", "max": 100, "scope": "global"},
        {"window": "day", "max": 1, "scope": "global"}]}}}"#;
    let state = open(Spec::Memory);
    let now = 1_800_000_000_000_000u64;
    let take = |text: &str, at: u64| {
        let policy = Policy::from_json(text).unwrap();
        let call = ToolCall {
            name: "t".into(),
            arguments: None,
        };
        let Verdict::Allow(charge) = policy.check(&call) else {
            panic!()
        };
        let outcome = state.take_at(&policy, &charge, true, Some(at)).unwrap();
        match outcome {
            Outcome::Taken => Ok(()),
            Outcome::Short { counter, .. } => Err(policy.counters()[counter].terms()),
        }
    };
    assert_eq!(take(before, now), Ok(()));
    assert_eq!(take(after, now + 1_000_000), Err("1 per day".to_owned()));
}

/// Fixed windows decide alike everywhere too: `max` in each UTC window,
/// the time to the boundary as the hint, afresh after it, and a number
/// from a clock years ahead locks a window until its boundary only.
#[test]
fn every_backend_counts_fixed_windows_the_same() {
    let policy = Policy::from_json(
        r#"{"version": "1", "tools": {
          "daily": {"limits": [{"counter": "daily", "window": {"fixed": "day"}, "max": 3, "scope": "global"}]},
          "spend": {"limits": [{"counter": "spend", "window": {"fixed": "hour"}, "max": 100, "cost": "/amount"}]}}}"#,
    )
    .unwrap();
    // 2027-01-15T08:00:00Z, then seconds from it.
    let start = 1_800_000_000_000_000u64;
    let hour = 3_600_000_000u64;
    let script: &[(u64, &str, &str)] = &[
        (0, "daily", "{}"),
        (1, "daily", "{}"),
        (2, "daily", "{}"),
        (3, "daily", "{}"),
        (16 * 3600, "daily", "{}"),
        (16 * 3600, "spend", r#"{"amount":60}"#),
        (16 * 3600 + 1800, "spend", r#"{"amount":50}"#),
        (17 * 3600, "spend", r#"{"amount":50}"#),
        // A call while the clock read 2036, then back at 2027-01-16T09:30Z.
        (300_000_000, "spend", r#"{"amount":1}"#),
        (17 * 3600 + 1800, "spend", r#"{"amount":1}"#),
        (18 * 3600, "spend", r#"{"amount":100}"#),
    ];
    let run = |state: &State| -> Vec<Result<(), (String, u64)>> {
        script
            .iter()
            .map(|&(at, tool, args)| {
                let call = ToolCall {
                    name: tool.into(),
                    arguments: Some(Raw::parse(args).unwrap()),
                };
                let Verdict::Allow(charge) = policy.check(&call) else {
                    panic!()
                };
                let now = Some(start + at * 1_000_000);
                match state.take_at(&policy, &charge, true, now).unwrap() {
                    Outcome::Taken => Ok(()),
                    Outcome::Short {
                        counter,
                        retry_after,
                    } => Err((
                        policy.counters()[counter].name.clone(),
                        retry_after.as_micros() as u64,
                    )),
                }
            })
            .collect()
    };
    let want = vec![
        Ok(()),
        Ok(()),
        Ok(()),
        // Until midnight UTC.
        Err(("daily".into(), 16 * hour - 3_000_000)),
        Ok(()),
        Ok(()),
        // 60 of 100 this hour: 50 waits for the next one.
        Err(("spend".into(), hour / 2)),
        Ok(()),
        Ok(()),
        // The hour that 2036's call filled ends at 10:00.
        Err(("spend".into(), hour / 2)),
        Ok(()),
    ];
    assert_eq!(run(&open(Spec::Memory)), want, "memory");
    assert_eq!(run(&open(Spec::Lmdb(temp_map("fixed")))), want, "LMDB");
    assert_eq!(run(&open(Spec::Sqlite(temp_db("fixed")))), want, "SQLite");
    let redis = RedisServer::start("fixed");
    assert_eq!(run(&open(Spec::Redis(redis.url.clone()))), want, "Redis");
}

#[test]
fn a_url_of_another_scheme_is_refused_without_its_password() {
    for url in [
        "Redis://:pwSECRET@127.0.0.1:1",
        "valkey://:pwSECRET@h/0?password=pwSECRET",
    ] {
        let e = Spec::parse(url).unwrap_err();
        assert!(
            e.contains("is not a state store") && !e.contains("pwSECRET"),
            "{e}"
        );
    }
}

#[test]
fn a_redis_url_is_shown_without_its_password_in_any_form() {
    for (url, shown) in [
        (
            "redis://:hunter2@host:6379/2",
            "redis://[credentials]@host:6379/2",
        ),
        (
            "rediss://u:p%40ss@host#insecure",
            "rediss://[credentials]@host#insecure",
        ),
        (
            "redis+unix:///run/r.sock?db=2&pass=hunter2&protocol=3",
            "redis+unix:///run/r.sock?db=2&[redacted]&protocol=3",
        ),
        (
            "unix:///run/r.sock?password=hunter2",
            "unix:///run/r.sock?[redacted]",
        ),
        (
            "redis+unix:///run/r.sock?pas=hunter2",
            "redis+unix:///run/r.sock?[redacted]",
        ),
        (
            "redis+unix:///run/r.sock?pass=a@hunter2",
            "redis+unix://[redacted]",
        ),
        ("redis://:pa?ss@host", "redis://[redacted]"),
        ("redis://host#hunter2", "redis://host#[redacted]"),
    ] {
        assert_eq!(Spec::Redis(url.into()).to_string(), shown, "{url}");
    }
    let e = Spec::parse("redis+unix:///r.sock?user=admin&pass=hunter2&protocol=9").unwrap_err();
    assert!(
        e.contains("is not a Redis URL: Invalid protocol version"),
        "{e}"
    );
    assert!(!e.contains("hunter2") && !e.contains("admin"), "{e}");
    assert_eq!(
        scrubbed(
            "no user admin with hunter2 at redis://admin:hunter2@h",
            "redis://admin:hunter2@h"
        ),
        "no user [redacted] with [redacted] at redis://[credentials]@h"
    );
}
