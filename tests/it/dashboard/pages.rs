//! Every page shows a small batch's data, hostile ids and labels stay text, and the book's
//! screenshots are taken from the same pages.

use super::*;

/// A batch with a hostile label, two studios stopped and one hostile CasterId failed: every
/// page shows it, as text, runs no script, logs no error, and offers no action (read-only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_a_batch_and_hostile_strings_stay_text() {
    let env = TestEnv::with_running(&["studio-a", "studio-b"]).await;
    let worker = env.spawn_worker(&[("STOPCASTER_QPS", "1000")]);
    worker.wait_ready().await;
    enqueue(
        &env,
        HOSTILE_BATCH,
        &["studio-a", "studio-b", HOSTILE_CASTER],
    );
    env.wait_terminal(3, WAIT).await;
    let failed_id = job_id_of(&env, HOSTILE_CASTER).await;
    let ok_id = job_id_of(&env, "studio-a").await;
    let ok_request_id: String =
        sqlx::query_scalar("SELECT request_id FROM caster_stop_jobs WHERE job_id = $1")
            .bind(ok_id)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    // Until the dead letter is in P.dead.
    wait_for(WAIT, || async {
        env.queue_len(&env.names().dead).await == 1
    })
    .await
    .expect("one dead letter");

    let dash = Dashboard::start(&env, &[]);
    let browser = Browser::start().await;

    // The overview: counts, the queue, the batch (its label as text), the chart.
    browser.goto(&dash.url("/")).await;
    assert_eq!(browser.text(".card[data-status=succeeded] .n").await, "2");
    assert_eq!(browser.text(".card[data-status=failed] .n").await, "1");
    assert_eq!(
        browser.text("#recent-batches tbody td a").await,
        HOSTILE_BATCH
    );
    assert!(
        browser
            .body_text()
            .await
            .contains(&format!("{}.dead", env.prefix))
    );
    assert!(browser.exists("svg.bars rect").await, "the chart has bars");
    // The quota line is fake-live's `Limit` (its 1,000/s), not the dashboard's configured
    // 10/s, and the caption shows the header of the latest answer, as its attempt recorded it:
    // the dashboard never sees the worker's memory.
    let (limit, remain): (i32, i32) = sqlx::query_as(
        "SELECT quota_limit, quota_remain FROM caster_stop_attempts
         WHERE quota_limit IS NOT NULL ORDER BY finished_at DESC LIMIT 1",
    )
    .fetch_one(&env.pool)
    .await
    .expect("the answers' quota header is on their attempts");
    assert_eq!(limit, 1000, "fake-live's quota");
    assert!(remain < limit, "this call counted: {remain}");
    let caption = format!("quota 1000/s (Alibaba's header: Limit 1000, Remain {remain})");
    assert!(
        browser.body_text().await.contains(&caption),
        "{caption}: {}",
        browser.body_text().await
    );
    let (status, overview) = common::http::get(&env.http, &dash.url("/api/overview")).await;
    assert_eq!(status, 200, "{overview}");
    let overview: Value = serde_json::from_str(&overview).unwrap();
    assert_eq!(
        overview["calls"][0]["quota_header"],
        json!({"limit": limit, "remain": remain}),
        "{overview}"
    );
    assert_eq!(
        browser.eval("return document.scripts.length").await,
        json!(1)
    );
    assert_eq!(
        browser.eval("return document.images.length").await,
        json!(0)
    );
    assert!(
        !browser.exists("button.danger").await,
        "read-only: no actions"
    );
    browser.assert_clean_console().await;

    // The batch: progress, counts, failures by code, its jobs with the hostile caster as text.
    browser
        .goto(&dash.url(&format!("/batches/{}", encode(HOSTILE_BATCH))))
        .await;
    assert_eq!(browser.text("#batch-id").await, HOSTILE_BATCH);
    assert_eq!(browser.text("#batch-done").await, "3 of 3");
    assert!(
        browser
            .text("#failures")
            .await
            .contains("InvalidCasterId.Malformed")
    );
    assert!(browser.text("table.jobs").await.contains(HOSTILE_CASTER));
    assert_eq!(
        browser.eval("return document.images.length").await,
        json!(0)
    );
    assert!(
        browser
            .text("#batch-calls")
            .await
            .contains("StopCaster calls 3")
    );

    // The failed job: its row, its attempt with the RequestId, its payload, all as text.
    browser.goto(&dash.url(&format!("/jobs/{failed_id}"))).await;
    assert_eq!(browser.text("#job-status").await, "failed");
    assert_eq!(browser.text("#job-caster").await, HOSTILE_CASTER);
    assert_eq!(browser.text("#job-batch").await, HOSTILE_BATCH);
    let attempts = env.attempts(failed_id).await;
    let rid = attempts[0]["request_id"].as_str().unwrap();
    assert!(browser.text("#attempts").await.contains(rid));
    assert!(browser.text("#payload").await.contains(HOSTILE_CASTER));
    assert!(!browser.exists("button[data-cancel]").await);

    // A succeeded job shows its RequestId and conclusion.
    browser.goto(&dash.url(&format!("/jobs/{ok_id}"))).await;
    assert_eq!(browser.text("#job-request-id").await, ok_request_id);
    assert_eq!(browser.text("#job-conclusion").await, "stopped");

    // Search: by status, by RequestId, by batch; kept in the URL; exports of the same view.
    browser.goto(&dash.url("/jobs?status=failed")).await;
    let rows = browser
        .client
        .find_all(Locator::Css("table.jobs tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    browser
        .goto(&dash.url(&format!("/jobs?request_id={ok_request_id}")))
        .await;
    let text = browser.text("table.jobs tbody").await;
    assert!(text.contains(&ok_id.to_string()), "{text}");
    assert_eq!(
        browser
            .client
            .find_all(Locator::Css("table.jobs tbody tr"))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        browser
            .eval("return document.querySelector('input[name=request_id]').value")
            .await,
        json!(ok_request_id)
    );
    let csv_href = browser
        .client
        .find(Locator::Css("#export-csv"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let csv = env
        .http
        .get(dash.url(&csv_href))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert_eq!(
        csv.lines().next().unwrap(),
        stopcaster::REPORT_COLUMNS.join(","),
        "the columns of report --format csv"
    );
    assert!(csv.contains(&ok_request_id));
    browser
        .goto(&dash.url(&format!("/jobs?batch={}", encode(HOSTILE_BATCH))))
        .await;
    assert_eq!(
        browser
            .client
            .find_all(Locator::Css("table.jobs tbody tr"))
            .await
            .unwrap()
            .len(),
        3
    );

    // A filter being typed survives the live refresh.
    let input = browser
        .client
        .find(Locator::Css("input[name=caster]"))
        .await
        .unwrap();
    input.send_keys("studio-").await.unwrap();
    browser
        .eval("document.activeElement.blur(); return null")
        .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        browser
            .eval("return document.querySelector('input[name=caster]').value")
            .await,
        json!("studio-")
    );

    // Dead letters: the failed job, no replay buttons or checkboxes without a password.
    browser.goto(&dash.url("/dead-letters")).await;
    assert_eq!(browser.text("#dead-count").await, "1");
    assert!(browser.text("#dead-letters").await.contains(HOSTILE_CASTER));
    assert!(!browser.exists("#replay-selected").await);
    assert!(!browser.exists("input[type=checkbox]").await);

    // Scheduled: none in this batch.
    browser.goto(&dash.url("/scheduled")).await;
    assert!(browser.text("h1").await.contains("Scheduled"));
    assert_eq!(browser.text("#scheduled-count").await, "0");
    assert_eq!(
        browser.eval("return document.images.length").await,
        json!(0)
    );
    browser.assert_no_dialog().await;
    browser.assert_clean_console().await;

    // Live refresh: a new job appears without navigation; paused, it does not.
    browser.goto(&dash.url("/")).await;
    enqueue(&env, "live", &["studio-live-1"]);
    browser
        .wait_text(".card[data-status=failed] .n", |t| t == "2")
        .await;
    browser.click("#live-toggle").await;
    assert_eq!(
        browser
            .eval("return document.getElementById('live-toggle').getAttribute('aria-pressed')")
            .await,
        json!("true")
    );
    enqueue(&env, "live", &["studio-live-2"]);
    env.wait_terminal(5, WAIT).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        browser.text(".card[data-status=failed] .n").await,
        "2",
        "paused"
    );
    browser.click("#live-toggle").await;
    browser
        .wait_text(".card[data-status=failed] .n", |t| t == "3")
        .await;
    browser.assert_clean_console().await;
    browser.assert_no_dialog().await;
    browser.close().await;

    // The JSON API shows the same.
    let get = |path: String| {
        let http = env.http.clone();
        let url = dash.url(&path);
        async move {
            let r = http.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap()
        }
    };
    let batches = get("/api/batches".into()).await;
    assert!(
        batches["batches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["batch_id"] == HOSTILE_BATCH && b["jobs"] == 3)
    );
    let batch = get(format!("/api/batches/{}", encode(HOSTILE_BATCH))).await;
    assert_eq!(batch["done"], 3);
    assert_eq!(
        batch["failures_by_error_code"][0][0],
        "InvalidCasterId.Malformed"
    );
    let job = get(format!("/api/jobs/{failed_id}")).await;
    assert_eq!(job["job"]["caster_id"], HOSTILE_CASTER);
    assert_eq!(job["attempts"][0]["request_id"], rid);
    let letters = get("/api/dead-letters".into()).await;
    assert!(letters["count"].as_u64().unwrap() >= 1);
    let list = get("/api/jobs?status=succeeded&limit=1".into()).await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
    let next = list["next"].as_str().expect("a second page").to_owned();
    let page2 = get(format!("/api/jobs?status=succeeded&limit=1&after={next}")).await;
    assert_ne!(page2["jobs"][0]["job_id"], list["jobs"][0]["job_id"]);
    assert_eq!(
        env.http
            .get(dash.url("/api/jobs/not-a-job"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // Read-only: actions refused, other methods not allowed.
    let own = dash.url("");
    let r = env
        .http
        .post(dash.url("/api/dead-letters/replay"))
        .header("origin", &own)
        .header("content-type", "application/json")
        .body(json!({"all": true}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = env
        .http
        .post(dash.url(&format!("/api/jobs/{failed_id}/cancel")))
        .header("origin", &own)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = env
        .http
        .delete(dash.url("/api/batches"))
        .send()
        .await
        .unwrap();
    assert!(matches!(r.status().as_u16(), 403 | 405), "{}", r.status());
    assert_eq!(
        env.queue_len(&env.names().dead).await,
        3,
        "nothing replayed"
    );
    drop(worker);
    drop(dash);
}

/// The book's screenshots (`docs/dashboard-*.png`): a batch of 60 studios at the default
/// quota of 10 calls per second, 6 of them unknown to the API, photographed while it runs.
/// `cargo test --test dashboard -- --ignored screenshots_for_the_readme`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/dashboard-*.png"]
async fn screenshots_for_the_readme() {
    let running: Vec<String> = (1..=54).map(|i| format!("studio-{i:02}")).collect();
    // Alibaba's quota, 10/s, so that the quota header's Limit (the charts' quota line) is the
    // pace the calls keep, as on the real API.
    let mut config = stopcaster_fake_live::FakeLiveConfig::new(vec![(
        common::KEY_ID.into(),
        stopcaster::Secret::new(KEY_SECRET),
    )]);
    config.casters = Some(
        running
            .iter()
            .map(|c| (c.clone(), StudioState::Running))
            .collect(),
    );
    let env = TestEnv::with_fake(config).await;
    let metrics = common::free_addr();
    let worker = env.spawn_worker(&[("STOPCASTER_METRICS_ADDR", metrics.as_str())]);
    worker.wait_ready().await;
    let mut casters = running.clone();
    casters.extend((1..=6).map(|i| format!("studio-gone-{i}")));
    let refs: Vec<&str> = casters.iter().map(String::as_str).collect();
    enqueue(&env, "end-of-show-42", &refs);
    let dash = Dashboard::start(&env, &[("STOPCASTER_DASHBOARD_PASSWORD", PASSWORD)]);
    let browser = Browser::start().await;
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    tokio::time::sleep(Duration::from_secs(4)).await;
    browser
        .goto(&dash.url_with_password("/batches/end-of-show-42"))
        .await;
    browser.screenshot(&docs.join("dashboard-batch.png")).await;
    env.wait_terminal(60, WAIT).await;
    browser.goto(&dash.url("/")).await;
    browser
        .screenshot(&docs.join("dashboard-overview.png"))
        .await;
    // The account page: a drill paused and resumed, then a pause holding a new batch.
    let act = |path: &str, body: Value| {
        env.http
            .post(dash.url(path))
            .basic_auth("admin", Some(PASSWORD))
            .header("origin", dash.url(""))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let pause = "/api/accounts/default/pause";
    let r = act(pause, json!({"reason": "drill"})).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = act("/api/accounts/default/resume", json!({}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let reason = "Alibaba support asked us to hold while they rotate the key";
    let r = act(pause, json!({"reason": reason, "until": "2h"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    crate::operator_pause::wait_held(&env, &metrics).await;
    let late: Vec<String> = (1..=40).map(|i| format!("studio-{i:02}")).collect();
    enqueue(
        &env,
        "late-show-43",
        &late.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    browser.goto(&dash.url("/accounts/default")).await;
    browser.wait_text("#backlog .pending", |t| t == "40").await;
    browser
        .screenshot(&docs.join("dashboard-account.png"))
        .await;
    browser.goto(&dash.url("/dead-letters")).await;
    browser.click("#replay-matching").await;
    browser
        .wait_text("#confirm-list", |t| t.contains("studio-gone"))
        .await;
    browser
        .screenshot(&docs.join("dashboard-replay-confirm.png"))
        .await;
    browser.click("#confirm-ok").await;
    browser
        .wait_text("#action-result", |t| t.contains("eplayed"))
        .await;
    browser.goto(&dash.url("/audit")).await;
    browser.screenshot(&docs.join("dashboard-audit.png")).await;
    browser.assert_clean_console().await;
    browser.close().await;
    drop(worker);
}
