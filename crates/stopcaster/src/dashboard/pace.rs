//! How long a backlog takes at its account's pace: the batch page's expected finish and the
//! account page's drain time. The workers call an account at most its quota per second, so
//! `pending` jobs need at least `pending / qps` seconds (their first calls; retries and
//! throttling add to it, a pause stops it).

use time::OffsetDateTime;

/// Seconds `pending` jobs need at `qps` calls per second (a quota of 0 counts as 1).
pub(crate) fn drain_seconds(pending: i64, qps: u32) -> f64 {
    pending.max(0) as f64 / f64::from(qps.max(1))
}

/// When a backlog needing `seconds` is done, from `now` (rounded up to the millisecond).
pub(crate) fn finish_at(now: OffsetDateTime, seconds: f64) -> OffsetDateTime {
    now + time::Duration::milliseconds((seconds.max(0.0) * 1000.0).ceil() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_backlog_drains_at_the_quota() {
        assert_eq!(drain_seconds(250, 10), 25.0);
        assert_eq!(drain_seconds(1, 3), 1.0 / 3.0);
        assert_eq!(drain_seconds(0, 10), 0.0);
        assert_eq!(drain_seconds(-5, 10), 0.0, "a negative count is none");
        assert_eq!(drain_seconds(7, 0), 7.0, "a quota of 0 counts as 1");
        let now = datetime!(2026-12-03 21:00 UTC);
        assert_eq!(
            finish_at(now, drain_seconds(250, 10)),
            datetime!(2026-12-03 21:00:25 UTC)
        );
        assert_eq!(
            finish_at(now, 1.0 / 3.0),
            datetime!(2026-12-03 21:00:00.334 UTC),
            "rounded up"
        );
    }
}
