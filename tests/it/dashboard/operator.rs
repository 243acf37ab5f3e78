//! An operator's pause from the overview's button (a hostile reason stays text), its resume,
//! the audit page listing both with the basic-auth user, the CSV export, and the API's
//! refusals (a past `until`, a foreign Origin, no password).

use super::*;
use crate::common::hostile::ESC;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_from_the_overview_and_the_audit_page() {
    let env = TestEnv::new().await;
    let dash = Dashboard::start(&env, &[("STOPCASTER_DASHBOARD_PASSWORD", PASSWORD)]);
    let browser = Browser::start().await;
    browser.goto(&dash.url_with_password("/")).await;
    // Credentials in the page's URL would make its fetch() refuse relative URLs.
    browser.goto(&dash.url("/")).await;
    let reason = format!("{HOSTILE_BATCH} {ESC} leak");
    pause_from_page(&browser, &reason, Some("30m")).await;
    let shown = browser
        .wait_text("#operator-pauses .reason", |t| !t.is_empty())
        .await;
    assert_eq!(
        shown,
        "<script>alert(1)</script> \\x1b]0;owned\\x07\\x1b[2J leak"
    );
    let by = browser.text("#operator-pauses .by").await;
    assert!(by.starts_with("admin via dashboard (127.0.0.1)"), "{by}");
    assert!(
        browser
            .text("#operator-pauses .until")
            .await
            .starts_with("20")
    );
    browser.assert_no_dialog().await;
    let stored: String = sqlx::query_scalar(
        "SELECT reason FROM stopcaster_operator_pauses WHERE account = 'default'",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(stored, reason, "stored as typed");

    resume_from_page(&browser).await;

    browser.goto(&dash.url("/audit")).await;
    let rows = browser.text("#audit").await;
    assert!(rows.contains("resume") && rows.contains("pause"), "{rows}");
    assert_eq!(
        browser.text("#audit tr[data-action=pause] .actor").await,
        "admin"
    );
    let target = browser.text("#audit tr[data-action=pause] .target").await;
    assert!(
        target.contains("<script>alert(1)</script> \\x1b]0;owned\\x07"),
        "{target}"
    );
    assert_eq!(
        browser.text("#audit tr[data-action=resume] .count").await,
        "1"
    );
    browser.assert_no_dialog().await;
    browser.assert_clean_console().await;
    browser.close().await;

    let csv = env
        .http
        .get(dash.url("/api/audit?format=csv&since=1h"))
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv.starts_with("at,action,actor,"), "{csv}");
    assert!(
        !csv.contains('\u{1b}') && csv.contains("\\x1b]0;owned"),
        "{csv:?}"
    );

    // The API: a past `until` is refused in words; a foreign Origin before anything.
    let own = dash.url("");
    let pause = |origin: &str, body: Value| {
        env.http
            .post(dash.url("/api/accounts/default/pause"))
            .basic_auth("admin", Some(PASSWORD))
            .header("origin", origin.to_owned())
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let r = pause(
        &own,
        json!({"reason": "r", "until": "2020-01-01T00:00:00Z"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("in the past"));
    let r = pause("http://evil.example", json!({"reason": "r"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = pause(&own, json!({"reason": "drill", "until": "1h"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let audit: Value = serde_json::from_str(
        &env.http
            .get(dash.url("/api/audit"))
            .basic_auth("admin", Some(PASSWORD))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    let actions: Vec<&str> = audit["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["ok", "failed", "ok", "ok"],
        "newest first: {audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_password_there_is_no_pause_button_and_the_api_refuses() {
    let env = TestEnv::new().await;
    let dash = Dashboard::start(&env, &[]);
    let r = env
        .http
        .post(dash.url("/api/accounts/default/pause"))
        .header("origin", dash.url(""))
        .header("content-type", "application/json")
        .body(json!({"reason": "r"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let page = env
        .http
        .get(dash.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("pause-button"));
    let paused: i64 = sqlx::query_scalar("SELECT count(*) FROM stopcaster_operator_pauses")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(paused, 0);
}
