//! The shared pacer against a real Postgres: spacing across pacers, throttling feedback, and
//! separate quotas per account. Correctness, not timing: assertions are on the database's own
//! slot times.

use crate::common;

use std::time::Duration;

use common::TestEnv;
use stopcaster::pacer::{Pacer, Rate, SharedPacer};
use time::OffsetDateTime;

fn rate(qps: u32) -> impl Fn(&str) -> Rate + Send + Sync + 'static {
    move |_| Rate {
        qps,
        margin: Duration::from_millis(5),
    }
}

async fn take(pacer: &Pacer, account: &str, n: usize) -> Vec<OffsetDateTime> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let slot = pacer.acquire(account).await.expect("slot");
        out.push(
            slot.database_time()
                .expect("shared slots have a database time"),
        );
    }
    out
}

/// Two "replicas" of the shared pacer at `qps`: separate pools, separate processes' worth of
/// state, one database.
async fn two_replicas(env: &TestEnv, qps: u32) -> (Pacer, Pacer) {
    let other_pool = stopcaster::database_pool(&env.database_url, 4)
        .await
        .unwrap();
    (
        Pacer::Shared(SharedPacer::new(env.pool.clone(), rate(qps))),
        Pacer::Shared(SharedPacer::new(other_pool, rate(qps))),
    )
}

/// Both replicas' slots, earliest first, each at least `period` after the one before.
fn spaced(sa: &[OffsetDateTime], sb: &[OffsetDateTime], period: Duration) -> Vec<OffsetDateTime> {
    let mut all: Vec<OffsetDateTime> = sa.iter().chain(sb).copied().collect();
    all.sort();
    for pair in all.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= period, "slots {gap} apart, less than {period:?}");
    }
    all
}

#[tokio::test]
async fn two_pacers_on_one_database_never_hand_out_slots_closer_than_the_interval() {
    let env = TestEnv::new().await;
    let qps = 20;
    let period = Rate {
        qps,
        margin: Duration::from_millis(5),
    }
    .period();
    let (a, b) = two_replicas(&env, qps).await;
    let (sa, sb) = tokio::join!(take(&a, "K", 20), take(&b, "K", 20));
    assert_eq!(sa.len() + sb.len(), 40);
    let all = spaced(&sa, &sb, period);
    // Both replicas got a share, and no one-second window holds more than qps slots.
    assert!(!sa.is_empty() && !sb.is_empty());
    for (i, start) in all.iter().enumerate() {
        let in_window = all[i..]
            .iter()
            .take_while(|t| **t - *start < time::Duration::SECOND)
            .count();
        assert!(
            in_window <= qps as usize,
            "{in_window} slots within one second"
        );
    }
    // Used at full speed: 40 slots span 39 periods (plus scheduling slack).
    let span = *all.last().unwrap() - all[0];
    assert!(
        span >= period * 39 && span < period * 39 + time::Duration::milliseconds(200),
        "span {span}"
    );
}

#[tokio::test]
async fn throttling_feedback_moves_the_shared_schedule() {
    let env = TestEnv::new().await;
    let qps = 50;
    let pacer = Pacer::Shared(SharedPacer::new(env.pool.clone(), rate(qps)));
    take(&pacer, "K", 3).await;
    let (tat_before, slowdown_before) = stopcaster::pacer_state(&env.pool, "K")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(slowdown_before, 1.0);
    pacer.throttled("K").await;
    // A second report of the same event (another replica) does not compound.
    pacer.throttled("K").await;
    let (tat_after, slowdown_after) = stopcaster::pacer_state(&env.pool, "K")
        .await
        .unwrap()
        .unwrap();
    let period = Rate {
        qps,
        margin: Duration::from_millis(5),
    }
    .period();
    assert!(
        tat_after - tat_before >= period,
        "schedule pushed back by a period"
    );
    assert_eq!(slowdown_after, stopcaster::pacer::throttled(1.0));
    // Every replica now waits for the pushed-back slot, then goes slower, then recovers.
    let slots = take(&pacer, "K", 4).await;
    assert!(slots[0] >= tat_after - time::Duration::milliseconds(1));
    let first_gap = slots[1] - slots[0];
    assert!(first_gap >= period.mul_f64(1.2), "slowed down: {first_gap}");
    // Recovering: each slot took some slowdown off. (Read from the row, not from the gaps,
    // which a loaded machine's late wake-ups widen.)
    let (_, slowdown_now) = stopcaster::pacer_state(&env.pool, "K")
        .await
        .unwrap()
        .unwrap();
    assert!(
        slowdown_now < slowdown_after,
        "recovering: {slowdown_now} < {slowdown_after}"
    );
}

#[tokio::test]
async fn accounts_do_not_share_quota() {
    let env = TestEnv::new().await;
    let pacer = Pacer::Shared(SharedPacer::new(env.pool.clone(), rate(2)));
    // Account A's schedule is now a second ahead.
    take(&pacer, "A", 3).await;
    let started = std::time::Instant::now();
    let b = pacer.acquire("B").await.unwrap();
    // Only the preparation lead every slot is handed out with, not A's second.
    assert!(
        b.wait < stopcaster::pacer::PREPARE_LEAD + Duration::from_millis(50),
        "B waited {:?} for A's quota",
        b.wait
    );
    assert!(started.elapsed() < Duration::from_millis(400));
}

#[tokio::test]
async fn an_unused_slot_is_handed_back() {
    let env = TestEnv::new().await;
    let pacer = Pacer::Shared(SharedPacer::new(env.pool.clone(), rate(5)));
    take(&pacer, "K", 1).await;
    let (tat1, _) = stopcaster::pacer_state(&env.pool, "K")
        .await
        .unwrap()
        .unwrap();
    let slot = pacer.acquire("K").await.unwrap();
    let reserved = slot.database_time().unwrap();
    pacer.release(slot).await;
    let (tat2, _) = stopcaster::pacer_state(&env.pool, "K")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tat2, reserved, "the schedule goes back to the unused slot");
    assert!(tat2 <= tat1 + time::Duration::milliseconds(1));
}

/// A quota far above Alibaba's: one reservation takes slots for the calls waiting behind it
/// (`maths::batch_size`). However the slots are taken, two replicas with sixty-four calls
/// each waiting at once get a slot each, never two calls on one, never closer than the period.
#[tokio::test]
async fn a_lifted_quota_hands_each_waiting_call_its_own_slot() {
    let env = TestEnv::new().await;
    // A period of exactly 10 µs, the database's resolution: (1 s + 5 ms) / 100,500.
    let qps = 100_500;
    let period = Rate {
        qps,
        margin: Duration::from_millis(5),
    }
    .period();
    assert_eq!(period, Duration::from_micros(10));
    let (a, b) = two_replicas(&env, qps).await;
    let many = |pacer: Pacer| async move {
        let calls = (0..64).map(|_| {
            let pacer = pacer.clone();
            async move { take(&pacer, "K", 1).await[0] }
        });
        futures_util::future::join_all(calls).await
    };
    let (sa, sb) = tokio::join!(many(a), many(b));
    assert_eq!(spaced(&sa, &sb, period).len(), 128);
}
