//! `stopcaster_live`'s credentials provider against the one stand-in of STS and the ECS
//! metadata service (`fake-live`), which checks what Alibaba checks: signatures, security
//! tokens, roles, the OIDC token. The sources are chosen as the product chooses them, by
//! `chain::select` from variables and the aliyun CLI's config. What each request carries, and
//! the refresh's retries, are unit-tested in `crates/live` (`credentials::http_tests`).

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use stopcaster::Secret;
use stopcaster_fake_live::{self as fake_live, CallLogEntry, FakeLiveConfig, FakeLiveHandle, Role};
use stopcaster_live::credentials::chain::{self, CliConfigFile};
use stopcaster_live::credentials::{
    AccountKeyOrigin, CredentialsProvider, HttpClients, ProviderContext, RefreshPolicy,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;

const UID: &str = "1234567890123456";
const FIRST: &str = "acs:ram::1234567890123456:role/first";
const SECOND: &str = "acs:ram::1234567890123456:role/second";
const BASE: (&str, &str) = ("LTAIbase", "base-secret");

fn ctx(shutdown: &CancellationToken) -> ProviderContext {
    ProviderContext {
        clients: HttpClients::new(None).unwrap(),
        policy: RefreshPolicy {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
        },
        shutdown: shutdown.clone(),
    }
}

/// The stand-in with the base key in account [`UID`] and its roles [`FIRST`] and [`SECOND`].
async fn stand_in(edit: impl FnOnce(&mut FakeLiveConfig)) -> FakeLiveHandle {
    let mut config =
        FakeLiveConfig::new(vec![(BASE.0.into(), Secret::new(BASE.1))]).with_account(BASE.0, UID);
    config.ram_roles = vec![Role::parse(FIRST).unwrap(), Role::parse(SECOND).unwrap()];
    edit(&mut config);
    fake_live::spawn(config).await.expect("stand-in starts")
}

/// Starts the provider the chain selects from `vars` (and `cli`, if given).
async fn provider(
    vars: &[(&str, String)],
    cli: Option<&CliConfigFile>,
    shutdown: &CancellationToken,
) -> Result<CredentialsProvider, String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let env = move |name: &str| vars.get(name).cloned();
    let source = chain::select(&env, cli).map_err(|e| e.to_string())?;
    CredentialsProvider::start(source, ctx(shutdown))
        .await
        .map_err(|e| e.to_string())
}

fn calls_of(fake: &FakeLiveHandle, action: &str) -> Vec<CallLogEntry> {
    let calls = fake.calls();
    calls
        .into_iter()
        .filter(|c| c.action.as_deref() == Some(action))
        .collect()
}

/// RRSA: credentials that live 3 s are renewed before they expire, each time with the token
/// file's content of the moment (the stand-in refuses any other); a token it refuses is
/// reported by its code.
#[tokio::test]
async fn oidc_credentials_are_renewed_before_expiry_with_the_current_token() {
    let dir = common::temp_dir("provider-oidc");
    let (ours, theirs) = (dir.join("token"), dir.join("expected"));
    for file in [&ours, &theirs] {
        std::fs::write(file, "oidc-token-A").unwrap();
    }
    let fake = stand_in(|c| {
        c.oidc_token_file = Some(theirs.clone());
        c.sts_lifetime = Duration::from_secs(3);
    })
    .await;
    let vars = [
        (chain::ROLE_ARN, FIRST.to_owned()),
        (
            chain::OIDC_PROVIDER_ARN,
            format!("acs:ram::{UID}:oidc-provider/ack"),
        ),
        (chain::OIDC_TOKEN_FILE, ours.display().to_string()),
        (chain::ROLE_SESSION_NAME, "stopcaster-test".to_owned()),
        (chain::STS_ENDPOINT, fake.endpoint()),
    ];
    let shutdown = CancellationToken::new();
    let provider = provider(&vars, None, &shutdown).await.unwrap();
    let first = provider.current().unwrap();
    assert!(first.access_key_id().starts_with("STS."), "{first:?}");
    let expires = first.expiration().unwrap();

    for file in [&ours, &theirs] {
        std::fs::write(file, "oidc-token-B").unwrap();
    }
    common::wait_for(Duration::from_secs(10), || async {
        provider
            .current()
            .is_ok_and(|c| c.access_key_id() != first.access_key_id())
    })
    .await
    .expect("renewed credentials");
    let calls = calls_of(&fake, "AssumeRoleWithOIDC");
    assert!(
        calls.iter().all(|c| c.http_status == Some(200)),
        "{calls:?}"
    );
    let renewed = OffsetDateTime::parse(&calls[1].time, &Rfc3339).unwrap();
    assert!(
        renewed < expires,
        "renewed at {renewed}, expired at {expires}"
    );

    std::fs::write(&ours, "bad-token-C").unwrap();
    let e = provider.refresh_now().await.unwrap_err().to_string();
    assert!(e.contains("AuthenticationFail.OIDCToken.Invalid"), "{e}");
    assert!(
        e.contains("sts AssumeRoleWithOIDC") && !e.contains("bad-token-C"),
        "{e}"
    );
    shutdown.cancel();
    std::fs::remove_dir_all(&dir).ok();
}

/// The aliyun CLI's `ChainableRamRoleArn`: the base key assumes the first role and the first
/// role's temporary key (with its token) the second; the stand-in verifies both signatures and
/// the token. The account UID is then learned with the second role's key.
#[tokio::test]
async fn chained_roles_are_assumed_and_the_account_uid_learned() {
    let fake = stand_in(|_| {}).await;
    let cli = CliConfigFile {
        path: "/h/.aliyun/config.json".into(),
        text: Some(format!(
            r#"{{"current":"chain","profiles":[
              {{"name":"ram","mode":"RamRoleArn","access_key_id":"{}","access_key_secret":"{}",
               "ram_role_arn":"{FIRST}","ram_session_name":"s1","external_id":"ext-9"}},
              {{"name":"chain","mode":"ChainableRamRoleArn","source_profile":"ram",
               "ram_role_arn":"{SECOND}","policy":"{{\"Version\":\"1\"}}"}}]}}"#,
            BASE.0, BASE.1
        )),
    };
    let vars = [(chain::STS_ENDPOINT, fake.endpoint())];
    let shutdown = CancellationToken::new();
    let provider = provider(&vars, Some(&cli), &shutdown).await.unwrap();
    let current = provider.current().unwrap();
    let assumed = calls_of(&fake, "AssumeRole");
    assert_eq!(assumed.len(), 2, "{assumed:?}");
    assert!(
        assumed.iter().all(|c| c.http_status == Some(200)),
        "{assumed:?}"
    );
    assert_eq!(assumed[0].access_key_id.as_deref(), Some(BASE.0));
    let chained = assumed[1].access_key_id.as_deref().unwrap();
    assert!(chained.starts_with("STS.") && chained != current.access_key_id());

    let key = provider
        .account_key("default", None, "http://127.0.0.1:1")
        .await
        .unwrap();
    assert_eq!(
        (key.key.as_str(), key.origin),
        (UID, AccountKeyOrigin::CallerIdentity)
    );
    let asked = calls_of(&fake, "GetCallerIdentity");
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].http_status, Some(200));
    assert_eq!(
        asked[0].access_key_id.as_deref(),
        Some(current.access_key_id())
    );
    shutdown.cancel();
}

/// A wrong secret: the stand-in refuses the signature of `AssumeRole`, and the error names the
/// code and the endpoint, never a secret. Static keys learn their UID from `GetCallerIdentity`,
/// fall back to the AccessKeyId when refused, and do not ask when it is configured.
#[tokio::test]
async fn refused_keys_are_named_by_code_and_the_uid_falls_back() {
    let fake = stand_in(|_| {}).await;
    let cli = CliConfigFile {
        path: "/h/.aliyun/config.json".into(),
        text: Some(format!(
            r#"{{"current":"ram","profiles":[{{"name":"ram","mode":"RamRoleArn",
              "access_key_id":"{}","access_key_secret":"wrong-secret","ram_role_arn":"{FIRST}"}}]}}"#,
            BASE.0
        )),
    };
    let vars = [(chain::STS_ENDPOINT, fake.endpoint())];
    let shutdown = CancellationToken::new();
    let e = provider(&vars, Some(&cli), &shutdown).await.err().unwrap();
    assert!(e.contains("HTTP 400 SignatureDoesNotMatch"), "{e}");
    assert!(
        e.contains("sts AssumeRole") && e.contains(&fake.endpoint()),
        "{e}"
    );
    assert!(!e.contains("wrong-secret") && !e.contains(BASE.1), "{e}");

    let with_secret = |secret: &str| {
        vec![
            (chain::ACCESS_KEY_ID, BASE.0.to_owned()),
            (chain::ACCESS_KEY_SECRET, secret.to_owned()),
        ]
    };
    let right = provider(&with_secret(BASE.1), None, &shutdown)
        .await
        .unwrap();
    let key = right
        .account_key("default", None, &fake.endpoint())
        .await
        .unwrap();
    assert_eq!(
        (key.key.as_str(), key.origin),
        (UID, AccountKeyOrigin::CallerIdentity)
    );
    let wrong = provider(&with_secret("wrong"), None, &shutdown)
        .await
        .unwrap();
    let key = wrong
        .account_key("default", None, &fake.endpoint())
        .await
        .unwrap();
    assert_eq!(
        (key.key.as_str(), key.origin),
        (BASE.0, AccountKeyOrigin::AccessKeyId)
    );
    let asked = calls_of(&fake, "GetCallerIdentity").len();
    let key = right
        .account_key("default", Some("999"), &fake.endpoint())
        .await
        .unwrap();
    assert_eq!(key.key, "999");
    assert_eq!(calls_of(&fake, "GetCallerIdentity").len(), asked);
    shutdown.cancel();
}

/// The ECS instance role from the stand-in's metadata service (which serves only with an
/// IMDSv2 token): found when nothing else is configured, by discovery or by name; a role the
/// instance does not have is refused.
#[tokio::test]
async fn the_ecs_role_comes_from_the_metadata_service() {
    let fake = stand_in(|_| {}).await;
    let shutdown = CancellationToken::new();
    let at = (chain::ECS_METADATA_ENDPOINT, fake.endpoint());
    let found = provider(std::slice::from_ref(&at), None, &shutdown)
        .await
        .unwrap();
    assert!(found.current().unwrap().access_key_id().starts_with("STS."));
    let named = [at.clone(), (chain::ECS_METADATA, "first".to_owned())];
    let named = provider(&named, None, &shutdown).await.unwrap();
    assert!(named.current().unwrap().access_key_id().starts_with("STS."));
    let other = [at, (chain::ECS_METADATA, "other".to_owned())];
    let e = provider(&other, None, &shutdown).await.err().unwrap();
    assert!(e.contains("404"), "{e}");
    shutdown.cancel();
}

/// A credentials URI served by the stand-in: fresh temporary credentials at each fetch.
#[tokio::test]
async fn a_credentials_uri_hands_out_fresh_credentials() {
    let fake = stand_in(|_| {}).await;
    let uri = format!("{}/_fake/credentials", fake.endpoint());
    let shutdown = CancellationToken::new();
    let provider = provider(&[(chain::CREDENTIALS_URI, uri)], None, &shutdown)
        .await
        .unwrap();
    let first = provider.current().unwrap();
    assert!(first.access_key_id().starts_with("STS."));
    let again = provider.refresh_now().await.unwrap();
    assert_ne!(again.access_key_id(), first.access_key_id());
    shutdown.cancel();
}
