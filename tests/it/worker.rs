//! The worker binary against the real RabbitMQ and Postgres and the stand-in: outcomes, retries,
//! dead letters, malformed messages, idempotency, crashes, shutdown, and secrecy.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use common::{KEY_SECRET, TestEnv};
use stopcaster::Secret;
use stopcaster_fake_live::{FakeLiveConfig, Fault, StudioState};

const FAST: &[(&str, &str)] = &[("STOPCASTER_QPS", "1000"), ("STOPCASTER_CONCURRENCY", "16")];

async fn fast_env() -> TestEnv {
    let mut config = FakeLiveConfig::new(vec![(common::KEY_ID.into(), Secret::new(KEY_SECRET))]);
    config.qps = 1000;
    TestEnv::with_fake(config).await
}

#[tokio::test]
async fn stops_a_studio_and_records_the_request_id() {
    let env = fast_env().await;
    let worker = env.spawn_worker(FAST);
    let ids = env.publish_jobs(&["studio-ok-1".to_owned()]).await;
    env.wait_terminal(1, Duration::from_secs(30)).await;
    let row = env.job(ids[0]).await;
    assert_eq!(row["status"], "succeeded");
    assert_eq!(row["conclusion"], "stopped");
    assert_eq!(row["attempts"], 1);
    assert_eq!(row["region_id"], "cn-shanghai");
    let calls = env.fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(row["request_id"], calls[0].request_id.as_str());
    assert_eq!(env.fake.caster("studio-ok-1"), Some(StudioState::Stopped));
    let attempts = env.attempts(ids[0]).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["outcome"], "ok");
    assert_eq!(attempts[0]["request_id"], calls[0].request_id.as_str());
    assert!(attempts[0]["finished_at"].is_string());
    assert!(env.drain_dead().await.is_empty());
    drop(worker);
}

#[tokio::test]
async fn permanent_errors_fail_and_dead_letter_with_headers() {
    let mut casters = HashMap::new();
    casters.insert("studio-stopped".to_owned(), StudioState::Stopped);
    casters.insert("studio-running".to_owned(), StudioState::Running);
    let mut config = FakeLiveConfig::new(vec![(common::KEY_ID.into(), Secret::new(KEY_SECRET))]);
    config.qps = 1000;
    config.casters = Some(casters);
    let env = TestEnv::with_fake(config).await;
    let _worker = env.spawn_worker(FAST);
    // NotFound, IncorrectSceneStatus, and an id the worker accepts but the API calls malformed.
    let cases = [
        ("studio-unknown", "InvalidCaster.NotFound"),
        ("studio-stopped", "IncorrectSceneStatus"),
        ("bad.id!", "InvalidCasterId.Malformed"),
    ];
    let ids = env
        .publish_jobs(&cases.iter().map(|(c, _)| c.to_string()).collect::<Vec<_>>())
        .await;
    env.wait_terminal(3, Duration::from_secs(30)).await;
    let dead = wait_dead(&env, 3).await;
    for ((caster, code), id) in cases.iter().zip(&ids) {
        let row = env.job(*id).await;
        assert_eq!(row["status"], "failed", "{caster}");
        assert_eq!(row["error_code"], *code);
        assert_eq!(row["conclusion"], "api-error");
        assert_eq!(row["attempts"], 1, "permanent errors are not retried");
        assert!(row["request_id"].is_string());
        let letter = dead
            .iter()
            .find(|(_, job, _)| job.as_deref() == Some(id.to_string().as_str()))
            .unwrap_or_else(|| panic!("no dead letter for {caster}"));
        assert_eq!(letter.2.as_deref(), Some(*code));
        let body: serde_json::Value = serde_json::from_slice(&letter.0).unwrap();
        assert_eq!(body["caster_id"], *caster, "the original body is kept");
    }
}

/// Waits until `n` dead letters are in `P.dead` (taking them).
async fn wait_dead(env: &TestEnv, n: usize) -> Vec<(Vec<u8>, Option<String>, Option<String>)> {
    let mut all = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while all.len() < n {
        all.extend(env.drain_dead().await);
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} dead letters",
            all.len()
        );
        if all.len() < n {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    all
}

#[tokio::test]
async fn wrong_secret_pauses_the_account_instead_of_failing_the_job() {
    let env = fast_env().await;
    let worker = env.spawn_worker(&[
        ("STOPCASTER_QPS", "1000"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "not-the-secret"),
    ]);
    let ids = env.publish_jobs(&["studio-a".to_owned()]).await;
    worker
        .wait_log("account paused", Duration::from_secs(30))
        .await;
    // The log line comes as the answer arrives; the attempt row is committed just after.
    common::wait_for(Duration::from_secs(30), || async {
        env.attempts(ids[0])
            .await
            .first()
            .is_some_and(|a| a["outcome"] == "credentials-refused")
    })
    .await
    .expect("the refused call is recorded");
    let row = env.job(ids[0]).await;
    assert_eq!(row["status"], "pending", "not the job's fault");
    assert_eq!(row["error_code"], "SignatureDoesNotMatch");
    let attempts = env.attempts(ids[0]).await;
    assert_eq!(attempts[0]["outcome"], "credentials-refused");
    assert!(env.drain_dead().await.is_empty());
}

#[tokio::test]
async fn retries_a_500_then_succeeds() {
    let env = fast_env().await;
    env.fake
        .push_faults([Fault::Status500InternalError, Fault::Status503]);
    let _worker = env.spawn_worker(FAST);
    let ids = env.publish_jobs(&["studio-flaky".to_owned()]).await;
    env.wait_terminal(1, Duration::from_secs(30)).await;
    let row = env.job(ids[0]).await;
    assert_eq!(row["status"], "succeeded");
    assert_eq!(row["attempts"], 3);
    let attempts = env.attempts(ids[0]).await;
    let outcomes: Vec<&str> = attempts
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["retryable", "retryable", "ok"]);
    assert_eq!(attempts[0]["error_code"], "InternalError");
    assert_eq!(attempts[0]["http_status"], 500);
    assert_eq!(attempts[1]["error_code"], "ServiceUnavailable");
    assert_eq!(row["request_id"], attempts[2]["request_id"]);
    assert!(env.drain_dead().await.is_empty());
}

#[tokio::test]
async fn retries_exhausted_fails_with_reason() {
    let env = fast_env().await;
    env.fake.set_fail_rate(1.0);
    let _worker = env.spawn_worker(&[("STOPCASTER_QPS", "1000"), ("STOPCASTER_MAX_ATTEMPTS", "3")]);
    let ids = env.publish_jobs(&["studio-down".to_owned()]).await;
    env.wait_terminal(1, Duration::from_secs(30)).await;
    let row = env.job(ids[0]).await;
    assert_eq!(row["status"], "failed");
    assert_eq!(row["conclusion"], "retries-exhausted");
    assert_eq!(row["attempts"], 3);
    assert_eq!(row["error_code"], "ServiceUnavailable");
    assert_eq!(row["http_status"], 503);
    assert_eq!(env.fake.calls().len(), 3);
    let dead = wait_dead(&env, 1).await;
    assert_eq!(dead[0].2.as_deref(), Some("retries-exhausted"));
    assert_eq!(dead[0].1.as_deref(), Some(ids[0].to_string().as_str()));
}

#[tokio::test]
async fn lost_response_then_incorrect_scene_status_is_success() {
    let env = fast_env().await;
    env.fake.push_faults([Fault::StopThenDrop]);
    let _worker = env.spawn_worker(FAST);
    let ids = env.publish_jobs(&["studio-lost".to_owned()]).await;
    env.wait_terminal(1, Duration::from_secs(30)).await;
    let row = env.job(ids[0]).await;
    assert_eq!(row["status"], "succeeded");
    assert_eq!(row["conclusion"], "stopped-by-unanswered-attempt");
    assert_eq!(row["error_code"], "IncorrectSceneStatus");
    assert!(row["request_id"].is_null());
    let calls = env.fake.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(row["evidence_request_id"], calls[1].request_id.as_str());
    let attempts = env.attempts(ids[0]).await;
    assert_eq!(attempts[0]["outcome"], "transport-error");
    assert_eq!(attempts[1]["outcome"], "permanent");
}

#[tokio::test]
async fn malformed_messages_are_rejected_and_dead_lettered_while_good_jobs_run() {
    let env = fast_env().await;
    let _worker = env.spawn_worker(FAST);
    let long = format!(r#"{{"caster_id":"{}"}}"#, "x".repeat(20 * 1024));
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_obj = format!(
        "{}{}",
        r#"{"caster_id":"a","x":"#.to_owned() + &"[".repeat(3000),
        "]".repeat(3000) + "}"
    );
    let bad: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        b"[1,2,3]".to_vec(),
        b"{}".to_vec(),
        br#"{"caster_id":""}"#.to_vec(),
        br#"{"caster_id":42}"#.to_vec(),
        br#"{"caster_id":null}"#.to_vec(),
        b"{\"caster_id\":\"\xff\xfe\xfd\"}".to_vec(),
        b"{\"caster_id\":\"a\0b\"}".to_vec(),
        long.into_bytes(),
        deep.into_bytes(),
        deep_obj.into_bytes(),
        Vec::new(),
        br#"{"caster_id":"c1","job_id":"not-a-uuid"}"#.to_vec(),
        br#"{"caster_id":"c1","job_id":12}"#.to_vec(),
        br#"{"caster_id":"tab\there"}"#.to_vec(),
        br#"{"caster_id":"c1","region_id":["cn"]}"#.to_vec(),
        br#""a string""#.to_vec(),
        b"\x00\x01\x02binary".to_vec(),
    ];
    let good: Vec<Vec<u8>> = (0..5)
        .map(|i| format!(r#"{{"caster_id":"good-{i}"}}"#).into_bytes())
        .collect();
    let mut all = Vec::new();
    for (i, b) in bad.iter().enumerate() {
        all.push(b.clone());
        if let Some(g) = good.get(i % good.len()).filter(|_| i % 4 == 0) {
            all.push(g.clone());
        }
    }
    env.publish_raw(&all).await;
    let good_count = all.len() - bad.len();
    env.wait_terminal(all.len() as i64, Duration::from_secs(60))
        .await;
    assert_eq!(env.count_status("rejected").await, bad.len() as i64);
    assert_eq!(env.count_status("succeeded").await, good_count as i64);
    let dead = wait_dead(&env, bad.len()).await;
    assert_eq!(dead.len(), bad.len());
    let rows = env.jobs().await;
    for (body, job_id, reason) in &dead {
        assert!(bad.contains(body), "a dead letter keeps its original body");
        let reason = reason.as_deref().expect("reason header");
        assert!(!reason.is_empty());
        let row = rows
            .iter()
            .find(|r| r["job_id"].as_str() == job_id.as_deref())
            .expect("a row for each dead letter");
        assert_eq!(row["status"], "rejected");
        assert_eq!(row["error_message"], reason);
        assert_eq!(row["attempts"], 0);
    }
    // The payload is kept, escaped where it is not text.
    let invalid = rows
        .iter()
        .find(|r| {
            r["payload"]
                .as_str()
                .is_some_and(|p| p.contains("\\xFF\\xFE"))
        })
        .expect("the invalid UTF-8 payload is stored escaped");
    assert_eq!(invalid["payload_escaped"], true);
    assert!(
        rows.iter()
            .any(|r| r["payload"] == "{\"caster_id\":\"a\\x00b\"}" && r["payload_escaped"] == true)
    );
    assert!(
        rows.iter()
            .any(|r| r["payload"] == "" && r["status"] == "rejected")
    );
}

#[tokio::test]
async fn the_same_job_published_twice_calls_once() {
    let env = fast_env().await;
    let _worker = env.spawn_worker(FAST);
    let id = uuid::Uuid::new_v4();
    let body = serde_json::to_vec(
        &serde_json::json!({"caster_id": "studio-twice", "job_id": id.to_string()}),
    )
    .unwrap();
    env.publish_raw(&[body.clone(), body.clone(), body]).await;
    let pool = env.pool.clone();
    // Both copies are acknowledged once the queue is empty and the job finished.
    env.wait_terminal(1, Duration::from_secs(30)).await;
    common::wait_for(Duration::from_secs(30), || {
        let env = &env;
        async move { env.queue_len(&env.names().jobs).await == 0 }
    })
    .await
    .expect("all copies acknowledged");
    assert_eq!(env.fake.calls().len(), 1, "one API call for one job id");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM caster_stop_jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(env.job(id).await["attempts"], 1);
}

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

#[tokio::test]
async fn the_secret_never_reaches_the_logs() {
    let env = fast_env().await;
    env.fake
        .push_faults([Fault::Status503, Fault::Html502, Fault::DropConnection]);
    let mut worker = env.spawn_worker(&[
        ("STOPCASTER_QPS", "1000"),
        ("RUST_LOG", "trace"),
        ("STOPCASTER_LOG_FORMAT", "json"),
    ]);
    let ids = env
        .publish_jobs(&["studio-secret".to_owned(), "bad.id!".to_owned()])
        .await;
    env.publish_raw(&[b"garbage".to_vec()]).await;
    env.wait_terminal(3, Duration::from_secs(30)).await;
    worker.signal("TERM");
    worker.wait_exit(Duration::from_secs(30)).await;
    let logs = worker.logs();
    assert!(logs.len() > 20, "trace logging produced lines");
    assert!(
        logs.iter().any(|l| l.contains(&ids[0].to_string())),
        "logs name the job"
    );
    for line in &logs {
        assert!(!line.contains(KEY_SECRET), "secret in a log line: {line}");
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
    }
    // Nor in the database.
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM caster_stop_jobs j WHERE to_jsonb(j)::text LIKE '%' || $1 || '%'",
    )
    .bind(KEY_SECRET)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(leaked, 0);
}

#[tokio::test]
async fn jobs_use_the_account_they_name() {
    let mut config = FakeLiveConfig::new(vec![
        (common::KEY_ID.into(), Secret::new(KEY_SECRET)),
        ("LTAIsecondAccount".into(), Secret::new("second-secret")),
    ]);
    config.qps = 1000;
    let env = TestEnv::with_fake(config).await;
    let dir = std::env::temp_dir().join(common::unique("accounts"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("accounts.json");
    std::fs::write(
        &file,
        r#"{"accounts": {"second": {"access_key_id_env": "SECOND_ID", "access_key_secret_env": "SECOND_SECRET", "qps": 500}}}"#,
    )
    .unwrap();
    let _worker = env.spawn_worker(&[
        ("STOPCASTER_QPS", "1000"),
        ("STOPCASTER_ACCOUNTS_FILE", file.to_str().unwrap()),
        ("SECOND_ID", "LTAIsecondAccount"),
        ("SECOND_SECRET", "second-secret"),
    ]);
    let bodies: Vec<Vec<u8>> = [
        r#"{"caster_id":"studio-default"}"#,
        r#"{"caster_id":"studio-second","account":"second"}"#,
        r#"{"caster_id":"studio-nobody","account":"nobody"}"#,
    ]
    .iter()
    .map(|b| b.as_bytes().to_vec())
    .collect();
    env.publish_raw(&bodies).await;
    env.wait_terminal(3, Duration::from_secs(30)).await;
    let calls = env.fake.calls();
    let key_of = |caster: &str| {
        calls
            .iter()
            .find(|c| c.caster_id.as_deref() == Some(caster))
            .and_then(|c| c.access_key_id.clone())
    };
    assert_eq!(key_of("studio-default").as_deref(), Some(common::KEY_ID));
    assert_eq!(
        key_of("studio-second").as_deref(),
        Some("LTAIsecondAccount")
    );
    assert_eq!(
        key_of("studio-nobody"),
        None,
        "no call for an unknown account"
    );
    let rows = env.jobs().await;
    let nobody = rows
        .iter()
        .find(|r| r["caster_id"] == "studio-nobody")
        .unwrap();
    assert_eq!(nobody["status"], "failed");
    assert_eq!(nobody["conclusion"], "unknown-account");
    assert_eq!(nobody["error_code"], "UnknownAccount");
    let second = rows
        .iter()
        .find(|r| r["caster_id"] == "studio-second")
        .unwrap();
    assert_eq!(second["status"], "succeeded");
    assert_eq!(second["account"], "second");
    let dead = wait_dead(&env, 1).await;
    assert_eq!(dead[0].2.as_deref(), Some("UnknownAccount"));
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_delivery_held_past_the_cap_is_republished_with_its_attempts() {
    let env = fast_env().await;
    env.fake.push_faults([Fault::Status503]);
    // A hold cap of 0 s: any backoff outlives the delivery, so the retry must go through a
    // republished copy, which waits out the backoff recorded in the database.
    let worker = env.spawn_worker(&[
        ("STOPCASTER_QPS", "1000"),
        ("STOPCASTER_HOLD_CAP_S", "0"),
        ("STOPCASTER_BACKOFF_INITIAL_MS", "300"),
        ("STOPCASTER_BACKOFF_MAX_MS", "300"),
    ]);
    let ids = env.publish_jobs(&["studio-held".to_owned()]).await;
    env.wait_terminal(1, Duration::from_secs(30)).await;
    let row = env.job(ids[0]).await;
    assert_eq!(row["status"], "succeeded");
    assert_eq!(
        row["attempts"], 2,
        "the attempt count survived the republish"
    );
    let attempts = env.attempts(ids[0]).await;
    assert_eq!(attempts[0]["outcome"], "retryable");
    assert_eq!(attempts[1]["outcome"], "ok");
    worker.wait_log("republished", Duration::from_secs(5)).await;
    // Exactly one row: the copy carried the same job id.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM caster_stop_jobs")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(env.queue_len(&env.names().jobs).await, 0);
}

// Multi-threaded: `run_cli` blocks its thread while the in-process stand-in answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_command_prints_the_request_id_or_the_error_with_exit_codes() {
    let env = fast_env().await;
    let ok = env.run_cli(&["stop", "studio-cli"], &[]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let request_id = String::from_utf8(ok.stdout).unwrap().trim().to_owned();
    assert_eq!(request_id, env.fake.calls()[0].request_id);
    let again = env.run_cli(&["stop", "studio-cli", "--region", "cn-beijing"], &[]);
    assert_eq!(again.status.code(), Some(3), "permanent");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.starts_with("IncorrectSceneStatus: "), "{stderr}");
    assert!(
        stderr.contains(&format!("(RequestId {})", env.fake.calls()[1].request_id)),
        "{stderr}"
    );
    env.fake.push_faults([Fault::Status503]);
    let busy = env.run_cli(&["stop", "studio-cli-2"], &[]);
    assert_eq!(busy.status.code(), Some(4), "retryable");
    let refused = env.run_cli(
        &["stop", "studio-cli-2"],
        &[("STOPCASTER_ENDPOINT", "http://127.0.0.1:9")],
    );
    assert_eq!(refused.status.code(), Some(5), "transport");
    assert!(String::from_utf8_lossy(&refused.stderr).starts_with("Transport.Connect: "));
    let no_creds = env.run_cli(
        &["stop", "studio-cli-2"],
        &[("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "")],
    );
    assert_eq!(no_creds.status.code(), Some(1), "configuration");
    for out in [
        &again.stderr,
        &busy.stderr,
        &refused.stderr,
        &no_creds.stderr,
    ] {
        assert!(!String::from_utf8_lossy(out).contains(KEY_SECRET));
    }
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
