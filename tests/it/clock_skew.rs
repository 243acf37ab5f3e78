//! A worker whose clock is 20 minutes off the endpoint's: the stand-in's clock runs ahead
//! (`--clock-offset-s`), so the first calls are refused with `InvalidTimeStamp.Expired`; the
//! worker takes the endpoint's time from the answers' `Date`, signs with it, and every job
//! succeeds without the account pausing or a job spending its budget on the refusals.

use std::time::Duration;

use stopcaster::Secret;
use stopcaster_fake_live::FakeLiveConfig;

use crate::common::{self, KEY_ID, KEY_SECRET, TestEnv};

const AHEAD_S: i64 = 20 * 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_twenty_minutes_ahead_is_signed_for_and_no_job_is_burned() {
    let mut config = FakeLiveConfig::new(vec![(KEY_ID.into(), Secret::new(KEY_SECRET))]);
    config.qps = 1000;
    config.clock_offset_s = AHEAD_S;
    let env = TestEnv::with_fake(config).await;
    let addr = common::free_addr();
    // Fast enough for a quick test, spaced enough that few calls leave before the first answer.
    let worker = env.spawn_worker(&[
        ("STOPCASTER_QPS", "50"),
        ("STOPCASTER_CONCURRENCY", "16"),
        ("STOPCASTER_MAX_ATTEMPTS", "2"),
        ("STOPCASTER_METRICS_ADDR", &addr),
    ]);
    worker.wait_ready().await;
    let casters: Vec<String> = (0..50).map(|i| format!("skew-{i}")).collect();
    env.publish_jobs(&casters).await;
    env.wait_terminal(50, Duration::from_secs(60)).await;
    assert_eq!(env.count_status("succeeded").await, 50);
    assert_eq!(env.queue_len(&env.names().dead).await, 0);

    let calls = env.fake.calls();
    let refused = calls
        .iter()
        .filter(|c| c.code.as_deref() == Some("InvalidTimeStamp.Expired"))
        .count();
    assert!(
        (1..=4).contains(&refused),
        "{refused} calls refused for their timestamp"
    );
    // A refusal the correction cured is given back: no job's budget (2 calls) was spent on it.
    let spent: Vec<i64> = sqlx::query_scalar(
        "SELECT (attempts - refused_attempts)::bigint FROM caster_stop_jobs ORDER BY 1 DESC LIMIT 1",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert_eq!(spent, [1], "each job spent one call of its budget");
    let logs = worker.logs().join("\n");
    assert!(!logs.contains("account paused"), "{logs}");
    assert!(logs.contains("clock differs from the endpoint's"), "{logs}");

    let (_, metrics) = common::http::get(&env.http, &format!("http://{addr}/metrics")).await;
    let skew: i64 = metrics
        .lines()
        .find(|l| l.starts_with("stopcaster_clock_skew_seconds{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no skew in {metrics}"));
    assert!((AHEAD_S - 1..=AHEAD_S + 1).contains(&skew), "skew {skew}");
}
