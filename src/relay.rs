//! The two pumps, client to server and server to client, and what they
//! share: the policy, the requests in flight each way, calls held for a
//! person's approval, the audit log, and the one writer of the client's
//! output.
//!
//! Each pump is straight-line code on a thread of its own: it reads one
//! line at a time and either forwards the original bytes, answers the
//! client itself, or drops the line with a warning. Only an approval
//! prompt's timer lives on the event loop. The pumps are generic over the
//! byte streams so tests can run them over pipes of their own.

mod held;
mod out_of_band;
mod round_trip;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;
use tracing::{debug, info, warn};

use crate::approval;
use crate::audit::{Audit, AuditEvent};
use crate::framing::{Frame, LineReader, LineWriter, Source};
use crate::json::{Raw, RawBuf};
use crate::jsonrpc::{self, IdKey, Message, Strictness, ToolFields};
use crate::pin;
use crate::policy::{Charge, Policy, Refusal, RefusalKind, ToolCall, Verdict};
use crate::redact::{self, loggable};
use crate::tools_list;
use held::Held;
use out_of_band::Waiting;

/// Requests the client may have waiting at once (in flight or held): a
/// client that never waits for answers, or a server that never gives them,
/// cannot grow toolwarden's tables without end.
pub const MAX_IN_FLIGHT: usize = 10_000;
/// The longest request id toolwarden keeps track of, in bytes of JSON.
pub const MAX_ID_BYTES: usize = 1024;

/// The client's output, shared by both pumps.
pub type ClientOut = Box<dyn Write + Send>;

/// What a session is set up with besides the policy.
pub struct Settings {
    pub max_message: usize,
    pub approval_timeout: Duration,
    pub audit: Audit,
    /// Where the counters are.
    pub state: crate::state::State,
    /// `--monitor`: every decision is made, logged and audited, and every
    /// call relayed.
    pub monitor: bool,
    /// `--pin`: tools whose definitions must match their pins.
    pub pins: Option<pin::Pins>,
    /// `--approval`: where a person is asked.
    pub approval: approval::Channel,
    /// `--approval-hold`: how long a call in the inbox is held before the
    /// agent is told to retry it.
    pub approval_hold: Duration,
    /// Where calls wait for a person out of band.
    pub inbox: crate::inbox::Inbox,
    /// The server as a person approving its calls sees it (secrets hidden).
    pub server_label: String,
}

/// The server's input, shared by the client pump and the out-of-band
/// approvals that forward a call when a person decides.
type ServerOut = LineWriter<Box<dyn Write + Send>>;

pub struct Relay {
    /// The policy now: a reload replaces it between two calls; a call
    /// holds the one it was decided by (see [`Relay::policy`]).
    policy: std::sync::RwLock<Arc<Policy>>,
    settings: Settings,
    state: Mutex<State>,
    to_client: Mutex<LineWriter<ClientOut>>,
    /// Set while the client pump runs.
    to_server: Mutex<Option<ServerOut>>,
    /// The session's event loop, for the approval prompts' timers: the
    /// pumps run on threads of their own.
    runtime: tokio::runtime::Handle,
    /// Set when the session stops: the client pump forwards nothing more.
    stopping: AtomicBool,
    /// Seals 2026-07-28 approval states; made on first use (it reads or
    /// makes the key file).
    sealer: std::sync::OnceLock<crate::request_state::Sealer>,
}

#[derive(Default)]
struct State {
    /// The client's requests the server has not answered.
    client: BTreeMap<IdKey, ClientRequest>,
    /// The server's requests (sampling, elicitation, roots, ping) the
    /// client has not answered.
    server: BTreeSet<IdKey>,
    /// Calls waiting for a person, by the id of their prompt.
    held: HashMap<String, Held>,
    /// Calls waiting in the inbox, by their request id.
    waiting: HashMap<IdKey, Waiting>,
    elicitation: approval::Elicitation,
    /// Prompts may be sent only after `notifications/initialized`.
    initialized: bool,
    /// The client has sent `initialize`, and the server has answered one.
    initialize_sent: bool,
    initialize_answered: bool,
    /// The server declared `capabilities.tools.listChanged` at initialize:
    /// the client takes `notifications/tools/list_changed` from it.
    server_lists_change: bool,
    /// The tool names the server has listed, to tell whether a reloaded
    /// policy hides another set of them; `None` once more than
    /// [`MAX_KNOWN_TOOLS`] were seen (then any reload may have).
    listed: Option<BTreeSet<String>>,
    /// More names were listed than are kept.
    listed_overflow: bool,
    /// With `--pin`: what the pins said of each tool listed so far.
    pinned: HashMap<String, pin::Status>,
    /// What the client declared at initialize, when `pin` would declare
    /// otherwise: the review advice repeats it.
    client_capabilities: Option<pin::ClientCapabilities>,
}

/// Tool names kept for reloads, at most (a name is at most a line).
pub const MAX_KNOWN_TOOLS: usize = 10_000;

/// What toolwarden does with the answer to a client's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Initialize,
    ToolsList,
    Other,
}

struct ClientRequest {
    /// Kept to answer it ourselves if the server goes away.
    id: RawBuf,
    asked: Asked,
    /// For a tools/call: the tool and when it was sent, for the audit log.
    call: Option<(String, Instant)>,
    /// For an approved 2026-07-28 call, its key: a state the server
    /// answers with is sealed in toolwarden's (round_trip.rs).
    sealing: Option<String>,
}

/// Whether an `initialize` result declares `capabilities.tools.listChanged`.
fn declares_list_changed(result: Raw<'_>) -> bool {
    result
        .pointer("/capabilities/tools/listChanged")
        .is_some_and(|v| v.get() == "true")
}

/// What the audit log keeps of a call's arguments.
struct Facts {
    redacted: redact::Redacted,
    hmac: String,
}

impl Relay {
    pub fn new(policy: Policy, settings: Settings, client_out: ClientOut) -> Relay {
        Relay {
            policy: std::sync::RwLock::new(Arc::new(policy)),
            settings,
            state: Mutex::new(State::default()),
            to_client: Mutex::new(LineWriter::new(client_out)),
            to_server: Mutex::new(None),
            runtime: tokio::runtime::Handle::current(),
            stopping: AtomicBool::new(false),
            sealer: std::sync::OnceLock::new(),
        }
    }

    /// The policy as it is now. A call keeps this one from its decision to
    /// its charge, whatever a reload does in between.
    pub fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.policy.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts `policy` in place for the calls that come next; returns the
    /// one it replaces.
    pub fn replace_policy(&self, policy: Policy) -> Arc<Policy> {
        let mut now = self.policy.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *now, Arc::new(policy))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the maps half-updated: every
        // change is a single insert or remove.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The writer to the client, held for one message at a time, so that
    /// messages from both pumps never interleave. A panic on the other pump
    /// does not make it unusable: queueing a message is one copy into its
    /// buffer, so no message is left half-queued.
    fn server_writer(&self) -> std::sync::MutexGuard<'_, Option<ServerOut>> {
        self.to_server.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn client_writer(&self) -> std::sync::MutexGuard<'_, LineWriter<ClientOut>> {
        self.to_client.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send_client(&self, message: &[u8]) -> io::Result<()> {
        self.client_writer().send(message)
    }

    /// Like [`Relay::send_client`], without the flush: the server pump
    /// flushes once the lines it already has are done.
    fn queue_client(&self, message: &[u8]) -> io::Result<()> {
        self.client_writer().queue(message)
    }

    /// Stops the client pump: a line it reads from now on is dropped, and
    /// the pump ends.
    pub fn stop_reading_client(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

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

    fn client_line<W: Write>(
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

    fn tools_call<W: Write>(
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
    fn pin_refusal(&self, tool: &str) -> Option<RefusalKind> {
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
    fn refuse_or_relay<W: Write>(
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

    /// Takes a call's charge and writes down its `decision` (allowed, or
    /// approved), or says why the call is refused instead. With
    /// `--audit-required` the decision is written before the charge is
    /// taken, so that a call the log could not take costs nothing.
    fn charge(
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
    fn take(
        &self,
        policy: &Policy,
        call: &ToolCall,
        charge: &Charge,
        commit: bool,
    ) -> Result<(), Box<Refusal>> {
        let refusal = match self.settings.state.take(policy, charge, commit) {
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

    fn client_cancels<W: Write>(
        &self,
        params: Option<Raw<'_>>,
        line: &[u8],
        server: &mut LineWriter<W>,
    ) -> io::Result<()> {
        let Some(key) = cancelled_request(params) else {
            warn!("dropped a notifications/cancelled without a readable requestId");
            return Ok(());
        };
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

    /// Whether a new client request with this id can be kept track of: not
    /// while another with the same id is in flight or held (their answers
    /// could not be told apart), nor beyond [`MAX_IN_FLIGHT`].
    fn can_track(&self, id: Raw<'_>) -> Result<(), &'static str> {
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
    fn forward_request<W: Write>(
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
    fn forward_call<W: Write>(
        &self,
        id: Raw<'_>,
        call: Option<(String, Instant)>,
        sealing: Option<String>,
        line: &[u8],
        server: &mut LineWriter<W>,
    ) -> io::Result<()> {
        self.track_and_send(id, Asked::Other, call, sealing, line, server)
    }

    fn track_and_send<W: Write>(
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

    /// Keeps the names a `tools/list` page showed, up to
    /// [`MAX_KNOWN_TOOLS`], and what the pins said of each.
    fn remember_listed(&self, seen: Vec<(String, Option<pin::Status>)>) {
        let mut state = self.state();
        let mut news = Vec::new();
        for (name, status) in seen {
            if let Some(status) = status {
                let known =
                    state.pinned.len() < MAX_KNOWN_TOOLS || state.pinned.contains_key(&name);
                if known && state.pinned.insert(name.clone(), status) != Some(status) {
                    news.push((name.clone(), status));
                }
            }
            if !state.listed_overflow {
                let listed = state.listed.get_or_insert_with(BTreeSet::new);
                listed.insert(name);
                if listed.len() > MAX_KNOWN_TOOLS {
                    state.listed = None;
                    state.listed_overflow = true;
                }
            }
        }
        let review = self
            .settings
            .pins
            .as_ref()
            .map(|p| p.review_command(state.client_capabilities.as_ref()));
        drop(state);
        for (name, status) in news {
            let what = match status {
                pin::Status::Matches => continue,
                pin::Status::Changed => "changed since it was pinned",
                pin::Status::Unpinned => "is not pinned",
            };
            warn!(
                tool = %loggable(&name),
                "the tool {what}: withheld from the client and refused; review it with `{}`",
                review.as_deref().unwrap_or_default()
            );
        }
    }

    /// Puts a reloaded policy in place. When it hides another set of the
    /// tools the server listed, and the server said its list can change,
    /// the client is told to list them again.
    /// The audit log gets a `policy_reloaded` event with the file's hash.
    pub fn reload(&self, policy: Policy, file_sha256: &str) -> io::Result<()> {
        let old = self.replace_policy(policy);
        let new = self.policy();
        let changed = {
            let state = self.state();
            let listed = match &state.listed {
                Some(names) => names.iter().any(|n| old.hides(n) != new.hides(n)),
                None => state.listed_overflow,
            };
            state.server_lists_change && !self.settings.monitor && listed
        };
        // The client hears of it before the audit log does, so that a
        // reader of the log knows the client was told.
        let told = if changed {
            info!("the reloaded policy hides other tools: notifications/tools/list_changed sent");
            self.send_client(br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#)
        } else {
            Ok(())
        };
        self.settings.audit.record(AuditEvent {
            event: "policy_reloaded",
            policy_sha256: Some(file_sha256.to_owned()),
            ..Default::default()
        });
        told
    }

    fn refuse_request(&self, id: Raw<'_>, why: &str) -> io::Result<()> {
        warn!(id = %loggable(id.get()), "refused a request: {why}");
        let reply = jsonrpc::error_response(Some(id), jsonrpc::INVALID_REQUEST, why);
        self.send_client(&reply)
    }

    fn refusal(&self, call: &ToolCall, kind: RefusalKind) -> Refusal {
        let policy = self.policy();
        let rule = policy.rule_for(&call.name);
        Refusal {
            tool: call.name.to_string(),
            rule: rule.map(|r| r.pattern.clone()),
            reason: rule.and_then(|r| r.reason.clone()),
            kind,
        }
    }

    fn refuse(
        &self,
        id: Raw<'_>,
        refusal: &Refusal,
        stateless: bool,
        facts: Option<&Facts>,
    ) -> io::Result<()> {
        self.record_refusal(id, refusal, facts);
        let result = refusal.to_result(stateless);
        self.send_client(&jsonrpc::result_response(id, &result))
    }

    /// Logs and audits a refusal.
    fn record_refusal(&self, id: Raw<'_>, refusal: &Refusal, facts: Option<&Facts>) {
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
    fn started(&self, call: &ToolCall) -> Option<(String, Instant)> {
        self.settings
            .audit
            .enabled()
            .then(|| (call.name.to_string(), Instant::now()))
    }

    /// The redacted arguments and their hash, when there is an audit log.
    fn facts(&self, call: &ToolCall) -> Option<Facts> {
        self.settings.audit.enabled().then(|| self.facts_now(call))
    }

    fn facts_now(&self, call: &ToolCall) -> Facts {
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
    fn audit_approval(
        &self,
        id: Raw<'_>,
        tool: &str,
        channel: &'static str,
        answer: &'static str,
        approval_id: Option<&str>,
        by: Option<&str>,
    ) {
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

    fn decision_event(
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
    fn admitted(
        &self,
        id: Raw<'_>,
        tool: &str,
        decision: &'static str,
        facts: Option<&Facts>,
    ) -> bool {
        if !self.settings.audit.enabled() {
            return true;
        }
        let event = self.decision_event(id, tool, decision, facts);
        self.settings.audit.admits(event)
    }

    fn audit_decision(
        &self,
        id: Raw<'_>,
        tool: &str,
        decision: &'static str,
        facts: Option<&Facts>,
    ) {
        if self.settings.audit.enabled() {
            let event = self.decision_event(id, tool, decision, facts);
            self.settings.audit.record(event);
        }
    }

    fn too_long_from_client(&self, prefix: &[u8], len: usize) -> io::Result<()> {
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

    /// Relays the server's output to the client until the server closes it.
    pub fn server_pump<R: Source>(&self, server_out: R) -> io::Result<()> {
        let mut lines = LineReader::new(server_out, self.settings.max_message);
        while let Some(frame) = lines.next_frame()? {
            match frame {
                Frame::Line(line) => self.server_line(line)?,
                Frame::TooLong { prefix, len } => self.too_long_from_server(&prefix, len)?,
            }
            if !lines.has_line() {
                self.client_writer().flush()?;
            }
        }
        debug!("server closed its output");
        Ok(())
    }

    fn server_line(&self, line: &[u8]) -> io::Result<()> {
        if line.trim_ascii().is_empty() {
            return Ok(());
        }
        let message = match jsonrpc::parse(line, Strictness::Envelope) {
            Ok(message) => message,
            Err(rejection) => return self.not_forwarded_from_server(line, &rejection.message),
        };
        match message {
            Message::Request { id, .. } => {
                if approval::is_ours(id) {
                    // A request under a prompt's id would have the person's
                    // answer to it taken as the answer to toolwarden's
                    // prompt: never relayed, and left unanswered (the
                    // server pump does not write to the server).
                    warn!(
                        id = %loggable(id.get()),
                        "dropped a request from the server under an id reserved for toolwarden's approval prompts"
                    );
                    return Ok(());
                }
                self.state().server.insert(IdKey::of(id));
                self.queue_client(line)
            }
            Message::Notification { method, params, .. } => {
                if method == "notifications/cancelled" {
                    // The client will not answer it now.
                    if let Some(key) = cancelled_request(params) {
                        self.state().server.remove(&key);
                    }
                }
                self.queue_client(line)
            }
            Message::Response { id, result } => {
                let request = self.state().client.remove(&IdKey::of(id));
                let Some(request) = request else {
                    info!(
                        id = %loggable(id.get()),
                        "dropped a response from the server to a request not in flight (never made, or cancelled)"
                    );
                    return Ok(());
                };
                if let Some((tool, started)) = &request.call {
                    self.audit_result(request.id.raw(), tool, *started, Outcome::of(line, result));
                }
                if request.asked == Asked::Initialize {
                    self.state().initialize_answered = true;
                }
                let filtered = match (request.asked, result) {
                    (Asked::Initialize, Some(result)) => {
                        self.state().server_lists_change = declares_list_changed(result);
                        None
                    }
                    (Asked::ToolsList, Some(result)) => {
                        let policy = self.policy();
                        let pins = self.settings.pins.as_ref();
                        let mut seen = Vec::new();
                        let filtered = tools_list::filter(line, result, |name, tool| {
                            let status = pins.map(|p| p.check(name, tool.get()));
                            if let Some(name) = name {
                                seen.push((name.to_owned(), status));
                            }
                            let withheld = status.is_some_and(|s| s != pin::Status::Matches);
                            let hidden = name.is_some_and(|n| policy.hides(n));
                            // Monitoring hides nothing: the agent sees what
                            // it would see without toolwarden.
                            !self.settings.monitor && (hidden || withheld)
                        });
                        self.remember_listed(seen);
                        filtered
                    }
                    (Asked::Other, Some(result)) => request
                        .sealing
                        .as_deref()
                        .and_then(|key| self.seal_server_state(line, result, key)),
                    _ => None,
                };
                self.queue_client(filtered.as_deref().unwrap_or(line))
            }
        }
    }

    /// A line from the server that is not JSON-RPC (a banner, a log line,
    /// or JSON nested too deep) goes to stderr, never to the client, which
    /// would choke on it. When it begins as an answer to a request in
    /// flight, that request gets an error instead of waiting forever.
    fn not_forwarded_from_server(&self, line: &[u8], why: &str) -> io::Result<()> {
        let shown = String::from_utf8_lossy(&line[..line.len().min(2000)]);
        warn!(
            "server wrote a line that is not JSON-RPC to stdout (not forwarded: {}): {}",
            loggable(why),
            loggable(&shown)
        );
        let seen = jsonrpc::scan_prefix(line);
        let Some(id) = seen.id.filter(|_| seen.is_response) else {
            return Ok(());
        };
        let request = self.state().client.remove(&IdKey::of(id.raw()));
        match request {
            Some(request) => self.fail_request(
                &request,
                &format!("the server's answer could not be relayed: {why}"),
            ),
            None => Ok(()),
        }
    }

    /// An answer too large to relay still ends its request: the client gets
    /// an error instead of waiting forever.
    fn too_long_from_server(&self, prefix: &[u8], len: usize) -> io::Result<()> {
        let max = self.settings.max_message;
        warn!(
            len,
            max, "dropped a line from the server longer than --max-message-bytes"
        );
        let seen = jsonrpc::scan_prefix(prefix);
        let Some(id) = seen.id.filter(|_| seen.is_response) else {
            return Ok(());
        };
        let request = self.state().client.remove(&IdKey::of(id.raw()));
        if let Some(request) = request {
            let message =
                format!("the server's answer of {len} bytes exceeds toolwarden's limit of {max} bytes (--max-message-bytes)");
            self.fail_request(&request, &message)?;
        }
        Ok(())
    }

    /// Ends a request the server will not answer: an internal error for
    /// the client, and a result event for the audit log.
    fn fail_request(&self, request: &ClientRequest, why: &str) -> io::Result<()> {
        if let Some((tool, started)) = &request.call {
            let outcome = Outcome::Error(jsonrpc::INTERNAL_ERROR.into());
            self.audit_result(request.id.raw(), tool, *started, outcome);
        }
        let reply = jsonrpc::error_response(Some(request.id.raw()), jsonrpc::INTERNAL_ERROR, why);
        self.send_client(&reply)
    }

    fn audit_result(&self, id: Raw<'_>, tool: &str, started: Instant, outcome: Outcome) {
        if !self.settings.audit.enabled() {
            return;
        }
        let (is_error, error_code) = match outcome {
            Outcome::Result(is_error) => (Some(is_error), None),
            Outcome::Error(code) => (None, Some(code)),
        };
        let event = AuditEvent {
            event: "result",
            id: Some(id.to_raw_value()),
            tool: tool.to_owned(),
            duration_ms: Some((started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0),
            is_error,
            error_code,
            ..Default::default()
        };
        self.settings.audit.record(event);
    }

    /// The client's `initialize` read after the session began to stop (the
    /// server exited before the client spoke): kept in flight, unsent, so
    /// that [`Relay::fail_initialize`] answers it.
    fn late_initialize(&self, line: &[u8]) {
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

    /// Whether the client has sent its `initialize`.
    pub fn initialize_sent(&self) -> bool {
        self.state().initialize_sent
    }

    /// Whether the server has answered an `initialize`: it started.
    pub fn initialize_answered(&self) -> bool {
        self.state().initialize_answered
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

    /// Flushes the audit log and what is left for the client.
    pub fn finish(&self) -> io::Result<()> {
        self.settings.audit.end();
        self.client_writer().flush()
    }
}

/// How a forwarded call ended, for the audit log.
enum Outcome {
    /// A result, with its `isError`.
    Result(bool),
    /// A JSON-RPC error, with its code.
    Error(i64),
}

impl Outcome {
    fn of(line: &[u8], result: Option<Raw<'_>>) -> Outcome {
        #[derive(Deserialize)]
        struct CallResult {
            #[serde(rename = "isError")]
            is_error: Option<bool>,
        }
        #[derive(Deserialize)]
        struct ErrorResponse {
            error: ErrorBody,
        }
        #[derive(Deserialize)]
        struct ErrorBody {
            code: i64,
        }
        match result {
            Some(result) => Outcome::Result(
                serde_json::from_str::<CallResult>(result.get())
                    .ok()
                    .and_then(|r| r.is_error)
                    .unwrap_or(false),
            ),
            None => Outcome::Error(
                serde_json::from_slice::<ErrorResponse>(line)
                    .map(|e| e.error.code)
                    .unwrap_or(i64::from(jsonrpc::INTERNAL_ERROR)),
            ),
        }
    }
}

/// The request a `notifications/cancelled` names.
fn cancelled_request(params: Option<Raw<'_>>) -> Option<IdKey> {
    Some(IdKey::of(params?.member("requestId")?))
}

/// Whether a request is in the stateless protocol (2026-07-28), whose
/// results carry `resultType`: it names its version in `_meta`.
fn is_stateless(params: Option<Raw<'_>>) -> bool {
    params
        .and_then(|p| p.member("_meta"))
        .and_then(|m| m.member("io.modelcontextprotocol/protocolVersion"))
        .is_some_and(|v| v.get() != "null")
}

#[cfg(test)]
mod tests;
