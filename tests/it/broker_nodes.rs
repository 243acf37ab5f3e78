//! Several broker addresses in `AMQP_URL`: the worker and the commands go to a node that
//! answers, `/readyz` and the start-up line name it, and no node's password is printed.

use std::time::Duration;

use crate::common::{self, AMQP_URL, TestEnv, stderr, stdout};

const DEAD_NODE_PASSWORD: &str = "dead-node-Secret-77";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_nodes_is_tried_until_one_answers_and_readyz_names_it() {
    let env = TestEnv::with_running(&["node-1", "node-2", "node-3"]).await;
    // Nothing listens there: a node that is down.
    let dead = common::free_port();
    let list = format!("amqp://guest:{DEAD_NODE_PASSWORD}@127.0.0.1:{dead}/%2f,{AMQP_URL}");
    let addr = common::free_addr();
    let mut settings = common::FAST.to_vec();
    settings.push(("AMQP_URL", &list));
    settings.push(("STOPCASTER_METRICS_ADDR", &addr));
    let worker = env.spawn_worker(&settings);
    worker.wait_ready().await;

    // A command tries the nodes in the order given: the first is down, the second takes it.
    let enqueued = env.run_cli(
        &["enqueue", "node-1", "node-2", "node-3"],
        &[("AMQP_URL", &list)],
    );
    assert!(enqueued.status.success(), "{}", stderr(&enqueued));
    env.wait_terminal(3, Duration::from_secs(30)).await;
    assert_eq!(env.count_status("succeeded").await, 3);

    let (status, body) = common::http::get(&env.http, &format!("http://{addr}/readyz")).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("broker node: amqp://guest@127.0.0.1:5672/%2f"),
        "{body}"
    );
    let logs = worker.logs().join("\n");
    assert!(
        logs.lines()
            .any(|l| l.contains("consuming") && l.contains("127.0.0.1:5672")),
        "{logs}"
    );
    for text in [logs, stdout(&enqueued), stderr(&enqueued)] {
        assert!(!text.contains(DEAD_NODE_PASSWORD), "{text}");
    }

    // With every node down, a command names them all, passwords out.
    let down = format!(
        "amqp://guest:{DEAD_NODE_PASSWORD}@127.0.0.1:{dead}/%2f,amqp://u:{DEAD_NODE_PASSWORD}@127.0.0.1:{dead}/x"
    );
    let refused = env.run_cli(&["enqueue", "node-4"], &[("AMQP_URL", &down)]);
    assert!(!refused.status.success());
    let text = stderr(&refused);
    assert!(text.contains("connection refused"), "{text}");
    assert!(!text.contains(DEAD_NODE_PASSWORD), "{text}");
    assert!(
        text.contains(&format!("amqp://u@127.0.0.1:{dead}/x")),
        "{text}"
    );
}
