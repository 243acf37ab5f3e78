//! `STOPCASTER_SIGNATURE_VERSION=v3`: the worker and `stop` sign with `ACS3-HMAC-SHA256`, on
//! permanent and on temporary (STS) credentials, and the stand-in, which verifies both
//! signatures, accepts them, and so it does the official SDK with its default settings.

use std::time::Duration;

use serde_json::Value;
use stopcaster_fake_live::StudioState;

use crate::common::{self, KEY_ID, KEY_SECRET, TestEnv};
use crate::python_sdk::{KEY, SECRET, refused, sdk, start, stop_stop_missing};
use crate::token_scrub::{all_rows, forms, leaks, temporary_key};

// Two threads: `stop` runs as a blocking child process while the stand-in answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_and_stop_sign_v3() {
    let env = TestEnv::with_running(&["v3-0", "v3-1", "v3-2", "v3-stop", "v1-stop"]).await;
    let v3 = [("STOPCASTER_SIGNATURE_VERSION", "v3")];
    let mut worker = env.spawn_worker(&[v3[0], common::FAST[0], common::FAST[1]]);
    let casters: Vec<String> = (0..3).map(|i| format!("v3-{i}")).collect();
    env.publish_jobs(&casters).await;
    env.wait_terminal(3, Duration::from_secs(30)).await;
    assert_eq!(env.count_status("succeeded").await, 3);
    worker.signal("TERM");
    worker.wait_exit(Duration::from_secs(30)).await;
    let out = env.run_cli(&["stop", "v3-stop"], &v3);
    assert!(out.status.success(), "{}", common::stderr(&out));
    // An unknown version is refused before any call.
    let bad = env.run_cli(
        &["stop", "v3-stop"],
        &[("STOPCASTER_SIGNATURE_VERSION", "v4")],
    );
    assert!(!bad.status.success());
    assert!(
        common::stderr(&bad).contains("signature version"),
        "{}",
        common::stderr(&bad)
    );
    let calls = env.fake.calls();
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert!(
        calls.iter().all(|c| c.http_status == Some(200)),
        "{calls:?}"
    );
    // Signed with V3, as the stand-in saw them; without the setting, the RPC signature.
    assert!(calls.iter().all(|c| c.signature == "v3"), "{calls:?}");
    let v1 = env.run_cli(&["stop", "v1-stop"], &[]);
    assert!(v1.status.success(), "{}", common::stderr(&v1));
    let calls = env.fake.calls();
    assert_eq!(calls.last().map(|c| c.signature.as_str()), Some("v1"));
}

/// A worker on temporary credentials signing V3: the token travels in `x-acs-security-token`
/// (the stand-in accepts an `STS.` key only with its token, read from there in a V3 request),
/// every call succeeds, and the token is in no log line (at `trace`) and no row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_on_sts_credentials_signs_v3_and_never_shows_the_token() {
    let mut config = stopcaster_fake_live::FakeLiveConfig::new(vec![(
        KEY_ID.into(),
        stopcaster::Secret::new(KEY_SECRET),
    )]);
    config.qps = 1000;
    config.ram_roles =
        vec![stopcaster_fake_live::Role::parse("acs:ram::1234567890123456:role/v3").unwrap()];
    let env = TestEnv::with_fake(config).await;
    let (key_id, secret, token) = temporary_key(&env).await;
    assert!(key_id.starts_with("STS."), "{key_id}");
    let mut worker = env.spawn_worker(&[
        ("STOPCASTER_SIGNATURE_VERSION", "v3"),
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", &key_id),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", &secret),
        ("ALIBABA_CLOUD_SECURITY_TOKEN", &token),
        ("STOPCASTER_QPS", "1000"),
        ("RUST_LOG", "trace"),
    ]);
    let casters: Vec<String> = (0..5).map(|i| format!("sts-v3-{i}")).collect();
    env.publish_jobs(&casters).await;
    env.wait_terminal(5, Duration::from_secs(30)).await;
    assert_eq!(env.count_status("succeeded").await, 5);
    worker.signal("TERM");
    worker.wait_exit(Duration::from_secs(30)).await;
    let calls = env.fake.calls();
    let stops: Vec<_> = calls
        .iter()
        .filter(|c| c.action.as_deref() == Some("StopCaster"))
        .collect();
    assert_eq!(stops.len(), 5, "{calls:?}");
    assert!(
        stops.iter().all(|c| c.signature == "v3"
            && c.http_status == Some(200)
            && c.access_key_id.as_deref() == Some(key_id.as_str())),
        "{stops:?}"
    );
    let logs = worker.logs();
    let rows = all_rows(&env).await;
    assert!(rows.iter().any(|(t, _)| t == "caster_stop_attempts"));
    let mut found = leaks(
        &forms(&token),
        logs.iter().map(|l| ("log".to_owned(), l.as_str())),
    );
    found.extend(leaks(
        &forms(&token),
        rows.iter().map(|(t, r)| (t.clone(), r.as_str())),
    ));
    assert!(found.is_empty(), "the token leaked:\n{}", found.join("\n"));
}

/// `alibabacloud-live20161101` as it ships signs with V3 (`ACS3-HMAC-SHA256`): the stand-in
/// verifies it, a wrong secret is refused, and so is a V3 request altered after signing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tea_sdk_with_default_settings_signs_v3() {
    let fake = start().await;
    stop_stop_missing(&fake, &["--sdk", "tea-default"]).await;
    let wrong = sdk(
        &fake,
        &[
            "--sdk",
            "tea-default",
            "--secret",
            "wrong-secret",
            "--caster",
            "studio-untouched",
        ],
    )
    .await;
    refused(&wrong[0], 400, "SignatureDoesNotMatch");
    assert_eq!(fake.caster("studio-untouched"), Some(StudioState::Running));

    // Our own V3 request, then its CasterId changed on the way.
    let caster = stopcaster::CasterId::parse("studio-get").unwrap();
    let region = stopcaster::RegionId::parse("cn-shanghai").unwrap();
    let endpoint = fake.endpoint();
    let host = endpoint.trim_start_matches("http://");
    let timestamp = stopcaster_live::signer::format_timestamp(time::OffsetDateTime::now_utc());
    let signed = stopcaster_live::signing::sign_request(
        stopcaster_live::SignatureVersion::V3,
        &stopcaster::Credentials::new(KEY, SECRET),
        stopcaster::StopCasterRequest {
            caster_id: &caster,
            region_id: &region,
        },
        stopcaster_live::signing::Envelope {
            method: "POST",
            host,
            nonce: &uuid::Uuid::new_v4().to_string(),
            timestamp: &timestamp,
        },
    );
    let tampered = signed.query.replace("studio-get", "studio-untouched");
    let mut post = reqwest::Client::new().post(format!("{endpoint}/?{tampered}"));
    for (name, value) in &signed.headers {
        post = post.header(*name, value);
    }
    let answer = post.send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    let body: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    assert_eq!(body["Code"], "SignatureDoesNotMatch", "{body}");
    assert_eq!(fake.caster("studio-untouched"), Some(StudioState::Running));
    assert_eq!(fake.caster("studio-get"), Some(StudioState::Running));
}
