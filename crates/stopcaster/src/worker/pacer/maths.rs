//! The pacer's arithmetic, free of I/O so it can be tested alone: one GCRA step and where its
//! slot may start (no lead for an idle schedule), how far a late call pushes the schedule back
//! (at its departure, then at its answer), the floor of an account's round trips, the
//! throttling slowdown and its recovery, the room left to another caller of the account, and
//! the mapping of the database's clock onto this process's.

use std::time::Duration;

use tokio::time::Instant;

use super::{MAX_SLOWDOWN, RECOVERY_STEP, ROOM_MARGIN, Rate, THROTTLE_SLOWDOWN};

/// One GCRA step: given the schedule `tat`, the time `now` and the period, the slot handed out
/// and the new schedule.
pub fn gcra_step(tat: Duration, now: Duration, period: Duration) -> (Duration, Duration) {
    let slot = tat.max(now);
    (slot, slot + period)
}

/// The earliest a new slot may be (before the schedule's `tat`): `now` when the schedule is idle
/// (`tat` not after `now`: no slot is reserved from now on, so this call delays nobody and
/// leaves as soon as its attempt is recorded), else `lead` ahead, so that each call queued on a
/// contended schedule has its attempt recorded before its slot and leaves on time. Never before
/// `not_before` (a scheduled job's due time). The shared pacer's statement computes the same.
pub fn earliest_slot(
    tat: Duration,
    now: Duration,
    lead: Duration,
    not_before: Option<Duration>,
) -> Duration {
    let earliest = if tat <= now { now } else { now + lead };
    not_before.map_or(earliest, |due| earliest.max(due))
}

/// Most slots one reservation of the shared schedule takes.
pub const MAX_BATCH: u32 = 32;

/// How many slots one reservation of the shared schedule takes: the caller's and one for each
/// other call of this process waiting for the same account, as many as fit in a quarter of
/// `lead` at the account's `period`, and at most [`MAX_BATCH`]. At Alibaba's 10 calls a second
/// that is always one (a slot every 100 ms): reserving ahead would keep slots from the pushes
/// of late calls. Where the quota is high (hundreds a second or more) the round trip of each
/// reservation, not the quota, would bound the rate; the batch lets one round trip serve
/// many calls, each still at its own slot.
pub fn batch_size(waiting: usize, period: Duration, lead: Duration) -> u32 {
    let fits = lead.as_nanos() / 4 / period.as_nanos().max(1);
    let fits = u32::try_from(fits).unwrap_or(u32::MAX).max(1);
    let wanted = u32::try_from(waiting).unwrap_or(u32::MAX).saturating_add(1);
    wanted.min(fits).min(MAX_BATCH)
}

/// How far a call that left `late` after its slot pushes the schedule back as it leaves: all
/// of its lateness once that exceeds `tolerance` (half the margin), so the call `qps` later
/// keeps the whole margin for its own jitter; nothing within the tolerance.
pub fn departure_push(late: Duration, tolerance: Duration) -> Duration {
    if late > tolerance {
        late
    } else {
        Duration::ZERO
    }
}

/// What more a call pushes the schedule back once answered: its round trip took `excess` longer
/// than the account's floor, so it may have reached the server up to `late + excess` after its
/// slot (a request written late by a busy process, a new connection, a busy endpoint), which
/// the departure alone did not show. Pushed whole beyond the tolerance, like the departure's,
/// whose push is not counted twice. It lands in time when the answer comes before the slot
/// `qps` later is reserved (about 0.9 s), the only one a late arrival would crowd; an answer a
/// second or more after the slot (a timeout, a far endpoint) pushes nothing, since every slot
/// reserved after it is a second past the arrival.
pub fn answer_push(
    late: Duration,
    excess: Duration,
    answered_after_slot: Duration,
    tolerance: Duration,
) -> Duration {
    if answered_after_slot >= Duration::from_secs(1) {
        return Duration::ZERO;
    }
    departure_push(late + excess, tolerance).saturating_sub(departure_push(late, tolerance))
}

/// What is left of a call's `push` (its whole arrival lateness beyond the tolerance) once the
/// pushes this process made since the call's slot was reserved are counted: each of them moved
/// every slot reserved after it, the slot `qps` after this call's among them, so a call no
/// later than they add up to needs no push of its own. Late calls reserved together (a queue
/// of a high quota, a batch) then push the schedule by the latest one's lateness, not by the
/// sum of theirs.
pub fn uncovered(push: Duration, pushed_since_reserved: Duration) -> Duration {
    push.saturating_sub(pushed_since_reserved)
}

/// The shortest round trip of an account's calls lately: a round trip above it is a call that
/// may have arrived late. A kept floor counts as [`FLOOR_AGEING`] worse per second of age, so a
/// lasting change of the endpoint's latency becomes the new floor within seconds.
#[derive(Clone, Copy, Debug)]
pub struct RttFloor {
    rtt: Duration,
    taken: Instant,
}

/// Ageing of a kept round-trip floor, per second of age.
pub const FLOOR_AGEING: Duration = Duration::from_millis(20);

impl RttFloor {
    /// No floor yet: the first round trip counts whole as excess (the first call of an account
    /// is the one most likely to arrive late: a new connection, a busy start).
    pub fn excess(floor: Option<&Self>, rtt: Duration, at: Instant) -> Duration {
        floor.map_or(rtt, |f| rtt.saturating_sub(f.aged(at)))
    }

    /// The floor after a round trip of `rtt` answered at `at`.
    pub fn observe(floor: Option<Self>, rtt: Duration, at: Instant) -> Self {
        match floor {
            Some(f) if f.aged(at) <= rtt => f,
            _ => Self { rtt, taken: at },
        }
    }

    fn aged(&self, at: Instant) -> Duration {
        self.rtt + FLOOR_AGEING.mul_f64(at.saturating_duration_since(self.taken).as_secs_f64())
    }
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
    fn late_calls_reserved_together_push_by_the_latest_not_the_sum() {
        let ms = Duration::from_millis;
        // Three calls reserved before any push, late by 5, 5 and 8 ms.
        let mut pushed = Duration::ZERO;
        for (late, expected) in [(5, 5), (5, 0), (8, 3)] {
            let push = uncovered(ms(late), pushed);
            assert_eq!(push, ms(expected), "late {late} ms");
            pushed += push;
        }
        // A call reserved after those pushes is late on the moved schedule: pushed whole.
        assert_eq!(uncovered(ms(4), Duration::ZERO), ms(4));
    }

    #[test]
    fn a_batch_only_where_the_quota_is_high_and_calls_wait() {
        let lead = Duration::from_millis(100);
        let alibaba = Rate::new(10).period();
        // Alibaba's quota: one slot per reservation, however many wait.
        assert_eq!(batch_size(0, alibaba, lead), 1);
        assert_eq!(batch_size(50, alibaba, lead), 1);
        // A quota of 100 a second: two slots fit in a quarter of the lead.
        assert_eq!(batch_size(50, Rate::new(100).period(), lead), 2);
        // A lifted quota: one slot per waiting call, up to the cap.
        let lifted = Rate::new(1_000_000).period();
        assert_eq!(batch_size(0, lifted, lead), 1);
        assert_eq!(batch_size(3, lifted, lead), 4);
        assert_eq!(batch_size(1000, lifted, lead), MAX_BATCH);
    }

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
    fn an_idle_schedule_hands_out_now_and_a_contended_one_the_lead() {
        let ms = Duration::from_millis;
        let lead = ms(100);
        // Idle (the last slot's period is over): the slot is now, the call leaves at once.
        assert_eq!(earliest_slot(ms(900), ms(1000), lead, None), ms(1000));
        assert_eq!(earliest_slot(ms(1000), ms(1000), lead, None), ms(1000));
        // Contended: a slot is reserved from now on, so the lead.
        assert_eq!(earliest_slot(ms(1001), ms(1000), lead, None), ms(1100));
        // A due time later than either wins; an earlier one changes nothing.
        assert_eq!(
            earliest_slot(ms(0), ms(1000), lead, Some(ms(3000))),
            ms(3000)
        );
        assert_eq!(
            earliest_slot(ms(1050), ms(1000), lead, Some(ms(10))),
            ms(1100)
        );
        // Through the GCRA step: an idle slot is now, the next one a period later.
        let (slot, tat) = gcra_step(ms(0), earliest_slot(ms(0), ms(1000), lead, None), ms(100));
        assert_eq!((slot, tat), (ms(1000), ms(1100)));
        let (next, _) = gcra_step(tat, earliest_slot(tat, ms(1001), lead, None), ms(100));
        assert_eq!(next, ms(1101));
    }

    #[test]
    fn a_late_call_pushes_its_lateness_beyond_the_tolerance_once() {
        let ms = Duration::from_millis;
        let tol = ms(2) + Duration::from_micros(500);
        assert_eq!(departure_push(ms(2), tol), Duration::ZERO);
        assert_eq!(departure_push(ms(120), tol), ms(120));
        // Left on time but answered 117 ms slower than usual (a request written late): the
        // answer pushes the whole of it.
        assert_eq!(answer_push(ms(0), ms(117), ms(120), tol), ms(117));
        // Left late and also slow: the departure's push is not counted again.
        let late = ms(40);
        let total = departure_push(late, tol) + answer_push(late, ms(80), ms(125), tol);
        assert_eq!(total, ms(120));
        // Within the tolerance at departure, beyond it with the flight: the whole lateness.
        assert_eq!(answer_push(ms(2), ms(2), ms(5), tol), ms(4));
        // Within the tolerance together: nothing at all.
        assert_eq!(answer_push(ms(1), ms(1), ms(5), tol), Duration::ZERO);
        // Answered a second after the slot: every slot reserved from then on is far enough.
        assert_eq!(answer_push(ms(0), ms(900), ms(1000), tol), Duration::ZERO);
    }

    /// The regression of CI's throttled call: one call reaches the server a period and more
    /// after its slot while the rest are on time. Without its push, a second at the server
    /// holds `qps + 1` calls (CI ran 9/s against a quota of 10, so it took a few milliseconds
    /// of clock error on top for the eleventh); with it, no second holds more than `qps`.
    #[test]
    fn a_call_arriving_late_leaves_no_crowded_second() {
        let qps = 9u32;
        let margin = Duration::from_millis(5);
        let period = (Duration::from_secs(1) + margin) / qps;
        let tol = margin / 2;
        let arrivals = |push: bool| {
            let mut tat = Duration::ZERO;
            let mut out = Vec::new();
            for k in 0..40u32 {
                let (slot, next) = gcra_step(tat, Duration::ZERO, period);
                tat = next;
                let late = if k == 10 {
                    Duration::from_millis(125)
                } else {
                    Duration::ZERO
                };
                out.push(slot + late);
                // Reported at the answer (its flight took the lateness more than usual), by
                // when three more slots are already reserved (two workers, the lead ahead).
                if push && k == 13 {
                    let late = Duration::from_millis(125);
                    tat += answer_push(Duration::ZERO, late, late, tol);
                }
            }
            out.sort();
            out
        };
        let most = |times: &[Duration]| {
            (0..times.len())
                .map(|i| {
                    times[i..]
                        .iter()
                        .take_while(|t| **t - times[i] < Duration::from_secs(1))
                        .count()
                })
                .max()
                .unwrap()
        };
        assert_eq!(most(&arrivals(false)), qps as usize + 1);
        assert!(most(&arrivals(true)) <= qps as usize);
    }

    #[test]
    fn the_round_trip_floor_is_the_least_lately_and_ages() {
        let base = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(RttFloor::excess(None, ms(3), base), ms(3));
        let floor = RttFloor::observe(None, ms(3), base);
        // A slower trip is excess over the floor and does not replace it.
        assert_eq!(RttFloor::excess(Some(&floor), ms(120), base), ms(117));
        let kept = RttFloor::observe(Some(floor), ms(120), base);
        assert_eq!(RttFloor::excess(Some(&kept), ms(3), base), Duration::ZERO);
        // Five seconds on, the floor has aged by 100 ms: a lasting 103 ms is the new floor.
        let later = base + Duration::from_secs(5);
        assert_eq!(
            RttFloor::excess(Some(&kept), ms(103), later),
            Duration::ZERO
        );
        let moved = RttFloor::observe(Some(kept), ms(103), later);
        assert_eq!(RttFloor::excess(Some(&moved), ms(110), later), ms(7));
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
