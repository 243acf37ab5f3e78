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
//! Calls go out on time: slots are handed out at least `PREPARE_LEAD` (100 ms) ahead, and
//! [`Pacer::acquire`] returns that much before the slot, so the caller records its attempt,
//! then waits for [`Slot::due`] and sends. A call that still
//! leaves late (a slow database, a pause) pushes the schedule back by its lateness
//! ([`Pacer::sent`], reported as the call leaves, not when it is answered), so the calls after it keep their distance from it, and no window of one
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

/// How long before its slot [`Pacer::acquire`] returns, for the caller's bookkeeping (the
/// commit of its attempt). A commit waits for the disk, which on a cloud disk now and then
/// takes tens of milliseconds; a call it makes late costs the schedule its lateness. At 25 ms,
/// a warm bench batch 2 s away saw a call leave about 100 ms after its slot.
pub const PREPARE_LEAD: Duration = Duration::from_millis(100);

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
            margin: Duration::from_millis(crate::config::DEFAULT_PACER_MARGIN_MS),
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
        self.acquire_from(account, None).await
    }

    /// [`Pacer::acquire`], the slot no earlier than `not_before` (a scheduled job's due time,
    /// on the database's clock for the shared pacer). Called shortly before that time, it
    /// reserves the slot ahead, so the call leaves at the due time, and the next ones at the
    /// pace after it.
    pub async fn acquire_from(
        &self,
        account: &str,
        not_before: Option<time::OffsetDateTime>,
    ) -> Result<Slot, PacerError> {
        match self {
            Pacer::Local(p) => Ok(p.acquire(account, not_before).await),
            Pacer::Shared(p) => p.acquire(account, not_before).await,
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
        tracing::debug!(
            late_ms = late.as_millis() as u64,
            "call left late; schedule pushed back"
        );
        match (self, &slot.token) {
            (Pacer::Local(p), SlotToken::Local { account, .. }) => p.push_back(account, late),
            (Pacer::Shared(p), SlotToken::Shared { account, .. }) => {
                if let Err(e) = crate::store::push_back_pacer(&p.pool, account, late).await {
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

    async fn acquire(&self, account: &str, not_before: Option<time::OffsetDateTime>) -> Slot {
        let gate = self.gates.gate(account);
        let _one_at_a_time = gate.lock().await;
        let period = (self.rates)(account).period();
        let (slot, wait) = {
            let mut state = self.state.lock().expect("pacer state poisoned");
            let entry = state
                .entry(account.to_owned())
                .or_insert((Duration::ZERO, 1.0));
            let now = self.epoch.elapsed();
            // The due time on this process's clock (the wall clock's distance to it).
            let floor = not_before
                .and_then(|t| Duration::try_from(t - time::OffsetDateTime::now_utc()).ok())
                .map_or(Duration::ZERO, |ahead| now + ahead);
            let earliest = (now + PREPARE_LEAD).max(floor);
            let (slot, tat) = gcra_step(entry.0, earliest, period.mul_f64(entry.1));
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
        }
    }

    async fn acquire(
        &self,
        account: &str,
        not_before: Option<time::OffsetDateTime>,
    ) -> Result<Slot, PacerError> {
        let gate = self.gates.gate(account);
        let _one_at_a_time = gate.lock().await;
        let period = (self.rates)(account).period();
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

    async fn release(&self, account: &str, slot: time::OffsetDateTime) -> Result<(), sqlx::Error> {
        crate::store::release_pacer_slot(&self.pool, account, slot).await
    }

    async fn throttled(&self, account: &str) -> Result<(), sqlx::Error> {
        crate::store::throttle_pacer(
            &self.pool,
            account,
            (self.rates)(account).period(),
            THROTTLE_SLOWDOWN,
            MAX_SLOWDOWN,
        )
        .await
    }
}

/// Maps the database's clock onto this process's monotonic clock, the way NTP does: every
/// reservation is a sample (asked, answered, the database's reading, which lies between the
/// two), and the sample with the shortest round trip bounds the offset most tightly. A kept
/// sample counts as a millisecond worse per second of age, so the estimate follows drift.
/// Mapping a slot through the offset, rather than adding the database's "wait" to the time of
/// the answer, keeps a slow answer (a commit, a busy backend) from shifting a single call.
#[derive(Clone, Debug)]
pub struct ClockSync {
    base: Instant,
    base_wall: time::OffsetDateTime,
    best: Option<ClockSample>,
}

#[derive(Clone, Copy, Debug)]
struct ClockSample {
    rtt: Duration,
    /// Database clock minus local wall clock, in seconds.
    offset: f64,
    taken: Instant,
}

/// Ageing of a kept sample: this much round trip per second of age.
const SAMPLE_AGEING: f64 = 1e-3;

impl ClockSync {
    pub fn new(base: Instant, base_wall: time::OffsetDateTime) -> Self {
        Self {
            base,
            base_wall,
            best: None,
        }
    }

    fn wall(&self, at: Instant) -> f64 {
        let base = self.base_wall.unix_timestamp_nanos() as f64 / 1e9;
        if at >= self.base {
            base + (at - self.base).as_secs_f64()
        } else {
            base - (self.base - at).as_secs_f64()
        }
    }

    /// Takes a sample: the database read `db_now` between `asked` and `answered`.
    pub fn observe(&mut self, asked: Instant, answered: Instant, db_now: time::OffsetDateTime) {
        let rtt = answered.saturating_duration_since(asked);
        let mid = asked + rtt / 2;
        let offset = db_now.unix_timestamp_nanos() as f64 / 1e9 - self.wall(mid);
        let keep = self.best.is_some_and(|b| {
            let aged = b.rtt.as_secs_f64()
                + answered.saturating_duration_since(b.taken).as_secs_f64() * SAMPLE_AGEING;
            aged < rtt.as_secs_f64()
        });
        if !keep {
            self.best = Some(ClockSample {
                rtt,
                offset,
                taken: answered,
            });
        }
    }

    /// The local instant of a database time (the base instant if no sample was taken yet).
    pub fn to_local(&self, db_time: time::OffsetDateTime) -> Instant {
        let offset = self.best.map(|b| b.offset).unwrap_or(0.0);
        let local_wall = db_time.unix_timestamp_nanos() as f64 / 1e9 - offset;
        let since_base = local_wall - self.wall(self.base);
        if since_base >= 0.0 {
            self.base + Duration::from_secs_f64(since_base)
        } else {
            self.base
                .checked_sub(Duration::from_secs_f64(-since_base))
                .unwrap_or(self.base)
        }
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

    #[test]
    fn clock_sync_trusts_the_tightest_round_trip() {
        let base = Instant::now();
        let wall = time::macros::datetime!(2026-01-01 00:00:00 UTC);
        let mut clock = ClockSync::new(base, wall);
        // The database is 2 s ahead. A slow sample (the reading came 40 ms into an 50 ms trip)
        // then a tight one.
        let db = |local_ms: u64| wall + time::Duration::milliseconds(local_ms as i64 + 2000);
        let ms = |n: u64| base + Duration::from_millis(n);
        clock.observe(ms(100), ms(150), db(140));
        clock.observe(ms(200), ms(201), db(200));
        // A later slow sample does not replace the tight one.
        clock.observe(ms(300), ms(360), db(310));
        let slot = db(1000);
        let local = clock.to_local(slot);
        let err = local.max(ms(1000)) - local.min(ms(1000));
        assert!(err <= Duration::from_micros(600), "off by {err:?}");
    }

    #[test]
    fn clock_sync_follows_drift_with_ageing() {
        let base = Instant::now();
        let wall = time::macros::datetime!(2026-01-01 00:00:00 UTC);
        let mut clock = ClockSync::new(base, wall);
        clock.observe(base, base + Duration::from_millis(1), wall);
        // Ten seconds later a 5 ms sample beats the aged 1 ms one (1 + 10 = 11 ms).
        let later = base + Duration::from_secs(10);
        clock.observe(
            later,
            later + Duration::from_millis(5),
            wall + time::Duration::milliseconds(10_003),
        );
        let local = clock.to_local(wall + time::Duration::milliseconds(10_003));
        let want = later + Duration::from_micros(2500);
        let err = local.max(want) - local.min(want);
        assert!(err < Duration::from_micros(10), "off by {err:?}");
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
        // Another account has its own quota: only the preparation lead, no queueing.
        let other = pacer.acquire("b").await.unwrap();
        assert_eq!(other.wait, PREPARE_LEAD);
    }
}
