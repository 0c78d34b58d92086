//! The pumps' IO: each pump has a thread of its own and reads and writes
//! with plain blocking system calls.
//!
//! Why: a read that waits in the kernel is woken by the writer directly and
//! returns the bytes in the same call, where a read through the event loop
//! takes a wake-up from `epoll_wait`, then the read, on every message. On a
//! busy machine that difference was most of toolwarden's cost per round
//! trip (docs/BENCHMARKS.md). The rest of the session (signals, the child,
//! timers) stays on the event loop.

use std::fs::File;
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::wire::framing::Source;

/// A descriptor read or written with blocking calls.
pub struct Fd(File);

impl Fd {
    /// One of toolwarden's own standard streams, duplicated. Whatever it is
    /// (pipe, socket, file, terminal), blocking calls work on it; if the
    /// client handed it over in non-blocking mode, a call that would block
    /// waits in `poll(2)` instead, so the mode the client may share is left
    /// alone.
    pub fn stdio(fd: impl AsFd) -> io::Result<Fd> {
        Ok(Fd(File::from(fd.as_fd().try_clone_to_owned()?)))
    }

    /// One end of a pipe toolwarden made for the server: it is only
    /// toolwarden's, so it is made blocking.
    pub fn own_pipe(fd: OwnedFd) -> io::Result<Fd> {
        set_blocking(&fd)?;
        Ok(Fd(File::from(fd)))
    }

    /// Waits until the descriptor is ready for `events` (after EAGAIN).
    fn wait(&self, events: libc::c_short) -> io::Result<()> {
        let mut pollfd = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd, and its length is 1.
        if unsafe { libc::poll(&mut pollfd, 1, -1) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Reads into memory that need not be initialized: the kernel only
    /// writes to it.
    fn read_blocking(&self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        if buf.len() >= PREFAULT {
            prefault(self, buf);
        }
        loop {
            // SAFETY: the kernel writes at most `buf.len()` bytes into
            // `buf`, which is valid for writes for that long.
            let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => self.wait(libc::POLLIN)?,
                _ => return Err(e),
            }
        }
    }

    fn write_blocking(&self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match (&self.0).write(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(libc::POLLOUT)?,
                other => return other,
            }
        }
    }
}

/// A read offered at least this much room is part of a large message: the
/// line reader keeps less than this between messages, so it offers this
/// much only while it reads a line that has outgrown what it keeps.
const PREFAULT: usize = 2 * crate::wire::framing::KEPT;
const _: () = assert!(PREFAULT > crate::wire::framing::KEPT);

/// Maps in, with one call, the fresh pages the next read will fill: as
/// many as the pipe holds now, no more, so memory still follows the
/// message. Without it the kernel takes one page fault per 4 KiB as the
/// read copies, which on a 4 MiB message costs more than parsing it
/// (docs/BENCHMARKS.md, memory). Best effort: on any error the read
/// faults the pages in as usual.
#[cfg(target_os = "linux")]
fn prefault(fd: &Fd, buf: &mut [MaybeUninit<u8>]) {
    let mut waiting: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    if unsafe { libc::ioctl(fd.0.as_raw_fd(), libc::FIONREAD, &mut waiting) } < 0 {
        return;
    }
    let page = 4096;
    let start = buf.as_mut_ptr() as usize;
    let first = start.next_multiple_of(page);
    let last = (start + buf.len().min(waiting.max(0) as usize)) / page * page;
    if last > first {
        // SAFETY: the range lies inside `buf`, memory this process owns;
        // populating only maps pages in, it changes no contents.
        unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                last - first,
                libc::MADV_POPULATE_WRITE,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn prefault(_: &Fd, _: &mut [MaybeUninit<u8>]) {}

pub fn set_blocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own; it touches no memory.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

impl Source for Fd {
    fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        self.read_blocking(buf)
    }
}

impl Write for Fd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_blocking(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The server's stdin, which the client pump writes and the session closes
/// when it stops: a thread blocked reading the client cannot be cancelled,
/// so the pipe is closed from outside instead.
#[derive(Clone)]
pub struct ServerInput(Arc<Mutex<Option<Fd>>>);

impl ServerInput {
    pub fn new(fd: Fd) -> ServerInput {
        ServerInput(Arc::new(Mutex::new(Some(fd))))
    }

    /// Closes the pipe, so the server reads end of input. A write under
    /// way holds the pipe (for long only if the server does not read its
    /// input): then a helper thread closes it as soon as the write ends,
    /// which the stop's signals bring about at the latest.
    pub fn close(&self) {
        if let Ok(mut fd) = self.0.try_lock() {
            fd.take();
            return;
        }
        let input = Arc::clone(&self.0);
        let _ = std::thread::Builder::new()
            .name("close-server-input".into())
            .spawn(move || {
                input.lock().unwrap_or_else(|e| e.into_inner()).take();
            });
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the server's input is closed")
}

impl Write for ServerInput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let fd = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match fd.as_ref() {
            Some(fd) => fd.write_blocking(buf),
            None => Err(closed()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs blocking work, such as a pump, on a thread of its own; the
/// receiver gets its result, and the event loop can wait for it. Nothing
/// waits for the thread itself: one blocked on a pipe a grandchild holds
/// open ends with toolwarden.
pub fn spawn<T, F>(name: &str, work: F) -> io::Result<oneshot::Receiver<T>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (done, result) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = done.send(work());
        })?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::framing::{Frame, LineReader};

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors that we then own.
        assert_eq!(
            unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK) },
            0
        );
        // SAFETY: both are open and owned by nobody else.
        unsafe {
            use std::os::fd::FromRawFd;
            (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
        }
    }

    #[test]
    fn a_read_waits_for_the_writer_even_on_a_non_blocking_descriptor() {
        let (read_end, write_end) = pipe();
        let reader = Fd::stdio(&read_end).unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            File::from(write_end).write_all(b"late").unwrap();
        });
        let mut lines = LineReader::new(reader, 100);
        assert_eq!(lines.next_frame().unwrap(), Some(Frame::Line(&b"late"[..])));
        writer.join().unwrap();
    }

    #[test]
    fn a_large_line_read_into_fresh_memory_arrives_whole() {
        // Past the size where reads map their pages in ahead (PREFAULT),
        // in pieces of odd sizes, so reads end mid-page.
        let (read_end, write_end) = pipe();
        let line: Vec<u8> = (0..3_000_001u32).map(|i| b'a' + (i % 23) as u8).collect();
        let sent = line.clone();
        let writer = std::thread::spawn(move || {
            let out = Fd::own_pipe(write_end).unwrap();
            for piece in sent.chunks(70_001) {
                let mut piece = piece;
                while !piece.is_empty() {
                    let n = out.write_blocking(piece).unwrap();
                    piece = &piece[n..];
                }
            }
            out.write_blocking(b"\nnext\n").unwrap();
        });
        let reader = Fd::own_pipe(read_end).unwrap();
        let mut lines = LineReader::new(reader, 1 << 26);
        match lines.next_frame().unwrap() {
            Some(Frame::Line(got)) => assert!(got == line, "the line changed"),
            other => panic!("expected the line, got {other:?}"),
        }
        assert_eq!(lines.next_frame().unwrap(), Some(Frame::Line(&b"next"[..])));
        writer.join().unwrap();
    }

    #[test]
    fn a_closed_server_input_refuses_writes() {
        let (_read_end, write_end) = pipe();
        let input = ServerInput::new(Fd::own_pipe(write_end).unwrap());
        let mut writer = input.clone();
        writer.write_all(b"one\n").unwrap();
        input.close();
        let e = writer.write_all(b"two\n").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn closing_during_a_blocked_write_closes_once_the_write_ends() {
        let (read_end, write_end) = pipe();
        let input = ServerInput::new(Fd::own_pipe(write_end).unwrap());
        // More than the pipe holds: the write blocks, holding the pipe.
        let mut writer = input.clone();
        let writing = std::thread::spawn(move || writer.write_all(&vec![b'x'; 1 << 21]));
        std::thread::sleep(std::time::Duration::from_millis(50));
        input.close();
        // Reading lets the write finish; then the pipe must close.
        let reader = Fd::stdio(&read_end).unwrap();
        let mut buf = vec![MaybeUninit::uninit(); 1 << 16];
        let mut total = 0;
        while total < 1 << 21 {
            total += reader.read_blocking(&mut buf).unwrap();
        }
        writing.join().unwrap().unwrap();
        let mut pollfd = libc::pollfd {
            fd: reader.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, and its length is 1.
        let ready = unsafe { libc::poll(&mut pollfd, 1, 5_000) };
        assert_eq!(ready, 1, "the pipe was not closed after the write");
        assert_eq!(reader.read_blocking(&mut buf).unwrap(), 0, "end of input");
    }

    #[test]
    fn a_thread_reports_its_result() {
        let result = spawn("test-pump", || Err::<(), _>(io::Error::other("done"))).unwrap();
        let outcome = result.blocking_recv().unwrap();
        assert_eq!(outcome.unwrap_err().to_string(), "done");
    }
}
