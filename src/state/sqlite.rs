//! Counters in an SQLite database: shared by every toolwarden on the
//! machine that opens the same file. Each charge is one short immediate
//! transaction (read the TATs, decide, write them), so two processes never
//! both take the last call; a process that finds the database busy waits
//! its turn (`busy_timeout`) instead of failing.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{clamp, decide, Bucket, StoreError, Taken};

/// How long a charge waits for another process's transaction. A charge
/// takes microseconds, so only a stuck lock waits this long; the client's
/// other messages wait behind it, so it is short.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);
/// Charges between sweeps of buckets that have refilled.
const SWEEP_EVERY: u64 = 1024;

pub struct Sqlite {
    connection: Mutex<(Connection, u64)>,
    path: PathBuf,
}

impl Sqlite {
    /// Opens (or creates, 0600 in a 0700 directory) the database.
    pub fn open(path: &Path) -> anyhow::Result<Sqlite> {
        super::private_file(path)?;
        let connection = Connection::open(path)
            .and_then(|c| {
                c.busy_timeout(BUSY_TIMEOUT)?;
                c.pragma_update(None, "journal_mode", "WAL")?;
                c.pragma_update(None, "synchronous", "NORMAL")?;
                // A table of a few buckets: 256 KiB of page cache, not
                // SQLite's default 2 MiB.
                c.pragma_update(None, "cache_size", -256)?;
                c.execute_batch(
                    "CREATE TABLE IF NOT EXISTS buckets (
                        key TEXT PRIMARY KEY,
                        tat INTEGER NOT NULL,
                        period INTEGER NOT NULL,
                        burst INTEGER NOT NULL
                    ) WITHOUT ROWID;",
                )?;
                Ok(c)
            })
            .with_context(|| format!("{}: cannot open the state database", path.display()))?;
        Ok(Sqlite {
            connection: Mutex::new((connection, 0)),
            path: path.to_owned(),
        })
    }

    pub fn take(&self, buckets: &[Bucket], now: u64, commit: bool) -> Result<Taken, StoreError> {
        let mut guard = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        let (connection, charges) = &mut *guard;
        let failed = |e: rusqlite::Error| StoreError(format!("{}: {e}", self.path.display()));
        // A dry run only reads; a charge holds the write lock from its
        // first read, so that no other process decides on the same TATs.
        let behavior = if commit {
            TransactionBehavior::Immediate
        } else {
            TransactionBehavior::Deferred
        };
        let tx = connection
            .transaction_with_behavior(behavior)
            .map_err(failed)?;
        let mut tats = Vec::with_capacity(buckets.len());
        {
            let mut read = tx
                .prepare_cached("SELECT tat FROM buckets WHERE key = ?1")
                .map_err(failed)?;
            for b in buckets {
                let tat: Option<i64> = read
                    .query_row(params![b.key], |row| row.get(0))
                    .optional()
                    .map_err(failed)?;
                tats.push(tat.map(|t| t as u64));
            }
        }
        let clamped = clamp(buckets, &mut tats, now);
        let (written, short): (Vec<(usize, u64)>, _) = match decide(buckets, &tats, now) {
            Ok(next) => (next.into_iter().enumerate().collect(), None),
            Err(short) => {
                let kept = clamped.into_iter().map(|i| (i, tats[i].expect("clamped")));
                (kept.collect(), Some(short))
            }
        };
        if !commit {
            return Ok(short.map_or(Ok(()), Err));
        }
        {
            let mut write = tx
                .prepare_cached(
                    "INSERT INTO buckets (key, tat, period, burst) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (key) DO UPDATE SET tat = ?2, period = ?3, burst = ?4",
                )
                .map_err(failed)?;
            for (i, tat) in written {
                let b = &buckets[i];
                write
                    .execute(params![
                        b.key,
                        tat as i64,
                        b.rate.period_us as i64,
                        b.rate.burst.get()
                    ])
                    .map_err(failed)?;
            }
        }
        if let Some(short) = short {
            tx.commit().map_err(failed)?;
            return Ok(Err(short));
        }
        *charges += 1;
        if *charges % SWEEP_EVERY == 0 {
            // A bucket that has refilled is the same as none.
            tx.execute("DELETE FROM buckets WHERE tat <= ?1", params![now as i64])
                .map_err(failed)?;
        }
        tx.commit().map_err(failed)?;
        Ok(Ok(()))
    }

    /// Every bucket: key, TAT, period and burst.
    pub fn buckets(&self) -> Result<Vec<(String, u64, u64, u32)>, StoreError> {
        let guard = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        let failed = |e: rusqlite::Error| StoreError(format!("{}: {e}", self.path.display()));
        let mut read = guard
            .0
            .prepare("SELECT key, tat, period, burst FROM buckets ORDER BY key")
            .map_err(failed)?;
        let rows = read
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)? as u64,
                    row.get::<_, i64>(2)? as u64,
                    row.get::<_, u32>(3)?,
                ))
            })
            .map_err(failed)?;
        rows.collect::<Result<_, _>>().map_err(failed)
    }

    /// Removes the buckets of these keys; how many.
    pub fn remove(&self, keys: &[String]) -> Result<usize, StoreError> {
        let guard = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        let failed = |e: rusqlite::Error| StoreError(format!("{}: {e}", self.path.display()));
        let mut removed = 0;
        for key in keys {
            removed += guard
                .0
                .execute("DELETE FROM buckets WHERE key = ?1", params![key])
                .map_err(failed)?;
        }
        Ok(removed)
    }
}

/// The buckets of the database at `path` (key, TAT, period and burst),
/// read without changing it: none when it has no table of counters.
pub fn buckets_in(path: &Path) -> rusqlite::Result<Vec<(String, u64, u64, u32)>> {
    let connection = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    let tables: i64 = connection.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'buckets'",
        [],
        |row| row.get(0),
    )?;
    if tables == 0 {
        return Ok(Vec::new());
    }
    let mut read = connection.prepare("SELECT key, tat, period, burst FROM buckets")?;
    let rows = read.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, i64>(1)? as u64,
            row.get::<_, i64>(2)? as u64,
            row.get::<_, u32>(3)?,
        ))
    })?;
    rows.collect()
}
