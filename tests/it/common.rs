//! Running toolwarden (or a server directly) as a real process and talking
//! to it line by line, as an MCP client would.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long any single expected line may take.
/// Long: a debug build takes some 20 s over the 30 MiB calls of the
/// hostile suite, more on a busy machine; only a failure waits it out.
pub const PATIENCE: Duration = Duration::from_secs(120);

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary under test: this build's, or another build of it named by
/// `TOOLWARDEN_BIN` (.ci/run runs the suite again on `cargo dist`'s).
pub fn toolwarden_bin() -> PathBuf {
    std::env::var_os("TOOLWARDEN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_toolwarden").into())
}

/// toolwarden, with its state (the counters' database, the audit key) in
/// a directory of its own instead of the user's: tests that share counters
/// name a store with `--state`.
pub fn toolwarden() -> Command {
    let mut cmd = Command::new(toolwarden_bin());
    cmd.env("XDG_STATE_HOME", state_home(&fastrand_name()));
    cmd.env_remove("TOOLWARDEN_STATE");
    // No desktop notifications from the suite's sessions (tests that
    // check them name a bus of their own).
    cmd.env_remove("DBUS_SESSION_BUS_ADDRESS");
    cmd
}

/// An `XDG_STATE_HOME` for one toolwarden (or several that share it).
pub fn state_home(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("toolwarden-it-{}-state-{name}", std::process::id()))
}

/// The mock server from mock-server/, built once per test run: `cargo
/// test` builds toolwarden's package alone.
pub fn mock_server() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "mock_server"])
            .current_dir(root())
            .status()
            .unwrap();
        assert!(status.success(), "building the mock server failed");
    });
    let exe = Path::new(env!("CARGO_BIN_EXE_toolwarden"));
    exe.parent().unwrap().join("mock_server")
}

/// A binary of a pinned npm package, installed by tests/setup.
pub fn npm_bin(name: &str) -> PathBuf {
    let path = root().join("tests/npm/node_modules/.bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run tests/setup (it installs the pinned npm packages)",
        path.display()
    );
    path
}

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("toolwarden-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// toolwarden around the mock server, with `policy` (a path under the repo
/// or JSON text written to a file) and extra mock-server flags.
pub fn guarded_mock(policy: &str, tools: &str, mock_args: &[&str]) -> Command {
    guarded_mock_with(policy, tools, &[], mock_args)
}

/// [`guarded_mock`] with more of toolwarden's options.
pub fn guarded_mock_with(
    policy: &str,
    tools: &str,
    options: &[&std::ffi::OsStr],
    mock_args: &[&str],
) -> Command {
    let policy_path = if policy.trim_start().starts_with('{') {
        let path = temp_dir(&format!("policy-{}", fastrand_name())).join("policy.json");
        std::fs::write(&path, policy).unwrap();
        path
    } else {
        root().join(policy)
    };
    let mut cmd = toolwarden();
    cmd.arg("--policy")
        .arg(policy_path)
        .args([
            "--log-level",
            "debug",
            "--close-timeout",
            "2s",
            "--term-timeout",
            "2s",
        ])
        .args(options)
        .arg("--")
        .arg(mock_server())
        .arg("--tools")
        .arg(root().join(tools))
        .args(mock_args);
    cmd
}

fn fastrand_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}", N.fetch_add(1, Ordering::Relaxed))
}

/// One running process with its stdout read line by line.
pub struct Session {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Session {
    pub fn start(cmd: &mut Command) -> Session {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the command starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::with_capacity(1 << 20, stdout);
            let mut line = Vec::new();
            while reader
                .read_until(b'\n', &mut line)
                .map(|n| n > 0)
                .unwrap_or(false)
            {
                let text = String::from_utf8(line.clone()).expect("stdout carries UTF-8");
                assert!(
                    text.ends_with('\n'),
                    "every message ends with a newline: {text:?}"
                );
                if tx.send(text.trim_end_matches('\n').to_owned()).is_err() {
                    break;
                }
                line.clear();
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let mut err = child.stderr.take().unwrap();
        let stderr_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let stdin = child.stdin.take();
        Session {
            child,
            stdin,
            lines,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    pub fn send(&mut self, line: &str) {
        self.send_bytes(line.as_bytes());
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(bytes).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.stdin.as_mut().expect("stdin is open")
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next line on stdout; fails the test after [`PATIENCE`].
    pub fn recv(&mut self) -> String {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                panic!("no line within {PATIENCE:?}; stderr:\n{}", self.stderr())
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("stdout closed; stderr:\n{}", self.stderr())
            }
        }
    }

    pub fn recv_json(&mut self) -> Value {
        let line = self.recv();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// Everything left on stdout until it closes.
    pub fn rest(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => out.push(line),
                Err(RecvTimeoutError::Disconnected) => return out,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "stdout still open after {PATIENCE:?}; stderr:\n{}",
                    self.stderr()
                ),
            }
        }
    }

    /// Sends a request and reads until its response, which it returns as
    /// the raw line; other lines are handed to `other` (which may answer
    /// server requests).
    pub fn request(
        &mut self,
        line: &str,
        id: &Value,
        mut other: impl FnMut(&mut Session, &str, &Value),
    ) -> String {
        self.send(line);
        loop {
            let raw = self.recv();
            let message: Value =
                serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{e}: {raw}"));
            if message.get("id") == Some(id) && message.get("method").is_none() {
                return raw;
            }
            other(self, &raw, &message);
        }
    }

    pub fn wait(&mut self) -> ExitStatus {
        self.close_stdin();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader take in what the process wrote last. A
                // server that outlived it may hold stderr open: do not wait
                // for that.
                let until = Instant::now() + Duration::from_secs(2);
                while self
                    .stderr_reader
                    .as_ref()
                    .is_some_and(|r| !r.is_finished())
                    && Instant::now() < until
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the process did not exit; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn initialize(protocol: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{protocol}","capabilities":{{}},"clientInfo":{{"name":"toolwarden-tests","version":"1"}}}}}}"#
    )
}

pub fn call(id: u64, tool: &str, arguments: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{arguments}}}}}"#
    )
}

/// The names in a tools/list response.
pub fn tool_names(response: &Value) -> Vec<String> {
    response["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("not a tools/list result: {response}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The decision of a refusal, or None for a result that is not one.
pub fn decision(response: &Value) -> Option<String> {
    response["result"]["_meta"]["toolwarden/decision"]["decision"]
        .as_str()
        .map(str::to_owned)
}

/// Whether a process with this pid still runs (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .split(") ")
            .nth(1)
            .is_some_and(|rest| rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS:")
}

/// Peak resident memory of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmHWM:")
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A Redis server of this test's, on a Unix socket, stopped when dropped.
pub struct RedisServer {
    child: Child,
    socket: PathBuf,
}

impl RedisServer {
    pub fn start(dir: &Path) -> RedisServer {
        let socket = dir.join("redis.sock");
        let _ = std::fs::remove_file(&socket);
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (tests/setup installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer { child, socket }
    }

    pub fn spec(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
