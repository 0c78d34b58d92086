//! Where counters live, and taking a call's charge from them all or none.
//!
//! `session` counters live in this process ([`Memory`]); `grant` and
//! `global` ones in the state store that `--state` names: an LMDB memory
//! map by default (shared by every process on the machine), an SQLite
//! database (the same, slower, readable with the sqlite3 shell), a Redis
//! server (shared by every machine that reaches it), or this process's
//! memory.
//! Every backend keeps one number per bucket, its TAT, and decides with the
//! same GCRA step (`policy::step`), so they agree exactly.

mod lmdb;
mod memory;
mod redis;
mod sqlite;
mod turn;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::policy::{Charge, Policy, Rate, Scope, Wait};

pub use memory::Memory;
pub(crate) use redis::client as redis_client;

/// One bucket of a charge, as a backend sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// Unique across namespaces, counters, scope keys and `per` values.
    pub key: String,
    pub rate: Rate,
    pub cost: u32,
}

/// The buckets of a charge that one backend takes, and for each the index
/// of its debit in the charge.
#[derive(Default)]
struct Part {
    buckets: Vec<Bucket>,
    debits: Vec<usize>,
}

/// What a backend says of a charge: taken, or which bucket has no room.
pub type Taken = Result<(), (usize, Wait)>;

/// A store that could not be asked.
#[derive(Debug)]
pub struct StoreError(pub String);

/// Where `--state` keeps counters.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    Memory,
    /// An LMDB map; the approvals are in `state.db` beside it.
    Lmdb(PathBuf),
    Sqlite(PathBuf),
    Redis(String),
}

impl Spec {
    /// Reads `--state`: `memory`, `lmdb:PATH` or a path ending in `.lmdb`,
    /// `sqlite:PATH` or another path, a Redis URL (`redis://`, `rediss://`
    /// for TLS, `redis+unix://`).
    pub fn parse(text: &str) -> Result<Spec, String> {
        if text == "memory" {
            return Ok(Spec::Memory);
        }
        if text.starts_with("redis://")
            || text.starts_with("rediss://")
            || text.starts_with("redis+unix://")
            || text.starts_with("unix://")
        {
            // The redis crate's own text names parts of the URL too (a bad
            // protocol's value), so it is shown redacted as well.
            ::redis::Client::open(text).map_err(|e| {
                format!(
                    "{:?} is not a Redis URL: {}",
                    redacted_url(text),
                    scrubbed(&e.to_string(), text)
                )
            })?;
            return Ok(Spec::Redis(text.to_owned()));
        }
        if let Some(path) = text.strip_prefix("lmdb:") {
            if path.is_empty() {
                return Err("lmdb: needs a path (lmdb:PATH)".into());
            }
            return Ok(Spec::Lmdb(PathBuf::from(path)));
        }
        if let Some(path) = text.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err("sqlite: needs a path (sqlite:PATH)".into());
            }
            return Ok(Spec::Sqlite(PathBuf::from(path)));
        }
        // Inside a client's config a typo would become a database file in
        // a directory nobody looks at: a path must look like one.
        let scheme = text.split_once(':').map(|(s, _)| s).filter(|s| {
            !s.is_empty()
                && !text.contains("://")
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+')
        });
        if let Some(scheme) = scheme {
            return Err(format!(
                "{:?} is not a state store: `{scheme}:` is no scheme toolwarden knows \
                 (a Redis URL is redis://HOST:PORT; a file is lmdb:PATH or sqlite:PATH)",
                redacted_url(text)
            ));
        }
        let looks_like_a_path = text.contains('/')
            || [".db", ".sqlite", ".sqlite3", ".lmdb"]
                .iter()
                .any(|end| text.ends_with(end));
        if !text.is_empty() && !looks_like_a_path {
            let hint = if near_memory(text) {
                " did you mean memory?"
            } else {
                ""
            };
            return Err(format!(
                "{text:?} is not a state store:{hint} use memory, lmdb:PATH, sqlite:PATH, a path \
                 with a `/` or ending in .lmdb or .db, or a redis:// URL"
            ));
        }
        let path = text;
        if path.is_empty() || path.contains("://") {
            // A URL of a scheme not known here (`Redis://`, `valkey://`)
            // may still carry a password: shown as a Redis URL is.
            return Err(format!(
                "{:?} is not a state store: use memory, lmdb:PATH, sqlite:PATH, a path, or a \
                 redis:// URL",
                redacted_url(text)
            ));
        }
        if path.ends_with(".lmdb") {
            return Ok(Spec::Lmdb(PathBuf::from(path)));
        }
        Ok(Spec::Sqlite(PathBuf::from(path)))
    }

    /// The default: an LMDB map in the state directory, `counters.lmdb`
    /// (the approvals in `state.db` beside it).
    pub fn default_local() -> Result<Spec, String> {
        let dir = crate::audit::state_dir()
            .ok_or("neither XDG_STATE_HOME nor HOME is set: name a store with --state")?;
        Ok(Spec::Lmdb(dir.join("counters.lmdb")))
    }

    /// Where approvals are kept for this store: an LMDB map keeps counters
    /// only, and its approvals are in the SQLite database `state.db`
    /// beside it (where the default store kept everything before).
    pub fn inbox(&self) -> Spec {
        match self {
            Spec::Lmdb(path) => Spec::Sqlite(path.with_file_name("state.db")),
            other => other.clone(),
        }
    }

    /// The file that holds the counters, for a store in a file.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            Spec::Lmdb(path) | Spec::Sqlite(path) => Some(path),
            Spec::Memory | Spec::Redis(_) => None,
        }
    }
}

impl std::fmt::Display for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Spec::Memory => f.write_str("memory"),
            Spec::Lmdb(path) => write!(f, "lmdb:{}", path.display()),
            Spec::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Spec::Redis(url) => f.write_str(&redacted_url(url)),
        }
    }
}

/// Whether a word is `memory` in another case or with a letter or two
/// off (`memroy`, `memry`, `Memory`).
fn near_memory(word: &str) -> bool {
    let word = word.to_ascii_lowercase();
    if !word.starts_with('m') || word.len().abs_diff(6) > 2 {
        return false;
    }
    let mut left: Vec<char> = "memory".chars().collect();
    let mut missing = 0;
    for c in word.chars() {
        match left.iter().position(|&l| l == c) {
            Some(i) => {
                left.remove(i);
            }
            None => missing += 1,
        }
    }
    missing + left.len() <= 2
}

/// A Redis URL without its password in any of its forms, for messages:
/// the userinfo (`user:pass@`) and every query parameter but the harmless
/// `db` and `protocol` (`?pass=` and `?password=` carry a password, and a
/// mistyped name may too). A URL that cannot be read unambiguously (an
/// `@` after a `?` or `#`: a password's character or a query's) shows
/// only its scheme.
pub(crate) fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "[a Redis URL]".to_owned();
    };
    let (credentials, rest) = match rest.rsplit_once('@') {
        Some((before, _)) if before.contains(['?', '#']) => {
            return format!("{scheme}://[redacted]");
        }
        Some((_, after)) => ("[credentials]@", after),
        None => ("", rest),
    };
    let (rest, fragment) = match rest.split_once('#') {
        Some((rest, "insecure")) => (rest, "#insecure"),
        Some((rest, _)) => (rest, "#[redacted]"),
        None => (rest, ""),
    };
    let (location, query) = match rest.split_once('?') {
        Some((location, query)) => {
            let pairs: Vec<&str> = query
                .split('&')
                .map(|pair| {
                    let key = pair.split('=').next().unwrap_or_default();
                    if ["db", "protocol"].contains(&key) {
                        pair
                    } else {
                        "[redacted]"
                    }
                })
                .collect();
            (location, format!("?{}", pairs.join("&")))
        }
        None => (rest, String::new()),
    };
    format!("{scheme}://{credentials}{location}{query}{fragment}")
}

/// `message` with every part of `url` that [`redacted_url`] hides (the
/// whole URL, its userinfo, its query's values) replaced.
pub(crate) fn scrubbed(message: &str, url: &str) -> String {
    let mut out = message.replace(url, &redacted_url(url));
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let userinfo = rest.rsplit_once('@').map(|(userinfo, _)| userinfo);
    let values = rest
        .split(['?', '&', '#'])
        .skip(1)
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| !["db", "protocol"].contains(key))
        .map(|(_, value)| value);
    for secret in userinfo.into_iter().chain(values) {
        for part in secret.split(':').filter(|p| p.len() >= 3) {
            out = out.replace(part, "[redacted]");
        }
    }
    out
}

/// Creates the file at `path` if it is not there, 0600 in a 0700 directory
/// (SQLite would make it 0644).
pub(crate) fn private_file(path: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("{}: cannot create the state directory", dir.display()))?;
        }
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("{}: cannot open the state database", path.display()))?;
    Ok(())
}

/// The store `--state` names (`None`: the default, in the state
/// directory).
pub fn spec(text: Option<&str>) -> anyhow::Result<Spec> {
    let spec = match text {
        Some(text) => Spec::parse(text),
        None => Spec::default_local(),
    };
    spec.map_err(|e| anyhow::anyhow!("--state: {e}"))
}

/// The backend behind `grant` and `global` counters.
enum Shared {
    Memory(Memory),
    Lmdb(lmdb::Lmdb),
    Sqlite(Box<sqlite::Sqlite>),
    Redis(Box<redis::Redis>),
}

/// How a charge went.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Taken,
    /// The counter (index into the policy's) with the longest wait.
    Short {
        counter: usize,
        retry_after: Duration,
    },
}

/// The store cannot be reached: refuse, and say when to try again.
#[derive(Debug, PartialEq)]
pub struct Unavailable {
    pub retry_after: Duration,
}

/// What `state reset` did.
#[derive(Debug, PartialEq)]
pub enum Reset {
    /// This many buckets of the counter were emptied.
    Emptied(usize),
    /// The store holds no bucket of the counter: it was never charged
    /// there, or its name is mistyped. These are the counters it holds.
    NoSuchCounter { known: Vec<String> },
}

/// The counters of one session.
pub struct State {
    session: Memory,
    shared: Shared,
    spec: Spec,
    namespace: String,
    identity: String,
    /// Held while a charge spans the session's counters and the store's.
    charging: Mutex<()>,
    /// Whether the last charge found the store failing: warned once, not
    /// per call (Redis says so itself, with its reconnecting).
    failing: std::sync::atomic::AtomicBool,
}

impl State {
    /// Opens the store now, so that a store that cannot be opened stops
    /// toolwarden before the server starts. A Redis server that cannot be
    /// reached yet is not an error: calls that need it are refused until
    /// it can be.
    pub fn open(spec: Spec, namespace: String, identity: String) -> anyhow::Result<State> {
        let shared = match &spec {
            Spec::Memory => Shared::Memory(Memory::default()),
            Spec::Lmdb(path) => Shared::Lmdb(lmdb::Lmdb::open(path)?),
            Spec::Sqlite(path) => Shared::Sqlite(Box::new(sqlite::Sqlite::open(path)?)),
            Spec::Redis(url) => Shared::Redis(Box::new(redis::Redis::new(url)?)),
        };
        Ok(State {
            session: Memory::default(),
            shared,
            spec,
            namespace,
            identity,
            charging: Mutex::new(()),
            failing: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// What keeps this policy's counters apart from other policies' in a
    /// shared store (`--state-namespace`, or the policy file's name).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Who calls, for `grant` buckets.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Charges calls from now on to `identity`'s `grant` buckets (for
    /// `toolwarden test`, whose cases name their caller).
    pub fn set_identity(&mut self, identity: String) {
        self.identity = identity;
    }

    /// Takes `charge` from its buckets, all or none (`commit` false: only
    /// says whether it would be taken).
    pub fn take(
        &self,
        policy: &Policy,
        charge: &Charge,
        commit: bool,
    ) -> Result<Outcome, Unavailable> {
        self.take_at(policy, charge, commit, None)
    }

    /// [`State::take`] at a given time (µs since the UNIX epoch), for tests
    /// that compare backends.
    pub fn take_at(
        &self,
        policy: &Policy,
        charge: &Charge,
        commit: bool,
        now: Option<u64>,
    ) -> Result<Outcome, Unavailable> {
        if charge.debits.is_empty() {
            return Ok(Outcome::Taken);
        }
        // The session's buckets and the store's, each with the debit it
        // came from.
        let (mut local, mut shared) = (Part::default(), Part::default());
        for (i, debit) in charge.debits.iter().enumerate() {
            let counter = &policy.counters()[debit.counter];
            let part = match counter.scope {
                Scope::Session => &mut local,
                _ => &mut shared,
            };
            part.debits.push(i);
            part.buckets.push(Bucket {
                key: self.key(policy, debit.counter, &debit.bucket),
                rate: counter.rate(),
                cost: debit.cost.get(),
            });
        }
        let now_local = now.unwrap_or_else(now_us);
        let short = |(at, wait): (usize, Wait), part: &Part| {
            let retry_after = match wait {
                Wait::For(us) => Duration::from_micros(us),
                Wait::Never => Duration::MAX,
            };
            Ok(Outcome::Short {
                counter: charge.debits[part.debits[at]].counter,
                retry_after,
            })
        };
        let _one_at_a_time = self.charging.lock().unwrap_or_else(|e| e.into_inner());
        let local_short = self.session.take(&local.buckets, now_local, false).err();
        if !shared.buckets.is_empty() {
            // Charged only when the session's counters have room too.
            let commit_shared = commit && local_short.is_none();
            let taken = match &self.shared {
                Shared::Memory(m) => Ok(m.take(&shared.buckets, now_local, commit_shared)),
                Shared::Lmdb(s) => s.take(&shared.buckets, now_local, commit_shared),
                Shared::Sqlite(s) => s.take(&shared.buckets, now_local, commit_shared),
                Shared::Redis(r) => r.take(&shared.buckets, now, commit_shared),
            };
            match (taken, local_short) {
                (Err(StoreError(why)), _) => return Err(self.unavailable(&why)),
                (Ok(Err(theirs)), Some(ours)) => {
                    // The longer wait: the call passes only once both have room.
                    return if longer(theirs.1, ours.1) {
                        short(theirs, &shared)
                    } else {
                        short(ours, &local)
                    };
                }
                (Ok(Err(theirs)), None) => return short(theirs, &shared),
                (Ok(Ok(())), _) => {}
            }
            if self
                .failing
                .swap(false, std::sync::atomic::Ordering::Relaxed)
                && !matches!(self.shared, Shared::Redis(_))
            {
                tracing::warn!("the state store {} can be used again", self.spec);
            }
        }
        if let Some(ours) = local_short {
            return short(ours, &local);
        }
        if commit {
            // Cannot refuse: nothing else charges the session's counters
            // while the lock is held.
            let _ = self.session.take(&local.buckets, now_local, true);
        }
        Ok(Outcome::Taken)
    }

    /// Every bucket the store holds, one line each: its namespace, counter,
    /// scope and `per` values, and how many calls it has room for now.
    pub fn show(&self) -> Result<String, StoreError> {
        let buckets = self.buckets()?;
        let now = now_us();
        let mut out = format!(
            "{} ({})\n",
            self.spec,
            crate::plural::count(buckets.len(), "bucket")
        );
        for (key, tat, period, burst) in buckets {
            // Keys of another layout (an older toolwarden's) are not shown.
            let Ok([namespace, counter, _, scope, per]) = serde_json::from_str::<[String; 5]>(&key)
            else {
                continue;
            };
            let behind = tat.saturating_sub(now);
            let left = u64::from(burst).saturating_sub(behind.div_ceil(period.max(1)));
            out.push_str(&format!(
                "{counter}  {scope}{}  {left} of {burst} left, full in {} s  (namespace {namespace})\n",
                if per.is_empty() { String::new() } else { format!("  per {per}") },
                behind.div_ceil(1_000_000)
            ));
        }
        Ok(out)
    }

    /// Every bucket the store holds: key, TAT, period and burst.
    fn buckets(&self) -> Result<Vec<(String, u64, u64, u32)>, StoreError> {
        Ok(match &self.shared {
            Shared::Memory(m) => m.buckets().into_iter().map(|(k, t)| (k, t, 0, 0)).collect(),
            Shared::Lmdb(s) => s.buckets()?,
            Shared::Sqlite(s) => s.buckets()?,
            Shared::Redis(r) => r.buckets()?,
        })
    }

    /// Empties every bucket of `counter` (only `identity`'s, when given),
    /// in every namespace.
    pub fn reset(&self, counter: &str, identity: Option<&str>) -> Result<Reset, StoreError> {
        let mut known = BTreeSet::new();
        let mut doomed = Vec::new();
        for (key, ..) in self.buckets()? {
            // Keys of another layout (an older toolwarden's) are left alone.
            let Ok([_, name, _, scope, _]) = serde_json::from_str::<[String; 5]>(&key) else {
                continue;
            };
            if name == counter && identity.is_none_or(|id| scope == format!("grant:{id}")) {
                doomed.push(key);
            }
            known.insert(name);
        }
        if !known.contains(counter) {
            return Ok(Reset::NoSuchCounter {
                known: known.into_iter().collect(),
            });
        }
        let emptied = match &self.shared {
            // A store of its own process: a command never finds a counter
            // in it.
            Shared::Memory(_) => 0,
            Shared::Lmdb(s) => s.remove(&doomed)?,
            Shared::Sqlite(s) => s.remove(&doomed)?,
            Shared::Redis(r) => r.remove(&doomed)?,
        };
        Ok(Reset::Emptied(emptied))
    }

    fn unavailable(&self, why: &str) -> Unavailable {
        let retry_after = match &self.shared {
            Shared::Redis(r) => r.retry_after(),
            _ => Duration::from_secs(1),
        };
        let first = !self
            .failing
            .swap(true, std::sync::atomic::Ordering::Relaxed);
        if first && !matches!(self.shared, Shared::Redis(_)) {
            tracing::warn!(
                "the state store {} cannot be used ({why}); calls with limits are refused until it can",
                self.spec
            );
        } else {
            tracing::debug!("the state store {} cannot be used: {why}", self.spec);
        }
        Unavailable { retry_after }
    }

    /// The bucket's key: namespace, counter, the counter's definition (a
    /// hash: see `Counter::definition`), scope key, `per` values, as a JSON
    /// array (so no part can run into the next).
    fn key(&self, policy: &Policy, counter: usize, bucket: &str) -> String {
        let c = &policy.counters()[counter];
        let scope = match c.scope {
            Scope::Grant => format!("grant:{}", self.identity),
            Scope::Global => "global".to_owned(),
            Scope::Session => "session".to_owned(),
        };
        serde_json::to_string(&[&self.namespace, &c.name, &c.definition, &scope, bucket])
            .expect("strings serialize")
    }
}

/// Now, in microseconds since the UNIX epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Whether `a` is a longer wait than `b`.
fn longer(a: Wait, b: Wait) -> bool {
    match (a, b) {
        (_, Wait::Never) => false,
        (Wait::Never, _) => true,
        (Wait::For(a), Wait::For(b)) => a > b,
    }
}

/// Clamps the TATs that a fast clock left too far ahead
/// (`policy::clamp`); the buckets whose TAT it changed, which a charge
/// writes back even when it is refused, so that they refill from now on.
fn clamp(buckets: &[Bucket], tats: &mut [Option<u64>], now: u64) -> Vec<usize> {
    let mut changed = Vec::new();
    for (i, (b, tat)) in buckets.iter().zip(tats.iter_mut()).enumerate() {
        if let Some(t) = tat {
            let kept = crate::policy::clamp(b.rate, *t, now);
            if kept != *t {
                *t = kept;
                changed.push(i);
            }
        }
    }
    changed
}

/// Runs every bucket's GCRA step at `now` on `tats`: the new TATs, or the
/// bucket with the longest wait. Shared by the backends that decide in
/// this process.
fn decide(buckets: &[Bucket], tats: &[Option<u64>], now: u64) -> Result<Vec<u64>, (usize, Wait)> {
    let mut next = Vec::with_capacity(buckets.len());
    let mut worst: Option<(usize, Wait)> = None;
    for (i, (b, &tat)) in buckets.iter().zip(tats).enumerate() {
        let cost = std::num::NonZeroU32::new(b.cost).expect("a debit takes a unit");
        match crate::policy::step(b.rate, tat, now, cost) {
            Ok(tat) => next.push(tat),
            Err(wait) => {
                if worst.is_none_or(|(_, w)| longer(wait, w)) {
                    worst = Some((i, wait));
                }
            }
        }
    }
    worst.map_or(Ok(next), Err)
}

#[cfg(test)]
mod tests;
