//! What Alibaba's quota headers tell this worker about each account (keyed like the pacer, by
//! UID): the limit and what remains, for the metrics, and how many calls of the last second
//! were someone else's, so that the pacer leaves them room ([`crate::worker::pacer::room_rate`]).
//!
//! An answer's `Remain` counts every call of the account in the gateway's current second, this
//! one included. Take away the schedule's own calls of that second and what is left is another
//! caller's: a script, another tool, a key used elsewhere. With the shared pacer the
//! schedule's calls are every worker's, counted in the database by their slots
//! (`store::count_recent_calls`), so sibling workers never leave room for each other; with the
//! local pacer, this process keeps its calls' send times. One
//! sample is off by one now and then (a call of ours just at the window's edge, a sibling's
//! row not yet written), so the room left is the most frequent sample of the last
//! [`SAMPLE_SPAN`] that at least two agree on, the larger on a tie: a steady competitor is
//! read exactly, and one that stops gives its room back within that span.
//! Throttled answers are no sample (the window is full whoever filled it), and a throttled call
//! of ours is not counted as ours (the gateway did not count it either).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// The gateway's window.
const WINDOW: Duration = Duration::from_secs(1);
/// How long samples of another caller are kept.
pub(super) const SAMPLE_SPAN: Duration = Duration::from_secs(2);

/// Calls of one account's last second that were not ours: limit, remain and our own calls in
/// that second (this one included).
pub(super) fn others_in_window(limit: u32, remain: u32, ours: u32) -> u32 {
    limit.saturating_sub(remain).saturating_sub(ours)
}

/// A value of others must be seen this often within the span to be believed: one sample
/// alone may be a sibling's call whose row the database did not yet hold when it was counted
/// (the row is written while the call is in flight, and a loaded database lags).
const MIN_AGREEING: u32 = 2;

/// The most frequent of `samples` seen at least [`MIN_AGREEING`] times, the larger on a tie;
/// 0 without any.
pub(super) fn most_frequent(samples: impl IntoIterator<Item = u32>) -> u32 {
    let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
    for s in samples {
        *counts.entry(s).or_default() += 1;
    }
    counts
        .into_iter()
        .filter(|&(_, n)| n >= MIN_AGREEING)
        .max_by_key(|&(value, n)| (n, value))
        .map_or(0, |(value, _)| value)
}

#[derive(Default)]
struct AccountQuota {
    /// Send times of our calls, the last second's.
    sent: VecDeque<Instant>,
    /// (when, others seen) of the last [`SAMPLE_SPAN`].
    samples: VecDeque<(Instant, u32)>,
    /// The last `Limit` the gateway gave.
    limit: Option<u32>,
    others: u32,
}

/// Per pacer key: our recent calls and what the answers said. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct QuotaWatch(Arc<Mutex<HashMap<String, AccountQuota>>>);

impl QuotaWatch {
    /// A call of `key` leaves at `at`.
    pub(super) fn sent(&self, key: &str, at: Instant) {
        let mut all = self.0.lock().expect("quota poisoned");
        let account = all.entry(key.to_owned()).or_default();
        while account
            .sent
            .front()
            .is_some_and(|t| at.saturating_duration_since(*t) >= WINDOW)
        {
            account.sent.pop_front();
        }
        account.sent.push_back(at);
    }

    /// Whether this process's own calls of the second up to `sent` account for every call the
    /// gateway counted (`limit - remain`): then nobody else called, whatever the siblings did,
    /// and the schedule's calls need not be counted in the database. Alone on an account,
    /// the common case, a call costs no statement for the quota's sake beyond its record.
    pub(super) fn own_explain(&self, key: &str, sent: Instant, limit: u32, remain: u32) -> bool {
        let all = self.0.lock().expect("quota poisoned");
        let own = all.get(key).map_or(0, |a| {
            a.sent
                .iter()
                .filter(|t| **t <= sent && sent.saturating_duration_since(**t) < WINDOW)
                .count()
        });
        others_in_window(limit, remain, u32::try_from(own).unwrap_or(u32::MAX)) == 0
    }

    /// The answer of the call of `key` sent at `sent`: `binding` its (Limit, Remain), none when
    /// the answer had no quota header; `throttled` when it was refused for the quota;
    /// `schedule_calls` the calls of the account's shared schedule (every worker's) in the
    /// second up to this one, when known: otherwise this process's own are counted.
    pub(super) fn answered(
        &self,
        key: &str,
        sent: Instant,
        binding: Option<(u32, u32)>,
        throttled: bool,
        schedule_calls: Option<u32>,
    ) {
        let mut all = self.0.lock().expect("quota poisoned");
        let account = all.entry(key.to_owned()).or_default();
        if throttled && let Some(i) = account.sent.iter().position(|t| *t == sent) {
            account.sent.remove(i);
        }
        let Some((limit, remain)) = binding else {
            return;
        };
        account.limit = Some(limit);
        let now = Instant::now();
        while account
            .samples
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= SAMPLE_SPAN)
        {
            account.samples.pop_front();
        }
        if !throttled {
            let own = account
                .sent
                .iter()
                .filter(|t| **t <= sent && sent.saturating_duration_since(**t) < WINDOW)
                .count();
            let own = u32::try_from(own).unwrap_or(u32::MAX);
            // Never fewer than this process's own: a sibling's row may lag, ours are known.
            let ours = schedule_calls.map_or(own, |n| n.max(own));
            account
                .samples
                .push_back((now, others_in_window(limit, remain, ours)));
        }
        let others = most_frequent(account.samples.iter().map(|(_, n)| *n));
        if others != account.others {
            tracing::info!(
                account = key,
                limit,
                others,
                "another caller's calls per second on the account: the pace leaves them room"
            );
        }
        account.others = others;
    }

    /// The last `Limit` of `key`'s answers, and the calls per second another caller uses.
    pub(crate) fn seen(&self, key: &str) -> (Option<u32>, u32) {
        self.0
            .lock()
            .expect("quota poisoned")
            .get(key)
            .map_or((None, 0), |a| (a.limit, a.others))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn others_are_what_the_window_holds_beyond_ours() {
        assert_eq!(others_in_window(10, 6, 1), 3);
        assert_eq!(others_in_window(10, 0, 7), 3);
        // Our count ahead of the gateway's (a call not arrived yet): never below 0.
        assert_eq!(others_in_window(10, 5, 7), 0);
    }

    #[test]
    fn the_most_frequent_sample_wins_the_larger_on_a_tie() {
        assert_eq!(most_frequent([3, 3, 4, 2, 3]), 3);
        assert_eq!(most_frequent([0, 3, 0, 3]), 3);
        assert_eq!(most_frequent([]), 0);
    }

    #[test]
    fn one_sample_alone_is_not_believed() {
        // A sibling's row counted late, once: no room for a caller who is not there.
        assert_eq!(most_frequent([1]), 0);
        assert_eq!(most_frequent([0, 1]), 0);
        assert_eq!(most_frequent([1, 0, 0, 2]), 0);
        // Seen twice, it is.
        assert_eq!(most_frequent([0, 3, 3]), 3);
        assert_eq!(most_frequent([3, 3]), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn own_calls_that_explain_the_count_need_no_schedule_count() {
        let watch = QuotaWatch::default();
        let mut last = Instant::now();
        for _ in 0..3 {
            last = Instant::now();
            watch.sent("uid", last);
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        // Three used, three of ours: nobody else.
        assert!(watch.own_explain("uid", last, 10, 7));
        // Four used: one is a sibling's or a stranger's, which only the database can tell.
        assert!(!watch.own_explain("uid", last, 10, 6));
        assert!(!watch.own_explain("unknown", last, 10, 9));
    }

    #[tokio::test(start_paused = true)]
    async fn a_competitor_is_seen_and_its_room_given_back_when_it_stops() {
        let watch = QuotaWatch::default();
        let step = Duration::from_millis(143);
        // Seven calls of ours a second beside three of someone else's: 10 used each second.
        for i in 0..14u32 {
            let at = Instant::now();
            watch.sent("uid", at);
            let ours = (i + 1).min(7);
            watch.answered("uid", at, Some((10, 10 - ours - 3)), false, None);
            tokio::time::advance(step).await;
        }
        assert_eq!(watch.seen("uid"), (Some(10), 3));
        // A throttled answer is no sample, and its call is not ours.
        let at = Instant::now();
        watch.sent("uid", at);
        watch.answered("uid", at, Some((10, 0)), true, None);
        assert_eq!(watch.seen("uid").1, 3);
        // The competitor stops: only ours in the window.
        for _ in 0..30 {
            let at = Instant::now();
            watch.sent("uid", at);
            watch.answered("uid", at, Some((10, 3)), false, None);
            tokio::time::advance(step).await;
        }
        assert_eq!(watch.seen("uid"), (Some(10), 0));
        // Two sibling workers of one schedule, 5 calls a second each, 10 in all: the
        // schedule's count says all ten were ours, though this process made five.
        let siblings = QuotaWatch::default();
        for _ in 0..20 {
            let at = Instant::now();
            siblings.sent("uid", at);
            siblings.answered("uid", at, Some((10, 0)), false, Some(10));
            tokio::time::advance(Duration::from_millis(200)).await;
        }
        assert_eq!(siblings.seen("uid"), (Some(10), 0));
        assert_eq!(watch.seen("other"), (None, 0));
    }
}
