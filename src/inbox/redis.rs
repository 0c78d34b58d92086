//! The inbox on a Redis server, beside the counters: every machine that
//! shares budgets through it shares approvals too. An approval is a hash
//! (`toolwarden-approvals:id:ID`: the record as JSON, and its status,
//! decider and reason apart so that scripts never parse the JSON), and
//! `toolwarden-approvals:call:KEY` names the live approval of one call.
//! Each change is one server-side script, so two sessions never both
//! redeem one approval. Keys expire a day after the approval does.
//!
//! The prefix is not the counters' `toolwarden:`, so that `state show`
//! and `state reset` never see these keys.

use std::sync::Mutex;
use std::time::Duration;

use super::{new_id, Found, Listing, Pending, Refused, Request, Status};
use crate::state::StoreError;

const TIMEOUT: Duration = Duration::from_secs(1);
const KEEP_EXPIRED_MS: u64 = 24 * 3600 * 1000;
const PREFIX: &str = "toolwarden-approvals:";

/// KEYS: the call's index, the new approval's hash. ARGV: now, the new
/// id, its record, its expiry, how long its keys live (ms), and 1 to file
/// anew whatever the index names (its record did not read). Returns
/// {status, id, record, decided_by, reason} of the call's live approval,
/// an approved one redeemed now ("approved" then means: forward it), or
/// of the one filed. Keys of another type than toolwarden writes (changed
/// outside it) are passed over, never an error that stops the call.
const ASK: &str = r#"
local now = tonumber(ARGV[1])
local id = false
if ARGV[6] ~= '1' and redis.call('TYPE', KEYS[1]).ok == 'string' then
  id = redis.call('GET', KEYS[1])
end
if id then
  local key = 'toolwarden-approvals:id:' .. id
  if redis.call('TYPE', key).ok == 'hash' then
    local a = redis.call('HMGET', key, 'status', 'expires_at', 'record', 'decided_by', 'reason')
    if a[1] and a[1] ~= 'redeemed' and tonumber(a[2]) and tonumber(a[2]) > now then
      if a[1] == 'approved' then
        redis.call('HSET', key, 'status', 'redeemed')
      end
      return {a[1], id, a[3], a[4] or false, a[5] or false}
    end
  end
end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'clash'} end
redis.call('HSET', KEYS[2], 'status', 'pending', 'expires_at', ARGV[4], 'record', ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[5])
return {'pending', ARGV[2], ARGV[3], false, false}
"#;

/// KEYS: the approval's hash. ARGV: now, 1 to redeem an approved one.
/// Returns {status, record, decided_by, reason}; {} when it is gone;
/// {'unreadable'} when it is not a hash as toolwarden writes it.
const CHECK: &str = r#"
local t = redis.call('TYPE', KEYS[1]).ok
if t == 'none' then return {} end
if t ~= 'hash' then return {'unreadable'} end
local a = redis.call('HMGET', KEYS[1], 'status', 'expires_at', 'record', 'decided_by', 'reason')
if not a[1] or not tonumber(a[2]) then return {'unreadable'} end
if tonumber(a[2]) <= tonumber(ARGV[1]) then return {} end
if a[1] == 'approved' and ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'status', 'redeemed')
end
return {a[1], a[3], a[4] or false, a[5] or false}
"#;

/// KEYS: the approval's hash. ARGV: now, the new status, who, the reason,
/// and the record as read (and found to read) just before. Returns
/// {'ok'}, {'none'}, {'expired'}, {'unreadable'} (not as toolwarden
/// wrote it, or changed since it was read) or {'decided', status,
/// decided_by}.
const DECIDE: &str = r#"
local t = redis.call('TYPE', KEYS[1]).ok
if t == 'none' then return {'none'} end
if t ~= 'hash' then return {'unreadable'} end
local a = redis.call('HMGET', KEYS[1], 'status', 'expires_at', 'record', 'decided_by')
if not a[1] then return {'unreadable'} end
if a[1] ~= 'pending' then return {'decided', a[1], a[4] or false} end
if a[3] ~= ARGV[5] then return {'unreadable'} end
if not tonumber(a[2]) or tonumber(a[2]) <= tonumber(ARGV[1]) then return {'expired'} end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'decided_by', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'reason', ARGV[4]) end
return {'ok'}
"#;

pub struct Redis {
    client: redis::Client,
    url: String,
    connection: Mutex<Option<redis::Connection>>,
}

/// What the scripts return: strings, or nil (false) for a field not set.
type Reply = Vec<Option<String>>;

impl Redis {
    pub fn new(url: &str) -> anyhow::Result<Redis> {
        let client = crate::state::redis_client(url)?;
        Ok(Redis {
            client,
            url: url.to_owned(),
            connection: Mutex::new(None),
        })
    }

    /// Runs a script on the connection, connecting first if need be; a
    /// failure drops the connection, so that the next call connects anew.
    fn run(&self, script: &str, keys: &[String], args: &[String]) -> Result<Reply, StoreError> {
        let mut link = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        let failed =
            |e: redis::RedisError| StoreError(crate::state::scrubbed(&e.to_string(), &self.url));
        if link.is_none() {
            let connection = self
                .client
                .get_connection_with_timeout(TIMEOUT)
                .and_then(|c| {
                    c.set_read_timeout(Some(TIMEOUT))?;
                    c.set_write_timeout(Some(TIMEOUT))?;
                    Ok(c)
                })
                .map_err(failed)?;
            *link = Some(connection);
        }
        let script = redis::Script::new(script);
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let answer = invocation.invoke::<Reply>(link.as_mut().expect("connected above"));
        if answer.is_err() {
            *link = None;
        }
        answer.map_err(failed)
    }

    pub fn ask(&self, request: &Request, now: u64, ttl_ms: u64) -> Result<Found, StoreError> {
        let expires_at = now.saturating_add(ttl_ms);
        let record = Record::of(request, now, expires_at);
        // Set when the index names a record that does not read: that one
        // approves nothing, and the call is filed anew in its place.
        let mut fresh = false;
        loop {
            let id = new_id().ok_or_else(|| {
                StoreError("the system gave no randomness for an approval id".into())
            })?;
            let reply = self.run(
                ASK,
                &[
                    format!("{PREFIX}call:{}", request.key),
                    format!("{PREFIX}id:{id}"),
                ],
                &[
                    now.to_string(),
                    id,
                    record.clone(),
                    expires_at.to_string(),
                    (ttl_ms + KEEP_EXPIRED_MS).to_string(),
                    if fresh { "1" } else { "0" }.into(),
                ],
            )?;
            match reply.as_slice() {
                [Some(clash)] if clash == "clash" => continue,
                [Some(status), Some(id), record, by, reason] => {
                    let pending = pending(id, status, record.as_deref(), by, reason);
                    return Ok(match pending {
                        None if !fresh => {
                            fresh = true;
                            continue;
                        }
                        None => Found::Gone,
                        // Redeemed by the script, for this call.
                        Some(mut p) if p.status == Status::Approved => {
                            p.status = Status::Redeemed;
                            Found::Approved(p)
                        }
                        Some(p) if p.status == Status::Denied => Found::Denied(p),
                        Some(p) if p.status == Status::Pending => Found::Waiting(p),
                        Some(_) => Found::Gone,
                    });
                }
                _ => return Err(StoreError(format!("the inbox script answered {reply:?}"))),
            }
        }
    }

    pub fn check(&self, id: &str, now: u64, redeem: bool) -> Result<Found, StoreError> {
        let reply = self.run(
            CHECK,
            &[format!("{PREFIX}id:{id}")],
            &[now.to_string(), if redeem { "1" } else { "0" }.into()],
        )?;
        let [Some(status), record, by, reason] = reply.as_slice() else {
            return Ok(Found::Gone);
        };
        let Some(mut p) = pending(id, status, record.as_deref(), by, reason) else {
            return Ok(Found::Gone);
        };
        Ok(match p.status {
            Status::Pending => Found::Waiting(p),
            Status::Denied => Found::Denied(p),
            Status::Redeemed => Found::Gone,
            Status::Approved => {
                if redeem {
                    p.status = Status::Redeemed;
                }
                Found::Approved(p)
            }
        })
    }

    pub fn list(&self, now: u64, all: bool) -> Result<Listing, StoreError> {
        let mut ids = Vec::new();
        {
            let mut link = self.connection.lock().unwrap_or_else(|e| e.into_inner());
            let mut connection = match link.take() {
                Some(c) => c,
                None => self
                    .client
                    .get_connection_with_timeout(TIMEOUT)
                    .map_err(|e| StoreError(crate::state::scrubbed(&e.to_string(), &self.url)))?,
            };
            let mut cursor = 0u64;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{PREFIX}id:*"))
                    .arg("COUNT")
                    .arg(1000)
                    .query(&mut connection)
                    .map_err(|e| StoreError(crate::state::scrubbed(&e.to_string(), &self.url)))?;
                ids.extend(
                    batch
                        .into_iter()
                        .filter_map(|k| k.strip_prefix(&format!("{PREFIX}id:")).map(str::to_owned)),
                );
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            *link = Some(connection);
        }
        let mut listing = Listing::default();
        for id in ids {
            // Looking (without redeeming) at the time 0 shows every one
            // not yet deleted; the filter below keeps what was asked for.
            let reply = self.run(
                CHECK,
                &[format!("{PREFIX}id:{id}")],
                &["0".into(), "0".into()],
            )?;
            let read = match reply.as_slice() {
                [Some(status), record, by, reason] => {
                    pending(&id, status, record.as_deref(), by, reason)
                }
                // Deleted since the scan.
                [] => continue,
                _ => None,
            };
            match read {
                Some(p) if all || (p.status == Status::Pending && p.expires_at > now) => {
                    listing.calls.push(p)
                }
                Some(_) => {}
                None => listing.unreadable.push(id),
            }
        }
        listing
            .calls
            .sort_by(|a, b| (a.requested_at, &a.id).cmp(&(b.requested_at, &b.id)));
        listing.unreadable.sort();
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
        let status = if approve {
            Status::Approved
        } else {
            Status::Denied
        };
        let key = format!("{PREFIX}id:{id}");
        // The record is read first, and decided only as it was read: a
        // record that does not read is never decided (nothing changes).
        let seen = self.run(CHECK, std::slice::from_ref(&key), &["0".into(), "0".into()])?;
        let record = match seen.as_slice() {
            [] => return Ok(Err(Refused::NoSuchId)),
            [Some(status), Some(record), by, reason]
                if pending(id, status, Some(record), by, reason).is_some() =>
            {
                record.clone()
            }
            _ => return Ok(Err(Refused::Unreadable)),
        };
        let reply = self.run(
            DECIDE,
            &[key],
            &[
                now.to_string(),
                status.as_str().into(),
                by.into(),
                reason.unwrap_or_default().into(),
                record.clone(),
            ],
        )?;
        Ok(match reply.as_slice() {
            [Some(ok)] if ok == "ok" => {
                let by = Some(by.to_owned());
                let reason = reason.map(str::to_owned);
                match pending(id, status.as_str(), Some(&record), &by, &reason) {
                    Some(p) => Ok(p),
                    None => Err(Refused::Unreadable),
                }
            }
            [Some(word), status, by] if word == "decided" => {
                match status.as_deref().and_then(Status::parse) {
                    Some(status) => Err(Refused::Decided(status, by.clone())),
                    None => Err(Refused::Unreadable),
                }
            }
            [Some(word)] if word == "expired" => Err(Refused::Expired),
            [Some(word)] if word == "none" => Err(Refused::NoSuchId),
            _ => Err(Refused::Unreadable),
        })
    }
}

/// An approval's record, as stored: everything but its status, decider
/// and reason.
#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    key: String,
    tool: String,
    arguments: serde_json::Value,
    identity: String,
    namespace: String,
    server: String,
    requested_at: u64,
    expires_at: u64,
}

impl Record {
    fn of(request: &Request, now: u64, expires_at: u64) -> String {
        serde_json::to_string(&Record {
            key: request.key.clone(),
            tool: request.tool.clone(),
            arguments: request.arguments.clone(),
            identity: request.identity.clone(),
            namespace: request.namespace.clone(),
            server: request.server.clone(),
            requested_at: now,
            expires_at,
        })
        .unwrap_or_default()
    }
}

/// A stored approval as a [`Pending`], or `None` when it does not read.
fn pending(
    id: &str,
    status: &str,
    record: Option<&str>,
    by: &Option<String>,
    reason: &Option<String>,
) -> Option<Pending> {
    let status = Status::parse(status)?;
    let record: Record = serde_json::from_str(record?).ok()?;
    Some(Pending {
        id: id.to_owned(),
        tool: record.tool,
        arguments: record.arguments,
        identity: record.identity,
        namespace: record.namespace,
        server: record.server,
        requested_at: record.requested_at,
        expires_at: record.expires_at,
        status,
        decided_by: by.clone(),
        reason: reason.clone(),
        key: record.key,
    })
}
