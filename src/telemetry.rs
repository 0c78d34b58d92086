//! OpenTelemetry: a span per request toolwarden relays or answers, named
//! and attributed after the MCP semantic conventions, and metrics of
//! decisions, durations, approval waits and the state store, exported
//! over OTLP/HTTP (protobuf) when OTEL_* or `--otlp` say where.
//!
//! Nothing configured: no [`Telemetry`], no thread. Configured: the pumps
//! only fill a bounded queue (export.rs) that a thread of its own
//! empties; arguments and results are never in it.

mod config;
mod export;
mod proto;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use config::Config;
use export::{Counter, Histogram, Labels, Queue, Record};
use proto::{Span, Value};

use crate::wire::json::Raw;
use crate::wire::jsonrpc::IdKey;

/// Spans begun and not yet ended, at most (one per request in flight).
const MAX_OPEN: usize = crate::session::relay::MAX_IN_FLIGHT * 2;

pub struct Telemetry {
    queue: Arc<Queue>,
    open: Mutex<HashMap<IdKey, Open>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    timeout: Duration,
    ids: Mutex<u64>,
}

/// A span being made.
struct Open {
    span: Span,
    began: Instant,
    method: String,
    tool: Option<String>,
}

/// How a request ended, for its span.
pub enum Ended<'a> {
    /// Answered with a result; `true` when it says `isError`.
    Result(bool),
    /// Answered with a JSON-RPC error of this code.
    Error(i64),
    /// Refused by toolwarden: the decision.
    Refused(&'a str),
    /// Dropped (cancelled): no answer.
    Dropped,
}

pub fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Telemetry {
    /// Starts the exporter thread.
    pub fn start(config: Config) -> std::io::Result<Arc<Telemetry>> {
        let queue = Arc::new(Queue::new());
        let timeout = config.timeout;
        let thread = std::thread::Builder::new()
            .name("otlp-export".to_owned())
            .spawn({
                let queue = Arc::clone(&queue);
                move || export::run(config, queue)
            })?;
        Ok(Arc::new(Telemetry {
            queue,
            open: Mutex::default(),
            thread: Mutex::new(Some(thread)),
            timeout,
            ids: Mutex::new(seed()),
        }))
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<IdKey, Open>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Random enough ids for spans and traces: splitmix64 seeded from the
    /// kernel once.
    fn next_id(&self) -> u64 {
        let mut state = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)).max(1)
    }

    /// Begins the span of a client's request: a child of the `traceparent`
    /// in its `params._meta`, if it has a valid one.
    pub fn begin(
        &self,
        id: Raw<'_>,
        method: &str,
        tool: Option<&str>,
        params: Option<Raw<'_>>,
        identity: &str,
    ) {
        let parent = params
            .and_then(|p| p.pointer("/_meta/traceparent"))
            .and_then(|t| t.as_str())
            .and_then(|t| traceparent(&t));
        let (trace_id, parent_span_id) = match parent {
            Some((trace, span)) => (trace, Some(span)),
            None => {
                let mut trace = [0; 16];
                trace[..8].copy_from_slice(&self.next_id().to_be_bytes());
                trace[8..].copy_from_slice(&self.next_id().to_be_bytes());
                (trace, None)
            }
        };
        let (method, tool) = (&shown(method), tool.map(shown));
        let tool = tool.as_deref();
        let request_id = id
            .as_str()
            .map_or_else(|| id.get().to_owned(), |s| s.into_owned());
        let mut attributes = vec![
            ("mcp.method.name", Value::Str(method.to_owned())),
            ("jsonrpc.request.id", Value::Str(request_id)),
            ("network.transport", Value::Str("pipe".to_owned())),
        ];
        if let Some(tool) = tool {
            attributes.push(("gen_ai.tool.name", Value::Str(tool.to_owned())));
            attributes.push((
                "gen_ai.operation.name",
                Value::Str("execute_tool".to_owned()),
            ));
            attributes.push(("toolwarden.identity", Value::Str(identity.to_owned())));
        }
        let span = Span {
            trace_id,
            span_id: self.next_id().to_be_bytes(),
            parent_span_id,
            name: tool.map_or_else(|| method.to_owned(), |t| format!("{method} {t}")),
            start_unix_nano: now_unix_nano(),
            end_unix_nano: 0,
            attributes,
            error: None,
        };
        let mut open = self.open();
        if open.len() < MAX_OPEN {
            open.insert(
                IdKey::of(id),
                Open {
                    span,
                    began: Instant::now(),
                    method: method.to_owned(),
                    tool: tool.map(str::to_owned),
                },
            );
        }
    }

    fn annotate(&self, id: Raw<'_>, f: impl FnOnce(&mut Open)) {
        if let Some(open) = self.open().get_mut(&IdKey::of(id)) {
            f(open);
        }
    }

    /// A later round of a 2026-07-28 call approved already: on its span,
    /// marked continued, and not counted as another decision.
    pub fn continued(&self, id: Raw<'_>, rule: Option<&str>) {
        self.annotate(id, |open| {
            let attrs = &mut open.span.attributes;
            attrs.push(("toolwarden.decision", Value::Str("approved".into())));
            attrs.push(("toolwarden.continued", Value::Bool(true)));
            if let Some(rule) = rule {
                attrs.push(("toolwarden.rule", Value::Str(rule.to_owned())));
            }
        });
    }

    /// A decision on a call: on its span, and counted.
    pub fn decision(
        &self,
        id: Raw<'_>,
        tool: &str,
        decision: &str,
        rule: Option<&str>,
        refusal: Option<(&str, Option<&str>)>,
    ) {
        self.annotate(id, |open| {
            let attrs = &mut open.span.attributes;
            attrs.retain(|(k, _)| !k.starts_with("toolwarden.decision") && *k != "toolwarden.rule");
            attrs.push(("toolwarden.decision", Value::Str(decision.to_owned())));
            if let Some(rule) = rule {
                attrs.push(("toolwarden.rule", Value::Str(rule.to_owned())));
            }
            if let Some((kind, counter)) = refusal {
                attrs.push(("toolwarden.refusal.kind", Value::Str(kind.to_owned())));
                if let Some(counter) = counter {
                    attrs.push(("toolwarden.counter", Value::Str(counter.to_owned())));
                }
            }
        });
        self.queue.push(Record::Count(
            Counter::Decisions,
            vec![
                ("gen_ai.tool.name", shown(tool)),
                ("toolwarden.decision", decision.to_owned()),
            ],
        ));
    }

    /// A person's answer: the channel, the answer, who, and how long the
    /// call waited for it.
    pub fn approval(&self, id: Raw<'_>, channel: &str, answer: &str, by: Option<&str>) {
        let mut waited = None;
        self.annotate(id, |open| {
            let wait = open.began.elapsed().as_secs_f64();
            waited = Some(wait);
            let attrs = &mut open.span.attributes;
            attrs.push((
                "toolwarden.approval.channel",
                Value::Str(channel.to_owned()),
            ));
            attrs.push(("toolwarden.approval.answer", Value::Str(answer.to_owned())));
            attrs.push(("toolwarden.approval.wait", Value::Double(wait)));
            if let Some(by) = by {
                attrs.push(("toolwarden.approval.by", Value::Str(shown(by))));
            }
        });
        if let Some(wait) = waited {
            self.queue.push(Record::Observe(
                Histogram::ApprovalWait,
                vec![
                    ("toolwarden.approval.channel", channel.to_owned()),
                    ("toolwarden.approval.answer", answer.to_owned()),
                ],
                wait,
            ));
        }
    }

    /// Ends a request's span and records its duration.
    pub fn end(&self, id: Raw<'_>, ended: Ended<'_>) {
        self.end_key(&IdKey::of(id), ended);
    }

    pub fn end_key(&self, id: &IdKey, ended: Ended<'_>) {
        let Some(mut open) = self.open().remove(id) else {
            return;
        };
        let error = match ended {
            Ended::Result(false) => None,
            Ended::Result(true) => Some("tool_error".to_owned()),
            Ended::Error(code) => Some(code.to_string()),
            Ended::Refused(decision) => Some(decision.to_owned()),
            Ended::Dropped => Some("cancelled".to_owned()),
        };
        if let Ended::Error(code) = ended {
            open.span
                .attributes
                .push(("rpc.response.status_code", Value::Str(code.to_string())));
        }
        let seconds = open.began.elapsed().as_secs_f64();
        open.span.end_unix_nano = open.span.start_unix_nano + (seconds * 1e9) as u64;
        let mut labels: Labels = vec![
            ("mcp.method.name", open.method),
            ("network.transport", "pipe".to_owned()),
        ];
        if let Some(tool) = open.tool {
            labels.push(("gen_ai.tool.name", tool));
        }
        if let Some(error) = &error {
            open.span
                .attributes
                .push(("error.type", Value::Str(error.clone())));
            labels.push(("error.type", error.clone()));
        }
        open.span.error = error;
        self.queue
            .push(Record::Observe(Histogram::Operation, labels, seconds));
        self.queue.push(Record::Span(Box::new(open.span)));
    }

    /// One charge or check of the state store.
    pub fn state_store(&self, took: Duration, failed: bool) {
        self.queue.push(Record::Observe(
            Histogram::StateStore,
            Vec::new(),
            took.as_secs_f64(),
        ));
        if failed {
            self.queue
                .push(Record::Count(Counter::StateFailures, Vec::new()));
        }
    }

    /// Ends the session's telemetry: what is queued is exported, waited
    /// for OTEL_EXPORTER_OTLP_TIMEOUT at most. Spans still open (a call
    /// the session ended under) are dropped.
    pub fn finish(&self) {
        self.queue.stop(self.timeout);
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            // Finished or given up on above; never joined past that.
            drop(thread);
        }
    }
}

/// A name a client chose (a method, a tool) as telemetry keeps it: 256
/// bytes at most, control characters escaped, so that what waits in the
/// queue is bounded whatever the line held.
fn shown(name: &str) -> String {
    crate::redact::loggable(name)
}

/// `00-<trace id>-<parent id>-<flags>` (W3C Trace Context); ids of zeros
/// are invalid.
fn traceparent(text: &str) -> Option<([u8; 16], [u8; 8])> {
    let mut parts = text.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2
        || version == "ff"
        || flags.len() != 2
        || (version == "00" && parts.next().is_some())
    {
        return None;
    }
    let hex = |s: &str, out: &mut [u8]| -> Option<()> {
        if s.len() != out.len() * 2
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(())
    };
    let (mut t, mut s) = ([0u8; 16], [0u8; 8]);
    hex(trace, &mut t)?;
    hex(span, &mut s)?;
    (t != [0; 16] && s != [0; 8]).then_some((t, s))
}

fn seed() -> u64 {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        // Unique enough for a trace id without the kernel's randomness.
        let now = now_unix_nano() ^ u64::from(std::process::id()).rotate_left(32);
        bytes = now.to_le_bytes();
    }
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Telemetry without an exporter: what it queues stays in the queue.
    fn unexported() -> Telemetry {
        Telemetry {
            queue: Arc::new(Queue::new()),
            open: Mutex::default(),
            thread: Mutex::new(None),
            timeout: Duration::ZERO,
            ids: Mutex::new(1),
        }
    }

    #[test]
    fn spans_begun_and_not_ended_are_bounded() {
        let telemetry = unexported();
        let ids: Vec<String> = (0..MAX_OPEN + 10).map(|i| i.to_string()).collect();
        for id in &ids {
            telemetry.begin(Raw::parse(id).unwrap(), "ping", None, None, "default");
        }
        assert_eq!(telemetry.open().len(), MAX_OPEN);
    }

    #[test]
    fn what_a_span_and_its_measurements_keep_of_a_name_is_bounded() {
        let telemetry = unexported();
        let long = "m".repeat(1 << 20);
        let id = Raw::parse("7").unwrap();
        telemetry.begin(id, &long, Some(&long), None, "default");
        telemetry.decision(id, &long, "allowed", None, None);
        telemetry.end(id, Ended::Result(false));
        let records = telemetry.queue.take();
        let mut kept = 0;
        for record in &records {
            let strings: Vec<&str> = match record {
                Record::Span(span) => std::iter::once(span.name.as_str())
                    .chain(span.attributes.iter().filter_map(|(_, v)| match v {
                        Value::Str(s) => Some(s.as_str()),
                        _ => None,
                    }))
                    .collect(),
                Record::Count(_, labels) | Record::Observe(_, labels, _) => {
                    labels.iter().map(|(_, v)| v.as_str()).collect()
                }
            };
            kept += strings.iter().map(|s| s.len()).sum::<usize>();
        }
        assert_eq!(records.len(), 3);
        assert!(kept < 4 * 1024, "{kept} bytes kept");
    }

    #[test]
    fn traceparent_is_read_per_w3c() {
        let (trace, span) =
            traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(trace[0], 0x4b);
        assert_eq!(span[7], 0xb7);
        assert_eq!(
            traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(traceparent("garbage"), None);
    }
}
