//! The inbox in the SQLite state database, a table beside the counters.
//! Every change is one immediate transaction, so that two sessions never
//! both redeem one approval and a decision never lands on a row another
//! process changed meanwhile.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use super::{new_id, Found, Listing, Pending, Refused, Request, Status};
use crate::state::StoreError;

/// As the counters': a decision takes microseconds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);
/// Expired rows are kept this long, for `approvals list --all`.
const KEEP_EXPIRED_MS: u64 = 24 * 3600 * 1000;

pub struct Sqlite {
    /// None until first used, for an inbox opened [`Sqlite::later`].
    connection: Mutex<Option<Connection>>,
    path: PathBuf,
}

const COLUMNS: &str = "id, call_key, namespace, tool, arguments, identity, server, \
                       requested_at, expires_at, status, decided_by, reason";

impl Sqlite {
    /// Opens the state database (made 0600 beforehand: by the SQLite
    /// counters' store, or by `Inbox::open` beside an LMDB one) and the
    /// inbox's table in it.
    pub fn open(path: &Path) -> anyhow::Result<Sqlite> {
        let connection = connect(path)
            .with_context(|| format!("{}: cannot open the approvals in it", path.display()))?;
        Ok(Sqlite {
            connection: Mutex::new(Some(connection)),
            path: path.to_owned(),
        })
    }

    /// The inbox at `path`, opened when it is first asked: a session whose
    /// counters are in an LMDB map keeps SQLite out of its memory until a
    /// call waits for approval (most sessions never do). A database that
    /// cannot be opened then refuses that call, as one that cannot be used.
    pub fn later(path: &Path) -> Sqlite {
        Sqlite {
            connection: Mutex::new(None),
            path: path.to_owned(),
        }
    }

    /// The connection, opened now if it was not yet.
    fn connection(&self) -> Result<MutexGuard<'_, Option<Connection>>, StoreError> {
        let mut guard = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(connect(&self.path).map_err(|e| self.failed(e))?);
        }
        Ok(guard)
    }

    fn failed(&self, e: rusqlite::Error) -> StoreError {
        StoreError(format!("{}: {e}", self.path.display()))
    }

    pub fn ask(&self, request: &Request, now: u64, ttl_ms: u64) -> Result<Found, StoreError> {
        let mut guard = self.connection()?;
        let tx = guard
            .as_mut()
            .expect("connected")
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.failed(e))?;
        tx.execute(
            "DELETE FROM approvals WHERE expires_at < ?1",
            params![now.saturating_sub(KEEP_EXPIRED_MS) as i64],
        )
        .map_err(|e| self.failed(e))?;
        let existing = live(&tx, &request.key, now).map_err(|e| self.failed(e))?;
        let found = match existing {
            Some(pending) => settle(&tx, pending).map_err(|e| self.failed(e))?,
            None => {
                let pending = file(&tx, request, now, ttl_ms).map_err(|e| self.failed(e))?;
                Found::Waiting(pending)
            }
        };
        tx.commit().map_err(|e| self.failed(e))?;
        Ok(found)
    }

    pub fn check(&self, id: &str, now: u64, redeem: bool) -> Result<Found, StoreError> {
        let mut guard = self.connection()?;
        let tx = guard
            .as_mut()
            .expect("connected")
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.failed(e))?;
        let row = select(&tx, id).map_err(|e| self.failed(e))?;
        let found = match row {
            Some(Ok(pending)) if pending.expires_at > now && !redeem => match pending.status {
                Status::Pending => Found::Waiting(pending),
                Status::Approved => Found::Approved(pending),
                Status::Denied => Found::Denied(pending),
                Status::Redeemed => Found::Gone,
            },
            Some(Ok(pending)) if pending.expires_at > now => {
                settle(&tx, pending).map_err(|e| self.failed(e))?
            }
            _ => Found::Gone,
        };
        tx.commit().map_err(|e| self.failed(e))?;
        Ok(found)
    }

    /// Every row is read (the table holds a day of approvals at most), so
    /// that a row that does not read is found whatever its columns say.
    pub fn list(&self, now: u64, all: bool) -> Result<Listing, StoreError> {
        let guard = self.connection()?;
        let mut statement = guard
            .as_ref()
            .expect("connected")
            .prepare(&format!(
                "SELECT {COLUMNS} FROM approvals ORDER BY requested_at, id"
            ))
            .map_err(|e| self.failed(e))?;
        let rows = statement
            .query_map([], read_row)
            .map_err(|e| self.failed(e))?;
        let mut listing = Listing::default();
        for row in rows {
            match row.map_err(|e| self.failed(e))? {
                Ok(pending)
                    if all || (pending.status == Status::Pending && pending.expires_at > now) =>
                {
                    listing.calls.push(pending)
                }
                Ok(_) => {}
                Err(id) => listing.unreadable.push(id),
            }
        }
        Ok(listing)
    }

    pub fn decide(
        &self,
        id: &str,
        approve: bool,
        by: &str,
        reason: Option<&str>,
        now: u64,
    ) -> Result<Result<Pending, Refused>, StoreError> {
        let mut guard = self.connection()?;
        let tx = guard
            .as_mut()
            .expect("connected")
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.failed(e))?;
        let mut pending = match select(&tx, id).map_err(|e| self.failed(e))? {
            None => return Ok(Err(Refused::NoSuchId)),
            Some(Err(_)) => return Ok(Err(Refused::Unreadable)),
            Some(Ok(pending)) => pending,
        };
        if pending.status != Status::Pending {
            return Ok(Err(Refused::Decided(pending.status, pending.decided_by)));
        }
        if pending.expires_at <= now {
            return Ok(Err(Refused::Expired));
        }
        pending.status = if approve {
            Status::Approved
        } else {
            Status::Denied
        };
        pending.decided_by = Some(by.to_owned());
        pending.reason = reason.map(str::to_owned);
        tx.execute(
            "UPDATE approvals SET status = ?2, decided_by = ?3, reason = ?4 \
             WHERE id = ?1 AND status = 'pending'",
            params![id, pending.status.as_str(), by, reason],
        )
        .map_err(|e| self.failed(e))?;
        tx.commit().map_err(|e| self.failed(e))?;
        Ok(Ok(pending))
    }
}

/// A connection to the database at `path`, with the inbox's table.
fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(BUSY_TIMEOUT)?;
    // As the SQLite counters' store sets it: readers (the page,
    // `approvals watch`) never hold up a session.
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS approvals (
            id TEXT PRIMARY KEY,
            call_key TEXT NOT NULL,
            namespace TEXT NOT NULL,
            tool TEXT NOT NULL,
            arguments TEXT NOT NULL,
            identity TEXT NOT NULL,
            server TEXT NOT NULL,
            requested_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            status TEXT NOT NULL,
            decided_by TEXT,
            reason TEXT
        );
        CREATE INDEX IF NOT EXISTS approvals_by_call ON approvals (call_key);",
    )?;
    Ok(c)
}

/// The newest live approval of the call `key`, if any. Rows that do not
/// read are passed over, whatever their columns say (a time that is not a
/// number sorts after every number): they are never an approval, and
/// they never hide one.
fn live(tx: &rusqlite::Transaction<'_>, key: &str, now: u64) -> rusqlite::Result<Option<Pending>> {
    let mut statement = tx.prepare(&format!(
        "SELECT {COLUMNS} FROM approvals WHERE call_key = ?1 AND expires_at > ?2 \
         AND status != 'redeemed' ORDER BY requested_at DESC"
    ))?;
    let rows = statement.query_map(params![key, now as i64], read_row)?;
    for row in rows {
        if let Ok(pending) = row? {
            if pending.expires_at > now && pending.status != Status::Redeemed {
                return Ok(Some(pending));
            }
        }
    }
    Ok(None)
}

/// What a live approval means for the call asking: approved ones are
/// redeemed here, in the caller's transaction.
fn settle(tx: &rusqlite::Transaction<'_>, mut pending: Pending) -> rusqlite::Result<Found> {
    Ok(match pending.status {
        Status::Pending => Found::Waiting(pending),
        Status::Denied => Found::Denied(pending),
        Status::Redeemed => Found::Gone,
        Status::Approved => {
            let changed = tx.execute(
                "UPDATE approvals SET status = 'redeemed' WHERE id = ?1 AND status = 'approved'",
                params![pending.id],
            )?;
            if changed != 1 {
                return Ok(Found::Gone);
            }
            pending.status = Status::Redeemed;
            Found::Approved(pending)
        }
    })
}

/// Files a new pending approval under a fresh id.
fn file(
    tx: &rusqlite::Transaction<'_>,
    request: &Request,
    now: u64,
    ttl_ms: u64,
) -> rusqlite::Result<Pending> {
    let arguments = serde_json::to_string(&request.arguments).unwrap_or_else(|_| "{}".into());
    loop {
        let Some(id) = new_id() else {
            return Err(rusqlite::Error::ToSqlConversionFailure(
                "the system gave no randomness for an approval id".into(),
            ));
        };
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO approvals (id, call_key, namespace, tool, arguments, identity, \
             server, requested_at, expires_at, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending')",
            params![
                id,
                request.key,
                request.namespace,
                request.tool,
                arguments,
                request.identity,
                request.server,
                now as i64,
                now.saturating_add(ttl_ms) as i64,
            ],
        )?;
        if inserted == 1 {
            return Ok(Pending {
                id,
                tool: request.tool.clone(),
                arguments: request.arguments.clone(),
                identity: request.identity.clone(),
                namespace: request.namespace.clone(),
                server: request.server.clone(),
                requested_at: now,
                expires_at: now.saturating_add(ttl_ms),
                status: Status::Pending,
                decided_by: None,
                reason: None,
                key: request.key.clone(),
            });
        }
    }
}

fn select(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
) -> rusqlite::Result<Option<Result<Pending, String>>> {
    tx.query_row(
        &format!("SELECT {COLUMNS} FROM approvals WHERE id = ?1"),
        params![id],
        read_row,
    )
    .optional()
}

/// A row as a [`Pending`], or its id when a column does not read (an
/// unknown status, arguments that are not JSON, a time that is not a
/// number): such a row approves nothing. SQLite keeps whatever was
/// written into a column, so every column is read as a value that may be
/// wrong, never as an error that would hide the other rows.
fn read_row(row: &Row<'_>) -> rusqlite::Result<Result<Pending, String>> {
    let id = match row.get_ref(0)? {
        ValueRef::Text(text) => String::from_utf8_lossy(text).into_owned(),
        ValueRef::Integer(n) => n.to_string(),
        _ => "(a row without an id)".to_owned(),
    };
    let text = |i: usize| row.get::<_, String>(i).ok();
    let time = |i: usize| {
        row.get::<_, i64>(i)
            .ok()
            .and_then(|t| u64::try_from(t).ok())
    };
    let optional = |i: usize| row.get::<_, Option<String>>(i).ok();
    let read = || {
        Some(Pending {
            id: text(0)?,
            key: text(1)?,
            namespace: text(2)?,
            tool: text(3)?,
            arguments: serde_json::from_str(&text(4)?).ok()?,
            identity: text(5)?,
            server: text(6)?,
            requested_at: time(7)?,
            expires_at: time(8)?,
            status: Status::parse(&text(9)?)?,
            decided_by: optional(10)?,
            reason: optional(11)?,
        })
    };
    Ok(read().ok_or(id))
}
