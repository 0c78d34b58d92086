//! `report --html`: one page, self-contained, with its charts drawn here
//! as inline SVG. Nothing is fetched and nothing runs: the page has no
//! script, and its Content-Security-Policy allows its one style sheet
//! (by hash) and nothing else, so it works offline and a name that slips
//! past escaping still cannot load or run anything. Every text from the
//! log (tool names and reasons are the agent's and the policy's words)
//! is escaped.

use std::fmt::Write;

use sha2::Digest;

use super::tally::{Summary, ToolSummary};
use super::text::{ms, refusal_columns, tool_name};
pub use crate::html::escape as esc;
use crate::plural::count;

/// Rows of the refusal and latency charts.
const CHART_ROWS: usize = 12;
/// Characters of a label in a chart before it is cut (the whole label is
/// the bar's tooltip).
const LABEL_CHARS: usize = 58;

const STYLE: &str = r#"
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "Helvetica Neue", Arial, sans-serif; color: #1d2125; background: #f3f4f6; margin: 0; }
main { max-width: 70rem; margin: 0 auto; padding: 1.5rem 1.25rem 2rem; }
h1 { font-size: 1.5rem; margin: 0 0 .2rem; }
h2 { font-size: 1.1rem; margin: 0 0 .6rem; }
.meta, .note, footer, .legend, th { color: #596169; }
.meta { margin: 0 0 1rem; }
.note { margin: .2rem 0; font-size: .9rem; }
.cards { display: flex; flex-wrap: wrap; gap: .75rem; margin: 1rem 0; }
.card { background: #fff; border: 1px solid #d6dae0; border-radius: 8px; padding: .6rem 1rem; min-width: 8rem; }
.card b { display: block; font-size: 1.5rem; font-variant-numeric: tabular-nums; }
.card span { color: #596169; font-size: .9rem; }
section { background: #fff; border: 1px solid #d6dae0; border-radius: 8px; padding: 1rem 1.25rem; margin: 1rem 0; box-shadow: 0 1px 2px rgba(0, 0, 0, .05); overflow-x: auto; }
svg.chart { display: block; width: 100%; height: auto; }
svg text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", Arial, sans-serif; fill: #1d2125; }
svg text.dim { fill: #596169; }
svg text.small { font-size: 11px; }
svg .grid { stroke: #e3e6ea; stroke-width: 1; }
svg .axis { stroke: #9aa1a9; stroke-width: 1; }
.legend { display: flex; flex-wrap: wrap; gap: .3rem 1.1rem; margin: .5rem 0 0; padding: 0; list-style: none; font-size: .9rem; }
.legend svg { vertical-align: -1px; margin-right: .35rem; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #e3e6ea; vertical-align: top; }
th { font-weight: 600; font-size: .85rem; }
th.n { text-align: right; }
td.n { text-align: right; white-space: nowrap; }
td { overflow-wrap: anywhere; }
td.z { color: #aab0b7; }
td:first-child { min-width: 9rem; }
table.tools { font-size: .9rem; }
.pair { display: grid; grid-template-columns: repeat(auto-fit, minmax(22rem, 1fr)); gap: 0 1rem; }
tr.all td { font-weight: 600; border-bottom: none; }
code { font-family: ui-monospace, "SF Mono", Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: .88rem; }
.empty { color: #596169; }
footer { font-size: .85rem; margin-top: 1.5rem; }
"#;

/// The page.
pub fn page(s: &Summary) -> String {
    let csp = format!(
        "default-src 'none'; style-src 'sha256-{}'; img-src 'none'; base-uri 'none'; form-action 'none'",
        base64(&sha2::Sha256::digest(STYLE.as_bytes()))
    );
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>toolwarden report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
    );
    out.push_str("<h1>toolwarden report</h1>\n");
    let files: Vec<&str> = s.files.iter().map(|f| f.path.as_str()).collect();
    let mut meta = format!("{}: {}", count(files.len(), "file"), files.join(", "));
    match (&s.first, &s.last) {
        (Some(first), Some(last)) => {
            let _ = write!(meta, " · {} to {}", when(first), when(last));
        }
        _ => meta.push_str(" · no events"),
    }
    if let Some(since) = &s.since {
        let _ = write!(meta, " (since {})", when(since));
    }
    let _ = writeln!(out, "<p class=\"meta\">{}</p>", esc(&meta));
    notes(s, &mut out);
    cards(s, &mut out);
    if s.calls == 0 && s.tools.is_empty() {
        out.push_str("<section><p class=\"empty\">No calls in these logs.</p></section>\n");
    } else {
        timeline(s, &mut out);
        refusals(s, &mut out);
        latency(s, &mut out);
        tools(s, &mut out);
        approvals(s, &mut out);
        small_tables(s, &mut out);
    }
    let _ = writeln!(
        out,
        "<footer>Made by <code>toolwarden report</code> from {}. It shows names, decisions \
         and times, never the calls' arguments.</footer>",
        esc(&count(s.events, "event"))
    );
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// `2026-11-22T16:20:00Z` as `2026-11-22 16:20:00 UTC`.
fn when(ts: &str) -> String {
    match ts.strip_suffix('Z') {
        Some(t) => format!("{} UTC", t.replacen('T', " ", 1)),
        None => ts.to_owned(),
    }
}

fn notes(s: &Summary, out: &mut String) {
    for file in &s.files {
        for p in &file.problems {
            let line = format!("{}:{}: skipped: {}", file.path, p.line, p.why.words());
            let _ = writeln!(out, "<p class=\"note\">{}</p>", esc(&line));
        }
        let unnamed = file.skipped - file.problems.len() as u64;
        if unnamed > 0 {
            let line = format!("{}: {} more skipped", file.path, count(unnamed, "line"));
            let _ = writeln!(out, "<p class=\"note\">{}</p>", esc(&line));
        }
    }
    if s.unenforced > 0 {
        let line = format!(
            "{} under --monitor: written down, not enforced",
            count(s.unenforced, "decision")
        );
        let _ = writeln!(out, "<p class=\"note\">{}</p>", esc(&line));
    }
}

fn cards(s: &Summary, out: &mut String) {
    let answered: u64 = s
        .tools
        .iter()
        .flat_map(|t| &t.approvals)
        .map(|a| a.count)
        .sum();
    out.push_str("<div class=\"cards\">\n");
    for (n, what) in [
        (s.calls, "calls"),
        (s.allowed, "allowed"),
        (s.calls - s.allowed, "refused"),
        (answered, "approval answers"),
        (s.sessions, "sessions"),
    ] {
        let _ = writeln!(
            out,
            "<div class=\"card\"><b>{n}</b><span>{what}</span></div>"
        );
    }
    out.push_str("</div>\n");
}

/// A decision's colour: passing greens, refusals warm, the rest grey.
fn color(decision: &str) -> &'static str {
    match decision {
        "allowed" => "#2e7d32",
        "approved" => "#81c784",
        "denied" => "#c62828",
        "not_allowed" => "#ef6c00",
        "rate_limited" => "#f9a825",
        "invalid_arguments" => "#6a1b9a",
        "approval_declined" => "#ad1457",
        "approval_pending" => "#4e9ad1",
        "approval_unavailable" => "#8d6e63",
        "tool_changed" | "tool_unpinned" => "#00838f",
        "audit_unavailable" | "state_unavailable" => "#455a64",
        "cancelled" => "#9e9e9e",
        "notification_dropped" => "#bdbdbd",
        _ => "#607d8b",
    }
}

fn swatch(decision: &str) -> String {
    format!(
        "<svg width=\"12\" height=\"12\" aria-hidden=\"true\"><rect width=\"12\" height=\"12\" rx=\"2\" fill=\"{}\"/></svg>",
        color(decision)
    )
}

/// A round number at or above `n`, for an axis: 1, 2 or 5 times a power
/// of ten.
fn nice(n: f64) -> f64 {
    if n <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(n.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&v| v >= n)
        .unwrap_or(10.0 * power)
}

/// A tick of the latency axis: milliseconds, seconds from one.
fn tick_ms(v: f64) -> String {
    if v >= 1_000.0 {
        format!("{} s", tick(v / 1_000.0))
    } else {
        format!("{} ms", tick(v))
    }
}

/// What a tick of an axis says: no more figures than it needs.
fn tick(v: f64) -> String {
    if v == v.trunc() {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_owned()
    }
}

fn timeline(s: &Summary, out: &mut String) {
    let t = &s.timeline;
    out.push_str("<section>\n<h2>Calls over time</h2>\n");
    if t.buckets.is_empty() {
        out.push_str("<p class=\"empty\">No decisions in these logs.</p>\n</section>\n");
        return;
    }
    let (w, h) = (1000.0, 260.0);
    let (left, right, top, bottom) = (48.0, 10.0, 10.0, 34.0);
    let (plot_w, plot_h) = (w - left - right, h - top - bottom);
    let most = t
        .buckets
        .iter()
        .map(|b| b.counts.values().sum::<u64>())
        .max()
        .unwrap_or(0);
    // Whole numbers on the axis: about five lines, a round step apart.
    let step = nice(most as f64 / 5.0).max(1.0);
    let lines = (most as f64 / step).ceil().max(1.0);
    let top_value = step * lines;
    let y = |v: f64| top + plot_h - v / top_value * plot_h;
    let _ = writeln!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"calls over time, stacked by decision\">"
    );
    for i in 0..=lines as u32 {
        let v = step * f64::from(i);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{left}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\"/>\
             <text class=\"dim\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            w - right,
            y(v),
            y(v),
            left - 6.0,
            y(v) + 4.0,
            tick(v)
        );
    }
    let n = t.buckets.len();
    let slot = plot_w / n as f64;
    // A few bars stay bars, not walls.
    let bar = (slot * 0.78).clamp(1.0, 44.0);
    let label_every = n.div_ceil(8).max(1);
    let daily = t.bucket_seconds >= 86_400;
    let mut last_date = "";
    for (i, b) in t.buckets.iter().enumerate() {
        let x = left + slot * i as f64 + (slot - bar) / 2.0;
        let mut base = 0.0;
        let mut said = Vec::new();
        let mut rects = String::new();
        for d in &t.decisions {
            let Some(&c) = b.counts.get(d) else { continue };
            let (y1, y0) = (y(base + c as f64), y(base));
            let _ = write!(
                rects,
                "<rect x=\"{x:.1}\" y=\"{y1:.1}\" width=\"{bar:.1}\" height=\"{:.1}\" fill=\"{}\"/>",
                (y0 - y1).max(0.5),
                color(d),
            );
            said.push(format!("{d} {c}"));
            base += c as f64;
        }
        if !rects.is_empty() {
            let title = format!("{}: {}", when(&b.start), said.join(", "));
            let _ = writeln!(out, "<g><title>{}</title>{rects}</g>", esc(&title));
        }
        if i % label_every == 0 {
            let date = b.start.get(..10).unwrap_or("");
            let label = if daily {
                date.to_owned()
            } else if date != last_date {
                format!(
                    "{} {}",
                    date.get(5..).unwrap_or(""),
                    b.start.get(11..16).unwrap_or("")
                )
            } else {
                b.start.get(11..16).unwrap_or("").to_owned()
            };
            last_date = date;
            let _ = writeln!(
                out,
                "<text class=\"dim\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x + bar / 2.0,
                h - bottom + 18.0,
                esc(&label)
            );
        }
    }
    let _ = writeln!(
        out,
        "<line class=\"axis\" x1=\"{left}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\"/>\n</svg>",
        w - right,
        y(0.0),
        y(0.0)
    );
    let width = match t.bucket_seconds {
        s if s % 86_400 == 0 => count(s / 86_400, "day"),
        s if s % 3_600 == 0 => count(s / 3_600, "hour"),
        s => count(s / 60, "minute"),
    };
    out.push_str("<ul class=\"legend\">");
    for d in &t.decisions {
        let _ = write!(out, "<li>{}{}</li>", swatch(d), esc(d));
    }
    let _ = writeln!(
        out,
        "<li>each bar: {}, UTC</li></ul>\n</section>",
        esc(&width)
    );
}

/// Cuts `text` to [`LABEL_CHARS`] characters, with `…` where it was cut.
fn cut(text: &str) -> String {
    if text.chars().count() <= LABEL_CHARS {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(LABEL_CHARS - 1).collect();
    short.push('…');
    short
}

fn refusals(s: &Summary, out: &mut String) {
    out.push_str("<section>\n<h2>Refusals by reason</h2>\n");
    if s.refusals.is_empty() {
        out.push_str("<p class=\"empty\">No call was refused.</p>\n</section>\n");
        return;
    }
    let rows: Vec<_> = s.refusals.iter().take(CHART_ROWS).collect();
    let most = rows.iter().map(|r| r.count).max().unwrap_or(1) as f64;
    let (w, row_h, label_w) = (1000.0, 40.0, 400.0);
    let bar_max = w - label_w - 70.0;
    let h = row_h * rows.len() as f64 + 4.0;
    let _ = writeln!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"refusals by reason\">"
    );
    for (i, r) in rows.iter().enumerate() {
        let y = row_h * i as f64 + 4.0;
        let decision = r.decision.as_deref().unwrap_or("other");
        let reason = match (&r.decision, &r.reason) {
            (None, _) => "other reasons".to_owned(),
            (_, Some(reason)) => reason.clone(),
            (Some(d), None) => d.replace('_', " "),
        };
        let detail = match &r.rule {
            Some(rule) => format!("{decision} · rule {rule}"),
            None => format!("{decision} · no rule"),
        };
        let full = format!("{reason} ({detail}): {}", r.count);
        let len = (r.count as f64 / most * bar_max).max(2.0);
        let _ = writeln!(
            out,
            "<g><title>{}</title>\
             <text x=\"0\" y=\"{:.1}\">{}</text>\
             <text class=\"dim small\" x=\"0\" y=\"{:.1}\">{}</text>\
             <rect x=\"{label_w}\" y=\"{:.1}\" width=\"{len:.1}\" height=\"22\" rx=\"3\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
            esc(&full),
            y + 14.0,
            esc(&cut(&reason)),
            y + 30.0,
            esc(&cut(&detail)),
            y + 5.0,
            color(decision),
            label_w + len + 8.0,
            y + 21.0,
            r.count
        );
    }
    out.push_str("</svg>\n");
    if s.refusals.len() > CHART_ROWS {
        let _ = writeln!(
            out,
            "<p class=\"note\">and {} more</p>",
            count(s.refusals.len() - CHART_ROWS, "reason")
        );
    }
    out.push_str("</section>\n");
}

fn latency(s: &Summary, out: &mut String) {
    out.push_str("<section>\n<h2>Latency by tool</h2>\n");
    let rows: Vec<&ToolSummary> = s
        .tools
        .iter()
        .filter(|t| t.p95_ms.is_some())
        .take(CHART_ROWS)
        .collect();
    if rows.is_empty() {
        out.push_str("<p class=\"empty\">No call was answered.</p>\n</section>\n");
        return;
    }
    let slowest = rows.iter().filter_map(|t| t.p95_ms).fold(0.0, f64::max);
    let top_value = nice(slowest);
    let (w, row_h, label_w, right) = (1000.0, 30.0, 260.0, 200.0);
    let bar_max = w - label_w - right;
    let axis_h = 22.0;
    let h = row_h * rows.len() as f64 + axis_h + 6.0;
    let x = |v: f64| label_w + v / top_value * bar_max;
    let _ = writeln!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"latency by tool, p50 and p95\">"
    );
    for i in 0..=4 {
        let v = top_value * f64::from(i) / 4.0;
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{:.1}\" x2=\"{:.1}\" y1=\"0\" y2=\"{:.1}\"/>\
             <text class=\"dim small\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x(v),
            x(v),
            h - axis_h,
            x(v),
            h - 6.0,
            tick_ms(v)
        );
    }
    for (i, t) in rows.iter().enumerate() {
        let y = row_h * i as f64 + 4.0;
        let (p50, p95) = (t.p50_ms.unwrap_or(0.0), t.p95_ms.unwrap_or(0.0));
        let name = tool_name(t);
        let said = format!(
            "{name}: p50 {}, p95 {}, {}",
            ms(t.p50_ms),
            ms(t.p95_ms),
            count(t.results, "answer")
        );
        let _ = writeln!(
            out,
            "<g><title>{}</title>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{label_w}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"20\" rx=\"3\" fill=\"#b3cde8\"/>\
             <rect x=\"{label_w}\" y=\"{:.1}\" width=\"{:.1}\" height=\"12\" rx=\"2\" fill=\"#2f6db3\"/>\
             <text class=\"dim\" x=\"{:.1}\" y=\"{:.1}\">p50 {} · p95 {}</text></g>",
            esc(&said),
            label_w - 10.0,
            y + 15.0,
            esc(&cut(name).chars().take(34).collect::<String>()),
            (x(p95) - label_w).max(1.5),
            y + 4.0,
            (x(p50) - label_w).max(1.5),
            x(p95) + 8.0,
            y + 15.0,
            esc(&ms(t.p50_ms)),
            esc(&ms(t.p95_ms))
        );
    }
    out.push_str("</svg>\n<ul class=\"legend\">");
    let key = |fill: &str, what: &str| {
        format!(
            "<li><svg width=\"12\" height=\"12\" aria-hidden=\"true\"><rect width=\"12\" height=\"12\" rx=\"2\" fill=\"{fill}\"/></svg>{what}</li>"
        )
    };
    out.push_str(&key("#2f6db3", "p50 (half the calls took less)"));
    out.push_str(&key("#b3cde8", "p95"));
    out.push_str("</ul>\n</section>\n");
}

/// A table: a header, rows, and which columns hold numbers.
fn table(
    class: &str,
    head: &[&str],
    rows: &[(Vec<String>, bool)],
    numeric: impl Fn(usize) -> bool,
) -> String {
    let mut out = format!("<table class=\"{class}\">\n<thead><tr>");
    for (i, h) in head.iter().enumerate() {
        let class = if numeric(i) { " class=\"n\"" } else { "" };
        // `rate limited`, not `rate_limited`: a header may wrap.
        let _ = write!(out, "<th{class}>{}</th>", esc(&h.replace('_', " ")));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for (row, total) in rows {
        out.push_str(if *total { "<tr class=\"all\">" } else { "<tr>" });
        for (i, cell) in row.iter().enumerate() {
            // Zeros in grey: the counts that are there stand out.
            let class = match (numeric(i), cell.as_str()) {
                (true, "0") => " class=\"n z\"",
                (true, _) => " class=\"n\"",
                _ => "",
            };
            let _ = write!(out, "<td{class}>{}</td>", esc(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

fn tools(s: &Summary, out: &mut String) {
    let columns = refusal_columns(s);
    let mut head = vec!["tool", "calls", "allowed"];
    head.extend(&columns);
    head.extend(["p50", "p95", "server errors", "approval answers"]);
    let mut rows: Vec<(Vec<String>, bool)> = s
        .tools
        .iter()
        .map(|t| {
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
            let answered: u64 = t.approvals.iter().map(|a| a.count).sum();
            row.extend([
                ms(t.p50_ms),
                ms(t.p95_ms),
                t.server_errors.to_string(),
                answered.to_string(),
            ]);
            (row, false)
        })
        .collect();
    if s.tools.len() > 1 {
        let mut all = vec!["all".to_owned(), s.calls.to_string(), s.allowed.to_string()];
        all.extend(columns.iter().map(|d| {
            let n: u64 = s.tools.iter().filter_map(|t| t.refused.get(*d)).sum();
            n.to_string()
        }));
        let errors: u64 = s.tools.iter().map(|t| t.server_errors).sum();
        let answered: u64 = s
            .tools
            .iter()
            .flat_map(|t| &t.approvals)
            .map(|a| a.count)
            .sum();
        all.extend([
            String::new(),
            String::new(),
            errors.to_string(),
            answered.to_string(),
        ]);
        rows.push((all, true));
    }
    out.push_str("<section>\n<h2>Tools</h2>\n");
    out.push_str(&table("tools", &head, &rows, |i| i > 0));
    out.push_str("</section>\n");
}

fn approvals(s: &Summary, out: &mut String) {
    let rows: Vec<(Vec<String>, bool)> = s
        .tools
        .iter()
        .flat_map(|t| {
            t.approvals.iter().map(move |a| {
                let row = vec![
                    tool_name(t).to_owned(),
                    a.channel.clone().unwrap_or_else(|| "(other)".into()),
                    a.answer.clone().unwrap_or_else(|| "(other)".into()),
                    a.by.clone().unwrap_or_else(|| "-".into()),
                    a.count.to_string(),
                ];
                (row, false)
            })
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    out.push_str("<section>\n<h2>Approvals</h2>\n");
    out.push_str(&table(
        "",
        &["tool", "how", "answer", "by", "count"],
        &rows,
        |i| i == 4,
    ));
    out.push_str("</section>\n");
}

fn small_tables(s: &Summary, out: &mut String) {
    out.push_str("<div class=\"pair\">\n");
    if !s.counters.is_empty() {
        let rows: Vec<(Vec<String>, bool)> = s
            .counters
            .iter()
            .map(|c| {
                let name = c.counter.clone().unwrap_or_else(|| "(others)".into());
                (vec![name, c.count.to_string()], false)
            })
            .collect();
        out.push_str("<section>\n<h2>Counters that ran out</h2>\n");
        out.push_str(&table("", &["counter", "times"], &rows, |i| i == 1));
        out.push_str("</section>\n");
    }
    if !s.identities.is_empty() {
        let rows: Vec<(Vec<String>, bool)> = s
            .identities
            .iter()
            .map(|i| {
                let name = i.identity.clone().unwrap_or_else(|| "(others)".into());
                let row = vec![
                    name,
                    i.calls.to_string(),
                    i.allowed.to_string(),
                    i.refused.to_string(),
                ];
                (row, false)
            })
            .collect();
        out.push_str("<section>\n<h2>Identities</h2>\n");
        out.push_str(&table(
            "",
            &["identity", "calls", "allowed", "refused"],
            &rows,
            |i| i > 0,
        ));
        out.push_str("</section>\n");
    }
    out.push_str("</div>\n");
}

/// Standard base64 with padding, for the style sheet's hash.
pub(super) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
