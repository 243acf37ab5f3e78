//! What a job comes to: a stopped studio and its RequestId, permanent errors dead-lettered with
//! their headers, retries, a lost response, and `stop`'s one-off call with its exit codes.

use super::*;

#[tokio::test]
async fn stops_a_studio_and_records_the_request_id() {
    let env = fast_env().await;
    let worker = env.spawn_worker(FAST);
    let ids = env.publish_jobs(&["studio-ok-1".to_owned()]).await;
    env.wait_terminal(1, Duration::from_secs(30)).await;
    let row = env.job(ids[0]).await;
    assert_eq!(row["status"], "succeeded");
    assert_eq!(row["conclusion"], "stopped");
    assert_eq!(row["attempts"], 1);
    assert_eq!(row["region_id"], "cn-shanghai");
    let calls = env.fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(row["request_id"], calls[0].request_id.as_str());
    assert_eq!(env.fake.caster("studio-ok-1"), Some(StudioState::Stopped));
    let attempts = env.attempts(ids[0]).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["outcome"], "ok");
    assert_eq!(attempts[0]["request_id"], calls[0].request_id.as_str());
    assert!(attempts[0]["finished_at"].is_string());
    assert!(env.drain_dead().await.is_empty());
    drop(worker);
}

#[tokio::test]
async fn permanent_errors_fail_and_dead_letter_with_headers() {
    let mut casters = HashMap::new();
    casters.insert("studio-stopped".to_owned(), StudioState::Stopped);
    casters.insert("studio-running".to_owned(), StudioState::Running);
    let mut config = FakeLiveConfig::new(vec![(common::KEY_ID.into(), Secret::new(KEY_SECRET))]);
    config.qps = 1000;
    config.casters = Some(casters);
    let env = TestEnv::with_fake(config).await;
    let _worker = env.spawn_worker(FAST);
    // NotFound, IncorrectSceneStatus, and an id the worker accepts but the API calls malformed.
    let cases = [
        ("studio-unknown", "InvalidCaster.NotFound"),
        ("studio-stopped", "IncorrectSceneStatus"),
        ("bad.id!", "InvalidCasterId.Malformed"),
    ];
    let ids = env
        .publish_jobs(&cases.iter().map(|(c, _)| c.to_string()).collect::<Vec<_>>())
        .await;
    env.wait_terminal(3, Duration::from_secs(30)).await;
    let dead = wait_dead(&env, 3).await;
    for ((caster, code), id) in cases.iter().zip(&ids) {
        let row = env.job(*id).await;
        assert_eq!(row["status"], "failed", "{caster}");
        assert_eq!(row["error_code"], *code);
        assert_eq!(row["conclusion"], "api-error");
        assert_eq!(row["attempts"], 1, "permanent errors are not retried");
        assert!(row["request_id"].is_string());
        let letter = dead
            .iter()
            .find(|(_, job, _)| job.as_deref() == Some(id.to_string().as_str()))
            .unwrap_or_else(|| panic!("no dead letter for {caster}"));
        assert_eq!(letter.2.as_deref(), Some(*code));
        let body: serde_json::Value = serde_json::from_slice(&letter.0).unwrap();
        assert_eq!(body["caster_id"], *caster, "the original body is kept");
    }
}

#[tokio::test]
async fn wrong_secret_pauses_the_account_instead_of_failing_the_job() {
    let env = fast_env().await;
    let worker = env.spawn_worker(&[
        ("STOPCASTER_QPS", "1000"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "not-the-secret"),
    ]);
    let ids = env.publish_jobs(&["studio-a".to_owned()]).await;
    worker
        .wait_log("account paused", Duration::from_secs(30))
        .await;
    // The log line comes as the answer arrives; the attempt row is committed just after.
    common::wait_for(Duration::from_secs(30), || async {
        env.attempts(ids[0])
            .await
            .first()
            .is_some_and(|a| a["outcome"] == "credentials-refused")
    })
    .await
    .expect("the refused call is recorded");
    let row = env.job(ids[0]).await;
    assert_eq!(row["status"], "pending", "not the job's fault");
    assert_eq!(row["error_code"], "SignatureDoesNotMatch");
    let attempts = env.attempts(ids[0]).await;
    assert_eq!(attempts[0]["outcome"], "credentials-refused");
    assert!(env.drain_dead().await.is_empty());
}

#[tokio::test]
async fn retries_a_500_then_succeeds() {
    let env = fast_env().await;
    env.fake
        .push_faults([Fault::Status500InternalError, Fault::Status503]);
    let _worker = env.spawn_worker(FAST);
    let ids = env.publish_jobs(&["studio-flaky".to_owned()]).await;
    env.wait_terminal(1, Duration::from_secs(30)).await;
    let row = env.job(ids[0]).await;
    assert_eq!(row["status"], "succeeded");
    assert_eq!(row["attempts"], 3);
    let attempts = env.attempts(ids[0]).await;
    let outcomes: Vec<&str> = attempts
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["retryable", "retryable", "ok"]);
    assert_eq!(attempts[0]["error_code"], "InternalError");
    assert_eq!(attempts[0]["http_status"], 500);
    assert_eq!(attempts[1]["error_code"], "ServiceUnavailable");
    assert_eq!(row["request_id"], attempts[2]["request_id"]);
    assert!(env.drain_dead().await.is_empty());
}

#[tokio::test]
async fn retries_exhausted_fails_with_reason() {
    let env = fast_env().await;
    env.fake.set_fail_rate(1.0);
    let _worker = env.spawn_worker(&[("STOPCASTER_QPS", "1000"), ("STOPCASTER_MAX_ATTEMPTS", "3")]);
    let ids = env.publish_jobs(&["studio-down".to_owned()]).await;
    env.wait_terminal(1, Duration::from_secs(30)).await;
    let row = env.job(ids[0]).await;
    assert_eq!(row["status"], "failed");
    assert_eq!(row["conclusion"], "retries-exhausted");
    assert_eq!(row["attempts"], 3);
    assert_eq!(row["error_code"], "ServiceUnavailable");
    assert_eq!(row["http_status"], 503);
    assert_eq!(env.fake.calls().len(), 3);
    let dead = wait_dead(&env, 1).await;
    assert_eq!(dead[0].2.as_deref(), Some("retries-exhausted"));
    assert_eq!(dead[0].1.as_deref(), Some(ids[0].to_string().as_str()));
}

#[tokio::test]
async fn lost_response_then_incorrect_scene_status_is_success() {
    let env = fast_env().await;
    env.fake.push_faults([Fault::StopThenDrop]);
    let _worker = env.spawn_worker(FAST);
    let ids = env.publish_jobs(&["studio-lost".to_owned()]).await;
    env.wait_terminal(1, Duration::from_secs(30)).await;
    let row = env.job(ids[0]).await;
    assert_eq!(row["status"], "succeeded");
    assert_eq!(row["conclusion"], "stopped-by-unanswered-attempt");
    assert_eq!(row["error_code"], "IncorrectSceneStatus");
    assert!(row["request_id"].is_null());
    let calls = env.fake.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(row["evidence_request_id"], calls[1].request_id.as_str());
    let attempts = env.attempts(ids[0]).await;
    assert_eq!(attempts[0]["outcome"], "transport-error");
    assert_eq!(attempts[1]["outcome"], "permanent");
}

// Multi-threaded: `run_cli` blocks its thread while the in-process stand-in answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_command_prints_the_request_id_or_the_error_with_exit_codes() {
    let env = fast_env().await;
    let ok = env.run_cli(&["stop", "studio-cli"], &[]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let request_id = String::from_utf8(ok.stdout).unwrap().trim().to_owned();
    assert_eq!(request_id, env.fake.calls()[0].request_id);
    let again = env.run_cli(&["stop", "studio-cli", "--region", "cn-beijing"], &[]);
    assert_eq!(again.status.code(), Some(3), "permanent");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.starts_with("IncorrectSceneStatus: "), "{stderr}");
    assert!(
        stderr.contains(&format!("(RequestId {})", env.fake.calls()[1].request_id)),
        "{stderr}"
    );
    env.fake.push_faults([Fault::Status503]);
    let busy = env.run_cli(&["stop", "studio-cli-2"], &[]);
    assert_eq!(busy.status.code(), Some(4), "retryable");
    let refused = env.run_cli(
        &["stop", "studio-cli-2"],
        &[("STOPCASTER_ENDPOINT", "http://127.0.0.1:9")],
    );
    assert_eq!(refused.status.code(), Some(5), "transport");
    assert!(String::from_utf8_lossy(&refused.stderr).starts_with("Transport.Connect: "));
    let no_creds = env.run_cli(
        &["stop", "studio-cli-2"],
        &[("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "")],
    );
    assert_eq!(no_creds.status.code(), Some(1), "configuration");
    for out in [
        &again.stderr,
        &busy.stderr,
        &refused.stderr,
        &no_creds.stderr,
    ] {
        assert!(!String::from_utf8_lossy(out).contains(KEY_SECRET));
    }
}
