//! The stand-in's transport: HTTPS with the configured certificate, and the connect delay on
//! each connection's first request.

use super::*;

#[tokio::test]
async fn serves_https_with_the_configured_certificate() {
    let dir = common::temp_dir("fake-sts");
    let (ca, cert, key) = common::pki::test_pki(&dir);
    let mut config = config();
    config.tls = Some(fake_live::tls_config(&cert, &key).unwrap());
    let fake = start(config).await;
    assert!(fake.endpoint().starts_with("https://127.0.0.1:"));

    let trusting = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap()])
        .build()
        .unwrap();
    let stats = trusting
        .get(format!("{}/_fake/stats", fake.endpoint()))
        .send()
        .await
        .unwrap();
    assert_eq!(stats.status(), 200);
    let creds: Value = json(
        trusting
            .get(format!("{}/_fake/credentials", fake.endpoint()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(creds["Code"], "Success");
    // Plain HTTP to the TLS port is no answer, and a client that does not trust the CA refuses.
    let plain = reqwest::get(format!("http://{}/_fake/stats", fake.addr)).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    let untrusting = reqwest::Client::builder().build().unwrap();
    assert!(
        untrusting
            .get(format!("{}/_fake/stats", fake.endpoint()))
            .send()
            .await
            .is_err()
    );

    // Unusable files are refused with their path named.
    let err = fake_live::tls_config(&dir.join("missing.pem"), &key).unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let err = fake_live::tls_config(&cert, &cert).unwrap_err();
    assert!(err.to_string().contains("cert.pem"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn log_millis(entry: &CallLogEntry) -> i128 {
    time::OffsetDateTime::parse(&entry.time, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp_nanos()
        / 1_000_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_request_of_each_connection_waits_out_the_connect_delay() {
    let delay = Duration::from_millis(400);
    let mut config = config();
    config.connect_delay = delay;
    let fake = start(config).await;
    // Requests the RPC handler logs (refused for a missing Action), told apart by CasterId.
    let url = |tag: &str| format!("{}/?CasterId={tag}", fake.endpoint());
    let kept_alive = reqwest::Client::new();

    let before_connect = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let started = Instant::now();
    let first = kept_alive.get(url("first")).send().await.unwrap();
    assert_eq!(first.status(), 400);
    // Read to the end, so the connection goes back to the pool for the second request.
    first.bytes().await.unwrap();
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());

    // The second request on that connection races a new connection's first: it is not
    // delayed, so the server takes it first although both were sent together.
    let fresh = reqwest::Client::new();
    let (second, other) = tokio::join!(kept_alive.get(url("second")).send(), async {
        let started = Instant::now();
        let r = fresh.get(url("new-connection")).send().await;
        (r, started.elapsed())
    });
    assert_eq!(second.unwrap().status(), 400);
    let (other, other_elapsed) = other;
    assert_eq!(other.unwrap().status(), 400);
    assert!(
        other_elapsed >= delay,
        "a new connection waits again: {other_elapsed:?}"
    );

    let log = fake.calls();
    let position = |tag: &str| {
        log.iter()
            .position(|c| c.caster_id.as_deref() == Some(tag))
            .unwrap_or_else(|| panic!("{tag} not logged: {log:?}"))
    };
    assert_eq!(log.len(), 3);
    assert!(position("second") < position("new-connection"), "{log:?}");
    // Decided (and so counted) only after the delay.
    let first_at = log_millis(&log[position("first")]);
    assert!(
        first_at - before_connect >= delay.as_millis() as i128 - 2,
        "{first_at} {before_connect}"
    );
}
