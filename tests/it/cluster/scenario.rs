//! The scenario: 300 jobs, two workers given the three addresses in different orders;
//! `kill -9` of the node leading `P.jobs` mid-batch, then of the node a worker is connected to,
//! each restarted while the jobs go on. A three-node cluster keeps its quorum queues with one
//! node down, not two, so the first node is back before the second is killed, as an operator
//! restarting nodes one at a time would do. Checked from Postgres and the stand-in's own call
//! log: one row per job, none pending, no call beyond one per job except after an attempt whose
//! outcome was unknown, every success backed by a 200, both workers alive and ready.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Cluster, Probed, WAIT, enqueue, url};
use crate::common::{self, TestEnv};

const JOBS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_queue_leader_then_of_a_workers_node_loses_no_job_and_calls_none_twice() {
    let cluster = Cluster::start();
    let casters: Vec<String> = (0..JOBS).map(|i| format!("cluster-{i}")).collect();
    let running: Vec<&str> = casters.iter().map(String::as_str).collect();
    let env = TestEnv::with_running(&running).await;
    // The pacer is shared: 20 calls/s in all, so each half of the batch lasts ~7 s and the
    // kills land mid-batch.
    let settings = [("STOPCASTER_QPS", "20")];
    let mut workers = [
        Probed::spawn(&env, &url(&[1, 2, 3]), &settings),
        Probed::spawn(&env, &url(&[3, 1, 2]), &settings),
    ];
    for w in &workers {
        w.worker.wait_ready().await;
    }
    let began = Instant::now();

    // First half; the node leading the work queue dies once it is under way.
    enqueue(&env, &url(&[1, 2, 3]), &casters[..JOBS / 2]);
    wait_succeeded(&env, 30).await;
    let leader = cluster.leader(&env.names().jobs);
    let first = kill_mid_batch(&cluster, &env, &workers, leader).await;
    // The first half goes on while the node restarts.
    let back = cluster.start_node_in_background(leader).await.unwrap();
    eprintln!(
        "cluster figures: node {leader} (P.jobs leader{}) killed: recovered in {:.1?}; node back in {back:.1?}",
        first.1, first.0
    );

    // Second half, listed the other way round; the node of the first worker dies.
    enqueue(&env, &url(&[3, 2, 1]), &casters[JOBS / 2..]);
    wait_succeeded(&env, JOBS as i64 / 2 + 30).await;
    let node = workers[0].node(&env).await;
    let second = kill_mid_batch(&cluster, &env, &workers, node).await;
    let restart = cluster.start_node_in_background(node);
    env.wait_terminal(JOBS as i64, Duration::from_secs(120))
        .await;
    let elapsed = began.elapsed();
    let back = restart.await.unwrap();
    eprintln!(
        "cluster figures: node {node} (worker 1's{}) killed: recovered in {:.1?}; node back in {back:.1?}",
        second.1, second.0
    );

    let (calls, unknown) = check_each_job_called_once(&env, &casters).await;
    for w in &mut workers {
        assert!(
            w.worker.child.try_wait().unwrap().is_none(),
            "the worker stayed up: {}",
            w.worker.logs().join("\n")
        );
        let (status, body) = w.readyz(&env).await;
        assert_eq!(status, 200, "{body}");
    }
    // The first worker lost its node: it moved, rather than waiting for the node's return.
    workers[0].worker.wait_log("reconnecting", WAIT).await;
    eprintln!(
        "cluster figures: {JOBS} jobs, {calls} calls, {unknown} attempts with an unknown outcome, all done {:.1} s after the first enqueue (2 kill -9, 2 restarts)",
        elapsed.as_secs_f64()
    );
}

async fn wait_succeeded(env: &TestEnv, n: i64) {
    common::wait_for(WAIT, || async { env.count_status("succeeded").await >= n })
        .await
        .unwrap_or_else(|_| panic!("{n} jobs did not succeed within {WAIT:?}"));
}

/// `kill -9` of node `n`; how long until it has recovered (both workers ready on another node
/// and ten more jobs succeeded), and which workers were connected to it.
async fn kill_mid_batch(
    cluster: &Cluster,
    env: &TestEnv,
    workers: &[Probed],
    n: u8,
) -> (Duration, String) {
    let before = env.count_status("succeeded").await;
    assert!(before < JOBS as i64, "the kill lands mid-batch");
    let mut on_it = Vec::new();
    for (i, w) in workers.iter().enumerate() {
        if w.node(env).await == n {
            on_it.push(format!("worker {}", i + 1));
        }
    }
    let on_it = if on_it.is_empty() {
        "; no worker on it".to_owned()
    } else {
        format!("; on it: {}", on_it.join(", "))
    };
    let began = Instant::now();
    cluster.kill(n);
    common::wait_for(WAIT, || async {
        for w in workers {
            if !w.ready_away_from(env, n).await {
                return false;
            }
        }
        env.count_status("succeeded").await >= before + 10
    })
    .await
    .unwrap_or_else(|_| {
        let logs: Vec<String> = workers.iter().map(|w| w.worker.logs().join("\n")).collect();
        panic!(
            "no recovery from the loss of node {n}:\n{}",
            logs.join("\n---\n")
        )
    });
    (began.elapsed(), on_it)
}

/// One row per job, all succeeded; at the stand-in, each studio called at most once plus once
/// per attempt of its job whose outcome was unknown, never more than the attempts recorded,
/// and answered 200 at least once. Returns the calls and the unknown outcomes.
async fn check_each_job_called_once(env: &TestEnv, casters: &[String]) -> (usize, i64) {
    let rows: Vec<(String, String, i32, i64)> = sqlx::query_as(
        "SELECT j.caster_id, j.status, j.attempts,
                count(a.job_id) FILTER (WHERE a.outcome_unknown)
           FROM caster_stop_jobs j LEFT JOIN caster_stop_attempts a ON a.job_id = j.job_id
          GROUP BY j.job_id, j.caster_id, j.status, j.attempts",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    let mut row_casters: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    row_casters.sort();
    let mut want: Vec<&str> = casters.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(row_casters, want, "exactly one row per job");
    let calls = env.fake.calls();
    let mut by_caster: HashMap<&str, Vec<Option<u16>>> = HashMap::new();
    for c in &calls {
        if let Some(id) = c.caster_id.as_deref() {
            by_caster.entry(id).or_default().push(c.http_status);
        }
    }
    let mut unknown = 0;
    for (caster, status, attempts, unknowns) in &rows {
        assert_eq!(status, "succeeded", "{caster}: none left pending or failed");
        let theirs = by_caster.get(caster.as_str()).cloned().unwrap_or_default();
        assert!(
            theirs.contains(&Some(200)),
            "{caster}: its success is backed by a 200 at the stand-in: {theirs:?}"
        );
        let made = theirs.len() as i64;
        assert!(
            made <= 1 + unknowns,
            "{caster}: {made} calls, {unknowns} unknown outcomes"
        );
        assert!(
            made <= i64::from(*attempts),
            "{caster}: {made} calls, {attempts} attempts recorded"
        );
        unknown += unknowns;
    }
    (calls.len(), unknown)
}
