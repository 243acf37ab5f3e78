//! Hostile sizes and bytes on the dashboard: with 5 MB CasterIds and error messages, and escape
//! sequences and U+202E in every field, every page and list endpoint stays small and shows the
//! lengths, the pages show the characters escaped (read in Chromium), and `/api/jobs/ID` keeps
//! the exact values.

use super::*;
use common::hostile::{self, BIG, BIG_MARKER, ESC, RLO_CASTER, SMALL, assert_inert, escaped};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sizes_and_bytes_stay_bounded_and_escaped_on_every_page() {
    let env = TestEnv::new().await;
    let worker = env.spawn_worker(common::FAST);
    let h = hostile::publish(&env).await;
    drop(worker);
    let dash = Dashboard::start(&env, &[]);
    let get = |path: String| {
        let url = dash.url(&path);
        let http = env.http.clone();
        async move {
            let r = http.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            let body = r.text().await.unwrap();
            assert!(body.len() < SMALL, "{path}: {} bytes", body.len());
            (path, body)
        }
    };

    // Every page: small, and nothing raw in the HTML.
    let batch = |b: &str| format!("/batches/{}", encode(b));
    let pages = [
        "/".to_owned(),
        "/jobs".to_owned(),
        "/batches".to_owned(),
        batch(&h.ctl_batch),
        batch(&h.rlo_batch),
        "/dead-letters".to_owned(),
        "/scheduled".to_owned(),
        "/accounts".to_owned(),
        "/accounts/default".to_owned(),
        format!("/jobs/{}", h.big),
        format!("/jobs/{}", h.ctl),
        format!("/jobs/{}", h.rlo),
        format!("/jobs/{}", h.scheduled),
    ];
    for path in pages {
        let (path, html) = get(path).await;
        assert_inert(&html, &path);
    }
    let (_, html) = get("/dead-letters".to_owned()).await;
    assert!(html.contains(BIG_MARKER), "{html}");
    let (_, html) = get(format!("/jobs/{}", h.big)).await;
    assert!(
        html.matches(" chars)").count() >= 2,
        "CasterId and error cut: {html}"
    );
    let (_, html) = get(format!("/jobs/{}", h.rlo)).await;
    assert!(
        html.contains("… (5,242,"),
        "the attempt's message cut: {html}"
    );
    let (_, html) = get("/scheduled".to_owned()).await;
    assert!(html.contains(" chars)"), "{html}");

    // The list endpoints: small, texts cut with their full length named.
    for path in [
        "/api/overview",
        "/api/jobs",
        "/api/batches",
        "/api/dead-letters",
        "/api/scheduled",
        "/api/accounts",
        "/api/accounts/default",
    ] {
        get(path.to_owned()).await;
    }
    let (_, doc) = get(format!("/api/batches/{}", encode(&h.ctl_batch))).await;
    assert!(doc.contains("\\u001b"), "JSON's own escape: {doc}");
    let (_, doc) = get("/api/dead-letters".to_owned()).await;
    let doc: Value = serde_json::from_str(&doc).unwrap();
    let big = doc["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["job_id"] == h.big.to_string())
        .unwrap();
    assert!(big["caster_id"].as_str().unwrap().ends_with(BIG_MARKER));
    assert_eq!(big["truncated"]["caster_id"], BIG);
    // One job's endpoint: the whole, exact.
    let one = env
        .http
        .get(dash.url(&format!("/api/jobs/{}", h.big)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let one: Value = serde_json::from_str(&one).unwrap();
    let message = one["job"]["error_message"].as_str().unwrap();
    assert_eq!(
        message.chars().count(),
        BIG + ESC.chars().count() + RLO_CASTER.chars().count()
    );
    assert!(message.starts_with(ESC));

    // In the browser: the escaped form is what a person reads.
    let browser = Browser::start().await;
    browser.goto(&dash.url("/dead-letters")).await;
    let table = browser.text("#dead-letters").await;
    assert!(table.contains(&escaped(&h.ctl_caster)), "{table}");
    assert!(table.contains(&escaped(&h.ctl_batch)), "{table}");
    assert!(table.contains(&escaped(RLO_CASTER)), "{table}");
    assert!(table.contains(BIG_MARKER), "{table}");
    assert!(
        !table.contains("cas-exe.png") && !table.contains('\u{202e}'),
        "{table}"
    );
    browser.goto(&dash.url(&format!("/jobs/{}", h.ctl))).await;
    assert_eq!(browser.text("#job-caster").await, escaped(&h.ctl_caster));
    assert_eq!(browser.text("#job-batch").await, escaped(&h.ctl_batch));
    // The body as sent: JSON's `\u001b` with its backslash escaped, U+202E escaped.
    let payload = browser.text("#payload").await;
    assert!(
        payload.contains("\"cas-\\u{202e}gnp.exe\\\\u001b]0;owned"),
        "{payload}"
    );
    browser.goto(&dash.url(&format!("/jobs/{}", h.rlo))).await;
    assert_eq!(browser.text("#job-caster").await, escaped(RLO_CASTER));
    browser.assert_clean_console().await;
    browser.close().await;
}
