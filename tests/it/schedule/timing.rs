//! When scheduled calls leave: at the due time and never before, after a worker killed before
//! it, and once however many copies of the message arrive.

use super::*;

#[tokio::test]
async fn scheduled_calls_leave_at_the_due_time_never_before() {
    let env = env_with_qps(10).await;
    let addr = common::free_addr();
    let worker = env.spawn_worker(&[
        ("STOPCASTER_QPS", "10"),
        ("STOPCASTER_METRICS_ADDR", addr.as_str()),
    ]);
    worker.wait_ready().await;
    let due = due_in(9);
    let casters: Vec<String> = (0..5).map(|i| format!("sched-{i}")).collect();
    let mut args = vec!["--batch", "at-due", "--at"];
    let due_text = rfc3339(due);
    args.push(&due_text);
    args.extend(casters.iter().map(String::as_str));
    enqueue(&env, &args);

    // Held in Postgres, acknowledged: the queue is empty and no call is made.
    wait_status(&env, "scheduled", 5, Duration::from_secs(6)).await;
    assert!(OffsetDateTime::now_utc() < due - time::Duration::seconds(1));
    assert_eq!(env.queue_len(&env.names().jobs).await, 0);
    for job in env.jobs().await {
        assert_eq!(job["status"], "scheduled");
        let not_before = OffsetDateTime::parse(job["not_before"].as_str().unwrap(), &Rfc3339);
        assert_eq!(not_before.unwrap(), due);
    }
    common::wait_for(Duration::from_secs(5), || async {
        metrics(&addr).await.contains("stopcaster_scheduled_jobs 5")
    })
    .await
    .expect("the gauge counts the scheduled jobs");
    // The report lists them with their due time and the batch's expected finish.
    let out = env.run_cli(
        &[
            "report",
            "--batch",
            "at-due",
            "--status",
            "scheduled",
            "--format",
            "json",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["jobs"].as_array().unwrap().len(), 5);
    assert_eq!(
        OffsetDateTime::parse(doc["jobs"][0]["not_before"].as_str().unwrap(), &Rfc3339).unwrap(),
        due
    );
    let finish = OffsetDateTime::parse(
        doc["summary"]["expected_finish"].as_str().unwrap(),
        &Rfc3339,
    )
    .unwrap();
    assert!(
        finish >= due + time::Duration::milliseconds(400),
        "{finish}"
    );
    assert!(finish <= due + time::Duration::seconds(2), "{finish}");
    let csv = stdout(&env.run_cli(&["report", "--batch", "at-due", "--format", "csv"], &[]));
    assert!(
        csv.lines().next().unwrap().ends_with(",not_before"),
        "{csv}"
    );

    wait_status(&env, "succeeded", 5, Duration::from_secs(30)).await;
    let mut all: Vec<OffsetDateTime> = Vec::new();
    for c in &casters {
        let times = call_times(&env, c);
        assert_eq!(times.len(), 1, "{c}: one call");
        assert!(times[0] >= due, "{c} called at {} before {due}", times[0]);
        all.extend(times);
    }
    all.sort();
    eprintln!(
        "due {due}; calls leave {:?} after it",
        all.iter().map(|t| *t - due).collect::<Vec<_>>()
    );
    assert!(
        all[0] < due + time::Duration::seconds(1),
        "first call at {} for {due}",
        all[0]
    );
    // Then at the account's pace (10/s): five calls take about 0.4 s, never a burst.
    assert!(
        all[4] - all[0] >= time::Duration::milliseconds(350),
        "{all:?}"
    );
    assert!(all[4] < due + time::Duration::seconds(3), "{all:?}");
    let text = metrics(&addr).await;
    assert!(
        text.contains("stopcaster_call_lateness_seconds_count 5"),
        "{text}"
    );
    assert!(
        text.contains("stopcaster_scheduled_jobs 0") || text.contains("stopcaster_scheduled_jobs")
    );
    drop(worker);
}

#[tokio::test]
async fn a_worker_killed_before_the_due_time_leaves_the_schedule_to_the_next_one() {
    let env = env_with_qps(100).await;
    let mut worker = env.spawn_worker(&[("STOPCASTER_QPS", "100")]);
    worker.wait_ready().await;
    let due = due_in(10);
    let due_text = rfc3339(due);
    let casters: Vec<String> = (0..3).map(|i| format!("kill9-{i}")).collect();
    let mut args = vec!["--at", due_text.as_str()];
    args.extend(casters.iter().map(String::as_str));
    enqueue(&env, &args);
    wait_status(&env, "scheduled", 3, Duration::from_secs(6)).await;
    worker.child.kill().unwrap(); // SIGKILL
    worker.child.wait().unwrap();
    assert!(OffsetDateTime::now_utc() < due - time::Duration::seconds(3));
    let worker = env.spawn_worker(&[("STOPCASTER_QPS", "100")]);
    worker.wait_ready().await;
    wait_status(&env, "succeeded", 3, Duration::from_secs(30)).await;
    for c in &casters {
        let times = call_times(&env, c);
        assert_eq!(times.len(), 1, "{c}: called once");
        assert!(times[0] >= due, "{c}: {} before {due}", times[0]);
        assert!(
            times[0] < due + time::Duration::seconds(1),
            "{c}: {} late",
            times[0]
        );
        assert_eq!(env.fake.caster(c), Some(StudioState::Stopped));
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM caster_stop_jobs")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(rows, 3);
    drop(worker);
}

/// Copies of a scheduled job's message (a redelivery of the original, or the copy of a stager
/// that published and then died before its commit) never make it run twice or early: before the
/// lead they are acknowledged against the `scheduled` row; within it the first copy takes the
/// job, and claims and statuses keep the others from calling.
#[tokio::test]
async fn copies_of_a_scheduled_message_run_it_once_on_time() {
    let env = env_with_qps(100).await;
    let worker = env.spawn_worker(&[("STOPCASTER_QPS", "100")]);
    worker.wait_ready().await;
    let due = due_in(8);
    let id = uuid::Uuid::new_v4();
    let body = serde_json::to_vec(&serde_json::json!({
        "caster_id": "copied", "job_id": id.to_string(), "not_before": rfc3339(due),
    }))
    .unwrap();
    env.publish_raw(&[body.clone(), body.clone()]).await;
    wait_status(&env, "scheduled", 1, Duration::from_secs(5)).await;
    common::wait_for(Duration::from_secs(5), || async {
        env.queue_len(&env.names().jobs).await == 0
    })
    .await
    .expect("both copies acknowledged while scheduled");
    assert_eq!(env.job(id).await["status"], "scheduled");
    // Within the lead (3 s), as the stager hands the job to the queue, a stray copy arrives
    // too: whichever comes first takes the job, the other finds it taken.
    let within = due - time::Duration::milliseconds(2_500) - OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::try_from(within).unwrap_or_default()).await;
    env.publish_raw(&[body]).await;
    wait_status(&env, "succeeded", 1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let times = call_times(&env, "copied");
    assert_eq!(times.len(), 1, "{times:?}");
    assert!(times[0] >= due, "{} before {due}", times[0]);
    assert!(env.job(id).await["staged_at"].is_string());
    drop(worker);
}
