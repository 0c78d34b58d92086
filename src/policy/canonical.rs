//! A `per` value's bucket name: the value as canonical JSON (objects'
//! keys sorted, no spaces, strings escaped one way, numbers as serde_json
//! writes them), written piece by piece from the call's text, so that a
//! value of any length costs no tree of it; one longer than
//! [`SHORT`] bytes is named by its hash instead.

use std::io::Write;

use sha2::{Digest, Sha256};

use crate::json::Raw;

/// Canonical forms up to this long are the bucket's name as they are.
const SHORT: usize = 64;

/// The bucket name of one `per` value: its canonical JSON, or
/// `sha256:` and 32 hex digits of it when longer than [`SHORT`] bytes.
pub fn bucket_name(value: Raw<'_>) -> String {
    let mut out = Sink::default();
    write_value(value, &mut out);
    match out.hash {
        None => String::from_utf8(out.short).expect("canonical JSON is UTF-8"),
        Some(hash) => {
            let digest = hash.finalize();
            let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
            format!("sha256:{hex}")
        }
    }
}

/// Keeps the first [`SHORT`] bytes; past them, hashes everything.
#[derive(Default)]
struct Sink {
    short: Vec<u8>,
    hash: Option<Sha256>,
}

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match &mut self.hash {
            Some(hash) => hash.update(bytes),
            None if self.short.len() + bytes.len() <= SHORT => self.short.extend_from_slice(bytes),
            None => {
                let mut hash = Sha256::new();
                hash.update(&self.short);
                hash.update(bytes);
                self.hash = Some(hash);
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes `value` (text the strict parser passed) as canonical JSON. The
/// only copies are of one object's member list and one string at a time,
/// both bounded by the line.
fn write_value(value: Raw<'_>, out: &mut Sink) {
    let text = value.get();
    // Writing to a Sink cannot fail.
    let _ = match text.as_bytes().first() {
        Some(b'{') => {
            let mut members: Vec<_> = value.members().collect();
            members.sort_by(|a, b| a.0.cmp(&b.0));
            let _ = out.write_all(b"{");
            for (i, (key, member)) in members.into_iter().enumerate() {
                if i > 0 {
                    let _ = out.write_all(b",");
                }
                let _ = serde_json::to_writer(&mut *out, key.as_ref());
                let _ = out.write_all(b":");
                write_value(member, out);
            }
            out.write_all(b"}")
        }
        Some(b'[') => {
            let _ = out.write_all(b"[");
            for (i, item) in value.items().enumerate() {
                if i > 0 {
                    let _ = out.write_all(b",");
                }
                write_value(item, out);
            }
            out.write_all(b"]")
        }
        // A lone surrogate (which the strict parser refuses) has no `str`:
        // its text stands in.
        Some(b'"') => match value.as_str() {
            Some(s) => serde_json::to_writer(&mut *out, s.as_ref()).map_err(Into::into),
            None => out.write_all(text.as_bytes()),
        },
        Some(b'-' | b'0'..=b'9') => match text.parse::<serde_json::Number>() {
            Ok(n) => write!(out, "{n}"),
            Err(_) => out.write_all(text.as_bytes()),
        },
        _ => out.write_all(text.as_bytes()),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> String {
        bucket_name(Raw::parse(text).unwrap())
    }

    #[test]
    fn short_values_are_their_canonical_json() {
        // As serde_json writes the value it reads.
        for text in [
            r#"{ "b" : [1, 2.50, -0, 1e2], "a": "\u00e9\n\/" }"#,
            r#""\ud83d\ude00""#,
            "true",
            "null",
            "12345678901234567890123",
        ] {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(name(text), value.to_string(), "{text}");
        }
    }

    #[test]
    fn long_values_are_hashed_whatever_their_spelling() {
        let long = format!("[{}]", vec!["\"é\""; 100].join(", "));
        let hashed = name(&long);
        assert!(hashed.starts_with("sha256:"), "{hashed}");
        assert_eq!(
            name(&long.replace('é', "\\u00E9").replace(", ", ",")),
            hashed
        );
        assert_ne!(name(&long.replace('é', "e")), hashed);
    }
}
