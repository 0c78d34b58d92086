//! The client's side: the pump that reads the client's lines, and what is
//! done with each: a request forwarded, a `tools/call` decided, a
//! cancellation, an answer to an approval prompt.

use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tracing::{debug, info, warn};

use super::{
    cancelled_request, is_stateless, loggable, round_trip, Asked, Facts, Relay, MAX_ID_BYTES,
};
use crate::audit::AuditEvent;
use crate::policy::{Refusal, RefusalKind, ToolCall, Verdict};
use crate::wire::framing::{Frame, LineReader, LineWriter, Source};
use crate::wire::json::{Raw, RawBuf};
use crate::wire::jsonrpc::{self, IdKey, Message, Strictness, ToolFields};
use crate::{commands::pin, session::approval};

impl Relay {
    /// Relays the client's input to the server until the client closes it
    /// or the session stops. Returning drops `server_in`; in a session,
    /// `run` closes the server's stdin itself (see `blocking::ServerInput`).
    pub fn client_pump<R, W>(self: &Arc<Self>, client_in: R, server_in: W) -> io::Result<()>
    where
        R: Source,
        W: Write + Send + 'static,
    {
        let mut lines = LineReader::new(client_in, self.settings.max_message);
        *self.server_writer() = Some(LineWriter::new(Box::new(server_in)));
        let pumped = (|| {
            while let Some(frame) = lines.next_frame()? {
                if self.stopping.load(Ordering::SeqCst) {
                    if let Frame::Line(line) = frame {
                        self.late_initialize(line);
                    }
                    break;
                }
                // Held while one line is handled, never while reading.
                let mut writer = self.server_writer();
                let Some(server) = writer.as_mut() else {
                    break;
                };
                match frame {
                    Frame::Line(line) => self.client_line(line, server)?,
                    Frame::TooLong { prefix, len } => self.too_long_from_client(&prefix, len)?,
                }
                // Lines that came in one read leave in one write.
                if !lines.has_line() {
                    server.flush()?;
                }
            }
            Ok(())
        })();
        self.server_writer().take();
        debug!("client closed its output");
        pumped
    }

    pub(super) fn client_line<W: Write>(
        self: &Arc<Self>,
        line: &[u8],
        server: &mut LineWriter<W>,
    ) -> io::Result<()> {
        if line.trim_ascii().is_empty() {
            return Ok(());
        }
        let message = match jsonrpc::parse(line, Strictness::Full) {
            Ok(message) => message,
            Err(rejection) => {
                warn!(
                    code = rejection.code,
                    "refused a line from the client: {}",
                    loggable(&rejection.message)
                );
                if let Some(id) = rejection.reply_id {
                    let reply = jsonrpc::error_response(
                        id.as_ref().map(RawBuf::raw),
                        rejection.code,
                        &rejection.message,
                    );
                    self.send_client(&reply)?;
                }
                return Ok(());
            }
        };
        match message {
            Message::Request { id, .. } if id.get().len() > MAX_ID_BYTES => {
                let reply = jsonrpc::error_response(
                    Some(id),
                    jsonrpc::INVALID_REQUEST,
                    &format!("invalid request: an id longer than {MAX_ID_BYTES} bytes"),
                );
                self.send_client(&reply)
            }
            Message::Request {
                id,
                method,
                params,
                tool,
            } if method == "tools/call" => self.tools_call(id, params, tool, line, server),
            Message::Request {
                id, method, params, ..
            } => {
                let asked = match method.as_ref() {
                    "initialize" => {
                        let mut state = self.state();
                        state.elicitation = approval::declared(params);
                        state.client_capabilities = pin::ClientCapabilities::of(params);
                        state.initialize_sent = true;
                        Asked::Initialize
                    }
                    "tools/list" => Asked::ToolsList,
                    _ => Asked::Other,
                };
                if let Some(t) = self.telemetry().filter(|_| self.can_track(id).is_ok()) {
                    t.begin(id, &method, None, params, self.settings.state.identity());
                }
                self.forward_request(id, asked, None, line, server)
            }
            Message::Notification {
                method,
                params,
                tool,
            } if method == "tools/call" => {
                // A call nobody can answer must not run unseen.
                warn!("dropped a tools/call sent as a notification (it has no id)");
                let tool = ToolCall::from_params(params, tool)
                    .map(|c| c.name.into_owned())
                    .unwrap_or_default();
                self.settings.audit.record(AuditEvent {
                    event: "decision",
                    tool,
                    decision: Some("notification_dropped"),
                    ..Default::default()
                });
                Ok(())
            }
            Message::Notification { method, params, .. } if method == "notifications/cancelled" => {
                self.client_cancels(params, line, server)
            }
            Message::Notification { method, .. } => {
                if method == "notifications/initialized" {
                    self.state().initialized = true;
                }
                server.queue(line)
            }
            Message::Response { id, result } => {
                let key = IdKey::of(id);
                let held = match &key {
                    IdKey::Str(prompt) => self.state().held.remove(prompt),
                    _ => None,
                };
                if let Some(mut held) = held {
                    if let Some(timer) = held.timer.take() {
                        timer.abort();
                    }
                    // The answer to an approval prompt: the server never
                    // sees it.
                    return self.answered(held, result, server);
                }
                if self.state().server.remove(&key) {
                    server.queue(line)
                } else {
                    warn!(
                        id = %loggable(id.get()),
                        "dropped a response from the client to a request the server never made"
                    );
                    Ok(())
                }
            }
        }
    }

    pub(super) fn tools_call<W: Write>(
        self: &Arc<Self>,
        id: Raw<'_>,
        params: Option<Raw<'_>>,
        fields: ToolFields<'_>,
        line: &[u8],
        server: &mut LineWriter<W>,
    ) -> io::Result<()> {
        let call = match ToolCall::from_params(params, fields) {
            Ok(call) => call,
            Err(why) => {
                warn!(
                    id = %loggable(id.get()),
                    "refused a malformed tools/call: {why}"
                );
                let reply = jsonrpc::error_response(Some(id), jsonrpc::INVALID_PARAMS, &why);
                return self.send_client(&reply);
            }
        };
        // A call refused for its id is not a decision: nothing is charged
        // or audited for it.
        if let Err(why) = self.can_track(id) {
            return self.refuse_request(id, why);
        }
        if let Some(t) = self.telemetry() {
            let identity = self.settings.state.identity();
            t.begin(id, "tools/call", Some(&call.name), params, identity);
        }
        // Needed only when toolwarden answers the call itself.
        let stateless = || is_stateless(params);
        if let Some(kind) = self.pin_refusal(&call.name) {
            let refusal = self.refusal(&call, kind);
            let facts = self.facts(&call);
            return self.refuse_or_relay(id, &call, &refusal, stateless, facts, line, server);
        }
        if self.settings.audit.refuses_calls() {
            let refusal = self.refusal(&call, RefusalKind::AuditUnavailable);
            let facts = self.facts(&call);
            return self.refuse_or_relay(id, &call, &refusal, stateless, facts, line, server);
        }
        // The answer to toolwarden's question, or the next round of an
        // approved call (2026-07-28).
        if let Some(state) = round_trip::our_state(params).filter(|_| !self.settings.monitor) {
            let params = params.expect("a state is in params");
            return self.resume(id, &call, params, state, line, server);
        }
        let policy = self.policy();
        match policy.check(&call) {
            Verdict::Allow(charge) => {
                let facts = self.facts(&call);
                let charged = self.charge(&policy, id, &call, &charge, facts.as_ref(), "allowed");
                if let Err(refusal) = charged {
                    return self
                        .refuse_or_relay(id, &call, &refusal, stateless, facts, line, server);
                }
                info!(
                    tool = %loggable(&call.name),
                    id = %loggable(id.get()),
                    "allowed"
                );
                let started = self.started(&call);
                self.forward_request(id, Asked::Other, started, line, server)
            }
            // Monitoring: nobody is asked; the call is charged and
            // relayed, and the log says a person would have been.
            Verdict::Approve(charge) if self.settings.monitor => {
                let facts = self.facts(&call);
                let asked = "approval_requested";
                if let Err(refusal) =
                    self.charge(&policy, id, &call, &charge, facts.as_ref(), asked)
                {
                    return self
                        .refuse_or_relay(id, &call, &refusal, stateless, facts, line, server);
                }
                let started = self.started(&call);
                self.forward_request(id, Asked::Other, started, line, server)
            }
            Verdict::Approve(charge) => {
                // Nobody is asked about a call its limits would refuse.
                if let Err(refusal) = self.take(&policy, &call, &charge, false) {
                    return self.refuse(id, &refusal, stateless(), self.facts(&call).as_ref());
                }
                let in_result = stateless()
                    && self.settings.approval != approval::Channel::Inbox
                    && round_trip::can_ask(params);
                if in_result {
                    return self.ask_in_result(id, &call, params);
                }
                self.hold(id, &call, stateless(), line, server)
            }
            Verdict::Refuse(refusal) => {
                let facts = self.facts(&call);
                self.refuse_or_relay(id, &call, &refusal, stateless, facts, line, server)
            }
        }
    }

    /// With `--pin`, why a call of `tool` is refused: its definition changed
    /// since it was pinned, it is not pinned, or no `tools/list` of this
    /// session has shown it yet (it is never assumed good).
    pub(super) fn pin_refusal(&self, tool: &str) -> Option<RefusalKind> {
        let pins = self.settings.pins.as_ref()?;
        let state = self.state();
        let review = pins.review_command(state.client_capabilities.as_ref());
        match state.pinned.get(tool) {
            Some(pin::Status::Matches) => None,
            Some(pin::Status::Changed) => Some(RefusalKind::ToolChanged { review }),
            Some(pin::Status::Unpinned) => Some(RefusalKind::ToolUnpinned {
                review,
                listed: true,
            }),
            None => Some(RefusalKind::ToolUnpinned {
                review,
                listed: false,
            }),
        }
    }

    /// A call the policy refuses: answered with the refusal, or, when
    /// monitoring, written down as refused and relayed all the same.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn refuse_or_relay<W: Write>(
        &self,
        id: Raw<'_>,
        call: &ToolCall,
        refusal: &Refusal,
        stateless: impl Fn() -> bool,
        facts: Option<Facts>,
        line: &[u8],
        server: &mut LineWriter<W>,
    ) -> io::Result<()> {
        if !self.settings.monitor {
            return self.refuse(id, refusal, stateless(), facts.as_ref());
        }
        self.record_refusal(id, refusal, facts.as_ref());
        let started = self.started(call);
        self.forward_request(id, Asked::Other, started, line, server)
    }

    pub(super) fn client_cancels<W: Write>(
        &self,
        params: Option<Raw<'_>>,
        line: &[u8],
        server: &mut LineWriter<W>,
    ) -> io::Result<()> {
        let Some(key) = cancelled_request(params) else {
            warn!("dropped a notifications/cancelled without a readable requestId");
            return Ok(());
        };
        // In flight or held, the request ends here, unanswered.
        if let Some(t) = self.telemetry() {
            t.end_key(&key, crate::telemetry::Ended::Dropped);
        }
        // A cancelled request is forgotten: MCP tells the server not to
        // answer it, and an answer that still comes is dropped.
        let (known, held) = {
            let mut state = self.state();
            let known = state.client.remove(&key).is_some();
            let prompt = state
                .held
                .iter()
                .find(|(_, h)| h.key == key)
                .map(|(p, _)| p.clone());
            (
                known,
                prompt.and_then(|p| state.held.remove(&p).map(|h| (p, h))),
            )
        };
        let waiting = self.state().waiting.remove(&key);
        if let Some(mut waiting) = waiting {
            // The call is dropped; its approval stays in the inbox, where
            // a retry of the same call can still redeem it.
            if let Some(timer) = waiting.held.timer.take() {
                timer.abort();
            }
            self.audit_decision(waiting.held.id.raw(), &waiting.held.tool, "cancelled", None);
            return Ok(());
        }
        if let Some((prompt_id, mut held)) = held {
            // The call is dropped; the prompt is withdrawn.
            if let Some(timer) = held.timer.take() {
                timer.abort();
            }
            info!(
                tool = %loggable(&held.tool),
                id = %loggable(held.id.raw().get()),
                "a call held for approval was cancelled"
            );
            self.audit_decision(held.id.raw(), &held.tool, "cancelled", None);
            return self.send_client(&approval::withdraw(&prompt_id, "the call was cancelled"));
        }
        if known {
            server.queue(line)
        } else {
            // Refused or already answered: the server never had it.
            debug!(
                request = %loggable(&key.to_string()),
                "dropped a cancellation for a request the server does not have"
            );
            Ok(())
        }
    }

    pub(super) fn too_long_from_client(&self, prefix: &[u8], len: usize) -> io::Result<()> {
        let seen = jsonrpc::scan_prefix(prefix);
        let max = self.settings.max_message;
        warn!(
            len,
            max, "refused a line from the client longer than --max-message-bytes"
        );
        if seen.is_response {
            return Ok(());
        }
        let message =
            format!("invalid request: message of {len} bytes exceeds the limit of {max} bytes (--max-message-bytes)");
        let reply = jsonrpc::error_response(
            seen.id.as_ref().map(RawBuf::raw),
            jsonrpc::INVALID_REQUEST,
            &message,
        );
        self.send_client(&reply)
    }
}
