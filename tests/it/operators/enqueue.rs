//! `enqueue`: ten thousand ids from a file, deduplicated and confirmed; a non-zero exit with the
//! count when the broker refuses jobs.

use super::*;

#[tokio::test]
async fn enqueue_reads_a_file_dedupes_and_confirms_ten_thousand_jobs() {
    let env = TestEnv::with_running(&[]).await;
    let dir = common::temp_dir("enqueue");
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
