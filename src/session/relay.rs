//! The two pumps, client to server and server to client, and what they
//! share: the policy, the requests in flight each way, calls held for a
//! person's approval, the audit log, and the one writer of the client's
//! output.
//!
//! The pieces: `client_side.rs` (the client's lines, calls decided),
//! `server_side.rs` (the server's lines), `in_flight.rs` (requests kept
//! track of, and ended when the server cannot answer), `decisions.rs`
//! (charging, refusing, the audit record), `held.rs` and
//! `out_of_band.rs` (calls held for a person), `round_trip.rs`
//! (approval for 2026-07-28 clients).
//!
//! Each pump is straight-line code on a thread of its own: it reads one
//! line at a time and either forwards the original bytes, answers the
//! client itself, or drops the line with a warning. Only an approval
//! prompt's timer lives on the event loop. The pumps are generic over the
//! byte streams so tests can run them over pipes of their own.

mod client_side;
mod decisions;
mod held;
mod in_flight;
mod out_of_band;
mod round_trip;
mod server_side;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::info;

use crate::audit::{Audit, AuditEvent};
use crate::commands::pin;
use crate::policy::Policy;
use crate::redact::{self, loggable};
use crate::session::approval;
use crate::wire::framing::LineWriter;
use crate::wire::json::{Raw, RawBuf};
use crate::wire::jsonrpc::IdKey;
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
    /// OpenTelemetry, when OTEL_* or `--otlp` name a receiver.
    pub telemetry: Option<Arc<crate::telemetry::Telemetry>>,
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
    sealer: std::sync::OnceLock<crate::session::request_state::Sealer>,
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

    /// Whether the client has sent its `initialize`.
    pub fn initialize_sent(&self) -> bool {
        self.state().initialize_sent
    }

    /// Whether the server has answered an `initialize`: it started.
    pub fn initialize_answered(&self) -> bool {
        self.state().initialize_answered
    }

    /// Flushes the audit log and what is left for the client.
    pub fn finish(&self) -> io::Result<()> {
        self.settings.audit.end();
        if let Some(telemetry) = &self.settings.telemetry {
            telemetry.finish();
        }
        self.client_writer().flush()
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
