//! The legacy HTTP+SSE transport (2024-11-05): a GET opens the server's
//! event stream, whose first `endpoint` event names the URL to POST every
//! message to; every answer and every message of the server's comes on
//! that stream. The stream is the session: when it ends, so does the
//! session.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, warn};
use ureq::http::{HeaderName, HeaderValue, Method};
use url::Url;

use super::message::Outgoing;
use super::sse::EventStream;
use super::{http, Link, Unauthorized};

/// How long the server may take to name its endpoint.
const ENDPOINT_WAIT: Duration = Duration::from_secs(30);

/// Where messages are POSTed.
pub struct Endpoint {
    url: Url,
}

/// Opens the event stream and waits for its endpoint. `turned_away`: the
/// status the Streamable HTTP POST got, for the words if this fails too.
/// `None` when it fails: the session has ended, saying why.
pub fn connect(link: &Arc<Link>, turned_away: Option<&str>) -> Option<Endpoint> {
    let fail = |words: String| {
        let words = match turned_away {
            Some(status) => format!(
                "the server answered the POST with {status}, and its GET gave no event stream: {words}; is the URL the server's MCP endpoint?"
            ),
            None => words,
        };
        link.fail(words);
        None
    };
    let url = link.url();
    let headers = [(
        HeaderName::from_static("accept"),
        HeaderValue::from_static("text/event-stream"),
    )];
    let mut authorized_again = false;
    let response = loop {
        let response = match link.send(Method::GET, &url, &headers, None, None) {
            Ok(response) => response,
            Err(e) => {
                return fail(format!(
                    "{} cannot be reached: {}; check the URL and that the server is running",
                    link.shown,
                    http::failure(&e)
                ))
            }
        };
        if Link::wants_authorization(&response) && !authorized_again {
            authorized_again = true;
            match link.unauthorized(&response) {
                Unauthorized::Retry => continue,
                Unauthorized::GiveUp(words) => return fail(words),
            }
        }
        break response;
    };
    let status = response.status();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !status.is_success() || !kind.starts_with("text/event-stream") {
        return fail(format!(
            "the server answered the GET with {}",
            http::status(status)
        ));
    }
    let (found, endpoint) = mpsc::channel();
    let reader = Arc::clone(link);
    let base = url.clone();
    let body = response.into_body();
    let spawned = crate::session::blocking::spawn("remote-sse", move || {
        let mut stream = EventStream::new(body.into_reader(), reader.max_message);
        loop {
            match stream.next_event() {
                Ok(Some(event)) if event.kind == "endpoint" => {
                    let _ = found.send(endpoint_of(&base, &event.data));
                    break;
                }
                Ok(Some(event)) => {
                    debug!(kind = %crate::redact::peer_line(&event.kind), "an event before the endpoint: ignored")
                }
                Ok(None) => {
                    return reader.fail(format!(
                        "{} closed its event stream before naming its endpoint",
                        reader.shown
                    ))
                }
                Err(e) => {
                    return reader.fail(format!(
                        "the server's event stream broke before naming its endpoint: {}",
                        crate::redact::peer_line(&e.to_string())
                    ))
                }
            }
        }
        let ended = reader.relay_events(&mut stream, None, None);
        debug!(?ended, "the server's event stream");
        if !reader.closing() {
            reader.fail(format!("{} closed its event stream", reader.shown));
        }
    });
    if let Err(e) = spawned {
        return fail(format!("cannot read the server's event stream: {e}"));
    }
    match endpoint.recv_timeout(ENDPOINT_WAIT) {
        Ok(Ok(url)) => {
            debug!(endpoint = %http::shown(&url), "HTTP+SSE");
            Some(Endpoint { url })
        }
        Ok(Err(words)) => fail(words),
        // The stream ended first: the session has ended, saying why.
        Err(mpsc::RecvTimeoutError::Disconnected) => None,
        Err(mpsc::RecvTimeoutError::Timeout) => fail(format!(
            "the server's event stream named no endpoint within {}s",
            ENDPOINT_WAIT.as_secs()
        )),
    }
}

/// The endpoint an `endpoint` event names, resolved against the stream's
/// URL; another origin is refused (the headers would go there).
fn endpoint_of(base: &Url, data: &[u8]) -> Result<Url, String> {
    let text = std::str::from_utf8(data)
        .map_err(|_| "the server's endpoint event is not UTF-8".to_owned())?
        .trim();
    let url = base
        .join(text)
        .map_err(|_| "the server's endpoint event holds no URL".to_owned())?;
    if !http::same_origin(base, &url) {
        return Err(format!(
            "the server's endpoint {} is on another origin than its event stream",
            http::shown(&url)
        ));
    }
    Ok(url)
}

/// POSTs one message to the endpoint; its answer comes on the stream.
pub fn send(link: &Link, endpoint: &Endpoint, message: Outgoing) {
    let headers = [(
        HeaderName::from_static("accept"),
        HeaderValue::from_static("application/json, text/event-stream"),
    )];
    let mut authorized_again = false;
    let response = loop {
        let response = match link.send(
            Method::POST,
            &endpoint.url,
            &headers,
            Some(&message.line),
            None,
        ) {
            Ok(response) => response,
            Err(e) => {
                let words = format!("{} cannot be reached: {}", link.shown, http::failure(&e));
                if http::unreachable(&e) {
                    return link.fail(words);
                }
                return refused(link, &message, words);
            }
        };
        if Link::wants_authorization(&response) && !authorized_again {
            authorized_again = true;
            match link.unauthorized(&response) {
                Unauthorized::Retry => continue,
                Unauthorized::GiveUp(words) => return refused(link, &message, words),
            }
        }
        break response;
    };
    let status = response.status();
    if status.is_success() {
        return;
    }
    refused(
        link,
        &message,
        format!("the server answered {}", http::status(status)),
    );
}

fn refused(link: &Link, message: &Outgoing, words: String) {
    match &message.id {
        Some(id) => link.answer_error(id, &words),
        None => {
            warn!("a message to the server was not accepted: {words}");
            link.note(words);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_resolved_and_must_be_on_the_same_origin() {
        let base = Url::parse("http://127.0.0.1:8080/sse").unwrap();
        let at = |d: &str| endpoint_of(&base, d.as_bytes()).map(|u| u.to_string());
        assert_eq!(
            at("/messages?sessionId=1").unwrap(),
            "http://127.0.0.1:8080/messages?sessionId=1"
        );
        assert_eq!(at("messages/").unwrap(), "http://127.0.0.1:8080/messages/");
        assert_eq!(
            at("http://127.0.0.1:8080/m").unwrap(),
            "http://127.0.0.1:8080/m"
        );
        assert!(at("http://127.0.0.1:8081/m")
            .unwrap_err()
            .contains("another origin"));
        assert!(at("https://127.0.0.1:8080/m").is_err());
        assert!(at("//evil.example/m").is_err());
    }
}
