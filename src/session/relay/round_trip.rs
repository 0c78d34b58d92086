//! Approval for 2026-07-28 clients, which take no requests from a server:
//! a call that needs approval is answered `input_required`, holding
//! toolwarden's form under [`INPUT_KEY`] and a sealed state
//! (request_state.rs). The client asks its user and retries the call with
//! the answer and the state. A yes is decided again (its limits charged
//! then) and forwarded without toolwarden's answer and state; anything
//! else is refused and never forwarded.
//!
//! When the server of an approved call answers `input_required` itself,
//! its state is wrapped in one of toolwarden's, so that the client's next
//! round is known as the same approved call and not asked about again.

use std::io::{self, Write};

use serde_json::json;
use tracing::{info, warn};

use super::{loggable, Relay};
use crate::inbox;
use crate::policy::{RefusalKind, ToolCall, Verdict};
use crate::session::approval::{self, Elicitation};
use crate::session::request_state::{Invalid, Kind, Opened, Sealer, PREFIX};
use crate::wire::framing::LineWriter;
use crate::wire::json::Raw;

/// The key of toolwarden's form in `inputRequests` and of the person's
/// answer in the retry's `inputResponses`.
pub const INPUT_KEY: &str = "toolwarden-approval";

/// Room kept for what a client's retry adds around a state it carries
/// back (its params, `_meta`, answers): a wrapped result longer than
/// `--max-message-bytes` less this is relayed unwrapped.
const RETRY_ROOM: usize = 16 * 1024;

/// Whether a 2026-07-28 request's `_meta` declares form elicitation in its
/// client capabilities.
pub(super) fn can_ask(params: Option<Raw<'_>>) -> bool {
    let capabilities = params
        .and_then(|p| p.member("_meta"))
        .and_then(|m| m.member("io.modelcontextprotocol/clientCapabilities"));
    approval::declared_in(capabilities) != Elicitation::Unsupported
}

/// toolwarden's state in a request, when it carries one.
pub(super) fn our_state(params: Option<Raw<'_>>) -> Option<Raw<'_>> {
    params?
        .member("requestState")
        .filter(|s| s.as_str().is_some_and(|s| s.starts_with(PREFIX)))
}

impl Relay {
    fn sealer(&self) -> &Sealer {
        self.sealer.get_or_init(Sealer::machines)
    }

    /// The key that binds approvals and states to this call.
    pub(super) fn call_key(&self, call: &ToolCall<'_>) -> String {
        let state = &self.settings.state;
        inbox::call_key(
            state.namespace(),
            state.identity(),
            &call.name,
            call.arguments,
        )
    }

    fn expires_at(&self) -> u64 {
        let timeout = u64::try_from(self.settings.approval_timeout.as_millis()).unwrap_or(u64::MAX);
        inbox::now_ms().saturating_add(timeout)
    }

    /// Answers a call that needs approval with toolwarden's question. A
    /// state the request carries from the server is kept in toolwarden's,
    /// to be given back once the person has said yes.
    pub(super) fn ask_in_result(
        &self,
        id: Raw<'_>,
        call: &ToolCall<'_>,
        params: Option<Raw<'_>>,
    ) -> io::Result<()> {
        let facts = self.facts_now(call);
        let server_state = params
            .and_then(|p| p.member("requestState"))
            .and_then(Raw::as_str);
        let sealed = self.sealer().seal(
            Kind::Ask,
            &self.call_key(call),
            self.expires_at(),
            server_state.as_deref(),
        );
        let Some(sealed) = sealed else {
            let refusal = self.refusal(call, RefusalKind::ApprovalStatesFull);
            return self.refuse(id, &refusal, true, Some(&facts));
        };
        let reason = self
            .policy()
            .rule_for(&call.name)
            .and_then(|r| r.reason.clone());
        let form = approval::form(
            Elicitation::NamedForm,
            &call.name,
            &facts.redacted,
            reason.as_deref(),
        );
        let result = json!({
            "resultType": "input_required",
            "inputRequests": { INPUT_KEY: { "method": "elicitation/create", "params": form } },
            "requestState": sealed,
        });
        info!(
            tool = %loggable(&call.name),
            id = %loggable(id.get()),
            "asked for approval (input_required)"
        );
        let audited = self.settings.audit.enabled().then_some(&facts);
        self.audit_decision(id, &call.name, "approval_requested", audited);
        if let Some(t) = self.telemetry() {
            t.end(id, crate::telemetry::Ended::Result(false));
        }
        self.send_client(&crate::wire::jsonrpc::result_response(
            id,
            &result.to_string(),
        ))
    }

    /// A call that brings toolwarden's state back: the answer to its
    /// question, or the next round of an approved call.
    pub(super) fn resume<W: Write>(
        &self,
        id: Raw<'_>,
        call: &ToolCall<'_>,
        params: Raw<'_>,
        state: Raw<'_>,
        line: &[u8],
        server: &mut LineWriter<W>,
    ) -> io::Result<()> {
        let stateless = super::is_stateless(Some(params));
        let facts = self.facts(call);
        let refuse = |kind| {
            let refusal = self.refusal(call, kind);
            self.refuse(id, &refusal, stateless, facts.as_ref())
        };
        let text = state.as_str().unwrap_or_default();
        let now = inbox::now_ms();
        let opened = self.sealer().open(&text, &self.call_key(call), now);
        let policy = self.policy();
        // What the policy says now comes first: a call it refuses is
        // refused whatever its state.
        let charge = match policy.check(call) {
            Verdict::Refuse(refusal) => {
                return self.refuse(id, &refusal, stateless, facts.as_ref())
            }
            Verdict::Allow(charge) | Verdict::Approve(charge) => charge,
        };
        let opened = match opened {
            Ok(opened) => opened,
            Err(invalid) => return self.invalid_state(id, call, invalid, stateless),
        };
        let answer = params
            .member("inputResponses")
            .and_then(|r| r.member(INPUT_KEY));
        if opened.kind == Kind::Ask && answer.is_none() {
            warn!(
                tool = %loggable(&call.name),
                "refused a retry that carries toolwarden's state without an answer to its question"
            );
            return refuse(RefusalKind::ApprovalStateRefused {
                why: "the retry carries no answer to toolwarden's question (inputResponses)".into(),
            });
        }
        if !self.sealer().spend(&opened, now) {
            return self.invalid_state(id, call, Invalid::Spent, stateless);
        }
        let forwarded = forwarded_params(params, &opened);
        if opened.kind == Kind::Ask {
            let yes = approval::approved(answer);
            let said = if yes { "approved" } else { "denied" };
            self.audit_approval(id, &call.name, "input_required", said, None, Some("client"));
            if !yes {
                return refuse(RefusalKind::ApprovalDeclined { timed_out: false });
            }
            let charged = self.charge(&policy, id, call, &charge, facts.as_ref(), "approved");
            if let Err(refusal) = charged {
                return self.refuse(id, &refusal, stateless, facts.as_ref());
            }
            info!(tool = %loggable(&call.name), id = %loggable(id.get()), "approved (input_required)");
        } else {
            // The next round of a call approved and charged already.
            if !self.admitted_again(id, &call.name, facts.as_ref()) {
                return refuse(RefusalKind::AuditUnavailable);
            }
        }
        let line = edit_members(line, params, &forwarded);
        let started = self.started(call);
        let sealing = Some(self.call_key(call));
        self.forward_call(id, started, sealing, &line, server)
    }

    fn invalid_state(
        &self,
        id: Raw<'_>,
        call: &ToolCall<'_>,
        invalid: Invalid,
        stateless: bool,
    ) -> io::Result<()> {
        warn!(
            tool = %loggable(&call.name),
            id = %loggable(id.get()),
            "refused a call: {}",
            invalid.why()
        );
        self.audit_approval(id, &call.name, "input_required", invalid.word(), None, None);
        let refusal = self.refusal(
            call,
            RefusalKind::ApprovalStateRefused {
                why: invalid.why().into(),
            },
        );
        self.refuse(id, &refusal, stateless, self.facts(call).as_ref())
    }

    /// The server's `input_required` answer to an approved call, with its
    /// state sealed in one of toolwarden's; `None` to relay it as it is
    /// (another result, or no state could be made: the next round is then
    /// asked about again, which lets nothing through).
    pub(super) fn seal_server_state(
        &self,
        line: &[u8],
        result: Raw<'_>,
        call_key: &str,
    ) -> Option<Vec<u8>> {
        let kind = result.member("resultType").and_then(Raw::as_str)?;
        if kind != "input_required" {
            return None;
        }
        let theirs = match result.member("requestState") {
            None => None,
            Some(state) => match state.as_str() {
                Some(state) => Some(state),
                None => {
                    // Not a string, or one with a lone surrogate: it could
                    // not be given back as it was.
                    warn!("the server's requestState is not a string: relayed as it is, and its next round is asked about again");
                    return None;
                }
            },
        };
        let sealed = self.sealer().seal(
            Kind::Continue,
            call_key,
            self.expires_at(),
            theirs.as_deref(),
        )?;
        let sealed = serde_json::to_string(&sealed).expect("a string serializes");
        let edited = edit_members(line, result, &[("requestState", Some(sealed))]);
        // The client's retry carries the state back with more around it:
        // it must fit within --max-message-bytes too.
        if edited.len() + RETRY_ROOM > self.settings.max_message {
            warn!("the server's requestState leaves no room for toolwarden's within --max-message-bytes: relayed as it is, and its next round is asked about again");
            return None;
        }
        Some(edited)
    }
}

/// What the server gets in place of toolwarden's state and answer: its own
/// state back (or none), and the client's other answers.
fn forwarded_params(params: Raw<'_>, opened: &Opened<'_>) -> Vec<(&'static str, Option<String>)> {
    let state = opened
        .server
        .map(|s| serde_json::to_string(s).expect("a string serializes"));
    let mut changes = vec![("requestState", state)];
    if opened.kind == Kind::Ask {
        let others: Vec<String> = params
            .member("inputResponses")
            .into_iter()
            .flat_map(|r| r.members())
            .filter(|(key, _)| key != INPUT_KEY)
            .map(|(key, value)| format!("{}:{}", json!(key), value.get()))
            .collect();
        let responses = (!others.is_empty()).then(|| format!("{{{}}}", others.join(",")));
        changes.push(("inputResponses", responses));
    }
    changes
}

/// `line` with members of `object` (a slice of it) replaced, removed
/// (`None`) or added at the end; every other byte as it was.
fn edit_members(line: &[u8], object: Raw<'_>, changes: &[(&str, Option<String>)]) -> Vec<u8> {
    let Some(start) = (object.get().as_ptr() as usize).checked_sub(line.as_ptr() as usize) else {
        return line.to_vec();
    };
    let end = start + object.get().len();
    let mut members: Vec<String> = Vec::new();
    let mut done = vec![false; changes.len()];
    for ((key, value), raw_key) in object.members().zip(object.raw_keys()) {
        match changes.iter().position(|(k, _)| *k == key) {
            Some(i) => {
                done[i] = true;
                if let Some(new) = &changes[i].1 {
                    members.push(format!("{raw_key}:{new}"));
                }
            }
            // A key as it was written: one that does not decode (a lone
            // surrogate) is kept, not folded into another.
            None => members.push(format!("{raw_key}:{}", value.get())),
        }
    }
    for ((key, value), done) in changes.iter().zip(done) {
        if let (Some(value), false) = (value, done) {
            members.push(format!("{}:{value}", json!(key)));
        }
    }
    let mut out = Vec::with_capacity(line.len());
    out.extend_from_slice(&line[..start]);
    out.push(b'{');
    out.extend_from_slice(members.join(",").as_bytes());
    out.push(b'}');
    out.extend_from_slice(&line[end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_edited_and_the_rest_kept_byte_for_byte() {
        let line = br#"{"id":1,"params":{"name":"t","arguments":{"n":12345678901234567890123},"requestState":"x","inputResponses":{"toolwarden-approval":{"action":"accept"},"q":{"action":"decline"}}}}"#;
        let text = std::str::from_utf8(line).unwrap();
        let params = Raw::parse(text).unwrap().member("params").unwrap();
        let edited = edit_members(
            line,
            params,
            &[
                ("requestState", None),
                ("inputResponses", Some(r#"{"q":1}"#.into())),
            ],
        );
        assert_eq!(
            std::str::from_utf8(&edited).unwrap(),
            r#"{"id":1,"params":{"name":"t","arguments":{"n":12345678901234567890123},"inputResponses":{"q":1}}}"#
        );
        // Keys that do not decode stay as they were written.
        let odd = br#"{"result":{"\ud800a":1,"\udbffb":2,"requestState":"s"}}"#;
        let text = std::str::from_utf8(odd).unwrap();
        let result = Raw::parse(text).unwrap().member("result").unwrap();
        let edited = edit_members(odd, result, &[("requestState", Some(r#""t""#.into()))]);
        assert_eq!(
            std::str::from_utf8(&edited).unwrap(),
            r#"{"result":{"\ud800a":1,"\udbffb":2,"requestState":"t"}}"#
        );
        let added = edit_members(
            line,
            params.member("arguments").unwrap(),
            &[("m", Some("2".into()))],
        );
        assert!(std::str::from_utf8(&added)
            .unwrap()
            .contains(r#""arguments":{"n":12345678901234567890123,"m":2}"#));
    }
}
