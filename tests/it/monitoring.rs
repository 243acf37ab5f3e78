//! The alert rules and the Grafana dashboard under `deploy/` name only metrics a real worker
//! exports: a renamed metric fails here instead of silencing an alert in production. (Their
//! PromQL and the alerts' behaviour are checked offline by `scripts/check-monitoring`.)

use std::collections::BTreeSet;

use crate::common::{self, TestEnv};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");

/// Every `stopcaster_*` metric family a file names (a histogram's `_bucket`, `_sum` and
/// `_count` series belong to their family).
fn families(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("stopcaster_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name);
        out.insert(family.to_owned());
    }
    out
}

#[tokio::test]
async fn alert_rules_and_dashboard_name_only_metrics_a_worker_exports() {
    let mut named = BTreeSet::new();
    for file in [
        "prometheus/stopcaster-rules.yml",
        "grafana/stopcaster-dashboard.json",
    ] {
        let text = std::fs::read_to_string(format!("{DEPLOY}/{file}")).expect(file);
        let found = families(&text);
        assert!(found.len() >= 5, "{file} names only {found:?}");
        named.extend(found);
    }
    let env = TestEnv::new().await;
    let addr = common::free_addr();
    let worker = env.spawn_worker(&[("STOPCASTER_METRICS_ADDR", &addr)]);
    worker.wait_ready().await;
    let (status, metrics) = common::http::get(&env.http, &format!("http://{addr}/metrics")).await;
    assert_eq!(status, 200);
    let missing: Vec<_> = named
        .iter()
        .filter(|family| !metrics.contains(&format!("# TYPE {family} ")))
        .collect();
    assert!(
        missing.is_empty(),
        "named in deploy/ but not exported: {missing:?}\n{metrics}"
    );
}

#[test]
fn families_fold_histogram_series_and_skip_other_names() {
    let found = families(
        "rate(stopcaster_api_latency_seconds_bucket[5m]) stopcaster-rules up{job=\"stopcaster\"} stopcaster_jobs_total",
    );
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["stopcaster_api_latency_seconds", "stopcaster_jobs_total"]
    );
}
