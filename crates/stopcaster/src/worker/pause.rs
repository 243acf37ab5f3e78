//! Accounts whose credentials were refused pause, in this worker: a refused key, an expired
//! token or a wrong clock is not the job's fault, so jobs wait (pending, on the queue, their
//! budget untouched) while one probe call at a time checks whether the account works again.
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
    Paused { code: String },
    Resumed,
}

/// The pause state of every account, driven by the caller's clock.
#[derive(Debug, Default)]
pub(super) struct Gate {
    paused: BTreeMap<String, Paused>,
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

    /// A call for `account` was refused for its credentials. `probe` is the probe's id when
    /// the call was one. A refusal of a call that was already under way when the account paused
    /// changes nothing; a refused probe pushes the next one back.
    pub(super) fn refused(
        &mut self,
        account: &str,
        code: &str,
        probe: Option<u64>,
        now: Instant,
    ) -> Option<Change> {
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
                Some(Change::Paused {
                    code: code.to_owned(),
                })
            }
            Some(p) if probe.is_some() && p.probe == probe => {
                p.refused_probes += 1;
                p.probe = None;
                p.next_probe = now + PROBE_BACKOFF.ceiling(p.refused_probes + 1);
                let changed = p.code != code;
                p.code = code.to_owned();
                changed.then(|| Change::Paused {
                    code: code.to_owned(),
                })
            }
            Some(_) => None,
        }
    }

    /// A call for `account` was not refused for its credentials: the account works.
    pub(super) fn accepted(&mut self, account: &str) -> Option<Change> {
        self.paused.remove(account).map(|_| Change::Resumed)
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

    /// Reports a call's result for `account`: `refused` is the refusal's code, if it was one.
    /// Returns the change of state it made, if any.
    pub(super) fn report(
        &self,
        account: &str,
        refused: Option<&str>,
        probe: Option<u64>,
    ) -> Option<Change> {
        let change = {
            let mut gate = self.lock();
            match refused {
                Some(code) => gate.refused(account, code, probe, Instant::now()),
                None => gate.accepted(account),
            }
        };
        match &change {
            Some(Change::Paused { code }) => warn!(
                account,
                code,
                "credentials refused: account paused; its jobs wait, one probe call at a time"
            ),
            Some(Change::Resumed) => info!(account, "credentials accepted: account resumed"),
            None => {}
        }
        self.changed.notify_waiters();
        change
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

    #[test]
    fn a_refusal_pauses_and_one_probe_at_a_time_backs_off_to_a_minute() {
        let t0 = Instant::now();
        let mut g = Gate::default();
        assert_eq!(g.turn("a", t0), Turn::Go);
        assert_eq!(
            g.refused("a", "SignatureDoesNotMatch", None, t0),
            Some(Change::Paused {
                code: "SignatureDoesNotMatch".into()
            })
        );
        // Other accounts keep running; calls already under way change nothing.
        assert_eq!(g.turn("b", t0), Turn::Go);
        assert_eq!(g.refused("a", "SignatureDoesNotMatch", None, t0), None);
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
            assert_eq!(g.refused("a", "SignatureDoesNotMatch", Some(id), now), None);
            let Turn::WaitUntil(next) = g.turn("a", now) else {
                panic!()
            };
            waits.push((next - now).as_secs());
            now = next;
        }
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(
            g.paused(),
            [("a".to_owned(), "SignatureDoesNotMatch".to_owned())]
        );
        let Turn::Probe(_) = g.turn("a", now) else {
            panic!()
        };
        assert_eq!(g.accepted("a"), Some(Change::Resumed));
        assert_eq!(g.turn("a", now), Turn::Go);
        assert!(g.paused().is_empty());
        assert_eq!(g.accepted("a"), None);
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_waiter_probe() {
        let t0 = Instant::now();
        let mut g = Gate::default();
        g.refused("a", "InvalidSecurityToken.Expired", None, t0);
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
    }
}
