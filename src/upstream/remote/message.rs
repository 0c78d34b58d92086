//! A message on its way to the server, and what its HTTP request says of
//! it: whether it waits for an answer, and the 2026-07-28 headers
//! (`Mcp-Method`, `Mcp-Name`, `MCP-Protocol-Version` from its `_meta`).
//! The relay has checked the line; this only reads it.

use std::borrow::Cow;

use base64::Engine;
use serde::Deserialize;
use serde_json::value::RawValue;

pub struct Outgoing {
    pub line: Vec<u8>,
    /// A request's id (a response and a notification have none here).
    pub id: Option<Box<RawValue>>,
    pub method: Option<String>,
    /// `params.name` (tools/call, prompts/get) or `params.uri`
    /// (resources/read), for `Mcp-Name`.
    pub name: Option<String>,
    /// The protocol version in the request's `_meta`.
    pub version: Option<String>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Params<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    uri: Option<Cow<'a, str>>,
    #[serde(rename = "_meta", borrow)]
    meta: Option<Meta<'a>>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    /// The version a 2026-07-28 request carries.
    #[serde(rename = "io.modelcontextprotocol/protocolVersion", borrow)]
    version: Option<Cow<'a, str>>,
}

impl Outgoing {
    pub fn parse(line: Vec<u8>) -> Outgoing {
        let (id, method, name, version) = match serde_json::from_slice::<Envelope>(&line) {
            Ok(envelope) => {
                let params = envelope
                    .params
                    .and_then(|p| serde_json::from_str::<Params>(p.get()).ok());
                let method = envelope.method.map(Cow::into_owned);
                let name = params.as_ref().and_then(|p| match method.as_deref() {
                    Some("tools/call" | "prompts/get") => p.name.as_deref().map(str::to_owned),
                    Some("resources/read") => p.uri.as_deref().map(str::to_owned),
                    _ => None,
                });
                let version = params
                    .as_ref()
                    .and_then(|p| p.meta.as_ref())
                    .and_then(|m| m.version.as_deref().map(str::to_owned));
                let id = envelope
                    .id
                    .filter(|_| method.is_some())
                    .map(|id| id.to_owned());
                (id, method, name, version)
            }
            // A batch (2025-03-26), or what the relay let through as it
            // is: sent as it is, its answers relayed as they come.
            Err(_) => (None, None, None, None),
        };
        Outgoing {
            line,
            id,
            method,
            name,
            version,
        }
    }

    /// A request: it waits for an answer.
    pub fn is_request(&self) -> bool {
        self.id.is_some()
    }

    /// A batch: an array of messages (2025-03-26).
    pub fn is_batch(&self) -> bool {
        self.line.trim_ascii_start().starts_with(b"[")
    }
}

/// A `tools/call`'s `params.arguments` and `params._meta`, those it has.
pub fn arguments_and_meta(line: &[u8]) -> (Option<Box<RawValue>>, Option<Box<RawValue>>) {
    #[derive(Deserialize)]
    struct Call {
        params: CallParams,
    }
    #[derive(Deserialize)]
    struct CallParams {
        arguments: Option<Box<RawValue>>,
        #[serde(rename = "_meta")]
        meta: Option<Box<RawValue>>,
    }
    match serde_json::from_slice::<Call>(line) {
        Ok(call) => (call.params.arguments, call.params.meta),
        Err(_) => (None, None),
    }
}

/// A header value for `Mcp-Name` or `Mcp-Param-*`: the value itself
/// when it is plain visible ASCII (inner spaces allowed), else the spec's
/// Base64 sentinel `=?base64?...?=` (also for one that looks like it).
pub fn header_safe(value: &str) -> String {
    let sentinel = value.starts_with("=?base64?") && value.ends_with("?=");
    let padded = value.starts_with(' ') || value.ends_with(' ');
    let visible = value.bytes().all(|b| (0x20..=0x7e).contains(&b));
    if !value.is_empty() && visible && !padded && !sentinel {
        value.to_owned()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    }
}

/// Whether a message is the response to the request of id `id`: ids
/// compared as JSON values (a server may escape a string otherwise).
pub fn answers(message: &[u8], id: &RawValue) -> bool {
    #[derive(Deserialize)]
    struct Response<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
        method: Option<serde::de::IgnoredAny>,
    }
    let Ok(response) = serde_json::from_slice::<Response>(message) else {
        return false;
    };
    match (response.id, response.method) {
        (Some(theirs), None) => same_id(theirs, id),
        _ => false,
    }
}

/// Two ids are the same JSON value.
pub fn same_id(a: &RawValue, b: &RawValue) -> bool {
    a.get() == b.get()
        || serde_json::from_str::<serde_json::Value>(a.get()).ok()
            == serde_json::from_str::<serde_json::Value>(b.get()).ok()
}

/// The `protocolVersion` of an initialize result.
pub fn negotiated_version(message: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Response {
        result: Option<InitializeResult>,
    }
    #[derive(Deserialize)]
    struct InitializeResult {
        #[serde(rename = "protocolVersion")]
        protocol_version: Option<String>,
    }
    serde_json::from_slice::<Response>(message)
        .ok()?
        .result?
        .protocol_version
}

/// The JSON-RPC error message of a body that is an error response, and
/// its id (raw), if it is one.
pub fn error_response(body: &[u8]) -> Option<(Option<Box<RawValue>>, String)> {
    #[derive(Deserialize)]
    struct Response<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
        error: ErrorObject,
    }
    #[derive(Deserialize)]
    struct ErrorObject {
        message: Option<String>,
    }
    let response = serde_json::from_slice::<Response>(body).ok()?;
    let id = response
        .id
        .filter(|id| id.get() != "null")
        .map(|id| id.to_owned());
    Some((id, response.error.message.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_gives_its_id_method_name_and_version() {
        let m = Outgoing::parse(
            br#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"echo","arguments":{"name":"x"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#.to_vec(),
        );
        assert_eq!(m.id.as_ref().unwrap().get(), r#""a""#);
        assert_eq!(m.method.as_deref(), Some("tools/call"));
        assert_eq!(m.name.as_deref(), Some("echo"));
        assert_eq!(m.version.as_deref(), Some("2026-07-28"));
        let m = Outgoing::parse(
            br#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///a b","name":"n"}}"#.to_vec(),
        );
        assert_eq!(m.name.as_deref(), Some("file:///a b"));
        let m = Outgoing::parse(
            br#"{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"name":"x"}}"#.to_vec(),
        );
        assert_eq!(m.name, None);
        // A response to the server has an id but asks nothing.
        let m = Outgoing::parse(br#"{"jsonrpc":"2.0","id":3,"result":{}}"#.to_vec());
        assert!(!m.is_request());
        let m = Outgoing::parse(br#"[{"jsonrpc":"2.0","id":3,"method":"ping"}]"#.to_vec());
        assert!(m.is_batch() && !m.is_request());
    }

    #[test]
    fn names_a_header_cannot_carry_are_base64_sentinels() {
        assert_eq!(header_safe("get_weather"), "get_weather");
        assert_eq!(header_safe("a b"), "a b");
        assert_eq!(
            header_safe("Hello, 世界"),
            "=?base64?SGVsbG8sIOS4lueVjA==?="
        );
        assert_eq!(header_safe(" padded "), "=?base64?IHBhZGRlZCA=?=");
        assert_eq!(header_safe("line1\nline2"), "=?base64?bGluZTEKbGluZTI=?=");
        assert_eq!(
            header_safe("=?base64?literal?="),
            "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="
        );
    }

    #[test]
    fn answers_match_ids_as_values() {
        let id = RawValue::from_string(r#""a""#.into()).unwrap();
        assert!(answers(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#, &id));
        assert!(answers(
            br#"{"jsonrpc":"2.0","id":"\u0061","error":{}}"#,
            &id
        ));
        assert!(!answers(
            br#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#,
            &id
        ));
        assert!(!answers(br#"{"jsonrpc":"2.0","id":"b","result":{}}"#, &id));
        assert_eq!(
            negotiated_version(br#"{"id":1,"result":{"protocolVersion":"2025-06-18"}}"#).as_deref(),
            Some("2025-06-18")
        );
        let (id, words) = error_response(br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Bad Request: No valid session ID"}}"#).unwrap();
        assert!(id.is_none());
        assert_eq!(words, "Bad Request: No valid session ID");
        assert!(error_response(b"<html>Not found</html>").is_none());
    }
}
