//! Bulk actions by filter, count first: `dead-letters replay` and `cancel` with report's
//! filters, `--dry-run` counting exactly what the action then does, filters combining, and
//! ten thousand dead letters replayed in one action. Rows and dead letters are written
//! directly (as the worker would have left them), so that the test is about the selection and
//! its scale, not about the worker.

use super::*;

use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};

/// Inserts `n` failed jobs of `batch` with `code` (account `account`, if any) and publishes
/// their dead letters to `P.dead` as the worker does (body, job id and reason headers);
/// returns their ids.
pub(crate) async fn seed_dead(
    env: &TestEnv,
    n: usize,
    batch: &str,
    code: &str,
    account: Option<&str>,
) -> Vec<uuid::Uuid> {
    let ids: Vec<uuid::Uuid> = (0..n).map(|_| uuid::Uuid::new_v4()).collect();
    let payloads: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            serde_json::json!({"job_id": id, "caster_id": format!("bulk-{i}"), "batch_id": batch})
                .to_string()
        })
        .collect();
    sqlx::query(
        "INSERT INTO caster_stop_jobs (job_id, caster_id, batch_id, account, status, conclusion,
                                       error_code, attempts, attempt_budget, payload,
                                       dead_lettered_at, finished_at)
         SELECT id, 'bulk-' || (ord - 1), $2, $3, 'failed', 'api-error', $4, 1, 8, body, now(), now()
         FROM unnest($1::uuid[], $5::text[]) WITH ORDINALITY AS t(id, body, ord)",
    )
    .bind(&ids)
    .bind(batch)
    .bind(account)
    .bind(code)
    .bind(&payloads)
    .execute(&env.pool)
    .await
    .expect("insert the failed jobs");
    let (conn, channel) = env.amqp().await;
    let mut confirms = Vec::with_capacity(n);
    for (id, body) in ids.iter().zip(&payloads) {
        let mut headers = FieldTable::default();
        headers.insert(
            stopcaster::JOB_ID_HEADER.into(),
            AMQPValue::LongString(id.to_string().into()),
        );
        headers.insert(
            stopcaster::REASON_HEADER.into(),
            AMQPValue::LongString(code.into()),
        );
        let props = lapin::BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(id.to_string().into())
            .with_headers(headers);
        confirms.push(
            channel
                .basic_publish(
                    "".into(),
                    env.names().dead.as_str().into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    props,
                )
                .await
                .unwrap(),
        );
    }
    for c in confirms {
        assert!(c.await.unwrap().is_ack());
    }
    conn.close(200, "".into()).await.ok();
    ids
}

/// The number in `would replay N dead letter(s)` / `would cancel N job(s)`.
fn would(out: &str) -> usize {
    let line = out.lines().next().unwrap_or_default();
    line.split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {out:?}"))
}

#[tokio::test]
async fn ten_thousand_dead_letters_replay_by_filter_in_one_action() {
    let env = TestEnv::new().await;
    let batch = "end-of-show-42";
    let chosen = seed_dead(&env, 10_000, batch, "InvalidCaster.NotFound", None).await;
    // Same batch, other code; other batch, same code: the filters combine, neither is taken.
    let other_code = seed_dead(&env, 40, batch, "IllegalOperation", None).await;
    let other_batch = seed_dead(&env, 60, "other", "InvalidCaster.NotFound", None).await;
    let dead = env.names().dead;
    assert_eq!(env.queue_len(&dead).await, 10_100);

    let args = [
        "dead-letters",
        "replay",
        "--batch",
        batch,
        "--error-code",
        "InvalidCaster.NotFound",
    ];
    let dry = cli_ok(&env, &[&args[..], &["--dry-run"]].concat());
    assert_eq!(would(&dry), 10_000, "{dry}");
    assert!(
        dry.contains("... and 9980 more"),
        "a sample, not every row: {dry}"
    );
    assert_eq!(
        env.queue_len(&dead).await,
        10_100,
        "a dry run changes nothing"
    );
    assert_eq!(env.count_status("failed").await, 10_100);

    let started = std::time::Instant::now();
    let out = cli_ok(&env, &args);
    let took = started.elapsed();
    let replayed = out.lines().filter(|l| l.starts_with("replayed ")).count();
    assert_eq!(replayed, 10_000, "the count matches the dry run");
    eprintln!("replayed 10,000 dead letters by filter in {took:?}");
    assert_eq!(env.queue_len(&dead).await, 100, "only the others stay");
    assert_eq!(env.queue_len(&env.names().jobs).await, 10_000);
    let reopened: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM caster_stop_jobs WHERE job_id = ANY($1) AND status = 'pending'
           AND replays = 1 AND dead_lettered_at IS NULL",
    )
    .bind(&chosen)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(reopened, 10_000);
    let untouched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM caster_stop_jobs WHERE job_id = ANY($1) AND status = 'failed'",
    )
    .bind([other_code, other_batch].concat())
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(untouched, 100);
    let records: i64 = sqlx::query_scalar("SELECT count(*) FROM caster_stop_replays")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(records, 10_000);
}

#[tokio::test]
async fn replay_refuses_no_selection_and_mixed_selections() {
    let env = TestEnv::new().await;
    seed_dead(&env, 3, "b", "X", Some("acme")).await;
    let id = uuid::Uuid::new_v4().to_string();
    for args in [
        vec!["dead-letters", "replay"],
        vec!["dead-letters", "replay", "--all", "--batch", "b"],
        vec!["dead-letters", "replay", &id, "--batch", "b"],
    ] {
        let out = env.run_cli(&args, &[]);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            common::stderr(&out).contains("--all, job ids, or filters"),
            "{args:?}"
        );
    }
    assert_eq!(env.queue_len(&env.names().dead).await, 3);
    // The account filter: another account matches none, its own all three.
    let none = cli_ok(
        &env,
        &["dead-letters", "replay", "--account", "other", "--dry-run"],
    );
    assert_eq!(would(&none), 0);
    let out = cli_ok(&env, &["dead-letters", "replay", "--account", "acme"]);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("replayed ")).count(),
        3
    );
}

/// Scheduled jobs of two batches and two accounts, one already started.
pub(crate) async fn seed_scheduled(env: &TestEnv) -> Vec<uuid::Uuid> {
    let mut ids = Vec::new();
    for (batch, account, n, attempts, status) in [
        ("night", Some("acme"), 5, 0, "scheduled"),
        ("night", None, 4, 0, "scheduled"),
        ("night", Some("acme"), 2, 1, "pending"),
        ("day", Some("acme"), 3, 0, "scheduled"),
    ] {
        for i in 0..n {
            let id = uuid::Uuid::new_v4();
            sqlx::query(
                "INSERT INTO caster_stop_jobs (job_id, caster_id, batch_id, account, status,
                                               attempts, payload, not_before)
                 VALUES ($1, $2, $3, $4, $5, $6, '{}', now() + interval '1 hour')",
            )
            .bind(id)
            .bind(format!("{batch}-{i}"))
            .bind(batch)
            .bind(account)
            .bind(status)
            .bind(attempts)
            .execute(&env.pool)
            .await
            .unwrap();
            ids.push(id);
        }
    }
    ids
}

#[tokio::test]
async fn cancel_by_filter_counts_first_and_filters_combine() {
    let env = TestEnv::new().await;
    seed_scheduled(&env).await;
    let args = ["cancel", "--batch", "night", "--account", "acme"];
    let out = env.run_cli(&[&args[..], &["--dry-run"]].concat(), &[]);
    let dry = common::stdout(&out);
    assert_eq!(would(&dry), 5, "{dry}");
    assert_eq!(
        env.count_status("scheduled").await,
        12,
        "a dry run changes nothing"
    );

    let out = env.run_cli(&args, &[]);
    let text = common::stdout(&out);
    let cancelled = text.lines().filter(|l| l.starts_with("cancelled ")).count();
    assert_eq!(cancelled, 5, "the count matches the dry run:\n{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("already started "))
            .count(),
        2
    );
    assert!(!out.status.success(), "two had started: exit 1");
    assert_eq!(env.count_status("cancelled").await, 5);
    // The default account's jobs of the batch, then the whole other batch.
    let dry = cli_ok(&env, &["cancel", "--account", "default", "--dry-run"]);
    assert_eq!(would(&dry), 4);
    cli_ok(
        &env,
        &["cancel", "--account", "default", "--status", "scheduled"],
    );
    assert_eq!(env.count_status("cancelled").await, 9);
    let day: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM caster_stop_jobs WHERE batch_id = 'day' AND status = 'scheduled'",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(day, 3, "another batch is never touched");
    // No ids and no filter: refused, nothing changed.
    let out = env.run_cli(&["cancel"], &[]);
    assert!(!out.status.success());
    assert!(common::stderr(&out).contains("acts on nothing by default"));
    assert_eq!(env.count_status("scheduled").await, 3);
}
