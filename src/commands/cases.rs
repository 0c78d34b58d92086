//! `toolwarden test POLICY CASES.json`: calls written down with the
//! decision each should get, run in order against a fresh in-memory state
//! and a clock that only moves when a case says so. A policy's tests, for
//! CI.
//!
//! ```json
//! {"cases": [
//!   {"name": "ten retries pass", "tool": "retry-job", "arguments": {"endpointId": "e", "jobId": "j"},
//!    "repeat": 10, "expect": "allowed"},
//!   {"name": "the eleventh waits", "tool": "retry-job", "arguments": {"endpointId": "e", "jobId": "j"},
//!    "expect": "rate_limited"},
//!   {"name": "one more after 6 s", "after": "6s", "tool": "retry-job",
//!    "arguments": {"endpointId": "e", "jobId": "j"}, "expect": "allowed"}
//! ]}
//! ```

use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cli::TestArgs;
use crate::policy::{self, Policy, ToolCall, Verdict};
use crate::state::{Outcome, Spec, State};
use crate::wire::json::Raw;

/// `toolwarden test POLICY CASES`: the report (text, or JSON with
/// `--json`), and the exit code (0 when every case passes, 1 when one
/// fails, 2 for a policy or cases file that does not load).
pub fn run(args: &TestArgs) -> (String, u8) {
    let policy = match policy::load(&args.policy) {
        Ok(policy) => policy,
        Err(e) => {
            eprintln!("toolwarden: {e:#}");
            return (String::new(), 2);
        }
    };
    let file = std::fs::read_to_string(&args.cases)
        .map_err(|e| e.to_string())
        .and_then(|text| read(&text));
    let file = match file {
        Ok(file) => file,
        Err(e) => {
            eprintln!("toolwarden: {}: {e}", args.cases.display());
            return (String::new(), 2);
        }
    };
    let report = run_cases(&policy, &file);
    let text = if args.json {
        let mut text = serde_json::to_string_pretty(&report).expect("a report serializes");
        text.push('\n');
        text
    } else {
        report.text()
    };
    (text, u8::from(report.failed > 0))
}

/// The decisions a case may expect: `allowed`, `approval_requested` (a
/// person would be asked; the test takes the charge as if they said yes),
/// `approval_pending` (a person would be asked, and nobody answers, as
/// when a call waits in the inbox past its hold: nothing is charged), or
/// a refusal's decision.
pub const DECISIONS: &[&str] = &[
    "allowed",
    "approval_requested",
    "approval_pending",
    "denied",
    "not_allowed",
    "rate_limited",
    "invalid_arguments",
];

/// Where the fake clock starts: a fixed time, so that a run is the same
/// every day (2027-01-15T08:00:00Z, in µs).
const START_US: u64 = 1_800_000_000_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasesFile {
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub tool: String,
    #[serde(default)]
    pub arguments: Option<Value>,
    /// For limits with scope "grant". Default: "default".
    #[serde(default)]
    pub identity: Option<String>,
    /// The same call this many times, each expected to get `expect`.
    #[serde(default)]
    pub repeat: Option<NonZeroU32>,
    /// Advance the clock this long before the case ("30s", "1m", "2h").
    #[serde(default)]
    pub after: Option<String>,
    pub expect: String,
}

/// One case's outcome.
#[derive(Debug, Serialize)]
pub struct CaseOutcome {
    pub name: String,
    pub passed: bool,
    pub expected: String,
    /// What the failing call got (or, for a passing case, what every call
    /// got).
    pub got: String,
    /// Which call of `repeat` failed, from 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<u32>,
    /// The refusal's text, when a call was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// Every case's outcome, and the counts.
#[derive(Debug, Serialize)]
pub struct Report {
    pub cases: Vec<CaseOutcome>,
    pub passed: usize,
    pub failed: usize,
}

/// Reads a cases file; the error names the place in it.
pub fn read(text: &str) -> Result<CasesFile, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let file: CasesFile = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        format!("{path}: {}", e.into_inner())
    })?;
    for (i, case) in file.cases.iter().enumerate() {
        if !DECISIONS.contains(&case.expect.as_str()) {
            return Err(format!(
                "cases[{i}].expect: {:?} is not one of {}",
                case.expect,
                DECISIONS.join(", ")
            ));
        }
        if let Some(after) = &case.after {
            humantime::parse_duration(after)
                .map_err(|e| format!("cases[{i}].after: {after:?}: {e}"))?;
        }
        if case.arguments.as_ref().is_some_and(|a| !a.is_object()) {
            return Err(format!("cases[{i}].arguments: must be an object"));
        }
    }
    Ok(file)
}

/// Runs the cases in order against a fresh in-memory state.
pub fn run_cases(policy: &Policy, file: &CasesFile) -> Report {
    let mut state = State::open(Spec::Memory, "test".into(), "default".into())
        .expect("an in-memory state opens");
    let mut now = START_US;
    let mut cases = Vec::new();
    for case in &file.cases {
        if let Some(after) = &case.after {
            let by = humantime::parse_duration(after).unwrap_or(Duration::ZERO);
            now = now.saturating_add(by.as_micros() as u64);
        }
        state.set_identity(case.identity.clone().unwrap_or_else(|| "default".into()));
        let arguments = case.arguments.as_ref().map(Value::to_string);
        let repeat = case.repeat.map_or(1, NonZeroU32::get);
        let mut outcome = CaseOutcome {
            name: case.name.clone(),
            passed: true,
            expected: case.expect.clone(),
            got: case.expect.clone(),
            call: None,
            text: None,
        };
        for i in 1..=repeat {
            let (got, text) = decide(
                policy,
                &state,
                &case.tool,
                arguments.as_deref(),
                now,
                &case.expect,
            );
            if got != case.expect {
                outcome = CaseOutcome {
                    passed: false,
                    got,
                    call: (repeat > 1).then_some(i),
                    text,
                    ..outcome
                };
                break;
            }
            outcome.text = text;
        }
        cases.push(outcome);
    }
    let passed = cases.iter().filter(|c| c.passed).count();
    Report {
        failed: cases.len() - passed,
        passed,
        cases,
    }
}

/// One call's decision and, when refused, the text the agent would read.
/// A call that asks for approval is `approval_pending` when the case
/// expects it (nobody answers: its limits are checked, not charged, as a
/// session does before it asks), else `approval_requested` (charged as if
/// the person said yes).
fn decide(
    policy: &Policy,
    state: &State,
    tool: &str,
    arguments: Option<&str>,
    now: u64,
    expect: &str,
) -> (String, Option<String>) {
    let raw = arguments.and_then(|a| Raw::parse(a).ok());
    let call = ToolCall {
        name: tool.into(),
        arguments: raw,
    };
    let (decision, charge, commit) = match policy.check(&call) {
        Verdict::Allow(charge) => ("allowed", charge, true),
        Verdict::Approve(charge) if expect == "approval_pending" => {
            ("approval_pending", charge, false)
        }
        Verdict::Approve(charge) => ("approval_requested", charge, true),
        Verdict::Refuse(refusal) => return (refusal.decision().into(), Some(refusal.text())),
    };
    match state.take_at(policy, &charge, commit, Some(now)) {
        Ok(Outcome::Taken) => (decision.into(), None),
        Ok(Outcome::Short {
            counter,
            retry_after,
        }) => {
            let refusal = policy.rate_limited(tool, counter, retry_after);
            (refusal.decision().into(), Some(refusal.text()))
        }
        // An in-memory state is always there.
        Err(_) => ("state_unavailable".into(), None),
    }
}

impl Report {
    /// One line per case and a summary line.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for case in &self.cases {
            if case.passed {
                out.push_str(&format!("ok    {}: {}\n", case.name, case.got));
            } else {
                let at = case.call.map_or(String::new(), |i| format!(" (call {i})"));
                out.push_str(&format!(
                    "FAIL  {}{at}: expected {}, got {}\n",
                    case.name, case.expected, case.got
                ));
                if let Some(text) = &case.text {
                    out.push_str(&format!("      {text}\n"));
                }
            }
        }
        out.push_str(&format!("{} passed, {} failed\n", self.passed, self.failed));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"{"version":"1","default":"deny","tools":{
        "retry":{"limits":[{"window":"minute","max":2,"scope":"grant"}]},
        "drop":{"action":"deny"},
        "deploy":{"action":"approve","limits":[{"window":"hour","max":1}]}}}"#;

    fn report(cases: &str) -> Report {
        let policy = Policy::from_json(POLICY).unwrap();
        let file = read(cases).unwrap_or_else(|e| panic!("{e}"));
        run_cases(&policy, &file)
    }

    #[test]
    fn cases_run_in_order_on_a_clock_of_their_own() {
        let r = report(
            r#"{"cases":[
            {"name":"two pass","tool":"retry","repeat":2,"expect":"allowed"},
            {"name":"a third waits","tool":"retry","expect":"rate_limited"},
            {"name":"another identity has its own","tool":"retry","identity":"b","repeat":2,"expect":"allowed"},
            {"name":"30 s later one more","after":"30s","tool":"retry","expect":"allowed"},
            {"name":"deny","tool":"drop","expect":"denied"},
            {"name":"unknown","tool":"other","expect":"not_allowed"},
            {"name":"approval","tool":"deploy","expect":"approval_requested"},
            {"name":"approved once an hour","tool":"deploy","expect":"rate_limited"}]}"#,
        );
        assert_eq!((r.passed, r.failed), (8, 0), "{}", r.text());
        assert!(r.text().ends_with("8 passed, 0 failed\n"));
    }

    /// Nobody answers offline: a call that asks for approval, within its
    /// limits, is pending and charged nothing; once approved (requested)
    /// it is charged, and a pending one past the limit is rate limited.
    #[test]
    fn a_pending_approval_is_expected_within_the_limits_and_charges_nothing() {
        let r = report(
            r#"{"cases":[
            {"name":"pending three times","tool":"deploy","repeat":3,"expect":"approval_pending"},
            {"name":"approved once","tool":"deploy","expect":"approval_requested"},
            {"name":"past the limit","tool":"deploy","expect":"approval_pending"},
            {"name":"allowed is not pending","tool":"retry","expect":"approval_pending"},
            {"name":"denied is not pending","tool":"drop","expect":"approval_pending"}]}"#,
        );
        let text = r.text();
        assert_eq!((r.passed, r.failed), (2, 3), "{text}");
        assert!(text.starts_with("ok    pending three times: approval_pending\nok    approved once: approval_requested\nFAIL  past the limit: expected approval_pending, got rate_limited\n"), "{text}");
        assert!(
            text.contains("FAIL  allowed is not pending: expected approval_pending, got allowed\n"),
            "{text}"
        );
        assert!(
            text.contains("FAIL  denied is not pending: expected approval_pending, got denied\n"),
            "{text}"
        );
    }

    /// The cases' clock starts at 08:00 UTC: a fixed day is full until
    /// midnight, 16 hours on, and counted afresh after it.
    #[test]
    fn fixed_windows_reset_at_the_utc_boundary_on_the_cases_clock() {
        let policy = Policy::from_json(
            r#"{"version":"1","tools":{"t":{"limits":[{"window":{"fixed":"day"},"max":2}]}}}"#,
        )
        .unwrap();
        let file = read(
            r#"{"cases":[
            {"name":"two pass","tool":"t","repeat":2,"expect":"allowed"},
            {"name":"none until midnight","after":"15h 59m","tool":"t","expect":"rate_limited"},
            {"name":"two after it","after":"1m","tool":"t","repeat":2,"expect":"allowed"}]}"#,
        )
        .unwrap();
        let r = run_cases(&policy, &file);
        assert_eq!((r.passed, r.failed), (3, 0), "{}", r.text());
    }

    #[test]
    fn a_failing_case_says_which_call_and_why() {
        let r = report(
            r#"{"cases":[{"name":"three pass","tool":"retry","repeat":3,"expect":"allowed"},
                         {"name":"denied","tool":"drop","expect":"allowed"}]}"#,
        );
        assert_eq!((r.passed, r.failed), (0, 2));
        let text = r.text();
        assert!(
            text.contains("FAIL  three pass (call 3): expected allowed, got rate_limited\n      toolwarden: `retry` refused: rate limit retry (2 per minute) reached; retry in 30 s\n"),
            "{text}"
        );
        assert!(
            text.contains("FAIL  denied: expected allowed, got denied\n"),
            "{text}"
        );
        assert!(text.ends_with("0 passed, 2 failed\n"));
    }

    #[test]
    fn a_cases_file_with_a_mistake_is_refused_at_its_place() {
        for (text, says) in [
            (
                r#"{"cases":[{"name":"x","tool":"t","expect":"allow"}]}"#,
                "cases[0].expect: \"allow\" is not one of",
            ),
            (
                r#"{"cases":[{"name":"x","tool":"t","expect":"allowed","after":"soon"}]}"#,
                "cases[0].after",
            ),
            (
                r#"{"cases":[{"name":"x","tool":"t","expect":"allowed","arguments":[]}]}"#,
                "cases[0].arguments",
            ),
            (
                r#"{"cases":[{"name":"x","tool":"t","expect":"allowed","repaet":2}]}"#,
                "cases[0].repaet: unknown field `repaet`",
            ),
            (
                r#"{"cases":[{"name":"x","tool":"t","expect":"allowed","repeat":0}]}"#,
                "cases[0].repeat",
            ),
        ] {
            let e = read(text).expect_err(text);
            assert!(e.contains(says), "{e}");
        }
    }
}
