//! A configurable MCP server for tests and demos: serves the tools in a
//! JSON file and answers each call with a text naming the tool and its
//! arguments. Flags make it misbehave on purpose.
//!
//! ```text
//! cargo run -p mock_server -- --tools examples/tools/fractera.json
//! ```
//!
//! The tools file: `{"server": {"name": .., "version": ..}, "tools": [..]}`,
//! each tool as MCP's tools/list shows it.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use serde_json::{json, Value};

#[derive(Default)]
struct Options {
    tools: Option<String>,
    /// Write a non-JSON line on stdout before anything else.
    banner: bool,
    /// Exit with code 3, unanswered, when this tool is called.
    crash_on: Option<String>,
    /// Wait this long before answering each tools/call.
    slow_ms: u64,
    /// Wait this long before answering each tools/list: a server that is
    /// slow to start.
    slow_list_ms: u64,
    /// Append every line received to this file.
    record: Option<String>,
    /// Tools per tools/list page (0: all on one page).
    page_size: usize,
    /// Never read stdin: sleep forever.
    no_read: bool,
    /// Keep running after stdin closes (until a signal).
    linger: bool,
    /// Ignore SIGTERM (so only SIGKILL stops it).
    ignore_term: bool,
    /// Ignore SIGINT, SIGTERM and SIGHUP: a server that finishes what it
    /// was asked and leaves when its stdin closes.
    ignore_signals: bool,
    /// Declare `capabilities.tools.listChanged` at initialize.
    list_changed: bool,
    /// Tool descriptions replaced at start: a server that changed a tool
    /// since it was reviewed.
    describe: Vec<(String, String)>,
    /// When this tool is called, the server adds a tool, `added_tool`, and
    /// says so with `notifications/tools/list_changed`.
    add_tool_on: Option<String>,
    /// Exit code when stdin closes.
    exit_code: i32,
    /// Write a response to an id nobody sent, at start.
    stray_response: bool,
    /// Write this many log notifications at start.
    flood: usize,
    /// Write the server's pid to this file at start.
    pid_file: Option<String>,
    /// Answer this method with the text of this file, `@ID@` in it
    /// replaced by the request's id (for answers no tools file can make).
    answer_with: Option<(String, String)>,
    /// Never answer this method.
    ignore: Option<String>,
    /// This tool asks for input of its own (2026-07-28): a call without
    /// the mock's `requestState` is answered `input_required`.
    input_required: Option<String>,
    /// Write these lines to stderr at start (a server's logs, or lines made
    /// to look like toolwarden's).
    stderr: Vec<String>,
    /// Exit with this code right after writing those lines, reading
    /// nothing: a server that crashes at start.
    exit_at_start: Option<i32>,
}

fn parse_args() -> Options {
    let mut o = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| die(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--tools" => o.tools = Some(value()),
            "--banner" => o.banner = true,
            "--stderr" => o.stderr.push(value()),
            "--crash-on" => o.crash_on = Some(value()),
            "--slow-ms" => {
                o.slow_ms = value()
                    .parse()
                    .unwrap_or_else(|_| die("--slow-ms takes a number"))
            }
            "--slow-list-ms" => {
                o.slow_list_ms = value()
                    .parse()
                    .unwrap_or_else(|_| die("--slow-list-ms takes a number"))
            }
            "--record" => o.record = Some(value()),
            "--page-size" => {
                o.page_size = value()
                    .parse()
                    .unwrap_or_else(|_| die("--page-size takes a number"))
            }
            "--no-read" => o.no_read = true,
            "--linger" => o.linger = true,
            "--ignore-term" => o.ignore_term = true,
            "--ignore-signals" => o.ignore_signals = true,
            "--list-changed" => o.list_changed = true,
            "--describe" => {
                let v = value();
                let (tool, text) = v
                    .split_once('=')
                    .unwrap_or_else(|| die("--describe takes TOOL=TEXT"));
                o.describe.push((tool.to_owned(), text.to_owned()));
            }
            "--add-tool-on" => o.add_tool_on = Some(value()),
            "--exit-code" => {
                o.exit_code = value()
                    .parse()
                    .unwrap_or_else(|_| die("--exit-code takes a number"))
            }
            "--exit-at-start" => {
                o.exit_at_start = Some(
                    value()
                        .parse()
                        .unwrap_or_else(|_| die("--exit-at-start takes a number")),
                )
            }
            "--stray-response" => o.stray_response = true,
            "--pid-file" => o.pid_file = Some(value()),
            "--answer-with" => {
                let v = value();
                let (method, path) = v
                    .split_once('=')
                    .unwrap_or_else(|| die("--answer-with takes METHOD=FILE"));
                o.answer_with = Some((method.to_owned(), path.to_owned()));
            }
            "--ignore" => o.ignore = Some(value()),
            "--input-required" => o.input_required = Some(value()),
            "--flood" => {
                o.flood = value()
                    .parse()
                    .unwrap_or_else(|_| die("--flood takes a number"))
            }
            // What follows is the server's own configuration in a real
            // command line (an API key, a URL): taken and ignored, to test
            // what toolwarden shows of a command.
            "--" => break,
            other => die(&format!("unknown argument {other}")),
        }
    }
    o
}

fn die(message: &str) -> ! {
    eprintln!("mock_server: {message}");
    std::process::exit(2)
}

/// The state `--input-required` answers with, and takes back.
const MOCK_STATE: &str = "mock-state~1";

fn main() {
    let o = parse_args();
    let spec: Value = match &o.tools {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).unwrap_or_else(|e| die(&format!("{path}: {e}")));
            serde_json::from_str(&text).unwrap_or_else(|e| die(&format!("{path}: {e}")))
        }
        None => json!({ "tools": [] }),
    };
    let mut tools = spec["tools"].as_array().cloned().unwrap_or_default();
    for (name, text) in &o.describe {
        for tool in tools.iter_mut().filter(|t| t["name"] == name.as_str()) {
            tool["description"] = json!(text);
        }
    }
    let server_info = spec
        .get("server")
        .cloned()
        .unwrap_or(json!({"name": "mock", "version": "0.0.0"}));
    if let Some(path) = &o.pid_file {
        std::fs::write(path, std::process::id().to_string())
            .unwrap_or_else(|e| die(&format!("{path}: {e}")));
    }
    if o.ignore_term {
        // SAFETY: setting a signal's disposition to ignore touches no memory.
        unsafe {
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
        }
    }
    if o.ignore_signals {
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: as above.
            unsafe {
                libc::signal(signal, libc::SIG_IGN);
            }
        }
    }
    for line in &o.stderr {
        eprintln!("{line}");
    }
    if let Some(code) = o.exit_at_start {
        std::process::exit(code);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if o.banner {
        writeln!(
            out,
            "mock server {} starting (this line is not JSON-RPC)",
            server_info["name"]
        )
        .unwrap();
        out.flush().unwrap();
    }
    if o.stray_response {
        writeln!(
            out,
            r#"{{"jsonrpc":"2.0","id":"never-sent","result":{{}}}}"#
        )
        .unwrap();
        out.flush().unwrap();
    }
    for i in 0..o.flood {
        let note = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": format!("flood {i} {}", "x".repeat(1000))}});
        if writeln!(out, "{note}").is_err() {
            std::process::exit(0);
        }
    }
    out.flush().unwrap();
    if o.no_read {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    let mut record = o.record.as_ref().map(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| die(&format!("{path}: {e}")))
    });
    let stdin = BufReader::new(std::io::stdin());
    for line in stdin.split(b'\n') {
        let Ok(line) = line else { break };
        if let Some(file) = record.as_mut() {
            file.write_all(&line)
                .and_then(|_| file.write_all(b"\n"))
                .unwrap();
            file.flush().unwrap();
        }
        let Ok(message) = serde_json::from_slice::<Value>(&line) else {
            eprintln!("mock_server: not JSON: {}", String::from_utf8_lossy(&line));
            continue;
        };
        let (Some(id), Some(method)) = (message.get("id"), message["method"].as_str()) else {
            continue; // a notification or a response: nothing to answer
        };
        if o.ignore.as_deref() == Some(method) {
            continue;
        }
        if let Some((_, path)) = o.answer_with.as_ref().filter(|(m, _)| m == method) {
            let text =
                std::fs::read_to_string(path).unwrap_or_else(|e| die(&format!("{path}: {e}")));
            let answer = text.trim_end().replacen("@ID@", &id.to_string(), 1);
            if writeln!(out, "{answer}").and_then(|_| out.flush()).is_err() {
                break;
            }
            continue;
        }
        let params = &message["params"];
        let reply = match method {
            "initialize" => Ok(json!({
                "protocolVersion": params["protocolVersion"].as_str().unwrap_or("2025-06-18"),
                "capabilities": { "tools": { "listChanged": o.list_changed } },
                "serverInfo": server_info,
            })),
            "ping" => Ok(json!({})),
            "tools/list" => {
                std::thread::sleep(Duration::from_millis(o.slow_list_ms));
                Ok(list_page(&tools, params["cursor"].as_str(), o.page_size))
            }
            "tools/call" => {
                let name = params["name"].as_str().unwrap_or("");
                if o.crash_on.as_deref() == Some(name) {
                    eprintln!("mock_server: crashing on {name} as asked");
                    std::process::exit(3);
                }
                if o.slow_ms > 0 {
                    std::thread::sleep(Duration::from_millis(o.slow_ms));
                }
                let asks = o.input_required.as_deref() == Some(name)
                    && params["requestState"] != MOCK_STATE;
                let result = if asks {
                    json!({
                        "resultType": "input_required",
                        "inputRequests": {"mock_question": {"method": "elicitation/create", "params": {
                            "mode": "form",
                            "message": "Which region?",
                            "requestedSchema": {"type": "object", "properties": {"region": {"type": "string"}}}
                        }}},
                        "requestState": MOCK_STATE
                    })
                } else {
                    call(&tools, name, &params["arguments"])
                };
                if o.add_tool_on.as_deref() == Some(name)
                    && !tools.iter().any(|t| t["name"] == "added_tool")
                {
                    tools.push(json!({
                        "name": "added_tool",
                        "description": "A tool the server added after it started.",
                        "inputSchema": {"type": "object"}
                    }));
                    let note =
                        json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
                    if writeln!(out, "{note}").and_then(|_| out.flush()).is_err() {
                        break;
                    }
                }
                Ok(result)
            }
            _ => Err(json!({ "code": -32601, "message": format!("method not found: {method}") })),
        };
        let response = match reply {
            Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
            Err(error) => json!({ "jsonrpc": "2.0", "id": id, "error": error }),
        };
        if writeln!(out, "{response}")
            .and_then(|_| out.flush())
            .is_err()
        {
            break;
        }
    }
    if o.linger {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    std::process::exit(o.exit_code);
}

fn list_page(tools: &[Value], cursor: Option<&str>, page_size: usize) -> Value {
    let start: usize = cursor.and_then(|c| c.parse().ok()).unwrap_or(0);
    let size = if page_size == 0 {
        tools.len()
    } else {
        page_size
    };
    let end = (start + size).min(tools.len());
    let mut page = json!({ "tools": tools.get(start..end).unwrap_or(&[]) });
    if end < tools.len() {
        page["nextCursor"] = json!(end.to_string());
    }
    page
}

fn call(tools: &[Value], name: &str, arguments: &Value) -> Value {
    if !tools.iter().any(|t| t["name"] == name) {
        return json!({ "content": [{ "type": "text", "text": format!("unknown tool: {name}") }], "isError": true });
    }
    let mut arguments = if arguments.is_null() {
        "{}".to_owned()
    } else {
        arguments.to_string()
    };
    // Arguments over 8 MiB (the hostile tests' tens of MiB) are not
    // echoed whole, so that the answer stays small; the benchmarks' 4 MiB
    // round trip is echoed as it was sent.
    if arguments.len() > 8 << 20 {
        let mut keep = 1000;
        while !arguments.is_char_boundary(keep) {
            keep -= 1;
        }
        arguments = format!("{}... ({} bytes)", &arguments[..keep], arguments.len());
    }
    json!({ "content": [{ "type": "text", "text": format!("called {name} with {arguments}") }], "isError": false })
}
