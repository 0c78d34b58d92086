//! What a new user meets first: the server command with or without `--`,
//! a policy that does not load shown by the client, and quiet logs.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::*;

const GENIEACS: &str = "examples/tools/genieacs.json";

/// What the official TypeScript SDK's client sees when it starts `argv`.
fn typescript_client(argv: &[&std::ffi::OsStr]) -> String {
    let out = Command::new("node")
        .current_dir(root().join("tests/npm"))
        .arg("connect.mjs")
        .args(argv)
        .env("XDG_STATE_HOME", state_home("first-run-ts"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn policy_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = temp_dir(name).join("policy.json");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_server_command_may_come_without_a_double_dash() {
    let policy = policy_file("no-dash", r#"{"version":"1","default":"allow"}"#);
    let tools = root().join(GENIEACS);
    let seen = typescript_client(&[
        toolwarden_bin().as_os_str(),
        "--policy".as_ref(),
        policy.as_os_str(),
        "--state=memory".as_ref(),
        mock_server().as_os_str(),
        "--tools".as_ref(),
        tools.as_os_str(),
    ]);
    assert_eq!(seen, "CONNECTED 1");
}

#[test]
fn a_policy_that_does_not_load_is_shown_by_the_client() {
    let policy = policy_file(
        "start-error-ts",
        r#"{"version":"1","tools":{"t":{"limts":[]}}}"#,
    );
    let tools = root().join(GENIEACS);
    let seen = typescript_client(&[
        toolwarden_bin().as_os_str(),
        "--policy".as_ref(),
        policy.as_os_str(),
        "--".as_ref(),
        mock_server().as_os_str(),
        "--tools".as_ref(),
        tools.as_os_str(),
    ]);
    assert!(
        seen.starts_with("ERROR MCP error -32000: toolwarden could not start: ")
            && seen.contains("/tools/t/limts: unknown field `limts`"),
        "{seen}"
    );
}

#[test]
fn start_up_errors_answer_initialize_then_exit_2() {
    let dir = temp_dir("start-error-raw");
    let record = dir.join("record");
    let bad_policy = policy_file("start-error-policy", r#"{"version":"2"}"#);
    let good_policy = policy_file("start-error-good", r#"{"version":"1"}"#);
    let cases: [(&std::path::Path, &[&str], &str); 3] = [
        (&bad_policy, &[], "/version: version \"2\" is not supported"),
        (&good_policy, &["--state", "ftp://nowhere"], "ftp://nowhere"),
        (
            &good_policy,
            &["--audit", "/nonexistent-dir/audit.log"],
            "/nonexistent-dir/audit.log",
        ),
    ];
    for (policy, options, says) in cases {
        let mut s = Session::start(
            toolwarden()
                .arg("--policy")
                .arg(policy)
                .args(options)
                .arg("--")
                .arg(mock_server())
                .args(["--record", record.to_str().unwrap()]),
        );
        s.send(&initialize("2025-06-18").replace(r#""id":0"#, r#""id":"init-1""#));
        let answer = s.recv_json();
        assert_eq!(answer["id"], "init-1", "{answer}");
        assert_eq!(answer["error"]["code"], -32000, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("toolwarden could not start: "),
            "{message}"
        );
        assert!(message.contains(says), "{message}");
        assert_eq!(s.wait().code(), Some(2));
        assert!(s.stderr().contains(says), "{}", s.stderr());
        assert!(!record.exists(), "the server was started");
    }
    // A client that sends nothing still sees exit code 2, and stderr.
    let out = toolwarden()
        .arg("--policy")
        .arg(&bad_policy)
        .arg(mock_server())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn by_default_only_refusals_and_problems_are_logged() {
    let policy = policy_file(
        "quiet",
        r#"{"version":"1","tools":{"retry_task":{"arguments":{"type":"object","required":["task_id"]}}}}"#,
    );
    for (level, allowed_logged) in [(None, false), (Some("info"), true)] {
        let mut cmd = toolwarden();
        cmd.arg("--policy").arg(&policy).arg("--state=memory");
        if let Some(level) = level {
            cmd.args(["--log-level", level]);
        }
        cmd.arg("--")
            .arg(mock_server())
            .arg("--tools")
            .arg(root().join(GENIEACS));
        let mut s = Session::start(&mut cmd);
        s.send(&initialize("2025-06-18"));
        s.recv();
        s.send(&call(1, "retry_task", r#"{"task_id":"t"}"#));
        assert_eq!(decision(&s.recv_json()), None);
        s.send(&call(2, "retry_task", "{}"));
        let refused: Value = s.recv_json();
        assert_eq!(decision(&refused).as_deref(), Some("invalid_arguments"));
        assert_eq!(s.wait().code(), Some(0));
        let stderr = s.stderr();
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(
            lines.iter().filter(|l| l.contains("refused")).count(),
            1,
            "{stderr}"
        );
        assert_eq!(stderr.contains("allowed"), allowed_logged, "{stderr}");
        if level.is_none() {
            assert_eq!(lines.len(), 1, "{stderr}");
        }
    }
}

#[test]
fn the_watchdog_has_a_name_of_its_own() {
    let dir = temp_dir("watchdog-name");
    let pid_file = dir.join("pid");
    let mut s = Session::start(&mut guarded_mock(
        r#"{"version":"1"}"#,
        GENIEACS,
        &["--pid-file", pid_file.to_str().unwrap()],
    ));
    let server = wait_for_pid(&pid_file);
    // Written over its own command line: the rest of it is zeros.
    let wanted = format!("toolwarden-watchdog\0{server}");
    let named = || -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .map(|c| {
                String::from_utf8_lossy(&c)
                    .trim_end_matches('\0')
                    .to_owned()
            })
            .filter(|c| c.contains("toolwarden"))
            .collect()
    };
    // The watchdog names itself just after the fork: on a busy machine,
    // a moment after the server is up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let named = loop {
        let named = named();
        if named.contains(&wanted) || std::time::Instant::now() > deadline {
            break named;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(named.contains(&wanted), "{named:?}");
    // toolwarden's own command line is there once: no copy of it.
    let bin = toolwarden_bin().display().to_string();
    let own = named
        .iter()
        .filter(|c| c.starts_with(&bin) && c.contains(pid_file.to_str().unwrap()))
        .count();
    assert_eq!(own, 1, "{named:?}");
    assert_eq!(s.wait().code(), Some(0));
}

fn wait_for_pid(path: &std::path::Path) -> i32 {
    for _ in 0..500 {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("no pid in {}", path.display());
}

#[test]
fn monitor_mode_decides_logs_and_audits_but_refuses_nothing() {
    let dir = temp_dir("monitor");
    let record = dir.join("record");
    let audit = dir.join("audit.jsonl");
    let policy = policy_file(
        "monitor-policy",
        r#"{"version":"1","default":"deny","tools":{
            "retry_task":{"limits":[{"counter":"retries","window":"hour","max":1}],
                          "arguments":{"type":"object","required":["task_id"]}}}}"#,
    );
    let mut s = Session::start(
        toolwarden()
            .arg("--policy")
            .arg(&policy)
            .arg("--monitor")
            .arg("--audit")
            .arg(&audit)
            .arg("--")
            .arg(mock_server())
            .arg("--tools")
            .arg(root().join(GENIEACS))
            .args(["--record", record.to_str().unwrap()]),
    );
    s.send(&initialize("2025-06-18"));
    s.recv();
    for (id, args) in [
        (1, r#"{"task_id":"a"}"#),
        (2, r#"{"task_id":"b"}"#),
        (3, "{}"),
    ] {
        s.send(&call(id, "retry_task", args));
        assert_eq!(decision(&s.recv_json()), None, "call {id}");
    }
    s.send(&call(4, "reboot", "{}"));
    assert_eq!(decision(&s.recv_json()), None);
    assert_eq!(s.wait().code(), Some(0));
    let reached: Vec<Value> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|m: &Value| m["method"] == "tools/call")
        .collect();
    assert_eq!(reached.len(), 4);
    let decisions: Vec<(String, Value)> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "decision")
        .map(|e| {
            (
                e["decision"].as_str().unwrap().to_owned(),
                e["enforced"].clone(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        vec![
            ("allowed".to_owned(), Value::Bool(false)),
            ("rate_limited".to_owned(), Value::Bool(false)),
            ("invalid_arguments".to_owned(), Value::Bool(false)),
            ("not_allowed".to_owned(), Value::Bool(false)),
        ]
    );
    let stderr = s.stderr();
    assert!(stderr.contains("monitor mode"), "{stderr}");
    // Nothing is hidden from tools/list either: Flowforge's policy allows
    // one tool of 12.
    let mut s = Session::start(
        toolwarden()
            .arg("--policy")
            .arg(root().join("policies/flowforge.json"))
            .args(["--monitor", "--state=memory", "--"])
            .arg(mock_server())
            .arg("--tools")
            .arg(root().join("examples/tools/flowforge.json")),
    );
    s.send(r#"{"jsonrpc":"2.0","id":"list","method":"tools/list"}"#);
    assert_eq!(tool_names(&s.recv_json()).len(), 12);
    assert_eq!(s.wait().code(), Some(0));
    assert_eq!(
        stderr
            .matches("would be refused (monitor mode): relayed")
            .count(),
        3,
        "{stderr}"
    );
}

#[test]
fn a_mistyped_redis_url_never_shows_its_password() {
    let policy = policy_file("start-error-redis", r#"{"version":"1"}"#);
    for url in [
        // The query's password of a socket URL, with a bad protocol.
        "redis+unix:///run/redis.sock?pass=hunter2&protocol=4",
        "unix:///run/redis.sock?db=x&password=hunter2",
        // The userinfo's, with a bad database.
        "redis://admin:hunter2@cache.internal:6379/nine",
        // An `@` inside the query's password.
        "redis+unix:///run/redis.sock?protocol=9&pass=hun@ter2",
    ] {
        let mut s = Session::start(
            toolwarden()
                .arg("--policy")
                .arg(&policy)
                .args(["--state", url, "--"])
                .arg(mock_server()),
        );
        s.send(&initialize("2025-06-18"));
        let answer = s.recv_json();
        let message = answer["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains("is not a Redis URL"), "{message}");
        assert_eq!(s.wait().code(), Some(2));
        let stderr = s.stderr();
        assert!(stderr.contains("is not a Redis URL"), "{stderr}");
        for seen in [&message, &stderr] {
            for secret in ["hunter2", "ter2", "hun"] {
                assert!(!seen.contains(secret), "{url}: {seen}");
            }
        }
    }
}

/// A mistyped option, subcommand or log level stops toolwarden with what
/// was meant, before any server starts; the client's `initialize` hears it.
#[test]
fn a_mistyped_command_line_says_what_was_meant() {
    let policy = temp_dir("mistyped").join("p.json");
    std::fs::write(&policy, r#"{"version":"1"}"#).unwrap();
    let policy = policy.to_str().unwrap();
    for (args, says) in [
        (
            vec!["--policy", policy, "--monitr", "--", "srv"],
            "unknown option --monitr; did you mean --monitor?",
        ),
        (
            vec!["chekc", policy],
            "unknown command `chekc`; did you mean `check`?",
        ),
        (
            vec!["--policy", policy, "--log-level", "inf", "--", "srv"],
            "invalid value 'inf' for '--log-level <LEVEL>'",
        ),
    ] {
        let mut child = toolwarden()
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(format!("{}\n", initialize("2025-06-18")).as_bytes())
            .unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(
            stdout.contains(says) && stdout.contains("-32000"),
            "{args:?}: {stdout}"
        );
        assert!(!stderr.contains("cannot start the server"), "{stderr}");
    }
}

#[test]
fn a_server_that_crashes_at_start_is_shown_with_its_last_stderr_lines() {
    let token = format!("ghp_{}", "T".repeat(36));
    let secret_line = format!("using GITHUB_TOKEN={token}");
    let mut lines: Vec<String> = (1..=12).map(|i| format!("starting step {i}")).collect();
    lines.push(secret_line);
    lines.push("Error: config.json: missing field `url`\x1b[31m".into());
    let mut mock_args = Vec::new();
    for line in &lines {
        mock_args.extend(["--stderr", line.as_str()]);
    }
    mock_args.extend(["--exit-at-start", "3"]);
    // The client's initialize sent at once, and after the server is gone.
    for delay in [0, 500] {
        let mut s = Session::start(&mut guarded_mock(
            r#"{"version":"1","default":"allow"}"#,
            GENIEACS,
            &mock_args,
        ));
        std::thread::sleep(std::time::Duration::from_millis(delay));
        s.send(&initialize("2025-06-18"));
        let reply = s.recv_json();
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(reply["id"], 0, "{reply}");
        assert!(
            message.starts_with(
                "the server exited (exit code 3) before answering initialize; \
                 the last lines of its stderr:\n  starting step 5\n"
            ),
            "the last 10 lines: {message}"
        );
        assert!(
            message.ends_with(
                "\n  using GITHUB_TOKEN=[redacted]\n  \
                 Error: config.json: missing field `url`\\u{1b}[31m"
            ),
            "{message}"
        );
        assert_eq!(s.wait().code(), Some(3));
        let stderr = s.stderr();
        assert!(
            stderr.contains(&format!("toolwarden: {message}\n")),
            "{stderr}"
        );
        // The server's own stderr still passes as it was written (each
        // write whole: a log line of toolwarden's may come between two).
        assert!(stderr.contains("starting step 1"), "{stderr}");
        assert!(stderr.contains(&token), "{stderr}");
    }
}

/// toolwarden's stderr on a terminal (a pseudo-terminal), with `NO_COLOR`
/// as given, read until toolwarden exits.
fn stderr_on_a_terminal(no_color: Option<&str>) -> String {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills in two descriptors, which are then owned here.
    let opened = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(opened, 0, "a pseudo-terminal opens");
    // SAFETY: both were just opened and nothing else owns them.
    let (mut master, slave) = unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::fs::File::from_raw_fd(slave),
        )
    };
    let policy = policy_file(
        &format!("colour-{}", no_color.unwrap_or("unset").len()),
        r#"{"version":"1","default":"allow"}"#,
    );
    let mut cmd = toolwarden();
    cmd.arg("--policy")
        .arg(&policy)
        .args(["--state", "memory", "--log-level", "info", "--"])
        .arg(mock_server())
        .args(["--exit-at-start", "0"])
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(slave);
    if let Some(value) = no_color {
        cmd.env("NO_COLOR", value);
    }
    let status = cmd.status().unwrap();
    drop(cmd);
    assert_eq!(status.code(), Some(0));
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    // Once every writer is gone the master reads EIO: the end.
    while let Ok(n) = master.read(&mut chunk) {
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[test]
fn logs_have_colour_on_a_terminal_unless_no_color_is_set() {
    let coloured = stderr_on_a_terminal(None);
    assert!(coloured.contains("server started"), "{coloured}");
    assert!(coloured.contains("\x1b["), "{coloured}");
    // An empty NO_COLOR is as good as none (no-color.org).
    assert!(stderr_on_a_terminal(Some("")).contains("\x1b["));
    let plain = stderr_on_a_terminal(Some("1"));
    assert!(plain.contains("server started"), "{plain}");
    assert!(!plain.contains('\x1b'), "{plain:?}");
}

#[test]
fn completions_and_the_man_page_are_printed() {
    let bash = toolwarden().args(["completions", "bash"]).output().unwrap();
    assert_eq!(bash.status.code(), Some(0));
    let script = String::from_utf8(bash.stdout).unwrap();
    assert!(script.contains("complete -F _toolwarden"), "{script}");
    for command in [
        "check",
        "state",
        "audit",
        "verify",
        "wrap",
        "pin",
        "completions",
    ] {
        assert!(script.contains(command), "{command} is completed");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = toolwarden().args(["completions", shell]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("toolwarden"));
    }
    let man = toolwarden().arg("man").output().unwrap();
    assert_eq!(man.status.code(), Some(0));
    let page = String::from_utf8(man.stdout).unwrap();
    assert!(page.contains("\n.TH toolwarden 1"), "{page}");
    assert!(page.contains("audit"), "{page}");
    // A mistyped command is still caught.
    let typo = toolwarden().arg("mna").output().unwrap();
    assert_eq!(typo.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&typo.stderr).contains("did you mean `man`?"));
}
