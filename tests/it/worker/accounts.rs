//! Keys and accounts: the secret never reaches the logs, and each job is called with the account
//! it names.

use super::*;

#[tokio::test]
async fn the_secret_never_reaches_the_logs() {
    let env = fast_env().await;
    env.fake
        .push_faults([Fault::Status503, Fault::Html502, Fault::DropConnection]);
    let mut worker = env.spawn_worker(&[
        ("STOPCASTER_QPS", "1000"),
        ("RUST_LOG", "trace"),
        ("STOPCASTER_LOG_FORMAT", "json"),
    ]);
    let ids = env
        .publish_jobs(&["studio-secret".to_owned(), "bad.id!".to_owned()])
        .await;
    env.publish_raw(&[b"garbage".to_vec()]).await;
    env.wait_terminal(3, Duration::from_secs(30)).await;
    worker.signal("TERM");
    worker.wait_exit(Duration::from_secs(30)).await;
    let logs = worker.logs();
    assert!(logs.len() > 20, "trace logging produced lines");
    assert!(
        logs.iter().any(|l| l.contains(&ids[0].to_string())),
        "logs name the job"
    );
    for line in &logs {
        assert!(!line.contains(KEY_SECRET), "secret in a log line: {line}");
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
    }
    // Nor in the database.
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM caster_stop_jobs j WHERE to_jsonb(j)::text LIKE '%' || $1 || '%'",
    )
    .bind(KEY_SECRET)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(leaked, 0);
}

#[tokio::test]
async fn jobs_use_the_account_they_name() {
    let mut config = FakeLiveConfig::new(vec![
        (common::KEY_ID.into(), Secret::new(KEY_SECRET)),
        ("LTAIsecondAccount".into(), Secret::new("second-secret")),
    ]);
    config.qps = 1000;
    let env = TestEnv::with_fake(config).await;
    let dir = common::temp_dir("accounts");
    let file = dir.join("accounts.json");
    std::fs::write(
        &file,
        r#"{"accounts": {"second": {"access_key_id_env": "SECOND_ID", "access_key_secret_env": "SECOND_SECRET", "qps": 500}}}"#,
    )
    .unwrap();
    let _worker = env.spawn_worker(&[
        ("STOPCASTER_QPS", "1000"),
        ("STOPCASTER_ACCOUNTS_FILE", file.to_str().unwrap()),
        ("SECOND_ID", "LTAIsecondAccount"),
        ("SECOND_SECRET", "second-secret"),
    ]);
    let bodies: Vec<Vec<u8>> = [
        r#"{"caster_id":"studio-default"}"#,
        r#"{"caster_id":"studio-second","account":"second"}"#,
        r#"{"caster_id":"studio-nobody","account":"nobody"}"#,
    ]
    .iter()
    .map(|b| b.as_bytes().to_vec())
    .collect();
    env.publish_raw(&bodies).await;
    env.wait_terminal(3, Duration::from_secs(30)).await;
    let calls = env.fake.calls();
    let key_of = |caster: &str| {
        calls
            .iter()
            .find(|c| c.caster_id.as_deref() == Some(caster))
            .and_then(|c| c.access_key_id.clone())
    };
    assert_eq!(key_of("studio-default").as_deref(), Some(common::KEY_ID));
    assert_eq!(
        key_of("studio-second").as_deref(),
        Some("LTAIsecondAccount")
    );
    assert_eq!(
        key_of("studio-nobody"),
        None,
        "no call for an unknown account"
    );
    let rows = env.jobs().await;
    let nobody = rows
        .iter()
        .find(|r| r["caster_id"] == "studio-nobody")
        .unwrap();
    assert_eq!(nobody["status"], "failed");
    assert_eq!(nobody["conclusion"], "unknown-account");
    assert_eq!(nobody["error_code"], "UnknownAccount");
    let second = rows
        .iter()
        .find(|r| r["caster_id"] == "studio-second")
        .unwrap();
    assert_eq!(second["status"], "succeeded");
    assert_eq!(second["account"], "second");
    let dead = wait_dead(&env, 1).await;
    assert_eq!(dead[0].2.as_deref(), Some("UnknownAccount"));
    std::fs::remove_dir_all(dir).ok();
}
