//! Pacing against a far, TLS endpoint, through the real worker binary, RabbitMQ and Postgres:
//! the stand-in serves HTTPS and holds each new connection's first request back by a round
//! trip, as a handshake with a far endpoint would. A call that opened a connection would then
//! reach the server later than its slot while the next one, on an open connection, arrived on
//! time, and an eleventh call could land in one second. Asserted on the stand-in's own counts,
//! never on wall-clock timing.

use crate::common;

use std::time::Duration;

use common::{ACCOUNT_UID, KEY_ID, KEY_SECRET, TestEnv};
use stopcaster::Secret;
use stopcaster_fake_live::{self as fake_live, FakeLiveConfig};

/// The stand-in's call log, a line per call, for an assertion's message.
fn call_log(calls: &[fake_live::CallLogEntry]) -> String {
    calls
        .iter()
        .map(|c| {
            format!(
                "{} {} {} {:?} {:?}",
                c.time,
                c.access_key_id.as_deref().unwrap_or("-"),
                c.caster_id.as_deref().unwrap_or("-"),
                c.http_status,
                c.code
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Three workers, each on its own AccessKey of one account, start together on a queued batch
/// against an HTTPS stand-in 300 ms away (300 ms to open a connection, 300 ms to answer).
/// Without warm connections the first second of the batch bunched: calls on new connections
/// arrived 300 ms late, and the ones after them, on reused connections, on time (3 runs of
/// this test with STOPCASTER_WARM_CONNECTIONS=false: 3 failures, 3 to 5 throttled calls each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_on_three_keys_of_one_account_stay_within_the_quota_over_tls_far_away() {
    let dir = common::temp_dir("far-endpoint");
    let (ca, cert, key) = common::pki::test_pki(&dir);
    let keys = [
        KEY_ID.to_owned(),
        format!("{KEY_ID}b"),
        format!("{KEY_ID}c"),
    ];
    let mut config = FakeLiveConfig::new(
        keys.iter()
            .map(|k| (k.clone(), Secret::new(KEY_SECRET)))
            .collect(),
    );
    for k in &keys {
        config = config.with_account(k, ACCOUNT_UID);
    }
    config.qps = 10;
    config.latency = Duration::from_millis(300);
    config.connect_delay = Duration::from_millis(300);
    config.tls = Some(fake_live::tls_config(&cert, &key).unwrap());
    let env = TestEnv::with_fake(config).await;

    let studios: Vec<String> = (0..60).map(|i| format!("far-{i}")).collect();
    let ca = ca.to_string_lossy().into_owned();
    let workers: Vec<_> = keys
        .iter()
        .map(|k| {
            env.spawn_worker(&[
                ("ALIBABA_CLOUD_ACCESS_KEY_ID", k),
                ("STOPCASTER_CA_FILE", &ca),
                ("STOPCASTER_TIMEOUT_MS", "5000"),
                ("STOPCASTER_QPS", "10"),
                // Not the subject here: the few milliseconds of jitter a loaded test machine
                // adds after a call leaves (see docs/BENCHMARKS.md, "On a starved machine").
                // A call on a new connection is 300 ms late, which no margin absorbs.
                ("STOPCASTER_PACER_MARGIN_MS", "15"),
            ])
        })
        .collect();
    // Consuming, no call made yet: whatever connections the workers have, they opened before
    // consuming (with STOPCASTER_WARM_CONNECTIONS=false, none, and this test fails).
    for w in &workers {
        w.wait_ready().await;
    }
    env.publish_jobs(&studios).await;
    env.wait_terminal(studios.len() as i64, Duration::from_secs(90))
        .await;
    assert_eq!(env.count_status("succeeded").await, studios.len() as i64);

    let stats = env.fake.stats();
    // Every worker took part, each with its own key.
    for k in &keys {
        assert!(
            stats.admitted_by_key.get(k).copied().unwrap_or(0) > 0,
            "{k} made no call: {stats:?}"
        );
    }
    let max = stats
        .max_in_any_1s_window_by_account
        .get(ACCOUNT_UID)
        .copied()
        .unwrap_or(0);
    assert_eq!(
        stats.throttled,
        0,
        "throttled calls; at most {max} in one second; the stand-in's log:\n{}\nworker logs:\n{}",
        call_log(&env.fake.calls()),
        workers
            .iter()
            .flat_map(|w| w.logs())
            .filter(|l| l.contains("WARN") || l.contains("warmed") || l.contains("pacer"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(max <= 10, "{max} calls of the account in one second");
    drop(workers);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What the worker warms its connections with: `GET /` without parameters is answered, after
/// the stand-in's latency, like any request without `Action`, but it is no call: it is not in
/// the call log and no quota counts it.
#[tokio::test]
async fn a_request_without_parameters_is_answered_but_is_no_call() {
    let mut config = FakeLiveConfig::new(vec![(KEY_ID.into(), Secret::new(KEY_SECRET))]);
    config.latency = Duration::from_millis(50);
    let fake = fake_live::spawn(config).await.unwrap();
    let started = std::time::Instant::now();
    let answer = reqwest::get(format!("{}/", fake.endpoint())).await.unwrap();
    assert_eq!(answer.status(), 400);
    let body: serde_json::Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    assert_eq!(body["Code"], "MissingParameter");
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    assert_eq!(fake.stats().total, 0);
    // A request with parameters but no Action is still a (refused) call in the log.
    let refused = reqwest::get(format!("{}/?CasterId=x", fake.endpoint()))
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(fake.calls().len(), 1);
}

/// A call held up between its slot and its sending (here: its job's row locked for 300 ms, as
/// a slow database commit would) leaves late, and the worker moves the schedule back by its
/// lateness. It must do so when the call leaves, not when its answer comes back: a second
/// later, at this latency, ten more slots would have been handed out on the old schedule, and
/// the late calls would share a server second with them (what a warm batch 2 s away met, and
/// this test met three runs of three before the fix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_leaves_late_moves_the_schedule_before_its_answer_comes_back() {
    let mut config = FakeLiveConfig::new(vec![(KEY_ID.into(), Secret::new(KEY_SECRET))])
        .with_account(KEY_ID, ACCOUNT_UID);
    config.qps = 10;
    config.latency = Duration::from_millis(1000);
    let env = TestEnv::with_fake(config).await;
    let worker = env.spawn_worker(&[
        ("STOPCASTER_QPS", "10"),
        ("STOPCASTER_TIMEOUT_MS", "5000"),
        // As above: scheduling jitter on a loaded test machine is not the subject.
        ("STOPCASTER_PACER_MARGIN_MS", "15"),
    ]);
    worker.wait_ready().await;
    let studios: Vec<String> = (0..50).map(|i| format!("late-{i}")).collect();
    env.publish_jobs(&studios).await;
    common::wait_for(Duration::from_secs(30), || async {
        env.fake.calls().len() >= 10
    })
    .await
    .expect("ten calls");
    // The jobs waiting for their slots cannot record their attempts while this holds them.
    let mut hold = env.pool.begin().await.unwrap();
    let held: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT job_id FROM caster_stop_jobs WHERE status = 'pending' AND attempts = 0
         FOR UPDATE",
    )
    .fetch_all(&mut *hold)
    .await
    .unwrap();
    assert!(!held.is_empty(), "no job waiting for its slot");
    tokio::time::sleep(Duration::from_millis(300)).await;
    hold.commit().await.unwrap();
    let released = time::OffsetDateTime::now_utc();
    env.wait_terminal(studios.len() as i64, Duration::from_secs(60))
        .await;
    assert_eq!(env.count_status("succeeded").await, studios.len() as i64);

    let calls = env.fake.calls();
    let times: Vec<time::OffsetDateTime> = calls
        .iter()
        .map(|c| {
            time::OffsetDateTime::parse(&c.time, &time::format_description::well_known::Rfc3339)
                .unwrap()
        })
        .collect();
    // The hold did hold calls up: a gap of most of its length in an otherwise steady stream.
    let longest_gap = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    assert!(
        longest_gap >= time::Duration::milliseconds(200),
        "the hold delayed no call (longest gap {longest_gap})"
    );
    // The late calls leave at the release and are answered a second later: a schedule moved
    // only then would crowd the next ten calls into their second, throttled within about two
    // seconds of the release. Later in the batch, a throttle is scheduling jitter beyond the
    // margin on a loaded test machine (met once, 4 s after the release, beside three other
    // tests), which the pacing tests bound; here it may cost one call, not more.
    let throttled_at: Vec<time::Duration> = calls
        .iter()
        .zip(&times)
        .filter(|(c, _)| {
            c.code
                .as_deref()
                .is_some_and(|code| code.starts_with("Throttling"))
        })
        .map(|(_, t)| *t - released)
        .collect();
    let near_the_late_calls = throttled_at
        .iter()
        .filter(|d| (time::Duration::ZERO..=time::Duration::milliseconds(2500)).contains(*d))
        .count();
    assert_eq!(
        near_the_late_calls,
        0,
        "throttled calls after the late ones; the stand-in's log:\n{}",
        call_log(&calls)
    );
    assert!(
        throttled_at.len() <= 1,
        "throttled calls: {throttled_at:?} after the release; the stand-in's log:\n{}",
        call_log(&calls)
    );
    drop(worker);
}
