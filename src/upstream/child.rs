//! The server as a child process: started in a process group of its own
//! (launchers such as `npx` and `uvx` start the real server as a
//! grandchild), stopped in order, and turned into an exit code.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tracing::{info, warn};

pub struct Server {
    child: Child,
    /// The process group: the server's pid, since it leads its own group.
    group: i32,
    /// Ends when the server's stderr, relayed, is closed.
    stderr: Option<tokio::sync::oneshot::Receiver<io::Result<()>>>,
    /// The last lines of the server's stderr, to say why it stopped.
    tail: Arc<Mutex<StderrTail>>,
}

/// What becomes of the server's stderr. Either way it is read through a
/// pipe, and its last lines are kept ([`Server::stderr_tail`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerStderr {
    /// What the server writes passes to toolwarden's stderr as it is.
    Inherit,
    /// Each of its lines reaches toolwarden's stderr whole, after
    /// [`LABEL`]: with `--audit -` the audit records are on stderr too,
    /// and a server must not be able to write one.
    Labelled,
}

/// What starts each line of the server's stderr when it is labelled. An
/// audit record starts with `{`, so no labelled line passes for one.
pub const LABEL: &[u8] = b"[server] ";

/// How long the stop waits for the server's last stderr lines.
const STDERR_DRAIN: Duration = Duration::from_secs(1);

/// Why a command did not start, with the exit code a shell would use.
#[derive(Debug)]
pub struct SpawnError {
    pub message: String,
    pub exit_code: u8,
}

/// How the server came to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It exited by itself once its stdin was closed.
    ByItself,
    /// It needed SIGTERM.
    Terminated,
    /// It needed SIGKILL.
    Killed,
}

impl Server {
    /// Starts `command` with piped stdin and stdout; its stderr passes to
    /// toolwarden's.
    pub fn spawn(command: &[OsString]) -> Result<(Server, ChildStdin, ChildStdout), SpawnError> {
        Server::spawn_with(command, ServerStderr::Inherit)
    }

    /// [`Server::spawn`], with its stderr inherited or labelled.
    pub fn spawn_with(
        command: &[OsString],
        stderr: ServerStderr,
    ) -> Result<(Server, ChildStdin, ChildStdout), SpawnError> {
        let (program, args) = command.split_first().ok_or_else(|| SpawnError {
            message: "no server command given after --".into(),
            exit_code: 2,
        })?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe system calls.
        unsafe {
            cmd.pre_exec(move || {
                // If toolwarden dies, even by SIGKILL, the server gets
                // SIGKILL too instead of running on unsupervised.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // toolwarden may have died before the line above.
                if libc::getppid() != parent {
                    return Err(io::Error::other(
                        "toolwarden exited while starting the server",
                    ));
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            let name = crate::redact::command(&[program.to_string_lossy()]);
            let (why, exit_code) = match e.kind() {
                io::ErrorKind::NotFound => ("not found".to_owned(), 127),
                io::ErrorKind::PermissionDenied => ("permission denied".to_owned(), 126),
                _ => (e.to_string(), 127),
            };
            SpawnError {
                message: format!("cannot start the server `{name}`: {why}"),
                exit_code,
            }
        })?;
        let group = child.id().map(|id| id as i32).unwrap_or(0);
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        enlarge_pipe(&stdin);
        enlarge_pipe(&stdout);
        let tail = Arc::new(Mutex::new(StderrTail::default()));
        let from = child.stderr.take().expect("stderr is piped");
        // tokio made it non-blocking; a thread of its own reads it.
        let from = from
            .into_owned_fd()
            .and_then(|fd| crate::session::blocking::set_blocking(&fd).map(|()| fd))
            .map_err(|e| SpawnError {
                message: format!("cannot read the server's stderr: {e}"),
                exit_code: 1,
            })?;
        let from = Teed {
            from: std::fs::File::from(from),
            tail: Arc::clone(&tail),
        };
        let relayed = crate::session::blocking::spawn("server-stderr", move || match stderr {
            ServerStderr::Inherit => pass_through(from),
            ServerStderr::Labelled => label_lines(from, |line| {
                // Locked for the line, as the audit writer locks it for a
                // record: the two are never interleaved.
                io::stderr().lock().write_all(line)
            }),
        })
        .map_err(|e| SpawnError {
            message: format!("cannot relay the server's stderr: {e}"),
            exit_code: 1,
        })?;
        info!(pid = group, "server started");
        Ok((
            Server {
                child,
                group,
                stderr: Some(relayed),
                tail,
            },
            stdin,
            stdout,
        ))
    }

    pub fn group(&self) -> i32 {
        self.group
    }

    /// The last lines the server wrote to its stderr, at most
    /// [`TAIL_LINES`] and [`TAIL_BYTES`], each as it may be shown:
    /// credentials hidden, control characters escaped. Complete once
    /// [`Server::stop`] returned.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.tail.lock().unwrap_or_else(|e| e.into_inner()).lines()
    }

    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Waits for the server to exit after its stdin was closed; then
    /// SIGTERM to its group, and SIGKILL if that is not enough.
    pub async fn stop(
        &mut self,
        close_wait: Duration,
        term_wait: Duration,
    ) -> io::Result<(ExitStatus, Stopped)> {
        let stopped = self.stop_process(close_wait, term_wait).await;
        // The server's last lines, when its stderr is relayed, reach
        // toolwarden's stderr before toolwarden exits; a grandchild that
        // holds the pipe open is not waited for.
        if let Some(relayed) = self.stderr.take() {
            let _ = tokio::time::timeout(STDERR_DRAIN, relayed).await;
        }
        stopped
    }

    async fn stop_process(
        &mut self,
        close_wait: Duration,
        term_wait: Duration,
    ) -> io::Result<(ExitStatus, Stopped)> {
        if let Ok(status) = tokio::time::timeout(close_wait, self.child.wait()).await {
            return Ok((status?, Stopped::ByItself));
        }
        info!("server still running {close_wait:?} after its stdin closed: SIGTERM");
        signal_group(self.group, libc::SIGTERM);
        if let Ok(status) = tokio::time::timeout(term_wait, self.child.wait()).await {
            return Ok((status?, Stopped::Terminated));
        }
        warn!("server still running {term_wait:?} after SIGTERM: SIGKILL");
        signal_group(self.group, libc::SIGKILL);
        Ok((self.child.wait().await?, Stopped::Killed))
    }
}

/// The most of the server's stderr kept to show when it stops: lines, and
/// bytes of them (SECURITY.md, bounds).
pub const TAIL_LINES: usize = 10;
pub const TAIL_BYTES: usize = 2048;

/// The last lines of a stream, within [`TAIL_LINES`] and [`TAIL_BYTES`]:
/// a line longer than that keeps its first [`TAIL_BYTES`].
#[derive(Default)]
struct StderrTail {
    lines: VecDeque<Vec<u8>>,
    /// The line being written, not yet ended.
    open: Vec<u8>,
    /// Bytes in `lines`.
    bytes: usize,
}

impl StderrTail {
    fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let end = memchr::memchr(b'\n', bytes);
            let piece = &bytes[..end.unwrap_or(bytes.len())];
            let room = TAIL_BYTES - self.open.len();
            self.open.extend_from_slice(&piece[..piece.len().min(room)]);
            match end {
                Some(end) => {
                    self.end_line();
                    bytes = &bytes[end + 1..];
                }
                None => break,
            }
        }
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.open);
        self.bytes += line.len();
        self.lines.push_back(line);
        while self.lines.len() > TAIL_LINES || self.bytes > TAIL_BYTES {
            let dropped = self.lines.pop_front().expect("lines are counted");
            self.bytes -= dropped.len();
        }
    }

    /// The lines kept, and the one not yet ended, fit to show.
    fn lines(&self) -> Vec<String> {
        let mut lines: Vec<&[u8]> = self.lines.iter().map(Vec::as_slice).collect();
        if !self.open.is_empty() {
            lines.push(&self.open);
            // Ended lines and the open one together stay within the bound.
            let mut bytes: usize = lines.iter().map(|l| l.len()).sum();
            while lines.len() > TAIL_LINES || bytes > TAIL_BYTES {
                bytes -= lines.remove(0).len();
            }
        }
        lines
            .into_iter()
            .map(|line| crate::redact::peer_line(&String::from_utf8_lossy(line)))
            .filter(|line| !line.trim().is_empty())
            .collect()
    }
}

/// The server's stderr, what is read from it kept in its tail as well.
struct Teed {
    from: std::fs::File,
    tail: Arc<Mutex<StderrTail>>,
}

impl Read for Teed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.from.read(buf)?;
        self.tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(&buf[..n]);
        Ok(n)
    }
}

/// Copies `from` to toolwarden's stderr as it comes. A failed write is
/// ignored: the pipe is still read, so that a server never blocks on a
/// full stderr.
fn pass_through(mut from: impl Read) -> io::Result<()> {
    let mut chunk = [0u8; 4096];
    loop {
        match from.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                let _ = io::stderr().lock().write_all(&chunk[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Relays `from` to `to` line by line, [`LABEL`] in front of each, each
/// line handed over whole (ending in a newline), so that nothing the
/// server writes starts a line of toolwarden's stderr or is glued to one.
/// A line longer than 8 KiB (with its label) is cut into lines of that
/// length, each labelled; memory stays at that.
fn label_lines(mut from: impl Read, mut to: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
    const MAX: usize = 8192;
    let mut line = LABEL.to_vec();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut rest = &chunk[..n];
        while !rest.is_empty() {
            let room = rest.len().min(MAX - line.len());
            let take = memchr::memchr(b'\n', &rest[..room]).map_or(room, |i| i + 1);
            line.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if line.ends_with(b"\n") || line.len() == MAX {
                if !line.ends_with(b"\n") {
                    line.push(b'\n');
                }
                to(&defanged(&line))?;
                line.truncate(LABEL.len());
            }
        }
    }
    if line.len() > LABEL.len() {
        line.push(b'\n');
        to(&defanged(&line))?;
    }
    Ok(())
}

/// A labelled line with what readers take for a line break or a terminal
/// control written out as escapes (`\r` as `\x0d`, U+2028 as `\u2028`):
/// a reader that splits at `\r` or U+2028, or a terminal that moves the
/// cursor, must not see a piece of the line without its label.
fn defanged(line: &[u8]) -> Vec<u8> {
    let body = &line[..line.len() - 1];
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        let seq = &body[i..];
        if seq.starts_with(&[0xe2, 0x80, 0xa8]) || seq.starts_with(&[0xe2, 0x80, 0xa9]) {
            out.extend_from_slice(format!("\\u20{:02x}", 0x28 + seq[2] - 0xa8).as_bytes());
            i += 3;
        } else if seq.starts_with(&[0xc2, 0x85]) {
            out.extend_from_slice(b"\\u0085");
            i += 2;
        } else if (b < 0x20 && b != b'\t') || b == 0x7f {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            i += 1;
        } else {
            out.push(b);
            i += 1;
        }
    }
    out.push(b'\n');
    out
}

/// toolwarden holds a whole message before it forwards it (what was
/// checked is what is sent), so a large message crosses each pipe in one
/// piece; a 1 MiB pipe (Linux's default limit for unprivileged processes)
/// moves it with a sixteenth of the wake-ups of the default 64 KiB. Best
/// effort: a smaller pipe still works.
pub fn enlarge_pipe(pipe: &impl std::os::fd::AsRawFd) {
    // SAFETY: F_SETPIPE_SZ on a descriptor we own; it touches no memory.
    unsafe {
        libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
    }
}

/// Sends `signal` to every process of the server's group. Only called while
/// the group has members (the server is not yet reaped, or something still
/// holds its pipe), so the group id cannot have been reused.
pub fn signal_group(group: i32, signal: i32) {
    if group > 0 {
        // SAFETY: kill(2) with a negative pid signals a process group; it
        // touches no memory.
        unsafe {
            libc::kill(-group, signal);
        }
    }
}

/// A shell's convention: the exit code, or 128 + the signal that killed it.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.saturating_add(signal as u8),
        (None, None) => 1,
    }
}

/// Words for a log line or an error message: "exit code 3", "signal 9".
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "an unknown status".into(),
    }
}

/// Kills the server's process group if toolwarden dies without stopping it,
/// even by SIGKILL: the parent-death signal reaches only the server's own
/// process, not what it started (`npx` runs the real server as its child).
///
/// A forked process waits on a pipe whose other end only toolwarden holds.
/// When toolwarden dies the pipe reads end-of-file and the watchdog kills
/// the group; an orderly stop disarms it first with one byte, so it never
/// signals a group id that could have been reused.
pub struct Watchdog {
    pipe: Option<std::os::fd::OwnedFd>,
}

impl Watchdog {
    pub fn start(group: i32) -> io::Result<Watchdog> {
        use std::os::fd::FromRawFd;
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors we then own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned here.
        let (read, write) = unsafe {
            (
                std::os::fd::OwnedFd::from_raw_fd(fds[0]),
                std::os::fd::OwnedFd::from_raw_fd(fds[1]),
            )
        };
        // Everything the child needs is made before the fork: after it,
        // only async-signal-safe calls.
        let title = WatchdogTitle::new(group);
        // SAFETY: the child only makes async-signal-safe calls (see
        // `watch`) and never returns into Rust code.
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()),
            0 => {
                use std::os::fd::AsRawFd;
                // SAFETY: in the forked child, before anything else.
                unsafe { watch(read.as_raw_fd(), group, &title) }
            }
            _ => {
                drop(read);
                Ok(Watchdog { pipe: Some(write) })
            }
        }
    }

    /// The server is stopped: let the watchdog leave without killing.
    pub fn disarm(mut self) {
        if let Some(pipe) = self.pipe.take() {
            let file = std::fs::File::from(pipe);
            let _ = io::Write::write_all(&mut &file, b"x");
        }
    }
}

/// The name the watchdog shows in `ps`, rather than a second toolwarden
/// with the same arguments.
pub const WATCHDOG_NAME: &str = "toolwarden-watchdog";

/// The watchdog's command line, `toolwarden-watchdog GROUP`, made before
/// the fork: it is written over the process's own command line (what
/// `/proc/PID/cmdline` reads, as setproctitle does), so no exec is needed
/// and nothing is allocated after the fork.
struct WatchdogTitle {
    /// Where the command line is in memory, from `/proc/self/stat`.
    area: Option<(usize, usize)>,
    text: Vec<u8>,
    name: std::ffi::CString,
}

impl WatchdogTitle {
    fn new(group: i32) -> WatchdogTitle {
        WatchdogTitle {
            area: argument_area(),
            text: format!("{WATCHDOG_NAME}\0{group}\0").into_bytes(),
            name: std::ffi::CString::new(WATCHDOG_NAME).expect("no NUL"),
        }
    }
}

/// `arg_start` and `arg_end` of this process (proc(5), fields 48 and 49).
fn argument_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count after its `)`.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let start: usize = fields.get(48 - 3)?.parse().ok()?;
    let end: usize = fields.get(49 - 3)?.parse().ok()?;
    (start != 0 && end > start).then_some((start, end))
}

/// The watchdog's whole life, in the forked child.
///
/// # Safety
/// Only async-signal-safe calls: this runs in a fork of a process that may
/// have other threads.
unsafe fn watch(read: i32, group: i32, title: &WatchdogTitle) -> ! {
    libc::signal(libc::SIGINT, libc::SIG_IGN);
    libc::signal(libc::SIGTERM, libc::SIG_IGN);
    libc::signal(libc::SIGHUP, libc::SIG_IGN);
    // Out of toolwarden's group: a Ctrl-C to the terminal does not reach it.
    libc::setpgid(0, 0);
    // Hold no other descriptor: a copy of the server's stdin or of the
    // client's stdout would keep those pipes from ever closing.
    if read != 3 {
        libc::dup2(read, 3);
    }
    if libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32) != 0 {
        for fd in 4..4096 {
            libc::close(fd);
        }
    }
    libc::close(0);
    libc::close(1);
    libc::prctl(libc::PR_SET_NAME, title.name.as_ptr());
    if let Some((start, end)) = title.area {
        // The command line's own bytes, in this process's copy of the
        // memory: the new one, then zeros to the end.
        let len = title.text.len().min(end - start);
        std::ptr::copy_nonoverlapping(title.text.as_ptr(), start as *mut u8, len);
        std::ptr::write_bytes((start + len) as *mut u8, 0, end - start - len);
    }
    wait_and_kill(group)
}

/// Waits on descriptor 3 and kills `group` when toolwarden is gone.
///
/// # Safety
/// Async-signal-safe calls only.
unsafe fn wait_and_kill(group: i32) -> ! {
    let mut byte = 0u8;
    let n = loop {
        let n = libc::read(3, (&mut byte as *mut u8).cast(), 1);
        if n >= 0 || *libc::__errno_location() != libc::EINTR {
            break n;
        }
    };
    if n == 0 {
        libc::kill(-group, libc::SIGKILL);
    }
    libc::_exit(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out its bytes in the pieces given, as a pipe
    /// does when the server writes a line in several writes.
    struct Pieces(Vec<&'static [u8]>);

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let piece = self.0.remove(0);
            buf[..piece.len()].copy_from_slice(piece);
            Ok(piece.len())
        }
    }

    fn labelled(pieces: Vec<&'static [u8]>) -> Vec<String> {
        let mut lines = Vec::new();
        label_lines(Pieces(pieces), |line| {
            lines.push(String::from_utf8(line.to_vec()).unwrap());
            Ok(())
        })
        .unwrap();
        lines
    }

    #[test]
    fn no_piece_of_a_labelled_line_can_pass_for_a_line_of_its_own() {
        assert_eq!(
            labelled(vec![
                "x\r{\"event\":1}\u{2028}{\"e\":2}\x0b\x0c\x1b[2K\u{85}\tend\n".as_bytes()
            ]),
            ["[server] x\\x0d{\"event\":1}\\u2028{\"e\":2}\\x0b\\x0c\\x1b[2K\\u0085\tend\n"]
        );
    }

    #[test]
    fn every_line_of_the_server_is_labelled_and_handed_over_whole() {
        assert_eq!(
            labelled(vec![
                b"starting\n{\"ts\":",
                b"\"forged\"}\nhalf",
                b" a line\n\nno newline at the end",
            ]),
            [
                "[server] starting\n",
                "[server] {\"ts\":\"forged\"}\n",
                "[server] half a line\n",
                "[server] \n",
                "[server] no newline at the end\n",
            ]
        );
        // A line that never ends is cut, each piece labelled.
        let long: &'static [u8] = Box::leak(vec![b'x'; 3000].into_boxed_slice());
        let lines = labelled(vec![long, long, long, long, b"\n"]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), 8192 + 1);
        assert!(lines
            .iter()
            .all(|l| l.starts_with("[server] x") && l.ends_with('\n')));
        assert_eq!(
            lines
                .iter()
                .map(|l| l.len() - LABEL.len() - 1)
                .sum::<usize>(),
            12000
        );
    }

    #[test]
    fn the_stderr_tail_keeps_the_last_lines_within_its_bounds() {
        let mut tail = StderrTail::default();
        for i in 0..25 {
            tail.push(format!("line {i}\n").as_bytes());
        }
        // Written in pieces, and not ended: still shown.
        tail.push(b"Error: no con");
        tail.push(b"fig\x07");
        let lines = tail.lines();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines[0], "line 16");
        assert_eq!(lines[TAIL_LINES - 1], "Error: no config\\u{7}");

        let mut tail = StderrTail::default();
        tail.push(b"first\n");
        tail.push(&[b'y'; 5000]);
        tail.push(b"\nlast\n");
        // The long line, cut to the bound, pushed out the first; with the
        // last it is over the bound: only the last is left.
        assert_eq!(tail.lines(), ["last"]);
        let mut tail = StderrTail::default();
        tail.push(&[b'z'; 5000]);
        assert_eq!(tail.lines(), ["z".repeat(TAIL_BYTES)]);
    }
}
