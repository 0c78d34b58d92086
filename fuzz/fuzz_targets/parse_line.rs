//! Any bytes as a line from the client or the server: parsing never panics,
//! what it hands out is a slice of the line (nothing re-encoded), and the
//! one-pass validator accepts exactly what serde_json accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use toolwarden::wire::json::{self, Check, Raw};
use toolwarden::wire::jsonrpc::{parse, scan_prefix, IdKey, Message, Strictness, ToolFields};

/// What the one pass read of `params.name` and `params.arguments` is what
/// a walk of `params` finds.
fn check_tool_fields(params: Option<Raw>, tool: ToolFields) {
    let member = |name| params.filter(|p| p.is_object()).and_then(|p| p.member(name));
    assert_eq!(tool.name, member("name"));
    assert_eq!(tool.arguments, member("arguments"));
}

fuzz_target!(|line: &[u8]| {
    for strictness in [Strictness::Full, Strictness::Envelope] {
        if let Ok(message) = parse(line, strictness) {
            let text = std::str::from_utf8(line).expect("a parsed line is UTF-8");
            let (id, params) = match &message {
                Message::Request { id, params, tool, .. } => {
                    check_tool_fields(*params, *tool);
                    (Some(*id), *params)
                }
                Message::Notification { params, tool, .. } => {
                    check_tool_fields(*params, *tool);
                    (None, *params)
                }
                Message::Response { id, result } => (Some(*id), *result),
            };
            for part in id.iter().chain(params.iter()) {
                assert!(text.contains(part.get()), "{part:?} is not from the line");
                // What the relay keeps for later is a serde_json RawValue.
                let _ = part.to_raw_value();
            }
            if let Some(id) = id {
                let _ = IdKey::of(id);
            }
            if strictness == Strictness::Full {
                // What the strict parser accepts, serde_json reads the same.
                serde_json::from_str::<serde_json::Value>(text).expect("strictly valid JSON");
            }
        }
    }
    // The grammar check (UTF-8 included) agrees with serde_json skipping a
    // value, which checks UTF-8 to hand the value out as a `str`, except
    // that it stops at a depth serde_json does not bound.
    let ours = json::validate(line, Check::Syntax);
    let theirs = serde_json::from_slice::<&serde_json::value::RawValue>(line).is_ok();
    let too_deep = ours.as_ref().is_err_and(|e| e.kind() == json::ErrorKind::Strict);
    if !too_deep {
        assert_eq!(ours.is_ok(), theirs, "{line:?}");
    }
    if json::validate(line, Check::Strict).is_ok() {
        serde_json::from_slice::<serde_json::Value>(line).expect("strictly valid JSON");
    }
    let _ = scan_prefix(line);
});
