//! Rate-limit counters on governor's GCRA.
//!
//! `max` per `window` is a bucket of `max` calls that refills at one call
//! every `window / max`. governor charges a bucket as it checks it; a call
//! must pass every limit before any is charged, so each bucket's state lives
//! in a [`Tat`] that can be read and put back when a later limit refuses.

use std::num::{NonZeroU32, NonZeroU64};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{NotKeyed, StateStore};
use governor::{Quota, RateLimiter};

use super::file::{Scope, Window};

/// One bucket's "theoretical arrival time", shared with its limiter.
///
/// Every check runs under the policy's lock, so a plain load and store is
/// enough; 0 means "never used", as in governor's own in-memory state.
#[derive(Clone, Default)]
pub struct Tat(Arc<AtomicU64>);

impl StateStore for Tat {
    type Key = NotKeyed;

    fn measure_and_replace<T, F, E>(&self, _: &NotKeyed, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let prev = NonZeroU64::new(self.0.load(Ordering::Acquire)).map(|n| Nanos::from(n.get()));
        let (outcome, next) = f(prev)?;
        self.0.store(next.as_u64(), Ordering::Release);
        Ok(outcome)
    }
}

/// A named budget: `max` calls per `window`.
pub struct Counter<C: Clock> {
    pub name: String,
    pub window: Window,
    pub max: NonZeroU32,
    pub scope: Scope,
    tat: Tat,
    limiter: RateLimiter<NotKeyed, Tat, C, NoOpMiddleware<C::Instant>>,
}

impl<C: Clock> Counter<C> {
    pub fn new(name: String, window: Window, max: NonZeroU32, scope: Scope, clock: C) -> Self {
        // window / max, to the nanosecond; never zero since window >= 1 s
        // and max is a u32.
        let period = Duration::from_secs(window.seconds) / max.get();
        let quota = Quota::with_period(period)
            .expect("window / max is at least a nanosecond")
            .allow_burst(max);
        let tat = Tat::default();
        let limiter = RateLimiter::new(quota, tat.clone(), clock);
        Counter {
            name,
            window,
            max,
            scope,
            tat,
            limiter,
        }
    }

    pub fn describe(&self) -> String {
        format!("{} per {}, burst {}", self.max, self.window, self.max)
    }

    /// Takes one call from the bucket, or says how long until one fits.
    fn take(&self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }
}

/// A counter that refused, and how long until it would not.
pub struct Exhausted {
    pub counter: usize,
    pub retry_after: Duration,
}

/// Takes one call from every counter in `ids`, or from none of them.
///
/// On refusal, reports the counter with the longest wait: the call passes
/// only once all of them have room. The caller holds the policy's lock.
pub fn take_all<C: Clock>(
    counters: &[Counter<C>],
    ids: &[usize],
    commit: bool,
) -> Result<(), Exhausted> {
    // The counters' state before, to put back: on the stack for the few
    // limits a rule has, so that a call costs no allocation.
    let mut inline = [0u64; 8];
    let mut spilled = Vec::new();
    let before: &mut [u64] = if ids.len() <= inline.len() {
        &mut inline[..ids.len()]
    } else {
        spilled.resize(ids.len(), 0);
        &mut spilled
    };
    for (slot, &i) in before.iter_mut().zip(ids) {
        *slot = counters[i].tat.0.load(Ordering::Acquire);
    }
    let mut worst: Option<Exhausted> = None;
    for &i in ids {
        if let Err(wait) = counters[i].take() {
            if worst.as_ref().is_none_or(|w| wait > w.retry_after) {
                worst = Some(Exhausted {
                    counter: i,
                    retry_after: wait,
                });
            }
        }
    }
    if worst.is_some() || !commit {
        for (&i, &tat) in ids.iter().zip(before.iter()) {
            counters[i].tat.0.store(tat, Ordering::Release);
        }
    }
    worst.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn counter(clock: &FakeRelativeClock, window: u64, max: u32) -> Counter<FakeRelativeClock> {
        Counter::new(
            "c".into(),
            Window { seconds: window },
            NonZeroU32::new(max).unwrap(),
            Scope::Grant,
            clock.clone(),
        )
    }

    #[test]
    fn a_burst_of_max_then_one_per_period() {
        let clock = FakeRelativeClock::default();
        let c = [counter(&clock, 60, 10)];
        for _ in 0..10 {
            assert!(take_all(&c, &[0], true).is_ok());
        }
        let refused = take_all(&c, &[0], true).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(6));
        clock.advance(Duration::from_millis(5999));
        assert_eq!(
            take_all(&c, &[0], true).unwrap_err().retry_after,
            Duration::from_millis(1)
        );
        clock.advance(Duration::from_millis(1));
        assert!(take_all(&c, &[0], true).is_ok());
        assert!(take_all(&c, &[0], true).is_err());
    }

    #[test]
    fn a_window_can_hold_two_max_minus_one_calls() {
        let clock = FakeRelativeClock::default();
        let c = [counter(&clock, 60, 10)];
        let mut passed = 0;
        // One attempt every 100 ms for 60 s, from a full bucket.
        for _ in 0..600 {
            if take_all(&c, &[0], true).is_ok() {
                passed += 1;
            }
            clock.advance(Duration::from_millis(100));
        }
        assert_eq!(passed, 19);
    }

    #[test]
    fn nothing_is_charged_unless_every_counter_has_room() {
        let clock = FakeRelativeClock::default();
        let c = [counter(&clock, 60, 5), counter(&clock, 60, 1)];
        assert!(take_all(&c, &[0, 1], true).is_ok());
        // Counter 1 is empty now: the next three calls that need both are
        // refused and leave counter 0 untouched.
        for _ in 0..3 {
            let refused = take_all(&c, &[0, 1], true).unwrap_err();
            assert_eq!(refused.counter, 1);
        }
        for _ in 0..4 {
            assert!(take_all(&c, &[0], true).is_ok());
        }
        assert!(take_all(&c, &[0], true).is_err());
    }

    #[test]
    fn all_or_nothing_holds_for_more_limits_than_fit_on_the_stack() {
        let clock = FakeRelativeClock::default();
        // Ten counters with room for two calls, and a last one for one.
        let mut c: Vec<_> = (0..10).map(|_| counter(&clock, 60, 2)).collect();
        c.push(counter(&clock, 60, 1));
        let all: Vec<usize> = (0..11).collect();
        assert!(take_all(&c, &all, true).is_ok());
        let refused = take_all(&c, &all, true).unwrap_err();
        assert_eq!(refused.counter, 10);
        // The refusal charged none of the first ten: each has one call left.
        for i in 0..10 {
            assert!(take_all(&c, &[i], true).is_ok(), "counter {i} was charged");
            assert!(take_all(&c, &[i], true).is_err());
        }
    }

    #[test]
    fn a_dry_run_charges_nothing() {
        let clock = FakeRelativeClock::default();
        let c = [counter(&clock, 1, 1)];
        for _ in 0..5 {
            assert!(take_all(&c, &[0], false).is_ok());
        }
        assert!(take_all(&c, &[0], true).is_ok());
        assert!(take_all(&c, &[0], false).is_err());
    }
}
