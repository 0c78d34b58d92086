//! Calls held for a person's approval: asking, the answer, and the timer
//! that gives up. The call's line is kept once, whole, until the answer
//! comes; how many calls and bytes are held at once is bounded.

use std::io::{self, Write};
use std::ops::Range;
use std::sync::Arc;

use tracing::{info, warn};

use super::{loggable, Relay};
use crate::policy::{RefusalKind, ToolCall, Verdict};
use crate::session::approval;
use crate::wire::framing::LineWriter;
use crate::wire::json::{Raw, RawBuf};
use crate::wire::jsonrpc::IdKey;

/// Calls held for approval at once. Their lines together are bounded by
/// `--max-message-bytes` too.
pub const MAX_HELD: usize = 16;

/// A call held until a person answers its prompt.
pub(super) struct Held {
    pub id: RawBuf,
    pub key: IdKey,
    /// The request as the client sent it: what is forwarded on a yes.
    line: Vec<u8>,
    /// Where the arguments are in `line`.
    arguments: Option<Range<usize>>,
    pub tool: String,
    pub stateless: bool,
    /// Set once the call is in the table, so that it cannot fire first.
    pub timer: Option<tokio::task::JoinHandle<()>>,
}

impl Held {
    pub fn new(id: Raw<'_>, call: &ToolCall<'_>, stateless: bool, line: &[u8]) -> Held {
        Held {
            id: id.to_buf(),
            key: IdKey::of(id),
            line: line.to_vec(),
            arguments: call.arguments.and_then(|a| offset_in(line, a.get())),
            tool: call.name.to_string(),
            stateless,
            timer: None,
        }
    }

    /// The bytes it holds.
    pub fn len(&self) -> usize {
        self.line.len()
    }

    /// The call as the policy sees it.
    pub fn call(&self) -> ToolCall<'_> {
        let arguments = self.arguments.clone().and_then(|range| {
            // A slice of a line the strict parser passed.
            let text = std::str::from_utf8(&self.line[range]).ok()?;
            Raw::parse(text).ok()
        });
        ToolCall {
            name: self.tool.as_str().into(),
            arguments,
        }
    }
}

impl Relay {
    /// Holds a call and asks a person about it: in the client where it can
    /// ask (elicitation), else out of band through the inbox (see
    /// out_of_band.rs). Other traffic keeps flowing meanwhile.
    pub(super) fn hold<W: Write>(
        self: &Arc<Self>,
        id: Raw<'_>,
        call: &ToolCall<'_>,
        stateless: bool,
        line: &[u8],
        server: &mut LineWriter<W>,
    ) -> io::Result<()> {
        let in_band = {
            let state = self.state();
            state.elicitation != approval::Elicitation::Unsupported
                && state.initialized
                && !stateless
        };
        match (self.settings.approval, in_band) {
            (approval::Channel::Inbox, _) | (approval::Channel::Auto, false) => {
                return self.hold_in_inbox(id, call, stateless, line, server)
            }
            (approval::Channel::Client, false) => {
                let refusal = self.refusal(call, RefusalKind::ApprovalUnavailable { busy: false });
                return self.refuse(id, &refusal, stateless, self.facts(call).as_ref());
            }
            _ => {}
        }
        let facts = self.facts_now(call);
        let refuse = |kind| {
            let refusal = self.refusal(call, kind);
            self.refuse(id, &refusal, stateless, Some(&facts))
        };
        if self.held_full(line.len()) {
            return refuse(RefusalKind::ApprovalUnavailable { busy: true });
        }
        // No id nobody can guess: nobody is asked.
        let Some(prompt_id) = approval::prompt_id() else {
            return refuse(RefusalKind::ApprovalUnavailable { busy: false });
        };
        let mode = self.state().elicitation;
        let reason = self
            .policy()
            .rule_for(&call.name)
            .and_then(|r| r.reason.clone());
        let prompt = approval::prompt(
            &prompt_id,
            mode,
            &call.name,
            &facts.redacted,
            reason.as_deref(),
        );
        self.state()
            .held
            .insert(prompt_id.clone(), Held::new(id, call, stateless, line));
        info!(
            tool = %loggable(&call.name),
            id = %loggable(id.get()),
            "held for approval"
        );
        let audited = self.settings.audit.enabled().then_some(&facts);
        self.audit_decision(id, &call.name, "approval_requested", audited);
        self.send_client(&prompt)?;
        // The timer starts once the call is in the table: however short the
        // timeout, it finds the call there (or an answer came first).
        let relay = Arc::clone(self);
        let expiring = prompt_id.clone();
        let timer = self.runtime.spawn(async move {
            tokio::time::sleep(relay.settings.approval_timeout).await;
            // The refusal writes to the client, which may block: off the
            // event loop.
            let _ = tokio::task::spawn_blocking(move || relay.expire(&expiring)).await;
        });
        match self.state().held.get_mut(&prompt_id) {
            Some(held) => held.timer = Some(timer),
            None => timer.abort(),
        }
        Ok(())
    }

    /// A person answered a prompt.
    pub(super) fn answered<W: Write>(
        self: &Arc<Self>,
        held: Held,
        answer: Option<Raw<'_>>,
        server: &mut LineWriter<W>,
    ) -> io::Result<()> {
        let call = held.call();
        let facts = self.facts(&call);
        let yes = approval::approved(answer);
        let said = if yes { "approved" } else { "denied" };
        self.audit_approval(
            held.id.raw(),
            &held.tool,
            "elicitation",
            said,
            None,
            Some("client"),
        );
        if !yes {
            let refusal = self.refusal(&call, RefusalKind::ApprovalDeclined { timed_out: false });
            return self.refuse(held.id.raw(), &refusal, held.stateless, facts.as_ref());
        }
        self.forward_approved(held, server)
    }

    /// Forwards a call a person approved, after deciding it again: limits
    /// are charged now, not when the call was held, and the policy may
    /// have been reloaded meanwhile.
    pub(super) fn forward_approved<W: Write>(
        &self,
        held: Held,
        server: &mut LineWriter<W>,
    ) -> io::Result<()> {
        let call = held.call();
        let facts = self.facts(&call);
        // The id is free (it was held), but the table may be full.
        if let Err(why) = self.can_track(held.id.raw()) {
            return self.refuse_request(held.id.raw(), why);
        }
        let policy = self.policy();
        let charge = match policy.check(&call) {
            Verdict::Approve(charge) | Verdict::Allow(charge) => charge,
            Verdict::Refuse(refusal) => {
                return self.refuse(held.id.raw(), &refusal, held.stateless, facts.as_ref())
            }
        };
        let approved = self.charge(
            &policy,
            held.id.raw(),
            &call,
            &charge,
            facts.as_ref(),
            "approved",
        );
        if let Err(refusal) = approved {
            return self.refuse(held.id.raw(), &refusal, held.stateless, facts.as_ref());
        }
        info!(
            tool = %loggable(&call.name),
            id = %loggable(held.id.raw().get()),
            "approved"
        );
        let started = self.started(&call);
        let sealing = held.stateless.then(|| self.call_key(&call));
        // The held call's id was kept out of use: it is free now.
        self.forward_call(held.id.raw(), started, sealing, &held.line, server)
    }

    /// Nobody answered a prompt in time.
    fn expire(&self, prompt_id: &str) {
        let Some(held) = self.state().held.remove(prompt_id) else {
            return;
        };
        warn!(
            tool = %loggable(&held.tool),
            id = %loggable(held.id.raw().get()),
            "no answer to the approval prompt in time"
        );
        self.audit_approval(
            held.id.raw(),
            &held.tool,
            "elicitation",
            "timed_out",
            None,
            None,
        );
        let call = held.call();
        let facts = self.facts(&call);
        let refusal = self.refusal(&call, RefusalKind::ApprovalDeclined { timed_out: true });
        let _ = self.send_client(&approval::withdraw(prompt_id, "timed out"));
        let _ = self.refuse(held.id.raw(), &refusal, held.stateless, facts.as_ref());
    }
}

/// Where `part`, a slice of `whole`, lies in it.
fn offset_in(whole: &[u8], part: &str) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start + part.len();
    (end <= whole.len()).then_some(start..end)
}
