//! Keeping secrets out of what toolwarden writes down: the audit log, its
//! own logs, and the approval prompt a person reads. The server always gets
//! the real arguments; only toolwarden's copies are redacted.
//!
//! A value is redacted when any of these says so:
//! - the rule's `redact` JSON pointers;
//! - its key looks secret (password, secret, token, api key, auth,
//!   credential, private key, ...), at any depth;
//! - the value itself looks like a credential (cloud access keys,
//!   GitHub/Slack-style tokens, bearer tokens, PEM private keys, JWTs).

use std::sync::LazyLock;

use regex::RegexSet;
use serde_json::Value;

pub const REDACTED: &str = "[redacted]";

/// Shapes of well-known credentials.
static CREDENTIALS: LazyLock<RegexSet> = LazyLock::new(|| {
    RegexSet::new([
        r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",               // AWS access key ids
        r"\bgh[pousr]_[A-Za-z0-9]{30,}",              // GitHub tokens
        r"\bgithub_pat_[A-Za-z0-9_]{20,}",            // GitHub fine-grained tokens
        r"\bxox[abposr]-[A-Za-z0-9-]{10,}",           // Slack tokens
        r"\b(sk|rk|pk)_(live|test)_[A-Za-z0-9]{16,}", // Stripe-style keys
        r"\bsk-[A-Za-z0-9_-]{20,}",                   // OpenAI/Anthropic-style keys
        r"\bAIza[0-9A-Za-z_-]{35}\b",                 // Google API keys
        r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}",     // bearer tokens
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----",        // PEM private keys
        r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}", // JWTs
    ])
    .expect("the credential patterns compile")
});

/// Words that make a key secret, matched against the words of the key
/// (`serverToken`, `server_token` and `server-token` are all "server",
/// "token"), so that `author` is not taken for `auth`.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "auth",
    "authorization",
    "credential",
    "credentials",
    "cookie",
];
/// Pairs of consecutive words that make a key secret.
const SECRET_PAIRS: &[(&str, &str)] = &[
    ("api", "key"),
    ("private", "key"),
    ("access", "key"),
    ("secret", "key"),
];

/// Whether a string value looks like a credential.
pub fn looks_like_credential(text: &str) -> bool {
    CREDENTIALS.is_match(text)
}

/// Whether an object key names a secret.
pub fn key_is_secret(key: &str) -> bool {
    let words = words(key);
    words.iter().any(|w| SECRET_WORDS.contains(&w.as_str()))
        || words
            .windows(2)
            .any(|pair| SECRET_PAIRS.contains(&(pair[0].as_str(), pair[1].as_str())))
}

/// The lowercase words of a key: split at `_`, `-`, `.`, spaces and
/// lower-to-upper case changes.
fn words(key: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in key.chars() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// Arguments made safe to write down.
pub struct Redacted {
    pub value: Value,
    /// The string values taken out, to scrub them from any other text
    /// written about the same call (such as schema error messages).
    pub removed: Vec<String>,
}

impl Redacted {
    /// `text` with every removed value replaced.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in self.removed.iter().filter(|s| !s.is_empty()) {
            out = out.replace(secret.as_str(), REDACTED);
        }
        out
    }
}

/// Redacts `arguments` by the rule's `pointers`, secret-looking keys and
/// credential-looking values.
pub fn redact(arguments: &Value, pointers: &[String]) -> Redacted {
    let mut value = arguments.clone();
    let mut removed = Vec::new();
    for pointer in pointers {
        if let Some(target) = value.pointer_mut(pointer) {
            take(target, &mut removed);
        }
    }
    walk(&mut value, &mut removed);
    Redacted { value, removed }
}

fn walk(value: &mut Value, removed: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if key_is_secret(key) {
                    take(inner, removed);
                } else {
                    walk(inner, removed);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| walk(v, removed)),
        Value::String(text) if text != REDACTED && looks_like_credential(text) => {
            take(value, removed)
        }
        _ => {}
    }
}

/// Replaces `value` with the marker, remembering every string inside it.
fn take(value: &mut Value, removed: &mut Vec<String>) {
    collect_strings(value, removed);
    *value = Value::String(REDACTED.to_owned());
}

fn collect_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) if s != REDACTED => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_keys_at_any_depth() {
        let secret = [
            "password",
            "PASSWORD",
            "db_password",
            "passwd",
            "client_secret",
            "server_token",
            "serverToken",
            "access-token",
            "api_key",
            "apiKey",
            "APIKEY",
            "auth",
            "authToken",
            "Authorization",
            "credentials",
            "private_key",
            "privateKey",
            "aws_secret_access_key",
        ];
        for key in secret {
            assert!(key_is_secret(key), "{key}");
        }
        for key in [
            "author",
            "authority_name",
            "tokenizer",
            "keyboard",
            "task_id",
            "session_id",
            "monkey",
        ] {
            assert!(!key_is_secret(key), "{key}");
        }
    }

    #[test]
    fn credential_shaped_values() {
        let credentials = [
            "AKIAIOSFODNN7EXAMPLE",
            "ghp_0123456789abcdefghijABCDEFGHIJ012345",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
            "xoxb-1234567890-abcdefghij",
            "sk_live_0123456789abcdefABCD",
            "sk-proj-0123456789abcdefghijklmnop",
            "Bearer abc.def.ghi-0123",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIE...",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl",
        ];
        for value in credentials {
            assert!(looks_like_credential(value), "{value}");
        }
        for value in ["hello", "67abc123def456", "run_01H8", "bearer", "sk-short"] {
            assert!(!looks_like_credential(value), "{value}");
        }
    }

    #[test]
    fn pointers_keys_and_values_are_all_redacted() {
        let args = json!({
            "server_token": "srv_live_8f2a61c0",
            "target": { "password": "hunter2", "host": "db1" },
            "note": "use AKIAIOSFODNN7EXAMPLE",
            "list": ["ok", "ghp_0123456789abcdefghijABCDEFGHIJ012345"],
            "pin": 1234,
            "keep": "visible"
        });
        let r = redact(&args, &["/pin".to_owned()]);
        assert_eq!(
            r.value,
            json!({
                "server_token": REDACTED,
                "target": { "password": REDACTED, "host": "db1" },
                "note": REDACTED,
                "list": ["ok", REDACTED],
                "pin": REDACTED,
                "keep": "visible"
            })
        );
        let text = r.scrub("\"hunter2\" is too short; 1234 is not a string");
        assert!(
            !text.contains("hunter2") && !text.contains("1234"),
            "{text}"
        );
    }
}
