//! `toolwarden import FILE.yaml`: a policy of PolicyLayer's open-source
//! proxy Intercept, converted into a toolwarden policy. Whatever the
//! conversion cannot say with the same meaning stops it, with the place in
//! the YAML (as a JSON pointer) and the reason: nothing is dropped.
//!
//! Intercept's rules all must pass for a call to go through:
//! - `action: deny`: the tool is denied;
//! - `action: evaluate` (the default) with `args.` conditions: a `require`
//!   group with the rule's `on_deny`;
//! - `rate_limit: N/window`, or a `state` counter with an `lt`/`lte`
//!   condition on it: a limit (`increment_from` becomes `cost`);
//! - the `"*"` tool: its limits apply to every call (top-level `limits`),
//!   its conditions are added to every rule.
//!
//! Intercept's counters reset at the start of each UTC minute, hour or
//! day: they become fixed windows (`{"fixed": "day"}`), which count the
//! same way, never limits that refill continuously (GCRA), which would let
//! up to twice as many calls through in one UTC day.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cli::ImportArgs;
use crate::policy::{Condition, ConditionSpec, Op, Policy};

/// `toolwarden import FILE`: the converted policy, or why not on stderr
/// and exit code 2.
pub fn run(args: &ImportArgs) -> (String, u8) {
    let file = &args.file;
    let yaml = match std::fs::read_to_string(file) {
        Ok(yaml) => yaml,
        Err(e) => {
            eprintln!("toolwarden: {}: cannot read it: {e}", file.display());
            return (String::new(), 2);
        }
    };
    let source = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    match import(&yaml, &source) {
        Ok(policy) => (policy, 0),
        Err(e) => {
            eprintln!("toolwarden: {}: {e}", file.display());
            (String::new(), 2)
        }
    }
}

/// An Intercept policy as its YAML says it. Unknown keys are refused, so a
/// typo is never read as "no rule".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InterceptPolicy {
    version: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    hide: Vec<String>,
    #[serde(default)]
    tools: BTreeMap<String, ToolDef>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolDef {
    #[serde(default)]
    rules: Vec<RuleDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    rate_limit: Option<String>,
    #[serde(default)]
    conditions: Vec<ConditionDef>,
    #[serde(default)]
    on_deny: Option<String>,
    #[serde(default)]
    state: Option<StateDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionDef {
    path: String,
    op: String,
    #[serde(default)]
    value: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateDef {
    counter: String,
    window: String,
    #[serde(default)]
    increment: Option<i64>,
    #[serde(default)]
    increment_from: Option<String>,
}

/// The toolwarden policy written out, keys in the order a reader wants.
#[derive(Debug, Serialize)]
struct OutPolicy {
    version: &'static str,
    description: String,
    default: &'static str,
    hide_denied: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hide: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    limits: Vec<OutLimit>,
    tools: BTreeMap<String, OutRule>,
}

#[derive(Debug, Default, Serialize)]
struct OutRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_deny: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    require: Vec<OutGroup>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    limits: Vec<OutLimit>,
}

#[derive(Debug, Clone, Serialize)]
struct OutGroup {
    conditions: Vec<OutCondition>,
    on_deny: String,
}

#[derive(Debug, Clone, Serialize)]
struct OutCondition {
    path: String,
    op: String,
    value: Value,
}

#[derive(Debug, Serialize)]
struct OutLimit {
    counter: String,
    /// `{"fixed": "day"}`: Intercept's windows are UTC calendar windows.
    window: Value,
    max: u64,
    scope: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost: Option<String>,
    on_deny: String,
}

/// Why an Intercept policy cannot be imported, and where.
#[derive(Debug, PartialEq)]
pub struct ImportError {
    /// A JSON pointer into the YAML (`/tools/create_charge/rules/1/state`),
    /// or a line and column for YAML that does not parse.
    pub at: String,
    pub message: String,
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.at.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.at, self.message)
        }
    }
}

fn error(at: impl Into<String>, message: impl Into<String>) -> ImportError {
    ImportError {
        at: at.into(),
        message: message.into(),
    }
}

/// One JSON pointer token.
fn token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Converts the YAML text of an Intercept policy (read from `source`, which
/// the output's description names) into the text of a toolwarden policy.
pub fn import(yaml: &str, source: &str) -> Result<String, ImportError> {
    let policy: InterceptPolicy =
        serde_saphyr::from_str(yaml).map_err(|e| error("", e.to_string()))?;
    let out = convert(policy, source)?;
    let mut text = serde_json::to_string_pretty(&out).expect("a policy serializes");
    text.push('\n');
    // What was written must load: a regex Go reads but Rust does not, or
    // two counters that disagree, fails here rather than at start-up.
    Policy::from_json(&text)
        .map_err(|e| error("", format!("the converted policy does not load: {e}")))?;
    Ok(text)
}

/// What every rule of the `"*"` tool adds to each call.
#[derive(Default)]
struct Wildcard {
    deny: Option<String>,
    require: Vec<OutGroup>,
}

fn convert(p: InterceptPolicy, source: &str) -> Result<OutPolicy, ImportError> {
    if p.version != "1" {
        return Err(error(
            "/version",
            format!("Intercept policies are version \"1\", not {:?}", p.version),
        ));
    }
    let default = match p.default.as_deref() {
        None | Some("allow") => "allow",
        Some("deny") => "deny",
        Some(other) => {
            return Err(error(
                "/default",
                format!("{other:?} is neither \"allow\" nor \"deny\""),
            ))
        }
    };
    for (i, name) in p.hide.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(error(format!("/hide/{i}"), "an empty tool name"));
        }
        if name != "*" && name.contains('*') {
            return Err(error(
                format!("/hide/{i}"),
                format!(
                    "{name:?}: Intercept reads `*` in a name literally, toolwarden as a pattern"
                ),
            ));
        }
    }

    let mut limits = Vec::new();
    let mut wildcard = Wildcard::default();
    if let Some(tool) = p.tools.get("*") {
        let at = "/tools/*";
        let rule = convert_tool("_global", tool, at, &mut limits)?;
        wildcard.deny = rule
            .action
            .map(|_| rule.on_deny.clone().unwrap_or_default());
        wildcard.require = rule.require;
    }

    let mut tools = BTreeMap::new();
    for (name, tool) in p.tools.iter().filter(|(name, _)| name.as_str() != "*") {
        let at = format!("/tools/{}", token(name));
        if name.contains('*') {
            return Err(error(
                at,
                "Intercept reads `*` in a tool name literally, toolwarden as a pattern",
            ));
        }
        // The tool's own limits go with its rule.
        let mut own = Vec::new();
        let mut rule = convert_tool(name, tool, &at, &mut own)?;
        rule.limits = own;
        apply_wildcard(&mut rule, &wildcard);
        tools.insert(name.clone(), rule);
    }
    // With the default allow, tools no rule names get the `"*"` rules too.
    if default == "allow" && (wildcard.deny.is_some() || !wildcard.require.is_empty()) {
        let mut rule = OutRule::default();
        apply_wildcard(&mut rule, &wildcard);
        tools.insert("*".to_owned(), rule);
    }

    let mut description = format!(
        "Imported from the Intercept policy {source} by toolwarden import. Its counters count \
         in fixed UTC windows, as Intercept's do: `max` in each UTC minute, hour or day, afresh \
         at its start. A call the server answers with an error still counts here (Intercept \
         gives it back)."
    );
    if let Some(text) = p.description.filter(|d| !d.is_empty()) {
        description = format!("{text}. {description}");
    }
    Ok(OutPolicy {
        version: "1",
        description,
        default,
        // Intercept removes only the tools of `hide` from tools/list.
        hide_denied: false,
        hide: p.hide,
        limits,
        tools,
    })
}

/// The `"*"` tool's rules, added to one tool's rule.
fn apply_wildcard(rule: &mut OutRule, wildcard: &Wildcard) {
    if let Some(on_deny) = &wildcard.deny {
        if rule.action.is_none() {
            rule.action = Some("deny");
            rule.on_deny = Some(on_deny.clone());
        }
    }
    rule.require.extend(wildcard.require.iter().cloned());
}

/// One tool's rules as a toolwarden rule; its limits go into `limits`.
/// `scope` is Intercept's name for the tool's counters (`_global` for
/// `"*"`), which the counters' names keep.
fn convert_tool(
    scope: &str,
    def: &ToolDef,
    at: &str,
    limits: &mut Vec<OutLimit>,
) -> Result<OutRule, ImportError> {
    let mut rule = OutRule::default();
    let mut counters: BTreeMap<String, String> = BTreeMap::new();
    for (i, r) in def.rules.iter().enumerate() {
        let at = format!("{at}/rules/{i}");
        let name = r.name.clone().unwrap_or_default();
        if let Some(rate) = &r.rate_limit {
            if !r.conditions.is_empty() || r.state.is_some() || r.action.is_some() {
                return Err(error(
                    &at,
                    "rate_limit cannot be combined with action, conditions or state (Intercept refuses it too)",
                ));
            }
            let (count, window) =
                parse_rate(rate).map_err(|m| error(format!("{at}/rate_limit"), m))?;
            let counter = format!("{scope}._rate_{window}");
            claim(&mut counters, &counter, &at)?;
            limits.push(OutLimit {
                counter,
                window: serde_json::json!({ "fixed": window }),
                max: count,
                scope: "global",
                cost: None,
                on_deny: r.on_deny.clone().unwrap_or_else(|| {
                    format!("Rate limit of {count} per {window} reached. Try again later.")
                }),
            });
            continue;
        }
        if name.is_empty() {
            return Err(error(
                &at,
                "a rule must have a name (Intercept refuses it too)",
            ));
        }
        match r.action.as_deref().unwrap_or("evaluate") {
            "deny" => {
                if !r.conditions.is_empty() || r.state.is_some() {
                    return Err(error(&at, "a deny rule has no conditions or state"));
                }
                if rule.action.is_none() {
                    rule.action = Some("deny");
                    rule.on_deny = Some(
                        r.on_deny
                            .clone()
                            .unwrap_or_else(|| format!("Denied by rule {name:?}")),
                    );
                }
                continue;
            }
            "evaluate" => {}
            other => {
                return Err(error(
                    format!("{at}/action"),
                    format!("{other:?} is neither \"evaluate\" nor \"deny\""),
                ))
            }
        }
        if r.conditions.is_empty() {
            return Err(error(
                &at,
                "an evaluate rule needs at least one condition (Intercept refuses it too)",
            ));
        }
        let on_deny = r
            .on_deny
            .clone()
            .unwrap_or_else(|| format!("Denied by rule {name:?}"));
        let mut group = Vec::new();
        let mut bound: Option<u64> = None;
        for (j, c) in r.conditions.iter().enumerate() {
            let at = format!("{at}/conditions/{j}");
            if c.path.starts_with("state.") {
                bound = Some(counter_bound(c, r, scope, &at, bound)?);
            } else {
                group.push(convert_condition(c, &at)?);
            }
        }
        if !group.is_empty() {
            rule.require.push(OutGroup {
                conditions: group,
                on_deny: on_deny.clone(),
            });
        }
        match (&r.state, bound) {
            (None, None) => {}
            (Some(state), Some(max)) => {
                let at = format!("{at}/state");
                limits.push(convert_state(
                    state,
                    scope,
                    max,
                    on_deny,
                    &at,
                    &mut counters,
                )?);
            }
            (Some(_), None) => {
                return Err(error(
                    format!("{at}/state"),
                    "a counter without an `lt` or `lte` condition on it limits nothing in \
                     Intercept; remove it, or add the condition",
                ))
            }
            (None, Some(_)) => unreachable!("counter_bound requires the rule's own state"),
        }
    }
    Ok(rule)
}

/// A counter name used once per tool, as Intercept requires.
fn claim(counters: &mut BTreeMap<String, String>, name: &str, at: &str) -> Result<(), ImportError> {
    if let Some(first) = counters.get(name) {
        return Err(error(
            at,
            format!("counter {name} is already used by {first} (Intercept refuses it too)"),
        ));
    }
    counters.insert(name.to_owned(), at.to_owned());
    Ok(())
}

/// `5/hour` → (5, "hour").
fn parse_rate(text: &str) -> Result<(u64, &str), String> {
    let (count, window) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not N/window, such as 5/hour"))?;
    let count: u64 = count
        .trim()
        .parse()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{count:?} is not a positive whole number"))?;
    let window = window.trim();
    if !["minute", "hour", "day"].contains(&window) {
        return Err(format!("{window:?} is not minute, hour or day"));
    }
    Ok((count, window))
}

/// The most a counter may reach, from a condition `state.SCOPE.COUNTER lte
/// N` (N) or `lt N` (N - 1) on the rule's own counter, as Intercept reads
/// it: the call passes when the counter, with the call's increment added,
/// stays within it.
fn counter_bound(
    c: &ConditionDef,
    r: &RuleDef,
    scope: &str,
    at: &str,
    earlier: Option<u64>,
) -> Result<u64, ImportError> {
    let Some(state) = &r.state else {
        return Err(error(
            at,
            "a condition on a counter of another rule: Intercept compares its value before the \
             call, which toolwarden's limits cannot express",
        ));
    };
    let own = format!("state.{scope}.{}", state.counter);
    if c.path != own {
        return Err(error(
            format!("{at}/path"),
            format!(
                "{}: toolwarden can limit only the rule's own counter, {own}",
                c.path
            ),
        ));
    }
    if earlier.is_some() {
        return Err(error(at, "a second condition on the same counter"));
    }
    let number = c
        .value
        .as_ref()
        .and_then(Value::as_f64)
        .ok_or_else(|| error(format!("{at}/value"), "a counter is compared with a number"))?;
    // Intercept truncates the bound to a whole number.
    let bound = match c.op.as_str() {
        "lte" => number.trunc(),
        "lt" => number.trunc() - 1.0,
        other => {
            return Err(error(
                format!("{at}/op"),
                format!(
                    "{other:?} on a counter: Intercept reserves only under lt and lte, so \
                     toolwarden cannot say the same"
                ),
            ))
        }
    };
    if bound < 1.0 || bound > f64::from(u32::MAX) {
        return Err(error(
            format!("{at}/value"),
            format!(
                "a counter bound of {bound} is not a limit toolwarden has (1 to {})",
                u32::MAX
            ),
        ));
    }
    Ok(bound as u64)
}

fn convert_state(
    state: &StateDef,
    scope: &str,
    bound: u64,
    on_deny: String,
    at: &str,
    counters: &mut BTreeMap<String, String>,
) -> Result<OutLimit, ImportError> {
    if !["minute", "hour", "day"].contains(&state.window.as_str()) {
        return Err(error(
            format!("{at}/window"),
            format!("{:?} is not minute, hour or day", state.window),
        ));
    }
    if state.counter.is_empty() {
        return Err(error(format!("{at}/counter"), "an empty counter name"));
    }
    let counter = format!("{scope}.{}", state.counter);
    claim(counters, &counter, at)?;
    let (max, cost) = match (&state.increment_from, state.increment) {
        (Some(_), Some(n)) if n != 1 => {
            return Err(error(
                at,
                "increment and increment_from both given: Intercept would use increment_from; \
                 keep one",
            ))
        }
        (Some(from), _) => {
            let path = from
                .strip_prefix("args.")
                .filter(|p| !p.is_empty())
                .ok_or_else(|| {
                    error(
                        format!("{at}/increment_from"),
                        format!("{from:?} must start with \"args.\""),
                    )
                })?;
            let pointer: String = path.split('.').map(|k| format!("/{}", token(k))).collect();
            (bound, Some(pointer))
        }
        // Every call adds the same n: a bound of B lets B / n calls through.
        (None, n) => {
            let n = n.unwrap_or(1);
            if n < 0 {
                return Err(error(format!("{at}/increment"), "a negative increment"));
            }
            let n = n.max(1) as u64; // Intercept reads 0 as 1.
            let calls = bound / n;
            if calls == 0 {
                return Err(error(
                    format!("{at}/increment"),
                    format!("an increment of {n} is more than the bound of {bound}: no call could ever pass"),
                ));
            }
            (calls, None)
        }
    };
    Ok(OutLimit {
        counter,
        window: serde_json::json!({ "fixed": state.window }),
        max,
        scope: "global",
        cost,
        on_deny,
    })
}

/// An `args.` condition, checked as toolwarden will compile it.
fn convert_condition(c: &ConditionDef, at: &str) -> Result<OutCondition, ImportError> {
    let op: Op = serde_json::from_value(Value::String(c.op.clone()))
        .map_err(|_| error(format!("{at}/op"), format!("unknown operator {:?}", c.op)))?;
    if op == Op::Exists && !matches!(c.value, Some(Value::Bool(_))) {
        // Intercept's `exists` without true or false is false on every call.
        return Err(error(
            format!("{at}/value"),
            "exists needs true or false (Intercept refuses it too)",
        ));
    }
    let value = c.value.clone().unwrap_or(Value::Null);
    let spec = ConditionSpec {
        path: c.path.clone(),
        op,
        value: Some(value.clone()),
    };
    Condition::compile(&spec, at).map_err(|e| error(e.at, e.message))?;
    Ok(OutCondition {
        path: c.path.clone(),
        op: c.op.clone(),
        value,
    })
}

#[cfg(test)]
mod tests;
