//! Conditions against arguments of every JSON type: each operator decides
//! without panicking, `neq` and `not_in` are the exact negations of `eq`
//! and `in` wherever the argument is there (a value they cannot compare
//! is untested by both), and a value always equals itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use toolwarden::wire::json::Raw;
use toolwarden::policy::{Condition, ConditionSpec, Op, Truth};

fn condition(path: &str, op: Op, value: Value) -> Option<Condition> {
    let spec = ConditionSpec {
        path: path.into(),
        op,
        value: Some(value),
    };
    Condition::compile(&spec, "").ok()
}

fn not(t: &Truth) -> Truth {
    match t {
        Truth::Holds => Truth::Fails,
        Truth::Fails => Truth::Holds,
        Truth::Untestable(why) => Truth::Untestable(why.clone()),
    }
}

fn same_kind(a: &Truth, b: &Truth) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

// The first line is the condition's value, the rest the call's arguments.
fuzz_target!(|text: &str| {
    let (value, arguments) = text.split_once('\n').unwrap_or((text, "{}"));
    // Arguments as the strict parser passes them: JSON that serde_json
    // reads (no number beyond a double).
    if serde_json::from_str::<Value>(arguments).is_err() {
        return;
    }
    let (Ok(value), Ok(arguments)) = (serde_json::from_str::<Value>(value), Raw::parse(arguments))
    else {
        return;
    };
    let args = Some(arguments);
    for path in ["args.a", "args.a.b"] {
        let there = condition(path, Op::Exists, Value::Bool(true))
            .map(|c| c.eval(args))
            .expect("exists compiles");
        let eq = condition(path, Op::Eq, value.clone()).unwrap().eval(args);
        let neq = condition(path, Op::Neq, value.clone()).unwrap().eval(args);
        let is_in = condition(path, Op::In, Value::Array(vec![value.clone()]))
            .unwrap()
            .eval(args);
        let not_in = condition(path, Op::NotIn, Value::Array(vec![value.clone()]))
            .unwrap()
            .eval(args);
        assert!(same_kind(&eq, &is_in), "eq {eq:?}, in {is_in:?}");
        if there == Truth::Holds {
            assert!(same_kind(&neq, &not(&eq)), "eq {eq:?}, neq {neq:?}");
            assert!(same_kind(&not_in, &not(&is_in)), "in {is_in:?}, not_in {not_in:?}");
        }
        for (op, v) in [
            (Op::Lt, Value::from(0)),
            (Op::Gte, Value::from(1e300)),
            (Op::Regex, Value::from("^a")),
            (Op::Contains, value.clone()),
        ] {
            let _ = condition(path, op, v).map(|c| c.eval(args));
        }
    }
    // Whatever `a` is, `eq` with its own value holds.
    if let Some(own) = arguments.member("a") {
        let own: Value = serde_json::from_str(own.get()).expect("parsed once already");
        let eq = condition("args.a", Op::Eq, own).unwrap().eval(args);
        assert_eq!(eq, Truth::Holds);
    }
});
