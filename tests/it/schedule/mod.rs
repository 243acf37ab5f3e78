//! Scheduled stops and `cancel`, through the real binaries, RabbitMQ, Postgres and the
//! stand-in: calls never before their due time and the first within a second after it; a
//! worker killed before the due time; cancel before and during a run; past, malformed and
//! far-future `not_before`; `enqueue --at` and its errors.

mod cancel;
mod input;
mod timing;

use crate::common;

use std::time::Duration;

use common::{KEY_SECRET, TestEnv, stderr, stdout};
use lapin::options::BasicGetOptions;
use serde_json::Value;
use stopcaster::Secret;
use stopcaster_fake_live::{FakeLiveConfig, StudioState};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

async fn env_with_qps(qps: u32) -> TestEnv {
    let mut config = FakeLiveConfig::new(vec![(common::KEY_ID.into(), Secret::new(KEY_SECRET))]);
    config.qps = qps;
    TestEnv::with_fake(config).await
}

/// A due time `secs` from now, on a whole second (the stand-in's log truncates to milliseconds,
/// so a whole-second due time keeps the "never before" comparison exact).
fn due_in(secs: i64) -> OffsetDateTime {
    let t = OffsetDateTime::now_utc() + time::Duration::seconds(secs);
    t.replace_nanosecond(0).unwrap() + time::Duration::seconds(1)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// The stand-in's StopCaster calls for `caster`, as times.
fn call_times(env: &TestEnv, caster: &str) -> Vec<OffsetDateTime> {
    env.fake
        .calls()
        .iter()
        .filter(|c| c.caster_id.as_deref() == Some(caster))
        .map(|c| OffsetDateTime::parse(&c.wall_time, &Rfc3339).unwrap())
        .collect()
}

fn enqueue(env: &TestEnv, args: &[&str]) -> String {
    let mut all = vec!["enqueue"];
    all.extend_from_slice(args);
    let out = env.run_cli(&all, &[]);
    assert!(out.status.success(), "enqueue failed: {}", stderr(&out));
    stdout(&out).trim().to_owned()
}

async fn wait_status(env: &TestEnv, status: &str, n: i64, timeout: Duration) {
    common::wait_for(
        timeout,
        || async move { env.count_status(status).await >= n },
    )
    .await
    .unwrap_or_else(|_| panic!("{n} jobs {status} not reached within {timeout:?}"));
}

/// Rows still to run: scheduled or pending.
async fn open_jobs(env: &TestEnv) -> i64 {
    env.count_status("scheduled").await + env.count_status("pending").await
}

async fn metrics(addr: &str) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
