//! How far this machine's clock is from the endpoint's, learnt from each answer's `Date`
//! header, so that calls are signed with the endpoint's time (AWS's SDKs correct their clock
//! the same way). Pure: the caller gives the times.
//!
//! `Date` has a resolution of one second, and the answer takes a while to come back, so one
//! sample says the endpoint's clock read somewhere in `[Date, Date + 1 s)` while the request
//! was away: the sample is `Date + 0.5 s` against the middle of the round trip, good to about
//! half a second plus half the round trip. Such noise is never applied: the correction stays
//! 0 unless the estimate is at least [`MIN_CORRECTION`] off. Samples near the estimate are
//! averaged into it; one more than [`STEP`] away is a clock that stepped (NTP fixed it, or the
//! first answer of a skewed machine) and replaces it at once.

/// Estimates closer to 0 than this are noise: no correction.
pub const MIN_CORRECTION: f64 = 2.0;
/// A sample this far from the estimate replaces it instead of being averaged in.
pub const STEP: f64 = 5.0;
/// Weight of a new sample in the average.
const WEIGHT: f64 = 0.2;

/// The endpoint's clock minus ours, smoothed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Skew {
    estimate: Option<f64>,
}

/// One sample, in seconds: the endpoint's `Date` (Unix seconds) against the local wall clock
/// when the request left and when its answer came (Unix seconds, fractional).
pub fn sample(date: i64, sent: f64, received: f64) -> f64 {
    (date as f64 + 0.5) - (sent + received) / 2.0
}

/// [`sample`] of a request sent and answered at these local times.
pub fn sample_between(
    date: time::OffsetDateTime,
    sent: time::OffsetDateTime,
    received: time::OffsetDateTime,
) -> f64 {
    let unix = |t: time::OffsetDateTime| t.unix_timestamp_nanos() as f64 / 1e9;
    sample(date.unix_timestamp(), unix(sent), unix(received))
}

impl Skew {
    /// Takes one sample in.
    pub fn observe(&mut self, sample: f64) {
        self.estimate = Some(match self.estimate {
            Some(current) if (sample - current).abs() < STEP => {
                current + WEIGHT * (sample - current)
            }
            _ => sample,
        });
    }

    /// What to add to the local clock to read the endpoint's, in whole seconds (the precision
    /// of what it was learnt from); 0 while the estimate is noise.
    pub fn correction(&self) -> i64 {
        match self.estimate {
            Some(e) if e.abs() >= MIN_CORRECTION => e.round() as i64,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_the_middle_of_the_date_second_against_the_middle_of_the_trip() {
        assert_eq!(sample(1000, 999.9, 1000.1), 0.5);
        assert_eq!(sample(2200, 1000.0, 1000.2), 1200.4);
    }

    #[test]
    fn noise_is_never_applied() {
        let mut skew = Skew::default();
        assert_eq!(skew.correction(), 0);
        for s in [0.5, -0.4, 0.9, 1.2, -0.7] {
            skew.observe(s);
            assert_eq!(skew.correction(), 0, "after {s}");
        }
    }

    #[test]
    fn a_large_offset_is_taken_at_once_and_smoothed_after() {
        let mut skew = Skew::default();
        skew.observe(0.3);
        // The endpoint is 20 minutes ahead: the first such answer says so.
        skew.observe(1200.4);
        assert_eq!(skew.correction(), 1200);
        // Jitter of a second either way does not move it.
        for s in [1199.6, 1200.9, 1200.1, 1199.8] {
            skew.observe(s);
            assert_eq!(skew.correction(), 1200, "after {s}");
        }
        // Someone fixes the clock: the next answer puts it back.
        skew.observe(0.4);
        assert_eq!(skew.correction(), 0);
        // A machine behind the endpoint is corrected the other way.
        skew.observe(-90.2);
        assert_eq!(skew.correction(), -90);
    }
}
