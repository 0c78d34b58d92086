//! Server-sent events, read as the WHATWG event-stream rules say: lines
//! end with CRLF, LF or CR; `:` starts a comment; the fields are `data`
//! (lines joined with LF), `event`, `id` (kept across events, as the last
//! event id) and `retry`; a blank line dispatches; an event cut short by
//! the end of the stream is dropped. Memory is bounded: an event whose
//! data would pass the cap is skipped to its end and reported by its size.

use std::io::{self, Read};
use std::time::Duration;

/// How much is read from the stream at a time.
const CHUNK: usize = 16 * 1024;

/// How much of an event too long to relay is kept: enough to find the id
/// of the request it answers.
pub const PREFIX: usize = 4 * 1024;

/// One event.
#[derive(Debug, Default, PartialEq)]
pub struct Event {
    /// Its type (`message` when it names none).
    pub kind: String,
    /// Its data lines, joined with LF; of an event too long, the first
    /// [`PREFIX`] bytes.
    pub data: Vec<u8>,
    /// The `id` this event set, if it set one.
    pub id: Option<String>,
    /// The data was longer than the cap: this is its length (at least).
    pub too_long: Option<usize>,
}

pub struct EventStream<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    max: usize,
    /// The stream's last event id, which `Last-Event-ID` resumes from.
    pub last_id: Option<String>,
    /// The reconnection time the server asked for.
    pub retry: Option<Duration>,
    eof: bool,
    /// At the very start: a BOM is skipped.
    first: bool,
    /// A CR ended the last line: an LF right after it belongs to it.
    after_cr: bool,
}

/// A line as the reader hands it out.
enum Line {
    Text(Vec<u8>),
    /// A line longer than the cap, discarded: its length and first bytes.
    TooLong(usize, Vec<u8>),
}

impl<R: Read> EventStream<R> {
    /// Reads events from `inner`, whose data may be at most `max` bytes.
    pub fn new(inner: R, max: usize) -> Self {
        EventStream {
            inner,
            buf: Vec::new(),
            start: 0,
            max,
            last_id: None,
            retry: None,
            eof: false,
            first: true,
            after_cr: false,
        }
    }

    /// The next event, or `None` at the end of the stream.
    pub fn next_event(&mut self) -> io::Result<Option<Event>> {
        let mut event = Event::default();
        let mut kind = String::new();
        loop {
            let line = match self.next_line()? {
                Some(line) => line,
                // What was not dispatched is dropped.
                None => return Ok(None),
            };
            let line = match line {
                Line::Text(line) => line,
                Line::TooLong(len, start) => {
                    // Only a data line may be that long with a sane server;
                    // whatever it was, the event is not relayed.
                    if let Some(value) = start.strip_prefix(b"data:") {
                        let value = value.strip_prefix(b" ").unwrap_or(value);
                        keep_prefix(&mut event.data, value);
                    }
                    event.too_long = Some(event.too_long.unwrap_or(event.data.len()) + len);
                    continue;
                }
            };
            if line.is_empty() {
                if event.data.is_empty() && event.too_long.is_none() {
                    // Nothing to dispatch; the id it set stays.
                    event = Event::default();
                    kind.clear();
                    continue;
                }
                if event.data.last() == Some(&b'\n') {
                    event.data.pop();
                }
                event.kind = if kind.is_empty() {
                    "message".into()
                } else {
                    kind
                };
                return Ok(Some(event));
            }
            if line[0] == b':' {
                continue;
            }
            let (field, value) = match memchr::memchr(b':', &line) {
                Some(at) => {
                    let value = &line[at + 1..];
                    (&line[..at], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (&line[..], &b""[..]),
            };
            match field {
                b"data" => {
                    if let Some(len) = &mut event.too_long {
                        *len += value.len() + 1;
                        keep_prefix(&mut event.data, value);
                    } else if event.data.len() + value.len() > self.max {
                        event.too_long = Some(event.data.len() + value.len());
                        keep_prefix(&mut event.data, value);
                    } else {
                        event.data.extend_from_slice(value);
                        event.data.push(b'\n');
                    }
                }
                b"event" => kind = String::from_utf8_lossy(value).into_owned(),
                b"id" if !value.contains(&0) => {
                    let id = String::from_utf8_lossy(value).into_owned();
                    self.last_id = (!id.is_empty()).then(|| id.clone());
                    event.id = Some(id);
                }
                b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                    if let Ok(ms) = std::str::from_utf8(value).unwrap_or("").parse::<u64>() {
                        self.retry = Some(Duration::from_millis(ms));
                    }
                }
                _ => {}
            }
        }
    }

    /// The next line without its ending, `None` at the end of the stream
    /// (a last line without an ending is not a line: its event is cut).
    fn next_line(&mut self) -> io::Result<Option<Line>> {
        // A line that never ends past this is discarded as it comes.
        let cap = self.max + 64;
        let mut skipped = 0usize;
        let mut start = Vec::new();
        loop {
            if self.after_cr && self.start < self.buf.len() {
                if self.buf[self.start] == b'\n' {
                    self.start += 1;
                }
                self.after_cr = false;
            }
            if self.first && self.buf.len() - self.start >= 3 {
                if self.buf[self.start..].starts_with("\u{feff}".as_bytes()) {
                    self.start += 3;
                }
                self.first = false;
            }
            let pending = &self.buf[self.start..];
            if let Some(at) = memchr::memchr2(b'\n', b'\r', pending) {
                let line = pending[..at].to_vec();
                self.after_cr = pending[at] == b'\r';
                self.start += at + 1;
                self.first = false;
                if skipped > 0 {
                    return Ok(Some(Line::TooLong(skipped + line.len(), start)));
                }
                return Ok(Some(Line::Text(line)));
            }
            if pending.len() > cap {
                if skipped == 0 {
                    start = pending[..PREFIX.min(pending.len())].to_vec();
                }
                skipped += pending.len();
                self.start = self.buf.len();
            }
            if self.eof {
                return Ok(None);
            }
            self.fill()?;
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + CHUNK, 0);
        let n = loop {
            match self.inner.read(&mut self.buf[len..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(len + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(())
    }
}

/// Appends to `kept` what of `more` fits within [`PREFIX`].
fn keep_prefix(kept: &mut Vec<u8>, more: &[u8]) {
    kept.truncate(PREFIX);
    let room = PREFIX - kept.len();
    kept.extend_from_slice(&more[..room.min(more.len())]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out its bytes in the pieces given.
    struct Pieces(Vec<Vec<u8>>);

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let piece = self.0.remove(0);
            buf[..piece.len()].copy_from_slice(&piece);
            Ok(piece.len())
        }
    }

    fn events_of(pieces: &[&str], max: usize) -> (Vec<Event>, Option<String>, Option<Duration>) {
        let mut stream = EventStream::new(
            Pieces(pieces.iter().map(|p| p.as_bytes().to_vec()).collect()),
            max,
        );
        let mut events = Vec::new();
        while let Some(event) = stream.next_event().unwrap() {
            events.push(event);
        }
        (events, stream.last_id, stream.retry)
    }

    fn data(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| String::from_utf8(e.data.clone()).unwrap())
            .collect()
    }

    #[test]
    fn data_lines_are_joined_with_lf_and_every_line_ending_counts() {
        let (events, _, _) = events_of(
            &[
                "\u{feff}data: {\"a\":\r\ndata:1}\r\n\r\n",
                "data: x\rdata:  y\r\r",
                "data\n\n",
                "data: z\n\n",
            ],
            1024,
        );
        assert_eq!(data(&events), ["{\"a\":\n1}", "x\n y", "", "z"]);
        assert!(events.iter().all(|e| e.kind == "message"));
    }

    #[test]
    fn a_line_ending_split_between_reads_is_one_ending() {
        let (events, _, _) = events_of(&["data: a\r", "\ndata: b\r", "\n\r", "\n"], 1024);
        assert_eq!(data(&events), ["a\nb"]);
    }

    #[test]
    fn comments_ids_types_and_retry() {
        let (events, last, retry) = events_of(
            &[
                ": keep-alive\n\n",
                "id: 7\ndata:\n\n", // a priming event: an id, no data
                "event: endpoint\ndata: /messages?s=1\n\n",
                "id: 8\nretry: 1500\nretry: x\nevent: message\ndata: {}\n\n",
                "id\ndata: after\n\n",
                "id: a\0b\ndata: nul\n\n",
                "data: cut off at the end",
            ],
            1024,
        );
        assert_eq!(data(&events), ["", "/messages?s=1", "{}", "after", "nul"]);
        assert_eq!(events[0].id.as_deref(), Some("7"));
        assert_eq!(events[1].kind, "endpoint");
        assert_eq!(events[1].id, None);
        assert_eq!(events[2].id.as_deref(), Some("8"));
        // An empty id resets the last event id; one with NUL is ignored.
        assert_eq!(events[3].id.as_deref(), Some(""));
        assert_eq!(events[4].id, None);
        assert_eq!(last, None);
        assert_eq!(retry, Some(Duration::from_millis(1500)));
        let (_, last, _) = events_of(&["id: 9\n\n", "data: x\n\n"], 1024);
        assert_eq!(last.as_deref(), Some("9"));
    }

    #[test]
    fn an_event_over_the_cap_is_skipped_and_measured_and_the_next_one_read() {
        let long = format!("data: {}\n", "x".repeat(5000));
        let (events, _, _) = events_of(
            &[
                "data: 12345\n",
                "data: 67890\n\n",
                &long,
                &long,
                "\ndata: ok\n\n",
            ],
            10,
        );
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].too_long, Some(11));
        assert_eq!(events[0].data, b"12345\n67890");
        assert!(events[1].too_long.unwrap() >= 10_000);
        assert_eq!(events[1].data.len(), PREFIX);
        assert_eq!(data(&events[2..]), ["ok"]);
        assert_eq!(events[2].too_long, None);
    }

    #[test]
    fn memory_stays_near_the_cap_for_a_line_that_never_ends() {
        let chunk = "y".repeat(CHUNK);
        let mut pieces = vec!["data: ".to_owned()];
        pieces.extend(std::iter::repeat_n(chunk, 64));
        pieces.push("\n\ndata: next\n\n".into());
        let mut stream = EventStream::new(
            Pieces(pieces.iter().map(|p| p.as_bytes().to_vec()).collect()),
            1000,
        );
        let first = stream.next_event().unwrap().unwrap();
        assert!(first.too_long.unwrap() >= 64 * CHUNK);
        assert!(
            stream.buf.capacity() < 4 * CHUNK,
            "{}",
            stream.buf.capacity()
        );
        assert_eq!(stream.next_event().unwrap().unwrap().data, b"next");
    }
}
