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

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tracing::{debug, warn};
use ureq::http::{HeaderName, HeaderValue, Method};

use super::message::{self, header_safe, Outgoing};
use super::sse::EventStream;
use super::{lock, Link, Unauthorized};

/// One tool's marks: the path of `properties` keys to a parameter, and
/// the header's name after `Mcp-Param-`.
pub type Marks = Vec<(Vec<String>, String)>;

/// The marks of each tool that has any, as the last `tools/list` said.
#[derive(Default)]
pub struct Declared {
    tools: HashMap<String, Marks>,
    /// A listing was seen, or toolwarden's own gave up.
    listed: bool,
    /// toolwarden's own listings that failed.
    failed: u32,
}

/// What one `tools/list` answer says: each tool's marks (none, or why
/// they are refused), and the next page's cursor.
pub struct Listing {
    tools: Vec<(String, Result<Marks, String>)>,
    next: Option<String>,
}

/// Pages of toolwarden's own listing read at most, and how long all of
/// them may take.
const MAX_PAGES: usize = 100;
const LISTING_WAIT: Duration = Duration::from_secs(60);

/// toolwarden's own listing is tried this many times in a session.
const LISTING_TRIES: u32 = 3;

/// Marks one tool may have, and schema positions walked for them: a tool
/// past either gets no headers (a server's listing must not cost
/// toolwarden more than its size).
const MAX_MARKS: usize = 64;
const MAX_POSITIONS: usize = 100_000;

/// The `_meta` keys of a 2026-07-28 request that toolwarden's own
/// listing carries from the client's call (no progress token or other
/// key of the call's own).
const META_KEYS: &[&str] = &[
    "io.modelcontextprotocol/protocolVersion",
    "io.modelcontextprotocol/clientCapabilities",
    "io.modelcontextprotocol/clientInfo",
];

/// JSON Schema keywords whose value is a schema, an array of schemas, or
/// an object of schemas; a mark below one of them is not on a parameter
/// a call's arguments reach by name.
const ONE_SCHEMA: &[&str] = &[
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
];
const SCHEMA_LIST: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems"];
const SCHEMA_MAP: &[&str] = &[
    "patternProperties",
    "dependentSchemas",
    "$defs",
    "definitions",
];

/// Reads a `tools/list` answer, each tool on its own (one that cannot be
/// read costs only its own marks): `None` when it is no listing (an
/// error answer). Done outside any lock: a long listing holds up no call.
pub fn read_listing(answer: &[u8]) -> Option<Listing> {
    #[derive(Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        result: Page<'a>,
    }
    #[derive(Deserialize)]
    struct Page<'a> {
        #[serde(borrow)]
        tools: Vec<&'a RawValue>,
        #[serde(rename = "nextCursor", default)]
        next_cursor: Option<String>,
    }
    #[derive(Deserialize)]
    struct Named {
        name: String,
    }
    #[derive(Deserialize)]
    struct Tool {
        #[serde(rename = "inputSchema", default)]
        input_schema: Value,
    }
    let page = serde_json::from_slice::<Answer>(answer).ok()?.result;
    let tools = page
        .tools
        .into_iter()
        .filter_map(|tool| {
            let name = serde_json::from_str::<Named>(tool.get()).ok()?.name;
            // Most tools mark nothing: their schemas are not parsed.
            if memchr::memmem::find(tool.get().as_bytes(), b"x-mcp-header").is_none() {
                return Some((name, Ok(Marks::new())));
            }
            let marks = serde_json::from_str::<Tool>(tool.get())
                .map_err(|_| "its inputSchema cannot be read".to_owned())
                .and_then(|t| marks(&t.input_schema));
            Some((name, marks))
        })
        .collect();
    Some(Listing {
        tools,
        next: page.next_cursor,
    })
}

impl Declared {
    /// Takes in a listing's marks. A tool whose marks break the spec's
    /// rules gets no headers, with a warning that names it.
    pub fn learn(&mut self, listing: Listing) -> Option<String> {
        self.listed = true;
        for (name, marks) in listing.tools {
            match marks {
                Ok(marks) if marks.is_empty() => {
                    self.tools.remove(&name);
                }
                Ok(marks) => {
                    self.tools.insert(name, marks);
                }
                Err(why) => {
                    warn!(
                        tool = %crate::redact::peer_line(&name),
                        "the tool's x-mcp-header marks break the spec's rules ({why}): its calls carry no Mcp-Param headers"
                    );
                    self.tools.remove(&name);
                }
            }
        }
        listing.next
    }

    /// Whether calls of `tool` carry headers.
    pub fn has(&self, tool: &str) -> bool {
        self.tools.contains_key(tool)
    }

    /// The marks of `tool`.
    fn marks(&self, tool: &str) -> Option<Marks> {
        self.tools.get(tool).cloned()
    }
}

/// The `Mcp-Param-*` headers of a call with `arguments` (its text): a
/// parameter that is absent or null has none; a number goes as written.
fn headers(marks: &Marks, arguments: &RawValue) -> Vec<(HeaderName, HeaderValue)> {
    marks
        .iter()
        .filter_map(|(path, name)| {
            let value = path
                .iter()
                .try_fold(arguments, |node, key| member(node, key))?;
            let raw = value.get().trim();
            let text = match raw.as_bytes().first()? {
                b'"' => serde_json::from_str::<String>(raw).ok()?,
                b't' | b'f' => serde_json::from_str::<bool>(raw).ok()?.to_string(),
                b'-' | b'0'..=b'9' => raw.to_owned(),
                _ => return None,
            };
            let name = HeaderName::from_bytes(format!("mcp-param-{name}").as_bytes()).ok()?;
            let value = HeaderValue::from_str(&header_safe(&text)).ok()?;
            Some((name, value))
        })
        .collect()
}

/// The member `key` of a JSON object's text, if it is one and has it.
fn member<'a>(object: &'a RawValue, key: &str) -> Option<&'a RawValue> {
    let members: HashMap<String, &'a RawValue> = serde_json::from_str(object.get()).ok()?;
    members.get(key).copied()
}

/// The `Mcp-Param-*` headers of a 2026-07-28 `tools/call` (of protocol
/// `version`), when its tool marks parameters; its arguments are read
/// only then.
pub fn for_call(link: &Link, message: &Outgoing, version: &str) -> Vec<(HeaderName, HeaderValue)> {
    let Some(tool) = message.name.as_deref() else {
        return Vec::new();
    };
    let listed = lock(&link.declared).listed;
    if listed && !lock(&link.declared).has(tool) {
        return Vec::new();
    }
    let (arguments, meta) = message::arguments_and_meta(&message.line);
    if !listed {
        let _one = lock(&link.listing);
        if !lock(&link.declared).listed {
            list_tools(link, meta, version);
        }
    }
    let marks = lock(&link.declared).marks(tool);
    match (marks, arguments) {
        (Some(marks), Some(arguments)) => headers(&marks, &arguments),
        _ => Vec::new(),
    }
}

/// toolwarden's own `tools/list`, every page, its answers kept from the
/// client. It carries the client's protocol version, info and
/// capabilities from the call's `_meta`, as 2026-07-28 requests must.
fn list_tools(link: &Link, meta: Option<Box<RawValue>>, version: &str) {
    let meta: serde_json::Map<String, Value> = meta
        .and_then(|m| serde_json::from_str::<serde_json::Map<String, Value>>(m.get()).ok())
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| META_KEYS.contains(&k.as_str()))
        .collect();
    let until = Instant::now() + LISTING_WAIT;
    let mut cursor: Option<String> = None;
    let mut seen = HashSet::new();
    for page in 0..MAX_PAGES {
        let id = format!("toolwarden-tools-{}-{page}", crate::audit::random_id());
        let mut params = serde_json::Map::new();
        params.insert("_meta".into(), Value::Object(meta.clone()));
        if let Some(cursor) = cursor.take() {
            params.insert("cursor".into(), cursor.into());
        }
        let request = serde_json::json!({
            "jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params,
        });
        let left = until.saturating_duration_since(Instant::now());
        let answer = ask(link, &request.to_string(), &id, version, left);
        let mut declared = lock(&link.declared);
        let Some(answer) = answer else {
            declared.failed += 1;
            if declared.failed >= LISTING_TRIES {
                // Calls go without headers: the client's own listing,
                // if it makes one, still teaches the marks.
                declared.listed = true;
            }
            warn!("cannot list the server's tools for their Mcp-Param headers; this call goes without them");
            return;
        };
        let Some(listing) = read_listing(&answer) else {
            warn!("the server does not list its tools: calls carry no Mcp-Param headers");
            declared.listed = true;
            return;
        };
        match declared.learn(listing) {
            Some(next) if seen.insert(next.clone()) && !left.is_zero() => cursor = Some(next),
            _ => return,
        }
    }
}

/// POSTs one request of toolwarden's and reads its answer (a JSON body,
/// or the event of its stream that answers `id`), within `wait`; once
/// more after a 401 the authorizer answers.
fn ask(link: &Link, request: &str, id: &str, version: &str, wait: Duration) -> Option<Vec<u8>> {
    if wait.is_zero() {
        return None;
    }
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
    let mut authorized_again = false;
    let response = loop {
        let response = link
            .send(
                Method::POST,
                &url,
                &headers,
                Some(request.as_bytes()),
                Some(wait),
            )
            .ok()?;
        if Link::wants_authorization(&response) && !authorized_again {
            authorized_again = true;
            if let Unauthorized::Retry = link.unauthorized(&response) {
                continue;
            }
        }
        break response;
    };
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
/// integer or boolean parameter. The walk keeps each position's parent,
/// not its path: a path is made only for a mark.
fn marks(schema: &Value) -> Result<Marks, String> {
    // Each position reached through `properties` alone: (parent, key).
    let mut chain: Vec<(usize, &str)> = Vec::new();
    let path_of = |chain: &[(usize, &str)], mut at: usize| {
        let mut path = Vec::new();
        while at != usize::MAX {
            let (parent, key) = chain[at];
            path.push(key.to_owned());
            at = parent;
        }
        path.reverse();
        path
    };
    let mut found = Marks::new();
    let mut names = HashSet::new();
    // (its place in `chain`: usize::MAX for the root, None once another
    // keyword was crossed; the schema)
    let mut stack: Vec<(Option<usize>, &Value)> = vec![(Some(usize::MAX), schema)];
    let mut walked = 0;
    while let Some((at, node)) = stack.pop() {
        let Some(object) = node.as_object() else {
            continue;
        };
        walked += 1;
        if walked > MAX_POSITIONS {
            return Err("the schema is too large to read for marks".into());
        }
        if let Some(mark) = object.get("x-mcp-header") {
            let at = at
                .filter(|&a| a != usize::MAX)
                .ok_or("a mark is not on a parameter reached through `properties`")?;
            let path = path_of(&chain, at);
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
            if !names.insert(name.to_ascii_lowercase()) {
                return Err(format!("the mark {name} is given twice"));
            }
            if found.len() == MAX_MARKS {
                return Err(format!("more than {MAX_MARKS} parameters are marked"));
            }
            found.push((path, name.to_owned()));
        }
        for (keyword, value) in object {
            let keyword = keyword.as_str();
            match value {
                Value::Object(properties) if keyword == "properties" => {
                    for (key, sub) in properties {
                        let place = at.map(|parent| {
                            chain.push((parent, key.as_str()));
                            chain.len() - 1
                        });
                        stack.push((place, sub));
                    }
                }
                Value::Object(_) if ONE_SCHEMA.contains(&keyword) => stack.push((None, value)),
                Value::Array(items) if SCHEMA_LIST.contains(&keyword) => {
                    stack.extend(items.iter().map(|s| (None, s)));
                }
                Value::Object(map) if SCHEMA_MAP.contains(&keyword) => {
                    stack.extend(map.values().map(|s| (None, s)));
                }
                _ => {}
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
            {"name": "deploy", "inputSchema": schema},
            {"name": "plain", "inputSchema": {"type": "object"}}
        ]}})
        .to_string()
        .into_bytes()
    }

    fn learned(schema: Value) -> Declared {
        let mut declared = Declared::default();
        declared.learn(read_listing(&listing(schema)).unwrap());
        declared
    }

    fn shown(declared: &Declared, arguments: &str) -> Vec<String> {
        let arguments = RawValue::from_string(arguments.to_owned()).unwrap();
        let mut shown: Vec<String> = headers(&declared.marks("deploy").unwrap(), &arguments)
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect();
        shown.sort();
        shown
    }

    #[test]
    fn marked_parameters_become_headers_nested_or_not() {
        let declared = learned(json!({
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
        }));
        assert!(declared.has("deploy") && !declared.has("plain"));
        assert_eq!(
            shown(
                &declared,
                r#"{"region": "eu-west 1", "replicas": 12345678901234567890123, "dry": false,
                    "target": {"zone": "gr\u00fc\u00df"}, "note": "x"}"#
            ),
            [
                "mcp-param-dry: false",
                "mcp-param-region: eu-west 1",
                // A number goes as written, however long.
                "mcp-param-replicas: 12345678901234567890123",
                "mcp-param-zone: =?base64?Z3LDvMOf?=",
            ]
        );
        // Absent or null: no header; a tab is Base64.
        assert!(shown(&declared, r#"{"region": null}"#).is_empty());
        assert_eq!(
            shown(&declared, r#"{"region": "a\tb"}"#),
            ["mcp-param-region: =?base64?YQli?="]
        );
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
            assert!(!learned(schema.clone()).has("deploy"), "{schema}");
        }
        // Too many marks.
        let many: serde_json::Map<String, Value> = (0..=MAX_MARKS)
            .map(|i| {
                (
                    format!("p{i}"),
                    json!({"type": "string", "x-mcp-header": format!("P{i}")}),
                )
            })
            .collect();
        assert!(!learned(json!({"properties": many})).has("deploy"));
    }

    #[test]
    fn one_unreadable_tool_costs_only_its_own_marks() {
        let answer = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [
            {"inputSchema": {"properties": {"a": {"type": "string", "x-mcp-header": "A"}}}},
            {"name": "deploy", "inputSchema": {"properties": {
                "a": {"type": "string", "x-mcp-header": "A"}
            }}}
        ]}});
        let mut declared = Declared::default();
        declared.learn(read_listing(answer.to_string().as_bytes()).unwrap());
        assert!(declared.has("deploy"));
        assert!(read_listing(b"not json").is_none());
        assert!(
            read_listing(br#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}"#).is_none()
        );
    }

    #[test]
    fn a_later_listing_replaces_the_marks() {
        let mut declared = learned(json!({"properties": {
            "a": {"type": "string", "x-mcp-header": "A"}
        }}));
        assert!(declared.has("deploy"));
        declared.learn(
            read_listing(&listing(json!({"properties": {"a": {"type": "string"}}}))).unwrap(),
        );
        assert!(!declared.has("deploy"));
    }

    #[test]
    fn a_wide_deep_schema_is_walked_once_without_copying_paths() {
        // 20 levels of long keys, then many children: the walk stops at
        // its budget rather than copying a path per position.
        let mut schema = json!({"type": "object", "properties": (0..MAX_POSITIONS + 10)
            .map(|i| (format!("c{i}"), json!({})))
            .collect::<serde_json::Map<String, Value>>()});
        for level in 0..20 {
            let key = format!("{level}{}", "k".repeat(10_000));
            schema = json!({"properties": {key: schema}, "x": {"x-mcp-header": 1}});
        }
        let found = marks(&schema);
        assert!(found.is_err(), "{found:?}");
    }
}
