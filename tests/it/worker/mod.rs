//! The worker binary against the real RabbitMQ and Postgres and the stand-in: outcomes, retries,
//! dead letters, malformed messages, idempotency, crashes, shutdown, and secrecy.

mod accounts;
mod lifecycle;
mod messages;
mod outcomes;

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use common::{FAST, KEY_SECRET, TestEnv};
use stopcaster::Secret;
use stopcaster_fake_live::{FakeLiveConfig, Fault, StudioState};

async fn fast_env() -> TestEnv {
    let mut config = FakeLiveConfig::new(vec![(common::KEY_ID.into(), Secret::new(KEY_SECRET))]);
    config.qps = 1000;
    TestEnv::with_fake(config).await
}

/// Waits until `n` dead letters are in `P.dead` (taking them).
async fn wait_dead(env: &TestEnv, n: usize) -> Vec<(Vec<u8>, Option<String>, Option<String>)> {
    let mut all = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while all.len() < n {
        all.extend(env.drain_dead().await);
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} dead letters",
            all.len()
        );
        if all.len() < n {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    all
}
