//! `--header 'Name: value'`: read once at start, `${VAR}` taken from the
//! environment, and kept as values no log, audit line or error shows
//! (marked sensitive, so that even a `Debug` print hides them).

use ureq::http::{HeaderName, HeaderValue};

/// The headers toolwarden sets itself: a `--header` may not replace them.
const OURS: &[&str] = &[
    "accept",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "host",
    "last-event-id",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
];

/// One `--header`, its value read.
#[derive(Debug, Clone)]
pub struct Header {
    pub name: HeaderName,
    pub value: HeaderValue,
}

/// Parses each `--header`, reading `${VAR}` with `var`. An error names
/// the header and the variable, never a value.
pub fn parse(
    given: &[String],
    var: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Header>, String> {
    given
        .iter()
        .map(|spec| {
            // Without a `:`, all of it may be a value: none of it is shown.
            let (name, template) = spec
                .split_once(':')
                .ok_or("--header: one is not `Name: value`")?;
            let name = name.trim();
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("--header {}: not a header name", shown_name(name)))?;
            if OURS.contains(&name.as_str()) {
                return Err(format!(
                    "--header {name}: toolwarden sets {name} itself; it cannot be given"
                ));
            }
            let value =
                expand(template.trim(), &var).map_err(|e| format!("--header {name}: {e}"))?;
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                format!("--header {name}: the value holds a character a header cannot carry")
            })?;
            value.set_sensitive(true);
            Ok(Header { name, value })
        })
        .collect()
}

/// A header name as it may be shown in an error: cut short, and only when
/// it is made of a name's characters (a mistyped `--header` may be a
/// value).
fn shown_name(name: &str) -> String {
    if !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        name.to_owned()
    } else {
        "(not shown)".to_owned()
    }
}

/// `template` with each `${VAR}` replaced by the variable's value; other
/// text (a `$` alone too) is kept as it is.
fn expand(template: &str, var: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after
            .find('}')
            .ok_or("`${` without its closing `}`".to_owned())?;
        let name = &after[..end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err("`${...}` must hold a variable's name (letters, digits, `_`)".into());
        }
        let value = var(name).ok_or_else(|| format!("${{{name}}} is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Where credentials come from, for each request: OAuth (oauth/), or
/// the `--header` given, which toolwarden leaves alone.
pub trait Authorizer: Send + Sync {
    /// The `Authorization` value for the next request, if there is one.
    fn authorization(&self) -> Option<HeaderValue>;
    /// What to do after a 401 (or a 403 asking for more scope), given the
    /// response's `WWW-Authenticate` and the `Authorization` the request
    /// was sent with: retry with new credentials, or say why not.
    fn unauthorized(&self, challenge: Option<&str>, sent: Option<&HeaderValue>) -> Unauthorized;
}

/// After a 401.
pub enum Unauthorized {
    /// Credentials were renewed: send the request again.
    Retry,
    /// Nothing more can be done; the words say what the person can do.
    GiveUp(String),
}

/// No OAuth: the credentials are the `Authorization` `--header` gives.
pub struct HeadersOnly;

impl Authorizer for HeadersOnly {
    fn authorization(&self) -> Option<HeaderValue> {
        None
    }

    fn unauthorized(&self, _: Option<&str>, _: Option<&HeaderValue>) -> Unauthorized {
        Unauthorized::GiveUp(
            "the server refused the Authorization given with --header (HTTP 401); without \
             that --header, toolwarden logs in with OAuth"
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn one(spec: &str) -> Result<String, String> {
        parse(&[spec.to_owned()], env)
            .map(|h| format!("{}={}", h[0].name, h[0].value.to_str().unwrap()))
    }

    #[test]
    fn variables_are_read_and_the_rest_kept() {
        assert_eq!(
            one("Authorization: Bearer ${TOKEN}").unwrap(),
            "authorization=Bearer s3cret"
        );
        assert_eq!(one("X-Key:${TOKEN}${EMPTY}-$x").unwrap(), "x-key=s3cret-$x");
        assert_eq!(one("X-Plain:  v  ").unwrap(), "x-plain=v");
    }

    #[test]
    fn errors_name_the_header_and_variable_never_a_value() {
        assert_eq!(
            one("X-Key: Bearer ${MISSING}").unwrap_err(),
            "--header x-key: ${MISSING} is not set"
        );
        assert_eq!(
            one("Bearer s3cret").unwrap_err(),
            "--header: one is not `Name: value`"
        );
        assert_eq!(
            one("Bearer s3cret: x").unwrap_err(),
            "--header (not shown): not a header name"
        );
        assert!(one("Accept: x").unwrap_err().contains("sets accept itself"));
        assert!(one("Mcp-Session-Id: x").is_err());
        let bad = one("X-Key: s3cret\u{1}").unwrap_err();
        assert!(!bad.contains("s3cret"), "{bad}");
        assert!(one("X-Key: ${TOK").unwrap_err().contains("closing"));
        assert!(one("X-Key: ${A-B}").is_err());
    }

    #[test]
    fn values_are_hidden_from_debug_prints() {
        let headers = parse(&["X-Key: ${TOKEN}".to_owned()], env).unwrap();
        let shown = format!("{headers:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
