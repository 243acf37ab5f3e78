//! Exponential backoff with full jitter, as a pure function of the attempt number.
//!
//! A pure function rather than a stateful iterator (the `backoff` crate is unmaintained,
//! RUSTSEC-2025-0012; `backon`'s builders keep their state in memory) because a job's attempt
//! count lives in Postgres and survives restarts: the delay before attempt `n` must be
//! computable from `n` alone. Waiting for the database, whose state may well be in memory,
//! uses `backon` ([`crate::store::unavailable_backoff`]).

use std::time::Duration;

/// Backoff bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The ceiling of the wait after failed attempt `attempt` (1-based): `initial * 2^(attempt-1)`,
    /// capped at `max`.
    pub(crate) fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1u32 << exp)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// The wait after failed attempt `attempt`, with full jitter: `unit` (uniform in [0, 1))
    /// scales the ceiling, which spreads retries of many jobs that failed together.
    pub(crate) fn delay(&self, attempt: u32, unit: f64) -> Duration {
        self.ceiling(attempt).mul_f64(unit.clamp(0.0, 1.0))
    }

    /// [`Backoff::delay`] with a random unit.
    pub(crate) fn random_delay(&self, attempt: u32) -> Duration {
        self.delay(attempt, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(30),
    };

    #[test]
    fn doubles_then_caps() {
        let ceilings: Vec<u128> = (1..=9).map(|n| B.ceiling(n).as_millis()).collect();
        assert_eq!(
            ceilings,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(B.ceiling(u32::MAX), B.max);
        assert_eq!(B.ceiling(0), B.initial);
    }

    #[test]
    fn full_jitter_spans_zero_to_ceiling() {
        assert_eq!(B.delay(3, 0.0), Duration::ZERO);
        assert_eq!(B.delay(3, 0.5), Duration::from_millis(1000));
        assert_eq!(B.delay(3, 7.0), Duration::from_millis(2000));
        for _ in 0..100 {
            assert!(B.random_delay(4) <= B.ceiling(4));
        }
    }
}
