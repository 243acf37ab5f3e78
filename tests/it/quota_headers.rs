//! Alibaba's quota headers through the real worker and the stand-in: the stand-in sends
//! `x-ratelimit-user-api` on every StopCaster answer; the worker exports what it says per
//! account, and leaves room to another caller of the same account that it sees in `Remain`,
//! so that it is (almost) never throttled and still uses the room that caller leaves.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use stopcaster::{CasterId, Credentials, RegionId, Secret, StopCasterRequest};
use stopcaster_fake_live::{CallLogEntry, FakeLiveConfig};
use stopcaster_live::{ClientConfig, LiveClient};

use crate::common::{self, ACCOUNT_UID, KEY_ID, KEY_SECRET, TestEnv};

/// The other caller's key: another key of the worker's account.
const OTHER_KEY: &str = "LTAI5tOtherCaller0002";
const OTHER_SECRET: &str = "Other-Caller-Secret-0002";

fn request<'a>(caster: &'a CasterId, region: &'a RegionId) -> StopCasterRequest<'a> {
    StopCasterRequest {
        caster_id: caster,
        region_id: region,
    }
}

/// Every answer carries the account's quota; a throttle says when the next call is allowed,
/// and `Date` the stand-in's clock.
#[tokio::test]
async fn the_stand_in_sends_the_quota_header_on_every_answer() {
    let mut config = FakeLiveConfig::new(vec![(KEY_ID.into(), Secret::new(KEY_SECRET))]);
    config.qps = 3;
    let fake = stopcaster_fake_live::spawn(config).await.unwrap();
    let client = LiveClient::new(&ClientConfig::new(fake.endpoint())).unwrap();
    let credentials = Credentials::new(KEY_ID, KEY_SECRET);
    let region = RegionId::parse("cn-shanghai").unwrap();
    let mut answers = Vec::new();
    for i in 0..4 {
        let caster = CasterId::parse(&format!("q-{i}")).unwrap();
        answers.push(
            client
                .call(&credentials, request(&caster, &region), None)
                .await,
        );
    }
    let seen: Vec<_> = answers.iter().map(|a| a.quota.binding()).collect();
    assert_eq!(
        seen,
        [Some((3, 2)), Some((3, 1)), Some((3, 0)), Some((3, 0))]
    );
    // Room left: no wait; none left (after the third call, too): until the first call leaves.
    assert!(
        answers[..2]
            .iter()
            .all(|a| a.quota.time_left() == Some(Duration::ZERO))
    );
    assert!(
        answers[3].outcome.is_throttled(),
        "{:?}",
        answers[3].outcome
    );
    let wait = answers[3].quota.time_left().unwrap();
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(1),
        "{wait:?}"
    );
    // Its clock and ours agree: no correction.
    assert_eq!(client.clock_skew(), 0);
}

/// Calls of `key` that passed the throttle, with their times in seconds.
fn admitted(calls: &[CallLogEntry], key: &str) -> Vec<f64> {
    calls
        .iter()
        .filter(|c| c.admitted && c.access_key_id.as_deref() == Some(key))
        .map(|c| {
            let t = time::OffsetDateTime::parse(
                &c.time,
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            t.unix_timestamp_nanos() as f64 / 1e9
        })
        .collect()
}

/// Another caller on the worker's account, three calls a second (one every 340 ms) until
/// `stop`; returns how many calls it made.
fn other_caller(endpoint: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u32> {
    tokio::spawn(async move {
        let client = LiveClient::new(&ClientConfig::new(endpoint)).unwrap();
        let credentials = Credentials::new(OTHER_KEY, OTHER_SECRET);
        let region = RegionId::parse("cn-shanghai").unwrap();
        let mut tick = tokio::time::interval(Duration::from_millis(340));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut made = 0;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let caster = CasterId::parse(&format!("other-{made}")).unwrap();
            client
                .stop_caster(&credentials, request(&caster, &region))
                .await;
            made += 1;
        }
        made
    })
}

/// A 300-job batch at the default quota of 10 while another key of the same account makes 3
/// calls a second: the worker is throttled at most 3 times, and uses at least 0.90 of the room
/// the other caller leaves (0.95 on a quiet machine), measured at the stand-in after the
/// worker's first second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_leaves_room_to_another_caller_of_its_account() {
    let config = FakeLiveConfig::new(vec![
        (KEY_ID.into(), Secret::new(KEY_SECRET)),
        (OTHER_KEY.into(), Secret::new(OTHER_SECRET)),
    ])
    .with_account(KEY_ID, ACCOUNT_UID)
    .with_account(OTHER_KEY, ACCOUNT_UID);
    let env = TestEnv::with_fake(config).await;
    let stop = Arc::new(AtomicBool::new(false));
    let other = other_caller(env.fake.endpoint(), stop.clone());
    let addr = common::free_addr();
    let worker = env.spawn_worker(&[("STOPCASTER_METRICS_ADDR", &addr)]);
    worker.wait_ready().await;
    let n = 300;
    let casters: Vec<String> = (0..n).map(|i| format!("room-{i}")).collect();
    env.publish_jobs(&casters).await;
    env.wait_terminal(n, Duration::from_secs(150)).await;
    let (_, metrics) = common::http::get(&env.http, &format!("http://{addr}/metrics")).await;
    stop.store(true, Ordering::Relaxed);
    let other_calls = other.await.unwrap();
    assert_eq!(env.count_status("succeeded").await, n);

    let calls = env.fake.calls();
    let throttled: Vec<&str> = calls
        .iter()
        .filter(|c| c.access_key_id.as_deref() == Some(KEY_ID))
        .filter(|c| {
            c.code
                .as_deref()
                .is_some_and(|c| c.starts_with("Throttling"))
        })
        .map(|c| c.time.as_str())
        .collect();
    let first = calls.first().map(|c| c.time.as_str());
    if std::env::var_os("QUOTA_TEST_DUMP").is_some() {
        for c in &calls {
            eprintln!(
                "CALL {} {:?} {:?} {}",
                c.time, c.access_key_id, c.code, c.admitted
            );
        }
        for l in worker.logs() {
            eprintln!("LOG {l}");
        }
    }
    assert!(
        throttled.len() <= 3,
        "the worker was throttled {} times (first call {first:?}): {throttled:?}",
        throttled.len()
    );
    let throttled = throttled.len();
    let ours = admitted(&calls, KEY_ID);
    let theirs = admitted(&calls, OTHER_KEY);
    // From the worker's first second on (it learns of the other caller from its first answer).
    let (from, to) = (ours[0] + 1.0, *ours.last().unwrap());
    let rate = |times: &[f64]| {
        times.iter().filter(|t| (from..=to).contains(*t)).count() as f64 / (to - from)
    };
    let (our_rate, their_rate) = (rate(&ours), rate(&theirs));
    let room = 10.0 - their_rate;
    eprintln!(
        "worker {our_rate:.3}/s, other caller {their_rate:.3}/s ({other_calls} calls), room {room:.3}/s, throttled {throttled}"
    );
    // The 0.95 holds on a quiet machine (0.96 to 0.97 in 7 runs, figures in
    // docs/pacing.md); on a loaded one, answers slowed by the load push the schedule back
    // (worker/pacer: a slow round trip may have arrived late), and one run beside a build
    // used 0.94. The assert keeps a margin for CI and still fails a worker that leaves the
    // room unused or backs off after the competitor's calls.
    assert!(
        our_rate >= 0.90 * room,
        "the worker used {our_rate:.3} of the {room:.3} calls a second left"
    );
    assert!(our_rate <= room + 0.2, "{our_rate:.3} > {room:.3}");
    assert!(
        metrics.contains("stopcaster_quota_limit{account=\"default\"} 10"),
        "{metrics}"
    );
    assert!(metrics.contains("stopcaster_quota_remaining{"), "{metrics}");
}

/// Two workers of one account on the shared schedule see each other's calls in `Remain`: they
/// are the schedule's (counted in Postgres), not another caller's, so neither makes room for
/// the other and together they use the whole quota.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sibling_workers_leave_no_room_for_each_other() {
    let config = FakeLiveConfig::new(vec![(KEY_ID.into(), Secret::new(KEY_SECRET))])
        .with_account(KEY_ID, ACCOUNT_UID);
    let env = TestEnv::with_fake(config).await;
    let a = env.spawn_worker(&[]);
    let b = env.spawn_worker(&[]);
    a.wait_ready().await;
    b.wait_ready().await;
    let n = 150;
    let casters: Vec<String> = (0..n).map(|i| format!("sibling-{i}")).collect();
    env.publish_jobs(&casters).await;
    env.wait_terminal(n, Duration::from_secs(90)).await;
    assert_eq!(env.count_status("succeeded").await, n);
    let calls = env.fake.calls();
    let ours = admitted(&calls, KEY_ID);
    let (from, to) = (ours[0] + 1.0, *ours.last().unwrap());
    let rate = ours.iter().filter(|t| (from..=to).contains(*t)).count() as f64 / (to - from);
    eprintln!("two workers: {rate:.3}/s");
    assert!(
        rate >= 0.95 * 10.0,
        "the two workers made {rate:.3} calls a second"
    );
    for worker in [&a, &b] {
        let logs = worker.logs().join("\n");
        assert!(!logs.contains("another caller's calls"), "{logs}");
    }
}
