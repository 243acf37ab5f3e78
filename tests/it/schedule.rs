//! Scheduled stops and `cancel`, through the real binaries, RabbitMQ, Postgres and the
//! stand-in: calls never before their due time and the first within a second after it; a
//! worker killed before the due time; cancel before and during a run; past, malformed and
//! far-future `not_before`; `enqueue --at` and its errors.

use crate::common;

use std::time::Duration;

use common::{KEY_SECRET, TestEnv};
use lapin::options::BasicGetOptions;
use serde_json::Value;
use stopcaster::Secret;
use stopcaster_fake_live::{FakeLiveConfig, StudioState};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

async fn env_with_qps(qps: u32) -> TestEnv {
    let mut config = FakeLiveConfig::new(vec![(common::KEY_ID.into(), Secret::new(KEY_SECRET))]);
    config.qps = qps;
    TestEnv::with_fake(config).await
}

/// A due time `secs` from now, on a whole second (the stand-in's log truncates to milliseconds,
/// so a whole-second due time keeps the "never before" comparison exact).
fn due_in(secs: i64) -> OffsetDateTime {
    let t = OffsetDateTime::now_utc() + time::Duration::seconds(secs);
    t.replace_nanosecond(0).unwrap() + time::Duration::seconds(1)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// The stand-in's StopCaster calls for `caster`, as times.
fn call_times(env: &TestEnv, caster: &str) -> Vec<OffsetDateTime> {
    env.fake
        .calls()
        .iter()
        .filter(|c| c.caster_id.as_deref() == Some(caster))
        .map(|c| OffsetDateTime::parse(&c.time, &Rfc3339).unwrap())
        .collect()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn enqueue(env: &TestEnv, args: &[&str]) -> String {
    let mut all = vec!["enqueue"];
    all.extend_from_slice(args);
    let out = env.run_cli(&all, &[]);
    assert!(out.status.success(), "enqueue failed: {}", stderr(&out));
    stdout(&out).trim().to_owned()
}

async fn wait_status(env: &TestEnv, status: &str, n: i64, timeout: Duration) {
    common::wait_for(
        timeout,
        || async move { env.count_status(status).await >= n },
    )
    .await
    .unwrap_or_else(|_| panic!("{n} jobs {status} not reached within {timeout:?}"));
}

/// Rows still to run: scheduled or pending.
async fn open_jobs(env: &TestEnv) -> i64 {
    env.count_status("scheduled").await + env.count_status("pending").await
}

async fn metrics(addr: &str) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[tokio::test]
async fn scheduled_calls_leave_at_the_due_time_never_before() {
    let env = env_with_qps(10).await;
    let addr = free_addr();
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
        let at = OffsetDateTime::parse(&call.time, &Rfc3339).unwrap();
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

#[tokio::test]
async fn past_malformed_and_far_future_not_before() {
    let env = env_with_qps(100).await;
    let worker = env.spawn_worker(&[("STOPCASTER_QPS", "100")]);
    worker.wait_ready().await;
    let now = OffsetDateTime::now_utc();
    let past = rfc3339(now - time::Duration::hours(1));
    let in_300_days = rfc3339(now + time::Duration::days(300));
    let in_2_years = rfc3339(now + time::Duration::days(730));
    let body = |caster: &str, not_before: &str| {
        serde_json::to_vec(&serde_json::json!({
            "caster_id": caster, "job_id": uuid::Uuid::new_v4().to_string(),
            "not_before": not_before,
        }))
        .unwrap()
    };
    env.publish_raw(&[
        body("nb-past", &past),
        body("nb-malformed", "tomorrow at nine"),
        body("nb-far", &in_2_years),
        body("nb-300d", &in_300_days),
    ])
    .await;
    common::wait_for(Duration::from_secs(20), || async {
        env.count_status("succeeded").await == 1
            && env.count_status("rejected").await == 2
            && env.count_status("scheduled").await == 1
    })
    .await
    .expect("one succeeded, two rejected, one scheduled");
    let jobs = env.jobs().await;
    let by_caster = |c: &str| jobs.iter().find(|j| j["caster_id"] == c).unwrap().clone();
    assert_eq!(by_caster("nb-past")["status"], "succeeded", "past: at once");
    assert_eq!(call_times(&env, "nb-past").len(), 1);
    let malformed = by_caster("nb-malformed");
    assert_eq!(malformed["status"], "rejected");
    assert!(
        malformed["error_message"]
            .as_str()
            .unwrap()
            .contains("not_before is not an RFC 3339 time"),
        "{malformed}"
    );
    let far = by_caster("nb-far");
    assert_eq!(far["status"], "rejected");
    assert!(
        far["error_message"]
            .as_str()
            .unwrap()
            .contains("not_before is more than 366 days ahead"),
        "{far}"
    );
    assert_eq!(by_caster("nb-300d")["status"], "scheduled");
    let dead = env.drain_dead().await;
    let mut reasons: Vec<String> = dead.iter().filter_map(|d| d.2.clone()).collect();
    reasons.sort();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons.iter().all(|r| r.contains("not_before")),
        "{reasons:?}"
    );
    for c in ["nb-malformed", "nb-far", "nb-300d"] {
        assert!(call_times(&env, c).is_empty(), "{c}");
    }
    drop(worker);
}

#[tokio::test]
async fn enqueue_at_refuses_past_times_and_bad_zones_and_reads_clock_times_in_a_zone() {
    let env = env_with_qps(100).await;
    let out = env.run_cli(&["enqueue", "--at", "2020-01-01T00:00:00Z", "c1"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("in the past"), "{}", stderr(&out));
    let out = env.run_cli(
        &[
            "enqueue",
            "--at",
            "21:00",
            "--tz",
            "Mars/Olympus_Mons",
            "c1",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown time zone"),
        "{}",
        stderr(&out)
    );
    let out = env.run_cli(&["enqueue", "--at", "9pm", "c1"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("HH:MM"), "{}", stderr(&out));
    // Nothing was published by the refused commands (the topology may not even exist yet).
    let (conn, channel) = env.amqp().await;
    assert_eq!(env.queue_len(&env.names().jobs).await, 0);

    let out = env.run_cli(
        &[
            "enqueue",
            "--at",
            "21:00",
            "--tz",
            "Asia/Shanghai",
            "c-shanghai",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("+08:00[Asia/Shanghai]"),
        "{}",
        stderr(&out)
    );
    let msg = channel
        .basic_get(
            env.names().jobs.as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("the job message");
    let body: Value = serde_json::from_slice(&msg.delivery.data).unwrap();
    let at = OffsetDateTime::parse(body["not_before"].as_str().unwrap(), &Rfc3339).unwrap();
    // 21:00 in Shanghai is 13:00 UTC: the next one, within a day.
    let now = OffsetDateTime::now_utc();
    assert_eq!((at.hour(), at.minute(), at.second()), (13, 0, 0), "{at}");
    assert!(at > now && at - now <= time::Duration::days(1), "{at}");
    conn.close(200, "".into()).await.ok();
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
    let calls = env.fake.calls().len();
    assert_eq!(
        calls as i64,
        env.count_status("succeeded").await,
        "one call per job that ran, none for a cancelled one"
    );
    assert_eq!(env.count_status("cancelled").await, cancelled as i64);
    drop(worker);
}
