//! Acting on a decision: charging a call's limits, refusing it, and
//! writing down what was decided and why.

use std::io;
use std::time::Instant;

use serde_json::json;
use tracing::warn;

use super::{loggable, Facts, Relay};
use crate::audit::AuditEvent;
use crate::policy::{Charge, Policy, Refusal, RefusalKind, ToolCall};
use crate::redact;
use crate::telemetry::{Ended, Telemetry};
use crate::wire::json::Raw;
use crate::wire::jsonrpc;

impl Relay {
    /// Takes a call's charge and writes down its `decision` (allowed, or
    /// approved), or says why the call is refused instead. With
    /// `--audit-required` the decision is written before the charge is
    /// taken, so that a call the log could not take costs nothing.
    pub(super) fn charge(
        &self,
        policy: &Policy,
        id: Raw<'_>,
        call: &ToolCall,
        charge: &Charge,
        facts: Option<&Facts>,
        decision: &'static str,
    ) -> Result<(), Box<Refusal>> {
        if self.settings.audit.required() {
            self.take(policy, call, charge, false)?;
            if !self.admitted(id, &call.name, decision, facts) {
                return Err(Box::new(self.refusal(call, RefusalKind::AuditUnavailable)));
            }
            // Another process may take the last of a bucket in between:
            // then the call is refused after all, and that written too.
            return self.take(policy, call, charge, true);
        }
        self.take(policy, call, charge, true)?;
        self.admitted(id, &call.name, decision, facts);
        Ok(())
    }

    /// Takes (`commit`) or only checks a charge from the state store.
    pub(super) fn take(
        &self,
        policy: &Policy,
        call: &ToolCall,
        charge: &Charge,
        commit: bool,
    ) -> Result<(), Box<Refusal>> {
        let began = Instant::now();
        let taken = self.settings.state.take(policy, charge, commit);
        if let Some(t) = self.telemetry() {
            t.state_store(began.elapsed(), taken.is_err());
        }
        let refusal = match taken {
            Ok(crate::state::Outcome::Taken) => return Ok(()),
            Ok(crate::state::Outcome::Short {
                counter,
                retry_after,
            }) => policy.rate_limited(&call.name, counter, retry_after),
            Err(unavailable) => self.refusal(
                call,
                RefusalKind::StateUnavailable {
                    retry_after: unavailable.retry_after,
                },
            ),
        };
        Err(Box::new(refusal))
    }

    pub(super) fn refusal(&self, call: &ToolCall, kind: RefusalKind) -> Refusal {
        let policy = self.policy();
        let rule = policy.rule_for(&call.name);
        Refusal {
            tool: call.name.to_string(),
            rule: rule.map(|r| r.pattern.clone()),
            reason: rule.and_then(|r| r.reason.clone()),
            kind,
        }
    }

    pub(super) fn refuse(
        &self,
        id: Raw<'_>,
        refusal: &Refusal,
        stateless: bool,
        facts: Option<&Facts>,
    ) -> io::Result<()> {
        self.record_refusal(id, refusal, facts);
        if let Some(t) = self.telemetry() {
            t.end(id, Ended::Refused(refusal.decision()));
        }
        let result = refusal.to_result(stateless);
        self.send_client(&jsonrpc::result_response(id, &result))
    }

    /// Logs and audits a refusal.
    pub(super) fn record_refusal(&self, id: Raw<'_>, refusal: &Refusal, facts: Option<&Facts>) {
        // Refusals show at the default level: they are what a user of a
        // policy wants to see; allowed calls are a line each at info.
        let what = if self.settings.monitor {
            "would be refused (monitor mode): relayed"
        } else {
            "refused"
        };
        warn!(
            tool = %loggable(&refusal.tool),
            id = %loggable(id.get()),
            decision = refusal.decision(),
            "{what}"
        );
        if let Some(t) = self.telemetry() {
            let kind = refusal_kind(&refusal.kind);
            let counter = refusal.meta().counter;
            let rule = refusal.rule.as_deref();
            t.decision(
                id,
                &refusal.tool,
                refusal.decision(),
                rule,
                Some((&kind, counter)),
            );
        }
        if self.settings.audit.enabled() {
            let meta = refusal.meta();
            let scrub =
                |text: &str| facts.map_or_else(|| text.to_owned(), |f| f.redacted.scrub(text));
            let event = AuditEvent {
                rule: refusal.rule.clone(),
                counter: meta.counter.map(str::to_owned),
                retry_after_ms: meta.retry_after_ms,
                reason: refusal.reason.clone(),
                errors: meta.errors.map(|errors| {
                    errors
                        .iter()
                        .map(|e| json!({ "pointer": e.pointer, "message": scrub(&e.message) }))
                        .collect()
                }),
                ..self.decision_event(id, &refusal.tool, refusal.decision(), facts)
            };
            self.settings.audit.record(event);
        }
    }

    /// For the audit log's result event: the tool, and when the call left.
    pub(super) fn started(&self, call: &ToolCall) -> Option<(String, Instant)> {
        (self.settings.audit.enabled() || self.telemetry().is_some())
            .then(|| (call.name.to_string(), Instant::now()))
    }

    /// The redacted arguments and their hash, when there is an audit log.
    pub(super) fn facts(&self, call: &ToolCall) -> Option<Facts> {
        self.settings.audit.enabled().then(|| self.facts_now(call))
    }

    pub(super) fn facts_now(&self, call: &ToolCall) -> Facts {
        let policy = self.policy();
        let pointers = policy
            .rule_for(&call.name)
            .map_or(&[][..], |r| &r.redact[..]);
        Facts {
            redacted: redact::redact(call.arguments, pointers),
            hmac: self
                .settings
                .audit
                .fingerprint(call.arguments.map_or(&b""[..], |a| a.get().as_bytes())),
        }
    }

    /// Writes down a person's answer: how they were asked, what they
    /// said, and who they are.
    pub(super) fn audit_approval(
        &self,
        id: Raw<'_>,
        tool: &str,
        channel: &'static str,
        answer: &'static str,
        approval_id: Option<&str>,
        by: Option<&str>,
    ) {
        if let Some(t) = self.telemetry() {
            t.approval(id, channel, answer, by);
        }
        self.settings.audit.record(AuditEvent {
            event: "approval",
            id: Some(id.to_raw_value()),
            tool: tool.to_owned(),
            channel: Some(channel),
            answer: Some(answer),
            approval_id: approval_id.map(str::to_owned),
            by: by.map(str::to_owned),
            ..Default::default()
        });
    }

    pub(super) fn decision_event(
        &self,
        id: Raw<'_>,
        tool: &str,
        decision: &'static str,
        facts: Option<&Facts>,
    ) -> AuditEvent {
        AuditEvent {
            event: "decision",
            id: Some(id.to_raw_value()),
            tool: tool.to_owned(),
            decision: Some(decision),
            rule: self.policy().rule_for(tool).map(|r| r.pattern.clone()),
            arguments: facts.map(|f| f.redacted.value.clone()),
            args_hmac: facts.map(|f| f.hmac.clone()),
            enforced: self.settings.monitor.then_some(false),
            ..Default::default()
        }
    }

    /// Records the decision that lets a call through; false when
    /// `--audit-required` and it could not be written.
    pub(super) fn admitted(
        &self,
        id: Raw<'_>,
        tool: &str,
        decision: &'static str,
        facts: Option<&Facts>,
    ) -> bool {
        self.observe_decision(id, tool, decision);
        if !self.settings.audit.enabled() {
            return true;
        }
        let event = self.decision_event(id, tool, decision, facts);
        self.settings.audit.admits(event)
    }

    /// Records a later round of a call approved already (2026-07-28): as
    /// [`Self::admitted`], marked `continued` so that it is not counted as
    /// another call.
    pub(super) fn admitted_again(&self, id: Raw<'_>, tool: &str, facts: Option<&Facts>) -> bool {
        if let Some(t) = self.telemetry() {
            let policy = self.policy();
            t.continued(id, policy.rule_for(tool).map(|r| r.pattern.as_str()));
        }
        if !self.settings.audit.enabled() {
            return true;
        }
        let event = AuditEvent {
            continued: Some(true),
            ..self.decision_event(id, tool, "approved", facts)
        };
        self.settings.audit.admits(event)
    }

    pub(super) fn audit_decision(
        &self,
        id: Raw<'_>,
        tool: &str,
        decision: &'static str,
        facts: Option<&Facts>,
    ) {
        self.observe_decision(id, tool, decision);
        if self.settings.audit.enabled() {
            let event = self.decision_event(id, tool, decision, facts);
            self.settings.audit.record(event);
        }
    }

    pub(super) fn telemetry(&self) -> Option<&Telemetry> {
        self.settings.telemetry.as_deref()
    }

    /// A decision that is not a refusal, on the call's span.
    fn observe_decision(&self, id: Raw<'_>, tool: &str, decision: &'static str) {
        if let Some(t) = self.telemetry() {
            let policy = self.policy();
            let rule = policy.rule_for(tool).map(|r| r.pattern.as_str());
            t.decision(id, tool, decision, rule, None);
        }
    }
}

/// A refusal's kind as telemetry names it: its variant in snake case
/// (`rate_limited`, `tool_unpinned`), finer than its decision.
fn refusal_kind(kind: &RefusalKind) -> String {
    let debug = format!("{kind:?}");
    let name = debug.split([' ', '{', '(']).next().unwrap_or_default();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}
