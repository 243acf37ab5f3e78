//! What a schedule is given: past, malformed and far-future `not_before`, and `enqueue --at`
//! with its zones and clock times.

use super::*;

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
