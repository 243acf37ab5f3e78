//! This machine's clock as Alibaba Cloud's servers read it, for the credentials: STS signs
//! nothing older or newer than 15 minutes (`InvalidTimeStamp.Expired`), and a temporary
//! credential's `Expiration` is written in the server's time. A machine whose clock is 20
//! minutes off would otherwise never obtain a role's credentials, or refresh them 20 minutes
//! late.
//!
//! The correction is learnt from the `Date` of an STS answer that refused a request's
//! timestamp, and kept for the whole process: there is one local clock to be off, every STS
//! call and every expiry check needs the same correction, and refreshes are too rare (once an
//! hour, typically) for each to learn it again. The StopCaster client keeps its own, per
//! endpoint ([`crate::skew`]); the two are not merged because the API client learns from every
//! answer and the credentials only from a refusal.

use std::sync::atomic::{AtomicI64, Ordering};

use time::{Duration, OffsetDateTime};

use crate::skew::Skew;

/// Seconds to add to the local clock to read the servers'.
static CORRECTION: AtomicI64 = AtomicI64::new(0);

/// Now, as the servers count it.
pub(super) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::seconds(CORRECTION.load(Ordering::Relaxed))
}

/// The correction a refusal teaches, if it is one: an answer `status` with error `code`
/// refusing the request's timestamp, whose `Date` gave `sample` ([`skew::sample`]). `None`
/// when the answer is no such refusal, has no `Date`, or the `Date` shows no difference beyond
/// noise (then a retry would be refused again). Pure.
pub(super) fn learnt_from(status: u16, code: Option<&str>, sample: Option<f64>) -> Option<i64> {
    let refused_timestamp = status == 400 && code == Some("InvalidTimeStamp.Expired");
    let sample = sample.filter(|_| refused_timestamp)?;
    let mut estimate = Skew::default();
    estimate.observe(sample);
    Some(estimate.correction()).filter(|&c| c != 0)
}

/// Keeps `correction` for every later STS call and expiry check; logs the change once.
pub(super) fn learn(correction: i64) {
    let before = CORRECTION.swap(correction, Ordering::Relaxed);
    if before != correction {
        tracing::warn!(
            skew_seconds = correction,
            "this machine's clock differs from STS's: signing and expiry checks use STS's time \
             (fix NTP)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skew;

    #[test]
    fn only_a_refused_timestamp_with_a_date_beyond_noise_teaches() {
        let expired = Some("InvalidTimeStamp.Expired");
        // The server 20 minutes ahead of a request sent at 1000.0 and answered at 1000.2.
        let ahead = Some(skew::sample(2200, 1000.0, 1000.2));
        assert_eq!(learnt_from(400, expired, ahead), Some(1200));
        let behind = Some(skew::sample(-200, 1000.0, 1000.2));
        assert_eq!(learnt_from(400, expired, behind), Some(-1200));
        // Within noise: a retry would be refused again.
        let noise = Some(skew::sample(1000, 1000.0, 1000.2));
        assert_eq!(learnt_from(400, expired, noise), None);
        // Not a timestamp refusal, or no Date.
        let format = Some("InvalidTimeStamp.Format");
        assert_eq!(learnt_from(400, format, ahead), None);
        assert_eq!(learnt_from(403, expired, ahead), None);
        assert_eq!(learnt_from(400, expired, None), None);
        assert_eq!(learnt_from(400, None, ahead), None);
    }
}
