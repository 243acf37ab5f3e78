//! The pacer's arithmetic, free of I/O so it can be tested alone: one GCRA step, the throttling
//! slowdown and its recovery, the room left to another caller of the account, and the mapping
//! of the database's clock onto this process's.

use std::time::Duration;

use tokio::time::Instant;

use super::{MAX_SLOWDOWN, RECOVERY_STEP, ROOM_MARGIN, Rate, THROTTLE_SLOWDOWN};

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

/// The pace of an account configured at `rate`, whose gateway says its limit is `limit`, while
/// another caller makes `others` calls a second on it (from the quota headers,
/// [`crate::worker::quota`]): the room they leave, never less than one call a second, never
/// more than configured. Beside another caller the margin is at least [`ROOM_MARGIN`]: its
/// calls come at their own times, so the window is full to the last call whenever ours are,
/// and only our margin stands between a few milliseconds of jitter and a throttle.
pub fn room_rate(rate: Rate, limit: Option<u32>, others: u32) -> Rate {
    if others == 0 && limit.is_none_or(|l| l >= rate.qps) {
        return rate;
    }
    let cap = limit.map_or(rate.qps, |l| l.min(rate.qps));
    Rate {
        qps: cap.saturating_sub(others).max(1),
        margin: if others > 0 {
            rate.margin.max(ROOM_MARGIN)
        } else {
            rate.margin
        },
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
    fn room_is_left_to_another_caller() {
        let ten = Rate::new(10);
        let room = |limit, others| {
            let r = room_rate(ten, limit, others);
            (r.qps, r.margin.as_millis())
        };
        assert_eq!(room_rate(ten, None, 0), ten);
        assert_eq!(room_rate(ten, Some(10), 0), ten);
        assert_eq!(room(Some(10), 3), (7, ROOM_MARGIN.as_millis()));
        // The gateway's limit below ours binds; above, ours does.
        assert_eq!(room(Some(5), 0), (5, ten.margin.as_millis()));
        assert_eq!(room(Some(50), 2), (8, ROOM_MARGIN.as_millis()));
        // Never stopped altogether: a call a second still goes.
        assert_eq!(room(Some(10), 12).0, 1);
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
}
