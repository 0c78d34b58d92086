//! Counters on a Redis server: shared by every machine that reaches it.
//! A charge is one server-side script (one round trip) that decides every
//! bucket with the same GCRA step as the other backends, on the Redis
//! server's clock (`TIME`), so machines whose clocks differ still agree,
//! and writes them all or none. A bucket's key expires when it has
//! refilled.
//!
//! `rediss://` connects over TLS and checks the server's certificate
//! against the system's roots (`SSL_CERT_FILE` and `SSL_CERT_DIR` name
//! others).
//!
//! A server that cannot be reached fails closed: the call is refused with
//! a retry hint, and the next attempt to connect waits a backoff (100 ms,
//! doubling to 5 s), so a session without Redis is not slowed by it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Bucket, StoreError, Taken};
use crate::policy::Wait;

/// Connecting, and each round trip, give up after this long.
const TIMEOUT: Duration = Duration::from_secs(1);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// governor's GCRA (see `policy::limits::step`) on every bucket, in
/// microseconds, or a fixed window's count (`fixed_step` there). KEYS: the
/// buckets. ARGV: now (empty: the server's TIME), 1 to write, then period,
/// burst, cost and fixed window (0: none) of each bucket. A bucket's value
/// is "TAT PERIOD BURST". Returns {-1} when taken, else {index, wait},
/// wait -1 for never. Lua numbers are doubles: exact for whole numbers up
/// to 2^53, about the year 2255 in microseconds.
const SCRIPT: &str = r#"
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local next = {}
local clamped = {}
local worst, worst_wait = -1, -2
for i = 1, #KEYS do
  local period = tonumber(ARGV[4 * i - 1])
  local burst = tonumber(ARGV[4 * i])
  local cost = tonumber(ARGV[4 * i + 1])
  local fixed = tonumber(ARGV[4 * i + 2])
  local stored = redis.call('GET', KEYS[i])
  local tat = now
  if stored then
    local t = tonumber(string.match(stored, '^(%d+)'))
    if t and t > now then tat = t end
  end
  -- A number too far ahead came from a clock that ran fast: counted as
  -- the most a charge can store, and kept so even when the call is
  -- refused (policy::clamp).
  local stop = 0
  local most = now + period * burst
  if fixed > 0 then
    stop = now - now % fixed + fixed
    most = stop + period * burst
  end
  if tat > most then
    tat = most
    clamped[i] = tat
  end
  local wait
  if fixed > 0 then
    -- Units used in this window: the number past its end, in periods
    -- (whole multiples: exact in doubles).
    local used = 0
    if tat > stop then used = math.floor((tat - stop) / period) end
    if cost > burst then
      wait = -1
    elseif used + cost > burst then
      wait = stop - now
    else
      next[i] = stop + (used + cost) * period
    end
  else
    local tau = period * (burst - 1)
    local extra = period * (cost - 1)
    if extra > tau then
      wait = -1
    elseif now < tat + extra - tau then
      wait = tat + extra - tau - now
    else
      next[i] = tat + period + extra
    end
  end
  if wait then
    if worst_wait ~= -1 and (wait == -1 or wait > worst_wait) then
      worst, worst_wait = i - 1, wait
    end
  end
end
local function keep(i, value)
  local ms = math.ceil((value - now) / 1000)
  if ms < 1 then ms = 1 end
  redis.call('SET', KEYS[i], string.format('%d %d %d', value, ARGV[4 * i - 1], ARGV[4 * i]), 'PX', ms)
end
if worst >= 0 then
  if ARGV[2] == '1' then
    for i, value in pairs(clamped) do keep(i, value) end
  end
  return {worst, worst_wait}
end
if ARGV[2] == '1' then
  for i = 1, #KEYS do keep(i, next[i]) end
end
return {-1}
"#;

/// A client for `url`, its errors without the URL's secrets (the inbox's
/// store opens one too).
pub(crate) fn client(url: &str) -> anyhow::Result<redis::Client> {
    // `rediss://` speaks TLS through rustls, which needs its crypto
    // chosen once per process (an error only says it was already).
    let _ = rustls::crypto::ring::default_provider().install_default();
    redis::Client::open(url).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a Redis URL: {}",
            super::redacted_url(url),
            super::scrubbed(&e.to_string(), url)
        )
    })
}

pub struct Redis {
    client: redis::Client,
    /// For scrubbing the crate's errors, which may name parts of it.
    url: String,
    script: redis::Script,
    link: Mutex<Link>,
}

/// The connection, or when to try again.
struct Link {
    connection: Option<redis::Connection>,
    next_try: Instant,
    backoff: Duration,
    /// Whether the failure was said already: a warning once, not per call.
    warned: bool,
}

impl Redis {
    pub fn new(url: &str) -> anyhow::Result<Redis> {
        let client = client(url)?;
        Ok(Redis {
            client,
            url: url.to_owned(),
            script: redis::Script::new(SCRIPT),
            link: Mutex::new(Link {
                connection: None,
                next_try: Instant::now(),
                backoff: FIRST_BACKOFF,
                warned: false,
            }),
        })
    }

    /// How long a refused call should wait before trying again.
    pub fn retry_after(&self) -> Duration {
        let link = self.link.lock().unwrap_or_else(|e| e.into_inner());
        link.next_try
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1))
    }

    pub fn take(
        &self,
        buckets: &[Bucket],
        now: Option<u64>,
        commit: bool,
    ) -> Result<Taken, StoreError> {
        let mut link = self.link.lock().unwrap_or_else(|e| e.into_inner());
        if link.connection.is_none() {
            if Instant::now() < link.next_try {
                return Err(StoreError("not connected; waiting to try again".into()));
            }
            match self
                .client
                .get_connection_with_timeout(TIMEOUT)
                .and_then(|c| {
                    c.set_read_timeout(Some(TIMEOUT))?;
                    c.set_write_timeout(Some(TIMEOUT))?;
                    Ok(c)
                }) {
                Ok(connection) => {
                    if link.warned {
                        tracing::warn!("the Redis state store can be reached again");
                    }
                    *link = Link {
                        connection: Some(connection),
                        next_try: Instant::now(),
                        backoff: FIRST_BACKOFF,
                        warned: false,
                    };
                }
                Err(e) => return Err(self.failed(&mut link, e)),
            }
        }
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(now.map_or(String::new(), |n| n.to_string()));
        invocation.arg(if commit { "1" } else { "0" });
        for b in buckets {
            invocation.key(format!("toolwarden:{}", b.key));
            invocation
                .arg(b.rate.period_us)
                .arg(b.rate.burst.get())
                .arg(b.cost)
                .arg(b.rate.fixed_us.unwrap_or(0));
        }
        let connection = link.connection.as_mut().expect("connected above");
        match invocation.invoke::<Vec<i64>>(connection) {
            Ok(answer) => Ok(match answer.as_slice() {
                [-1] => Ok(()),
                [index, -1] => Err((*index as usize, Wait::Never)),
                [index, wait] => Err((*index as usize, Wait::For(*wait as u64))),
                _ => return Err(StoreError(format!("the script answered {answer:?}"))),
            }),
            Err(e) => Err(self.failed(&mut link, e)),
        }
    }

    /// Drops the connection and waits a backoff before the next try.
    fn failed(&self, link: &mut Link, e: redis::RedisError) -> StoreError {
        let e = super::scrubbed(&e.to_string(), &self.url);
        if !link.warned {
            tracing::warn!(
                "the Redis state store cannot be reached ({e}); calls with limits are refused until it can"
            );
            link.warned = true;
        }
        link.connection = None;
        link.next_try = Instant::now() + link.backoff;
        link.backoff = (link.backoff * 2).min(MAX_BACKOFF);
        StoreError(e)
    }

    /// The crate's error, scrubbed of the URL's secrets.
    fn error(&self, e: &redis::RedisError) -> StoreError {
        StoreError(super::scrubbed(&e.to_string(), &self.url))
    }

    /// Every bucket: key (without the prefix), TAT, period and burst.
    pub fn buckets(&self) -> Result<Vec<(String, u64, u64, u32)>, StoreError> {
        let mut connection = self
            .client
            .get_connection_with_timeout(TIMEOUT)
            .map_err(|e| self.error(&e))?;
        // SCAN, not KEYS: a shared server is not held up for long.
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg("toolwarden:*")
                .arg("COUNT")
                .arg(1000)
                .query(&mut connection)
                .map_err(|e| self.error(&e))?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut out = Vec::new();
        for key in keys {
            let value: Option<String> = redis::cmd("GET")
                .arg(&key)
                .query(&mut connection)
                .map_err(|e| self.error(&e))?;
            let Some(value) = value else { continue };
            let parts: Vec<u64> = value.split(' ').filter_map(|p| p.parse().ok()).collect();
            if let [tat, period, burst] = parts[..] {
                let key = key.trim_start_matches("toolwarden:").to_owned();
                out.push((key, tat, period, burst as u32));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes the buckets of these keys (without the prefix); how many.
    pub fn remove(&self, keys: &[String]) -> Result<usize, StoreError> {
        let mut connection = self
            .client
            .get_connection_with_timeout(TIMEOUT)
            .map_err(|e| self.error(&e))?;
        let mut removed = 0;
        for key in keys {
            let gone: usize = redis::cmd("DEL")
                .arg(format!("toolwarden:{key}"))
                .query(&mut connection)
                .map_err(|e| self.error(&e))?;
            removed += gone;
        }
        Ok(removed)
    }
}
