//! Hostile sizes and bytes in the commands' output: a 5 MB CasterId (in a dead letter; a
//! 200,000-character one in a row) keeps `dead-letters list`
//! and `report`'s tables small and shows its length; escape sequences and U+202E are shown
//! escaped in the tables and the worker's log; the CSV parses and reads back to the exact
//! values; JSON keeps them exact.

use super::*;
use common::hostile::{
    self, BIG, BIG_MARKER, ESC, RLO_CASTER, ROW_CASTER, ROW_MARKER, SMALL, assert_inert, escaped,
    parse_csv, unescape,
};

#[tokio::test]
async fn hostile_sizes_and_bytes_stay_bounded_and_escaped_in_the_commands() {
    let env = TestEnv::new().await;
    let worker = env.spawn_worker(FAST);
    let h = hostile::publish(&env).await;

    // The worker's log names the accepted and the rejected CasterId, escaped.
    let logs = worker.logs().join("\n");
    assert!(logs.contains(&escaped(RLO_CASTER)), "{logs}");
    assert!(logs.contains(&escaped(&h.ctl_caster)), "{logs}");
    assert_inert(&logs, "the worker's log");

    // dead-letters list: small, the length shown, everything escaped.
    let table = cli_ok(&env, &["dead-letters", "list"]);
    assert!(table.len() < SMALL, "{} bytes", table.len());
    assert!(table.contains(BIG_MARKER), "{table}");
    assert!(table.contains(&escaped(&h.ctl_caster)), "{table}");
    assert!(table.contains(&escaped(&h.ctl_batch)), "{table}");
    assert!(table.contains(&escaped(&h.rlo_batch)), "{table}");
    assert_inert(&table, "dead-letters list");
    // Its JSON keeps the exact values.
    let list = cli_json(&env, &["dead-letters", "list", "--format", "json"]);
    let letter = |id: uuid::Uuid| {
        list["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["job_id"] == id.to_string())
            .unwrap_or_else(|| panic!("{id} not listed"))
            .clone()
    };
    assert_eq!(letter(h.ctl)["caster_id"], h.ctl_caster.as_str());
    assert_eq!(letter(h.big)["caster_id"].as_str().unwrap().len(), BIG);

    // report's tables, narrow and wide.
    for args in [&["report"][..], &["report", "--wide"]] {
        let out = cli_ok(&env, args);
        assert!(out.len() < SMALL, "{args:?}: {} bytes", out.len());
        assert_inert(&out, &format!("{args:?}"));
        assert!(out.contains("\\u{"), "{args:?}: {out}");
    }
    let wide = cli_ok(&env, &["report", "--wide"]);
    assert!(wide.contains(ROW_MARKER), "{wide}");
    assert!(wide.contains(&escaped(&h.ctl_caster)), "{wide}");
    assert!(wide.contains(&escaped(&h.ctl_batch)), "{wide}");
    let summary = cli_ok(&env, &["report", "--batch", &h.ctl_batch]);
    assert_inert(&summary, "report --batch");

    // CSV: parses, holds nothing raw, and reads back to the exact values.
    let csv = cli_ok(&env, &["report", "--format", "csv"]);
    assert_inert(&csv, "report --format csv");
    let records = parse_csv(&csv);
    let header = &records[0];
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let row = |id: uuid::Uuid| {
        records
            .iter()
            .find(|r| r[0] == id.to_string())
            .unwrap_or_else(|| panic!("{id} not in the CSV"))
    };
    assert_eq!(unescape(&row(h.ctl)[col("caster_id")]), h.ctl_caster);
    assert_eq!(unescape(&row(h.ctl)[col("batch_id")]), h.ctl_batch);
    assert_eq!(unescape(&row(h.rlo)[col("caster_id")]), RLO_CASTER);
    assert_eq!(unescape(&row(h.rlo)[col("batch_id")]), h.rlo_batch);
    assert_eq!(
        unescape(&row(h.big)[col("caster_id")]),
        "c".repeat(ROW_CASTER)
    );
    let scheduled = unescape(&row(h.scheduled)[col("caster_id")]);
    assert!(scheduled.ends_with(&format!("c{RLO_CASTER}{ESC}")));

    // JSON: the exact values, JSON's own escapes.
    let report = cli_json(&env, &["report", "--format", "json"]);
    let job = |id: uuid::Uuid| {
        report["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["job_id"] == id.to_string())
            .unwrap()
            .clone()
    };
    assert_eq!(job(h.ctl)["caster_id"], h.ctl_caster.as_str());
    assert_eq!(job(h.rlo)["batch_id"], h.rlo_batch.as_str());
}
