use std::collections::HashSet;
use std::fmt;

use proptest::prelude::*;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::*;

/// The oracle for [`Check::Strict`]: serde_json reading every value (which
/// decodes strings, bounds depth and range-checks numbers) while refusing a
/// repeated key.
fn serde_strict(text: impl AsRef<[u8]>) -> bool {
    struct Walk;
    impl<'de> DeserializeSeed<'de> for Walk {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(Walk)
        }
    }
    impl<'de> Visitor<'de> for Walk {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(Walk)?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key) {
                    return Err(de::Error::custom("duplicate key"));
                }
                map.next_value_seed(Walk)?;
            }
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_slice(text.as_ref());
    Walk.deserialize(&mut de).and_then(|()| de.end()).is_ok()
}

/// The oracle for [`Check::Syntax`]: serde_json skipping a value (and
/// checking its UTF-8, to hand it out as a `str`).
fn serde_syntax(text: impl AsRef<[u8]>) -> bool {
    serde_json::from_slice::<&RawValue>(text.as_ref()).is_ok()
}

fn kind(text: impl AsRef<[u8]>, check: Check) -> Option<ErrorKind> {
    validate(text.as_ref(), check).err().map(|e| e.kind())
}

#[test]
fn the_grammar_table() {
    use ErrorKind::*;
    let cases: &[(&str, Option<ErrorKind>, Option<ErrorKind>)] = &[
        // (text, strict, syntax)
        ("{}", None, None),
        (" [ 1 , 2 ]\r\n", None, None),
        ("0", None, None),
        ("-0.5e+10", None, None),
        ("01", Some(Syntax), Some(Syntax)),
        ("-", Some(Syntax), Some(Syntax)),
        ("1.", Some(Syntax), Some(Syntax)),
        (".5", Some(Syntax), Some(Syntax)),
        ("1e", Some(Syntax), Some(Syntax)),
        ("+1", Some(Syntax), Some(Syntax)),
        ("1e400", Some(Strict), None),
        ("-1e400", Some(Strict), None),
        ("1e-400", None, None),
        (&format!("1{}", "0".repeat(400)), Some(Strict), None),
        ("tru", Some(Syntax), Some(Syntax)),
        ("nulll", Some(Syntax), Some(Syntax)),
        ("{\"a\":1,}", Some(Syntax), Some(Syntax)),
        ("[1,]", Some(Syntax), Some(Syntax)),
        ("{\"a\" 1}", Some(Syntax), Some(Syntax)),
        ("{a:1}", Some(Syntax), Some(Syntax)),
        ("\"a\u{1}b\"", Some(Syntax), Some(Syntax)),
        ("\"a\u{7f}b\"", None, None),
        ("\"\\x\"", Some(Syntax), Some(Syntax)),
        ("\"\\u12\"", Some(Syntax), Some(Syntax)),
        ("\"\\u12g4\"", Some(Syntax), Some(Syntax)),
        ("\"\\ud83d\\ude00\"", None, None),
        ("\"\\ud800\"", Some(Strict), None),
        ("\"\\udc00\"", Some(Strict), None),
        ("\"\\ud800\\u0041\"", Some(Strict), None),
        ("\"\\ud800\\ud800\\udc00\"", Some(Strict), None),
        ("\"unterminated", Some(Syntax), Some(Syntax)),
        ("{}{}", Some(Syntax), Some(Syntax)),
        ("{}\r{}", Some(Syntax), Some(Syntax)),
        ("\u{feff}{}", Some(Syntax), Some(Syntax)),
        ("", Some(Syntax), Some(Syntax)),
        ("{\"a\":1,\"a\":2}", Some(Duplicate), None),
        ("{\"a\":1,\"\\u0061\":2}", Some(Duplicate), None),
        ("[{\"a\":1},{\"a\":1}]", None, None),
        ("{\"a\":{\"a\":1}}", None, None),
        ("{\"a\":[{\"b\":1,\"b\":1}]}", Some(Duplicate), None),
    ];
    for (text, strict, syntax) in cases {
        assert_eq!(kind(text, Check::Strict), *strict, "strict: {text:?}");
        assert_eq!(kind(text, Check::Syntax), *syntax, "syntax: {text:?}");
        assert_eq!(
            strict.is_none(),
            serde_strict(text),
            "serde strict: {text:?}"
        );
        assert_eq!(
            syntax.is_none(),
            serde_syntax(text),
            "serde syntax: {text:?}"
        );
    }
}

#[test]
fn nesting_stops_where_serde_json_stops() {
    for depth in [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 1000] {
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let strict = validate(text.as_bytes(), Check::Strict);
        assert_eq!(strict.is_ok(), depth <= MAX_DEPTH, "{depth}");
        assert_eq!(strict.is_ok(), serde_strict(&text), "{depth}");
        assert!(validate(text.as_bytes(), Check::Syntax).is_ok(), "{depth}");
    }
    // The grammar-only check, for the server's lines, has a cap of its own.
    for depth in [SYNTAX_MAX_DEPTH, SYNTAX_MAX_DEPTH + 1, 1_000_000] {
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let syntax = validate(text.as_bytes(), Check::Syntax);
        assert_eq!(syntax.is_ok(), depth <= SYNTAX_MAX_DEPTH, "{depth}");
    }
    let deep_object = format!(
        "{}1{}",
        "{\"a\":".repeat(MAX_DEPTH + 1),
        "}".repeat(MAX_DEPTH + 1)
    );
    assert_eq!(kind(&deep_object, Check::Strict), Some(ErrorKind::Strict));
    assert!(!serde_strict(&deep_object));
}

#[test]
fn many_keys_are_checked_for_duplicates() {
    let mut keys: Vec<String> = (0..100).map(|i| format!("\"k{i}\":1")).collect();
    let ok = format!("{{{}}}", keys.join(","));
    assert_eq!(kind(&ok, Check::Strict), None);
    keys.push("\"k3\":2".into());
    let dup = format!("{{{}}}", keys.join(","));
    assert_eq!(kind(&dup, Check::Strict), Some(ErrorKind::Duplicate));
    assert_eq!(kind(&dup, Check::Syntax), None);
}

#[test]
fn object_hands_out_top_level_members_as_slices() {
    let text = r#" {"a" : [1, {"x":"}"}], "\u0062":"s\"q", "c":null, "q": {"name": 1},
        "p\u0061rams": {"n\u0061me": "t", "arguments": {"d": {"e": 1}}, "z": []}} "#;
    let mut seen = Vec::new();
    object(
        text.as_bytes(),
        Check::Strict,
        "params",
        |place, key, value| {
            let place = match place {
                Place::Top => String::new(),
                Place::Inner => "params.".to_owned(),
            };
            seen.push((place + key, value.get()));
            Ok(())
        },
    )
    .unwrap();
    let expected = [
        ("a", r#"[1, {"x":"}"}]"#),
        ("b", r#""s\"q""#),
        ("c", "null"),
        // Only the members of `params` one level down, keys decoded, each
        // before `params` itself; nothing deeper.
        ("q", r#"{"name": 1}"#),
        ("params.name", r#""t""#),
        ("params.arguments", r#"{"d": {"e": 1}}"#),
        ("params.z", "[]"),
        (
            "params",
            r#"{"n\u0061me": "t", "arguments": {"d": {"e": 1}}, "z": []}"#,
        ),
    ];
    assert_eq!(
        seen,
        expected
            .map(|(key, value)| (key.to_owned(), value))
            .to_vec()
    );
    let refused = object(text.as_bytes(), Check::Strict, "params", |_, key, _| {
        if key == "b" {
            Err("no b".into())
        } else {
            Ok(())
        }
    })
    .unwrap_err();
    assert_eq!(
        (refused.kind(), refused.message()),
        (ErrorKind::Member, "no b")
    );
    let not_object = object(b"[1]", Check::Strict, "", |_, _, _| Ok(())).unwrap_err();
    assert_eq!(not_object.kind(), ErrorKind::NotObject);
    let broken = object(b"[1", Check::Strict, "", |_, _, _| Ok(())).unwrap_err();
    assert_eq!(broken.kind(), ErrorKind::Syntax);
}

#[test]
fn raw_values_read_their_members_and_strings() {
    let raw = Raw::parse(
        r#"{ "name" : "a\u002fb", "arguments" : {"x": [1, "]"]}, "n": -1.5e3 , "e":{}}"#,
    )
    .unwrap();
    let members: Vec<(String, &str)> = raw
        .members()
        .map(|(k, v)| (k.into_owned(), v.get()))
        .collect();
    assert_eq!(
        members,
        [
            ("name".to_owned(), r#""a\u002fb""#),
            ("arguments".to_owned(), r#"{"x": [1, "]"]}"#),
            ("n".to_owned(), "-1.5e3"),
            ("e".to_owned(), "{}"),
        ]
    );
    assert_eq!(raw.member("name").unwrap().as_str().unwrap(), "a/b");
    assert_eq!(raw.member("missing"), None);
    assert_eq!(Raw::parse("[1]").unwrap().members().count(), 0);
    assert_eq!(Raw::parse("{}").unwrap().members().count(), 0);
    let repeated = Raw::parse(r#"{"k":1,"k":2}"#).unwrap();
    assert_eq!(repeated.member("k").unwrap().get(), "2", "the last wins");
    assert_eq!(Raw::parse(r#""\ud800""#).unwrap().as_str(), None);
    assert_eq!(Raw::parse("5").unwrap().as_str(), None);
    assert_eq!(Raw::parse(" 5 ").unwrap().get(), "5");
    // Strings past the first 64 bytes, with escapes on both sides of them.
    let long = format!(
        r#""{}\"{}\\{}""#,
        "a".repeat(70),
        "b".repeat(100),
        "c".repeat(3)
    );
    let text = format!(r#"{{"k":{long},"n":[{long}],"last":1}}"#);
    let members: Vec<(String, &str)> = Raw::parse(&text)
        .unwrap()
        .members()
        .map(|(k, v)| (k.into_owned(), v.get()))
        .collect();
    let list = format!("[{long}]");
    assert_eq!(
        members,
        [
            ("k".to_owned(), long.as_str()),
            ("n".to_owned(), list.as_str()),
            ("last".to_owned(), "1"),
        ]
    );
}

#[test]
fn errors_say_where() {
    let text = "{\n  \"a\": tru\n}";
    let e = validate(text.as_bytes(), Check::Strict).unwrap_err();
    assert_eq!(e.line_column(text), (2, 8));
    assert_eq!(e.to_string(), "expected `true` at byte 9");
}

#[test]
fn the_scans_stop_at_the_first_special_byte() {
    // `skip_plain` stops at a byte above 0x7f too; `skip_plain_ascii`,
    // which finds the end of a stretch to check as UTF-8, goes past them.
    for len in 0..40 {
        for special in [b'"', b'\\', 0x00, 0x1f, 0x80, 0xc3, 0xff] {
            for at in 0..=len {
                let mut b = vec![b'a'; len];
                b.extend_from_slice("é☃".as_bytes());
                if at < len {
                    b[at] = special;
                }
                let plain = at.min(len);
                assert_eq!(skip_plain(&b, 0), plain, "{len} {special} {at}");
                let ascii = if at < len && special < 0x80 {
                    at
                } else {
                    b.len()
                };
                assert_eq!(skip_plain_ascii(&b, 0), ascii, "{len} {special} {at}");
            }
        }
    }
}

#[test]
fn strings_must_be_utf8() {
    let long = "a".repeat(300);
    let cases: Vec<(Vec<u8>, bool)> = vec![
        (b"\"\xc3\xa9\"".to_vec(), true),
        ("\"☃ and 😀, \\n 😀\"".into(), true),
        (b"{\"\xc3\xa9\":\"x\xc3\xa9\"}".to_vec(), true),
        (format!("\"{long}é{long}\"").into(), true),
        (b"\"\xff\"".to_vec(), false),
        (b"\"\xc3\"".to_vec(), false),
        (b"\"\xc3a\"".to_vec(), false),
        (b"\"\xe2\x98\"".to_vec(), false),
        (b"\"\xed\xa0\x80\"".to_vec(), false),
        (b"\"\xc0\xaf\"".to_vec(), false),
        (b"\"\xf4\x90\x80\x80\"".to_vec(), false),
        (b"\"\xc3\xa9\x80\"".to_vec(), false),
        (b"\"\xc3\xa9".to_vec(), false),
        (b"\xc3\xa9".to_vec(), false),
        (b"[1,\xc3\xa9]".to_vec(), false),
        (b"[1 \xc2\xa0]".to_vec(), false),
        (b"{\"\xff\":1}".to_vec(), false),
        (b"\"a\\n\xc3\xa9\\t\xc3\"".to_vec(), false),
        ([b"\"", long.as_bytes(), b"\xff\""].concat(), false),
        // After a string beyond ASCII, the rest of the document is known.
        (b"[\"\xc3\xa9\",\"\xce\xbb\"]".to_vec(), true),
        (b"[\"\xc3\xa9\",\"\xff\"]".to_vec(), false),
        (b"[\"\xc3\xa9\",1\xc3\xa9]".to_vec(), false),
        (b"[\"\xc3\xa9\",1,\"\xc3\xa9\xff\"]".to_vec(), false),
        (b"[\"\xc3\xa9\",\"a\",\xff,\"\xc3\xa9\"]".to_vec(), false),
        (
            [
                b"\"",
                long.as_bytes(),
                "é".as_bytes(),
                long.as_bytes(),
                b"\xe2\"",
            ]
            .concat(),
            false,
        ),
    ];
    for (text, valid) in &cases {
        let expected = (!valid).then_some(ErrorKind::Syntax);
        assert_eq!(kind(text, Check::Strict), expected, "strict: {text:?}");
        assert_eq!(kind(text, Check::Syntax), expected, "syntax: {text:?}");
        assert_eq!(serde_strict(text), *valid, "serde strict: {text:?}");
        assert_eq!(serde_syntax(text), *valid, "serde syntax: {text:?}");
    }
    let e = validate(b"[\"ab\xc3\xa9\xffc\"]", Check::Syntax).unwrap_err();
    assert_eq!(e.to_string(), "invalid UTF-8 in a string at byte 6");
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?(0|[1-9][0-9]{0,3})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,3})?",
        any::<f64>().prop_map(|f| f.to_string()),
    ]
}

fn string() -> impl Strategy<Value = String> {
    "\"([a-z ]|é|☃|\\\\[\"\\\\/bfnrt]|\\\\u00[0-7][0-9a-fA-F]|\\\\u[dD][89abAB][0-9a-f]{2}|\\\\u[dD][c-fC-F][0-9a-f]{2})*\""
}

/// Few key names, some written with escapes, so duplicates are frequent.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"a\"".to_owned()),
        Just("\"b\"".to_owned()),
        Just("\"\\u0061\"".to_owned()),
        string(),
    ]
}

fn ws() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(""), Just(" "), Just("\n\t "), Just("\r")]
}

fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        number(),
        string(),
    ];
    leaf.prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec((ws(), inner.clone()), 0..5).prop_map(|items| {
                let items: Vec<String> = items
                    .into_iter()
                    .map(|(w, v)| format!("{w}{v}{w}"))
                    .collect();
                format!("[{}]", items.join(","))
            }),
            prop::collection::vec((key(), ws(), inner), 0..5).prop_map(|members| {
                let members: Vec<String> = members
                    .into_iter()
                    .map(|(k, w, v)| format!("{w}{k}{w}:{w}{v}"))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

/// Valid JSON, then up to three edits that often break it.
fn document() -> impl Strategy<Value = String> {
    let edit = (
        any::<prop::sample::Index>(),
        0..3u8,
        prop::sample::select(vec![
            '{', '}', '[', ']', ',', ':', '"', '\\', ' ', '0', '-', '.', 'e', 't', 'u', '\u{1}',
            'é',
        ]),
    );
    (value(), prop::collection::vec(edit, 0..4)).prop_map(|(text, edits)| {
        let mut chars: Vec<char> = text.chars().collect();
        for (at, op, c) in edits {
            let i = at.index(chars.len() + 1);
            match op {
                0 => chars.insert(i, c),
                1 if i < chars.len() => {
                    chars.remove(i);
                }
                _ if i < chars.len() => chars[i] = c,
                _ => {}
            }
        }
        chars.into_iter().collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Both checks accept exactly what serde_json accepts.
    #[test]
    fn agrees_with_serde_json(text in document()) {
        prop_assert_eq!(validate(text.as_bytes(), Check::Strict).is_ok(), serde_strict(&text), "strict: {}", text);
        prop_assert_eq!(validate(text.as_bytes(), Check::Syntax).is_ok(), serde_syntax(&text), "syntax: {}", text);
    }

    /// The same with any bytes written into valid JSON: broken UTF-8 and
    /// bytes above 0x7f where only ASCII may be.
    #[test]
    fn agrees_with_serde_json_on_any_bytes(
        text in value(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<bool>(), any::<u8>()), 1..4),
    ) {
        let mut b = text.into_bytes();
        for (at, insert, byte) in edits {
            let i = at.index(b.len() + 1);
            if insert || i == b.len() {
                b.insert(i, byte);
            } else {
                b[i] = byte;
            }
        }
        prop_assert_eq!(validate(&b, Check::Strict).is_ok(), serde_strict(&b), "strict: {:?}", b);
        prop_assert_eq!(validate(&b, Check::Syntax).is_ok(), serde_syntax(&b), "syntax: {:?}", b);
    }

    /// An object's members are what serde_json reads, values as written.
    #[test]
    fn members_are_what_serde_json_reads(members in prop::collection::vec((key(), value()), 0..6)) {
        let members: Vec<String> = members.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        let text = format!("{{{}}}", members.join(" , "));
        if !serde_strict(&text) {
            // A repeated key or a lone surrogate: the first test's ground.
            return Ok(());
        }
        let expected: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
        let mut got = serde_json::Map::new();
        // The members of the object under the first key.
        let inner = expected.keys().next().cloned().unwrap_or_default();
        let mut nested = serde_json::Map::new();
        object(text.as_bytes(), Check::Strict, &inner, |place, key, value| {
            let value = serde_json::from_str(value.get()).unwrap();
            match place {
                Place::Top => got.insert(key.to_owned(), value),
                Place::Inner => nested.insert(key.to_owned(), value),
            };
            Ok(())
        }).unwrap();
        prop_assert_eq!(&got, &expected);
        let inner_members = match expected.get(&inner) {
            Some(serde_json::Value::Object(members)) => members.clone(),
            _ => serde_json::Map::new(),
        };
        prop_assert_eq!(&nested, &inner_members);
        let walked: serde_json::Map<String, serde_json::Value> = Raw::parse(&text)
            .unwrap()
            .members()
            .map(|(k, v)| (k.into_owned(), serde_json::from_str(v.get()).unwrap()))
            .collect();
        prop_assert_eq!(&walked, &expected);
    }
}

#[test]
fn owned_copies_read_back_the_same_inline_or_not() {
    // Up to INLINE bytes the copy is kept inline; "é" is two bytes, so the
    // third text ends exactly at the limit and the fourth just past it.
    let texts = [
        "7".to_owned(),
        "\"req-1\"".to_owned(),
        format!("\"{}\"", "é".repeat((INLINE - 2) / 2)),
        format!("\"{}é\"", "x".repeat(INLINE - 3)),
        format!("\"{}\"", "y".repeat(200)),
    ];
    assert_eq!(texts[2].len(), INLINE);
    assert_eq!(texts[3].len(), INLINE + 1);
    for text in &texts {
        let copy = Raw::parse(text).unwrap().to_buf();
        assert_eq!(copy.raw().get(), text);
        assert_eq!(format!("{copy:?}"), *text);
        assert_eq!(copy.clone(), copy);
    }
    assert_ne!(
        Raw::parse("1").unwrap().to_buf(),
        Raw::parse("2").unwrap().to_buf()
    );
}

#[test]
fn a_string_ends_at_its_first_special_byte_however_long() {
    // Lengths around the word, the switch to blocks and the block size,
    // with the quote, backslash or control byte at every position.
    for len in (0..80).chain([255, 256, 257, 263, 264, 300, 1000, 4099]) {
        for special in [b'"', b'\\', 0x1f, 0x80, 0xff] {
            for at in (0..len)
                .step_by(1 + len / 40)
                .chain([len.saturating_sub(1)])
            {
                let mut b = vec![b'a'; len];
                if at < len {
                    b[at] = special;
                    // A second one later must not be found first.
                    if at + 40 < len {
                        b[at + 40] = b'"';
                    }
                }
                for from in [0, 3.min(len)] {
                    let want = b[from..]
                        .iter()
                        .position(|&c| c == b'"' || c == b'\\' || !(0x20..0x80).contains(&c))
                        .map_or(len, |p| from + p);
                    assert_eq!(
                        skip_plain(&b, from),
                        want,
                        "len {len}, {special:#x} at {at}, from {from}"
                    );
                }
            }
            assert_eq!(skip_plain(&vec![b'a'; len], 0), len, "len {len}, plain");
        }
    }
}
