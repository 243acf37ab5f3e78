//! A fleet of accounts paced together through the real workers, RabbitMQ, Postgres and the
//! stand-in: many accounts starting at once (each one's first calls are the ones most likely to
//! reach the endpoint late, with every schedule starting beside it), and an idle account whose
//! job calls without the preparation lead. Correctness, not timing: the stand-in's own counts
//! and the database's own times.

use crate::common;

use std::time::Duration;

use common::TestEnv;
use stopcaster::Secret;
use stopcaster_fake_live::FakeLiveConfig;

const ACCOUNTS: usize = 12;
const JOBS_PER_ACCOUNT: usize = 20;
const WAIT: Duration = Duration::from_secs(120);

fn key_id(i: usize) -> String {
    format!("LTAIfleet{i:03}")
}

fn uid(i: usize) -> String {
    format!("{}", 1_600_000_000_000_000u64 + i as u64)
}

/// The stand-in knows each account's key and UID, at a quota of 10 calls/s per account.
fn fleet_config(accounts: usize) -> FakeLiveConfig {
    let mut config = FakeLiveConfig::new(
        (0..accounts)
            .map(|i| (key_id(i), Secret::new(format!("fleet-secret-{i}"))))
            .collect(),
    );
    for i in 0..accounts {
        config = config.with_account(&key_id(i), &uid(i));
    }
    config.qps = 10;
    config
}

/// An accounts file naming each account's key by environment variable (their UIDs learnt from
/// STS, as in production), and those variables.
fn fleet_worker_env(dir: &std::path::Path, accounts: usize) -> Vec<(String, String)> {
    let specs: Vec<String> = (0..accounts)
        .map(|i| {
            format!(
                r#""a{i}": {{"access_key_id_env": "FLEET_ID_{i}", "access_key_secret_env": "FLEET_SECRET_{i}"}}"#
            )
        })
        .collect();
    let file = dir.join("accounts.json");
    std::fs::write(
        &file,
        format!(r#"{{"accounts": {{{}}}}}"#, specs.join(", ")),
    )
    .unwrap();
    let mut env = vec![
        // 9 calls/s on each account's one shared schedule stay under its 10 whatever the
        // machine's jitter, as in the single-account tests.
        ("STOPCASTER_QPS".to_owned(), "9".to_owned()),
        ("STOPCASTER_ACCOUNT_UID".to_owned(), String::new()),
        (
            "STOPCASTER_ACCOUNTS_FILE".to_owned(),
            file.to_str().unwrap().to_owned(),
        ),
    ];
    for i in 0..accounts {
        env.push((format!("FLEET_ID_{i}"), key_id(i)));
        env.push((format!("FLEET_SECRET_{i}"), format!("fleet-secret-{i}")));
    }
    env
}

/// Jobs of every account interleaved, so that all the schedules start together.
fn interleaved_jobs(accounts: usize, per_account: usize) -> Vec<Vec<u8>> {
    (0..per_account)
        .flat_map(|j| {
            (0..accounts).map(move |i| {
                format!(r#"{{"caster_id":"fleet-{i}-{j}","account":"a{i}"}}"#).into_bytes()
            })
        })
        .collect()
}

/// Twelve accounts, their jobs interleaved and enqueued at once, two workers: every account's
/// schedule starts together with the others', and none of them sees a throttled call or more
/// than its quota in any second.
#[tokio::test]
async fn many_accounts_starting_together_stay_within_their_quota() {
    let env = TestEnv::with_fake(fleet_config(ACCOUNTS)).await;
    let dir = common::temp_dir("fleet");
    let settings = fleet_worker_env(&dir, ACCOUNTS);
    let settings: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let a = env.spawn_worker(&settings);
    let b = env.spawn_worker(&settings);
    a.wait_ready().await;
    b.wait_ready().await;
    let total = ACCOUNTS * JOBS_PER_ACCOUNT;
    env.publish_raw(&interleaved_jobs(ACCOUNTS, JOBS_PER_ACCOUNT))
        .await;
    env.wait_terminal(total as i64, WAIT).await;
    assert_eq!(env.count_status("succeeded").await, total as i64);
    let stats = env.fake.stats();
    assert_eq!(stats.throttled, 0, "{stats:?}");
    assert_eq!(stats.max_in_any_1s_window_by_account.len(), ACCOUNTS);
    for (account, most) in &stats.max_in_any_1s_window_by_account {
        assert!(*most <= 10, "account {account}: {most} in one second");
    }
    std::fs::remove_dir_all(dir).ok();
}

/// An idle account's job is not held for the preparation lead: its slot is the present, so
/// its attempt, recorded after the reservation, starts no earlier than the slot. (With the
/// lead the slot lies 100 ms after the reservation, after the attempt's start.)
#[tokio::test]
async fn an_idle_accounts_job_calls_without_the_preparation_lead() {
    let env = TestEnv::with_fake(fleet_config(1)).await;
    let dir = common::temp_dir("fleet-idle");
    let settings = fleet_worker_env(&dir, 1);
    let settings: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let worker = env.spawn_worker(&settings);
    worker.wait_ready().await;
    env.publish_raw(&interleaved_jobs(1, 1)).await;
    env.wait_terminal(1, WAIT).await;
    let (slot, started): (time::OffsetDateTime, time::OffsetDateTime) = sqlx::query_as(
        "SELECT p.last_slot, a.started_at FROM stopcaster_pacer p, caster_stop_attempts a
         WHERE p.account = $1",
    )
    .bind(uid(0))
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert!(
        slot <= started,
        "slot {slot} after the attempt's start {started}"
    );
    assert_eq!(env.count_status("succeeded").await, 1);
    std::fs::remove_dir_all(dir).ok();
}
