//! A remote server, reached over HTTP: Streamable HTTP (streamable.rs)
//! or the legacy HTTP+SSE (legacy.rs), behind the same two byte streams
//! a child process has. The relay writes lines into one pipe and reads
//! lines from another; threads here read those lines, POST each message,
//! and write every message the server sends (a JSON body, or each event
//! of a POST's stream or of the GET stream) as one line into the other.
//! Nothing is re-encoded: a message's bytes reach the relay as the server
//! sent them, the line breaks between JSON tokens made spaces.
//!
//! The server's end (it forgot the session, cannot be reached, its
//! stream closed for good) looks to the session like a child's exit: the
//! output pipe closes, and [`End`] says why in words.

mod headers;
pub(crate) mod http;
mod legacy;
mod message;
pub mod oauth;
mod params;
mod sse;
mod streamable;

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::value::RawValue;
use tracing::{debug, info, warn};
use ureq::http::{HeaderName, HeaderValue, Method, Request, Response};
use ureq::Body;
use url::Url;

use super::{Pipes, SpawnError, Stopped};
use crate::session::blocking::Fd;
use crate::wire::framing::{Frame, LineReader};
pub use headers::{Authorizer, Unauthorized};
use message::Outgoing;

/// `--transport`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// Streamable HTTP, or HTTP+SSE when the server turns the first POST
    /// away as the spec's backwards compatibility describes.
    #[default]
    Auto,
    /// Streamable HTTP only (2025-03-26 and later).
    StreamableHttp,
    /// The legacy HTTP+SSE transport (2024-11-05).
    Sse,
}

/// What a remote server is started with.
pub struct Options<'a> {
    pub headers: &'a [String],
    pub transport: Transport,
    /// `--oauth-client-id`.
    pub oauth_client_id: Option<&'a str>,
    /// The longest message relayed (`--max-message-bytes`).
    pub max_message: usize,
}

/// How many requests are on their way to the server at once; the next
/// waits (the relay's input backs up, as it does with a slow child).
const MAX_CONCURRENT: usize = 64;

/// The last HTTP errors kept, to say why the server ended.
const LAST_WORDS: usize = 5;

/// Event ids remembered, so that a message a resumed stream replays
/// reaches the client once.
const SEEN_IDS: usize = 4096;

/// How the remote server ended.
#[derive(Debug, Clone)]
pub struct End {
    /// The exit code toolwarden passes on: 0 when the session ended in
    /// order, 1 when the server failed it.
    pub code: u8,
    /// Why, for a log line or an error: "https://host/mcp cannot be
    /// reached: connection refused".
    pub words: String,
}

/// A started remote server.
pub struct Remote {
    link: Arc<Link>,
    ended: tokio::sync::watch::Receiver<Option<End>>,
}

impl Remote {
    /// Checks the URL and the headers (nothing is contacted yet: the
    /// client's first message is), and starts the threads that carry the
    /// relay's lines.
    pub fn start(url: &str, options: &Options) -> Result<(Remote, Pipes), SpawnError> {
        let refuse = |message: String, exit_code| SpawnError { message, exit_code };
        let url = Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                refuse(
                    format!(
                        "{} is not an http:// or https:// URL",
                        crate::redact::command(&[url])
                    ),
                    2,
                )
            })?;
        let headers = headers::parse(options.headers, |name| std::env::var(name).ok())
            .map_err(|e| refuse(e, 2))?;
        let agent = http::agent(url.scheme() == "https").map_err(|e| refuse(e, 1))?;
        let pipe = || -> io::Result<(OwnedFd, OwnedFd)> {
            let mut fds = [0; 2];
            // SAFETY: pipe2 fills two descriptors we then own.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: both were just created and are owned here only.
            let ends = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            super::child::enlarge_pipe(&ends.1);
            Ok(ends)
        };
        let ends = (|| -> io::Result<_> {
            let (from_relay, to_server) = pipe()?;
            let (from_server, to_relay) = pipe()?;
            Ok((
                Pipes {
                    to_server: Fd::own_pipe(to_server)?,
                    from_server: Fd::own_pipe(from_server)?,
                },
                Fd::own_pipe(from_relay)?,
                File::from(to_relay),
            ))
        })();
        let (pipes, from_relay, to_relay) =
            ends.map_err(|e| refuse(format!("cannot set up the server's pipes: {e}"), 1))?;
        let authorizer: Box<dyn Authorizer> = if headers
            .iter()
            .any(|h| h.name == ureq::http::header::AUTHORIZATION)
        {
            // An `Authorization` of the user's is theirs to keep good.
            Box::new(headers::HeadersOnly)
        } else {
            Box::new(oauth::OAuth::new(
                &url,
                agent.clone(),
                options.oauth_client_id.map(str::to_owned),
            ))
        };
        let (link, ended) = Link::new(
            agent,
            url,
            headers,
            authorizer,
            options.max_message,
            to_relay,
        );
        let link = Arc::new(link);
        let transport = options.transport;
        let reader = Arc::clone(&link);
        crate::session::blocking::spawn("remote-out", move || {
            client_messages(&reader, from_relay, transport)
        })
        .map_err(|e| refuse(format!("cannot start relaying to the server: {e}"), 1))?;
        info!(server = %link.shown, "remote server");
        Ok((Remote { link, ended }, pipes))
    }

    /// Waits for the server to end the session (or fail it).
    pub async fn wait(&mut self) -> io::Result<End> {
        let end = self
            .ended
            .wait_for(Option::is_some)
            .await
            .map_err(|_| io::Error::other("the remote's engine is gone"))?;
        Ok(end.clone().expect("waited for"))
    }

    /// Ends the session once the relay's input is closed: waits up to
    /// `close_wait` for the requests still on their way, then ends the
    /// server's session (DELETE), within `term_wait`.
    pub async fn stop(
        &mut self,
        close_wait: Duration,
        term_wait: Duration,
    ) -> io::Result<(End, Stopped)> {
        let link = &self.link;
        let deadline = tokio::time::Instant::now() + close_wait;
        let mut stopped = Stopped::ByItself;
        // What the relay wrote before it closed is sent first, and its
        // answers waited for.
        while (link.reading.load(Ordering::SeqCst) || link.busy.load(Ordering::SeqCst) > 0)
            && !link.ended()
        {
            if link.closing.load(Ordering::SeqCst) || tokio::time::Instant::now() >= deadline {
                info!("requests to the server still unanswered: the session ends without them");
                stopped = Stopped::Terminated;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        link.closing.store(true, Ordering::SeqCst);
        if !link.ended() {
            let deleting = Arc::clone(link);
            let limit = term_wait.min(streamable::DELETE_TIMEOUT);
            if let Ok(done) =
                crate::session::blocking::spawn("remote-delete", move || deleting.delete(limit))
            {
                let _ = tokio::time::timeout(limit + Duration::from_millis(100), done).await;
            }
        }
        link.end(0, "the session ended".into());
        let end = link.end.borrow().clone().expect("just ended");
        Ok((end, stopped))
    }

    /// Stops at once: no request waited for.
    pub fn hurry(&self) {
        self.link.closing.store(true, Ordering::SeqCst);
    }

    pub fn handle(&self) -> Handle {
        Handle(Arc::clone(&self.link))
    }

    /// The last errors of the session's requests, fit to show.
    pub fn last_words(&self) -> Vec<String> {
        lock(&self.link.last_words).iter().cloned().collect()
    }

    /// The URL as it may be shown.
    pub fn shown(&self) -> &str {
        &self.link.shown
    }
}

/// What the session's signal handling holds: a signal hurries the stop.
#[derive(Clone)]
pub struct Handle(Arc<Link>);

impl Handle {
    pub fn hurry(&self) {
        self.0.closing.store(true, Ordering::SeqCst);
    }
}

/// What the threads of one remote session share.
pub(crate) struct Link {
    agent: ureq::Agent,
    /// The MCP endpoint (a same-origin redirect moves it).
    url: Mutex<Url>,
    /// The URL as shown.
    shown: String,
    headers: Vec<headers::Header>,
    authorizer: Box<dyn Authorizer>,
    max_message: usize,
    /// The relay's input: `None` once the server ended.
    outbox: Mutex<Option<File>>,
    session: Mutex<Session>,
    last_words: Mutex<VecDeque<String>>,
    end: tokio::sync::watch::Sender<Option<End>>,
    /// The stop began: nothing is retried or reconnected.
    closing: AtomicBool,
    /// Requests sent and not yet answered.
    busy: AtomicUsize,
    /// Requests running on threads of their own, against [`MAX_CONCURRENT`].
    slots: (Mutex<usize>, Condvar),
    seen: Mutex<Seen>,
    /// The GET stream is open (or was tried).
    listening: AtomicBool,
    /// The relay's messages are still being read and sent.
    reading: AtomicBool,
    /// The tool parameters to mirror into `Mcp-Param-*` headers.
    declared: Mutex<params::Declared>,
    /// Held while toolwarden lists the tools itself: the calls that wait
    /// for the marks wait for it.
    listing: Mutex<()>,
    /// POST streams being read to their end after their answer.
    draining: AtomicUsize,
}

/// Why a stream stopped being read.
#[derive(Debug)]
enum Ended {
    /// The answer it was read for came.
    Answered,
    /// The answer it was read for is too long to relay.
    TooLong,
    /// It ended.
    Closed,
    /// Reading it failed.
    Broken(String),
}

/// What the server told at initialize.
#[derive(Default)]
struct Session {
    /// `Mcp-Session-Id`.
    id: Option<HeaderValue>,
    /// The protocol version of the initialize result.
    protocol: Option<String>,
}

/// Event ids relayed, the oldest forgotten first.
#[derive(Default)]
struct Seen {
    order: VecDeque<String>,
    ids: HashSet<String>,
}

/// The `Authorization` a request went with, kept on its response: a 401
/// to a token that was renewed meanwhile asks for nothing new.
#[derive(Clone)]
struct SentAuthorization(HeaderValue);

fn with_sent(mut response: Response<Body>, sent: Option<HeaderValue>) -> Response<Body> {
    if let Some(sent) = sent {
        response.extensions_mut().insert(SentAuthorization(sent));
    }
    response
}

/// A response's `WWW-Authenticate` values, as one.
fn challenge_of(response: &Response<Body>) -> Option<String> {
    let values: Vec<&str> = response
        .headers()
        .get_all(ureq::http::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// A poisoned lock still guards consistent data here: every critical
/// section is a plain read or write.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Link {
    fn new(
        agent: ureq::Agent,
        url: Url,
        headers: Vec<headers::Header>,
        authorizer: Box<dyn Authorizer>,
        max_message: usize,
        to_relay: File,
    ) -> (Link, tokio::sync::watch::Receiver<Option<End>>) {
        let (end, ended) = tokio::sync::watch::channel(None);
        let link = Link {
            agent,
            shown: http::shown(&url),
            url: Mutex::new(url),
            headers,
            authorizer,
            max_message,
            outbox: Mutex::new(Some(to_relay)),
            session: Mutex::new(Session::default()),
            last_words: Mutex::new(VecDeque::new()),
            end,
            closing: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
            slots: (Mutex::new(0), Condvar::new()),
            seen: Mutex::new(Seen::default()),
            listening: AtomicBool::new(false),
            reading: AtomicBool::new(true),
            declared: Mutex::new(params::Declared::default()),
            listing: Mutex::new(()),
            draining: AtomicUsize::new(0),
        };
        (link, ended)
    }

    fn url(&self) -> Url {
        lock(&self.url).clone()
    }

    fn ended(&self) -> bool {
        self.end.borrow().is_some()
    }

    fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst) || self.ended()
    }

    /// Ends the session, once: the relay's input closes (as a child's
    /// stdout does when it exits).
    fn end(&self, code: u8, words: String) {
        let mut first = false;
        self.end.send_if_modified(|end| {
            if end.is_some() {
                return false;
            }
            first = true;
            *end = Some(End { code, words });
            true
        });
        if first {
            if code != 0 {
                if let Some(End { words, .. }) = &*self.end.borrow() {
                    warn!("the remote session is over: {words}");
                }
            }
            lock(&self.outbox).take();
        }
    }

    /// Ends the session as failed, the words kept as the last ones too.
    /// While the stop is under way, what fails is the stop's doing: the
    /// stop ends the session.
    fn fail(&self, words: String) {
        self.note(words.clone());
        if !self.closing.load(Ordering::SeqCst) {
            self.end(1, words);
        }
    }

    /// Keeps `words` among the last words.
    fn note(&self, words: String) {
        debug!("{words}");
        let mut last = lock(&self.last_words);
        if last.len() == LAST_WORDS {
            last.pop_front();
        }
        last.push_back(words);
    }

    /// Writes one message of the server's to the relay, as one line: line
    /// breaks (only whitespace in valid JSON) become spaces. Lost when the
    /// session has ended.
    fn deliver(&self, message: &[u8]) {
        let mut line = Vec::with_capacity(message.len() + 1);
        line.extend(
            message
                .iter()
                .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
        );
        line.push(b'\n');
        let mut outbox = lock(&self.outbox);
        if let Some(out) = outbox.as_mut() {
            if let Err(e) = out.write_all(&line) {
                debug!("the relay no longer reads the server's messages: {e}");
                outbox.take();
            }
        }
    }

    /// Relays an event's message unless an event of the same id was.
    fn deliver_event(&self, id: Option<&str>, message: &[u8]) -> bool {
        if let Some(id) = id.filter(|id| !id.is_empty()) {
            let mut seen = lock(&self.seen);
            if !seen.ids.insert(id.to_owned()) {
                debug!("an event the server sent again is not relayed twice");
                return false;
            }
            seen.order.push_back(id.to_owned());
            if seen.order.len() > SEEN_IDS {
                let old = seen.order.pop_front().expect("not empty");
                seen.ids.remove(&old);
            }
        }
        self.deliver(message);
        true
    }

    /// Answers request `id` with an error of toolwarden's, as the server's
    /// message: the relay ends the request with it.
    fn answer_error(&self, id: &RawValue, message: &str) {
        self.note(message.to_owned());
        let error = serde_json::json!({ "code": -32000, "message": message });
        self.deliver(
            format!(r#"{{"jsonrpc":"2.0","id":{},"error":{error}}}"#, id.get()).as_bytes(),
        );
    }

    /// Sends one request with the session's headers and the user's.
    fn send(
        &self,
        method: Method,
        url: &Url,
        extra: &[(HeaderName, HeaderValue)],
        body: Option<&[u8]>,
        timeout: Option<Duration>,
    ) -> Result<Response<Body>, ureq::Error> {
        let mut request = Request::builder().method(method).uri(url.as_str());
        for header in &self.headers {
            request = request.header(&header.name, &header.value);
        }
        let authorization = self.authorizer.authorization().map(|mut value| {
            value.set_sensitive(true);
            value
        });
        if let Some(value) = &authorization {
            request = request.header(ureq::http::header::AUTHORIZATION, value);
        }
        {
            let session = lock(&self.session);
            if let Some(id) = &session.id {
                request = request.header("mcp-session-id", id);
            }
        }
        for (name, value) in extra {
            request = request.header(name, value);
        }
        let agent = &self.agent;
        match body {
            Some(body) => {
                let request = request
                    .header("content-type", "application/json")
                    .body(body)
                    .map_err(ureq::Error::Http)?;
                let request = agent
                    .configure_request(request)
                    .timeout_global(timeout)
                    .build();
                agent.run(request).map(|r| with_sent(r, authorization))
            }
            None => {
                let request = request.body(()).map_err(ureq::Error::Http)?;
                let request = agent
                    .configure_request(request)
                    .timeout_global(timeout)
                    .build();
                agent.run(request).map(|r| with_sent(r, authorization))
            }
        }
    }

    /// Whether `response` asks for credentials: a 401, or a 403 whose
    /// challenge asks for more scope.
    fn wants_authorization(response: &Response<Body>) -> bool {
        let status = response.status().as_u16();
        status == 401
            || (status == 403 && challenge_of(response).is_some_and(|c| oauth::asks_for_scope(&c)))
    }

    /// What the authorizer makes of a response that wants credentials.
    fn unauthorized(&self, response: &Response<Body>) -> Unauthorized {
        let sent = response.extensions().get::<SentAuthorization>();
        self.authorizer
            .unauthorized(challenge_of(response).as_deref(), sent.map(|s| &s.0))
    }

    /// The session's id, if the server gave one.
    fn session_id(&self) -> Option<HeaderValue> {
        lock(&self.session).id.clone()
    }

    /// Ends the server's session (Streamable HTTP with a session id).
    fn delete(&self, timeout: Duration) {
        if self.session_id().is_none() {
            return;
        }
        let url = self.url();
        match self.send(Method::DELETE, &url, &[], None, Some(timeout)) {
            Ok(response) => debug!(status = response.status().as_u16(), "session deleted"),
            Err(e) => debug!("the session could not be deleted: {}", http::failure(&e)),
        }
    }

    /// Waits `wait`, unless the stop begins; says whether it did not.
    fn pause(&self, wait: Duration) -> bool {
        let until = std::time::Instant::now() + wait;
        while !self.closing() {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
        false
    }

    /// Relays the message events of `stream` until it ends, or, when
    /// `want` names a request, until its answer (what an answer to
    /// `method` teaches is kept: `streamable::learn`). An event too long to relay ends its
    /// request with an error: the one it names, or on a request's own
    /// stream, that request.
    fn relay_events(
        &self,
        stream: &mut sse::EventStream<impl io::Read>,
        want: Option<&RawValue>,
        method: Option<&str>,
    ) -> Ended {
        loop {
            let event = match stream.next_event() {
                Ok(Some(event)) => event,
                Ok(None) => return Ended::Closed,
                Err(e) => return Ended::Broken(crate::redact::peer_line(&e.to_string())),
            };
            if self.ended() {
                return Ended::Closed;
            }
            if let Some(len) = event.too_long {
                warn!(
                    len,
                    max = self.max_message,
                    "dropped a message from the server longer than --max-message-bytes"
                );
                let seen = crate::wire::jsonrpc::scan_prefix(&event.data);
                let id = seen
                    .id
                    .filter(|_| seen.is_response)
                    .map(|id| id.raw().to_raw_value());
                match (id, want) {
                    (Some(id), Some(want)) if message::same_id(&id, want) => return Ended::TooLong,
                    (None, Some(_)) => return Ended::TooLong,
                    (Some(id), _) => {
                        self.answer_error(&id, &streamable::too_long(self.max_message))
                    }
                    (None, None) => {}
                }
                continue;
            }
            if event.kind != "message" || event.data.trim_ascii().is_empty() {
                continue;
            }
            let answered = want.is_some_and(|id| message::answers(&event.data, id));
            if answered {
                streamable::learn(self, method, &event.data);
            }
            self.deliver_event(event.id.as_deref(), &event.data);
            if answered {
                return Ended::Answered;
            }
        }
    }

    /// Takes a slot for a request of its own thread, waiting for one.
    fn take_slot(&self) {
        let (count, freed) = &self.slots;
        let mut count = lock(count);
        while *count >= MAX_CONCURRENT {
            count = freed.wait(count).unwrap_or_else(|e| e.into_inner());
        }
        *count += 1;
    }

    fn free_slot(&self) {
        let (count, freed) = &self.slots;
        *lock(count) -= 1;
        freed.notify_one();
    }
}

/// Counts a request as on its way while it lives.
struct Busy<'a>(&'a Link);

impl<'a> Busy<'a> {
    fn new(link: &'a Link) -> Busy<'a> {
        link.busy.fetch_add(1, Ordering::SeqCst);
        Busy(link)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where messages go once the transport is known.
enum Route {
    /// Not yet: the first message decides.
    Undecided(Transport),
    Streamable,
    Legacy(legacy::Endpoint),
}

/// The relay's lines to the server, read until the relay closes them.
fn client_messages(link: &Arc<Link>, input: Fd, transport: Transport) {
    let mut lines = LineReader::new(input, link.max_message);
    let mut route = Route::Undecided(transport);
    loop {
        let line = match lines.next_frame() {
            Ok(Some(Frame::Line(line))) => line.to_vec(),
            // The relay writes no line longer than the cap.
            Ok(Some(Frame::TooLong { .. })) => continue,
            Ok(None) => break,
            Err(e) => {
                debug!("reading the relay's messages to the server failed: {e}");
                break;
            }
        };
        if line.trim_ascii().is_empty() {
            continue;
        }
        if link.ended() {
            // The relay answers what is left once it sees the end.
            continue;
        }
        let message = Outgoing::parse(line);
        route = match route {
            Route::Undecided(transport) => first_message(link, transport, message),
            Route::Streamable => {
                streamable::send(link, message);
                Route::Streamable
            }
            Route::Legacy(endpoint) => {
                legacy::send(link, &endpoint, message);
                Route::Legacy(endpoint)
            }
        };
    }
    debug!("the relay closed its messages to the server");
    link.reading.store(false, Ordering::SeqCst);
}

/// The first message finds the transport: Streamable HTTP's POST, or, when
/// the server turns it away (400, 404 or 405, with no JSON-RPC error of a
/// modern server), the legacy SSE stream.
fn first_message(link: &Arc<Link>, transport: Transport, message: Outgoing) -> Route {
    if transport == Transport::Sse {
        return match legacy::connect(link, None) {
            Some(endpoint) => {
                legacy::send(link, &endpoint, message);
                Route::Legacy(endpoint)
            }
            None => Route::Streamable,
        };
    }
    match streamable::first(link, &message, transport == Transport::Auto) {
        streamable::First::Done => Route::Streamable,
        streamable::First::TurnedAway(status) => match legacy::connect(link, Some(&status)) {
            Some(endpoint) => {
                info!("the server turned the POST away ({status}): it speaks HTTP+SSE");
                legacy::send(link, &endpoint, message);
                Route::Legacy(endpoint)
            }
            None => Route::Streamable,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// A link whose messages to the relay can be read back.
    fn link(max: usize) -> (Link, File) {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors we then own.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both were just created and are owned here only.
        let (read, write) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        let url = Url::parse("http://127.0.0.1:9/mcp").unwrap();
        let (link, _) = Link::new(
            http::agent(false).unwrap(),
            url,
            Vec::new(),
            Box::new(headers::HeadersOnly),
            max,
            write,
        );
        (link, read)
    }

    /// What the link wrote, once it ended.
    fn delivered(link: Link, mut read: File) -> Vec<String> {
        drop(link);
        let mut text = String::new();
        read.read_to_string(&mut text).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    fn events(text: &str, max: usize) -> sse::EventStream<&[u8]> {
        sse::EventStream::new(text.as_bytes(), max)
    }

    #[test]
    fn each_event_is_one_line_of_its_bytes_and_a_replayed_one_is_not_relayed_again() {
        let (link, read) = link(1024);
        let mut stream = events(
            "id: 1\ndata: {\"jsonrpc\":\"2.0\",\ndata:  \"method\":\"a\"}\n\n\
             id: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"a\"}\n\n\
             event: other\ndata: {}\n\n\
             id: 2\ndata:\n\n\
             data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"n\":12345678901234567890123}}\n\n\
             data: {\"after\":true}\n\n",
            1024,
        );
        let want = RawValue::from_string("7".into()).unwrap();
        assert!(matches!(
            link.relay_events(&mut stream, Some(&want), None),
            Ended::Answered
        ));
        assert_eq!(
            delivered(link, read),
            [
                r#"{"jsonrpc":"2.0",  "method":"a"}"#,
                r#"{"jsonrpc":"2.0","id":7,"result":{"n":12345678901234567890123}}"#,
            ]
        );
    }

    #[test]
    fn an_event_over_the_limit_answers_the_request_it_names_with_an_error() {
        let (link, read) = link(64);
        let long = "x".repeat(100);
        let text = format!(
            "data: {{\"jsonrpc\":\"2.0\",\"id\":\"other\",\"result\":\"{long}\"}}\n\n\
             data: {{\"jsonrpc\":\"2.0\",\"method\":\"n\",\"params\":\"{long}\"}}\n\n\
             data: {{\"result\":\"{long}\",\"id\":5}}\n\n"
        );
        let mut stream = events(&text, 64);
        let want = RawValue::from_string("5".into()).unwrap();
        // The last is this request's (its id is past the prefix: on its
        // own stream, it is taken for the answer).
        assert!(matches!(
            link.relay_events(&mut stream, Some(&want), None),
            Ended::TooLong
        ));
        let lines = delivered(link, read);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with(r#"{"jsonrpc":"2.0","id":"other","error":"#),
            "{lines:?}"
        );
        assert!(
            lines[0].contains("exceeds toolwarden's limit of 64 bytes"),
            "{lines:?}"
        );
    }
}
