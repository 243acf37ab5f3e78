//! An outage burns nothing: when the API cannot be reached, cannot be trusted or keeps failing,
//! the account's circuit opens, its jobs wait with their budget untouched, and they all succeed
//! once it works again. Through the real worker, RabbitMQ and Postgres, with the worker's default
//! retry settings (the suite's other tests shorten the backoff).

use std::time::Duration;

use crate::common::{KEY_ID, KEY_SECRET, TestEnv};
use stopcaster::Secret;
use stopcaster_fake_live::{self as fake_live, FakeLiveConfig};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

/// The worker's own retry settings, not the suite's shortened ones.
pub(crate) const DEFAULT_RETRY: [(&str, &str); 2] = [
    ("STOPCASTER_BACKOFF_INITIAL_MS", "500"),
    ("STOPCASTER_BACKOFF_MAX_MS", "30000"),
];

const OPENED: &str = "API unreachable or failing: account paused";

pub(crate) fn config() -> FakeLiveConfig {
    FakeLiveConfig::new(vec![(KEY_ID.into(), Secret::new(KEY_SECRET))])
}

pub(crate) async fn scalar(env: &TestEnv, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&env.pool).await.unwrap()
}

/// Calls that failed for the world's reasons (recorded attempts).
async fn failed_calls(env: &TestEnv) -> i64 {
    scalar(
        env,
        "SELECT count(*) FROM caster_stop_attempts WHERE outcome IN ('transport-error', 'retryable')",
    )
    .await
}

pub(crate) fn studios(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

/// Serves a stand-in with `config` on `port` (again, after an outage) until the token is
/// cancelled.
pub(crate) fn serve_on(
    port: u16,
    config: FakeLiveConfig,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .unwrap();
    let listener = socket.listen(1024).unwrap();
    let token = CancellationToken::new();
    let task = tokio::spawn(fake_live::serve(listener, config, token.clone()));
    (token, task)
}

async fn probes_at_least(worker: &crate::common::Worker, n: usize) {
    let logs = worker.logs.clone();
    crate::common::wait_for(WAIT, || {
        let probes = logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("probing a paused account"))
            .count();
        async move { probes >= n }
    })
    .await
    .expect("the paused account is probed");
}

/// Nothing failed, nothing dead-lettered: every job still pending.
async fn nothing_burned(env: &TestEnv, jobs: i64) {
    assert_eq!(env.count_status("failed").await, 0);
    assert_eq!(env.count_status("pending").await, jobs);
    assert!(env.drain_dead().await.is_empty());
}

async fn all_succeeded(env: &TestEnv, jobs: i64) {
    env.wait_terminal(jobs, WAIT).await;
    assert_eq!(env.count_status("succeeded").await, jobs);
    assert!(env.drain_dead().await.is_empty());
}

/// The endpoint refuses connections for a few seconds mid-batch, then comes back on the same
/// port: no job is dead-lettered, all succeed, and the outage costs a handful of calls (without
/// the circuit, each of the 30 waiting jobs spent its own attempts: dozens in a few seconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_refused_outage_mid_batch_burns_nothing() {
    let env = TestEnv::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let (token, task) = serve_on(port, config());
    let mut settings = DEFAULT_RETRY.to_vec();
    settings.push(("STOPCASTER_ENDPOINT", &endpoint));
    settings.push(("STOPCASTER_STS_ENDPOINT", &endpoint));
    let worker = env.spawn_worker(&settings);
    worker.wait_ready().await;
    env.publish_jobs(&studios("outage", 40)).await;
    crate::common::wait_for(WAIT, || async { env.count_status("succeeded").await >= 10 })
        .await
        .expect("the batch starts");
    token.cancel();
    task.await.unwrap().unwrap();
    worker.wait_log(OPENED, WAIT).await;
    worker.wait_log("Transport.Connect", WAIT).await;
    // The outage itself: long enough for three probes (1 s, 2 s, 4 s apart).
    probes_at_least(&worker, 2).await;
    let during = failed_calls(&env).await;
    assert_eq!(env.count_status("failed").await, 0);
    let (_token, _task) = serve_on(port, config());
    all_succeeded(&env, 40).await;
    eprintln!("outage figures: {during} calls failed during the outage, 0 dead-lettered");
    assert!(during <= 15, "{during} calls failed during the outage");
}

/// An HTTPS endpoint whose certificate the worker does not trust: the account pauses with
/// `Transport.Tls` and burns nothing; restarted with the right CA, every job succeeds without a
/// replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_burns_nothing_until_the_right_ca_is_given() {
    let dir = std::env::temp_dir().join(format!("outage-tls-{}", uuid::Uuid::new_v4()));
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (ca, cert, key) = crate::common::pki::test_pki(&dir);
    let (wrong_ca, _, _) = crate::common::pki::test_pki(&other);
    let mut config = config();
    config.tls = Some(fake_live::tls_config(&cert, &key).unwrap());
    let env = TestEnv::with_fake(config).await;
    let wrong_ca = wrong_ca.to_string_lossy().into_owned();
    let mut settings = DEFAULT_RETRY.to_vec();
    settings.push(("STOPCASTER_CA_FILE", &wrong_ca));
    let mut worker = env.spawn_worker(&settings);
    worker.wait_ready().await;
    env.publish_jobs(&studios("tls", 10)).await;
    worker.wait_log(OPENED, WAIT).await;
    worker.wait_log("Transport.Tls", WAIT).await;
    probes_at_least(&worker, 2).await;
    nothing_burned(&env, 10).await;
    assert!(failed_calls(&env).await <= 10);
    worker.signal("TERM");
    assert!(worker.wait_exit(WAIT).await.success());

    let ca = ca.to_string_lossy().into_owned();
    let mut settings = DEFAULT_RETRY.to_vec();
    settings.push(("STOPCASTER_CA_FILE", &ca));
    let _fixed = env.spawn_worker(&settings);
    all_succeeded(&env, 10).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A host name that does not resolve: the account pauses with `Transport.Dns`; with the right
/// endpoint, every job succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresolvable_host_burns_nothing() {
    let env = TestEnv::new().await;
    let unresolvable = format!("http://stopcaster-outage.invalid:{}", env.fake.addr.port());
    let mut settings = DEFAULT_RETRY.to_vec();
    settings.push(("STOPCASTER_ENDPOINT", &unresolvable));
    let mut worker = env.spawn_worker(&settings);
    worker.wait_ready().await;
    env.publish_jobs(&studios("dns", 10)).await;
    worker.wait_log(OPENED, WAIT).await;
    worker.wait_log("Transport.Dns", WAIT).await;
    probes_at_least(&worker, 2).await;
    nothing_burned(&env, 10).await;
    worker.signal("TERM");
    assert!(worker.wait_exit(WAIT).await.success());

    let _fixed = env.spawn_worker(&DEFAULT_RETRY);
    all_succeeded(&env, 10).await;
}

/// Every call answered 503: the circuit opens with `ServiceUnavailable` once the failures span
/// two studios; probes back off; when the storm ends, every job succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_storm_burns_nothing() {
    let env = TestEnv::new().await;
    env.fake.set_fail_rate(1.0);
    let worker = env.spawn_worker(&DEFAULT_RETRY);
    worker.wait_ready().await;
    env.publish_jobs(&studios("storm", 10)).await;
    worker.wait_log(OPENED, WAIT).await;
    worker.wait_log("ServiceUnavailable", WAIT).await;
    probes_at_least(&worker, 2).await;
    nothing_burned(&env, 10).await;
    let calls = env.fake.calls().len();
    eprintln!("outage figures: {calls} calls in the 503 storm");
    assert!(calls <= 12, "{calls} calls in the storm");
    env.fake.set_fail_rate(0.0);
    all_succeeded(&env, 10).await;
    worker
        .wait_log("the API answered: account resumed", WAIT)
        .await;
}

/// A refused key with 40 jobs waiting for their slots at the default 10 calls per second: the
/// jobs already waiting when the first refusal comes stay home and give their slots back, so
/// the refusal costs one call or two plus the probes, not one per waiting job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_costs_at_most_ten_calls_for_forty_jobs() {
    let env = TestEnv::new().await;
    let worker = env.spawn_worker(&[("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "not-the-secret")]);
    worker.wait_ready().await;
    env.publish_jobs(&studios("refused", 40)).await;
    worker.wait_log("account paused", WAIT).await;
    // Probes 1 s, 2 s and 4 s apart: about 7 s of the pause.
    probes_at_least(&worker, 3).await;
    let calls = env.fake.calls().len();
    eprintln!("outage figures: {calls} calls for 40 jobs with a wrong secret");
    let logs = worker.logs().join("\n");
    assert!(
        !logs.contains("attempt=1 attempt=2"),
        "one attempt per line:\n{logs}"
    );
    assert!(calls <= 10, "{calls} calls");
    nothing_burned(&env, 40).await;
}

/// Answers 500 `InternalError` for the studio `always500` and passes every other request on
/// to `upstream`, one HTTP/1.1 request at a time per connection: the stand-in has no fault of
/// its own for one studio.
async fn failing_studio_proxy(upstream: String) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let http = reqwest::Client::new();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let http = http.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let mut chunk = [0u8; 4096];
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let length: usize = head
                        .lines()
                        .filter_map(|l| l.split_once(':'))
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < end + 4 + length {
                        let mut chunk = [0u8; 4096];
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..end + 4 + length);
                    let mut words = head.split_whitespace();
                    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or("/"));
                    let (status, body) = if path.contains("CasterId=always500") {
                        (
                            500,
                            r#"{"RequestId":"PROXY-500","Code":"InternalError","Message":"always"}"#
                                .to_owned(),
                        )
                    } else {
                        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
                        match http
                            .request(method, format!("{upstream}{path}"))
                            .send()
                            .await
                        {
                            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                            Err(_) => return,
                        }
                    };
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if conn.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// One studio answers 500 every time among healthy ones: a real per-job failure. It is
/// dead-lettered after its 8 attempts, the circuit never opens, the rest succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_always_500_studio_is_still_dead_lettered() {
    let env = TestEnv::new().await;
    let proxy = format!("http://{}", failing_studio_proxy(env.fake.endpoint()).await);
    let worker = env.spawn_worker(&[("STOPCASTER_ENDPOINT", &proxy)]);
    worker.wait_ready().await;
    let mut casters = studios("healthy", 20);
    casters.push("always500".to_owned());
    let ids = env.publish_jobs(&casters).await;
    env.wait_terminal(21, WAIT).await;
    assert_eq!(env.count_status("succeeded").await, 20);
    let bad = env.job(ids[20]).await;
    assert_eq!(bad["status"], "failed");
    assert_eq!(bad["conclusion"], "retries-exhausted");
    assert_eq!(bad["attempts"], 8);
    // The dead letter is published (with confirms) after the verdict is committed.
    let sent = "SELECT count(*) FROM caster_stop_jobs WHERE dead_lettered_at IS NOT NULL";
    crate::common::wait_for(WAIT, || async { scalar(&env, sent).await >= 1 })
        .await
        .expect("the failing studio is dead-lettered");
    let dead = env.drain_dead().await;
    assert_eq!(dead.len(), 1, "only the failing studio is dead-lettered");
    let logs = worker.logs().join("\n");
    assert!(
        !logs.contains("account paused"),
        "the circuit stayed closed:\n{logs}"
    );
}
