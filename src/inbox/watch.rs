//! `toolwarden approvals watch`: the inbox as it fills, decided one key
//! at a time. Each call waiting is shown as `approvals list` shows it,
//! with a prompt; a key approves it, denies it (with a reason line) or
//! skips it. The store is looked at every [`POLL`], so that calls filed by
//! any session, and decisions taken elsewhere, show within it.
//!
//! On a terminal, keys are read as they are pressed (no Enter, no echo)
//! and the terminal is given back as it was on every way out, Ctrl-C and
//! SIGTERM included. Otherwise the same keys are read as bytes, newlines
//! ignored, so that a script (or a test) can drive it through a pipe.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Read, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::cli::{block, decide};
use super::{now_ms, Inbox, Pending, Refused, Status};
use crate::redact::loggable;
use crate::state::Spec;

/// How often the store is looked at: a call filed shows within this.
const POLL: Duration = Duration::from_millis(500);

const CHOICES: &str = "[a]pprove  [d]eny  [s]kip  [q]uit ? ";

/// Watches until stdin ends or `q`; the exit code (0; 1 when stdout
/// cannot be written; 2 for a store that does not open).
pub fn run(spec: &Spec) -> u8 {
    let terminal = Terminal::take();
    let keys = read_keys();
    let stdout = io::stdout();
    let mut watch = Watch::new(spec, stdout.lock(), keys, terminal.as_ref());
    let code = match watch.run(POLL) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("toolwarden: cannot write the calls out: {e}");
            1
        }
    };
    drop(watch);
    // The terminal is given back before the shell prints its prompt.
    drop(terminal);
    code
}

/// What stdin gives.
enum Input {
    Byte(u8),
    /// End of input (or an error reading it).
    End,
}

/// stdin, a byte at a time, from a thread of its own, so that the store
/// is looked at while nobody types.
fn read_keys() -> Receiver<Input> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut stdin = io::stdin().lock();
        let mut buffer = [0u8; 256];
        loop {
            match stdin.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    for &byte in &buffer[..n] {
                        if tx.send(Input::Byte(byte)).is_err() {
                            return;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(Input::End);
    });
    rx
}

/// What a key leads to.
#[derive(Debug, PartialEq)]
enum Flow {
    Go,
    Stop(u8),
}

struct Watch<'a, W: Write> {
    spec: &'a Spec,
    /// Opened once the store is there (a database no session has created
    /// yet is waited for).
    inbox: Option<Inbox>,
    out: W,
    keys: Receiver<Input>,
    terminal: Option<&'a Terminal>,
    /// The calls known to wait, oldest first; the first is the one asked
    /// about.
    queue: VecDeque<Pending>,
    /// Whether the first's block and prompt are shown.
    asking: bool,
    /// Whether the prompt's line waits for the key (no newline yet).
    prompt_open: bool,
    /// Every call queued once: a skipped one is not asked about again.
    seen: HashSet<String>,
    unreadable: HashSet<String>,
    /// The store failed at the last look (said once, not at every look).
    failing: bool,
    /// "No calls are waiting" was said since the last call shown.
    idle_said: bool,
    missing_said: bool,
    /// stdin ended while keys typed ahead were being dropped.
    ended: bool,
}

impl<'a, W: Write> Watch<'a, W> {
    fn new(spec: &'a Spec, out: W, keys: Receiver<Input>, terminal: Option<&'a Terminal>) -> Self {
        Watch {
            spec,
            inbox: None,
            out,
            keys,
            terminal,
            queue: VecDeque::new(),
            asking: false,
            prompt_open: false,
            seen: HashSet::new(),
            unreadable: HashSet::new(),
            failing: false,
            idle_said: false,
            missing_said: false,
            ended: false,
        }
    }

    fn run(&mut self, poll: Duration) -> io::Result<u8> {
        // A store that cannot be opened is said before anything else.
        if let Err(code) = self.open() {
            return Ok(code);
        }
        writeln!(
            self.out,
            "Watching for calls that wait for approval ({}): a approves the call shown, d denies it, s skips it, q quits.",
            self.spec
        )?;
        loop {
            if let Flow::Stop(code) = self.look()? {
                return Ok(code);
            }
            let deadline = Instant::now() + poll;
            loop {
                if self.ended {
                    return self.end();
                }
                let left = deadline.saturating_duration_since(Instant::now());
                match self.keys.recv_timeout(left) {
                    Ok(Input::Byte(byte)) => {
                        if let Flow::Stop(code) = self.key(byte)? {
                            return Ok(code);
                        }
                    }
                    Ok(Input::End) | Err(RecvTimeoutError::Disconnected) => return self.end(),
                    Err(RecvTimeoutError::Timeout) => break,
                }
            }
        }
    }

    /// The inbox, opened once its store is there.
    fn open(&mut self) -> Result<Option<&Inbox>, u8> {
        if self.inbox.is_none() {
            if let Spec::Sqlite(path) = self.spec {
                if !path.exists() {
                    return Ok(None);
                }
            }
            match Inbox::open(self.spec) {
                Ok(Inbox::Unavailable(why)) => {
                    eprintln!("toolwarden: {}: {why}", self.spec);
                    return Err(2);
                }
                Ok(inbox) => self.inbox = Some(inbox),
                Err(e) => {
                    eprintln!("toolwarden: {e:#}");
                    return Err(2);
                }
            }
        }
        Ok(self.inbox.as_ref())
    }

    /// One look at the store: what stopped waiting is said, what came is
    /// queued, and the first call waiting is asked about.
    fn look(&mut self) -> io::Result<Flow> {
        let found = match self.open() {
            Err(code) => return Ok(Flow::Stop(code)),
            Ok(None) => return self.not_there_yet().map(|()| Flow::Go),
            // All of them, so that one decided elsewhere is told apart
            // from one that expired.
            Ok(Some(inbox)) => inbox.listing(now_ms(), true),
        };
        let now = now_ms();
        let found = match found {
            Ok(found) => {
                self.failing = false;
                found
            }
            Err(e) => {
                if !self.failing {
                    self.failing = true;
                    self.interrupt()?;
                    eprintln!("toolwarden: {}: {} (looking again)", self.spec, e.0);
                    self.prompt()?;
                }
                return self.out.flush().map(|()| Flow::Go);
            }
        };
        for id in found.unreadable {
            if self.unreadable.insert(id.clone()) {
                self.interrupt()?;
                eprintln!("toolwarden: {}: {}", loggable(&id), Refused::Unreadable);
            }
        }
        let rows: HashMap<&str, &Pending> =
            found.calls.iter().map(|p| (p.id.as_str(), p)).collect();
        let known = std::mem::take(&mut self.queue);
        for (i, call) in known.into_iter().enumerate() {
            match rows.get(call.id.as_str()) {
                Some(row) if waits(row, now) => self.queue.push_back((*row).clone()),
                row => {
                    self.interrupt()?;
                    writeln!(self.out, "{}", gone(&call, row.copied(), now))?;
                    if i == 0 {
                        self.asking = false;
                    }
                }
            }
        }
        for row in found.calls.iter().filter(|p| waits(p, now)) {
            if !self.seen.insert(row.id.clone()) {
                continue;
            }
            if self.asking {
                self.interrupt()?;
                writeln!(
                    self.out,
                    "    also waiting: {} `{}` (shown next)",
                    row.id,
                    loggable(&row.tool)
                )?;
            }
            self.queue.push_back(row.clone());
        }
        if !self.asking {
            if let Some(first) = self.queue.front() {
                let mut text = block(first, now);
                if self.queue.len() > 1 {
                    text.push_str(&format!(
                        "    ({} more waiting after this one)\n",
                        self.queue.len() - 1
                    ));
                }
                self.drop_typed_ahead();
                self.interrupt()?;
                self.out.write_all(text.as_bytes())?;
                self.asking = true;
                self.idle_said = false;
            } else if !self.idle_said {
                self.idle_said = true;
                self.interrupt()?;
                writeln!(
                    self.out,
                    "No calls are waiting for approval; new ones show here as they come."
                )?;
            }
        }
        self.prompt()?;
        self.out.flush()?;
        Ok(Flow::Go)
    }

    /// Says once that the database is not there yet (no session has
    /// filed a call on this machine).
    fn not_there_yet(&mut self) -> io::Result<()> {
        if let (false, Spec::Sqlite(path)) = (self.missing_said, self.spec) {
            self.missing_said = true;
            writeln!(
                self.out,
                "No calls are waiting for approval ({} does not exist yet).",
                path.display()
            )?;
        }
        self.out.flush()
    }

    /// A key pressed (or a byte read).
    fn key(&mut self, byte: u8) -> io::Result<Flow> {
        match byte {
            b'\n' | b'\r' => return Ok(Flow::Go),
            // Ctrl-D: the end of input, on a terminal read key by key.
            4 if self.terminal.is_some() => return self.end().map(Flow::Stop),
            b'q' | b'Q' => {
                self.answer("quit")?;
                return Ok(Flow::Stop(0));
            }
            // No call is shown: a key decides nothing.
            _ if !self.asking => return Ok(Flow::Go),
            _ => {}
        }
        let Some(call) = self.queue.front().cloned() else {
            return Ok(Flow::Go);
        };
        match byte.to_ascii_lowercase() {
            b'a' => {
                self.answer("approve")?;
                self.decide(&call, true, None)?;
            }
            b'd' => {
                self.answer("deny")?;
                let (reason, ended) = self.reason()?;
                self.decide(&call, false, reason.as_deref())?;
                if ended {
                    return self.end().map(Flow::Stop);
                }
            }
            b's' => {
                self.answer("skip")?;
                writeln!(
                    self.out,
                    "{0} `{1}` skipped: it waits on (`toolwarden approvals approve {0}` decides it later).",
                    call.id,
                    loggable(&call.tool)
                )?;
                self.queue.pop_front();
                self.asking = false;
            }
            _ => {
                self.answer("a, d, s or q")?;
                self.prompt()?;
                return self.out.flush().map(|()| Flow::Go);
            }
        }
        self.look()
    }

    /// `approvals approve` or `deny`, said as they say it.
    fn decide(&mut self, call: &Pending, approve: bool, reason: Option<&str>) -> io::Result<()> {
        let Some(inbox) = self.inbox.as_ref() else {
            return Ok(());
        };
        self.out.flush()?;
        let (text, _) = decide(inbox, self.spec, &call.id, approve, reason, now_ms());
        self.out.write_all(text.as_bytes())?;
        // Decided, or not to be: either way it is not asked about again.
        self.queue.pop_front();
        self.asking = false;
        Ok(())
    }

    /// The reason line after `d` (echoed, and edited as a line, on a
    /// terminal); `None` for an empty one. Whether stdin ended.
    fn reason(&mut self) -> io::Result<(Option<String>, bool)> {
        self.out.write_all(b"reason (Enter for none): ")?;
        self.out.flush()?;
        let line_mode = self.terminal.map(Terminal::line_mode);
        let mut line = Vec::new();
        let ended = loop {
            match self.keys.recv() {
                Ok(Input::Byte(b'\n')) => break false,
                Ok(Input::Byte(byte)) => line.push(byte),
                Ok(Input::End) | Err(_) => break true,
            }
        };
        drop(line_mode);
        let reason = String::from_utf8_lossy(&line).trim().to_owned();
        // A terminal echoed the line; a pipe did not, so it is written
        // out, for whoever reads this later.
        if self.terminal.is_none() {
            writeln!(self.out, "{}", loggable(&reason))?;
        } else if ended {
            writeln!(self.out)?;
        }
        Ok(((!reason.is_empty()).then_some(reason), ended))
    }

    /// The key's meaning after the prompt, ending its line.
    fn answer(&mut self, word: &str) -> io::Result<()> {
        if self.prompt_open {
            writeln!(self.out, "{word}")?;
            self.prompt_open = false;
        }
        Ok(())
    }

    /// The prompt for the call shown, if it is not on screen.
    fn prompt(&mut self) -> io::Result<()> {
        if let (true, false, Some(call)) = (self.asking, self.prompt_open, self.queue.front()) {
            write!(self.out, "{}: {CHOICES}", call.id)?;
            self.prompt_open = true;
        }
        self.out.flush()
    }

    /// Ends the prompt's line, so that a note is a line of its own (the
    /// prompt is shown again after it).
    fn interrupt(&mut self) -> io::Result<()> {
        if self.prompt_open {
            writeln!(self.out)?;
            self.prompt_open = false;
        }
        self.out.flush()
    }

    /// Keys typed before a call was shown are not taken as decisions
    /// about it.
    fn drop_typed_ahead(&mut self) {
        while let Ok(input) = self.keys.try_recv() {
            if let Input::End = input {
                self.ended = true;
            }
        }
    }

    fn end(&mut self) -> io::Result<u8> {
        self.interrupt()?;
        Ok(0)
    }
}

/// Whether a call still waits for a person.
fn waits(pending: &Pending, now: u64) -> bool {
    pending.status == Status::Pending && pending.expires_at > now
}

/// What became of a call shown that no longer waits: `now_row` is its
/// record now, if the store still has it.
fn gone(call: &Pending, now_row: Option<&Pending>, now: u64) -> String {
    let by = |row: &Pending| match &row.decided_by {
        Some(by) => format!(", by {}", loggable(by)),
        None => String::new(),
    };
    let what = match now_row {
        Some(row) if row.status == Status::Redeemed => {
            format!("approved elsewhere{}, and the call made", by(row))
        }
        Some(row) if row.status == Status::Approved => format!("approved elsewhere{}", by(row)),
        Some(row) if row.status == Status::Denied => format!("denied elsewhere{}", by(row)),
        _ if call.expires_at <= now => {
            "expired before anyone decided: the agent must make the call again".to_owned()
        }
        _ => "no longer waiting".to_owned(),
    };
    format!("{} `{}`: {what}.", call.id, loggable(&call.tool))
}

/// The terminal as it was before `watch` took it, for the signal handler.
static SAVED: OnceLock<libc::termios> = OnceLock::new();

/// stdin's terminal, read key by key without echo while this lives.
struct Terminal {
    saved: libc::termios,
    keys: libc::termios,
}

impl Terminal {
    /// Puts stdin's terminal in key-by-key mode; `None` when stdin is not
    /// a terminal.
    fn take() -> Option<Terminal> {
        // SAFETY: isatty, tcgetattr and tcsetattr on fd 0, with a termios
        // of our own; sigaction with a handler that only calls
        // async-signal-safe functions.
        unsafe {
            if libc::isatty(0) != 1 {
                return None;
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return None;
            }
            let _ = SAVED.set(saved);
            for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = give_back_and_die as extern "C" fn(libc::c_int) as usize;
                action.sa_flags = libc::SA_RESETHAND;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(signal, &action, std::ptr::null_mut());
            }
            let mut keys = saved;
            keys.c_lflag &= !(libc::ICANON | libc::ECHO);
            keys.c_cc[libc::VMIN] = 1;
            keys.c_cc[libc::VTIME] = 0;
            if libc::tcsetattr(0, libc::TCSANOW, &keys) != 0 {
                return None;
            }
            Some(Terminal { saved, keys })
        }
    }

    /// The terminal as it was (a line, echoed and edited) while the
    /// guard lives.
    fn line_mode(&self) -> LineMode<'_> {
        // SAFETY: tcsetattr on fd 0 with the termios it had.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.saved) };
        LineMode(self)
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // SAFETY: as in `line_mode`.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.saved) };
    }
}

/// See [`Terminal::line_mode`].
struct LineMode<'a>(&'a Terminal);

impl Drop for LineMode<'_> {
    fn drop(&mut self) {
        // SAFETY: tcsetattr on fd 0 with the key-by-key termios.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.0.keys) };
    }
}

/// Ctrl-C, SIGTERM or SIGHUP while the terminal is in key-by-key mode:
/// give it back, then die of the signal as if it had not been caught
/// (the handler was reset by `SA_RESETHAND`).
extern "C" fn give_back_and_die(signal: libc::c_int) {
    // SAFETY: tcsetattr, write and raise are async-signal-safe; SAVED is
    // set before the handler is installed.
    unsafe {
        if let Some(saved) = SAVED.get() {
            libc::tcsetattr(0, libc::TCSANOW, saved);
        }
        libc::write(2, b"\n".as_ptr().cast(), 1);
        libc::raise(signal);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::inbox::{approver, call_key, Found, Request};
    use crate::wire::json::Raw;

    /// A store of this test's own, and the inbox in it.
    fn store(name: &str) -> (Spec, Inbox) {
        let dir =
            std::env::temp_dir().join(format!("toolwarden-watch-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let spec = Spec::Sqlite(dir.join("state.db"));
        let inbox = Inbox::open(&spec).unwrap();
        (spec, inbox)
    }

    fn file(inbox: &Inbox, tool: &str, ttl_ms: u64) -> Pending {
        let request = Request {
            key: call_key("ns", "alice", tool, Some(Raw::parse("{}").unwrap())),
            tool: tool.into(),
            arguments: serde_json::json!({"pod": "p1"}),
            identity: "alice".into(),
            namespace: "ns".into(),
            server: "mock".into(),
        };
        match inbox.ask(&request, now_ms(), ttl_ms).unwrap() {
            Found::Waiting(pending) => pending,
            other => panic!("{other:?}"),
        }
    }

    /// A watch on a thread of its own, looking every 20 ms, fed keys
    /// through a channel as stdin would feed them.
    struct Running {
        keys: mpsc::Sender<Input>,
        out: Arc<Mutex<Vec<u8>>>,
        runner: std::thread::JoinHandle<u8>,
    }

    impl Running {
        fn start(spec: &Spec) -> Running {
            let (keys, input) = mpsc::channel();
            let out = Arc::new(Mutex::new(Vec::new()));
            let sink = Shared(out.clone());
            let spec = spec.clone();
            let runner = std::thread::spawn(move || {
                let mut watch = Watch::new(&spec, sink, input, None);
                watch.run(Duration::from_millis(20)).unwrap()
            });
            Running { keys, out, runner }
        }

        fn printed(&self) -> String {
            String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
        }

        /// Waits until the watch has printed `text`.
        fn until(&self, text: &str) {
            let start = Instant::now();
            while !self.printed().contains(text) {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "no {text:?} in:\n{}",
                    self.printed()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }

        fn press(&self, keys: &[u8]) {
            for &key in keys {
                self.keys.send(Input::Byte(key)).unwrap();
            }
        }

        /// Ends its input; what it printed and its exit code.
        fn end(self) -> (String, u8) {
            let _ = self.keys.send(Input::End);
            let code = self.runner.join().unwrap();
            let out = String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned();
            (out, code)
        }
    }

    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn keys_approve_deny_with_a_reason_and_skip_the_call_shown() {
        let (spec, inbox) = store("keys");
        // Calls are shown in the order of their time of asking, in
        // milliseconds (then by id): a millisecond apart, in this order.
        // (In WAL mode three calls are filed within one.)
        let pause = || std::thread::sleep(Duration::from_millis(2));
        let first = file(&inbox, "deploy", 60_000);
        pause();
        let second = file(&inbox, "drop_db", 60_000);
        pause();
        let third = file(&inbox, "restart", 60_000);
        let watch = Running::start(&spec);
        let prompt = |p: &Pending| format!("{}: {CHOICES}", p.id);
        watch.until(&prompt(&first));
        watch.press(b"x\na");
        watch.until(&prompt(&second));
        watch.press(b"dnot today\n");
        watch.until(&prompt(&third));
        watch.press(b"s");
        watch.until("No calls are waiting");
        let (out, code) = watch.end();
        assert_eq!(code, 0, "{out}");
        // Each is shown as `approvals list` shows it, the first with what
        // waits after it.
        assert!(
            out.contains(&format!(
                "{}  `deploy`  (policy ns, identity alice), asked 0 s ago, expires in",
                first.id
            )),
            "{out}"
        );
        assert!(
            out.contains("    arguments: {\"pod\":\"p1\"}\n    (2 more waiting after this one)\n"),
            "{out}"
        );
        let said = [
            format!("{0}a, d, s or q\n{0}approve\n{1} `deploy`: approved: the session holding it forwards it", prompt(&first), first.id),
            format!("{}deny\nreason (Enter for none): not today\n{} `drop_db`: denied: the agent is told so.\n", prompt(&second), second.id),
            format!("{}skip\n{1} `restart` skipped: it waits on (`toolwarden approvals approve {1}` decides it later).\n", prompt(&third), third.id),
        ];
        for text in said {
            assert!(out.contains(&text), "no {text:?} in:\n{out}");
        }
        let all = inbox.list(now_ms(), true).unwrap();
        let row = |id: &str| all.iter().find(|p| p.id == id).unwrap().clone();
        assert_eq!(row(&first.id).status, Status::Approved);
        assert_eq!(row(&first.id).decided_by, Some(approver()));
        assert_eq!(row(&second.id).status, Status::Denied);
        assert_eq!(row(&second.id).reason.as_deref(), Some("not today"));
        assert_eq!(row(&third.id).status, Status::Pending);
    }

    #[test]
    fn calls_decided_elsewhere_or_expired_are_said_so() {
        let (spec, inbox) = store("elsewhere");
        let first = file(&inbox, "deploy", 60_000);
        let watch = Running::start(&spec);
        watch.until(CHOICES);
        // A call that comes while another is shown is named, and shown next.
        let second = file(&inbox, "restart", 400);
        watch.until("also waiting");
        inbox
            .decide(&first.id, false, "bob", None, now_ms())
            .unwrap()
            .unwrap();
        watch.until("expired");
        watch.until("No calls are waiting");
        // A key with nothing shown decides nothing.
        watch.press(b"a");
        let (out, code) = watch.end();
        assert_eq!(code, 0);
        for text in [
            format!("    also waiting: {} `restart` (shown next)\n", second.id),
            format!("{} `deploy`: denied elsewhere, by bob.\n", first.id),
            format!("{} `restart`: expired before anyone decided: the agent must make the call again.\n", second.id),
        ] {
            assert!(out.contains(&text), "no {text:?} in:\n{out}");
        }
    }

    #[test]
    fn a_store_not_there_yet_is_waited_for_and_q_quits() {
        let (spec, _) = store("later");
        let Spec::Sqlite(path) = &spec else {
            unreachable!()
        };
        std::fs::remove_file(path).unwrap();
        let watch = Running::start(&spec);
        watch.until("does not exist yet");
        assert!(!path.exists(), "watching created the store");
        let filed = file(&Inbox::open(&spec).unwrap(), "deploy", 60_000);
        watch.until(&format!("{}: {CHOICES}", filed.id));
        watch.press(b"q");
        let code = watch.runner.join().unwrap();
        assert_eq!(code, 0);
        let out = String::from_utf8_lossy(&watch.out.lock().unwrap()).into_owned();
        assert!(
            out.ends_with(&format!("{}: {CHOICES}quit\n", filed.id)),
            "{out}"
        );
    }
}
