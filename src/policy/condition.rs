//! PolicyLayer's argument conditions (`require`, `deny_if`): compiled once
//! at load, regexes included, then tested against each call's arguments
//! with no IO. `{"path": "args.amount", "op": "gt", "value": 10000}`.

use std::fmt;

use serde_json::Value;

use super::file::{ConditionSpec, Op};
use super::load::LoadError;
use crate::redact::shorten;
use crate::wire::json::Raw;

/// The most memory one compiled pattern may take, for condition regexes and
/// schema `pattern`s alike (the `regex` crate's own default, made explicit).
pub const PATTERN_SIZE_LIMIT: usize = 10 << 20;
/// The most memory the lazy DFA of one pattern may take while matching.
pub const PATTERN_DFA_SIZE_LIMIT: usize = 2 << 20;
/// Steps a schema `pattern` may backtrack before its match is given up
/// (schemas are ECMA-262 regexes: a pattern with lookaround or a
/// backreference is matched by a backtracking engine; any other in linear
/// time). Condition regexes are matched in linear time and need none.
pub const PATTERN_BACKTRACK_LIMIT: usize = 100_000;
/// Backtracking steps one call may cost at most: a schema with a pattern
/// that backtracks checks at most this many / [`PATTERN_BACKTRACK_LIMIT`]
/// strings and keys in a call (more, and the call is refused unchecked),
/// so that no call holds the session up for long, pings included.
pub const PATTERN_CALL_BUDGET: usize = 10_000_000;
/// Strings and keys a call may hold for a schema with a pattern that
/// backtracks.
pub const MAX_BACKTRACKED_STRINGS: usize = PATTERN_CALL_BUDGET / PATTERN_BACKTRACK_LIMIT;

/// Whether a JSON Schema holds a `pattern` (or a `patternProperties`
/// key) that the linear-time engine cannot match, so that it backtracks:
/// lookaround and backreferences. One the `regex` crate does not compile
/// counts as backtracking, whatever the reason.
pub fn backtracks(schema: &Value) -> bool {
    let linear = |p: &str| {
        regex::RegexBuilder::new(p)
            .size_limit(PATTERN_SIZE_LIMIT)
            .build()
            .is_ok()
    };
    match schema {
        Value::Object(members) => members
            .iter()
            .any(|(key, value)| match (key.as_str(), value) {
                ("pattern", Value::String(p)) => !linear(p),
                ("patternProperties", Value::Object(patterns)) => {
                    patterns.keys().any(|p| !linear(p)) || patterns.values().any(backtracks)
                }
                _ => backtracks(value),
            }),
        Value::Array(items) => items.iter().any(backtracks),
        _ => false,
    }
}

/// A compiled condition.
#[derive(Debug)]
pub struct Condition {
    /// The path as written (`args.amount`), for messages about the policy.
    pub path: String,
    /// The same place as a JSON pointer into the arguments (`/amount`).
    pub pointer: String,
    /// The object keys the path walks through.
    keys: Vec<String>,
    test: Test,
}

#[derive(Debug)]
enum Test {
    Eq(Value),
    Neq(Value),
    In(Vec<Value>),
    NotIn(Vec<Value>),
    /// `lt`, `lte`, `gt`, `gte` against a number.
    Order(Op, f64),
    Regex(regex::Regex),
    Contains(Value),
    Exists(bool),
}

/// What a condition says of one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Truth {
    Holds,
    Fails,
    /// The argument is there but of a type the operator cannot test (a
    /// string compared with `gt`): neither true nor false. Both `require`
    /// and `deny_if` refuse such a call, so that `"20000"` never slips past
    /// a `deny_if` on `> 10000`.
    Untestable(String),
}

fn error(at: &str, message: impl Into<String>) -> LoadError {
    LoadError {
        at: at.to_owned(),
        message: message.into(),
    }
}

/// One JSON pointer token: `~` and `/` escaped as RFC 6901 says.
fn token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

impl Condition {
    /// Compiles the condition found at the JSON pointer `at`.
    pub fn compile(spec: &ConditionSpec, at: &str) -> Result<Condition, LoadError> {
        let rest = spec.path.strip_prefix("args.").ok_or_else(|| {
            error(
                &format!("{at}/path"),
                format!(
                    "{:?} must start with \"args.\": a condition tests the call's arguments \
                     (counters are written as limits)",
                    spec.path
                ),
            )
        })?;
        let keys: Vec<String> = rest.split('.').map(str::to_owned).collect();
        if keys.iter().any(String::is_empty) {
            return Err(error(
                &format!("{at}/path"),
                format!("{:?} has an empty segment", spec.path),
            ));
        }
        let pointer = keys.iter().map(|k| format!("/{}", token(k))).collect();
        let value_at = format!("{at}/value");
        let value = || {
            spec.value.clone().ok_or_else(|| {
                error(
                    at,
                    format!("operator {} needs a \"value\"", op_name(spec.op)),
                )
            })
        };
        let test = match spec.op {
            Op::Eq => Test::Eq(value()?),
            Op::Neq => Test::Neq(value()?),
            Op::In | Op::NotIn => {
                let Value::Array(list) = value()? else {
                    return Err(error(
                        &value_at,
                        format!("operator {} needs a list", op_name(spec.op)),
                    ));
                };
                if spec.op == Op::In {
                    Test::In(list)
                } else {
                    Test::NotIn(list)
                }
            }
            Op::Lt | Op::Lte | Op::Gt | Op::Gte => {
                let number = value()?.as_f64().ok_or_else(|| {
                    error(
                        &value_at,
                        format!("operator {} needs a number", op_name(spec.op)),
                    )
                })?;
                Test::Order(spec.op, number)
            }
            Op::Regex => {
                let Value::String(pattern) = value()? else {
                    return Err(error(&value_at, "operator regex needs a string"));
                };
                let regex = regex::RegexBuilder::new(&pattern)
                    .size_limit(PATTERN_SIZE_LIMIT)
                    .dfa_size_limit(PATTERN_DFA_SIZE_LIMIT)
                    .build()
                    .map_err(|e| error(&value_at, format!("not a usable regex: {e}")))?;
                Test::Regex(regex)
            }
            Op::Contains => Test::Contains(value()?),
            Op::Exists => match spec.value.clone().unwrap_or(Value::Bool(true)) {
                Value::Bool(b) => Test::Exists(b),
                _ => return Err(error(&value_at, "operator exists takes true or false")),
            },
        };
        Ok(Condition {
            path: spec.path.clone(),
            pointer,
            keys,
            test,
        })
    }

    /// Tests the condition against a call's arguments (`None`: the call
    /// has none, which is the same as `{}`).
    ///
    /// A value the operator cannot compare fails closed (`Untestable`):
    /// servers coerce (`"true"` to `true`, a JSON string to the object it
    /// spells), so a policy that took such a value as simply "not equal"
    /// would be weaker than the server's reading of it.
    pub fn eval(&self, arguments: Option<Raw<'_>>) -> Truth {
        let mut here = arguments;
        let mut walked = String::new();
        for key in &self.keys {
            // Through objects only, as PolicyLayer resolves paths: a
            // segment never indexes an array. A null parent is an absent
            // one; any other value where an object belongs cannot be
            // walked, and may well be one to the server (a JSON string).
            here = match here {
                None => None,
                Some(raw) if raw.is_object() => raw.member(key),
                Some(raw) if raw.get() == "null" => None,
                Some(raw) => {
                    return Truth::Untestable(format!(
                        "{} at {} is {}, where an object belongs",
                        shorten(raw.get(), 64),
                        if walked.is_empty() { "/" } else { &walked },
                        kind_of_text(raw.get())
                    ))
                }
            };
            walked.push('/');
            walked.push_str(&token(key));
        }
        // `exists` asks whether the argument is there and not null; every
        // other operator is false on a missing argument.
        let found = match (&self.test, here) {
            (Test::Exists(wanted), found) => {
                let there = found.is_some_and(|raw| raw.get() != "null");
                return holds(there == *wanted);
            }
            (_, None) => return Truth::Fails,
            (_, Some(raw)) => raw,
        };
        let Ok(actual) = serde_json::from_str::<Value>(found.get()) else {
            // Cannot happen for arguments the strict parser passed.
            return Truth::Untestable("cannot be read as JSON".into());
        };
        let untestable = |what: &str| {
            Truth::Untestable(format!(
                "{} is {}, which {} cannot test",
                shorten(found.get(), 64),
                kind_of(&actual),
                what
            ))
        };
        let answer = |compared: Option<bool>, what: &str| match compared {
            Some(yes) => holds(yes),
            None => untestable(what),
        };
        match &self.test {
            Test::Eq(v) => answer(compare(&actual, v), &format!("`eq` {v}")),
            Test::Neq(v) => answer(compare(&actual, v).map(|same| !same), &format!("`neq` {v}")),
            Test::In(list) => answer(any_same(list.iter(), &actual), "`in`"),
            Test::NotIn(list) => answer(any_same(list.iter(), &actual).map(|any| !any), "`not_in`"),
            Test::Order(op, bound) => match actual.as_f64() {
                Some(n) => holds(match op {
                    Op::Lt => n < *bound,
                    Op::Lte => n <= *bound,
                    Op::Gt => n > *bound,
                    _ => n >= *bound,
                }),
                None => untestable(&format!("`{}`", op_name(*op))),
            },
            Test::Regex(regex) => match &actual {
                Value::String(s) => holds(regex.is_match(s)),
                _ => untestable("`regex`"),
            },
            Test::Contains(v) => match (&actual, v) {
                (Value::String(s), Value::String(part)) => holds(s.contains(part.as_str())),
                (Value::Array(items), v) => {
                    answer(any_same(items.iter(), v), &format!("`contains` {v}"))
                }
                _ => untestable(&format!("`contains` {v}")),
            },
            Test::Exists(_) => unreachable!("answered above"),
        }
    }
}

fn holds(yes: bool) -> Truth {
    if yes {
        Truth::Holds
    } else {
        Truth::Fails
    }
}

/// JSON equality with numbers compared by value: `1e3`, `1000` and
/// `1000.0` are the same. Strings compare code point by code point, with
/// no Unicode normalization. `None` when the two cannot be compared: they
/// are of different JSON types (`"true"` and `true`, `1` and `true`, a list
/// and a string), here or anywhere inside, unless a difference that no
/// coercion could undo (another length, other keys, another string)
/// settles it.
fn compare(a: &Value, b: &Value) -> Option<bool> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            Some(match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(x), Some(y), _, _) => x == y,
                (_, _, Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            })
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Some(false);
            }
            all_same(x.iter().zip(y).map(|(a, b)| compare(a, b)))
        }
        (Value::Object(x), Value::Object(y)) => {
            if x.len() != y.len() || x.keys().any(|k| !y.contains_key(k)) {
                return Some(false);
            }
            all_same(x.iter().map(|(k, a)| compare(a, &y[k])))
        }
        (Value::Null, Value::Null) => Some(true),
        (Value::Bool(x), Value::Bool(y)) => Some(x == y),
        (Value::String(x), Value::String(y)) => Some(x == y),
        _ => None,
    }
}

/// Whether every pair is the same: no as soon as one is not, else unknown
/// when one cannot be compared.
fn all_same(pairs: impl Iterator<Item = Option<bool>>) -> Option<bool> {
    let mut known = true;
    for pair in pairs {
        match pair {
            Some(false) => return Some(false),
            None => known = false,
            Some(true) => {}
        }
    }
    known.then_some(true)
}

/// Whether any of `items` is the same as `v`: yes as soon as one is, else
/// unknown when one cannot be compared with it.
fn any_same<'a>(items: impl Iterator<Item = &'a Value>, v: &Value) -> Option<bool> {
    let mut known = true;
    for item in items {
        match compare(item, v) {
            Some(true) => return Some(true),
            None => known = false,
            Some(false) => {}
        }
    }
    known.then_some(false)
}

/// [`kind_of`] read from a value's text (its first byte says it).
fn kind_of_text(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'[') => "a list",
        Some(b'{') => "an object",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

pub fn op_name(op: Op) -> &'static str {
    match op {
        Op::Eq => "eq",
        Op::Neq => "neq",
        Op::In => "in",
        Op::NotIn => "not_in",
        Op::Lt => "lt",
        Op::Lte => "lte",
        Op::Gt => "gt",
        Op::Gte => "gte",
        Op::Regex => "regex",
        Op::Contains => "contains",
        Op::Exists => "exists",
    }
}

/// `/amount > 10000`, as `check` and refusals show it.
impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = &self.pointer;
        let list = |l: &[Value]| Value::Array(l.to_vec()).to_string();
        match &self.test {
            Test::Eq(v) => write!(f, "{at} == {v}"),
            Test::Neq(v) => write!(f, "{at} != {v}"),
            Test::In(l) => write!(f, "{at} in {}", list(l)),
            Test::NotIn(l) => write!(f, "{at} not in {}", list(l)),
            Test::Order(op, n) => {
                let sign = match op {
                    Op::Lt => "<",
                    Op::Lte => "<=",
                    Op::Gt => ">",
                    _ => ">=",
                };
                write!(f, "{at} {sign} {n}")
            }
            Test::Regex(r) => write!(f, "{at} matches {}", Value::String(r.as_str().into())),
            Test::Contains(v) => write!(f, "{at} contains {v}"),
            Test::Exists(true) => write!(f, "{at} is given"),
            Test::Exists(false) => write!(f, "{at} is not given"),
        }
    }
}

/// Conditions that act together: all must hold.
#[derive(Debug)]
pub struct Group {
    pub conditions: Vec<Condition>,
    pub on_deny: Option<String>,
}

impl Group {
    /// `Holds` when every condition does. Otherwise the first that fails,
    /// since one false condition settles the group whatever the others
    /// are; failing that, the first that cannot be tested.
    pub fn eval(&self, arguments: Option<Raw<'_>>) -> (Truth, Option<&Condition>) {
        let mut untestable = None;
        for condition in &self.conditions {
            match condition.eval(arguments) {
                Truth::Holds => {}
                Truth::Fails => return (Truth::Fails, Some(condition)),
                other => {
                    untestable.get_or_insert((other, Some(condition)));
                }
            }
        }
        untestable.unwrap_or((Truth::Holds, None))
    }

    /// The conditions in words, joined by "and"; "always" for none.
    pub fn describe(&self) -> String {
        if self.conditions.is_empty() {
            return "always".into();
        }
        self.conditions
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" and ")
    }
}

#[cfg(test)]
mod tests;
