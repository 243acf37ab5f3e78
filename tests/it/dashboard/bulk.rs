//! Bulk actions from the pages: a filtered `/dead-letters` offers "Replay N" with the count in
//! the confirmation and replays on the server by the filter (the page lists only the first
//! rows); a filtered `/jobs` offers "Cancel N" the same way.

use super::*;

use crate::operators::bulk::{seed_dead, seed_scheduled};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_n_and_cancel_n_act_on_the_filter_not_on_the_rows_shown() {
    let env = TestEnv::new().await;
    seed_dead(&env, 600, "end-of-show-42", "InvalidCaster.NotFound", None).await;
    seed_dead(&env, 7, "end-of-show-42", "IllegalOperation", None).await;
    seed_scheduled(&env).await;
    let dash = Dashboard::start(&env, &[("STOPCASTER_DASHBOARD_PASSWORD", PASSWORD)]);
    let browser = Browser::start().await;
    browser.goto(&dash.url_with_password("/")).await;

    browser
        .goto(&dash.url("/dead-letters?batch=end-of-show-42&error_code=InvalidCaster.NotFound"))
        .await;
    assert_eq!(browser.text("#dead-count").await, "607");
    assert_eq!(browser.text("#match-count").await, "600");
    assert_eq!(
        browser.text("#shown-count").await,
        "500",
        "the rows are capped"
    );
    assert!(
        browser
            .text("#replay-matching")
            .await
            .contains("Replay 600 matching")
    );
    browser.click("#replay-matching").await;
    browser
        .wait_text("#confirm-title", |t| t.contains("Replay 600"))
        .await;
    assert_eq!(
        env.queue_len(&env.names().dead).await,
        607,
        "not before confirming"
    );
    browser.click("#confirm-ok").await;
    browser
        .wait_text("#action-result", |t| t.contains("Replayed 600."))
        .await;
    assert_eq!(env.queue_len(&env.names().dead).await, 7);
    assert_eq!(env.queue_len(&env.names().jobs).await, 600);

    // Five scheduled jobs of batch night and account acme; two more had started.
    browser
        .goto(&dash.url("/jobs?batch=night&status=scheduled"))
        .await;
    let button = browser.text("#cancel-matching").await;
    assert!(button.contains("Cancel 9 matching"), "{button}");
    browser.click("#cancel-matching").await;
    browser
        .wait_text("#confirm-title", |t| t.contains("Cancel 9"))
        .await;
    browser.click("#confirm-ok").await;
    browser
        .wait_text("#action-result", |t| t.starts_with("Cancelled 9;"))
        .await;
    assert_eq!(env.count_status("cancelled").await, 9);
    assert_eq!(
        env.count_status("scheduled").await,
        3,
        "batch day untouched"
    );
    browser.assert_no_dialog().await;
    browser.assert_clean_console().await;
    browser.close().await;
}
