//! Newline framing: a line reader with a hard length cap and a reused
//! buffer, and a writer that sends one message per line.
//!
//! `read_line`/`lines()` would grow without bound on a line that never ends;
//! this reader keeps at most `max` bytes of one line, then discards the rest
//! of it up to its newline so the session can go on.

use std::io::{self, Write};
use std::mem::MaybeUninit;

/// How much is read from the pipe at a time.
const CHUNK: usize = 64 * 1024;
/// Buffers up to this size are kept from one message to the next; a
/// larger one, which a large message needed, is given back.
pub const KEPT: usize = 8 * CHUNK;
/// How much of an over-long line is kept to find its id.
const PREFIX: usize = 4 * 1024;

/// Where a line reader's bytes come from. Like [`std::io::Read`], but into
/// memory that need not be initialized: the reader keeps spare room of up
/// to a large message's size, and zeroing it before every read would cost
/// more than the read and touch memory no message needs.
pub trait Source {
    /// Reads at most `buf.len()` bytes into the front of `buf`, and returns
    /// how many; 0 at end of input.
    fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize>;
}

/// For tests and benchmarks: reads from a byte slice.
impl Source for &[u8] {
    fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        let n = buf.len().min(self.len());
        for (to, from) in buf.iter_mut().zip(&self[..n]) {
            to.write(*from);
        }
        *self = &self[n..];
        Ok(n)
    }
}

/// One framing event.
#[derive(Debug, PartialEq)]
pub enum Frame<'a> {
    /// A line without its `\n` (and without a `\r` before it).
    Line(&'a [u8]),
    /// A line longer than the cap, already discarded. `prefix` holds its
    /// first bytes, `len` how long it was.
    TooLong { prefix: Vec<u8>, len: usize },
}

pub struct LineReader<R> {
    inner: R,
    /// The bytes read; reads go into its spare capacity, which is never
    /// zeroed first, so memory follows what arrives, not what is reserved.
    buf: Vec<u8>,
    /// Start of the bytes not yet handed out.
    start: usize,
    /// How far from `start` the buffer is known to hold no newline.
    scanned: usize,
    max: usize,
    eof: bool,
}

impl<R: Source> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            max,
            eof: false,
        }
    }

    /// The next line, or `None` at end of input. A last line without a
    /// newline still counts as a line.
    pub fn next_frame(&mut self) -> io::Result<Option<Frame<'_>>> {
        if self.start == self.buf.len() {
            self.reset();
        }
        loop {
            let pending = &self.buf[self.start..];
            if let Some(pos) = memchr::memchr(b'\n', &pending[self.scanned..]) {
                let end = self.start + self.scanned + pos;
                if end - self.start > self.max {
                    let prefix = self.buf[self.start..self.start + PREFIX.min(self.max)].to_vec();
                    let len = end - self.start;
                    self.start = end + 1;
                    self.scanned = 0;
                    return Ok(Some(Frame::TooLong { prefix, len }));
                }
                let line = &self.buf[self.start..end];
                self.start = end + 1;
                self.scanned = 0;
                return Ok(Some(Frame::Line(line.strip_suffix(b"\r").unwrap_or(line))));
            }
            self.scanned = pending.len();
            if pending.len() > self.max {
                return self.discard_rest().map(Some);
            }
            if self.eof {
                if pending.is_empty() {
                    return Ok(None);
                }
                let line = &self.buf[self.start..];
                self.start = self.buf.len();
                self.scanned = 0;
                return Ok(Some(Frame::Line(line.strip_suffix(b"\r").unwrap_or(line))));
            }
            self.fill()?;
        }
    }

    /// Whether the next line is already here, so that [`LineReader::next_frame`]
    /// returns without reading. The pumps flush what they wrote only when
    /// it is not: messages that came in one read go out in one write, and
    /// none waits for more input.
    pub fn has_line(&mut self) -> bool {
        let pending = &self.buf[self.start..];
        match memchr::memchr(b'\n', &pending[self.scanned..]) {
            Some(pos) => {
                // `next_frame` resumes its search from here.
                self.scanned += pos;
                true
            }
            None => {
                self.scanned = pending.len();
                self.eof && !pending.is_empty()
            }
        }
    }

    /// Everything handed out: start over at the front of the buffer, and
    /// give back the memory a large message needed once it is gone.
    fn reset(&mut self) {
        self.start = 0;
        self.scanned = 0;
        self.buf.clear();
        if self.buf.capacity() > KEPT {
            self.buf = Vec::new();
        }
    }

    /// Reads more. Only now are the bytes already handed out dropped: what
    /// is left then is one unfinished line, so moving it is cheap, where
    /// dropping each line as it is handed out would move everything behind
    /// it every time (quadratic in a burst of small messages).
    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < CHUNK {
            // At least doubles: a large message is read in a few large
            // reads, into memory it touches only as the bytes arrive.
            self.buf.reserve(CHUNK);
        }
        let n = self.inner.read_uninit(self.buf.spare_capacity_mut())?;
        // SAFETY: the read initialized the first `n` bytes of the spare
        // capacity, which now follow the bytes already there.
        unsafe { self.buf.set_len(self.buf.len() + n) };
        if n == 0 {
            self.eof = true;
        }
        Ok(())
    }

    /// Throws away the current line up to and including its newline,
    /// keeping only its first bytes, so memory stays at `max`.
    fn discard_rest(&mut self) -> io::Result<Frame<'static>> {
        let prefix = self.buf[self.start..self.start + PREFIX.min(self.max)].to_vec();
        let mut len = self.buf.len() - self.start;
        self.reset();
        loop {
            if let Some(pos) = memchr::memchr(b'\n', &self.buf[self.start..]) {
                len += pos;
                self.start += pos + 1;
                return Ok(Frame::TooLong { prefix, len });
            }
            len += self.buf.len() - self.start;
            self.reset();
            if self.eof {
                return Ok(Frame::TooLong { prefix, len });
            }
            self.fill()?;
        }
    }
}

/// Writes whole messages, each followed by `\n`. A message leaves at the
/// latest with the next flush, and the pumps flush before they wait for
/// input, so the peer never waits on a message sitting in a buffer.
pub struct LineWriter<W> {
    inner: W,
    /// Messages queued, newlines included; small ones are gathered here so
    /// that a batch leaves in one write.
    buf: Vec<u8>,
}

impl<W: Write> LineWriter<W> {
    pub fn new(inner: W) -> Self {
        LineWriter {
            inner,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    /// Writes one message and flushes it.
    pub fn send(&mut self, message: &[u8]) -> io::Result<()> {
        self.queue(message)?;
        self.flush()
    }

    /// Queues one message; it leaves with the next flush (or as soon as a
    /// chunk's worth is queued). For a pump that has more lines already
    /// read.
    pub fn queue(&mut self, message: &[u8]) -> io::Result<()> {
        if message.len() >= CHUNK {
            // A large message is written from where it is, not copied.
            self.flush()?;
            self.inner.write_all(message)?;
        } else {
            self.buf.extend_from_slice(message);
        }
        self.buf.push(b'\n');
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let written = self.inner.write_all(&self.buf);
            self.buf.clear();
            written?;
        }
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::VecDeque;

    /// Hands out its pieces one read at a time, as a pipe would when the
    /// writer wrote them apart.
    struct Pieces(VecDeque<&'static [u8]>);

    impl Source for Pieces {
        fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
            let Some(mut piece) = self.0.pop_front() else {
                return Ok(0);
            };
            let n = piece.read_uninit(buf)?;
            if !piece.is_empty() {
                self.0.push_front(piece);
            }
            Ok(n)
        }
    }

    /// Keeps every write apart, to see what left in which write.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.push(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn frames(input: &[u8], max: usize) -> Vec<Result<String, usize>> {
        let mut reader = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some(frame) = reader.next_frame().unwrap() {
            out.push(match frame {
                Frame::Line(l) => Ok(String::from_utf8_lossy(l).into_owned()),
                Frame::TooLong { len, .. } => Err(len),
            });
        }
        out
    }

    #[test]
    fn has_line_tells_whether_next_needs_a_read() {
        // Two whole lines and half of a third arrive in one read.
        let pieces = Pieces(VecDeque::from([&b"one\ntwo\nthr"[..], b"ee\nlast"]));
        let mut reader = LineReader::new(pieces, 100);
        assert_eq!(reader.next_frame().unwrap(), Some(Frame::Line(b"one")));
        assert!(reader.has_line());
        assert_eq!(reader.next_frame().unwrap(), Some(Frame::Line(b"two")));
        assert!(!reader.has_line(), "only half a line is here");
        assert_eq!(reader.next_frame().unwrap(), Some(Frame::Line(b"three")));
        assert!(!reader.has_line(), "the end of input is not known yet");
        assert_eq!(reader.next_frame().unwrap(), Some(Frame::Line(b"last")));
        assert!(!reader.has_line());
        assert_eq!(reader.next_frame().unwrap(), None);
    }

    #[test]
    fn queued_messages_leave_with_the_flush_in_one_write() {
        let mut writer = LineWriter::new(Writes::default());
        writer.queue(b"a").unwrap();
        writer.queue(b"b").unwrap();
        assert!(writer.inner.0.is_empty(), "nothing leaves before the flush");
        writer.flush().unwrap();
        assert_eq!(writer.inner.0, vec![b"a\nb\n".to_vec()]);
        writer.send(b"c").unwrap();
        assert_eq!(writer.inner.0[1], b"c\n", "a message sent leaves at once");
    }

    #[test]
    fn a_large_message_is_written_from_where_it_is() {
        let mut writer = LineWriter::new(Writes::default());
        writer.queue(b"small").unwrap();
        let large = vec![b'x'; CHUNK];
        writer.send(&large).unwrap();
        assert_eq!(
            writer.inner.0,
            vec![b"small\n".to_vec(), large, b"\n".to_vec()],
            "what was queued first leaves first"
        );
    }

    #[test]
    fn splits_lines_and_strips_crlf() {
        let got = frames(b"a\nbb\r\n\nlast", 100);
        assert_eq!(
            got,
            vec![
                Ok("a".into()),
                Ok("bb".into()),
                Ok("".into()),
                Ok("last".into())
            ]
        );
    }

    #[test]
    fn an_overlong_line_is_reported_and_the_next_one_survives() {
        let mut input = vec![b'x'; 1000];
        input.extend_from_slice(b"\nok\n");
        let got = frames(&input, 10);
        assert_eq!(got, vec![Err(1000), Ok("ok".into())]);
        // Exactly at the cap is fine.
        assert_eq!(frames(b"0123456789\n", 10), vec![Ok("0123456789".into())]);
        // Over the cap and never ended.
        assert_eq!(frames(&[b'y'; 300_000], 10), vec![Err(300_000)]);
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        let pieces = Pieces(VecDeque::from([&b"{\"a\":"[..], b"1}\n{\"b\"", b":2}\n"]));
        let mut reader = LineReader::new(pieces, 100);
        assert_eq!(
            reader.next_frame().unwrap(),
            Some(Frame::Line(b"{\"a\":1}"))
        );
        assert_eq!(
            reader.next_frame().unwrap(),
            Some(Frame::Line(b"{\"b\":2}"))
        );
        assert_eq!(reader.next_frame().unwrap(), None);
    }
}
