//! Waiting never outlives the broker's patience: jobs that wait on a paused account are parked
//! in Postgres (still `pending`) and their deliveries acknowledged, so a long outage neither
//! trips RabbitMQ's `consumer_timeout` nor burns a job. And the headline: a two-minute
//! outage mid-batch of 300 jobs, with the worker's default settings, loses nothing.
//!
//! `consumer_timeout_*` lowers the broker's consumer_timeout for every channel opened while it
//! runs: `scripts/test` runs it in the serial pass, and `.config/nextest.toml` keeps it alone.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{TestEnv, Worker, free_port, wait_for};
use crate::outage;
use stopcaster_fake_live::FakeLiveConfig;

const WAIT: Duration = Duration::from_secs(60);

/// The stand-in of these tests: 1,000 calls a second, so that only the outage limits them.
fn fast_config() -> FakeLiveConfig {
    let mut config = outage::config();
    config.qps = 1000;
    config
}

/// A worker whose account calls the endpoint on `port`, with `extra` settings.
fn worker_on(env: &TestEnv, port: u16, extra: &[(&str, &str)]) -> Worker {
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut settings = outage::DEFAULT_RETRY.to_vec();
    settings.push(("STOPCASTER_ENDPOINT", &endpoint));
    settings.extend_from_slice(extra);
    env.spawn_worker(&settings)
}

/// Every job succeeded with exactly one successful call, none dead-lettered.
async fn all_succeeded_once(env: &TestEnv, jobs: i64, timeout: Duration) {
    env.wait_terminal(jobs, timeout).await;
    assert_eq!(env.count_status("succeeded").await, jobs);
    assert!(env.drain_dead().await.is_empty(), "nothing dead-lettered");
    let twice = outage::scalar(
        env,
        "SELECT count(*) FROM (SELECT job_id FROM caster_stop_attempts WHERE outcome = 'ok'
         GROUP BY job_id HAVING count(*) > 1) t",
    )
    .await;
    assert_eq!(twice, 0, "no studio was stopped twice");
}

/// Lines that show a broker session lost (a consumer_timeout closes the channel).
fn session_losses(worker: &Worker) -> Vec<String> {
    worker
        .logs()
        .into_iter()
        .filter(|l| l.contains("broker session ended") || l.contains("PRECONDITION_FAILED"))
        .collect()
}

/// A broker setting changed for one test, restored when dropped (a failed test included).
struct BrokerEnv {
    key: &'static str,
    previous: String,
}

impl BrokerEnv {
    fn set(key: &'static str, value: &str) -> Self {
        let previous = rabbit_eval(&format!("application:get_env(rabbit, {key})."));
        rabbit_eval(&format!("application:set_env(rabbit, {key}, {value})."));
        Self { key, previous }
    }
}

impl Drop for BrokerEnv {
    fn drop(&mut self) {
        let restore = match self.previous.strip_prefix("{ok,") {
            Some(v) => format!(
                "application:set_env(rabbit, {}, {}).",
                self.key,
                v.trim_end_matches('}')
            ),
            None => format!("application:unset_env(rabbit, {}).", self.key),
        };
        rabbit_eval(&restore);
    }
}

fn rabbit_eval(expr: &str) -> String {
    let out = Command::new("rabbitmqctl")
        .args(["eval", expr])
        .output()
        .expect("rabbitmqctl");
    assert!(out.status.success(), "rabbitmqctl eval {expr}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// With RabbitMQ's consumer_timeout at 10 s (checked every second), an account paused for
/// longer than that (its endpoint refusing connections): the waiting jobs are parked and their
/// deliveries acknowledged, so the broker never closes the channel; when the endpoint is back,
/// all 40 succeed, each with one successful call, and the worker never lost its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_timeout_of_ten_seconds_loses_nothing_while_an_account_is_paused() {
    let _timeout = BrokerEnv::set("consumer_timeout", "10000");
    let _tick = BrokerEnv::set("channel_tick_interval", "1000");
    let env = TestEnv::new().await;
    let port = free_port();
    let (token, task) = outage::serve_on(port, fast_config());
    let worker = worker_on(&env, port, &[("STOPCASTER_PARK_AFTER_S", "3")]);
    worker.wait_ready().await;
    env.publish_jobs(&outage::studios("timeout", 40)).await;
    wait_for(WAIT, || async { env.count_status("succeeded").await >= 5 })
        .await
        .expect("the batch starts");
    token.cancel();
    task.await.unwrap().unwrap();
    let down = Instant::now();
    worker.wait_log("account paused", WAIT).await;
    worker.wait_log("job parked in the database", WAIT).await;
    // Past the consumer_timeout and a few of its checks.
    while down.elapsed() < Duration::from_secs(16) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(env.count_status("failed").await, 0);
    }
    let parked = outage::scalar(
        &env,
        "SELECT count(*) FROM caster_stop_jobs WHERE parked_until IS NOT NULL",
    )
    .await;
    assert_eq!(
        env.count_status("pending").await + env.count_status("succeeded").await,
        40,
        "every job pending or done"
    );
    let (_token, _task) = outage::serve_on(port, fast_config());
    all_succeeded_once(&env, 40, WAIT).await;
    let losses = session_losses(&worker);
    assert!(
        losses.is_empty(),
        "the channel was never closed: {losses:?}"
    );
    eprintln!("consumer_timeout figures: {parked} jobs parked 16 s into the outage, 0 lost");
}

/// The headline, with the worker's default settings (retries, parking, prefetch): 300
/// jobs, the endpoint refusing connections for two minutes a few seconds into the batch. All
/// 300 succeed once it is back, none dead-lettered, a few dozen calls at most while it is
/// down, the first success within a probe interval of its return (probes 1 s doubling to
/// 60 s apart), and the session is never lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_minute_outage_mid_batch_of_300_jobs_burns_nothing() {
    const JOBS: i64 = 300;
    let env = TestEnv::new().await;
    let port = free_port();
    let (token, task) = outage::serve_on(port, fast_config());
    let worker = worker_on(&env, port, &[]);
    worker.wait_ready().await;
    env.publish_jobs(&outage::studios("headline", JOBS as usize))
        .await;
    wait_for(WAIT, || async { env.count_status("succeeded").await >= 50 })
        .await
        .expect("the batch starts");
    token.cancel();
    task.await.unwrap().unwrap();
    let stopped_at: time::OffsetDateTime = sqlx::query_scalar("SELECT now()")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    let before = outage::scalar(
        &env,
        "SELECT count(*) FROM caster_stop_jobs WHERE status = 'succeeded'",
    )
    .await;
    worker.wait_log("account paused", WAIT).await;
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(env.count_status("failed").await, 0, "nothing burned");
    let (_token, _task) = outage::serve_on(port, fast_config());
    let back_at: time::OffsetDateTime = sqlx::query_scalar("SELECT now()")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    all_succeeded_once(&env, JOBS, Duration::from_secs(120)).await;
    let during: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM caster_stop_attempts WHERE started_at >= $1 AND started_at < $2",
    )
    .bind(stopped_at)
    .bind(back_at)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    let first: time::OffsetDateTime = sqlx::query_scalar(
        "SELECT min(finished_at) FROM caster_stop_attempts WHERE outcome = 'ok' AND started_at >= $1",
    )
    .bind(back_at)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    let first_after = (first - back_at).as_seconds_f64();
    let last: time::OffsetDateTime =
        sqlx::query_scalar("SELECT max(finished_at) FROM caster_stop_jobs")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    let parked_max = worker
        .logs()
        .iter()
        .filter(|l| l.contains("job parked in the database"))
        .count();
    eprintln!(
        "outage figures: {JOBS} jobs, {before} done before the 120 s outage, {during} calls during it, \
         {parked_max} parks, first success {first_after:.1} s after the return, all done {:.1} s after it, \
         0 dead-lettered",
        (last - back_at).as_seconds_f64()
    );
    for line in worker.logs().iter().filter(|l| {
        l.contains("probing a paused account")
            || l.contains("answers again")
            || l.contains("resumed")
            || l.contains("paused;")
    }) {
        eprintln!("outage timeline: {line}");
    }
    eprintln!("outage timeline: stopped {stopped_at}, back {back_at}");
    assert!(during <= 30, "{during} calls during the outage");
    // Probes back off to 60 s apart, but the worker checks every second whether the endpoint
    // answers again (no API call) and then probes at once (worker/reach.rs): about a second
    // on a quiet machine. The bound leaves room for a loaded CI machine (it once took more
    // than 2 s beside five builds) and still fails a worker that waits for its next probe.
    assert!(
        first_after <= 10.0,
        "first success {first_after:.1} s after the return"
    );
    let losses = session_losses(&worker);
    assert!(losses.is_empty(), "{losses:?}");
}
