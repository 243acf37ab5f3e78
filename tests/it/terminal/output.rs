//! Quiet output: one-shot commands print their answer and no log lines; a worker's log file is
//! plain text and opens with its settings.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_commands_print_their_answer_and_no_log_lines() {
    let env = TestEnv::new().await;
    for args in [
        &["migrate"][..],
        &["migrate"],
        &["dead-letters", "replay", "--all"],
        &["dead-letters", "list"],
        &["report"],
    ] {
        let out = quiet(&env, args);
        let text = stderr(&out);
        assert!(out.status.success(), "{args:?}: {text}");
        assert!(
            !text.contains(" INFO ") && !text.contains(" DEBUG "),
            "{args:?} logs: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_log_file_is_plain_text_and_starts_with_its_settings() {
    let env = TestEnv::new().await;
    let dir = common::temp_dir("worker-log");
    let path = dir.join("worker.log");
    let file = std::fs::File::create(&path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stopcaster"))
        .arg("worker")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.child_env())
        .env("RUST_LOG", "")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&path).unwrap_or_default();
    let ready = common::wait_for(Duration::from_secs(30), || {
        let text = log();
        async move { text.contains("consuming") }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let text = log();
    assert!(ready.is_ok(), "the worker did not start:\n{text}");
    assert!(!text.contains("\x1b["), "colour codes in a file:\n{text}");
    let start: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("worker starting"))
        .collect();
    assert_eq!(start.len(), 1, "{text}");
    let line = start[0];
    for needle in [
        format!("endpoints=every region: {}", env.fake.endpoint()),
        "broker=amqp://guest@127.0.0.1:5672/%2f".to_owned(),
        format!("database={}", env.database_url),
        "region=cn-shanghai".to_owned(),
        "qps=10".to_owned(),
        "concurrency=64".to_owned(),
        "pacer=shared".to_owned(),
        format!("default (env, {KEY_ID}, account {})", common::ACCOUNT_UID),
    ] {
        assert!(line.contains(&needle), "{needle:?} missing from: {line}");
    }
    assert!(!text.contains(KEY_SECRET), "{text}");
    assert!(!text.contains("guest:guest"), "{text}");
    assert!(
        AMQP_URL.contains("guest:guest"),
        "the test's URL has a password"
    );
    std::fs::remove_dir_all(dir).ok();
}
