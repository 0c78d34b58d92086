//! Strict parsing of one JSON-RPC 2.0 line into a borrowed [`Envelope`], and
//! the few messages toolwarden writes itself.
//!
//! Nothing here re-serializes a message that is forwarded: the envelope only
//! borrows slices of the line so the relay can decide, then send the original
//! bytes. Ids are kept as raw JSON text so that an id such as
//! `12345678901234567890123` is echoed exactly.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

pub const PARSE_ERROR: i32 = -32700;
pub const INVALID_REQUEST: i32 = -32600;
pub const INVALID_PARAMS: i32 = -32602;
pub const INTERNAL_ERROR: i32 = -32603;

/// One message, borrowed from the line it was read from.
#[derive(Debug)]
pub enum Message<'a> {
    Request {
        id: &'a RawValue,
        method: Cow<'a, str>,
        params: Option<&'a RawValue>,
    },
    Notification {
        method: Cow<'a, str>,
        params: Option<&'a RawValue>,
    },
    Response {
        id: &'a RawValue,
        result: Option<&'a RawValue>,
    },
}

/// Why a line is not one valid JSON-RPC 2.0 message, and how to answer it.
#[derive(Debug)]
pub struct Rejection {
    pub code: i32,
    pub message: String,
    /// What the answer should carry: `Some(None)` answers with `"id": null`,
    /// `None` means the line was a notification or a response and gets no
    /// answer at all (JSON-RPC never answers those).
    pub reply_id: Option<Option<Box<RawValue>>>,
}

impl Rejection {
    fn new(code: i32, message: impl Into<String>, reply_id: Option<Option<Box<RawValue>>>) -> Self {
        Rejection {
            code,
            message: message.into(),
            reply_id,
        }
    }
}

/// The top-level members of a message, each left as raw JSON.
///
/// serde's derive already refuses a duplicated top-level member; deeper
/// duplicates are found by [`check_strict`]. Every field goes through
/// [`present`] so that `"id": null` is told apart from a missing id.
#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    method: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// How much checking a line gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strictness {
    /// Lines from the client: the agent may be manipulated, so every string
    /// is decoded (UTF-8, lone surrogates), duplicate keys are refused at
    /// any depth and nesting is bounded. A duplicate key matters because
    /// serde_json keeps the last value while other parsers keep the first:
    /// toolwarden and the server would read different messages.
    Full,
    /// Lines from the server: valid JSON-RPC at the top level is enough to
    /// relay them; toolwarden bases no decision on the inside of most of
    /// them.
    Envelope,
}

/// Parses one line (without its newline) into a message.
pub fn parse(line: &[u8], strictness: Strictness) -> Result<Message<'_>, Rejection> {
    let text = std::str::from_utf8(line).map_err(|e| {
        Rejection::new(
            PARSE_ERROR,
            format!("parse error: not UTF-8 ({e})"),
            Some(None),
        )
    })?;
    if text.trim_start().starts_with('[') {
        return Err(Rejection::new(
            INVALID_REQUEST,
            "invalid request: JSON-RPC batches are not accepted; send one message per line",
            Some(None),
        ));
    }
    let raw: RawEnvelope = serde_json::from_str(text).map_err(|e| {
        let code = match e.classify() {
            serde_json::error::Category::Data => INVALID_REQUEST,
            _ => PARSE_ERROR,
        };
        let what = if code == PARSE_ERROR {
            "parse error"
        } else {
            "invalid request"
        };
        Rejection::new(code, format!("{what}: {e}"), Some(None))
    })?;

    // From here on the line is JSON with readable top-level members, so an
    // answer can echo the id when the line is a request.
    let is_request = raw.method.is_some() && raw.id.is_some();
    let reply_id = |raw_id: Option<&RawValue>| -> Option<Option<Box<RawValue>>> {
        match raw_id {
            Some(id) if is_request && valid_id(id) => Some(Some(id.to_owned())),
            Some(_) if is_request => Some(None),
            Some(_) if raw.method.is_none() => None, // a response: never answered
            Some(_) => Some(None),
            None if raw.method.is_some() => None, // a notification: never answered
            None => Some(None),
        }
    };
    let reject = |code, message: String| Rejection::new(code, message, reply_id(raw.id));

    if strictness == Strictness::Full {
        check_strict(text).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => {
                reject(INVALID_REQUEST, format!("invalid request: {e}"))
            }
            _ => reject(PARSE_ERROR, format!("parse error: {e}")),
        })?;
    }

    match raw.jsonrpc {
        Some(v) if v.get() == "\"2.0\"" => {}
        _ => {
            return Err(reject(
                INVALID_REQUEST,
                "invalid request: \"jsonrpc\" must be \"2.0\"".into(),
            ))
        }
    }
    if let Some(id) = raw.id {
        if !valid_id(id) {
            return Err(reject(
                INVALID_REQUEST,
                "invalid request: \"id\" must be a string or a number".into(),
            ));
        }
    }
    if let Some(params) = raw.params {
        if !matches!(params.get().as_bytes().first(), Some(b'{' | b'[')) {
            return Err(reject(
                INVALID_REQUEST,
                "invalid request: \"params\" must be an object or an array".into(),
            ));
        }
    }

    match (raw.method, raw.id, raw.result, raw.error) {
        (Some(method), id, None, None) => {
            let method = decode_str(method).ok_or_else(|| {
                reject(
                    INVALID_REQUEST,
                    "invalid request: \"method\" must be a string".into(),
                )
            })?;
            Ok(match id {
                Some(id) => Message::Request {
                    id,
                    method,
                    params: raw.params,
                },
                None => Message::Notification {
                    method,
                    params: raw.params,
                },
            })
        }
        (None, Some(id), Some(result), None) if raw.params.is_none() => Ok(Message::Response {
            id,
            result: Some(result),
        }),
        (None, Some(id), None, Some(_)) if raw.params.is_none() => {
            Ok(Message::Response { id, result: None })
        }
        _ => Err(reject(
            INVALID_REQUEST,
            "invalid request: not a request, a notification or a response".into(),
        )),
    }
}

/// A JSON-RPC id that can be matched with a response: a string or a number.
fn valid_id(id: &RawValue) -> bool {
    matches!(id.get().as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9'))
}

/// Decodes a raw JSON string, borrowing when it has no escapes (the common
/// case), so that `"tools\u002fcall"` and `"tools/call"` compare equal.
pub fn decode_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

/// A request id as a map key, so that a response finds its request.
///
/// Servers written in JavaScript parse ids into doubles and write them back,
/// so `1.0` returns as `1` and a huge integer as its nearest double: numbers
/// are compared by their value as a double, strings by their decoded text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdKey {
    Str(String),
    Num(u64),
    Other(String),
}

impl IdKey {
    pub fn of(id: &RawValue) -> IdKey {
        let text = id.get();
        if text.starts_with('"') {
            return match decode_str(id) {
                Some(s) => IdKey::Str(s.into_owned()),
                None => IdKey::Other(text.to_owned()),
            };
        }
        match text.parse::<f64>() {
            // `+ 0.0` folds -0 into 0.
            Ok(n) if n.is_finite() => IdKey::Num((n + 0.0).to_bits()),
            _ => IdKey::Other(text.to_owned()),
        }
    }
}

impl fmt::Display for IdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdKey::Str(s) => write!(f, "{s:?}"),
            IdKey::Num(bits) => write!(f, "{}", f64::from_bits(*bits)),
            IdKey::Other(s) => f.write_str(s),
        }
    }
}

/// Walks a whole document, decoding every string and refusing duplicate
/// object keys at any depth. serde_json bounds the nesting at 128 levels.
pub fn check_strict(text: &str) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    Strict.deserialize(&mut de)?;
    de.end()
}

struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(Strict)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Strict)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = Keys::default();
        while let Some(key) = map.next_key_seed(Key)? {
            if !keys.insert(key.clone()) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            map.next_value_seed(Strict)?;
        }
        Ok(())
    }
}

/// The keys seen in one object: a short list for the usual small object, a
/// set once it grows, so a hostile object with many keys stays linear.
#[derive(Default)]
struct Keys<'de> {
    few: Vec<Cow<'de, str>>,
    many: HashSet<Cow<'de, str>>,
}

impl<'de> Keys<'de> {
    fn insert(&mut self, key: Cow<'de, str>) -> bool {
        if self.many.is_empty() {
            if self.few.contains(&key) {
                return false;
            }
            self.few.push(key);
            if self.few.len() > 16 {
                self.many.extend(self.few.drain(..));
            }
            true
        } else {
            self.many.insert(key)
        }
    }
}

struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(Key)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// What the first bytes of an over-long line say about it, so that its
/// sender can be answered with its own id instead of waiting forever.
#[derive(Debug, Default)]
pub struct Prefix {
    pub id: Option<Box<RawValue>>,
    pub has_method: bool,
    pub is_response: bool,
}

/// Reads the top-level members of a truncated object as far as they go.
/// Stops at the first member whose value does not end within `prefix`.
pub fn scan_prefix(prefix: &[u8]) -> Prefix {
    let mut out = Prefix::default();
    let mut s = Scanner { b: prefix, i: 0 };
    if !s.eat(b'{') {
        return out;
    }
    loop {
        let Some(key) = s.string() else { return out };
        if !s.eat(b':') {
            return out;
        }
        s.ws();
        let start = s.i;
        if !s.skip_value() {
            // The value runs past the prefix: only its key is known.
            match key {
                b"\"method\"" => out.has_method = true,
                b"\"result\"" | b"\"error\"" => out.is_response = true,
                _ => {}
            }
            return out;
        }
        let value = &prefix[start..s.i];
        match key {
            b"\"id\"" => {
                out.id = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| RawValue::from_string(v.to_owned()).ok())
                    .filter(|id| valid_id(id))
            }
            b"\"method\"" => out.has_method = true,
            b"\"result\"" | b"\"error\"" => out.is_response = true,
            _ => {}
        }
        if !s.eat(b',') {
            return out;
        }
    }
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    /// A whole string token, quotes included.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.ws();
        let start = self.i;
        if self.b.get(self.i) != Some(&b'"') {
            return None;
        }
        self.i += 1;
        while let Some(&c) = self.b.get(self.i) {
            self.i += 1;
            match c {
                b'\\' => self.i += 1,
                b'"' => return Some(&self.b[start..self.i]),
                _ => {}
            }
        }
        None
    }
    /// Skips one value; false if it does not end inside the prefix.
    fn skip_value(&mut self) -> bool {
        let mut depth = 0usize;
        loop {
            self.ws();
            match self.b.get(self.i) {
                None => return false,
                Some(b'"') => {
                    if self.string().is_none() {
                        return false;
                    }
                }
                Some(b'{' | b'[') => {
                    depth += 1;
                    self.i += 1;
                }
                Some(b'}' | b']') if depth > 0 => {
                    depth -= 1;
                    self.i += 1;
                }
                Some(b',' | b':') if depth > 0 => self.i += 1,
                Some(_) => {
                    while matches!(self.b.get(self.i), Some(c) if !b",:{}[] \t\r\n\"".contains(c)) {
                        self.i += 1;
                    }
                    // A bare token that reaches the end may continue past it.
                    if self.i == self.b.len() {
                        return false;
                    }
                }
            }
            if depth == 0 {
                return true;
            }
        }
    }
}

/// A JSON-RPC error response. `id` is echoed as raw text; `None` writes null.
pub fn error_response(id: Option<&RawValue>, code: i32, message: &str) -> Vec<u8> {
    let error = serde_json::json!({ "code": code, "message": message });
    frame(id, "error", &error.to_string())
}

/// A JSON-RPC success response carrying `result` (already JSON text).
pub fn result_response(id: &RawValue, result: &str) -> Vec<u8> {
    frame(Some(id), "result", result)
}

fn frame(id: Option<&RawValue>, member: &str, body: &str) -> Vec<u8> {
    let id = id.map_or("null", RawValue::get);
    format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"{member}\":{body}}}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(line: &str) -> Rejection {
        parse(line.as_bytes(), Strictness::Full).expect_err(line)
    }

    fn reply_id(r: &Rejection) -> Option<Option<&str>> {
        r.reply_id
            .as_ref()
            .map(|id| id.as_deref().map(RawValue::get))
    }

    #[test]
    fn classifies_requests_notifications_and_responses() {
        let m = parse(
            br#"{"jsonrpc":"2.0","id":7,"method":"tools\u002fcall","params":{}}"#,
            Strictness::Full,
        )
        .unwrap();
        assert!(matches!(m, Message::Request { ref method, .. } if method == "tools/call"));
        let m = parse(
            br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            Strictness::Full,
        )
        .unwrap();
        assert!(matches!(m, Message::Notification { .. }));
        let m = parse(
            br#"{"jsonrpc":"2.0","id":"a","result":{}}"#,
            Strictness::Full,
        )
        .unwrap();
        assert!(matches!(
            m,
            Message::Response {
                result: Some(_),
                ..
            }
        ));
        let m = parse(
            br#"{"jsonrpc":"2.0","id":"a","error":{"code":1,"message":"x"}}"#,
            Strictness::Full,
        )
        .unwrap();
        assert!(matches!(m, Message::Response { result: None, .. }));
    }

    #[test]
    fn rejects_each_bad_shape_with_the_right_code_and_id() {
        let cases: &[(&str, i32, Option<Option<&str>>)] = &[
            ("not json", PARSE_ERROR, Some(None)),
            (r#"{"jsonrpc":"2.0","id":1,"method":"x""#, PARSE_ERROR, Some(None)),
            (r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call"}]"#, INVALID_REQUEST, Some(None)),
            (r#"{"jsonrpc":"2.0","id":1,"method":"a","method":"b"}"#, INVALID_REQUEST, Some(None)),
            (r#"{"jsonrpc":"2.0","id":1,"method":"a","params":{"x":1,"x":2}}"#, INVALID_REQUEST, Some(Some("1"))),
            (r#"{"jsonrpc":"2.0","id":1,"method":"a","params":{"a":{"x":1,"x":2}}}"#, INVALID_REQUEST, Some(Some("1"))),
            (r#"{"jsonrpc":"2.0","method":"a","params":{"x":1,"x":2}}"#, INVALID_REQUEST, None),
            (r#"{"jsonrpc":"1.0","id":2,"method":"a"}"#, INVALID_REQUEST, Some(Some("2"))),
            (r#"{"id":2,"method":"a"}"#, INVALID_REQUEST, Some(Some("2"))),
            (r#"{"jsonrpc":"2.0","id":{"a":1},"method":"a"}"#, INVALID_REQUEST, Some(None)),
            (r#"{"jsonrpc":"2.0","id":null,"method":"a"}"#, INVALID_REQUEST, Some(None)),
            (r#"{"jsonrpc":"2.0","id":true,"method":"a"}"#, INVALID_REQUEST, Some(None)),
            (r#"{"jsonrpc":"2.0","id":3,"method":5}"#, INVALID_REQUEST, Some(Some("3"))),
            (r#"{"jsonrpc":"2.0","id":3,"method":"a","result":{}}"#, INVALID_REQUEST, Some(Some("3"))),
            (r#"{"jsonrpc":"2.0","id":3,"method":"a","params":"x"}"#, INVALID_REQUEST, Some(Some("3"))),
            (r#"{"jsonrpc":"2.0","id":3,"result":{},"error":{}}"#, INVALID_REQUEST, None),
            (r#"{"jsonrpc":"2.0","id":3,"method":"a","params":{"s":"\ud800"}}"#, PARSE_ERROR, Some(Some("3"))),
            ("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\"}\r{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"b\"}", PARSE_ERROR, Some(None)),
            ("\u{feff}{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\"}", PARSE_ERROR, Some(None)),
            ("12", INVALID_REQUEST, Some(None)),
        ];
        for (line, code, id) in cases {
            let r = rejected(line);
            assert_eq!(
                (r.code, reply_id(&r)),
                (*code, *id),
                "{line}: {}",
                r.message
            );
        }
    }

    #[test]
    fn rejects_invalid_utf8_and_deep_nesting() {
        let r = parse(
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}",
            Strictness::Full,
        )
        .unwrap_err();
        assert_eq!(r.code, PARSE_ERROR);
        let deep = format!(
            r#"{{"jsonrpc":"2.0","id":9,"method":"a","params":{{"a":{}{}}}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let r = rejected(&deep);
        assert_eq!((r.code, reply_id(&r)), (PARSE_ERROR, Some(Some("9"))));
    }

    #[test]
    fn server_lines_need_only_a_valid_envelope() {
        let line = br#"{"jsonrpc":"2.0","id":1,"result":{"a":1,"a":2}}"#;
        assert!(parse(line, Strictness::Envelope).is_ok());
        assert!(parse(line, Strictness::Full).is_err());
    }

    #[test]
    fn many_keys_are_checked_for_duplicates() {
        let mut obj: Vec<String> = (0..100).map(|i| format!("\"k{i}\":1")).collect();
        let ok = format!(
            r#"{{"jsonrpc":"2.0","method":"a","params":{{{}}}}}"#,
            obj.join(",")
        );
        assert!(parse(ok.as_bytes(), Strictness::Full).is_ok());
        obj.push("\"k3\":2".into());
        let dup = format!(
            r#"{{"jsonrpc":"2.0","method":"a","params":{{{}}}}}"#,
            obj.join(",")
        );
        assert!(parse(dup.as_bytes(), Strictness::Full).is_err());
    }

    #[test]
    fn id_keys_match_what_javascript_echoes() {
        let key = |s: &str| IdKey::of(&RawValue::from_string(s.into()).unwrap());
        assert_eq!(key("1"), key("1.0"));
        assert_eq!(
            key("12345678901234567890123"),
            key("1.2345678901234568e+22")
        );
        assert_eq!(key(r#""a\u0062""#), key(r#""ab""#));
        assert_ne!(key("1"), key(r#""1""#));
        assert_eq!(key("-0"), key("0"));
    }

    #[test]
    fn prefix_scan_finds_the_id_of_a_truncated_line() {
        let p = scan_prefix(br#"{"jsonrpc":"2.0","id":12345678901234567890123,"method":"tools/call","params":{"arguments":{"x":"aaaa"#);
        assert_eq!(
            p.id.as_deref().map(RawValue::get),
            Some("12345678901234567890123")
        );
        assert!(p.has_method && !p.is_response);
        let p = scan_prefix(br#"{"method":"x","params":{"a":[1,2,{"b":"}"}]},"id":"q\"1","jsonrpc":"2.0","extra":"aaa"#);
        assert_eq!(p.id.as_deref().map(RawValue::get), Some(r#""q\"1""#));
        let p = scan_prefix(br#"{"jsonrpc":"2.0","id":5,"result":{"content":[{"text":"aaaa"#);
        assert!(p.is_response);
        let p = scan_prefix(br#"{"jsonrpc":"2.0","id":12"#);
        assert!(p.id.is_none(), "a number cut short is not an id");
    }

    #[test]
    fn replies_echo_the_raw_id() {
        let id = RawValue::from_string("12345678901234567890123".into()).unwrap();
        let bytes = error_response(Some(&id), INVALID_REQUEST, "bad");
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"jsonrpc":"2.0","id":12345678901234567890123,"error":{"code":-32600,"message":"bad"}}"#
        );
    }
}
