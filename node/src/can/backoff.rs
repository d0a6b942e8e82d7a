//! Capped exponential backoff with jitter, for reopening a bus that dropped. When the
//! simulator restarts, every node loses its buses at once; jitter keeps them from
//! reconnecting in lockstep, and the cap bounds how long a bus stays down after its
//! server is back. Pure: the caller supplies the randomness, so tests pin the delays.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// How quickly a dropped link (a CAN bus, a CSMS connection) is reopened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Ceiling of the first delay; each failed attempt doubles it.
    pub initial_delay: Duration,
    /// Ceiling that the doubling stops at.
    pub max_delay: Duration,
}

impl Default for ReconnectPolicy {
    /// 100 ms, doubling up to 5 s.
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// The delay schedule of one bus.
#[derive(Debug)]
pub(crate) struct Backoff {
    /// The ceilings.
    policy: ReconnectPolicy,
    /// Failed attempts since the bus last carried traffic.
    attempts: u32,
}

impl Backoff {
    pub(crate) fn new(policy: ReconnectPolicy) -> Self {
        Self {
            policy,
            attempts: 0,
        }
    }

    /// The delay before the next attempt. The ceiling is `initial_delay · 2^attempts`,
    /// capped at `max_delay`; the delay is drawn from its upper half ("equal jitter"), so
    /// no attempt comes sooner than half the ceiling. `random` is any uniform `u64`.
    pub(crate) fn next_delay(&mut self, random: u64) -> Duration {
        let doubling = 1_u32 << self.attempts.min(20);
        let ceiling = self
            .policy
            .initial_delay
            .saturating_mul(doubling)
            .min(self.policy.max_delay);
        self.attempts = self.attempts.saturating_add(1);
        let floor = ceiling / 2;
        let spread = u64::try_from((ceiling - floor).as_nanos()).unwrap_or(u64::MAX);
        floor
            + Duration::from_nanos(
                random
                    .checked_rem(spread.saturating_add(1))
                    .unwrap_or(random),
            )
    }

    /// Starts the schedule over: the bus works again.
    pub(crate) fn reset(&mut self) {
        self.attempts = 0;
    }
}

/// A random `u64` for [`Backoff::next_delay`], from the standard library's per-process
/// random hash keys (no RNG crate needed for jitter).
pub(crate) fn random_u64() -> u64 {
    RandomState::new().hash_one(std::time::Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ReconnectPolicy {
        ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        }
    }

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        // A random value of 0 draws the floor: half the ceiling.
        let mut backoff = Backoff::new(policy());
        let floors: Vec<_> = (0..6).map(|_| backoff.next_delay(0).as_millis()).collect();
        assert_eq!(floors, [50, 100, 200, 400, 500, 500]);
    }

    #[test]
    fn delays_stay_within_the_upper_half_of_the_ceiling() {
        let mut backoff = Backoff::new(policy());
        for random in [1, 12_345, 99_999_999, u64::MAX / 3, u64::MAX - 1] {
            let delay = backoff.next_delay(random);
            backoff.reset();
            assert!(
                delay >= Duration::from_millis(50) && delay <= Duration::from_millis(100),
                "{delay:?}"
            );
        }
        // The largest draw reaches the ceiling itself.
        assert_eq!(backoff.next_delay(50_000_000), Duration::from_millis(100));
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = Backoff::new(policy());
        for _ in 0..10 {
            backoff.next_delay(0);
        }
        backoff.reset();
        assert_eq!(backoff.next_delay(0), Duration::from_millis(50));
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let mut backoff = Backoff::new(ReconnectPolicy {
            initial_delay: Duration::MAX,
            max_delay: Duration::MAX,
        });
        for _ in 0..100 {
            backoff.next_delay(u64::MAX);
        }
        assert!(backoff.next_delay(0) >= Duration::MAX / 2);
    }

    #[test]
    fn random_values_differ() {
        let values: std::collections::HashSet<_> = (0..8).map(|_| random_u64()).collect();
        assert!(values.len() > 1);
    }
}
