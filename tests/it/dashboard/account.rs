//! The account page (`/accounts/NAME`) and its JSON twin, through the real worker: a run of
//! jobs shows as calls and errors by code (a studio the stand-in does not know answers
//! `InvalidCaster.NotFound`); a pause from the page's button holds a backlog that the page
//! counts and will not promise to drain, with the reason as text and in the history; resume
//! drains it. An unknown account is a 404; a hostile account name is text.

use super::*;
use crate::common::hostile::{ESC, assert_inert, escaped};
use crate::operator_pause::wait_held;

async fn pending_of_default(env: &TestEnv) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM caster_stop_jobs WHERE status = 'pending' AND account IS NULL",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap()
}

async fn api_json(env: &TestEnv, dash: &Dashboard, path: &str) -> (u16, Value) {
    let r = env
        .http
        .get(dash.url(path))
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_str(&r.text().await.unwrap()).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_page_shows_calls_errors_backlog_and_pauses() {
    let env = TestEnv::with_running(&["studio-a", "studio-b", "studio-c", "studio-d"]).await;
    let metrics = common::free_addr();
    let worker = env.spawn_worker(&[
        ("STOPCASTER_QPS", "1000"),
        ("STOPCASTER_METRICS_ADDR", metrics.as_str()),
    ]);
    worker.wait_ready().await;
    enqueue(
        &env,
        "acct-run",
        &["studio-a", "studio-b", "studio-unknown"],
    );
    env.wait_terminal(3, WAIT).await;
    let calls: i64 = sqlx::query_scalar("SELECT count(*) FROM caster_stop_attempts")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert!(calls >= 3, "{calls}");

    let dash = Dashboard::start(&env, &[("STOPCASTER_DASHBOARD_PASSWORD", PASSWORD)]);
    let browser = Browser::start().await;
    browser.goto(&dash.url_with_password("/")).await;
    // The overview's chart links the account to its page.
    browser.goto(&dash.url("/")).await;
    browser.click("figure.chart figcaption a").await;
    browser.wait_text("#account-name", |t| t == "default").await;
    assert_eq!(
        browser.text("#account-chart .calls").await,
        format!("{calls} calls")
    );
    let errors = browser.text(".errors[data-window='last hour'] tbody").await;
    assert_eq!(errors, "InvalidCaster.NotFound 1", "{errors}");
    assert!(browser.text("#running").await.starts_with("Running"));
    assert_eq!(browser.text("#backlog .pending").await, "0");
    assert!(browser.exists("#history-empty").await);

    // Pause from the page, with a hostile reason.
    let reason = format!("{HOSTILE_BATCH} {ESC} rotate key");
    pause_from_page(&browser, &reason, None).await;
    let shown = browser
        .wait_text("#operator-pause .reason", |t| !t.is_empty())
        .await;
    assert_eq!(shown, escaped(&reason));
    assert_eq!(browser.text("#operator-pause .by").await, "admin");
    assert!(browser.text("#operator-pause .until").await == "until resumed");
    let history = browser
        .wait_text("#pause-history", |t| t.contains("pause"))
        .await;
    assert!(history.contains(&escaped(&reason)), "{history}");
    browser.assert_no_dialog().await;

    // A backlog held by the pause: counted, and not promised to drain. The jobs go in once
    // the worker says it holds the account, not in the second before.
    wait_held(&env, &metrics).await;
    enqueue(
        &env,
        "acct-held",
        &["studio-a", "studio-b", "studio-c", "studio-d"],
    );
    wait_for(WAIT, || async { pending_of_default(&env).await == 4 })
        .await
        .expect("four jobs held pending by the pause");
    browser.wait_text("#backlog .pending", |t| t == "4").await;
    let drain = browser.text("#backlog .drain").await;
    assert!(drain.starts_with("not while paused"), "{drain}");
    let (status, doc) = api_json(&env, &dash, "/api/accounts/default").await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["account"], "default");
    assert_eq!(doc["backlog"]["pending"], 4, "{doc}");
    assert_eq!(doc["backlog"]["expected_drain"], Value::Null);
    // At the workers' pace, the dashboard's configured 10/s (fake-live's header allows 1,000/s,
    // shown, but the workers do not go faster for it): four jobs need 0.4 s.
    assert_eq!(doc["quota_header"]["limit"], 1000, "{doc}");
    assert_eq!(doc["qps"], 10, "{doc}");
    assert_eq!(doc["backlog"]["drain_seconds"], 0.4, "{doc}");
    assert_eq!(doc["operator_pause"]["reason"], reason);
    assert_eq!(doc["pause_history"][0]["action"], "pause");
    assert_eq!(doc["calls"]["calls"], calls);
    assert_eq!(doc["calls"]["per_second"].as_array().unwrap().len(), 300);
    let hour = &doc["errors"][0];
    assert_eq!(hour["window"], "last hour");
    assert_eq!(hour["calls"], calls);
    assert_eq!(hour["by_code"], json!([["InvalidCaster.NotFound", 1]]));
    assert_eq!(doc["errors"][1]["window"], "last 24 hours");

    // Resume from the page: the backlog drains and the history has both.
    resume_from_page(&browser).await;
    env.wait_terminal(7, WAIT).await;
    browser.wait_text("#backlog .pending", |t| t == "0").await;
    assert!(browser.text("#running").await.starts_with("Running"));
    assert!(
        browser
            .exists("#pause-history tr[data-action=resume]")
            .await
    );
    let (_, doc) = api_json(&env, &dash, "/api/accounts/default").await;
    let actions: Vec<&str> = doc["pause_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["resume", "pause"], "newest first: {doc}");
    browser.assert_no_dialog().await;
    browser.assert_clean_console().await;
    browser.close().await;
    drop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_account_is_a_404_and_a_hostile_name_is_text() {
    let env = TestEnv::with_running(&["studio-a"]).await;
    let worker = env.spawn_worker(common::FAST);
    worker.wait_ready().await;
    // A name no accounts file lists: the job is concluded `unknown-account`, and its row
    // keeps the name the message gave.
    let hostile = format!("{HOSTILE_BATCH}-\u{202e}gnp");
    env.publish_raw(&[json!({"caster_id": "studio-a", "account": hostile})
        .to_string()
        .into_bytes()])
        .await;
    env.wait_terminal(1, WAIT).await;
    drop(worker);
    let dash = Dashboard::start(&env, &[]);

    for path in ["/accounts/nobody", "/api/accounts/nobody"] {
        let (status, body) = common::http::get(&env.http, &dash.url(path)).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains("no account"), "{body}");
    }
    let long = format!("/accounts/{}", "x".repeat(5000));
    let (status, body) = common::http::get(&env.http, &dash.url(&long)).await;
    assert_eq!(status, 404);
    assert!(
        body.len() < 20_000,
        "the name is bounded: {} bytes",
        body.len()
    );

    let path = format!("/accounts/{}", encode(&hostile));
    let (status, html) = common::http::get(&env.http, &dash.url(&path)).await;
    assert_eq!(status, 200, "{html}");
    assert_inert(&html, &path);
    assert!(!html.contains("<script>alert"), "{html}");
    let (status, doc) = common::http::get(&env.http, &dash.url(&format!("/api{path}"))).await;
    assert_eq!(status, 200, "{doc}");
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(doc["account"], hostile.as_str());

    let browser = Browser::start().await;
    browser.goto(&dash.url(&path)).await;
    assert_eq!(browser.text("#account-name").await, escaped(&hostile));
    // The job page links the account to this page.
    browser.goto(&dash.url("/jobs")).await;
    let link = browser
        .eval("return document.querySelector('a[href^=\"/accounts/\"]').getAttribute('href')")
        .await;
    assert_eq!(link, json!(path));
    browser.goto(&dash.url("/accounts")).await;
    let list = browser.text("#accounts").await;
    assert!(list.contains("default"), "{list}");
    browser.assert_no_dialog().await;
    browser.assert_clean_console().await;
    browser.close().await;
}
