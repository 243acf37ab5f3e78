//! The worker survives a RabbitMQ restart and a Postgres restart mid-batch. These tests stop
//! shared services, so `scripts/test` runs them apart from the others, one at a time
//! (`.config/nextest.toml`), and each leaves the service running.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::{KEY_SECRET, TestEnv, run_command};
use stopcaster::Secret;
use stopcaster_fake_live::{FakeLiveConfig, StudioState};

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

/// Stops the cluster; `mode` is pg_ctl's shutdown mode (`fast`, `immediate`).
fn stop_postgres(mode: &str) {
    run_command(
        "pg_ctlcluster",
        &[
            "--skip-systemctl-redirect",
            &pg_version(),
            "main",
            "stop",
            "-m",
            mode,
        ],
    );
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
    stop_postgres("fast");
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

/// job_id, caster_id, status, conclusion, attempts, finished_at.
type JobRow = (
    uuid::Uuid,
    String,
    String,
    Option<String>,
    i32,
    Option<time::OffsetDateTime>,
);

/// Two workers, `kill -9` of each, a RabbitMQ restart and a Postgres restart during one batch
/// of 400, with lost responses, 5xx answers and a throttling competitor at the stand-in. Checks
/// what a Jepsen-style checker would, from Postgres and the stand-in's own call log. Prints one
/// summary line (docs/RELIABILITY.md records runs of it).
#[tokio::test]
async fn chaos_keeps_every_invariant() {
    const JOBS: usize = 400;
    const KILLS: i64 = 2;
    let mut config = FakeLiveConfig::new(vec![(common::KEY_ID.into(), Secret::new(KEY_SECRET))]);
    config.qps = 40;
    config.fail_rate = 0.05;
    config.latency = Duration::from_millis(20);
    let env = TestEnv::with_fake(config).await;
    let casters: Vec<String> = (0..JOBS).map(|i| format!("chaos-{i}")).collect();
    let ids = env.publish_jobs(&casters).await;
    let settings = [
        ("STOPCASTER_QPS", "30"),
        ("STOPCASTER_CONCURRENCY", "16"),
        ("STOPCASTER_MAX_ATTEMPTS", "20"),
        ("STOPCASTER_TIMEOUT_MS", "1000"),
        ("RUST_LOG", "info"),
    ];
    let mut a = env.spawn_worker(&settings);
    let mut b = env.spawn_worker(&settings);
    let started = std::time::Instant::now();
    // Lost responses (the studio stops, the answer never comes) and dropped connections,
    // scripted steadily; 5 % of calls answer 503; a competitor spends a third of the quota.
    let stop = tokio_util::sync::CancellationToken::new();
    let faults = {
        // Through the stand-in's admin API: the handle stays with the test.
        let url = format!("{}/_fake/faults", env.fake.endpoint());
        let http = env.http.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.is_cancelled() {
                n += 1;
                let fault = if n.is_multiple_of(3) {
                    "drop"
                } else {
                    "stop-then-drop"
                };
                let _ = http
                    .post(&url)
                    .body(serde_json::json!({ "script": [fault] }).to_string())
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
        })
    };
    let competitor = {
        let endpoint = env.fake.endpoint();
        let stop = stop.clone();
        tokio::spawn(async move {
            let client = stopcaster::LiveClient::new(&stopcaster::ClientConfig::new(endpoint))
                .expect("a client");
            let credentials = stopcaster::Credentials::new(common::KEY_ID, KEY_SECRET);
            let region = stopcaster::RegionId::parse("cn-shanghai").unwrap();
            let mut i = 0u64;
            while !stop.is_cancelled() {
                i += 1;
                let caster = stopcaster::CasterId::parse(&format!("rival-{i}")).unwrap();
                let _ = client
                    .stop_caster(
                        &credentials,
                        stopcaster::StopCasterRequest {
                            caster_id: &caster,
                            region_id: &region,
                        },
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(70)).await;
            }
        })
    };
    let at = |n: i64| {
        let env = &env;
        async move {
            common::wait_for(Duration::from_secs(120), || async {
                env.count_status("succeeded").await >= n
            })
            .await
            .unwrap_or_else(|_| panic!("{n} jobs never succeeded"));
        }
    };
    at(60).await;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    a = env.spawn_worker(&settings);
    at(130).await;
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    b = env.spawn_worker(&settings);
    at(200).await;
    {
        let _restore = Restore(start_rabbitmq);
        run_command("rabbitmqctl", &["stop_app"]);
        tokio::time::sleep(Duration::from_secs(2)).await;
        run_command("rabbitmqctl", &["start_app"]);
    }
    at(270).await;
    {
        let _restore = Restore(start_postgres);
        stop_postgres("immediate");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    env.wait_terminal(JOBS as i64, Duration::from_secs(240))
        .await;
    let elapsed = started.elapsed();
    stop.cancel();
    let _ = faults.await;
    let _ = competitor.await;
    drop((a, b));

    // Every job: exactly one row, none left pending.
    let rows: Vec<JobRow> = sqlx::query_as(
        "SELECT job_id, caster_id, status, conclusion, attempts, finished_at
             FROM caster_stop_jobs",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), JOBS, "exactly one row per job");
    let mut row_ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.0).collect();
    row_ids.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(row_ids, want);
    let calls = env.fake.calls();
    let mut by_caster: std::collections::HashMap<&str, Vec<&stopcaster_fake_live::CallLogEntry>> =
        Default::default();
    for c in &calls {
        if let Some(id) = c.caster_id.as_deref() {
            by_caster.entry(id).or_default().push(c);
        }
    }
    let unknown: std::collections::HashSet<uuid::Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT job_id FROM caster_stop_attempts WHERE outcome_unknown",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let (mut by_evidence, mut extra_attempts) = (0, 0i64);
    for (job_id, caster, status, conclusion, attempts, finished_at) in &rows {
        assert_eq!(status, "succeeded", "{caster}: {status} {conclusion:?}");
        let theirs = by_caster.get(caster.as_str()).cloned().unwrap_or_default();
        // Backed by a 200 at the stand-in, or by an unanswered attempt's evidence.
        let stopped_here = theirs
            .iter()
            .any(|c| c.http_status == Some(200) || c.fault.as_deref() == Some("stop-then-drop"));
        assert!(stopped_here, "{caster}: no call stopped it");
        if conclusion.as_deref() == Some("stopped-by-unanswered-attempt") {
            by_evidence += 1;
            assert!(unknown.contains(job_id), "{caster}: no unanswered attempt");
        }
        assert_eq!(env.fake.caster(caster), Some(StudioState::Stopped));
        // No call after the job's success.
        let finished = finished_at.expect("a finished job has its time");
        for c in &theirs {
            let t = time::OffsetDateTime::parse(
                &c.time,
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            assert!(
                t <= finished + time::Duration::milliseconds(1),
                "{caster}: a call at {t} after its success at {finished}"
            );
        }
        // attempts ≥ calls, and the difference is at most the kills (attempts recorded by a
        // worker killed before its call left).
        let made = theirs.len() as i64;
        let diff = i64::from(*attempts) - made;
        assert!(
            (0..=KILLS).contains(&diff),
            "{caster}: {attempts} attempts for {made} calls"
        );
        extra_attempts += diff;
    }
    let stats = env.fake.stats();
    let attempts: i64 = rows.iter().map(|r| i64::from(r.4)).sum();
    println!(
        "chaos: {JOBS} jobs succeeded in {:.1} s; {} calls by us ({attempts} attempts, {extra_attempts} never sent), \
         {} answered Throttling.User overall, {} by fault {:?}, {by_evidence} concluded by an unanswered attempt; \
         2 kill -9, 1 RabbitMQ restart, 1 Postgres restart",
        elapsed.as_secs_f64(),
        calls
            .iter()
            .filter(|c| c
                .caster_id
                .as_deref()
                .is_some_and(|c| c.starts_with("chaos-")))
            .count(),
        stats.throttled,
        stats.by_fault.values().sum::<u64>(),
        stats.by_fault,
    );
}

/// Five studios scheduled 9 s ahead (far enough that a service is down before the stager's
/// lead window opens) with a worker holding them as `scheduled`.
async fn five_scheduled(tag: &str) -> (TestEnv, common::Worker, time::OffsetDateTime, Vec<String>) {
    use time::format_description::well_known::Rfc3339;
    let env = batch_env(0).await;
    let worker = env.spawn_worker(&[("STOPCASTER_QPS", "100")]);
    worker.wait_ready().await;
    let due = (time::OffsetDateTime::now_utc() + time::Duration::seconds(9))
        .replace_nanosecond(0)
        .unwrap();
    let casters: Vec<String> = (0..5).map(|i| format!("studio-sched-{tag}-{i}")).collect();
    let due_text = due.format(&Rfc3339).unwrap();
    let mut args = vec!["enqueue", "--at", due_text.as_str()];
    args.extend(casters.iter().map(String::as_str));
    let out = env.run_cli(&args, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    common::wait_for(Duration::from_secs(5), || {
        let env = &env;
        async move { env.count_status("scheduled").await == 5 }
    })
    .await
    .expect("scheduled");
    (env, worker, due, casters)
}

/// Each of `casters` was called exactly once, none before `due`; a failure shows every call,
/// every job row and the worker's log.
async fn assert_each_called_once_from(
    env: &TestEnv,
    worker: &common::Worker,
    casters: &[String],
    due: time::OffsetDateTime,
) {
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;
    for c in casters {
        let calls: Vec<OffsetDateTime> = env
            .fake
            .calls()
            .iter()
            .filter(|call| call.caster_id.as_deref() == Some(c.as_str()))
            .map(|call| OffsetDateTime::parse(&call.wall_time, &Rfc3339).unwrap())
            .collect();
        assert_eq!(
            calls.len(),
            1,
            "{c}: once; calls: {:?}; attempts: {:?}; worker: {}",
            env.fake.calls(),
            env.jobs().await,
            worker.logs().join("\n")
        );
        assert!(calls[0] >= due, "{c}: {} before {due}", calls[0]);
    }
}

/// A schedule is the database's: scheduled jobs whose due time passes while Postgres is down
/// run once it is back, each once, none before its due time.
#[tokio::test]
async fn a_schedule_survives_a_postgres_restart_across_its_due_time() {
    use time::OffsetDateTime;
    let (env, worker, due, casters) = five_scheduled("pg").await;
    let _restore = Restore(start_postgres);
    stop_postgres("fast");
    assert!(
        OffsetDateTime::now_utc() < due,
        "stopped before the due time"
    );
    worker
        .wait_log("stager: round failed", Duration::from_secs(10))
        .await;
    let until_after = due + time::Duration::seconds(2) - OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::try_from(until_after).unwrap_or_default()).await;
    assert!(
        env.fake.calls().is_empty(),
        "no call while the schedule was unreadable"
    );
    start_postgres();
    assert_all_done_once(&env, &casters).await;
    assert_each_called_once_from(&env, &worker, &casters, due).await;
    // Every message was consumed: had the stager's commit been cut by the outage after its
    // publishes, the copies it publishes again are acknowledged without a call.
    common::wait_for(Duration::from_secs(10), || {
        let env = &env;
        async move { env.queue_len(&env.names().jobs).await == 0 }
    })
    .await
    .expect("the queue drains");
}

/// Nor does a schedule live in the broker: scheduled jobs whose due time passes while RabbitMQ
/// is down run once it is back, each once, none before its due time.
#[tokio::test]
async fn a_schedule_survives_a_rabbitmq_restart_across_its_due_time() {
    use time::OffsetDateTime;
    let (env, worker, due, casters) = five_scheduled("mq").await;
    {
        let _restore = Restore(start_rabbitmq);
        run_command("rabbitmqctl", &["stop_app"]);
        assert!(
            OffsetDateTime::now_utc() < due,
            "stopped before the due time"
        );
        let until_after = due + time::Duration::seconds(2) - OffsetDateTime::now_utc();
        tokio::time::sleep(Duration::try_from(until_after).unwrap_or_default()).await;
        assert!(
            env.fake.calls().is_empty(),
            "no call while the broker was away"
        );
    }
    assert_all_done_once(&env, &casters).await;
    assert_each_called_once_from(&env, &worker, &casters, due).await;
}
