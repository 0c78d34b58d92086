//! What a policy says that checks less than it seems: a schema keyword its
//! draft does not define (`requried`, `patern`) is ignored by every
//! validator, so the schema passes what its author meant to refuse. Found
//! at load time; `toolwarden check` prints them, a session logs them.

use serde_json::Value;

use super::load::LoadError;

/// The drafts a schema can name in `$schema`, oldest first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Draft {
    D4,
    D6,
    D7,
    D2019,
    D2020,
}

impl Draft {
    fn of(schema: &Value) -> Draft {
        let uri = schema.get("$schema").and_then(Value::as_str).unwrap_or("");
        if uri.contains("draft-04") {
            Draft::D4
        } else if uri.contains("draft-06") {
            Draft::D6
        } else if uri.contains("draft-07") {
            Draft::D7
        } else if uri.contains("2019-09") {
            Draft::D2019
        } else {
            Draft::D2020
        }
    }

    fn name(self) -> &'static str {
        match self {
            Draft::D4 => "draft-04",
            Draft::D6 => "draft-06",
            Draft::D7 => "draft-07",
            Draft::D2019 => "2019-09",
            Draft::D2020 => "2020-12",
        }
    }
}

/// Keywords and the first draft that defines them. Older keywords that a
/// later draft dropped (`definitions`, `dependencies`, `additionalItems`)
/// stay known: validators still read them.
const KEYWORDS: &[(&str, Draft)] = &[
    ("$schema", Draft::D4),
    ("$ref", Draft::D4),
    ("id", Draft::D4),
    ("title", Draft::D4),
    ("description", Draft::D4),
    ("default", Draft::D4),
    ("type", Draft::D4),
    ("enum", Draft::D4),
    ("multipleOf", Draft::D4),
    ("maximum", Draft::D4),
    ("exclusiveMaximum", Draft::D4),
    ("minimum", Draft::D4),
    ("exclusiveMinimum", Draft::D4),
    ("maxLength", Draft::D4),
    ("minLength", Draft::D4),
    ("pattern", Draft::D4),
    ("items", Draft::D4),
    ("additionalItems", Draft::D4),
    ("maxItems", Draft::D4),
    ("minItems", Draft::D4),
    ("uniqueItems", Draft::D4),
    ("maxProperties", Draft::D4),
    ("minProperties", Draft::D4),
    ("required", Draft::D4),
    ("properties", Draft::D4),
    ("patternProperties", Draft::D4),
    ("additionalProperties", Draft::D4),
    ("dependencies", Draft::D4),
    ("allOf", Draft::D4),
    ("anyOf", Draft::D4),
    ("oneOf", Draft::D4),
    ("not", Draft::D4),
    ("definitions", Draft::D4),
    ("format", Draft::D4),
    ("$id", Draft::D6),
    ("const", Draft::D6),
    ("contains", Draft::D6),
    ("propertyNames", Draft::D6),
    ("examples", Draft::D6),
    ("if", Draft::D7),
    ("then", Draft::D7),
    ("else", Draft::D7),
    ("$comment", Draft::D7),
    ("readOnly", Draft::D7),
    ("writeOnly", Draft::D7),
    ("contentMediaType", Draft::D7),
    ("contentEncoding", Draft::D7),
    ("$anchor", Draft::D2019),
    ("$defs", Draft::D2019),
    ("$vocabulary", Draft::D2019),
    ("$recursiveRef", Draft::D2019),
    ("$recursiveAnchor", Draft::D2019),
    ("dependentRequired", Draft::D2019),
    ("dependentSchemas", Draft::D2019),
    ("maxContains", Draft::D2019),
    ("minContains", Draft::D2019),
    ("unevaluatedItems", Draft::D2019),
    ("unevaluatedProperties", Draft::D2019),
    ("deprecated", Draft::D2019),
    ("contentSchema", Draft::D2019),
    ("prefixItems", Draft::D2020),
    ("$dynamicRef", Draft::D2020),
    ("$dynamicAnchor", Draft::D2020),
];

/// OpenAPI's annotations, common in tool schemas generated from an OpenAPI
/// document: they describe, and were never meant to check anything, so
/// ignoring them loses nothing.
const OPENAPI_ANNOTATIONS: &[&str] = &["example", "discriminator", "externalDocs", "xml"];

/// Keywords whose value is a map of schemas.
const SCHEMA_MAPS: &[&str] = &[
    "properties",
    "patternProperties",
    "definitions",
    "$defs",
    "dependentSchemas",
    "dependencies",
];
/// Keywords whose value is a schema, or an array of schemas.
const SCHEMAS: &[&str] = &[
    "items",
    "prefixItems",
    "allOf",
    "anyOf",
    "oneOf",
    "additionalProperties",
    "additionalItems",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contentSchema",
];

/// A warning for each keyword in `schema` (found at the JSON pointer `at`)
/// that its draft does not define.
pub fn unknown_keywords(schema: &Value, at: &str) -> Vec<LoadError> {
    let mut warnings = Vec::new();
    walk(schema, Draft::of(schema), at, &mut warnings);
    warnings
}

fn walk(schema: &Value, draft: Draft, at: &str, warnings: &mut Vec<LoadError>) {
    let Value::Object(members) = schema else {
        return;
    };
    for (key, value) in members {
        let here = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
        let known = KEYWORDS.iter().find(|(k, _)| k == key);
        match known {
            Some((_, since)) if *since > draft => warnings.push(LoadError {
                at: here.clone(),
                message: format!(
                    "`{key}` is a keyword of a later draft than {} (this schema's): it checks nothing here",
                    draft.name()
                ),
            }),
            Some(_) => {}
            // `x-...` annotations are meant to be ignored.
            None if key.starts_with("x-") => {}
            None if OPENAPI_ANNOTATIONS.contains(&key.as_str()) => {}
            None => warnings.push(LoadError {
                at: here.clone(),
                message: format!(
                    "`{key}` is not a JSON Schema keyword ({}), so it checks nothing{}",
                    draft.name(),
                    suggestion(key)
                        .map(|k| format!("; did you mean `{k}`?"))
                        .unwrap_or_default()
                ),
            }),
        }
        if SCHEMA_MAPS.contains(&key.as_str()) {
            if let Value::Object(map) = value {
                for (name, inner) in map {
                    let inner_at = format!("{here}/{}", name.replace('~', "~0").replace('/', "~1"));
                    walk(inner, draft, &inner_at, warnings);
                }
            }
        } else if SCHEMAS.contains(&key.as_str()) {
            match value {
                Value::Array(items) => {
                    for (i, inner) in items.iter().enumerate() {
                        walk(inner, draft, &format!("{here}/{i}"), warnings);
                    }
                }
                inner => walk(inner, draft, &here, warnings),
            }
        }
    }
}

/// The keyword a misspelt key most likely meant: one at most two edits
/// away.
fn suggestion(key: &str) -> Option<&'static str> {
    KEYWORDS
        .iter()
        .map(|(k, _)| (edits(&key.to_lowercase(), &k.to_lowercase()), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn found(schema: Value) -> Vec<String> {
        let mut found: Vec<String> = unknown_keywords(&schema, "/tools/t/arguments")
            .into_iter()
            .map(|w| w.to_string())
            .collect();
        found.sort();
        found
    }

    #[test]
    fn misspelt_keywords_are_found_at_any_depth() {
        let warnings = found(json!({
            "type": "object",
            "propertes": { "a": {} },
            "requried": ["a"],
            "properties": {
                "name": { "type": "string", "patern": "^a", "x-ui": "text" },
                "required": { "type": "boolean" },
                "list": { "items": [{ "maxLenght": 3 }] }
            },
            "allOf": [{ "minimun": 1 }]
        }));
        assert_eq!(
            warnings,
            vec![
                "/tools/t/arguments/allOf/0/minimun: `minimun` is not a JSON Schema keyword (2020-12), so it checks nothing; did you mean `minimum`?",
                "/tools/t/arguments/propertes: `propertes` is not a JSON Schema keyword (2020-12), so it checks nothing; did you mean `properties`?",
                "/tools/t/arguments/properties/list/items/0/maxLenght: `maxLenght` is not a JSON Schema keyword (2020-12), so it checks nothing; did you mean `maxLength`?",
                "/tools/t/arguments/properties/name/patern: `patern` is not a JSON Schema keyword (2020-12), so it checks nothing; did you mean `pattern`?",
                "/tools/t/arguments/requried: `requried` is not a JSON Schema keyword (2020-12), so it checks nothing; did you mean `required`?",
            ]
        );
    }

    #[test]
    fn keywords_of_a_later_draft_are_found() {
        let warnings = found(json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "prefixItems": [{ "type": "string" }],
            "if": { "const": 1 }
        }));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("later draft than draft-07"));
    }

    #[test]
    fn a_correct_schema_has_no_warnings() {
        assert!(found(json!({
            "type": "object",
            "properties": { "env": { "enum": ["dev", "prod"] }, "n": { "type": "integer", "maximum": 3 } },
            "required": ["env"],
            "additionalProperties": false,
            "$defs": { "x": { "type": "string" } }
        }))
        .is_empty());
    }
}
