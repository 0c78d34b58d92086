//! The per-message work, alone: parsing a line into its envelope, a policy
//! decision, and taking hidden tools out of a large tools/list answer.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use toolwarden::policy::{Policy, ToolCall, Verdict};
use toolwarden::session::tools_list;
use toolwarden::state::{Spec, State};
use toolwarden::wire::jsonrpc::{parse, Message, Strictness};

const REQUEST: &str = r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"retry-job","arguments":{"endpointId":"ep-7x2k9q","jobId":"sync-4f1c2a7e-9b3d-4e8a-a1b2-c3d4e5f60718"},"_meta":{"progressToken":42}}}"#;
const RESPONSE: &str = r#"{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"{\"id\":\"sync-4f1c2a7e-9b3d-4e8a-a1b2-c3d4e5f60718\",\"status\":\"IN_QUEUE\",\"delayTime\":0,\"executionTime\":0,\"retries\":1}"}],"isError":false}}"#;

fn parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(REQUEST.len() as u64));
    group.bench_function("tools/call request, strict", |b| {
        b.iter(|| parse(std::hint::black_box(REQUEST.as_bytes()), Strictness::Full).unwrap())
    });
    group.throughput(Throughput::Bytes(RESPONSE.len() as u64));
    group.bench_function("tool result response, envelope", |b| {
        b.iter(|| {
            parse(
                std::hint::black_box(RESPONSE.as_bytes()),
                Strictness::Envelope,
            )
            .unwrap()
        })
    });
    group.finish();
}

fn deciding(c: &mut Criterion) {
    let plain = Policy::from_json(r#"{"version":"1","tools":{"retry-job":{}}}"#).unwrap();
    let schema = Policy::from_json(
        r#"{"version":"1","tools":{"retry-job":{"arguments":{"type":"object","properties":{
            "endpointId":{"type":"string","pattern":"^[a-zA-Z0-9_-]+$"},
            "jobId":{"type":"string","pattern":"^[a-zA-Z0-9_-]+$"}},
            "required":["endpointId","jobId"],"additionalProperties":false}}}}"#,
    )
    .unwrap();
    // A budget no benchmark run exhausts.
    let limit = Policy::from_json(
        r#"{"version":"1","tools":{"retry-job":{"limits":[{"counter":"c","window":"day","max":4000000000}]}}}"#,
    )
    .unwrap();
    let Ok(Message::Request { params, tool, .. }) = parse(REQUEST.as_bytes(), Strictness::Full)
    else {
        unreachable!()
    };
    let mut group = c.benchmark_group("decide");
    for (name, policy) in [
        ("no schema", &plain),
        ("with a schema", &schema),
        ("with a limit", &limit),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let call = ToolCall::from_params(std::hint::black_box(params), tool).unwrap();
                policy.check(&call)
            })
        });
    }
    group.finish();

    // Taking a limited call's charge from each store (a Redis server on
    // a Unix socket, when `redis-server` is installed).
    let call = ToolCall::from_params(params, tool).unwrap();
    let Verdict::Allow(charge) = limit.check(&call) else {
        unreachable!()
    };
    let dir = std::env::temp_dir().join(format!("toolwarden-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("redis.sock");
    let redis = std::process::Command::new("redis-server")
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
        .stdout(std::process::Stdio::null())
        .spawn()
        .ok();
    let mut stores = vec![
        ("memory", Spec::Memory),
        ("lmdb (the default)", Spec::Lmdb(dir.join("counters.lmdb"))),
        ("sqlite", Spec::Sqlite(dir.join("state.db"))),
    ];
    if redis.is_some() {
        while !socket.exists() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        stores.push((
            "redis",
            Spec::Redis(format!("redis+unix://{}", socket.display())),
        ));
    }
    let mut group = c.benchmark_group("charge");
    for (name, spec) in stores {
        let state = State::open(spec, "bench".into(), "default".into()).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| state.take(&limit, &charge, true).unwrap())
        });
    }
    group.finish();
    if let Some(mut redis) = redis {
        let _ = redis.kill();
        let _ = redis.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tools/list answer the size of RunPod's: 70 tools, about 124 KB.
fn large_list() -> String {
    let tools: Vec<_> = (0..70)
        .map(|i| {
            let properties: serde_json::Map<String, serde_json::Value> = (0..8)
                .map(|p| {
                    (
                        format!("parameter{p}"),
                        json!({"type": "string", "description": format!("Parameter {p} of tool {i}: {}", "details ".repeat(12))}),
                    )
                })
                .collect();
            json!({
                "name": format!("tool-{i}"),
                "description": format!("Tool number {i}. {}", "It does a thing with care. ".repeat(16)),
                "inputSchema": {"type": "object", "properties": properties, "required": ["parameter0"]}
            })
        })
        .collect();
    json!({"jsonrpc": "2.0", "id": 2, "result": {"tools": tools}}).to_string()
}

fn filtering(c: &mut Criterion) {
    let line = large_list();
    let policy = Policy::from_json(
        r#"{"version":"1","default":"allow","tools":{"tool-1*":{"action":"deny"}}}"#,
    )
    .unwrap();
    let mut group = c.benchmark_group("tools/list");
    group.throughput(Throughput::Bytes(line.len() as u64));
    group.bench_function(
        format!("parse and filter 70 tools, {} KB", line.len() / 1000),
        |b| {
            b.iter(|| {
                let Ok(Message::Response {
                    result: Some(result),
                    ..
                }) = parse(line.as_bytes(), Strictness::Envelope)
                else {
                    unreachable!()
                };
                tools_list::filter(line.as_bytes(), result, |name, _| {
                    name.is_some_and(|n| policy.hides(n))
                })
                .unwrap()
            })
        },
    );
    group.finish();
}

/// A 4 MiB message: its check each way through toolwarden.
fn large_message(c: &mut Criterion) {
    let text = "x".repeat(4 * 1024 * 1024);
    let request = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{text}"}}}}}}"#
    );
    let response = format!(
        r#"{{"jsonrpc":"2.0","id":7,"result":{{"content":[{{"type":"text","text":"{text}"}}]}}}}"#
    );
    let mut group = c.benchmark_group("4 MiB");
    group.throughput(Throughput::Bytes(request.len() as u64));
    group.sample_size(20);
    // For scale: std's UTF-8 check alone (the parse checks UTF-8 on its
    // way), and serde_json only skipping over the same text.
    group.bench_function("std's UTF-8 check (reference)", |b| {
        b.iter(|| std::str::from_utf8(request.as_bytes()).is_ok())
    });
    group.bench_function("serde_json RawValue (reference)", |b| {
        b.iter(|| serde_json::from_str::<&serde_json::value::RawValue>(&request).unwrap())
    });
    group.bench_function("request, strict", |b| {
        b.iter(|| parse(request.as_bytes(), Strictness::Full).unwrap())
    });
    group.bench_function("response, envelope", |b| {
        b.iter(|| parse(response.as_bytes(), Strictness::Envelope).unwrap())
    });
    // Text beyond ASCII, where the UTF-8 check has work to do: Greek and
    // Japanese, two and three bytes a character.
    let text = "λόγος 日本語 ".repeat(4 * 1024 * 1024 / 21);
    let request = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{text}"}}}}}}"#
    );
    group.bench_function("request beyond ASCII, strict", |b| {
        b.iter(|| parse(request.as_bytes(), Strictness::Full).unwrap())
    });
    group.finish();
}

criterion_group!(benches, parsing, deciding, filtering, large_message);
criterion_main!(benches);
