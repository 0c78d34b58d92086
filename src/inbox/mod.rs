//! The approval inbox: calls that wait for a person who is not in the
//! client. A session whose client cannot ask (or that runs with
//! `--approval inbox`) files the call here; `toolwarden approvals` lists
//! and decides it from any terminal on the machine; the session forwards
//! the call once it finds it approved, or the agent's retry of the same
//! call redeems the approval later. The inbox lives in the state store, so
//! that every process that shares counters shares approvals too.
//!
//! A call is known by its key: the SHA-256 of the policy namespace, the
//! identity, the tool and the strict canonical form of its arguments. An
//! approval is redeemed once, and only by a call with the same key.

pub mod cli;
mod page;
mod redis;
mod sqlite;
mod watch;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::state::{Spec, StoreError};
use crate::wire::json::Raw;

/// A call filed for approval, as a person sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pending {
    pub id: String,
    pub tool: String,
    /// Redacted, as the audit log keeps them.
    pub arguments: serde_json::Value,
    pub identity: String,
    /// The policy namespace (the policy file's name by default).
    pub namespace: String,
    /// The server's command, secrets hidden.
    pub server: String,
    /// Milliseconds since the UNIX epoch (RFC 3339 in JSON).
    #[serde(serialize_with = "rfc3339")]
    pub requested_at: u64,
    #[serde(serialize_with = "rfc3339")]
    pub expires_at: u64,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Not shown: what binds the approval to one call.
    #[serde(skip)]
    pub key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Approved,
    Denied,
    /// Approved, and the call it approved has been forwarded.
    Redeemed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Redeemed => "redeemed",
        }
    }

    /// A stored status; anything else reads as `None` and never approves.
    fn parse(text: &str) -> Option<Status> {
        Some(match text {
            "pending" => Status::Pending,
            "approved" => Status::Approved,
            "denied" => Status::Denied,
            "redeemed" => Status::Redeemed,
            _ => return None,
        })
    }
}

/// What the inbox says of a call a session asks about.
#[derive(Debug, PartialEq)]
pub enum Found {
    /// Approved, and redeemed by this asking: forward the call.
    Approved(Pending),
    Denied(Pending),
    /// Filed, or already waiting: nobody has decided yet.
    Waiting(Pending),
    /// The approval asked about expired, or another session redeemed it.
    Gone,
}

/// Why a person's decision was not taken.
#[derive(Debug, PartialEq)]
pub enum Refused {
    NoSuchId,
    /// The row does not read (changed outside toolwarden).
    Unreadable,
    Expired,
    /// Decided already (how, and by whom).
    Decided(Status, Option<String>),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::NoSuchId => write!(f, "no approval has this id (`toolwarden approvals list` shows the ones waiting)"),
            Refused::Unreadable => write!(f, "this approval's record in the store does not read (it was changed outside toolwarden), so it approves nothing: let the agent make the call again"),
            Refused::Expired => write!(f, "this approval expired: the agent must make the call again"),
            Refused::Decided(status, by) => {
                let how = match status {
                    Status::Redeemed => "approved",
                    other => other.as_str(),
                };
                write!(f, "this call was {how} already")?;
                if let Some(by) = by {
                    write!(f, ", by {}", crate::redact::loggable(by))?;
                }
                if *status == Status::Redeemed {
                    write!(f, ", and has been made")?;
                }
                Ok(())
            }
        }
    }
}

/// What a look at the inbox finds.
#[derive(Debug, Default, PartialEq)]
pub struct Listing {
    pub calls: Vec<Pending>,
    /// The ids of records that do not read (changed outside toolwarden):
    /// they approve nothing, and a person should hear of them.
    pub unreadable: Vec<String>,
}

/// A call to file: everything but the id and times.
pub struct Request {
    pub key: String,
    pub tool: String,
    pub arguments: serde_json::Value,
    pub identity: String,
    pub namespace: String,
    pub server: String,
}

/// The key that binds an approval to one call.
pub fn call_key(namespace: &str, identity: &str, tool: &str, arguments: Option<Raw<'_>>) -> String {
    let arguments = arguments.unwrap_or_else(|| Raw::parse("{}").expect("valid JSON"));
    let mut hash = Sha256::new();
    for part in [namespace, identity, tool] {
        hash.update(part.len().to_be_bytes());
        hash.update(part);
    }
    hash.update(crate::policy::arguments_digest(arguments));
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Where approvals are kept: the state store's, where another process
/// can reach it.
pub enum Inbox {
    Sqlite(sqlite::Sqlite),
    Redis(Box<redis::Redis>),
    /// No inbox: why not, for the refusal and for `toolwarden approvals`.
    Unavailable(String),
}

impl Inbox {
    pub fn open(spec: &Spec) -> anyhow::Result<Inbox> {
        Ok(match spec {
            Spec::Sqlite(path) => Inbox::Sqlite(sqlite::Sqlite::open(path)?),
            // Counters only: the approvals are in the SQLite database
            // beside it, made as private as the counters' files now and
            // opened when a call first waits in it.
            Spec::Lmdb(_) => match spec.inbox() {
                Spec::Sqlite(path) => {
                    crate::state::private_file(&path)?;
                    Inbox::Sqlite(sqlite::Sqlite::later(&path))
                }
                other => return Inbox::open(&other),
            },
            Spec::Memory => Inbox::Unavailable(
                "with --state memory no other process can see this call to approve it; \
                 use the default store (or --state PATH or a Redis URL)"
                    .into(),
            ),
            Spec::Redis(url) => Inbox::Redis(Box::new(redis::Redis::new(url)?)),
        })
    }

    /// Files `request`, or finds the approval already filed for the same
    /// call: an approved one is redeemed now.
    pub fn ask(&self, request: &Request, now: u64, ttl_ms: u64) -> Result<Found, StoreError> {
        match self {
            Inbox::Sqlite(db) => db.ask(request, now, ttl_ms),
            Inbox::Redis(db) => db.ask(request, now, ttl_ms),
            Inbox::Unavailable(why) => Err(StoreError(why.clone())),
        }
    }

    /// How the approval `id` stands now; with `redeem`, an approved one
    /// is redeemed (and `Approved` means this caller may forward the call).
    pub fn check(&self, id: &str, now: u64, redeem: bool) -> Result<Found, StoreError> {
        match self {
            Inbox::Sqlite(db) => db.check(id, now, redeem),
            Inbox::Redis(db) => db.check(id, now, redeem),
            Inbox::Unavailable(why) => Err(StoreError(why.clone())),
        }
    }

    /// The approvals not yet expired, oldest first; only pending ones
    /// unless `all`. Records that do not read are left out (and logged).
    pub fn list(&self, now: u64, all: bool) -> Result<Vec<Pending>, StoreError> {
        let listing = self.listing(now, all)?;
        for id in &listing.unreadable {
            tracing::warn!(id = %crate::redact::loggable(id), "an approval in the store does not read; left out");
        }
        Ok(listing.calls)
    }

    /// [`Inbox::list`], with the ids of the records that do not read.
    pub fn listing(&self, now: u64, all: bool) -> Result<Listing, StoreError> {
        match self {
            Inbox::Sqlite(db) => db.list(now, all),
            Inbox::Redis(db) => db.list(now, all),
            Inbox::Unavailable(why) => Err(StoreError(why.clone())),
        }
    }

    /// A person's yes (`approve`) or no for `id`.
    pub fn decide(
        &self,
        id: &str,
        approve: bool,
        by: &str,
        reason: Option<&str>,
        now: u64,
    ) -> Result<Result<Pending, Refused>, StoreError> {
        match self {
            Inbox::Sqlite(db) => db.decide(id, approve, by, reason, now),
            Inbox::Redis(db) => db.decide(id, approve, by, reason, now),
            Inbox::Unavailable(why) => Err(StoreError(why.clone())),
        }
    }
}

fn rfc3339<S: serde::Serializer>(ms: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(*ms);
    serializer.collect_str(&humantime::format_rfc3339_seconds(time))
}

/// Milliseconds since the UNIX epoch.
pub fn now_ms() -> u64 {
    crate::state::now_us() / 1000
}

/// A short id a person can type: 40 random bits in lowercase letters and
/// digits (ids are unique in the inbox; a clash is drawn again).
pub fn new_id() -> Option<String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let random = crate::audit::unguessable_id()?;
    let bits = u64::from_str_radix(&random[..10], 16).ok()?;
    Some(
        (0..8)
            .map(|i| ALPHABET[((bits >> (i * 5)) & 31) as usize] as char)
            .collect(),
    )
}

/// Who decides: the OS user running `toolwarden approvals`.
pub fn approver() -> String {
    // SAFETY: getpwuid_r writes into the buffers given, sized as passed.
    let uid = unsafe { libc::geteuid() };
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buffer = vec![0 as libc::c_char; 4096];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let status = unsafe {
        libc::getpwuid_r(
            uid,
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if status == 0 && !found.is_null() && !entry.pw_name.is_null() {
        // SAFETY: pw_name points into `buffer`, NUL-terminated.
        let name = unsafe { std::ffi::CStr::from_ptr(entry.pw_name) };
        return name.to_string_lossy().into_owned();
    }
    format!("uid {uid}")
}

#[cfg(test)]
mod tests;
