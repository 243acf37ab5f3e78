//! The worker's figures: metrics, health and readiness after a small batch; `bench` with real
//! workers, and an interrupted bench leaving no worker behind.

use super::*;

#[tokio::test]
async fn metrics_health_and_readiness_after_a_small_batch() {
    let env = TestEnv::with_running(&["m-1", "m-2", "m-3"]).await;
    let addr = common::free_addr();
    let worker = env.spawn_worker(&[
        ("STOPCASTER_QPS", "1000"),
        ("STOPCASTER_METRICS_ADDR", addr.as_str()),
    ]);
    worker.wait_ready().await;
    env.publish_jobs(&["m-1".into(), "m-2".into(), "m-3".into(), "m-unknown".into()])
        .await;
    env.wait_terminal(4, WAIT).await;
    let get = |path: &str| {
        let url = format!("http://{addr}{path}");
        let http = env.http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await.0, 200);
    let (status, text) = get("/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "stopcaster_jobs_total{status=\"succeeded\"} 3",
        "stopcaster_jobs_total{status=\"failed\"} 1",
        "stopcaster_attempts_total{outcome=\"ok\",code=\"\"} 3",
        "stopcaster_attempts_total{outcome=\"permanent\",code=\"InvalidCaster.NotFound\"} 1",
        "stopcaster_api_latency_seconds_count 4",
        "stopcaster_broker_connected 1",
        "stopcaster_database_connected 1",
        "stopcaster_jobs_in_flight 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
}

#[tokio::test]
async fn bench_runs_real_workers_and_reports_its_figures() {
    // The bench makes and drops its own database and queues on the default servers.
    let out = Command::new(env!("CARGO_BIN_EXE_stopcaster"))
        .args([
            "bench",
            "--studios",
            "20",
            "--workers",
            "2",
            "--qps",
            "50",
            "--latency-ms",
            "0",
            "--pacer-margin-ms",
            "7",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "setup: 20 studios, 2 worker process(es), quota 50 calls/s, pacer margin 7 ms"
        ),
        "{stdout}"
    );
    let figure = |name: &str| -> f64 {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {name} line: {stdout}"))
            .parse()
            .unwrap()
    };
    assert_eq!(figure("succeeded"), 20.0);
    // A throttled call (rare under load, see docs/BENCHMARKS.md) is one call more.
    assert_eq!(figure("calls"), 20.0 + figure("throttled"));
    let efficiency = figure("efficiency");
    assert!(efficiency > 0.0 && efficiency <= 1.0, "{efficiency}");
}

/// The worker processes a bench started, as listed in /proc (their parent is `pid`).
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[tokio::test]
async fn an_interrupted_bench_leaves_no_worker_behind() {
    // A slow batch: the bench is still waiting for it when interrupted.
    let mut bench = Command::new(env!("CARGO_BIN_EXE_stopcaster"))
        .args([
            "bench",
            "--studios",
            "200",
            "--workers",
            "2",
            "--qps",
            "5",
            "--latency-ms",
            "0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = bench.id();
    let mut workers = Vec::new();
    common::wait_for(Duration::from_secs(30), || {
        workers = children_of(pid);
        std::future::ready(workers.len() == 2)
    })
    .await
    .expect("the bench started its two workers");
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = tokio::task::spawn_blocking(move || bench.wait().unwrap())
        .await
        .unwrap();
    assert!(!exited.success(), "{exited:?}");
    // Killed and reaped by the bench before it exited: no such process any more.
    for w in workers {
        assert!(
            !std::path::Path::new(&format!("/proc/{w}")).exists(),
            "worker {w} outlived its bench"
        );
    }
}
