//! Counters in an LMDB memory map: shared by every toolwarden on the
//! machine that opens the same file, at the cost of a few memory writes.
//!
//! A charge is one LMDB write transaction (read the TATs, decide, write
//! them), taken in turn with every other process ([`Turn`]: an atomic
//! operation when nobody else is charging, a deadline when somebody is
//! stuck). The map is written in place (`MDB_WRITEMAP`) and a commit asks
//! the kernel for nothing (`MDB_NOSYNC`): the pages are the kernel's page
//! cache, so a process that dies, however it dies, leaves every committed
//! charge to the next one, and LMDB's copy-on-write pages and its two meta
//! pages leave a charge it had not committed out. What a commit does not
//! do is reach the disk: a thread writes the map out once a second when a
//! charge changed it, so a power cut loses at most the last second of
//! charges (SECURITY.md).
//!
//! The file is `PATH` (the map, sized to [`MAP_SIZE`] and sparse),
//! `PATH-lock` (LMDB's readers and writer lock) and `PATH-turn` (the
//! turn).

use std::borrow::Cow;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use anyhow::Context;
use heed::types::Bytes;
use heed::{Database, Env, EnvFlags, EnvOpenOptions, MdbError, WithoutTls};

use super::turn::{NotHad, Turn};
use super::{clamp, decide, Bucket, StoreError, Taken};

/// How much of the address space the map takes, and how large the (sparse)
/// file looks: room for about 100,000 buckets that have not refilled. A
/// store that fills up sweeps the refilled ones; one still full refuses
/// the calls that would add a bucket, as a store that cannot be reached.
pub const MAP_SIZE: usize = 64 << 20;
/// How long a charge waits for another process's turn. A charge takes
/// microseconds, so only a stuck process (stopped mid-charge) holds it this
/// long; the client's other messages wait behind it, so it is short.
const TURN_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a thread writes the map out, when a charge changed it.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// How often (in syncs) that thread drops the buckets that have refilled.
const SWEEP_EVERY: u32 = 60;
/// LMDB's longest key (`mdb_env_get_maxkeysize`). A longer bucket key is
/// kept under its hash, with the key itself in the value.
const MAX_KEY: usize = 511;
/// A value: TAT, period (µs), burst, little-endian; then the bucket's key
/// when the map's key is its hash.
const RECORD: usize = 8 + 8 + 4;
/// The start of a map key that is a hash (a bucket key starts with `[`).
const HASHED: &[u8] = b"\0sha256:";

/// The stores this process has open, by path: LMDB wants one environment
/// per file per process, and so does the turn's `fcntl` lock.
static OPEN: Mutex<Vec<(PathBuf, Weak<Store>)>> = Mutex::new(Vec::new());

/// One process's handle on a store.
pub struct Lmdb {
    store: Arc<Store>,
}

struct Store {
    /// Dropped first: this process's `fcntl` lock on the turn's file goes
    /// before its environment does, so that no second Store of the same
    /// file in this process (see `Lmdb::open`) ever has the turn's file
    /// open beside this one's.
    turn: Turn,
    env: Env<WithoutTls>,
    buckets: Database<Bytes, Bytes>,
    path: PathBuf,
    /// Whether a charge changed the map since it was last written out.
    changed: AtomicBool,
    /// The thread that writes the map out, started by the first charge.
    syncing: OnceLock<()>,
}

impl Lmdb {
    /// Opens (or creates, 0600 in a 0700 directory) the store at `path`.
    /// A store created here first reads the counters of the SQLite
    /// database beside it (`state.db`, where toolwarden kept them before),
    /// so that nobody's budget starts afresh with the new default.
    pub fn open(path: &Path) -> anyhow::Result<Lmdb> {
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|(_, store)| store.strong_count() > 0);
        let canonical = canonical(path);
        if let Some(store) = open
            .iter()
            .find(|(p, _)| *p == canonical)
            .and_then(|(_, s)| s.upgrade())
        {
            return Ok(Lmdb { store });
        }
        let store = Arc::new(Store::open(path)?);
        open.push((canonical, Arc::downgrade(&store)));
        Ok(Lmdb { store })
    }

    pub fn take(&self, buckets: &[Bucket], now: u64, commit: bool) -> Result<Taken, StoreError> {
        let store = &self.store;
        let _turn = store.turn()?;
        let taken = match store.charge(buckets, now, commit) {
            Err(heed::Error::Mdb(MdbError::MapFull)) => {
                // Room, if some buckets have refilled; else refused, as a
                // store that cannot be used.
                store.sweep_held(now).map_err(|e| store.failed(e))?;
                store.charge(buckets, now, commit)
            }
            taken => taken,
        }
        .map_err(|e| store.failed(e))?;
        if commit {
            store.changed.store(true, Ordering::Relaxed);
            store.start_syncing();
        }
        Ok(taken)
    }

    /// Every bucket: key, TAT, period and burst.
    pub fn buckets(&self) -> Result<Vec<(String, u64, u64, u32)>, StoreError> {
        let store = &self.store;
        let read = || -> heed::Result<_> {
            let tx = store.env.read_txn()?;
            let mut all = Vec::new();
            for entry in store.buckets.iter(&tx)? {
                let (key, value) = entry?;
                let Some((tat, period, burst, key)) = Record::read(key, value) else {
                    return Err(heed::Error::Mdb(MdbError::Corrupted));
                };
                all.push((
                    String::from_utf8_lossy(key).into_owned(),
                    tat,
                    period,
                    burst,
                ));
            }
            Ok(all)
        };
        read().map_err(|e| store.failed(e))
    }

    /// Removes the buckets of these keys; how many.
    pub fn remove(&self, keys: &[String]) -> Result<usize, StoreError> {
        let store = &self.store;
        let _turn = store.turn()?;
        let remove = || -> heed::Result<usize> {
            let mut tx = store.env.write_txn()?;
            let mut removed = 0;
            for key in keys {
                removed += usize::from(store.buckets.delete(&mut tx, &map_key(key))?);
            }
            tx.commit()?;
            // A person's command: on the disk before it says it is done.
            store.env.force_sync()?;
            Ok(removed)
        };
        remove().map_err(|e| store.failed(e))
    }
}

impl Store {
    fn open(path: &Path) -> anyhow::Result<Store> {
        let cannot = || format!("{}: cannot open the state store", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .with_context(|| {
                        format!("{}: cannot create the state directory", dir.display())
                    })?;
            }
        }
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(MAP_SIZE).max_dbs(0);
        // SAFETY: NO_SYNC and WRITE_MAP are what this module is about (see
        // its comment); the map is only ever reached through LMDB, by
        // processes that each open it once (OPEN).
        unsafe {
            options.flags(
                EnvFlags::NO_SUB_DIR
                    | EnvFlags::WRITE_MAP
                    | EnvFlags::NO_SYNC
                    | EnvFlags::NO_READ_AHEAD,
            )
        };
        let mut tries = 0;
        let env = loop {
            // SAFETY: as above.
            match unsafe { options.open(path) } {
                // The last handle of this process's is being dropped on
                // another thread (the syncing one): a moment.
                Err(heed::Error::EnvAlreadyOpened) if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                opened => break opened.with_context(cannot)?,
            }
        };
        let turn = Turn::open(&suffixed(path, "-turn")).with_context(cannot)?;
        // Readers that died with their transaction open would keep pages
        // from being used again.
        env.clear_stale_readers().with_context(cannot)?;
        let buckets = {
            let tx = env.read_txn().with_context(cannot)?;
            let db = env
                .open_database::<Bytes, Bytes>(&tx, None)
                .with_context(cannot)?
                .context("LMDB's main database is missing")
                .with_context(cannot)?;
            tx.commit().with_context(cannot)?;
            db
        };
        let store = Store {
            env,
            buckets,
            turn,
            path: path.to_owned(),
            changed: AtomicBool::new(false),
            syncing: OnceLock::new(),
        };
        store.check().map_err(|e| {
            anyhow::anyhow!(
                "{}: the state store is damaged ({e}), as a power cut can leave it: move it \
                 away (with its -lock and -turn files) to start its counters afresh",
                path.display()
            )
        })?;
        store.read_old_counters()?;
        Ok(store)
    }

    /// Reads every bucket: a map a power cut left half written says so
    /// here, before any call is decided on it.
    fn check(&self) -> heed::Result<()> {
        let tx = self.env.read_txn()?;
        for entry in self.buckets.iter(&tx)? {
            let (key, value) = entry?;
            if Record::read(key, value).is_none() {
                return Err(heed::Error::Mdb(MdbError::Corrupted));
            }
        }
        Ok(())
    }

    /// A store that was never written reads the counters of `state.db`
    /// beside it, once: the default store until this one.
    fn read_old_counters(&self) -> anyhow::Result<()> {
        let old = self.path.with_file_name("state.db");
        if self.env.info().last_txn_id != 0 || !old.exists() {
            return Ok(());
        }
        let _turn = self.turn().map_err(|e| anyhow::anyhow!(e.0))?;
        // Another process may have read them while this one waited.
        if self.env.info().last_txn_id != 0 {
            return Ok(());
        }
        let now = super::now_us();
        let rows = match super::sqlite::buckets_in(&old) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(
                    "{}: the counters in {} cannot be read ({e}): they start afresh here",
                    self.path.display(),
                    old.display()
                );
                return Ok(());
            }
        };
        let live: Vec<_> = rows.into_iter().filter(|r| r.1 > now).collect();
        if live.is_empty() {
            return Ok(());
        }
        let write = || -> heed::Result<()> {
            let mut tx = self.env.write_txn()?;
            for (key, tat, period, burst) in &live {
                let value = Record::write(key, *tat, *period, *burst);
                self.buckets.put(&mut tx, &map_key(key), &value)?;
            }
            tx.commit()?;
            self.env.force_sync()
        };
        write()
            .with_context(|| format!("{}: cannot write the state store", self.path.display()))?;
        tracing::warn!(
            "{}: {} read from {}, where they were kept until now (it keeps its copy, \
             which toolwarden no longer changes)",
            self.path.display(),
            crate::plural::count(live.len(), "bucket"),
            old.display()
        );
        Ok(())
    }

    fn turn(&self) -> Result<super::turn::Held<'_>, StoreError> {
        self.turn.take(TURN_TIMEOUT).map_err(|e| {
            StoreError(match e {
                NotHad::Busy => format!(
                    "{}: another process has held it for over {} s",
                    self.path.display(),
                    TURN_TIMEOUT.as_secs()
                ),
                NotHad::Failed(e) => format!("{}: its lock: {e}", self.path.display()),
            })
        })
    }

    /// One charge, in one write transaction: the turn is held.
    fn charge(&self, buckets: &[Bucket], now: u64, commit: bool) -> heed::Result<Taken> {
        let mut tx = self.env.write_txn()?;
        let keys: Vec<Cow<'_, [u8]>> = buckets.iter().map(|b| map_key(&b.key)).collect();
        let mut tats = Vec::with_capacity(buckets.len());
        for key in &keys {
            let tat = match self.buckets.get(&tx, key)? {
                Some(value) => Some(
                    Record::read(key, value)
                        .ok_or(heed::Error::Mdb(MdbError::Corrupted))?
                        .0,
                ),
                None => None,
            };
            tats.push(tat);
        }
        let clamped = clamp(buckets, &mut tats, now);
        let (written, short): (Vec<(usize, u64)>, _) = match decide(buckets, &tats, now) {
            Ok(next) => (next.into_iter().enumerate().collect(), None),
            Err(short) => {
                let kept = clamped.into_iter().map(|i| (i, tats[i].expect("clamped")));
                (kept.collect(), Some(short))
            }
        };
        if !commit || written.is_empty() {
            tx.abort();
            return Ok(short.map_or(Ok(()), Err));
        }
        for (i, tat) in written {
            let b = &buckets[i];
            let value = Record::write(&b.key, tat, b.rate.period_us, b.rate.burst.get());
            self.buckets.put(&mut tx, &keys[i], &value)?;
        }
        tx.commit()?;
        Ok(short.map_or(Ok(()), Err))
    }

    /// Drops the buckets that have refilled (the same as no bucket): read
    /// without holding anyone up, then removed in one short transaction.
    fn sweep(&self, now: u64) -> Result<(), StoreError> {
        let refilled = || -> heed::Result<Vec<Vec<u8>>> {
            let tx = self.env.read_txn()?;
            let mut keys = Vec::new();
            for entry in self.buckets.iter(&tx)? {
                let (key, value) = entry?;
                if Record::read(key, value).is_some_and(|r| r.0 <= now) {
                    keys.push(key.to_vec());
                }
            }
            Ok(keys)
        };
        let keys = refilled().map_err(|e| self.failed(e))?;
        if keys.is_empty() {
            return Ok(());
        }
        let _turn = self.turn()?;
        let remove = || -> heed::Result<()> {
            let mut tx = self.env.write_txn()?;
            for key in &keys {
                // Charged again since it was read: kept.
                let refilled = self
                    .buckets
                    .get(&tx, key)?
                    .and_then(|value| Record::read(key, value))
                    .is_some_and(|r| r.0 <= now);
                if refilled {
                    self.buckets.delete(&mut tx, key)?;
                }
            }
            tx.commit()
        };
        remove().map_err(|e| self.failed(e))?;
        self.changed.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// [`Store::sweep`] with the turn already held (a charge found the map
    /// full).
    fn sweep_held(&self, now: u64) -> heed::Result<()> {
        let mut tx = self.env.write_txn()?;
        let mut keys = Vec::new();
        for entry in self.buckets.iter(&tx)? {
            let (key, value) = entry?;
            if Record::read(key, value).is_some_and(|r| r.0 <= now) {
                keys.push(key.to_vec());
            }
        }
        for key in &keys {
            self.buckets.delete(&mut tx, key)?;
        }
        tx.commit()
    }

    /// Starts the thread that writes the map out, once.
    fn start_syncing(self: &Arc<Self>) {
        if self.syncing.get().is_some() {
            return;
        }
        self.syncing.get_or_init(|| {
            let store = Arc::downgrade(self);
            let started = std::thread::Builder::new()
                .name("toolwarden-sync".into())
                .stack_size(64 * 1024)
                .spawn(move || sync(store));
            if let Err(e) = started {
                tracing::warn!("cannot start the thread that writes the state store out: {e}");
            }
        });
    }

    fn failed(&self, e: heed::Error) -> StoreError {
        StoreError(format!("{}: {e}", self.path.display()))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if self.changed.load(Ordering::Relaxed) {
            let _ = self.env.force_sync();
        }
    }
}

/// Writes the map out once a second when a charge changed it, and sweeps
/// now and then, while the store is open.
fn sync(store: Weak<Store>) {
    let mut ticks = 0u32;
    loop {
        std::thread::sleep(SYNC_EVERY);
        let Some(store) = store.upgrade() else {
            return;
        };
        ticks += 1;
        if ticks % SWEEP_EVERY == 0 {
            if let Err(e) = store.sweep(super::now_us()) {
                tracing::debug!("sweeping the state store: {}", e.0);
            }
        }
        if store.changed.swap(false, Ordering::Relaxed) {
            if let Err(e) = store.env.force_sync() {
                store.changed.store(true, Ordering::Relaxed);
                tracing::warn!("{}: cannot write it out: {e}", store.path.display());
            }
        }
    }
}

/// A bucket's key in the map: its own bytes, or the hash of a key longer
/// than LMDB takes.
fn map_key(key: &str) -> Cow<'_, [u8]> {
    if key.len() <= MAX_KEY {
        return Cow::Borrowed(key.as_bytes());
    }
    use sha2::Digest;
    let mut hashed = HASHED.to_vec();
    hashed.extend_from_slice(&sha2::Sha256::digest(key.as_bytes()));
    Cow::Owned(hashed)
}

/// A bucket's value in the map.
struct Record;

impl Record {
    fn write(key: &str, tat: u64, period: u64, burst: u32) -> Vec<u8> {
        let mut value = Vec::with_capacity(RECORD);
        value.extend_from_slice(&tat.to_le_bytes());
        value.extend_from_slice(&period.to_le_bytes());
        value.extend_from_slice(&burst.to_le_bytes());
        if key.len() > MAX_KEY {
            value.extend_from_slice(key.as_bytes());
        }
        value
    }

    /// TAT, period, burst and the bucket's key; None for a value that
    /// cannot be one of this module's.
    fn read<'a>(key: &'a [u8], value: &'a [u8]) -> Option<(u64, u64, u32, &'a [u8])> {
        let (fixed, rest) = value.split_at_checked(RECORD)?;
        let tat = u64::from_le_bytes(fixed[..8].try_into().ok()?);
        let period = u64::from_le_bytes(fixed[8..16].try_into().ok()?);
        let burst = u32::from_le_bytes(fixed[16..].try_into().ok()?);
        let key = if key.starts_with(HASHED) {
            // The hash must be the key's, or the value is not this one's.
            let text = std::str::from_utf8(rest).ok()?;
            if map_key(text).as_ref() != key {
                return None;
            }
            rest
        } else if rest.is_empty() {
            key
        } else {
            return None;
        };
        Some((tat, period, burst, key))
    }
}

/// `path` with `suffix` after its file name (`counters.lmdb-turn`).
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The path as every opener names it, whether the file exists yet or not.
fn canonical(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => dir
            .canonicalize()
            .map_or_else(|_| path.to_owned(), |d| d.join(name)),
        _ => path.to_owned(),
    }
}
