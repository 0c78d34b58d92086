//! 2026-07-28's `x-mcp-header`: a tool may mark parameters of its
//! `inputSchema` to be mirrored into `Mcp-Param-{Name}` headers of each
//! call's POST, so that the server's load balancers can route on them
//! without reading the body. The server checks them against the body
//! and refuses a call without them, so toolwarden, the server's client,
//! learns the marks from the `tools/list` answers it relays and sends
//! the headers for each `tools/call`. A call that comes before any
//! listing (a client may call a tool it knows) is preceded by a
//! `tools/list` of toolwarden's own, once a session, whose answers are
//! not relayed.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tracing::{debug, warn};
use ureq::http::{HeaderName, HeaderValue, Method};

use super::message::{self, header_safe, Outgoing};
use super::sse::EventStream;
use super::{lock, Link};

/// toolwarden's own listing gives up after this long: the call it is for
/// waits.
const ASK_TIMEOUT: Duration = Duration::from_secs(30);

/// One tool's marks: the path of `properties` keys to a parameter, and
/// the header's name after `Mcp-Param-`.
pub type Marks = Vec<(Vec<String>, String)>;

/// The marks of each tool that has any, as the last `tools/list` said.
#[derive(Default)]
pub struct Declared {
    tools: HashMap<String, Marks>,
    /// A listing was seen (or toolwarden's own was tried).
    listed: bool,
}

/// Pages of toolwarden's own listing read at most.
const MAX_PAGES: usize = 100;

/// JSON Schema keywords whose values are schemas; a mark below one of
/// them is not on a parameter a call's arguments reach by name.
const SUBSCHEMAS: &[&str] = &[
    "items",
    "contains",
    "unevaluatedItems",
    "additionalProperties",
    "propertyNames",
    "unevaluatedProperties",
    "not",
    "if",
    "then",
    "else",
    "contentSchema",
    "allOf",
    "anyOf",
    "oneOf",
    "prefixItems",
    "patternProperties",
    "dependentSchemas",
    "$defs",
    "definitions",
];

/// How deep a schema is walked for marks.
const MAX_DEPTH: usize = 64;

impl Declared {
    /// Takes in the marks of the tools in a `tools/list` answer. A tool
    /// whose marks break the spec's rules gets no headers, with a
    /// warning that names it.
    pub fn learn(&mut self, answer: &[u8]) -> Option<String> {
        #[derive(Deserialize)]
        struct Answer {
            result: Listing,
        }
        #[derive(Deserialize)]
        struct Listing {
            tools: Vec<Tool>,
            #[serde(rename = "nextCursor", default)]
            next_cursor: Option<String>,
        }
        #[derive(Deserialize)]
        struct Tool {
            name: String,
            #[serde(rename = "inputSchema", default)]
            input_schema: Value,
        }
        let Ok(answer) = serde_json::from_slice::<Answer>(answer) else {
            return None;
        };
        self.listed = true;
        for tool in answer.result.tools {
            match marks(&tool.input_schema) {
                Ok(marks) if marks.is_empty() => {
                    self.tools.remove(&tool.name);
                }
                Ok(marks) => {
                    self.tools.insert(tool.name, marks);
                }
                Err(why) => {
                    warn!(
                        tool = %crate::redact::peer_line(&tool.name),
                        "the tool's x-mcp-header marks break the spec's rules ({why}): its calls carry no Mcp-Param headers"
                    );
                    self.tools.remove(&tool.name);
                }
            }
        }
        answer.result.next_cursor
    }

    /// Whether calls of `tool` carry headers.
    pub fn has(&self, tool: &str) -> bool {
        self.tools.contains_key(tool)
    }

    /// The `Mcp-Param-*` headers of a call of `tool` with `arguments`: a
    /// parameter that is absent or null has none.
    pub fn headers(&self, tool: &str, arguments: &Value) -> Vec<(HeaderName, HeaderValue)> {
        let Some(marks) = self.tools.get(tool) else {
            return Vec::new();
        };
        marks
            .iter()
            .filter_map(|(path, name)| {
                let value = path
                    .iter()
                    .try_fold(arguments, |node, key| node.as_object()?.get(key))?;
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Bool(b) => b.to_string(),
                    Value::Number(n) => n.to_string(),
                    _ => return None,
                };
                let name = HeaderName::from_bytes(format!("mcp-param-{name}").as_bytes()).ok()?;
                let value = HeaderValue::from_str(&header_safe(&text)).ok()?;
                Some((name, value))
            })
            .collect()
    }
}

/// The `Mcp-Param-*` headers of a 2026-07-28 `tools/call` (of protocol
/// `version`), when its tool marks parameters; its arguments are read
/// only then.
pub fn for_call(link: &Link, message: &Outgoing, version: &str) -> Vec<(HeaderName, HeaderValue)> {
    let Some(tool) = message.name.as_deref() else {
        return Vec::new();
    };
    let listed = lock(&link.declared).listed;
    let (arguments, meta) = if listed && !lock(&link.declared).has(tool) {
        return Vec::new();
    } else {
        message::arguments_and_meta(&message.line)
    };
    if !listed {
        let _one = lock(&link.listing);
        if !lock(&link.declared).listed {
            list_tools(link, meta, version);
        }
    }
    lock(&link.declared).headers(tool, &arguments.unwrap_or_default())
}

/// toolwarden's own `tools/list`, every page, its answers kept from the
/// client: the call's `_meta` (the client's protocol version, info and
/// capabilities, as 2026-07-28 requests carry them) goes with it.
fn list_tools(link: &Link, meta: Option<Value>, version: &str) {
    let mut cursor: Option<String> = None;
    for page in 0..MAX_PAGES {
        let id = format!("toolwarden-tools-{}-{page}", crate::audit::random_id());
        let mut params = serde_json::Map::new();
        if let Some(meta) = &meta {
            params.insert("_meta".into(), meta.clone());
        }
        if let Some(cursor) = cursor.take() {
            params.insert("cursor".into(), cursor.into());
        }
        let request = serde_json::json!({
            "jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params,
        });
        let Some(answer) = ask(link, &request.to_string(), &id, version) else {
            warn!(
                "cannot list the server's tools for their Mcp-Param headers: calls go without them"
            );
            lock(&link.declared).listed = true;
            return;
        };
        cursor = lock(&link.declared).learn(&answer);
        if cursor.is_none() {
            return;
        }
    }
}

/// POSTs one request of toolwarden's and reads its answer (a JSON body,
/// or the event of its stream that answers `id`).
fn ask(link: &Link, request: &str, id: &str, version: &str) -> Option<Vec<u8>> {
    let headers = [
        (
            HeaderName::from_static("accept"),
            HeaderValue::from_static("application/json, text/event-stream"),
        ),
        (
            HeaderName::from_static("mcp-protocol-version"),
            HeaderValue::from_str(version).ok()?,
        ),
        (
            HeaderName::from_static("mcp-method"),
            HeaderValue::from_static("tools/list"),
        ),
    ];
    let url = link.url();
    let response = link
        .send(
            Method::POST,
            &url,
            &headers,
            Some(request.as_bytes()),
            Some(ASK_TIMEOUT),
        )
        .ok()?;
    if !response.status().is_success() {
        debug!(
            status = response.status().as_u16(),
            "toolwarden's tools/list was refused"
        );
        return None;
    }
    let id = serde_json::value::to_raw_value(id).ok()?;
    if super::streamable::content_type(&response) == "text/event-stream" {
        let mut stream = EventStream::new(response.into_body().into_reader(), link.max_message);
        while let Ok(Some(event)) = stream.next_event() {
            if event.too_long.is_none() && message::answers(&event.data, &id) {
                return Some(event.data);
            }
        }
        return None;
    }
    let body = response
        .into_body()
        .with_config()
        .limit(link.max_message as u64)
        .read_to_vec()
        .ok()?;
    message::answers(&body, &id).then_some(body)
}

/// The marks of one `inputSchema`, or why they break the rules: a mark
/// must sit on a parameter reached through `properties` alone, be an
/// HTTP token unique (ignoring case) in the schema, and be on a string,
/// integer or boolean parameter.
fn marks(schema: &Value) -> Result<Marks, String> {
    let mut found = Marks::new();
    // (path through `properties`, or None once another keyword was
    // crossed; the schema; its depth)
    let mut stack: Vec<(Option<Vec<String>>, &Value, usize)> = vec![(Some(Vec::new()), schema, 0)];
    while let Some((path, node, depth)) = stack.pop() {
        let Some(object) = node.as_object() else {
            continue;
        };
        if depth > MAX_DEPTH {
            return Err("the schema is nested too deep to read".into());
        }
        if let Some(mark) = object.get("x-mcp-header") {
            let path = path
                .as_ref()
                .filter(|p| !p.is_empty())
                .ok_or("a mark is not on a parameter reached through `properties`")?;
            let shown = path.join(".");
            let name = mark
                .as_str()
                .filter(|n| is_token(n))
                .ok_or_else(|| format!("the mark of {shown} is not an HTTP token"))?;
            if !matches!(
                object.get("type").and_then(Value::as_str),
                Some("string" | "integer" | "boolean")
            ) {
                return Err(format!(
                    "{shown} is marked but is not a string, integer or boolean"
                ));
            }
            if found.iter().any(|(_, n)| n.eq_ignore_ascii_case(name)) {
                return Err(format!("the mark {name} is given twice"));
            }
            found.push((path.clone(), name.to_owned()));
        }
        for (keyword, value) in object {
            if keyword == "properties" {
                if let Some(properties) = value.as_object() {
                    for (key, sub) in properties {
                        let sub_path = path.as_ref().map(|p| {
                            let mut p = p.clone();
                            p.push(key.clone());
                            p
                        });
                        stack.push((sub_path, sub, depth + 1));
                    }
                }
            } else if SUBSCHEMAS.contains(&keyword.as_str()) {
                match value {
                    Value::Array(items) => {
                        stack.extend(items.iter().map(|s| (None, s, depth + 1)));
                    }
                    Value::Object(map)
                        if matches!(
                            keyword.as_str(),
                            "patternProperties" | "dependentSchemas" | "$defs" | "definitions"
                        ) =>
                    {
                        stack.extend(map.values().map(|s| (None, s, depth + 1)));
                    }
                    other => stack.push((None, other, depth + 1)),
                }
            }
        }
    }
    Ok(found)
}

/// An RFC 9110 token: what a header's name may be made of.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn listing(schema: Value) -> Vec<u8> {
        json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [
            {"name": "deploy", "inputSchema": schema}
        ]}})
        .to_string()
        .into_bytes()
    }

    fn shown(headers: Vec<(HeaderName, HeaderValue)>) -> Vec<String> {
        let mut shown: Vec<String> = headers
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect();
        shown.sort();
        shown
    }

    #[test]
    fn marked_parameters_become_headers_nested_or_not() {
        let mut declared = Declared::default();
        declared.learn(&listing(json!({
            "type": "object",
            "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"},
                "replicas": {"type": "integer", "x-mcp-header": "Replicas"},
                "dry": {"type": "boolean", "x-mcp-header": "Dry"},
                "target": {"type": "object", "properties": {
                    "zone": {"type": "string", "x-mcp-header": "Zone"}
                }},
                "note": {"type": "string"}
            }
        })));
        assert!(declared.has("deploy"));
        let headers = declared.headers(
            "deploy",
            &json!({"region": "eu-west 1", "replicas": 3, "dry": false,
                    "target": {"zone": "grüß"}, "note": "x"}),
        );
        assert_eq!(
            shown(headers),
            [
                "mcp-param-dry: false",
                "mcp-param-region: eu-west 1",
                "mcp-param-replicas: 3",
                "mcp-param-zone: =?base64?Z3LDvMOf?=",
            ]
        );
        // Absent or null: no header.
        let headers = declared.headers("deploy", &json!({"region": null}));
        assert!(headers.is_empty());
        assert!(declared
            .headers("other", &json!({"region": "x"}))
            .is_empty());
    }

    #[test]
    fn marks_that_break_the_rules_give_no_headers() {
        for schema in [
            json!({"properties": {"a": {"type": "number", "x-mcp-header": "A"}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "A B"}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": ""}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": 1}}}),
            json!({"properties": {
                "a": {"type": "string", "x-mcp-header": "Same"},
                "b": {"type": "string", "x-mcp-header": "same"}
            }}),
            json!({"anyOf": [{"properties": {"a": {"type": "string", "x-mcp-header": "A"}}}]}),
            json!({"type": "string", "x-mcp-header": "Root"}),
        ] {
            let mut declared = Declared::default();
            declared.learn(&listing(schema.clone()));
            assert!(!declared.has("deploy"), "{schema}");
        }
    }

    #[test]
    fn a_later_listing_replaces_the_marks() {
        let mut declared = Declared::default();
        declared.learn(&listing(json!({"properties": {
            "a": {"type": "string", "x-mcp-header": "A"}
        }})));
        assert!(declared.has("deploy"));
        declared.learn(&listing(json!({"properties": {"a": {"type": "string"}}})));
        assert!(!declared.has("deploy"));
        declared.learn(b"not json");
        declared.learn(br#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}"#);
    }
}
