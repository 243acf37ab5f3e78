//! The official Alibaba Cloud Python SDKs against the stand-in: if Alibaba's own client code can
//! stop a studio through it and makes sense of its errors, the stand-in speaks the protocol and
//! not merely our client's reading of it.
//!
//! The SDKs live in a virtualenv: `$STOPCASTER_VENV`, else `.venv` at the repository root
//! (`.ci/run` creates it). Without it these tests fail: a silent skip would hide that the
//! stand-in was never checked against Alibaba's code.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value;
use stopcaster::Secret;
use stopcaster::fake_live::{self, CallLogEntry, FakeLiveConfig, FakeLiveHandle, StudioState};

const KEY: &str = "LTAI5tSdkTestKey";
const SECRET: &str = "sdk-test-secret";

fn python() -> PathBuf {
    let venv = std::env::var_os("STOPCASTER_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let python = venv.join("bin").join("python");
    assert!(
        python.exists(),
        "no Python virtualenv with the Alibaba Cloud SDKs at {} (set STOPCASTER_VENV, or create it: \
         python3 -m venv .venv && .venv/bin/pip install aliyun-python-sdk-core \
         aliyun-python-sdk-live alibabacloud-live20161101)",
        venv.display()
    );
    python
}

async fn start() -> FakeLiveHandle {
    let mut config = FakeLiveConfig::new(vec![(KEY.to_owned(), Secret::new(SECRET))]);
    config.casters = Some(HashMap::from([
        ("studio-running".to_owned(), StudioState::Running),
        ("studio-get".to_owned(), StudioState::Running),
        ("studio-untouched".to_owned(), StudioState::Running),
    ]));
    fake_live::spawn(config).await.unwrap()
}

/// Runs `tests/sdk/stop_caster.py` and returns its per-call results.
async fn sdk(fake: &FakeLiveHandle, args: &[&str]) -> Vec<Value> {
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
fn refused(result: &Value, status: u64, code: &str) {
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["code"], code, "{result}");
    assert_eq!(result["http_status"].as_u64(), Some(status), "{result}");
    assert!(
        result["request_id"].as_str().is_some_and(|r| r.len() == 36),
        "{result}"
    );
}

/// The three answers every SDK must read the same way: a stop, a second stop, a missing studio.
async fn stop_stop_missing(fake: &FakeLiveHandle, sdk_args: &[&str]) {
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
