//! Endpoints by region: two stand-ins play `cn-shanghai`'s and `ap-southeast-1`'s endpoints
//! (`STOPCASTER_ENDPOINT_<REGION>`), and each is reached only by its own region's jobs, from the
//! worker and from `stop`; the global `STOPCASTER_ENDPOINT` points nowhere.

use std::time::Duration;

use stopcaster::Secret;
use stopcaster_fake_live::{self as fake_live, FakeLiveConfig};

use crate::common::{self, KEY_ID, KEY_SECRET, TestEnv};

/// A second stand-in with the test key, every studio running.
async fn second_stand_in() -> fake_live::FakeLiveHandle {
    let mut config = FakeLiveConfig::new(vec![(KEY_ID.into(), Secret::new(KEY_SECRET))]);
    config.qps = 1000;
    fake_live::spawn(config).await.expect("start the stand-in")
}

fn casters_called(fake: &fake_live::FakeLiveHandle) -> Vec<String> {
    let mut casters: Vec<String> = fake
        .calls()
        .into_iter()
        .filter(|c| c.action.as_deref() == Some("StopCaster"))
        .filter_map(|c| c.caster_id)
        .collect();
    casters.sort();
    casters
}

// Two threads: `stop` runs as a blocking child process while the stand-ins answer it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_region_reaches_only_its_own_endpoint() {
    let env = TestEnv::with_running(&["sh-0", "sh-1", "sh-2", "sh-3"]).await;
    let shanghai = env.fake.endpoint();
    let singapore_fake = second_stand_in().await;
    let singapore = singapore_fake.endpoint();
    let metrics = common::free_addr();
    let mut worker = env.spawn_worker(&[
        ("STOPCASTER_QPS", "1000"),
        // Any job that went by the global setting would fail to connect.
        ("STOPCASTER_ENDPOINT", "http://127.0.0.1:9"),
        ("STOPCASTER_ENDPOINT_CN_SHANGHAI", &shanghai),
        ("STOPCASTER_ENDPOINT_AP_SOUTHEAST_1", &singapore),
        ("STOPCASTER_METRICS_ADDR", &metrics),
    ]);
    worker.wait_ready().await;
    let mut bodies = Vec::new();
    for i in 0..4 {
        for (prefix, region) in [("sh", "cn-shanghai"), ("sg", "ap-southeast-1")] {
            let body =
                serde_json::json!({"caster_id": format!("{prefix}-{i}"), "region_id": region});
            bodies.push(serde_json::to_vec(&body).unwrap());
        }
    }
    env.publish_raw(&bodies).await;
    env.wait_terminal(8, Duration::from_secs(30)).await;
    assert_eq!(env.count_status("succeeded").await, 8);
    assert_eq!(casters_called(&env.fake), ["sh-0", "sh-1", "sh-2", "sh-3"]);
    assert_eq!(
        casters_called(&singapore_fake),
        ["sg-0", "sg-1", "sg-2", "sg-3"]
    );

    let logs = worker.logs();
    let start = logs
        .iter()
        .find(|l| l.contains("worker starting"))
        .expect("start-up line");
    assert!(
        start.contains(&format!("cn-shanghai: {shanghai}")),
        "{start}"
    );
    assert!(
        start.contains(&format!("ap-southeast-1: {singapore}")),
        "{start}"
    );
    let (_, ready) = common::http::get(&env.http, &format!("http://{metrics}/readyz")).await;
    let named = ready.lines().find(|l| l.starts_with("endpoints:"));
    let named = named.unwrap_or_else(|| panic!("{ready}"));
    assert!(
        named.contains(&shanghai) && named.contains(&singapore),
        "{ready}"
    );
    assert!(!named.contains("127.0.0.1:9,") && !named.ends_with("127.0.0.1:9"));
    worker.signal("TERM");
    worker.wait_exit(Duration::from_secs(30)).await;

    // `stop` resolves the same way.
    let out = env.run_cli(
        &["stop", "sg-stop", "--region", "ap-southeast-1"],
        &[
            ("STOPCASTER_ENDPOINT", "http://127.0.0.1:9"),
            ("STOPCASTER_ENDPOINT_AP_SOUTHEAST_1", &singapore),
        ],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(casters_called(&singapore_fake).contains(&"sg-stop".to_owned()));
    assert!(!casters_called(&env.fake).contains(&"sg-stop".to_owned()));
}
