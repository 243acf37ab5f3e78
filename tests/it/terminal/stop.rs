//! `stopcaster stop`: recorded like a job, saying so when it cannot be, with one region flag and
//! every argument described.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_is_recorded_like_a_job_and_says_so_when_it_cannot_be() {
    let env = TestEnv::new().await;
    let out = quiet(&env, &["stop", "studio-rec", "--region", "cn-beijing"]);
    let request_id = stdout_ok(&out).trim().to_owned();
    assert_eq!(stderr(&out), "", "nothing but the answer");
    assert_eq!(request_id, env.fake.calls()[0].request_id);
    // Again: the studio is stopped now, a permanent error (exit 3), recorded as failed.
    let again = quiet(&env, &["stop", "studio-rec", "--region", "cn-beijing"]);
    assert_eq!(again.status.code(), Some(3), "{}", stderr(&again));

    let doc: serde_json::Value = serde_json::from_str(&stdout_ok(&quiet(
        &env,
        &["report", "--caster", "studio-rec", "--format", "json"],
    )))
    .unwrap();
    let jobs = doc["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{doc:#}");
    let ok = jobs
        .iter()
        .find(|j| j["status"] == "succeeded")
        .expect("the stop");
    assert_eq!(ok["batch_id"], "stop-command");
    assert_eq!(ok["region_id"], "cn-beijing");
    assert_eq!(ok["request_id"], request_id.as_str());
    assert_eq!(ok["attempts"], 1);
    let failed = jobs.iter().find(|j| j["status"] == "failed").unwrap();
    assert_eq!(failed["error_code"], "IncorrectSceneStatus");
    assert_eq!(failed["conclusion"], "api-error");
    let job_id: uuid::Uuid = ok["job_id"].as_str().unwrap().parse().unwrap();
    let attempts = env.attempts(job_id).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["request_id"], request_id.as_str());
    assert_eq!(attempts[0]["outcome"], "ok");
    // The answer's quota header is kept, as a worker's attempt keeps it (the dashboard draws it).
    let (limit, remain): (Option<i32>, Option<i32>) = sqlx::query_as(
        "SELECT quota_limit, quota_remain FROM caster_stop_attempts WHERE job_id = $1",
    )
    .bind(job_id)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(limit, Some(10), "the stand-in's default quota");
    assert!(remain.is_some());
    // The table shows it too, by its short RequestId.
    let table = stdout_ok(&quiet(&env, &["report", "--caster", "studio-rec"]));
    assert!(table.contains(&request_id[..8]), "{table}");
    let wide = stdout_ok(&quiet(
        &env,
        &["report", "--caster", "studio-rec", "--wide"],
    ));
    assert!(wide.contains("stop-command"), "{wide}");
    assert!(wide.contains(&request_id), "{wide}");

    // The database down: the call is still made, the operator is told it is not recorded.
    let port = common::free_port();
    let database = format!("postgres://root:{PASSWORD}@127.0.0.1:{port}/stopcaster");
    let started = Instant::now();
    let out = env.run_cli(
        &["stop", "studio-unrecorded"],
        &[("DATABASE_URL", &database), ("RUST_LOG", "")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(started.elapsed() < FAST);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        env.fake.calls()[2].request_id
    );
    let text = stderr(&out);
    assert!(
        text.starts_with("warning: this call is not recorded: cannot connect to Postgres at "),
        "{text}"
    );
    assert!(text.contains("connection refused"), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(!text.contains(PASSWORD));
}

#[test]
fn stop_offers_one_region_flag_and_describes_every_argument() {
    let (out, _) = run(&["stop", "-h"], &[]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    assert_eq!(help.matches("--region").count(), 1, "{help}");
    assert!(!help.contains("--default-region"), "{help}");
    assert!(help.contains("STOPCASTER_REGION"), "{help}");
    assert!(
        help.contains("<CASTER_ID>  The production studio's CasterId"),
        "{help}"
    );
    assert!(help.contains("DATABASE_URL"), "{help}");
}
