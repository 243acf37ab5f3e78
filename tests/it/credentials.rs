//! Credentials as Alibaba Cloud really hands them out, through the real worker, RabbitMQ,
//! Postgres and the stand-in's STS and metadata service: RRSA/OIDC credentials that live
//! seconds and a token file replaced mid-run, the credentials URI, the ECS instance role, and
//! the quota shared by every key of one account.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::{KEY_ID, KEY_SECRET, TestEnv};
use stopcaster::Secret;
use stopcaster_fake_live::{CallLogEntry, FakeLiveConfig, Role};

const UID: &str = "1234567890123456";
const ROLE: &str = "acs:ram::1234567890123456:role/stopcaster";
const WAIT: Duration = Duration::from_secs(90);

fn role() -> Role {
    Role::parse(ROLE).unwrap()
}

/// No static keys in the worker's environment (empty counts as unset, as in Alibaba's
/// libraries), plus `more`.
fn without_keys<'a>(more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", ""),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ""),
        // Learned from STS here, as in production without a configured UID.
        ("STOPCASTER_ACCOUNT_UID", ""),
    ];
    env.extend_from_slice(more);
    env
}

fn stop_calls(calls: &[CallLogEntry]) -> Vec<&CallLogEntry> {
    calls
        .iter()
        .filter(|c| c.action.as_deref() == Some("StopCaster"))
        .collect()
}

fn assert_no_token_refusal(calls: &[CallLogEntry]) {
    let refused: Vec<_> = calls
        .iter()
        .filter(|c| {
            c.code
                .as_deref()
                .is_some_and(|code| code.starts_with("InvalidSecurityToken"))
        })
        .collect();
    assert!(refused.is_empty(), "tokens refused: {refused:?}");
}

fn casters(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

/// RRSA: `AssumeRoleWithOIDC` with credentials that live 3 s, so a batch of 10 s spans several
/// lifetimes, and the projected token replaced half-way. No call is refused for its token.
#[tokio::test]
async fn rrsa_credentials_that_live_seconds_and_a_rotated_token_run_a_whole_batch() {
    let dir = common::temp_dir("rrsa");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "oidc-token-1").unwrap();
    let mut config = FakeLiveConfig::new(vec![(KEY_ID.into(), Secret::new(KEY_SECRET))])
        .with_account(KEY_ID, UID);
    config.qps = 10;
    config.ram_roles = vec![role()];
    config.oidc_token_file = Some(token_file.clone());
    config.sts_lifetime = Duration::from_secs(3);
    let env = TestEnv::with_fake(config).await;
    let token_path = token_file.display().to_string();
    let worker = env.spawn_worker(&without_keys(&[
        ("STOPCASTER_QPS", "10"),
        ("ALIBABA_CLOUD_ROLE_ARN", ROLE),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            "acs:ram::1234567890123456:oidc-provider/ack-rrsa",
        ),
        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", &token_path),
    ]));
    worker.wait_ready().await;
    let batch = casters("rrsa", 100);
    env.publish_jobs(&batch).await;
    common::wait_for(WAIT, || async { env.count_status("succeeded").await >= 40 })
        .await
        .expect("progress");
    // The kubelet swaps the projected token atomically; the old one stops working at once.
    let next = dir.join("token.next");
    std::fs::write(&next, "oidc-token-2").unwrap();
    std::fs::rename(&next, &token_file).unwrap();
    env.wait_terminal(100, WAIT).await;
    assert_eq!(env.count_status("succeeded").await, 100);
    let calls = env.fake.calls();
    assert_no_token_refusal(&calls);
    let keys: HashSet<_> = stop_calls(&calls)
        .iter()
        .filter_map(|c| c.access_key_id.clone())
        .collect();
    assert!(
        keys.len() >= 3 && keys.iter().all(|k| k.starts_with("STS.")),
        "temporary keys, refreshed several times: {keys:?}"
    );
    let assumed: Vec<_> = calls
        .iter()
        .filter(|c| c.action.as_deref() == Some("AssumeRoleWithOIDC"))
        .collect();
    assert!(
        assumed.iter().all(|c| c.http_status == Some(200)),
        "every exchange accepted (the new token read afresh): {assumed:?}"
    );
    // The pacer keyed on the account's UID, learned from GetCallerIdentity, not on a key.
    let keys: Vec<String> = sqlx::query_scalar("SELECT account FROM stopcaster_pacer")
        .fetch_all(&env.pool)
        .await
        .unwrap();
    assert_eq!(keys, [UID]);
    let logs = worker.logs().join("\n");
    assert!(
        !logs.contains("oidc-token-"),
        "the token never reaches a log"
    );
}

/// Two workers with different keys of one account (two RAM users): one schedule, no call
/// throttled, never more than the quota in a second.
#[tokio::test]
async fn two_keys_of_one_account_share_its_quota() {
    let mut config = FakeLiveConfig::new(vec![
        ("LTAIuserA".into(), Secret::new("secret-a")),
        ("LTAIuserB".into(), Secret::new("secret-b")),
    ])
    .with_account("LTAIuserA", UID)
    .with_account("LTAIuserB", UID);
    config.qps = 10;
    let env = TestEnv::with_fake(config).await;
    // 9 calls/s on one shared schedule stay under the account's 10 whatever the machine's
    // jitter; two schedules (one per key) would put 18 into a second.
    let worker = |id: &'static str, secret: &'static str| {
        env.spawn_worker(&[
            ("STOPCASTER_QPS", "9"),
            ("STOPCASTER_ACCOUNT_UID", ""),
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", id),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret),
        ])
    };
    let a = worker("LTAIuserA", "secret-a");
    let b = worker("LTAIuserB", "secret-b");
    a.wait_ready().await;
    b.wait_ready().await;
    env.publish_jobs(&casters("shared", 60)).await;
    env.wait_terminal(60, WAIT).await;
    assert_eq!(env.count_status("succeeded").await, 60);
    let stats = env.fake.stats();
    assert_eq!(stats.throttled, 0, "{stats:?}");
    assert!(
        stats.max_in_any_1s_window_by_account[UID] <= 10,
        "{stats:?}"
    );
    let keys: HashSet<_> = stop_calls(&env.fake.calls())
        .iter()
        .filter_map(|c| c.access_key_id.clone())
        .collect();
    assert_eq!(keys.len(), 2, "both workers called: {keys:?}");
}

/// Two workers on temporary keys from a credentials URI (new keys for each): still one
/// schedule, since both learn the same UID.
#[tokio::test]
async fn temporary_keys_from_a_credentials_uri_share_the_quota() {
    let mut config = FakeLiveConfig::new(vec![(KEY_ID.into(), Secret::new(KEY_SECRET))]);
    config.qps = 10;
    config.ram_roles = vec![role()];
    let env = TestEnv::with_fake(config).await;
    let uri = format!("{}/_fake/credentials", env.fake.endpoint());
    // As above: one schedule at 9/s never exceeds 10; two would make 18.
    let settings = without_keys(&[
        ("STOPCASTER_QPS", "9"),
        ("ALIBABA_CLOUD_CREDENTIALS_URI", &uri),
    ]);
    let a = env.spawn_worker(&settings);
    let b = env.spawn_worker(&settings);
    a.wait_ready().await;
    b.wait_ready().await;
    env.publish_jobs(&casters("uri", 50)).await;
    env.wait_terminal(50, WAIT).await;
    assert_eq!(env.count_status("succeeded").await, 50);
    let calls = env.fake.calls();
    assert_no_token_refusal(&calls);
    let stats = env.fake.stats();
    assert_eq!(stats.throttled, 0, "{stats:?}");
    let keys: HashSet<_> = stop_calls(&calls)
        .iter()
        .filter_map(|c| c.access_key_id.clone())
        .collect();
    assert!(
        keys.len() >= 2 && keys.iter().all(|k| k.starts_with("STS.")),
        "{keys:?}"
    );
}

/// On ECS, with nothing else configured: the instance's RAM role through the metadata
/// service (IMDSv2), discovered by name.
#[tokio::test]
async fn the_ecs_instance_role_runs_a_batch() {
    let mut config = FakeLiveConfig::new(vec![(KEY_ID.into(), Secret::new(KEY_SECRET))]);
    config.qps = 1000;
    config.ram_roles = vec![role()];
    let env = TestEnv::with_fake(config).await;
    let metadata = env.fake.endpoint();
    let worker = env.spawn_worker(&without_keys(&[
        ("STOPCASTER_QPS", "1000"),
        ("STOPCASTER_ECS_METADATA_ENDPOINT", &metadata),
    ]));
    worker.wait_ready().await;
    env.publish_jobs(&casters("ecs", 5)).await;
    env.wait_terminal(5, WAIT).await;
    assert_eq!(env.count_status("succeeded").await, 5);
    let calls = env.fake.calls();
    assert!(
        stop_calls(&calls).iter().all(|c| c
            .access_key_id
            .as_deref()
            .is_some_and(|k| k.starts_with("STS."))),
        "signed with the role's temporary key"
    );
    assert!(worker.logs().iter().any(|l| l.contains("ecs-ram-role")));
}
