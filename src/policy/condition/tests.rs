//! Operator by operator: what holds, what fails, what cannot be tested.

use super::*;

fn compile(text: &str) -> Result<Condition, LoadError> {
    let spec: ConditionSpec = serde_json::from_str(text).unwrap();
    Condition::compile(&spec, "/c")
}

fn eval(condition: &str, arguments: &str) -> Truth {
    let c = compile(condition).unwrap_or_else(|e| panic!("{e}: {condition}"));
    c.eval(Some(Raw::parse(arguments).unwrap()))
}

use Truth::{Fails, Holds};

#[test]
fn each_operator_decides_as_policylayer_documents() {
    let table: &[(&str, &str, Truth)] = &[
        // eq / neq: JSON values, numbers by value.
        (
            r#"{"path":"args.a","op":"eq","value":"main"}"#,
            r#"{"a":"main"}"#,
            Holds,
        ),
        (
            r#"{"path":"args.a","op":"eq","value":"main"}"#,
            r#"{"a":"Main"}"#,
            Fails,
        ),
        (
            r#"{"path":"args.a","op":"eq","value":1000}"#,
            r#"{"a":1e3}"#,
            Holds,
        ),
        (
            r#"{"path":"args.a","op":"eq","value":1e3}"#,
            r#"{"a":1000.0}"#,
            Holds,
        ),
        (
            r#"{"path":"args.a","op":"eq","value":null}"#,
            r#"{"a":null}"#,
            Holds,
        ),
        (
            r#"{"path":"args.a","op":"eq","value":{"x":[1,2]}}"#,
            r#"{"a":{"x":[1.0,2]}}"#,
            Holds,
        ),
        (
            r#"{"path":"args.a","op":"eq","value":-1}"#,
            r#"{"a":18446744073709551615}"#,
            Fails,
        ),
        (
            r#"{"path":"args.a","op":"eq","value":"café"}"#,
            r#"{"a":"caf\u00e9"}"#,
            Holds,
        ),
        // No Unicode normalization: a decomposed é is another string.
        (
            r#"{"path":"args.a","op":"eq","value":"café"}"#,
            r#"{"a":"cafe\u0301"}"#,
            Fails,
        ),
        (
            r#"{"path":"args.a","op":"neq","value":"draft"}"#,
            r#"{"a":"final"}"#,
            Holds,
        ),
        (
            r#"{"path":"args.a","op":"neq","value":"draft"}"#,
            r#"{"a":"draft"}"#,
            Fails,
        ),
        (
            r#"{"path":"args.a","op":"neq","value":1}"#,
            r#"{"a":1.0}"#,
            Fails,
        ),
        // in / not_in
        (
            r#"{"path":"args.c","op":"in","value":["usd","eur"]}"#,
            r#"{"c":"eur"}"#,
            Holds,
        ),
        (
            r#"{"path":"args.c","op":"in","value":["usd","eur"]}"#,
            r#"{"c":"gbp"}"#,
            Fails,
        ),
        (
            r#"{"path":"args.c","op":"in","value":[1,2]}"#,
            r#"{"c":2e0}"#,
            Holds,
        ),
        (
            r#"{"path":"args.c","op":"in","value":[]}"#,
            r#"{"c":"x"}"#,
            Fails,
        ),
        (
            r#"{"path":"args.c","op":"not_in","value":["admin"]}"#,
            r#"{"c":"user"}"#,
            Holds,
        ),
        (
            r#"{"path":"args.c","op":"not_in","value":["admin"]}"#,
            r#"{"c":"admin"}"#,
            Fails,
        ),
        // lt / lte / gt / gte: numbers only.
        (
            r#"{"path":"args.n","op":"gt","value":10000}"#,
            r#"{"n":10001}"#,
            Holds,
        ),
        (
            r#"{"path":"args.n","op":"gt","value":10000}"#,
            r#"{"n":10000}"#,
            Fails,
        ),
        (
            r#"{"path":"args.n","op":"gt","value":10000}"#,
            r#"{"n":1e5}"#,
            Holds,
        ),
        (
            r#"{"path":"args.n","op":"gt","value":10000}"#,
            r#"{"n":1.00001e4}"#,
            Holds,
        ),
        (
            r#"{"path":"args.n","op":"gte","value":10000}"#,
            r#"{"n":1e4}"#,
            Holds,
        ),
        (
            r#"{"path":"args.n","op":"lt","value":0}"#,
            r#"{"n":-0.5}"#,
            Holds,
        ),
        (
            r#"{"path":"args.n","op":"lt","value":0}"#,
            r#"{"n":0}"#,
            Fails,
        ),
        (
            r#"{"path":"args.n","op":"lte","value":1.5}"#,
            r#"{"n":1.5}"#,
            Holds,
        ),
        (
            r#"{"path":"args.n","op":"lte","value":1.5}"#,
            r#"{"n":15e-1}"#,
            Holds,
        ),
        // regex: RE2 syntax, unanchored unless anchored, on code points.
        (
            r#"{"path":"args.b","op":"regex","value":"^feat/"}"#,
            r#"{"b":"feat/x"}"#,
            Holds,
        ),
        (
            r#"{"path":"args.b","op":"regex","value":"^feat/"}"#,
            r#"{"b":"fix/feat/x"}"#,
            Fails,
        ),
        (
            r#"{"path":"args.b","op":"regex","value":"rm -rf"}"#,
            r#"{"b":"echo; rm -rf /"}"#,
            Holds,
        ),
        (
            r#"{"path":"args.b","op":"regex","value":"^.{4}$"}"#,
            r#"{"b":"日本語x"}"#,
            Holds,
        ),
        (
            r#"{"path":"args.b","op":"regex","value":"^\\p{Han}+$"}"#,
            r#"{"b":"日本語"}"#,
            Holds,
        ),
        // contains: a substring of a string, an element of a list.
        (
            r#"{"path":"args.s","op":"contains","value":"test"}"#,
            r#"{"s":"a test run"}"#,
            Holds,
        ),
        (
            r#"{"path":"args.s","op":"contains","value":"本"}"#,
            r#"{"s":"日本語"}"#,
            Holds,
        ),
        (
            r#"{"path":"args.s","op":"contains","value":"x"}"#,
            r#"{"s":"abc"}"#,
            Fails,
        ),
        (
            r#"{"path":"args.s","op":"contains","value":"admin"}"#,
            r#"{"s":["user","admin"]}"#,
            Holds,
        ),
        (
            r#"{"path":"args.s","op":"contains","value":3}"#,
            r#"{"s":[1,2,3.0]}"#,
            Holds,
        ),
        (
            r#"{"path":"args.s","op":"contains","value":"ad"}"#,
            r#"{"s":["admin"]}"#,
            Fails,
        ),
        // exists: there and not null.
        (r#"{"path":"args.e","op":"exists"}"#, r#"{"e":0}"#, Holds),
        (
            r#"{"path":"args.e","op":"exists","value":true}"#,
            r#"{"e":null}"#,
            Fails,
        ),
        (
            r#"{"path":"args.e","op":"exists","value":true}"#,
            r#"{}"#,
            Fails,
        ),
        (
            r#"{"path":"args.e","op":"exists","value":false}"#,
            r#"{}"#,
            Holds,
        ),
        (
            r#"{"path":"args.e","op":"exists","value":false}"#,
            r#"{"e":"x"}"#,
            Fails,
        ),
        // Paths walk objects.
        (
            r#"{"path":"args.m.k","op":"eq","value":"v"}"#,
            r#"{"m":{"k":"v"}}"#,
            Holds,
        ),
        (
            r#"{"path":"args.m.k","op":"exists"}"#,
            r#"{"m":{"k":{}}}"#,
            Holds,
        ),
        // ... and never index a list, as PolicyLayer resolves them (a list
        // where an object belongs cannot be tested: see below).
        (
            r#"{"path":"args.l.0","op":"eq","value":"a"}"#,
            r#"{"l":{"0":"a"}}"#,
            Holds,
        ),
        // A key with a slash or a tilde is one key.
        (
            r#"{"path":"args.a/b~c","op":"eq","value":1}"#,
            r#"{"a/b~c":1}"#,
            Holds,
        ),
    ];
    for (condition, arguments, expected) in table {
        assert_eq!(
            &eval(condition, arguments),
            expected,
            "{condition} on {arguments}"
        );
    }
}

#[test]
fn a_missing_argument_fails_every_operator_but_exists_false() {
    for (op, value) in [
        ("eq", "1"),
        ("neq", "1"),
        ("in", "[1]"),
        ("not_in", "[1]"),
        ("lt", "1"),
        ("lte", "1"),
        ("gt", "1"),
        ("gte", "1"),
        ("regex", "\"\""),
        ("contains", "\"\""),
        ("exists", "true"),
    ] {
        let condition = format!(r#"{{"path":"args.x.y","op":"{op}","value":{value}}}"#);
        for arguments in ["{}", r#"{"x":{}}"#, r#"{"x":null}"#] {
            assert_eq!(
                eval(&condition, arguments),
                Fails,
                "{condition} on {arguments}"
            );
        }
        let c = compile(&condition).unwrap();
        assert_eq!(c.eval(None), Fails, "{condition} without arguments");
    }
    let absent = compile(r#"{"path":"args.x","op":"exists","value":false}"#).unwrap();
    assert_eq!(absent.eval(None), Holds);
}

#[test]
fn a_value_of_the_wrong_type_cannot_be_tested() {
    for (condition, arguments, says) in [
        (
            r#"{"path":"args.n","op":"gt","value":10000}"#,
            r#"{"n":"20000"}"#,
            r#""20000" is a string, which `gt` cannot test"#,
        ),
        (
            r#"{"path":"args.n","op":"lte","value":1}"#,
            r#"{"n":[1]}"#,
            "[1] is a list, which `lte` cannot test",
        ),
        (
            r#"{"path":"args.n","op":"lt","value":1}"#,
            r#"{"n":null}"#,
            "null is null, which `lt` cannot test",
        ),
        (
            r#"{"path":"args.b","op":"regex","value":"rm"}"#,
            r#"{"b":["rm","-rf"]}"#,
            r#"["rm","-rf"] is a list, which `regex` cannot test"#,
        ),
        (
            r#"{"path":"args.b","op":"regex","value":"1"}"#,
            r#"{"b":1}"#,
            "1 is a number, which `regex` cannot test",
        ),
        (
            r#"{"path":"args.s","op":"contains","value":"x"}"#,
            r#"{"s":{"x":1}}"#,
            r#"{"x":1} is an object, which `contains` "x" cannot test"#,
        ),
        (
            r#"{"path":"args.s","op":"contains","value":1}"#,
            r#"{"s":"1"}"#,
            r#""1" is a string, which `contains` 1 cannot test"#,
        ),
    ] {
        assert_eq!(
            eval(condition, arguments),
            Truth::Untestable(says.into()),
            "{condition} on {arguments}"
        );
    }
}

#[test]
fn a_condition_that_cannot_be_compiled_is_named_at_its_place() {
    for (condition, at, says) in [
        (
            r#"{"path":"amount","op":"gt","value":1}"#,
            "/c/path",
            "must start with \"args.\"",
        ),
        (
            r#"{"path":"state.x.count","op":"lte","value":1}"#,
            "/c/path",
            "counters are written as limits",
        ),
        (
            r#"{"path":"args.","op":"eq","value":1}"#,
            "/c/path",
            "empty segment",
        ),
        (
            r#"{"path":"args.a..b","op":"eq","value":1}"#,
            "/c/path",
            "empty segment",
        ),
        (
            r#"{"path":"args.a","op":"eq"}"#,
            "/c",
            "operator eq needs a \"value\"",
        ),
        (
            r#"{"path":"args.a","op":"in","value":"usd"}"#,
            "/c/value",
            "operator in needs a list",
        ),
        (
            r#"{"path":"args.a","op":"gt","value":"10"}"#,
            "/c/value",
            "operator gt needs a number",
        ),
        (
            r#"{"path":"args.a","op":"regex","value":"(unclosed"}"#,
            "/c/value",
            "not a usable regex",
        ),
        (
            r#"{"path":"args.a","op":"regex","value":"\\w{1000}{1000}"}"#,
            "/c/value",
            "not a usable regex",
        ),
        (
            r#"{"path":"args.a","op":"regex","value":["x"]}"#,
            "/c/value",
            "operator regex needs a string",
        ),
        (
            r#"{"path":"args.a","op":"exists","value":"yes"}"#,
            "/c/value",
            "operator exists takes true or false",
        ),
    ] {
        let e = compile(condition).expect_err(condition);
        assert_eq!(e.at, at, "{condition}: {e}");
        assert!(e.message.contains(says), "{condition}: {e}");
    }
}

#[test]
fn conditions_read_as_check_shows_them() {
    for (condition, words) in [
        (
            r#"{"path":"args.amount","op":"gt","value":10000}"#,
            "/amount > 10000",
        ),
        (
            r#"{"path":"args.a.b","op":"in","value":["usd","eur"]}"#,
            r#"/a/b in ["usd","eur"]"#,
        ),
        (
            r#"{"path":"args.b","op":"regex","value":"^feat/"}"#,
            r#"/b matches "^feat/""#,
        ),
        (
            r#"{"path":"args.e","op":"exists","value":false}"#,
            "/e is not given",
        ),
        (r#"{"path":"args.n","op":"lte","value":1.5}"#, "/n <= 1.5"),
    ] {
        assert_eq!(compile(condition).unwrap().to_string(), words);
    }
}

/// The JSON types an argument may have, one value each.
const TYPES: [&str; 6] = ["null", "true", "5", r#""x""#, r#"["x"]"#, r#"{"k":"x"}"#];

#[test]
fn every_operator_against_every_json_type() {
    use Truth::Untestable as U;
    let u = || U(String::new());
    // Against null, a boolean, a number, a string, a list, an object.
    let table: &[(&str, &str, [Truth; 6])] = &[
        ("eq", r#""x""#, [u(), u(), u(), Holds, u(), u()]),
        ("eq", "true", [u(), Holds, u(), u(), u(), u()]),
        ("eq", "5.0", [u(), u(), Holds, u(), u(), u()]),
        ("eq", "null", [Holds, u(), u(), u(), u(), u()]),
        ("eq", r#"["x"]"#, [u(), u(), u(), u(), Holds, u()]),
        ("eq", r#"{"k":"x"}"#, [u(), u(), u(), u(), u(), Holds]),
        ("eq", r#""y""#, [u(), u(), u(), Fails, u(), u()]),
        ("neq", r#""x""#, [u(), u(), u(), Fails, u(), u()]),
        ("neq", "false", [u(), Holds, u(), u(), u(), u()]),
        ("in", r#"["x","y"]"#, [u(), u(), u(), Holds, u(), u()]),
        ("in", "[5]", [u(), u(), Holds, u(), u(), u()]),
        ("in", r#"["y", 5]"#, [u(), u(), Holds, u(), u(), u()]),
        ("in", "[]", [Fails, Fails, Fails, Fails, Fails, Fails]),
        ("not_in", r#"["x"]"#, [u(), u(), u(), Fails, u(), u()]),
        ("not_in", "[false]", [u(), Holds, u(), u(), u(), u()]),
        ("lt", "10", [u(), u(), Holds, u(), u(), u()]),
        ("lte", "5", [u(), u(), Holds, u(), u(), u()]),
        ("gt", "5", [u(), u(), Fails, u(), u(), u()]),
        ("gte", "10", [u(), u(), Fails, u(), u(), u()]),
        ("regex", r#""^x$""#, [u(), u(), u(), Holds, u(), u()]),
        ("contains", r#""x""#, [u(), u(), u(), Holds, Holds, u()]),
        ("contains", r#""z""#, [u(), u(), u(), Fails, Fails, u()]),
        ("contains", "5", [u(), u(), u(), u(), u(), u()]),
        ("exists", "true", [Fails, Holds, Holds, Holds, Holds, Holds]),
        (
            "exists",
            "false",
            [Holds, Fails, Fails, Fails, Fails, Fails],
        ),
    ];
    let kind = |t: &Truth| std::mem::discriminant(t);
    for (op, value, expected) in table {
        let condition = format!(r#"{{"path":"args.a","op":"{op}","value":{value}}}"#);
        for (actual, want) in TYPES.iter().zip(expected) {
            let got = eval(&condition, &format!(r#"{{"a":{actual}}}"#));
            assert_eq!(kind(&got), kind(want), "{condition} on {actual}: {got:?}");
        }
        // A parent that is not an object (a string the server may parse
        // into one, a list, a scalar) cannot be walked: untested. A null
        // parent is an absent one.
        let condition = format!(r#"{{"path":"args.p.a","op":"{op}","value":{value}}}"#);
        for parent in &TYPES[1..5] {
            let got = eval(&condition, &format!(r#"{{"p":{parent}}}"#));
            assert_eq!(kind(&got), kind(&u()), "{condition} under {parent}");
        }
        let absent = if *op == "exists" && *value == "false" {
            Holds
        } else {
            Fails
        };
        assert_eq!(eval(&condition, r#"{"p":null}"#), absent, "{condition}");
    }
}

#[test]
fn values_that_servers_coerce_are_never_taken_as_different() {
    for (condition, arguments) in [
        // Python SDK servers read both as `true`.
        (
            r#"{"path":"args.force","op":"eq","value":true}"#,
            r#"{"force":"true"}"#,
        ),
        (
            r#"{"path":"args.force","op":"eq","value":true}"#,
            r#"{"force":1}"#,
        ),
        // ... and parse a JSON string where an object belongs.
        (
            r#"{"path":"args.body.gpu.count","op":"gt","value":2}"#,
            r#"{"body":"{\"gpu\":{\"count\":8}}"}"#,
        ),
        // A list where a scalar belongs.
        (
            r#"{"path":"args.env","op":"in","value":["prod"]}"#,
            r#"{"env":["prod"]}"#,
        ),
        (
            r#"{"path":"args.env","op":"eq","value":"prod"}"#,
            r#"{"env":["prod"]}"#,
        ),
        // A difference inside a list or an object that a coercion undoes.
        (
            r#"{"path":"args.l","op":"eq","value":["a",1]}"#,
            r#"{"l":["a","1"]}"#,
        ),
    ] {
        let got = eval(condition, arguments);
        assert!(
            matches!(got, Truth::Untestable(_)),
            "{condition} on {arguments}: {got:?}"
        );
    }
    // Differences no coercion undoes settle it.
    for (condition, arguments) in [
        (
            r#"{"path":"args.l","op":"eq","value":["a",1]}"#,
            r#"{"l":["b","1"]}"#,
        ),
        (
            r#"{"path":"args.l","op":"eq","value":["a",1]}"#,
            r#"{"l":["a"]}"#,
        ),
        (
            r#"{"path":"args.o","op":"eq","value":{"a":1}}"#,
            r#"{"o":{"b":"1"}}"#,
        ),
    ] {
        assert_eq!(
            eval(condition, arguments),
            Fails,
            "{condition} on {arguments}"
        );
    }
}
