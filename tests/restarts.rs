//! The worker survives a RabbitMQ restart and a Postgres restart mid-batch. These tests stop
//! shared services, so `scripts/test` runs them apart from the others, one at a time
//! (`.config/nextest.toml`), and each leaves the service running.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{KEY_SECRET, TestEnv, run_command};
use stopcaster::Secret;
use stopcaster::fake_live::{FakeLiveConfig, StudioState};

fn pg_version() -> String {
    let mut versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
        .expect("/etc/postgresql")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL cluster")
}

/// Starts the service again even if the test fails half-way.
struct Restore(fn());
impl Drop for Restore {
    fn drop(&mut self) {
        (self.0)()
    }
}

fn start_rabbitmq() {
    let _ = Command::new("rabbitmqctl").arg("start_app").status();
}

fn start_postgres() {
    let _ = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &pg_version(), "main", "start"])
        .status();
    for _ in 0..100 {
        if Command::new("pg_isready")
            .args(["-q", "-h", "127.0.0.1"])
            .status()
            .is_ok_and(|s| s.success())
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn batch_env(latency_ms: u64) -> TestEnv {
    let mut config = FakeLiveConfig::new(vec![(common::KEY_ID.into(), Secret::new(KEY_SECRET))]);
    config.qps = 1000;
    config.latency = Duration::from_millis(latency_ms);
    TestEnv::with_fake(config).await
}

/// 150 jobs published and a worker that has finished some (not all) of them.
async fn batch_under_way(tag: &str) -> (TestEnv, Vec<String>, common::Worker) {
    let env = batch_env(20).await;
    let casters: Vec<String> = (0..150).map(|i| format!("studio-{tag}-{i}")).collect();
    env.publish_jobs(&casters).await;
    let worker = env.spawn_worker(&[("STOPCASTER_QPS", "50"), ("STOPCASTER_CONCURRENCY", "8")]);
    common::wait_for(Duration::from_secs(60), || {
        let env = &env;
        async move { env.count_status("succeeded").await >= 20 }
    })
    .await
    .expect("progress before the restart");
    (env, casters, worker)
}

async fn assert_all_done_once(env: &TestEnv, casters: &[String]) {
    env.wait_terminal(casters.len() as i64, Duration::from_secs(120))
        .await;
    assert_eq!(env.count_status("succeeded").await, casters.len() as i64);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM caster_stop_jobs")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(rows, casters.len() as i64, "exactly one row per job");
    for c in casters {
        assert_eq!(env.fake.caster(c), Some(StudioState::Stopped), "{c}");
    }
    // A job never gets a success after another success: at most one ok attempt each.
    let doubled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT job_id FROM caster_stop_attempts WHERE outcome = 'ok'
                               GROUP BY job_id HAVING count(*) > 1) d",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(doubled, 0);
}

#[tokio::test]
async fn survives_a_rabbitmq_restart_mid_batch() {
    let (env, casters, worker) = batch_under_way("mq").await;
    let _restore = Restore(start_rabbitmq);
    run_command("rabbitmqctl", &["stop_app"]);
    worker
        .wait_log("reconnecting", Duration::from_secs(30))
        .await;
    assert!(
        env.count_status("succeeded").await < casters.len() as i64,
        "restarted mid-batch"
    );
    run_command("rabbitmqctl", &["start_app"]);
    assert_all_done_once(&env, &casters).await;
    assert!(
        worker
            .logs()
            .iter()
            .filter(|l| l.contains("consuming"))
            .count()
            >= 2,
        "it reconnected"
    );
}

#[tokio::test]
async fn survives_a_postgres_restart_mid_batch() {
    let (env, casters, worker) = batch_under_way("pg").await;
    let _restore = Restore(start_postgres);
    run_command(
        "pg_ctlcluster",
        &[
            "--skip-systemctl-redirect",
            &pg_version(),
            "main",
            "stop",
            "-m",
            "fast",
        ],
    );
    worker
        .wait_log("database unavailable", Duration::from_secs(30))
        .await;
    start_postgres();
    // The test's own pool reconnects on demand.
    assert_all_done_once(&env, &casters).await;
    // Nothing was acknowledged before its commit: every message became a finished row and
    // the queue is empty.
    assert_eq!(env.queue_len(&env.names().jobs).await, 0);
}
