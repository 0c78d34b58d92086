//! The server's life under toolwarden: start, stop, exit codes, signals.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;

const GENIEACS: &str = "examples/tools/genieacs.json";
const ALLOW_ALL: &str = r#"{"version":"1","default":"allow"}"#;

fn wait_for_file(path: &std::path::Path) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if !text.is_empty() {
                return text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_until_dead(pid: i32) {
    let deadline = Instant::now() + PATIENCE;
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} is still running");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_banner_on_the_servers_stdout_goes_to_stderr() {
    let mut s = Session::start(&mut guarded_mock(ALLOW_ALL, GENIEACS, &["--banner"]));
    s.send(&initialize("2025-06-18"));
    let first = s.recv_json();
    assert_eq!(
        first["id"], 0,
        "the banner never reaches the client: {first}"
    );
    assert_eq!(s.wait().code(), Some(0));
    assert!(s.stderr().contains("not JSON-RPC"), "{}", s.stderr());
    assert!(
        s.stderr()
            .contains("mock server \"genieacs-mock\" starting"),
        "{}",
        s.stderr()
    );
}

#[test]
fn the_servers_exit_code_becomes_toolwardens() {
    let mut s = Session::start(&mut guarded_mock(
        ALLOW_ALL,
        GENIEACS,
        &["--exit-code", "7"],
    ));
    s.send(&initialize("2025-06-18"));
    s.recv();
    assert_eq!(s.wait().code(), Some(7));
}

#[test]
fn a_crash_with_a_call_pending_answers_the_call_and_keeps_the_status() {
    let mut s = Session::start(&mut guarded_mock(
        ALLOW_ALL,
        GENIEACS,
        &["--crash-on", "retry_task"],
    ));
    s.send(&initialize("2025-06-18"));
    s.recv();
    s.send(&call(1, "retry_task", r#"{"task_id":"67abc123def456"}"#));
    let reply = s.recv_json();
    assert_eq!(reply["id"], 1);
    assert_eq!(reply["error"]["code"], -32603);
    assert_eq!(
        reply["error"]["message"],
        "the server exited (exit code 3) before answering"
    );
    assert_eq!(s.wait().code(), Some(3), "stderr:\n{}", s.stderr());
}

#[test]
fn answers_still_on_their_way_reach_the_client_after_it_closes_its_input() {
    // A scripted session: everything is written, stdin closed at once.
    let mut s = Session::start(&mut guarded_mock(
        ALLOW_ALL,
        GENIEACS,
        &["--slow-ms", "300"],
    ));
    s.send(&initialize("2025-06-18"));
    for id in 1..=3 {
        s.send(&call(id, "retry_task", r#"{"task_id":"t"}"#));
    }
    s.close_stdin();
    let ids: Vec<_> = s
        .rest()
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(0), json!(1), json!(2), json!(3)]);
    assert_eq!(s.wait().code(), Some(0));
}

#[test]
fn sigterm_sigint_and_sighup_reach_the_server_at_once() {
    for (signal, code) in [
        (libc::SIGTERM, 143),
        (libc::SIGINT, 130),
        (libc::SIGHUP, 129),
    ] {
        // A server that takes 500 ms a call, and would take 30 s to be
        // stopped by closing its stdin (it lingers after EOF).
        let dir = temp_dir(&format!("signal-{signal}"));
        let pid_file = dir.join("pid");
        let policy = dir.join("policy.json");
        std::fs::write(&policy, ALLOW_ALL).unwrap();
        let mut s = Session::start(
            toolwarden()
                .arg("--policy")
                .arg(&policy)
                .args(["--close-timeout", "30s", "--term-timeout", "30s", "--"])
                .arg(mock_server())
                .arg("--tools")
                .arg(root().join(GENIEACS))
                .args(["--slow-ms", "500", "--linger", "--pid-file"])
                .arg(&pid_file),
        );
        s.send(&initialize("2025-06-18"));
        s.recv();
        let server: i32 = wait_for_file(&pid_file).parse().unwrap();
        s.send(&call(1, "retry_task", r#"{"task_id":"t"}"#));
        std::thread::sleep(Duration::from_millis(100));
        let signalled = std::time::Instant::now();
        s.signal(signal);
        // The server dies of the signal: the call in flight is answered
        // by toolwarden.
        let reply = s.recv_json();
        assert_eq!(reply["id"], 1, "{reply}");
        assert!(
            reply.to_string().contains("the server exited (signal"),
            "{reply}"
        );
        assert_eq!(
            s.wait().code(),
            Some(code),
            "signal {signal}; stderr:\n{}",
            s.stderr()
        );
        // Long before the close timeout: the signal, not the stop by EOF,
        // ended the server.
        assert!(signalled.elapsed() < Duration::from_secs(15));
        wait_until_dead(server);
    }
}

#[test]
fn a_server_that_handles_the_signal_still_answers_what_it_was_asked() {
    let dir = temp_dir("signal-graceful");
    let pid_file = dir.join("pid");
    let mut s = Session::start(&mut guarded_mock(
        ALLOW_ALL,
        GENIEACS,
        &[
            "--slow-ms",
            "500",
            "--ignore-signals",
            "--pid-file",
            pid_file.to_str().unwrap(),
        ],
    ));
    s.send(&initialize("2025-06-18"));
    s.recv();
    let server: i32 = wait_for_file(&pid_file).parse().unwrap();
    s.send(&call(1, "retry_task", r#"{"task_id":"t"}"#));
    std::thread::sleep(Duration::from_millis(100));
    s.signal(libc::SIGTERM);
    let reply = s.recv_json();
    assert_eq!(
        (reply["id"].clone(), reply["result"]["isError"].clone()),
        (json!(1), json!(false)),
        "{reply}"
    );
    assert_eq!(s.wait().code(), Some(143), "stderr:\n{}", s.stderr());
    wait_until_dead(server);
}

#[test]
fn a_server_that_ignores_eof_gets_sigterm_then_sigkill() {
    let mut s = Session::start(&mut guarded_mock(ALLOW_ALL, GENIEACS, &["--linger"]));
    s.send(&initialize("2025-06-18"));
    s.recv();
    assert_eq!(s.wait().code(), Some(0));
    assert!(s.stderr().contains("SIGTERM"), "{}", s.stderr());

    let mut s = Session::start(&mut guarded_mock(
        ALLOW_ALL,
        GENIEACS,
        &["--linger", "--ignore-term"],
    ));
    s.send(&initialize("2025-06-18"));
    s.recv();
    assert_eq!(s.wait().code(), Some(0));
    assert!(s.stderr().contains("SIGKILL"), "{}", s.stderr());
}

#[test]
fn the_server_dies_with_toolwarden_even_on_sigkill() {
    let dir = temp_dir("sigkill");
    let pid_file = dir.join("pid");
    let mut s = Session::start(&mut guarded_mock(
        ALLOW_ALL,
        GENIEACS,
        &["--pid-file", pid_file.to_str().unwrap()],
    ));
    s.send(&initialize("2025-06-18"));
    s.recv();
    let server: i32 = wait_for_file(&pid_file).parse().unwrap();
    assert!(alive(server));
    s.signal(libc::SIGKILL);
    wait_until_dead(server);
}

#[test]
fn a_command_that_cannot_start_exits_127_and_says_which() {
    let mut s = Session::start(
        toolwarden()
            .arg("--policy")
            .arg(root().join("policies/permissive.json"))
            .args(["--", "/nonexistent/mcp-server", "--x"]),
    );
    assert_eq!(s.wait().code(), Some(127));
    assert!(
        s.stderr()
            .contains("cannot start the server `/nonexistent/mcp-server`: not found"),
        "{}",
        s.stderr()
    );
}

#[test]
fn a_bad_policy_exits_2_and_never_starts_the_server() {
    let dir = temp_dir("bad-policy");
    let record = dir.join("record");
    let policy = dir.join("policy.json");
    std::fs::write(
        &policy,
        r#"{"version":"1","tools":{"retry_task":{"limts":[]}}}"#,
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
    assert_eq!(s.wait().code(), Some(2));
    let stderr = s.stderr();
    assert!(
        stderr.contains(&format!(
            "{}: /tools/retry_task/limts: unknown field `limts`",
            policy.display()
        )),
        "{stderr}"
    );
    assert!(!record.exists(), "the server was started");
    assert!(s.rest().is_empty(), "nothing on stdout");
}

#[test]
fn a_server_that_never_reads_keeps_toolwarden_memory_bounded() {
    let mut s = Session::start(&mut guarded_mock(ALLOW_ALL, GENIEACS, &["--no-read"]));
    let pid = s.child.id();
    let mut stdin = s.stdin().try_clone_pipe();
    // 200 MB of valid requests; the server reads none of them.
    let writer = std::thread::spawn(move || {
        let line = format!(
            "{}\n",
            call(
                1,
                "retry_task",
                &format!(r#"{{"task_id":"{}"}}"#, "a".repeat(1000))
            )
        );
        let mut written = 0usize;
        for i in 0..200_000 {
            let line = line.replacen("\"id\":1,", &format!("\"id\":{i},"), 1);
            if stdin.write_all(line.as_bytes()).is_err() {
                break;
            }
            written += line.len();
        }
        written
    });
    std::thread::sleep(Duration::from_secs(3));
    let rss = rss_kib(pid);
    assert!(
        rss < 40 * 1024,
        "toolwarden holds {rss} KiB while the server reads nothing"
    );
    s.signal(libc::SIGTERM);
    assert_eq!(s.wait().code(), Some(143));
    let written = writer.join().unwrap();
    assert!(
        written < 50_000_000,
        "the client could write {written} bytes: nothing pushed back"
    );
}

/// A second handle to the child's stdin, for a writer thread.
trait ClonePipe {
    fn try_clone_pipe(&mut self) -> std::fs::File;
}

impl ClonePipe for std::process::ChildStdin {
    fn try_clone_pipe(&mut self) -> std::fs::File {
        use std::os::fd::AsFd;
        std::fs::File::from(self.as_fd().try_clone_to_owned().unwrap())
    }
}

#[test]
fn a_grandchild_server_dies_with_toolwarden_even_on_sigkill() {
    // As under npx: the real server is a grandchild, and this one ignores
    // the end of its input, so only a signal to its group stops it.
    let dir = temp_dir("sigkill-grandchild");
    let pid_file = dir.join("pid");
    let script = format!(
        "{} --tools {} --linger --pid-file {}; true",
        mock_server().display(),
        root().join(GENIEACS).display(),
        pid_file.display()
    );
    let mut s = Session::start(
        toolwarden()
            .arg("--policy")
            .arg(root().join("policies/genieacs.json"))
            .args(["--", "sh", "-c", &script]),
    );
    s.send(&initialize("2025-06-18"));
    s.recv();
    let server: i32 = wait_for_file(&pid_file).parse().unwrap();
    s.signal(libc::SIGKILL);
    wait_until_dead(server);
}

/// toolwarden around a server that lingers 30 s after the end of its
/// input, with the stop's timeouts longer still: only a signal ends it
/// quickly.
fn lingering(dir: &std::path::Path, mock_args: &[&str]) -> (Session, i32) {
    let policy = dir.join("policy.json");
    std::fs::write(&policy, ALLOW_ALL).unwrap();
    let pid_file = dir.join("pid");
    let mut s = Session::start(
        toolwarden()
            .arg("--policy")
            .arg(&policy)
            .args([
                "--log-level",
                "info",
                "--close-timeout",
                "30s",
                "--term-timeout",
                "30s",
                "--",
            ])
            .arg(mock_server())
            .arg("--tools")
            .arg(root().join(GENIEACS))
            .args(["--linger", "--pid-file"])
            .arg(&pid_file)
            .args(mock_args),
    );
    s.send(&initialize("2025-06-18"));
    s.recv();
    let server = wait_for_file(&pid_file).parse().unwrap();
    (s, server)
}

/// The SDKs' stop (close stdin, wait, then SIGTERM) sends one signal: the
/// server gets that SIGTERM, not a SIGKILL, and toolwarden exits 143. So
/// does a signal that comes together with the end of input, in either
/// order.
#[test]
fn a_signal_during_the_stop_by_end_of_input_is_the_first_signal() {
    for (pause, order) in [(500, "eof first"), (0, "eof first"), (0, "signal first")] {
        let dir = temp_dir(&format!("signal-in-stop-{pause}-{}", order.len()));
        let (mut s, server) = lingering(&dir, &[]);
        if order == "signal first" {
            s.signal(libc::SIGTERM);
            s.close_stdin();
        } else {
            s.close_stdin();
            std::thread::sleep(Duration::from_millis(pause));
            s.signal(libc::SIGTERM);
        }
        let code = s.wait().code();
        let stderr = s.stderr();
        assert_eq!(code, Some(143), "{order} after {pause} ms:\n{stderr}");
        assert!(
            stderr.contains("server stopped status=signal 15"),
            "{order} after {pause} ms: the server got the SIGTERM:\n{stderr}"
        );
        assert!(!stderr.contains("second signal"), "{stderr}");
        wait_until_dead(server);
    }
    // Only a second signal escalates, and the first one sets the status.
    let dir = temp_dir("signal-in-stop-twice");
    let (mut s, server) = lingering(&dir, &["--ignore-signals"]);
    s.close_stdin();
    std::thread::sleep(Duration::from_millis(300));
    s.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    s.signal(libc::SIGINT);
    assert_eq!(s.wait().code(), Some(143), "{}", s.stderr());
    assert!(
        s.stderr().contains("second signal while stopping: SIGKILL"),
        "{}",
        s.stderr()
    );
    assert!(
        s.stderr().contains("server stopped status=signal 9"),
        "{}",
        s.stderr()
    );
    wait_until_dead(server);
}

/// The TypeScript SDK's own close of a server that lingers after the end
/// of its input: the SIGTERM it sends after 2 s reaches the server.
#[test]
fn the_typescript_sdks_close_stops_the_server_with_its_sigterm() {
    let dir = temp_dir("sdk-close");
    let policy = dir.join("policy.json");
    std::fs::write(&policy, ALLOW_ALL).unwrap();
    let log = dir.join("stderr.log");
    let pid_file = dir.join("pid");
    // The SDK drops the server's stderr: a shell keeps it, and `exec`
    // keeps the pid the SDK signals.
    let script = format!(
        "exec '{}' --policy '{}' --log-level info --close-timeout 30s --term-timeout 30s -- '{}' --tools '{}' --linger --pid-file '{}' 2>>'{}'",
        toolwarden_bin().display(),
        policy.display(),
        mock_server().display(),
        root().join(GENIEACS).display(),
        pid_file.display(),
        log.display()
    );
    let out = std::process::Command::new("node")
        .current_dir(root().join("tests/npm"))
        .env("XDG_STATE_HOME", state_home("sdk-close"))
        .args(["connect.mjs", "sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("CONNECTED"), "{stdout}");
    let server: i32 = wait_for_file(&pid_file).parse().unwrap();
    wait_until_dead(server);
    let deadline = Instant::now() + PATIENCE;
    let stderr = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("server stopped") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        stderr.contains("signal while stopping: passed on to the server"),
        "{stderr}"
    );
    assert!(
        stderr.contains("server stopped status=signal 15"),
        "{stderr}"
    );
    assert!(!stderr.contains("SIGKILL"), "{stderr}");
}
