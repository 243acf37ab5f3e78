//! Injected faults as our client sees them: 5xx, dropped connections, latency past the timeout,
//! throttling; faults scripted over HTTP; the server stopping with its handle.

use super::*;

#[tokio::test]
async fn injected_5xx_are_retryable_and_stop_nothing() {
    let mut config = config();
    config.fail_rate = 1.0;
    let fake = start(config).await;
    let client = client(&fake);

    for _ in 0..3 {
        retryable(&stop(&client, "s1").await, 503, "ServiceUnavailable");
    }
    assert_eq!(fake.caster("s1"), None);
    fake.set_fail_rate(0.0);

    fake.push_faults([
        Fault::Status500InternalError,
        Fault::Html502,
        Fault::Status503,
    ]);
    retryable(&stop(&client, "s1").await, 500, "InternalError");
    let html = stop(&client, "s1").await;
    retryable(&html, 502, "UnexpectedResponse");
    assert!(html.error_message().unwrap().contains("502 Bad Gateway"));
    retryable(&stop(&client, "s1").await, 503, "ServiceUnavailable");
    assert_eq!(fake.caster("s1"), None);
    assert!(matches!(
        stop(&client, "s1").await,
        CallOutcome::Stopped { .. }
    ));

    let stats: Stats = get_json(format!("{}/_fake/stats", fake.endpoint())).await;
    assert_eq!(stats.total, 7);
    assert_eq!(stats.ok, 1);
    assert_eq!(stats.by_code.get("ServiceUnavailable"), Some(&4));
    assert_eq!(stats.by_code.get("InternalError"), Some(&1));
    assert_eq!(stats.by_fault.get("html502"), Some(&1));
    assert_eq!(stats, fake.stats());
}

#[tokio::test]
async fn dropped_connections_are_transport_errors() {
    let fake = start(config()).await;
    let client = client(&fake);

    fake.push_faults([Fault::DropConnection]);
    let dropped = stop(&client, "s1").await;
    assert!(
        matches!(&dropped, CallOutcome::Transport(t) if t.kind == TransportKind::Lost),
        "{dropped:?}"
    );
    assert_eq!(fake.caster("s1"), None, "a plain drop stops nothing");

    // The lost answer: the studio stopped, the client never heard, the retry is refused.
    fake.push_faults([Fault::StopThenDrop]);
    let lost = stop(&client, "s1").await;
    assert!(
        matches!(&lost, CallOutcome::Transport(t) if t.kind == TransportKind::Lost),
        "{lost:?}"
    );
    assert_eq!(fake.caster("s1"), Some(StudioState::Stopped));
    permanent(&stop(&client, "s1").await, 400, "IncorrectSceneStatus");

    let log = calls_for(&fake, "caster_id=s1").await;
    let seen: Vec<(Option<u16>, Option<&str>)> = log
        .iter()
        .map(|c| (c.http_status, c.fault.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            (None, Some("drop")),
            (None, Some("stop-then-drop")),
            (Some(400), None)
        ]
    );
    // The server is still serving after severing connections.
    assert!(matches!(
        stop(&client, "s2").await,
        CallOutcome::Stopped { .. }
    ));
}

#[tokio::test]
async fn latency_beyond_the_client_timeout_is_a_timeout() {
    let fake = start(config()).await;
    let mut config = ClientConfig::new(fake.endpoint());
    config.timeout = Duration::from_millis(300);
    let client = LiveClient::new(&config).unwrap();

    fake.set_latency(Duration::from_secs(3));
    let started = Instant::now();
    let outcome = stop(&client, "slow").await;
    assert!(
        matches!(&outcome, CallOutcome::Transport(t) if t.kind == TransportKind::Timeout),
        "{outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // Decided before the latency: the studio stopped although nobody heard.
    assert_eq!(fake.caster("slow"), Some(StudioState::Stopped));

    fake.set_latency(Duration::ZERO);
    fake.push_faults([Fault::Delay(Duration::from_millis(200))]);
    let started = Instant::now();
    assert!(matches!(
        stop(&client, "s2").await,
        CallOutcome::Stopped { .. }
    ));
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn throttling_is_retryable() {
    let mut config = config();
    config.qps = 1;
    let fake = start(config).await;
    let client = client(&fake);

    assert!(matches!(
        stop(&client, "s1").await,
        CallOutcome::Stopped { .. }
    ));
    let throttled = stop(&client, "s2").await;
    retryable(&throttled, 400, "Throttling.User");
    assert!(throttled.is_throttled());
    assert_eq!(
        throttled.error_message(),
        Some("Request was denied due to user flow control.")
    );
    assert_eq!(fake.caster("s2"), None);
    // Another key has its own window.
    let b = Credentials::new(KEY_B, SECRET_B);
    assert!(matches!(
        stop_as(&client, &b, "s2").await,
        CallOutcome::Stopped { .. }
    ));

    // The scripted throttle answers the same way, whatever the window says.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    fake.push_faults([Fault::Throttle]);
    let scripted = stop(&client, "s3").await;
    assert!(scripted.is_throttled(), "{scripted:?}");
}

#[tokio::test]
async fn faults_can_be_scripted_over_http() {
    let fake = start(config()).await;
    let client = client(&fake);
    let http = reqwest::Client::new();
    let url = format!("{}/_fake/faults", fake.endpoint());

    let (status, _, body) =
        send(http.post(&url).body(
            r#"{"script": ["html502", "503", "throttle", "stop-then-drop"], "latency_ms": 0}"#,
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pending_faults"], 4);

    retryable(&stop(&client, "s1").await, 502, "UnexpectedResponse");
    retryable(&stop(&client, "s1").await, 503, "ServiceUnavailable");
    assert!(stop(&client, "s1").await.is_throttled());
    assert!(matches!(
        stop(&client, "s1").await,
        CallOutcome::Transport(_)
    ));
    assert_eq!(fake.caster("s1"), Some(StudioState::Stopped));

    let (status, _, _) = send(http.post(&url).body(r#"{"script": ["teapot"]}"#)).await;
    assert_eq!(status, 400);
    let (status, _, _) = send(http.post(&url).body(r#"{"fail_rate": 2}"#)).await;
    assert_eq!(status, 400);
    let (status, _, body) = send(http.post(&url).body(r#"{"fail_rate": 1.0}"#)).await;
    assert_eq!((status, body["fail_rate"].as_f64()), (200, Some(1.0)));
    retryable(&stop(&client, "s2").await, 503, "ServiceUnavailable");
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let fake = start(config()).await;
    let addr = fake.addr;
    assert!(matches!(
        stop(&client(&fake), "s1").await,
        CallOutcome::Stopped { .. }
    ));
    drop(fake);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still accepting after the handle was dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
