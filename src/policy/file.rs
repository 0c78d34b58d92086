//! The policy file as written: serde types that refuse unknown keys, so a
//! typo such as `"limts"` stops the load instead of silently allowing
//! everything. `policies/policy.schema.json` is generated from these types.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;

use schemars::JsonSchema;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

/// A toolwarden policy (format version 1, compatible with PolicyLayer's
/// policy.json). Optional keys are written by leaving them out, so the
/// schema offers their value types, never null.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "toolwarden policy, version 1")]
pub struct PolicyFile {
    /// Must be "1".
    pub version: String,
    /// Free text for the people who read the file.
    #[serde(default)]
    #[schemars(with = "String")]
    pub description: Option<String>,
    /// What happens to a call of a tool that no rule names. Missing means
    /// "deny".
    #[serde(default)]
    #[schemars(with = "DefaultAction")]
    pub default: Option<DefaultAction>,
    /// Remove tools that would be denied outright from tools/list
    /// responses. Missing means true.
    #[serde(default)]
    #[schemars(with = "bool")]
    pub hide_denied: Option<bool>,
    /// Tools removed from tools/list and refused at call time, whatever
    /// `tools` says: names, or patterns where `*` matches any run of
    /// characters (`"*"`: every tool).
    #[serde(default)]
    pub hide: Vec<String>,
    /// Limits that every allowed tools/call must pass, in addition to the
    /// tool's own.
    #[serde(default)]
    pub limits: Vec<LimitSpec>,
    /// PolicyLayer's spelling of top-level limits: `{"limits": [...]}`.
    #[serde(default)]
    #[schemars(with = "AllTools")]
    pub all_tools: Option<AllTools>,
    /// Rules by tool name, or by a pattern where `*` matches any run of
    /// characters.
    #[serde(default)]
    pub tools: BTreeMap<String, RuleSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
    /// A human confirms each call through the client.
    Approve,
}

/// What toolwarden does with the calls of the tools a pattern matches.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Free text for the people who read the file: why the rule says what
    /// it says.
    #[serde(default)]
    #[schemars(with = "String")]
    pub description: Option<String>,
    /// "allow" when missing.
    #[serde(default)]
    #[schemars(with = "Action")]
    pub action: Option<Action>,
    /// Shown to the agent when a call is refused.
    #[serde(default)]
    #[schemars(with = "String")]
    pub reason: Option<String>,
    /// PolicyLayer's name for `reason`.
    #[serde(default)]
    #[schemars(with = "String")]
    pub on_deny: Option<String>,
    /// Overrides `hide_denied` for the tools of this rule.
    #[serde(default)]
    #[schemars(with = "bool")]
    pub hide: Option<bool>,
    #[serde(default)]
    pub limits: Vec<LimitSpec>,
    /// A JSON Schema (2020-12 unless `$schema` says otherwise) that
    /// `params.arguments` must satisfy.
    #[serde(default)]
    #[schemars(with = "serde_json::Value")]
    pub arguments: Option<serde_json::Value>,
    /// JSON pointers into the arguments whose values never reach the audit
    /// log.
    #[serde(default)]
    pub redact: Vec<String>,
    /// Conditions on the arguments that must all hold, or the call is
    /// refused (`invalid_arguments`): conditions, or groups of them with
    /// their own `on_deny`.
    #[serde(default)]
    #[schemars(with = "Vec<RequireSchema>")]
    pub require: Vec<RequireSpec>,
    /// The call is refused (`denied`) when every condition of one entry
    /// holds; `"conditions": []` always holds.
    #[serde(default)]
    pub deny_if: Vec<ConditionGroup>,
}

/// `all_tools`: what applies to every tool.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AllTools {
    #[serde(default)]
    pub limits: Vec<LimitSpec>,
}

/// A test of one argument: `{"path": "args.amount", "op": "gt", "value":
/// 10000}`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionSpec {
    /// `args.` and a dotted path through the arguments' objects.
    pub path: String,
    pub op: Op,
    /// What the argument is compared with; `exists` takes true (the
    /// default) or false.
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "serde_json::Value")]
    pub value: Option<serde_json::Value>,
}

/// A key that is there, even as `null` (which `Option` alone would read as
/// missing: `{"op": "eq", "value": null}` compares with null).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// The operators of PolicyLayer's conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Eq,
    Neq,
    In,
    NotIn,
    Lt,
    Lte,
    Gt,
    Gte,
    Regex,
    Contains,
    Exists,
}

/// Conditions that act together, with the text the agent reads when they
/// refuse a call.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionGroup {
    pub conditions: Vec<ConditionSpec>,
    #[serde(default)]
    #[schemars(with = "String")]
    pub on_deny: Option<String>,
}

/// One entry of `require`: a condition, or a group of them. Read as one
/// struct so that a mistake is reported at its key (`/require/0/op`), not
/// as "matches no variant".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequireSpec {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub op: Option<Op>,
    #[serde(default, deserialize_with = "present")]
    pub value: Option<serde_json::Value>,
    #[serde(default)]
    pub conditions: Option<Vec<ConditionSpec>>,
    #[serde(default)]
    pub on_deny: Option<String>,
}

/// The schema of a `require` entry.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum RequireSchema {
    Condition(RequiredCondition),
    Group(ConditionGroup),
}

/// A condition of `require`, with the text the agent reads when it fails.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct RequiredCondition {
    path: String,
    op: Op,
    #[schemars(with = "serde_json::Value")]
    value: Option<serde_json::Value>,
    #[schemars(with = "String")]
    on_deny: Option<String>,
}

/// `max` calls per `window`: a bucket that refills continuously, or, for
/// a fixed window, `max` in each.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    /// Rules naming the same counter share one budget. Missing: a counter
    /// private to this rule.
    #[serde(default)]
    #[schemars(with = "String")]
    pub counter: Option<String>,
    pub window: Window,
    pub max: NonZeroU32,
    /// Missing means "grant".
    #[serde(default)]
    #[schemars(with = "Scope")]
    pub scope: Option<Scope>,
    /// JSON pointers into the arguments: each distinct value (compared as
    /// JSON) gets a bucket of its own ("3 per hour for each /job_id").
    #[serde(default)]
    #[schemars(with = "Pointers")]
    pub per: Option<Pointers>,
    /// A JSON pointer to a non-negative number in the arguments: the call
    /// takes that many units instead of one (a spend cap).
    #[serde(default)]
    #[schemars(with = "String")]
    pub cost: Option<String>,
    /// Shown to the agent when this limit refuses a call, instead of the
    /// rule's reason.
    #[serde(default)]
    #[schemars(with = "String")]
    pub on_deny: Option<String>,
}

/// One JSON pointer, or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Pointers {
    One(String),
    Many(Vec<String>),
}

impl Pointers {
    pub fn list(&self) -> Vec<String> {
        match self {
            Pointers::One(p) => vec![p.clone()],
            Pointers::Many(ps) => ps.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Session,
    Grant,
    Global,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Session => "session",
            Scope::Grant => "grant",
            Scope::Global => "global",
        })
    }
}

/// A window length in whole seconds, written as "second", "minute",
/// "hour", "day" or a number of seconds; or, as `{"fixed": "day"}`, a
/// fixed window: one of the UTC seconds, minutes, hours or days that
/// start at the UNIX epoch, each counted afresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub seconds: u64,
    /// Counted afresh at each boundary instead of refilling continuously.
    pub fixed: bool,
}

impl Window {
    /// A window that refills continuously.
    pub const fn rolling(seconds: u64) -> Window {
        Window {
            seconds,
            fixed: false,
        }
    }
}

/// The named windows.
const UNITS: [(&str, u64); 4] = [
    ("second", 1),
    ("minute", 60),
    ("hour", 3600),
    ("day", 86400),
];

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = UNITS.iter().find(|(_, s)| *s == self.seconds);
        match (unit, self.fixed) {
            (Some((name, _)), false) => f.write_str(name),
            (Some((name, _)), true) => write!(f, "UTC {name}"),
            (None, _) => write!(f, "{} seconds", self.seconds),
        }
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct WindowVisitor;
        impl<'de> Visitor<'de> for WindowVisitor {
            type Value = Window;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "\"second\", \"minute\", \"hour\", \"day\", a whole number of seconds, \
                     or {\"fixed\": \"second\" | \"minute\" | \"hour\" | \"day\"}",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Window, E> {
                match UNITS.iter().find(|(name, _)| *name == v) {
                    Some(&(_, seconds)) => Ok(Window::rolling(seconds)),
                    None => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Window, E> {
                // Up to a year: enough for any budget, and far from overflow.
                if (1..=366 * 86400).contains(&v) {
                    Ok(Window::rolling(v))
                } else {
                    Err(E::invalid_value(
                        de::Unexpected::Unsigned(v),
                        &"1 to 31622400 seconds",
                    ))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Window, E> {
                Err(E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Window, E> {
                Err(E::invalid_value(de::Unexpected::Float(v), &self))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Window, A::Error> {
                let unit = &"\"second\", \"minute\", \"hour\" or \"day\" (UTC)";
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::missing_field("fixed"));
                };
                if key != "fixed" {
                    return Err(de::Error::unknown_field(&key, &["fixed"]));
                }
                let name: String = map.next_value()?;
                let &(_, seconds) = UNITS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .ok_or_else(|| de::Error::invalid_value(de::Unexpected::Str(&name), unit))?;
                if let Some(key) = map.next_key::<String>()? {
                    return Err(de::Error::unknown_field(&key, &["fixed"]));
                }
                Ok(Window {
                    seconds,
                    fixed: true,
                })
            }
        }
        d.deserialize_any(WindowVisitor)
    }
}

impl JsonSchema for Window {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Window".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A window: \"second\", \"minute\", \"hour\", \"day\", or a whole number of seconds, refilling continuously; or {\"fixed\": UNIT}, the UTC seconds, minutes, hours or days from the UNIX epoch, each counted afresh.",
            "oneOf": [
                { "enum": ["second", "minute", "hour", "day"] },
                { "type": "integer", "minimum": 1, "maximum": 31622400 },
                {
                    "type": "object",
                    "properties": { "fixed": { "enum": ["second", "minute", "hour", "day"] } },
                    "required": ["fixed"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

/// The JSON Schema of the policy format, as shipped in
/// `policies/policy.schema.json`.
pub fn json_schema() -> String {
    let mut schema =
        serde_json::to_value(schemars::schema_for!(PolicyFile)).expect("a schema serializes");
    drop_null_defaults(&mut schema);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    text.push('\n');
    text
}

/// `"default": null` is what serde fills in for a key left out, not a value
/// to suggest in an editor.
fn drop_null_defaults(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if map.get("default").is_some_and(|d| d.is_null()) {
                map.remove("default");
            }
            map.values_mut().for_each(drop_null_defaults);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_null_defaults),
        _ => {}
    }
}
