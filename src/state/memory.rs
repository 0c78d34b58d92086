//! Counters in this process: `session` counters always, and every counter
//! with `--state memory`.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{clamp, decide, Bucket, Taken};

/// Buckets by key, each its TAT.
#[derive(Default)]
pub struct Memory {
    buckets: Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    tats: HashMap<String, u64>,
    /// How many buckets were left after the last sweep.
    kept: usize,
}

impl Memory {
    pub fn take(&self, buckets: &[Bucket], now: u64, commit: bool) -> Taken {
        if buckets.is_empty() {
            return Ok(());
        }
        let mut all = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let mut tats: Vec<Option<u64>> = buckets
            .iter()
            .map(|b| all.tats.get(&b.key).copied())
            .collect();
        let clamped = clamp(buckets, &mut tats, now);
        let next = match decide(buckets, &tats, now) {
            Ok(next) => next,
            Err(short) => {
                if commit {
                    for i in clamped {
                        all.tats
                            .insert(buckets[i].key.clone(), tats[i].expect("clamped"));
                    }
                }
                return Err(short);
            }
        };
        if commit {
            for (b, tat) in buckets.iter().zip(next) {
                all.tats.insert(b.key.clone(), tat);
            }
            // A bucket that has refilled is the same as none: swept once
            // the table has doubled since the last sweep, so that memory
            // follows the buckets in use, not every `per` value ever seen.
            if all.tats.len() > 1024 && all.tats.len() > 2 * all.kept {
                all.tats.retain(|_, tat| *tat > now);
                all.kept = all.tats.len();
            }
        }
        Ok(())
    }

    /// The buckets in use: key and TAT.
    pub fn buckets(&self) -> Vec<(String, u64)> {
        let all = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        all.tats.iter().map(|(k, t)| (k.clone(), *t)).collect()
    }
}
