//! Finding the authorization server from a 401, as MCP's authorization
//! spec orders it: the `WWW-Authenticate` challenge's `resource_metadata`,
//! else the protected resource metadata (RFC 9728) at the well-known
//! URLs; then the authorization server's metadata (RFC 8414, or OpenID
//! Connect discovery), whose `issuer` must be the server named, and which
//! must offer PKCE with S256.

use serde::Deserialize;
use url::Url;

use super::{get_json, reachable_from};

/// What a `Bearer` challenge of `WWW-Authenticate` says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub resource_metadata: Option<String>,
    pub scope: Option<String>,
    pub error: Option<String>,
}

impl Challenge {
    /// Whether the token was good but its scope too narrow (a 403 asking
    /// for more: a new login with the scope the challenge names).
    pub fn wants_scope(&self) -> bool {
        self.error.as_deref() == Some("insufficient_scope")
    }
}

/// The `Bearer` challenge of a `WWW-Authenticate` value (RFC 9110's
/// challenges: a scheme, then `name=value` pairs, the value a token or a
/// quoted string), or `None` when there is none.
pub fn challenge(header: &str) -> Option<Challenge> {
    let mut rest = header;
    let mut found: Option<Challenge> = None;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return found;
        }
        let end = rest.find([' ', '\t', ',', '=']).unwrap_or(rest.len());
        let word = &rest[..end];
        let after = rest[end..].trim_start_matches([' ', '\t']);
        if let Some(value_and_more) = after.strip_prefix('=') {
            // A parameter of the challenge being read.
            let value_and_more = value_and_more.trim_start_matches([' ', '\t']);
            let (value, more) = param_value(value_and_more);
            if let Some(bearer) = found.as_mut() {
                match word.to_ascii_lowercase().as_str() {
                    "resource_metadata" => bearer.resource_metadata = Some(value),
                    "scope" => bearer.scope = Some(value),
                    "error" => bearer.error = Some(value),
                    _ => {}
                }
            }
            rest = more;
        } else {
            // A scheme's name starts the next challenge.
            if found.is_some() {
                return found;
            }
            if word.eq_ignore_ascii_case("bearer") {
                found = Some(Challenge::default());
            }
            rest = &rest[end..];
        }
    }
}

/// A parameter's value (a token, or a quoted string with `\` escapes) and
/// what follows it.
fn param_value(text: &str) -> (String, &str) {
    if let Some(quoted) = text.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '"' => return (value, &quoted[at + 1..]),
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                _ => value.push(c),
            }
        }
        (value, "")
    } else {
        let end = text.find([',', ' ', '\t']).unwrap_or(text.len());
        (text[..end].to_owned(), &text[end..])
    }
}

/// Protected resource metadata (RFC 9728), the fields read.
#[derive(Deserialize)]
struct ResourceMetadata {
    resource: String,
    #[serde(default)]
    authorization_servers: Vec<String>,
    #[serde(default)]
    scopes_supported: Vec<String>,
}

/// Authorization server metadata (RFC 8414), the fields read.
#[derive(Deserialize, Clone)]
pub struct ServerMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub registration_endpoint: Option<String>,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

/// Where and how to log in to one MCP server.
pub struct Found {
    /// The `resource` to ask tokens for (RFC 8707).
    pub resource: String,
    /// The scope to ask for, if the server named one.
    pub scope: Option<String>,
    pub server: ServerMetadata,
}

/// Finds the authorization server of the MCP server at `mcp`, from the
/// 401's `challenge`.
pub fn discover(agent: &ureq::Agent, mcp: &Url, challenge: &Challenge) -> Result<Found, String> {
    let (resource, authorization_server, scopes) = match resource_metadata(agent, mcp, challenge)? {
        Some(metadata) => {
            let resource = Url::parse(&metadata.resource).map_err(|_| {
                "the server's protected resource metadata names no URL as its resource".to_owned()
            })?;
            if !covers(&resource, mcp) {
                return Err(format!(
                    "the server's protected resource metadata is for {}, not for this server: \
                     toolwarden does not log in for it",
                    crate::upstream::remote::http::shown(&resource)
                ));
            }
            let issuer = metadata
                .authorization_servers
                .first()
                .ok_or("the server's protected resource metadata names no authorization server")?;
            let issuer = Url::parse(issuer)
                .map_err(|_| "the server's authorization server is not a URL".to_owned())?;
            (
                metadata.resource,
                issuer,
                metadata.scopes_supported.join(" "),
            )
        }
        // No metadata: the 2025-03-26 way, the MCP server's origin is the
        // authorization server.
        None => {
            let mut origin = mcp.clone();
            origin.set_path("/");
            origin.set_query(None);
            origin.set_fragment(None);
            let _ = origin.set_username("");
            let _ = origin.set_password(None);
            (resource_of(mcp), origin, String::new())
        }
    };
    if !reachable_from(&authorization_server, mcp) {
        return Err(format!(
            "the authorization server {} is not https://, or is on a private network the \
             server may not send toolwarden to",
            crate::upstream::remote::http::shown(&authorization_server)
        ));
    }
    let server = server_metadata(agent, &authorization_server)?;
    let scope = challenge
        .scope
        .clone()
        .or_else(|| (!scopes.is_empty()).then_some(scopes));
    Ok(Found {
        resource,
        scope,
        server,
    })
}

/// The MCP server's URL as a `resource`: without its fragment, query
/// or user info (which may hold secrets the authorization server and the
/// browser's history must not see).
fn resource_of(mcp: &Url) -> String {
    let mut url = mcp.clone();
    url.set_fragment(None);
    url.set_query(None);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

/// Whether tokens for `resource` serve `mcp`: the same origin, and a
/// path that is `mcp`'s or one of its parents.
fn covers(resource: &Url, mcp: &Url) -> bool {
    if resource.origin() != mcp.origin() {
        return false;
    }
    let theirs = resource.path().trim_end_matches('/');
    let ours = mcp.path().trim_end_matches('/');
    ours == theirs || ours.starts_with(&format!("{theirs}/"))
}

/// The protected resource metadata: at the challenge's URL, else at the
/// well-known URLs for the path and for the root. `None` when the server
/// has none at all.
fn resource_metadata(
    agent: &ureq::Agent,
    mcp: &Url,
    challenge: &Challenge,
) -> Result<Option<ResourceMetadata>, String> {
    if let Some(named) = &challenge.resource_metadata {
        let url = Url::parse(named)
            .ok()
            .filter(|u| u.origin() == mcp.origin() || reachable_from(u, mcp))
            .ok_or(
                "the server's 401 names its resource metadata at a URL toolwarden does not use",
            )?;
        return get_json(agent, &url, "the protected resource metadata").map(Some);
    }
    let mut candidates = Vec::new();
    let path = mcp.path().trim_end_matches('/');
    if !path.is_empty() {
        candidates.push(format!("/.well-known/oauth-protected-resource{path}"));
    }
    candidates.push("/.well-known/oauth-protected-resource".to_owned());
    for candidate in candidates {
        let mut url = mcp.clone();
        url.set_path(&candidate);
        url.set_query(None);
        url.set_fragment(None);
        if let Some(found) =
            super::get_json_if_there(agent, &url, "the protected resource metadata")?
        {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// The authorization server's metadata, from the well-known URLs of
/// RFC 8414 and OpenID Connect in the spec's order.
fn server_metadata(agent: &ureq::Agent, issuer: &Url) -> Result<ServerMetadata, String> {
    let path = issuer.path().trim_end_matches('/');
    let candidates = if path.is_empty() {
        vec![
            "/.well-known/oauth-authorization-server".to_owned(),
            "/.well-known/openid-configuration".to_owned(),
        ]
    } else {
        vec![
            format!("/.well-known/oauth-authorization-server{path}"),
            format!("/.well-known/openid-configuration{path}"),
            format!("{path}/.well-known/openid-configuration"),
        ]
    };
    for candidate in candidates {
        let mut url = issuer.clone();
        url.set_path(&candidate);
        url.set_query(None);
        url.set_fragment(None);
        let Some(metadata) = super::get_json_if_there::<ServerMetadata>(
            agent,
            &url,
            "the authorization server's metadata",
        )?
        else {
            continue;
        };
        if Url::parse(&metadata.issuer).ok().as_ref() != Some(issuer) {
            return Err(
                "the authorization server's metadata names another issuer than the server \
                 it was found for: toolwarden does not log in there"
                    .into(),
            );
        }
        if !metadata
            .code_challenge_methods_supported
            .iter()
            .any(|m| m == "S256")
        {
            return Err(
                "the authorization server does not offer PKCE with S256, which MCP requires".into(),
            );
        }
        for endpoint in [&metadata.authorization_endpoint, &metadata.token_endpoint]
            .into_iter()
            .chain(metadata.registration_endpoint.as_ref())
            .chain(metadata.revocation_endpoint.as_ref())
        {
            if !Url::parse(endpoint).is_ok_and(|u| reachable_from(&u, issuer)) {
                return Err(
                    "an endpoint of the authorization server is not https://, or is on a \
                     private network it may not send toolwarden to"
                        .into(),
                );
            }
        }
        return Ok(metadata);
    }
    Err(format!(
        "found no authorization server metadata for {}",
        crate::upstream::remote::http::shown(issuer)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_challenge_is_read_among_others() {
        let c = challenge(
            r#"Basic realm="x", Bearer error="invalid_token", error_description="No \"token\"", resource_metadata="http://127.0.0.1:9/.well-known/oauth-protected-resource/mcp", scope=mcp"#,
        )
        .unwrap();
        assert_eq!(
            c.resource_metadata.as_deref(),
            Some("http://127.0.0.1:9/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(c.scope.as_deref(), Some("mcp"));
        assert_eq!(c.error.as_deref(), Some("invalid_token"));
        assert!(!c.wants_scope());

        let c = challenge(r#"bearer error="insufficient_scope", scope="a b", Basic realm="r""#)
            .unwrap();
        assert!(c.wants_scope());
        assert_eq!(c.scope.as_deref(), Some("a b"));
        assert_eq!(challenge("Bearer").unwrap(), Challenge::default());
        assert_eq!(challenge(r#"Basic realm="Bearer""#), None);
        assert_eq!(challenge(""), None);
        // Cut short: what was read is kept.
        assert_eq!(
            challenge(r#"Bearer scope="a"#).unwrap().scope.as_deref(),
            Some("a")
        );
    }

    #[test]
    fn a_resource_covers_its_own_path_and_below() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(covers(&u("https://h/mcp"), &u("https://h/mcp")));
        assert!(covers(&u("https://h/"), &u("https://h/mcp")));
        assert!(covers(&u("https://h/mcp/"), &u("https://h/mcp")));
        assert!(covers(&u("https://h/a"), &u("https://h/a/mcp")));
        assert!(!covers(&u("https://h/a"), &u("https://h/ab")));
        assert!(!covers(&u("https://h/mcp"), &u("https://other/mcp")));
        assert!(!covers(&u("http://h/mcp"), &u("https://h/mcp")));
        assert!(!covers(&u("https://h/mcp/deeper"), &u("https://h/mcp")));
    }
}
