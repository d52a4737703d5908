//! How soon a PetSet whose sync failed is tried again: after a delay that doubles with
//! each failure in a row, from 1 second up to 5 minutes, as client-go's workqueue backs
//! off each item on its own. A set that fails at every sync (a webhook down, a quota
//! spent) then costs a few requests an hour instead of a sync every few seconds, and
//! the other sets keep the request budget. A sync that succeeds starts the count again.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{Mutex, PoisonError},
    time::Duration,
};

use tokio::time::Instant;

const FIRST: Duration = Duration::from_secs(1);
const LONGEST: Duration = Duration::from_secs(300);

/// The failures in a row of each set (by uid) that is failing now.
#[derive(Default)]
pub struct Backoff(Mutex<HashMap<String, Failing>>);

struct Failing {
    in_a_row: u32,
    retry_at: Instant,
}

impl Backoff {
    /// Counts a failed sync of `key` and returns how long to wait before the next.
    pub fn failed(&self, key: &str) -> Duration {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let failing = all.entry(key.to_string()).or_insert(Failing { in_a_row: 0, retry_at: Instant::now() });
        failing.in_a_row = failing.in_a_row.saturating_add(1);
        let jitter = RandomState::new().hash_one(key) % 1000;
        let wait = delay(failing.in_a_row, jitter as f64 / 1000.0);
        failing.retry_at = Instant::now() + wait;
        wait
    }

    pub fn succeeded(&self, key: &str) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }

    /// Forgets the sets whose retry is long past: a set deleted while it was failing
    /// never succeeds, and would otherwise keep its entry for the life of the process.
    pub fn prune(&self) {
        let now = Instant::now();
        self.0.lock().unwrap_or_else(PoisonError::into_inner).retain(|_, f| now < f.retry_at + LONGEST);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// The wait after `in_a_row` failures, spread by `jitter` (in [0, 1)) over a tenth either
/// side, so sets that failed together (an API server down) do not all come back at once.
fn delay(in_a_row: u32, jitter: f64) -> Duration {
    let doubled = FIRST.saturating_mul(2u32.saturating_pow(in_a_row.saturating_sub(1))).min(LONGEST);
    doubled.mul_f64(0.9 + 0.2 * jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_from_a_second_to_five_minutes_give_or_take_a_tenth() {
        let waits: Vec<u64> = (1..=12).map(|n| delay(n, 0.5).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(delay(u32::MAX, 0.5), LONGEST);
        assert_eq!(delay(1, 0.0), Duration::from_millis(900));
        assert_eq!(delay(20, 0.999), LONGEST.mul_f64(1.0998));
    }

    #[tokio::test(start_paused = true)]
    async fn each_set_backs_off_on_its_own_until_it_succeeds() {
        let backoff = Backoff::default();
        let waits: Vec<Duration> = (0..5).map(|_| backoff.failed("uid-a")).collect();
        for pair in waits.windows(2) {
            assert!(pair[1] > pair[0].mul_f64(1.6), "{waits:?}");
        }
        assert!(backoff.failed("uid-b") <= FIRST.mul_f64(1.1), "another set starts at a second");
        backoff.succeeded("uid-a");
        assert!(backoff.failed("uid-a") <= FIRST.mul_f64(1.1), "a success starts the count again");
    }

    #[tokio::test(start_paused = true)]
    async fn sets_that_stopped_failing_without_a_success_are_forgotten() {
        let backoff = Backoff::default();
        for i in 0..100_000 {
            backoff.failed(&format!("uid-{i}"));
        }
        backoff.prune();
        assert_eq!(backoff.len(), 100_000, "forgot sets still waiting to retry");
        tokio::time::advance(LONGEST * 2).await;
        backoff.failed("uid-7");
        backoff.prune();
        assert_eq!(backoff.len(), 1);
    }
}
