//! What the dashboard refuses or reports: a wrong password, a foreign origin, a public address
//! without a password, an unreachable broker (without its URL).

use super::*;

/// The password, the Origin and the Host are checked before anything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_foreign_origin_and_public_address_are_refused() {
    let env = TestEnv::new().await;
    let dash = Dashboard::start(&env, &[("STOPCASTER_DASHBOARD_PASSWORD", PASSWORD)]);
    let http = &env.http;
    let own = dash.url("");

    // Every request needs the password, pages, API and assets alike.
    for path in ["/", "/api/batches", "/dead-letters", "/nothing-here"] {
        let r = http.get(dash.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic ")
        );
        let r = http
            .get(dash.url(path))
            .basic_auth("admin", Some("wrong password"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = http
        .get(dash.url("/"))
        .basic_auth("anyone", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let html = r.text().await.unwrap();
    assert!(!html.contains(KEY_SECRET) && !html.contains(PASSWORD));
    assert!(!html.contains("guest:guest") && !html.contains("postgres://"));

    // Actions: only from the dashboard's own Origin.
    let replay = |origin: Option<&str>| {
        let mut r = http
            .post(dash.url("/api/dead-letters/replay"))
            .basic_auth("admin", Some(PASSWORD))
            .header("content-type", "application/json")
            .body(json!({"job_ids": [uuid::Uuid::new_v4()]}).to_string());
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    assert_eq!(
        replay(Some("http://evil.example")).await.unwrap().status(),
        403
    );
    assert_eq!(replay(Some("null")).await.unwrap().status(), 403);
    assert_eq!(replay(None).await.unwrap().status(), 403);
    let ok = replay(Some(&own)).await.unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = serde_json::from_str(&ok.text().await.unwrap()).unwrap();
    assert_eq!(body["missing"].as_array().unwrap().len(), 1);
    let r = http
        .post(dash.url(&format!("/api/jobs/{}/cancel", uuid::Uuid::new_v4())))
        .basic_auth("admin", Some(PASSWORD))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A wrong password is refused before the Origin is looked at.
    let r = http
        .post(dash.url("/api/dead-letters/replay"))
        .basic_auth("admin", Some("nope"))
        .header("origin", &own)
        .header("content-type", "application/json")
        .body(json!({"all": true}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    drop(dash);

    // Without a password: read-only, and only loopback host names.
    let dash = Dashboard::start(&env, &[]);
    let r = http
        .get(dash.url("/"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
    let r = http
        .post(dash.url("/api/dead-letters/replay"))
        .header("origin", dash.url(""))
        .header("content-type", "application/json")
        .body(json!({"all": true}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("read-only"));
    drop(dash);

    // Beyond loopback without a password: refused at start.
    let out = env.run_cli(&["dashboard", "--listen", "0.0.0.0:0"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without a password"), "{err}");
    // With one, it starts.
    let mut child = Command::new(env!("CARGO_BIN_EXE_stopcaster"))
        .args(["dashboard", "--listen", "0.0.0.0:0"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.child_env())
        .env("STOPCASTER_DASHBOARD_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("dashboard listening"))
        .unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.contains("dashboard listening on http://0.0.0.0:"),
        "{line}"
    );
}

/// A broker that cannot be reached is reported in place (the overview still shows what
/// Postgres knows), and the report names neither the broker's URL nor its password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_reported_in_place_without_its_url() {
    let env = TestEnv::new().await;
    let closed = common::free_port();
    let url = format!("amqp://guest:Br0ker-Pa55word@127.0.0.1:{closed}/%2f");
    let dash = Dashboard::start(&env, &[("AMQP_URL", &url)]);
    let r = env.http.get(dash.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("Queue depths unavailable"), "{html}");
    assert!(
        html.contains("jobs by status"),
        "the rest of the page is there"
    );
    let r = env
        .http
        .get(dash.url("/dead-letters"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let html = r.text().await.unwrap();
    assert!(html.contains("Cannot read the dead-letter queue"), "{html}");
    let r = env
        .http
        .get(dash.url("/api/dead-letters"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let json: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert!(json["error"].is_string());
    for text in [html, json.to_string()] {
        assert!(
            !text.contains("Br0ker-Pa55word") && !text.contains("amqp://"),
            "{text}"
        );
    }
}
