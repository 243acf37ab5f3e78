//! `report`: CSV, JSON and table agree with the database; `--watch` ends when the batch is whole
//! and nothing is pending.

use super::*;

#[tokio::test]
async fn report_csv_json_and_table_agree_with_the_database() {
    let env = TestEnv::with_running(&["rep-a", "rep-b", "rep-c", "rep-other"]).await;
    // Two failed calls before success on some job: one throttled, one 503.
    env.fake.push_faults([Fault::Throttle, Fault::Status503]);
    let batch = cli_ok(
        &env,
        &[
            "enqueue",
            "rep-a",
            "rep-b",
            "rep-c",
            "rep-ghost",
            "--batch",
            "audit-1",
        ],
    );
    assert_eq!(batch.trim(), "audit-1");
    let _worker = env.spawn_worker(FAST);
    env.wait_terminal(4, WAIT).await;
    // The faults form one global script: audit-2 goes in only once audit-1 has taken both.
    cli_ok(&env, &["enqueue", "rep-other", "--batch", "audit-2"]);
    env.wait_terminal(5, WAIT).await;

    // What the tables say, independently of the report's queries.
    let db_rows = sqlx::query_as::<_, DbJob>(
        "SELECT job_id, caster_id, status, attempts, error_code, request_id, http_status
         FROM caster_stop_jobs WHERE batch_id = 'audit-1' ORDER BY created_at DESC, job_id",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert_eq!(db_rows.len(), 4);
    let (n_calls, first, last, retried, throttled): (
        i64,
        OffsetDateTime,
        OffsetDateTime,
        i64,
        i64,
    ) = sqlx::query_as(
        "SELECT count(*) AS calls, min(a.started_at) AS first, max(a.started_at) AS last,
                count(*) FILTER (WHERE a.attempt > 1) AS retried,
                count(*) FILTER (WHERE a.error_code LIKE 'Throttling%') AS throttled
         FROM caster_stop_attempts a JOIN caster_stop_jobs j USING (job_id)
         WHERE j.batch_id = 'audit-1'",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!((n_calls, retried, throttled), (6, 2, 1), "the faults hit");

    // CSV: header, then one record per job, newest first, the same values as the table.
    let csv = parse_csv(&cli_ok(
        &env,
        &["report", "--batch", "audit-1", "--format", "csv"],
    ));
    assert_eq!(csv[0], stopcaster::REPORT_COLUMNS);
    let col = |name: &str| csv[0].iter().position(|c| c == name).unwrap();
    assert_eq!(csv.len() - 1, db_rows.len());
    for (record, row) in csv[1..].iter().zip(&db_rows) {
        assert_eq!(record.len(), csv[0].len());
        assert_eq!(record[col("job_id")], row.job_id.to_string());
        assert_eq!(record[col("caster_id")], row.caster_id);
        assert_eq!(record[col("status")], row.status);
        assert_eq!(record[col("attempts")], row.attempts.to_string());
        assert_eq!(
            record[col("error_code")],
            row.error_code.clone().unwrap_or_default()
        );
        assert_eq!(
            record[col("request_id")],
            row.request_id.clone().unwrap_or_default()
        );
        assert_eq!(record[col("batch_id")], "audit-1");
    }

    // JSON: the same jobs and a summary matching the attempts table.
    let doc = cli_json(&env, &["report", "--batch", "audit-1", "--format", "json"]);
    let jobs = doc["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), db_rows.len());
    for (job, row) in jobs.iter().zip(&db_rows) {
        assert_eq!(job["job_id"], row.job_id.to_string());
        assert_eq!(job["status"], row.status);
        assert_eq!(job["attempts"], row.attempts);
        assert_eq!(job["http_status"].as_i64(), row.http_status.map(i64::from));
        assert!(ts(&job["created_at"]).is_some());
    }
    let s = &doc["summary"];
    assert_eq!(s["jobs"], 4);
    assert_eq!(s["by_status"]["succeeded"], 3);
    assert_eq!(s["by_status"]["failed"], 1);
    assert_eq!(s["by_status"]["pending"], 0);
    assert_eq!(s["calls"], n_calls);
    assert_eq!(s["retried_attempts"], retried);
    assert_eq!(s["throttled_attempts"], throttled);
    assert_eq!(
        s["failures_by_error_code"],
        serde_json::json!({"InvalidCaster.NotFound": 1})
    );
    assert_eq!(ts(&s["first_call"]), Some(first));
    assert_eq!(ts(&s["last_call"]), Some(last));

    // Table: for people, with the summary.
    let text = cli_ok(&env, &["report", "--batch", "audit-1"]);
    assert!(text.starts_with("job "), "{text}");
    assert!(
        text.contains(
            "batch audit-1: 4 jobs\nstatus: scheduled 0, pending 0, succeeded 3, failed 1, rejected 0, cancelled 0\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("retried attempts 2; throttled attempts 1"),
        "{text}"
    );
    assert_eq!(text.matches("rep-ghost").count(), 1);

    // Filters.
    let other = cli_json(
        &env,
        &["report", "--caster", "rep-other", "--format", "json"],
    );
    assert_eq!(other["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(other["jobs"][0]["batch_id"], "audit-2");
    assert!(other["summary"].is_null(), "no summary unless asked for");
    let failed = cli_json(&env, &["report", "--status", "failed", "--format", "json"]);
    let failed = failed["jobs"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["caster_id"], "rep-ghost");
    assert_eq!(failed[0]["error_code"], "InvalidCaster.NotFound");
    let recent = parse_csv(&cli_ok(
        &env,
        &["report", "--since", "1h", "--format", "csv"],
    ));
    assert_eq!(recent.len() - 1, 5);
    let newest = cli_json(&env, &["report", "--limit", "2", "--format", "json"]);
    let newest: Vec<OffsetDateTime> = newest["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| ts(&j["created_at"]).unwrap())
        .collect();
    let max: OffsetDateTime = sqlx::query_scalar("SELECT max(created_at) FROM caster_stop_jobs")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(newest.len(), 2);
    assert_eq!(newest[0], max, "newest first");
    assert!(newest[0] >= newest[1]);
    for bad in [
        &["report", "--since", "2x"][..],
        &["report", "--status", "done"],
        &["report", "--watch"],
        &["report", "--batch", "b", "--expect", "2"],
        &["report", "--batch", "b", "--watch", "--expect", "0"],
    ] {
        let out = env.run_cli(bad, &[]);
        assert!(!out.status.success(), "{bad:?} accepted");
    }
}

#[tokio::test]
async fn report_watch_exits_when_the_batch_has_all_its_jobs_and_nothing_pending() {
    let env = TestEnv::with_running(&[]).await;
    let id = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO caster_stop_jobs (job_id, caster_id, batch_id, payload)
         VALUES ($1, 'w-1', 'watch-1', '{}')",
    )
    .bind(id)
    .execute(&env.pool)
    .await
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stopcaster"))
        .args([
            "report", "--batch", "watch-1", "--watch", "--expect", "2", "--format", "json",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.child_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        })
    };
    let seen = |n: usize| {
        let lines = lines.clone();
        move || {
            let ok = lines.lock().unwrap().len() >= n;
            async move { ok }
        }
    };
    // Two summaries while the job is pending: it keeps watching.
    common::wait_for(Duration::from_secs(15), seen(2))
        .await
        .expect("summaries while pending");
    assert!(child.try_wait().unwrap().is_none(), "exited while pending");
    let first: Value = serde_json::from_str(&lines.lock().unwrap()[0]).unwrap();
    assert_eq!(first["by_status"]["pending"], 1);
    sqlx::query(
        "UPDATE caster_stop_jobs SET status = 'succeeded', finished_at = now() WHERE job_id = $1",
    )
    .bind(id)
    .execute(&env.pool)
    .await
    .unwrap();
    // Nothing pending, but the second job of the batch has no row yet: still watching.
    let printed = lines.lock().unwrap().len();
    common::wait_for(Duration::from_secs(15), seen(printed + 2))
        .await
        .expect("summaries while a job is still queued");
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited before --expect"
    );
    sqlx::query(
        "INSERT INTO caster_stop_jobs (job_id, caster_id, batch_id, payload, status, finished_at)
         VALUES ($1, 'w-2', 'watch-1', '{}', 'rejected', now())",
    )
    .bind(uuid::Uuid::new_v4())
    .execute(&env.pool)
    .await
    .unwrap();
    let mut status = None;
    common::wait_for(Duration::from_secs(15), || {
        status = child.try_wait().unwrap();
        let done = status.is_some();
        async move { done }
    })
    .await
    .unwrap_or_else(|_| {
        let _ = child.kill();
        panic!("--watch did not exit once the batch was finished")
    });
    assert!(status.unwrap().success());
    reader.join().unwrap();
    let last: Value = serde_json::from_str(lines.lock().unwrap().last().unwrap()).unwrap();
    assert_eq!(last["by_status"]["pending"], 0);
    assert_eq!(last["by_status"]["succeeded"], 1);
    assert_eq!(last["by_status"]["rejected"], 1);
}

/// A job as the tables hold it, read independently of the report's queries.
#[derive(sqlx::FromRow)]
struct DbJob {
    job_id: uuid::Uuid,
    caster_id: String,
    status: String,
    attempts: i32,
    error_code: Option<String>,
    request_id: Option<String>,
    http_status: Option<i32>,
}
