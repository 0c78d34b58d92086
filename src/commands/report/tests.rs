//! The report's arithmetic and its three forms, on audit lines written
//! here in the shape docs/audit.md gives them (the end-to-end tests in
//! tests/it/report.rs read logs of real sessions).

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::tally::{Skipped, EXACT_DURATIONS, MAX_NAMES};
use super::*;

const T0: &str = "2026-11-22T16:20:00.000Z";

/// An audit line: `fields` over the members every line has.
fn line(fields: Value) -> String {
    let mut line = json!({
        "prev": "00", "ts": T0, "session": "5f0c8a2b9d3e4f61", "identity": "default",
    });
    for (k, v) in fields.as_object().unwrap() {
        line[k] = v.clone();
    }
    line.to_string()
}

fn decision(tool: &str, decision: &str) -> String {
    line(
        json!({"event": "decision", "id": 1, "tool": tool, "decision": decision,
                "arguments": {"x": "SECRET-ARGUMENT"}, "args_hmac": "SECRET-HMAC"}),
    )
}

fn result(tool: &str, ms: f64) -> String {
    line(json!({"event": "result", "id": 1, "tool": tool, "duration_ms": ms, "is_error": false}))
}

fn summary_of(lines: &[String], since: Option<SystemTime>) -> Summary {
    let mut tally = Tally::new(since);
    let text = lines.join("\n") + "\n";
    let file = tally_lines(&mut tally, text.as_bytes(), "audit.jsonl").unwrap();
    let mut summary = tally.finish();
    summary.files = vec![file];
    summary
}

/// A small log with one of everything.
fn small_log() -> Vec<String> {
    vec![
        line(json!({"event": "session_start", "nonce": "ab", "chain": "hmac-sha256"})),
        decision("retry_deploy", "allowed"),
        result("retry_deploy", 300.0),
        decision("retry_deploy", "allowed"),
        result("retry_deploy", 100.0),
        decision("retry_deploy", "allowed"),
        result("retry_deploy", 200.0),
        line(
            json!({"event": "decision", "id": 4, "tool": "retry_deploy", "decision": "rate_limited",
                    "rule": "retry_deploy", "counter": "deploys", "retry_after_ms": 5871}),
        ),
        line(
            json!({"event": "decision", "id": 5, "tool": "retry_deploy", "decision": "invalid_arguments",
                    "rule": "retry_deploy", "errors": [{"pointer": "/t", "message": "SECRET-ERROR is too short"}]}),
        ),
        line(
            json!({"event": "decision", "id": 6, "tool": "drop_database", "decision": "denied",
                    "rule": "drop_database", "reason": "never from an agent"}),
        ),
        line(
            json!({"event": "decision", "id": 7, "tool": "check_status", "decision": "approval_requested",
                    "rule": "check_status"}),
        ),
        line(
            json!({"event": "approval", "id": 7, "tool": "check_status", "channel": "inbox",
                    "approval_id": "xjd7kd44", "answer": "approved", "by": "alice"}),
        ),
        line(
            json!({"event": "decision", "id": 7, "tool": "check_status", "decision": "approved",
                    "rule": "check_status"}),
        ),
        result("check_status", 12.5),
        line(
            json!({"event": "decision", "id": 8, "tool": "check_status", "decision": "approval_requested"}),
        ),
        line(
            json!({"event": "approval", "id": 8, "tool": "check_status", "channel": "elicitation",
                    "answer": "timed_out"}),
        ),
        line(
            json!({"event": "decision", "id": 8, "tool": "check_status", "decision": "approval_declined",
                    "rule": "check_status"}),
        ),
        line(
            json!({"event": "decision", "identity": "ci", "id": 9, "tool": "anything", "decision": "not_allowed",
                    "enforced": false}),
        ),
        line(json!({"event": "policy_reloaded", "policy_sha256": "ab"})),
        line(json!({"event": "session_end", "lines": 19})),
    ]
}

#[test]
fn every_decision_lands_in_its_tool_and_identity() {
    let s = summary_of(&small_log(), None);
    assert_eq!((s.events, s.sessions, s.policy_reloads), (20, 1, 1));
    // Held calls are one call each: their second decision.
    assert_eq!((s.calls, s.allowed, s.unenforced), (9, 4, 1));
    let names: Vec<&str> = s.tools.iter().map(|t| t.tool.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        ["retry_deploy", "check_status", "anything", "drop_database"]
    );
    let retry = &s.tools[0];
    assert_eq!((retry.calls, retry.allowed, retry.results), (5, 3, 3));
    assert_eq!(
        serde_json::to_value(&retry.refused).unwrap(),
        json!({"rate_limited": 1, "invalid_arguments": 1})
    );
    // Nearest rank of 100, 200, 300.
    assert_eq!((retry.p50_ms, retry.p95_ms), (Some(200.0), Some(300.0)));
    let check = &s.tools[1];
    assert_eq!((check.calls, check.allowed, check.held), (2, 1, 2));
    assert_eq!(
        serde_json::to_value(&check.approvals).unwrap(),
        json!([
            {"channel": "elicitation", "answer": "timed_out", "by": null, "count": 1},
            {"channel": "inbox", "answer": "approved", "by": "alice", "count": 1},
        ])
    );
    assert_eq!(
        serde_json::to_value(&s.refusals).unwrap(),
        json!([
            {"decision": "approval_declined", "rule": "check_status", "reason": null, "count": 1},
            {"decision": "denied", "rule": "drop_database", "reason": "never from an agent", "count": 1},
            {"decision": "invalid_arguments", "rule": "retry_deploy", "reason": null, "count": 1},
            {"decision": "not_allowed", "rule": null, "reason": null, "count": 1},
            {"decision": "rate_limited", "rule": "retry_deploy", "reason": null, "count": 1},
        ])
    );
    assert_eq!(
        serde_json::to_value(&s.counters).unwrap(),
        json!([{"counter": "deploys", "count": 1}])
    );
    assert_eq!(
        serde_json::to_value(&s.identities).unwrap(),
        json!([
            {"identity": "default", "calls": 8, "allowed": 4, "refused": 4},
            {"identity": "ci", "calls": 1, "allowed": 0, "refused": 1},
        ])
    );
    assert_eq!(s.timeline.bucket_seconds, 60);
    assert_eq!(s.timeline.decisions[..2], ["allowed", "approved"]);
    assert_eq!(s.timeline.buckets.len(), 1);
    assert_eq!(s.timeline.buckets[0].start, "2026-11-22T16:20:00Z");
    assert_eq!(s.timeline.buckets[0].counts.values().sum::<u64>(), 9);
}

#[test]
fn a_later_round_of_a_call_approved_already_is_not_another_call() {
    let mut round = json!({"event": "decision", "id": 2, "tool": "deploy", "decision": "approved"});
    let first = line(round.clone());
    round["continued"] = json!(true);
    let s = summary_of(&[first, line(round)], None);
    assert_eq!((s.events, s.calls, s.allowed), (2, 1, 1));
    assert_eq!(s.tools[0].calls, 1);
}

#[test]
fn the_terminal_form_is_a_table_per_tool_then_the_rest() {
    let s = summary_of(&small_log(), None);
    assert_eq!(
        text::render(&s),
        "\
1 file, 1 session, 9 calls (4 allowed, 5 refused), 2026-11-22T16:20:00Z to 2026-11-22T16:20:00Z
1 decision under --monitor: written down, not enforced

tool           calls  allowed  rate_limited  invalid_arguments  denied  approval_declined  not_allowed      p50      p95  approvals
retry_deploy       5        3             1                  1       0                  0            0   200 ms   300 ms
check_status       2        1             0                  0       0                  1            0  12.5 ms  12.5 ms  approved 1, timed_out 1
anything           1        0             0                  0       0                  0            1        -        -
drop_database      1        0             0                  0       1                  0            0        -        -
all                9        4             1                  1       1                  1            1

approvals:
  tool          how          answer     by     count
  check_status  elicitation  timed_out  -          1
  check_status  inbox        approved   alice      1

refusals, most frequent first:
  count  decision           rule           reason
      1  approval_declined  check_status   -
      1  denied             drop_database  never from an agent
      1  invalid_arguments  retry_deploy   -
      1  not_allowed        -              -
      1  rate_limited       retry_deploy   -

counters that ran out:
  times  counter
      1  deploys

identities:
  identity  calls  allowed  refused
  default       8        4        4
  ci            1        0        1
"
    );
}

#[test]
fn no_argument_value_reaches_any_form() {
    let s = summary_of(&small_log(), None);
    let forms = [
        text::render(&s),
        serde_json::to_string(&s).unwrap(),
        html::page(&s),
    ];
    for form in forms {
        assert!(!form.contains("SECRET"), "{form}");
    }
}

#[test]
fn percentiles_are_exact_while_few_and_within_a_percent_after() {
    let few: Vec<String> = (1..=100).map(|i| result("t", f64::from(i))).collect();
    let s = summary_of(&few, None);
    assert_eq!(
        (s.tools[0].p50_ms, s.tools[0].p95_ms),
        (Some(50.0), Some(95.0))
    );
    // Past the exact ones, a histogram: in a shuffled order, so that the
    // values kept exactly are not the smallest.
    let n = 10 * EXACT_DURATIONS as u64;
    let many: Vec<String> = (0..n)
        .map(|i| result("t", ((i * 7_919) % n + 1) as f64))
        .collect();
    let s = summary_of(&many, None);
    let close = |got: Option<f64>, want: f64| {
        let got = got.unwrap();
        assert!(
            (got - want).abs() <= want * 0.01,
            "{got} is not {want} ± 1%"
        );
    };
    close(s.tools[0].p50_ms, n as f64 * 0.5);
    close(s.tools[0].p95_ms, n as f64 * 0.95);
    assert_eq!(s.tools[0].results, n);
}

#[test]
fn names_past_the_cap_share_one_row() {
    let lines: Vec<String> = (0..MAX_NAMES + 5)
        .map(|i| decision(&format!("tool_{i}"), "not_allowed"))
        .chain([decision("tool_0", "not_allowed")])
        .collect();
    let s = summary_of(&lines, None);
    assert_eq!(s.tools.len(), MAX_NAMES + 1);
    assert_eq!(s.tools[0].tool.as_deref(), Some("tool_0"));
    assert_eq!(s.tools[0].calls, 2);
    let rest = s.tools.last().unwrap();
    assert_eq!((rest.tool.as_deref(), rest.calls), (None, 5));
    assert!(text::render(&s).contains("(other tools)"));
    assert_eq!(s.calls, MAX_NAMES as u64 + 6);
}

#[test]
fn since_keeps_the_events_at_or_after_it() {
    let at = |ts: &str, tool: &str| {
        let mut l: Value = serde_json::from_str(&decision(tool, "allowed")).unwrap();
        l["ts"] = json!(ts);
        l.to_string()
    };
    let lines = [
        at("2026-11-22T14:00:00.000Z", "early"),
        at("2026-11-22T15:00:00.000Z", "on_time"),
        at("2026-11-22T16:00:00.000Z", "late"),
    ];
    let since = humantime::parse_rfc3339("2026-11-22T15:00:00Z").unwrap();
    let s = summary_of(&lines, Some(since));
    let names: Vec<&str> = s.tools.iter().map(|t| t.tool.as_deref().unwrap()).collect();
    assert_eq!(names, ["late", "on_time"]);
    assert_eq!(s.since.as_deref(), Some("2026-11-22T15:00:00Z"));
    assert_eq!(s.first.as_deref(), Some("2026-11-22T15:00:00Z"));
}

#[test]
fn since_reads_durations_and_times() {
    let at = |s: &str| humantime::parse_rfc3339(s).unwrap();
    let cases = [
        ("24h", Since::Ago(Duration::from_secs(86_400))),
        ("7d", Since::Ago(Duration::from_secs(7 * 86_400))),
        ("90m", Since::Ago(Duration::from_secs(5_400))),
        (
            "2026-11-22T16:00:00Z",
            Since::At(at("2026-11-22T16:00:00Z")),
        ),
        (
            "2026-11-22T16:00:00.250Z",
            Since::At(at("2026-11-22T16:00:00.250Z")),
        ),
        (
            "2026-11-22T18:30:00+02:30",
            Since::At(at("2026-11-22T16:00:00Z")),
        ),
        (
            "2026-11-22T14:00:00-02:00",
            Since::At(at("2026-11-22T16:00:00Z")),
        ),
        ("2026-11-22T16:00:00", Since::At(at("2026-11-22T16:00:00Z"))),
        ("2026-11-22", Since::At(at("2026-11-22T00:00:00Z"))),
    ];
    for (text, want) in cases {
        assert_eq!(text.parse::<Since>(), Ok(want), "{text}");
    }
    for bad in ["soon", "", "2026-13-45", "2026-11-22T16:00:00+2:00", "-1h"] {
        assert!(bad.parse::<Since>().is_err(), "{bad}");
    }
    let now = at("2026-11-22T16:00:00Z");
    assert_eq!(
        Since::Ago(Duration::from_secs(3_600)).at(now),
        at("2026-11-22T15:00:00Z")
    );
}

#[test]
fn a_line_that_does_not_read_is_counted_and_named_never_fatal() {
    let cut = decision("retry_deploy", "allowed");
    let mut text = String::new();
    text.push_str(&decision("retry_deploy", "allowed"));
    text.push_str("\nnot json at all\n");
    text.push_str("{\"event\":\"decision\"}\n");
    text.push('\n');
    text.push_str(&"x".repeat(MAX_LINE + 1));
    text.push('\n');
    text.push_str(&decision("retry_deploy", "denied"));
    text.push('\n');
    text.push_str(&cut[..cut.len() / 2]);
    let mut tally = Tally::new(None);
    let file = tally_lines(&mut tally, text.as_bytes(), "audit.jsonl").unwrap();
    assert_eq!((file.lines, file.skipped), (7, 4));
    let problems: Vec<(u64, Skipped)> = file.problems.iter().map(|p| (p.line, p.why)).collect();
    assert_eq!(
        problems,
        [
            (2, Skipped::NotAnEvent),
            (3, Skipped::NotAnEvent),
            (5, Skipped::TooLong),
            (7, Skipped::CutShort),
        ]
    );
    let mut s = tally.finish();
    assert_eq!((s.calls, s.allowed), (2, 1));
    s.files = vec![file];
    let out = text::render(&s);
    assert!(
        out.contains("audit.jsonl:7: skipped: the last line is cut short"),
        "{out}"
    );
    // A last line that is whole but for its newline counts.
    let mut tally = Tally::new(None);
    let file = tally_lines(&mut tally, cut.as_bytes(), "audit.jsonl").unwrap();
    assert_eq!((file.lines, file.skipped), (1, 0));
}

#[test]
fn names_reach_the_terminal_without_control_characters() {
    let s = summary_of(&[decision("evil\u{1b}[2J\nname", "not_allowed")], None);
    let out = text::render(&s);
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(out.contains("evil\\u{1b}[2J\\nname"), "{out}");
}

#[test]
fn the_page_escapes_what_the_log_says_and_loads_nothing() {
    let hostile = "<script>alert(1)</script>";
    let lines = [
        decision(hostile, "not_allowed"),
        line(
            json!({"event": "decision", "tool": "t\"'&", "decision": "denied",
                    "rule": "<b>rule</b>", "reason": "\"><img src=x onerror=alert(2)>"}),
        ),
        result(hostile, 5.0),
    ];
    let page = html::page(&summary_of(&lines, None));
    assert!(!page.contains("<script"), "{page}");
    assert!(!page.contains("<img"), "{page}");
    assert!(!page.contains("<b>rule"), "{page}");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("t&quot;&#39;&amp;"));
    // Nothing to load: no address, no attribute that would load one.
    for far in ["http:", "https:", "@import", "url(", " src=\"", " href=\""] {
        assert!(!page.contains(far), "{far} in the page");
    }
    // The one style sheet is the one the policy names by its hash.
    let style = page
        .split_once("<style>")
        .and_then(|(_, rest)| rest.split_once("</style>"))
        .unwrap()
        .0;
    use sha2::Digest;
    let hash = html::base64(&sha2::Sha256::digest(style.as_bytes()));
    assert!(
        page.contains(&format!("style-src 'sha256-{hash}'")),
        "{page}"
    );
    assert!(page.contains("default-src 'none'"));
    assert_eq!(page.matches("<style>").count(), 1);
}

#[test]
fn base64_is_the_standard_alphabet_with_padding() {
    assert_eq!(html::base64(b""), "");
    assert_eq!(html::base64(b"f"), "Zg==");
    assert_eq!(html::base64(b"fo"), "Zm8=");
    assert_eq!(html::base64(b"foo"), "Zm9v");
    assert_eq!(html::base64(b"foob"), "Zm9vYg==");
    use sha2::Digest;
    assert_eq!(
        html::base64(&sha2::Sha256::digest(b"")),
        "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    );
}

#[test]
fn a_long_log_is_drawn_in_wider_bars_with_every_call_in_one() {
    // A call every three hours for 400 days: minutes would be 3,200
    // buckets, more than are kept.
    let start = humantime::parse_rfc3339("2025-01-01T00:00:00Z").unwrap();
    let lines: Vec<String> = (0..3_200u64)
        .map(|i| {
            let mut l: Value = serde_json::from_str(&decision("t", "allowed")).unwrap();
            let at = start + Duration::from_secs(i * 3 * 3_600);
            l["ts"] = json!(humantime::format_rfc3339_millis(at).to_string());
            l.to_string()
        })
        .collect();
    let s = summary_of(&lines, None);
    let t = &s.timeline;
    assert!(
        t.buckets.len() as u64 <= tally::MAX_BARS,
        "{}",
        t.buckets.len()
    );
    assert_eq!(t.bucket_seconds, 7 * 86_400);
    let total: u64 = t.buckets.iter().flat_map(|b| b.counts.values()).sum();
    assert_eq!(total, 3_200);
    // The page draws them.
    assert!(html::page(&s).contains("each bar: 7 days, UTC"));
}

#[test]
fn an_empty_log_says_so() {
    let s = summary_of(&[], None);
    assert_eq!(
        text::render(&s),
        "1 file, 0 sessions, 0 calls (0 allowed, 0 refused), no events\n"
    );
    assert!(html::page(&s).contains("No calls in these logs."));
}
