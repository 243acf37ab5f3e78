//! The operator commands through the real binary, against RabbitMQ, Postgres and the stand-in:
//! `report` (CSV, JSON, table, filters, `--watch`) agrees with the tables, and `dead-letters
//! list` / `replay` inspect and re-run dead-lettered jobs without harm when repeated.

use crate::common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::TestEnv;
use serde_json::Value;
use sqlx::Row;
use stopcaster_fake_live::{Fault, StudioState};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const FAST: &[(&str, &str)] = &[("STOPCASTER_QPS", "1000"), ("STOPCASTER_CONCURRENCY", "16")];
const WAIT: Duration = Duration::from_secs(30);

/// Runs the CLI and insists on success; its standard output.
fn cli_ok(env: &TestEnv, args: &[&str]) -> String {
    let out = env.run_cli(args, &[]);
    assert!(
        out.status.success(),
        "stopcaster {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn cli_json(env: &TestEnv, args: &[&str]) -> Value {
    let out = cli_ok(env, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

/// A minimal RFC 4180 reader (quoted fields, doubled quotes, CRLF records): enough to check
/// what `report --format csv` wrote.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => assert_eq!(chars.next(), Some('\n'), "CR without LF"),
            (false, '\n') => panic!("a record ends with LF alone, not CRLF"),
            (false, c) => field.push(c),
        }
        if !quoted && c == '\r' {
            record.push(std::mem::take(&mut field));
            records.push(std::mem::take(&mut record));
        }
    }
    assert!(field.is_empty() && record.is_empty(), "unterminated record");
    records
}

#[test]
fn the_csv_reader_reads_quotes() {
    assert_eq!(
        parse_csv("a,\"b,\"\"c\"\"\",\r\n,x\r\n"),
        [vec!["a", "b,\"c\"", ""], vec!["", "x"]]
    );
}

fn ts(value: &Value) -> Option<OffsetDateTime> {
    value
        .as_str()
        .map(|s| OffsetDateTime::parse(s, &Rfc3339).unwrap_or_else(|e| panic!("{s:?}: {e}")))
}

/// Waits until the job's dead letter is confirmed in `P.dead` (the worker notes it after the
/// broker's confirm).
async fn wait_dead_lettered(env: &TestEnv, id: uuid::Uuid) {
    let pool = env.pool.clone();
    common::wait_for(WAIT, || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT dead_lettered_at IS NOT NULL FROM caster_stop_jobs WHERE job_id = $1",
            )
            .bind(id)
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
            .unwrap_or(false)
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no dead letter for {id}"));
}

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
    let db_rows = sqlx::query(
        "SELECT job_id, caster_id, status, attempts, error_code, request_id, http_status
         FROM caster_stop_jobs WHERE batch_id = 'audit-1' ORDER BY created_at DESC, job_id",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert_eq!(db_rows.len(), 4);
    let calls = sqlx::query(
        "SELECT count(*) AS calls, min(a.started_at) AS first, max(a.started_at) AS last,
                count(*) FILTER (WHERE a.attempt > 1) AS retried,
                count(*) FILTER (WHERE a.error_code LIKE 'Throttling%') AS throttled
         FROM caster_stop_attempts a JOIN caster_stop_jobs j USING (job_id)
         WHERE j.batch_id = 'audit-1'",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    let (n_calls, retried, throttled): (i64, i64, i64) = (
        calls.get("calls"),
        calls.get("retried"),
        calls.get("throttled"),
    );
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
        assert_eq!(
            record[col("job_id")],
            row.get::<uuid::Uuid, _>("job_id").to_string()
        );
        assert_eq!(record[col("caster_id")], row.get::<String, _>("caster_id"));
        assert_eq!(record[col("status")], row.get::<String, _>("status"));
        assert_eq!(
            record[col("attempts")],
            row.get::<i32, _>("attempts").to_string()
        );
        assert_eq!(
            record[col("error_code")],
            row.get::<Option<String>, _>("error_code")
                .unwrap_or_default()
        );
        assert_eq!(
            record[col("request_id")],
            row.get::<Option<String>, _>("request_id")
                .unwrap_or_default()
        );
        assert_eq!(record[col("batch_id")], "audit-1");
    }

    // JSON: the same jobs and a summary matching the attempts table.
    let doc = cli_json(&env, &["report", "--batch", "audit-1", "--format", "json"]);
    let jobs = doc["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), db_rows.len());
    for (job, row) in jobs.iter().zip(&db_rows) {
        assert_eq!(
            job["job_id"],
            row.get::<uuid::Uuid, _>("job_id").to_string()
        );
        assert_eq!(job["status"], row.get::<String, _>("status"));
        assert_eq!(job["attempts"], row.get::<i32, _>("attempts"));
        assert_eq!(
            job["http_status"].as_i64(),
            row.get::<Option<i32>, _>("http_status").map(i64::from)
        );
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
    assert_eq!(
        ts(&s["first_call"]),
        Some(calls.get::<OffsetDateTime, _>("first"))
    );
    assert_eq!(
        ts(&s["last_call"]),
        Some(calls.get::<OffsetDateTime, _>("last"))
    );

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

#[tokio::test]
async fn a_dead_letter_is_listed_kept_and_replayed_once() {
    let env = TestEnv::with_running(&["dl-known"]).await;
    let _worker = env.spawn_worker(FAST);
    cli_ok(&env, &["enqueue", "dl-ghost", "--batch", "dl"]);
    env.wait_terminal(1, WAIT).await;
    let row = &env.jobs().await[0];
    let id: uuid::Uuid = row["job_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(row["status"], "failed");
    assert_eq!(row["error_code"], "InvalidCaster.NotFound");
    wait_dead_lettered(&env, id).await;
    let dead = env.names().dead;

    // Listing shows it and leaves it in the queue, however often it is run.
    for _ in 0..2 {
        let list = cli_json(&env, &["dead-letters", "list", "--format", "json"]);
        assert_eq!(list["queue"], dead.as_str());
        assert_eq!(list["count"], 1);
        let m = &list["messages"][0];
        assert_eq!(m["job_id"], id.to_string());
        assert_eq!(m["caster_id"], "dl-ghost");
        assert_eq!(m["batch_id"], "dl");
        assert_eq!(m["reason"], "InvalidCaster.NotFound");
        assert_eq!(env.queue_len(&dead).await, 1, "list keeps the message");
    }
    let table = cli_ok(&env, &["dead-letters", "list"]);
    assert!(table.contains(&id.to_string()) && table.contains("InvalidCaster.NotFound"));

    // A job id that is not in the queue: non-zero, nothing touched.
    let stranger = uuid::Uuid::new_v4().to_string();
    let out = env.run_cli(&["dead-letters", "replay", &stranger], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&stranger));
    assert_eq!(env.queue_len(&dead).await, 1);
    assert_eq!(env.job(id).await["status"], "failed");

    // The studio exists now: the replay lets the worker stop it.
    env.fake.set_caster("dl-ghost", StudioState::Running);
    let out = cli_ok(&env, &["dead-letters", "replay", &id.to_string()]);
    assert!(out.contains(&format!("replayed {id}")), "{out}");
    let pool = env.pool.clone();
    common::wait_for(WAIT, || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT status FROM caster_stop_jobs WHERE job_id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .is_ok_and(|s| s == "succeeded")
        }
    })
    .await
    .expect("the replayed job succeeds");
    let row = env.job(id).await;
    assert_eq!(row["replays"], 1);
    assert_eq!(row["attempts"], 2);
    assert_eq!(
        row["attempt_budget"],
        1 + 8,
        "a fresh budget on top of the calls made"
    );
    assert_eq!(row["conclusion"], "stopped");
    assert!(row["dead_lettered_at"].is_null());
    assert_eq!(env.fake.caster("dl-ghost"), Some(StudioState::Stopped));
    assert_eq!(env.queue_len(&dead).await, 0, "the dead letter is gone");
    let replays = sqlx::query(
        "SELECT previous_status, previous_error_code, reason, reopened FROM caster_stop_replays
         WHERE job_id = $1",
    )
    .bind(id)
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert_eq!(replays.len(), 1);
    assert_eq!(replays[0].get::<String, _>("previous_status"), "failed");
    assert_eq!(
        replays[0].get::<String, _>("previous_error_code"),
        "InvalidCaster.NotFound"
    );
    assert_eq!(
        replays[0].get::<String, _>("reason"),
        "InvalidCaster.NotFound"
    );
    assert!(replays[0].get::<bool, _>("reopened"));

    // Again: nothing to find, nothing changes.
    let out = env.run_cli(&["dead-letters", "replay", &id.to_string()], &[]);
    assert!(!out.status.success(), "the job is no longer in P.dead");
    let out = cli_ok(&env, &["dead-letters", "replay", "--all"]);
    assert!(out.is_empty(), "{out}");
    let again = env.job(id).await;
    assert_eq!(again["replays"], 1);
    assert_eq!(again["status"], "succeeded");
    assert_eq!(again["attempts"], 2);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM caster_stop_replays")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(env.queue_len(&env.names().jobs).await, 0);
    assert_eq!(
        env.fake.calls().len(),
        2,
        "one call before, one after the replay"
    );
}

#[tokio::test]
async fn a_replayed_malformed_message_is_rejected_again() {
    let env = TestEnv::with_running(&[]).await;
    let _worker = env.spawn_worker(FAST);
    env.publish_raw(&[b"not json".to_vec()]).await;
    env.wait_terminal(1, WAIT).await;
    let id: uuid::Uuid = env.jobs().await[0]["job_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    wait_dead_lettered(&env, id).await;
    let out = cli_ok(&env, &["dead-letters", "replay", "--all"]);
    assert!(out.contains("rejected (malformed) message"), "{out}");
    // The worker rejects it again (same job id, through message_id) and dead-letters it anew.
    wait_dead_lettered(&env, id).await;
    let dead = env.names().dead;
    common::wait_for(WAIT, || {
        let env = &env;
        let dead = dead.clone();
        async move { env.queue_len(&dead).await == 1 }
    })
    .await
    .expect("back in P.dead");
    let rows = env.jobs().await;
    assert_eq!(rows.len(), 1, "the same job, not a new one");
    assert_eq!(rows[0]["status"], "rejected");
    assert_eq!(rows[0]["replays"], 1);
    let letters = env.drain_dead().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].0, b"not json");
    assert_eq!(letters[0].1.as_deref(), Some(id.to_string().as_str()));
}

#[tokio::test]
async fn enqueue_reads_a_file_dedupes_and_confirms_ten_thousand_jobs() {
    let env = TestEnv::with_running(&[]).await;
    let dir = std::env::temp_dir().join(common::unique("enqueue"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("studios.txt");
    let mut text = String::from("# end of show 42\n\n");
    for i in 0..10_000 {
        text.push_str(&format!("  studio-{i}  \n"));
    }
    text.push_str("studio-7\n# repeated above\n");
    std::fs::write(&file, text).unwrap();
    let started = std::time::Instant::now();
    let out = env.run_cli(
        &[
            "enqueue",
            "--file",
            file.to_str().unwrap(),
            "--batch",
            "show-42",
            "--region",
            "cn-beijing",
        ],
        &[("RUST_LOG", "")],
    );
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "show-42");
    // Off a terminal: the duplicate, then one summary line, no progress lines.
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert_eq!(lines[0], "duplicate CasterId studio-7: enqueued once");
    assert!(
        lines[1].starts_with("10000 jobs confirmed in batch show-42 ("),
        "{stderr}"
    );
    assert_eq!(env.queue_len(&env.names().jobs).await, 10_000);
    assert!(took < Duration::from_secs(60), "10,000 ids took {took:?}");
    eprintln!("enqueue of 10,000 ids took {took:?}");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn enqueue_exits_non_zero_with_the_count_when_the_broker_refuses_jobs() {
    let env = TestEnv::with_running(&[]).await;
    // A policy on this test's queue alone: once it holds more than one message, publishes are
    // nacked.
    let jobs = env.names().jobs;
    let policy = format!("{}-limit", env.prefix);
    common::run_command(
        "rabbitmqctl",
        &[
            "set_policy",
            &policy,
            &format!("^{}$", jobs.replace('.', "\\.")),
            r#"{"max-length":1,"overflow":"reject-publish"}"#,
            "--apply-to",
            "queues",
        ],
    );
    // Two jobs take the queue over its limit, each accepted since the queue was not over it
    // before; from then on publishes are refused.
    cli_ok(&env, &["enqueue", "--batch", "refused", "a-1", "a-2"]);
    let out = env.run_cli(&["enqueue", "--batch", "refused", "a-3", "a-4"], &[]);
    common::run_command("rabbitmqctl", &["clear_policy", &policy]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // A quorum queue may learn it is over its limit one message late: that one is confirmed.
    let refused = ["2 of 2", "1 of 2"]
        .into_iter()
        .find(|n| stderr.contains(&format!("{n} jobs were not confirmed by the broker")));
    assert!(refused.is_some(), "{stderr}");
    // Each refused job is named, so that it can be enqueued again.
    let named = stderr
        .lines()
        .filter(|l| l.starts_with("not confirmed: a-"))
        .count();
    assert_eq!(
        named,
        if refused == Some("2 of 2") { 2 } else { 1 },
        "{stderr}"
    );
    if refused == Some("2 of 2") {
        assert!(stderr.contains("not confirmed: a-3 (job "), "{stderr}");
    }
    assert!(stderr.contains("not confirmed: a-4 (job "), "{stderr}");
    assert!(
        env.queue_len(&jobs).await >= 2,
        "the confirmed jobs are queued"
    );
}

#[tokio::test]
async fn metrics_health_and_readiness_after_a_small_batch() {
    let env = TestEnv::with_running(&["m-1", "m-2", "m-3"]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let worker = env.spawn_worker(&[
        ("STOPCASTER_QPS", "1000"),
        ("STOPCASTER_METRICS_ADDR", addr.as_str()),
    ]);
    worker.wait_ready().await;
    env.publish_jobs(&["m-1".into(), "m-2".into(), "m-3".into(), "m-unknown".into()])
        .await;
    env.wait_terminal(4, WAIT).await;
    let get = |path: &str| {
        let url = format!("http://{addr}{path}");
        let http = env.http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await.0, 200);
    let (status, text) = get("/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "stopcaster_jobs_total{status=\"succeeded\"} 3",
        "stopcaster_jobs_total{status=\"failed\"} 1",
        "stopcaster_attempts_total{outcome=\"ok\",code=\"\"} 3",
        "stopcaster_attempts_total{outcome=\"permanent\",code=\"InvalidCaster.NotFound\"} 1",
        "stopcaster_api_latency_seconds_count 4",
        "stopcaster_broker_connected 1",
        "stopcaster_database_connected 1",
        "stopcaster_jobs_in_flight 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
}

#[tokio::test]
async fn bench_runs_real_workers_and_reports_its_figures() {
    // The bench makes and drops its own database and queues on the default servers.
    let out = Command::new(env!("CARGO_BIN_EXE_stopcaster"))
        .args([
            "bench",
            "--studios",
            "20",
            "--workers",
            "2",
            "--qps",
            "50",
            "--latency-ms",
            "0",
            "--pacer-margin-ms",
            "7",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "setup: 20 studios, 2 worker process(es), quota 50 calls/s, pacer margin 7 ms"
        ),
        "{stdout}"
    );
    let figure = |name: &str| -> f64 {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {name} line: {stdout}"))
            .parse()
            .unwrap()
    };
    assert_eq!(figure("succeeded"), 20.0);
    // A throttled call (rare under load, see docs/BENCHMARKS.md) is one call more.
    assert_eq!(figure("calls"), 20.0 + figure("throttled"));
    let efficiency = figure("efficiency");
    assert!(efficiency > 0.0 && efficiency <= 1.0, "{efficiency}");
}

/// The worker processes a bench started, as listed in /proc (their parent is `pid`).
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[tokio::test]
async fn an_interrupted_bench_leaves_no_worker_behind() {
    // A slow batch: the bench is still waiting for it when interrupted.
    let mut bench = Command::new(env!("CARGO_BIN_EXE_stopcaster"))
        .args([
            "bench",
            "--studios",
            "200",
            "--workers",
            "2",
            "--qps",
            "5",
            "--latency-ms",
            "0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = bench.id();
    let mut workers = Vec::new();
    common::wait_for(Duration::from_secs(30), || {
        workers = children_of(pid);
        std::future::ready(workers.len() == 2)
    })
    .await
    .expect("the bench started its two workers");
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = tokio::task::spawn_blocking(move || bench.wait().unwrap())
        .await
        .unwrap();
    assert!(!exited.success(), "{exited:?}");
    // Killed and reaped by the bench before it exited: no such process any more.
    for w in workers {
        assert!(
            !std::path::Path::new(&format!("/proc/{w}")).exists(),
            "worker {w} outlived its bench"
        );
    }
}
