//! The HTTP sources and the background refresh against a local axum server that plays STS, the
//! ECS metadata service and a credentials URI, verifies signatures like Alibaba does, and
//! records every request. Lifetimes are a few seconds; the tests await conditions rather than
//! sleeping, except to let a lifetime pass where that is the point.

use std::sync::atomic::Ordering;
use std::time::Duration as StdDuration;

use time::{Duration, OffsetDateTime};
use tokio_util::sync::CancellationToken;

use super::chain::{self, CliConfigFile, EcsRole, OidcRole, RamRole, Source, SourceKind};
use super::refresh::{CredentialsError, CredentialsProvider};
use super::{Credentials, HttpClients, sts};

use super::mock_sts::*;

#[tokio::test]
async fn oidc_refreshes_before_expiry_and_rereads_the_token_file() {
    let mock = Mock::new(Duration::seconds(3));
    let base = serve(mock.clone()).await;
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
    let seen = mock.seen();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/"));
    assert_eq!(req.params["Action"], "AssumeRoleWithOIDC");
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
        mock.count(|_| true) >= 2
    })
    .await;
    let seen = mock.seen();
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
    let mock = Mock::new(Duration::seconds(4));
    let base = serve(mock.clone()).await;
    let shutdown = CancellationToken::new();
    let provider = CredentialsProvider::start(uri_source(&base), ctx(&shutdown))
        .await
        .unwrap();
    let first = provider.current().unwrap();
    let expires = first.expiration().unwrap();
    let req = &mock.seen()[0];
    assert_eq!(req.method, "GET");
    assert_eq!(req.params["token"], "uri-query-secret");

    mock.fail.store(true, Ordering::SeqCst);
    // Retries, with backoff, while the first credentials are still valid.
    wait_for("retries", StdDuration::from_secs(10), || {
        mock.count(|s| s.answered == 500) >= 3
    })
    .await;
    let failures: Vec<OffsetDateTime> = mock
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
    mock.fail.store(false, Ordering::SeqCst);
    wait_for("recovery", StdDuration::from_secs(5), || {
        provider.current().is_ok()
    })
    .await;
    assert_ne!(provider.current().unwrap().access_key_id(), "STS.issued1");
    shutdown.cancel();
}

#[tokio::test]
async fn refresh_now_fetches_once_for_overlapping_callers() {
    let mock = Mock::new(Duration::hours(1));
    let base = serve(mock.clone()).await;
    let shutdown = CancellationToken::new();
    let provider = CredentialsProvider::start(uri_source(&base), ctx(&shutdown))
        .await
        .unwrap();
    let (a, b) = tokio::join!(provider.refresh_now(), provider.refresh_now());
    assert_eq!(a.unwrap().access_key_id(), "STS.issued2");
    assert_eq!(b.unwrap().access_key_id(), "STS.issued2");
    assert_eq!(mock.count(|_| true), 2);
    assert_eq!(
        provider.refresh_now().await.unwrap().access_key_id(),
        "STS.issued3"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_refresh() {
    let mock = Mock::new(Duration::seconds(2));
    let base = serve(mock.clone()).await;
    let shutdown = CancellationToken::new();
    let provider = CredentialsProvider::start(uri_source(&base), ctx(&shutdown))
        .await
        .unwrap();
    let clone = provider.clone();
    drop(provider);
    // A clone keeps it alive: the refresh still happens.
    wait_for("a refresh", StdDuration::from_secs(5), || {
        mock.count(|_| true) >= 2
    })
    .await;
    drop(clone);
    let after_drop = mock.count(|_| true);
    // Past the next refresh time (2/3 of 2 s, after the last one): nothing more is asked.
    tokio::time::sleep(StdDuration::from_millis(2500)).await;
    assert_eq!(mock.count(|_| true), after_drop);
}

#[tokio::test]
async fn ecs_uses_an_imdsv2_token_and_discovers_the_role() {
    let mock = Mock::new(Duration::hours(6));
    let base = serve(mock.clone()).await;
    let role = EcsRole {
        role_name: None,
        endpoint: base.clone(),
        imdsv1_disabled: false,
        implicit: false,
    };
    let creds = super::ecs::fetch(&HttpClients::new(None).unwrap().metadata, &role)
        .await
        .unwrap();
    assert_eq!(creds.access_key_id(), "STS.issued1");
    let seen = mock.seen();
    let summary: Vec<(&str, &str)> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.path.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("PUT", "/latest/api/token"),
            ("GET", "/latest/meta-data/ram/security-credentials/"),
            (
                "GET",
                "/latest/meta-data/ram/security-credentials/stopper-role"
            ),
        ]
    );
    assert_eq!(
        seen[0].headers["x-aliyun-ecs-metadata-token-ttl-seconds"],
        "21600"
    );
    for get in &seen[1..] {
        assert_eq!(get.headers["x-aliyun-ecs-metadata-token"], "imds-token-1");
    }

    // A named role is asked for directly.
    let named = EcsRole {
        role_name: Some("stopper-role".into()),
        ..role.clone()
    };
    super::ecs::fetch(&HttpClients::new(None).unwrap().metadata, &named)
        .await
        .unwrap();
    assert_eq!(
        mock.count(|s| s.path.ends_with("/security-credentials/")),
        1
    );

    // No token to be had: IMDSv1 (no header), unless that is disabled.
    mock.refuse_token_put.store(true, Ordering::SeqCst);
    mock.require_imds_token.store(false, Ordering::SeqCst);
    let before = mock.seen().len();
    super::ecs::fetch(&HttpClients::new(None).unwrap().metadata, &role)
        .await
        .unwrap();
    let v1 = &mock.seen()[before..];
    assert_eq!(v1.len(), 3);
    assert!(
        v1[1..]
            .iter()
            .all(|s| !s.headers.contains_key("x-aliyun-ecs-metadata-token"))
    );
    let strict = EcsRole {
        imdsv1_disabled: true,
        ..role
    };
    let e = super::ecs::fetch(&HttpClients::new(None).unwrap().metadata, &strict)
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), Some(403));
    assert!(e.to_string().contains("/latest/api/token"), "{e}");
}

#[tokio::test]
async fn chainable_assume_role_signs_with_the_base_and_its_token() {
    let mock = Mock::new(Duration::hours(1));
    let base_url = serve(mock.clone()).await;
    let env = move |v: &str| match v {
        chain::STS_ENDPOINT => Some(base_url.clone()),
        _ => None,
    };
    let cli = CliConfigFile {
        path: "/h/.aliyun/config.json".into(),
        text: Some(
            r#"{"current":"chain","profiles":[
              {"name":"ram","mode":"RamRoleArn","access_key_id":"LTAIbase","access_key_secret":"base-secret",
               "ram_role_arn":"acs:ram::1234567890123456:role/first","ram_session_name":"s1","external_id":"ext-9"},
              {"name":"chain","mode":"ChainableRamRoleArn","source_profile":"ram",
               "ram_role_arn":"acs:ram::1234567890123456:role/second","policy":"{\"Version\":\"1\"}"}]}"#
                .into(),
        ),
    };
    let source = chain::select(&env, Some(&cli)).unwrap();
    let shutdown = CancellationToken::new();
    let provider = CredentialsProvider::start(source, ctx(&shutdown))
        .await
        .unwrap();
    assert_eq!(provider.current().unwrap().access_key_id(), "STS.issued2");
    let seen = mock.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.answered == 200), "{seen:?}");
    assert_eq!(seen[0].params["AccessKeyId"], "LTAIbase");
    assert_eq!(
        seen[0].params["RoleArn"],
        "acs:ram::1234567890123456:role/first"
    );
    assert_eq!(seen[0].params["ExternalId"], "ext-9");
    assert!(!seen[0].params.contains_key("SecurityToken"));
    assert_eq!(seen[1].params["AccessKeyId"], "STS.issued1");
    assert_eq!(seen[1].params["SecurityToken"], "issued-token-1");
    assert_eq!(
        seen[1].params["RoleArn"],
        "acs:ram::1234567890123456:role/second"
    );
    assert_eq!(seen[1].params["Policy"], "{\"Version\":\"1\"}");

    // The account UID, asked with the temporary keys and their token (the mock checks both).
    let key = provider
        .account_key("default", None, "http://127.0.0.1:1")
        .await
        .unwrap();
    assert_eq!(key.key, "1234567890123456");
    assert_eq!(key.origin, super::AccountKeyOrigin::CallerIdentity);
    let asked = &mock.seen()[2];
    assert_eq!(asked.params["Action"], "GetCallerIdentity");
    assert_eq!(asked.params["SecurityToken"], "issued-token-2");
    shutdown.cancel();
}

#[tokio::test]
async fn refused_signatures_name_the_code_not_the_secret() {
    let mock = Mock::new(Duration::hours(1));
    let base = serve(mock.clone()).await;
    let source = Source {
        label: "cli-profile \"ram\" (RamRoleArn)".into(),
        kind: SourceKind::AssumeRole {
            base: Box::new(Source {
                label: "cli-profile \"ram\" (AK)".into(),
                kind: SourceKind::Static(Credentials::new("LTAIbase", "wrong-secret")),
            }),
            role: RamRole {
                role_arn: "acs:ram::1:role/r".into(),
                session_name: "s".into(),
                duration_seconds: 3600,
                policy: None,
                external_id: None,
                sts_endpoint: base.clone(),
            },
        },
    };
    let e = CredentialsProvider::start(source, ctx(&CancellationToken::new()))
        .await
        .unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.contains("HTTP 400 SignatureDoesNotMatch (RequestId req-1)"),
        "{shown}"
    );
    assert!(
        shown.contains("sts AssumeRole") && shown.contains(&base),
        "{shown}"
    );
    // The mock echoes the secret in its Message, as a server might: it must not get through.
    assert!(
        !shown.contains("base-secret") && !shown.contains("wrong-secret"),
        "{shown}"
    );
    assert!(!shown.contains("Signature="), "{shown}");
}

#[tokio::test]
async fn caller_identity_learns_the_account_uid() {
    let mock = Mock::new(Duration::hours(1));
    let base = serve(mock.clone()).await;
    let http = HttpClients::new(None).unwrap().sts;
    let uid = sts::caller_identity(&http, &base, &Credentials::new("LTAIbase", "base-secret"))
        .await
        .unwrap();
    assert_eq!(uid, "1234567890123456");
    let req = &mock.seen()[0];
    assert_eq!(req.params["Action"], "GetCallerIdentity");
    assert_eq!(req.answered, 200);

    let key = super::account::resolve_account_key(
        "default",
        None,
        &http,
        &base,
        &Credentials::new("LTAIbase", "wrong"),
    )
    .await;
    assert_eq!(key.key, "LTAIbase");
    assert_eq!(key.origin, super::AccountKeyOrigin::AccessKeyId);
    let asked = mock.count(|_| true);
    let key = super::account::resolve_account_key(
        "default",
        Some("999"),
        &http,
        &base,
        &Credentials::new("LTAIbase", "base-secret"),
    )
    .await;
    assert_eq!(key.key, "999");
    assert_eq!(
        mock.count(|_| true),
        asked,
        "a configured UID is not asked for"
    );
}

#[tokio::test]
async fn without_any_source_the_answer_is_no_credentials_and_quick() {
    // Nothing configured, and no metadata service where it is looked for.
    let env = |v: &str| match v {
        chain::ECS_METADATA_ENDPOINT => Some("http://127.0.0.1:1".to_owned()),
        _ => None,
    };
    let source = chain::select(&env, None).unwrap();
    let started = std::time::Instant::now();
    let e = CredentialsProvider::start(source, ctx(&CancellationToken::new()))
        .await
        .unwrap_err();
    assert!(started.elapsed() < StdDuration::from_secs(3));
    assert!(matches!(e, CredentialsError::NoCredentials { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with("no credentials configured"),
        "{e}"
    );

    // The real default address: outside ECS it must fail within the 1 s connect timeout (plus
    // slack for a loaded machine), not hang.
    let source = chain::select(&|_: &str| None, None).unwrap();
    let started = std::time::Instant::now();
    let result = CredentialsProvider::start(source, ctx(&CancellationToken::new())).await;
    assert!(
        started.elapsed() < StdDuration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    if let Err(e) = result {
        assert!(matches!(e, CredentialsError::NoCredentials { .. }), "{e:?}");
    }
}
