//! The pacer shared by every replica: GCRA in a Postgres row per account, on the database's
//! clock, mapped onto this process's clock by [`ClockSync`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::time::Instant;

use super::flight::Flights;
use super::{
    ClockSync, MAX_SLOWDOWN, PREPARE_LEAD, PacerError, RECOVERY_STEP, Rate, Slot, SlotToken,
    THROTTLE_SLOWDOWN, account_entry, batch_size,
};

/// This process's queue for one account: one reservation at a time, and the slots a
/// reservation took for the calls waiting behind it (`maths::batch_size`), handed out in turn.
#[derive(Default)]
struct Gate {
    /// Slots reserved ahead, each with this process's pushes when it was reserved.
    reserved: tokio::sync::Mutex<VecDeque<(time::OffsetDateTime, Duration)>>,
    waiting: AtomicUsize,
}

#[derive(Clone, Default)]
struct Gates(Arc<Mutex<HashMap<String, Arc<Gate>>>>);

impl Gates {
    fn gate(&self, account: &str) -> Arc<Gate> {
        let mut gates = self.0.lock().expect("pacer gates poisoned");
        account_entry(&mut gates, account).clone()
    }
}

/// GCRA in a Postgres row per account (`stopcaster_pacer`), on the database's clock. Give it
/// a pool from `store::pacer_pool`: its commits skip the WAL flush, which is slow
/// and uneven on a busy disk, and the schedule needs no durability (after a database crash it
/// simply starts from now).
#[derive(Clone)]
pub struct SharedPacer {
    pool: PgPool,
    rates: Arc<dyn Fn(&str) -> Rate + Send + Sync>,
    gates: Gates,
    clock: Arc<Mutex<ClockSync>>,
    pub(super) flights: Flights,
    pushes: Arc<Mutex<HashMap<String, PendingPush>>>,
}

impl SharedPacer {
    pub fn new(pool: PgPool, rates: impl Fn(&str) -> Rate + Send + Sync + 'static) -> Self {
        Self {
            pool,
            rates: Arc::new(rates),
            gates: Gates::default(),
            clock: Arc::new(Mutex::new(ClockSync::new(
                Instant::now(),
                time::OffsetDateTime::now_utc(),
            ))),
            flights: Flights::default(),
            pushes: Arc::default(),
        }
    }

    /// The account's rate: as configured, its margin widened by the jitter this process's calls
    /// met. Each process paces the slots it reserves with its own margin, so the shared
    /// schedule's second is widened by the mean of the processes' margins, weighted by the
    /// slots each takes (processes on one machine meet much the same jitter).
    pub(super) fn rate(&self, account: &str) -> Rate {
        self.flights.rate(account, (self.rates)(account))
    }

    pub(super) async fn acquire(
        &self,
        account: &str,
        not_before: Option<time::OffsetDateTime>,
    ) -> Result<Slot, PacerError> {
        let gate = self.gates.gate(account);
        gate.waiting.fetch_add(1, Ordering::Relaxed);
        let mut reserved = gate.reserved.lock().await;
        let waiting = gate.waiting.fetch_sub(1, Ordering::Relaxed) - 1;
        let rate = self.rate(account);
        let lead = rate.lead();
        // A slot reserved for a call that has since gone is stale once a call on it would
        // leave late enough to push the schedule back.
        let stale_after = rate.margin / 2;
        let (slot, pushed_before) = match self.take_reserved(&mut reserved, not_before, stale_after)
        {
            Some(slot) => slot,
            None => {
                let count = match not_before {
                    // A due time is this call's own: the calls behind it take their own slots.
                    Some(_) => 1,
                    None => batch_size(waiting, rate.period(), PREPARE_LEAD),
                };
                let mut slots = self
                    .reserve(account, rate.period(), lead, not_before, count)
                    .await?;
                let first = slots.pop_front().expect("a reservation holds a slot");
                *reserved = slots;
                first
            }
        };
        let at = self.to_local(slot);
        let wait = at.saturating_duration_since(Instant::now());
        // The queue is held until the lead: the next call's slot is handed out after this one.
        tokio::time::sleep_until(at - lead).await;
        drop(reserved);
        Ok(Slot {
            at,
            wait,
            token: SlotToken::Shared {
                account: account.to_owned(),
                slot,
            },
            pushed_before,
        })
    }

    /// The next slot a reservation took for a call waiting behind it, unless it is stale (the
    /// calls it was taken for have gone, and it is more than `stale_after` behind: the slots
    /// left are dropped) or before `not_before`.
    fn take_reserved(
        &self,
        reserved: &mut VecDeque<(time::OffsetDateTime, Duration)>,
        not_before: Option<time::OffsetDateTime>,
        stale_after: Duration,
    ) -> Option<(time::OffsetDateTime, Duration)> {
        let (slot, _) = *reserved.front()?;
        if self.to_local(slot) + stale_after < Instant::now() {
            reserved.clear();
            return None;
        }
        if not_before.is_some_and(|due| slot < due) {
            return None;
        }
        reserved.pop_front()
    }

    /// Takes `count` slots of the account's schedule in one round trip, learning the database's
    /// clock from it.
    async fn reserve(
        &self,
        account: &str,
        period: Duration,
        lead: Duration,
        not_before: Option<time::OffsetDateTime>,
        count: u32,
    ) -> Result<VecDeque<(time::OffsetDateTime, Duration)>, PacerError> {
        let asked = Instant::now();
        let reservation = crate::store::reserve_pacer_slots(
            &self.pool,
            account,
            period,
            RECOVERY_STEP,
            lead,
            not_before,
            count,
        )
        .await?;
        let answered = Instant::now();
        self.clock
            .lock()
            .expect("pacer clock poisoned")
            .observe(asked, answered, reservation.now);
        // Read after the round trip: a push made during it may have moved these slots too, so
        // it is not counted as moving only the slots after them.
        let pushed_before = self.flights.pushed(account);
        Ok(reservation.slots().map(|s| (s, pushed_before)).collect())
    }

    fn to_local(&self, slot: time::OffsetDateTime) -> Instant {
        self.clock
            .lock()
            .expect("pacer clock poisoned")
            .to_local(slot)
    }

    pub(super) async fn release(
        &self,
        account: &str,
        slot: time::OffsetDateTime,
    ) -> Result<(), sqlx::Error> {
        crate::store::release_pacer_slot(&self.pool, account, slot).await
    }

    pub(super) async fn throttled(&self, account: &str) -> Result<(), sqlx::Error> {
        crate::store::throttle_pacer(
            &self.pool,
            account,
            self.rate(account).period(),
            THROTTLE_SLOWDOWN,
            MAX_SLOWDOWN,
        )
        .await
    }

    /// Resumes the schedule no earlier than `time_left` from now (the gateway's `TimeLeft`), at
    /// most once per `time_left` however many replicas report the same throttle; `slowdown`
    /// stays as it is.
    pub(super) async fn throttled_for(
        &self,
        account: &str,
        time_left: Duration,
    ) -> Result<(), sqlx::Error> {
        crate::store::throttle_pacer(&self.pool, account, time_left, 1.0, MAX_SLOWDOWN).await
    }

    /// Pushes the account's schedule back by `by`. Pushes that come while one is on its way
    /// are added up and sent as one statement after it: under load most calls of a high quota
    /// leave a few milliseconds late, and a statement each cost the database as much as the
    /// rest of the call's records. Sent from a task of its own, so a caller that goes away
    /// cannot leave the account's pushes waiting.
    pub(super) fn push_back(&self, account: &str, by: Duration) {
        {
            let mut pushes = self.pushes.lock().expect("pacer pushes poisoned");
            let pending = account_entry(&mut pushes, account);
            pending.by += by;
            if pending.sending {
                return;
            }
            pending.sending = true;
        }
        let (pool, pushes, account) = (self.pool.clone(), self.pushes.clone(), account.to_owned());
        tokio::spawn(async move {
            loop {
                let by = {
                    let mut pushes = pushes.lock().expect("pacer pushes poisoned");
                    let pending = pushes.get_mut(&account).expect("a pending push stays");
                    let by = std::mem::take(&mut pending.by);
                    if by.is_zero() {
                        pending.sending = false;
                        return;
                    }
                    by
                };
                if let Err(e) = crate::store::push_back_pacer(&pool, &account, by).await {
                    tracing::debug!(error = %e, "could not push the pacer back");
                }
            }
        });
    }
}

/// Pushes of an account's schedule not yet sent, and whether a statement is on its way.
#[derive(Default)]
struct PendingPush {
    by: Duration,
    sending: bool,
}
