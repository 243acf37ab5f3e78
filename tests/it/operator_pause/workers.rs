//! Two workers honour a pause and a resume within a second; `--until` lifts a pause by itself;
//! waiting jobs spend none of their budget; `/readyz` and the metric say who, why, until when.

use std::time::Duration;

use time::OffsetDateTime;

use super::{WAIT, call_times, cli_ok, wait_held};
use crate::common::{self, TestEnv, wait_for};

/// A call the stand-in logs may start this long after the command returned (the workers read
/// the pause every quarter second; the rest is slack for a loaded machine).
const HONOURED_WITHIN: time::Duration = time::Duration::milliseconds(1_500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_honour_pause_and_resume_within_a_second() {
    let env = TestEnv::new().await;
    let metrics = common::free_addr();
    let a = env.spawn_worker(&[("STOPCASTER_METRICS_ADDR", metrics.as_str())]);
    let b = env.spawn_worker(&[]);
    a.wait_ready().await;
    b.wait_ready().await;
    let casters: Vec<String> = (0..300).map(|i| format!("pause-{i}")).collect();
    let mut args = vec!["enqueue", "--batch", "drill"];
    args.extend(casters.iter().map(String::as_str));
    cli_ok(&env, &args);
    // Both workers are calling (the pacer shares 10 calls a second between them).
    wait_for(WAIT, || async { call_times(&env).len() >= 20 })
        .await
        .expect("calls under way");

    cli_ok(
        &env,
        &[
            "pause",
            "--account",
            "default",
            "--reason",
            "key rotation",
            "--actor",
            "alice",
        ],
    );
    let paused = OffsetDateTime::now_utc();
    // Long enough for any late call to show; then nothing more may start.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = call_times(&env);
    let last = *before.last().unwrap();
    eprintln!("last call {} after pause returned", last - paused);
    assert!(
        last <= paused + HONOURED_WITHIN,
        "a call started {} after pause returned",
        last - paused
    );
    let (status, ready) = common::http::get(&env.http, &format!("http://{metrics}/readyz")).await;
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready.contains("account default paused by operator alice via cli")
            && ready.contains("key rotation (until resumed)"),
        "{ready}"
    );
    let (_, text) = common::http::get(&env.http, &format!("http://{metrics}/metrics")).await;
    assert!(
        text.contains("stopcaster_account_paused{account=\"default\",code=\"Operator.Paused\",paused_by=\"alice via cli")
            && text.contains("reason=\"key rotation\",until=\"\"} 1"),
        "{text}"
    );
    assert_eq!(env.count_status("failed").await, 0);
    let pending = env.count_status("pending").await;
    assert!(pending > 0, "jobs wait");

    cli_ok(
        &env,
        &["resume", "--account", "default", "--actor", "alice"],
    );
    let resumed = OffsetDateTime::now_utc();
    wait_for(WAIT, || async { call_times(&env).len() > before.len() })
        .await
        .expect("calls again");
    let first = call_times(&env)[before.len()];
    eprintln!("first call {} after resume returned", first - resumed);
    assert!(
        first <= resumed + HONOURED_WITHIN,
        "the first call after resume started {} after it returned",
        first - resumed
    );
    env.wait_terminal(300, Duration::from_secs(90)).await;
    assert_eq!(env.count_status("succeeded").await, 300);
    // The budget is untouched: no attempt was made while paused, and none failed but for
    // the stand-in's throttling of two workers sharing its exact quota.
    let during: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM caster_stop_attempts WHERE started_at > $1 AND started_at < $2",
    )
    .bind(paused + HONOURED_WITHIN)
    .bind(resumed)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(during, 0, "attempts recorded while paused");
    let failed: Vec<Option<String>> =
        sqlx::query_scalar("SELECT error_code FROM caster_stop_attempts WHERE outcome <> 'ok'")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    assert!(
        failed
            .iter()
            .all(|c| c.as_deref().is_some_and(|c| c.starts_with("Throttling"))),
        "{failed:?}"
    );
    let workers: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT worker) FROM caster_stop_attempts")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(workers, 2, "both workers called");
    let (status, _) = common::http::get(&env.http, &format!("http://{metrics}/readyz")).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_until_lifts_by_itself_and_holds_scheduled_stops() {
    let env = TestEnv::new().await;
    let metrics = common::free_addr();
    let worker = env.spawn_worker(&[("STOPCASTER_METRICS_ADDR", metrics.as_str())]);
    worker.wait_ready().await;
    let out = cli_ok(
        &env,
        &[
            "pause",
            "--account",
            "default",
            "--reason",
            "maintenance window",
            "--until",
            "4s",
        ],
    );
    assert!(out.contains("paused until 20"), "{out}");
    let paused = OffsetDateTime::now_utc();
    let until = paused + time::Duration::seconds(4);
    // Workers read the pauses within a second (the contract's promise, tested above): the
    // jobs go in once this one says it holds the account, not in the second before.
    wait_held(&env, &metrics).await;
    cli_ok(&env, &["enqueue", "--batch", "now", "u-1", "u-2", "u-3"]);
    // Due before the pause ends: held past its time.
    let due = (OffsetDateTime::now_utc() + time::Duration::milliseconds(1_500))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    cli_ok(&env, &["enqueue", "--batch", "at", "--at", &due, "u-4"]);
    env.wait_terminal(4, WAIT).await;
    let times = call_times(&env);
    assert_eq!(times.len(), 4, "one call each");
    // The stand-in's log keeps milliseconds; the pause lifts on the database's clock.
    assert!(
        times[0] >= until - time::Duration::milliseconds(50),
        "a call at {} before the pause's end {until}",
        times[0]
    );
    assert!(
        times[3] <= until + time::Duration::seconds(3),
        "lifted late: {}",
        times[3]
    );
    assert_eq!(env.count_status("succeeded").await, 4);
    let attempts: i64 = sqlx::query_scalar("SELECT max(attempts)::bigint FROM caster_stop_jobs")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(attempts, 1, "no budget spent waiting");
    worker
        .wait_log("operator's pause lifted", Duration::from_secs(5))
        .await;
}

#[tokio::test]
async fn pause_refuses_a_past_or_unreadable_until_and_an_unknown_account() {
    let env = TestEnv::new().await;
    for (until, says) in [
        ("2020-01-01T00:00:00Z", "that time is in the past"),
        ("tomorrow", "expected an RFC 3339 time"),
    ] {
        let out = env.run_cli(
            &[
                "pause",
                "--account",
                "default",
                "--reason",
                "r",
                "--until",
                until,
            ],
            &[],
        );
        assert!(!out.status.success());
        assert!(
            common::stderr(&out).contains(says),
            "{}",
            common::stderr(&out)
        );
    }
    let dir = common::temp_dir("accounts");
    let file = dir.join("accounts.json");
    std::fs::write(
        &file,
        r#"{"accounts": {"prod": {"access_key_id_env": "K", "access_key_secret_env": "S"}}}"#,
    )
    .unwrap();
    let out = env.run_cli(
        &["pause", "--account", "prdo", "--reason", "r"],
        &[("STOPCASTER_ACCOUNTS_FILE", file.to_str().unwrap())],
    );
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("unknown account \"prdo\""),
        "{}",
        common::stderr(&out)
    );
    let paused: i64 = sqlx::query_scalar("SELECT count(*) FROM stopcaster_operator_pauses")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(paused, 0, "nothing paused");
    let out = cli_ok(&env, &["resume", "--account", "default"]);
    assert!(out.contains("was not paused"), "{out}");
}
