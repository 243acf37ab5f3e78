//! A three-node RabbitMQ cluster (`scripts/rabbitmq-cluster`, beside the main node), its nodes
//! killed with `kill -9` under the workers and the commands: no job lost or called twice
//! ([`scenario`]), dead letters kept and commands served with a dead first address
//! ([`dead_letters`]). Runs in the serial pass: three nodes booting would starve the timing of
//! the other tests. One booted cluster per test, since a boot takes about 20 s.

mod dead_letters;
mod scenario;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{self, TestEnv, stderr};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rabbitmq-cluster");
/// The script's default: node N listens on BASE_PORT + N - 1.
const BASE_PORT: u16 = 5681;
const WAIT: Duration = Duration::from_secs(60);

/// The cluster of one test, stopped and removed on drop.
struct Cluster {
    dir: PathBuf,
}

impl Cluster {
    fn start() -> Self {
        let dir = common::temp_dir("rabbitmq-cluster");
        let out = script(&["start", dir.to_str().unwrap()]);
        assert!(
            common::stdout(&out).contains(&format!("AMQP_URL={}", url(&[1, 2, 3]))),
            "the script prints every node's address: {}",
            common::stdout(&out)
        );
        Self { dir }
    }

    fn dir(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    /// `kill -9` of node `n`; returns once its process has ended and its port is closed.
    fn kill(&self, n: u8) {
        script(&["kill", self.dir(), &n.to_string()]);
    }

    /// Starts node `n` again and waits until it has rejoined; how long that took.
    fn start_node(&self, n: u8) -> Duration {
        start_node(self.dir.clone(), n)
    }

    /// Starts node `n` again on a thread of its own, so that jobs go on meanwhile.
    fn start_node_in_background(&self, n: u8) -> tokio::task::JoinHandle<Duration> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || start_node(dir, n))
    }

    /// The node (1 to 3) leading quorum queue `queue`.
    fn leader(&self, queue: &str) -> u8 {
        self.try_leader(queue)
            .unwrap_or_else(|| panic!("no leader of {queue}"))
    }

    /// The node leading `queue`, if the cluster names one of its nodes.
    fn try_leader(&self, queue: &str) -> Option<u8> {
        let out = Command::new(SCRIPT)
            .args(["leader", self.dir(), queue])
            .output()
            .expect("run the script");
        common::stdout(&out).trim().parse().ok()
    }

    /// Waits until a node other than `gone` leads `queue`: until then RabbitMQ answers a
    /// client of the queue with `nodedown` (or counts it empty), as an operator would see too.
    async fn await_new_leader(&self, queue: &str, gone: u8) -> u8 {
        let mut led = None;
        common::wait_for(WAIT, || {
            led = self.try_leader(queue).filter(|n| *n != gone);
            async move { led.is_some() }
        })
        .await
        .unwrap_or_else(|_| panic!("{queue} has no leader but node {gone} after {WAIT:?}"));
        led.unwrap()
    }
}

fn start_node(dir: PathBuf, n: u8) -> Duration {
    let began = Instant::now();
    script(&["start-node", dir.to_str().unwrap(), &n.to_string()]);
    began.elapsed()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(SCRIPT).args(["stop", self.dir()]).output();
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

/// `AMQP_URL` listing the cluster's nodes in `order`.
fn url(order: &[u8]) -> String {
    order
        .iter()
        .map(|n| format!("amqp://guest:guest@127.0.0.1:{}/%2f", port(*n)))
        .collect::<Vec<_>>()
        .join(",")
}

fn port(n: u8) -> u16 {
    BASE_PORT + u16::from(n) - 1
}

/// The node (1 to 3) of the address a worker names in `/readyz` or a log line.
fn node_of(text: &str) -> Option<u8> {
    (1..=3).find(|n| text.contains(&format!(":{}/", port(*n))))
}

/// A worker started with its metrics on a port of its own, to ask `/readyz`.
struct Probed {
    worker: common::Worker,
    addr: String,
}

impl Probed {
    fn spawn(env: &TestEnv, amqp_url: &str, extra: &[(&str, &str)]) -> Self {
        let addr = common::free_addr();
        let mut settings = vec![("AMQP_URL", amqp_url), ("STOPCASTER_METRICS_ADDR", &addr)];
        settings.extend_from_slice(extra);
        let worker = env.spawn_worker(&settings);
        Self { worker, addr }
    }

    /// `/readyz`: the status and the body, which names the node in use; status 0 and the
    /// error when the worker does not answer at all.
    async fn readyz(&self, env: &TestEnv) -> (u16, String) {
        match env
            .http
            .get(format!("http://{}/readyz", self.addr))
            .send()
            .await
        {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    }

    /// The node the worker is consuming from; it must be ready.
    async fn node(&self, env: &TestEnv) -> u8 {
        let (status, body) = self.readyz(env).await;
        assert_eq!(status, 200, "{body}");
        node_of(&body).unwrap_or_else(|| panic!("no cluster node in {body:?}"))
    }

    /// Ready (broker and database connected) on a node other than `gone`.
    async fn ready_away_from(&self, env: &TestEnv, gone: u8) -> bool {
        let (status, body) = self.readyz(env).await;
        status == 200 && node_of(&body).is_some_and(|n| n != gone)
    }
}

/// Runs `stopcaster enqueue CASTERS...` against `amqp_url`, which must succeed.
fn enqueue(env: &TestEnv, amqp_url: &str, casters: &[String]) {
    let mut args = vec!["enqueue"];
    args.extend(casters.iter().map(String::as_str));
    let out = env.run_cli(&args, &[("AMQP_URL", amqp_url)]);
    assert!(out.status.success(), "enqueue: {}", stderr(&out));
}
