//! Every action is a row of the audit trail, with who (`--actor`, or the OS user), from where
//! (the host name), what, how many and the outcome; `stopcaster audit` lists them as a table,
//! JSON or CSV, hostile values escaped.

use serde_json::Value;

use super::{WAIT, cli_ok};
use crate::common::{self, TestEnv, hostile::ESC};

fn host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_is_recorded_with_its_actor_source_and_count() {
    let env = TestEnv::with_running(&["a-1", "a-2", "a-3"]).await;
    let worker = env.spawn_worker(&[]);
    worker.wait_ready().await;
    cli_ok(
        &env,
        &[
            "enqueue", "--batch", "audit-1", "--actor", "bob", "a-1", "a-2", "gone",
        ],
    );
    env.wait_terminal(3, WAIT).await;
    common::wait_for(WAIT, || async {
        env.queue_len(&env.names().dead).await == 1
    })
    .await
    .expect("one dead letter");
    cli_ok(&env, &["dead-letters", "replay", "--all", "--actor", "bob"]);
    let at = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    cli_ok(
        &env,
        &[
            "enqueue", "--batch", "later", "--at", &at, "a-3", "--actor", "bob",
        ],
    );
    common::wait_for(WAIT, || async { env.count_status("scheduled").await == 1 })
        .await
        .expect("scheduled");
    cli_ok(&env, &["cancel", "--batch", "later", "--actor", "bob"]);
    let reason = format!("leak {ESC} \u{202e}");
    cli_ok(
        &env,
        &[
            "pause",
            "--account",
            "default",
            "--reason",
            &reason,
            "--actor",
            ESC,
        ],
    );
    cli_ok(&env, &["resume", "--account", "default"]);
    let out = env.run_cli(&["stop", "a-2", "--actor", "bob"], &[]);
    assert_eq!(out.status.code(), Some(3), "a-2 is already stopped");

    let json: Value = serde_json::from_str(&cli_ok(&env, &["audit", "--format", "json"])).unwrap();
    let rows = json["actions"].as_array().unwrap();
    let find =
        |action: &str| -> Vec<&Value> { rows.iter().filter(|r| r["action"] == action).collect() };
    let host = host();
    let enqueues = find("enqueue");
    assert_eq!(enqueues.len(), 2);
    let first = enqueues
        .iter()
        .find(|r| r["target"].as_str().unwrap().starts_with("batch audit-1"))
        .unwrap();
    assert_eq!(first["actor"], "bob");
    assert_eq!(first["source"], "cli");
    assert_eq!(first["origin"], host.as_str());
    assert_eq!(first["count"], 3);
    assert_eq!(first["outcome"], "ok");
    let replay = find("replay");
    assert_eq!(
        (replay[0]["count"].as_i64(), replay[0]["target"].as_str()),
        (Some(1), Some("all dead letters"))
    );
    let cancel = find("cancel");
    assert_eq!(
        (cancel[0]["count"].as_i64(), cancel[0]["target"].as_str()),
        (Some(1), Some("--batch later"))
    );
    let pause = find("pause");
    assert_eq!(pause[0]["actor"], ESC, "kept as typed; escaped where shown");
    assert!(
        pause[0]["target"]
            .as_str()
            .unwrap()
            .contains("account default (until resumed): leak")
    );
    let resume = find("resume");
    assert_eq!(
        (resume[0]["count"].as_i64(), resume[0]["outcome"].as_str()),
        (Some(1), Some("ok"))
    );
    assert_ne!(resume[0]["actor"], "", "the OS user");
    let stop = find("stop");
    assert_eq!(
        (stop[0]["outcome"].as_str(), stop[0]["detail"].as_str()),
        (Some("failed"), Some("IncorrectSceneStatus"))
    );

    // The table and the CSV show the hostile actor and reason escaped.
    let table = cli_ok(&env, &["audit", "--since", "1h"]);
    assert!(
        !table.contains('\u{1b}') && !table.contains('\u{202e}'),
        "{table:?}"
    );
    assert!(table.contains("\\x1b]0;owned\\x07"), "{table}");
    let csv = cli_ok(&env, &["audit", "--format", "csv"]);
    assert!(
        csv.starts_with("at,action,actor,source,origin,target,count,outcome,detail,id\r\n"),
        "{csv}"
    );
    assert!(
        !csv.contains('\u{1b}') && csv.contains("\\u{202e}"),
        "{csv:?}"
    );
    assert_eq!(csv.lines().count(), rows.len() + 1);
}
