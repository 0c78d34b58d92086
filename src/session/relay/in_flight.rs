//! The client's requests in flight: keeping track of them, and ending
//! them when the server will not answer.

use std::io::{self, Write};
use std::time::Instant;

use tracing::warn;

use super::held::Held;
use super::server_side::Outcome;
use super::{loggable, Asked, ClientRequest, Relay, MAX_IN_FLIGHT};
use crate::policy::RefusalKind;
use crate::wire::framing::LineWriter;
use crate::wire::json::Raw;
use crate::wire::jsonrpc::{self, IdKey, Message, Strictness};

impl Relay {
    /// Whether a new client request with this id can be kept track of: not
    /// while another with the same id is in flight or held (their answers
    /// could not be told apart), nor beyond [`MAX_IN_FLIGHT`].
    pub(super) fn can_track(&self, id: Raw<'_>) -> Result<(), &'static str> {
        let key = IdKey::of(id);
        let state = self.state();
        if state.client.contains_key(&key)
            || state.held.values().any(|h| h.key == key)
            || state.waiting.contains_key(&key)
        {
            return Err("invalid request: a request with this id is still in flight");
        }
        if state.client.len() + state.held.len() + state.waiting.len() >= MAX_IN_FLIGHT {
            return Err("invalid request: too many requests are waiting for an answer (toolwarden keeps track of 10000 at most)");
        }
        Ok(())
    }

    /// Records a client request as in flight, then sends it on; a request
    /// [`Relay::can_track`] turns down is refused instead.
    pub(super) fn forward_request<W: Write>(
        &self,
        id: Raw<'_>,
        asked: Asked,
        call: Option<(String, Instant)>,
        line: &[u8],
        server: &mut LineWriter<W>,
    ) -> io::Result<()> {
        self.track_and_send(id, asked, call, None, line, server)
    }

    /// [`Relay::forward_request`] for an approved call, whose answer, when
    /// it is the server's `input_required`, gets `sealing`'s state.
    pub(super) fn forward_call<W: Write>(
        &self,
        id: Raw<'_>,
        call: Option<(String, Instant)>,
        sealing: Option<String>,
        line: &[u8],
        server: &mut LineWriter<W>,
    ) -> io::Result<()> {
        self.track_and_send(id, Asked::Other, call, sealing, line, server)
    }

    pub(super) fn track_and_send<W: Write>(
        &self,
        id: Raw<'_>,
        asked: Asked,
        call: Option<(String, Instant)>,
        sealing: Option<String>,
        line: &[u8],
        server: &mut LineWriter<W>,
    ) -> io::Result<()> {
        if let Err(why) = self.can_track(id) {
            return self.refuse_request(id, why);
        }
        // Only this pump adds requests, so the check above still holds.
        self.state().client.insert(
            IdKey::of(id),
            ClientRequest {
                id: id.to_buf(),
                asked,
                call,
                sealing,
            },
        );
        server.queue(line)
    }

    pub(super) fn refuse_request(&self, id: Raw<'_>, why: &str) -> io::Result<()> {
        warn!(id = %loggable(id.get()), "refused a request: {why}");
        let reply = jsonrpc::error_response(Some(id), jsonrpc::INVALID_REQUEST, why);
        self.send_client(&reply)
    }

    /// Ends a request the server will not answer: an internal error for
    /// the client, and a result event for the audit log.
    pub(super) fn fail_request(&self, request: &ClientRequest, why: &str) -> io::Result<()> {
        if let Some((tool, started)) = &request.call {
            let outcome = Outcome::Error(jsonrpc::INTERNAL_ERROR.into());
            self.audit_result(request.id.raw(), tool, *started, outcome);
        } else if let Some(t) = self.telemetry() {
            let code = jsonrpc::INTERNAL_ERROR.into();
            t.end(request.id.raw(), crate::telemetry::Ended::Error(code));
        }
        let reply = jsonrpc::error_response(Some(request.id.raw()), jsonrpc::INTERNAL_ERROR, why);
        self.send_client(&reply)
    }

    /// The client's `initialize` read after the session began to stop (the
    /// server exited before the client spoke): kept in flight, unsent, so
    /// that [`Relay::fail_initialize`] answers it.
    pub(super) fn late_initialize(&self, line: &[u8]) {
        let Ok(Message::Request { id, method, .. }) = jsonrpc::parse(line, Strictness::Full) else {
            return;
        };
        let mut state = self.state();
        if method != "initialize" || state.initialize_sent {
            return;
        }
        state.initialize_sent = true;
        state.client.insert(
            IdKey::of(id),
            ClientRequest {
                id: id.to_buf(),
                asked: Asked::Initialize,
                call: None,
                sealing: None,
            },
        );
    }

    /// Once the server is gone: answers the client's `initialize`, if it
    /// is still waiting, with `why`.
    pub fn fail_initialize(&self, why: &str) -> io::Result<()> {
        let waiting: Vec<ClientRequest> = {
            let mut state = self.state();
            let keys: Vec<IdKey> = state
                .client
                .iter()
                .filter(|(_, r)| r.asked == Asked::Initialize)
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| state.client.remove(k)).collect()
        };
        for request in &waiting {
            self.fail_request(request, why)?;
        }
        Ok(())
    }

    /// Once the server is gone: answers every request still waiting on it
    /// with an error, and refuses every call still held for approval.
    pub fn fail_in_flight(&self, why: &str) -> io::Result<()> {
        let (waiting, held) = {
            let mut state = self.state();
            let waiting: Vec<ClientRequest> =
                std::mem::take(&mut state.client).into_values().collect();
            let mut held: Vec<Held> = state.held.drain().map(|(_, h)| h).collect();
            held.extend(state.waiting.drain().map(|(_, w)| w.held));
            (waiting, held)
        };
        for request in &waiting {
            self.fail_request(request, why)?;
        }
        for mut held in held {
            if let Some(timer) = held.timer.take() {
                timer.abort();
            }
            let call = held.call();
            let refusal = self.refusal(&call, RefusalKind::ApprovalUnavailable { busy: false });
            self.refuse(
                held.id.raw(),
                &refusal,
                held.stateless,
                self.facts(&call).as_ref(),
            )?;
        }
        Ok(())
    }
}
