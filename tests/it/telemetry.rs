//! OpenTelemetry: what a real OTLP receiver (tests/python/otlp_receiver.py,
//! the reference protobuf classes) gets from a session: spans named and
//! attributed per the MCP conventions, the parent from `traceparent`,
//! metrics, all flushed before the process exits, and no secret.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;

use serde_json::{json, Value};

use crate::common::*;

const POLICY: &str = r#"{
  "version": "1",
  "tools": {
    "retry_deploy": {
      "limits": [{ "counter": "deploys", "window": "minute", "max": 1 }],
      "redact": ["/server_token"]
    },
    "check_status": { "action": "approve" },
    "ghost": {},
    "drop_database": { "action": "deny", "reason": "never from an agent" }
  }
}"#;

const SECRET: &str = "srv_live_OTEL_SECRET_TOKEN_42";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

pub struct Receiver {
    child: Child,
    pub port: u16,
    pub out: std::path::PathBuf,
    /// A line here answers what `--hold` holds.
    stdin: Option<ChildStdin>,
    /// Its stdout after the port: "held" for each request held.
    said: Option<mpsc::Receiver<String>>,
}

impl Receiver {
    pub fn start(name: &str, args: &[&str]) -> Receiver {
        let out = temp_dir(name).join("otlp.jsonl");
        let mut child = Command::new(root().join("tests/python/.venv/bin/python"))
            .arg(root().join("tests/python/otlp_receiver.py"))
            .arg(&out)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run tests/setup: the receiver needs opentelemetry-proto");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().and_then(Result::ok).unwrap_or_default();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no port: {line:?}"));
        let (tx, said) = mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Receiver {
            stdin: child.stdin.take(),
            child,
            port,
            out,
            said: Some(said),
        }
    }

    /// Waits until a request is held (`--hold`).
    fn holding(&self) {
        let said = self.said.as_ref().unwrap().recv_timeout(PATIENCE);
        assert_eq!(said.as_deref(), Ok("held"), "no export arrived");
    }

    /// Answers what is held, and what comes later at once.
    fn release(&mut self) {
        drop(self.stdin.take());
    }

    pub fn exports(&self, signal: &str) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["signal"] == signal)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An attribute's value, as the reference JSON mapping writes it.
pub fn attr(attrs: &Value, key: &str) -> Option<Value> {
    attrs.as_array()?.iter().find(|a| a["key"] == key).map(|a| {
        let v = &a["value"];
        v.get("stringValue")
            .or_else(|| v.get("doubleValue"))
            .or_else(|| v.get("intValue"))
            .cloned()
            .unwrap_or(Value::Null)
    })
}

fn hex_of_base64(text: &str) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = String::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        bits = (bits << 6) | alphabet.iter().position(|a| *a == c).unwrap() as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push_str(&format!("{:02x}", (bits >> n) & 0xff));
        }
    }
    out
}

fn session(receiver: &Receiver, env: &[(&str, &str)]) -> Session {
    let url = format!("http://127.0.0.1:{}", receiver.port);
    session_to(&url, receiver, env)
}

fn session_to(url: &str, receiver: &Receiver, env: &[(&str, &str)]) -> Session {
    let mut cmd = guarded_mock_with(
        POLICY,
        "examples/tools/fractera.json",
        &["--otlp".as_ref(), url.as_ref()],
        &[],
    );
    cmd.env(
        "XDG_STATE_HOME",
        state_home(&format!("otel-{}", receiver.port)),
    );
    for (k, v) in env {
        cmd.env(k, v);
    }
    Session::start(&mut cmd)
}

#[test]
fn a_session_exports_its_spans_and_metrics_before_it_exits_and_no_secret() {
    let receiver = Receiver::start("otel-e2e", &[]);
    // Nothing would leave before an hour: what arrives is the last flush.
    let mut s = session(
        &receiver,
        &[
            ("OTEL_SERVICE_NAME", "tw-test"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=t1"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "3600000"),
            ("OTEL_BSP_SCHEDULE_DELAY", "3600000"),
        ],
    );
    s.send(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"elicitation":{}},"clientInfo":{"name":"t","version":"1"}}}"#);
    s.recv();
    s.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let traced = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "retry_deploy", "arguments": {"server_token": SECRET},
        "_meta": {"traceparent": format!("00-{TRACE}-{PARENT}-01")}}});
    let ask = |s: &mut Session, line: &str, id: u64| -> Value {
        serde_json::from_str(&s.request(line, &json!(id), |_, _, _| {})).unwrap()
    };
    assert_eq!(decision(&ask(&mut s, &traced.to_string(), 1)), None);
    let again = call(
        2,
        "retry_deploy",
        &format!(r#"{{"server_token":"{SECRET}"}}"#),
    );
    assert_eq!(
        decision(&ask(&mut s, &again, 2)).as_deref(),
        Some("rate_limited")
    );
    assert_eq!(
        decision(&ask(&mut s, &call(3, "drop_database", "{}"), 3)).as_deref(),
        Some("denied")
    );
    assert_eq!(
        ask(&mut s, &call(4, "ghost", "{}"), 4)["result"]["isError"],
        true
    );
    s.send(&call(5, "check_status", r#"{"session_id":"s-1"}"#));
    let prompt = s.recv_json();
    assert_eq!(prompt["method"], "elicitation/create");
    s.send(&json!({"jsonrpc": "2.0", "id": prompt["id"], "result": {"action": "accept", "content": {"approve": true}}}).to_string());
    assert_eq!(s.recv_json()["id"], 5);
    // Had the last flush waited for the hour, the harness would give up.
    assert_eq!(s.wait().code(), Some(0));

    let traces = receiver.exports("traces");
    assert!(
        !traces.is_empty(),
        "no span arrived; stderr:\n{}",
        s.stderr()
    );
    assert_eq!(traces[0]["headers"]["x-tenant"], "t1");
    let resource = &traces[0]["body"]["resourceSpans"][0]["resource"]["attributes"];
    assert_eq!(attr(resource, "service.name"), Some(json!("tw-test")));
    assert_eq!(attr(resource, "deployment.environment"), Some(json!("ci")));
    let spans: Vec<Value> = traces
        .iter()
        .flat_map(|t| {
            t["body"]["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .unwrap()
                .clone()
        })
        .collect();
    let span = |id: &str| -> &Value {
        spans
            .iter()
            .find(|s| attr(&s["attributes"], "jsonrpc.request.id") == Some(json!(id)))
            .unwrap_or_else(|| panic!("no span for request {id}: {spans:#?}"))
    };
    assert_eq!(span("0")["name"], "initialize");
    let first = span("1");
    assert_eq!(first["name"], "tools/call retry_deploy");
    assert_eq!(first["kind"], "SPAN_KIND_SERVER");
    assert_eq!(hex_of_base64(first["traceId"].as_str().unwrap()), TRACE);
    assert_eq!(
        hex_of_base64(first["parentSpanId"].as_str().unwrap()),
        PARENT
    );
    let a = &first["attributes"];
    for (key, value) in [
        ("mcp.method.name", "tools/call"),
        ("gen_ai.tool.name", "retry_deploy"),
        ("gen_ai.operation.name", "execute_tool"),
        ("network.transport", "pipe"),
        ("toolwarden.decision", "allowed"),
        ("toolwarden.rule", "retry_deploy"),
        ("toolwarden.identity", "default"),
    ] {
        assert_eq!(attr(a, key), Some(json!(value)), "{key} in {first:#}");
    }
    assert_eq!(attr(a, "error.type"), None);
    // A call without a traceparent starts a trace of its own.
    let limited = &span("2")["attributes"];
    assert!(span("2").get("parentSpanId").is_none());
    assert_eq!(attr(limited, "error.type"), Some(json!("rate_limited")));
    assert_eq!(attr(limited, "toolwarden.counter"), Some(json!("deploys")));
    assert_eq!(
        attr(limited, "toolwarden.refusal.kind"),
        Some(json!("rate_limited"))
    );
    assert_eq!(span("2")["status"]["code"], "STATUS_CODE_ERROR");
    assert_eq!(
        attr(&span("3")["attributes"], "error.type"),
        Some(json!("denied"))
    );
    assert_eq!(
        attr(&span("4")["attributes"], "error.type"),
        Some(json!("tool_error"))
    );
    let approved = &span("5")["attributes"];
    assert_eq!(
        attr(approved, "toolwarden.decision"),
        Some(json!("approved"))
    );
    assert_eq!(
        attr(approved, "toolwarden.approval.answer"),
        Some(json!("approved"))
    );
    assert!(
        attr(approved, "toolwarden.approval.channel").is_some(),
        "{approved:#}"
    );
    assert!(attr(approved, "toolwarden.approval.wait").is_some());

    let metrics = receiver.exports("metrics");
    assert_eq!(metrics.len(), 1, "one export, at the end");
    let all: Vec<Value> = metrics[0]["body"]["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
        .as_array()
        .unwrap()
        .clone();
    let metric = |name: &str| -> &Value {
        all.iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {all:#?}"))
    };
    let duration = metric("mcp.server.operation.duration");
    assert_eq!(duration["unit"], "s");
    let points = duration["histogram"]["dataPoints"].as_array().unwrap();
    assert_eq!(points[0]["explicitBounds"][0], 0.01);
    assert_eq!(points[0]["explicitBounds"].as_array().unwrap().len(), 14);
    let counted: u64 = points
        .iter()
        .map(|p| p["count"].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(counted, 6, "initialize and five calls");
    let decisions = metric("toolwarden.decisions")["sum"]["dataPoints"]
        .as_array()
        .unwrap();
    let count = |tool: &str, decision: &str| -> Option<Value> {
        decisions
            .iter()
            .find(|p| {
                attr(&p["attributes"], "gen_ai.tool.name") == Some(json!(tool))
                    && attr(&p["attributes"], "toolwarden.decision") == Some(json!(decision))
            })
            .map(|p| p["asInt"].clone())
    };
    assert_eq!(count("retry_deploy", "allowed"), Some(json!("1")));
    assert_eq!(count("retry_deploy", "rate_limited"), Some(json!("1")));
    assert_eq!(count("drop_database", "denied"), Some(json!("1")));
    metric("toolwarden.approval.wait");
    metric("toolwarden.state.duration");

    let everything = std::fs::read_to_string(&receiver.out).unwrap();
    let secret_hex: String = SECRET.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(!everything.contains(SECRET) && !everything.contains(&secret_hex));
}

/// The counter `name`'s last value (it is cumulative), over every
/// metrics export.
fn last_count(receiver: &Receiver, name: &str) -> u64 {
    receiver
        .exports("metrics")
        .iter()
        .flat_map(|e| {
            e["body"]["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|m| m["name"] == name)
        .flat_map(|m| {
            m["sum"]["dataPoints"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|p| p["asInt"].as_str().unwrap().parse::<u64>().unwrap())
        .max()
        .unwrap_or(0)
}

/// Sends `n` calls of a tool that does not exist at once, and reads
/// every answer (the harness fails the test if one does not come).
fn many_calls(s: &mut Session, n: u64) {
    for id in 1..=n {
        s.send(&call(id, "ghost", "{}"));
    }
    let mut answered = HashSet::new();
    while answered.len() < n as usize {
        let answer = s.recv_json();
        assert_eq!(answer["result"]["isError"], true, "{answer}");
        answered.insert(answer["id"].as_u64().unwrap());
    }
}

#[test]
fn a_receiver_that_never_answers_or_is_down_never_holds_up_a_call() {
    // Never answers: each export gives up after OTEL_EXPORTER_OTLP_TIMEOUT,
    // and so does the wait at the end.
    let silent = Receiver::start("otel-silent", &["--hold"]);
    let mut s = session(
        &silent,
        &[
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
            ("OTEL_BSP_SCHEDULE_DELAY", "1"),
        ],
    );
    s.send(&initialize("2025-06-18"));
    s.recv();
    silent.holding();
    many_calls(&mut s, 50);
    // Had the end waited for the receiver, the harness would give up.
    assert_eq!(s.wait().code(), Some(0));
    // Down: nothing listens on the port any more.
    let port = silent.port;
    drop(silent);
    let down = Receiver {
        child: Command::new("true").spawn().unwrap(),
        port,
        out: temp_dir("otel-down").join("none"),
        stdin: None,
        said: None,
    };
    let mut s = session(&down, &[]);
    s.send(&initialize("2025-06-18"));
    s.recv();
    let answer: Value =
        serde_json::from_str(&s.request(&call(1, "ghost", "{}"), &json!(1), |_, _, _| {})).unwrap();
    assert_eq!(answer["result"]["isError"], true);
    assert_eq!(s.wait().code(), Some(0));
    assert_eq!(
        s.stderr().matches("telemetry: could not export").count(),
        2,
        "{}",
        s.stderr()
    );
}

#[test]
fn a_full_queue_drops_records_warns_once_and_counts_them() {
    // The receiver holds the first export unanswered (well within the
    // timeout) while the session makes more calls than the queue holds.
    let mut held = Receiver::start("otel-held", &["--hold"]);
    let mut s = session(
        &held,
        &[
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "600000"),
            ("OTEL_BSP_SCHEDULE_DELAY", "1"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "3600000"),
        ],
    );
    s.send(&initialize("2025-06-18"));
    s.recv();
    held.holding();
    // Each call queues at least its span, its duration and its decision:
    // 3 × 2,000 records, more than the queue's 4,096.
    many_calls(&mut s, 2000);
    held.release();
    assert_eq!(s.wait().code(), Some(0));
    let warned = "telemetry is dropped: the OTLP receiver does not keep up";
    assert_eq!(s.stderr().matches(warned).count(), 1, "{}", s.stderr());
    let dropped = last_count(&held, "toolwarden.telemetry.dropped");
    assert!(dropped >= 3 * 2000 - 4096, "{dropped} dropped");
    let spans: usize = held
        .exports("traces")
        .iter()
        .map(|t| {
            t["body"]["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .map_or(0, Vec::len)
        })
        .sum();
    assert!(spans > 1 && spans <= 1 + 4096, "{spans} spans arrived");
}

#[test]
fn spans_reach_an_https_receiver_whose_ca_is_in_ssl_cert_file() {
    let dir = temp_dir("otel-https");
    let tls = Receiver::start("otel-https", &["--tls", dir.to_str().unwrap()]);
    let url = format!("https://localhost:{}", tls.port);
    let run = |trusted: bool| {
        let ca = dir.join("ca.pem");
        let mut env = vec![("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=t1")];
        if trusted {
            env.push(("SSL_CERT_FILE", ca.to_str().unwrap()));
        }
        let mut s = session_to(&url, &tls, &env);
        s.send(&initialize("2025-06-18"));
        s.recv();
        many_calls(&mut s, 1);
        assert_eq!(s.wait().code(), Some(0));
        s.stderr()
    };
    let stderr = run(true);
    let traces = tls.exports("traces");
    assert_eq!(traces.len(), 1, "{stderr}");
    assert_eq!(traces[0]["headers"]["x-tenant"], "t1");
    assert_eq!(tls.exports("metrics").len(), 1);
    // Without the CA the receiver's certificate is not trusted: nothing
    // is sent, said once per signal, and the call is answered all the same.
    let stderr = run(false);
    assert_eq!(tls.exports("traces").len(), 1);
    assert_eq!(
        stderr.matches("telemetry: could not export").count(),
        2,
        "{stderr}"
    );
    assert!(stderr.contains("TLS"), "{stderr}");
}
