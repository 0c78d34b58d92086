//! Rate-limit counters: what each limit is, the buckets a call charges, and
//! one step of governor's GCRA on one bucket.
//!
//! `max` per `window` is a bucket of `max` calls that refills at one call
//! every `window / max`. A bucket's whole state is its "theoretical
//! arrival time" (TAT), kept in microseconds since the UNIX epoch so that
//! processes started at different moments, and the state store, agree. The
//! store keeps the TATs and charges a call's buckets all or none; the step
//! that decides one bucket is here, pure: governor's GCRA, run on the
//! stored TAT at the store's `now`.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{NotKeyed, StateStore};
use governor::{Quota, RateLimiter};

use super::file::{Scope, Window};

/// A named budget: `max` calls (or units of `cost`) per `window`.
#[derive(Debug, Clone)]
pub struct Counter {
    pub name: String,
    pub window: Window,
    pub max: NonZeroU32,
    pub scope: Scope,
    /// JSON pointers whose values pick the bucket.
    pub per: Vec<String>,
    /// JSON pointer to the units a call takes.
    pub cost: Option<String>,
    /// Shown to the agent when this counter refuses a call, instead of the
    /// rule's reason.
    pub on_deny: Option<String>,
    /// What its budget is, as a hash (see [`Counter::definition`]): part of
    /// every bucket's key.
    pub definition: String,
}

impl Counter {
    /// The first 16 hex digits of the SHA-256 of what the counter counts:
    /// its name (and whether the name was given or derived), window, max,
    /// scope, `per` and `cost`. A bucket's key carries it, so an edit of
    /// the policy elsewhere (a description, a rule, spaces) keeps the
    /// budget, and an edit of the counter itself starts it afresh instead
    /// of reading buckets counted under other terms. `on_deny` is only
    /// text and stays out.
    pub fn definition(&self, named: bool) -> String {
        let window = (self.window.seconds, self.window.to_string());
        let what = serde_json::json!([
            if named { "named" } else { "private" },
            self.name,
            window,
            self.max.get(),
            self.scope.to_string(),
            self.per,
            self.cost,
        ]);
        use sha2::Digest;
        let digest = sha2::Sha256::digest(what.to_string().as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// `window / max`, in whole microseconds (at least one).
    pub fn period_us(&self) -> u64 {
        (self.window.seconds * 1_000_000 / u64::from(self.max.get())).max(1)
    }

    /// "3 per hour for each /job_id, each call taking /amount units".
    pub fn terms(&self) -> String {
        let mut out = format!("{} per {}", self.max, self.window);
        if !self.per.is_empty() {
            out.push_str(&format!(" for each {}", self.per.join(" and ")));
        }
        if let Some(cost) = &self.cost {
            out.push_str(&format!(", each call taking {cost} units"));
        }
        out
    }

    /// [`Counter::terms`] and the burst, for `toolwarden check`.
    pub fn describe(&self) -> String {
        format!("{}, burst {}", self.terms(), self.max)
    }
}

/// Why a bucket has no room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// It will have room this many microseconds from now.
    For(u64),
    /// Never: the call takes more than the bucket holds.
    Never,
}

/// One GCRA step: a call of `cost` units at `now` on a bucket whose TAT is
/// `tat` (`None`, or a TAT not after `now`: a full bucket; one more than a
/// window ahead: an empty one). Returns the
/// bucket's new TAT, or how long until the call would fit. Times in
/// microseconds since the UNIX epoch; governor decides.
pub fn step(
    period_us: u64,
    burst: NonZeroU32,
    tat: Option<u64>,
    now: u64,
    cost: NonZeroU32,
) -> Result<u64, Wait> {
    let quota = Quota::with_period(Duration::from_micros(period_us))
        .expect("a period of at least a microsecond")
        .allow_burst(burst);
    // Governor counts from when its limiter starts: here, `now`. A TAT at
    // or before `now` is a full bucket, as is none.
    let ahead_ns = tat.map_or(0, |t| {
        clamp(period_us, burst, t, now)
            .saturating_sub(now)
            .saturating_mul(1000)
    });
    let slot = AtomicU64::new(ahead_ns);
    let at = At(Duration::from_micros(now));
    let limiter =
        RateLimiter::<NotKeyed, _, At, NoOpMiddleware<Duration>>::new(quota, Slot(&slot), at);
    match limiter.check_n(cost) {
        Err(_) => Err(Wait::Never),
        Ok(Err(not_until)) => {
            let wait = not_until.wait_time_from(Duration::from_micros(now));
            Err(Wait::For(wait.as_micros().max(1) as u64))
        }
        Ok(Ok(())) => Ok(now + slot.load(Ordering::Acquire) / 1000),
    }
}

/// A stored TAT as [`step`] reads it: no charge puts a TAT more than a
/// window (period × burst) ahead of `now`, so one further ahead was written
/// by a clock that ran fast (or will be: a clock set back). It counts as
/// one window ahead, an empty bucket, and the store keeps it so (even when
/// the call is refused): the bucket then refills as usual, and no clock
/// jump locks it for longer than its window.
pub fn clamp(period_us: u64, burst: NonZeroU32, tat: u64, now: u64) -> u64 {
    tat.min(now.saturating_add(period_us.saturating_mul(u64::from(burst.get()))))
}

/// The clock of one step: it is always `now`.
struct At(Duration);

impl Clock for At {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.0
    }
}

/// The bucket of one step. 0 is "never used", as in governor's own state.
struct Slot<'a>(&'a AtomicU64);

impl StateStore for Slot<'_> {
    type Key = NotKeyed;

    fn measure_and_replace<T, F, E>(&self, _: &NotKeyed, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let prev = Some(self.0.load(Ordering::Acquire))
            .filter(|&n| n > 0)
            .map(Nanos::from);
        let (outcome, next) = f(prev)?;
        self.0.store(next.as_u64(), Ordering::Release);
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;

    fn n(v: u32) -> NonZeroU32 {
        NonZeroU32::new(v).unwrap()
    }

    /// Calls at the given seconds on one bucket of `max` per `window` s.
    fn run(window: u64, max: u32, at: &[(f64, u32)]) -> Vec<Result<(), Wait>> {
        let period = window * SECOND / u64::from(max);
        let start = 1_800_000_000 * SECOND;
        let mut tat = None;
        at.iter()
            .map(|&(t, cost)| {
                let now = start + (t * SECOND as f64) as u64;
                step(period, n(max), tat, now, n(cost)).map(|next| tat = Some(next))
            })
            .collect()
    }

    #[test]
    fn a_burst_of_max_then_one_per_period() {
        let mut calls = vec![(0.0, 1); 11];
        calls.push((5.999, 1));
        calls.push((6.0, 1));
        calls.push((6.0, 1));
        let got = run(60, 10, &calls);
        assert!(got[..10].iter().all(Result::is_ok));
        assert_eq!(got[10], Err(Wait::For(6 * SECOND)));
        assert_eq!(got[11], Err(Wait::For(1000)));
        assert_eq!(got[12], Ok(()));
        assert!(got[13].is_err());
    }

    #[test]
    fn a_window_can_hold_two_max_minus_one_calls() {
        let calls: Vec<(f64, u32)> = (0..600).map(|i| (f64::from(i) * 0.1, 1)).collect();
        let passed = run(60, 10, &calls).iter().filter(|r| r.is_ok()).count();
        assert_eq!(passed, 19);
    }

    #[test]
    fn costs_take_units_and_say_how_long_until_they_fit() {
        // 100 a day: 60 pass, then 50 must wait until 10 more are back.
        let got = run(86_400, 100, &[(0.0, 60), (0.0, 50), (0.0, 40), (0.0, 101)]);
        assert_eq!(got[0], Ok(()));
        assert_eq!(got[1], Err(Wait::For(10 * 864 * SECOND)));
        assert_eq!(got[2], Ok(()));
        assert_eq!(got[3], Err(Wait::Never));
    }

    #[test]
    fn a_tat_from_the_future_counts_as_one_window_ahead() {
        let (period, now) = (12 * SECOND, 1_800_000_000 * SECOND);
        let years_ahead = Some(now + 300_000_000 * SECOND);
        assert_eq!(
            step(period, n(5), years_ahead, now, n(1)),
            Err(Wait::For(12 * SECOND))
        );
        // The store keeps the clamped TAT: one period later, a call fits.
        let kept = clamp(period, n(5), years_ahead.unwrap(), now);
        assert_eq!(kept, now + 60 * SECOND);
        assert_eq!(
            step(period, n(5), Some(kept), now + 12 * SECOND, n(1)),
            Ok(now + 72 * SECOND)
        );
    }
}
