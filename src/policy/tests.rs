//! The decision, table by table, with its charges taken from an in-memory
//! store at times the tests set.

use std::cell::Cell;
use std::ops::Deref;
use std::rc::Rc;
use std::time::Duration;

use crate::state::{self, Outcome, State};
use crate::wire::json::Raw;
use crate::wire::jsonrpc::{self, Message, Strictness};

use super::*;

/// A policy with a store of its own, as a session has.
struct Tested {
    policy: Policy,
    state: State,
    clock: Clock,
}

impl Deref for Tested {
    type Target = Policy;
    fn deref(&self) -> &Policy {
        &self.policy
    }
}

/// The time the store is asked at, in microseconds since the UNIX epoch.
#[derive(Clone)]
struct Clock(Rc<Cell<u64>>);

impl Clock {
    fn advance(&self, by: Duration) {
        self.0.set(self.0.get() + by.as_micros() as u64);
    }
}

fn policy(text: &str) -> (Tested, Clock) {
    let policy = Policy::from_json(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let state = State::open(state::Spec::Memory, "test".into(), "default".into()).unwrap();
    let clock = Clock(Rc::new(Cell::new(1_800_000_000_000_000)));
    let tested = Tested {
        policy,
        state,
        clock: clock.clone(),
    };
    (tested, clock)
}

fn load_error(text: &str) -> LoadError {
    match Policy::from_json(text) {
        Ok(_) => panic!("loaded, but should not have:\n{text}"),
        Err(e) => e,
    }
}

fn call<'a>(name: &'a str, args: Option<Raw<'a>>) -> ToolCall<'a> {
    ToolCall {
        name: name.into(),
        arguments: args,
    }
}

/// What the relay would do with a call: its verdict, with the charge
/// taken (`commit`) or only checked.
fn verdict(
    p: &Tested,
    name: &str,
    args: Option<&str>,
    commit: bool,
) -> Result<&'static str, Box<Refusal>> {
    let raw = args.map(|a| Raw::parse(a).unwrap());
    let (answer, charge) = match p.check(&call(name, raw)) {
        Verdict::Allow(charge) => ("allow", charge),
        Verdict::Approve(charge) => ("approve", charge),
        Verdict::Refuse(r) => return Err(Box::new(r)),
    };
    let commit = commit && answer == "allow";
    match p
        .state
        .take_at(p, &charge, commit, Some(p.clock.0.get()))
        .unwrap()
    {
        Outcome::Taken => Ok(answer),
        Outcome::Short {
            counter,
            retry_after,
        } => Err(Box::new(p.rate_limited(name, counter, retry_after))),
    }
}

fn decide(p: &Tested, name: &str, args: Option<&str>) -> Result<&'static str, String> {
    verdict(p, name, args, true).map_err(|r| r.decision().to_owned())
}

fn refusal(p: &Tested, name: &str, args: Option<&str>) -> Refusal {
    match verdict(p, name, args, true) {
        Err(r) => *r,
        Ok(other) => panic!("{name} was not refused: {other}"),
    }
}

/// A person approved a held call: its charge is taken.
fn approve(p: &Tested, name: &str) -> Result<(), String> {
    let Verdict::Approve(charge) = p.check(&call(name, None)) else {
        panic!("{name} is not held for approval")
    };
    match p
        .state
        .take_at(p, &charge, true, Some(p.clock.0.get()))
        .unwrap()
    {
        Outcome::Taken => Ok(()),
        Outcome::Short { .. } => Err("rate_limited".into()),
    }
}

const SEED: &str = r#"{
  "version": "1",
  "default": "deny",
  "tools": {
    "retry_deploy": {
      "limits": [
        { "counter": "retry_deploy_rate", "window": "minute", "max": 10, "scope": "grant" }
      ]
    }
  }
}"#;

#[test]
fn the_seed_policy_means_what_it_says() {
    let (p, clock) = policy(SEED);
    for _ in 0..10 {
        assert_eq!(decide(&p, "retry_deploy", None), Ok("allow"));
    }
    let r = refusal(&p, "retry_deploy", None);
    assert_eq!(
        r.kind,
        RefusalKind::RateLimited {
            counter: "retry_deploy_rate".into(),
            max: 10,
            window: Window::rolling(60),
            retry_after: Duration::from_secs(6),
        }
    );
    assert_eq!(
        r.text(),
        "toolwarden: `retry_deploy` refused: rate limit retry_deploy_rate (10 per minute) reached; retry in 6 s"
    );
    assert_eq!(decide(&p, "check_status", None), Err("not_allowed".into()));
    assert!(p.hides("check_status"));
    assert!(!p.hides("retry_deploy"));
    // One call every window / max.
    clock.advance(Duration::from_millis(5_871));
    let r = refusal(&p, "retry_deploy", None);
    assert_eq!(r.meta().retry_after_ms, Some(129));
    assert!(r.text().ends_with("retry in 1 s"), "{}", r.text());
    clock.advance(Duration::from_millis(129));
    assert_eq!(decide(&p, "retry_deploy", None), Ok("allow"));
    assert_eq!(decide(&p, "retry_deploy", None), Err("rate_limited".into()));
}

#[test]
fn defaults_actions_and_hiding() {
    let (p, _) = policy(
        r#"{"version":"1","default":"allow","tools":{
            "delete_*":{"action":"deny","reason":"deleting needs a person"},
            "delete_draft":{},
            "deploy":{"action":"approve"},
            "shown_but_denied":{"action":"deny","hide":false},
            "hidden_but_allowed":{"hide":true}
        }}"#,
    );
    let table = [
        ("read_file", Ok("allow"), false),
        ("delete_pod", Err("denied".to_owned()), true),
        ("delete_draft", Ok("allow"), false),
        ("deploy", Ok("approve"), false),
        ("shown_but_denied", Err("denied".to_owned()), false),
        ("hidden_but_allowed", Ok("allow"), true),
    ];
    for (tool, want, hidden) in table {
        assert_eq!(decide(&p, tool, None), want, "{tool}");
        assert_eq!(p.hides(tool), hidden, "{tool} hidden");
    }
    let r = refusal(&p, "delete_pod", None);
    assert_eq!(r.rule.as_deref(), Some("delete_*"));
    assert!(r.text().contains("deleting needs a person"), "{}", r.text());
    assert_eq!(r.meta().reason, Some("deleting needs a person"));
}

#[test]
fn missing_default_is_deny_and_hide_denied_can_be_turned_off() {
    let (p, _) = policy(r#"{"version":"1","hide_denied":false}"#);
    assert_eq!(decide(&p, "anything", None), Err("not_allowed".into()));
    assert!(!p.hides("anything"));
}

#[test]
fn glob_precedence() {
    let (p, _) = policy(
        r#"{"version":"1","tools":{
            "*":{"action":"deny"},
            "flowforge_*":{"action":"allow"},
            "flowforge_delete_*":{"action":"deny"},
            "flowforge_delete_draft":{"action":"allow"}
        }}"#,
    );
    let table = [
        ("other", "*"),
        ("flowforge_retry_run", "flowforge_*"),
        ("flowforge_delete_run", "flowforge_delete_*"),
        ("flowforge_delete_draft", "flowforge_delete_draft"),
    ];
    for (tool, rule) in table {
        assert_eq!(
            p.rule_for(tool).map(|r| r.pattern.as_str()),
            Some(rule),
            "{tool}"
        );
    }
}

#[test]
fn arguments_are_checked_against_the_schema() {
    let (p, _) = policy(
        r#"{"version":"1","tools":{"retry_task":{"arguments":{
            "type":"object",
            "properties":{"task_id":{"type":"string","pattern":"^[0-9a-f]{14,24}$"},"when":{"type":"string","format":"date-time"}},
            "required":["task_id"],
            "additionalProperties":false
        }}}}"#,
    );
    assert_eq!(
        decide(&p, "retry_task", Some(r#"{"task_id":"67abc123def456"}"#)),
        Ok("allow")
    );
    let r = refusal(&p, "retry_task", Some(r#"{"task_id":5,"extra":true}"#));
    let RefusalKind::InvalidArguments { errors, .. } = &r.kind else {
        panic!("{r:?}")
    };
    let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
    assert!(pointers.contains(&"/task_id"), "{errors:?}");
    assert!(
        pointers.contains(&""),
        "additionalProperties is about the object itself: {errors:?}"
    );
    assert!(
        r.text().contains("/task_id: 5 is not of type \"string\""),
        "{}",
        r.text()
    );
    // Missing arguments are checked as {}.
    assert_eq!(
        decide(&p, "retry_task", None),
        Err("invalid_arguments".into())
    );
    // Formats are checked.
    assert_eq!(
        decide(
            &p,
            "retry_task",
            Some(r#"{"task_id":"67abc123def456","when":"yesterday"}"#)
        ),
        Err("invalid_arguments".into())
    );
}

#[test]
fn a_refused_call_charges_no_counter() {
    let (p, _) = policy(
        r#"{"version":"1",
            "limits":[{"counter":"all","window":"minute","max":3}],
            "tools":{
              "a":{"arguments":{"type":"object","required":["x"]}},
              "b":{"limits":[{"window":"hour","max":1}]},
              "c":{"action":"deny"}
            }}"#,
    );
    // Refused for its arguments, by deny, and by b's own limit: none of it
    // touches the shared counter "all".
    assert_eq!(decide(&p, "a", Some("{}")), Err("invalid_arguments".into()));
    assert_eq!(decide(&p, "c", None), Err("denied".into()));
    assert_eq!(decide(&p, "b", None), Ok("allow"));
    assert_eq!(decide(&p, "b", None), Err("rate_limited".into()));
    assert_eq!(decide(&p, "b", None), Err("rate_limited".into()));
    // "all" has had one call (b's first): two left.
    assert_eq!(decide(&p, "a", Some(r#"{"x":1}"#)), Ok("allow"));
    assert_eq!(decide(&p, "a", Some(r#"{"x":1}"#)), Ok("allow"));
    let r = refusal(&p, "a", Some(r#"{"x":1}"#));
    assert!(matches!(r.kind, RefusalKind::RateLimited { ref counter, .. } if counter == "all"));
}

#[test]
fn shared_counters_share_one_budget() {
    let (p, _) = policy(
        r#"{"version":"1","tools":{
            "retry_run":{"limits":[{"counter":"retries","window":"minute","max":2}]},
            "replay_run":{"limits":[{"counter":"retries","window":"minute","max":2}]}
        }}"#,
    );
    assert_eq!(decide(&p, "retry_run", None), Ok("allow"));
    assert_eq!(decide(&p, "replay_run", None), Ok("allow"));
    assert_eq!(decide(&p, "retry_run", None), Err("rate_limited".into()));
    assert_eq!(decide(&p, "replay_run", None), Err("rate_limited".into()));
}

#[test]
fn unnamed_limits_are_private_to_their_rule() {
    let (p, _) = policy(
        r#"{"version":"1","tools":{
            "a":{"limits":[{"window":"minute","max":1}]},
            "b":{"limits":[{"window":"minute","max":1}]}
        }}"#,
    );
    assert_eq!(decide(&p, "a", None), Ok("allow"));
    assert_eq!(decide(&p, "b", None), Ok("allow"));
    let r = refusal(&p, "a", None);
    assert!(matches!(r.kind, RefusalKind::RateLimited { ref counter, .. } if counter == "a"));
}

#[test]
fn every_scope_is_counted() {
    for scope in ["session", "grant", "global"] {
        let (p, _) = policy(&format!(
            r#"{{"version":"1","tools":{{"t":{{"limits":[{{"window":"second","max":1,"scope":"{scope}"}}]}}}}}}"#
        ));
        assert_eq!(decide(&p, "t", None), Ok("allow"), "{scope}");
        assert_eq!(decide(&p, "t", None), Err("rate_limited".into()), "{scope}");
    }
}

#[test]
fn windows_in_words_and_in_seconds() {
    let (p, clock) = policy(
        r#"{"version":"1","tools":{"t":{"limits":[{"window":90,"max":3}]},"d":{"limits":[{"window":"day","max":2}]}}}"#,
    );
    for _ in 0..3 {
        assert_eq!(decide(&p, "t", None), Ok("allow"));
    }
    let r = refusal(&p, "t", None);
    assert!(
        matches!(r.kind, RefusalKind::RateLimited { retry_after, .. } if retry_after == Duration::from_secs(30))
    );
    assert!(r.text().contains("(3 per 90 seconds)"), "{}", r.text());
    clock.advance(Duration::from_secs(30));
    assert_eq!(decide(&p, "t", None), Ok("allow"));
    assert_eq!(decide(&p, "d", None), Ok("allow"));
    assert_eq!(decide(&p, "d", None), Ok("allow"));
    let r = refusal(&p, "d", None);
    assert_eq!(r.meta().retry_after_ms, Some(43_200_000));
}

#[test]
fn the_longest_wait_is_reported_when_several_limits_refuse() {
    let (p, _) = policy(
        r#"{"version":"1","limits":[{"counter":"fast","window":"second","max":1}],
            "tools":{"t":{"limits":[{"counter":"slow","window":"hour","max":1}]}}}"#,
    );
    assert_eq!(decide(&p, "t", None), Ok("allow"));
    let r = refusal(&p, "t", None);
    assert!(matches!(r.kind, RefusalKind::RateLimited { ref counter, .. } if counter == "slow"));
}

#[test]
fn approval_checks_limits_without_charging_and_approving_charges() {
    let (p, _) = policy(
        r#"{"version":"1","tools":{"deploy":{"action":"approve","limits":[{"window":"minute","max":1}]}}}"#,
    );
    assert_eq!(decide(&p, "deploy", None), Ok("approve"));
    assert_eq!(
        decide(&p, "deploy", None),
        Ok("approve"),
        "asking charges nothing"
    );
    assert_eq!(approve(&p, "deploy"), Ok(()));
    assert_eq!(decide(&p, "deploy", None), Err("rate_limited".into()));
    assert_eq!(approve(&p, "deploy"), Err("rate_limited".into()));
}

#[test]
fn refusal_json_matches_the_contract() {
    let (p, _) = policy(SEED);
    for _ in 0..10 {
        decide(&p, "retry_deploy", None).unwrap();
    }
    let r = refusal(&p, "retry_deploy", None);
    let result: serde_json::Value = serde_json::from_str(&r.to_result(false)).unwrap();
    assert_eq!(result["isError"], true);
    assert_eq!(result["content"][0]["type"], "text");
    assert_eq!(
        result["_meta"]["toolwarden/decision"]["decision"],
        "rate_limited"
    );
    assert_eq!(
        result["_meta"]["toolwarden/decision"]["counter"],
        "retry_deploy_rate"
    );
    assert_eq!(
        result["_meta"]["toolwarden/decision"]["retry_after_ms"],
        6000
    );
    assert!(result.get("structuredContent").is_none());
    assert!(result.get("resultType").is_none());
    let stateless: serde_json::Value = serde_json::from_str(&r.to_result(true)).unwrap();
    assert_eq!(stateless["resultType"], "complete");
}

#[test]
fn every_load_error_names_its_place() {
    let table: &[(&str, &str, &str)] = &[
        ("{", "line 1, column 2", "unexpected end"),
        (
            "{\n  \"version\": tru\n}",
            "line 2, column 14",
            "expected `true`",
        ),
        (r#"{"version":"2"}"#, "/version", "not supported"),
        (r#"{"version":1}"#, "/version", "invalid type"),
        (r#"{}"#, "", "missing field `version`"),
        (
            r#"{"version":"1","limts":[]}"#,
            "/limts",
            "unknown field `limts`",
        ),
        (
            r#"{"version":"1","default":"maybe"}"#,
            "/default",
            "unknown variant `maybe`",
        ),
        (
            r#"{"version":"1","tools":{"t":{"actoin":"deny"}}}"#,
            "/tools/t/actoin",
            "unknown field `actoin`",
        ),
        (
            r#"{"version":"1","tools":{"t":{"action":"block"}}}"#,
            "/tools/t/action",
            "unknown variant `block`",
        ),
        (
            r#"{"version":"1","tools":{"t":{"limits":[{"window":"minutes","max":1}]}}}"#,
            "/tools/t/limits/0/window",
            "\"minutes\"",
        ),
        (
            r#"{"version":"1","tools":{"t":{"limits":[{"window":0,"max":1}]}}}"#,
            "/tools/t/limits/0/window",
            "1 to 31622400",
        ),
        (
            r#"{"version":"1","tools":{"t":{"limits":[{"window":"minute","max":0}]}}}"#,
            "/tools/t/limits/0/max",
            "nonzero",
        ),
        (
            r#"{"version":"1","tools":{"t":{"limits":[{"window":"minute"}]}}}"#,
            "/tools/t/limits/0",
            "missing field `max`",
        ),
        (
            r#"{"version":"1","tools":{"t":{"limits":[{"window":"second","max":4000000000}]}}}"#,
            "/tools/t/limits/0/max",
            "more than one a microsecond",
        ),
        (
            r#"{"version":"1","tools":{"t":{"limits":[{"window":"minute","max":1,"scope":"team"}]}}}"#,
            "/tools/t/limits/0/scope",
            "unknown variant `team`",
        ),
        (
            r#"{"version":"1","tools":{"t":{"arguments":{"type":"strung"}}}}"#,
            "/tools/t/arguments",
            "not a usable JSON Schema",
        ),
        (
            r#"{"version":"1","tools":{"t":{"arguments":{"$ref":"https://example.com/s.json"}}}}"#,
            "/tools/t/arguments",
            "not a usable JSON Schema",
        ),
        (
            r#"{"version":"1","tools":{"t":{"redact":["server_token"]}}}"#,
            "/tools/t/redact/0",
            "\"/server_token\"",
        ),
        (
            r#"{"version":"1","tools":{"":{}}}"#,
            "/tools/",
            "cannot be empty",
        ),
        (
            r#"{"version":"1","tools":{"retry_*":{},"*deploy":{}}}"#,
            "/tools/",
            "\"*deploy\" and \"retry_*\"",
        ),
        (
            r#"{"version":"1","tools":{"t":{},"t":{"action":"deny"}}}"#,
            "line 1, column 32",
            "duplicate key \"t\"",
        ),
        (
            r#"{"version":"1","tools":{"a":{"limits":[{"counter":"c","window":"minute","max":10}]},"b":{"limits":[{"counter":"c","window":"minute","max":5}]}}}"#,
            "/tools/b/limits/0",
            "counter \"c\" is 10 per minute (scope grant) at /tools/a/limits/0 but 5 per minute",
        ),
        (
            r#"{"version":"1","limits":[{"counter":"c","window":"minute","max":1,"scope":"global"}],"tools":{"b":{"limits":[{"counter":"c","window":"minute","max":1}]}}}"#,
            "/tools/b/limits/0",
            "(scope global) at /limits/0",
        ),
    ];
    for (text, at, message) in table {
        let e = load_error(text);
        assert!(
            e.at.starts_with(at),
            "{text}\n  at {:?}, wanted {at:?}: {}",
            e.at,
            e.message
        );
        assert!(
            e.message.contains(message),
            "{text}\n  message {:?} lacks {message:?}",
            e.message
        );
    }
}

#[test]
fn policylayer_forms_load() {
    // PolicyLayer documents `"window": 60` as well as words.
    let (p, _) = policy(
        r#"{"version":"1","default":"deny","tools":{"t":{"limits":[{"counter":"t_rate","window":60,"max":10,"scope":"grant"}]}}}"#,
    );
    for _ in 0..10 {
        assert_eq!(decide(&p, "t", None), Ok("allow"));
    }
    assert_eq!(decide(&p, "t", None), Err("rate_limited".into()));
}

/// Reads a tools/call line's params as the relay does.
fn call_of(params: &str, check: impl FnOnce(Result<ToolCall, String>)) {
    let line = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{params}}}"#);
    let Ok(Message::Request { params, tool, .. }) =
        jsonrpc::parse(line.as_bytes(), Strictness::Full)
    else {
        panic!("{line} does not parse");
    };
    check(ToolCall::from_params(params, tool));
}

#[test]
fn tool_call_params_are_read_strictly() {
    call_of(r#"{"name":"a\u002fb","arguments":{"x":1}}"#, |call| {
        let call = call.unwrap();
        assert_eq!(call.name, "a/b");
        assert_eq!(call.arguments.map(Raw::get), Some(r#"{"x":1}"#));
    });
    call_of(r#"{"arguments":null,"name":"a"}"#, |call| {
        assert_eq!(call.unwrap().arguments, None);
    });
    for bad in [
        r#"[]"#,
        r#"[{"name":"a"}]"#,
        r#"{"name":5}"#,
        r#"{}"#,
        r#"{"x":{"name":"a"}}"#,
        r#"{"name":"a","arguments":[1]}"#,
        r#"{"name":"a","arguments":"x"}"#,
    ] {
        call_of(bad, |call| assert!(call.is_err(), "{bad}"));
    }
    assert!(ToolCall::from_params(None, ToolFields::default()).is_err());
}

#[test]
fn the_summary_speaks_in_words() {
    let (p, _) = policy(SEED);
    let s = p.summary();
    assert!(s.contains("default: deny"), "{s}");
    assert!(s.contains("retry_deploy: allow"), "{s}");
    assert!(
        s.contains("retry_deploy_rate: 10 per minute, burst 10 (scope grant)"),
        "{s}"
    );
}

#[test]
fn a_counter_named_twice_for_one_call_is_charged_once() {
    let (p, _) = policy(
        r#"{"version":"1","limits":[{"counter":"c","window":"minute","max":2}],
            "tools":{"t":{"limits":[{"counter":"c","window":"minute","max":2},{"window":"hour","max":9},{"counter":"c","window":"minute","max":2}]}}}"#,
    );
    assert_eq!(decide(&p, "t", None), Ok("allow"));
    assert_eq!(
        decide(&p, "t", None),
        Ok("allow"),
        "two calls fit a budget of two"
    );
    assert_eq!(decide(&p, "t", None), Err("rate_limited".into()));
}

#[test]
fn per_gives_each_value_a_bucket_and_cost_takes_units() {
    let (p, _) = policy(
        r#"{"version":"1","tools":{
            "retry_job":{"limits":[{"counter":"retries","window":"hour","max":2,"per":"/job_id"}]},
            "charge":{"limits":[{"counter":"spend","window":"day","max":100,"cost":"/amount"}]}}}"#,
    );
    let job = |id: &str| format!(r#"{{"job_id":{id}}}"#);
    assert_eq!(decide(&p, "retry_job", Some(&job("\"A\""))), Ok("allow"));
    assert_eq!(decide(&p, "retry_job", Some(&job("\"A\""))), Ok("allow"));
    assert_eq!(
        decide(&p, "retry_job", Some(&job("\"A\""))),
        Err("rate_limited".into())
    );
    assert_eq!(decide(&p, "retry_job", Some(&job("\"B\""))), Ok("allow"));
    // Values are compared as JSON: the same object written two ways.
    assert_eq!(
        decide(&p, "retry_job", Some(&job(r#"{"a":1,"b":2}"#))),
        Ok("allow")
    );
    assert_eq!(
        decide(&p, "retry_job", Some(&job(r#"{ "b": 2, "a": 1 }"#))),
        Ok("allow")
    );
    assert_eq!(
        decide(&p, "retry_job", Some(&job(r#"{"a":1,"b":2}"#))),
        Err("rate_limited".into())
    );
    // Without the argument: the bucket of "absent".
    assert_eq!(decide(&p, "retry_job", Some("{}")), Ok("allow"));
    assert_eq!(decide(&p, "retry_job", None), Ok("allow"));
    assert_eq!(decide(&p, "retry_job", None), Err("rate_limited".into()));

    assert_eq!(decide(&p, "charge", Some(r#"{"amount":60}"#)), Ok("allow"));
    let r = refusal(&p, "charge", Some(r#"{"amount":50}"#));
    let RefusalKind::RateLimited { retry_after, .. } = r.kind else {
        panic!("{r:?}")
    };
    assert_eq!(retry_after, Duration::from_secs(10 * 864));
    assert_eq!(decide(&p, "charge", Some(r#"{"amount":40}"#)), Ok("allow"));
    for (bad, says) in [
        ("{}", "missing"),
        (r#"{"amount":-1}"#, "not a non-negative number"),
        (r#"{"amount":"5"}"#, "not a non-negative number"),
        (r#"{"amount":101}"#, "can never pass"),
    ] {
        let r = refusal(&p, "charge", Some(bad));
        let RefusalKind::InvalidArguments { errors, .. } = &r.kind else {
            panic!("{bad}: {r:?}")
        };
        assert_eq!(errors[0].pointer, "/amount");
        assert!(
            errors[0].message.contains(says),
            "{bad}: {}",
            errors[0].message
        );
    }
    let s = p.summary();
    assert!(
        s.contains("retries: 2 per hour for each /job_id, burst 2"),
        "{s}"
    );
    assert!(
        s.contains("spend: 100 per day, each call taking /amount units, burst 100"),
        "{s}"
    );
}

#[test]
fn per_and_cost_must_be_pointers_and_agree_when_shared() {
    for (text, at) in [
        (
            r#"{"version":"1","tools":{"t":{"limits":[{"window":1,"max":1,"per":"job"}]}}}"#,
            "/tools/t/limits/0/per",
        ),
        (
            r#"{"version":"1","tools":{"t":{"limits":[{"window":1,"max":1,"per":["/a","b"]}]}}}"#,
            "/tools/t/limits/0/per/1",
        ),
        (
            r#"{"version":"1","tools":{"t":{"limits":[{"window":1,"max":1,"cost":"amount"}]}}}"#,
            "/tools/t/limits/0/cost",
        ),
        (
            r#"{"version":"1","tools":{"t":{"limits":[{"counter":"c","window":1,"max":1,"per":"/a"}]},"u":{"limits":[{"counter":"c","window":1,"max":1}]}}}"#,
            "/tools/u/limits/0",
        ),
    ] {
        assert_eq!(load_error(text).at, at, "{text}");
    }
}

/// PolicyLayer's full format, with the examples its documentation gives.
mod full_format {
    use super::*;

    #[test]
    fn a_hide_list_hides_and_refuses_whatever_the_rules_say() {
        let (p, _) = policy(
            r#"{"version":"1","default":"allow","hide":["delete_role","drop_*"],
                "tools":{"delete_role":{"hide":false},"read":{}}}"#,
        );
        for tool in ["delete_role", "drop_table"] {
            assert!(p.hides(tool), "{tool}");
            let r = refusal(&p, tool, None);
            assert_eq!(r.decision(), "denied");
            assert_eq!(r.kind, RefusalKind::Hidden);
            assert_eq!(
                r.text(),
                format!("toolwarden: `{tool}` refused: the policy hides this tool (`hide`)")
            );
        }
        assert!(!p.hides("read"));
        assert_eq!(decide(&p, "read", None), Ok("allow"));
        assert_eq!(decide(&p, "other", None), Ok("allow"));
        // The rule the list overrides is named at load.
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert_eq!(p.warnings[0].at, "/tools/delete_role");

        let (all, _) =
            policy(r#"{"version":"1","default":"allow","hide":["*"],"tools":{"read":{}}}"#);
        for tool in ["read", "anything"] {
            assert!(all.hides(tool));
            assert_eq!(decide(&all, tool, None), Err("denied".into()));
        }
        assert!(
            Policy::from_json(r#"{"version":"1","hide":[""]}"#).is_err_and(|e| e.at == "/hide/0")
        );
    }

    #[test]
    fn the_issue_examples_decide_as_policylayer_documents() {
        let (p, _) = policy(
            r#"{"version": "1", "default": "deny", "tools": {
              "refund_order": {"deny_if": [{"conditions": [], "on_deny": "Requires human approval."}]},
              "create_charge": {"deny_if": [{"conditions": [{"path": "args.amount", "op": "gt", "value": 10000}],
                                             "on_deny": "Charges over 10000 need a person"}],
                                "require": [{"path": "args.currency", "op": "in", "value": ["usd", "eur"]}],
                                "limits": [{"counter": "charges", "window": "minute", "max": 30, "scope": "grant"}]}}}"#,
        );
        let r = refusal(&p, "refund_order", Some(r#"{"id":"o_1"}"#));
        assert_eq!(r.decision(), "denied");
        assert_eq!(
            r.text(),
            "toolwarden: `refund_order` refused: denied by the policy rule `refund_order`. Reason: Requires human approval."
        );
        // Denied whatever the arguments: hidden like a deny rule.
        assert!(p.hides("refund_order"));
        assert!(!p.hides("create_charge"));

        let charge = |amount: &str, currency: &str| {
            format!(r#"{{"amount":{amount},"currency":"{currency}"}}"#)
        };
        assert_eq!(
            decide(&p, "create_charge", Some(&charge("10000", "usd"))),
            Ok("allow")
        );
        assert_eq!(
            decide(&p, "create_charge", Some(&charge("1e4", "eur"))),
            Ok("allow")
        );
        let r = refusal(&p, "create_charge", Some(&charge("10001", "usd")));
        assert_eq!(r.decision(), "denied");
        assert_eq!(
            r.text(),
            "toolwarden: `create_charge` refused: denied by the policy rule `create_charge` because /amount > 10000. Reason: Charges over 10000 need a person"
        );
        assert_eq!(r.meta().condition, Some("/amount > 10000"));
        let r = refusal(&p, "create_charge", Some(&charge("5", "gbp")));
        assert_eq!(r.decision(), "invalid_arguments");
        assert_eq!(
            r.text(),
            r#"toolwarden: `create_charge` refused: arguments do not match the policy: /currency: the policy requires /currency in ["usd","eur"]"#
        );
        // A missing argument fails `require`, and passes `deny_if`.
        assert_eq!(
            decide(&p, "create_charge", Some(r#"{"amount":1}"#)),
            Err("invalid_arguments".into())
        );
        assert_eq!(
            decide(&p, "create_charge", Some(r#"{"currency":"usd"}"#)),
            Ok("allow")
        );
        // An amount sent as a string may be one to the server: the
        // `deny_if` fails closed and refuses it.
        let r = refusal(
            &p,
            "create_charge",
            Some(r#"{"amount":"20000","currency":"usd"}"#),
        );
        assert_eq!(r.decision(), "denied");
        assert!(
            r.text().contains(
                r#"because /amount > 10000 ("20000" is a string, which `gt` cannot test)"#
            ),
            "{}",
            r.text()
        );
        // Refused calls took nothing: 27 of the 30 are left.
        for _ in 0..27 {
            assert_eq!(
                decide(&p, "create_charge", Some(&charge("1", "usd"))),
                Ok("allow")
            );
        }
        assert_eq!(
            decide(&p, "create_charge", Some(&charge("1", "usd"))),
            Err("rate_limited".into())
        );
        assert_eq!(decide(&p, "other", None), Err("not_allowed".into()));
    }

    #[test]
    fn require_groups_all_tools_and_on_deny() {
        let (p, _) = policy(
            r#"{"version":"1","default":"deny",
                "all_tools":{"limits":[{"counter":"all","window":"minute","max":3}]},
                "tools":{"push":{"on_deny":"pushes go to feature branches",
                  "require":[{"conditions":[{"path":"args.branch","op":"regex","value":"^feat/"},
                                            {"path":"args.force","op":"neq","value":true}],
                              "on_deny":"only feature branches, never forced"},
                             {"path":"args.repo","op":"exists"}]},
                  "tag":{"action":"deny","on_deny":"no tags"}}}"#,
        );
        let r = refusal(&p, "push", Some(r#"{"branch":"main","repo":"r"}"#));
        assert_eq!(
            r.reason.as_deref(),
            Some("only feature branches, never forced")
        );
        assert!(
            r.text()
                .contains(r#"/branch: the policy requires /branch matches "^feat/""#),
            "{}",
            r.text()
        );
        let r = refusal(&p, "push", Some(r#"{"branch":"feat/x","force":false}"#));
        assert_eq!(r.reason.as_deref(), Some("pushes go to feature branches"));
        assert!(
            r.text()
                .contains("/repo: the policy requires /repo is given"),
            "{}",
            r.text()
        );
        // PolicyLayer's `neq` on a missing argument is false: `force` must be given.
        assert_eq!(
            decide(&p, "push", Some(r#"{"branch":"feat/x","repo":"r"}"#)),
            Err("invalid_arguments".into())
        );
        let ok = Some(r#"{"branch":"feat/x","force":false,"repo":"r"}"#);
        for _ in 0..3 {
            assert_eq!(decide(&p, "push", ok), Ok("allow"));
        }
        let r = refusal(&p, "push", ok);
        assert_eq!(r.decision(), "rate_limited");
        assert!(
            r.text().contains("rate limit all (3 per minute)"),
            "{}",
            r.text()
        );
        assert!(refusal(&p, "tag", None).text().ends_with("Reason: no tags"));
        let summary = p.summary();
        for line in [
            "  push: allow\n",
            "    requires /branch matches \"^feat/\" and /force != true: only feature branches, never forced\n",
            "    requires /repo is given\n",
            "limits on every allowed call:\n  all: ",
        ] {
            assert!(summary.contains(line), "{line}\n{summary}");
        }
    }

    #[test]
    fn check_says_when_a_call_is_refused() {
        let (p, _) = policy(
            r#"{"version":"1","hide":["delete_role"],"tools":{
                "refund_order":{"deny_if":[{"conditions":[],"on_deny":"Requires human approval."}]},
                "create_charge":{"deny_if":[{"conditions":[{"path":"args.amount","op":"gt","value":10000}],
                    "on_deny":"Charges over 10000 need a person"}]}}}"#,
        );
        let summary = p.summary();
        for line in [
            "hide: delete_role (removed from tools/list and refused, whatever the rules say)\n",
            "  refund_order: allow, hidden\n    refused always: Requires human approval.\n",
            "    refused when /amount > 10000: Charges over 10000 need a person\n",
        ] {
            assert!(summary.contains(line), "{line}\n{summary}");
        }
    }

    #[test]
    fn a_condition_that_does_not_compile_stops_the_load_at_its_place() {
        for (rule, at, says) in [
            (
                r#"{"deny_if":[{"conditions":[{"path":"args.a","op":"greater","value":1}]}]}"#,
                "/tools/t/deny_if/0/conditions/0/op",
                "unknown variant `greater`",
            ),
            (
                r#"{"deny_if":[{"conditions":[{"path":"args.a","op":"regex","value":"(x"}]}]}"#,
                "/tools/t/deny_if/0/conditions/0/value",
                "not a usable regex",
            ),
            (
                r#"{"require":[{"path":"amount","op":"gt","value":1}]}"#,
                "/tools/t/require/0/path",
                "must start with \"args.\"",
            ),
            (
                r#"{"require":[{"path":"args.a","op":"lte"}]}"#,
                "/tools/t/require/0",
                "operator lte needs a \"value\"",
            ),
            (
                r#"{"require":[{"path":"args.a","op":"eq","value":1,"conditions":[]}]}"#,
                "/tools/t/require/0",
                "not both",
            ),
            (
                r#"{"require":[{"op":"eq","value":1}]}"#,
                "/tools/t/require/0",
                "missing field `path`",
            ),
            (
                r#"{"require":[{"path":"args.a","op":"eq","value":1,"when":2}]}"#,
                "/tools/t/require/0/when",
                "unknown field `when`",
            ),
            (
                r#"{"deny_if":[{"conditions":[{"path":"args.a","op":"eq","value":1,"on_deny":"x"}]}]}"#,
                "/tools/t/deny_if/0/conditions/0/on_deny",
                "unknown field `on_deny`",
            ),
            (
                r#"{"reason":"a","on_deny":"b"}"#,
                "/tools/t/on_deny",
                "give one of them",
            ),
        ] {
            let text = format!(r#"{{"version":"1","tools":{{"t":{rule}}}}}"#);
            let e = load_error(&text);
            assert_eq!(e.at, at, "{rule}: {e}");
            assert!(e.message.contains(says), "{rule}: {e}");
        }
        let e = load_error(r#"{"version":"1","all_tools":{"limits":[{"window":"hour","max":0}]}}"#);
        assert_eq!(e.at, "/all_tools/limits/0/max");
        let e = load_error(r#"{"version":"1","all_tools":{"limit":[]}}"#);
        assert_eq!(e.at, "/all_tools/limit");
    }
}

/// A schema pattern that backtracks (a backreference, lookaround) is
/// matched against a bounded number of strings per call, so that one call
/// cannot hold the session for seconds; linear patterns have no such bound.
#[test]
fn backtracking_patterns_bound_the_work_of_one_call() {
    let with = |pattern: &str| {
        policy(&format!(
            r#"{{"version":"1","default":"allow","tools":{{"t":{{"arguments":{{"type":"object",
              "properties":{{"l":{{"type":"array","items":{{"type":"string","pattern":{}}}}}}}}}}}}}}}"#,
            serde_json::Value::from(pattern)
        ))
        .0
    };
    let call = |n: usize| {
        let s = format!("\"{}c\"", "a".repeat(30));
        format!(r#"{{"l":[{}]}}"#, vec![s; n].join(","))
    };
    let max = condition::MAX_BACKTRACKED_STRINGS;
    // One key (`l`) and `max - 1` strings are checked: each exhausts its
    // own backtracking limit and is an error of its own.
    let backref = with(r"^(a|a)+\1$");
    let r = refusal(&backref, "t", Some(&call(max - 1)));
    let RefusalKind::InvalidArguments { errors, .. } = &r.kind else {
        panic!("{r:?}")
    };
    assert_eq!(errors[0].pointer, "/l/0", "{errors:?}");
    let r = refusal(&backref, "t", Some(&call(max)));
    assert!(
        r.text().contains(&format!(
            "the arguments hold {} strings and keys, more than the {max}",
            max + 1
        )),
        "{}",
        r.text()
    );
    for pattern in [r"^(?=a)(a+)+$", r"(?<!b)c"] {
        let r = refusal(&with(pattern), "t", Some(&call(max)));
        assert!(
            r.text().contains("backtracking patterns"),
            "{pattern}: {}",
            r.text()
        );
    }
    // A pattern the linear engine matches checks any number of strings.
    let linear = with(r"^(a+)+c$");
    assert_eq!(decide(&linear, "t", Some(&call(10 * max))), Ok("allow"));
}

/// A `per` value longer than any cut-off is still keyed by its meaning:
/// the same long string spelt five ways (escapes, key order, spaces) is
/// one bucket, and another string is another.
#[test]
fn a_long_per_value_is_keyed_by_its_canonical_json() {
    let (p, _) = policy(
        r#"{"version":"1","tools":{
            "t":{"limits":[{"counter":"c","window":"hour","max":1,"per":"/v"}]}}}"#,
    );
    let long = "é\"x".repeat(2000);
    let spellings = [
        serde_json::to_string(&long).unwrap(),
        serde_json::to_string(&long)
            .unwrap()
            .replace('é', "\\u00e9"),
        serde_json::to_string(&long)
            .unwrap()
            .replace('é', "\\u00E9"),
        serde_json::to_string(&long)
            .unwrap()
            .replace('x', "\\u0078"),
        serde_json::to_string(&long)
            .unwrap()
            .replace("\\\"", "\\u0022"),
    ];
    assert!(spellings.iter().all(|s| s.len() > 4096));
    let args: Vec<String> = spellings
        .iter()
        .map(|s| format!(r#"{{"v":{{"b":[1, {s}],"a":null}}}}"#))
        .collect();
    assert_eq!(decide(&p, "t", Some(&args[0])), Ok("allow"));
    for a in &args[1..] {
        assert_eq!(decide(&p, "t", Some(a)), Err("rate_limited".into()));
    }
    let other = serde_json::to_string(&format!("{long}!")).unwrap();
    let other = format!(r#"{{"v":{{"a":null,"b":[1,{other}]}}}}"#);
    assert_eq!(decide(&p, "t", Some(&other)), Ok("allow"));
}

/// `{"fixed": UNIT}` loads, says "per UTC day" in `check` and in the
/// refusal, and anything else in it is refused at its place.
#[test]
fn fixed_windows_load_and_speak_of_utc() {
    let (p, _) = policy(
        r#"{"version":"1","tools":{"pay":{"limits":[
            {"counter":"spend","window":{"fixed":"day"},"max":10000,"cost":"/amount"}]}}}"#,
    );
    let s = p.summary();
    assert!(
        s.contains("spend: 10000 per UTC day, each call taking /amount units, counted afresh at each UTC day"),
        "{s}"
    );
    assert_eq!(decide(&p, "pay", Some(r#"{"amount":10000}"#)), Ok("allow"));
    let r = refusal(&p, "pay", Some(r#"{"amount":1}"#));
    assert!(
        r.text()
            .contains("rate limit spend (10000 per UTC day) reached"),
        "{}",
        r.text()
    );
    for (window, says) in [
        (r#"{"fixed":"week"}"#, "invalid value"),
        (r#"{"fixed":"day","at":"08:00"}"#, "unknown field `at`"),
        (r#"{"rolling":"day"}"#, "unknown field `rolling`"),
        ("{}", "missing field `fixed`"),
    ] {
        let e = load_error(&format!(
            r#"{{"version":"1","tools":{{"t":{{"limits":[{{"window":{window},"max":1}}]}}}}}}"#
        ));
        assert!(
            e.at.starts_with("/tools/t/limits/0/window"),
            "{window}: {e}"
        );
        assert!(e.message.contains(says), "{window}: {e}");
    }
}
