//! Intercept policies in, toolwarden policies out, and everything that
//! cannot be carried over named at its place.

use serde_json::json;

use super::*;

fn converted(yaml: &str) -> Value {
    let text = import(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    serde_json::from_str(&text).unwrap()
}

fn refused(yaml: &str) -> ImportError {
    match import(yaml, "test.yaml") {
        Ok(text) => panic!("imported, but should not have:\n{yaml}\n{text}"),
        Err(e) => e,
    }
}

#[test]
fn every_kind_of_rule_is_carried_over() {
    let out = converted(
        r#"
version: "1"
default: deny
hide: [delete_repository, list_webhooks]
tools:
  create_issue:
    rules:
      - name: hourly issue limit
        rate_limit: 5/hour
      - name: repo allowlist
        conditions:
          - { path: args.repo, op: in, value: [a, b] }
          - { path: args.title, op: regex, value: "^[A-Z]" }
  create_charge:
    rules:
      - name: cap
        conditions:
          - { path: state.create_charge.spend, op: lt, value: 1000 }
        state: { counter: spend, window: day, increment_from: args.payment.amount }
      - name: five per charge
        conditions:
          - { path: state.create_charge.weighted, op: lte, value: 12 }
          - { path: args.live, op: eq, value: false }
        on_deny: weighted
        state: { counter: weighted, window: minute, increment: 5 }
  drop_table:
    rules:
      - { name: never, action: deny }
  read_file:
    rules: []
  "*":
    rules:
      - name: global
        rate_limit: 60/minute
        on_deny: slow down
      - name: no prod
        conditions:
          - { path: args.env, op: neq, value: prod }
"#,
    );
    assert_eq!(out["default"], "deny");
    assert_eq!(out["hide_denied"], false);
    assert_eq!(out["hide"], json!(["delete_repository", "list_webhooks"]));
    assert_eq!(
        out["limits"],
        json!([{"counter": "_global._rate_minute", "window": {"fixed": "minute"}, "max": 60,
                "scope": "global", "on_deny": "slow down"}])
    );
    let no_prod = json!({"conditions": [{"path": "args.env", "op": "neq", "value": "prod"}],
                         "on_deny": "Denied by rule \"no prod\""});
    assert_eq!(
        out["tools"]["create_issue"],
        json!({
            "require": [
                {"conditions": [{"path": "args.repo", "op": "in", "value": ["a", "b"]},
                                {"path": "args.title", "op": "regex", "value": "^[A-Z]"}],
                 "on_deny": "Denied by rule \"repo allowlist\""},
                no_prod
            ],
            "limits": [{"counter": "create_issue._rate_hour", "window": {"fixed": "hour"}, "max": 5,
                        "scope": "global",
                        "on_deny": "Rate limit of 5 per hour reached. Try again later."}]
        })
    );
    assert_eq!(
        out["tools"]["create_charge"],
        json!({
            "require": [
                {"conditions": [{"path": "args.live", "op": "eq", "value": false}],
                 "on_deny": "weighted"},
                no_prod
            ],
            "limits": [
                // lt 1000: at most 999 in all, each call adding its amount.
                {"counter": "create_charge.spend", "window": {"fixed": "day"}, "max": 999,
                 "scope": "global", "cost": "/payment/amount", "on_deny": "Denied by rule \"cap\""},
                // lte 12, 5 a call: two calls.
                {"counter": "create_charge.weighted", "window": {"fixed": "minute"}, "max": 2,
                 "scope": "global", "on_deny": "weighted"}
            ]
        })
    );
    assert_eq!(
        out["tools"]["drop_table"],
        json!({"action": "deny", "on_deny": "Denied by rule \"never\"", "require": [no_prod]})
    );
    assert_eq!(out["tools"]["read_file"], json!({"require": [no_prod]}));
    // Default deny: the "*" rules reach listed tools only.
    assert!(out["tools"].get("*").is_none());
    let description = out["description"].as_str().unwrap();
    assert!(description.contains("test.yaml"), "{description}");
    assert!(description.contains("fixed UTC windows"), "{description}");
}

#[test]
fn with_the_default_allow_the_wildcard_rules_reach_every_tool() {
    let out = converted(
        r#"
version: "1"
tools:
  "*":
    rules:
      - name: stop
        action: deny
        on_deny: maintenance
"#,
    );
    assert_eq!(out["default"], "allow");
    assert_eq!(
        out["tools"]["*"],
        json!({"action": "deny", "on_deny": "maintenance"})
    );
}

#[test]
fn what_cannot_be_carried_over_is_named_at_its_place() {
    let table = [
        ("version: '2'\n", "/version", "not \"2\""),
        ("version: '1'\ndefault: maybe\n", "/default", "neither"),
        ("version: '1'\nhide: ['']\n", "/hide/0", "empty"),
        ("version: '1'\nhide: ['delete_*']\n", "/hide/0", "literally"),
        ("version: '1'\ntools: {t: {rules: [{name: x, rate_limit: 5/week}]}}\n",
         "/tools/t/rules/0/rate_limit", "not minute, hour or day"),
        ("version: '1'\ntools: {t: {rules: [{name: x, rate_limit: 0/hour}]}}\n",
         "/tools/t/rules/0/rate_limit", "positive"),
        ("version: '1'\ntools: {t: {rules: [{rate_limit: 5/hour}, {rate_limit: 6/hour}]}}\n",
         "/tools/t/rules/1", "already used"),
        ("version: '1'\ntools: {t: {rules: [{conditions: [{path: args.a, op: eq, value: 1}]}]}}\n",
         "/tools/t/rules/0", "must have a name"),
        ("version: '1'\ntools: {t: {rules: [{name: x, conditions: [{path: args.a, op: like, value: 1}]}]}}\n",
         "/tools/t/rules/0/conditions/0/op", "unknown operator \"like\""),
        ("version: '1'\ntools: {t: {rules: [{name: x, conditions: [{path: args.a, op: regex, value: '(a'}]}]}}\n",
         "/tools/t/rules/0/conditions/0/value", "not a usable regex"),
        ("version: '1'\ntools: {t: {rules: [{name: x, conditions: [{path: args.a, op: exists}]}]}}\n",
         "/tools/t/rules/0/conditions/0/value", "true or false"),
        ("version: '1'\ntools: {t: {rules: [{name: x, conditions: [{path: a, op: eq, value: 1}]}]}}\n",
         "/tools/t/rules/0/conditions/0/path", "must start with \"args.\""),
        ("version: '1'\ntools: {t: {rules: [{name: x, conditions: [{path: state.t.n, op: gt, value: 1}], state: {counter: n, window: day}}]}}\n",
         "/tools/t/rules/0/conditions/0/op", "\"gt\" on a counter"),
        ("version: '1'\ntools: {t: {rules: [{name: x, conditions: [{path: state.t.n, op: lte, value: 1}]}]}}\n",
         "/tools/t/rules/0/conditions/0", "another rule"),
        ("version: '1'\ntools: {t: {rules: [{name: x, conditions: [{path: state.u.n, op: lte, value: 1}], state: {counter: n, window: day}}]}}\n",
         "/tools/t/rules/0/conditions/0/path", "only the rule's own counter"),
        ("version: '1'\ntools: {t: {rules: [{name: x, conditions: [{path: args.a, op: eq, value: 1}], state: {counter: n, window: day}}]}}\n",
         "/tools/t/rules/0/state", "limits nothing"),
        ("version: '1'\ntools: {t: {rules: [{name: x, conditions: [{path: state.t.n, op: lt, value: 1}], state: {counter: n, window: day}}]}}\n",
         "/tools/t/rules/0/conditions/0/value", "not a limit"),
        ("version: '1'\ntools: {t: {rules: [{name: x, conditions: [{path: state.t.n, op: lte, value: 3}], state: {counter: n, window: day, increment: 4}}]}}\n",
         "/tools/t/rules/0/state/increment", "no call could ever pass"),
        ("version: '1'\ntools: {t: {rules: [{name: x, action: deny, conditions: [{path: args.a, op: eq, value: 1}]}]}}\n",
         "/tools/t/rules/0", "no conditions"),
        ("version: '1'\ntools: {t: {rules: [{name: x, action: block}]}}\n",
         "/tools/t/rules/0/action", "neither"),
        ("version: '1'\ntools: {t: {rules: [{name: x}]}}\n", "/tools/t/rules/0", "at least one condition"),
        ("version: '1'\ntools: {'get_*': {rules: []}}\n", "/tools/get_*", "literally"),
    ];
    for (yaml, at, says) in table {
        let e = refused(yaml);
        assert_eq!(e.at, at, "{yaml}{e}");
        assert!(e.message.contains(says), "{yaml}{e}");
    }
}

#[test]
fn yaml_that_does_not_parse_or_has_unknown_keys_is_refused_with_its_line() {
    for (yaml, says) in [
        ("version: '1'\ntools:\n  t:\n    rulez: []\n", "rulez"),
        (
            "version: '1'\ntools:\n  t:\n    rules:\n      - name: x\n        on_deny: [\n",
            "line",
        ),
        (
            "version: '1'\ntools: {t: {rules: [{name: x, rate_limit: 5/hour, burst: 2}]}}\n",
            "burst",
        ),
    ] {
        let e = refused(yaml);
        assert!(e.to_string().contains(says), "{yaml}{e}");
    }
}

#[test]
fn an_alias_bomb_is_refused_before_it_expands() {
    // A billion "a"s in one condition's value, from a few hundred bytes.
    let mut levels = vec![format!("&l0 [{}]", ["a"; 10].join(", "))];
    for level in 1..9 {
        let refs = vec![format!("*l{}", level - 1); 10].join(", ");
        levels.push(format!("&l{level} [{refs}]"));
    }
    let yaml = format!(
        "version: '1'\ntools: {{t: {{rules: [{{name: x, conditions: \
         [{{path: args.a, op: in, value: [{}]}}]}}]}}}}\n",
        levels.join(", ")
    );
    let e = refused(&yaml);
    assert!(
        e.message.contains("alias") || e.message.contains("budget"),
        "{e}"
    );
}

/// `rate_limit: 10/day` lets 10 calls through in each UTC day, as
/// Intercept does: not 10 at once and then one more every 2.4 hours.
#[test]
fn intercept_windows_count_per_utc_day_after_import() {
    let out = converted("version: '1'\ntools: {t: {rules: [{name: r, rate_limit: 10/day}]}}\n");
    let policy = Policy::from_json(&out.to_string()).unwrap();
    let state =
        crate::state::State::open(crate::state::Spec::Memory, "test".into(), "default".into())
            .unwrap();
    let call = crate::policy::ToolCall {
        name: "t".into(),
        arguments: None,
    };
    let crate::policy::Verdict::Allow(charge) = policy.check(&call) else {
        panic!()
    };
    // 2027-01-15T00:00:00Z, then a call every 10 minutes for two days.
    let midnight = 1_800_000_000_000_000 - 8 * 3_600_000_000;
    let mut passed = [0; 2];
    for i in 0..2 * 144 {
        let now = midnight + i * 600_000_000;
        let taken = state.take_at(&policy, &charge, true, Some(now)).unwrap();
        if taken == crate::state::Outcome::Taken {
            passed[(i / 144) as usize] += 1;
        }
    }
    assert_eq!(passed, [10, 10]);
    let summary = policy.summary();
    assert!(summary.contains("10 per UTC day"), "{summary}");
}
