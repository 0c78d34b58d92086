//! The two pumps, client to server and server to client, and what they
//! share: the policy, the requests in flight each way, and the one writer
//! of the client's output.
//!
//! Each pump reads one line at a time and either forwards the original
//! bytes, answers the client itself, or drops the line with a warning. The
//! pumps are generic over the byte streams so tests can run them over
//! in-memory pipes.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info, warn};

use crate::framing::{Frame, LineReader, LineWriter};
use crate::jsonrpc::{self, IdKey, Message, Strictness};
use crate::policy::{Policy, Refusal, RefusalKind, ToolCall, Verdict};
use crate::tools_list;

/// The client's output, shared by both pumps.
pub type ClientOut = Box<dyn AsyncWrite + Send + Unpin>;

pub struct Relay {
    policy: Policy,
    max_message: usize,
    state: Mutex<InFlight>,
    to_client: tokio::sync::Mutex<LineWriter<ClientOut>>,
}

/// Requests each side is still waiting on.
#[derive(Default)]
struct InFlight {
    /// The client's requests the server has not answered.
    client: HashMap<IdKey, ClientRequest>,
    /// The server's requests (sampling, elicitation, roots, ping) the
    /// client has not answered.
    server: HashSet<IdKey>,
}

struct ClientRequest {
    /// Kept to answer it ourselves if the server goes away.
    id: Box<RawValue>,
    lists_tools: bool,
    cancelled: bool,
}

impl Relay {
    pub fn new(policy: Policy, max_message: usize, client_out: ClientOut) -> Relay {
        Relay {
            policy,
            max_message,
            state: Mutex::new(InFlight::default()),
            to_client: tokio::sync::Mutex::new(LineWriter::new(client_out)),
        }
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, InFlight> {
        // A panic elsewhere cannot leave these maps half-updated: every
        // change is a single insert or remove.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn send_client(&self, message: &[u8]) -> io::Result<()> {
        self.to_client.lock().await.send(message).await
    }

    /// Relays the client's input to the server until the client closes it.
    /// Returning drops `server_in`, which closes the server's stdin.
    pub async fn client_pump<R, W>(&self, client_in: R, server_in: W) -> io::Result<()>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut lines = LineReader::new(client_in, self.max_message);
        let mut server = LineWriter::new(server_in);
        while let Some(frame) = lines.next().await? {
            match frame {
                Frame::Line(line) => self.client_line(line, &mut server).await?,
                Frame::TooLong { prefix, len } => self.too_long_from_client(&prefix, len).await?,
            }
        }
        debug!("client closed its output");
        Ok(())
    }

    async fn client_line<W: AsyncWrite + Unpin>(
        &self,
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
                    "refused a line from the client: {}", rejection.message
                );
                if let Some(id) = rejection.reply_id {
                    let reply =
                        jsonrpc::error_response(id.as_deref(), rejection.code, &rejection.message);
                    self.send_client(&reply).await?;
                }
                return Ok(());
            }
        };
        match message {
            Message::Request { id, method, params } if method == "tools/call" => {
                let call = match ToolCall::from_params(params) {
                    Ok(call) => call,
                    Err(why) => {
                        warn!(id = id.get(), "refused a malformed tools/call: {why}");
                        let reply =
                            jsonrpc::error_response(Some(id), jsonrpc::INVALID_PARAMS, &why);
                        return self.send_client(&reply).await;
                    }
                };
                match self.policy.check(&call) {
                    Verdict::Allow => {
                        info!(tool = %call.name, id = id.get(), "allowed");
                        self.forward_request(id, false, line, server).await
                    }
                    Verdict::Approve => {
                        let refusal = Refusal {
                            tool: call.name.to_string(),
                            rule: self.policy.rule_for(&call.name).map(|r| r.pattern.clone()),
                            reason: None,
                            kind: RefusalKind::ApprovalUnavailable,
                        };
                        self.refuse(id, params, &refusal).await
                    }
                    Verdict::Refuse(refusal) => self.refuse(id, params, &refusal).await,
                }
            }
            Message::Request { id, method, .. } => {
                self.forward_request(id, method == "tools/list", line, server)
                    .await
            }
            Message::Notification { method, .. } if method == "tools/call" => {
                // A call nobody can answer must not run unseen.
                warn!("dropped a tools/call sent as a notification (it has no id)");
                Ok(())
            }
            Message::Notification { method, params } if method == "notifications/cancelled" => {
                let Some(key) = cancelled_request(params) else {
                    warn!("dropped a notifications/cancelled without a readable requestId");
                    return Ok(());
                };
                let known = match self.in_flight().client.get_mut(&key) {
                    Some(request) => {
                        request.cancelled = true;
                        true
                    }
                    None => false,
                };
                if known {
                    server.send(line).await
                } else {
                    // Refused or already answered: the server never had it.
                    debug!(request = %key, "dropped a cancellation for a request the server does not have");
                    Ok(())
                }
            }
            Message::Notification { .. } => server.send(line).await,
            Message::Response { id, .. } => {
                let key = IdKey::of(id);
                if self.in_flight().server.remove(&key) {
                    server.send(line).await
                } else {
                    warn!(
                        id = id.get(),
                        "dropped a response from the client to a request the server never made"
                    );
                    Ok(())
                }
            }
        }
    }

    /// Records a client request as in flight, then sends it on. A second
    /// request with the id of one still in flight is refused: its answer
    /// could not be told apart.
    async fn forward_request<W: AsyncWrite + Unpin>(
        &self,
        id: &RawValue,
        lists_tools: bool,
        line: &[u8],
        server: &mut LineWriter<W>,
    ) -> io::Result<()> {
        let key = IdKey::of(id);
        let fresh = {
            let mut in_flight = self.in_flight();
            match in_flight.client.entry(key) {
                std::collections::hash_map::Entry::Occupied(_) => false,
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(ClientRequest {
                        id: id.to_owned(),
                        lists_tools,
                        cancelled: false,
                    });
                    true
                }
            }
        };
        if fresh {
            server.send(line).await
        } else {
            warn!(
                id = id.get(),
                "refused a request whose id is already in flight"
            );
            let reply = jsonrpc::error_response(
                Some(id),
                jsonrpc::INVALID_REQUEST,
                "invalid request: a request with this id is still in flight",
            );
            self.send_client(&reply).await
        }
    }

    async fn refuse(
        &self,
        id: &RawValue,
        params: Option<&RawValue>,
        refusal: &Refusal,
    ) -> io::Result<()> {
        info!(tool = %refusal.tool, id = id.get(), decision = refusal.decision(), "refused");
        let result = refusal.to_result(is_stateless(params));
        self.send_client(&jsonrpc::result_response(id, &result))
            .await
    }

    async fn too_long_from_client(&self, prefix: &[u8], len: usize) -> io::Result<()> {
        let seen = jsonrpc::scan_prefix(prefix);
        warn!(
            len,
            max = self.max_message,
            "refused a line from the client longer than --max-message-bytes"
        );
        if seen.is_response {
            return Ok(());
        }
        let message = format!(
            "invalid request: message of {len} bytes exceeds the limit of {} bytes (--max-message-bytes)",
            self.max_message
        );
        let reply = jsonrpc::error_response(seen.id.as_deref(), jsonrpc::INVALID_REQUEST, &message);
        self.send_client(&reply).await
    }

    /// Relays the server's output to the client until the server closes it.
    pub async fn server_pump<R: AsyncRead + Unpin>(&self, server_out: R) -> io::Result<()> {
        let mut lines = LineReader::new(server_out, self.max_message);
        while let Some(frame) = lines.next().await? {
            match frame {
                Frame::Line(line) => self.server_line(line).await?,
                Frame::TooLong { prefix, len } => self.too_long_from_server(&prefix, len).await?,
            }
        }
        debug!("server closed its output");
        Ok(())
    }

    async fn server_line(&self, line: &[u8]) -> io::Result<()> {
        if line.trim_ascii().is_empty() {
            return Ok(());
        }
        let message = match jsonrpc::parse(line, Strictness::Envelope) {
            Ok(message) => message,
            Err(_) => {
                // A banner or a log line: the client would choke on it.
                let shown = String::from_utf8_lossy(&line[..line.len().min(2000)]);
                warn!(
                    "server wrote a line that is not JSON-RPC to stdout (not forwarded): {shown}"
                );
                return Ok(());
            }
        };
        match message {
            Message::Request { id, .. } => {
                self.in_flight().server.insert(IdKey::of(id));
                self.send_client(line).await
            }
            Message::Notification { .. } => self.send_client(line).await,
            Message::Response { id, result } => {
                let request = self.in_flight().client.remove(&IdKey::of(id));
                match request {
                    Some(request) if request.lists_tools => {
                        let filtered = result.and_then(|r| {
                            tools_list::filter(line, r, |name| self.policy.hides(name))
                        });
                        self.send_client(filtered.as_deref().unwrap_or(line)).await
                    }
                    Some(_) => self.send_client(line).await,
                    None => {
                        warn!(
                            id = id.get(),
                            "dropped a response from the server to a request the client never made"
                        );
                        Ok(())
                    }
                }
            }
        }
    }

    /// An answer too large to relay still ends its request: the client gets
    /// an error instead of waiting forever.
    async fn too_long_from_server(&self, prefix: &[u8], len: usize) -> io::Result<()> {
        warn!(
            len,
            max = self.max_message,
            "dropped a line from the server longer than --max-message-bytes"
        );
        let seen = jsonrpc::scan_prefix(prefix);
        let Some(id) = seen.id.filter(|_| seen.is_response) else {
            return Ok(());
        };
        let request = self.in_flight().client.remove(&IdKey::of(&id));
        if let Some(request) = request {
            let message = format!(
                "the server's answer of {len} bytes exceeds toolwarden's limit of {} bytes (--max-message-bytes)",
                self.max_message
            );
            let reply =
                jsonrpc::error_response(Some(&request.id), jsonrpc::INTERNAL_ERROR, &message);
            self.send_client(&reply).await?;
        }
        Ok(())
    }

    /// Answers every request still waiting on the server with an error,
    /// once the server is gone. Cancelled requests expect no answer.
    pub async fn fail_in_flight(&self, why: &str) -> io::Result<()> {
        let waiting: Vec<ClientRequest> = self.in_flight().client.drain().map(|(_, r)| r).collect();
        for request in waiting.into_iter().filter(|r| !r.cancelled) {
            let reply = jsonrpc::error_response(Some(&request.id), jsonrpc::INTERNAL_ERROR, why);
            self.send_client(&reply).await?;
        }
        Ok(())
    }

    pub async fn shutdown_client(&self) -> io::Result<()> {
        self.to_client.lock().await.shutdown().await
    }
}

/// The request a `notifications/cancelled` names.
fn cancelled_request(params: Option<&RawValue>) -> Option<IdKey> {
    #[derive(Deserialize)]
    struct Cancelled<'a> {
        #[serde(rename = "requestId", borrow)]
        request_id: &'a RawValue,
    }
    let cancelled: Cancelled = serde_json::from_str(params?.get()).ok()?;
    Some(IdKey::of(cancelled.request_id))
}

/// Whether a request is in the stateless protocol (2026-07-28), whose
/// results carry `resultType`: it names its version in `_meta`.
fn is_stateless(params: Option<&RawValue>) -> bool {
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(rename = "_meta", borrow)]
        meta: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Meta<'a> {
        #[serde(rename = "io.modelcontextprotocol/protocolVersion", borrow)]
        version: Option<&'a RawValue>,
    }
    params
        .and_then(|p| serde_json::from_str::<Params>(p.get()).ok())
        .and_then(|p| p.meta)
        .and_then(|m| serde_json::from_str::<Meta>(m.get()).ok())
        .is_some_and(|m| m.version.is_some())
}

#[cfg(test)]
mod tests;
