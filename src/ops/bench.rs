//! `stopcaster bench`: real worker processes against the stand-in, with the real RabbitMQ and
//! Postgres, measured from the outside. A benchmark, not a test: it prints figures and their
//! setup for `docs/BENCHMARKS.md`.
//!
//! Pacing run: N studios, W worker replicas sharing one account at `--qps`; prints calls,
//! throttled calls, makespan (first to last call at the stand-in), the ideal (N-1)/QPS,
//! efficiency = ideal / makespan, and the most calls the stand-in admitted in any one-second
//! window. Ceiling run (`--ceiling`): quota lifted, no latency; prints jobs/s with durable
//! records, CPU seconds per 1,000 jobs and the worker's peak RSS. Scheduled run
//! (`--scheduled SECS`): every job due SECS after it is enqueued; prints when the workers held
//! them all as `scheduled`, when the first and last calls left against the due time, calls
//! before it (must be 0), and the workers' peak RSS.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use sqlx::PgPool;

use crate::broker::Names;
use crate::domain::JobStatus;
use crate::fake_live::{self, FakeLiveConfig};
use crate::live::credentials::Secret;
use crate::store;

const KEY_ID: &str = "LTAIbench";
const KEY_SECRET: &str = "bench-secret";

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Studios (jobs) to stop.
    #[arg(long, default_value_t = 300)]
    studios: usize,
    /// Worker processes sharing the account.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// The account's quota, enforced by the stand-in and configured in the workers.
    #[arg(long, default_value_t = 10)]
    qps: u32,
    /// Latency the stand-in adds to each call, in milliseconds.
    #[arg(long, default_value_t = 30)]
    latency_ms: u64,
    /// An uncoordinated second client on the same AccessKeyId, calling this many times per
    /// second (as the console or another tool would): measures the adaptive pacer.
    #[arg(long, default_value_t = 0)]
    competitor_qps: u32,
    /// Pipeline ceiling: quota lifted, no latency; reports throughput and the worker's cost.
    #[arg(long)]
    ceiling: bool,
    /// Scheduled run: every job gets `not_before` = enqueue time + this many seconds (enough
    /// for the workers to receive and hold them all first).
    #[arg(long, conflicts_with = "ceiling")]
    scheduled: Option<u64>,
    /// The workers' STOPCASTER_PACER_MARGIN_MS: what each second of the schedule adds for
    /// jitter (each millisecond costs 0.1 % of the quota).
    #[arg(long, default_value_t = 5)]
    pacer_margin_ms: u64,
    /// Postgres server URL (a fresh database is created on it and dropped afterwards).
    #[arg(
        long,
        env = "STOPCASTER_BENCH_PG",
        default_value = "postgres://127.0.0.1:5432"
    )]
    postgres: String,
    /// RabbitMQ URL.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
}

struct WorkerProc {
    child: Child,
}

impl WorkerProc {
    /// utime + stime in seconds and peak RSS in KiB, read from /proc while the process lives.
    fn cost(&self) -> Option<(f64, u64)> {
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

    fn terminate(&mut self) {
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

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let id = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let db_name = format!("stopcaster_bench_{id}");
    let database_url = format!("{}/{db_name}", args.postgres.trim_end_matches('/'));
    let prefix = format!("stopcaster-bench-{id}");
    let (studios, qps, latency) = if args.ceiling {
        (args.studios, 1_000_000, Duration::ZERO)
    } else {
        (
            args.studios,
            args.qps,
            Duration::from_millis(args.latency_ms),
        )
    };
    let mut config = FakeLiveConfig::new(vec![(KEY_ID.into(), Secret::new(KEY_SECRET))]);
    config.qps = qps;
    config.latency = latency;
    let fake = fake_live::spawn(config)
        .await
        .context("starting the stand-in")?;
    let pool = crate::store::migrate(&database_url)
        .await
        .context("creating the bench database")?;
    let result = measure(&args, studios, qps, &database_url, &prefix, &pool, &fake).await;
    cleanup(&args, &pool, &db_name, &prefix).await;
    result
}

async fn measure(
    args: &BenchArgs,
    studios: usize,
    qps: u32,
    database_url: &str,
    prefix: &str,
    pool: &PgPool,
    fake: &fake_live::FakeLiveHandle,
) -> anyhow::Result<()> {
    let names = Names::new(prefix);
    let ids: Vec<String> = (0..studios).map(|i| format!("bench-studio-{i}")).collect();
    let mut plan = crate::ops::enqueue::plan(ids, None, Some(format!("bench-{prefix}")))?;
    let due = args.scheduled.map(|secs| {
        let due = (time::OffsetDateTime::now_utc() + time::Duration::seconds(secs as i64))
            .replace_nanosecond(0)
            .expect("zero nanoseconds");
        for job in &mut plan.jobs {
            job.not_before = Some(due);
        }
        due
    });
    let enqueue_started = Instant::now();
    let published = crate::ops::enqueue::publish(&args.amqp_url, &names, &plan, |_| {}).await?;
    let enqueue_time = enqueue_started.elapsed();
    if published.unconfirmed() > 0 {
        bail!("{} jobs not confirmed", published.unconfirmed());
    }
    let exe = std::env::current_exe()?;
    let mut workers: Vec<WorkerProc> = (0..args.workers)
        .map(|_| {
            Command::new(&exe)
                .arg("worker")
                .env("AMQP_URL", &args.amqp_url)
                .env("DATABASE_URL", database_url)
                .env("STOPCASTER_QUEUE_PREFIX", prefix)
                .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
                .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", KEY_SECRET)
                .env("STOPCASTER_ENDPOINT", fake.endpoint())
                .env("STOPCASTER_QPS", qps.to_string())
                .env(
                    "STOPCASTER_PACER_MARGIN_MS",
                    args.pacer_margin_ms.to_string(),
                )
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .map(|child| WorkerProc { child })
        })
        .collect::<Result<_, _>>()
        .context("starting workers")?;
    let started = Instant::now();
    let competitor = (args.competitor_qps > 0)
        .then(|| tokio::spawn(compete(fake.endpoint(), args.competitor_qps)));
    // Generous: a benchmark that times out measures nothing.
    let timeout = Duration::from_secs(60)
        + Duration::from_secs_f64(studios as f64 / f64::from(qps.min(50)) * 3.0);
    let mut all_held: Option<Duration> = None;
    loop {
        let done = store::count_finished_jobs(pool).await?;
        if done as usize >= studios {
            break;
        }
        if due.is_some() && all_held.is_none() {
            let held = store::count_jobs_with_status(pool, JobStatus::Scheduled).await?;
            if held as usize >= studios {
                all_held = Some(started.elapsed());
            }
        }
        if started.elapsed() > timeout {
            bail!("only {done} of {studios} jobs finished within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(c) = competitor {
        c.abort();
    }
    let costs: Vec<(f64, u64)> = workers.iter().filter_map(WorkerProc::cost).collect();
    for w in &mut workers {
        w.terminate();
    }
    let stats = fake.stats();
    let all_calls = fake.calls();
    if let Ok(path) = std::env::var("STOPCASTER_BENCH_CALL_LOG") {
        std::fs::write(&path, serde_json::to_vec(&all_calls)?)
            .with_context(|| format!("writing {path}"))?;
    }
    let is_ours = |c: &&fake_live::CallLogEntry| {
        c.caster_id
            .as_deref()
            .is_some_and(|id| id.starts_with("bench-studio-"))
    };
    let calls: Vec<&fake_live::CallLogEntry> = all_calls.iter().filter(is_ours).collect();
    let throttled_ours = calls
        .iter()
        .filter(|c| c.code.as_deref() == Some("Throttling.User"))
        .count();
    let succeeded = store::count_jobs_with_status(pool, JobStatus::Succeeded).await?;
    println!(
        "setup: {} studios, {} worker process(es), quota {} calls/s, pacer margin {} ms, stand-in latency {:?}, {} cores",
        studios,
        args.workers,
        if args.ceiling {
            "lifted".to_owned()
        } else {
            qps.to_string()
        },
        args.pacer_margin_ms,
        if args.ceiling {
            Duration::ZERO
        } else {
            Duration::from_millis(args.latency_ms)
        },
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "enqueue: {studios} jobs confirmed in {:.2} s ({:.0} jobs/s)",
        enqueue_time.as_secs_f64(),
        studios as f64 / enqueue_time.as_secs_f64()
    );
    println!("succeeded: {succeeded}");
    println!("calls: {}", calls.len());
    println!("throttled: {throttled_ours}");
    if args.competitor_qps > 0 {
        let theirs: Vec<_> = all_calls.iter().filter(|c| !is_ours(c)).collect();
        let refused = theirs
            .iter()
            .filter(|c| c.code.as_deref() == Some("Throttling.User"))
            .count();
        println!(
            "competitor: {} calls at {}/s, {refused} throttled",
            theirs.len(),
            args.competitor_qps
        );
    }
    if let Some(due) = due {
        let times: Vec<time::OffsetDateTime> = calls.iter().filter_map(|c| call_time(c)).collect();
        let first = times.iter().min().copied().context("no call")?;
        let last = times.iter().max().copied().context("no call")?;
        let early = times.iter().filter(|t| **t < due).count();
        let rss: Vec<String> = costs
            .iter()
            .map(|c| format!("{:.1}", c.1 as f64 / 1024.0))
            .collect();
        let cpu: f64 = costs.iter().map(|c| c.0).sum();
        println!(
            "scheduled: all {studios} held as scheduled {} after the workers started; due {} s after enqueue",
            all_held.map_or_else(
                || "never (some ran first?)".to_owned(),
                |d| format!("{:.2} s", d.as_secs_f64())
            ),
            args.scheduled.unwrap_or_default()
        );
        println!("calls_before_due: {early}");
        println!(
            "first_call_after_due: {:.3} s",
            (first - due).as_seconds_f64()
        );
        println!(
            "last_call_after_due: {:.3} s (ideal (N-1)/QPS: {:.3} s)",
            (last - due).as_seconds_f64(),
            (studios as f64 - 1.0) / f64::from(qps.max(1))
        );
        println!(
            "peak_rss: {} MiB (each worker's VmHWM); worker_cpu: {cpu:.2} s",
            rss.join(", ")
        );
    } else if args.ceiling {
        let (first, last) = store::call_span(pool)
            .await?
            .context("the batch made no call")?;
        let secs = (last - first).as_seconds_f64();
        let cpu: f64 = costs.iter().map(|c| c.0).sum();
        let rss = costs.iter().map(|c| c.1).max().unwrap_or(0);
        println!(
            "ceiling: {:.0} jobs/s with durable records ({studios} jobs in {secs:.2} s, first call to last commit)",
            studios as f64 / secs
        );
        println!(
            "cpu: {:.3} CPU seconds per 1,000 jobs (worker user+system)",
            cpu / studios as f64 * 1000.0
        );
        println!("peak_rss: {:.1} MiB (worker VmHWM)", rss as f64 / 1024.0);
    } else {
        let times: Vec<time::OffsetDateTime> = calls
            .iter()
            .filter(|c| c.http_status == Some(200))
            .filter_map(|c| call_time(c))
            .collect();
        let first = times.iter().min().copied();
        let last = times.iter().max().copied();
        let makespan = match (first, last) {
            (Some(a), Some(b)) => (b - a).as_seconds_f64(),
            _ => f64::NAN,
        };
        // With a competitor, the quota left to us is what the ideal is measured against.
        let available = f64::from(qps.saturating_sub(args.competitor_qps).max(1));
        let ideal = (studios as f64 - 1.0) / available;
        println!("makespan: {makespan:.3} s (first to last successful call at the stand-in)");
        println!("ideal: {ideal:.3} s ((N-1)/QPS available to the workers)");
        println!("efficiency: {:.4}", ideal / makespan);
        if let Some(first) = first {
            let at: Vec<String> = calls
                .iter()
                .filter(|c| c.code.as_deref() == Some("Throttling.User"))
                .filter_map(|c| call_time(c))
                .map(|t| format!("{:.3}", (t - first).as_seconds_f64()))
                .collect();
            if !at.is_empty() {
                println!("throttled_at_s: {}", at.join(" "));
            }
        }
        // How close the server came to an 11th call in a window: the shortest span of qps+1
        // consecutive admitted arrivals (at least 1 s means never throttled by us).
        let mut admitted: Vec<time::OffsetDateTime> = all_calls
            .iter()
            .filter(|c| c.admitted)
            .filter_map(call_time)
            .collect();
        admitted.sort();
        let span = admitted
            .windows(qps as usize + 1)
            .map(|w| (w[w.len() - 1] - w[0]).as_seconds_f64())
            .fold(f64::INFINITY, f64::min);
        println!("shortest_span_of_{}_admitted_calls: {span:.3} s", qps + 1);
        println!(
            "max_calls_in_any_1s_window: {}",
            stats.max_in_any_1s_window.get(KEY_ID).copied().unwrap_or(0)
        );
        let cpu: f64 = costs.iter().map(|c| c.0).sum();
        println!(
            "worker_cpu: {cpu:.2} s total over {} process(es)",
            costs.len()
        );
    }
    Ok(())
}

/// When the stand-in decided a call (its log's RFC 3339 time).
fn call_time(call: &fake_live::CallLogEntry) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(&call.time, &time::format_description::well_known::Rfc3339).ok()
}

/// Calls StopCaster `qps` times a second with the bench's key, on its own studios, ignoring
/// every answer, until aborted.
async fn compete(endpoint: String, qps: u32) {
    let client = match crate::live::LiveClient::new(&crate::live::ClientConfig::new(endpoint)) {
        Ok(c) => c,
        Err(_) => return,
    };
    let credentials = crate::live::credentials::Credentials::new(KEY_ID, KEY_SECRET);
    let region = crate::domain::RegionId::parse("cn-shanghai").expect("a valid region");
    let mut tick = tokio::time::interval(Duration::from_secs(1) / qps);
    for i in 0u64.. {
        tick.tick().await;
        let caster =
            crate::domain::CasterId::parse(&format!("competitor-{i}")).expect("a valid id");
        let client = client.clone();
        let credentials = credentials.clone();
        let region = region.clone();
        tokio::spawn(async move {
            let request = crate::live::StopCasterRequest {
                caster_id: &caster,
                region_id: &region,
            };
            client.stop_caster(&credentials, request).await;
        });
    }
}

async fn cleanup(args: &BenchArgs, pool: &PgPool, db_name: &str, prefix: &str) {
    pool.close().await;
    let admin_url = format!("{}/postgres", args.postgres.trim_end_matches('/'));
    if let Err(e) = store::drop_database(&admin_url, db_name).await {
        eprintln!("could not drop the benchmark database {db_name}: {e}");
    }
    if let Ok(conn) = crate::broker::connect(&args.amqp_url, "stopcaster bench cleanup").await
        && let Ok(ch) = conn.create_channel().await
    {
        let names = Names::new(prefix);
        for q in [&names.jobs, &names.dead] {
            let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
        }
        for x in [&names.exchange, &names.dlx] {
            let _ = ch
                .exchange_delete(x.as_str().into(), Default::default())
                .await;
        }
        let _ = conn.close(200, "".into()).await;
    }
}
