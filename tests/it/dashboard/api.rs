//! `POST /api/jobs`: schedulers enqueue over HTTP with a bearer token. Valid, missing, wrong
//! and revoked tokens; a burst of wrong ones locked out; bodies refused field by field; the
//! same job id twice makes one job; a burst of 200 requests; hostile values stay data. Through
//! the real dashboard, RabbitMQ, Postgres, a worker and the stand-in; no browser needed.

use super::*;

const TOKEN: &str = "cron-token-0123456789abcdef";
const OTHER: &str = "airflow-token-fedcba9876543210";

fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A tokens file holding `cron` (plain) and `airflow` (hashed).
fn tokens_file(tag: &str) -> std::path::PathBuf {
    let path = common::temp_dir(tag).join("tokens");
    let text = format!(
        "# who may enqueue\ncron:{TOKEN}\nairflow:sha256:{}\n",
        sha256_hex(OTHER)
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn post(env: &TestEnv, dash: &Dashboard, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut request = env
        .http
        .post(dash.url("/api/jobs"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.expect("POST /api/jobs");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let doc = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, doc)
}

#[tokio::test]
async fn tokens_are_checked_at_each_request_and_never_shown() {
    let env = TestEnv::new().await;
    let path = tokens_file("api-tokens");
    let file = path.to_str().unwrap();
    let dash = Dashboard::start(&env, &[("STOPCASTER_API_TOKENS", file)]);
    let body = r#"{"caster_id": "api-1", "batch_id": "api"}"#;
    let (status, doc) = post(&env, &dash, Some(TOKEN), body).await;
    assert_eq!(status, 201, "{doc}");
    assert_eq!(doc["batch_id"], "api");
    assert_eq!(doc["jobs"][0]["status"], "published");
    let (status, _) = post(&env, &dash, Some(OTHER), body).await;
    assert_eq!(status, 201, "a hashed token");
    for token in [None, Some("cron-token-0123456789abcdeX"), Some("")] {
        let (status, doc) = post(&env, &dash, token, body).await;
        assert_eq!(status, 401, "{token:?}: {doc}");
    }
    // Revoked: removed from the file, refused from the next request on.
    std::fs::write(&path, format!("airflow:sha256:{}\n", sha256_hex(OTHER))).unwrap();
    let (status, doc) = post(&env, &dash, Some(TOKEN), body).await;
    assert_eq!(status, 401, "{doc}");
    assert_eq!(env.queue_len(&env.names().jobs).await, 2);
    // Also with a password set: the token, not the password, and no Origin needed.
    let with_password = Dashboard::start(
        &env,
        &[
            ("STOPCASTER_API_TOKENS", file),
            ("STOPCASTER_DASHBOARD_PASSWORD", PASSWORD),
        ],
    );
    let (status, doc) = post(&env, &with_password, Some(OTHER), body).await;
    assert_eq!(status, 201, "{doc}");
    let (status, _) = post(&env, &with_password, None, body).await;
    assert_eq!(status, 401);
    // Each accepted request is a row of the audit trail, by its token's name.
    let audited: Vec<(String, String, String, Option<i64>)> = sqlx::query_as(
        "SELECT actor, source, target, count FROM stopcaster_audit
         WHERE action = 'enqueue' ORDER BY id",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    let who: Vec<_> = audited
        .iter()
        .map(|(actor, source, target, count)| {
            (actor.as_str(), source.as_str(), target.as_str(), *count)
        })
        .collect();
    assert_eq!(
        who,
        [
            ("cron", "api", "batch api", Some(1)),
            ("airflow", "api", "batch api", Some(1)),
            ("airflow", "api", "batch api", Some(1)),
        ]
    );
    for logs in [&dash.logs, &with_password.logs] {
        let logs = logs.lock().unwrap().clone();
        assert!(
            !logs.iter().any(|l| l.contains(TOKEN) || l.contains(OTHER)),
            "a token in the log"
        );
    }
}

#[tokio::test]
async fn bad_bodies_are_refused_field_by_field_and_nothing_is_published() {
    let env = TestEnv::new().await;
    let path = tokens_file("api-bodies");
    let dash = Dashboard::start(&env, &[("STOPCASTER_API_TOKENS", path.to_str().unwrap())]);
    let hostile = format!("<script>alert(1)</script>{}", common::hostile::ESC);
    for (body, field) in [
        ("not json".to_owned(), "body".to_owned()),
        (
            r#"{"region_id": "cn-shanghai"}"#.to_owned(),
            "caster_id".to_owned(),
        ),
        (
            r#"{"caster_id": "ok", "not_before": "at nine"}"#.to_owned(),
            "not_before".to_owned(),
        ),
        (
            format!(
                r#"{{"jobs": [{{"caster_id": "a"}}, {{"caster_id": {}}}]}}"#,
                json!(hostile)
            ),
            "jobs[1].caster_id".to_owned(),
        ),
        (
            json!({"batch": hostile, "jobs": [{"caster_id": "a"}]}).to_string(),
            "jobs[0].batch_id".to_owned(),
        ),
        (
            r#"{"jobs": [{"caster_id": "a", "job_id": "nope"}]}"#.to_owned(),
            "jobs[0].job_id".to_owned(),
        ),
        (r#"{"jobs": []}"#.to_owned(), "jobs".to_owned()),
    ] {
        let (status, doc) = post(&env, &dash, Some(TOKEN), &body).await;
        assert_eq!(status, 400, "{body}: {doc}");
        assert_eq!(doc["field"], field.as_str(), "{body}: {doc}");
        assert!(doc["error"].as_str().unwrap().starts_with(&field));
    }
    let huge = format!(r#"{{"caster_id": "{}"}}"#, "a".repeat(2 * 1024 * 1024));
    let (status, _) = post(&env, &dash, Some(TOKEN), &huge).await;
    assert_eq!(status, 413, "the body size limit");
    assert_eq!(env.queue_len(&env.names().jobs).await, 0);
    // Markup and the right-to-left override are no control characters: a valid label,
    // published, and answered as JSON data.
    let label = format!("<script>alert(1)</script>{}", common::hostile::RLO_CASTER);
    let body = json!({"batch": label, "jobs": [{"caster_id": "h-1"}]}).to_string();
    let (status, doc) = post(&env, &dash, Some(TOKEN), &body).await;
    assert_eq!(status, 201, "{doc}");
    assert_eq!(doc["batch_id"], label.as_str());
}

#[tokio::test]
async fn the_same_job_id_twice_is_one_job_and_a_burst_of_200_is_enqueued() {
    // Every well-formed CasterId is a running studio, at 1,000 calls a second.
    let mut config = stopcaster_fake_live::FakeLiveConfig::new(vec![(
        common::KEY_ID.into(),
        stopcaster::Secret::new(KEY_SECRET),
    )]);
    config.qps = 1000;
    let env = TestEnv::with_fake(config).await;
    let path = tokens_file("api-burst");
    let dash = Dashboard::start(&env, &[("STOPCASTER_API_TOKENS", path.to_str().unwrap())]);
    let id = uuid::Uuid::new_v4();
    let twice = json!({"batch": "dup", "jobs": [
        {"caster_id": "dup-1", "job_id": id}, {"caster_id": "dup-1", "job_id": id}]})
    .to_string();
    let (status, doc) = post(&env, &dash, Some(TOKEN), &twice).await;
    assert_eq!(status, 201, "{doc}");
    assert_eq!(doc["jobs"][1]["status"], "duplicate");
    // And again in another request: published, and the worker makes it one job.
    let (status, _) = post(&env, &dash, Some(TOKEN), &twice).await;
    assert_eq!(status, 201);

    let requests = (0..200).map(|i| {
        let env = &env;
        let dash = &dash;
        async move {
            let body = json!({"caster_id": format!("burst-{i}"), "batch_id": "burst"});
            post(env, dash, Some(TOKEN), &body.to_string()).await
        }
    });
    let answers = futures_util::future::join_all(requests).await;
    for (status, doc) in &answers {
        assert_eq!(*status, 201, "{doc}");
    }
    let _worker = env.spawn_worker(common::FAST);
    common::wait_for(WAIT, || async {
        env.count_status("succeeded").await == 201
    })
    .await
    .expect("201 jobs: one for the duplicated id, 200 for the burst");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM caster_stop_jobs WHERE job_id = $1")
        .bind(id)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    assert_eq!(env.attempts(id).await.len(), 1, "one call for the job");
}

/// Wrong tokens count in the password's limiter: five are free, then the address is locked
/// out (429 with `Retry-After`), the right token included, and nothing is published.
#[tokio::test]
async fn a_burst_of_wrong_tokens_gets_429_with_retry_after() {
    let env = TestEnv::new().await;
    let path = tokens_file("api-wrong");
    let dash = Dashboard::start(&env, &[("STOPCASTER_API_TOKENS", path.to_str().unwrap())]);
    let body = r#"{"caster_id": "api-1", "batch_id": "api"}"#;
    let mut statuses = Vec::new();
    for i in 0..7 {
        let (status, _) = post(&env, &dash, Some(&format!("guess-{i}")), body).await;
        statuses.push(status);
    }
    assert_eq!(
        statuses,
        [401, 401, 401, 401, 401, 401, 429],
        "{statuses:?}"
    );
    let response = env
        .http
        .post(dash.url("/api/jobs"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429, "locked out, the right token too");
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    let enqueued: i64 =
        sqlx::query_scalar("SELECT count(*) FROM stopcaster_audit WHERE action = 'enqueue'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(enqueued, 0, "nothing published");
    let logs = dash.logs.lock().unwrap().clone();
    let warned = logs
        .iter()
        .filter(|l| l.contains("wrong API token"))
        .count();
    assert_eq!(warned, 1, "one line per burst: {logs:?}");
    assert!(
        !logs.iter().any(|l| l.contains("guess-")),
        "no token in the log"
    );
}
