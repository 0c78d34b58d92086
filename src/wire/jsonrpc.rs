//! Strict parsing of one JSON-RPC 2.0 line into a borrowed [`Message`], and
//! the few messages toolwarden writes itself.
//!
//! Nothing here re-serializes a message that is forwarded: the message only
//! borrows slices of the line ([`crate::wire::json::Raw`]) so the relay can decide,
//! then send the original bytes. Ids are kept as raw JSON text so that an id
//! such as `12345678901234567890123` is echoed exactly.

use std::borrow::Cow;
use std::fmt;

use crate::wire::json::{self, Check, ErrorKind, Place, Raw, RawBuf};

pub const PARSE_ERROR: i32 = -32700;
pub const INVALID_REQUEST: i32 = -32600;
pub const INVALID_PARAMS: i32 = -32602;
pub const INTERNAL_ERROR: i32 = -32603;

/// One message, borrowed from the line it was read from.
#[derive(Debug)]
pub enum Message<'a> {
    Request {
        id: Raw<'a>,
        method: Cow<'a, str>,
        params: Option<Raw<'a>>,
        tool: ToolFields<'a>,
    },
    Notification {
        method: Cow<'a, str>,
        params: Option<Raw<'a>>,
        tool: ToolFields<'a>,
    },
    Response {
        id: Raw<'a>,
        result: Option<Raw<'a>>,
    },
}

/// `params.name` and `params.arguments`, what a `tools/call` is decided
/// on, read in the same pass as the rest of the line. Either is `None` when
/// `params` is not an object or lacks it; when a key repeats (only in a
/// line that did not pass the strict check) the last wins, as in serde_json.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ToolFields<'a> {
    pub name: Option<Raw<'a>>,
    pub arguments: Option<Raw<'a>>,
}

/// Why a line is not one valid JSON-RPC 2.0 message, and how to answer it.
#[derive(Debug)]
pub struct Rejection {
    pub code: i32,
    pub message: String,
    /// What the answer should carry: `Some(None)` answers with `"id": null`,
    /// `None` means the line was a notification or a response and gets no
    /// answer at all (JSON-RPC never answers those).
    pub reply_id: Option<Option<RawBuf>>,
}

impl Rejection {
    fn new(code: i32, message: impl Into<String>, reply_id: Option<Option<RawBuf>>) -> Self {
        Rejection {
            code,
            message: message.into(),
            reply_id,
        }
    }
}

/// The top-level members of a message, each left as raw JSON.
#[derive(Default)]
struct Envelope<'a> {
    jsonrpc: Option<Raw<'a>>,
    id: Option<Raw<'a>>,
    method: Option<Raw<'a>>,
    params: Option<Raw<'a>>,
    result: Option<Raw<'a>>,
    error: Option<Raw<'a>>,
    tool: ToolFields<'a>,
}

impl<'a> Envelope<'a> {
    /// Reads the envelope and checks the whole line in the same pass.
    fn read(text: &'a [u8], check: Check) -> Result<Envelope<'a>, json::Error> {
        let mut envelope = Envelope::default();
        json::object(text, check, "params", |place, key, value| {
            if place == Place::Inner {
                match key {
                    "name" => envelope.tool.name = Some(value),
                    "arguments" => envelope.tool.arguments = Some(value),
                    _ => {}
                }
                return Ok(());
            }
            let slot = match key {
                "jsonrpc" => &mut envelope.jsonrpc,
                "id" => &mut envelope.id,
                "method" => &mut envelope.method,
                "params" => &mut envelope.params,
                "result" => &mut envelope.result,
                "error" => &mut envelope.error,
                _ => return Ok(()),
            };
            if slot.replace(value).is_some() {
                return Err(format!("duplicate member `{key}`"));
            }
            Ok(())
        })?;
        Ok(envelope)
    }
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
    /// Lines from the server: valid JSON-RPC at the top level, in a line
    /// that is valid JSON, is enough to relay them; toolwarden bases no
    /// decision on the inside of most of them.
    Envelope,
}

/// Parses one line (without its newline) into a message.
pub fn parse(line: &[u8], strictness: Strictness) -> Result<Message<'_>, Rejection> {
    // UTF-8 is checked in the same pass as the rest (see `json`).
    let first = line
        .iter()
        .find(|c| !matches!(c, b' ' | b'\t' | b'\r' | b'\n'));
    if first == Some(&b'[') {
        return Err(Rejection::new(
            INVALID_REQUEST,
            "invalid request: JSON-RPC batches are not accepted; send one message per line",
            Some(None),
        ));
    }
    let check = match strictness {
        Strictness::Full => Check::Strict,
        Strictness::Envelope => Check::Syntax,
    };
    let raw = Envelope::read(line, check).map_err(|e| {
        let (code, what) = match e.kind() {
            ErrorKind::Syntax | ErrorKind::Strict => (PARSE_ERROR, "parse error"),
            ErrorKind::Duplicate | ErrorKind::NotObject | ErrorKind::Member => {
                (INVALID_REQUEST, "invalid request")
            }
        };
        // A line that does not even begin as an object is not JSON-RPC
        // gone wrong in one place: a log line, a prompt, a stray word.
        // What the parser expected at byte 0 would only puzzle.
        let message = match first {
            Some(&b'{') => format!("{what}: {e}"),
            _ if e.kind() == ErrorKind::Syntax || e.kind() == ErrorKind::Strict => {
                let bom = line.starts_with("\u{feff}".as_bytes());
                format!(
                    "parse error: not JSON: {}a JSON-RPC message is a JSON object on one line, starting with {{",
                    if bom { "the line starts with a byte order mark; " } else { "" }
                )
            }
            _ => format!("{what}: {e}"),
        };
        // A line that is JSON but fails the strict checks is answered with
        // its own id when the id can be read; reading it needs a second
        // look, only on this error path, and one that keeps nothing of
        // the line's depth (a line of `[`s to its end costs nothing).
        let reply_id = match e.kind() {
            ErrorKind::Strict | ErrorKind::Duplicate => {
                let seen = scan_prefix(line);
                match seen.id {
                    Some(id) if seen.has_method => Some(Some(id)),
                    // A response or a notification: never answered.
                    _ if seen.has_method || seen.is_response => None,
                    _ => Some(None),
                }
            }
            _ => Some(None),
        };
        Rejection::new(code, message, reply_id)
    })?;
    let reject = |code, message: &str| Rejection::new(code, message, reply_id(&raw));

    match raw.jsonrpc {
        Some(v) if v.get() == "\"2.0\"" => {}
        _ => {
            return Err(reject(
                INVALID_REQUEST,
                "invalid request: \"jsonrpc\" must be \"2.0\"",
            ))
        }
    }
    if let Some(id) = raw.id {
        if !valid_id(id) {
            return Err(reject(
                INVALID_REQUEST,
                "invalid request: \"id\" must be a string or a number",
            ));
        }
    }
    if let Some(params) = raw.params {
        if !matches!(params.get().as_bytes().first(), Some(b'{' | b'[')) {
            return Err(reject(
                INVALID_REQUEST,
                "invalid request: \"params\" must be an object or an array",
            ));
        }
    }

    match (raw.method, raw.id, raw.result, raw.error) {
        (Some(method), id, None, None) => {
            let method = method.as_str().ok_or_else(|| {
                reject(
                    INVALID_REQUEST,
                    "invalid request: \"method\" must be a string",
                )
            })?;
            Ok(match id {
                Some(id) => Message::Request {
                    id,
                    method,
                    params: raw.params,
                    tool: raw.tool,
                },
                None => Message::Notification {
                    method,
                    params: raw.params,
                    tool: raw.tool,
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
            "invalid request: not a request, a notification or a response",
        )),
    }
}

/// What an answer to a refused line carries (see [`Rejection::reply_id`]).
fn reply_id(raw: &Envelope) -> Option<Option<RawBuf>> {
    let is_request = raw.method.is_some() && raw.id.is_some();
    match raw.id {
        Some(id) if is_request && valid_id(id) => Some(Some(id.to_buf())),
        Some(_) if is_request => Some(None),
        Some(_) if raw.method.is_none() => None, // a response: never answered
        Some(_) => Some(None),
        None if raw.method.is_some() => None, // a notification: never answered
        None => Some(None),
    }
}

/// A JSON-RPC id that can be matched with a response: a string or a number.
fn valid_id(id: Raw) -> bool {
    matches!(id.get().as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9'))
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
    pub fn of(id: Raw) -> IdKey {
        let text = id.get();
        if text.starts_with('"') {
            return match id.as_str() {
                Some(s) => IdKey::Str(s.into_owned()),
                None => IdKey::Other(text.to_owned()),
            };
        }
        // Most ids are small integers: their value needs no float parsing.
        if text.len() <= 15 && text.bytes().all(|b| b.is_ascii_digit()) {
            let n = text.bytes().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            return IdKey::Num((n as f64).to_bits());
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

/// What the first bytes of an over-long line say about it, so that its
/// sender can be answered with its own id instead of waiting forever.
#[derive(Debug, Default)]
pub struct Prefix {
    pub id: Option<RawBuf>,
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
                    .and_then(|v| Raw::parse(v).ok())
                    .filter(|&id| valid_id(id))
                    .map(Raw::to_buf)
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
pub fn error_response(id: Option<Raw>, code: i32, message: &str) -> Vec<u8> {
    let error = serde_json::json!({ "code": code, "message": message });
    frame(id, "error", &error.to_string())
}

/// A JSON-RPC success response carrying `result` (already JSON text).
pub fn result_response(id: Raw, result: &str) -> Vec<u8> {
    frame(Some(id), "result", result)
}

fn frame(id: Option<Raw>, member: &str, body: &str) -> Vec<u8> {
    let id = id.map_or("null", Raw::get);
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
            .map(|id| id.as_ref().map(|id| id.raw().get()))
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
    fn a_line_that_is_not_json_is_told_so_in_words() {
        let said = |line: &str| {
            parse(line.as_bytes(), Strictness::Full)
                .unwrap_err()
                .message
        };
        let not_json =
            "parse error: not JSON: a JSON-RPC message is a JSON object on one line, starting with {";
        assert_eq!(said("not json"), not_json);
        assert_eq!(said("  Starting server..."), not_json);
        assert_eq!(
            said("\u{feff}{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\"}"),
            "parse error: not JSON: the line starts with a byte order mark; \
             a JSON-RPC message is a JSON object on one line, starting with {"
        );
        // Inside an object, the place still counts.
        assert_eq!(
            said(r#"{"jsonrpc":"2.0","id":1,"method":"a",}"#),
            "parse error: expected a string key at byte 37"
        );
        assert_eq!(said("12"), "invalid request: not a JSON object at byte 0");
    }

    #[test]
    fn rejects_invalid_utf8_and_deep_nesting() {
        let r = parse(
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}",
            Strictness::Full,
        )
        .unwrap_err();
        assert_eq!(r.code, PARSE_ERROR);
        assert_eq!(
            r.message,
            "parse error: invalid UTF-8 in a string at byte 34"
        );
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
        let key = |s: &str| IdKey::of(Raw::parse(s).unwrap());
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
            p.id.as_ref().map(|id| id.raw().get()),
            Some("12345678901234567890123")
        );
        assert!(p.has_method && !p.is_response);
        let p = scan_prefix(br#"{"method":"x","params":{"a":[1,2,{"b":"}"}]},"id":"q\"1","jsonrpc":"2.0","extra":"aaa"#);
        assert_eq!(p.id.as_ref().map(|id| id.raw().get()), Some(r#""q\"1""#));
        let p = scan_prefix(br#"{"jsonrpc":"2.0","id":5,"result":{"content":[{"text":"aaaa"#);
        assert!(p.is_response);
        let p = scan_prefix(br#"{"jsonrpc":"2.0","id":12"#);
        assert!(p.id.is_none(), "a number cut short is not an id");
    }

    #[test]
    fn replies_echo_the_raw_id() {
        let id = Raw::parse("12345678901234567890123").unwrap();
        let bytes = error_response(Some(id), INVALID_REQUEST, "bad");
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"jsonrpc":"2.0","id":12345678901234567890123,"error":{"code":-32600,"message":"bad"}}"#
        );
    }
}
