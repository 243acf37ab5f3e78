//! Accounts held by an operator's pause: what [`super::Gate`] knows of them (who, why, until
//! when, for `/readyz`, the metrics and the log) and how a fresh reading of the table replaces
//! the last one. The reading itself is `worker/operator.rs`'s.

use std::collections::BTreeMap;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

use super::Gate;

/// An operator's pause of one account, as this worker last read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::worker) struct Held {
    /// As typed: escape it before showing it.
    pub reason: String,
    /// Who and from where, as typed: escape it before showing it.
    pub by: String,
    /// When it lifts by itself, if it does.
    pub until: Option<OffsetDateTime>,
    /// The same on this worker's clock, for how long to park a job.
    pub until_at: Option<Instant>,
}

/// Longest a job waiting on a pause with no end is parked at once (the park is clamped again by
/// the job's own rule).
const NO_END: Duration = Duration::from_secs(3600);

impl Held {
    /// How long until it lifts by itself (or a long while when it does not).
    pub(super) fn remaining(&self, now: Instant) -> Duration {
        self.until_at
            .map_or(NO_END, |u| u.saturating_duration_since(now))
    }
}

/// What a fresh reading changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(in crate::worker) struct HoldChanges {
    /// Accounts held now that were not (or held anew: another reason, actor or end).
    pub held: Vec<String>,
    /// Accounts no longer held.
    pub lifted: Vec<String>,
}

impl HoldChanges {
    pub(in crate::worker) fn is_empty(&self) -> bool {
        self.held.is_empty() && self.lifted.is_empty()
    }
}

impl Gate {
    /// Replaces the held accounts with a fresh reading.
    pub(in crate::worker) fn hold(&mut self, fresh: BTreeMap<String, Held>) -> HoldChanges {
        let mut changes = HoldChanges::default();
        for (account, h) in &fresh {
            let same = self.held.get(account).is_some_and(|old| {
                old.reason == h.reason && old.by == h.by && old.until == h.until
            });
            if !same {
                changes.held.push(account.clone());
            }
        }
        changes.lifted = self
            .held
            .keys()
            .filter(|a| !fresh.contains_key(*a))
            .cloned()
            .collect();
        self.held = fresh;
        changes
    }

    /// Every held account.
    pub(in crate::worker) fn held(&self) -> Vec<(String, Held)> {
        self.held
            .iter()
            .map(|(a, h)| (a.clone(), h.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Turn;
    use super::*;

    fn held(reason: &str, until_at: Option<Instant>) -> Held {
        Held {
            reason: reason.into(),
            by: "alice via cli (h)".into(),
            until: None,
            until_at,
        }
    }

    #[test]
    fn a_held_account_waits_without_a_probe_and_nothing_leaves() {
        let now = Instant::now();
        let mut g = Gate::default();
        let changes = g.hold(BTreeMap::from([("a".to_owned(), held("leak", None))]));
        assert_eq!(changes.held, ["a"]);
        assert!(changes.lifted.is_empty());
        assert_eq!(g.turn("a", now), Turn::Wait);
        assert!(!g.may_leave("a", None));
        assert!(!g.may_leave("a", Some(1)), "not even a probe");
        assert!(g.is_paused("a"));
        assert_eq!(g.turn("b", now), Turn::Go, "other accounts run");
        assert_eq!(g.next_probe_in("a", now), Some(NO_END));
        // The same reading again changes nothing; another reason is a change.
        assert!(
            g.hold(BTreeMap::from([("a".to_owned(), held("leak", None))]))
                .is_empty()
        );
        let changes = g.hold(BTreeMap::from([("a".to_owned(), held("other", None))]));
        assert_eq!(changes.held, ["a"]);
        let changes = g.hold(BTreeMap::new());
        assert_eq!(changes.lifted, ["a"]);
        assert_eq!(g.turn("a", now), Turn::Go);
        assert!(g.may_leave("a", None));
    }

    #[test]
    fn a_pause_with_an_end_parks_jobs_until_then() {
        let now = Instant::now();
        let mut g = Gate::default();
        let end = now + Duration::from_secs(7);
        g.hold(BTreeMap::from([("a".to_owned(), held("r", Some(end)))]));
        assert_eq!(g.next_probe_in("a", now), Some(Duration::from_secs(7)));
        assert_eq!(
            g.next_probe_in("a", end + Duration::from_secs(1)),
            Some(Duration::ZERO)
        );
    }
}
