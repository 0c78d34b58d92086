//! The policy: read and compiled once at start-up, then asked about every
//! `tools/call`. Deciding is pure and synchronous (no IO, no await, no
//! clock): an allowed call comes with the [`Charge`] it would take, which
//! the state store (`crate::state`) then takes all or none.

mod canonical;
pub use canonical::digest as arguments_digest;
mod condition;
mod file;
mod glob;
mod limits;
mod lint;
mod load;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

pub use condition::{Condition, Group, Truth};
pub use file::{json_schema, Action, ConditionSpec, DefaultAction, Op, PolicyFile, Scope, Window};
pub use glob::Glob;
pub use limits::{clamp, step, Counter, Rate, Wait};
pub use load::{load, read_file, LoadError, MAX_POLICY_BYTES};

use crate::redact::shorten;
use crate::wire::json::Raw;
use crate::wire::jsonrpc::ToolFields;

/// A compiled policy.
pub struct Policy {
    pub default: DefaultAction,
    pub hide_denied: bool,
    /// `hide`: removed from tools/list and refused, whatever the rules say.
    hide: Vec<Glob>,
    exact: BTreeMap<String, usize>,
    /// Most literal characters first: the first match wins.
    globs: Vec<(Glob, usize)>,
    rules: Vec<Rule>,
    global_limits: Vec<usize>,
    counters: Vec<Counter>,
    /// What loads but checks less than it seems (see `lint`).
    pub warnings: Vec<LoadError>,
    /// The first 16 hex digits of the file's SHA-256: which text was
    /// loaded (a reload compares it). Not part of any counter's key: an
    /// edit that leaves a counter alone keeps its budget.
    pub fingerprint: String,
}

/// One entry of `tools`, compiled.
pub struct Rule {
    pub pattern: String,
    pub action: Action,
    /// `reason`, or PolicyLayer's `on_deny`.
    pub reason: Option<String>,
    pub hide: Option<bool>,
    pub redact: Vec<String>,
    /// Groups of conditions that must all hold.
    pub require: Vec<Group>,
    /// Groups of conditions any one of which refuses the call.
    pub deny_if: Vec<Group>,
    /// The rule's own limits.
    limits: Vec<usize>,
    /// Every counter a call under this rule is charged: the top-level ones
    /// and the rule's own, each once. Worked out at load time.
    counters: Vec<usize>,
    schema: Option<jsonschema::Validator>,
    /// The schema has a pattern that backtracks: a call may hold at most
    /// [`condition::MAX_BACKTRACKED_STRINGS`] strings and keys.
    backtracks: bool,
}

/// What the policy needs to know of a `tools/call`.
#[derive(Debug)]
pub struct ToolCall<'a> {
    pub name: Cow<'a, str>,
    pub arguments: Option<Raw<'a>>,
}

impl<'a> ToolCall<'a> {
    /// Reads a `tools/call` from its `params` and the members the parser
    /// read out of them; the error says what is wrong.
    pub fn from_params(
        params: Option<Raw<'a>>,
        fields: ToolFields<'a>,
    ) -> Result<ToolCall<'a>, String> {
        let params = params.ok_or("tools/call needs params")?;
        if !params.is_object() {
            return Err("tools/call params must be an object".into());
        }
        let ToolFields { name, arguments } = fields;
        let name = name
            .and_then(Raw::as_str)
            .ok_or("tools/call params.name must be a string")?;
        if let Some(args) = arguments {
            if !matches!(args.get().as_bytes().first(), Some(b'{' | b'n')) {
                return Err("tools/call params.arguments must be an object".into());
            }
        }
        Ok(ToolCall {
            name,
            arguments: arguments.filter(|a| a.get() != "null"),
        })
    }
}

/// The policy's answer to one call.
#[derive(Debug)]
pub enum Verdict {
    /// Forward it, once its charge is taken.
    Allow(Charge),
    /// Ask a human first; the charge is taken once they say yes.
    Approve(Charge),
    Refuse(Refusal),
}

/// What an allowed call takes from the counters: every bucket or none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Charge {
    pub debits: Vec<Debit>,
}

/// Units taken from one bucket of one counter.
#[derive(Debug, Clone, PartialEq)]
pub struct Debit {
    /// Index into [`Policy::counters`].
    pub counter: usize,
    /// The values of the counter's `per` pointers, as canonical JSON (a
    /// long one by its hash); empty without `per`.
    pub bucket: String,
    pub cost: NonZeroU32,
}

/// A refused call, with what the agent needs to adapt.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub tool: String,
    /// The rule's pattern, when a rule decided.
    pub rule: Option<String>,
    pub reason: Option<String>,
    pub kind: RefusalKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RefusalKind {
    /// The rule says deny, or one of its `deny_if` entries holds (the
    /// entry's conditions in words; "always" for none).
    Denied { condition: Option<String> },
    /// The policy's `hide` list names the tool.
    Hidden,
    /// No rule names the tool and the default is deny.
    NotAllowed,
    RateLimited {
        counter: String,
        max: u32,
        window: Window,
        retry_after: Duration,
    },
    /// The first [`MAX_SCHEMA_ERRORS`] ways the arguments break the
    /// schema, and how many more there were (`None`: not counted, for
    /// arguments of more than [`MAX_COUNTED_VALUES`] values).
    InvalidArguments {
        errors: Vec<SchemaError>,
        more: Option<usize>,
    },
    /// A person said no, or did not answer in time.
    ApprovalDeclined { timed_out: bool },
    /// A 2026-07-28 retry whose approval state does not hold (forged,
    /// expired, for another call, used already, or no answer in it).
    ApprovalStateRefused { why: String },
    /// A 2026-07-28 approval state cannot be made: as many as one process
    /// keeps are outstanding.
    ApprovalStatesFull,
    /// The client cannot ask a person; `busy`: it can, but as many calls
    /// as toolwarden holds at once are waiting already.
    ApprovalUnavailable { busy: bool },
    /// Out of band: a person denied the call (`toolwarden approvals deny`).
    ApprovalDenied {
        by: Option<String>,
        reason: Option<String>,
    },
    /// The client cannot ask and the inbox cannot be used (why).
    InboxUnavailable { why: String },
    /// Filed in the inbox and not decided within `--approval-hold`: the
    /// agent is to make the same call again once a person has approved.
    ApprovalPending { id: String, expires_in: Duration },
    /// `--audit-required` and the audit log cannot be written.
    AuditUnavailable,
    /// The state store that keeps the call's counters cannot be reached.
    StateUnavailable { retry_after: Duration },
    /// `--pin`: the server's definition of the tool is not the pinned one.
    ToolChanged { review: String },
    /// `--pin`: the pin file does not know the tool (`listed`), or no
    /// `tools/list` of this session has shown it yet.
    ToolUnpinned { review: String, listed: bool },
}

/// Schema errors kept for one call: enough to fix the call, while an array
/// that breaks its `items` in each of a million elements costs no more.
pub const MAX_SCHEMA_ERRORS: usize = 10;
/// Bytes kept of each schema error's message and pointer: a message quotes
/// the value that failed, which can be the whole arguments.
pub const MAX_ERROR_TEXT: usize = 256;
/// The most JSON values the arguments of a call checked against a schema
/// may hold: the schema check needs them as a tree, some 80 bytes each, so
/// this bounds it at about 8 MiB (a long string is one value, a copy).
pub const MAX_SCHEMA_VALUES: usize = 100_000;
/// Arguments of at most this many values get every schema error counted;
/// larger ones get their first error only: jsonschema gathers all errors
/// before handing out one, some 300 bytes each.
pub const MAX_COUNTED_VALUES: usize = 10_000;

/// One way the arguments break the rule's schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SchemaError {
    /// JSON pointer into the arguments; "" is the arguments object itself.
    pub pointer: String,
    pub message: String,
}

impl Policy {
    /// The rule that governs `tool`: an exact name first, then the glob
    /// with the most literal characters.
    pub fn rule_for(&self, tool: &str) -> Option<&Rule> {
        let index = match self.exact.get(tool) {
            Some(&i) => i,
            None => self.globs.iter().find(|(g, _)| g.matches(tool))?.1,
        };
        Some(&self.rules[index])
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    fn action_for(&self, rule: Option<&Rule>) -> Action {
        match (rule, self.default) {
            (Some(rule), _) => rule.action,
            (None, DefaultAction::Allow) => Action::Allow,
            (None, DefaultAction::Deny) => Action::Deny,
        }
    }

    /// Whether `tools/list` responses leave `tool` out.
    pub fn hides(&self, tool: &str) -> bool {
        if self.hidden(tool) {
            return true;
        }
        let rule = self.rule_for(tool);
        rule.and_then(|r| r.hide)
            .unwrap_or(self.hide_denied && self.denied_outright(rule))
    }

    /// What the policy does with every call of `tool` before looking at
    /// its arguments: deny when `hide` lists it, its rule (or the default)
    /// denies it, or a `deny_if` entry always holds.
    pub fn action(&self, tool: &str) -> Action {
        let rule = self.rule_for(tool);
        if self.hidden(tool) || self.denied_outright(rule) {
            Action::Deny
        } else {
            self.action_for(rule)
        }
    }

    /// Whether the `hide` list names `tool`.
    fn hidden(&self, tool: &str) -> bool {
        self.hide.iter().any(|g| g.matches(tool))
    }

    /// Whether every call under `rule` is denied, whatever its arguments.
    fn denied_outright(&self, rule: Option<&Rule>) -> bool {
        self.action_for(rule) == Action::Deny || rule.is_some_and(|r| r.always_denied().is_some())
    }

    /// Decides one call: the `hide` list, the action, the arguments (schema,
    /// `require`, `deny_if`), then what it would take from every limit (the
    /// top-level ones and the rule's). Charges nothing and reads no
    /// counter: the state store does that.
    pub fn check(&self, call: &ToolCall) -> Verdict {
        let rule = self.rule_for(&call.name);
        let refusal = |kind, reason: Option<&String>| Refusal {
            tool: call.name.to_string(),
            rule: rule.map(|r| r.pattern.clone()),
            reason: reason.or(rule.and_then(|r| r.reason.as_ref())).cloned(),
            kind,
        };
        let refuse = |kind| Verdict::Refuse(refusal(kind, None));
        if self.hidden(&call.name) {
            return Verdict::Refuse(Refusal {
                rule: None,
                reason: None,
                ..refusal(RefusalKind::Hidden, None)
            });
        }
        let action = self.action_for(rule);
        if action == Action::Deny {
            return refuse(if rule.is_some() {
                RefusalKind::Denied { condition: None }
            } else {
                RefusalKind::NotAllowed
            });
        }
        if let Some(group) = rule.and_then(Rule::always_denied) {
            let kind = RefusalKind::Denied { condition: None };
            return Verdict::Refuse(refusal(kind, group.on_deny.as_ref()));
        }
        if let Some((errors, more)) = rule.and_then(|r| schema_errors(r, call.arguments)) {
            return refuse(RefusalKind::InvalidArguments { errors, more });
        }
        if let Some(rule) = rule {
            if let Some(refused) = conditions_refuse(rule, call.arguments) {
                let (kind, group) = refused;
                return Verdict::Refuse(refusal(kind, group.on_deny.as_ref()));
            }
        }
        let charge = match self.charge_of(rule, call.arguments) {
            Ok(charge) => charge,
            Err(error) => {
                return refuse(RefusalKind::InvalidArguments {
                    errors: vec![error],
                    more: Some(0),
                })
            }
        };
        match action {
            Action::Approve => Verdict::Approve(charge),
            _ => Verdict::Allow(charge),
        }
    }

    /// The buckets a call under `rule` takes from, and how much.
    fn charge_of(
        &self,
        rule: Option<&Rule>,
        arguments: Option<Raw<'_>>,
    ) -> Result<Charge, SchemaError> {
        let ids = rule.map_or(&self.global_limits[..], |r| &r.counters[..]);
        let mut debits = Vec::with_capacity(ids.len());
        for &counter in ids {
            let c = &self.counters[counter];
            let cost = match &c.cost {
                None => NonZeroU32::MIN,
                Some(pointer) => match cost_at(arguments, pointer, c)? {
                    Some(cost) => cost,
                    // Nothing to take.
                    None => continue,
                },
            };
            let bucket = c
                .per
                .iter()
                .map(|pointer| bucket_part(arguments.and_then(|a| a.pointer(pointer))))
                .collect::<Vec<_>>()
                .join(",");
            debits.push(Debit {
                counter,
                bucket,
                cost,
            });
        }
        Ok(Charge { debits })
    }

    /// Every counter of the policy.
    pub fn counters(&self) -> &[Counter] {
        &self.counters
    }

    /// The refusal of a call that a counter has no room for.
    pub fn rate_limited(&self, tool: &str, counter: usize, retry_after: Duration) -> Refusal {
        let rule = self.rule_for(tool);
        let c = &self.counters[counter];
        Refusal {
            tool: tool.to_owned(),
            rule: rule.map(|r| r.pattern.clone()),
            reason: c
                .on_deny
                .clone()
                .or_else(|| rule.and_then(|r| r.reason.clone())),
            kind: RefusalKind::RateLimited {
                counter: c.name.clone(),
                max: c.max.get(),
                window: c.window,
                retry_after,
            },
        }
    }

    /// A one-screen description for `toolwarden check`.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for warning in &self.warnings {
            out.push_str(&format!("warning: {warning}\n"));
        }
        let default = match self.default {
            DefaultAction::Allow => "allow",
            DefaultAction::Deny => "deny",
        };
        out.push_str(&format!("default: {default} (tools no rule names)\n"));
        out.push_str(&format!(
            "hide_denied: {} (denied tools {} tools/list)\n",
            self.hide_denied,
            if self.hide_denied {
                "are removed from"
            } else {
                "stay in"
            }
        ));
        if !self.hide.is_empty() {
            let names: Vec<&str> = self.hide.iter().map(Glob::as_str).collect();
            out.push_str(&format!(
                "hide: {} (removed from tools/list and refused, whatever the rules say)\n",
                names.join(", ")
            ));
        }
        if !self.global_limits.is_empty() {
            out.push_str("limits on every allowed call:\n");
            for &i in &self.global_limits {
                out.push_str(&format!("  {}\n", self.counter_words(i)));
            }
        }
        out.push_str(&format!("rules ({}):\n", self.rules.len()));
        for rule in &self.rules {
            let action = match rule.action {
                Action::Allow => "allow",
                Action::Deny => "deny",
                Action::Approve => "approve",
            };
            let hidden = rule
                .hide
                .unwrap_or(self.hide_denied && self.denied_outright(Some(rule)));
            out.push_str(&format!(
                "  {}: {action}{}\n",
                rule.pattern,
                if hidden { ", hidden" } else { "" }
            ));
            for &i in &rule.limits {
                out.push_str(&format!("    limit {}\n", self.counter_words(i)));
            }
            if rule.schema.is_some() {
                out.push_str("    arguments checked against a schema\n");
            }
            let with_text = |text: &Option<String>| match text {
                Some(text) => format!(": {text}"),
                None => String::new(),
            };
            for group in &rule.require {
                out.push_str(&format!(
                    "    requires {}{}\n",
                    group.describe(),
                    with_text(&group.on_deny)
                ));
            }
            for group in &rule.deny_if {
                let when = if group.conditions.is_empty() {
                    "always".to_owned()
                } else {
                    format!("when {}", group.describe())
                };
                out.push_str(&format!(
                    "    refused {when}{}\n",
                    with_text(&group.on_deny)
                ));
            }
            if !rule.redact.is_empty() {
                out.push_str(&format!(
                    "    redacted in the audit log: {}\n",
                    rule.redact.join(", ")
                ));
            }
            if let Some(reason) = &rule.reason {
                out.push_str(&format!("    reason: {reason}\n"));
            }
        }
        out
    }

    fn counter_words(&self, i: usize) -> String {
        let c = &self.counters[i];
        let on_deny = c
            .on_deny
            .as_ref()
            .map_or(String::new(), |t| format!(": {t}"));
        format!("{}: {} (scope {}){on_deny}", c.name, c.describe(), c.scope)
    }
}

impl Rule {
    /// The first `deny_if` entry without conditions: it refuses every call.
    pub fn always_denied(&self) -> Option<&Group> {
        self.deny_if.iter().find(|g| g.conditions.is_empty())
    }
}

/// How a rule's `require` and `deny_if` refuse a call, if they do, and the
/// entry that refused it (for its `on_deny`). A condition that cannot test
/// its argument (a string compared with `gt`, `"true"` with `eq true`)
/// fails closed: a `require` entry that does not hold, or holds only
/// untested, refuses the call as `invalid_arguments`; a `deny_if` entry
/// that holds, or could, refuses it as `denied`.
fn conditions_refuse<'r>(
    rule: &'r Rule,
    arguments: Option<Raw<'_>>,
) -> Option<(RefusalKind, &'r Group)> {
    let invalid = |condition: &Condition, message: String| RefusalKind::InvalidArguments {
        errors: vec![SchemaError {
            pointer: condition.pointer.clone(),
            message: shorten(&message, MAX_ERROR_TEXT),
        }],
        more: Some(0),
    };
    for group in &rule.require {
        match group.eval(arguments) {
            (Truth::Holds, _) => {}
            (Truth::Fails, Some(c)) => {
                return Some((invalid(c, format!("the policy requires {c}")), group))
            }
            (Truth::Untestable(why), Some(c)) => {
                return Some((invalid(c, format!("{why}; the policy requires {c}")), group))
            }
            (_, None) => unreachable!("a group fails at one of its conditions"),
        }
    }
    for group in &rule.deny_if {
        match group.eval(arguments) {
            (Truth::Holds, _) => {
                let condition = Some(group.describe());
                return Some((RefusalKind::Denied { condition }, group));
            }
            (Truth::Fails, _) => {}
            (Truth::Untestable(why), Some(_)) => {
                // Fails closed: a value the condition cannot compare
                // may be one the server reads as matching it.
                let condition = Some(format!("{} ({why})", group.describe()));
                return Some((RefusalKind::Denied { condition }, group));
            }
            (Truth::Untestable(_), None) => unreachable!("a group fails at one of its conditions"),
        }
    }
    None
}

/// The units a call takes from a counter with `cost`: the number at
/// `pointer`, rounded up (`None`: zero). Missing, negative, not a number,
/// or more than the counter ever holds refuses the call.
fn cost_at(
    arguments: Option<Raw<'_>>,
    pointer: &str,
    counter: &Counter,
) -> Result<Option<NonZeroU32>, SchemaError> {
    let error = |message: String| SchemaError {
        pointer: pointer.to_owned(),
        message,
    };
    let value = arguments.and_then(|a| a.pointer(pointer)).ok_or_else(|| {
        error(format!(
            "missing: counter {} takes its cost from here",
            counter.name
        ))
    })?;
    let units: f64 = value
        .get()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| {
            error(format!(
                "{} is not a non-negative number: counter {} takes its cost from here",
                shorten(value.get(), 64),
                counter.name
            ))
        })?;
    let units = units.ceil();
    if units > f64::from(counter.max.get()) {
        return Err(error(format!(
            "a cost of {units} is more than counter {} ever holds ({} per {}): this call can never pass",
            counter.name, counter.max, counter.window
        )));
    }
    Ok(NonZeroU32::new(units as u32))
}

/// One `per` value as part of a bucket's name: canonical JSON (so that
/// `{"a": 1}` and `{"a":1}` share a bucket, however long), a long one by
/// its hash, and "absent" for a missing one.
fn bucket_part(value: Option<Raw<'_>>) -> String {
    // A null argument is an absent one to servers.
    value
        .filter(|v| v.get() != "null")
        .map_or_else(|| "absent".into(), canonical::bucket_name)
}

/// The schema errors of a call's arguments (the first
/// [`MAX_SCHEMA_ERRORS`], and how many more), or `None` when they pass (or
/// the rule has no schema). Missing arguments are checked as `{}`.
fn schema_errors(
    rule: &Rule,
    arguments: Option<Raw<'_>>,
) -> Option<(Vec<SchemaError>, Option<usize>)> {
    let schema = rule.schema.as_ref()?;
    let one = |message: String| {
        let error = SchemaError {
            pointer: String::new(),
            message,
        };
        Some((vec![error], Some(0)))
    };
    let values = arguments.map_or(0, Raw::count_values);
    if values > MAX_SCHEMA_VALUES {
        return one(format!(
            "the arguments hold {values} JSON values, more than the {MAX_SCHEMA_VALUES} \
             toolwarden checks against a schema; send them in smaller calls"
        ));
    }
    let value: Value = match arguments.map(|raw| serde_json::from_str(raw.get())) {
        Some(Ok(value)) => value,
        // Cannot happen for a line the strict parser passed; if it did,
        // the call is refused, never waved through unchecked.
        Some(Err(e)) => return one(format!("the arguments cannot be read: {e}")),
        None => json!({}),
    };
    if rule.backtracks {
        let strings = strings_and_keys(&value);
        if strings > condition::MAX_BACKTRACKED_STRINGS {
            return one(format!(
                "the arguments hold {strings} strings and keys, more than the {} toolwarden \
                 checks against this schema's backtracking patterns (lookaround or \
                 backreferences); send them in smaller calls",
                condition::MAX_BACKTRACKED_STRINGS
            ));
        }
    }
    let kept = |e: jsonschema::ValidationError| SchemaError {
        pointer: shorten(e.instance_path().as_str(), MAX_ERROR_TEXT),
        message: shorten(&e.to_string(), MAX_ERROR_TEXT),
    };
    if values > MAX_COUNTED_VALUES {
        return match schema.validate(&value) {
            Ok(()) => None,
            Err(e) => Some((vec![kept(e)], None)),
        };
    }
    let mut all = schema.iter_errors(&value);
    let errors: Vec<SchemaError> = all.by_ref().take(MAX_SCHEMA_ERRORS).map(kept).collect();
    let more = all.count();
    (!errors.is_empty()).then_some((errors, Some(more)))
}

/// How many strings and object keys a value holds: what a schema's
/// patterns may be matched against.
fn strings_and_keys(value: &Value) -> usize {
    match value {
        Value::String(_) => 1,
        Value::Array(items) => items.iter().map(strings_and_keys).sum(),
        Value::Object(members) => {
            members.len() + members.values().map(strings_and_keys).sum::<usize>()
        }
        _ => 0,
    }
}

impl Refusal {
    /// The machine-readable decision name.
    pub fn decision(&self) -> &'static str {
        match self.kind {
            RefusalKind::Denied { .. } | RefusalKind::Hidden => "denied",
            RefusalKind::NotAllowed => "not_allowed",
            RefusalKind::RateLimited { .. } => "rate_limited",
            RefusalKind::InvalidArguments { .. } => "invalid_arguments",
            RefusalKind::ApprovalDeclined { .. }
            | RefusalKind::ApprovalDenied { .. }
            | RefusalKind::ApprovalStateRefused { .. } => "approval_declined",
            RefusalKind::ApprovalUnavailable { .. }
            | RefusalKind::InboxUnavailable { .. }
            | RefusalKind::ApprovalStatesFull => "approval_unavailable",
            RefusalKind::ApprovalPending { .. } => "approval_pending",
            RefusalKind::AuditUnavailable => "audit_unavailable",
            RefusalKind::StateUnavailable { .. } => "state_unavailable",
            RefusalKind::ToolChanged { .. } => "tool_changed",
            RefusalKind::ToolUnpinned { .. } => "tool_unpinned",
        }
    }

    /// The sentence the model reads.
    pub fn text(&self) -> String {
        let why = match &self.kind {
            RefusalKind::Denied { condition: None } => format!(
                "denied by the policy rule `{}`",
                self.rule.as_deref().unwrap_or("")
            ),
            RefusalKind::Denied {
                condition: Some(condition),
            } => format!(
                "denied by the policy rule `{}` because {condition}",
                self.rule.as_deref().unwrap_or("")
            ),
            RefusalKind::Hidden => "the policy hides this tool (`hide`)".to_owned(),
            RefusalKind::NotAllowed => {
                "no policy rule allows this tool (the default is deny)".to_owned()
            }
            RefusalKind::RateLimited {
                counter,
                max,
                window,
                retry_after,
            } => format!(
                "rate limit {counter} ({max} per {window}) reached; retry in {} s",
                retry_after_ms(*retry_after).div_ceil(1000)
            ),
            RefusalKind::InvalidArguments { errors, more } => {
                let mut list: Vec<String> = errors
                    .iter()
                    .map(|e| {
                        let at = if e.pointer.is_empty() {
                            "(arguments)"
                        } else {
                            &e.pointer
                        };
                        format!("{at}: {}", e.message)
                    })
                    .collect();
                match more {
                    Some(0) => {}
                    Some(more) => list.push(format!("and {more} more")),
                    None => list.push(format!(
                        "(the first error only: arguments of more than {MAX_COUNTED_VALUES} \
                         values are not checked for every error)"
                    )),
                }
                format!("arguments do not match the policy: {}", list.join("; "))
            }
            RefusalKind::ApprovalDeclined { timed_out: false } => {
                "a person did not approve this call".to_owned()
            }
            RefusalKind::ApprovalDeclined { timed_out: true } => {
                "nobody answered the approval prompt in time".to_owned()
            }
            RefusalKind::ApprovalStateRefused { why } => format!(
                "this call needs a person's approval, and {why}; make the call again \
                 without requestState to be asked afresh"
            ),
            RefusalKind::ApprovalStatesFull => format!(
                "this call needs a person's approval, and toolwarden keeps as many approval \
                 states as it can ({}, for --approval-timeout each); try again later",
                crate::session::request_state::MAX_SPENT
            ),
            RefusalKind::ApprovalUnavailable { busy: false } => {
                "this call needs a person's approval and the client cannot ask for it".to_owned()
            }
            RefusalKind::ApprovalUnavailable { busy: true } => {
                "this call needs a person's approval and as many calls as toolwarden holds \
                 at once (16, or --max-message-bytes in all) are waiting for one already; \
                 try again once they are answered"
                    .to_owned()
            }
            RefusalKind::ApprovalDenied { by, reason } => {
                let by = by.as_deref().map(|b| format!(" ({b})")).unwrap_or_default();
                match reason {
                    Some(reason) => format!("a person{by} denied this call: {reason}"),
                    None => format!("a person{by} denied this call"),
                }
            }
            RefusalKind::InboxUnavailable { why } => format!(
                "this call needs a person's approval; the client cannot ask for it, and {why}"
            ),
            RefusalKind::ApprovalPending { id, expires_in } => format!(
                "this call needs a person's approval, which has not been given yet. It waits as \
                 approval {id}: a person approves it with `toolwarden approvals approve {id}`. \
                 Tell the user, then make this same call again, with the same arguments, once \
                 they have approved it (within {} min)",
                expires_in.as_secs().div_ceil(60)
            ),
            RefusalKind::AuditUnavailable => {
                "the audit log cannot be written and toolwarden runs with --audit-required"
                    .to_owned()
            }
            RefusalKind::StateUnavailable { retry_after } => format!(
                "toolwarden cannot reach the state store that counts this call's limits; retry in {} s",
                retry_after_ms(*retry_after).div_ceil(1000)
            ),
            RefusalKind::ToolChanged { review } => format!(
                "the server changed this tool's definition since it was pinned; it is withheld \
                 until a person reviews the change (`{review}`) and updates the pin"
            ),
            RefusalKind::ToolUnpinned {
                review,
                listed: true,
            } => format!(
                "this tool is not in the pin file; it is withheld until a person reviews it \
                 (`{review}`) and pins it"
            ),
            RefusalKind::ToolUnpinned { listed: false, .. } => {
                "toolwarden has not checked this tool's definition against the pin file yet: \
                 list the tools (tools/list) first"
                    .to_owned()
            }
        };
        match &self.reason {
            Some(reason) => format!(
                "toolwarden: `{}` refused: {why}. Reason: {reason}",
                self.tool
            ),
            None => format!("toolwarden: `{}` refused: {why}", self.tool),
        }
    }

    /// `_meta["toolwarden/decision"]`.
    pub fn meta(&self) -> DecisionMeta<'_> {
        let mut meta = DecisionMeta {
            decision: self.decision(),
            tool: &self.tool,
            rule: self.rule.as_deref(),
            reason: self.reason.as_deref(),
            counter: None,
            max: None,
            window_seconds: None,
            retry_after_ms: None,
            errors: None,
            more_errors: None,
            condition: None,
            approval_id: None,
        };
        match &self.kind {
            RefusalKind::RateLimited {
                counter,
                max,
                window,
                retry_after,
            } => {
                meta.counter = Some(counter);
                meta.max = Some(*max);
                meta.window_seconds = Some(window.seconds);
                meta.retry_after_ms = Some(retry_after_ms(*retry_after));
            }
            RefusalKind::InvalidArguments { errors, more } => {
                meta.errors = Some(errors);
                meta.more_errors = more.filter(|&n| n > 0);
            }
            RefusalKind::StateUnavailable { retry_after } => {
                meta.retry_after_ms = Some(retry_after_ms(*retry_after));
            }
            RefusalKind::Denied { condition } => meta.condition = condition.as_deref(),
            RefusalKind::ApprovalPending { id, .. } => meta.approval_id = Some(id),
            _ => {}
        }
        meta
    }

    /// The `result` of the refusal: a tool result with `isError`, so the
    /// model reads it. A stateless (2026-07-28) request also gets
    /// `resultType`.
    pub fn to_result(&self, stateless: bool) -> String {
        let result = RefusalResult {
            content: [TextContent {
                kind: "text",
                text: self.text(),
            }],
            is_error: true,
            meta: MetaField {
                decision: self.meta(),
            },
            result_type: stateless.then_some("complete"),
        };
        serde_json::to_string(&result).expect("a refusal serializes")
    }
}

#[derive(Serialize)]
struct RefusalResult<'a> {
    content: [TextContent; 1],
    #[serde(rename = "isError")]
    is_error: bool,
    #[serde(rename = "_meta")]
    meta: MetaField<'a>,
    #[serde(rename = "resultType", skip_serializing_if = "Option::is_none")]
    result_type: Option<&'static str>,
}

#[derive(Serialize)]
struct TextContent {
    #[serde(rename = "type")]
    kind: &'static str,
    text: String,
}

#[derive(Serialize)]
struct MetaField<'a> {
    #[serde(rename = "toolwarden/decision")]
    decision: DecisionMeta<'a>,
}

/// The machine-readable part of a refusal.
#[derive(Debug, Serialize)]
pub struct DecisionMeta<'a> {
    pub decision: &'static str,
    pub tool: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counter: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// `approval_pending`: the approval's id in the inbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<&'a [SchemaError]>,
    /// Schema errors left out of `errors`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub more_errors: Option<usize>,
    /// The `deny_if` conditions that held, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<&'a str>,
}

/// Milliseconds, rounded up: retrying after this long always passes.
fn retry_after_ms(d: Duration) -> u64 {
    d.as_nanos().div_ceil(1_000_000) as u64
}

#[cfg(test)]
mod tests;
