//! The stand-in's STS, ECS metadata service, credentials URI, per-account throttle, TLS and
//! connect delay, over real HTTP on 127.0.0.1 with real clients: our own `LiveClient` for
//! StopCaster, hand-signed requests for STS (what `alibabacloud_credentials` sends; the Python
//! library itself is driven in `tests/python_sdk.rs`).

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use stopcaster::signer;
use stopcaster::{CallOutcome, ClientConfig, LiveClient, StopCasterRequest};
use stopcaster::{CasterId, RegionId};
use stopcaster::{Credentials, Secret};
use stopcaster_fake_live::{
    self as fake_live, CallLogEntry, FakeLiveConfig, FakeLiveHandle, Role, Stats,
};

/// Two keys of account 100 (a RAM user's and the account's, say), one of account 200.
const A1: (&str, &str) = ("LTAI-a1", "secret-a1");
const A2: (&str, &str) = ("LTAI-a2", "secret-a2");
const B: (&str, &str) = ("LTAI-b", "secret-b");
const UID_A: &str = "1000000000000100";
const UID_B: &str = "1000000000000200";
const ROLE: &str = "acs:ram::1000000000000100:role/stopcaster";
const PROVIDER: &str = "acs:ram::1000000000000100:oidc-provider/ack-rrsa";

fn config() -> FakeLiveConfig {
    let mut config = FakeLiveConfig::new(
        [A1, A2, B]
            .iter()
            .map(|(id, secret)| (id.to_string(), Secret::new(*secret)))
            .collect(),
    )
    .with_account(A1.0, UID_A)
    .with_account(A2.0, UID_A)
    .with_account(B.0, UID_B);
    config.ram_roles = vec![Role::parse(ROLE).unwrap()];
    config
}

async fn start(config: FakeLiveConfig) -> FakeLiveHandle {
    fake_live::spawn(config).await.expect("stand-in starts")
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fake-sts-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn json<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> T {
    let body = response.bytes().await.unwrap();
    serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)))
}

/// An STS call, signed like `alibabacloud_credentials` signs AssumeRole (GET, every parameter
/// in the query) when `key` is given, unsigned (as AssumeRoleWithOIDC is) otherwise.
async fn sts(
    fake: &FakeLiveHandle,
    key: Option<(&str, &str, Option<&str>)>,
    action: &str,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let nonce = uuid::Uuid::new_v4().to_string();
    let timestamp = signer::format_timestamp(time::OffsetDateTime::now_utc());
    let mut params: BTreeMap<&str, &str> = BTreeMap::from([
        ("Action", action),
        ("Format", "JSON"),
        ("Version", "2015-04-01"),
        ("Timestamp", timestamp.as_str()),
    ]);
    params.extend(extra.iter().copied());
    if let Some((id, _, token)) = key {
        params.extend([
            ("AccessKeyId", id),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", nonce.as_str()),
        ]);
        if let Some(token) = token {
            params.insert("SecurityToken", token);
        }
    }
    let mut query = signer::canonical_query(params.iter().map(|(k, v)| (*k, *v)));
    if let Some((_, secret, _)) = key {
        let signature = signer::sign_string(secret, &signer::string_to_sign("GET", &query));
        query.push_str(&format!(
            "&Signature={}",
            signer::percent_encode(&signature)
        ));
    }
    let response = reqwest::get(format!("{}/?{query}", fake.endpoint()))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, json(response).await)
}

#[track_caller]
fn sts_error(answer: &(u16, Value), status: u16, code: &str) {
    let (got, body) = answer;
    assert_eq!(
        (*got, body["Code"].as_str()),
        (status, Some(code)),
        "{body}"
    );
    assert_eq!(body["HostId"], "sts.aliyuncs.com", "{body}");
    assert!(body["RequestId"].as_str().is_some_and(|r| r.len() == 36));
    assert!(body["Message"].as_str().is_some_and(|m| !m.is_empty()));
}

/// Temporary credentials from an STS answer.
#[track_caller]
fn temp_creds(answer: &(u16, Value)) -> Credentials {
    let (status, body) = answer;
    assert_eq!(*status, 200, "{body}");
    let c = &body["Credentials"];
    let id = c["AccessKeyId"].as_str().unwrap();
    assert!(id.starts_with("STS."), "{id}");
    let expiration = c["Expiration"].as_str().unwrap();
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::PrimitiveDateTime::parse(expiration, &format)
        .expect("Expiration is YYYY-MM-DDTHH:MM:SSZ");
    Credentials::new(id, c["AccessKeySecret"].as_str().unwrap())
        .with_security_token(Some(c["SecurityToken"].as_str().unwrap().to_owned()))
}

fn key_of(c: &Credentials) -> (&str, &str, Option<&str>) {
    (
        c.access_key_id(),
        c.secret().expose(),
        c.security_token().map(Secret::expose),
    )
}

async fn assume(fake: &FakeLiveHandle, key: (&str, &str), session: &str) -> Credentials {
    let answer = sts(
        fake,
        Some((key.0, key.1, None)),
        "AssumeRole",
        &[("RoleArn", ROLE), ("RoleSessionName", session)],
    )
    .await;
    temp_creds(&answer)
}

async fn stop(fake: &FakeLiveHandle, creds: &Credentials, caster: &str) -> CallOutcome {
    let client = LiveClient::new(&ClientConfig::new(fake.endpoint())).unwrap();
    let caster_id = CasterId::parse(caster).unwrap();
    let region_id = RegionId::parse("cn-shanghai").unwrap();
    client
        .stop_caster(
            creds,
            StopCasterRequest {
                caster_id: &caster_id,
                region_id: &region_id,
            },
        )
        .await
}

#[track_caller]
fn refused(outcome: &CallOutcome, status: u16, code: &str) {
    assert_eq!(
        (outcome.http_status(), outcome.error_code()),
        (Some(status), Some(code)),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn assume_role_by_a_key_of_the_roles_account_only() {
    let fake = start(config()).await;
    let (status, body) = sts(
        &fake,
        Some((A1.0, A1.1, None)),
        "AssumeRole",
        &[("RoleArn", ROLE), ("RoleSessionName", "worker-1")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["AssumedRoleUser"]["Arn"], format!("{ROLE}/worker-1"));
    assert!(
        body["AssumedRoleUser"]["AssumedRoleId"]
            .as_str()
            .is_some_and(|id| id.ends_with(":worker-1"))
    );
    let creds = temp_creds(&(status, body));
    // The other key of the same account may too.
    assume(&fake, A2, "worker-2").await;

    let other_account = sts(
        &fake,
        Some((B.0, B.1, None)),
        "AssumeRole",
        &[("RoleArn", ROLE), ("RoleSessionName", "intruder")],
    )
    .await;
    sts_error(&other_account, 403, "NoPermission");
    let unknown = sts(
        &fake,
        Some((A1.0, A1.1, None)),
        "AssumeRole",
        &[
            ("RoleArn", "acs:ram::1000000000000100:role/nope"),
            ("RoleSessionName", "s1"),
        ],
    )
    .await;
    sts_error(&unknown, 404, "EntityNotExist.Role");
    let bad_sig = sts(
        &fake,
        Some((A1.0, "wrong", None)),
        "AssumeRole",
        &[("RoleArn", ROLE), ("RoleSessionName", "s1")],
    )
    .await;
    sts_error(&bad_sig, 400, "SignatureDoesNotMatch");

    // The secret and token are nowhere in the call log.
    let log = serde_json::to_string(&fake.calls()).unwrap();
    assert!(!log.contains(creds.secret().expose()));
    assert!(!log.contains(creds.security_token().unwrap().expose()));
    let assume_calls: Vec<CallLogEntry> = fake
        .calls()
        .into_iter()
        .filter(|c| c.action.as_deref() == Some("AssumeRole"))
        .collect();
    assert_eq!(assume_calls.len(), 5);
    assert!(
        assume_calls.iter().all(|c| !c.admitted),
        "STS calls spend no quota"
    );
}

#[tokio::test]
async fn assume_role_with_oidc_reads_the_token_file_afresh() {
    let dir = temp_dir();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "eyJ.first-token.sig").unwrap();
    let mut config = config();
    config.oidc_token_file = Some(token_file.clone());
    let fake = start(config).await;
    let oidc = |token: &'static str| {
        let fake = &fake;
        async move {
            sts(
                fake,
                None,
                "AssumeRoleWithOIDC",
                &[
                    ("RoleArn", ROLE),
                    ("OIDCProviderArn", PROVIDER),
                    ("OIDCToken", token),
                    ("RoleSessionName", "pod-1"),
                    ("DurationSeconds", "3600"),
                ],
            )
            .await
        }
    };

    let creds = temp_creds(&oidc("eyJ.first-token.sig").await);
    sts_error(
        &oidc("eyJ.wrong.sig").await,
        401,
        "AuthenticationFail.OIDCToken.Invalid",
    );

    // Kubernetes rotates the projected token: the old one stops working, the new one works,
    // with no restart.
    std::fs::write(&token_file, "eyJ.second-token.sig\n").unwrap();
    sts_error(
        &oidc("eyJ.first-token.sig").await,
        401,
        "AuthenticationFail.OIDCToken.Invalid",
    );
    temp_creds(&oidc("eyJ.second-token.sig").await);

    let wrong_provider = sts(
        &fake,
        None,
        "AssumeRoleWithOIDC",
        &[
            ("RoleArn", ROLE),
            (
                "OIDCProviderArn",
                "acs:ram::1000000000000200:oidc-provider/ack-rrsa",
            ),
            ("OIDCToken", "eyJ.second-token.sig"),
            ("RoleSessionName", "pod-1"),
        ],
    )
    .await;
    sts_error(&wrong_provider, 401, "AuthenticationFail.NoPermission");

    // The OIDC session's key belongs to the role's account.
    let (status, who) = sts(&fake, Some(key_of(&creds)), "GetCallerIdentity", &[]).await;
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["AccountId"], UID_A);
    assert_eq!(
        who["Arn"],
        format!("acs:ram::{UID_A}:assumed-role/stopcaster/pod-1")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn get_caller_identity_names_the_account() {
    let fake = start(config()).await;
    let (status, me) = sts(&fake, Some((A1.0, A1.1, None)), "GetCallerIdentity", &[]).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["AccountId"], UID_A);
    assert_eq!(me["IdentityType"], "Account");
    assert_eq!(me["Arn"], format!("acs:ram::{UID_A}:root"));
    assert!(me["RequestId"].as_str().is_some_and(|r| r.len() == 36));
    let (_, b) = sts(&fake, Some((B.0, B.1, None)), "GetCallerIdentity", &[]).await;
    assert_eq!(b["AccountId"], UID_B);

    let temp = assume(&fake, A1, "who-am-i").await;
    let (status, role) = sts(&fake, Some(key_of(&temp)), "GetCallerIdentity", &[]).await;
    assert_eq!(status, 200, "{role}");
    assert_eq!(role["AccountId"], UID_A);
    assert_eq!(role["IdentityType"], "AssumedRoleUser");
    assert_eq!(
        role["Arn"],
        format!("acs:ram::{UID_A}:assumed-role/stopcaster/who-am-i")
    );
    assert!(
        role["PrincipalId"]
            .as_str()
            .is_some_and(|p| p.ends_with(":who-am-i"))
    );
    assert!(role["RoleId"].as_str().is_some());

    // A key with no account of its own configured gets a stable one.
    let mut config = FakeLiveConfig::new(vec![("LTAI-solo".into(), Secret::new("s"))]);
    config.qps = 1;
    let solo = start(config).await;
    let (_, me) = sts(
        &solo,
        Some(("LTAI-solo", "s", None)),
        "GetCallerIdentity",
        &[],
    )
    .await;
    assert_eq!(me["AccountId"], fake_live::default_account("LTAI-solo"));
}

#[tokio::test]
async fn temporary_keys_stop_studios_with_their_token_only() {
    let fake = start(config()).await;
    let temp = assume(&fake, A1, "stopper").await;
    assert!(matches!(
        stop(&fake, &temp, "temp-1").await,
        CallOutcome::Stopped { .. }
    ));
    let log = fake.calls();
    let entry = log
        .iter()
        .find(|c| c.caster_id.as_deref() == Some("temp-1"))
        .unwrap();
    assert_eq!(entry.access_key_id.as_deref(), Some(temp.access_key_id()));
    assert_eq!(entry.account_uid.as_deref(), Some(UID_A));

    let other = assume(&fake, A1, "other").await;
    let swapped = Credentials::new(temp.access_key_id(), temp.secret().expose())
        .with_security_token(other.security_token().map(|t| t.expose().to_owned()));
    refused(
        &stop(&fake, &swapped, "temp-2").await,
        400,
        "InvalidSecurityToken.MismatchWithAccessKey",
    );
    let garbage = Credentials::new(temp.access_key_id(), temp.secret().expose())
        .with_security_token(Some("not-a-token".into()));
    refused(
        &stop(&fake, &garbage, "temp-2").await,
        400,
        "InvalidSecurityToken.Malformed",
    );
    let tokenless = Credentials::new(temp.access_key_id(), temp.secret().expose());
    refused(
        &stop(&fake, &tokenless, "temp-2").await,
        400,
        "MissingSecurityToken",
    );
    let wrong_secret = Credentials::new(temp.access_key_id(), "wrong")
        .with_security_token(temp.security_token().map(|t| t.expose().to_owned()));
    refused(
        &stop(&fake, &wrong_secret, "temp-2").await,
        400,
        "SignatureDoesNotMatch",
    );
    assert_eq!(
        fake.caster("temp-2"),
        None,
        "no refused call touched the studio"
    );
}

#[tokio::test]
async fn temporary_keys_expire() {
    let mut config = config();
    config.sts_lifetime = Duration::from_secs(1);
    // The polling below must never meet the throttle instead.
    config.qps = 1000;
    let fake = start(config).await;
    let issued_at = Instant::now();
    let answer = sts(
        &fake,
        Some((A1.0, A1.1, None)),
        "AssumeRole",
        &[("RoleArn", ROLE), ("RoleSessionName", "brief")],
    )
    .await;
    let temp = temp_creds(&answer);
    // Accepted until it expires (this first call may already be late on a starved machine,
    // so only its being refused for expiry is allowed).
    let first = stop(&fake, &temp, "brief-0").await;
    assert!(
        matches!(first, CallOutcome::Stopped { .. })
            || first.error_code() == Some("InvalidSecurityToken.Expired"),
        "{first:?}"
    );
    // Then refused as expired, for good: poll until the server says so.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    let expired = loop {
        n += 1;
        let outcome = stop(&fake, &temp, &format!("brief-{n}")).await;
        if outcome.error_code() == Some("InvalidSecurityToken.Expired") {
            break outcome;
        }
        assert!(
            matches!(outcome, CallOutcome::Stopped { .. }),
            "{outcome:?}"
        );
        assert!(Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    refused(&expired, 400, "InvalidSecurityToken.Expired");
    assert!(issued_at.elapsed() >= Duration::from_millis(900));
    let (status, body) = sts(&fake, Some(key_of(&temp)), "GetCallerIdentity", &[]).await;
    sts_error(&(status, body), 400, "InvalidSecurityToken.Expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_throttle_is_per_account() {
    let mut config = config();
    config.qps = 3;
    let fake = start(config).await;
    let temp = assume(&fake, A1, "shares-the-quota").await;
    let keys = [
        Credentials::new(A1.0, A1.1),
        Credentials::new(A2.0, A2.1),
        temp.clone(),
    ];
    // Six calls from each key of account A at once, and three from account B's key.
    let mut calls = Vec::new();
    for (k, creds) in keys.iter().enumerate() {
        for i in 0..6 {
            let (fake_endpoint, creds) = (fake.endpoint(), creds.clone());
            calls.push(tokio::spawn(async move {
                let client = LiveClient::new(&ClientConfig::new(fake_endpoint)).unwrap();
                let caster_id = CasterId::parse(&format!("a{k}-{i}")).unwrap();
                let region_id = RegionId::parse("cn-shanghai").unwrap();
                let request = StopCasterRequest {
                    caster_id: &caster_id,
                    region_id: &region_id,
                };
                client.stop_caster(&creds, request).await
            }));
        }
    }
    let b = Credentials::new(B.0, B.1);
    let b_calls: Vec<_> = (0..3)
        .map(|i| {
            let (endpoint, b) = (fake.endpoint(), b.clone());
            tokio::spawn(async move {
                let client = LiveClient::new(&ClientConfig::new(endpoint)).unwrap();
                let caster_id = CasterId::parse(&format!("b-{i}")).unwrap();
                let region_id = RegionId::parse("cn-shanghai").unwrap();
                let request = StopCasterRequest {
                    caster_id: &caster_id,
                    region_id: &region_id,
                };
                client.stop_caster(&b, request).await
            })
        })
        .collect();
    let mut a_outcomes = Vec::new();
    for call in calls {
        a_outcomes.push(call.await.unwrap());
    }
    for call in b_calls {
        let outcome = call.await.unwrap();
        assert!(
            matches!(outcome, CallOutcome::Stopped { .. }),
            "account B has its own window: {outcome:?}"
        );
    }
    let throttled = a_outcomes.iter().filter(|o| o.is_throttled()).count();
    let stopped = a_outcomes
        .iter()
        .filter(|o| matches!(o, CallOutcome::Stopped { .. }))
        .count();
    assert_eq!(throttled + stopped, 18, "{a_outcomes:?}");
    assert!(throttled >= 1, "18 calls of one account, none throttled");

    let stats: Stats = json(
        reqwest::get(format!("{}/_fake/stats", fake.endpoint()))
            .await
            .unwrap(),
    )
    .await;
    // The promise: the account's keys together never exceed qps in any sliding second, while
    // a per-key throttle would have let each key have 3.
    assert_eq!(stats.max_in_any_1s_window_by_account.get(UID_A), Some(&3));
    assert_eq!(
        stats.admitted_by_account.get(UID_A),
        Some(&(stopped as u64))
    );
    assert_eq!(stats.admitted_by_account.get(UID_B), Some(&3));
    assert!(
        fake.calls()
            .iter()
            .filter(|c| c.code.as_deref() == Some("Throttling.User"))
            .all(|c| c.account_uid.as_deref() == Some(UID_A))
    );
}

#[tokio::test]
async fn ecs_metadata_hands_out_the_first_roles_credentials_with_an_imdsv2_token() {
    let fake = start(config()).await;
    let http = reqwest::Client::new();
    let base = format!("{}/latest", fake.endpoint());
    let put_token = |ttl: &str| {
        http.put(format!("{base}/api/token"))
            .header("X-aliyun-ecs-metadata-token-ttl-seconds", ttl)
            .send()
    };
    assert_eq!(put_token("0").await.unwrap().status(), 400);
    assert_eq!(put_token("21601").await.unwrap().status(), 400);
    let token = put_token("21600").await.unwrap();
    assert_eq!(token.status(), 200);
    let token = token.text().await.unwrap();
    assert!(token.len() >= 32);

    let list = format!("{base}/meta-data/ram/security-credentials/");
    // Hardened mode: no token is refused, a wrong one too.
    assert_eq!(http.get(&list).send().await.unwrap().status(), 403);
    let wrong = http
        .get(&list)
        .header("X-aliyun-ecs-metadata-token", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let get = |url: String| {
        http.get(url)
            .header("X-aliyun-ecs-metadata-token", token.as_str())
            .send()
    };
    let name = get(list.clone()).await.unwrap();
    assert_eq!(name.status(), 200);
    assert_eq!(name.text().await.unwrap(), "stopcaster");
    assert_eq!(get(format!("{list}other")).await.unwrap().status(), 404);
    let creds = get(format!("{list}stopcaster")).await.unwrap();
    assert_eq!(creds.status(), 200);
    let body: Value = json(creds).await;
    assert_eq!(body["Code"], "Success");
    for field in [
        "AccessKeyId",
        "AccessKeySecret",
        "SecurityToken",
        "Expiration",
        "LastUpdated",
    ] {
        assert!(
            body[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}: {body}"
        );
    }
    let again: Value = json(get(format!("{list}stopcaster")).await.unwrap()).await;
    assert_eq!(
        again["AccessKeyId"], body["AccessKeyId"],
        "cached until half-life"
    );

    let temp = temp_creds(&(200, serde_json::json!({ "Credentials": body })));
    assert!(matches!(
        stop(&fake, &temp, "ecs-1").await,
        CallOutcome::Stopped { .. }
    ));
    let (_, who) = sts(&fake, Some(key_of(&temp)), "GetCallerIdentity", &[]).await;
    assert_eq!(
        who["Arn"],
        format!("acs:ram::{UID_A}:assumed-role/stopcaster/fake-live-ecs")
    );

    // Without a role there is nothing to hand out.
    let bare = start(FakeLiveConfig::new(vec![(A1.0.into(), Secret::new(A1.1))])).await;
    let token = http
        .put(format!("{}/latest/api/token", bare.endpoint()))
        .header("X-aliyun-ecs-metadata-token-ttl-seconds", "60")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let none = http
        .get(format!(
            "{}/latest/meta-data/ram/security-credentials/",
            bare.endpoint()
        ))
        .header("X-aliyun-ecs-metadata-token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404);
}

#[tokio::test]
async fn the_credentials_uri_issues_fresh_temporary_credentials() {
    let fake = start(config()).await;
    let url = format!("{}/_fake/credentials", fake.endpoint());
    let first: Value = json(reqwest::get(&url).await.unwrap()).await;
    let second: Value = json(reqwest::get(&url).await.unwrap()).await;
    assert_eq!(first["Code"], "Success");
    assert_ne!(first["AccessKeyId"], second["AccessKeyId"]);
    let temp = temp_creds(&(200, serde_json::json!({ "Credentials": first })));
    assert!(matches!(
        stop(&fake, &temp, "uri-1").await,
        CallOutcome::Stopped { .. }
    ));
    let (_, who) = sts(&fake, Some(key_of(&temp)), "GetCallerIdentity", &[]).await;
    assert_eq!(who["AccountId"], UID_A);

    let bare = start(FakeLiveConfig::new(vec![(A1.0.into(), Secret::new(A1.1))])).await;
    let none = reqwest::get(format!("{}/_fake/credentials", bare.endpoint()))
        .await
        .unwrap();
    assert_eq!(none.status(), 404);
}

#[tokio::test]
async fn serves_https_with_the_configured_certificate() {
    let dir = temp_dir();
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
