//! Paces StopCaster calls to an account's quota, across every worker that shares the database.
//!
//! The algorithm is GCRA (virtual scheduling): per account, one timestamp `tat` says when the
//! next call may start. Taking a slot is `slot = max(tat, now); tat = slot + period`, and the
//! caller sleeps until `slot`. `period` is `(1 s + margin) / qps`, so any one-second window at
//! the server sees at most `qps` calls even with a few milliseconds of network and scheduling
//! jitter; the margin (5 ms by default) costs 0.5 % of the quota.
//!
//! The shared pacer keeps `tat` in a Postgres row and advances it with one `UPDATE`, using the
//! database's clock, so replicas need no clock agreement and no new infrastructure. Each process
//! holds at most one reserved slot per account at a time (a local lock), so a process that stops
//! can waste at most one slot, and it hands that one back if nobody reserved after it.
//!
//! Calls go out on time: [`Pacer::acquire`] returns a little before the slot (`PREPARE_LEAD`),
//! the caller records its attempt, then waits for [`Slot::due`] and sends. A call that still
//! leaves late (a slow database, a pause) pushes the schedule back by its lateness
//! ([`Pacer::sent`]), so the calls after it keep their distance from it, and no window of one
//! second at the server holds more than `qps` calls. Lateness up to half the margin is let
//! pass (the margin absorbs it; tokio's timers alone are a millisecond coarse).
//!
//! Throttling feedback: a `Throttling*` answer means someone outside the schedule shares the
//! quota. The account's `slowdown` (a period multiplier) is multiplied by 1.25 and `tat` pushed
//! back by one period, at most once per period however many replicas report the same event;
//! each later slot takes 0.02 off `slowdown`, so the rate recovers within about a dozen calls,
//! and repeated throttling (a competitor that stays) compounds into a lasting slowdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::time::Instant;

/// Pacing parameters for one account.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub qps: u32,
    pub margin: Duration,
}

/// How long before its slot [`Pacer::acquire`] returns, for the caller's bookkeeping.
pub const PREPARE_LEAD: Duration = Duration::from_millis(25);

/// Multiplier applied to `slowdown` on a throttled call.
pub const THROTTLE_SLOWDOWN: f64 = 1.25;
/// Upper bound of `slowdown` (a tenth of the quota).
pub const MAX_SLOWDOWN: f64 = 10.0;
/// What each slot takes off `slowdown` (towards 1).
pub const RECOVERY_STEP: f64 = 0.02;

impl Rate {
    pub fn new(qps: u32) -> Self {
        Self {
            qps: qps.max(1),
            margin: Duration::from_millis(5),
        }
    }

    /// Time between two slots at full speed.
    pub fn period(&self) -> Duration {
        (Duration::from_secs(1) + self.margin) / self.qps.max(1)
    }
}

/// One GCRA step: given the schedule `tat`, the time `now` and the period, the slot handed out
/// and the new schedule.
pub fn gcra_step(tat: Duration, now: Duration, period: Duration) -> (Duration, Duration) {
    let slot = tat.max(now);
    (slot, slot + period)
}

/// Slowdown after one slot at `slowdown`.
pub fn recovered(slowdown: f64) -> f64 {
    (slowdown - RECOVERY_STEP).max(1.0)
}

/// Slowdown after a throttled call.
pub fn throttled(slowdown: f64) -> f64 {
    (slowdown * THROTTLE_SLOWDOWN).clamp(1.0, MAX_SLOWDOWN)
}

#[derive(Debug, thiserror::Error)]
pub enum PacerError {
    #[error("pacer database: {0}")]
    Database(#[from] sqlx::Error),
}

/// A reserved slot: sleep until `at`, then call. Give it back with [`Pacer::release`] if the
/// call will not be made.
#[derive(Debug)]
pub struct Slot {
    pub at: Instant,
    pub wait: Duration,
    token: SlotToken,
}

impl Slot {
    /// Waits until the slot's time.
    pub async fn due(&self) {
        tokio::time::sleep_until(self.at).await;
    }

    /// The slot's time on the database's clock (shared pacer only).
    pub fn database_time(&self) -> Option<time::OffsetDateTime> {
        match &self.token {
            SlotToken::Shared { slot, .. } => Some(*slot),
            SlotToken::Local { .. } => None,
        }
    }
}

#[derive(Debug)]
enum SlotToken {
    Local {
        account: String,
        slot: Duration,
    },
    Shared {
        account: String,
        slot: time::OffsetDateTime,
    },
}

/// The pacer: in-process (one worker) or shared through Postgres (every replica).
#[derive(Clone)]
pub enum Pacer {
    Local(LocalPacer),
    Shared(SharedPacer),
}

impl Pacer {
    /// Reserves the next slot for `account` and sleeps until [`PREPARE_LEAD`] before it.
    pub async fn acquire(&self, account: &str) -> Result<Slot, PacerError> {
        match self {
            Pacer::Local(p) => Ok(p.acquire(account).await),
            Pacer::Shared(p) => p.acquire(account).await,
        }
    }

    /// Hands back a slot that was reserved and will not be used.
    pub async fn release(&self, slot: Slot) {
        match (self, slot.token) {
            (Pacer::Local(p), SlotToken::Local { account, slot }) => p.release(&account, slot),
            (Pacer::Shared(p), SlotToken::Shared { account, slot }) => {
                if let Err(e) = p.release(&account, slot).await {
                    tracing::debug!(error = %e, "could not hand back a pacer slot");
                }
            }
            _ => {}
        }
    }

    /// Reports when a slot's call was sent: if late, the schedule moves back by the lateness.
    pub async fn sent(&self, slot: &Slot, sent_at: Instant) {
        let late = sent_at.saturating_duration_since(slot.at);
        if late <= self.late_tolerance(&slot.token) {
            return;
        }
        match (self, &slot.token) {
            (Pacer::Local(p), SlotToken::Local { account, .. }) => p.push_back(account, late),
            (Pacer::Shared(p), SlotToken::Shared { account, .. }) => {
                if let Err(e) = crate::storage::push_back_pacer(&p.pool, account, late).await {
                    tracing::debug!(error = %e, "could not push the pacer back");
                }
            }
            _ => {}
        }
    }

    fn late_tolerance(&self, token: &SlotToken) -> Duration {
        let account = match token {
            SlotToken::Local { account, .. } | SlotToken::Shared { account, .. } => account,
        };
        let rates = match self {
            Pacer::Local(p) => &p.rates,
            Pacer::Shared(p) => &p.rates,
        };
        rates(account).margin / 2
    }

    /// Reports a throttled call: slow the account down for everyone.
    pub async fn throttled(&self, account: &str) {
        match self {
            Pacer::Local(p) => p.throttled(account),
            Pacer::Shared(p) => {
                if let Err(e) = p.throttled(account).await {
                    tracing::warn!(error = %e, "could not record throttling in the shared pacer");
                }
            }
        }
    }
}

/// Per-process queueing: one outstanding reservation per account in this process.
#[derive(Clone, Default)]
struct LocalGates(Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>);

impl LocalGates {
    fn gate(&self, account: &str) -> Arc<tokio::sync::Mutex<()>> {
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
}

impl LocalPacer {
    pub fn new(rates: impl Fn(&str) -> Rate + Send + Sync + 'static) -> Self {
        Self {
            rates: Arc::new(rates),
            epoch: Instant::now(),
            state: Arc::default(),
            gates: LocalGates::default(),
        }
    }

    async fn acquire(&self, account: &str) -> Slot {
        let gate = self.gates.gate(account);
        let _one_at_a_time = gate.lock().await;
        let period = (self.rates)(account).period();
        let (slot, wait) = {
            let mut state = self.state.lock().expect("pacer state poisoned");
            let entry = state
                .entry(account.to_owned())
                .or_insert((Duration::ZERO, 1.0));
            let now = self.epoch.elapsed();
            let (slot, tat) = gcra_step(entry.0, now, period.mul_f64(entry.1));
            *entry = (tat, recovered(entry.1));
            (slot, slot.saturating_sub(now))
        };
        let at = self.epoch + slot;
        tokio::time::sleep_until(at - PREPARE_LEAD).await;
        Slot {
            at,
            wait,
            token: SlotToken::Local {
                account: account.to_owned(),
                slot,
            },
        }
    }

    fn release(&self, account: &str, slot: Duration) {
        let mut state = self.state.lock().expect("pacer state poisoned");
        if let Some(entry) = state.get_mut(account) {
            let period = (self.rates)(account).period();
            if entry.0 <= slot + period.mul_f64(MAX_SLOWDOWN) && entry.0 > slot {
                entry.0 = slot;
            }
        }
    }

    fn push_back(&self, account: &str, by: Duration) {
        if let Some(entry) = self
            .state
            .lock()
            .expect("pacer state poisoned")
            .get_mut(account)
        {
            entry.0 += by;
        }
    }

    fn throttled(&self, account: &str) {
        let mut state = self.state.lock().expect("pacer state poisoned");
        let now = self.epoch.elapsed();
        let entry = state
            .entry(account.to_owned())
            .or_insert((Duration::ZERO, 1.0));
        let period = (self.rates)(account).period();
        entry.0 = entry.0.max(now) + period;
        entry.1 = throttled(entry.1);
    }
}

/// GCRA in a Postgres row per account (`stopcaster_pacer`), on the database's clock.
#[derive(Clone)]
pub struct SharedPacer {
    pool: PgPool,
    rates: Arc<dyn Fn(&str) -> Rate + Send + Sync>,
    gates: LocalGates,
}

impl SharedPacer {
    pub fn new(pool: PgPool, rates: impl Fn(&str) -> Rate + Send + Sync + 'static) -> Self {
        Self {
            pool,
            rates: Arc::new(rates),
            gates: LocalGates::default(),
        }
    }

    async fn acquire(&self, account: &str) -> Result<Slot, PacerError> {
        let gate = self.gates.gate(account);
        let _one_at_a_time = gate.lock().await;
        let period = (self.rates)(account).period();
        let (slot, wait) =
            crate::storage::reserve_pacer_slot(&self.pool, account, period, RECOVERY_STEP).await?;
        let at = Instant::now() + wait;
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

    async fn release(&self, account: &str, slot: time::OffsetDateTime) -> Result<(), sqlx::Error> {
        crate::storage::release_pacer_slot(&self.pool, account, slot).await
    }

    async fn throttled(&self, account: &str) -> Result<(), sqlx::Error> {
        crate::storage::throttle_pacer(
            &self.pool,
            account,
            (self.rates)(account).period(),
            THROTTLE_SLOWDOWN,
            MAX_SLOWDOWN,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_spaces_slots_by_the_period() {
        let p = Duration::from_millis(100);
        let (s1, tat) = gcra_step(Duration::ZERO, Duration::from_millis(50), p);
        assert_eq!(
            (s1, tat),
            (Duration::from_millis(50), Duration::from_millis(150))
        );
        // A caller arriving early waits for the schedule.
        let (s2, tat) = gcra_step(tat, Duration::from_millis(60), p);
        assert_eq!(
            (s2, tat),
            (Duration::from_millis(150), Duration::from_millis(250))
        );
        // An idle schedule does not bank credit: the slot is now, not in the past.
        let (s3, _) = gcra_step(tat, Duration::from_secs(5), p);
        assert_eq!(s3, Duration::from_secs(5));
    }

    #[test]
    fn period_includes_margin() {
        assert_eq!(Rate::new(10).period(), Duration::from_micros(100_500));
        assert_eq!(Rate::new(0).period(), Duration::from_millis(1005));
    }

    #[test]
    fn slowdown_rises_on_throttling_and_decays() {
        assert_eq!(throttled(1.0), 1.25);
        assert_eq!(throttled(9.0), MAX_SLOWDOWN);
        let mut s = throttled(1.0);
        let mut steps = 0;
        while s > 1.0 {
            s = recovered(s);
            steps += 1;
        }
        assert_eq!(steps, 13);
    }

    #[tokio::test(start_paused = true)]
    async fn local_pacer_hands_out_spaced_slots() {
        let pacer = Pacer::Local(LocalPacer::new(|_| Rate::new(10)));
        let mut last: Option<Instant> = None;
        for _ in 0..20 {
            let slot = pacer.acquire("a").await.unwrap();
            if let Some(prev) = last {
                assert!(
                    slot.at - prev >= Duration::from_micros(100_500) - Duration::from_micros(1)
                );
            }
            last = Some(slot.at);
        }
        // Another account has its own quota.
        let other = pacer.acquire("b").await.unwrap();
        assert_eq!(other.wait, Duration::ZERO);
    }
}
