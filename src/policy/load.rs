//! Reading a policy file and compiling it: every mistake is found here, at
//! start-up, and named by its place in the file (a JSON pointer), so that a
//! bad policy never starts the server.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use anyhow::Context;

use super::condition::{self, Condition, Group};
use super::file::{
    Action, ConditionGroup, ConditionSpec, DefaultAction, LimitSpec, Pointers, PolicyFile,
    RequireSpec, RuleSpec, Scope,
};
use super::glob::{overlap, Glob};
use super::limits::Counter;
use super::lint;
use super::{Policy, Rule};

/// A policy that does not load: where, and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadError {
    /// A JSON pointer such as `/tools/retry_deploy/limits/0/window`, or a
    /// line and column for text that is not JSON.
    pub at: String,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.at.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.at, self.message)
        }
    }
}

impl std::error::Error for LoadError {}

fn error(at: impl Into<String>, message: impl Into<String>) -> LoadError {
    LoadError {
        at: at.into(),
        message: message.into(),
    }
}

/// The largest policy file read: far beyond any real policy, and a bound
/// on what a path pointed at something endless (`/dev/zero`) can take.
pub const MAX_POLICY_BYTES: u64 = 16 << 20;

/// Reads and compiles the policy at `path`.
pub fn load(path: &Path) -> anyhow::Result<Policy> {
    let bytes =
        read_file(path).with_context(|| format!("{}: cannot read the policy", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| anyhow::anyhow!("{}: cannot read the policy: {e}", path.display()))?;
    Policy::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The bytes of the policy file at `path` (through any links): a regular
/// file of at most [`MAX_POLICY_BYTES`], or an error. Opened without
/// blocking, so that a FIFO cannot hold the reader up, and checked again
/// once open (the path may have been swapped since the first look).
pub fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let regular = |meta: &std::fs::Metadata| {
        if !meta.is_file() {
            return Err(std::io::Error::other(
                "not a regular file (a policy is read from a file only)",
            ));
        }
        if meta.len() > MAX_POLICY_BYTES {
            return Err(too_large());
        }
        Ok(())
    };
    regular(&std::fs::metadata(path)?)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    regular(&file.metadata()?)?;
    let mut bytes = Vec::new();
    file.take(MAX_POLICY_BYTES + 1).read_to_end(&mut bytes)?;
    // A file that grew since it was looked at is still cut at the bound.
    if bytes.len() as u64 > MAX_POLICY_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

fn too_large() -> std::io::Error {
    std::io::Error::other(format!("larger than {} MiB", MAX_POLICY_BYTES >> 20))
}

/// One JSON pointer token: `~` and `/` escaped as RFC 6901 says.
fn token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        out.push('/');
        match segment {
            Segment::Seq { index } => out.push_str(&index.to_string()),
            Segment::Map { key } => out.push_str(&token(key)),
            Segment::Enum { variant } => out.push_str(&token(variant)),
            Segment::Unknown => out.push('?'),
        }
    }
    out
}

impl Policy {
    /// Parses and compiles a policy.
    pub fn from_json(text: &str) -> Result<Policy, LoadError> {
        // Duplicate keys first: serde would keep the last of two rules for
        // one tool without a word.
        crate::wire::json::validate(text.as_bytes(), crate::wire::json::Check::Strict).map_err(
            |e| {
                let (line, column) = e.line_column(text);
                error(format!("line {line}, column {column}"), e.message())
            },
        )?;
        let mut de = serde_json::Deserializer::from_str(text);
        let file: PolicyFile = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let at = pointer_of(e.path());
            let inner = e.into_inner();
            error(
                if at == "/." { String::new() } else { at },
                strip_position(&inner),
            )
        })?;
        let mut policy = Policy::compile(file)?;
        use sha2::Digest;
        let digest = sha2::Sha256::digest(text.as_bytes());
        policy.fingerprint = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Ok(policy)
    }

    fn compile(file: PolicyFile) -> Result<Policy, LoadError> {
        if file.version != "1" {
            return Err(error(
                "/version",
                format!(
                    "version {:?} is not supported; this toolwarden reads version \"1\"",
                    file.version
                ),
            ));
        }
        let mut counters = Counters::default();
        let mut global_limits = Vec::new();
        // `all_tools.limits` is PolicyLayer's spelling of the same thing.
        let top = file
            .limits
            .iter()
            .enumerate()
            .map(|(i, spec)| (spec, format!("/limits/{i}")));
        let all_tools = file
            .all_tools
            .iter()
            .flat_map(|a| a.limits.iter().enumerate());
        let all_tools = all_tools.map(|(i, spec)| (spec, format!("/all_tools/limits/{i}")));
        for (spec, at) in top.chain(all_tools) {
            let counter = counters.add(spec, &at, || "limits".to_owned())?;
            // A counter named twice is charged once.
            if !global_limits.contains(&counter) {
                global_limits.push(counter);
            }
        }
        let mut hide = Vec::new();
        for (i, name) in file.hide.iter().enumerate() {
            if name.is_empty() {
                return Err(error(format!("/hide/{i}"), "a tool name cannot be empty"));
            }
            hide.push(Glob::new(name));
        }

        let mut rules = Vec::new();
        let mut warnings = Vec::new();
        let mut exact = BTreeMap::new();
        let mut globs: Vec<(Glob, usize)> = Vec::new();
        for (pattern, spec) in &file.tools {
            let at = format!("/tools/{}", token(pattern));
            if pattern.is_empty() {
                return Err(error(at, "a tool name cannot be empty"));
            }
            let rule = compile_rule(pattern, spec, &at, &mut counters, &global_limits)?;
            if let Some(schema) = &spec.arguments {
                warnings.extend(lint::unknown_keywords(schema, &format!("{at}/arguments")));
            }
            if let Some(glob) = hide.iter().find(|g| g.matches(pattern)) {
                warnings.push(error(
                    at.clone(),
                    format!(
                        "`hide` lists {:?}, so this rule never applies: the tool is hidden and refused",
                        glob.as_str()
                    ),
                ));
            }
            let index = rules.len();
            rules.push(rule);
            if pattern.contains('*') {
                globs.push((Glob::new(pattern), index));
            } else {
                exact.insert(pattern.clone(), index);
            }
        }
        check_ties(&globs)?;
        globs.sort_by_key(|(g, _)| std::cmp::Reverse(g.literal_len()));

        Ok(Policy {
            default: file.default.unwrap_or(DefaultAction::Deny),
            hide_denied: file.hide_denied.unwrap_or(true),
            hide,
            exact,
            globs,
            rules,
            global_limits,
            counters: counters.list,
            warnings,
            fingerprint: String::new(),
        })
    }
}

/// serde_json appends "at line 1 column 5" to its messages; the pointer
/// says where instead.
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

fn compile_rule(
    pattern: &str,
    spec: &RuleSpec,
    at: &str,
    counters: &mut Counters,
    global_limits: &[usize],
) -> Result<Rule, LoadError> {
    let mut limits = Vec::new();
    for (i, limit) in spec.limits.iter().enumerate() {
        let counter = counters.add(limit, &format!("{at}/limits/{i}"), || pattern.to_owned())?;
        if !limits.contains(&counter) {
            limits.push(counter);
        }
    }
    let schema = match &spec.arguments {
        None => None,
        Some(schema) => Some(
            jsonschema::options()
                .should_validate_formats(true)
                .with_pattern_options(
                    jsonschema::PatternOptions::fancy_regex()
                        .backtrack_limit(condition::PATTERN_BACKTRACK_LIMIT)
                        .size_limit(condition::PATTERN_SIZE_LIMIT)
                        .dfa_size_limit(condition::PATTERN_DFA_SIZE_LIMIT),
                )
                .build(schema)
                .map_err(|e| {
                    error(
                        format!("{at}/arguments"),
                        format!("not a usable JSON Schema: {e}"),
                    )
                })?,
        ),
    };
    for (i, pointer) in spec.redact.iter().enumerate() {
        if !pointer.is_empty() && !pointer.starts_with('/') {
            return Err(error(
                format!("{at}/redact/{i}"),
                format!("{pointer:?} is not a JSON pointer; write it as \"/{pointer}\""),
            ));
        }
    }
    let reason = match (&spec.reason, &spec.on_deny) {
        (Some(_), Some(_)) => {
            return Err(error(
                format!("{at}/on_deny"),
                "`on_deny` is another name for `reason`: give one of them",
            ))
        }
        (reason, on_deny) => reason.clone().or_else(|| on_deny.clone()),
    };
    let require = spec
        .require
        .iter()
        .enumerate()
        .map(|(i, entry)| compile_require(entry, &format!("{at}/require/{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    let deny_if = spec
        .deny_if
        .iter()
        .enumerate()
        .map(|(i, group)| compile_group(group, &format!("{at}/deny_if/{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    // A counter named at the top and in the rule, or twice, is charged once.
    let mut all = global_limits.to_vec();
    for &i in &limits {
        if !all.contains(&i) {
            all.push(i);
        }
    }
    Ok(Rule {
        counters: all,
        pattern: pattern.to_owned(),
        action: spec.action.unwrap_or(Action::Allow),
        reason,
        require,
        deny_if,
        hide: spec.hide,
        redact: spec.redact.clone(),
        limits,
        backtracks: spec.arguments.as_ref().is_some_and(condition::backtracks),
        schema,
    })
}

fn compile_group(group: &ConditionGroup, at: &str) -> Result<Group, LoadError> {
    let conditions = group
        .conditions
        .iter()
        .enumerate()
        .map(|(i, c)| Condition::compile(c, &format!("{at}/conditions/{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Group {
        conditions,
        on_deny: group.on_deny.clone(),
    })
}

/// A `require` entry: one condition, or a group of them with its own
/// `on_deny`.
fn compile_require(entry: &RequireSpec, at: &str) -> Result<Group, LoadError> {
    match entry {
        RequireSpec {
            conditions: Some(conditions),
            path: None,
            op: None,
            value: None,
            on_deny,
        } => compile_group(
            &ConditionGroup {
                conditions: conditions.clone(),
                on_deny: on_deny.clone(),
            },
            at,
        ),
        RequireSpec {
            conditions: None,
            path: Some(path),
            op: Some(op),
            value,
            on_deny,
        } => {
            let spec = ConditionSpec {
                path: path.clone(),
                op: *op,
                value: value.clone(),
            };
            Ok(Group {
                conditions: vec![Condition::compile(&spec, at)?],
                on_deny: on_deny.clone(),
            })
        }
        RequireSpec {
            conditions: Some(_),
            ..
        } => Err(error(
            at,
            "an entry is either a condition (path, op, value) or a group (conditions, on_deny), not both",
        )),
        RequireSpec { path: None, .. } => Err(error(at, "missing field `path`")),
        RequireSpec { op: None, .. } => Err(error(at, "missing field `op`")),
    }
}

/// Two globs with as many literal characters that can match one name would
/// leave the choice between them to chance.
fn check_ties(globs: &[(Glob, usize)]) -> Result<(), LoadError> {
    for (i, (a, _)) in globs.iter().enumerate() {
        for (b, _) in &globs[i + 1..] {
            if a.literal_len() == b.literal_len() && overlap(a.as_str(), b.as_str()) {
                return Err(error(
                    format!("/tools/{}", token(b.as_str())),
                    format!(
                        "the patterns {:?} and {:?} are equally specific and can match the same tool; \
                         add a rule for the exact names they share, or make one more specific",
                        a.as_str(),
                        b.as_str()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The counters of a policy: one per counter name, one per unnamed limit.
/// An unnamed limit's counter is named after its rule's pattern (`limits`
/// at the top), not after its place in a list, so that adding or moving a
/// limit leaves the others' budgets alone; two alike in one rule are one.
#[derive(Default)]
struct Counters {
    list: Vec<Counter>,
    /// Name → (index, where it was first defined).
    named: HashMap<String, (usize, String)>,
    /// (Derived name, definition) → (index, where it was first defined).
    private: HashMap<(String, String), (usize, String)>,
}

impl Counters {
    fn add(
        &mut self,
        spec: &LimitSpec,
        at: &str,
        private_name: impl Fn() -> String,
    ) -> Result<usize, LoadError> {
        let scope = spec.scope.unwrap_or(Scope::Grant);
        // A bucket refills one call every window / max, counted in whole
        // microseconds: that must be at least one.
        if u64::from(spec.max.get()) > spec.window.seconds.saturating_mul(1_000_000) {
            return Err(error(
                format!("{at}/max"),
                format!(
                    "{} calls per {} is more than one a microsecond",
                    spec.max, spec.window
                ),
            ));
        }
        let per = spec.per.as_ref().map(|p| p.list()).unwrap_or_default();
        for (i, pointer) in per.iter().enumerate() {
            let place = match &spec.per {
                Some(Pointers::Many(_)) => format!("{at}/per/{i}"),
                _ => format!("{at}/per"),
            };
            check_pointer(pointer, &place)?;
        }
        if let Some(cost) = &spec.cost {
            check_pointer(cost, &format!("{at}/cost"))?;
        }
        let mut counter = Counter {
            name: spec.counter.clone().unwrap_or_else(&private_name),
            window: spec.window,
            max: spec.max,
            scope,
            per,
            cost: spec.cost.clone(),
            on_deny: spec.on_deny.clone(),
            definition: String::new(),
        };
        counter.definition = counter.definition(spec.counter.is_some());
        let Some(name) = &spec.counter else {
            let id = (counter.name.clone(), counter.definition.clone());
            if let Some((index, first)) = self.private.get(&id) {
                // The same budget twice would be one bucket charged twice.
                if self.list[*index].on_deny != counter.on_deny {
                    return Err(error(
                        at,
                        format!(
                            "this limit is the one at {first} with another on_deny; \
                             give it once, or name a counter for each"
                        ),
                    ));
                }
                return Ok(*index);
            }
            self.list.push(counter);
            let index = self.list.len() - 1;
            self.private.insert(id, (index, at.to_owned()));
            return Ok(index);
        };
        if let Some((index, first)) = self.named.get(name) {
            let c = &self.list[*index];
            let same = (c.window, c.max, c.scope, &c.per, &c.cost, &c.on_deny)
                == (
                    counter.window,
                    counter.max,
                    counter.scope,
                    &counter.per,
                    &counter.cost,
                    &counter.on_deny,
                );
            if !same {
                return Err(error(
                    at,
                    format!(
                        "counter {name:?} is {} (scope {}) at {first} but {} (scope {scope}) here; \
                         limits that share a counter must agree (on_deny too)",
                        c.terms(),
                        c.scope,
                        counter.terms()
                    ),
                ));
            }
            return Ok(*index);
        }
        self.list.push(counter);
        let index = self.list.len() - 1;
        self.named.insert(name.clone(), (index, at.to_owned()));
        Ok(index)
    }
}

/// A `per` or `cost` pointer must be a JSON pointer into the arguments.
fn check_pointer(pointer: &str, at: &str) -> Result<(), LoadError> {
    if pointer.starts_with('/') {
        Ok(())
    } else {
        Err(error(
            at,
            format!(
                "{pointer:?} is not a JSON pointer into the arguments; write it as \"/{pointer}\""
            ),
        ))
    }
}
