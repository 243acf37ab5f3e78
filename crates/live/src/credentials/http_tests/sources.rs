//! What each source sends and makes of the answer: the ECS metadata service (IMDSv2, role
//! discovery, the IMDSv1 fallback), chained `AssumeRole`, refused signatures, the account UID,
//! and no source at all.

use super::*;
use crate::credentials;

// Over 80 lines on purpose: one instance's story (token, discovery, refusal, fallback) told
// in order; split, each part would need the state the previous one left.
#[tokio::test]
async fn ecs_uses_an_imdsv2_token_and_discovers_the_role() {
    // A metadata service whose token PUT can be refused (an instance with IMDSv2 off), and
    // which then serves GETs without a token.
    let refuse_put = Arc::new(AtomicBool::new(false));
    let refusing = refuse_put.clone();
    let counter = AtomicU64::new(0);
    let (ecs, base) = Recorder::serve(move |seen| {
        let v1 = refusing.load(Ordering::SeqCst);
        let token_ok = v1
            || seen
                .headers
                .get("x-aliyun-ecs-metadata-token")
                .map(String::as_str)
                == Some("imds-token-1");
        match (seen.method.as_str(), seen.path.as_str()) {
            ("PUT", "/latest/api/token") if v1 => (403, String::new()),
            ("PUT", "/latest/api/token") => (200, "imds-token-1".into()),
            (_, "/latest/meta-data/ram/security-credentials/") if token_ok => {
                (200, "stopper-role".into())
            }
            (_, "/latest/meta-data/ram/security-credentials/stopper-role") if token_ok => {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                (200, issued(n, Duration::hours(6), false))
            }
            _ => (401, String::new()),
        }
    })
    .await;
    let role = EcsRole {
        role_name: None,
        endpoint: base.clone(),
        imdsv1_disabled: false,
        implicit: false,
    };
    let metadata = HttpClients::new(None).unwrap().metadata;
    let creds = credentials::ecs::fetch(&metadata, &role).await.unwrap();
    assert_eq!(creds.access_key_id(), "STS.issued1");
    let seen = ecs.seen();
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
    credentials::ecs::fetch(&metadata, &named).await.unwrap();
    assert_eq!(ecs.count(|s| s.path.ends_with("/security-credentials/")), 1);

    // No token to be had: IMDSv1 (no header), unless that is disabled.
    refuse_put.store(true, Ordering::SeqCst);
    let before = ecs.seen().len();
    credentials::ecs::fetch(&metadata, &role).await.unwrap();
    let v1 = &ecs.seen()[before..];
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
    let e = credentials::ecs::fetch(&metadata, &strict)
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), Some(403));
    assert!(e.to_string().contains("/latest/api/token"), "{e}");
}

#[tokio::test]
async fn chainable_assume_role_signs_with_the_base_and_its_token() {
    let (sts, base_url) = sts_server(Duration::hours(1)).await;
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
    let seen = sts.seen();
    assert_eq!(seen.len(), 2);
    // Signed, each with the key it was given (the stand-in checks the signatures themselves:
    // tests/it/credentials_provider.rs).
    let signed_by = |s: &Seen, secret: &str| {
        let unsigned = s.params.iter().filter(|(k, _)| k.as_str() != "Signature");
        s.params.get("Signature")
            == Some(&signer::sign(
                "POST",
                secret,
                unsigned.map(|(k, v)| (k.as_str(), v.as_str())),
            ))
    };
    assert_eq!(seen[0].params["AccessKeyId"], "LTAIbase");
    assert!(signed_by(&seen[0], "base-secret"), "{:?}", seen[0]);
    assert_eq!(
        seen[0].params["RoleArn"],
        "acs:ram::1234567890123456:role/first"
    );
    assert_eq!(seen[0].params["ExternalId"], "ext-9");
    assert!(!seen[0].params.contains_key("SecurityToken"));
    assert_eq!(seen[1].params["AccessKeyId"], "STS.issued1");
    assert!(signed_by(&seen[1], "issued-secret-1"), "{:?}", seen[1]);
    assert_eq!(seen[1].params["SecurityToken"], "issued-token-1");
    assert_eq!(
        seen[1].params["RoleArn"],
        "acs:ram::1234567890123456:role/second"
    );
    assert_eq!(seen[1].params["Policy"], "{\"Version\":\"1\"}");

    // The account UID, asked with the temporary keys and their token.
    let key = provider
        .account_key("default", None, "http://127.0.0.1:1")
        .await
        .unwrap();
    assert_eq!(key.key, "1234567890123456");
    assert_eq!(key.origin, credentials::AccountKeyOrigin::CallerIdentity);
    let asked = &sts.seen()[2];
    assert_eq!(asked.params["Action"], "GetCallerIdentity");
    assert_eq!(asked.params["AccessKeyId"], "STS.issued2");
    assert_eq!(asked.params["SecurityToken"], "issued-token-2");
    shutdown.cancel();
}

#[tokio::test]
async fn refused_signatures_name_the_code_not_the_secret() {
    // A refusal whose Message echoes the secret, as a server might: it must not get through.
    let (_sts, base) = Recorder::serve(|_| {
        let message = "Specified signature is not matched with our calculation. \
                       server string to sign is:base-secret wrong-secret";
        (400, alibaba_error("SignatureDoesNotMatch", message))
    })
    .await;
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
    assert!(
        !shown.contains("base-secret") && !shown.contains("wrong-secret"),
        "{shown}"
    );
    assert!(!shown.contains("Signature="), "{shown}");
}

#[tokio::test]
async fn caller_identity_learns_the_account_uid() {
    // Knows one key; refuses any other.
    let (sts, base) = Recorder::serve(|seen| match seen.params["AccessKeyId"].as_str() {
        "LTAIbase" => (
            200,
            serde_json::json!({"RequestId": "req-3", "IdentityType": "RAMUser",
                "AccountId": "1234567890123456", "Arn": "acs:ram::1234567890123456:user/u"})
            .to_string(),
        ),
        _ => (404, alibaba_error("InvalidAccessKeyId.NotFound", "nope")),
    })
    .await;
    let http = HttpClients::new(None).unwrap().sts;
    let base_key = Credentials::new("LTAIbase", "base-secret");
    let uid = credentials::sts::caller_identity(&http, &base, &base_key)
        .await
        .unwrap();
    assert_eq!(uid, "1234567890123456");
    let req = &sts.seen()[0];
    assert_eq!(req.params["Action"], "GetCallerIdentity");
    assert_eq!(req.answered, 200);

    // Refused: the AccessKeyId stands in for the UID.
    let other = Credentials::new("LTAIother", "x");
    let key =
        credentials::account::resolve_account_key("default", None, &http, &base, &other).await;
    assert_eq!(key.key, "LTAIother");
    assert_eq!(key.origin, credentials::AccountKeyOrigin::AccessKeyId);
    let asked = sts.count(|_| true);
    let key =
        credentials::account::resolve_account_key("default", Some("999"), &http, &base, &base_key)
            .await;
    assert_eq!(key.key, "999");
    assert_eq!(
        sts.count(|_| true),
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
