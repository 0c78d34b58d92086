//! A `per` value's bucket name: the value as canonical JSON (objects'
//! keys sorted, no spaces, strings escaped one way, numbers as serde_json
//! writes them), written piece by piece from the call's text, so that a
//! value of any length costs no tree of it; one longer than
//! [`SHORT`] bytes is named by its hash instead.

use std::io::Write;

use sha2::{Digest, Sha256};

use crate::wire::json::Raw;

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

/// The SHA-256 (hex) of `value` as strict canonical JSON: keys sorted,
/// strings decoded and written one way, numbers by value, and nothing
/// coerced (`"1"` is not `1`). An approval is bound to this: what a person
/// saw is what runs, whatever spelling a server would fold together.
pub fn digest(value: Raw<'_>) -> String {
    let mut hash = Sha256::new();
    write_strict(value, &mut hash);
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `value` as strict canonical JSON into `hash`, a piece at a time
/// (as [`write_value`], without its coercions).
fn write_strict(value: Raw<'_>, hash: &mut Sha256) {
    let text = value.get();
    match text.as_bytes().first() {
        Some(b'{') => {
            let mut members: Vec<_> = value.members().collect();
            members.sort_by(|a, b| a.0.cmp(&b.0));
            hash.update(b"{");
            for (i, (key, member)) in members.into_iter().enumerate() {
                if i > 0 {
                    hash.update(b",");
                }
                hash.update(serde_json::to_string(key.as_ref()).unwrap_or_default());
                hash.update(b":");
                write_strict(member, hash);
            }
            hash.update(b"}");
        }
        Some(b'[') => {
            hash.update(b"[");
            for (i, item) in value.items().enumerate() {
                if i > 0 {
                    hash.update(b",");
                }
                write_strict(item, hash);
            }
            hash.update(b"]");
        }
        Some(b'"') => match value.as_str() {
            Some(s) => hash.update(serde_json::to_string(s.as_ref()).unwrap_or_default()),
            None => hash.update(text),
        },
        Some(b'-' | b'0'..=b'9') => hash.update(exact_number(text)),
        _ => hash.update(text),
    }
}

/// A JSON number by its exact value, as `DIGITSeEXPONENT` with no
/// leading or trailing zeros in the digits (`1`, `1.0`, `10e-1` are all
/// `1e0`; `0` and `-0` are `0`): no digit is lost, so two numbers a
/// double cannot tell apart (`9007199254740993`, `9007199254740992`)
/// stay apart. An exponent past `i64` keeps its text as it is.
fn exact_number(text: &str) -> String {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], &unsigned[at + 1..]),
        None => (unsigned, "0"),
    };
    let Ok(exponent) = exponent.trim_start_matches('+').parse::<i64>() else {
        return text.to_owned();
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    let trimmed = digits.trim_end_matches('0');
    if trimmed.is_empty() {
        return "0".to_owned();
    }
    let shift = (digits.len() - trimmed.len()) as i64 - fraction.len() as i64;
    let Some(exponent) = exponent.checked_add(shift) else {
        return text.to_owned();
    };
    let sign = if negative { "-" } else { "" };
    format!("{sign}{trimmed}e{exponent}")
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
            Some(s) => write_string(&s, out),
            None => out.write_all(text.as_bytes()),
        },
        Some(b'-' | b'0'..=b'9') => write_number(text, out),
        Some(b't') => out.write_all(b"1"),
        Some(b'f') => out.write_all(b"0"),
        _ => out.write_all(text.as_bytes()),
    };
}

/// The longest string whose JSON text is read as the value it spells
/// (servers parse a JSON string where an object belongs): a tree of it is
/// bounded by this, not by the line.
const MAX_PARSED_STRING: usize = 1 << 20;

/// A string as the value servers coerce it to, so that no spelling of one
/// value gets a budget of its own: `"1"` and `" 1.0 "` as the number 1,
/// `"true"`, `"yes"`, `"on"`, `"t"`, `"y"` (in any case) as `true`, which
/// is the number 1 too (and `false` alike 0), a JSON object or list
/// written as a string as that value. Merging two values a server would
/// tell apart only makes the limit stricter.
fn write_string(s: &str, out: &mut Sink) -> std::io::Result<()> {
    let word = s.trim();
    match word.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "t" | "y" => return out.write_all(b"1"),
        "false" | "no" | "off" | "f" | "n" => return out.write_all(b"0"),
        _ => {}
    }
    if word.parse::<f64>().is_ok_and(f64::is_finite) && word.bytes().any(|b| b.is_ascii_digit()) {
        return write_number(word, out);
    }
    if word.len() <= MAX_PARSED_STRING && (word.starts_with('{') || word.starts_with('[')) {
        if let Ok(inner) = Raw::parse(word) {
            if serde_json::from_str::<serde::de::IgnoredAny>(word).is_ok() {
                write_value(inner, out);
                return Ok(());
            }
        }
    }
    serde_json::to_writer(&mut *out, s).map_err(Into::into)
}

/// A number by its value as a double (what JavaScript and most servers
/// read): `1`, `1.0`, `1e0` and `-0` alike; whole numbers without a point.
fn write_number(text: &str, out: &mut impl Write) -> std::io::Result<()> {
    match text.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n.fract() == 0.0 && n.abs() < 9.0e15 => {
            write!(out, "{}", n as i64)
        }
        Ok(n) if n.is_finite() => write!(out, "{n:?}"),
        _ => out.write_all(text.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> String {
        bucket_name(Raw::parse(text).unwrap())
    }

    #[test]
    fn short_values_are_their_canonical_json() {
        for (text, want) in [
            (
                r#"{ "b" : [1, 2.50, -0, 1e2], "a": "\u00e9\n\/" }"#,
                r#"{"a":"é\n/","b":[1,2.5,0,100]}"#,
            ),
            (r#""\ud83d\ude00""#, r#""😀""#),
            ("null", "null"),
            ("12345678901234567890123", "1.2345678901234568e22"),
        ] {
            assert_eq!(name(text), want, "{text}");
        }
    }

    #[test]
    fn an_approvals_digest_folds_spelling_but_not_values() {
        let digest = |text: &str| digest(Raw::parse(text).unwrap());
        assert_eq!(
            digest(r#"{ "b": [1, 2.50], "a": "\u00e9" }"#),
            digest(r#"{"a":"é","b":[1.0,2.5]}"#)
        );
        for same in [
            ["100", "1e2", "100.000"],
            ["0.25", "25e-2", "2.5E-1"],
            ["0", "-0", "0.0e5"],
            ["-12", "-1.2e1", "-120e-1"],
        ] {
            let first = digest(same[0]);
            for other in &same[1..] {
                assert_eq!(first, digest(other), "{other}");
            }
        }
        for (one, other) in [
            (r#"{"gpus":1}"#, r#"{"gpus":"1"}"#),
            (r#"{"force":true}"#, r#"{"force":1}"#),
            (r#"{"force":false}"#, r#"{"force":"no"}"#),
            (r#"{"a":{"b":1}}"#, r#"{"a":"{\"b\":1}"}"#),
            (r#"{"a":null}"#, r#"{}"#),
            // A double cannot tell these apart; an approval can.
            (
                r#"{"id":1400000000000000001}"#,
                r#"{"id":1400000000000000100}"#,
            ),
            (r#"{"n":9007199254740993}"#, r#"{"n":9007199254740992}"#),
            (r#"{"n":0.1}"#, r#"{"n":0.10000000000000001}"#),
            (r#"{"n":-1}"#, r#"{"n":1}"#),
        ] {
            assert_ne!(digest(one), digest(other), "{one} and {other}");
        }
    }

    /// Spellings a server reads as one value share one bucket: a
    /// Python SDK server runs `"true"`, `1` and `"yes"` as `True`.
    #[test]
    fn values_servers_coerce_alike_share_a_name() {
        for group in [
            &[
                "true",
                "1",
                "1.0",
                "1e0",
                r#""true""#,
                r#""TRUE""#,
                r#""1""#,
                r#""yes""#,
                r#""on""#,
                r#""t""#,
                r#"" 1 ""#,
            ][..],
            &[
                "false",
                "0",
                "-0",
                r#""false""#,
                r#""no""#,
                r#""off""#,
                r#""0.0""#,
            ][..],
            &[
                r#"{"b":1,"a":[2]}"#,
                r#""{\"a\": [2], \"b\": 1}""#,
                r#"{"a":["2"],"b":"1"}"#,
            ][..],
            &[r#""job-7""#, r#""job-7""#][..],
        ] {
            let names: Vec<String> = group.iter().map(|t| name(t)).collect();
            assert!(names.iter().all(|n| *n == names[0]), "{group:?}: {names:?}");
        }
        assert_ne!(name(r#""job-7""#), name(r#""job-8""#));
        assert_ne!(name("2"), name("1"));
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
