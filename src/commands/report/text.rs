//! The report as a person reads it in a terminal: a header, the table of
//! tools, then approvals, refusals, counters and identities. Every name in
//! it went through `loggable` when it was counted: no control character
//! from a log reaches the terminal.

use std::fmt::Write;

use super::tally::{Summary, ToolSummary};
use crate::plural::count;

/// Rows shown of the refusals, counters and identities; the rest counted.
const SHOWN: usize = 10;

pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    let refused = s.calls - s.allowed;
    let _ = write!(
        out,
        "{}, {}, {} ({} allowed, {} refused)",
        count(s.files.len(), "file"),
        count(s.sessions, "session"),
        count(s.calls, "call"),
        s.allowed,
        refused
    );
    match (&s.first, &s.last) {
        (Some(first), Some(last)) => {
            let _ = write!(out, ", {first} to {last}");
        }
        _ => out.push_str(", no events"),
    }
    if let Some(since) = &s.since {
        let _ = write!(out, " (since {since})");
    }
    out.push('\n');
    for file in &s.files {
        for problem in &file.problems {
            let _ = writeln!(
                out,
                "{}:{}: skipped: {}",
                file.path,
                problem.line,
                problem.why.words()
            );
        }
        let unnamed = file.skipped - file.problems.len() as u64;
        if unnamed > 0 {
            let _ = writeln!(
                out,
                "{}: {} more skipped",
                file.path,
                count(unnamed, "line")
            );
        }
    }
    if s.unenforced > 0 {
        let _ = writeln!(
            out,
            "{} under --monitor: written down, not enforced",
            count(s.unenforced, "decision")
        );
    }
    if s.tools.is_empty() {
        return out;
    }
    out.push('\n');
    out.push_str(&tools(s));
    approvals(s, &mut out);
    refusals(s, &mut out);
    counters(s, &mut out);
    identities(s, &mut out);
    out
}

/// A tool's name as shown.
pub fn tool_name(tool: &ToolSummary) -> &str {
    match tool.tool.as_deref() {
        None => "(other tools)",
        Some("") => "(no name)",
        Some(name) => name,
    }
}

/// A duration in milliseconds, to about three figures.
pub fn ms(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v < 10.0 => format!("{v:.2} ms"),
        Some(v) if v < 100.0 => format!("{v:.1} ms"),
        Some(v) if v < 1_000.0 => format!("{v:.0} ms"),
        Some(v) if v < 10_000.0 => format!("{:.2} s", v / 1_000.0),
        Some(v) => format!("{:.1} s", v / 1_000.0),
    }
}

/// The answers to a tool's approvals, most first: "approved 2, denied 1".
pub fn answers(tool: &ToolSummary) -> String {
    let mut by_answer: Vec<(&str, u64)> = Vec::new();
    for a in &tool.approvals {
        let answer = a.answer.as_deref().unwrap_or("other");
        match by_answer.iter_mut().find(|(name, _)| *name == answer) {
            Some((_, n)) => *n += a.count,
            None => by_answer.push((answer, a.count)),
        }
    }
    by_answer.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let words: Vec<String> = by_answer.iter().map(|(a, n)| format!("{a} {n}")).collect();
    words.join(", ")
}

/// The decisions that refused some call, in the order of the timeline
/// (as they first came).
pub fn refusal_columns(s: &Summary) -> Vec<&str> {
    let mut columns: Vec<&str> = s
        .timeline
        .decisions
        .iter()
        .map(String::as_str)
        .filter(|d| s.tools.iter().any(|t| t.refused.contains_key(*d)))
        .collect();
    for t in &s.tools {
        for d in t.refused.keys() {
            if !columns.contains(&d.as_str()) {
                columns.push(d);
            }
        }
    }
    columns
}

fn tools(s: &Summary) -> String {
    let columns = refusal_columns(s);
    // Approvals only where a policy asked for them.
    let asked = s.tools.iter().any(|t| !t.approvals.is_empty());
    let mut head = vec!["tool", "calls", "allowed"];
    head.extend(&columns);
    head.extend(["p50", "p95"]);
    if asked {
        head.push("approvals");
    }
    let mut rows = Vec::new();
    for t in &s.tools {
        let mut row = vec![
            tool_name(t).to_owned(),
            t.calls.to_string(),
            t.allowed.to_string(),
        ];
        row.extend(
            columns
                .iter()
                .map(|d| t.refused.get(*d).copied().unwrap_or(0).to_string()),
        );
        row.extend([ms(t.p50_ms), ms(t.p95_ms)]);
        if asked {
            row.push(answers(t));
        }
        rows.push(row);
    }
    if s.tools.len() > 1 {
        let mut all = vec!["all".to_owned(), s.calls.to_string(), s.allowed.to_string()];
        all.extend(columns.iter().map(|d| {
            let n: u64 = s.tools.iter().filter_map(|t| t.refused.get(*d)).sum();
            n.to_string()
        }));
        rows.push(all);
    }
    let numeric = |i: usize| i > 0 && !(asked && i == head.len() - 1);
    table(&head, &rows, numeric, "")
}

fn approvals(s: &Summary, out: &mut String) {
    let rows: Vec<Vec<String>> = s
        .tools
        .iter()
        .flat_map(|t| {
            t.approvals.iter().map(move |a| {
                vec![
                    tool_name(t).to_owned(),
                    a.channel.clone().unwrap_or_else(|| "(other)".into()),
                    a.answer.clone().unwrap_or_else(|| "(other)".into()),
                    a.by.clone().unwrap_or_else(|| "-".into()),
                    a.count.to_string(),
                ]
            })
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    out.push_str("\napprovals:\n");
    let head = ["tool", "how", "answer", "by", "count"];
    out.push_str(&table(&head, &rows, |i| i == 4, "  "));
}

fn refusals(s: &Summary, out: &mut String) {
    if s.refusals.is_empty() {
        return;
    }
    out.push_str("\nrefusals, most frequent first:\n");
    let rows: Vec<Vec<String>> = s
        .refusals
        .iter()
        .take(SHOWN)
        .map(|r| {
            vec![
                r.count.to_string(),
                r.decision.clone().unwrap_or_else(|| "(others)".into()),
                r.rule.clone().unwrap_or_else(|| "-".into()),
                r.reason.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let head = ["count", "decision", "rule", "reason"];
    out.push_str(&table(&head, &rows, |i| i == 0, "  "));
    more(out, s.refusals.len());
}

fn counters(s: &Summary, out: &mut String) {
    if s.counters.is_empty() {
        return;
    }
    out.push_str("\ncounters that ran out:\n");
    let rows: Vec<Vec<String>> = s
        .counters
        .iter()
        .take(SHOWN)
        .map(|c| {
            vec![
                c.count.to_string(),
                c.counter.clone().unwrap_or_else(|| "(others)".into()),
            ]
        })
        .collect();
    out.push_str(&table(&["times", "counter"], &rows, |i| i == 0, "  "));
    more(out, s.counters.len());
}

fn identities(s: &Summary, out: &mut String) {
    if s.identities.is_empty() {
        return;
    }
    out.push_str("\nidentities:\n");
    let rows: Vec<Vec<String>> = s
        .identities
        .iter()
        .take(SHOWN)
        .map(|i| {
            vec![
                i.identity.clone().unwrap_or_else(|| "(others)".into()),
                i.calls.to_string(),
                i.allowed.to_string(),
                i.refused.to_string(),
            ]
        })
        .collect();
    let head = ["identity", "calls", "allowed", "refused"];
    out.push_str(&table(&head, &rows, |i| i > 0, "  "));
    more(out, s.identities.len());
}

fn more(out: &mut String, len: usize) {
    if len > SHOWN {
        let _ = writeln!(out, "  and {} more", len - SHOWN);
    }
}

/// Columns two spaces apart, numbers to the right; each line indented.
/// A row may end early: its last cells are empty.
fn table(
    head: &[&str],
    rows: &[Vec<String>],
    numeric: impl Fn(usize) -> bool,
    indent: &str,
) -> String {
    let width = |i: usize| {
        rows.iter()
            .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
            .chain([head[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..head.len()).map(width).collect();
    let mut out = String::new();
    let head: Vec<String> = head.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&head).chain(rows) {
        let mut line = indent.to_owned();
        for (i, cell) in row.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            if i > 0 {
                line.push_str("  ");
            }
            if numeric(i) {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
