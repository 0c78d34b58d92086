//! What a limited call costs on each state store, end to end: one
//! toolwarden around the mock server, calls one at a time (p50 round trip),
//! then four toolwarden processes at once charging one shared counter
//! (calls per second in all, 16 in flight each).
//!
//! ```text
//! cargo bench --bench shared [-- --calls N]
//! ```
//!
//! Needs `redis-server` (tests/setup installs it) for the Redis rows; the
//! server runs on a Unix socket in a temporary directory.

// This benchmark reports to a person: its table is its output.
#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every call is limited, by a budget no run exhausts.
const POLICY: &str = r#"{"version":"1","tools":{"retry_deploy":{"limits":[
    {"counter":"shared","window":"day","max":4000000000,"scope":"global"}]}}}"#;
const NONE: &str = r#"{"version":"1","tools":{"retry_deploy":{}}}"#;
const CALL: &str = r#"{"jsonrpc":"2.0","id":ID,"method":"tools/call","params":{"name":"retry_deploy","arguments":{"server_token":"srv_live_8f2a61c0"}}}"#;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn build() {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "toolwarden",
            "-p",
            "mock_server",
        ])
        .current_dir(root())
        .status()
        .unwrap();
    assert!(status.success());
}

struct Proc {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

fn start(policy: &Path, state: &str, home: &Path) -> Proc {
    let release = root().join("target/release");
    let mut child = Command::new(release.join("toolwarden"))
        .env("XDG_STATE_HOME", home)
        .arg("--policy")
        .arg(policy)
        .args(["--state", state, "--log-level", "warn", "--"])
        .arg(release.join("mock_server"))
        .arg("--tools")
        .arg(root().join("examples/tools/fractera.json"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    Proc { child, out }
}

impl Proc {
    fn send(&mut self, id: usize) {
        let line = CALL.replace("ID", &id.to_string());
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    fn recv(&mut self) {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        assert!(line.contains("called retry_deploy"), "{line}");
    }

    fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The median round trip of `calls` calls one at a time.
fn p50(policy: &Path, state: &str, home: &Path, calls: usize) -> Duration {
    let mut p = start(policy, state, home);
    for id in 0..200 {
        p.send(id);
        p.recv();
    }
    let mut times: Vec<Duration> = (0..calls)
        .map(|i| {
            let t = Instant::now();
            p.send(1000 + i);
            p.recv();
            t.elapsed()
        })
        .collect();
    p.stop();
    times.sort();
    times[times.len() / 2]
}

/// Calls per second in all, four processes at once, 16 in flight each.
fn shared(policy: &Path, state: &str, home: &Path, calls: usize) -> f64 {
    let t = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (policy, state, home) = (policy.to_owned(), state.to_owned(), home.to_owned());
            std::thread::spawn(move || {
                let mut p = start(&policy, &state, &home);
                let mut sent = 0;
                while sent < 16.min(calls) {
                    p.send(sent);
                    sent += 1;
                }
                for _ in 0..calls {
                    p.recv();
                    if sent < calls {
                        p.send(sent);
                        sent += 1;
                    }
                }
                p.stop();
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    (4 * calls) as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut calls = 5_000;
    while let Some(arg) = args.next() {
        if arg == "--calls" {
            calls = args.next().and_then(|n| n.parse().ok()).expect("--calls N");
        }
    }
    build();
    let dir = std::env::temp_dir().join(format!("toolwarden-bench-shared-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.json");
    std::fs::write(&policy, POLICY).unwrap();
    let none = dir.join("none.json");
    std::fs::write(&none, NONE).unwrap();
    let socket = dir.join("redis.sock");
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--save",
            "",
            "--appendonly",
            "no",
            "--unixsocket",
        ])
        .arg(&socket)
        .stdout(Stdio::null())
        .spawn()
        .ok();
    let mut stores = vec![
        ("no limit", none.clone(), "memory".to_owned()),
        ("memory", policy.clone(), "memory".to_owned()),
        (
            "lmdb (the default)",
            policy.clone(),
            format!("lmdb:{}", dir.join("counters.lmdb").display()),
        ),
        (
            "sqlite",
            policy.clone(),
            format!("sqlite:{}", dir.join("state.db").display()),
        ),
    ];
    if redis.is_some() {
        while !socket.exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
        stores.push((
            "redis",
            policy.clone(),
            format!("redis+unix://{}", socket.display()),
        ));
    }
    println!(
        "| store | p50 round trip, one at a time | calls/s, 4 processes sharing one counter |"
    );
    println!("| --- | ---: | ---: |");
    for (name, policy, state) in stores {
        let home = dir.join(name);
        let latency = p50(&policy, &state, &home, calls);
        let rate = shared(&policy, &state, &home, calls);
        println!(
            "| {name} | {:.1} µs | {rate:.0} |",
            latency.as_secs_f64() * 1e6
        );
    }
    if let Some(redis) = redis.as_mut() {
        let _ = redis.kill();
        let _ = redis.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
