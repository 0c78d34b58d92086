//! OAuth 2.1 for a remote server, as MCP's authorization spec describes
//! it: a 401 starts discovery (discovery.rs), a login registers
//! toolwarden, sends the person's browser to the authorization server
//! with PKCE and brings the code back to a loopback port (flow.rs), and
//! the tokens are kept per server in the state directory (store.rs) and
//! refreshed without a browser.
//!
//! Within a session a login happens only when no kept token serves and
//! a browser can be opened; otherwise the session's error says to run
//! `toolwarden login URL`, which logs in ahead of time.

mod discovery;
mod flow;
mod store;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use tracing::{info, warn};
use ureq::http::HeaderValue;
use url::Url;

use super::headers::{Authorizer, Unauthorized};
use super::{http, lock};
use discovery::Challenge;
use flow::TokenError;
use store::Tokens;

/// The longest metadata or token answer read.
const MAX_BODY: u64 = 256 * 1024;

/// An OAuth request (metadata, registration, tokens) gives up after this
/// long: renewals hold the session's requests while they run.
pub(super) const TIMEOUT: Duration = Duration::from_secs(30);

/// How long a session waits for another process's renewal, which may be
/// a person's login.
const LOCK_WAIT: Duration = Duration::from_secs(flow::LOGIN_WAIT.as_secs() + 60);

/// The OAuth of one remote session.
pub struct OAuth {
    /// The MCP server's URL, as given.
    mcp: Url,
    /// The session's agent; the one OAuth uses is made on first use with
    /// the system's roots (the authorization server is often https://
    /// when the MCP server is not).
    plain: ureq::Agent,
    agent: OnceLock<ureq::Agent>,
    /// Where the tokens are kept; `None` without a state directory (they
    /// then last as long as the session).
    file: Option<PathBuf>,
    /// The tokens in use.
    held: Mutex<Option<Tokens>>,
    /// One renewal at a time within the process (the file's lock keeps
    /// other processes out).
    renewing: Mutex<()>,
    /// `--oauth-client-id`: log in as this client, not a registered one.
    client_id: Option<String>,
    /// The scopes a 403 asked for, each logged in for once a session.
    stepped_up: Mutex<HashSet<String>>,
}

impl OAuth {
    /// OAuth for the server at `mcp`, with the tokens a login kept, if any.
    pub fn new(mcp: &Url, agent: ureq::Agent, client_id: Option<String>) -> OAuth {
        let file = store::path(mcp);
        let held = file.as_deref().and_then(store::read);
        if held.is_some() {
            info!("using the OAuth tokens kept for this server");
        }
        OAuth {
            mcp: mcp.clone(),
            plain: agent,
            agent: OnceLock::new(),
            file,
            held: Mutex::new(held),
            renewing: Mutex::new(()),
            client_id,
            stepped_up: Mutex::new(HashSet::new()),
        }
    }

    fn agent(&self) -> &ureq::Agent {
        self.agent
            .get_or_init(|| http::agent(true).unwrap_or_else(|_| self.plain.clone()))
    }

    /// The token file locked, or why not.
    fn lock_file(&self) -> Option<Result<store::Renewing, String>> {
        let file = self.file.as_deref()?;
        Some(
            store::lock(file, LOCK_WAIT)
                .map_err(|e| format!("cannot lock {}: {e}", file.display())),
        )
    }

    /// Keeps `tokens` in use and on disk. A refresh's tokens are not
    /// written back when the file is gone: `logout` removed it.
    fn adopt(&self, tokens: Tokens, login: bool) {
        if let Some(file) = self.file.as_ref().filter(|f| login || f.exists()) {
            if let Err(e) = store::write(file, &tokens) {
                warn!(
                    "cannot keep the OAuth tokens in {} ({e}): they last this session only",
                    file.display()
                );
            }
        }
        *lock(&self.held) = Some(tokens);
    }

    /// The kept tokens, if another process renewed them since `sent` was
    /// given out and they are still good.
    fn renewed_elsewhere(&self, sent: Option<&str>) -> Option<Tokens> {
        let on_disk = self.file.as_deref().and_then(store::read)?;
        (Some(on_disk.access_token.as_str()) != sent && !on_disk.expires_within(0))
            .then_some(on_disk)
    }

    /// The tokens to refresh from, under the file's lock: the kept ones
    /// (another process may have spent the refresh token held here and
    /// kept its successor), else those held.
    fn to_refresh(&self, held: Option<Tokens>) -> Option<Tokens> {
        self.file
            .as_deref()
            .and_then(store::read)
            .filter(|t| t.refresh_token.is_some())
            .or(held)
            .filter(|t| t.refresh_token.is_some())
    }

    /// Refreshes ahead of the expiry, when the token in use is `sent`.
    /// Failing, the old token goes out: its 401 takes the longer way.
    fn refresh_ahead(&self, sent: &str) {
        let _one = lock(&self.renewing);
        let held = lock(&self.held).clone();
        let Some(held) = held.filter(|h| h.access_token == sent) else {
            return;
        };
        // Without the file's lock the old token goes out: its 401 takes
        // the longer way.
        let _file = match self.lock_file() {
            Some(Ok(file)) => Some(file),
            Some(Err(e)) => return info!("{e}"),
            None => None,
        };
        if let Some(renewed) = self.renewed_elsewhere(Some(sent)) {
            *lock(&self.held) = Some(renewed);
            return;
        }
        let Some(base) = self.to_refresh(Some(held)) else {
            return;
        };
        self.refresh_held(&base);
    }

    /// Refreshes from `base`, keeping what comes; failing, says so at info.
    fn refresh_held(&self, base: &Tokens) {
        match flow::refresh(self.agent(), base) {
            Ok(tokens) => {
                info!("refreshed the OAuth access token");
                self.adopt(tokens, false);
            }
            Err(e) => info!("cannot refresh the OAuth access token: {}", e.words()),
        }
    }
}

impl Authorizer for OAuth {
    fn authorization(&self) -> Option<HeaderValue> {
        let (token, refresh) = {
            let held = lock(&self.held);
            let held = held.as_ref()?;
            (held.access_token.clone(), held.due())
        };
        let token = if refresh {
            self.refresh_ahead(&token);
            lock(&self.held).as_ref()?.access_token.clone()
        } else {
            token
        };
        bearer(&token)
    }

    fn unauthorized(&self, challenge: Option<&str>, sent: Option<&HeaderValue>) -> Unauthorized {
        let challenge = challenge.and_then(discovery::challenge).unwrap_or_default();
        let sent = sent
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let _one = lock(&self.renewing);
        let held = lock(&self.held).clone();
        let mut previous = held.clone();
        if challenge.wants_scope() {
            // A step-up: once a session for each scope asked, so that a
            // server that keeps asking does not open a page per request.
            let scope = challenge.scope.clone().unwrap_or_default();
            if !lock(&self.stepped_up).insert(scope) {
                return Unauthorized::GiveUp(
                    "the server asks for more scope (HTTP 403) than the login gave".into(),
                );
            }
        } else if held
            .as_ref()
            .is_some_and(|h| Some(h.access_token.as_str()) != sent)
        {
            // Another request renewed the token since this one was sent.
            return Unauthorized::Retry;
        }
        let _file = match self.lock_file() {
            Some(Ok(file)) => Some(file),
            Some(Err(e)) => return Unauthorized::GiveUp(e),
            None => None,
        };
        if !challenge.wants_scope() {
            if let Some(renewed) = self.renewed_elsewhere(sent) {
                *lock(&self.held) = Some(renewed);
                return Unauthorized::Retry;
            }
            if let Some(base) = self.to_refresh(held) {
                match flow::refresh(self.agent(), &base) {
                    Ok(tokens) => {
                        info!("refreshed the OAuth access token");
                        self.adopt(tokens, false);
                        return Unauthorized::Retry;
                    }
                    // Spent or revoked: a new login, and a new
                    // registration (the client may be forgotten too).
                    Err(TokenError::Rejected(words)) => {
                        info!("the OAuth refresh token no longer serves: {words}");
                        previous = None;
                    }
                    Err(TokenError::Failed(words)) => return Unauthorized::GiveUp(words),
                }
            }
        }
        let login = Login {
            previous: previous.as_ref(),
            client_id: self.client_id.as_deref(),
            in_session: true,
        };
        match log_in(self.agent(), &self.mcp, &challenge, login) {
            Ok(tokens) => {
                self.adopt(tokens, true);
                Unauthorized::Retry
            }
            Err(words) => Unauthorized::GiveUp(words),
        }
    }
}

/// Whether a `WWW-Authenticate` value's Bearer challenge asks for more
/// scope (a 403's step-up).
pub fn asks_for_scope(header: &str) -> bool {
    discovery::challenge(header).is_some_and(|c| c.wants_scope())
}

/// `Bearer TOKEN`, marked sensitive.
fn bearer(token: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// How a login goes.
struct Login<'a> {
    /// The tokens before, whose registration may serve again.
    previous: Option<&'a Tokens>,
    /// `--oauth-client-id`.
    client_id: Option<&'a str>,
    /// Within a session: when no browser opens, give up with words that
    /// say to run `toolwarden login` (a person at a terminal can open the
    /// printed page themselves).
    in_session: bool,
}

/// Logs in to the MCP server at `mcp`: discovery from `challenge`, the
/// client (`--oauth-client-id`, the registration kept if it fits, else a
/// new registration), the browser and its redirect, the tokens.
fn log_in(
    agent: &ureq::Agent,
    mcp: &Url,
    challenge: &Challenge,
    how: Login,
) -> Result<Tokens, String> {
    let Login {
        previous,
        client_id,
        in_session,
    } = how;
    let shown = http::shown(mcp);
    if !secure(mcp) {
        return Err(format!(
            "{shown} wants an OAuth login, which toolwarden does only over https:// (or to \
             this machine): its tokens would cross the network unencrypted"
        ));
    }
    let run_login = |why: &str| {
        format!(
            "{shown} wants an OAuth login and {why}: run `toolwarden login {shown}` in a \
             terminal, then start the session again"
        )
    };
    // A server without OAuth of its own wants a token given by hand.
    let found = discovery::discover(agent, mcp, challenge).map_err(|why| {
        format!(
            "the server wants authorization (HTTP 401) and toolwarden cannot log in with \
             OAuth there ({why}); give a token with --header 'Authorization: Bearer ${{TOKEN}}'"
        )
    })?;
    if in_session {
        flow::can_open_browser().map_err(|why| run_login(&why))?;
    }
    let registered = previous
        .filter(|t| t.issuer == found.server.issuer)
        .map(|t| &t.client);
    let port = registered
        .and_then(|c| Url::parse(&c.redirect_uri).ok())
        .and_then(|u| u.port());
    let listener = flow::listen(port)?;
    let redirect = flow::redirect_uri(&listener)?;
    let client = match (client_id, registered) {
        (Some(id), _) => store::Client {
            id: id.to_owned(),
            secret: None,
            auth_method: "none".into(),
            redirect_uri: redirect,
        },
        (None, Some(client)) if client.redirect_uri == redirect => client.clone(),
        (None, _) => flow::register(agent, &found, &redirect)?,
    };
    let attempt = flow::attempt(&found, &client)?;
    let deadline = Instant::now() + flow::LOGIN_WAIT;
    let page = format!(
        "to log in to {shown}, open this page in a browser:\n  {}",
        attempt.url
    );
    if in_session {
        // The page is shown once a browser took it: without one, the
        // session cannot wait for a person.
        flow::open_browser(attempt.url.as_str()).map_err(|why| run_login(&why))?;
        eprintln!("toolwarden: a browser was opened; if no page came up, {page}");
    } else {
        eprintln!("toolwarden: {page}");
        if let Err(why) = flow::open_browser(attempt.url.as_str()) {
            eprintln!("toolwarden: {why}; open the page yourself");
        }
    }
    let code = flow::wait_for_code(
        &listener,
        &attempt,
        &found.server.issuer,
        found.server.authorization_response_iss_parameter_supported,
        deadline,
    )?;
    let tokens = flow::exchange_code(agent, &found, &client, &attempt, &code, mcp.as_str())
        .map_err(TokenError::words)?;
    info!("logged in to {shown} with OAuth");
    Ok(tokens)
}

/// `toolwarden login URL`: asks the server without a token, and logs in
/// if it answers 401. Says what happened, for the person.
pub fn login(mcp: &Url, client_id: Option<&str>) -> Result<String, String> {
    let shown = http::shown(mcp);
    let agent = http::agent(true)?;
    let Some(challenge) = probe(&agent, mcp)? else {
        return Ok(format!(
            "{shown} asks for no authorization: there is nothing to log in to"
        ));
    };
    let file = store::path(mcp)
        .ok_or("neither XDG_STATE_HOME nor HOME is set: there is nowhere to keep the tokens")?;
    let _file = store::lock(&file, LOCK_WAIT)
        .map_err(|e| format!("cannot lock {}: {e}", file.display()))?;
    let previous = store::read(&file);
    let how = Login {
        previous: previous.as_ref(),
        client_id,
        in_session: false,
    };
    let tokens = log_in(&agent, mcp, &challenge, how)?;
    store::write(&file, &tokens)
        .map_err(|e| format!("cannot keep the tokens in {}: {e}", file.display()))?;
    Ok(format!(
        "logged in to {shown}; the tokens are kept in {}",
        file.display()
    ))
}

/// `toolwarden logout URL`: forgets the tokens kept for the server.
pub fn logout(mcp: &Url) -> Result<String, String> {
    let shown = http::shown(mcp);
    let file = store::path(mcp).ok_or("neither XDG_STATE_HOME nor HOME is set")?;
    let _file = store::lock(&file, Duration::from_secs(10))
        .map_err(|e| format!("cannot lock {}: {e}", file.display()))?;
    let Some(tokens) = store::read(&file) else {
        return match store::remove(&file) {
            Ok(_) => Ok(format!("no OAuth tokens are kept for {shown}")),
            Err(e) => Err(format!("cannot remove {}: {e}", file.display())),
        };
    };
    // Revoked first, so that a copy of the file serves no one; forgotten
    // whatever the server says.
    let revoked = http::agent(true).and_then(|agent| flow::revoke(&agent, &tokens));
    store::remove(&file).map_err(|e| format!("cannot remove {}: {e}", file.display()))?;
    Ok(match revoked {
        Ok(()) => format!(
            "revoked the OAuth tokens of {shown} at its authorization server and forgot them"
        ),
        Err(why) => format!("forgot the OAuth tokens kept for {shown} ({why})"),
    })
}

/// Asks the server at `mcp` without credentials: the challenge of its
/// 401, or `None` when it lets toolwarden in. An `initialize` POST
/// (Streamable HTTP), then a GET (HTTP+SSE's stream) when the POST is
/// turned away otherwise.
fn probe(agent: &ureq::Agent, mcp: &Url) -> Result<Option<Challenge>, String> {
    let initialize = serde_json::json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "toolwarden", "version": env!("CARGO_PKG_VERSION")},
        },
    });
    let unreachable = |e: ureq::Error| {
        format!(
            "{} cannot be reached: {}",
            http::shown(mcp),
            http::failure(&e)
        )
    };
    let posted = agent
        .post(mcp.as_str())
        .config()
        .timeout_global(Some(TIMEOUT))
        .build()
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .send(initialize.to_string().as_bytes())
        .map_err(unreachable)?;
    let answered = if posted.status().is_client_error() && posted.status() != 401 {
        agent
            .get(mcp.as_str())
            .config()
            .timeout_global(Some(TIMEOUT))
            .build()
            .header("accept", "text/event-stream")
            .call()
            .map_err(unreachable)?
    } else {
        posted
    };
    let status = answered.status();
    if status == 401 {
        let header = answered
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        return Ok(Some(discovery::challenge(&header).unwrap_or_default()));
    }
    if status.is_success() {
        if let Some(id) = answered.headers().get("mcp-session-id").cloned() {
            // The session the probe opened is ended at once.
            let _ = agent
                .delete(mcp.as_str())
                .header("mcp-session-id", id)
                .call();
        }
        return Ok(None);
    }
    Err(format!(
        "{} answered {} without asking for a login",
        http::shown(mcp),
        http::status(status)
    ))
}

/// Whether a URL may carry OAuth's secrets: https://, or http:// to this
/// machine.
fn secure(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => local(url),
        _ => false,
    }
}

/// Whether a URL is on this machine.
fn local(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Whether a URL names a host of a private network (or this machine):
/// loopback, private, link-local or unspecified addresses.
fn private(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(_)) => local(url),
        Some(url::Host::Ipv4(ip)) => {
            ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified()
        }
        Some(url::Host::Ipv6(ip)) => {
            let first = ip.segments()[0];
            ip.is_loopback()
                || ip.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || ip
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_loopback() || v4.is_private() || v4.is_link_local())
        }
        None => true,
    }
}

/// Whether toolwarden fetches or posts to `url` on the word of `from`
/// (the MCP server, or the authorization server): a secure URL, and one
/// on a private network only when `from` is on this machine too, so
/// that a server out there cannot aim toolwarden at the machine's own
/// services.
fn reachable_from(url: &Url, from: &Url) -> bool {
    secure(url) && (local(from) || !private(url))
}

/// A body, at most `limit` bytes of it.
fn read_limited(response: ureq::http::Response<ureq::Body>, limit: u64) -> Result<Vec<u8>, String> {
    response
        .into_body()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| {
            format!(
                "cannot read the authorization server's answer: {}",
                http::failure(&e)
            )
        })
}

/// GETs the JSON document `what` at `url`.
fn get_json<T: DeserializeOwned>(agent: &ureq::Agent, url: &Url, what: &str) -> Result<T, String> {
    get_json_if_there(agent, url, what)?
        .ok_or_else(|| format!("{what} is not at {}", http::shown(url)))
}

/// GETs the JSON document `what` at `url`: `None` when the server has
/// none there (a 404 or another client error).
fn get_json_if_there<T: DeserializeOwned>(
    agent: &ureq::Agent,
    url: &Url,
    what: &str,
) -> Result<Option<T>, String> {
    let response = agent
        .get(url.as_str())
        .config()
        .timeout_global(Some(TIMEOUT))
        .build()
        .header("accept", "application/json")
        .call()
        .map_err(|e| format!("cannot fetch {what}: {}", http::failure(&e)))?;
    let status = response.status();
    if status.is_client_error() {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(format!(
            "cannot fetch {what}: the server answered {}",
            http::status(status)
        ));
    }
    let body = read_limited(response, MAX_BODY)?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|_| format!("{what} at {} is not as expected", http::shown(url)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_go_over_https_or_to_this_machine_only() {
        let s = |u: &str| secure(&Url::parse(u).unwrap());
        assert!(s("https://example.com/token"));
        assert!(s("http://127.0.0.1:8080/token"));
        assert!(s("http://[::1]:8080/token"));
        assert!(s("http://localhost/token"));
        assert!(!s("http://example.com/token"));
        assert!(!s("http://10.0.0.1/token"));
        assert!(!s("ftp://127.0.0.1/token"));
    }

    #[test]
    fn a_server_out_there_cannot_aim_at_this_machine() {
        let u = |s: &str| Url::parse(s).unwrap();
        let far = u("https://mcp.example.com/mcp");
        let near = u("http://127.0.0.1:8000/mcp");
        assert!(reachable_from(&u("https://auth.example.com/token"), &far));
        assert!(!reachable_from(&u("http://127.0.0.1:9/admin"), &far));
        assert!(!reachable_from(&u("https://127.0.0.1:9/admin"), &far));
        assert!(!reachable_from(&u("https://10.1.2.3/token"), &far));
        assert!(!reachable_from(&u("https://192.168.1.1/token"), &far));
        assert!(!reachable_from(&u("https://169.254.169.254/latest"), &far));
        assert!(!reachable_from(&u("https://[fd00::1]/token"), &far));
        assert!(!reachable_from(
            &u("https://[::ffff:127.0.0.1]/token"),
            &far
        ));
        assert!(!reachable_from(&u("https://localhost/token"), &far));
        assert!(reachable_from(&u("http://127.0.0.1:9/token"), &near));
        assert!(reachable_from(&u("https://auth.example.com/token"), &near));
        assert!(!reachable_from(&u("http://auth.example.com/token"), &near));
    }
}
