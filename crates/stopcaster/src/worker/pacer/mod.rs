//! Paces StopCaster calls to an account's quota, across every worker that shares the database.
//!
//! The algorithm is GCRA (virtual scheduling): per account, one timestamp `tat` says when the
//! next call may start. Taking a slot is `slot = max(tat, now); tat = slot + period`, and the
//! caller sleeps until `slot`. `period` is `(1 s + margin) / qps`, so any one-second window at
//! the server sees at most `qps` calls even with a few milliseconds of network and scheduling
//! jitter; the margin ([`DEFAULT_PACER_MARGIN_MS`] by default) costs 0.1 % of the quota per millisecond.
//! The configured margin is a floor: each process widens an account's margin to twice the
//! lateness of nine in ten of its recent calls, at most 20 ms (`margin::JitterWindow`), so a
//! loaded machine lets its usual lateness pass instead of pushing the schedule for each call.
//!
//! The shared pacer keeps `tat` in a Postgres row and advances it with one `UPDATE`, using the
//! database's clock, so replicas need no clock agreement and no new infrastructure. Each process
//! reserves for one account at a time (a local queue), one slot per round trip at Alibaba's
//! quota, so a process that stops can waste at most one slot, and it hands that one back if
//! nobody reserved after it. Where the quota is high (hundreds of calls a second), one round
//! trip takes a slot for each call of the process waiting behind it (`maths::batch_size`,
//! spanning at most a quarter of the lead), so the round trip does not bound the rate.
//!
//! Calls go out on time: on a contended schedule (a slot reserved from now on) slots are handed
//! out at least [`PREPARE_LEAD`] (100 ms; ten periods where the quota is over a hundred calls a
//! second, [`Rate::lead`]) ahead, and [`Pacer::acquire`] returns that much before the slot, so the caller records its attempt, then waits for [`Slot::due`] and sends.
//! An idle schedule hands out the present instead (`maths::earliest_slot`): the call leaves as
//! soon as its attempt is recorded, and that little lateness is pushed back like any other.
//!
//! Late calls: a call that leaves more than half the margin late (a slow database, a pause)
//! pushes the schedule back by its lateness ([`Pacer::sent`], reported as the call leaves, not when
//! it is answered); a call whose round trip took longer than the account's usual
//! (`maths::RttFloor`: a request written late by a busy process, a new connection, a busy
//! endpoint) may have reached the server that much later still, and pushes that back when
//! answered ([`Pacer::answered`]). Slots already reserved keep their time: a late arrival only
//! crowds the call `qps` slots after it, reserved about a second later, after the push. So no
//! window of one second at the server holds more than `qps` calls. Lateness up to half the
//! margin is let pass (the margin absorbs it; tokio's timers alone are a millisecond coarse).
//! A slot reserved through [`Pacer::reserve`] is a [`Reserved`] guard: unless spent on a call,
//! it goes back to the schedule however the caller leaves.
//!
//! Throttling feedback: a `Throttling*` answer means someone outside the schedule shares the
//! quota. The account's `slowdown` (a period multiplier) is multiplied by 1.25 and `tat` pushed
//! back by one period, at most once per period however many replicas report the same event;
//! each later slot takes 0.02 off `slowdown`, so the rate recovers within about a dozen calls,
//! and repeated throttling (a competitor that stays) compounds into a lasting slowdown.
//!
//! Quota headers: after a throttle whose answer says how long until a call is allowed
//! (`TimeLeft`), the schedule resumes then ([`Pacer::throttled_for`]) rather than one period
//! later with a slowdown. The room left to another caller seen in the headers is a lower `qps`
//! for the account, with a wider margin ([`room_rate`]), applied where the worker's rates are
//! read.
//!
//! Here: the pacer either kind is and what a slot is; `maths`: the arithmetic, free of I/O;
//! `margin`: the margin learnt from jitter; `flight`: each account's floor and jitter in this
//! process; `local` and `shared`: the two kinds; `reserved`: the guard.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::DEFAULT_PACER_MARGIN_MS;

mod flight;
mod local;
mod margin;
mod maths;
mod reserved;
mod shared;

pub use local::LocalPacer;
pub use maths::{
    ClockSync, FLOOR_AGEING, MAX_BATCH, RttFloor, answer_push, batch_size, departure_push,
    earliest_slot, gcra_step, recovered, room_rate, throttled, uncovered,
};
pub use reserved::Reserved;
pub use shared::SharedPacer;

/// The value kept for `account` in a per-account map, made on its first use: the account's
/// name is copied only then, not on every call.
fn account_entry<'a, V: Default>(
    map: &'a mut std::collections::HashMap<String, V>,
    account: &str,
) -> &'a mut V {
    if !map.contains_key(account) {
        map.insert(account.to_owned(), V::default());
    }
    map.get_mut(account).expect("inserted above")
}

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

/// The lead is at most this many periods: at Alibaba's quota (up to a hundred calls a second)
/// it is the whole [`PREPARE_LEAD`]; where the quota is lifted far beyond, a call that leaves a
/// few milliseconds after its slot costs the schedule nothing worth a wait, and a lead of a
/// tenth of a second would hold every queued call that long.
pub const LEAD_PERIODS: u32 = 10;

/// Multiplier applied to `slowdown` on a throttled call.
pub const THROTTLE_SLOWDOWN: f64 = 1.25;
/// The least margin beside another caller of the account ([`room_rate`]).
pub const ROOM_MARGIN: Duration = Duration::from_millis(20);
/// Upper bound of `slowdown` (a tenth of the quota).
pub const MAX_SLOWDOWN: f64 = 10.0;
/// What each slot takes off `slowdown` (towards 1).
pub const RECOVERY_STEP: f64 = 0.02;

impl Rate {
    pub fn new(qps: u32) -> Self {
        Self {
            qps: qps.max(1),
            margin: Duration::from_millis(DEFAULT_PACER_MARGIN_MS),
        }
    }

    /// Time between two slots at full speed.
    pub fn period(&self) -> Duration {
        (Duration::from_secs(1) + self.margin) / self.qps.max(1)
    }

    /// How far ahead a contended schedule hands out slots: [`PREPARE_LEAD`], or
    /// [`LEAD_PERIODS`] periods where the quota is higher than a hundred calls a second.
    pub fn lead(&self) -> Duration {
        PREPARE_LEAD.min(self.period() * LEAD_PERIODS)
    }
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
    /// This process's pushes of the account's schedule when the slot was reserved
    /// (`Flights::pushed`).
    pushed_before: Duration,
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

fn token_account(token: &SlotToken) -> &str {
    match token {
        SlotToken::Local { account, .. } | SlotToken::Shared { account, .. } => account,
    }
}

/// The pacer: in-process (one worker) or shared through Postgres (every replica).
#[derive(Clone)]
pub enum Pacer {
    Local(LocalPacer),
    Shared(SharedPacer),
}

impl Pacer {
    /// Reserves the next slot for `account` and sleeps until the lead ([`Rate::lead`]) before it.
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

    /// Reports when a slot's call was sent: if late, the schedule moves back by the lateness
    /// (what of it the pushes since the slot's reservation have not moved it already).
    pub fn sent(&self, slot: &Slot, sent_at: Instant) {
        let late = sent_at.saturating_duration_since(slot.at);
        let push = departure_push(late, self.late_tolerance(&slot.token));
        if self.push_back(slot, push) {
            tracing::debug!(
                late_ms = late.as_millis() as u64,
                "call left late; schedule pushed back"
            );
        }
    }

    /// Reports when a slot's call, sent at `sent_at`, was answered: a round trip longer than the
    /// account's usual may have reached the server late, and the schedule moves back by that
    /// too (beyond what [`Pacer::sent`] pushed).
    pub fn answered(&self, slot: &Slot, sent_at: Instant, answered_at: Instant) {
        let late = sent_at.saturating_duration_since(slot.at);
        let rtt = answered_at.saturating_duration_since(sent_at);
        let tolerance = self.late_tolerance(&slot.token);
        let excess = self
            .flights()
            .excess(token_account(&slot.token), late, rtt, answered_at);
        let beyond_departure = answer_push(
            late,
            excess,
            answered_at.saturating_duration_since(slot.at),
            tolerance,
        );
        // The whole arrival lateness; the departure's push is among the pushes since the
        // reservation, so it is not made twice.
        let push = if beyond_departure.is_zero() {
            Duration::ZERO
        } else {
            beyond_departure + departure_push(late, tolerance)
        };
        if self.push_back(slot, push) {
            tracing::debug!(
                excess_ms = excess.as_millis() as u64,
                "call answered slower than usual; schedule pushed back"
            );
        }
    }

    fn flights(&self) -> &flight::Flights {
        match self {
            Pacer::Local(p) => &p.flights,
            Pacer::Shared(p) => &p.flights,
        }
    }

    /// Pushes the schedule back for `slot`'s call, which `push` is the arrival lateness of, by
    /// what the pushes since its reservation do not cover; true if it pushed.
    fn push_back(&self, slot: &Slot, push: Duration) -> bool {
        if push.is_zero() {
            return false;
        }
        let account = token_account(&slot.token);
        let flights = self.flights();
        let by = uncovered(
            push,
            flights.pushed(account).saturating_sub(slot.pushed_before),
        );
        if by.is_zero() {
            return false;
        }
        flights.add_pushed(account, by);
        self.push_schedule(&slot.token, by);
        true
    }

    fn push_schedule(&self, token: &SlotToken, by: Duration) {
        match (self, token) {
            (Pacer::Local(p), SlotToken::Local { account, .. }) => p.push_back(account, by),
            (Pacer::Shared(p), SlotToken::Shared { account, .. }) => p.push_back(account, by),
            _ => {}
        }
    }

    fn late_tolerance(&self, token: &SlotToken) -> Duration {
        let account = token_account(token);
        let rate = match self {
            Pacer::Local(p) => p.rate(account),
            Pacer::Shared(p) => p.rate(account),
        };
        rate.margin / 2
    }

    /// Reports a throttled call whose answer said when a call is allowed again: the account's
    /// schedule resumes no earlier than `time_left` from now, for everyone (the gateway's own
    /// word, so no slowdown is guessed). Without it, [`Pacer::throttled`].
    pub async fn throttled_for(&self, account: &str, time_left: Option<Duration>) {
        let Some(time_left) = time_left else {
            return self.throttled(account).await;
        };
        match self {
            Pacer::Local(p) => p.throttled_for(account, time_left),
            Pacer::Shared(p) => {
                if let Err(e) = p.throttled_for(account, time_left).await {
                    tracing::warn!(error = %e, "could not record throttling in the shared pacer");
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lead_is_shorter_only_where_the_quota_is_high() {
        assert_eq!(Rate::new(10).lead(), PREPARE_LEAD);
        assert_eq!(Rate::new(100).lead(), PREPARE_LEAD);
        assert_eq!(Rate::new(1000).lead(), Duration::from_micros(10_050));
    }

    #[test]
    fn period_includes_margin() {
        assert_eq!(Rate::new(10).period(), Duration::from_micros(100_500));
        assert_eq!(Rate::new(0).period(), Duration::from_millis(1005));
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
        // Another account has its own quota, idle: its slot is now, not even the lead.
        let other = pacer.acquire("b").await.unwrap();
        assert_eq!(other.wait, Duration::ZERO);
        // Its second slot is contended: at least the lead.
        let second = pacer.acquire("b").await.unwrap();
        assert!(second.wait >= PREPARE_LEAD, "{:?}", second.wait);
    }
}
