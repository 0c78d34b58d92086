//! The report's arithmetic: audit events folded into counts as they are
//! read, one at a time, in memory that does not grow with the log, then
//! finished into a [`Summary`] the terminal, JSON and HTML forms share.
//!
//! Every table is capped (names past the cap are counted in one row of
//! their own), and the durations of a tool's calls are kept exactly up to
//! [`EXACT_DURATIONS`], then in a histogram of 1%-wide buckets.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::redact::loggable;

/// Tools, identities, refusal reasons and counters kept by name; the
/// rest of each is one row.
pub const MAX_NAMES: usize = 1_000;
/// Distinct (channel, answer, who) of one tool's approvals kept.
pub const MAX_APPROVERS: usize = 100;
/// Decision names kept apart (toolwarden has 16); more are `other`.
pub const MAX_DECISIONS: usize = 32;
/// A tool's durations kept as they are (16 KiB): percentiles are exact up
/// to this many results, and within 1% after.
pub const EXACT_DURATIONS: usize = 2_048;
/// The histogram's buckets: each 1% wider than the one before, from 1 µs
/// to 10⁸ ms (about 28 hours), 20 KiB.
const BUCKETS: usize = 2_547;
const BUCKET_GROWTH: f64 = 1.01;
const SMALLEST_MS: f64 = 0.001;
/// Time buckets of the calls-over-time chart kept at once: past this many,
/// they are merged into the next wider width.
pub const MAX_TIME_BUCKETS: usize = 2_048;
/// The widths of time buckets, in seconds: each a multiple of the one
/// before, so that buckets merge exactly.
const WIDTHS: &[u64] = &[
    60,
    300,
    900,
    3_600,
    6 * 3_600,
    86_400,
    7 * 86_400,
    28 * 86_400,
    56 * 86_400,
    112 * 86_400,
    224 * 86_400,
    448 * 86_400,
    896 * 86_400,
];
/// Bars in the calls-over-time chart at most.
pub const MAX_BARS: u64 = 60;

/// Decisions that let the call through.
const PASSED: &[&str] = &["allowed", "approved"];

/// What the report reads of an audit line: never `arguments`,
/// `args_hmac` or `errors`, which serde skips unread.
#[derive(Deserialize)]
pub struct Event {
    pub ts: String,
    pub event: String,
    #[serde(default)]
    identity: Option<String>,
    #[serde(default)]
    tool: Option<String>,
    #[serde(default)]
    decision: Option<String>,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    counter: Option<String>,
    #[serde(default)]
    enforced: Option<bool>,
    #[serde(default)]
    continued: Option<bool>,
    #[serde(default)]
    duration_ms: Option<f64>,
    #[serde(default)]
    is_error: Option<bool>,
    #[serde(default)]
    error_code: Option<i64>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    answer: Option<String>,
    #[serde(default)]
    by: Option<String>,
}

/// A map that keeps at most `cap` keys; every key past them shares one
/// value, `rest`.
#[derive(Debug)]
struct Capped<K, V> {
    kept: HashMap<K, V>,
    rest: Option<V>,
    cap: usize,
}

impl<K: Hash + Eq, V: Default> Capped<K, V> {
    fn new(cap: usize) -> Self {
        Capped {
            kept: HashMap::new(),
            rest: None,
            cap,
        }
    }

    fn get(&mut self, key: K) -> &mut V {
        if self.kept.len() < self.cap || self.kept.contains_key(&key) {
            self.kept.entry(key).or_default()
        } else {
            self.rest.get_or_insert_with(V::default)
        }
    }

    /// The kept rows with their keys, then the rest (key `None`).
    fn into_rows(self) -> impl Iterator<Item = (Option<K>, V)> {
        self.kept
            .into_iter()
            .map(|(k, v)| (Some(k), v))
            .chain(self.rest.map(|v| (None, v)))
    }
}

/// A tool's durations: exact while few, a histogram after.
#[derive(Debug)]
enum Durations {
    Exact(Vec<f64>),
    Histogram {
        counts: Box<[u64]>,
        n: u64,
        min: f64,
        max: f64,
    },
}

impl Default for Durations {
    fn default() -> Self {
        Durations::Exact(Vec::new())
    }
}

fn bucket(ms: f64) -> usize {
    if ms <= SMALLEST_MS {
        return 0;
    }
    let i = ((ms / SMALLEST_MS).ln() / BUCKET_GROWTH.ln()).ceil();
    (i as usize).min(BUCKETS - 1)
}

/// The top of bucket `i`: within 1% of every duration in it.
fn bucket_top(i: usize) -> f64 {
    SMALLEST_MS * BUCKET_GROWTH.powi(i as i32)
}

impl Durations {
    fn add(&mut self, ms: f64) {
        if !ms.is_finite() || ms < 0.0 {
            return;
        }
        match self {
            Durations::Exact(kept) if kept.len() < EXACT_DURATIONS => kept.push(ms),
            Durations::Exact(kept) => {
                let mut counts = vec![0u64; BUCKETS].into_boxed_slice();
                let (mut min, mut max) = (ms, ms);
                for &d in kept.iter() {
                    counts[bucket(d)] += 1;
                    min = min.min(d);
                    max = max.max(d);
                }
                counts[bucket(ms)] += 1;
                *self = Durations::Histogram {
                    counts,
                    n: kept.len() as u64 + 1,
                    min,
                    max,
                };
            }
            Durations::Histogram {
                counts,
                n,
                min,
                max,
            } => {
                counts[bucket(ms)] += 1;
                *n += 1;
                *min = min.min(ms);
                *max = max.max(ms);
            }
        }
    }

    /// The nearest-rank percentiles `ps` (0–100), or `None` without a
    /// duration.
    fn percentiles(&mut self, ps: &[f64]) -> Vec<Option<f64>> {
        match self {
            Durations::Exact(kept) => {
                kept.sort_by(f64::total_cmp);
                ps.iter()
                    .map(|&p| (!kept.is_empty()).then(|| kept[rank(p, kept.len() as u64)]))
                    .collect()
            }
            Durations::Histogram {
                counts,
                n,
                min,
                max,
            } => ps
                .iter()
                .map(|&p| {
                    let wanted = rank(p, *n) as u64 + 1;
                    let mut seen = 0;
                    let i = counts
                        .iter()
                        .position(|&c| {
                            seen += c;
                            seen >= wanted
                        })
                        .unwrap_or(BUCKETS - 1);
                    Some(bucket_top(i).clamp(*min, *max))
                })
                .collect(),
        }
    }
}

/// The index of the nearest-rank `p`th percentile of `n` sorted values.
fn rank(p: f64, n: u64) -> usize {
    let r = (p / 100.0 * n as f64).ceil() as u64;
    r.clamp(1, n.max(1)) as usize - 1
}

/// How a person was asked, what they said, and who they are.
type Approver = (String, String, Option<String>);

#[derive(Debug, Default)]
struct ToolTally {
    calls: u64,
    passed: u64,
    held: u64,
    /// By decision index.
    refused: BTreeMap<usize, u64>,
    results: u64,
    server_errors: u64,
    durations: Durations,
    approvals: Option<Box<Capped<Approver, u64>>>,
}

#[derive(Debug, Default)]
struct IdentityTally {
    calls: u64,
    passed: u64,
}

/// Decision names, each given an index once; past [`MAX_DECISIONS`] they
/// are all `other`.
#[derive(Debug, Default)]
struct Decisions(Vec<String>);

impl Decisions {
    fn index(&mut self, name: &str) -> usize {
        let name = loggable(name);
        if let Some(i) = self.0.iter().position(|d| *d == name) {
            return i;
        }
        if self.0.len() < MAX_DECISIONS {
            self.0.push(name);
            return self.0.len() - 1;
        }
        match self.0.iter().position(|d| d == "other") {
            Some(i) => i,
            None => {
                self.0.push("other".into());
                self.0.len() - 1
            }
        }
    }
}

/// Calls per time bucket and decision.
#[derive(Debug)]
struct Timeline {
    /// An index into [`WIDTHS`].
    width: usize,
    buckets: BTreeMap<u64, BTreeMap<usize, u64>>,
}

impl Timeline {
    fn add(&mut self, at: u64, decision: usize) {
        let width = WIDTHS[self.width];
        *self
            .buckets
            .entry(at / width * width)
            .or_default()
            .entry(decision)
            .or_default() += 1;
        while self.buckets.len() > MAX_TIME_BUCKETS && self.width + 1 < WIDTHS.len() {
            self.width += 1;
            self.buckets = rebin(std::mem::take(&mut self.buckets), WIDTHS[self.width]);
        }
    }
}

fn rebin(
    buckets: BTreeMap<u64, BTreeMap<usize, u64>>,
    width: u64,
) -> BTreeMap<u64, BTreeMap<usize, u64>> {
    let mut wider: BTreeMap<u64, BTreeMap<usize, u64>> = BTreeMap::new();
    for (start, counts) in buckets {
        let into = wider.entry(start / width * width).or_default();
        for (d, n) in counts {
            *into.entry(d).or_default() += n;
        }
    }
    wider
}

/// The counts so far.
#[derive(Debug)]
pub struct Tally {
    since: Option<SystemTime>,
    first: Option<SystemTime>,
    last: Option<SystemTime>,
    events: u64,
    sessions: u64,
    reloads: u64,
    calls: u64,
    unenforced: u64,
    decisions: Decisions,
    tools: Capped<String, ToolTally>,
    identities: Capped<String, IdentityTally>,
    /// (decision index, rule, reason).
    reasons: Capped<(usize, Option<String>, Option<String>), u64>,
    counters: Capped<String, u64>,
    timeline: Timeline,
}

/// Why a line was left out of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Skipped {
    /// Not JSON, or JSON that is not an audit event.
    NotAnEvent,
    /// The last line of a file, without its newline, and not whole.
    CutShort,
    /// Longer than [`super::MAX_LINE`].
    TooLong,
}

impl Skipped {
    pub fn words(self) -> &'static str {
        match self {
            Skipped::NotAnEvent => "not an audit event",
            Skipped::CutShort => "the last line is cut short",
            Skipped::TooLong => "longer than 4 MiB",
        }
    }
}

impl Tally {
    pub fn new(since: Option<SystemTime>) -> Tally {
        Tally {
            since,
            first: None,
            last: None,
            events: 0,
            sessions: 0,
            reloads: 0,
            calls: 0,
            unenforced: 0,
            decisions: Decisions::default(),
            tools: Capped::new(MAX_NAMES),
            identities: Capped::new(MAX_NAMES),
            reasons: Capped::new(MAX_NAMES),
            counters: Capped::new(MAX_NAMES),
            timeline: Timeline {
                width: 0,
                buckets: BTreeMap::new(),
            },
        }
    }

    /// Counts one line (without its newline); `whole` says whether it
    /// ended with one. A line that is not an event is counted by the
    /// caller, with the reason returned.
    pub fn line(&mut self, line: &[u8], whole: bool) -> Result<(), Skipped> {
        let not_whole = if whole {
            Skipped::NotAnEvent
        } else {
            Skipped::CutShort
        };
        let event: Event = serde_json::from_slice(line).map_err(|_| not_whole)?;
        let at = humantime::parse_rfc3339(&event.ts).map_err(|_| Skipped::NotAnEvent)?;
        if self.since.is_some_and(|since| at < since) {
            return Ok(());
        }
        self.event(&event, at);
        Ok(())
    }

    fn event(&mut self, event: &Event, at: SystemTime) {
        self.events += 1;
        self.first = Some(self.first.map_or(at, |t| t.min(at)));
        self.last = Some(self.last.map_or(at, |t| t.max(at)));
        match event.event.as_str() {
            "session_start" => self.sessions += 1,
            "policy_reloaded" => self.reloads += 1,
            "decision" => self.decision(event, at),
            "result" => self.result(event),
            "approval" => self.approval(event),
            _ => {}
        }
    }

    fn tool(&mut self, event: &Event) -> &mut ToolTally {
        let name = event.tool.as_deref().map_or_else(String::new, loggable);
        self.tools.get(name)
    }

    fn decision(&mut self, event: &Event, at: SystemTime) {
        let Some(decision) = event.decision.as_deref() else {
            return;
        };
        if decision == "approval_requested" {
            // Held: the decision that follows is the call's.
            self.tool(event).held += 1;
            return;
        }
        if event.continued == Some(true) {
            // A later round of a call counted already.
            return;
        }
        let index = self.decisions.index(decision);
        let passed = PASSED.contains(&decision);
        self.calls += 1;
        if event.enforced == Some(false) {
            self.unenforced += 1;
        }
        let tool = self.tool(event);
        tool.calls += 1;
        if passed {
            tool.passed += 1;
        } else {
            *tool.refused.entry(index).or_default() += 1;
        }
        let identity = event.identity.as_deref().map_or_else(String::new, loggable);
        let identity = self.identities.get(identity);
        identity.calls += 1;
        identity.passed += u64::from(passed);
        if !passed {
            let rule = event.rule.as_deref().map(loggable);
            let reason = event.reason.as_deref().map(loggable);
            *self.reasons.get((index, rule, reason)) += 1;
            if decision == "rate_limited" {
                if let Some(counter) = &event.counter {
                    *self.counters.get(loggable(counter)) += 1;
                }
            }
        }
        let secs = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        self.timeline.add(secs, index);
    }

    fn result(&mut self, event: &Event) {
        let tool = self.tool(event);
        tool.results += 1;
        if event.is_error == Some(true) || event.error_code.is_some() {
            tool.server_errors += 1;
        }
        if let Some(ms) = event.duration_ms {
            tool.durations.add(ms);
        }
    }

    fn approval(&mut self, event: &Event) {
        let key = (
            event.channel.as_deref().map_or_else(String::new, loggable),
            event.answer.as_deref().map_or_else(String::new, loggable),
            event.by.as_deref().map(loggable),
        );
        let tool = self.tool(event);
        *tool
            .approvals
            .get_or_insert_with(|| Box::new(Capped::new(MAX_APPROVERS)))
            .get(key) += 1;
    }

    /// The report: rows sorted, most first.
    pub fn finish(self) -> Summary {
        let decisions = self.decisions.0;
        let name = |i: usize| decisions[i].clone();
        let mut tools: Vec<ToolSummary> = self
            .tools
            .into_rows()
            .map(|(tool, mut t)| {
                let p = t.durations.percentiles(&[50.0, 95.0]);
                let mut approvals: Vec<ApprovalSummary> = t
                    .approvals
                    .map(|a| a.into_rows())
                    .into_iter()
                    .flatten()
                    .map(|(key, count)| {
                        let (channel, answer, by) =
                            key.map_or((None, None, None), |(c, a, b)| (Some(c), Some(a), b));
                        ApprovalSummary {
                            channel,
                            answer,
                            by,
                            count,
                        }
                    })
                    .collect();
                approvals.sort_by(|a, b| {
                    b.count.cmp(&a.count).then_with(|| {
                        (&a.channel, &a.answer, &a.by).cmp(&(&b.channel, &b.answer, &b.by))
                    })
                });
                ToolSummary {
                    tool,
                    calls: t.calls,
                    allowed: t.passed,
                    refused: t.refused.iter().map(|(&d, &n)| (name(d), n)).collect(),
                    held: t.held,
                    results: t.results,
                    server_errors: t.server_errors,
                    p50_ms: p[0],
                    p95_ms: p[1],
                    approvals,
                }
            })
            .collect();
        tools.sort_by(|a, b| {
            (a.tool.is_none(), std::cmp::Reverse(a.calls), &a.tool).cmp(&(
                b.tool.is_none(),
                std::cmp::Reverse(b.calls),
                &b.tool,
            ))
        });
        let mut refusals: Vec<RefusalSummary> = self
            .reasons
            .into_rows()
            .map(|(key, count)| match key {
                Some((d, rule, reason)) => RefusalSummary {
                    decision: Some(name(d)),
                    rule,
                    reason,
                    count,
                },
                None => RefusalSummary {
                    decision: None,
                    rule: None,
                    reason: None,
                    count,
                },
            })
            .collect();
        refusals.sort_by(|a, b| {
            (
                a.decision.is_none(),
                std::cmp::Reverse(a.count),
                &a.decision,
                &a.rule,
                &a.reason,
            )
                .cmp(&(
                    b.decision.is_none(),
                    std::cmp::Reverse(b.count),
                    &b.decision,
                    &b.rule,
                    &b.reason,
                ))
        });
        let mut counters: Vec<CounterSummary> = self
            .counters
            .into_rows()
            .map(|(counter, count)| CounterSummary { counter, count })
            .collect();
        counters.sort_by(|a, b| {
            (a.counter.is_none(), std::cmp::Reverse(a.count), &a.counter).cmp(&(
                b.counter.is_none(),
                std::cmp::Reverse(b.count),
                &b.counter,
            ))
        });
        let mut identities: Vec<IdentitySummary> = self
            .identities
            .into_rows()
            .map(|(identity, t)| IdentitySummary {
                identity,
                calls: t.calls,
                allowed: t.passed,
                refused: t.calls - t.passed,
            })
            .collect();
        identities.sort_by(|a, b| {
            (
                a.identity.is_none(),
                std::cmp::Reverse(a.calls),
                &a.identity,
            )
                .cmp(&(
                    b.identity.is_none(),
                    std::cmp::Reverse(b.calls),
                    &b.identity,
                ))
        });
        let timeline = timeline(self.timeline, &decisions);
        Summary {
            files: Vec::new(),
            since: self.since.map(rfc3339),
            first: self.first.map(rfc3339),
            last: self.last.map(rfc3339),
            events: self.events,
            sessions: self.sessions,
            policy_reloads: self.reloads,
            calls: self.calls,
            allowed: tools.iter().map(|t| t.allowed).sum(),
            unenforced: self.unenforced,
            tools,
            refusals,
            counters,
            identities,
            timeline,
        }
    }
}

/// The chart's bars: the narrowest width that gives at most
/// [`MAX_BARS`], every bar from the first call to the last.
fn timeline(timeline: Timeline, decisions: &[String]) -> TimelineSummary {
    let (Some(&first), Some(&last)) = (
        timeline.buckets.keys().next(),
        timeline.buckets.keys().next_back(),
    ) else {
        return TimelineSummary {
            bucket_seconds: WIDTHS[0],
            decisions: Vec::new(),
            buckets: Vec::new(),
        };
    };
    let stored = timeline.width;
    let width = (stored..WIDTHS.len())
        .map(|i| WIDTHS[i])
        .find(|w| last / w - first / w < MAX_BARS)
        .unwrap_or(WIDTHS[WIDTHS.len() - 1]);
    let buckets = rebin(timeline.buckets, width);
    // Passed first (the bottom of each bar), then refusals as they came.
    let mut order: Vec<usize> = (0..decisions.len()).collect();
    order.sort_by_key(|&i| {
        PASSED
            .iter()
            .position(|p| *p == decisions[i])
            .unwrap_or(PASSED.len())
    });
    let seen: Vec<usize> = order
        .into_iter()
        .filter(|i| buckets.values().any(|c| c.contains_key(i)))
        .collect();
    let (first, last) = (first / width * width, last / width * width);
    let bars = (first..=last)
        .step_by(width as usize)
        .map(|start| {
            let counts = buckets.get(&start);
            Bucket {
                start: rfc3339(UNIX_EPOCH + Duration::from_secs(start)),
                counts: seen
                    .iter()
                    .filter_map(|&d| {
                        let n = *counts?.get(&d)?;
                        Some((decisions[d].clone(), n))
                    })
                    .collect(),
            }
        })
        .collect();
    TimelineSummary {
        bucket_seconds: width,
        decisions: seen.iter().map(|&d| decisions[d].clone()).collect(),
        buckets: bars,
    }
}

pub fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// The report, as `--json` writes it (docs/observability.md). A row
/// whose name is `null` holds every name past the first [`MAX_NAMES`].
#[derive(Debug, Serialize)]
pub struct Summary {
    pub files: Vec<FileSummary>,
    pub since: Option<String>,
    pub first: Option<String>,
    pub last: Option<String>,
    pub events: u64,
    pub sessions: u64,
    pub policy_reloads: u64,
    pub calls: u64,
    pub allowed: u64,
    pub unenforced: u64,
    pub tools: Vec<ToolSummary>,
    pub refusals: Vec<RefusalSummary>,
    pub counters: Vec<CounterSummary>,
    pub identities: Vec<IdentitySummary>,
    pub timeline: TimelineSummary,
}

#[derive(Debug, Serialize)]
pub struct FileSummary {
    pub path: String,
    pub lines: u64,
    pub skipped: u64,
    /// The first few lines skipped, and why.
    pub problems: Vec<Problem>,
}

#[derive(Debug, Serialize)]
pub struct Problem {
    pub line: u64,
    pub why: Skipped,
}

#[derive(Debug, Serialize)]
pub struct ToolSummary {
    pub tool: Option<String>,
    pub calls: u64,
    pub allowed: u64,
    pub refused: BTreeMap<String, u64>,
    pub held: u64,
    pub results: u64,
    pub server_errors: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub approvals: Vec<ApprovalSummary>,
}

#[derive(Debug, Serialize)]
pub struct ApprovalSummary {
    pub channel: Option<String>,
    pub answer: Option<String>,
    pub by: Option<String>,
    pub count: u64,
}

#[derive(Debug, Serialize)]
pub struct RefusalSummary {
    pub decision: Option<String>,
    pub rule: Option<String>,
    pub reason: Option<String>,
    pub count: u64,
}

#[derive(Debug, Serialize)]
pub struct CounterSummary {
    pub counter: Option<String>,
    pub count: u64,
}

#[derive(Debug, Serialize)]
pub struct IdentitySummary {
    pub identity: Option<String>,
    pub calls: u64,
    pub allowed: u64,
    pub refused: u64,
}

#[derive(Debug, Serialize)]
pub struct TimelineSummary {
    pub bucket_seconds: u64,
    /// The decisions in the buckets, in the order the chart stacks them.
    pub decisions: Vec<String>,
    pub buckets: Vec<Bucket>,
}

#[derive(Debug, Serialize)]
pub struct Bucket {
    pub start: String,
    pub counts: BTreeMap<String, u64>,
}
