//! `dead-letters list` and `replay`: a dead letter is listed, kept, and replayed once; a
//! malformed one is rejected again.

use super::*;

#[tokio::test]
async fn a_dead_letter_is_listed_kept_and_replayed_once() {
    let env = TestEnv::with_running(&["dl-known"]).await;
    let _worker = env.spawn_worker(FAST);
    cli_ok(&env, &["enqueue", "dl-ghost", "--batch", "dl"]);
    env.wait_terminal(1, WAIT).await;
    let row = &env.jobs().await[0];
    let id: uuid::Uuid = row["job_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(row["status"], "failed");
    assert_eq!(row["error_code"], "InvalidCaster.NotFound");
    wait_dead_lettered(&env, id).await;
    let dead = env.names().dead;

    // Listing shows it and leaves it in the queue, however often it is run.
    for _ in 0..2 {
        let list = cli_json(&env, &["dead-letters", "list", "--format", "json"]);
        assert_eq!(list["queue"], dead.as_str());
        assert_eq!(list["count"], 1);
        let m = &list["messages"][0];
        assert_eq!(m["job_id"], id.to_string());
        assert_eq!(m["caster_id"], "dl-ghost");
        assert_eq!(m["batch_id"], "dl");
        assert_eq!(m["reason"], "InvalidCaster.NotFound");
        assert_eq!(env.queue_len(&dead).await, 1, "list keeps the message");
    }
    let table = cli_ok(&env, &["dead-letters", "list"]);
    assert!(table.contains(&id.to_string()) && table.contains("InvalidCaster.NotFound"));

    // A job id that is not in the queue: non-zero, nothing touched.
    let stranger = uuid::Uuid::new_v4().to_string();
    let out = env.run_cli(&["dead-letters", "replay", &stranger], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&stranger));
    assert_eq!(env.queue_len(&dead).await, 1);
    assert_eq!(env.job(id).await["status"], "failed");

    // The studio exists now: the replay lets the worker stop it.
    env.fake.set_caster("dl-ghost", StudioState::Running);
    let out = cli_ok(&env, &["dead-letters", "replay", &id.to_string()]);
    assert!(out.contains(&format!("replayed {id}")), "{out}");
    let pool = env.pool.clone();
    common::wait_for(WAIT, || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT status FROM caster_stop_jobs WHERE job_id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .is_ok_and(|s| s == "succeeded")
        }
    })
    .await
    .expect("the replayed job succeeds");
    let row = env.job(id).await;
    assert_eq!(row["replays"], 1);
    assert_eq!(row["attempts"], 2);
    assert_eq!(
        row["attempt_budget"],
        1 + 8,
        "a fresh budget on top of the calls made"
    );
    assert_eq!(row["conclusion"], "stopped");
    assert!(row["dead_lettered_at"].is_null());
    assert_eq!(env.fake.caster("dl-ghost"), Some(StudioState::Stopped));
    assert_eq!(env.queue_len(&dead).await, 0, "the dead letter is gone");
    let replays: Vec<(String, String, String, bool)> = sqlx::query_as(
        "SELECT previous_status, previous_error_code, reason, reopened FROM caster_stop_replays
         WHERE job_id = $1",
    )
    .bind(id)
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert_eq!(replays.len(), 1);
    assert_eq!(replays[0].0, "failed");
    assert_eq!(replays[0].1, "InvalidCaster.NotFound");
    assert_eq!(replays[0].2, "InvalidCaster.NotFound");
    assert!(replays[0].3);

    // Again: nothing to find, nothing changes.
    let out = env.run_cli(&["dead-letters", "replay", &id.to_string()], &[]);
    assert!(!out.status.success(), "the job is no longer in P.dead");
    let out = cli_ok(&env, &["dead-letters", "replay", "--all"]);
    assert!(out.is_empty(), "{out}");
    let again = env.job(id).await;
    assert_eq!(again["replays"], 1);
    assert_eq!(again["status"], "succeeded");
    assert_eq!(again["attempts"], 2);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM caster_stop_replays")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(env.queue_len(&env.names().jobs).await, 0);
    assert_eq!(
        env.fake.calls().len(),
        2,
        "one call before, one after the replay"
    );
}

#[tokio::test]
async fn a_replayed_malformed_message_is_rejected_again() {
    let env = TestEnv::with_running(&[]).await;
    let _worker = env.spawn_worker(FAST);
    env.publish_raw(&[b"not json".to_vec()]).await;
    env.wait_terminal(1, WAIT).await;
    let id: uuid::Uuid = env.jobs().await[0]["job_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    wait_dead_lettered(&env, id).await;
    let out = cli_ok(&env, &["dead-letters", "replay", "--all"]);
    assert!(out.contains("rejected (malformed) message"), "{out}");
    // The worker rejects it again (same job id, through message_id) and dead-letters it anew.
    wait_dead_lettered(&env, id).await;
    let dead = env.names().dead;
    common::wait_for(WAIT, || {
        let env = &env;
        let dead = dead.clone();
        async move { env.queue_len(&dead).await == 1 }
    })
    .await
    .expect("back in P.dead");
    let rows = env.jobs().await;
    assert_eq!(rows.len(), 1, "the same job, not a new one");
    assert_eq!(rows[0]["status"], "rejected");
    assert_eq!(rows[0]["replays"], 1);
    let letters = env.drain_dead().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].0, b"not json");
    assert_eq!(letters[0].1.as_deref(), Some(id.to_string().as_str()));
}
