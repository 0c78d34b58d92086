//! Any line as the server's answer to `tools/list` under `--pin`: the check
//! never panics, the page relayed still parses, and every tool left in it
//! can be read and matches its pin (an entry the pins cannot check never
//! reaches the client).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use toolwarden::commands::check::Tool;
use toolwarden::wire::json::Raw;
use toolwarden::wire::jsonrpc::{parse, Message, Strictness};
use toolwarden::commands::pin::{self, Pins, Status};
use toolwarden::session::tools_list;

/// The pins the seeds list (fuzz/seeds/pin_page/), with a name, a
/// description, a schema and an MCP Apps `_meta` among them.
static PINS: LazyLock<Pins> = LazyLock::new(|| {
    let tools: Vec<Tool> = serde_json::from_str(
        r#"[{"name": "read", "description": "Reads a file.", "inputSchema": {"type": "object"}},
            {"name": "app", "_meta": {"ui": {"resourceUri": "ui://app/a.html"}}, "icons": []}]"#,
    )
    .expect("the pinned tools parse");
    Pins::from_text(
        "pins.json",
        &pin::lock_file(&tools, "server"),
        "server".into(),
    )
    .expect("a lock file loads")
});

fn tools_list_result(line: &[u8]) -> Option<Raw<'_>> {
    match parse(line, Strictness::Envelope) {
        Ok(Message::Response { result, .. }) => result,
        _ => None,
    }
}

fuzz_target!(|line: &[u8]| {
    let Some(result) = tools_list_result(line) else {
        return;
    };
    // As the relay does: withheld unless it matches.
    let filtered = tools_list::filter(line, result, |name, tool| {
        PINS.check(name, tool.get()) != Status::Matches
    });
    let relayed = filtered.as_deref().unwrap_or(line);
    let result = tools_list_result(relayed).expect("the page relayed still parses");
    let Some(tools) = result.member("tools") else {
        return;
    };
    for tool in tools.items() {
        let name = tool.member("name").and_then(Raw::as_str);
        assert_eq!(
            PINS.check(name.as_deref(), tool.get()),
            Status::Matches,
            "relayed: {}",
            tool.get()
        );
    }
});
