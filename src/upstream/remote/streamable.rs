//! Streamable HTTP (2025-03-26 onward): each message its own POST, its
//! answer a JSON body or an SSE stream; the GET stream for the server's
//! own messages once the session is initialized, reconnected when it
//! drops; a stream cut before its answer resumed with `Last-Event-ID`;
//! `Mcp-Session-Id`, `MCP-Protocol-Version` and, for 2026-07-28 requests,
//! `Mcp-Method` and `Mcp-Name`.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};
use ureq::http::{HeaderName, HeaderValue, Method, Response, StatusCode};
use ureq::Body;

use super::message::{self, Outgoing};
use super::sse::EventStream;
use super::{http, lock, params, Busy, Link, Unauthorized};

/// How long the DELETE that ends a session may take.
pub const DELETE_TIMEOUT: Duration = Duration::from_secs(2);

/// The versions that begin with `initialize` (and have sessions, the GET
/// stream and resumption); a later one carries its version per request.
const HANDSHAKE_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// Tries to resume a stream before the request gets an error instead.
const RESUME_TRIES: u32 = 5;

/// Connections the GET stream may fail in a row before the server is
/// taken for gone.
const GET_FAILURES: u32 = 3;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The most of an error's body read, to find a JSON-RPC error in it.
const ERROR_BODY: u64 = 64 * 1024;

/// How the first message went.
pub enum First {
    Done,
    /// The server turned the POST away as a legacy HTTP+SSE server does:
    /// the status, in words.
    TurnedAway(String),
}

/// Sends the first message, on this thread: what it learns (the session,
/// the transport) comes before any other message is sent.
pub fn first(link: &Arc<Link>, message: &Outgoing, auto: bool) -> First {
    exchange(link, message, true, auto)
}

/// Sends a later message: a request on a thread of its own (many may be
/// answered at once); `initialize`, a notification or a response on this
/// one, in order.
pub fn send(link: &Arc<Link>, message: Outgoing) {
    let own_thread = (message.is_request() || message.is_batch())
        && message.method.as_deref() != Some("initialize");
    if !own_thread {
        exchange(
            link,
            &message,
            message.method.as_deref() == Some("initialize"),
            false,
        );
        return;
    }
    link.take_slot();
    let request = Arc::clone(link);
    let spawned = std::thread::Builder::new()
        .name("remote-request".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            exchange(&request, &message, false, false);
            request.free_slot();
        });
    if let Err(e) = spawned {
        link.free_slot();
        warn!("cannot start a thread for a request to the server: {e}");
    }
}

/// Whether a version carries its own version in every request (2026-07-28
/// and later).
fn modern(version: &str) -> bool {
    !HANDSHAKE_VERSIONS.contains(&version)
}

/// The headers of a POST of `message`, besides the session's.
fn post_headers(link: &Link, message: &Outgoing) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = vec![(
        HeaderName::from_static("accept"),
        HeaderValue::from_static("application/json, text/event-stream"),
    )];
    let version = message
        .version
        .clone()
        .or_else(|| lock(&link.session).protocol.clone());
    if let Some(version) = &version {
        if let Ok(value) = HeaderValue::from_str(version) {
            headers.push((HeaderName::from_static("mcp-protocol-version"), value));
        }
        if modern(version) {
            let method = message
                .method
                .as_deref()
                .and_then(|m| HeaderValue::from_str(m).ok());
            if let Some(method) = method {
                headers.push((HeaderName::from_static("mcp-method"), method));
            }
            let name = message
                .name
                .as_deref()
                .and_then(|n| HeaderValue::from_str(&message::header_safe(n)).ok());
            if let Some(name) = name {
                headers.push((HeaderName::from_static("mcp-name"), name));
            }
            if message.method.as_deref() == Some("tools/call") {
                headers.extend(params::for_call(link, message, version));
            }
        }
    }
    headers
}

/// A redirect toolwarden follows: 307 or 308 (the POST stays a POST) to
/// the same origin (the headers stay with the server they were meant for).
const MAX_HOPS: usize = 3;

/// POSTs `message` and relays what answers it. `decisive`: an HTTP error
/// here means the session cannot start (the first message, or
/// `initialize`). `auto`: a turn-away is reported, not told.
fn exchange(link: &Arc<Link>, message: &Outgoing, decisive: bool, auto: bool) -> First {
    let _busy = message.is_request().then(|| Busy::new(link));
    let headers = post_headers(link, message);
    let mut url = link.url();
    let mut hops = 0;
    let mut authorized_again = false;
    let response = loop {
        let response = match link.send(Method::POST, &url, &headers, Some(&message.line), None) {
            Ok(response) => response,
            Err(e) => {
                let words = format!("{} cannot be reached: {}", link.shown, http::failure(&e));
                if decisive || http::unreachable(&e) {
                    link.fail(format!(
                        "{words}; check the URL and that the server is running"
                    ));
                } else {
                    fail_request(link, message, &words);
                }
                return First::Done;
            }
        };
        let status = response.status();
        if matches!(status.as_u16(), 307 | 308) && hops < MAX_HOPS {
            match same_origin_location(&url, &response) {
                Some(to) => {
                    info!(to = %http::shown(&to), "the server moved its endpoint");
                    *lock(&link.url) = to.clone();
                    url = to;
                    hops += 1;
                    continue;
                }
                None => {
                    let words = format!(
                        "the server redirects ({}) to another origin; give toolwarden the URL it redirects to",
                        http::status(status)
                    );
                    told(link, message, decisive, &words);
                    return First::Done;
                }
            }
        }
        if Link::wants_authorization(&response) && !authorized_again {
            match link.unauthorized(&response) {
                Unauthorized::Retry => {
                    authorized_again = true;
                    continue;
                }
                Unauthorized::GiveUp(words) => {
                    told(link, message, decisive, &words);
                    return First::Done;
                }
            }
        }
        break response;
    };
    let status = response.status();
    if status.is_success() {
        if message.method.as_deref() == Some("initialize") {
            keep_session_id(link, &response);
        }
        answer(link, message, response);
        if message.method.as_deref() == Some("notifications/initialized")
            && !link.listening.swap(true, Ordering::SeqCst)
        {
            let listener = Arc::clone(link);
            if let Err(e) = crate::session::blocking::spawn("remote-get", move || listen(&listener))
            {
                warn!("cannot listen for the server's own messages: {e}");
            }
        }
        return First::Done;
    }
    if status == StatusCode::NOT_FOUND && link.session_id().is_some() {
        link.fail(format!(
            "the server ended the session ({}): it no longer knows it; restart the client for a new one",
            http::status(status)
        ));
        return First::Done;
    }
    let body = read_some(response.into_body(), ERROR_BODY);
    let error = message::error_response(&body);
    if auto && matches!(status.as_u16(), 400 | 404 | 405) && error.is_none() {
        return First::TurnedAway(http::status(status));
    }
    if let (Some(id), Some((Some(theirs), _))) = (&message.id, &error) {
        if message::same_id(theirs, id) {
            // The server's own error answer: the client reads it as sent.
            link.note(format!("the server answered {}", http::status(status)));
            link.deliver(&body);
            return First::Done;
        }
    }
    let mut words = format!("the server answered {}", http::status(status));
    if let Some((_, said)) = &error {
        if !said.is_empty() {
            words.push_str(": ");
            words.push_str(&crate::redact::peer_line(said));
        }
    }
    told(link, message, decisive, &words);
    First::Done
}

/// Tells of an HTTP failure: it ends the session when `decisive`, else the
/// request gets it as its error (a notification's is only logged).
fn told(link: &Link, message: &Outgoing, decisive: bool, words: &str) {
    if decisive {
        link.fail(words.to_owned());
    } else {
        fail_request(link, message, words);
    }
}

fn fail_request(link: &Link, message: &Outgoing, words: &str) {
    match &message.id {
        Some(id) => link.answer_error(id, words),
        None => {
            warn!("a message to the server was not accepted: {words}");
            link.note(words.to_owned());
        }
    }
}

/// The Location of a redirect, when it is on the same origin.
fn same_origin_location(from: &url::Url, response: &Response<Body>) -> Option<url::Url> {
    let location = response.headers().get("location")?.to_str().ok()?;
    let to = from.join(location).ok()?;
    http::same_origin(from, &to).then_some(to)
}

/// Keeps the `Mcp-Session-Id` of an initialize answer.
fn keep_session_id(link: &Link, response: &Response<Body>) {
    let Some(id) = response.headers().get("mcp-session-id") else {
        return;
    };
    if id.is_empty() || !id.as_bytes().iter().all(|b| (0x21..=0x7e).contains(b)) {
        warn!("the server's Mcp-Session-Id is not visible ASCII: ignored");
        return;
    }
    let mut id = id.clone();
    id.set_sensitive(true);
    lock(&link.session).id = Some(id);
}

/// The kind of a body, from its Content-Type.
pub(super) fn content_type(response: &Response<Body>) -> String {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Relays the answer of a successful POST.
fn answer(link: &Arc<Link>, message: &Outgoing, response: Response<Body>) {
    let kind = content_type(&response);
    let status = response.status();
    if kind == "text/event-stream" {
        let stream = EventStream::new(response.into_body().into_reader(), link.max_message);
        answer_stream(link, message, stream);
        return;
    }
    let body = match read_message(link, response.into_body()) {
        Ok(body) => body,
        Err(words) => return fail_request(link, message, &words),
    };
    if body.trim_ascii().is_empty() {
        if message.is_request() {
            // 202 to a request: its answer is to come on another stream.
            debug!(status = status.as_u16(), "no answer in the POST's response");
        }
        return;
    }
    if kind != "application/json" && !kind.is_empty() {
        return fail_request(
            link,
            message,
            &format!(
                "the server answered with a body of type {}, not JSON",
                crate::redact::peer_line(&kind)
            ),
        );
    }
    learn(link, message.method.as_deref(), &body);
    link.deliver(&body);
}

/// A JSON body of at most `--max-message-bytes`.
fn read_message(link: &Link, body: Body) -> Result<Vec<u8>, String> {
    let max = link.max_message;
    let mut bytes = Vec::new();
    body.into_reader()
        .take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            format!(
                "the server's answer could not be read: {}",
                crate::redact::peer_line(&e.to_string())
            )
        })?;
    if bytes.len() > max {
        return Err(too_long(max));
    }
    Ok(bytes)
}

pub(super) fn too_long(max: usize) -> String {
    format!("the server's answer exceeds toolwarden's limit of {max} bytes (--max-message-bytes)")
}

/// At most `max` bytes of a body, read as far as it goes.
fn read_some(body: Body, max: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = body.into_reader().take(max).read_to_end(&mut bytes);
    bytes
}

/// Keeps the protocol version of an initialize result, for the
/// `MCP-Protocol-Version` of every later request.
/// What the session keeps from the answer to a request of `method`:
/// `initialize`'s protocol version, and the `x-mcp-header` marks of
/// `tools/list`'s tools.
pub(super) fn learn(link: &Link, method: Option<&str>, answer: &[u8]) {
    match method {
        Some("initialize") => {
            if let Some(version) = message::negotiated_version(answer) {
                debug!(%version, "protocol version");
                lock(&link.session).protocol = Some(version);
            }
        }
        Some("tools/list") => {
            if let Some(listing) = params::read_listing(answer) {
                lock(&link.declared).learn(listing);
            }
        }
        _ => {}
    }
}

/// A POST's stream after its answer is read to its end, on a thread of
/// its own (the server ends it at once; one that does not holds no
/// request up), so that its connection goes back to the pool for the
/// next request rather than a new one being opened. At most
/// [`MAX_DRAINING`] at once: past that the connection is closed.
fn drain(link: &Arc<Link>, mut stream: EventStream<ureq::BodyReader<'static>>) {
    if link.draining.fetch_add(1, Ordering::SeqCst) >= MAX_DRAINING {
        link.draining.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let reader = Arc::clone(link);
    let spawned = std::thread::Builder::new()
        .name("remote-drain".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            // Whatever else the stream carries is the server's to say.
            reader.relay_events(&mut stream, None, None);
            reader.draining.fetch_sub(1, Ordering::SeqCst);
        });
    if spawned.is_err() {
        link.draining.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Streams read to their end after their answer, at most.
const MAX_DRAINING: usize = 16;

/// Relays a POST's stream until the answer to its request, resuming it
/// where it was cut (when its events have ids).
fn answer_stream(
    link: &Arc<Link>,
    message: &Outgoing,
    mut stream: EventStream<ureq::BodyReader<'static>>,
) {
    let want = message.id.as_deref();
    let method = message.method.as_deref();
    let mut tries = 0;
    loop {
        let before = stream.last_id.clone();
        let ended = link.relay_events(&mut stream, want, method);
        let Some(id) = want else { return };
        let cut = match ended {
            super::Ended::Answered => return drain(link, stream),
            super::Ended::TooLong => return link.answer_error(id, &too_long(link.max_message)),
            super::Ended::Closed => "ended".to_owned(),
            super::Ended::Broken(why) => format!("broke ({why})"),
        };
        if link.closing() {
            return;
        }
        let Some(last) = stream.last_id.clone() else {
            return link.answer_error(
                id,
                &format!("the server's stream for this request {cut} before its answer"),
            );
        };
        if stream.last_id != before {
            tries = 0;
        }
        tries += 1;
        if tries > RESUME_TRIES {
            return link.answer_error(
                id,
                &format!("the server's stream for this request {cut} and could not be resumed"),
            );
        }
        if !link.pause(stream.retry.unwrap_or(FIRST_BACKOFF).min(MAX_BACKOFF)) {
            return;
        }
        debug!(
            "resuming the answer's stream after event {}",
            crate::redact::peer_line(&last)
        );
        match open_get(link, Some(&last)) {
            Get::Stream(body) => {
                let retry = stream.retry;
                stream = EventStream::new(body.into_reader(), link.max_message);
                stream.last_id = Some(last);
                stream.retry = retry;
            }
            Get::Gone => return,
            Get::NotOffered(words) | Get::Refused(words) | Get::Retry(words) => {
                if tries >= RESUME_TRIES {
                    return link.answer_error(
                        id,
                        &format!("the server's stream for this request {cut} and could not be resumed: {words}"),
                    );
                }
            }
            Get::Unreachable(words) => return link.fail(words),
        }
    }
}

/// What a GET of the endpoint gave.
enum Get {
    Stream(Body),
    /// 405: the server offers no GET stream.
    NotOffered(String),
    /// The session is over (the link ended).
    Gone,
    /// A 4xx: asking again will not help.
    Refused(String),
    /// A 5xx or an answer that is not a stream: it may pass.
    Retry(String),
    Unreachable(String),
}

/// Opens the GET stream, from `last` when resuming.
fn open_get(link: &Link, last: Option<&str>) -> Get {
    let mut headers = vec![(
        HeaderName::from_static("accept"),
        HeaderValue::from_static("text/event-stream"),
    )];
    if let Some(version) = lock(&link.session).protocol.clone() {
        if let Ok(value) = HeaderValue::from_str(&version) {
            headers.push((HeaderName::from_static("mcp-protocol-version"), value));
        }
    }
    if let Some(last) = last.and_then(|l| HeaderValue::from_str(l).ok()) {
        headers.push((HeaderName::from_static("last-event-id"), last));
    }
    let url = link.url();
    let response = match link.send(Method::GET, &url, &headers, None, None) {
        Ok(response) => response,
        Err(e) => {
            let words = format!("{} cannot be reached: {}", link.shown, http::failure(&e));
            return if http::unreachable(&e) {
                Get::Unreachable(words)
            } else {
                Get::Retry(words)
            };
        }
    };
    let status = response.status();
    let words = format!("the server's GET stream: {}", http::status(status));
    match status.as_u16() {
        200 if content_type(&response) == "text/event-stream" => Get::Stream(response.into_body()),
        200 => Get::Retry(format!("{words}, not an event stream")),
        404 if link.session_id().is_some() => {
            link.fail(format!(
                "the server ended the session ({}): it no longer knows it; restart the client for a new one",
                http::status(status)
            ));
            Get::Gone
        }
        405 => Get::NotOffered(words),
        400..=499 => Get::Refused(words),
        _ => Get::Retry(words),
    }
}

/// The GET stream: the server's requests and notifications that belong to
/// no request, for as long as the session lasts.
fn listen(link: &Link) {
    let mut last: Option<String> = None;
    let mut retry: Option<Duration> = None;
    let mut failures = 0;
    let mut backoff = FIRST_BACKOFF;
    while !link.closing() {
        match open_get(link, last.as_deref()) {
            Get::Stream(body) => {
                failures = 0;
                let opened = Instant::now();
                let mut stream = EventStream::new(body.into_reader(), link.max_message);
                stream.last_id = last.clone();
                let ended = link.relay_events(&mut stream, None, None);
                if stream.last_id != last || opened.elapsed() > Duration::from_secs(5) {
                    backoff = FIRST_BACKOFF;
                }
                last = stream.last_id.clone();
                retry = stream.retry.or(retry);
                if link.closing() {
                    return;
                }
                debug!(?ended, "the server's GET stream ended: reconnecting");
            }
            Get::NotOffered(words) => {
                debug!("{words}: no GET stream");
                return;
            }
            Get::Gone => return,
            Get::Refused(words) => {
                warn!("{words}: the server's own messages come only with answers");
                link.note(words);
                return;
            }
            Get::Retry(words) => {
                debug!("{words}");
                link.note(words);
            }
            Get::Unreachable(words) => {
                failures += 1;
                if failures >= GET_FAILURES {
                    return link.fail(words);
                }
            }
        }
        if !link.pause(retry.unwrap_or(backoff).min(MAX_BACKOFF)) {
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
