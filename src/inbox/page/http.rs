//! Just enough HTTP/1.1 for the approval page: one bounded request read
//! from a connection before a deadline, one response, then the connection
//! is closed. No keep-alive, no chunked bodies: a browser needs neither.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// A request's head and body together: a page's forms send a few hundred
/// bytes.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// How long a client has to send its whole request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the answer may take to be taken.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Request {
    pub method: String,
    /// The target's path, without the query.
    pub path: String,
    /// The target's query, undecoded (`a=1&b=2`).
    pub query: String,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// A header's value; names are compared without case. Headers the
    /// page relies on are never sent twice (`read` refuses that).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why no request was read; each is answered with its status.
#[derive(Debug, PartialEq)]
pub enum Unread {
    /// 413.
    TooLarge,
    /// 408, or the connection went away (nothing is answered then).
    TimedOut,
    /// 400, with what is wrong.
    Malformed(&'static str),
}

/// Headers that decide what the page does: one of each, or the request is
/// ambiguous and refused.
const SINGLE: &[&str] = &["host", "origin", "content-length", "transfer-encoding"];

/// Reads one request of at most [`MAX_REQUEST_BYTES`] before
/// [`REQUEST_TIMEOUT`] runs out, however slowly it comes.
pub fn read(stream: &mut TcpStream) -> Result<Request, Unread> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut data = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(at) = find(&data, b"\r\n\r\n") {
            break at + 4;
        }
        if data.len() >= MAX_REQUEST_BYTES {
            return Err(Unread::TooLarge);
        }
        fill(stream, &mut data, deadline)?;
    };
    let head = std::str::from_utf8(&data[..head_end - 4])
        .map_err(|_| Unread::Malformed("the request's head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let mut words = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(Unread::Malformed(
            "the request line is not METHOD TARGET VERSION",
        ));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Unread::Malformed("only HTTP/1.x is spoken here"));
    }
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(Unread::Malformed("a header line has no colon"));
        };
        if name.is_empty() || name.trim() != name {
            return Err(Unread::Malformed("a header's name is empty or spaced"));
        }
        let repeated = headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        if repeated && SINGLE.iter().any(|s| s.eq_ignore_ascii_case(name)) {
            return Err(Unread::Malformed(
                "a header that must be sent once is sent twice",
            ));
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut request = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: Vec::new(),
    };
    if request.header("transfer-encoding").is_some() {
        return Err(Unread::Malformed("chunked bodies are not read here"));
    }
    let length = match request.header("content-length") {
        None => 0,
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| Unread::Malformed("Content-Length is not a number"))?,
    };
    if length > MAX_REQUEST_BYTES - head_end {
        return Err(Unread::TooLarge);
    }
    while data.len() < head_end + length {
        fill(stream, &mut data, deadline)?;
    }
    request.body = data[head_end..head_end + length].to_vec();
    Ok(request)
}

/// Reads what has come, waiting at most until `deadline`.
fn fill(stream: &mut TcpStream, data: &mut Vec<u8>, deadline: Instant) -> Result<(), Unread> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Unread::TimedOut);
    }
    stream
        .set_read_timeout(Some(left))
        .map_err(|_| Unread::TimedOut)?;
    let mut chunk = [0u8; 4096];
    let room = MAX_REQUEST_BYTES
        .saturating_sub(data.len())
        .min(chunk.len());
    match stream.read(&mut chunk[..room]) {
        Ok(0) | Err(_) => Err(Unread::TimedOut),
        Ok(n) => {
            data.extend_from_slice(&chunk[..n]);
            Ok(())
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A short text for a person, such as a refusal.
    pub fn text(status: u16, text: &str) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".into())],
            body: format!("{text}\n").into_bytes(),
        }
    }
}

/// Writes `response`, closed by the server after it; the headers every
/// answer of the page carries are added here. The referrer (which holds
/// the token) goes only to the page itself: `no-referrer` would make a
/// browser send its forms with `Origin: null`, which the page refuses.
pub fn write(stream: &mut TcpStream, response: &Response) -> io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nConnection: close\r\n\
         Cache-Control: no-store\r\nReferrer-Policy: same-origin\r\n\
         X-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\n",
        response.status,
        reason(response.status),
        response.body.len()
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&response.body)?;
    stream.flush()?;
    // Read what the client still sends before closing: closing with
    // unread bytes resets the connection, and the client may lose the
    // answer (a 413 sent before the body was read).
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut rest = [0u8; 4096];
    let mut drained = 0;
    while let Ok(n @ 1..) = stream.read(&mut rest) {
        drained += n;
        if drained > 4 * MAX_REQUEST_BYTES {
            break;
        }
    }
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        303 => "See Other",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// The pairs of a query or a form body (`application/x-www-form-urlencoded`),
/// decoded; a pair that does not decode to UTF-8 is left out.
pub fn form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(name)?, decode(value)?))
        })
        .collect()
}

fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// `text` for a URL's query: everything but letters, digits and `-._~`
/// percent-encoded.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_and_encode_back() {
        assert_eq!(
            form("id=ab12&reason=not+now%2C%20please&x"),
            [
                ("id".to_owned(), "ab12".to_owned()),
                ("reason".to_owned(), "not now, please".to_owned()),
                ("x".to_owned(), String::new()),
            ]
        );
        // Bad escapes and bytes that are not UTF-8 are left out.
        assert!(form("a=%zz&b=%ff&c=%4").is_empty());
        let text = "déjà vu & <b>\"x\"</b>?=";
        assert_eq!(form(&format!("t={}", encode(text)))[0].1, text);
    }
}
