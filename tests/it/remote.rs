//! Remote servers: toolwarden in front of a URL. The reference server
//! (server-everything, over Streamable HTTP and over the legacy HTTP+SSE)
//! and a Python SDK server that wants a bearer token, each on a loopback
//! port of its own, driven by the official Python SDK's client over stdio
//! or by raw lines; and the failures: an unset header variable, a server
//! killed mid-session, a URL nothing answers, an answer over the limit;
//! and OAuth against a Python SDK server that is its own authorization
//! server, with a scripted `$BROWSER`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

/// A port nothing listens on yet.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server process, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `command` (which listens on `port`) and waits until it accepts.
fn serve(mut command: Command, port: u16) -> Server {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server starts");
    let mut server = Server { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = server.child.try_wait().unwrap() {
            panic!("the server exited ({status}) before listening on {port}");
        }
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// server-everything over `transport` (`streamableHttp` or `sse`).
fn everything(transport: &str) -> Server {
    let port = free_port();
    let mut command = Command::new("node");
    command
        .arg(
            root().join(
                "tests/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js",
            ),
        )
        .arg(transport)
        .env("PORT", port.to_string());
    serve(command, port)
}

/// The token server of tests/python, wanting `token`; its record of the
/// requests it got is in `record`.
fn token_server(token: &str, record: &Path) -> Server {
    let port = free_port();
    let mut command = Command::new(python());
    command
        .arg(root().join("tests/python/token_server.py"))
        .arg(port.to_string())
        .arg(record)
        .env("TOKEN", token);
    serve(command, port)
}

fn python() -> PathBuf {
    let python = root().join("tests/python/.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run tests/setup",
        python.display()
    );
    python
}

const POLICY: &str = r#"{
  "version": "1",
  "default": "allow",
  "tools": {
    "get-env": { "action": "deny", "reason": "the environment stays private" },
    "get-sum": { "limits": [{ "counter": "sums", "window": "minute", "max": 1 }] }
  }
}"#;

/// Runs tests/python/remote_client.py in `mode` with toolwarden's
/// arguments `args`; returns what the client saw and toolwarden's stderr.
fn sdk_client(mode: &str, args: &[&str], env: &[(&str, &str)]) -> (Value, String) {
    let mut command = Command::new(python());
    command
        .arg(root().join("tests/python/remote_client.py"))
        .arg(mode)
        .arg("--")
        .arg(toolwarden_bin())
        .args(args)
        .env("XDG_STATE_HOME", state_home(&format!("remote-{mode}")));
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let seen =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    (seen, stderr)
}

/// What a session with server-everything must show, whichever transport
/// carried it.
fn policed_like_stdio(seen: &Value) {
    let tools: Vec<&str> = seen["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tools.contains(&"echo") && tools.contains(&"get-sum"),
        "{tools:?}"
    );
    assert!(
        !tools.contains(&"get-env"),
        "a denied tool is hidden: {tools:?}"
    );
    assert_eq!(seen["echo"]["isError"], false, "{seen}");
    assert!(
        seen["echo"]["text"]
            .as_str()
            .unwrap()
            .contains("hello over http"),
        "{seen}"
    );
    assert_eq!(seen["denied"]["isError"], true, "{seen}");
    assert!(
        seen["denied"]["text"]
            .as_str()
            .unwrap()
            .contains("the environment stays private"),
        "{seen}"
    );
    assert_eq!(seen["first_sum"]["isError"], false, "{seen}");
    assert_eq!(seen["second_sum"]["isError"], true, "{seen}");
    assert_eq!(seen["second_sum"]["decision"], "rate_limited", "{seen}");
    // The server's own requests reached the client and their answers the
    // server: each tool reports what the client answered.
    assert_eq!(
        seen["asked"],
        json!(["elicitation", "roots", "sampling"]),
        "{seen}"
    );
    assert!(
        seen["sampled"]["text"]
            .as_str()
            .unwrap()
            .contains("sampled answer"),
        "{seen}"
    );
    assert!(
        seen["rooted"]["text"]
            .as_str()
            .unwrap()
            .contains("remote-root"),
        "{seen}"
    );
    assert_eq!(seen["elicited"]["isError"], false, "{seen}");
    assert_eq!(seen["long"]["isError"], false, "{seen}");
    assert!(
        !seen["progress"].as_array().unwrap().is_empty(),
        "progress notifications arrive: {seen}"
    );
    assert_eq!(seen["logged"], true, "logging notifications arrive: {seen}");
}

fn policy_file(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    let policy = dir.join("policy.json");
    std::fs::write(&policy, POLICY).unwrap();
    policy
}

#[test]
fn the_python_sdk_reaches_server_everything_over_streamable_http_policed_as_on_stdio() {
    let server = everything("streamableHttp");
    let policy = policy_file("remote-streamable");
    let url = server.url("/mcp");
    let (seen, _) = sdk_client(
        "everything",
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--state",
            "memory",
            "--",
            &url,
        ],
        &[],
    );
    policed_like_stdio(&seen);
}

#[test]
fn auto_falls_back_to_http_sse_and_polices_it_the_same() {
    let server = everything("sse");
    let policy = policy_file("remote-sse");
    let url = server.url("/sse");
    let (seen, stderr) = sdk_client(
        "everything",
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--state",
            "memory",
            "--log-level",
            "info",
            "--",
            &url,
        ],
        &[],
    );
    assert!(stderr.contains("it speaks HTTP+SSE"), "{stderr}");
    policed_like_stdio(&seen);
}

#[test]
fn transport_sse_opens_the_event_stream_first_and_polices_it_the_same() {
    let server = everything("sse");
    let policy = policy_file("remote-sse-forced");
    let url = server.url("/sse");
    let (seen, stderr) = sdk_client(
        "everything",
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--state",
            "memory",
            "--transport",
            "sse",
            "--log-level",
            "info",
            "--",
            &url,
        ],
        &[],
    );
    // No POST was tried first: nothing was turned away.
    assert!(!stderr.contains("turned the POST away"), "{stderr}");
    policed_like_stdio(&seen);
}

#[test]
fn transport_streamable_http_does_not_fall_back_and_says_what_the_server_answered() {
    let server = everything("sse");
    let mut session = Session::start(
        toolwarden()
            .args([
                "--policy",
                "policies/permissive.json",
                "--transport",
                "streamable-http",
                "--",
            ])
            .arg(server.url("/sse"))
            .current_dir(root()),
    );
    session.send(&initialize("2025-11-25"));
    let answer = session.recv_json();
    assert_eq!(answer["id"], 0, "{answer}");
    let message = answer["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"));
    assert!(message.contains("the server answered HTTP 4"), "{message}");
    assert!(
        !session.stderr().contains("HTTP+SSE"),
        "{}",
        session.stderr()
    );
    assert_eq!(session.wait().code(), Some(1));
}

#[test]
fn a_header_from_the_environment_reaches_a_server_that_wants_a_token_and_nothing_shows_it() {
    let dir = temp_dir("remote-token");
    let token = format!("tok-{}-not-for-logs", std::process::id());
    let record = dir.join("requests.jsonl");
    let audit = dir.join("audit.jsonl");
    let server = token_server(&token, &record);
    let url = server.url("/mcp");
    let policy = root().join("policies/permissive.json");
    let (seen, stderr) = sdk_client(
        "token",
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--log-level",
            "debug",
            "--audit",
            audit.to_str().unwrap(),
            "--header",
            "Authorization: Bearer ${REMOTE_TEST_TOKEN}",
            "--",
            &url,
        ],
        &[("REMOTE_TEST_TOKEN", &token)],
    );
    assert_eq!(seen["whoami"]["text"], "you hold the token", "{seen}");
    assert_eq!(seen["reverse"]["text"], "desserts", "{seen}");
    assert_eq!(seen["unicode"]["text"], "grüß dich", "{seen}");
    assert!(stderr.contains("DEBUG"), "the log was at debug: {stderr}");
    assert!(
        !stderr.contains(&token),
        "the token is in stderr:\n{stderr}"
    );
    let audited = std::fs::read_to_string(&audit).unwrap();
    assert!(audited.contains("whoami"), "{audited}");
    assert!(!audited.contains(&token), "the token is in the audit log");

    // Every request carried the token; a 2026-07-28 call carries its
    // method and name as headers, a name no header can carry as Base64.
    let requests: Vec<Value> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        requests.iter().all(|r| r["authorized"] == true),
        "{requests:?}"
    );
    assert_eq!(
        seen["protocol"], "2026-07-28",
        "the SDK speaks 2026-07-28 to a server that does"
    );
    let call = |name: &str| {
        requests.iter().any(|r| {
            r["mcp-method"] == "tools/call"
                && r["mcp-name"] == name
                && r["mcp-protocol-version"] == "2026-07-28"
        })
    };
    assert!(call("whoami") && call("reverse"), "{requests:?}");
    // A tool that marks parameters with x-mcp-header: its call carries
    // them as Mcp-Param-* headers (a value no header can carry, as
    // Base64), which the server checks against the arguments.
    assert_eq!(seen["deploy"]["text"], "deployed to eu-wëst x3", "{seen}");
    // It came first: toolwarden's own listing went before it, and the
    // call went once (the server refused no call without headers).
    let deploys: Vec<usize> = (0..requests.len())
        .filter(|&i| requests[i]["mcp-name"] == "deploy")
        .collect();
    assert_eq!(deploys.len(), 1, "{requests:?}");
    assert!(
        requests[..deploys[0]]
            .iter()
            .any(|r| r["mcp-method"] == "tools/list"),
        "{requests:?}"
    );
    let deploy = &requests[deploys[0]];
    assert_eq!(
        deploy["params"],
        json!({"mcp-param-region": "=?base64?ZXUtd8Orc3Q=?=", "mcp-param-replicas": "3"})
    );
    assert!(call("=?base64?Z3LDvMOf?="), "{requests:?}");
}

#[test]
fn a_server_that_wants_authorization_is_said_to_at_initialize() {
    let dir = temp_dir("remote-401");
    let server = token_server("the-right-one", &dir.join("requests.jsonl"));
    let mut session = Session::start(
        toolwarden()
            .args(["--policy", "policies/permissive.json", "--"])
            .arg(server.url("/mcp"))
            .current_dir(root()),
    );
    session.send(&initialize("2025-06-18"));
    let answer = session.recv_json();
    let message = answer["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"));
    assert!(
        message.contains("wants authorization (HTTP 401)"),
        "{message}"
    );
    assert!(
        message.contains("--header 'Authorization: Bearer ${TOKEN}'"),
        "{message}"
    );
    assert_eq!(session.wait().code(), Some(1));
}

#[test]
fn a_redirect_on_the_same_origin_is_followed_and_one_elsewhere_is_refused() {
    let dir = temp_dir("remote-redirect");
    let server = token_server("redirect-token", &dir.join("requests.jsonl"));
    let start = |path: &str| {
        Session::start(
            toolwarden()
                .args([
                    "--policy",
                    "policies/permissive.json",
                    "--header",
                    "Authorization: Bearer ${TOKEN}",
                    "--",
                ])
                .arg(server.url(path))
                .env("TOKEN", "redirect-token")
                .current_dir(root()),
        )
    };
    let mut moved = start("/moved");
    moved.send(&initialize("2025-11-25"));
    let answer = moved.recv_json();
    assert!(answer["result"]["serverInfo"].is_object(), "{answer}");
    moved.close_stdin();
    assert_eq!(moved.wait().code(), Some(0), "{}", moved.stderr());
    let before = std::fs::read_to_string(dir.join("requests.jsonl")).unwrap();
    assert!(before.contains(r#""authorized": true"#), "{before}");

    // The token must not follow a redirect to another origin.
    let mut away = start("/away");
    away.send(&initialize("2025-11-25"));
    let answer = away.recv_json();
    let message = answer["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"));
    assert!(message.contains("redirects (HTTP 307"), "{message}");
    assert!(message.contains("another origin"), "{message}");
    assert_eq!(away.wait().code(), Some(1));
    // Nothing reached the server (also at its other name) after the
    // redirect.
    let after = std::fs::read_to_string(dir.join("requests.jsonl")).unwrap();
    assert_eq!(after, before, "a request followed the redirect elsewhere");
}

#[test]
fn an_unset_variable_in_a_header_stops_the_start_before_anything_is_contacted() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let out = toolwarden()
        .args(["--policy", "policies/permissive.json"])
        .args(["--header", "X-Api-Key: key-${TOOLWARDEN_TEST_NOT_SET}"])
        .args(["--", &url])
        .current_dir(root())
        .env_remove("TOOLWARDEN_TEST_NOT_SET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--header x-api-key: ${TOOLWARDEN_TEST_NOT_SET} is not set"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    assert!(listener.accept().is_err(), "nothing connected");
}

#[test]
fn a_server_killed_mid_session_fails_the_call_in_flight_and_toolwarden_exits() {
    let mut server = everything("streamableHttp");
    let mut session = Session::start(
        toolwarden()
            .args(["--policy", "policies/permissive.json", "--"])
            .arg(server.url("/mcp"))
            .current_dir(root()),
    );
    session.request(&initialize("2025-11-25"), &json!(0), |_, _, _| {});
    session.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    session.send(
        &json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "trigger-long-running-operation",
            "arguments": { "duration": 60, "steps": 60 },
            "_meta": { "progressToken": "p" }
        } })
        .to_string(),
    );
    // The call runs: its first progress notification came.
    loop {
        let message = session.recv_json();
        if message["method"] == "notifications/progress" {
            break;
        }
    }
    server.kill();
    let answer = loop {
        let message = session.recv_json();
        if message["id"] == 2 {
            break message;
        }
    };
    let error = answer["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"));
    assert!(error.contains("remote server"), "{error}");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = session.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "toolwarden still runs"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1), "{}", session.stderr());
}

#[test]
fn an_unreachable_url_answers_initialize_with_a_clear_error() {
    let url = format!("http://127.0.0.1:{}/mcp", free_port());
    let mut session = Session::start(
        toolwarden()
            .args(["--policy", "policies/permissive.json", "--", &url])
            .current_dir(root()),
    );
    session.send(&initialize("2025-11-25"));
    let answer = session.recv_json();
    assert_eq!(answer["id"], 0, "{answer}");
    let message = answer["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"));
    assert!(
        message.contains(&format!("{url} cannot be reached: connection refused; check the URL and that the server is running")),
        "{message}"
    );
    assert_eq!(session.wait().code(), Some(1));
    assert!(
        session.stderr().contains("did not answer initialize"),
        "{}",
        session.stderr()
    );
}

#[test]
fn an_answer_over_the_limit_ends_its_request_with_an_error() {
    let server = everything("streamableHttp");
    let mut session = Session::start(
        toolwarden()
            .args([
                "--policy",
                "policies/permissive.json",
                "--max-message-bytes",
                "5000",
                "--",
            ])
            .arg(server.url("/mcp"))
            .current_dir(root()),
    );
    session.request(&initialize("2025-11-25"), &json!(0), |_, _, _| {});
    session.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let answer = session.request(
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        &json!(2),
        |_, _, _| {},
    );
    assert!(
        answer.contains("exceeds toolwarden's limit of 5000 bytes (--max-message-bytes)"),
        "{answer}"
    );
    // The session goes on.
    let pong = session.request(
        r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#,
        &json!(3),
        |_, _, _| {},
    );
    assert_eq!(
        serde_json::from_str::<Value>(&pong).unwrap()["result"],
        json!({})
    );
}

#[test]
fn a_stream_closed_before_its_answer_is_resumed_and_the_answer_arrives_once() {
    let dir = temp_dir("remote-resume");
    let record = dir.join("requests.jsonl");
    let server = token_server("resume-token", &record);
    let mut session = Session::start(
        toolwarden()
            .args(["--policy", "policies/permissive.json", "--state", "memory"])
            .args(["--header", "Authorization: Bearer ${RESUME_TOKEN}", "--"])
            .arg(server.url("/mcp"))
            .env("RESUME_TOKEN", "resume-token")
            .current_dir(root()),
    );
    session.request(&initialize("2025-11-25"), &json!(0), |_, _, _| {});
    session.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let mut before = Vec::new();
    let answer = session.request(&call(2, "interrupted", "{}"), &json!(2), |_, raw, _| {
        before.push(raw.to_owned())
    });
    assert!(
        answer.contains("answered after the stream was closed"),
        "{answer}"
    );
    assert!(
        before
            .iter()
            .any(|l| l.contains("about to close the stream")),
        "what came before the cut is relayed: {before:?}"
    );
    session.close_stdin();
    let rest = session.rest();
    assert!(
        !rest.iter().any(|l| l.contains(r#""id":2"#)),
        "the answer came once: {rest:?}"
    );
    let requests = std::fs::read_to_string(&record).unwrap();
    assert!(
        requests
            .lines()
            .any(|l| l.contains(r#""method": "GET""#) && !l.contains(r#""last-event-id": null"#)),
        "the stream was resumed from its last event: {requests}"
    );
    assert!(
        requests.contains(r#""method": "DELETE""#),
        "the session was ended: {requests}"
    );
    assert_eq!(session.wait().code(), Some(0));
}

#[test]
fn a_wrapped_claude_code_http_server_runs_as_the_client_starts_it() {
    let dir = temp_dir("remote-wrap");
    let token = format!("tok-{}-wrapped", std::process::id());
    let record = dir.join("requests.jsonl");
    let server = token_server(&token, &record);
    let config = dir.join("claude.json");
    let original = serde_json::json!({"mcpServers": {"tokens": {
        "type": "http",
        "url": server.url("/mcp"),
        "headers": {"Authorization": format!("Bearer {token}")}
    }}});
    std::fs::write(&config, serde_json::to_string_pretty(&original).unwrap()).unwrap();
    let policy = policy_file("permissive");
    let out = toolwarden()
        .args(["wrap", "claude-code", "--config"])
        .arg(&config)
        .arg("--policy")
        .arg(&policy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&token));
    let wrapped: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let entry = &wrapped["mcpServers"]["tokens"];
    let args: Vec<String> = entry["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert!(!args.iter().any(|a| a.contains(&token)), "{args:?}");

    // Started as Claude Code starts it: the command, its arguments, and
    // the entry's env on top of the client's.
    let out = Command::new("node")
        .arg(root().join("tests/npm/connect.mjs"))
        .arg(entry["command"].as_str().unwrap())
        .args(&args)
        .env("CONNECT_ENV", entry["env"].to_string())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("CONNECTED "), "{said}");
    let requests: Vec<Value> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!requests.is_empty());
    assert!(
        requests.iter().all(|r| r["authorized"] == true),
        "{requests:?}"
    );

    let out = toolwarden()
        .args(["unwrap", "claude-code", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(back, original);
}

/// The OAuth server of tests/python (its own authorization server, which
/// approves every login at once); its record of registrations and grants
/// is in `record`, and its access tokens live `ttl` seconds. On `port`,
/// or any free one.
fn oauth_server(record: &Path, ttl: u64, port: Option<u16>) -> Server {
    oauth_server_with(record, ttl, port, &[])
}

fn oauth_server_with(record: &Path, ttl: u64, port: Option<u16>, env: &[(&str, &str)]) -> Server {
    let port = port.unwrap_or_else(free_port);
    let mut command = Command::new(python());
    command
        .arg(root().join("tests/python/oauth_server.py"))
        .arg(port.to_string())
        .arg(record)
        .env("TOKEN_TTL", ttl.to_string())
        .envs(env.iter().copied());
    serve(command, port)
}

/// `$BROWSER` for the OAuth tests: follows the login page back to
/// toolwarden, noting each page it is given in `pages`.
fn browser(pages: &Path) -> (String, String) {
    (
        format!(
            "{} {}",
            python().display(),
            root().join("tests/python/browser.py").display()
        ),
        pages.display().to_string(),
    )
}

/// The events the OAuth server recorded, by name.
fn oauth_events(record: &Path) -> Vec<String> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// A session that calls `whoami` on the OAuth server at `url`, with its
/// state in `state` and `$BROWSER` as given: the call's answer, the
/// exit code and stderr.
fn whoami(
    url: &str,
    state: &Path,
    browser: Option<&(String, String)>,
) -> (Value, Option<i32>, String) {
    let mut command = toolwarden();
    command
        .args(["--policy", "policies/permissive.json", "--"])
        .arg(url)
        .current_dir(root())
        .env("XDG_STATE_HOME", state)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY");
    match browser {
        Some((command_line, pages)) => command
            .env("BROWSER", command_line)
            .env("BROWSER_RECORD", pages),
        None => command.env("BROWSER", "/bin/false"),
    };
    let mut session = Session::start(&mut command);
    session.send(&initialize("2025-06-18"));
    let init = session.recv_json();
    let answer = if init.get("result").is_some() {
        session.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        session.send(&call(1, "whoami", "{}"));
        session.recv_json()
    } else {
        init
    };
    let code = session.wait().code();
    (answer, code, session.stderr())
}

fn held_a_token(answer: &Value) -> bool {
    answer["result"]["content"][0]["text"] == "you hold a token"
}

#[test]
fn oauth_logs_in_through_the_browser_once_and_the_next_session_uses_the_kept_tokens() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("remote-oauth-login");
    let record = dir.join("grants.jsonl");
    let server = oauth_server(&record, 3600, None);
    let url = server.url("/mcp");
    let state = dir.join("state");
    let pages = dir.join("pages.txt");
    let browser = browser(&pages);

    // The browser finds a slow local client on the redirect's port
    // already: the login does not wait for it.
    let slow = (format!("{} --slow", browser.0), browser.1.clone());
    let (answer, code, stderr) = whoami(&url, &state, Some(&slow));
    assert!(held_a_token(&answer), "{answer}\n{stderr}");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        oauth_events(&record),
        ["register", "authorize", "authorization_code"]
    );
    // The page the browser got asks for PKCE with S256, for this server.
    let page = std::fs::read_to_string(&pages).unwrap();
    let page = url::Url::parse(page.trim()).unwrap();
    let param = |name: &str| {
        page.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no {name} in {page}"))
    };
    assert_eq!(param("code_challenge_method"), "S256");
    assert_eq!(param("resource"), url);
    assert_eq!(param("scope"), "mcp");
    assert!(param("state").len() >= 43, "{page}");
    assert!(
        stderr.contains(page.as_str()),
        "the page is printed: {stderr}"
    );
    // Kept 0600 in a 0700 directory; stderr shows no token.
    let kept: Vec<_> = std::fs::read_dir(state.join("toolwarden/oauth"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(kept.len(), 1);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&kept[0]), 0o600);
    assert_eq!(mode(kept[0].parent().unwrap()), 0o700);
    let tokens: Value = serde_json::from_slice(&std::fs::read(&kept[0]).unwrap()).unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    assert!(!stderr.contains(access), "{stderr}");

    // The next session: no browser, no new login.
    let (answer, code, stderr) = whoami(&url, &state, None);
    assert!(held_a_token(&answer), "{answer}\n{stderr}");
    assert_eq!(code, Some(0));
    assert_eq!(
        oauth_events(&record).len(),
        3,
        "{:?}",
        oauth_events(&record)
    );

    // Logged out, with no browser: the session says what to run.
    let out = toolwarden()
        .arg("logout")
        .arg(&url)
        .env("XDG_STATE_HOME", &state)
        .output()
        .unwrap();
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("revoked the OAuth tokens") && said.contains("forgot them"),
        "{said}"
    );
    // Revoked at the server: the refresh token, then the access token.
    let revoked: Vec<String> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "revoke")
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(revoked, ["RefreshToken", "AccessToken"]);
    let (answer, code, _) = whoami(&url, &state, None);
    let message = answer["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"));
    assert!(
        message.contains(&format!("run `toolwarden login {url}`")),
        "{message}"
    );
    assert_eq!(code, Some(1));
    let codes = oauth_events(&record)
        .into_iter()
        .filter(|e| e == "authorization_code")
        .count();
    assert_eq!(codes, 1);
}

#[test]
fn oauth_tokens_from_login_are_refreshed_once_for_two_sessions_and_a_forgotten_login_is_redone() {
    let dir = temp_dir("remote-oauth-refresh");
    let record = dir.join("grants.jsonl");
    let mut server = oauth_server(&record, 4, None);
    let url = server.url("/mcp");
    let state = dir.join("state");
    let browser = browser(&dir.join("pages.txt"));

    // `toolwarden login` ahead of time.
    let out = toolwarden()
        .arg("login")
        .arg(&url)
        .env("XDG_STATE_HOME", &state)
        .env("BROWSER", &browser.0)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains(&format!("logged in to {url}")), "{said}");
    assert_eq!(
        oauth_events(&record),
        ["register", "authorize", "authorization_code"]
    );

    // Expired: two sessions at once, no browser. The server's refresh
    // tokens serve once: one session refreshes, the other takes its
    // tokens from the file.
    std::thread::sleep(Duration::from_secs(5));
    let both: Vec<_> = (0..2)
        .map(|_| {
            let (url, state) = (url.clone(), state.clone());
            std::thread::spawn(move || whoami(&url, &state, None))
        })
        .collect();
    for session in both {
        let (answer, code, stderr) = session.join().unwrap();
        assert!(held_a_token(&answer), "{answer}\n{stderr}");
        assert_eq!(code, Some(0));
    }
    let events = oauth_events(&record);
    assert_eq!(events[3..], ["refresh_token"], "{events:?}");

    // The server restarts and forgets every client and token: a 401, a
    // refresh it refuses, then a new registration and login.
    let port = server.port;
    server.kill();
    let _server = oauth_server(&record, 3600, Some(port));
    let (answer, code, stderr) = whoami(&url, &state, Some(&browser));
    assert!(held_a_token(&answer), "{answer}\n{stderr}");
    assert_eq!(code, Some(0));
    let events = oauth_events(&record);
    assert_eq!(
        events[4..],
        ["register", "authorize", "authorization_code"],
        "{events:?}"
    );
}

#[test]
fn login_to_a_server_that_asks_for_nothing_says_so() {
    let server = everything("streamableHttp");
    let out = toolwarden()
        .arg("login")
        .arg(server.url("/mcp"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("asks for no authorization"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn login_with_a_client_id_given_registers_nothing() {
    let dir = temp_dir("remote-oauth-client-id");
    let record = dir.join("grants.jsonl");
    let server = oauth_server_with(&record, 3600, None, &[("PRE_REGISTERED", "given-client")]);
    let url = server.url("/mcp");
    let state = dir.join("state");
    let pages = dir.join("pages.txt");
    let out = toolwarden()
        .args(["login", "--oauth-client-id", "given-client"])
        .arg(&url)
        .env("XDG_STATE_HOME", &state)
        .env("BROWSER", browser(&pages).0)
        .env("BROWSER_RECORD", &pages)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(oauth_events(&record), ["authorize", "authorization_code"]);
    assert!(std::fs::read_to_string(&pages)
        .unwrap()
        .contains("client_id=given-client"));
    let (answer, code, stderr) = whoami(&url, &state, None);
    assert!(held_a_token(&answer), "{answer}\n{stderr}");
    assert_eq!(code, Some(0));
}

/// A server on a free loopback port that answers every request with 401
/// and `challenge(its port)` as its `WWW-Authenticate`.
fn answers_401(challenge: fn(u16) -> String) -> u16 {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let challenge = challenge(port);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = [0u8; 8192];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: {challenge}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    port
}

#[test]
fn an_authorization_server_at_an_https_url_beside_an_http_server_is_an_error_not_a_crash() {
    // The metadata's URL is the same port, as https://: a TLS handshake
    // with a server that speaks plain HTTP.
    let port = answers_401(|port| {
        format!(
            r#"Bearer resource_metadata="https://127.0.0.1:{port}/.well-known/oauth-protected-resource""#
        )
    });
    let dir = temp_dir("remote-oauth-https-metadata");
    let (answer, code, stderr) = whoami(
        &format!("http://127.0.0.1:{port}/mcp"),
        &dir.join("state"),
        None,
    );
    let message = answer["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}\n{stderr}"));
    assert!(
        message.contains("wants authorization (HTTP 401)"),
        "{message}"
    );
    assert!(message.contains("protected resource metadata"), "{message}");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_session_refreshes_with_the_refresh_token_another_session_left() {
    let dir = temp_dir("remote-oauth-stale");
    let record = dir.join("grants.jsonl");
    let server = oauth_server(&record, 3, None);
    let url = server.url("/mcp");
    let state = dir.join("state");
    let out = toolwarden()
        .arg("login")
        .arg(&url)
        .env("XDG_STATE_HOME", &state)
        .env("BROWSER", browser(&dir.join("pages.txt")).0)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Two sessions, each holding the login's tokens.
    let open = || {
        let mut session = Session::start(
            toolwarden()
                .args(["--policy", "policies/permissive.json", "--"])
                .arg(&url)
                .current_dir(root())
                .env("XDG_STATE_HOME", &state)
                .env("BROWSER", "/bin/false"),
        );
        session.send(&initialize("2025-06-18"));
        assert!(session.recv_json().get("result").is_some());
        session.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        session
    };
    let (mut a, mut b) = (open(), open());
    // The tokens expire; A refreshes, spending the first refresh token.
    std::thread::sleep(Duration::from_secs(4));
    a.send(&call(1, "whoami", "{}"));
    assert!(held_a_token(&a.recv_json()));
    // Both expire again: B refreshes with the token A left, not its own
    // spent one (which would mean a new login, and no browser here).
    std::thread::sleep(Duration::from_secs(4));
    b.send(&call(1, "whoami", "{}"));
    let answer = b.recv_json();
    assert!(held_a_token(&answer), "{answer}\n{}", b.stderr());
    let events = oauth_events(&record);
    assert_eq!(
        events,
        [
            "register",
            "authorize",
            "authorization_code",
            "refresh_token",
            "refresh_token"
        ]
    );
    assert_eq!(a.wait().code(), Some(0));
    assert_eq!(b.wait().code(), Some(0));
}

#[test]
fn calls_one_after_another_reuse_their_connections() {
    let dir = temp_dir("remote-keep-alive");
    let record = dir.join("requests.jsonl");
    let server = token_server("t", &record);
    let mut session = Session::start(
        toolwarden()
            .args([
                "--policy",
                "policies/permissive.json",
                "--header",
                "Authorization: Bearer t",
                "--",
            ])
            .arg(server.url("/mcp"))
            .current_dir(root()),
    );
    session.send(&initialize("2025-06-18"));
    assert!(session.recv_json().get("result").is_some());
    session.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    for id in 1..=20 {
        session.send(&call(id, "whoami", "{}"));
        assert_eq!(session.recv_json()["id"], id);
    }
    assert_eq!(session.wait().code(), Some(0));
    // Each answer's stream is read to its end, so its connection serves
    // the next call: far fewer connections than requests (one each,
    // before).
    let requests: Vec<Value> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let posts = requests.iter().filter(|r| r["method"] == "POST").count();
    let connections: std::collections::HashSet<String> =
        requests.iter().map(|r| r["port"].to_string()).collect();
    assert!(posts >= 22, "{requests:?}");
    assert!(
        connections.len() <= requests.len() / 2,
        "{} connections for {} requests",
        connections.len(),
        requests.len()
    );
}
