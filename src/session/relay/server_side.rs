//! The server's side: the pump that reads the server's lines and relays
//! them to the client, filtering `tools/list` pages and ending the
//! requests whose answers cannot be relayed.

use std::collections::BTreeSet;
use std::io;
use std::time::Instant;

use serde::Deserialize;
use tracing::{debug, info, warn};

use super::{cancelled_request, declares_list_changed, loggable, Asked, Relay, MAX_KNOWN_TOOLS};
use crate::audit::AuditEvent;
use crate::wire::framing::{Frame, LineReader, Source};
use crate::wire::json::Raw;
use crate::wire::jsonrpc::{self, IdKey, Message, Strictness};
use crate::{commands::pin, session::approval, session::tools_list};

impl Relay {
    /// Keeps the names a `tools/list` page showed, up to
    /// [`MAX_KNOWN_TOOLS`], and what the pins said of each.
    pub(super) fn remember_listed(&self, seen: Vec<(String, Option<pin::Status>)>) {
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

    pub(super) fn server_line(&self, line: &[u8]) -> io::Result<()> {
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
                match (&request.call, self.telemetry()) {
                    (Some((tool, started)), _) => {
                        let outcome = Outcome::of(line, result);
                        self.audit_result(request.id.raw(), tool, *started, outcome);
                    }
                    // Another request's span: an error or not.
                    (None, Some(t)) => {
                        let outcome = match result {
                            Some(_) => Outcome::Result(false),
                            None => Outcome::of(line, None),
                        };
                        t.end(request.id.raw(), outcome.ended());
                    }
                    (None, None) => {}
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
    pub(super) fn not_forwarded_from_server(&self, line: &[u8], why: &str) -> io::Result<()> {
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
    pub(super) fn too_long_from_server(&self, prefix: &[u8], len: usize) -> io::Result<()> {
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

    pub(super) fn audit_result(&self, id: Raw<'_>, tool: &str, started: Instant, outcome: Outcome) {
        if let Some(t) = self.telemetry() {
            t.end(id, outcome.ended());
        }
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
}

/// How a forwarded call ended, for the audit log.
pub(super) enum Outcome {
    /// A result, with its `isError`.
    Result(bool),
    /// A JSON-RPC error, with its code.
    Error(i64),
}

impl Outcome {
    fn ended(&self) -> crate::telemetry::Ended<'static> {
        match *self {
            Outcome::Result(is_error) => crate::telemetry::Ended::Result(is_error),
            Outcome::Error(code) => crate::telemetry::Ended::Error(code),
        }
    }

    pub(super) fn of(line: &[u8], result: Option<Raw<'_>>) -> Outcome {
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
