//! Failures that are not the job's fault never burn a job, through the real worker, RabbitMQ,
//! Postgres and the stand-in: refused credentials pause the account, and every message, whatever
//! bytes it carries, gets exactly one row.

use crate::common;

use std::time::Duration;

use common::{KEY_ID, KEY_SECRET, TestEnv};
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use rand::{Rng, SeedableRng, rngs::StdRng};
use stopcaster::Secret;
use stopcaster_fake_live::FakeLiveConfig;

const WAIT: Duration = Duration::from_secs(60);

async fn scalar(env: &TestEnv, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&env.pool).await.unwrap()
}

/// A worker with a wrong secret: its jobs stay pending on the queue, spend no attempt budget and
/// are never dead-lettered; `/readyz` and the metrics name the account and the code; probes
/// back off. With the secret fixed, every job runs.
#[tokio::test]
async fn refused_credentials_pause_the_account_and_burn_no_job() {
    let mut config = FakeLiveConfig::new(vec![(KEY_ID.into(), Secret::new(KEY_SECRET))]);
    config.qps = 1000;
    let env = TestEnv::with_fake(config).await;
    let addr = common::free_addr();
    let common_settings = [
        ("STOPCASTER_QPS", "1000"),
        // One call per job: a refused call that spent budget would fail the job at once.
        ("STOPCASTER_MAX_ATTEMPTS", "1"),
        ("STOPCASTER_METRICS_ADDR", addr.as_str()),
    ];
    let mut wrong = common_settings.to_vec();
    wrong.push(("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "a-rotated-secret"));
    let mut worker = env.spawn_worker(&wrong);
    worker.wait_ready().await;
    let casters: Vec<String> = (0..10).map(|i| format!("paused-{i}")).collect();
    let ids = env.publish_jobs(&casters).await;
    worker
        .wait_log("account paused", Duration::from_secs(30))
        .await;
    // Probes 1 s after the pause, then 2 s and 4 s later, one at a time.
    common::wait_for(Duration::from_secs(30), || {
        let probes = worker
            .logs()
            .iter()
            .filter(|l| l.contains("probing a paused account"))
            .count();
        async move { probes >= 3 }
    })
    .await
    .expect("the paused account is probed");
    let http = env.http.clone();
    let (status, body) = common::http::get(&http, &format!("http://{addr}/readyz")).await;
    assert_eq!(status, 503);
    assert!(
        body.contains("account default paused: SignatureDoesNotMatch"),
        "{body}"
    );
    let (_, metrics) = common::http::get(&http, &format!("http://{addr}/metrics")).await;
    assert!(metrics.contains(
        "stopcaster_account_paused{account=\"default\",code=\"SignatureDoesNotMatch\"} 1"
    ));
    let recorded: (String, String) =
        sqlx::query_as("SELECT account, code FROM stopcaster_account_pauses")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(
        recorded,
        ("default".to_owned(), "SignatureDoesNotMatch".to_owned())
    );
    // Nothing finished, nothing dead-lettered, every refused call recorded as such.
    assert_eq!(env.count_status("pending").await, 10);
    assert!(env.drain_dead().await.is_empty());
    let refunded: i64 = scalar(
        &env,
        "SELECT count(*) FROM caster_stop_jobs WHERE attempts > 0 AND attempts = refused_attempts",
    )
    .await;
    assert!(refunded >= 1, "refused calls are counted and given back");
    let logs = worker.logs().join("\n");
    assert_eq!(
        logs.matches("account paused").count(),
        1,
        "one line per change of state:\n{logs}"
    );
    assert!(!logs.contains("a-rotated-secret"));
    // Probes back off: far fewer calls than a retry loop would make.
    let calls = env.fake.calls().len();
    assert!(calls < 40, "{calls} calls while paused");

    worker.signal("TERM");
    assert!(worker.wait_exit(Duration::from_secs(30)).await.success());
    assert_eq!(
        scalar(&env, "SELECT count(*) FROM stopcaster_account_pauses").await,
        0,
        "a stopping worker clears its pauses"
    );
    let fixed = env.spawn_worker(&common_settings);
    env.wait_terminal(10, WAIT).await;
    assert_eq!(env.count_status("succeeded").await, 10);
    for id in ids {
        let attempts = env.attempts(id).await;
        let last = attempts.last().unwrap();
        assert_eq!(last["outcome"], "ok");
        assert!(
            attempts[..attempts.len() - 1]
                .iter()
                .all(|a| a["outcome"] == "credentials-refused")
        );
    }
    assert!(env.drain_dead().await.is_empty());
    drop(fixed);
}

/// Bodies from a fixed seed with NUL, invalid UTF-8, lone surrogate escapes, huge values and
/// wrong types in every field, and odd `message_id` and header properties: each message gets
/// exactly one row and, unless it ran, one dead letter; the worker stays alive.
#[tokio::test]
async fn every_byte_sequence_gets_exactly_one_row() {
    let mut config = FakeLiveConfig::new(vec![(KEY_ID.into(), Secret::new(KEY_SECRET))]);
    config.qps = 1000;
    let env = TestEnv::with_fake(config).await;
    let worker = env.spawn_worker(&[("STOPCASTER_QPS", "1000"), ("STOPCASTER_CONCURRENCY", "16")]);
    worker.wait_ready().await;
    let mut rng = StdRng::seed_from_u64(0x0BAD_B17E);
    let odd_values: [&str; 10] = [
        r#""a\u0000b""#,
        r#""\ud800""#,
        r#""\udc00x""#,
        "42",
        "null",
        "[1,2]",
        r#"{"k":"v"}"#,
        "true",
        r#""ok-\u0007""#,
        r#""""#,
    ];
    let fields = ["caster_id", "region_id", "batch_id", "account", "job_id"];
    let total = 121;
    let (conn, channel) = env.amqp().await;
    for i in 0..total {
        let mut parts = vec![format!(r#""caster_id":"fuzz-{i}""#)];
        for field in fields {
            if rng.random_bool(0.4) {
                let value = match rng.random_range(0..3) {
                    0 => odd_values[rng.random_range(0..odd_values.len())].to_owned(),
                    1 => format!("\"{}\"", "x".repeat(rng.random_range(100..70_000))),
                    _ => format!("\"fuzz-{i}-{field}\""),
                };
                parts.retain(|p| !p.starts_with(&format!("\"{field}\"")));
                parts.push(format!("\"{field}\":{value}"));
            }
        }
        let mut body = format!("{{{}}}", parts.join(",")).into_bytes();
        if i == 0 {
            // The case that once got no row and spun: a NUL escape in the stored fields.
            body = br#"{"caster_id":"a\u0000b","batch_id":"b\u0000"}"#.to_vec();
        }
        match rng.random_range(0..6) {
            _ if i == 0 => {}
            0 => body.insert(rng.random_range(0..body.len()), 0),
            1 => body.insert(rng.random_range(0..body.len()), 0xFF),
            2 => body.truncate(rng.random_range(0..body.len())),
            _ => {}
        }
        let mut headers = FieldTable::default();
        headers.insert(
            "x-odd".into(),
            AMQPValue::LongString(vec![0, 0xFF, 1].into()),
        );
        let mut props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(headers);
        if rng.random_bool(0.3) {
            // Not a UUID: ignored, so the message is known by a new id.
            props = props.with_message_id(format!("odd\u{1}id-{i}").into());
        }
        let confirm = channel
            .basic_publish(
                "".into(),
                env.names().jobs.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                props,
            )
            .await
            .unwrap();
        assert!(confirm.await.unwrap().is_ack());
    }
    conn.close(200, "".into()).await.ok();
    env.wait_terminal(total, WAIT).await;
    assert_eq!(
        scalar(&env, "SELECT count(*) FROM caster_stop_jobs").await,
        total,
        "exactly one row per message"
    );
    let unfinished: i64 = scalar(
        &env,
        "SELECT count(*) FROM caster_stop_jobs WHERE status NOT IN ('succeeded', 'failed', 'rejected')",
    )
    .await;
    assert_eq!(unfinished, 0);
    let dead_rows = scalar(
        &env,
        "SELECT count(*) FROM caster_stop_jobs WHERE status IN ('failed', 'rejected')",
    )
    .await;
    assert!(dead_rows > 10, "the seed makes many malformed messages");
    let mut dead = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while (dead.len() as i64) < dead_rows && std::time::Instant::now() < deadline {
        dead.extend(env.drain_dead().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Dead letters are published after the row is committed: let the last ones land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    dead.extend(env.drain_dead().await);
    assert_eq!(
        dead.len() as i64,
        dead_rows,
        "one dead letter per failed or rejected row"
    );
    // No column holds a NUL: each escaped one is there as text.
    let escaped: i64 = scalar(
        &env,
        r"SELECT count(*) FROM caster_stop_jobs WHERE caster_id LIKE '%\\x00%' OR batch_id LIKE '%\\x00%'",
    )
    .await;
    assert!(escaped >= 1, "NUL in a field is kept, escaped");
    let first: (Option<String>, Option<String>, String) = sqlx::query_as(
        r#"SELECT caster_id, batch_id, status FROM caster_stop_jobs WHERE payload LIKE '{"caster_id":"a\\u0000b"%'"#,
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(
        first,
        (
            Some(r"a\x00b".to_owned()),
            Some(r"b\x00".to_owned()),
            "rejected".to_owned()
        )
    );
    let mut worker = worker;
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "the worker is alive"
    );
}

/// The rule "IncorrectSceneStatus after an attempt whose outcome is unknown is a success" reads
/// the attempt history in Postgres when each attempt starts. The race that once failed such jobs:
/// this worker picks the job up while another worker holds it; the other's call goes unanswered
/// (the studio did stop) and it dies; this worker then calls, meets IncorrectSceneStatus, and
/// must conclude from the other's attempt, which it never saw being made.
#[tokio::test]
async fn an_unanswered_attempt_by_another_worker_is_evidence() {
    let mut config = FakeLiveConfig::new(vec![(KEY_ID.into(), Secret::new(KEY_SECRET))]);
    config.qps = 1000;
    let env = TestEnv::with_fake(config).await;
    let job_id = uuid::Uuid::new_v4();
    let body = serde_json::json!({"caster_id": "handed-over", "job_id": job_id.to_string()});
    // Held by another worker, about to call.
    sqlx::query(
        "INSERT INTO caster_stop_jobs
           (job_id, caster_id, region_id, payload, claimed_by, claimed_until)
         VALUES ($1, 'handed-over', 'cn-shanghai', $2, 'a-worker-about-to-die',
                 now() + interval '1 hour')",
    )
    .bind(job_id)
    .bind(body.to_string())
    .execute(&env.pool)
    .await
    .unwrap();
    let worker = env.spawn_worker(&[("STOPCASTER_QPS", "1000")]);
    env.publish_raw(&[body.to_string().into_bytes()]).await;
    worker.wait_log("another worker holds this job", WAIT).await;
    // The other worker's attempt 1: sent, the studio stopped, the answer lost; then it died.
    env.fake
        .set_caster("handed-over", stopcaster_fake_live::StudioState::Stopped);
    sqlx::query(
        "INSERT INTO caster_stop_attempts
           (job_id, attempt, finished_at, error_code, outcome, outcome_unknown, worker)
         VALUES ($1, 1, now(), 'Transport.Lost', 'transport-error', true, 'a-worker-about-to-die')",
    )
    .bind(job_id)
    .execute(&env.pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE caster_stop_jobs SET attempts = 1, claimed_by = NULL, claimed_until = NULL
         WHERE job_id = $1",
    )
    .bind(job_id)
    .execute(&env.pool)
    .await
    .unwrap();
    env.wait_terminal(1, WAIT).await;
    let row = env.job(job_id).await;
    assert_eq!(row["status"], "succeeded", "{row}");
    assert_eq!(row["conclusion"], "stopped-by-unanswered-attempt");
    let attempts = env.attempts(job_id).await;
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[1]["error_code"], "IncorrectSceneStatus");
    assert_eq!(row["evidence_request_id"], attempts[1]["request_id"]);
    assert!(env.drain_dead().await.is_empty());
}

/// A worker that died during its call left its attempt open (no outcome) and its claim expired:
/// the next attempt marks that one `Interrupted`, its outcome unknown, and, in the same step,
/// counts it as an attempt that may have stopped the studio (the rule above), though the
/// marking and the reading are one statement.
#[tokio::test]
async fn an_attempt_left_open_by_a_dead_worker_is_marked_interrupted_and_is_evidence() {
    let mut config = FakeLiveConfig::new(vec![(KEY_ID.into(), Secret::new(KEY_SECRET))]);
    config.qps = 1000;
    let env = TestEnv::with_fake(config).await;
    let job_id = uuid::Uuid::new_v4();
    let body = serde_json::json!({"caster_id": "left-open", "job_id": job_id.to_string()});
    // Attempt 1 was recorded and sent; its worker died before the answer, its claim ran out.
    sqlx::query(
        "INSERT INTO caster_stop_jobs
           (job_id, caster_id, region_id, payload, attempts, claimed_by, claimed_until)
         VALUES ($1, 'left-open', 'cn-shanghai', $2, 1, 'a-dead-worker',
                 now() - interval '1 second')",
    )
    .bind(job_id)
    .bind(body.to_string())
    .execute(&env.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO caster_stop_attempts (job_id, attempt, worker) VALUES ($1, 1, 'a-dead-worker')",
    )
    .bind(job_id)
    .execute(&env.pool)
    .await
    .unwrap();
    // That call did stop the studio.
    env.fake
        .set_caster("left-open", stopcaster_fake_live::StudioState::Stopped);
    let _worker = env.spawn_worker(&[("STOPCASTER_QPS", "1000")]);
    env.publish_raw(&[body.to_string().into_bytes()]).await;
    env.wait_terminal(1, WAIT).await;
    let row = env.job(job_id).await;
    assert_eq!(row["status"], "succeeded", "{row}");
    assert_eq!(row["conclusion"], "stopped-by-unanswered-attempt");
    let attempts = env.attempts(job_id).await;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0]["error_code"], "Interrupted");
    assert_eq!(attempts[0]["outcome_unknown"], true);
    assert_eq!(attempts[1]["error_code"], "IncorrectSceneStatus");
    assert!(env.drain_dead().await.is_empty());
}
