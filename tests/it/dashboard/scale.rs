//! The job-count ledger against the table, and the dashboard over a million jobs (ignored in
//! normal runs; docs/BENCHMARKS.md).

use super::*;

/// The ledger of job counts agrees with the table through inserts, status changes, a batch
/// change, deletes, a fold and a truncate.
#[tokio::test]
async fn job_counts_ledger_matches_the_table() {
    let env = TestEnv::new().await;
    let pool = &env.pool;
    let exec = |sql: &'static str| async move {
        sqlx::query(sql).execute(pool).await.unwrap();
    };
    let check = || async {
        let truth: Vec<(Option<String>, String, i64)> = sqlx::query_as(
            "SELECT batch_id, status, count(*) FROM caster_stop_jobs GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        let ledger: Vec<(Option<String>, String, i64)> = sqlx::query_as(
            "SELECT batch_id, status, sum(jobs)::bigint FROM caster_stop_job_counts
             GROUP BY 1, 2 HAVING sum(jobs) <> 0 ORDER BY 1, 2",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(ledger, truth);
    };
    exec("INSERT INTO caster_stop_jobs (job_id, caster_id, batch_id, payload)
          SELECT gen_random_uuid(), 'c' || g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'b' || (g % 2) END, '{}'
          FROM generate_series(1, 300) g").await;
    check().await;
    exec("UPDATE caster_stop_jobs SET status = 'succeeded' WHERE caster_id LIKE 'c1%'").await;
    exec("UPDATE caster_stop_jobs SET status = 'failed' WHERE caster_id LIKE 'c2%'").await;
    exec("UPDATE caster_stop_jobs SET attempts = attempts + 1").await;
    check().await;
    exec("UPDATE caster_stop_jobs SET batch_id = 'moved' WHERE caster_id LIKE 'c3%'").await;
    exec("DELETE FROM caster_stop_jobs WHERE caster_id LIKE 'c4%'").await;
    check().await;
    exec(
        "WITH gone AS (DELETE FROM caster_stop_job_counts RETURNING *)
          INSERT INTO caster_stop_job_counts (batch_id, status, jobs, changed_at)
          SELECT batch_id, status, sum(jobs), max(changed_at) FROM gone
          GROUP BY batch_id, status HAVING sum(jobs) <> 0",
    )
    .await;
    check().await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM caster_stop_job_counts")
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(rows <= 12, "folded to one row per batch and status: {rows}");
    exec("TRUNCATE caster_stop_jobs CASCADE").await;
    check().await;
}

/// Times the overview and the filtered lists over 1,000,000 jobs (docs/BENCHMARKS.md):
/// `cargo test --release --test dashboard -- --ignored --nocapture bench_one_million_jobs`
/// (`DASHBOARD_BENCH_JOBS` changes the size). Prints each query's plan and each endpoint's
/// median, 95th percentile and worst time over 30 requests; fails if a median reaches 100 ms
/// or a filter's plan reads the whole jobs table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: fills a database with a million jobs"]
async fn bench_one_million_jobs() {
    let jobs: i64 = std::env::var("DASHBOARD_BENCH_JOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let env = TestEnv::new().await;
    let pool = &env.pool;
    let started = std::time::Instant::now();
    // 100 batches; 1 % failed (three codes), 0.5 % rejected, 0.5 % pending, the rest
    // succeeded; created over the last 7 days, newest last; one attempt per job with a
    // RequestId, a tenth of them on the account "media".
    sqlx::query(
        "INSERT INTO caster_stop_jobs (job_id, caster_id, region_id, batch_id, account, status,
             conclusion, request_id, error_code, http_status, attempts, payload, created_at,
             updated_at, finished_at)
         SELECT md5('job' || g)::uuid, 'studio-' || g, 'cn-shanghai', 'batch-' || (g % 100),
                CASE WHEN g % 10 = 0 THEN 'media' END,
                CASE WHEN g % 100 = 0 THEN 'failed' WHEN g % 200 = 1 THEN 'rejected'
                     WHEN g % 200 = 3 THEN 'pending' ELSE 'succeeded' END,
                CASE WHEN g % 100 = 0 THEN 'api-error' WHEN g % 200 = 1 THEN 'rejected'
                     WHEN g % 200 = 3 THEN NULL ELSE 'stopped' END,
                md5('rid' || g),
                CASE WHEN g % 100 = 0 THEN (ARRAY['InvalidCaster.NotFound', 'IncorrectSceneStatus',
                     'InvalidCasterId.Malformed'])[1 + (g / 100) % 3] END,
                CASE WHEN g % 100 = 0 THEN 404 END, 1,
                json_build_object('caster_id', 'studio-' || g)::text,
                now() - make_interval(secs => ($1 - g) * 604800.0 / $1),
                now(), now()
         FROM generate_series(1, $1) g",
    )
    .bind(jobs)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO caster_stop_attempts (job_id, attempt, started_at, finished_at, http_status,
             request_id, error_code, outcome)
         SELECT job_id, 1, created_at,
                created_at, coalesce(http_status, 200), request_id, error_code,
                CASE WHEN status = 'succeeded' THEN 'ok' ELSE 'permanent' END
         FROM caster_stop_jobs WHERE status <> 'pending'",
    )
    .execute(pool)
    .await
    .unwrap();
    // The last five minutes: ten calls a second on the default account.
    sqlx::query(
        "UPDATE caster_stop_attempts a SET started_at = now() - make_interval(secs => s.n / 10.0)
         FROM (SELECT job_id, row_number() OVER (ORDER BY created_at DESC) AS n
               FROM caster_stop_jobs WHERE account IS NULL AND status = 'succeeded'
               ORDER BY created_at DESC LIMIT 3000) s
         WHERE a.job_id = s.job_id",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("VACUUM ANALYZE caster_stop_jobs")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("VACUUM ANALYZE caster_stop_attempts")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "WITH gone AS (DELETE FROM caster_stop_job_counts RETURNING *)
         INSERT INTO caster_stop_job_counts (batch_id, status, jobs, changed_at)
         SELECT batch_id, status, sum(jobs), max(changed_at) FROM gone
         GROUP BY batch_id, status HAVING sum(jobs) <> 0",
    )
    .execute(pool)
    .await
    .unwrap();
    // The steady state: the dashboard folds the ledger every few seconds, autovacuum follows.
    sqlx::query("VACUUM ANALYZE caster_stop_job_counts")
        .execute(pool)
        .await
        .unwrap();
    println!("filled {jobs} jobs in {:.1?}", started.elapsed());

    let rid: String = sqlx::query_scalar(
        "SELECT request_id FROM caster_stop_jobs WHERE caster_id = 'studio-4242'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let job: uuid::Uuid =
        sqlx::query_scalar("SELECT job_id FROM caster_stop_jobs WHERE caster_id = 'studio-4242'")
            .fetch_one(pool)
            .await
            .unwrap();
    let day_ago = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let day_ago_text = day_ago
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();

    // The plans: every filter through an index.
    let search = |f: fn(&mut stopcaster::JobSearch)| {
        let mut s = stopcaster::JobSearch::default();
        f(&mut s);
        s
    };
    let plans = [
        ("no filter", search(|_| {})),
        ("status", search(|s| s.status = Some("failed".into()))),
        ("batch", search(|s| s.batch_id = Some("batch-42".into()))),
        (
            "caster",
            search(|s| s.caster_id = Some("studio-4242".into())),
        ),
        (
            "error code",
            search(|s| s.error_code = Some("InvalidCaster.NotFound".into())),
        ),
        (
            "time range",
            stopcaster::JobSearch {
                from: Some(day_ago),
                ..Default::default()
            },
        ),
        (
            "status and time range",
            stopcaster::JobSearch {
                status: Some("failed".into()),
                from: Some(day_ago),
                ..Default::default()
            },
        ),
    ];
    for (name, s) in &plans {
        let plan = stopcaster::explain_search(pool, s, None, 51).await.unwrap();
        println!("EXPLAIN {name}:\n{plan}\n");
        assert!(
            !plan.contains("Seq Scan on caster_stop_jobs"),
            "{name} reads the whole table:\n{plan}"
        );
    }
    let s = stopcaster::JobSearch {
        request_id: Some(rid.clone()),
        ..Default::default()
    };
    let plan = stopcaster::explain_search(pool, &s, None, 51)
        .await
        .unwrap();
    println!("EXPLAIN RequestId:\n{plan}\n");
    assert!(!plan.contains("Seq Scan"), "{plan}");

    // The endpoints, through the real server.
    let dash = Dashboard::start(&env, &[]);
    let page2: Value = serde_json::from_str(
        &env.http
            .get(dash.url("/api/jobs?status=succeeded"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    let after = page2["next"].as_str().unwrap().to_owned();
    let endpoints = [
        ("/".to_owned(), true),
        ("/api/overview".to_owned(), true),
        ("/jobs".to_owned(), true),
        ("/jobs?status=failed".to_owned(), true),
        ("/jobs?batch=batch-42".to_owned(), true),
        ("/jobs?caster=studio-4242".to_owned(), true),
        ("/jobs?error_code=InvalidCaster.NotFound".to_owned(), true),
        (format!("/jobs?request_id={rid}"), true),
        (
            format!("/jobs?status=failed&from={}", encode(&day_ago_text)),
            true,
        ),
        ("/jobs?since=1h".to_owned(), true),
        (format!("/jobs?status=succeeded&after={after}"), true),
        ("/api/jobs?batch=batch-42&status=failed".to_owned(), true),
        ("/batches/batch-42".to_owned(), false),
        ("/api/batches".to_owned(), false),
        (format!("/jobs/{job}"), false),
    ];
    println!("| endpoint | median | p95 | worst |\n| --- | --- | --- | --- |");
    let mut slow = Vec::new();
    for (path, required) in &endpoints {
        let url = dash.url(path);
        for _ in 0..3 {
            let r = env.http.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            r.bytes().await.unwrap();
        }
        let mut times = Vec::new();
        for _ in 0..30 {
            let t = std::time::Instant::now();
            let r = env.http.get(&url).send().await.unwrap();
            r.bytes().await.unwrap();
            times.push(t.elapsed());
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let (p50, p95, worst) = (ms(times[15]), ms(times[28]), ms(times[29]));
        println!("| `{path}` | {p50:.1} ms | {p95:.1} ms | {worst:.1} ms |");
        if *required && p50 >= 100.0 {
            slow.push(format!("{path}: {p50:.1} ms"));
        }
    }
    assert!(slow.is_empty(), "medians of 100 ms or more: {slow:?}");
}
