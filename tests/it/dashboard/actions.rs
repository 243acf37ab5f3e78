//! What the dashboard does when allowed: replay a dead letter from its page, cancel scheduled
//! stops, show paused accounts.

use super::*;

/// With the password: a job that failed (studio unknown) is fixed (the studio appears),
/// replayed from the page after a confirmation, and succeeds; another is replayed through
/// "all matching" a filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_the_page_brings_a_job_back() {
    let env = TestEnv::with_running(&["studio-1", "studio-2", "studio-3"]).await;
    let worker = env.spawn_worker(&[("STOPCASTER_QPS", "1000")]);
    worker.wait_ready().await;
    enqueue(
        &env,
        "end-of-show-42",
        &[
            "studio-1",
            "studio-2",
            "studio-3",
            "studio-late",
            "studio-later",
        ],
    );
    env.wait_terminal(5, WAIT).await;
    wait_for(WAIT, || async {
        env.queue_len(&env.names().dead).await == 2
    })
    .await
    .expect("two dead letters");
    let late = job_id_of(&env, "studio-late").await;
    let later = job_id_of(&env, "studio-later").await;
    // The cause is fixed: the studios exist now.
    env.fake.set_caster("studio-late", StudioState::Running);
    env.fake.set_caster("studio-later", StudioState::Running);

    let dash = Dashboard::start(&env, &[("STOPCASTER_DASHBOARD_PASSWORD", PASSWORD)]);
    let browser = Browser::start().await;
    browser.goto(&dash.url_with_password("/")).await;
    assert_eq!(browser.text(".card[data-status=failed] .n").await, "2");
    browser.goto(&dash.url("/batches/end-of-show-42")).await;
    assert_eq!(browser.text("#batch-done").await, "5 of 5");

    browser.goto(&dash.url("/dead-letters")).await;
    assert_eq!(browser.text("#dead-count").await, "2");
    let select = format!("input[name=job][value='{late}']");
    browser.click(&select).await;
    browser
        .wait_text("#replay-selected", |t| t.contains("1 selected"))
        .await;
    browser.click("#replay-selected").await;
    // The confirmation names the job; nothing happens before it is confirmed.
    let confirm = browser
        .wait_text("#confirm-list", |t| t.contains(&late.to_string()))
        .await;
    assert!(confirm.contains("studio-late"));
    assert_eq!(env.queue_len(&env.names().dead).await, 2);
    browser.click("#confirm-ok").await;
    browser
        .wait_text("#action-result", |t| t.contains("Replayed 1"))
        .await;
    env.wait_terminal(5, WAIT).await;
    wait_for(WAIT, || async {
        env.job(late).await["status"] == "succeeded"
    })
    .await
    .expect("the replayed job succeeded");

    // The other one: filter on its caster, replay all that match.
    browser
        .goto(&dash.url("/dead-letters?caster=studio-later"))
        .await;
    assert_eq!(browser.text("#match-count").await, "1");
    browser.click("#replay-matching").await;
    browser
        .wait_text("#confirm-list", |t| t.contains(&later.to_string()))
        .await;
    browser.click("#confirm-ok").await;
    browser
        .wait_text("#action-result", |t| t.contains("Replayed 1"))
        .await;
    wait_for(WAIT, || async {
        env.job(later).await["status"] == "succeeded"
    })
    .await
    .expect("the second replayed job succeeded");
    assert_eq!(env.queue_len(&env.names().dead).await, 0);

    // The job page shows the replay and the success.
    browser.goto(&dash.url(&format!("/jobs/{late}"))).await;
    browser.wait_text("#job-status", |t| t == "succeeded").await;
    assert!(browser.body_text().await.contains("Replays"));
    browser.assert_no_dialog().await;
    browser.assert_clean_console().await;
    browser.close().await;
    drop(worker);
}

/// Scheduled stops and paused accounts: the overview shows both, `/scheduled` lists the stops
/// earliest first, and one is cancelled from the page after a confirmation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_stops_are_cancelled_from_the_page_and_paused_accounts_shown() {
    let env = TestEnv::new().await;
    sqlx::query(
        "INSERT INTO stopcaster_account_pauses (account, code, worker, paused_at, updated_at)
         VALUES ('media', 'SignatureDoesNotMatch', 'worker-7', now(), now()),
                ('archive', 'InvalidAccessKeyId.NotFound', 'worker-gone',
                 now() - interval '1 hour', now() - interval '50 minutes')",
    )
    .execute(&env.pool)
    .await
    .unwrap();
    let (first, second, done) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    for (id, caster, status, due_min) in [
        (first, HOSTILE_CASTER, "scheduled", 5),
        (second, "studio-tonight", "scheduled", 90),
        (done, "studio-done", "succeeded", 0),
    ] {
        sqlx::query(
            "INSERT INTO caster_stop_jobs (job_id, caster_id, batch_id, status, not_before, payload)
             VALUES ($1, $2, 'end-of-show', $3, now() + make_interval(mins => $4), '{}')",
        )
        .bind(id)
        .bind(caster)
        .bind(status)
        .bind(due_min)
        .execute(&env.pool)
        .await
        .unwrap();
    }

    let dash = Dashboard::start(&env, &[("STOPCASTER_DASHBOARD_PASSWORD", PASSWORD)]);
    let browser = Browser::start().await;
    browser.goto(&dash.url_with_password("/")).await;
    let pauses = browser.text("#pauses").await;
    assert!(
        pauses.contains("media") && pauses.contains("SignatureDoesNotMatch"),
        "{pauses}"
    );
    let stale: Vec<String> = pauses
        .lines()
        .filter(|l| l.contains("stale"))
        .map(str::to_owned)
        .collect();
    assert_eq!(stale.len(), 1, "{pauses}");
    assert!(stale[0].contains("worker-gone"), "{pauses}");
    assert_eq!(browser.text(".card[data-status=scheduled] .n").await, "2");

    browser.goto(&dash.url("/scheduled")).await;
    assert_eq!(browser.text("#scheduled-count").await, "2");
    let rows = browser.text("#scheduled tbody").await;
    let (a, b) = (
        rows.find(HOSTILE_CASTER).unwrap(),
        rows.find("studio-tonight").unwrap(),
    );
    assert!(a < b, "earliest due first: {rows}");
    let button = format!("button[data-cancel='{first}']");
    browser.click(&button).await;
    browser
        .wait_text("#confirm-list", |t| t.contains(HOSTILE_CASTER))
        .await;
    assert_eq!(
        env.job(first).await["status"],
        "scheduled",
        "not before the confirmation"
    );
    browser.click("#confirm-ok").await;
    browser
        .wait_text("#action-result", |t| t.contains("Cancelled"))
        .await;
    assert_eq!(env.job(first).await["status"], "cancelled");
    browser.wait_text("#scheduled-count", |t| t == "1").await;
    browser.goto(&dash.url(&format!("/jobs/{first}"))).await;
    assert_eq!(browser.text("#job-status").await, "cancelled");
    let by = browser.text("#job-cancelled").await;
    assert!(by.contains("admin@dashboard (127.0.0.1)"), "{by}");
    assert!(!browser.exists("button[data-cancel]").await);
    browser.assert_no_dialog().await;
    browser.assert_clean_console().await;
    browser.close().await;

    // Through the API: a job already ended or called is not cancelled (409), an unknown one is
    // 404.
    let cancel = |id: uuid::Uuid| {
        env.http
            .post(dash.url(&format!("/api/jobs/{id}/cancel")))
            .basic_auth("admin", Some(PASSWORD))
            .header("origin", dash.url(""))
            .send()
    };
    let r = cancel(done).await.unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["status"], "succeeded");
    let called = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO caster_stop_jobs (job_id, caster_id, status, attempts, payload)
         VALUES ($1, 'studio-called', 'pending', 1, '{}')",
    )
    .bind(called)
    .execute(&env.pool)
    .await
    .unwrap();
    let r = cancel(called).await.unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["status"], "pending");
    assert_eq!(env.job(called).await["status"], "pending");
    assert_eq!(cancel(first).await.unwrap().status(), 409);
    assert_eq!(cancel(uuid::Uuid::new_v4()).await.unwrap().status(), 404);
    assert_eq!(cancel(second).await.unwrap().status(), 200);
    assert_eq!(env.job(second).await["status"], "cancelled");
}
