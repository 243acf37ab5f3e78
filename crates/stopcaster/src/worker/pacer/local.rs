//! The in-process pacer, for a single worker (and for tests of the pacing maths), and the local
//! lock every pacer takes so a process holds at most one reserved slot per account.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::flight::Flights;
use super::{MAX_SLOWDOWN, Rate, Slot, SlotToken, earliest_slot, gcra_step, recovered, throttled};

/// Per-process queueing: one outstanding reservation per account in this process.
#[derive(Clone, Default)]
pub(super) struct LocalGates(Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>);

impl LocalGates {
    pub(super) fn gate(&self, account: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut gates = self.0.lock().expect("pacer gates poisoned");
        gates.entry(account.to_owned()).or_default().clone()
    }
}

/// In-process GCRA, for a single worker (and for tests of the pacing maths).
#[derive(Clone)]
pub struct LocalPacer {
    rates: Arc<dyn Fn(&str) -> Rate + Send + Sync>,
    epoch: Instant,
    state: Arc<Mutex<HashMap<String, (Duration, f64)>>>,
    gates: LocalGates,
    pub(super) flights: Flights,
}

impl LocalPacer {
    pub fn new(rates: impl Fn(&str) -> Rate + Send + Sync + 'static) -> Self {
        Self {
            rates: Arc::new(rates),
            epoch: Instant::now(),
            state: Arc::default(),
            gates: LocalGates::default(),
            flights: Flights::default(),
        }
    }

    /// The account's rate: as configured, its margin widened by the jitter its calls met.
    pub(super) fn rate(&self, account: &str) -> Rate {
        self.flights.rate(account, (self.rates)(account))
    }

    pub(super) async fn acquire(
        &self,
        account: &str,
        not_before: Option<time::OffsetDateTime>,
    ) -> Slot {
        let gate = self.gates.gate(account);
        let _one_at_a_time = gate.lock().await;
        let rate = self.rate(account);
        let (period, lead) = (rate.period(), rate.lead());
        let (slot, wait) = {
            let mut state = self.state.lock().expect("pacer state poisoned");
            let entry = state
                .entry(account.to_owned())
                .or_insert((Duration::ZERO, 1.0));
            let now = self.epoch.elapsed();
            // The due time on this process's clock (the wall clock's distance to it).
            let due = not_before
                .and_then(|t| Duration::try_from(t - time::OffsetDateTime::now_utc()).ok())
                .map(|ahead| now + ahead);
            let earliest = earliest_slot(entry.0, now, lead, due);
            let (slot, tat) = gcra_step(entry.0, earliest, period.mul_f64(entry.1));
            *entry = (tat, recovered(entry.1));
            (slot, slot.saturating_sub(now))
        };
        let pushed_before = self.flights.pushed(account);
        let at = self.epoch + slot;
        tokio::time::sleep_until(at - lead).await;
        Slot {
            at,
            wait,
            token: SlotToken::Local {
                account: account.to_owned(),
                slot,
            },
            pushed_before,
        }
    }

    pub(super) fn release(&self, account: &str, slot: Duration) {
        let mut state = self.state.lock().expect("pacer state poisoned");
        if let Some(entry) = state.get_mut(account) {
            let period = self.rate(account).period();
            if entry.0 <= slot + period.mul_f64(MAX_SLOWDOWN) && entry.0 > slot {
                entry.0 = slot;
            }
        }
    }

    pub(super) fn push_back(&self, account: &str, by: Duration) {
        if let Some(entry) = self
            .state
            .lock()
            .expect("pacer state poisoned")
            .get_mut(account)
        {
            entry.0 += by;
        }
    }

    pub(super) fn throttled_for(&self, account: &str, time_left: Duration) {
        let mut state = self.state.lock().expect("pacer state poisoned");
        let now = self.epoch.elapsed();
        let entry = state
            .entry(account.to_owned())
            .or_insert((Duration::ZERO, 1.0));
        entry.0 = entry.0.max(now + time_left);
    }

    pub(super) fn throttled(&self, account: &str) {
        let mut state = self.state.lock().expect("pacer state poisoned");
        let now = self.epoch.elapsed();
        let entry = state
            .entry(account.to_owned())
            .or_insert((Duration::ZERO, 1.0));
        let period = self.rate(account).period();
        entry.0 = entry.0.max(now) + period;
        entry.1 = throttled(entry.1);
    }
}
