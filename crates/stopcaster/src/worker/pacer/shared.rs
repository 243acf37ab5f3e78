//! The pacer shared by every replica: GCRA in a Postgres row per account, on the database's
//! clock, mapped onto this process's clock by [`ClockSync`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::time::Instant;

use super::flight::Flights;
use super::local::LocalGates;
use super::{
    ClockSync, MAX_SLOWDOWN, PREPARE_LEAD, PacerError, RECOVERY_STEP, Rate, Slot, SlotToken,
    THROTTLE_SLOWDOWN,
};

/// GCRA in a Postgres row per account (`stopcaster_pacer`), on the database's clock. Give it
/// a pool from `store::pacer_pool`: its commits skip the WAL flush, which is slow
/// and uneven on a busy disk, and the schedule needs no durability (after a database crash it
/// simply starts from now).
#[derive(Clone)]
pub struct SharedPacer {
    pool: PgPool,
    rates: Arc<dyn Fn(&str) -> Rate + Send + Sync>,
    gates: LocalGates,
    clock: Arc<Mutex<ClockSync>>,
    pub(super) flights: Flights,
}

impl SharedPacer {
    pub fn new(pool: PgPool, rates: impl Fn(&str) -> Rate + Send + Sync + 'static) -> Self {
        Self {
            pool,
            rates: Arc::new(rates),
            gates: LocalGates::default(),
            clock: Arc::new(Mutex::new(ClockSync::new(
                Instant::now(),
                time::OffsetDateTime::now_utc(),
            ))),
            flights: Flights::default(),
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
        let _one_at_a_time = gate.lock().await;
        let period = self.rate(account).period();
        let asked = Instant::now();
        let reservation = crate::store::reserve_pacer_slot(
            &self.pool,
            account,
            period,
            RECOVERY_STEP,
            PREPARE_LEAD,
            not_before,
        )
        .await?;
        let answered = Instant::now();
        let at = {
            let mut clock = self.clock.lock().expect("pacer clock poisoned");
            clock.observe(asked, answered, reservation.now);
            clock.to_local(reservation.slot)
        };
        let slot = reservation.slot;
        let wait = at.saturating_duration_since(answered);
        tokio::time::sleep_until(at - PREPARE_LEAD).await;
        Ok(Slot {
            at,
            wait,
            token: SlotToken::Shared {
                account: account.to_owned(),
                slot,
            },
        })
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

    pub(super) async fn push_back(&self, account: &str, by: Duration) -> Result<(), sqlx::Error> {
        crate::store::push_back_pacer(&self.pool, account, by).await
    }
}
