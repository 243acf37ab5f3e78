//! Accounts that cannot be served pause, in this worker: a refused key, an expired token or a
//! wrong clock (paused at the first refusal), or an endpoint that cannot be reached or keeps
//! failing (paused when [`super::circuit`]'s rule opens the account's circuit). Neither is the
//! job's fault, so jobs wait (pending, held or parked in Postgres, their budget untouched)
//! while one probe call at a time checks whether the account works again.
//!
//! [`Gate`] is the decision, pure and driven by the caller's clock; [`Pauses`] shares it
//! between a worker's jobs and wakes waiters when it changes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{info, warn};

use super::backoff::Backoff;
use super::circuit::{Signal, Streak};

/// Waits between probes of a paused account: 1 s doubling to 60 s.
pub(super) const PROBE_BACKOFF: Backoff = Backoff {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(60),
};

/// A paused account.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Paused {
    /// The refusal's error code, for `/readyz`, the metrics and the log.
    code: String,
    /// Refused probes so far (the backoff's exponent).
    refused_probes: u32,
    next_probe: Instant,
    /// The probe in flight, if any.
    probe: Option<u64>,
}

/// What a job may do now for an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Turn {
    /// The account is not paused: call.
    Go,
    /// Paused, and this job makes the probe call (id to report with).
    Probe(u64),
    /// Paused: ask again at this time, or when woken.
    WaitUntil(Instant),
    /// Paused, a probe is in flight: ask again when woken.
    Wait,
}

/// A change of state worth one log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Change {
    /// Paused, or still paused with another code.
    Paused { code: String, why: Why },
    /// Resumed from a pause with this code.
    Resumed { code: String },
}

/// Why an account paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Why {
    /// Its credentials (or clock) were refused, or could not be had.
    Credentials,
    /// Its circuit opened: the endpoint cannot be reached or keeps failing.
    Circuit,
}

/// What a reported call did to its account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Report {
    pub change: Option<Change>,
    /// The account is paused after this report: a failed call spends no job's budget.
    pub paused: bool,
}

/// The pause state of every account, driven by the caller's clock.
#[derive(Debug, Default)]
pub(super) struct Gate {
    paused: BTreeMap<String, Paused>,
    streaks: BTreeMap<String, Streak>,
    next_probe_id: u64,
}

impl Gate {
    pub(super) fn turn(&mut self, account: &str, now: Instant) -> Turn {
        let Some(p) = self.paused.get_mut(account) else {
            return Turn::Go;
        };
        if p.probe.is_some() {
            return Turn::Wait;
        }
        if now < p.next_probe {
            return Turn::WaitUntil(p.next_probe);
        }
        self.next_probe_id += 1;
        p.probe = Some(self.next_probe_id);
        Turn::Probe(self.next_probe_id)
    }

    /// Whether a call that took its turn may leave now: its account is not paused, or the call
    /// is the account's probe. Checked again after the pacer's wait, just before it leaves.
    pub(super) fn may_leave(&self, account: &str, probe: Option<u64>) -> bool {
        match self.paused.get(account) {
            None => true,
            Some(p) => probe.is_some() && p.probe == probe,
        }
    }

    /// How long until a paused account's next probe is due (zero if due now); `None` when it
    /// is not paused or a probe is in flight.
    pub(super) fn next_probe_in(&self, account: &str, now: Instant) -> Option<Duration> {
        let p = self.paused.get(account)?;
        p.probe
            .is_none()
            .then(|| p.next_probe.saturating_duration_since(now))
    }

    pub(super) fn is_paused(&self, account: &str) -> bool {
        self.paused.contains_key(account)
    }

    /// Reports a settled call of `account` for `studio`; `probe` is the probe's id when the
    /// call was one. An answer resumes the account; a refusal pauses it; a fault pauses it when
    /// it opens the circuit. While paused, only the probe's failure moves the next probe back:
    /// calls already under way when it paused change nothing.
    pub(super) fn report(
        &mut self,
        account: &str,
        studio: &str,
        signal: Signal<'_>,
        probe: Option<u64>,
        now: Instant,
    ) -> Report {
        let (change, paused) = match signal {
            Signal::Answered => {
                if let Some(streak) = self.streaks.get_mut(account) {
                    streak.answered();
                }
                let change = self
                    .paused
                    .remove(account)
                    .map(|p| Change::Resumed { code: p.code });
                (change, false)
            }
            Signal::Refused(code) => (
                self.failed(account, code, Why::Credentials, probe, now),
                true,
            ),
            Signal::Fault(fault) if self.is_paused(account) => (
                self.failed(account, fault.code, Why::Circuit, probe, now),
                true,
            ),
            Signal::Fault(fault) => {
                let streak = self.streaks.entry(account.to_owned()).or_default();
                if streak.fault(studio, fault, now) {
                    // A fresh streak after it closes: the faults that opened it are spent.
                    streak.answered();
                    (
                        self.failed(account, fault.code, Why::Circuit, probe, now),
                        true,
                    )
                } else {
                    (None, false)
                }
            }
        };
        Report { change, paused }
    }

    /// A call for `account` failed with `code` in a way that pauses it (or keeps it paused).
    fn failed(
        &mut self,
        account: &str,
        code: &str,
        why: Why,
        probe: Option<u64>,
        now: Instant,
    ) -> Option<Change> {
        let paused = Change::Paused {
            code: code.to_owned(),
            why,
        };
        match self.paused.get_mut(account) {
            None => {
                self.paused.insert(
                    account.to_owned(),
                    Paused {
                        code: code.to_owned(),
                        refused_probes: 0,
                        next_probe: now + PROBE_BACKOFF.initial,
                        probe: None,
                    },
                );
                Some(paused)
            }
            Some(p) if probe.is_some() && p.probe == probe => {
                p.refused_probes += 1;
                p.probe = None;
                p.next_probe = now + PROBE_BACKOFF.ceiling(p.refused_probes + 1);
                let changed = p.code != code;
                p.code = code.to_owned();
                changed.then_some(paused)
            }
            Some(_) => None,
        }
    }

    /// A probe ended without an answer to judge by (shutdown, a transport error): the next
    /// waiter may probe.
    pub(super) fn abandon(&mut self, account: &str, probe: u64) {
        if let Some(p) = self.paused.get_mut(account)
            && p.probe == Some(probe)
        {
            p.probe = None;
        }
    }

    /// (account, code) of every paused account.
    pub(super) fn paused(&self) -> Vec<(String, String)> {
        self.paused
            .iter()
            .map(|(a, p)| (a.clone(), p.code.clone()))
            .collect()
    }
}

/// The worker's shared [`Gate`].
#[derive(Clone, Default)]
pub(super) struct Pauses {
    gate: Arc<Mutex<Gate>>,
    changed: Arc<Notify>,
}

impl Pauses {
    /// Waits until a job may call for `account`: [`Turn::Go`] or [`Turn::Probe`]. `None` when
    /// `deadline` comes first (the caller hands the delivery back).
    pub(super) async fn wait_turn(&self, account: &str, deadline: Instant) -> Option<Turn> {
        loop {
            let woken = self.changed.notified();
            let turn = self.lock().turn(account, Instant::now());
            let until = match turn {
                Turn::Go | Turn::Probe(_) => return Some(turn),
                Turn::WaitUntil(at) => at.min(deadline),
                Turn::Wait => deadline,
            };
            if Instant::now() >= deadline {
                return None;
            }
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// Reports a settled call of `account` for `studio` ([`Gate::report`]), logging a change
    /// of state in one line.
    pub(super) fn report(
        &self,
        account: &str,
        studio: &str,
        signal: Signal<'_>,
        probe: Option<u64>,
    ) -> Report {
        let report = self
            .lock()
            .report(account, studio, signal, probe, Instant::now());
        match &report.change {
            Some(Change::Paused {
                code,
                why: Why::Credentials,
            }) => warn!(
                account,
                code,
                "credentials refused: account paused; its jobs wait, one probe call at a time"
            ),
            Some(Change::Paused {
                code,
                why: Why::Circuit,
            }) => warn!(
                account,
                code,
                "API unreachable or failing: account paused; its jobs wait, one probe call at a time"
            ),
            Some(Change::Resumed { code }) => {
                info!(account, code, "the API answered: account resumed");
            }
            None => {}
        }
        // Waiters (jobs waiting for a turn, calls waiting for their slot) care about changes
        // and settled probes only: waking every one of them at each answer is churn.
        if report.change.is_some() || probe.is_some() {
            self.changed.notify_waiters();
        }
        report
    }

    /// Whether a call that took its turn may leave now ([`Gate::may_leave`]).
    pub(super) fn may_leave(&self, account: &str, probe: Option<u64>) -> bool {
        self.lock().may_leave(account, probe)
    }

    /// Returns once `account` is paused (at once if it is).
    pub(super) async fn until_paused(&self, account: &str) {
        loop {
            let woken = self.changed.notified();
            if self.lock().is_paused(account) {
                return;
            }
            woken.await;
        }
    }

    /// [`Gate::next_probe_in`], now.
    pub(super) fn next_probe_in(&self, account: &str) -> Option<Duration> {
        self.lock().next_probe_in(account, Instant::now())
    }

    /// A probe that ended without an answer.
    pub(super) fn abandon(&self, account: &str, probe: u64) {
        self.lock().abandon(account, probe);
        self.changed.notify_waiters();
    }

    pub(super) fn paused(&self) -> Vec<(String, String)> {
        self.lock().paused()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.gate.lock().expect("pause gate poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::circuit::Fault;

    fn refused(
        g: &mut Gate,
        code: &'static str,
        probe: Option<u64>,
        now: Instant,
    ) -> Option<Change> {
        let report = g.report("a", "s", Signal::Refused(code), probe, now);
        assert!(report.paused);
        report.change
    }

    fn accepted(g: &mut Gate) -> Option<Change> {
        g.report("a", "s", Signal::Answered, None, Instant::now())
            .change
    }

    #[test]
    fn a_refusal_pauses_and_one_probe_at_a_time_backs_off_to_a_minute() {
        let t0 = Instant::now();
        let mut g = Gate::default();
        assert_eq!(g.turn("a", t0), Turn::Go);
        assert_eq!(
            refused(&mut g, "SignatureDoesNotMatch", None, t0),
            Some(Change::Paused {
                code: "SignatureDoesNotMatch".into(),
                why: Why::Credentials,
            })
        );
        // Other accounts keep running; calls already under way change nothing.
        assert_eq!(g.turn("b", t0), Turn::Go);
        assert_eq!(refused(&mut g, "SignatureDoesNotMatch", None, t0), None);
        assert_eq!(
            g.turn("a", t0),
            Turn::WaitUntil(t0 + Duration::from_secs(1))
        );
        let mut now = t0 + Duration::from_secs(1);
        let mut waits = Vec::new();
        for _ in 0..8 {
            let Turn::Probe(id) = g.turn("a", now) else {
                panic!("a probe is due")
            };
            assert_eq!(g.turn("a", now), Turn::Wait, "one probe at a time");
            assert_eq!(
                refused(&mut g, "SignatureDoesNotMatch", Some(id), now),
                None
            );
            let Turn::WaitUntil(next) = g.turn("a", now) else {
                panic!()
            };
            waits.push((next - now).as_secs());
            now = next;
        }
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(g.next_probe_in("a", now), Some(Duration::ZERO));
        assert_eq!(
            g.next_probe_in("a", now - Duration::from_secs(10)),
            Some(Duration::from_secs(10))
        );
        assert_eq!(g.next_probe_in("b", now), None, "not paused");
        assert_eq!(
            g.paused(),
            [("a".to_owned(), "SignatureDoesNotMatch".to_owned())]
        );
        let Turn::Probe(_) = g.turn("a", now) else {
            panic!()
        };
        assert_eq!(
            accepted(&mut g),
            Some(Change::Resumed {
                code: "SignatureDoesNotMatch".into()
            })
        );
        assert_eq!(g.turn("a", now), Turn::Go);
        assert!(g.paused().is_empty());
        assert_eq!(accepted(&mut g), None);
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_waiter_probe() {
        let t0 = Instant::now();
        let mut g = Gate::default();
        refused(&mut g, "InvalidSecurityToken.Expired", None, t0);
        let later = t0 + Duration::from_secs(5);
        let Turn::Probe(first) = g.turn("a", later) else {
            panic!()
        };
        g.abandon("a", first);
        let Turn::Probe(second) = g.turn("a", later) else {
            panic!()
        };
        assert_ne!(first, second);
        // A stale abandon (of the first probe) does not free the second's place.
        g.abandon("a", first);
        assert_eq!(g.turn("a", later), Turn::Wait);
        assert_eq!(g.next_probe_in("a", later), None, "a probe is in flight");
    }

    #[test]
    fn an_open_circuit_pauses_lets_only_the_probe_leave_and_an_answer_closes_it() {
        let t0 = Instant::now();
        let mut g = Gate::default();
        let down = Signal::Fault(Fault {
            code: "Transport.Connect",
            unreachable: true,
        });
        assert!(!g.report("a", "s1", down, None, t0).paused);
        assert!(!g.report("a", "s2", down, None, t0).paused);
        assert!(g.may_leave("a", None));
        let opened = g.report("a", "s3", down, None, t0);
        assert!(opened.paused, "the call that opened it spends no budget");
        assert_eq!(
            opened.change,
            Some(Change::Paused {
                code: "Transport.Connect".into(),
                why: Why::Circuit
            })
        );
        // A call that took its turn before the pause stays home; one under way changes nothing
        // but spends no budget either.
        assert!(!g.may_leave("a", None));
        assert!(g.may_leave("b", None));
        assert_eq!(
            g.report("a", "s4", down, None, t0),
            Report {
                change: None,
                paused: true
            }
        );
        let later = t0 + Duration::from_secs(1);
        let Turn::Probe(id) = g.turn("a", later) else {
            panic!("a probe is due")
        };
        assert!(g.may_leave("a", Some(id)));
        // A failed probe backs off, now with the storm's code.
        let storm = Signal::Fault(Fault {
            code: "ServiceUnavailable",
            unreachable: false,
        });
        assert!(g.report("a", "s1", storm, Some(id), later).paused);
        assert_eq!(
            g.turn("a", later),
            Turn::WaitUntil(later + Duration::from_secs(2))
        );
        assert_eq!(
            g.paused(),
            [("a".to_owned(), "ServiceUnavailable".to_owned())]
        );
        // Any answer of the API itself closes it, and the streak starts afresh.
        let report = g.report("a", "s1", Signal::Answered, None, later);
        assert_eq!(
            report.change,
            Some(Change::Resumed {
                code: "ServiceUnavailable".into()
            })
        );
        assert!(!report.paused);
        assert!(!g.report("a", "s1", down, None, later).paused);
    }
}
