//! Calls held for a person who decides out of band, through the inbox
//! (`toolwarden approvals`): the call is filed, looked up every [`POLL`]
//! until it is decided or `--approval-hold` runs out, and then forwarded,
//! refused, or answered `approval_pending` so that the agent retries it
//! later. A retry of the same call redeems the approval given meanwhile.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::held::{Held, MAX_HELD};
use super::{loggable, Facts, Relay};
use crate::inbox::{self, Found, Inbox};
use crate::policy::{RefusalKind, ToolCall};
use crate::wire::framing::LineWriter;
use crate::wire::json::Raw;
use crate::wire::jsonrpc::IdKey;

/// How often a held call's approval is looked up: a person who approves
/// sees the call go within this.
const POLL: Duration = Duration::from_millis(200);

/// A call in the inbox, held by this session.
pub(super) struct Waiting {
    /// The approval's id in the inbox.
    pub approval: String,
    pub request: inbox::Request,
    pub held: Held,
}

impl Relay {
    /// Files a call in the inbox and holds it there; a call approved
    /// already (the agent's retry) is forwarded at once.
    pub(super) fn hold_in_inbox<W: Write>(
        self: &Arc<Self>,
        id: Raw<'_>,
        call: &ToolCall<'_>,
        stateless: bool,
        line: &[u8],
        server: &mut LineWriter<W>,
    ) -> io::Result<()> {
        let facts = self.facts_now(call);
        let refuse = |kind| {
            let refusal = self.refusal(call, kind);
            self.refuse(id, &refusal, stateless, Some(&facts))
        };
        if let Inbox::Unavailable(why) = &self.settings.inbox {
            return refuse(RefusalKind::InboxUnavailable { why: why.clone() });
        }
        if self.held_full(line.len()) {
            return refuse(RefusalKind::ApprovalUnavailable { busy: true });
        }
        let request = self.inbox_request(call, &facts);
        let now = inbox::now_ms();
        let found = self.settings.inbox.ask(&request, now, self.ttl_ms());
        let held = Held::new(id, call, stateless, line);
        match found {
            Ok(Found::Approved(pending)) => {
                info!(tool = %loggable(&call.name), approval = %pending.id, "redeemed an approval");
                self.audit_inbox(id, &call.name, &pending, "approved");
                self.forward_approved(held, server)
            }
            Ok(Found::Denied(pending)) => {
                self.audit_inbox(id, &call.name, &pending, "denied");
                refuse(self.not_forwarded(Ok(Found::Denied(pending)), now))
            }
            Ok(Found::Waiting(pending)) => {
                // On stderr by default: the person who must decide may be
                // reading the client's log of this server.
                warn!(
                    tool = %loggable(&call.name),
                    id = %loggable(id.get()),
                    approval = %pending.id,
                    "held for approval: `toolwarden approvals approve {}`",
                    pending.id
                );
                crate::session::notify::approval_waiting(&call.name, &pending.id);
                let audited = self.settings.audit.enabled().then_some(&facts);
                self.audit_decision(id, &call.name, "approval_requested", audited);
                let key = IdKey::of(id);
                self.state().waiting.insert(
                    key.clone(),
                    Waiting {
                        approval: pending.id,
                        request,
                        held,
                    },
                );
                self.watch(key);
                Ok(())
            }
            other => refuse(self.not_forwarded(other, now)),
        }
    }

    /// Whether another held call, of `bytes` more, would pass the bounds
    /// on calls held at once.
    pub(super) fn held_full(&self, bytes: usize) -> bool {
        let state = self.state();
        let held = state.held.len() + state.waiting.len();
        let held_bytes: usize = state.held.values().map(|h| h.len()).sum::<usize>()
            + state.waiting.values().map(|w| w.held.len()).sum::<usize>();
        held >= MAX_HELD || held_bytes + bytes > self.settings.max_message
    }

    fn inbox_request(&self, call: &ToolCall<'_>, facts: &Facts) -> inbox::Request {
        let state = &self.settings.state;
        inbox::Request {
            key: inbox::call_key(
                state.namespace(),
                state.identity(),
                &call.name,
                call.arguments,
            ),
            tool: call.name.to_string(),
            arguments: facts.redacted.value.clone(),
            identity: state.identity().to_owned(),
            namespace: state.namespace().to_owned(),
            server: self.settings.server_label.clone(),
        }
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.settings.approval_timeout.as_millis()).unwrap_or(u64::MAX)
    }

    /// Why a call the inbox did not approve is refused.
    fn not_forwarded(
        &self,
        found: Result<Found, crate::state::StoreError>,
        now: u64,
    ) -> RefusalKind {
        match found {
            Ok(Found::Denied(pending)) => RefusalKind::ApprovalDenied {
                by: pending.decided_by,
                reason: pending.reason,
            },
            Ok(Found::Waiting(pending)) => RefusalKind::ApprovalPending {
                expires_in: Duration::from_millis(pending.expires_at.saturating_sub(now)),
                id: pending.id,
            },
            Ok(Found::Approved(_)) | Ok(Found::Gone) => {
                RefusalKind::ApprovalDeclined { timed_out: true }
            }
            Err(e) => RefusalKind::InboxUnavailable {
                why: format!("the approval inbox cannot be reached ({})", e.0),
            },
        }
    }

    /// Looks up a held call's approval every [`POLL`], off the event loop,
    /// until the call is answered.
    fn watch(self: &Arc<Self>, key: IdKey) {
        let relay = Arc::clone(self);
        let deadline = Instant::now() + self.settings.approval_hold;
        let watched = key.clone();
        let task = self.runtime.spawn(async move {
            loop {
                tokio::time::sleep(POLL).await;
                let (relay, key) = (Arc::clone(&relay), watched.clone());
                let done = tokio::task::spawn_blocking(move || relay.look(&key, deadline));
                if done.await.unwrap_or(true) {
                    break;
                }
            }
        });
        match self.state().waiting.get_mut(&key) {
            Some(waiting) => waiting.held.timer = Some(task),
            None => task.abort(),
        }
    }

    /// One look at a held call's approval; whether the call is answered
    /// (or no longer held).
    fn look(self: &Arc<Self>, key: &IdKey, deadline: Instant) -> bool {
        let Some(approval) = self.state().waiting.get(key).map(|w| w.approval.clone()) else {
            return true;
        };
        let now = inbox::now_ms();
        let seen = self.settings.inbox.check(&approval, now, false);
        let out_of_time = Instant::now() >= deadline;
        match &seen {
            Ok(Found::Waiting(_)) if !out_of_time => return false,
            // The store may come back before the hold ends.
            Err(_) if !out_of_time => return false,
            _ => {}
        }
        // The call leaves the table before it is answered, so that a
        // cancellation and this answer never both act on it.
        let Some(mut waiting) = self.state().waiting.remove(key) else {
            return true;
        };
        waiting.held.timer = None;
        let found = match seen {
            Ok(Found::Approved(_)) => self.settings.inbox.check(&approval, now, true),
            other => other,
        };
        match found {
            Ok(Found::Approved(pending)) => {
                info!(tool = %loggable(&waiting.held.tool), approval = %pending.id, "approved out of band");
                self.audit_inbox(
                    waiting.held.id.raw(),
                    &waiting.held.tool,
                    &pending,
                    "approved",
                );
                let mut writer = self.server_writer();
                let Some(server) = writer.as_mut() else {
                    // The session is stopping: the call goes nowhere.
                    return true;
                };
                let sent = self
                    .forward_approved(waiting.held, server)
                    .and_then(|()| server.flush());
                if let Err(e) = sent {
                    warn!("could not forward an approved call: {e}");
                }
            }
            // Another session redeemed it for the same call: this one is
            // filed afresh and waits on.
            Ok(Found::Gone) if !out_of_time => {
                match self
                    .settings
                    .inbox
                    .ask(&waiting.request, now, self.ttl_ms())
                {
                    Ok(Found::Waiting(pending)) => {
                        waiting.approval = pending.id;
                        self.state().waiting.insert(key.clone(), waiting);
                        return false;
                    }
                    other => self.answer_waiting(waiting, self.not_forwarded(other, now)),
                }
            }
            other => {
                if let Ok(Found::Denied(pending)) = &other {
                    self.audit_inbox(waiting.held.id.raw(), &waiting.held.tool, pending, "denied");
                }
                let kind = self.not_forwarded(other, now);
                self.answer_waiting(waiting, kind);
            }
        }
        true
    }

    fn audit_inbox(&self, id: Raw<'_>, tool: &str, pending: &inbox::Pending, answer: &'static str) {
        let by = pending.decided_by.as_deref();
        self.audit_approval(id, tool, "inbox", answer, Some(&pending.id), by);
    }

    fn answer_waiting(&self, waiting: Waiting, kind: RefusalKind) {
        let call = waiting.held.call();
        let refusal = self.refusal(&call, kind);
        let facts = self.facts(&call);
        let _ = self.refuse(
            waiting.held.id.raw(),
            &refusal,
            waiting.held.stateless,
            facts.as_ref(),
        );
    }
}
