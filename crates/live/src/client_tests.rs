//! Unit tests of the StopCaster client (a file of their own to keep the module short).

use super::*;

#[test]
fn signed_query_matches_the_documented_vector() {
    let creds = Credentials::new("testid", "testsecret");
    let caster = CasterId::parse("a2b8e671-2fe5-4642-a2ec-bf93880e1697").unwrap();
    let region = RegionId::parse("cn-shanghai").unwrap();
    let q = signed_query(
        "POST",
        &creds,
        StopCasterRequest {
            caster_id: &caster,
            region_id: &region,
        },
        "c9c7d5a6-1b3f-4b0e-9a44-2f1d6f3e8a10",
        "2024-01-02T03:04:05Z",
    );
    // V1 of shared/vectors/rpc-signature-v1.json, Base64 `+`/`/`/`=` percent-encoded.
    assert!(
        q.ends_with("&Signature=NLCqQkLf0UGNtU7aSBpXLoEz4CA%3D"),
        "{q}"
    );
    assert!(q.starts_with("AccessKeyId=testid&Action=StopCaster&CasterId="));
}

#[test]
fn a_timestamp_refusal_is_cured_only_by_a_new_correction() {
    let refused = CallOutcome::CredentialsRefused(crate::ApiError {
        http_status: 400,
        code: TIMESTAMP_EXPIRED.into(),
        message: "Specified time stamp or date value is expired.".into(),
        request_id: None,
        host_id: None,
        recommend: None,
    });
    let answer = |outcome: &CallOutcome, signed_with_skew, skew_after| Answer {
        outcome: outcome.clone(),
        quota: QuotaHeaders::default(),
        signed_with_skew,
        skew_after,
    };
    // Signed before the endpoint's Date showed the offset: call again.
    assert!(answer(&refused, 0, 1200).clock_corrected());
    // Signed with it already: the correction did not help, the account pauses.
    assert!(!answer(&refused, 1200, 1200).clock_corrected());
    assert!(!answer(&refused, 1200, 1201).clock_corrected());
    // Another refusal is not about the clock.
    let other = CallOutcome::CredentialsRefused(crate::ApiError {
        code: "SignatureDoesNotMatch".into(),
        ..match &refused {
            CallOutcome::CredentialsRefused(e) => e.clone(),
            _ => unreachable!(),
        }
    });
    assert!(!answer(&other, 0, 1200).clock_corrected());
}

#[test]
fn pool_is_sized_to_the_calls_in_flight() {
    let ms = Duration::from_millis;
    // Near: a call takes a few ms, so one connection plus the spares.
    assert_eq!(pool_size(10, ms(5), 64), 3);
    // 300 ms at 10/s: 3 calls in flight, 3.75 with the quarter: 4, plus 2.
    assert_eq!(pool_size(10, ms(300), 64), 6);
    // 2 s at 10/s: 25 + 2.
    assert_eq!(pool_size(10, ms(2000), 64), 27);
    // Never more than the calls the worker makes at once, never none.
    assert_eq!(pool_size(10, ms(2000), 8), 8);
    assert_eq!(pool_size(0, Duration::ZERO, 0), 1);
}

#[test]
fn an_idle_or_unused_pool_is_warmed() {
    let now = Instant::now();
    assert!(needs_warming(None, now));
    assert!(!needs_warming(Some(now), now));
    assert!(!needs_warming(
        Some(now),
        now + REWARM_AFTER_IDLE - Duration::from_millis(1)
    ));
    assert!(needs_warming(Some(now), now + REWARM_AFTER_IDLE));
    // A clock that seems to go back is no reason to warm.
    assert!(!needs_warming(Some(now + Duration::from_secs(1)), now));
}

#[test]
fn security_token_is_signed() {
    let creds = Credentials::new("id", "s").with_security_token(Some("tok".into()));
    let caster = CasterId::parse("c").unwrap();
    let region = RegionId::parse("r").unwrap();
    let req = StopCasterRequest {
        caster_id: &caster,
        region_id: &region,
    };
    let q = signed_query("POST", &creds, req, "n", "t");
    assert!(q.contains("&SecurityToken=tok&"));
    let plain = signed_query("POST", &Credentials::new("id", "s"), req, "n", "t");
    assert_ne!(q.rsplit('=').next(), plain.rsplit('=').next());
}

#[tokio::test]
async fn reachable_is_any_http_answer_and_a_refused_connection_is_not() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A 400 like the gateway's answer to a request without an Action: still reachable.
    let app = axum::Router::new().fallback(|| async { axum::http::StatusCode::BAD_REQUEST });
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let config = ClientConfig::new(format!("http://{addr}"));
    assert!(LiveClient::new(&config).unwrap().reachable().await);
    server.abort();
    let _ = server.await;
    // A fresh client: nothing listens on the port any more.
    assert!(!LiveClient::new(&config).unwrap().reachable().await);
}
