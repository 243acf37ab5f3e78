//! The official Alibaba Cloud Python SDKs against the stand-in: if Alibaba's own client code can
//! stop a studio through it and makes sense of its errors, the stand-in speaks the protocol and
//! not merely our client's reading of it.
//!
//! The SDKs live in a virtualenv: `$STOPCASTER_VENV`, else `.venv` at the repository root
//! (`.ci/run` creates it). Without it these tests fail: a silent skip would hide that the
//! stand-in was never checked against Alibaba's code.

use crate::common;

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value;
use stopcaster::Secret;
use stopcaster_fake_live::{
    self as fake_live, CallLogEntry, FakeLiveConfig, FakeLiveHandle, StudioState,
};

pub(crate) const KEY: &str = "LTAI5tSdkTestKey";
pub(crate) const SECRET: &str = "sdk-test-secret";

fn python() -> PathBuf {
    let venv = std::env::var_os("STOPCASTER_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let python = venv.join("bin").join("python");
    assert!(
        python.exists(),
        "no Python virtualenv with the Alibaba Cloud SDKs at {} (set STOPCASTER_VENV, or create it: \
         python3 -m venv .venv && .venv/bin/pip install aliyun-python-sdk-core \
         aliyun-python-sdk-live alibabacloud-live20161101 alibabacloud-credentials \
         alibabacloud-sts20150401)",
        venv.display()
    );
    python
}

pub(crate) async fn start() -> FakeLiveHandle {
    let mut config = FakeLiveConfig::new(vec![(KEY.to_owned(), Secret::new(SECRET))]);
    config.casters = Some(HashMap::from([
        ("studio-running".to_owned(), StudioState::Running),
        ("studio-get".to_owned(), StudioState::Running),
        ("studio-untouched".to_owned(), StudioState::Running),
    ]));
    fake_live::spawn(config).await.unwrap()
}

/// Runs `tests/sdk/stop_caster.py` and returns its per-call results.
pub(crate) async fn sdk(fake: &FakeLiveHandle, args: &[&str]) -> Vec<Value> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/stop_caster.py");
    let output = tokio::process::Command::new(python())
        .arg(script)
        .args(["--endpoint", &fake.endpoint(), "--key", KEY])
        .args(args)
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stop_caster.py {args:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn log_for(fake: &FakeLiveHandle, caster: &str) -> Vec<CallLogEntry> {
    fake.calls()
        .into_iter()
        .filter(|c| c.caster_id.as_deref() == Some(caster))
        .collect()
}

#[track_caller]
pub(crate) fn refused(result: &Value, status: u64, code: &str) {
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["code"], code, "{result}");
    assert_eq!(result["http_status"].as_u64(), Some(status), "{result}");
    assert!(
        result["request_id"].as_str().is_some_and(|r| r.len() == 36),
        "{result}"
    );
}

/// The three answers every SDK must read the same way: a stop, a second stop, a missing studio.
pub(crate) async fn stop_stop_missing(fake: &FakeLiveHandle, sdk_args: &[&str]) {
    let mut args = sdk_args.to_vec();
    args.extend([
        "--secret",
        SECRET,
        "--caster",
        "studio-running",
        "--caster",
        "studio-running",
        "--caster",
        "no-such-studio",
    ]);
    let results = sdk(fake, &args).await;
    assert_eq!(results.len(), 3, "{results:?}");

    assert_eq!(results[0]["ok"], true, "{}", results[0]);
    let log = log_for(fake, "studio-running");
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(results[0]["request_id"], log[0].request_id.as_str());
    assert_eq!(log[0].http_status, Some(200));
    assert_eq!(fake.caster("studio-running"), Some(StudioState::Stopped));

    refused(&results[1], 400, "IncorrectSceneStatus");
    assert_eq!(results[1]["request_id"], log[1].request_id.as_str());
    refused(&results[2], 404, "InvalidCaster.NotFound");
    assert_eq!(
        results[2]["message"],
        "The specified caster does not exist."
    );

    let nonces: std::collections::HashSet<_> = fake.calls().into_iter().map(|c| c.nonce).collect();
    assert_eq!(nonces.len(), 3, "every SDK call signs afresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliyunsdkcore_stops_and_reads_every_answer() {
    let fake = start().await;
    stop_stop_missing(&fake, &["--sdk", "core"]).await;
    assert!(fake.calls().iter().all(|c| c.method == "POST"));

    let get = sdk(
        &fake,
        &[
            "--sdk",
            "core",
            "--method",
            "GET",
            "--secret",
            SECRET,
            "--caster",
            "studio-get",
        ],
    )
    .await;
    assert_eq!(get[0]["ok"], true, "{}", get[0]);
    assert_eq!(log_for(&fake, "studio-get")[0].method, "GET");

    // A wrong secret: the stand-in answers SignatureDoesNotMatch with its string to sign, and
    // aliyunsdkcore, finding that string equal to its own, reports the secret as wrong. It can
    // only do so if our canonicalisation matches Alibaba's byte for byte.
    let wrong = sdk(
        &fake,
        &[
            "--sdk",
            "core",
            "--secret",
            "wrong-secret",
            "--caster",
            "studio-untouched",
        ],
    )
    .await;
    refused(&wrong[0], 400, "InvalidAccessKeySecret");
    let log = log_for(&fake, "studio-untouched");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].code.as_deref(), Some("SignatureDoesNotMatch"));
    assert_eq!(wrong[0]["request_id"], log[0].request_id.as_str());
    assert_eq!(fake.caster("studio-untouched"), Some(StudioState::Running));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tea_sdk_stops_and_reads_every_answer() {
    let fake = start().await;
    stop_stop_missing(&fake, &["--sdk", "tea"]).await;

    let wrong = sdk(
        &fake,
        &[
            "--sdk",
            "tea",
            "--secret",
            "wrong-secret",
            "--caster",
            "studio-untouched",
        ],
    )
    .await;
    refused(&wrong[0], 400, "SignatureDoesNotMatch");
    let message = wrong[0]["message"].as_str().unwrap();
    let (_, server_sts) = message.split_once("server string to sign is:").unwrap();
    assert!(
        server_sts.starts_with("POST&%2F&AccessKeyId%3DLTAI5tSdkTestKey%26Action%3DStopCaster")
    );
    assert_eq!(fake.caster("studio-untouched"), Some(StudioState::Running));
    assert!(fake.calls().iter().all(|c| c.method == "POST"));
}

// --- Temporary credentials through alibabacloud_credentials (tests/sdk/credentials.py) -------

const UID: &str = "1000000000000777";
const ROLE_ARN: &str = "acs:ram::1000000000000777:role/stopcaster-sdk";
const OIDC_PROVIDER_ARN: &str = "acs:ram::1000000000000777:oidc-provider/ack-rrsa";
const OIDC_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJl";

/// A stand-in with a key of account UID, a role of that account and an OIDC token file.
async fn start_sts(
    dir: &std::path::Path,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> FakeLiveHandle {
    let token_file = dir.join("oidc-token");
    std::fs::write(&token_file, OIDC_TOKEN).unwrap();
    let mut config =
        FakeLiveConfig::new(vec![(KEY.to_owned(), Secret::new(SECRET))]).with_account(KEY, UID);
    config.ram_roles = vec![fake_live::Role::parse(ROLE_ARN).unwrap()];
    config.oidc_token_file = Some(token_file);
    config.tls = tls;
    fake_live::spawn(config).await.unwrap()
}

/// Runs `tests/sdk/credentials.py`; its output, whether it succeeded or not.
async fn credentials_script(
    fake: &FakeLiveHandle,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/credentials.py");
    tokio::process::Command::new(python())
        .arg(script)
        .args(["--endpoint", &fake.endpoint()])
        .args(args)
        .envs(env.iter().copied())
        // The library reads these too: a developer's own settings must not leak in.
        .env_remove("ALIBABA_CLOUD_ROLE_ARN")
        .env_remove("ALIBABA_CLOUD_OIDC_PROVIDER_ARN")
        .env_remove("ALIBABA_CLOUD_OIDC_TOKEN_FILE")
        .env_remove("ALIBABA_CLOUD_ECS_METADATA")
        .output()
        .await
        .expect("python runs")
}

async fn credentials(fake: &FakeLiveHandle, args: &[&str], env: &[(&str, &str)]) -> Value {
    let output = credentials_script(fake, args, env).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "credentials.py {args:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The library's credentials are the stand-in's temporary key of the role: GetCallerIdentity
/// through alibabacloud_sts20150401 names the role session, and aliyunsdkcore stopped the
/// studio with that key and its SecurityToken.
#[track_caller]
fn used_temporary_key(fake: &FakeLiveHandle, result: &Value, session: &str, caster: &str) {
    let key = result["access_key_id"].as_str().unwrap();
    assert!(key.starts_with("STS."), "{result}");
    assert_eq!(result["has_token"], true, "{result}");
    let identity = &result["identity"];
    assert_eq!(identity["AccountId"], UID, "{result}");
    assert_eq!(identity["IdentityType"], "AssumedRoleUser", "{result}");
    assert_eq!(
        identity["Arn"],
        format!("acs:ram::{UID}:assumed-role/stopcaster-sdk/{session}"),
        "{result}"
    );
    assert_eq!(result["stop"]["ok"], true, "{result}");
    let log = log_for(fake, caster);
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].access_key_id.as_deref(), Some(key));
    assert_eq!(log[0].account_uid.as_deref(), Some(UID));
    assert_eq!(result["stop"]["request_id"], log[0].request_id.as_str());
    let who = fake
        .calls()
        .into_iter()
        .find(|c| c.action.as_deref() == Some("GetCallerIdentity"))
        .expect("GetCallerIdentity reached the stand-in");
    assert_eq!(who.access_key_id.as_deref(), Some(key));
    assert_eq!(who.http_status, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_oidc_provider_assumes_the_role_with_the_token_file() {
    let dir = common::temp_dir("fake-sts-sdk");
    let fake = start_sts(&dir, None).await;
    let token_file = dir.join("oidc-token");
    let token_file = token_file.to_str().unwrap();
    let args = [
        "--provider",
        "oidc",
        "--role-arn",
        ROLE_ARN,
        "--oidc-provider-arn",
        OIDC_PROVIDER_ARN,
        "--oidc-token-file",
        token_file,
        "--session",
        "rrsa-pod",
        "--caster",
        "oidc-studio",
    ];
    let result = credentials(&fake, &args, &[]).await;
    used_temporary_key(&fake, &result, "rrsa-pod", "oidc-studio");
    let oidc: Vec<_> = fake
        .calls()
        .into_iter()
        .filter(|c| c.action.as_deref() == Some("AssumeRoleWithOIDC"))
        .collect();
    assert_eq!(oidc.len(), 1);
    assert_eq!(
        (oidc[0].http_status, oidc[0].access_key_id.as_deref()),
        (Some(200), None)
    );

    // A token the stand-in does not accept (the pod's file differs from the stand-in's): the
    // library reports STS's refusal.
    let wrong_file = dir.join("wrong-token");
    std::fs::write(&wrong_file, "eyJ.not-the-token.sig").unwrap();
    let mut wrong_args = args;
    wrong_args[7] = wrong_file.to_str().unwrap();
    let refused = credentials_script(&fake, &wrong_args, &[]).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("AuthenticationFail.OIDCToken.Invalid"),
        "{stderr}"
    );
    assert!(stderr.contains("401"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_ram_role_arn_provider_assumes_the_role_with_a_key() {
    let dir = common::temp_dir("fake-sts-sdk");
    let fake = start_sts(&dir, None).await;
    let mut args = vec![
        "--provider",
        "ram_role_arn",
        "--key",
        KEY,
        "--secret",
        SECRET,
        "--role-arn",
        ROLE_ARN,
        "--session",
        "ram-role-arn",
        "--caster",
        "arn-studio",
    ];
    let result = credentials(&fake, &args, &[]).await;
    used_temporary_key(&fake, &result, "ram-role-arn", "arn-studio");
    let assume: Vec<_> = fake
        .calls()
        .into_iter()
        .filter(|c| c.action.as_deref() == Some("AssumeRole"))
        .collect();
    assert_eq!(assume.len(), 1);
    assert_eq!(assume[0].access_key_id.as_deref(), Some(KEY));
    assert_eq!(
        assume[0].method, "GET",
        "the library signs AssumeRole as a GET"
    );

    // A wrong secret: the library reports the signature refused.
    args[5] = "wrong-secret";
    args[11] = "arn-studio-2";
    let refused = credentials_script(&fake, &args, &[]).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("SignatureDoesNotMatch"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_uri_provider_reads_the_fake_credentials_endpoint() {
    let dir = common::temp_dir("fake-sts-sdk");
    let fake = start_sts(&dir, None).await;
    let result = credentials(&fake, &["--provider", "uri", "--caster", "uri-studio"], &[]).await;
    used_temporary_key(&fake, &result, "fake-live-uri", "uri-studio");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_ram_role_provider_uses_the_metadata_service_with_imdsv2() {
    let dir = common::temp_dir("fake-sts-sdk");
    let fake = start_sts(&dir, None).await;
    let result = credentials(&fake, &["--provider", "ecs", "--caster", "ecs-studio"], &[]).await;
    used_temporary_key(&fake, &result, "fake-live-ecs", "ecs-studio");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_sdk_get_caller_identity_with_a_permanent_key() {
    let dir = common::temp_dir("fake-sts-sdk");
    let fake = start_sts(&dir, None).await;
    let result = credentials(
        &fake,
        &["--provider", "access_key", "--key", KEY, "--secret", SECRET],
        &[],
    )
    .await;
    assert_eq!(result["access_key_id"], KEY);
    assert_eq!(result["identity"]["AccountId"], UID, "{result}");
    assert_eq!(result["identity"]["IdentityType"], "Account", "{result}");
    assert_eq!(
        result["identity"]["Arn"],
        format!("acs:ram::{UID}:root"),
        "{result}"
    );
    let who = fake.calls();
    assert_eq!(who.len(), 1);
    assert_eq!(who[0].action.as_deref(), Some("GetCallerIdentity"));
    assert_eq!(who[0].method, "POST");
    assert_eq!(result["identity"]["RequestId"], who[0].request_id.as_str());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Over TLS the library keeps its own `https` towards STS, unmodified: it only has to trust
/// the test CA (OpenSSL's SSL_CERT_FILE, which Python's default context loads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_ram_role_arn_provider_over_https() {
    let dir = common::temp_dir("fake-sts-sdk");
    let (ca, cert, key) = common::pki::test_pki(&dir);
    let tls = fake_live::tls_config(&cert, &key).unwrap();
    let fake = start_sts(&dir, Some(tls)).await;
    let sts_endpoint = fake.addr.to_string();
    let ca = ca.to_str().unwrap();
    let result = credentials(
        &fake,
        &[
            "--provider",
            "ram_role_arn",
            "--key",
            KEY,
            "--secret",
            SECRET,
            "--role-arn",
            ROLE_ARN,
            "--sts-endpoint",
            &sts_endpoint,
            "--credentials-only",
        ],
        &[("SSL_CERT_FILE", ca), ("REQUESTS_CA_BUNDLE", ca)],
    )
    .await;
    assert!(
        result["access_key_id"]
            .as_str()
            .is_some_and(|k| k.starts_with("STS.")),
        "{result}"
    );
    let assume = fake.calls();
    assert_eq!(assume.len(), 1, "{assume:?}");
    assert_eq!(assume[0].action.as_deref(), Some("AssumeRole"));
    assert_eq!(assume[0].http_status, Some(200));

    // Without the CA the library refuses the stand-in's certificate.
    let untrusted = credentials_script(
        &fake,
        &[
            "--provider",
            "ram_role_arn",
            "--key",
            KEY,
            "--secret",
            SECRET,
            "--role-arn",
            ROLE_ARN,
            "--sts-endpoint",
            &sts_endpoint,
            "--credentials-only",
        ],
        &[],
    )
    .await;
    assert!(!untrusted.status.success());
    assert_eq!(
        fake.calls().len(),
        1,
        "no request got through without trust"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
