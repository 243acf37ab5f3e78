//! A three-node RabbitMQ cluster (`scripts/rabbitmq-cluster`, beside the main node): a worker
//! given every node's address survives the loss of its own node, which also leads the work
//! queue, and no job is lost or called twice. Runs in the serial
//! pass: three nodes booting would starve the timing of the other tests.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::common::{self, TestEnv, stderr};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rabbitmq-cluster");
const WAIT: Duration = Duration::from_secs(60);

/// The cluster of one test, stopped and removed on drop.
struct Cluster {
    dir: PathBuf,
    amqp_url: String,
}

impl Cluster {
    fn start() -> Self {
        let dir = common::temp_dir("rabbitmq-cluster");
        let out = script(&["start", dir.to_str().unwrap()]);
        let amqp_url = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("AMQP_URL="))
            .expect("the script prints AMQP_URL")
            .to_owned();
        Self { dir, amqp_url }
    }

    fn stop_node(&self, n: u8) {
        script(&["stop-node", self.dir.to_str().unwrap(), &n.to_string()]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(SCRIPT)
            .args(["stop", self.dir.to_str().unwrap()])
            .output();
    }
}

fn script(args: &[&str]) -> std::process::Output {
    let out = Command::new(SCRIPT)
        .args(args)
        .output()
        .expect("run the script");
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    out
}

/// The node (1 to 3) of an address the worker names in `/readyz`.
fn node_of(readyz: &str) -> u8 {
    (1..=3)
        .find(|n| readyz.contains(&format!(":{}/", 5680 + u16::from(*n))))
        .unwrap_or_else(|| panic!("no cluster node in {readyz:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_workers_node_and_the_queue_leader_loses_no_job_and_calls_none_twice() {
    let cluster = Cluster::start();
    let casters: Vec<String> = (0..150).map(|i| format!("cluster-{i}")).collect();
    let running: Vec<&str> = casters.iter().map(String::as_str).collect();
    let env = TestEnv::with_running(&running).await;

    // The worker declares `P.jobs` first, on the node it picked: that node leads the queue.
    let addr = common::free_addr();
    let settings = [
        ("AMQP_URL", cluster.amqp_url.as_str()),
        ("STOPCASTER_QPS", "25"),
        ("STOPCASTER_METRICS_ADDR", &addr),
    ];
    let worker = env.spawn_worker(&settings);
    worker.wait_ready().await;
    let (_, readyz) = common::http::get(&env.http, &format!("http://{addr}/readyz")).await;
    let node = node_of(&readyz);
    let mut args = vec!["enqueue"];
    args.extend(running.iter().copied());
    let enqueued = env.run_cli(&args, &[("AMQP_URL", cluster.amqp_url.as_str())]);
    assert!(enqueued.status.success(), "{}", stderr(&enqueued));
    common::wait_for(WAIT, || async { env.count_status("succeeded").await >= 25 })
        .await
        .expect("the batch starts");
    cluster.stop_node(node);

    env.wait_terminal(casters.len() as i64, Duration::from_secs(120))
        .await;
    assert_eq!(env.count_status("succeeded").await, casters.len() as i64);
    let calls: i64 = sqlx::query_scalar("SELECT sum(attempts)::bigint FROM caster_stop_jobs")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(calls, casters.len() as i64, "one call per job");
    let logs = worker.logs().join("\n");
    assert!(logs.contains("reconnecting"), "{logs}");
    let elsewhere = logs
        .lines()
        .filter(|l| l.contains("consuming"))
        .any(|l| node_of(l) != node);
    assert!(elsewhere, "{logs}");
    eprintln!("cluster: node {node} (the worker's and the leader's) stopped; 150 jobs, 150 calls");
}
