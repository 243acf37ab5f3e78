//! Dead letters on the cluster: `P.dead` is a quorum queue, so `kill -9` of the node leading it
//! loses none of them, and `dead-letters list` (while the node is down and after its restart)
//! shows every one. Then, with the first address of `AMQP_URL` dead, `dead-letters replay` and
//! `enqueue` still reach the cluster, and the jobs they publish run.

use std::collections::BTreeSet;

use serde_json::Value;
use stopcaster_fake_live::StudioState;

use super::{Cluster, Probed, WAIT, enqueue, url};
use crate::common::{self, FAST, TestEnv, stderr};

const GHOSTS: usize = 10;
const KNOWN: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_outlive_their_leaders_kill_9_and_commands_pass_a_dead_first_address() {
    let cluster = Cluster::start();
    let all = url(&[1, 2, 3]);
    let ghosts: Vec<String> = (0..GHOSTS).map(|i| format!("cl-ghost-{i}")).collect();
    let known: Vec<String> = (0..KNOWN).map(|i| format!("cl-known-{i}")).collect();
    let running: Vec<&str> = known.iter().map(String::as_str).collect();
    let env = TestEnv::with_running(&running).await;
    let worker = Probed::spawn(&env, &all, FAST);
    worker.worker.wait_ready().await;

    // Studios the stand-in does not know: a permanent error, each job dead-lettered.
    enqueue(&env, &all, &ghosts);
    let pool = env.pool.clone();
    common::wait_for(WAIT, || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM caster_stop_jobs WHERE dead_lettered_at IS NOT NULL",
            )
            .fetch_one(&pool)
            .await
            .is_ok_and(|n| n == GHOSTS as i64)
        }
    })
    .await
    .expect("every ghost dead-lettered");
    let ids: BTreeSet<String> = env
        .jobs()
        .await
        .iter()
        .map(|r| r["job_id"].as_str().unwrap().to_owned())
        .collect();

    let dead = env.names().dead;
    let leader = cluster.leader(&dead);
    let killed = std::time::Instant::now();
    cluster.kill(leader);
    let new_leader = cluster.await_new_leader(&dead, leader).await;
    let election = killed.elapsed();
    assert_eq!(listed(&env, &all), ids, "with node {leader} down");
    let back = cluster.start_node(leader);
    assert_eq!(listed(&env, &all), ids, "after node {leader}'s restart");

    // The first address dead (node 1, maybe the one just restarted): the commands go on to
    // the next, and the worker, if it was there, moves. A queue node 1 led refuses messages
    // (nack) until another node leads it: wait for that, as for a node long gone.
    let led_by_1: Vec<String> = [env.names().jobs, dead.clone()]
        .into_iter()
        .filter(|q| cluster.leader(q) == 1)
        .collect();
    cluster.kill(1);
    for q in &led_by_1 {
        cluster.await_new_leader(q, 1).await;
    }
    for c in &ghosts {
        env.fake.set_caster(c, StudioState::Running);
    }
    let out = env.run_cli(&["dead-letters", "replay", "--all"], &[("AMQP_URL", &all)]);
    assert!(out.status.success(), "replay: {}", stderr(&out));
    assert_eq!(common::stdout(&out).matches("replayed ").count(), GHOSTS);
    enqueue(&env, &all, &known);
    env.wait_terminal((GHOSTS + KNOWN) as i64, WAIT).await;
    common::wait_for(WAIT, || async {
        env.count_status("succeeded").await == (GHOSTS + KNOWN) as i64
    })
    .await
    .expect("the replayed and the new jobs succeed");
    assert!(listed(&env, &all).is_empty(), "the dead letters are gone");
    for row in env.jobs().await {
        let replays = if ids.contains(row["job_id"].as_str().unwrap()) {
            1
        } else {
            0
        };
        assert_eq!(row["replays"], replays, "{row}");
    }
    common::wait_for(WAIT, || worker.ready_away_from(&env, 1))
        .await
        .unwrap_or_else(|_| panic!("worker: {}", worker.worker.logs().join("\n")));
    eprintln!(
        "cluster figures: {GHOSTS} dead letters all listed with their leader (node {leader}) killed (node {new_leader} leading {election:.1?} after the kill) and after its restart ({back:.1?}); replay and enqueue of {KNOWN} with node 1 dead: {} jobs succeeded",
        GHOSTS + KNOWN
    );
}

/// The job ids `dead-letters list` shows.
fn listed(env: &TestEnv, amqp_url: &str) -> BTreeSet<String> {
    let out = env.run_cli(
        &["dead-letters", "list", "--format", "json"],
        &[("AMQP_URL", amqp_url)],
    );
    assert!(out.status.success(), "list: {}", stderr(&out));
    let list: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let messages = list["messages"].as_array().expect("messages");
    assert_eq!(list["count"], messages.len(), "{list}");
    messages
        .iter()
        .map(|m| m["job_id"].as_str().unwrap().to_owned())
        .collect()
}
