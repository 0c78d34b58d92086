//! Any bytes as a line from the client or the server: parsing never panics,
//! and what it hands out is a slice of the line (nothing re-encoded).
#![no_main]

use libfuzzer_sys::fuzz_target;
use toolwarden::jsonrpc::{parse, scan_prefix, IdKey, Message, Strictness};

fuzz_target!(|line: &[u8]| {
    for strictness in [Strictness::Full, Strictness::Envelope] {
        if let Ok(message) = parse(line, strictness) {
            let text = std::str::from_utf8(line).expect("a parsed line is UTF-8");
            let (id, params) = match &message {
                Message::Request { id, params, .. } => (Some(*id), *params),
                Message::Notification { params, .. } => (None, *params),
                Message::Response { id, result } => (Some(*id), *result),
            };
            for part in id.iter().map(|i| i.get()).chain(params.map(|p| p.get())) {
                assert!(text.contains(part), "{part} is not from the line");
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
    let _ = scan_prefix(line);
});
