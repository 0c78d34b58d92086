//! Any line as a `tools/call` whose arguments are written down: the
//! redacted view never panics, stays within its bound, and shows no value
//! that was taken out as a secret, nor does scrubbing a text that quotes
//! the arguments.
#![no_main]

use libfuzzer_sys::fuzz_target;
use toolwarden::wire::json::{self, Check, Raw};
use toolwarden::redact::{self, REDACTED, VIEW_BYTES};

/// What a view writes of its own.
const NOTES: &[&str] = &[REDACTED, "more members not shown", "more items not shown", "more bytes]"];

fuzz_target!(|data: &[u8]| {
    // The first byte picks the rule's pointers; the rest is the arguments.
    let Some((&pick, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    // The relay redacts only arguments the strict parser passed.
    if json::validate(text.as_bytes(), Check::Strict).is_err() {
        return;
    }
    let Ok(arguments) = Raw::parse(text) else {
        return;
    };
    let pointers: Vec<String> = ["/a", "/0", "/a/b", ""]
        .iter()
        .enumerate()
        .filter(|(i, _)| pick & (1 << i) != 0)
        .map(|(_, p)| p.to_string())
        .collect();
    let redacted = redact::redact(Some(arguments), &pointers);
    let shown = serde_json::to_string(&redacted.value).expect("a view serializes");
    assert!(
        shown.len() <= VIEW_BYTES + 16 * 1024,
        "a view of {} bytes",
        shown.len()
    );
    // A secret key's string value never shows, whatever its spelling.
    let value: serde_json::Value = serde_json::from_str(text).expect("strictly valid JSON");
    if let serde_json::Value::Object(map) = &value {
        for (key, inner) in map {
            if let serde_json::Value::String(secret) = inner {
                // Only a value that cannot show for another reason: once
                // in the text, and not part of what a view writes itself.
                let alone = secret.len() >= 4
                    && text.matches(secret.as_str()).count() == 1
                    && !NOTES.iter().any(|n| n.contains(secret.as_str()));
                if redact::key_is_secret(key) && alone {
                    assert!(!shown.contains(secret.as_str()), "{key}: {secret:?} in {shown}");
                    let quoted = serde_json::to_string(inner).unwrap();
                    let scrubbed = redacted.scrub(&format!("{quoted} is not valid"));
                    assert!(!scrubbed.contains(&quoted), "{scrubbed}");
                }
            }
        }
    }
    let _ = redact::loggable(text);
});
