//! The exporter thread: finished spans and measurements arrive through a
//! bounded queue the pumps never wait on; spans leave in batches, metrics
//! are summed here and pushed at an interval, and both once more when the
//! session ends.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, warn};
use url::Url;

use super::config::{Config, Endpoint};
use super::now_unix_nano;
use super::proto::{self, HistogramPoint, Metric, Points, Span, Value};
use crate::upstream::remote::http;

/// Records waiting for the exporter, at most: past that they are dropped.
pub const QUEUE: usize = 4096;

/// Distinct attribute sets kept per metric (the OpenTelemetry SDK's
/// default cardinality limit): a client that makes up method or tool
/// names would otherwise grow the sums without end. The rest are summed
/// in one point marked `otel.metric.overflow`, as the SDK does.
pub const MAX_SERIES: usize = 2000;

/// A histogram's name and buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Histogram {
    Operation,
    ApprovalWait,
    StateStore,
}

impl Histogram {
    const ALL: [Histogram; 3] = [
        Histogram::Operation,
        Histogram::ApprovalWait,
        Histogram::StateStore,
    ];

    fn describe(self) -> (&'static str, &'static str, &'static [f64]) {
        match self {
            // The MCP semantic conventions' buckets.
            Histogram::Operation => (
                "mcp.server.operation.duration",
                "How long toolwarden took to answer a request, the server's time included",
                &[
                    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                ],
            ),
            Histogram::ApprovalWait => (
                "toolwarden.approval.wait",
                "How long a call waited for a person's answer",
                &[
                    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
                ],
            ),
            Histogram::StateStore => (
                "toolwarden.state.duration",
                "How long the state store took to charge or check a call's limits",
                &[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0],
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Counter {
    Decisions,
    StateFailures,
}

impl Counter {
    const ALL: [Counter; 2] = [Counter::Decisions, Counter::StateFailures];

    fn describe(self) -> (&'static str, &'static str) {
        match self {
            Counter::Decisions => (
                "toolwarden.decisions",
                "Decisions on tools/call, by tool and decision",
            ),
            Counter::StateFailures => (
                "toolwarden.state.failures",
                "Charges the state store could not make (the call was refused)",
            ),
        }
    }
}

/// Metric attributes: a handful of low-cardinality strings.
pub type Labels = Vec<(&'static str, String)>;

pub enum Record {
    Span(Box<Span>),
    Count(Counter, Labels),
    Observe(Histogram, Labels, f64),
}

#[derive(Default)]
struct Inbox {
    records: VecDeque<Record>,
    stop: bool,
}

/// The queue between the pumps and the exporter thread.
pub struct Queue {
    inbox: Mutex<Inbox>,
    ready: Condvar,
    pub dropped: AtomicU64,
    warned: AtomicBool,
    /// Set by the exporter once it has sent its last export.
    done: Mutex<bool>,
    finished: Condvar,
}

impl Queue {
    pub fn new() -> Queue {
        Queue {
            inbox: Mutex::default(),
            ready: Condvar::new(),
            dropped: AtomicU64::new(0),
            warned: AtomicBool::new(false),
            done: Mutex::new(false),
            finished: Condvar::new(),
        }
    }

    /// Queues a record, or drops it when the exporter is behind: a slow
    /// or absent receiver never holds up a call.
    pub fn push(&self, record: Record) {
        let mut inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
        if inbox.records.len() >= QUEUE || inbox.stop {
            drop(inbox);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            if !self.warned.swap(true, Ordering::Relaxed) {
                warn!("telemetry is dropped: the OTLP receiver does not keep up (counted in toolwarden.telemetry.dropped)");
            }
            return;
        }
        inbox.records.push_back(record);
        drop(inbox);
        self.ready.notify_one();
    }

    /// What waits in the queue, taken out (tests look at it).
    #[cfg(test)]
    pub fn take(&self) -> VecDeque<Record> {
        std::mem::take(&mut self.inbox.lock().unwrap().records)
    }

    /// Asks for a last export and waits for it, `timeout` at most.
    pub fn stop(&self, timeout: Duration) {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        self.ready.notify_one();
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let (done, _) = self
            .finished
            .wait_timeout_while(done, timeout, |done| !*done)
            .unwrap_or_else(|e| e.into_inner());
        if !*done {
            warn!("telemetry: the last export did not finish within OTEL_EXPORTER_OTLP_TIMEOUT");
        }
    }
}

/// The metrics summed so far, by metric and attribute set.
#[derive(Default)]
struct Sums {
    counters: BTreeMap<Counter, BTreeMap<Labels, u64>>,
    histograms: BTreeMap<Histogram, BTreeMap<Labels, HistogramPoint>>,
}

/// `labels`, or the overflow set once a metric has [`MAX_SERIES`] sets
/// (the overflow's among them).
fn series<T>(sets: &BTreeMap<Labels, T>, labels: Labels) -> Labels {
    if sets.len() + 1 < MAX_SERIES || sets.contains_key(&labels) {
        labels
    } else {
        vec![("otel.metric.overflow", "true".to_owned())]
    }
}

impl Sums {
    fn count(&mut self, c: Counter, labels: Labels) {
        let sets = self.counters.entry(c).or_default();
        *sets.entry(series(sets, labels)).or_default() += 1;
    }

    fn observe(&mut self, h: Histogram, labels: Labels, value: f64) {
        let bounds = h.describe().2;
        let sets = self.histograms.entry(h).or_default();
        let point = sets
            .entry(series(sets, labels))
            .or_insert_with(|| HistogramPoint {
                buckets: vec![0; bounds.len() + 1],
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                ..Default::default()
            });
        let bucket = bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(bounds.len());
        point.buckets[bucket] += 1;
        point.count += 1;
        point.sum += value;
        point.min = point.min.min(value);
        point.max = point.max.max(value);
    }
}

/// Runs until [`Queue::stop`]: the exporter thread's body.
pub fn run(config: Config, queue: Arc<Queue>) {
    let start = now_unix_nano();
    let mut spans: Vec<Span> = Vec::new();
    let mut sums = Sums::default();
    let mut failing = Failing::default();
    let mut next_spans: Option<Instant> = None;
    let mut next_metrics = Instant::now() + config.metric_interval;
    let mut measured = false;
    // Built here, not at start-up: reading the system's roots for https
    // takes 5 to 8 ms (release build) a session should not wait for. Without
    // roots every export fails, said once.
    let https = [&config.traces, &config.metrics]
        .iter()
        .any(|e| e.as_ref().is_some_and(|e| e.url.scheme() == "https"));
    let agent = http::agent(https);
    loop {
        let deadline = next_spans.map_or(next_metrics, |s| s.min(next_metrics));
        let (batch, stop) = {
            let mut inbox = queue.inbox.lock().unwrap_or_else(|e| e.into_inner());
            while inbox.records.is_empty() && !inbox.stop {
                let wait = deadline.saturating_duration_since(Instant::now());
                if wait.is_zero() {
                    break;
                }
                inbox = queue
                    .ready
                    .wait_timeout(inbox, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            (std::mem::take(&mut inbox.records), inbox.stop)
        };
        for record in batch {
            match record {
                Record::Span(span) if config.traces.is_some() => spans.push(*span),
                Record::Span(_) => {}
                Record::Count(c, labels) => {
                    sums.count(c, labels);
                    measured = true;
                }
                Record::Observe(h, labels, value) => {
                    sums.observe(h, labels, value);
                    measured = true;
                }
            }
        }
        if !spans.is_empty() && next_spans.is_none() {
            next_spans = Some(Instant::now() + config.span_delay);
        }
        let now = Instant::now();
        if let Some(traces) = &config.traces {
            if !spans.is_empty()
                && (stop || spans.len() >= 512 || next_spans.is_some_and(|t| t <= now))
            {
                let body = proto::export_traces(&config.resource, &spans);
                failing.report(traces, post(&agent, traces, &body, config.timeout));
                spans.clear();
                next_spans = None;
            }
        }
        if stop || next_metrics <= now {
            next_metrics = now + config.metric_interval;
            let dropped = queue.dropped.load(Ordering::Relaxed);
            if let Some(metrics) = config.metrics.as_ref().filter(|_| measured || dropped > 0) {
                let body = metrics_body(&config, &sums, dropped, start);
                failing.report(metrics, post(&agent, metrics, &body, config.timeout));
            }
        }
        if stop {
            *queue.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
            queue.finished.notify_all();
            return;
        }
    }
}

fn metrics_body(config: &Config, sums: &Sums, dropped: u64, start: u64) -> Vec<u8> {
    let to_attrs = |labels: &Labels| -> Vec<(&'static str, Value)> {
        labels
            .iter()
            .map(|(k, v)| (*k, Value::Str(v.clone())))
            .collect()
    };
    let attrs: BTreeMap<&Labels, Vec<(&'static str, Value)>> = sums
        .counters
        .values()
        .flat_map(BTreeMap::keys)
        .chain(sums.histograms.values().flat_map(BTreeMap::keys))
        .map(|l| (l, to_attrs(l)))
        .collect();
    let none: Vec<(&'static str, Value)> = Vec::new();
    let mut metrics = Vec::new();
    for c in Counter::ALL {
        let points: Vec<_> = sums
            .counters
            .get(&c)
            .into_iter()
            .flatten()
            .map(|(l, n)| (&attrs[l][..], *n))
            .collect();
        if !points.is_empty() {
            let (name, description) = c.describe();
            metrics.push(Metric {
                name,
                description,
                unit: "{decision}",
                points: Points::Sum(points),
            });
        }
    }
    if dropped > 0 {
        metrics.push(Metric {
            name: "toolwarden.telemetry.dropped",
            description: "Spans and measurements dropped because the exporter was behind",
            unit: "{record}",
            points: Points::Sum(vec![(&none[..], dropped)]),
        });
    }
    for h in Histogram::ALL {
        let (name, description, bounds) = h.describe();
        let points: Vec<_> = sums
            .histograms
            .get(&h)
            .into_iter()
            .flatten()
            .map(|(l, p)| (&attrs[l][..], p))
            .collect();
        if !points.is_empty() {
            metrics.push(Metric {
                name,
                description,
                unit: "s",
                points: Points::Histogram(bounds, points),
            });
        }
    }
    proto::export_metrics(&config.resource, &metrics, start, now_unix_nano())
}

/// Export failures are warned of once per endpoint, then at debug.
#[derive(Default)]
struct Failing {
    warned: Vec<Url>,
}

impl Failing {
    fn report(&mut self, to: &Endpoint, outcome: Result<(), String>) {
        let Err(why) = outcome else { return };
        let shown = http::shown(&to.url);
        if self.warned.contains(&to.url) {
            debug!("telemetry: could not export to {shown}: {why}");
        } else {
            warn!("telemetry: could not export to {shown}: {why} (said once)");
            self.warned.push(to.url.clone());
        }
    }
}

/// One OTLP/HTTP export: a POST of protobuf, the answer read (64 KiB at
/// most) so that the connection can be used again.
fn post(
    agent: &Result<ureq::Agent, String>,
    to: &Endpoint,
    body: &[u8],
    timeout: Duration,
) -> Result<(), String> {
    let agent = agent.as_ref()?;
    let mut request = agent
        .post(to.url.as_str())
        .config()
        .timeout_global(Some(timeout))
        .build()
        .header("content-type", "application/x-protobuf");
    for (k, v) in &to.headers {
        request = request.header(k, v);
    }
    let mut response = request.send(body).map_err(|e| http::failure(&e))?;
    let read = response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_vec();
    let status = response.status();
    if !status.is_success() {
        return Err(format!("the receiver answered {}", http::status(status)));
    }
    read.map(drop).map_err(|e| http::failure(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_names_do_not_grow_the_sums_past_the_cardinality_limit() {
        let mut sums = Sums::default();
        for i in 0..3 * MAX_SERIES {
            let labels: Labels = vec![("mcp.method.name", format!("m{i}"))];
            sums.observe(Histogram::Operation, labels.clone(), 0.1);
            sums.count(Counter::Decisions, labels);
        }
        // A set already kept goes on being summed in its own point.
        sums.count(
            Counter::Decisions,
            vec![("mcp.method.name", "m0".to_owned())],
        );
        let counters = &sums.counters[&Counter::Decisions];
        assert_eq!(counters.len(), MAX_SERIES);
        assert_eq!(counters[&vec![("mcp.method.name", "m0".to_owned())]], 2);
        let overflow: Labels = vec![("otel.metric.overflow", "true".to_owned())];
        assert_eq!(
            counters[&overflow],
            (3 * MAX_SERIES - (MAX_SERIES - 1)) as u64
        );
        let histograms = &sums.histograms[&Histogram::Operation];
        assert_eq!(histograms.len(), MAX_SERIES);
        assert_eq!(
            histograms[&overflow].count,
            (3 * MAX_SERIES - (MAX_SERIES - 1)) as u64
        );
    }
}
