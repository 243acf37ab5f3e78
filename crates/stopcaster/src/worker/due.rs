//! A scheduled job's due time on the worker's side: when its delivery starts preparing the
//! first call (reserving the pacer slot [`schedule::SLOT_LEAD`] ahead, so none of the lead is
//! lost), and the last guard that no call leaves before `not_before`.

use std::time::Duration;

use time::OffsetDateTime;

use super::metrics::Metrics;
use crate::domain::schedule;
use crate::store::JobState;

/// The earliest time this delivery should start preparing a call: the backoff's next attempt,
/// or [`schedule::SLOT_LEAD`] before the due time, whichever is later.
pub(super) fn earliest_start(state: &JobState) -> Option<OffsetDateTime> {
    let slot_ahead = state
        .not_before
        .map(|due| due - time::Duration::try_from(schedule::SLOT_LEAD).unwrap_or_default());
    match (state.next_attempt_at, slot_ahead) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Called when the pacer says go: waits, if need be, until the due time by this machine's clock
/// (the pacer's slot is on the database's clock, which may differ by a little), then records
/// how late the first call of a job that was scheduled ahead leaves.
pub(super) async fn at_due_time(metrics: &Metrics, state: &JobState, attempt: u32) {
    let Some(due) = state.not_before else {
        return;
    };
    let early = due - OffsetDateTime::now_utc();
    if early.is_positive() {
        tokio::time::sleep(Duration::try_from(early).unwrap_or_default()).await;
    }
    if attempt == 1 && state.due_ahead {
        let late = OffsetDateTime::now_utc() - due;
        metrics.call_lateness(Duration::try_from(late).unwrap_or_default());
    }
}
