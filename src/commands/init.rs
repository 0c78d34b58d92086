//! `toolwarden init [--out FILE] [--] CMD...`: a first policy for a server,
//! written from the tools it lists. Default deny; tools that only read are
//! allowed, unless what they read looks like secrets or the environment;
//! those and destructive ones need a person's approval; the rest are
//! allowed with a limit. Every rule checks the call's arguments against the
//! server's own `inputSchema` and says in its `description` why it is what
//! it is.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::InitArgs;
use crate::commands::check::{self, Tool};
use crate::commands::pin;
use crate::plural::count;
use crate::policy::Policy;

/// `toolwarden init [--out FILE] [--pin FILE] CMD...`: the policy, when it
/// goes to stdout, and the exit code (0 with the policy written, 1 when
/// the server's tools cannot be listed, 2 when a file cannot be written).
pub fn run(args: &InitArgs) -> (String, u8) {
    let (tools, server) = match check::server_tools(&args.command, &args.listing) {
        Ok(listed) => listed,
        Err(code) => return (String::new(), code),
    };
    // Neither file is written when one of them exists.
    for path in [&args.out, &args.pin].into_iter().flatten() {
        if path.exists() {
            eprintln!(
                "toolwarden: {}: exists; init never writes over a file",
                path.display()
            );
            return (String::new(), 2);
        }
    }
    if let Some(pin) = &args.pin {
        if let Err(e) = write_new(pin, &pin::lock_file(&tools, &server)) {
            eprintln!("toolwarden: {}: {e}", pin.display());
            return (String::new(), 2);
        }
        eprintln!(
            "toolwarden: pinned {} in {}",
            count(tools.len(), "tool"),
            pin.display()
        );
    }
    let text = policy_for(&tools, &server);
    let Some(out) = &args.out else {
        return (text, 0);
    };
    match write_new(out, &text) {
        Ok(()) => {
            eprintln!(
                "toolwarden: wrote {} ({}); review it, then `toolwarden check {} -- {}`",
                out.display(),
                count(tools.len(), "tool"),
                out.display(),
                server
            );
            (String::new(), 0)
        }
        Err(e) => {
            eprintln!("toolwarden: {}: {e}", out.display());
            (String::new(), 2)
        }
    }
}

/// Writes `text` to a new file at `path`, never over an existing one
/// (`init`, and `pin --out`).
pub(crate) fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    std::io::Write::write_all(&mut file, text.as_bytes())
}

/// Words in a tool's name that mean it only reads.
const READS: &[&str] = &[
    "get", "list", "search", "read", "describe", "fetch", "find", "show", "view", "query",
    "lookup", "inspect", "count", "status", "health", "stream", "download", "check", "browse",
];

/// Words that mean it destroys something.
const DESTROYS: &[&str] = &[
    "delete",
    "remove",
    "drop",
    "destroy",
    "purge",
    "terminate",
    "revoke",
    "wipe",
    "erase",
    "kill",
    "truncate",
    "uninstall",
    "reset",
    "rm",
];

/// Words in a tool's name that say it reads secrets or the environment
/// (`get-env`, `read_secret`, `listApiKeys`); `api` followed by `key` too.
const SECRET_NAMES: &[&str] = &[
    "env",
    "envs",
    "environ",
    "environment",
    "dotenv",
    "secret",
    "secrets",
    "credential",
    "credentials",
    "creds",
    "token",
    "tokens",
    "password",
    "passwords",
    "passwd",
    "apikey",
    "apikeys",
];

/// What a description says when the tool hands out secrets or the
/// environment ("Returns all environment variables"), unless the same
/// sentence says it does not (one of [`NOT`]).
const SECRET_PHRASES: &[&str] = &[
    "environment variable",
    "env var",
    "secret",
    "credential",
    "password",
    "api key",
    "api_key",
    "apikey",
    "access token",
    "auth token",
    "private key",
];

/// What makes a sentence about secrets say they are kept out.
const NOT: &[&str] = &[
    "never",
    "omitted",
    "excluded",
    "redacted",
    "not included",
    "not returned",
    "not shown",
    "write-only",
    "-free",
    "no credential",
    "no secret",
    "no password",
    "no api key",
];

/// Calls a minute for tools that change something but destroy nothing.
const WRITES_PER_MINUTE: u32 = 10;

/// What init makes of one tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Reads,
    /// Reads, and what it reads may be secrets or the server's environment:
    /// a person says yes to each call.
    ReadsSecrets,
    Destroys,
    Writes,
}

#[derive(Serialize)]
struct OutPolicy {
    version: &'static str,
    description: String,
    default: &'static str,
    tools: BTreeMap<String, OutRule>,
}

#[derive(Serialize)]
struct OutRule {
    description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    limits: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<Value>,
}

/// The words of a tool name: `list-endpoints`, `getFileContents` and
/// `flowforge_delete_run` are cut at punctuation and at a lower-to-upper
/// case change, and lowered.
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut last_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            last_lower = false;
            continue;
        }
        if c.is_uppercase() && last_lower && !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        last_lower = c.is_lowercase() || c.is_ascii_digit();
        word.extend(c.to_lowercase());
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// Why a tool looks like it reads secrets or the environment, if it does:
/// a word of its name, or a phrase of its description in a sentence that
/// does not say they are left out.
fn reads_secrets(tool: &Tool) -> Option<String> {
    let words = words(&tool.name);
    if let Some(w) = words.iter().find(|w| SECRET_NAMES.contains(&w.as_str())) {
        return Some(format!("its name says {w:?}"));
    }
    if words
        .windows(2)
        .any(|w| w[0] == "api" && w[1].starts_with("key"))
    {
        return Some("its name says \"api key\"".into());
    }
    let description = tool.definition.get("description")?.as_str()?;
    for sentence in description.split(['.', ';', '\n']) {
        let lowered = sentence.to_lowercase();
        let Some(phrase) = SECRET_PHRASES.iter().find(|p| lowered.contains(*p)) else {
            continue;
        };
        if NOT.iter().any(|not| lowered.contains(not)) {
            continue;
        }
        return Some(format!("its description says {phrase:?}"));
    }
    None
}

/// How a tool is classed, and why, in words for its rule's description.
/// A tool that reads what looks like secrets or the environment is never
/// taken to only read, whatever its annotations say.
pub fn classify(tool: &Tool) -> (Kind, String) {
    let (kind, why) = classify_by_effect(tool);
    if kind != Kind::Reads {
        return (kind, why);
    }
    match reads_secrets(tool) {
        Some(secrets) => (Kind::ReadsSecrets, format!("{why}, and {secrets}")),
        None => (kind, why),
    }
}

/// Reads, destroys or writes, by annotations then by name.
fn classify_by_effect(tool: &Tool) -> (Kind, String) {
    let hint = |key: &str| {
        tool.definition
            .get("annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_bool)
    };
    if hint("destructiveHint") == Some(true) {
        return (Kind::Destroys, "annotations.destructiveHint is true".into());
    }
    if hint("readOnlyHint") == Some(true) {
        return (Kind::Reads, "annotations.readOnlyHint is true".into());
    }
    let words = words(&tool.name);
    if let Some(w) = words.iter().find(|w| DESTROYS.contains(&w.as_str())) {
        return (Kind::Destroys, format!("its name says {w:?}"));
    }
    // A name that starts with a reading verb ("get_job_status"), or any
    // reading word when none of it writes.
    if let Some(w) = words.first().filter(|w| READS.contains(&w.as_str())) {
        return (Kind::Reads, format!("its name says {w:?}"));
    }
    (
        Kind::Writes,
        "neither its annotations nor its name say it only reads".into(),
    )
}

/// The policy for `tools`, as the text of a file; `server` names the
/// command in its description.
pub fn policy_for(tools: &[Tool], server: &str) -> String {
    let mut rules = BTreeMap::new();
    let (mut reads, mut secrets, mut destroys, mut writes) = (0, 0, 0, 0);
    for tool in tools {
        let (kind, why) = classify(tool);
        let schema = usable_schema(tool);
        let checked = if schema.is_some() {
            "; arguments checked against the server's inputSchema"
        } else {
            ""
        };
        let rule = match kind {
            Kind::Reads => {
                reads += 1;
                OutRule {
                    description: format!("Reads only ({why}): allowed{checked}."),
                    action: None,
                    limits: Vec::new(),
                    arguments: schema,
                }
            }
            Kind::ReadsSecrets => {
                secrets += 1;
                OutRule {
                    description: format!(
                        "Reads, maybe secrets or the server's environment ({why}): each call \
                         waits for a person's yes{checked}."
                    ),
                    action: Some("approve"),
                    limits: Vec::new(),
                    arguments: schema,
                }
            }
            Kind::Destroys => {
                destroys += 1;
                OutRule {
                    description: format!(
                        "Destructive ({why}): each call waits for a person's yes{checked}."
                    ),
                    action: Some("approve"),
                    limits: Vec::new(),
                    arguments: schema,
                }
            }
            Kind::Writes => {
                writes += 1;
                OutRule {
                    description: format!(
                        "Changes something ({why}): allowed, {WRITES_PER_MINUTE} calls a minute{checked}."
                    ),
                    action: None,
                    limits: vec![json!({
                        "counter": tool.name,
                        "window": "minute",
                        "max": WRITES_PER_MINUTE,
                        "scope": "grant"
                    })],
                    arguments: schema,
                }
            }
        };
        rules.insert(tool.name.clone(), rule);
    }
    let policy = OutPolicy {
        version: "1",
        description: format!(
            "Written by toolwarden init from the {} of `{server}`: {reads} read and are \
             allowed, {secrets} read what may be secrets and {destroys} destroy and need a \
             person's approval, {writes} change something and are limited; tools the server adds \
             later are denied until a rule names them. Review it, then enforce it (or run it \
             with --monitor first).",
            crate::plural::count(tools.len(), "tool")
        ),
        default: "deny",
        tools: rules,
    };
    let mut text = serde_json::to_string_pretty(&policy).expect("a policy serializes");
    text.push('\n');
    text
}

/// The tool's `inputSchema`, when toolwarden can check calls against it:
/// one that does not compile (a `$ref` to another document, say) is left
/// out, and the rule's description says so.
fn usable_schema(tool: &Tool) -> Option<Value> {
    let schema = tool.definition.get("inputSchema")?;
    let probe = json!({"version": "1", "tools": {"probe": {"arguments": schema}}});
    Policy::from_json(&probe.to_string())
        .ok()
        .map(|_| schema.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, annotations: Value) -> Tool {
        let mut definition = serde_json::Map::new();
        definition.insert("annotations".into(), annotations);
        definition.insert("inputSchema".into(), json!({"type": "object"}));
        Tool {
            name: name.into(),
            definition,
        }
    }

    #[test]
    fn tools_are_classed_by_annotations_then_by_name() {
        for (name, annotations, kind) in [
            ("list-endpoints", json!({}), Kind::Reads),
            ("getFileContents", json!({}), Kind::Reads),
            ("get_job_status", json!({}), Kind::Reads),
            ("flowforge_delete_run", json!({}), Kind::Destroys),
            ("purgeQueue", json!({}), Kind::Destroys),
            ("get_and_delete", json!({}), Kind::Destroys),
            ("create-pod", json!({}), Kind::Writes),
            ("retry_deploy", json!({}), Kind::Writes),
            ("echo", json!({"readOnlyHint": true}), Kind::Reads),
            (
                "get_thing",
                json!({"destructiveHint": true}),
                Kind::Destroys,
            ),
            ("delete_draft", json!({"readOnlyHint": true}), Kind::Reads),
            ("undo", json!({"readOnlyHint": false}), Kind::Writes),
        ] {
            assert_eq!(classify(&tool(name, annotations)).0, kind, "{name}");
        }
        assert_eq!(words("getFileContents"), ["get", "file", "contents"]);
        assert_eq!(words("list-endpoints_v2"), ["list", "endpoints", "v2"]);
    }

    #[test]
    fn tools_that_read_secrets_or_the_environment_need_approval() {
        let described = |name: &str, description: &str| {
            let mut t = tool(name, json!({"readOnlyHint": true}));
            t.definition
                .insert("description".into(), json!(description));
            classify(&t)
        };
        for (name, description, kind) in [
            (
                "get-env",
                "Returns all environment variables, helpful for debugging",
                Kind::ReadsSecrets,
            ),
            ("printEnv", "", Kind::ReadsSecrets),
            ("read_secret", "", Kind::ReadsSecrets),
            ("list_api_keys", "", Kind::ReadsSecrets),
            ("getApiKey", "", Kind::ReadsSecrets),
            ("get_credentials", "", Kind::ReadsSecrets),
            (
                "show_config",
                "Shows the config, API keys included.",
                Kind::ReadsSecrets,
            ),
            (
                "get-registry",
                "Gets a registry. Its password is never included in the response.",
                Kind::Reads,
            ),
            ("get-environment-list", "", Kind::ReadsSecrets),
            ("get_sum", "Adds two numbers.", Kind::Reads),
            ("list_events", "Lists events; no tokens here", Kind::Reads),
            (
                "get-capacity",
                "GPU stock. Credential-free public data.",
                Kind::Reads,
            ),
        ] {
            assert_eq!(described(name, description).0, kind, "{name}");
        }
        let (_, why) = described("get-env", "Returns all environment variables");
        assert_eq!(
            why,
            "annotations.readOnlyHint is true, and its name says \"env\""
        );
        // A destructive tool stays one.
        assert_eq!(
            classify(&tool("delete_secret", json!({}))).0,
            Kind::Destroys
        );
        let text = policy_for(&[tool("get_token", json!({}))], "server");
        let policy = Policy::from_json(&text).unwrap();
        assert_eq!(policy.action("get_token"), crate::policy::Action::Approve);
        assert!(
            text.contains("Reads, maybe secrets or the server's environment (its name says"),
            "{text}"
        );
    }

    #[test]
    fn the_policy_loads_and_decides_as_its_descriptions_say() {
        let tools = [
            tool("list_things", json!({})),
            tool("delete_thing", json!({})),
            tool("make_thing", json!({})),
        ];
        let text = policy_for(&tools, "server");
        let policy = Policy::from_json(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(policy.warnings.is_empty());
        use crate::policy::Action;
        assert_eq!(policy.action("list_things"), Action::Allow);
        assert_eq!(policy.action("delete_thing"), Action::Approve);
        assert_eq!(policy.action("make_thing"), Action::Allow);
        assert_eq!(policy.action("new_tool"), Action::Deny);
        assert!(text.contains("\"Destructive (its name says \\\"delete\\\"): each call waits"));
    }
}
