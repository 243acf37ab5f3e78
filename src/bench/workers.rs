//! The worker processes of a run: started from this very binary, measured through `/proc`,
//! stopped with SIGTERM (their drain) and killed if they outlive it or the run.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use stopcaster::Names;
use stopcaster_fake_live as fake_live;

use super::{BenchArgs, KEY_SECRET, Setup};

/// `--workers` worker processes on the run's database, queues and stand-in, with the keys of
/// the account round-robin.
pub(super) fn spawn(
    args: &BenchArgs,
    setup: &Setup<'_>,
    fake: &fake_live::FakeLiveHandle,
) -> anyhow::Result<Vec<WorkerProc>> {
    let exe = std::env::current_exe()?;
    (0..args.workers)
        .map(|i| {
            let mut command = Command::new(&exe);
            command
                .arg("worker")
                .env("AMQP_URL", &args.amqp_url)
                .env("DATABASE_URL", setup.database_url)
                .env("STOPCASTER_QUEUE_PREFIX", setup.prefix)
                .env(
                    "ALIBABA_CLOUD_ACCESS_KEY_ID",
                    &setup.keys[i % setup.keys.len()],
                )
                .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", KEY_SECRET)
                .env_remove("ALIBABA_CLOUD_SECURITY_TOKEN")
                .env_remove("STOPCASTER_ACCOUNT_UID")
                .env("STOPCASTER_STS_ENDPOINT", fake.endpoint())
                .env("STOPCASTER_ENDPOINT", fake.endpoint())
                .env("STOPCASTER_QPS", setup.qps.to_string())
                .env(
                    "STOPCASTER_PACER_MARGIN_MS",
                    args.pacer_margin_ms.to_string(),
                )
                .env(
                    "STOPCASTER_WARM_CONNECTIONS",
                    (!args.no_warm_connections).to_string(),
                )
                // `STOPCASTER_BENCH_WORKER_LOG=stopcaster=debug` shows, for instance, each
                // call that left late.
                .env(
                    "RUST_LOG",
                    std::env::var("STOPCASTER_BENCH_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            if let Some(file) = setup.accounts_file {
                // Jobs name their account; the default one is the first account's.
                command.env("ALIBABA_CLOUD_ACCESS_KEY_ID", &setup.keys[0]);
                file.configure(&mut command);
            }
            match setup.ca_file {
                Some(ca) => command.env("STOPCASTER_CA_FILE", ca),
                None => command.env_remove("STOPCASTER_CA_FILE"),
            };
            command.spawn().map(|child| WorkerProc { child })
        })
        .collect::<Result<_, _>>()
        .context("starting workers")
}

pub(super) struct WorkerProc {
    child: Child,
}

impl WorkerProc {
    /// utime + stime in seconds and peak RSS in KiB, read from /proc while the process lives.
    pub(super) fn cost(&self) -> Option<(f64, u64)> {
        let pid = self.child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let hwm = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some((ticks / 100.0, hwm))
    }

    pub(super) fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the jobs queue has `count` consumers.
pub(super) async fn wait_for_consumers(
    amqp_url: &str,
    names: &Names,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let conn = stopcaster::connect_broker(amqp_url, "stopcaster bench").await?;
    let channel = conn.create_channel().await?;
    // The workers' own topology, so that the passive declarations below find the queue.
    stopcaster::declare_topology(&conn, names).await?;
    let started = Instant::now();
    loop {
        let consumers = channel
            .queue_declare(
                names.jobs.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await?
            .consumer_count() as usize;
        if consumers >= count {
            let _ = conn.close(200, "".into()).await;
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!("only {consumers} of {count} workers consume after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
