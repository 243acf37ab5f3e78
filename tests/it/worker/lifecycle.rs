//! The worker's life: killed mid-batch and restarted, drained on SIGTERM, started before its
//! database, stopped while the database is away.

use super::*;

#[tokio::test]
async fn sigkill_mid_batch_then_restart_finishes_every_job_once() {
    let mut config = FakeLiveConfig::new(vec![(common::KEY_ID.into(), Secret::new(KEY_SECRET))]);
    config.qps = 1000;
    config.latency = Duration::from_millis(30);
    let env = TestEnv::with_fake(config).await;
    let casters: Vec<String> = (0..120).map(|i| format!("studio-kill-{i}")).collect();
    let ids = env.publish_jobs(&casters).await;
    let worker = env.spawn_worker(&[("STOPCASTER_QPS", "100"), ("STOPCASTER_CONCURRENCY", "8")]);
    // Kill it once some, not all, jobs are done.
    common::wait_for(Duration::from_secs(30), || {
        let env = &env;
        async move { env.count_status("succeeded").await >= 20 }
    })
    .await
    .expect("progress before the kill");
    worker.signal("KILL");
    drop(worker);
    assert!(
        env.count_status("succeeded").await < casters.len() as i64,
        "killed mid-batch"
    );
    let _again = env.spawn_worker(&[("STOPCASTER_QPS", "100"), ("STOPCASTER_CONCURRENCY", "8")]);
    env.wait_terminal(casters.len() as i64, Duration::from_secs(90))
        .await;
    assert_eq!(env.count_status("succeeded").await, casters.len() as i64);
    assert_eq!(env.count_status("pending").await, 0);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM caster_stop_jobs")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(n, casters.len() as i64, "exactly one row per job");
    for c in &casters {
        assert_eq!(env.fake.caster(c), Some(StudioState::Stopped));
    }
    // Every attempt row is complete (a call interrupted by the kill is marked as such).
    let open: i64 =
        sqlx::query_scalar("SELECT count(*) FROM caster_stop_attempts WHERE outcome IS NULL")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(open, 0);
    let _ = ids;
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let mut config = FakeLiveConfig::new(vec![(common::KEY_ID.into(), Secret::new(KEY_SECRET))]);
    config.qps = 1000;
    config.latency = Duration::from_millis(300);
    let env = TestEnv::with_fake(config).await;
    let mut worker =
        env.spawn_worker(&[("STOPCASTER_QPS", "1000"), ("STOPCASTER_CONCURRENCY", "4")]);
    worker.wait_ready().await;
    let casters: Vec<String> = (0..40).map(|i| format!("studio-term-{i}")).collect();
    env.publish_jobs(&casters).await;
    common::wait_for(Duration::from_secs(30), || {
        let env = &env;
        async move { !env.fake.calls().is_empty() }
    })
    .await
    .unwrap();
    worker.signal("TERM");
    let status = worker.wait_exit(Duration::from_secs(40)).await;
    assert!(
        status.success(),
        "exit status {status:?}; logs:\n{}",
        worker.logs().join("\n")
    );
    // Whatever was called is recorded; nothing is left half-done.
    let calls = env.fake.calls().len() as i64;
    assert!(calls < casters.len() as i64, "it stopped taking work");
    assert_eq!(env.count_status("succeeded").await, calls);
    let half_done: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM caster_stop_jobs WHERE status = 'pending' AND attempts > 0",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(
        half_done, 0,
        "in-flight calls finished and were recorded before exit"
    );
    // The rest is still queued for the next worker.
    assert_eq!(
        env.queue_len(&env.names().jobs).await as i64,
        casters.len() as i64 - calls
    );
}

/// A TCP forwarder to the real Postgres that refuses connections until opened: a database that
/// is down, then back, without disturbing the server other tests use.
async fn gated_postgres() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let open = std::sync::Arc::new(AtomicBool::new(false));
    let gate = open.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            if !gate.load(Ordering::SeqCst) {
                continue; // dropped: the client sees the connection closed
            }
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect("127.0.0.1:5432").await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (addr, open)
}

#[tokio::test]
async fn a_worker_started_before_its_database_waits_then_serves() {
    let env = fast_env().await;
    let (addr, open) = gated_postgres().await;
    let url = env
        .database_url
        .replace("127.0.0.1:5432", &addr.to_string());
    let worker = env.spawn_worker(&[("STOPCASTER_QPS", "1000"), ("DATABASE_URL", &url)]);
    worker
        .wait_log("database unavailable at start", Duration::from_secs(30))
        .await;
    let ids = env.publish_jobs(&["studio-late-db".to_owned()]).await;
    open.store(true, std::sync::atomic::Ordering::SeqCst);
    env.wait_terminal(1, Duration::from_secs(30)).await;
    assert_eq!(env.job(ids[0]).await["status"], "succeeded");
}

#[tokio::test]
async fn sigterm_while_the_database_is_unreachable_exits_zero() {
    let env = fast_env().await;
    let (addr, _closed) = gated_postgres().await;
    let url = env
        .database_url
        .replace("127.0.0.1:5432", &addr.to_string());
    let mut worker = env.spawn_worker(&[("DATABASE_URL", &url)]);
    worker
        .wait_log("database unavailable at start", Duration::from_secs(30))
        .await;
    worker.signal("TERM");
    let status = worker.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{}", worker.logs().join("\n"));
    worker
        .wait_log(
            "shut down before the database was reachable",
            Duration::from_secs(1),
        )
        .await;
}

/// The broker cancels the worker's consumer (`basic.cancel`) when its queue is deleted, as when
/// an operator deletes and re-declares it or a quorum queue's leader moves: the worker declares
/// the queues again and consumes again on its own, and jobs published afterwards are processed.
#[tokio::test]
async fn a_consumer_cancelled_by_the_broker_consumes_again() {
    let env = fast_env().await;
    let worker = env.spawn_worker(FAST);
    worker.wait_ready().await;
    env.publish_jobs(&["studio-before-cancel".to_owned()]).await;
    env.wait_terminal(1, Duration::from_secs(30)).await;
    let (conn, channel) = env.amqp().await;
    channel
        .queue_delete(
            env.names().jobs.as_str().into(),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await
        .expect("delete P.jobs");
    conn.close(200, "".into()).await.ok();
    worker
        .wait_log("the broker cancelled the consumer", Duration::from_secs(30))
        .await;
    // The worker itself declared the queue again and consumes from it.
    common::wait_for(Duration::from_secs(30), || {
        let logs = worker.logs.clone();
        async move {
            logs.lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains("consuming") && l.contains("prefetch"))
                .count()
                >= 2
        }
    })
    .await
    .expect("consuming again");
    let casters: Vec<String> = (0..10)
        .map(|i| format!("studio-after-cancel-{i}"))
        .collect();
    env.publish_jobs(&casters).await;
    env.wait_terminal(11, Duration::from_secs(30)).await;
    assert_eq!(env.count_status("succeeded").await, 11);
    let logs = worker.logs().join("\n");
    assert!(
        !logs.contains("broker session ended"),
        "the session was kept:\n{logs}"
    );
}
