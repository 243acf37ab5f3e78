//! The background refresh: ahead of expiry with the OIDC token file reread, retries with
//! backoff and an error once expired, one fetch for overlapping callers, and none after the
//! last handle is dropped.

use super::*;

// Over 80 lines on purpose: one provider's life across two renewals, read in time order.
#[tokio::test]
async fn oidc_refreshes_before_expiry_and_rereads_the_token_file() {
    // STS refuses what does not look like a token, echoing it as STS may.
    let counter = AtomicU64::new(0);
    let (sts, base) = Recorder::serve(move |seen| {
        let token = seen.params.get("OIDCToken").cloned().unwrap_or_default();
        if !token.starts_with("oidc-") {
            let message = format!("the token {token} is invalid");
            return (
                400,
                alibaba_error("AuthenticationFail.OIDCToken.Invalid", &message),
            );
        }
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        (200, issued(n, Duration::seconds(3), true))
    })
    .await;
    let dir = temp_dir();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "oidc-token-A").unwrap();
    let source = Source {
        label: "oidc".into(),
        kind: SourceKind::Oidc(OidcRole {
            role_arn: "acs:ram::1234567890123456:role/stopper".into(),
            oidc_provider_arn: "acs:ram::1234567890123456:oidc-provider/ack".into(),
            token_file: token_file.clone(),
            session_name: "stopcaster-test".into(),
            duration_seconds: 3600,
            policy: None,
            sts_endpoint: base.clone(),
        }),
    };
    let shutdown = CancellationToken::new();
    let provider = CredentialsProvider::start(source, ctx(&shutdown))
        .await
        .unwrap();
    let first = provider.current().unwrap();
    assert_eq!(first.access_key_id(), "STS.issued1");
    let expires = first.expiration().unwrap();
    let seen = sts.seen();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/"));
    assert_eq!(req.params["Action"], "AssumeRoleWithOIDC");
    assert_eq!(req.params["Version"], "2015-04-01");
    assert_eq!(req.params["OIDCToken"], "oidc-token-A");
    assert_eq!(req.params["RoleSessionName"], "stopcaster-test");
    assert_eq!(req.params["DurationSeconds"], "3600");
    assert!(!req.params.contains_key("Signature"));
    assert_eq!(
        req.headers["content-type"],
        "application/x-www-form-urlencoded"
    );

    // The token rotates; the next refresh must send the new one.
    std::fs::write(&token_file, "oidc-token-B").unwrap();
    wait_for("a refresh", StdDuration::from_secs(10), || {
        sts.count(|_| true) >= 2
    })
    .await;
    let seen = sts.seen();
    assert_eq!(seen[1].params["OIDCToken"], "oidc-token-B");
    assert!(
        seen[1].at < expires,
        "refreshed at {} but the first credentials expired at {expires}",
        seen[1].at
    );
    wait_for("the new credentials", StdDuration::from_secs(2), || {
        provider
            .current()
            .is_ok_and(|c| c.access_key_id() == "STS.issued2")
    })
    .await;

    // A token STS refuses: the error names the code, never the token it may echo.
    std::fs::write(&token_file, "bad-token-C").unwrap();
    let e = provider.refresh_now().await.unwrap_err().to_string();
    assert!(e.contains("AuthenticationFail.OIDCToken.Invalid"), "{e}");
    assert!(e.contains("sts AssumeRoleWithOIDC"), "{e}");
    assert!(!e.contains("bad-token-C"), "{e}");
    // A missing token file names the file.
    std::fs::remove_file(&token_file).unwrap();
    let e = provider.refresh_now().await.unwrap_err().to_string();
    assert!(e.contains("OIDC token file") && e.contains("token"), "{e}");
    shutdown.cancel();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_failed_refresh_is_retried_then_current_errors_once_expired_then_recovers() {
    let (uri, base, failing) = uri_server(Duration::seconds(4)).await;
    let shutdown = CancellationToken::new();
    let provider = CredentialsProvider::start(uri_source(&base), ctx(&shutdown))
        .await
        .unwrap();
    let first = provider.current().unwrap();
    let expires = first.expiration().unwrap();
    let req = &uri.seen()[0];
    assert_eq!(req.method, "GET");
    assert_eq!(req.params["token"], "uri-query-secret");

    failing.store(true, Ordering::SeqCst);
    // Retries, with backoff, while the first credentials are still valid.
    wait_for("retries", StdDuration::from_secs(10), || {
        uri.count(|s| s.answered == 500) >= 3
    })
    .await;
    let failures: Vec<OffsetDateTime> = uri
        .seen()
        .iter()
        .filter(|s| s.answered == 500)
        .map(|s| s.at)
        .collect();
    assert!(
        failures[1] < expires,
        "retried only after expiry: {failures:?} vs {expires}"
    );
    for pair in failures.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::milliseconds(90),
            "no backoff between {} and {}",
            pair[0],
            pair[1]
        );
    }
    if OffsetDateTime::now_utc() < expires - Duration::milliseconds(500) {
        assert_eq!(provider.current().unwrap().access_key_id(), "STS.issued1");
    }

    // Expired and still failing: no credentials to sign with, and the error says why.
    wait_for("expiry", StdDuration::from_secs(10), || {
        OffsetDateTime::now_utc() >= expires
    })
    .await;
    let e = provider.current().unwrap_err();
    assert!(matches!(e, CredentialsError::Expired { .. }), "{e:?}");
    let shown = e.to_string();
    assert!(shown.contains("HTTP 500 InternalError"), "{shown}");
    assert!(
        shown.contains("/creds") && !shown.contains("uri-query-secret"),
        "{shown}"
    );

    // It keeps trying, and recovers once the source answers again.
    failing.store(false, Ordering::SeqCst);
    wait_for("recovery", StdDuration::from_secs(5), || {
        provider.current().is_ok()
    })
    .await;
    assert_ne!(provider.current().unwrap().access_key_id(), "STS.issued1");
    shutdown.cancel();
}

#[tokio::test]
async fn refresh_now_fetches_once_for_overlapping_callers() {
    let (uri, base, _) = uri_server(Duration::hours(1)).await;
    let shutdown = CancellationToken::new();
    let provider = CredentialsProvider::start(uri_source(&base), ctx(&shutdown))
        .await
        .unwrap();
    let (a, b) = tokio::join!(provider.refresh_now(), provider.refresh_now());
    assert_eq!(a.unwrap().access_key_id(), "STS.issued2");
    assert_eq!(b.unwrap().access_key_id(), "STS.issued2");
    assert_eq!(uri.count(|_| true), 2);
    assert_eq!(
        provider.refresh_now().await.unwrap().access_key_id(),
        "STS.issued3"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_refresh() {
    let (uri, base, _) = uri_server(Duration::seconds(2)).await;
    let shutdown = CancellationToken::new();
    let provider = CredentialsProvider::start(uri_source(&base), ctx(&shutdown))
        .await
        .unwrap();
    let clone = provider.clone();
    drop(provider);
    // A clone keeps it alive: the refresh still happens.
    wait_for("a refresh", StdDuration::from_secs(5), || {
        uri.count(|_| true) >= 2
    })
    .await;
    drop(clone);
    let after_drop = uri.count(|_| true);
    // Past the next refresh time (2/3 of 2 s, after the last one): nothing more is asked.
    tokio::time::sleep(StdDuration::from_millis(2500)).await;
    assert_eq!(uri.count(|_| true), after_drop);
}
