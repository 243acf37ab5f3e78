//! What arrives on the queue: malformed messages beside good jobs, the same job twice, and a
//! delivery held past the cap.

use super::*;

#[tokio::test]
async fn malformed_messages_are_rejected_and_dead_lettered_while_good_jobs_run() {
    let env = fast_env().await;
    let _worker = env.spawn_worker(FAST);
    let long = format!(r#"{{"caster_id":"{}"}}"#, "x".repeat(20 * 1024));
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_obj = format!(
        "{}{}",
        r#"{"caster_id":"a","x":"#.to_owned() + &"[".repeat(3000),
        "]".repeat(3000) + "}"
    );
    let bad: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        b"[1,2,3]".to_vec(),
        b"{}".to_vec(),
        br#"{"caster_id":""}"#.to_vec(),
        br#"{"caster_id":42}"#.to_vec(),
        br#"{"caster_id":null}"#.to_vec(),
        b"{\"caster_id\":\"\xff\xfe\xfd\"}".to_vec(),
        b"{\"caster_id\":\"a\0b\"}".to_vec(),
        long.into_bytes(),
        deep.into_bytes(),
        deep_obj.into_bytes(),
        Vec::new(),
        br#"{"caster_id":"c1","job_id":"not-a-uuid"}"#.to_vec(),
        br#"{"caster_id":"c1","job_id":12}"#.to_vec(),
        br#"{"caster_id":"tab\there"}"#.to_vec(),
        br#"{"caster_id":"c1","region_id":["cn"]}"#.to_vec(),
        br#""a string""#.to_vec(),
        b"\x00\x01\x02binary".to_vec(),
    ];
    let good: Vec<Vec<u8>> = (0..5)
        .map(|i| format!(r#"{{"caster_id":"good-{i}"}}"#).into_bytes())
        .collect();
    let mut all = Vec::new();
    for (i, b) in bad.iter().enumerate() {
        all.push(b.clone());
        if let Some(g) = good.get(i % good.len()).filter(|_| i % 4 == 0) {
            all.push(g.clone());
        }
    }
    env.publish_raw(&all).await;
    let good_count = all.len() - bad.len();
    env.wait_terminal(all.len() as i64, Duration::from_secs(60))
        .await;
    assert_eq!(env.count_status("rejected").await, bad.len() as i64);
    assert_eq!(env.count_status("succeeded").await, good_count as i64);
    let dead = wait_dead(&env, bad.len()).await;
    assert_eq!(dead.len(), bad.len());
    let rows = env.jobs().await;
    for (body, job_id, reason) in &dead {
        assert!(bad.contains(body), "a dead letter keeps its original body");
        let reason = reason.as_deref().expect("reason header");
        assert!(!reason.is_empty());
        let row = rows
            .iter()
            .find(|r| r["job_id"].as_str() == job_id.as_deref())
            .expect("a row for each dead letter");
        assert_eq!(row["status"], "rejected");
        assert_eq!(row["error_message"], reason);
        assert_eq!(row["attempts"], 0);
    }
    // The payload is kept, escaped where it is not text.
    let invalid = rows
        .iter()
        .find(|r| {
            r["payload"]
                .as_str()
                .is_some_and(|p| p.contains("\\xFF\\xFE"))
        })
        .expect("the invalid UTF-8 payload is stored escaped");
    assert_eq!(invalid["payload_escaped"], true);
    assert!(
        rows.iter()
            .any(|r| r["payload"] == "{\"caster_id\":\"a\\x00b\"}" && r["payload_escaped"] == true)
    );
    assert!(
        rows.iter()
            .any(|r| r["payload"] == "" && r["status"] == "rejected")
    );
}

#[tokio::test]
async fn the_same_job_published_twice_calls_once() {
    let env = fast_env().await;
    let _worker = env.spawn_worker(FAST);
    let id = uuid::Uuid::new_v4();
    let body = serde_json::to_vec(
        &serde_json::json!({"caster_id": "studio-twice", "job_id": id.to_string()}),
    )
    .unwrap();
    env.publish_raw(&[body.clone(), body.clone(), body]).await;
    let pool = env.pool.clone();
    // Both copies are acknowledged once the queue is empty and the job finished.
    env.wait_terminal(1, Duration::from_secs(30)).await;
    common::wait_for(Duration::from_secs(30), || {
        let env = &env;
        async move { env.queue_len(&env.names().jobs).await == 0 }
    })
    .await
    .expect("all copies acknowledged");
    assert_eq!(env.fake.calls().len(), 1, "one API call for one job id");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM caster_stop_jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(env.job(id).await["attempts"], 1);
}

#[tokio::test]
async fn a_delivery_held_past_the_cap_is_republished_with_its_attempts() {
    let env = fast_env().await;
    env.fake.push_faults([Fault::Status503]);
    // A hold cap of 0 s: any backoff outlives the delivery, so the retry must go through a
    // republished copy, which waits out the backoff recorded in the database.
    let worker = env.spawn_worker(&[
        ("STOPCASTER_QPS", "1000"),
        ("STOPCASTER_HOLD_CAP_S", "0"),
        ("STOPCASTER_BACKOFF_INITIAL_MS", "300"),
        ("STOPCASTER_BACKOFF_MAX_MS", "300"),
    ]);
    let ids = env.publish_jobs(&["studio-held".to_owned()]).await;
    env.wait_terminal(1, Duration::from_secs(30)).await;
    let row = env.job(ids[0]).await;
    assert_eq!(row["status"], "succeeded");
    assert_eq!(
        row["attempts"], 2,
        "the attempt count survived the republish"
    );
    let attempts = env.attempts(ids[0]).await;
    assert_eq!(attempts[0]["outcome"], "retryable");
    assert_eq!(attempts[1]["outcome"], "ok");
    worker.wait_log("republished", Duration::from_secs(5)).await;
    // Exactly one row: the copy carried the same job id.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM caster_stop_jobs")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(env.queue_len(&env.names().jobs).await, 0);
}
