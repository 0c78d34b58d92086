//! toolwarden's cost end to end: one workload against a server directly,
//! through a plain byte relay that parses nothing, through toolwarden as
//! users run it (its default state store), and through toolwarden with
//! `--state memory`, interleaved in one run (direct first, then the other
//! three in turn: relay, toolwarden, memory; toolwarden, memory, relay;
//! ...), so that the machine's mood hits all four alike.
//!
//! ```text
//! cargo bench --bench e2e -- [--server mock|everything|everything-http] [--rounds N] [--warmup N] [--no-pin] [--state SPEC]
//! ```
//!
//! `--server everything-http` runs server-everything over Streamable HTTP
//! instead, a fresh one for each session, and sets toolwarden (its command
//! the server's URL) against the stdio bridges a user would put there
//! instead, pinned in benches/npm (`npm ci --prefix benches/npm`):
//! `mcp-remote` and `supergateway`, in turns as above. A direct
//! connection and a byte relay have no place there: the client speaks
//! stdio, the server HTTP, and something has to translate.
//!
//! `BENCH_RELAY=PATH` runs another relay in the byte relay's place;
//! `BENCH_TOOLWARDEN=PATH` another build of toolwarden in its own (by
//! default, on Linux x86-64, the static one `cargo dist` makes, which is
//! the one users install).
//!
//! Per session: start-up (spawn to the initialize answer), 200 warm-up
//! calls (`--warmup`), 2,000 small tools/call round trips one at a time
//! (p50, p90), 13,000 with 16 in flight (calls per second), five 4 MiB
//! round trips, and the resident memory of what stands in front of the
//! server (toolwarden, a bridge) after 2,000 and after 15,000 timed calls,
//! and at its peak.
//!
//! The report gives each figure's median over the rounds (25 by default);
//! toolwarden's ratio to the byte relay and to the direct connection, as
//! the median of each round's own ratio; and where the ratio to the relay
//! falls round by round (the middle half of the rounds): how far one round
//! alone can be off. A second table sets the default store against
//! `--state memory` the same way: what a limited call's store costs.

// This benchmark reports to a person: its table is its output.
#![allow(clippy::print_stdout)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const LATENCY_CALLS: usize = 2_000;
const THROUGHPUT_CALLS: usize = 13_000;
const IN_FLIGHT: usize = 16;
const BIG_ROUNDS: usize = 5;
const BIG: usize = 4 * 1024 * 1024;

struct Options {
    server: String,
    rounds: usize,
    pin: bool,
    /// Calls before the timed ones; the default leaves a Node server
    /// still compiling its hot code during them, as early in a session.
    warmup: usize,
    /// toolwarden's `--state` (None: the default store, as users run it,
    /// in a state directory of the benchmark's); `--state memory` is
    /// measured beside it in every round.
    state: Option<String>,
}

fn options() -> Options {
    let mut o = Options {
        server: "mock".into(),
        // A single session's figures move by several percent on their own
        // (a Node server compiles its hot code differently each time); 25
        // rounds take some 30 s on the mock and 3 minutes on
        // server-everything.
        rounds: 25,
        pin: true,
        warmup: 200,
        state: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--server" => o.server = args.next().expect("--server mock|everything"),
            "--rounds" => {
                o.rounds = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--rounds N")
            }
            "--warmup" => {
                o.warmup = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--warmup N")
            }
            "--no-pin" => o.pin = false,
            "--state" => o.state = Some(args.next().expect("--state SPEC")),
            _ => {} // cargo bench passes --bench
        }
    }
    o
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The example binaries, built in release mode.
fn example(name: &str) -> PathBuf {
    let status = Command::new(option_env!("CARGO").unwrap_or("cargo"))
        .args(["build", "--quiet", "--release", "--example", name])
        .current_dir(root())
        .status()
        .unwrap();
    assert!(status.success());
    root().join("target/release/examples").join(name)
}

/// The bundled mock server (mock-server/), built in release mode.
fn mock_server() -> PathBuf {
    let status = Command::new(option_env!("CARGO").unwrap_or("cargo"))
        .args(["build", "--quiet", "--release", "-p", "mock_server"])
        .current_dir(root())
        .status()
        .unwrap();
    assert!(status.success());
    root().join("target/release/mock_server")
}

/// The toolwarden measured: `BENCH_TOOLWARDEN` if set, else the build users
/// install: on Linux x86-64 the static one of `cargo dist`, elsewhere
/// `cargo build --release`'s.
fn toolwarden_build() -> (OsString, String) {
    if let Some(path) = std::env::var_os("BENCH_TOOLWARDEN") {
        let name = format!("{} (BENCH_TOOLWARDEN)", path.to_string_lossy());
        return (path, name);
    }
    if cfg!(all(
        target_os = "linux",
        target_arch = "x86_64",
        target_env = "gnu"
    )) {
        let status = Command::new(option_env!("CARGO").unwrap_or("cargo"))
            .args(["dist", "--quiet"])
            .current_dir(root())
            .status()
            .unwrap();
        assert!(status.success());
        let path = root().join("target/x86_64-unknown-linux-gnu/dist/toolwarden");
        return (path.into(), "static, cargo dist".into());
    }
    (
        env!("CARGO_BIN_EXE_toolwarden").into(),
        "cargo build --release".into(),
    )
}

/// The set-ups; `kind as usize` indexes their samples.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Direct,
    Relay,
    /// toolwarden with its default store (or `--state`'s).
    Toolwarden,
    /// toolwarden with `--state memory`.
    Memory,
    /// `mcp-remote URL`, a stdio bridge to a remote server.
    McpRemote,
    /// `supergateway --streamableHttp URL`, another.
    Supergateway,
}

/// One figure of a session, for the report.
type Column = fn(&Sample) -> f64;

/// What one session measured.
#[derive(Default)]
struct Sample {
    startup: Duration,
    p50: Duration,
    p90: Duration,
    calls_per_second: f64,
    big: Duration,
    rss_early_kib: u64,
    rss_late_kib: u64,
    peak_kib: u64,
}

struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    line: String,
    out: Vec<u8>,
    next_id: u64,
}

impl Client {
    /// One write per message, newline included, as the SDK clients do: a
    /// message split over two writes would cost the server and the byte
    /// relay a second wake-up that toolwarden, waiting for the newline,
    /// mostly avoids.
    fn send(&mut self, line: &str) {
        self.out.clear();
        self.out.extend_from_slice(line.as_bytes());
        self.out.push(b'\n');
        self.stdin.write_all(&self.out).unwrap();
    }

    /// The next answer; notifications are skipped and the server's own
    /// requests refused, as a client without capabilities would.
    fn recv(&mut self) -> &str {
        loop {
            self.line.clear();
            let n = self.stdout.read_line(&mut self.line).unwrap();
            assert!(n > 0, "the server closed its output");
            if !self.line.contains("\"method\"") || self.line.len() > 64 * 1024 {
                return &self.line;
            }
            let message: serde_json::Value = serde_json::from_str(&self.line).unwrap();
            if let Some(id) = message.get("id") {
                let refusal = serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "not supported"}});
                self.send(&refusal.to_string());
            }
        }
    }

    fn call_line(&mut self, message: &str) -> String {
        self.next_id += 1;
        format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{message}"}}}}}}"#,
            self.next_id
        )
    }

    fn round_trip(&mut self, message: &str) -> Duration {
        let line = self.call_line(message);
        let start = Instant::now();
        self.send(&line);
        let answer = self.recv();
        assert!(
            answer.contains("\"result\""),
            "not a result: {}",
            &answer[..answer.len().min(300)]
        );
        start.elapsed()
    }
}

/// How big the big calls' message is: 4 MiB, or on server-everything over
/// HTTP 4 KiB less, under its SDK's 4 MiB bound on a request body, which
/// the envelope would take the message over.
fn big_message(server: &str) -> usize {
    if server == "everything-http" {
        BIG - 4096
    } else {
        BIG
    }
}

fn run_session(command: &[OsString], state_home: &Path, o: &Options, kind: Kind) -> Sample {
    let (pin, warmup) = (o.pin, o.warmup);
    // Resident memory: that of the process in front of the server; in a
    // direct session that is the server itself, which is not reported.
    let rss = kind != Kind::Direct;
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..])
        .env("XDG_STATE_HOME", state_home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if pin {
        // The server and whatever stands in front of it share CPU 0; this
        // harness runs on CPU 1.
        unsafe {
            cmd.pre_exec(|| {
                pin_to(0);
                Ok(())
            });
        }
    }
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let mut client = Client {
        stdin: child.stdin.take().unwrap(),
        stdout: BufReader::with_capacity(1 << 20, child.stdout.take().unwrap()),
        child,
        line: String::new(),
        out: Vec::new(),
        next_id: 0,
    };
    client.send(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#);
    client.recv();
    let mut sample = Sample {
        startup: start.elapsed(),
        ..Sample::default()
    };
    client.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let pid = client.child.id();

    for _ in 0..warmup {
        client.round_trip("warm");
    }
    let mut times: Vec<Duration> = (0..LATENCY_CALLS)
        .map(|_| client.round_trip("hello"))
        .collect();
    times.sort();
    sample.p50 = times[times.len() / 2];
    sample.p90 = times[times.len() * 9 / 10];
    if rss {
        sample.rss_early_kib = proc_status(pid, "VmRSS:");
    }

    let start = Instant::now();
    let (mut sent, mut received) = (0, 0);
    while received < THROUGHPUT_CALLS {
        while sent < THROUGHPUT_CALLS && sent - received < IN_FLIGHT {
            let line = client.call_line("hello");
            client.send(&line);
            sent += 1;
        }
        client.recv();
        received += 1;
    }
    sample.calls_per_second = THROUGHPUT_CALLS as f64 / start.elapsed().as_secs_f64();
    if rss {
        sample.rss_late_kib = proc_status(pid, "VmRSS:");
    }

    let big = "x".repeat(big_message(&o.server));
    let mut bigs: Vec<Duration> = (0..BIG_ROUNDS).map(|_| client.round_trip(&big)).collect();
    bigs.sort();
    sample.big = bigs[bigs.len() / 2];
    if rss {
        sample.peak_kib = proc_status(pid, "VmHWM:");
    }
    drop(client.stdin);
    let _ = client.child.wait();
    sample
}

fn pin_to(cpu: usize) {
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The middle half of `values`: where a single round's figure falls half
/// of the time.
fn middle_half(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (values[n / 4], values[(3 * n).div_ceil(4) - 1])
}

/// A server-everything of its own over Streamable HTTP, on CPU 0 with
/// whatever stands in front of it, and its URL once it listens.
fn http_server(pin: bool) -> (Child, String) {
    let script =
        root().join("tests/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(script.exists(), "run tests/setup first");
    // A port the system had free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if pin {
        unsafe {
            cmd.pre_exec(|| {
                pin_to(0);
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on port") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "server-everything exited before it listened"
        );
    }
    // Whatever it says later must not fill the pipe and stall it.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    (child, format!("http://127.0.0.1:{port}/mcp"))
}

/// A bridge installed by `npm ci --prefix benches/npm`.
fn bridge(name: &str) -> OsString {
    let bin = root().join("benches/npm/node_modules/.bin").join(name);
    assert!(bin.exists(), "run npm ci --prefix benches/npm first");
    bin.into()
}

fn main() {
    let o = options();
    let http = o.server == "everything-http";
    let server: Vec<OsString> = match o.server.as_str() {
        "mock" => vec![
            mock_server().into(),
            "--tools".into(),
            root().join("examples/tools/bench.json").into(),
        ],
        "everything" => {
            let bin = root().join("tests/npm/node_modules/.bin/mcp-server-everything");
            assert!(Path::new(&bin).exists(), "run tests/setup first");
            vec![bin.into(), "stdio".into()]
        }
        // Each session's own server, started in the round loop.
        "everything-http" => vec![],
        other => panic!("unknown server {other}: mock, everything or everything-http"),
    };
    // BENCH_RELAY puts another baseline in the relay's place, such as
    // examples/tokio_relay.rs.
    let relay = if http {
        PathBuf::new()
    } else {
        std::env::var_os("BENCH_RELAY")
            .map(PathBuf::from)
            .unwrap_or_else(|| example("byte_relay"))
    };
    let (mcp_remote, supergateway) = if http {
        (bridge("mcp-remote"), bridge("supergateway"))
    } else {
        Default::default()
    };
    let (toolwarden, build) = toolwarden_build();
    let policy = std::env::temp_dir().join(format!("toolwarden-bench-{}.json", std::process::id()));
    // A realistic rule: one tool allowed with a limit no run exhausts,
    // everything else denied.
    std::fs::write(
        &policy,
        r#"{"version":"1","default":"deny","tools":{"echo":{"limits":[{"window":"second","max":1000000}]}}}"#,
    )
    .unwrap();
    // The default store's files, as a user's state directory holds them:
    // made by the first session, then kept from one session to the next.
    let state_home = std::env::temp_dir().join(format!("toolwarden-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state_home);
    // `server`: the server's command, or over HTTP its URL alone.
    let command = |kind: Kind, server: &[OsString]| -> Vec<OsString> {
        let state = match (kind, &o.state) {
            (Kind::Memory, _) => vec!["--state".into(), "memory".into()],
            (_, Some(spec)) => vec!["--state".into(), spec.into()],
            (_, None) => vec![],
        };
        match kind {
            Kind::Direct => server.to_vec(),
            Kind::Relay => [vec![relay.clone().into(), "--".into()], server.to_vec()].concat(),
            Kind::Toolwarden | Kind::Memory => [
                vec![
                    toolwarden.clone(),
                    "--policy".into(),
                    policy.clone().into(),
                    "--log-level".into(),
                    "error".into(),
                ],
                state,
                vec!["--".into()],
                server.to_vec(),
            ]
            .concat(),
            // Each as quiet as toolwarden's --log-level error, and on the
            // transport the server speaks without a first try at another.
            Kind::McpRemote => [
                vec![mcp_remote.clone(), server[0].clone()],
                vec!["--transport".into(), "http-only".into(), "--silent".into()],
            ]
            .concat(),
            Kind::Supergateway => vec![
                supergateway.clone(),
                "--streamableHttp".into(),
                server[0].clone(),
                "--logLevel".into(),
                "none".into(),
            ],
        }
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if o.pin {
        pin_to(1);
    }
    let mut samples: [Vec<Sample>; 6] = Default::default();
    for round in 0..o.rounds {
        // The set-ups after the direct session take turns at each place: a
        // session inherits the CPU's caches, the page cache and the
        // scheduler's state from the one before it, and none should always
        // be the one that follows another.
        let (first, mut rest) = if http {
            (
                None,
                [Kind::Toolwarden, Kind::McpRemote, Kind::Supergateway],
            )
        } else {
            (
                Some(Kind::Direct),
                [Kind::Relay, Kind::Toolwarden, Kind::Memory],
            )
        };
        rest.rotate_left(round % 3);
        for kind in first.into_iter().chain(rest) {
            let sample = if http {
                // A fresh server for each session: one that had served the
                // session before would meet this one with its hot code
                // compiled and its event store full.
                let (mut child, url) = http_server(o.pin);
                let sample = run_session(&command(kind, &[url.into()]), &state_home, &o, kind);
                let _ = child.kill();
                let _ = child.wait();
                sample
            } else {
                run_session(&command(kind, &server), &state_home, &o, kind)
            };
            samples[kind as usize].push(sample);
        }
        eprintln!("round {} of {} done", round + 1, o.rounds);
    }
    let _ = std::fs::remove_file(&policy);
    let _ = std::fs::remove_dir_all(&state_home);

    let stat =
        |k: Kind, f: &dyn Fn(&Sample) -> f64| median(samples[k as usize].iter().map(f).collect());
    println!(
        "server: {}, rounds: {}, warm-up calls: {}, processes pinned to one CPU: {}, cores: {}",
        o.server,
        o.rounds,
        o.warmup,
        if o.pin { "yes" } else { "no" },
        cores
    );
    println!(
        "toolwarden: {build}, state: {}",
        o.state.as_deref().unwrap_or("the default store")
    );
    println!();
    if http {
        http_report(&samples, &o);
        return;
    }
    println!("| median of {} rounds | direct | byte relay | toolwarden | toolwarden / relay | the same, round by round (middle half) | toolwarden / direct |", o.rounds);
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let rows: [(&str, Column); 5] = [
        ("start-up (ms)", |s| s.startup.as_secs_f64() * 1e3),
        ("round trip p50 (µs)", |s| s.p50.as_secs_f64() * 1e6),
        ("round trip p90 (µs)", |s| s.p90.as_secs_f64() * 1e6),
        ("calls/s, 16 in flight", |s| s.calls_per_second),
        ("4 MiB round trip (ms)", |s| s.big.as_secs_f64() * 1e3),
    ];
    for (label, column) in rows {
        let f: &dyn Fn(&Sample) -> f64 = &column;
        // Each round's toolwarden against the byte relay (or the direct
        // connection) of the same round. A round's sessions run seconds
        // apart, rounds minutes apart: the machine's slow drift cancels
        // out of these ratios, where it stays in a ratio of two medians.
        let ratios = |other: Kind| -> Vec<f64> {
            samples[Kind::Toolwarden as usize]
                .iter()
                .zip(&samples[other as usize])
                .map(|(t, o)| f(t) / f(o))
                .collect()
        };
        let to_relay = ratios(Kind::Relay);
        let (low, high) = middle_half(to_relay.clone());
        println!(
            "| {label} | {:.1} | {:.1} | {:.1} | {:.3}x | {low:.3}x to {high:.3}x | {:.3}x |",
            stat(Kind::Direct, f),
            stat(Kind::Relay, f),
            stat(Kind::Toolwarden, f),
            median(to_relay),
            median(ratios(Kind::Direct)),
        );
    }
    println!();
    println!(
        "| median of {} rounds | --state memory | {} | the same / memory | round by round (middle half) |",
        o.rounds,
        o.state.as_deref().unwrap_or("the default store")
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (label, column) in rows {
        let f: &dyn Fn(&Sample) -> f64 = &column;
        let ratios: Vec<f64> = samples[Kind::Toolwarden as usize]
            .iter()
            .zip(&samples[Kind::Memory as usize])
            .map(|(t, m)| f(t) / f(m))
            .collect();
        let (low, high) = middle_half(ratios.clone());
        println!(
            "| {label} | {:.1} | {:.1} | {:.3}x | {low:.3}x to {high:.3}x |",
            stat(Kind::Memory, f),
            stat(Kind::Toolwarden, f),
            median(ratios),
        );
    }
    let mib = |kib: f64| kib / 1024.0;
    println!();
    for (kind, name) in [
        (
            Kind::Toolwarden,
            o.state.as_deref().unwrap_or("the default store"),
        ),
        (Kind::Memory, "--state memory"),
    ] {
        println!(
            "toolwarden resident memory ({name}): {:.1} MiB after 2,000 timed calls, {:.1} MiB after 15,000, peak {:.1} MiB (the peak includes the 4 MiB messages)",
            mib(stat(kind, &|s| s.rss_early_kib as f64)),
            mib(stat(kind, &|s| s.rss_late_kib as f64)),
            mib(stat(kind, &|s| s.peak_kib as f64)),
        );
    }
}

/// The table of `--server everything-http`: toolwarden against each
/// bridge, with the ratio of each round's toolwarden to the same round's
/// bridge (the median, and the middle half of the rounds).
fn http_report(samples: &[Vec<Sample>; 6], o: &Options) {
    let rows: [(&str, Column); 8] = [
        ("start-up (ms)", |s| s.startup.as_secs_f64() * 1e3),
        ("round trip p50 (µs)", |s| s.p50.as_secs_f64() * 1e6),
        ("round trip p90 (µs)", |s| s.p90.as_secs_f64() * 1e6),
        ("calls/s, 16 in flight", |s| s.calls_per_second),
        ("4 MiB round trip (ms)", |s| s.big.as_secs_f64() * 1e3),
        ("RSS after 2,000 calls (MiB)", |s| {
            s.rss_early_kib as f64 / 1024.0
        }),
        ("RSS after 15,000 calls (MiB)", |s| {
            s.rss_late_kib as f64 / 1024.0
        }),
        ("peak RSS (MiB)", |s| s.peak_kib as f64 / 1024.0),
    ];
    println!(
        "| median of {} rounds | mcp-remote | supergateway | toolwarden | toolwarden / mcp-remote (middle half) | toolwarden / supergateway (middle half) |",
        o.rounds
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let stat = |k: Kind, f: Column| median(samples[k as usize].iter().map(f).collect());
    for (label, f) in rows {
        let ratio = |other: Kind| -> String {
            let ratios: Vec<f64> = samples[Kind::Toolwarden as usize]
                .iter()
                .zip(&samples[other as usize])
                .map(|(t, b)| f(t) / f(b))
                .collect();
            let (low, high) = middle_half(ratios.clone());
            format!("{:.3}x ({low:.3}x to {high:.3}x)", median(ratios))
        };
        println!(
            "| {label} | {:.1} | {:.1} | {:.1} | {} | {} |",
            stat(Kind::McpRemote, f),
            stat(Kind::Supergateway, f),
            stat(Kind::Toolwarden, f),
            ratio(Kind::McpRemote),
            ratio(Kind::Supergateway),
        );
    }
    println!();
    println!(
        "the 4 MiB row's message: {} bytes (server-everything's SDK refuses a request body over 4 MiB)",
        big_message(&o.server)
    );
}
