//! A login, step by step: dynamic client registration (RFC 7591), the
//! authorization request with PKCE (S256), `state` and `resource`, the
//! browser, the redirect back to a loopback port (RFC 8252), and the
//! token endpoint (the code exchanged, a refresh token spent).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use base64::Engine;
use serde::Deserialize;
use url::Url;

use super::discovery::Found;
use super::store::{lifetime, Client, Tokens};
use super::{read_limited, MAX_BODY, TIMEOUT};

/// How long a login waits for the browser to come back.
pub const LOGIN_WAIT: Duration = Duration::from_secs(300);

/// An opener that is still running after this long is taken to have
/// opened the page (a browser may run until its window closes).
const OPENER_WAIT: Duration = Duration::from_secs(3);

/// The redirect's path on the loopback port.
const CALLBACK: &str = "/callback";

/// 32 random bytes, base64url: a PKCE verifier or a `state`.
fn random_text() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    crate::audit::random(&mut bytes).map_err(|e| format!("no random bytes for a login: {e}"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The loopback port the browser comes back to: `port` when it is free
/// (a registered client's redirect names it), else any.
pub fn listen(port: Option<u16>) -> Result<TcpListener, String> {
    if let Some(port) = port {
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return Ok(listener);
        }
    }
    TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| format!("cannot listen on a loopback port for the login: {e}"))
}

/// The redirect URI for `listener`.
pub fn redirect_uri(listener: &TcpListener) -> Result<String, String> {
    let port = listener
        .local_addr()
        .map_err(|e| format!("cannot listen for the login: {e}"))?
        .port();
    Ok(format!("http://127.0.0.1:{port}{CALLBACK}"))
}

/// Registers toolwarden with the authorization server for `redirect`.
pub fn register(agent: &ureq::Agent, found: &Found, redirect: &str) -> Result<Client, String> {
    let endpoint = found.server.registration_endpoint.as_deref().ok_or(
        "the authorization server does not register clients (dynamic registration): \
         toolwarden cannot log in there",
    )?;
    let mut request = serde_json::json!({
        "client_name": "toolwarden",
        "redirect_uris": [redirect],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    });
    if let Some(scope) = &found.scope {
        request["scope"] = scope.clone().into();
    }
    #[derive(Deserialize)]
    struct Registered {
        client_id: String,
        #[serde(default)]
        client_secret: Option<String>,
        #[serde(default)]
        token_endpoint_auth_method: Option<String>,
    }
    let response = agent
        .post(endpoint)
        .config()
        .timeout_global(Some(TIMEOUT))
        .build()
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .send(request.to_string().as_bytes())
        .map_err(|e| {
            format!(
                "cannot register with the authorization server: {}",
                crate::upstream::remote::http::failure(&e)
            )
        })?;
    let status = response.status();
    let body = read_limited(response, MAX_BODY)?;
    if !status.is_success() {
        return Err(format!(
            "the authorization server refused to register toolwarden ({}){}",
            crate::upstream::remote::http::status(status),
            said(&body)
        ));
    }
    let registered: Registered = serde_json::from_slice(&body)
        .map_err(|_| "the authorization server's registration answer is not as expected")?;
    let auth_method = registered.token_endpoint_auth_method.unwrap_or_else(|| {
        if registered.client_secret.is_some() {
            "client_secret_basic".into()
        } else {
            "none".into()
        }
    });
    Ok(Client {
        id: registered.client_id,
        secret: registered.client_secret,
        auth_method,
        redirect_uri: redirect.to_owned(),
    })
}

/// A login under way: what the authorization URL carries and the
/// redirect must match.
pub struct Attempt {
    pub url: Url,
    state: String,
    verifier: String,
}

/// The authorization request's URL for `client`.
pub fn attempt(found: &Found, client: &Client) -> Result<Attempt, String> {
    use sha2::Digest;
    let verifier = random_text()?;
    let state = random_text()?;
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let mut url = Url::parse(&found.server.authorization_endpoint)
        .map_err(|_| "the authorization endpoint is not a URL")?;
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &client.id)
            .append_pair("redirect_uri", &client.redirect_uri)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", &state)
            .append_pair("resource", &found.resource);
        if let Some(scope) = &found.scope {
            query.append_pair("scope", scope);
        }
    }
    Ok(Attempt {
        url,
        state,
        verifier,
    })
}

/// Whether a browser may be opened at all (`$BROWSER`, or a desktop):
/// the reason when not.
pub fn can_open_browser() -> Result<(), String> {
    openers("").map(drop)
}

/// Opens `url` in the person's browser: `$BROWSER` (a `:`-separated list
/// of commands, `%s` standing for the URL, else the URL added), else the
/// desktop's opener. The opener's output goes to stderr: stdout is the
/// protocol's. An error says why no page could be opened.
pub fn open_browser(url: &str) -> Result<(), String> {
    let mut failed = Vec::new();
    for words in openers(url)? {
        match run_opener(&words) {
            Ok(()) => return Ok(()),
            Err(why) => failed.push(format!("{}: {why}", words[0])),
        }
    }
    Err(format!("no browser opened ({})", failed.join("; ")))
}

/// The commands that may open `url`, in order.
fn openers(url: &str) -> Result<Vec<Vec<String>>, String> {
    let mut commands: Vec<Vec<String>> = Vec::new();
    match std::env::var("BROWSER") {
        Ok(list) if !list.trim().is_empty() => {
            for entry in list.split(':').filter(|e| !e.trim().is_empty()) {
                let mut words: Vec<String> = entry.split_whitespace().map(str::to_owned).collect();
                if words.iter().any(|w| w.contains("%s")) {
                    for word in &mut words {
                        *word = word.replace("%s", url);
                    }
                } else {
                    words.push(url.to_owned());
                }
                commands.push(words);
            }
        }
        _ if cfg!(target_os = "macos") => commands.push(vec!["open".into(), url.into()]),
        _ if std::env::var_os("DISPLAY").is_some()
            || std::env::var_os("WAYLAND_DISPLAY").is_some() =>
        {
            commands.push(vec!["xdg-open".into(), url.into()])
        }
        _ => return Err("$BROWSER is not set and there is no display to open a browser on".into()),
    }
    Ok(commands)
}

/// Runs one opener: it opened the page if it exits 0, or is still running
/// after [`OPENER_WAIT`].
fn run_opener(words: &[String]) -> Result<(), String> {
    use std::os::fd::AsFd;
    let to_stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null());
    let mut child = Command::new(&words[0])
        .args(&words[1..])
        .stdin(Stdio::null())
        .stdout(to_stderr)
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + OPENER_WAIT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("it failed ({status})")),
            Ok(None) if Instant::now() >= deadline => {
                // Still running: waited for elsewhere, so that it leaves
                // no zombie behind.
                std::thread::spawn(move || child.wait());
                return Ok(());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Waits for the browser's redirect on `listener` (until `deadline`):
/// the authorization code, once a request carries this attempt's `state`.
/// Requests with another state are answered and ignored: a page cannot
/// hand toolwarden a code of its own choosing. Each connection is read on
/// a thread of its own, within [`REQUEST_WAIT`], so that a slow one does
/// not hold up the browser's.
pub fn wait_for_code(
    listener: &TcpListener,
    attempt: &Attempt,
    issuer: &str,
    iss_required: bool,
    deadline: Instant,
) -> Result<String, String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot wait for the login: {e}"))?;
    let expect = Arc::new(Expect {
        state: attempt.state.clone(),
        issuer: issuer.to_owned(),
        iss_required,
    });
    let (done, outcome) = mpsc::channel();
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        if let Ok(outcome) = outcome.try_recv() {
            return outcome;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the login did not finish within {} minutes",
                LOGIN_WAIT.as_secs() / 60
            ));
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => return Err(format!("cannot wait for the login: {e}")),
        };
        if open.load(Ordering::SeqCst) >= MAX_REQUESTS {
            continue;
        }
        open.fetch_add(1, Ordering::SeqCst);
        let (expect, done, open) = (Arc::clone(&expect), done.clone(), Arc::clone(&open));
        let spawned = std::thread::Builder::new()
            .name("login-callback".into())
            .spawn(move || {
                if let Some(outcome) = callback(stream, &expect) {
                    let _ = done.send(outcome);
                }
                open.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            return Err("cannot start a thread to take the login's redirect".into());
        }
    }
}

/// A connection to the loopback port is read this long at most.
const REQUEST_WAIT: Duration = Duration::from_secs(2);

/// Connections read at once; more are closed unread.
const MAX_REQUESTS: usize = 16;

/// The longest request line read.
const MAX_REQUEST_LINE: usize = 16 * 1024;

/// What the redirect must carry.
struct Expect {
    state: String,
    issuer: String,
    iss_required: bool,
}

/// The request line of a connection, read within [`REQUEST_WAIT`] all
/// told (a client that sends a byte at a time gets no longer).
fn request_line(stream: &TcpStream) -> Option<String> {
    use std::io::Read;
    let until = Instant::now() + REQUEST_WAIT;
    let mut line = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        stream.set_read_timeout(Some(left)).ok()?;
        let n = (&*stream).read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        line.extend_from_slice(&chunk[..n]);
        if let Some(end) = line.iter().position(|&b| b == b'\n') {
            line.truncate(end);
            return String::from_utf8(line).ok();
        }
        if line.len() > MAX_REQUEST_LINE {
            return None;
        }
    }
}

/// Reads one request on the loopback port: `None` when it is not this
/// login's redirect.
fn callback(mut stream: TcpStream, expect: &Expect) -> Option<Result<String, String>> {
    let _ = stream.set_nonblocking(false);
    let line = request_line(&stream).unwrap_or_default();
    let target = line
        .strip_prefix("GET ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|target| Url::parse(&format!("http://127.0.0.1{target}")).ok());
    let Some(target) = target.filter(|t| t.path() == CALLBACK) else {
        reply(&mut stream, "404 Not Found", "Not a page of toolwarden's.");
        return None;
    };
    let param = |name: &str| {
        target
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    if param("state").as_deref() != Some(expect.state.as_str()) {
        reply(
            &mut stream,
            "400 Bad Request",
            "This is not the login toolwarden is waiting for.",
        );
        return None;
    }
    // RFC 9207: the issuer says it sent the redirect.
    match param("iss") {
        Some(iss) if Url::parse(&iss).ok() != Url::parse(&expect.issuer).ok() => {
            reply(
                &mut stream,
                "400 Bad Request",
                "The login came from another server.",
            );
            return Some(Err(
                "the login's redirect came from another authorization server".into(),
            ));
        }
        None if expect.iss_required => {
            reply(
                &mut stream,
                "400 Bad Request",
                "The login did not say where it came from.",
            );
            return Some(Err(
                "the login's redirect did not name its authorization server".into(),
            ));
        }
        _ => {}
    }
    if let Some(error) = param("error") {
        reply(
            &mut stream,
            "200 OK",
            "The login did not succeed: you can close this page.",
        );
        let error = crate::redact::peer_line(&error);
        return Some(Err(format!("the authorization server said no: {error}")));
    }
    match param("code") {
        Some(code) => {
            reply(
                &mut stream,
                "200 OK",
                "toolwarden is logged in: you can close this page.",
            );
            Some(Ok(code))
        }
        None => {
            reply(
                &mut stream,
                "400 Bad Request",
                "The login came back without a code.",
            );
            Some(Err("the login's redirect carried no code".into()))
        }
    }
}

fn reply(stream: &mut TcpStream, status: &str, words: &str) {
    let body =
        format!("<!doctype html><meta charset=utf-8><title>toolwarden</title><p>{words}</p>\n");
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\n\
         cache-control: no-store\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Why the token endpoint said no.
pub enum TokenError {
    /// The grant is spent or revoked (`invalid_grant`), or the client is
    /// no longer known (`invalid_client`): only a new login helps.
    Rejected(String),
    /// Anything else: the server cannot be reached, or answered oddly.
    Failed(String),
}

impl TokenError {
    pub fn words(self) -> String {
        match self {
            TokenError::Rejected(words) | TokenError::Failed(words) => words,
        }
    }
}

/// The authorization code exchanged for tokens.
pub fn exchange_code(
    agent: &ureq::Agent,
    found: &Found,
    client: &Client,
    attempt: &Attempt,
    code: &str,
    server: &str,
) -> Result<Tokens, TokenError> {
    let granted = token_request(
        agent,
        &found.server.token_endpoint,
        client,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &client.redirect_uri),
            ("code_verifier", &attempt.verifier),
            ("resource", &found.resource),
        ],
    )?;
    let (expires_at, refresh_at) = lifetime(granted.expires_in);
    Ok(Tokens {
        server: server.to_owned(),
        resource: found.resource.clone(),
        issuer: found.server.issuer.clone(),
        token_endpoint: found.server.token_endpoint.clone(),
        revocation_endpoint: found.server.revocation_endpoint.clone(),
        client: client.clone(),
        access_token: granted.access_token,
        refresh_token: granted.refresh_token,
        expires_at,
        refresh_at,
        scope: granted.scope.or_else(|| found.scope.clone()),
    })
}

/// New tokens for the refresh token of `tokens`.
pub fn refresh(agent: &ureq::Agent, tokens: &Tokens) -> Result<Tokens, TokenError> {
    let refresh_token = tokens
        .refresh_token
        .as_deref()
        .ok_or_else(|| TokenError::Rejected("no refresh token is kept".into()))?;
    let granted = token_request(
        agent,
        &tokens.token_endpoint,
        &tokens.client,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("resource", &tokens.resource),
        ],
    )?;
    let (expires_at, refresh_at) = lifetime(granted.expires_in);
    Ok(Tokens {
        access_token: granted.access_token,
        // A server that does not rotate refresh tokens sends none.
        refresh_token: granted.refresh_token.or(tokens.refresh_token.clone()),
        expires_at,
        refresh_at,
        scope: granted.scope.or(tokens.scope.clone()),
        ..tokens.clone()
    })
}

/// A token endpoint's answer (RFC 6749 5.1), the fields read.
#[derive(Deserialize)]
struct Granted {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    scope: Option<String>,
}

/// POSTs a form to the token endpoint, with the client's credentials as
/// its registration said.
fn token_request(
    agent: &ureq::Agent,
    endpoint: &str,
    client: &Client,
    fields: &[(&str, &str)],
) -> Result<Granted, TokenError> {
    let response = post_form(agent, endpoint, client, fields).map_err(|e| {
        TokenError::Failed(format!(
            "cannot reach the authorization server's token endpoint: {}",
            crate::upstream::remote::http::failure(&e)
        ))
    })?;
    let status = response.status();
    let body = read_limited(response, MAX_BODY).map_err(TokenError::Failed)?;
    if !status.is_success() {
        #[derive(Deserialize)]
        struct Refusal {
            error: String,
        }
        let refusal = serde_json::from_slice::<Refusal>(&body).ok();
        let words = format!(
            "the authorization server refused the tokens ({}){}",
            crate::upstream::remote::http::status(status),
            said(&body)
        );
        return Err(match refusal.as_ref().map(|r| r.error.as_str()) {
            Some("invalid_grant" | "invalid_client" | "unauthorized_client") => {
                TokenError::Rejected(words)
            }
            _ => TokenError::Failed(words),
        });
    }
    let granted: Granted = serde_json::from_slice(&body).map_err(|_| {
        TokenError::Failed("the authorization server's token answer is not as expected".into())
    })?;
    if granted
        .token_type
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
    {
        return Err(TokenError::Failed(
            "the authorization server gave a token that is not a Bearer token".into(),
        ));
    }
    Ok(granted)
}

/// POSTs a form to an endpoint of the authorization server, with the
/// client's credentials as its registration said.
fn post_form(
    agent: &ureq::Agent,
    endpoint: &str,
    client: &Client,
    fields: &[(&str, &str)],
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.extend_pairs(fields);
    let mut request = agent
        .post(endpoint)
        .config()
        .timeout_global(Some(TIMEOUT))
        .build()
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json");
    match (client.auth_method.as_str(), &client.secret) {
        ("client_secret_basic", Some(secret)) => {
            let encode =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", encode(&client.id), encode(secret));
            let basic = base64::engine::general_purpose::STANDARD.encode(pair);
            request = request.header("authorization", format!("Basic {basic}"));
        }
        ("client_secret_post", Some(secret)) => {
            form.append_pair("client_id", &client.id);
            form.append_pair("client_secret", secret);
        }
        _ => {
            form.append_pair("client_id", &client.id);
        }
    }
    request.send(form.finish().as_bytes())
}

/// Revokes the tokens at the authorization server (RFC 7009): the
/// refresh token (which takes its access tokens with it at most servers),
/// then the access token. An error says why not.
pub fn revoke(agent: &ureq::Agent, tokens: &Tokens) -> Result<(), String> {
    let endpoint = tokens
        .revocation_endpoint
        .as_deref()
        .ok_or("the authorization server offers no revocation")?;
    let mut revoked = vec![("access_token", tokens.access_token.as_str())];
    if let Some(refresh) = &tokens.refresh_token {
        revoked.insert(0, ("refresh_token", refresh.as_str()));
    }
    for (hint, token) in revoked {
        let fields = [("token", token), ("token_type_hint", hint)];
        let response = post_form(agent, endpoint, &tokens.client, &fields).map_err(|e| {
            format!(
                "cannot reach the authorization server to revoke the tokens: {}",
                crate::upstream::remote::http::failure(&e)
            )
        })?;
        if !response.status().is_success() {
            return Err(format!(
                "the authorization server did not revoke the tokens ({})",
                crate::upstream::remote::http::status(response.status())
            ));
        }
    }
    Ok(())
}

/// `: error (description)` of an OAuth error body, fit to show.
fn said(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Said {
        error: String,
        #[serde(default)]
        error_description: Option<String>,
    }
    match serde_json::from_slice::<Said>(body) {
        Ok(Said {
            error,
            error_description,
        }) => {
            let mut words = format!(": {error}");
            if let Some(description) = error_description {
                words.push_str(&format!(" ({description})"));
            }
            crate::redact::peer_line(&words)
        }
        Err(_) => String::new(),
    }
}
