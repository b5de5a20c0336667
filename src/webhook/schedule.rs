//! The replay schedule: how long a delivery waits after a failed attempt (DESIGN section 1,
//! Replay schedule).
//!
//! The wait after failed attempt n is the n-th configured wait (by default n^4 minutes),
//! plus a random jitter of at most `jitter` times the wait, so that many deliveries failed
//! by one outage come back spread out instead of in the same second. A receiver's
//! `Retry-After` (on 429 or 503) can lengthen the wait, never shorten it.

use std::time::Duration;

/// What happens to a delivery after an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again after this long.
    RetryIn(Duration),
    /// Every replay was used: give up.
    Discard,
}

/// The schedule in force.
#[derive(Debug, Clone)]
pub struct Schedule {
    waits: Vec<Duration>,
    jitter: f64,
}

impl Schedule {
    /// A schedule of `waits` with up to `jitter` (a fraction) added to each.
    pub fn new(waits: Vec<Duration>, jitter: f64) -> Schedule {
        Schedule { waits, jitter }
    }

    /// The most attempts a delivery gets: the first and one per wait.
    pub fn max_attempts(&self) -> u32 {
        self.waits.len() as u32 + 1
    }

    /// The wait after failed attempt `attempt` (1-based), before jitter and `Retry-After`.
    pub fn base_wait(&self, attempt: u32) -> Option<Duration> {
        let index = usize::try_from(attempt.checked_sub(1)?).ok()?;
        self.waits.get(index).copied()
    }

    /// What follows failed attempt `attempt`; `random` in [0, 1) picks the jitter and
    /// `retry_after` is the receiver's own request, if it made one.
    pub fn after_failure(
        &self,
        attempt: u32,
        random: f64,
        retry_after: Option<Duration>,
    ) -> AfterFailure {
        let Some(base) = self.base_wait(attempt) else {
            return AfterFailure::Discard;
        };
        let jittered = base.mul_f64(1.0 + self.jitter * random.clamp(0.0, 1.0));
        AfterFailure::RetryIn(jittered.max(retry_after.unwrap_or_default()))
    }
}

/// A uniform random number in [0, 1) from the OS source.
pub fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    crate::ids::fill_random(&mut bytes);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// Reads a `Retry-After` header given in seconds; HTTP dates are not honoured (a limit:
/// receivers send seconds in practice).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_schedule;

    const MIN: u64 = 60;

    /// The defaults are the documented table, minute by minute.
    #[test]
    fn default_schedule_is_the_documented_table() {
        let s = Schedule::new(default_schedule(), 0.1);
        let table_minutes = [
            1,                       // 1 min
            16,                      // 16 min
            60 + 21,                 // 1 h 21 min
            4 * 60 + 16,             // 4 h 16 min
            10 * 60 + 25,            // 10 h 25 min
            21 * 60 + 36,            // 21 h 36 min
            24 * 60 + 16 * 60 + 1,   // 1 d 16 h 01 min
            2 * 1440 + 20 * 60 + 16, // 2 d 20 h 16 min
            4 * 1440 + 13 * 60 + 21, // 4 d 13 h 21 min
            6 * 1440 + 22 * 60 + 40, // 6 d 22 h 40 min
        ];
        for (n, minutes) in (1..=10).zip(table_minutes) {
            assert_eq!(
                s.base_wait(n),
                Some(Duration::from_secs(minutes * MIN)),
                "after {n}"
            );
            assert_eq!(minutes, u64::from(n).pow(4));
        }
        assert_eq!(s.max_attempts(), 11);
        assert_eq!(s.after_failure(11, 0.5, None), AfterFailure::Discard);
    }

    /// Jitter only lengthens, by at most 10 %; Retry-After only lengthens.
    #[test]
    fn jitter_and_retry_after_never_shorten() {
        let s = Schedule::new(default_schedule(), 0.1);
        let base = Duration::from_secs(16 * MIN);
        assert_eq!(s.after_failure(2, 0.0, None), AfterFailure::RetryIn(base));
        let AfterFailure::RetryIn(most) = s.after_failure(2, 0.999_999, None) else {
            panic!("retry expected")
        };
        assert!(most > base && most <= base.mul_f64(1.1), "{most:?}");
        let long = Duration::from_secs(3600);
        assert_eq!(
            s.after_failure(2, 0.0, Some(long)),
            AfterFailure::RetryIn(long)
        );
        assert_eq!(
            s.after_failure(2, 0.0, Some(Duration::from_secs(1))),
            AfterFailure::RetryIn(base)
        );
        assert!((0.0..1.0).contains(&random_unit()));
    }
}
