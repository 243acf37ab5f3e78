//! Accounts that cannot be served pause, in this worker: a refused key, an expired token or a
//! wrong clock (paused at the first refusal), or an endpoint that cannot be reached or keeps
//! failing (paused when [`super::circuit`]'s rule opens the account's circuit). Neither is the
//! job's fault, so jobs wait (pending, held or parked in Postgres, their budget untouched)
//! while one probe call at a time checks whether the account works again.
//!
//! An operator's pause (`stopcaster pause`, the dashboard; [`held`]) holds an account the same
//! way, but makes no probe: nothing leaves until it is lifted.
//!
//! [`Gate`] is the decision, pure and driven by the caller's clock; [`Pauses`] shares it
//! between a worker's jobs and wakes waiters when it changes.

mod held;
pub(super) use held::Held;

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
    /// Accounts held by an operator's pause ([`held`]).
    held: BTreeMap<String, Held>,
    streaks: BTreeMap<String, Streak>,
    next_probe_id: u64,
}

impl Gate {
    pub(super) fn turn(&mut self, account: &str, now: Instant) -> Turn {
        if self.held.contains_key(account) {
            // No probe: the operator's pause ends by itself (resume, `until`), and wakes.
            return Turn::Wait;
        }
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
        if self.held.contains_key(account) {
            return false;
        }
        match self.paused.get(account) {
            None => true,
            Some(p) => probe.is_some() && p.probe == probe,
        }
    }

    /// How long until a paused account's next probe is due (zero if due now); `None` when it
    /// is not paused or a probe is in flight.
    pub(super) fn next_probe_in(&self, account: &str, now: Instant) -> Option<Duration> {
        if let Some(h) = self.held.get(account) {
            return Some(h.remaining(now));
        }
        let p = self.paused.get(account)?;
        p.probe
            .is_none()
            .then(|| p.next_probe.saturating_duration_since(now))
    }

    pub(super) fn is_paused(&self, account: &str) -> bool {
        self.paused.contains_key(account) || self.held.contains_key(account)
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
            Signal::Fault(fault) if self.paused.contains_key(account) => (
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

    /// The endpoint of a paused account was seen reachable again (`super::reach`): its next
    /// probe is due now rather than at the end of its backoff. True when a probe is now due
    /// (brought forward, or due already); false when the account is not paused or its probe is
    /// in flight (never a second probe at once: ask again once that one has settled).
    pub(super) fn probe_now(&mut self, account: &str, now: Instant) -> bool {
        match self.paused.get_mut(account) {
            Some(p) if p.probe.is_none() => {
                p.next_probe = p.next_probe.min(now);
                true
            }
            _ => false,
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

    /// [`Gate::probe_now`], now, waking the jobs that wait for the account's turn.
    pub(super) fn probe_now(&self, account: &str) -> bool {
        let due = self.lock().probe_now(account, Instant::now());
        if due {
            self.changed.notify_waiters();
        }
        due
    }

    /// Replaces the accounts held by operators' pauses ([`Gate::hold`]), logging each change
    /// and waking the waiters when there is one.
    pub(super) fn hold(&self, fresh: BTreeMap<String, Held>) -> held::HoldChanges {
        let mut gate = self.lock();
        let changes = gate.hold(fresh);
        for account in &changes.held {
            if let Some(h) = gate.held.get(account) {
                warn!(
                    account,
                    by = %crate::domain::display::bounded(&h.by, crate::domain::display::CELL_CHARS),
                    reason = %crate::domain::display::bounded(&h.reason, crate::domain::display::CELL_CHARS),
                    until = ?h.until.map(crate::domain::time::rfc3339_micros),
                    "account paused by an operator: its jobs wait, no call is made"
                );
            }
        }
        for account in &changes.lifted {
            info!(account, "operator's pause lifted: account resumed");
        }
        drop(gate);
        if !changes.is_empty() {
            self.changed.notify_waiters();
        }
        changes
    }

    /// Every account held by an operator's pause.
    pub(super) fn held(&self) -> Vec<(String, Held)> {
        self.lock().held()
    }

    /// Returns once some paused account's code satisfies `wanted` (at once if one does).
    pub(super) async fn until_paused_with(&self, wanted: impl Fn(&str) -> bool) {
        loop {
            let woken = self.changed.notified();
            if self.lock().paused.values().any(|p| wanted(&p.code)) {
                return;
            }
            woken.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.gate.lock().expect("pause gate poisoned")
    }
}

#[cfg(test)]
mod tests;
