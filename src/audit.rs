//! The audit log: one JSON line per decision and one per completed call,
//! so that afterwards one can tell what the agent tried and what was
//! decided, without the log itself leaking secrets (arguments are redacted
//! before they get here).
//!
//! Events go through a bounded channel to one writer thread that appends
//! and flushes each line; the relay waits when the writer falls behind, so
//! memory stays flat however many calls a session makes.

use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tracing::{error, info, warn};

/// Events waiting for the writer at most.
const QUEUE: usize = 256;

/// One audit line.
#[derive(Debug, Default, Serialize)]
pub struct AuditEvent {
    /// "session_start", "decision", "approval", "result",
    /// "policy_reloaded" or "session_end".
    pub event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tool: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<Value>>,
    /// The arguments, redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
    /// HMAC-SHA-256 of the arguments' JSON text exactly as the client
    /// sent it, under the machine's audit key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args_hmac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    /// `false` under `--monitor`: the decision was written down, not
    /// carried out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforced: Option<bool>,
    /// For `policy_reloaded`: the SHA-256 of the policy file now in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_sha256: Option<String>,
    /// For `session_start`: random, so that no two chains start alike and
    /// a session's first line cannot be forged ahead of time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// For `session_end`: how many lines the session wrote before it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<u64>,
    /// For `session_start`: how the session's lines are chained,
    /// `hmac-sha256` (absent in logs from before the chain was keyed:
    /// plain SHA-256).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<&'static str>,
    /// For `session_start`: which audit key chains it (`key_id`), so that
    /// verify can tell a session under another key from a forged one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// For `decision`: `true` on a later round of a 2026-07-28 call
    /// approved already (the server asked its own question): the same
    /// call, not another.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continued: Option<bool>,
    /// For `approval`: how the person was asked, `elicitation` or `inbox`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<&'static str>,
    /// For `approval` in the inbox: the approval's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// For `approval`: `approved`, `denied` or `timed_out`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<&'static str>,
    /// For `approval`: who answered (the OS user of `toolwarden approvals`,
    /// or `client` for a form in the client).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// The fields every line carries.
#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    session: &'a str,
    identity: &'a str,
    #[serde(flatten)]
    event: &'a AuditEvent,
}

/// What the writer thread is sent.
enum Message {
    /// A line, and who wants to know whether it was written.
    Line(Vec<u8>, Option<SyncSender<bool>>),
    /// Answered once every line sent before it is written.
    Flush(SyncSender<()>),
    /// Answered with the number of lines written so far.
    Count(SyncSender<u64>),
}

/// Where events go, if anywhere.
pub struct Audit {
    sink: Option<SyncSender<Message>>,
    /// False while the last write failed.
    writable: Arc<AtomicBool>,
    required: bool,
    session: String,
    identity: String,
    /// The key of `args_hmac`.
    key: [u8; 32],
}

impl Audit {
    /// No audit log.
    pub fn off(session: String, identity: String) -> Audit {
        Audit {
            sink: None,
            writable: Arc::new(AtomicBool::new(true)),
            required: false,
            session,
            identity,
            key: [0; 32],
        }
    }

    /// Opens `path` (`-` for stderr) now, so a path that cannot be written
    /// stops toolwarden before the server starts, and starts the writer.
    pub fn open(
        path: &Path,
        required: bool,
        session: String,
        identity: String,
    ) -> anyhow::Result<Audit> {
        let target = if path == Path::new("-") {
            Target::Stderr
        } else {
            let file = open_file(path).map_err(|e| {
                anyhow::anyhow!("{}: cannot open the audit log: {e}", path.display())
            })?;
            Target::File(path.to_owned(), Some(file))
        };
        let key = args_key();
        let chain = ChainKey::of(&key);
        let anchor = chain.anchor(&session);
        let (tx, rx) = sync_channel(QUEUE);
        let writable = Arc::new(AtomicBool::new(true));
        let writing = writable.clone();
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || write_events(target, rx, writing, chain, anchor))
            .map_err(|e| anyhow::anyhow!("cannot start the audit log's writer: {e}"))?;
        let audit = Audit {
            sink: Some(tx),
            writable,
            required,
            session,
            identity,
            key,
        };
        // The session's chain starts here (see `write_events`).
        let mut nonce = [0u8; 16];
        let _ = random(&mut nonce);
        audit.record(AuditEvent {
            event: "session_start",
            nonce: Some(hex(&nonce)),
            chain: Some(CHAIN),
            key: Some(key_id(&key)),
            ..Default::default()
        });
        Ok(audit)
    }

    /// Writes the session's last line, then waits until everything is
    /// written.
    pub fn end(&self) {
        if self.sink.is_some() {
            let (done, count) = sync_channel(1);
            if let Some(sink) = &self.sink {
                if sink.send(Message::Count(done)).is_ok() {
                    let lines = count.recv().unwrap_or(0);
                    self.record(AuditEvent {
                        event: "session_end",
                        lines: Some(lines),
                        ..Default::default()
                    });
                }
            }
        }
        self.flush();
    }

    /// What the log writes as `args_hmac`: the same arguments give the same
    /// text on this machine, and without the key (0600, beside
    /// toolwarden's state) a redacted PIN cannot be found by trying every
    /// PIN, as it could from a plain hash.
    pub fn fingerprint(&self, arguments: &[u8]) -> String {
        hex(&hmac(&self.key, arguments))
    }

    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// Whether `--audit-required` is on.
    pub fn required(&self) -> bool {
        self.sink.is_some() && self.required
    }

    /// With `--audit-required`, calls are refused while the log cannot be
    /// written: nothing runs that is not written down.
    pub fn refuses_calls(&self) -> bool {
        self.required && !self.writable.load(Ordering::Acquire)
    }

    /// Queues an event; waits only while the writer is behind.
    pub fn record(&self, event: AuditEvent) {
        if let Some(sink) = &self.sink {
            let _ = sink.send(Message::Line(self.line(&event), None));
        }
    }

    /// For the decision that lets a call through: records it and, with
    /// `--audit-required`, says whether it was written, so that nothing
    /// runs that is not written down. Without it, always true.
    pub fn admits(&self, event: AuditEvent) -> bool {
        let Some(sink) = &self.sink else { return true };
        if !self.required {
            self.record(event);
            return true;
        }
        let (ack, written) = sync_channel(1);
        if sink
            .send(Message::Line(self.line(&event), Some(ack)))
            .is_err()
        {
            return false;
        }
        written.recv().unwrap_or(false)
    }

    fn line(&self, event: &AuditEvent) -> Vec<u8> {
        let line = Line {
            ts: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            session: &self.session,
            identity: &self.identity,
            event,
        };
        let mut bytes = serde_json::to_vec(&line).expect("an audit event serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Waits until every event recorded so far is written.
    pub fn flush(&self) {
        if let Some(sink) = &self.sink {
            let (done, written) = sync_channel(1);
            if sink.send(Message::Flush(done)).is_ok() {
                let _ = written.recv();
            }
        }
    }
}

enum Target {
    Stderr,
    File(PathBuf, Option<std::fs::File>),
}

fn open_file(path: &Path) -> io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        warn!(
            "the audit log {} can be read by others (mode {:o}); toolwarden creates it 0600",
            path.display(),
            mode & 0o777
        );
    }
    Ok(file)
}

/// The writer: lines in the order they were recorded, each chained to the
/// one before it. Every line of a session carries `"prev"`: the first
/// (`session_start`) the session's anchor, each after it the MAC of the
/// session's line before it as written (without its newline), so that
/// `toolwarden audit verify` finds a line changed, removed, inserted or
/// moved, and only a holder of the key can write a chain that verifies.
fn write_events(
    mut target: Target,
    events: Receiver<Message>,
    writable: Arc<AtomicBool>,
    chain: ChainKey,
    anchor: String,
) {
    let mut prev = Some(anchor);
    let mut written = 0u64;
    // A piece of a line that failed may be left at the end (see `append`).
    let mut torn = false;
    while let Ok(message) = events.recv() {
        let (line, ack) = match message {
            Message::Line(line, ack) => (line, ack),
            Message::Flush(done) => {
                let _ = done.send(());
                continue;
            }
            Message::Count(answer) => {
                let _ = answer.send(written);
                continue;
            }
        };
        let line = chained(&line, prev.as_deref());
        let result = match &mut target {
            // Locked for the line, so a log message cannot cut into it.
            Target::Stderr => append(&mut io::stderr().lock(), &line, &mut torn),
            Target::File(path, file) => write_to_file(path, file, &line, &mut torn),
        };
        if let Some(ack) = ack {
            let _ = ack.send(result.is_ok());
        }
        match result {
            Ok(()) => {
                // A line that was not written is not in the chain: the
                // file stays verifiable, and the loss is logged below.
                prev = Some(chain.mac(&line));
                written += 1;
                if !writable.swap(true, Ordering::AcqRel) {
                    info!("the audit log can be written again");
                }
            }
            Err(e) => {
                if writable.swap(false, Ordering::AcqRel) {
                    error!("cannot write the audit log: {e}; an event was lost");
                }
            }
        }
    }
}

/// `line` (a JSON object and a newline) with `"prev"` as its first member.
fn chained(line: &[u8], prev: Option<&str>) -> Vec<u8> {
    let Some(prev) = prev else {
        return line.to_vec();
    };
    let mut out = Vec::with_capacity(line.len() + 80);
    out.extend_from_slice(b"{\"prev\":\"");
    out.extend_from_slice(prev.as_bytes());
    out.extend_from_slice(b"\",");
    out.extend_from_slice(&line[1..]);
    out
}

/// What a session's `session_start` says of its chain.
pub const CHAIN: &str = "hmac-sha256";

/// The hash a line's successor carries in a log from before the chain was
/// keyed: SHA-256 of the line without its newline, in hex.
pub fn line_hash(line: &[u8]) -> String {
    use sha2::Digest;
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    hex(&sha2::Sha256::digest(line))
}

/// The chain's key, derived from the audit key. Not the audit key itself:
/// `args_hmac` is the audit key's MAC of whatever arguments the client
/// sends, and arguments written as the text of a line would hand out that
/// line's MAC, letting whoever drives the agent and reads the log extend
/// a chain. No argument text is the label below (it is not JSON).
#[derive(Clone)]
pub struct ChainKey([u8; 32]);

impl ChainKey {
    pub fn of(audit_key: &[u8; 32]) -> ChainKey {
        ChainKey(hmac(audit_key, b"toolwarden audit chain"))
    }

    /// What a line's successor carries: the MAC of the line without its
    /// newline, in hex.
    pub fn mac(&self, line: &[u8]) -> String {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        hex(&hmac(&self.0, line))
    }

    /// The `prev` of a session's first line: bound to the session's id, so
    /// that no start line can be made without the key, nor moved to
    /// another session. (A line is a JSON object, never a session id.)
    pub fn anchor(&self, session: &str) -> String {
        self.mac(session.as_bytes())
    }
}

/// Names an audit key without giving it away: the first 8 bytes of its MAC
/// of a fixed label, in hex.
pub fn key_id(audit_key: &[u8; 32]) -> String {
    hex(&hmac(audit_key, b"toolwarden audit key id")[..8])
}

fn hmac(key: &[u8], bytes: &[u8]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(bytes);
    mac.finalize().into_bytes().into()
}

/// Appends one line; after a failure, the file is opened again on the next
/// event, so a log that was moved or whose disk filled up recovers.
fn write_to_file(
    path: &Path,
    file: &mut Option<std::fs::File>,
    line: &[u8],
    torn: &mut bool,
) -> io::Result<()> {
    if file.is_none() {
        *file = Some(open_file(path)?);
    }
    let result = append(file.as_mut().expect("opened above"), line, torn);
    if result.is_err() {
        *file = None;
    }
    result
}

/// What audit lines are appended to: the file, stderr, or in tests a
/// writer that fails on purpose.
trait Append: io::Write {
    /// The length so far, where it is known: then a line that fails
    /// halfway can be cut back off.
    fn len(&mut self) -> Option<u64> {
        None
    }

    fn truncate(&mut self, _len: u64) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

impl Append for std::fs::File {
    fn len(&mut self) -> Option<u64> {
        self.metadata().ok().map(|m| m.len())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }
}

impl Append for io::StderrLock<'_> {}

/// Writes `line` whole, or leaves no piece of it behind: a write that fails
/// halfway (a full disk takes what fits) would leave half a line for the
/// next one to be glued to, and the two would be one line that is neither.
/// The piece is cut off again when the file still ends with it (another
/// process appending to the same file may have written after it: then it
/// stays); where it stays, `torn` is set and the next line starts with a
/// newline, so that only the torn line is lost.
fn append(out: &mut impl Append, line: &[u8], torn: &mut bool) -> io::Result<()> {
    let start = out.len();
    let mut bytes = Vec::with_capacity(line.len() + 1);
    if *torn {
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(line);
    let mut done = 0;
    let mut result = Ok(());
    while done < bytes.len() {
        match out.write(&bytes[done..]) {
            Ok(0) => {
                result = Err(io::ErrorKind::WriteZero.into());
                break;
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let result = result.and_then(|()| out.flush());
    match &result {
        Ok(()) => *torn = false,
        Err(_) if done > 0 => {
            let cut = match start {
                Some(start) if out.len() == Some(start + done as u64) => {
                    out.truncate(start).is_ok()
                }
                _ => false,
            };
            *torn |= !cut;
        }
        Err(_) => {}
    }
    result
}

/// A random hex string for session and prompt ids.
pub fn random_id() -> String {
    let mut bytes = [0u8; 8];
    let filled = random(&mut bytes);
    if filled.is_err() {
        // No /dev/urandom: time and pid are unique enough for a session.
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = ((nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes();
    }
    hex(&bytes)
}

/// 128 random bits as hex, or `None` when the system gives none: for ids
/// that must not be guessed, which have no fallback.
pub fn unguessable_id() -> Option<String> {
    let mut bytes = [0u8; 16];
    random(&mut bytes).ok().map(|()| hex(&bytes))
}

/// Fills `bytes` from the system's random source.
pub fn random(bytes: &mut [u8]) -> io::Result<()> {
    std::fs::File::open("/dev/urandom").and_then(|mut f| io::Read::read_exact(&mut f, bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where toolwarden keeps its state: `$XDG_STATE_HOME/toolwarden`, else
/// `~/.local/state/toolwarden`.
pub fn state_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = xdg.or_else(|| {
        let home = PathBuf::from(std::env::var_os("HOME")?);
        Some(home.join(".local/state"))
    })?;
    Some(base.join("toolwarden"))
}

/// The machine's audit key, `audit.key` in the state directory: created
/// (32 random bytes, mode 0600 in a 0700 directory) on first use. When it
/// cannot be read or created, a key for this session alone, with a warning:
/// `args_hmac` then matches only within the session.
fn args_key() -> [u8; 32] {
    let from_file = key_path()
        .ok_or_else(|| io::Error::other("neither XDG_STATE_HOME nor HOME is set"))
        .and_then(|path| read_or_create_key(&path));
    match from_file {
        Ok(key) => key,
        Err(e) => {
            warn!(
                "cannot keep the audit key ({e}); args_hmac holds within this session only, \
                 and audit verify cannot check its chain"
            );
            session_key()
        }
    }
}

/// A key for this process alone, for when none can be kept on disk.
pub fn session_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    if random(&mut key).is_err() {
        key[..16].copy_from_slice(random_id().as_bytes());
    }
    key
}

/// An audit key file: 64 hex digits.
pub fn read_key(path: &Path) -> io::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)?;
    let text = text.trim();
    let mut key = [0u8; 32];
    if text.len() != 64 || !text.is_ascii() {
        return Err(io::Error::other(format!(
            "{} is not 64 hex digits",
            path.display()
        )));
    }
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
            .map_err(|_| io::Error::other(format!("{} is not hex", path.display())))?;
    }
    Ok(key)
}

/// Where the machine's audit key is: `audit.key` in the state directory.
pub fn key_path() -> Option<PathBuf> {
    Some(state_dir()?.join("audit.key"))
}

/// A key file (see [`read_key`]), made with 32 random bytes, mode 0600 in
/// a 0700 directory, when there is none.
pub fn read_or_create_key(path: &Path) -> io::Result<[u8; 32]> {
    use std::io::Write;
    use std::os::unix::fs::DirBuilderExt;
    let read = read_key;
    match read(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut key = [0u8; 32];
    random(&mut key)?;
    // Written whole under another name, then linked into place, so that
    // another toolwarden never reads half a key.
    let partial = path.with_extension(format!("new-{}", random_id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .and_then(|mut file| file.write_all(format!("{}\n", hex(&key)).as_bytes()))
        .and_then(|()| std::fs::hard_link(&partial, path));
    let _ = std::fs::remove_file(&partial);
    match written {
        Ok(()) => Ok(key),
        // Another toolwarden made it first: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read(path),
        Err(e) => Err(e),
    }
}

pub mod verify;

#[cfg(test)]
mod tests {
    use super::*;

    /// A disk that fills up once: the write that reaches `fail_at` bytes
    /// takes what fits and then fails, as write(2) does; the writes after
    /// it succeed.
    struct FailsOnce {
        data: Vec<u8>,
        fail_at: Option<usize>,
        /// Whether it can be cut back, as a file can and stderr cannot.
        cuttable: bool,
    }

    impl io::Write for FailsOnce {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let Some(at) = self.fail_at else {
                self.data.extend_from_slice(buf);
                return Ok(buf.len());
            };
            if self.data.len() >= at {
                self.fail_at = None;
                return Err(io::Error::other("no space left on device"));
            }
            let n = buf.len().min(at - self.data.len());
            self.data.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Append for FailsOnce {
        fn len(&mut self) -> Option<u64> {
            self.cuttable.then_some(self.data.len() as u64)
        }

        fn truncate(&mut self, len: u64) -> io::Result<()> {
            self.data.truncate(len as usize);
            Ok(())
        }
    }

    const LINES: [&[u8]; 3] = [
        b"{\"event\":\"session_start\"}\n",
        b"{\"event\":\"decision\",\"tool\":\"retry_deploy\"}\n",
        b"{\"event\":\"result\"}\n",
    ];

    /// Writes the three lines; the second fails 10 bytes in.
    fn write_three(cuttable: bool) -> Vec<u8> {
        let mut out = FailsOnce {
            data: Vec::new(),
            fail_at: Some(LINES[0].len() + 10),
            cuttable,
        };
        let mut torn = false;
        let results: Vec<bool> = LINES
            .iter()
            .map(|line| append(&mut out, line, &mut torn).is_ok())
            .collect();
        assert_eq!(results, [true, false, true]);
        out.data
    }

    #[test]
    fn a_line_that_fails_halfway_is_cut_back_before_the_next() {
        assert_eq!(write_three(true), [LINES[0], LINES[2]].concat());
    }

    #[test]
    fn a_piece_that_cannot_be_cut_back_is_ended_before_the_next_line() {
        let written = write_three(false);
        let lines: Vec<&[u8]> = written.split(|&b| b == b'\n').collect();
        assert_eq!(lines.len(), 4, "{}", String::from_utf8_lossy(&written));
        assert_eq!(lines[0], &LINES[0][..LINES[0].len() - 1]);
        assert_eq!(lines[1], &LINES[1][..10]);
        assert_eq!(lines[2], &LINES[2][..LINES[2].len() - 1]);
    }
}
