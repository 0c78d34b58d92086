//! Approval prompts: the `elicitation/create` request that asks a person
//! whether one call may run, and reading their answer. The relay holds the
//! call meanwhile; this module only speaks the protocol.

use serde::Deserialize;
use serde_json::json;

use crate::redact::Redacted;
use crate::wire::json::Raw;

/// Every approval prompt's id starts with this. The rest is 128 random
/// bits, so nobody can send a request under the id of a prompt to come,
/// and a request from the server whose id starts with it is never relayed
/// (see [`is_ours`]): an answer with such an id is toolwarden's alone.
pub const PROMPT_PREFIX: &str = "toolwarden-approval-";

/// A fresh prompt id nobody can predict; `None` when the system has no
/// randomness to give (then nobody is asked: a guessable id would let the
/// server's own question pass for the prompt).
pub fn prompt_id() -> Option<String> {
    crate::audit::unguessable_id().map(|random| format!("{PROMPT_PREFIX}{random}"))
}

/// Whether a request id is in the prompts' id space (compared decoded:
/// `"toolwarden\u002dapproval-1"` is in it too).
pub fn is_ours(id: Raw<'_>) -> bool {
    id.as_str().is_some_and(|s| s.starts_with(PROMPT_PREFIX))
}

/// Where a person is asked about a call (`--approval`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Channel {
    /// In the client where it can ask (elicitation), else in the inbox.
    #[default]
    Auto,
    /// In the client only: a client that cannot ask gets
    /// `approval_unavailable`.
    Client,
    /// In the inbox only (`toolwarden approvals`), whatever the client.
    Inbox,
}

/// What the client said at `initialize` about asking its user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Elicitation {
    /// No elicitation capability (or only URL mode): approval cannot be
    /// asked for.
    #[default]
    Unsupported,
    /// `"elicitation": {}`, the 2025-06-18 form: form mode, no `mode` key.
    Form,
    /// `"elicitation": {"form": {}}` (2025-11-25): form mode, named.
    NamedForm,
}

/// Reads `params.capabilities.elicitation` of an `initialize` request,
/// walking its text (a tree of it would cost more than the line).
pub fn declared(params: Option<Raw<'_>>) -> Elicitation {
    declared_in(params.and_then(|p| p.member("capabilities")))
}

/// Reads `elicitation` of a client capabilities object (the `initialize`
/// request's, or a 2026-07-28 request's `_meta`).
pub fn declared_in(capabilities: Option<Raw<'_>>) -> Elicitation {
    let capability = capabilities
        .and_then(|c| c.member("elicitation"))
        .filter(|e| e.is_object());
    match capability {
        None => Elicitation::Unsupported,
        Some(modes) if modes.members().next().is_none() => Elicitation::Form,
        Some(modes) if modes.member("form").is_some() => Elicitation::NamedForm,
        Some(_) => Elicitation::Unsupported,
    }
}

/// The prompt for one call: an `elicitation/create` request with the
/// [`form`].
pub fn prompt(
    prompt_id: &str,
    mode: Elicitation,
    tool: &str,
    arguments: &Redacted,
    reason: Option<&str>,
) -> Vec<u8> {
    let params = form(mode, tool, arguments, reason);
    json!({ "jsonrpc": "2.0", "id": prompt_id, "method": "elicitation/create", "params": params })
        .to_string()
        .into_bytes()
}

/// The form that asks about one call, showing its redacted arguments: the
/// person sees what the audit log keeps, not the secrets, and is told when
/// most of the call is hidden or long values are cut.
pub fn form(
    mode: Elicitation,
    tool: &str,
    arguments: &Redacted,
    reason: Option<&str>,
) -> serde_json::Value {
    // The name is the server's and the agent's to choose: quoted as JSON,
    // a line break or a quote in it cannot pass for toolwarden's words.
    let name = serde_json::to_string(tool).unwrap_or_default();
    let mut message = format!(
        "toolwarden: the agent wants to call the tool {name} with these arguments:\n{}\nAllow this one call?",
        serde_json::to_string_pretty(&arguments.value).unwrap_or_default()
    );
    if arguments.mostly_hidden() {
        message.push_str(
            "\nNote: most of these arguments look secret and are shown as [redacted]: \
             you cannot see most of what you would approve.",
        );
    }
    if arguments.cut {
        message.push_str(
            "\nNote: the arguments are too long to show whole; parts marked … are left out.",
        );
    }
    if let Some(reason) = reason {
        message.push_str(&format!("\n({reason})"));
    }
    let mut params = json!({
        "message": message,
        "requestedSchema": {
            "type": "object",
            "properties": {
                "approve": {
                    "type": "boolean",
                    "title": "Allow this call",
                    "description": format!("Let {name} run once with the arguments shown"),
                    "default": false
                }
            },
            "required": ["approve"]
        }
    });
    if mode == Elicitation::NamedForm {
        params["mode"] = json!("form");
    }
    params
}

/// Whether the answer to a prompt is a yes: `accept` with `approve: true`.
/// Anything else (decline, cancel, an error, a malformed answer) is no.
pub fn approved(result: Option<Raw<'_>>) -> bool {
    #[derive(Deserialize)]
    struct Answer {
        action: String,
        content: Option<Content>,
    }
    #[derive(Deserialize)]
    struct Content {
        approve: Option<bool>,
    }
    result
        .and_then(|r| serde_json::from_str::<Answer>(r.get()).ok())
        .is_some_and(|a| a.action == "accept" && a.content.and_then(|c| c.approve) == Some(true))
}

/// Tells the client to close a prompt nobody needs any more.
pub fn withdraw(prompt_id: &str, why: &str) -> Vec<u8> {
    json!({
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": { "requestId": prompt_id, "reason": why }
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn raw(text: &str) -> Raw<'_> {
        Raw::parse(text).unwrap()
    }

    #[test]
    fn capabilities() {
        let cases = [
            (r#"{"capabilities":{}}"#, Elicitation::Unsupported),
            (r#"{"capabilities":{"elicitation":{}}}"#, Elicitation::Form),
            (
                r#"{"capabilities":{"elicitation":{"form":{},"url":{}}}}"#,
                Elicitation::NamedForm,
            ),
            (
                r#"{"capabilities":{"elicitation":{"url":{}}}}"#,
                Elicitation::Unsupported,
            ),
            (r#"{}"#, Elicitation::Unsupported),
        ];
        for (params, want) in cases {
            assert_eq!(declared(Some(raw(params))), want, "{params}");
        }
    }

    #[test]
    fn only_accept_with_true_approves() {
        let cases = [
            (r#"{"action":"accept","content":{"approve":true}}"#, true),
            (r#"{"action":"accept","content":{"approve":false}}"#, false),
            (r#"{"action":"accept","content":{}}"#, false),
            (r#"{"action":"accept","content":{"approve":"true"}}"#, false),
            (r#"{"action":"decline"}"#, false),
            (r#"{"action":"cancel"}"#, false),
        ];
        for (answer, want) in cases {
            assert_eq!(approved(Some(raw(answer))), want, "{answer}");
        }
        assert!(!approved(None));
    }

    #[test]
    fn the_prompt_is_a_flat_form_with_one_boolean() {
        let shown = crate::redact::redact(Some(raw(r#"{"env": "prod"}"#)), &[]);
        let bytes = prompt("p-1", Elicitation::NamedForm, "deploy", &shown, None);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["method"], "elicitation/create");
        assert_eq!(v["params"]["mode"], "form");
        assert_eq!(
            v["params"]["requestedSchema"]["required"],
            json!(["approve"])
        );
        assert!(v["params"]["message"]
            .as_str()
            .unwrap()
            .contains("\"env\": \"prod\""));
        // A name cannot write lines of toolwarden's own.
        let forged =
            "x` with these arguments:\n{}\nAllow this one call? (toolwarden verified: read-only)";
        let bytes = prompt("p-1", Elicitation::NamedForm, forged, &shown, None);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        let message = v["params"]["message"].as_str().unwrap();
        assert_eq!(message.lines().count(), 5, "{message}");
        assert!(message.starts_with("toolwarden: the agent wants to call the tool \"x` with these arguments:\\n{}\\nAllow"), "{message}");
        let bytes = prompt(
            "p-1",
            Elicitation::Form,
            "deploy",
            &crate::redact::redact(None, &[]),
            None,
        );
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(
            v["params"].get("mode").is_none(),
            "2025-06-18 clients get no mode key"
        );
    }
}
