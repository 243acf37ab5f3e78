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

/// The same clock 20 minutes off STS's, with credentials that only STS hands out: the worker
/// assumes a RAM role and learns the account's UID (`AssumeRole`, `GetCallerIdentity`, both
/// refusing a timestamp 15 minutes off, as Alibaba's STS does). It learns STS's time from the
/// first refusal's `Date`, so it starts, with at most one refused STS call, and every job
/// succeeds on the role's credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_twenty_minutes_ahead_still_hands_out_the_roles_credentials() {
    const UID: &str = "1234567890123456";
    const ROLE: &str = "acs:ram::1234567890123456:role/stopcaster";
    let mut config = FakeLiveConfig::new(vec![(KEY_ID.into(), Secret::new(KEY_SECRET))])
        .with_account(KEY_ID, UID);
    config.qps = 1000;
    config.clock_offset_s = AHEAD_S;
    config.ram_roles = vec![stopcaster_fake_live::Role::parse(ROLE).unwrap()];
    let env = TestEnv::with_fake(config).await;
    // The aliyun CLI's RamRoleArn profile: the static key only assumes the role.
    let dir = common::temp_dir("sts-skew");
    let cli_config = dir.join("config.json");
    std::fs::write(
        &cli_config,
        format!(
            r#"{{"current":"ram","profiles":[{{"name":"ram","mode":"RamRoleArn",
              "access_key_id":"{KEY_ID}","access_key_secret":"{KEY_SECRET}",
              "ram_role_arn":"{ROLE}"}}]}}"#
        ),
    )
    .unwrap();
    let cli_config = cli_config.display().to_string();
    let worker = env.spawn_worker(&[
        ("STOPCASTER_QPS", "50"),
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", ""),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ""),
        ("ALIBABA_CLOUD_CONFIG_FILE", &cli_config),
        // Learnt from STS, as in production without a configured UID.
        ("STOPCASTER_ACCOUNT_UID", ""),
    ]);
    worker.wait_ready().await;
    let casters: Vec<String> = (0..20).map(|i| format!("sts-skew-{i}")).collect();
    env.publish_jobs(&casters).await;
    env.wait_terminal(20, Duration::from_secs(60)).await;
    assert_eq!(env.count_status("succeeded").await, 20);

    let calls = env.fake.calls();
    let sts_refused = calls
        .iter()
        .filter(|c| c.action.as_deref() != Some("StopCaster"))
        .filter(|c| c.code.as_deref() == Some("InvalidTimeStamp.Expired"))
        .count();
    assert!(
        sts_refused <= 1,
        "{sts_refused} STS calls refused for their timestamp"
    );
    let assumed = calls
        .iter()
        .filter(|c| c.action.as_deref() == Some("AssumeRole") && c.code.is_none())
        .count();
    assert!(assumed >= 1, "no AssumeRole succeeded: {calls:?}");
    // Every job was stopped with the role's temporary key, not the static one.
    let static_key_calls = calls
        .iter()
        .filter(|c| c.action.as_deref() == Some("StopCaster"))
        .filter(|c| c.access_key_id.as_deref() == Some(KEY_ID))
        .count();
    assert_eq!(static_key_calls, 0);
    let logs = worker.logs().join("\n");
    assert!(logs.contains("clock differs from STS's"), "{logs}");
    assert!(!logs.contains("cannot learn the account UID"), "{logs}");
    assert!(
        calls
            .iter()
            .filter(|c| c.action.as_deref() == Some("StopCaster") && c.http_status == Some(200))
            .all(|c| c.account_uid.as_deref() == Some(UID)),
        "calls outside the role's account"
    );
    std::fs::remove_dir_all(&dir).ok();
}
