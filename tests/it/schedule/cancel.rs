//! `cancel`: before the due time (never called), during a run (what was not called), and a
//! large due batch staged in bounded steps and cancelled whole.

use super::*;

#[tokio::test]
async fn cancel_before_the_due_time_means_never_called() {
    let env = env_with_qps(100).await;
    let worker = env.spawn_worker(&[("STOPCASTER_QPS", "100")]);
    worker.wait_ready().await;
    let due = due_in(8);
    let due_text = rfc3339(due);
    let batch = enqueue(
        &env,
        &[
            "--batch",
            "to-cancel",
            "--at",
            &due_text,
            "cx-1",
            "cx-2",
            "cx-3",
        ],
    );
    assert_eq!(batch, "to-cancel");
    let keep = enqueue(&env, &["--batch", "to-keep", "--at", &due_text, "cx-keep"]);
    wait_status(&env, "scheduled", 4, Duration::from_secs(5)).await;
    assert!(
        OffsetDateTime::now_utc() < due,
        "cancelled before the due time"
    );
    let out = env.run_cli(&["cancel", "--batch", "to-cancel"], &[("USER", "alice")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = stdout(&out);
    assert_eq!(
        lines
            .lines()
            .filter(|l| l.starts_with("cancelled "))
            .count(),
        3,
        "{lines}"
    );
    assert!(lines.contains("(was scheduled)"), "{lines}");
    assert!(stderr(&out).contains("3 cancelled"), "{}", stderr(&out));
    // Cancelling again says so; an unknown id is named and fails the command.
    let first: uuid::Uuid = sqlx::query_scalar(
        "SELECT job_id FROM caster_stop_jobs WHERE batch_id = 'to-cancel' ORDER BY job_id LIMIT 1",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    let stranger = uuid::Uuid::new_v4();
    let out = env.run_cli(
        &["cancel", &first.to_string(), &stranger.to_string()],
        &[("USER", "bob")],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("already cancelled {first}")),
        "{text}"
    );
    assert!(text.contains("by alice@"), "{text}");
    assert!(text.contains(&format!("unknown {stranger}")), "{text}");
    let out = env.run_cli(&["cancel", "not-a-uuid"], &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a job id"), "{}", stderr(&out));

    // Past the due time: the kept job ran, the cancelled ones never did.
    wait_status(&env, "succeeded", 1, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for c in ["cx-1", "cx-2", "cx-3"] {
        assert!(call_times(&env, c).is_empty(), "{c} was called");
        assert_eq!(env.fake.caster(c), None);
    }
    assert_eq!(call_times(&env, "cx-keep").len(), 1, "{keep}");
    for job in env.jobs().await {
        if job["batch_id"] == "to-cancel" {
            assert_eq!(job["status"], "cancelled");
            assert_eq!(job["attempts"], 0);
            assert!(job["cancelled_by"].as_str().unwrap().starts_with("alice@"));
            assert!(job["cancelled_at"].is_string());
        }
    }
    assert!(
        env.drain_dead().await.is_empty(),
        "cancelled jobs are not dead-lettered"
    );
    let out = env.run_cli(
        &["report", "--status", "cancelled", "--format", "json"],
        &[],
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["jobs"].as_array().unwrap().len(), 3);
    drop(worker);
}

#[tokio::test]
async fn cancel_during_a_run_cancels_what_was_not_called_and_reports_the_rest() {
    let env = env_with_qps(4).await;
    let worker = env.spawn_worker(&[("STOPCASTER_QPS", "4"), ("STOPCASTER_CONCURRENCY", "4")]);
    worker.wait_ready().await;
    // Scheduled a few seconds ahead, so every job has its row when the run starts.
    let casters: Vec<String> = (0..16).map(|i| format!("run-{i:02}")).collect();
    let due_text = rfc3339(due_in(5));
    let mut args = vec!["--batch", "running", "--at", due_text.as_str()];
    args.extend(casters.iter().map(String::as_str));
    enqueue(&env, &args);
    common::wait_for(Duration::from_secs(10), || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM caster_stop_jobs")
            .fetch_one(&env.pool)
            .await
            .unwrap()
            == 16
    })
    .await
    .expect("every job recorded");
    common::wait_for(Duration::from_secs(30), || async {
        env.count_status("succeeded").await >= 3
    })
    .await
    .expect("the run started");
    let out = env.run_cli(&["cancel", "--batch", "running"], &[]);
    let answered = OffsetDateTime::now_utc();
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 16, "one line per job: {text}");
    let cancelled: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("cancelled "))
        .copied()
        .collect();
    assert!(!cancelled.is_empty(), "{text}");
    assert!(
        lines.iter().any(|l| l.starts_with("already ended ")),
        "{text}"
    );
    let started = lines
        .iter()
        .filter(|l| l.starts_with("already started "))
        .count();
    assert_eq!(out.status.success(), started == 0, "{text}");
    common::wait_for(Duration::from_secs(60), || async {
        open_jobs(&env).await == 0
    })
    .await
    .expect("the batch settles");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for line in &cancelled {
        let caster = line
            .split(" caster ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        assert!(call_times(&env, caster).is_empty(), "{caster} was called");
    }
    // No call after cancel answered, except for jobs it reported as started.
    for call in env.fake.calls() {
        let at = OffsetDateTime::parse(&call.wall_time, &Rfc3339).unwrap();
        let caster = call.caster_id.unwrap_or_default();
        if at > answered {
            assert!(
                !cancelled
                    .iter()
                    .any(|l| l.contains(&format!(" caster {caster} "))),
                "{caster} called at {at} after cancel answered at {answered}"
            );
        }
    }
    drop(worker);
}

/// 2,500 jobs due at once at 10 calls/s: the stager hands the workers at most its backlog
/// bound (2,000 staged and not yet called) and keeps the rest `scheduled`; `cancel --batch`
/// then stops all that were not called, scheduled and staged alike, in one statement.
#[tokio::test]
async fn a_large_due_batch_is_staged_in_bounded_steps_and_cancelled_whole() {
    let env = env_with_qps(10).await;
    let worker = env.spawn_worker(&[("STOPCASTER_QPS", "10")]);
    worker.wait_ready().await;
    let ids: String = (0..2_500).map(|i| format!("bulk-{i}\n")).collect();
    let file = std::env::temp_dir().join(format!("{}.txt", env.prefix));
    std::fs::write(&file, ids).unwrap();
    let due = due_in(15);
    let due_text = rfc3339(due);
    enqueue(
        &env,
        &[
            "--batch",
            "bulk",
            "--at",
            &due_text,
            "--file",
            file.to_str().unwrap(),
        ],
    );
    std::fs::remove_file(&file).ok();
    wait_status(&env, "scheduled", 2_500, Duration::from_secs(15)).await;
    let until = due + time::Duration::seconds(2) - OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::try_from(until).unwrap_or_default()).await;
    // The bound is on staged jobs with no call yet (the stager's own count): a job whose call
    // is under way is still `pending` but no longer counts against it.
    let staged: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM caster_stop_jobs WHERE status = 'pending' AND attempts = 0",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    let held = env.count_status("scheduled").await;
    assert!((1..=2_000).contains(&staged), "{staged} staged");
    assert!(held >= 400, "{held} still scheduled");
    let out = env.run_cli(&["cancel", "--batch", "bulk"], &[]);
    let text = stdout(&out);
    let cancelled = text.lines().filter(|l| l.starts_with("cancelled ")).count();
    assert!(cancelled >= 2_400, "{cancelled} cancelled");
    assert_eq!(text.lines().count(), 2_500);
    common::wait_for(Duration::from_secs(20), || async {
        open_jobs(&env).await == 0
    })
    .await
    .expect("the batch settles");
    // One call per job that ran, none for a cancelled one. A second call of one job is allowed
    // only after an attempt whose outcome was unknown or retryable (a timeout on this loaded
    // machine, then `IncorrectSceneStatus`: the contract's exception), never otherwise.
    let calls = env.fake.calls().len() as i64;
    let recorded: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(attempts), 0)::bigint FROM caster_stop_jobs")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(calls, recorded, "every call is an attempt of a job");
    let called_cancelled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM caster_stop_jobs WHERE status = 'cancelled' AND attempts > 0",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(called_cancelled, 0, "a cancelled job was called");
    let unexplained: Vec<String> = sqlx::query_scalar(
        "SELECT j.caster_id FROM caster_stop_jobs j WHERE j.attempts > 1 AND NOT EXISTS \
         (SELECT 1 FROM caster_stop_attempts a WHERE a.job_id = j.job_id \
          AND a.outcome IN ('transport-error', 'retryable'))",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert!(unexplained.is_empty(), "called twice: {unexplained:?}");
    assert_eq!(env.count_status("cancelled").await, cancelled as i64);
    drop(worker);
}
