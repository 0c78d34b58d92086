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
//!
//! A fixed window (`{"fixed": "day"}`) counts `max` units in each UTC day
//! instead, in the same one number per bucket: the end of the window the
//! bucket was last charged in plus the units used times `window / max`.
//! Read in a later window, that number is at most the window's start: no
//! units used. And as for a TAT, a number not after `now` is a bucket with
//! nothing used, so the stores' sweeps and expiries hold for both kinds.

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

    /// How the counter's buckets refill.
    pub fn rate(&self) -> Rate {
        Rate {
            period_us: self.period_us(),
            burst: self.max,
            fixed_us: self.window.fixed.then_some(self.window.seconds * 1_000_000),
        }
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
        if self.window.fixed {
            format!("{}, counted afresh at each {}", self.terms(), self.window)
        } else {
            format!("{}, burst {}", self.terms(), self.max)
        }
    }
}

/// How a bucket refills: what a store needs to decide on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// `window / max` in whole microseconds.
    pub period_us: u64,
    /// `max`.
    pub burst: NonZeroU32,
    /// A fixed window of this many microseconds, aligned to the UNIX
    /// epoch; `None`: continuous refill (GCRA).
    pub fixed_us: Option<u64>,
}

impl Rate {
    /// The end of the fixed window of `window_us` that holds `now`.
    fn window_end(window_us: u64, now: u64) -> u64 {
        now - now % window_us + window_us
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

/// One step of a bucket: a call of `cost` units at `now` on a bucket whose
/// stored number is `tat` (`None`, or one not after `now`: a full bucket;
/// one too far ahead: see [`clamp`]). Returns the bucket's new number, or
/// how long until the call would fit. Times in microseconds since the
/// UNIX epoch; governor decides a continuous bucket.
pub fn step(rate: Rate, tat: Option<u64>, now: u64, cost: NonZeroU32) -> Result<u64, Wait> {
    let tat = tat.map(|t| clamp(rate, t, now));
    if let Some(window_us) = rate.fixed_us {
        return fixed_step(rate, window_us, tat, now, cost);
    }
    let quota = Quota::with_period(Duration::from_micros(rate.period_us))
        .expect("a period of at least a microsecond")
        .allow_burst(rate.burst);
    // Governor counts from when its limiter starts: here, `now`. A TAT at
    // or before `now` is a full bucket, as is none.
    let ahead_ns = tat.map_or(0, |t| t.saturating_sub(now).saturating_mul(1000));
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
///
/// For a fixed window, the most is every unit of the window that holds
/// `now` used: the lock ends at the next boundary.
pub fn clamp(rate: Rate, tat: u64, now: u64) -> u64 {
    let full = rate.period_us.saturating_mul(u64::from(rate.burst.get()));
    let most = match rate.fixed_us {
        None => now.saturating_add(full),
        Some(window_us) => Rate::window_end(window_us, now).saturating_add(full),
    };
    tat.min(most)
}

/// A fixed window's step: `max` units in each window, counted from its
/// end (see the module's doc). The retry hint of a full window is the
/// time to the next boundary.
fn fixed_step(
    rate: Rate,
    window_us: u64,
    tat: Option<u64>,
    now: u64,
    cost: NonZeroU32,
) -> Result<u64, Wait> {
    let max = u64::from(rate.burst.get());
    let cost = u64::from(cost.get());
    if cost > max {
        return Err(Wait::Never);
    }
    let end = Rate::window_end(window_us, now);
    let used = tat.map_or(0, |t| t.saturating_sub(end) / rate.period_us);
    if used + cost > max {
        return Err(Wait::For(end - now));
    }
    Ok(end + (used + cost) * rate.period_us)
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

    fn rate(window: u64, max: u32, fixed: bool) -> Rate {
        Rate {
            period_us: window * SECOND / u64::from(max),
            burst: n(max),
            fixed_us: fixed.then_some(window * SECOND),
        }
    }

    /// Calls at the given seconds on one bucket of `max` per `window` s,
    /// from 2027-01-15T08:00:00Z.
    fn run_on(rate: Rate, at: &[(f64, u32)]) -> Vec<Result<(), Wait>> {
        let start = 1_800_000_000 * SECOND;
        let mut tat = None;
        at.iter()
            .map(|&(t, cost)| {
                let now = start + (t * SECOND as f64) as u64;
                step(rate, tat, now, n(cost)).map(|next| tat = Some(next))
            })
            .collect()
    }

    fn run(window: u64, max: u32, at: &[(f64, u32)]) -> Vec<Result<(), Wait>> {
        run_on(rate(window, max, false), at)
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
        let (five, now) = (rate(60, 5, false), 1_800_000_000 * SECOND);
        let years_ahead = now + 300_000_000 * SECOND;
        assert_eq!(
            step(five, Some(years_ahead), now, n(1)),
            Err(Wait::For(12 * SECOND))
        );
        // The store keeps the clamped TAT: one period later, a call fits.
        let kept = clamp(five, years_ahead, now);
        assert_eq!(kept, now + 60 * SECOND);
        assert_eq!(
            step(five, Some(kept), now + 12 * SECOND, n(1)),
            Ok(now + 72 * SECOND)
        );
    }

    /// 10 a UTC day from 08:00: 10 pass, the rest of the day none (the
    /// hint: the time to midnight), then 10 again at midnight at once.
    #[test]
    fn a_fixed_window_counts_max_in_each_and_resets_at_its_boundary() {
        let day = rate(86_400, 10, true);
        let to_midnight = 16.0 * 3600.0;
        let mut calls = vec![(0.0, 1); 10];
        calls.extend([(1.0, 1), (to_midnight - 1.0, 1)]);
        calls.extend(vec![(to_midnight, 1); 10]);
        calls.push((to_midnight + 86_399.0, 1));
        let got = run_on(day, &calls);
        assert!(got[..10].iter().all(Result::is_ok), "{got:?}");
        assert_eq!(got[10], Err(Wait::For((16 * 3600 - 1) * SECOND)));
        assert_eq!(got[11], Err(Wait::For(SECOND)));
        assert!(got[12..22].iter().all(Result::is_ok), "{got:?}");
        assert_eq!(got[22], Err(Wait::For(SECOND)));
        // Costs: what is left of the window, or never more than max.
        let got = run_on(day, &[(0.0, 7), (0.0, 4), (0.0, 3), (0.0, 11)]);
        assert_eq!(got[0], Ok(()));
        assert_eq!(got[1], Err(Wait::For(16 * 3600 * SECOND)));
        assert_eq!(got[2], Ok(()));
        assert_eq!(got[3], Err(Wait::Never));
    }

    /// A fixed window's number from a clock years ahead counts as a full
    /// window: locked until the next boundary, then counted afresh.
    #[test]
    fn a_fixed_window_from_the_future_is_full_until_its_boundary() {
        let minute = rate(60, 5, true);
        let now = 1_800_000_000 * SECOND + 20 * SECOND; // 08:00:20
        let years_ahead = now + 300_000_000 * SECOND;
        assert_eq!(
            step(minute, Some(years_ahead), now, n(1)),
            Err(Wait::For(40 * SECOND))
        );
        let kept = clamp(minute, years_ahead, now);
        assert_eq!(
            step(minute, Some(kept), now + 40 * SECOND, n(1)),
            Ok(now + 40 * SECOND + 60 * SECOND + 12 * SECOND)
        );
    }
}
