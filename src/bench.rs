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

use stopcaster::{JobStatus, Names};
use stopcaster_fake_live::{self as fake_live, FakeLiveConfig};
use stopcaster_live::credentials::Secret;

use stopcaster as store;

const KEY_ID: &str = "LTAIbench";
const KEY_SECRET: &str = "bench-secret";
/// The account UID every bench key belongs to (the stand-in's STS tells the workers).
const ACCOUNT_UID: &str = "1500000000000001";
/// Studios of the warm-up batch (`--warm`): enough for every worker to open its connections.
const WARM_UP_STUDIOS: usize = 30;

/// The `i`-th of `--keys` AccessKeys of the bench account (the first is `LTAIbench`).
fn key_id(i: usize) -> String {
    if i == 0 {
        KEY_ID.to_owned()
    } else {
        format!("{KEY_ID}{i}")
    }
}

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
    /// The stand-in waits this long before reading a new connection's first request (the TCP
    /// and TLS round trips of a far endpoint), in milliseconds.
    #[arg(long, default_value_t = 0)]
    connect_delay_ms: u64,
    /// Serve HTTPS, with a CA made for this run (the `openssl` command line makes it) that the
    /// workers trust through STOPCASTER_CA_FILE.
    #[arg(long)]
    tls: bool,
    /// AccessKeys of the one account (UID): the workers take them round-robin and learn the
    /// account from the stand-in's STS (GetCallerIdentity), as on Alibaba Cloud.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
    keys: u64,
    /// Measure a first batch, on workers that just started (the default).
    #[arg(long, conflicts_with = "warm")]
    cold: bool,
    /// Measure a second batch: once every worker consumes, they stop a small batch (30
    /// studios), then wait 2 s, then the measured batch is enqueued, so their connections are
    /// open and idle.
    #[arg(long)]
    warm: bool,
    /// The workers' STOPCASTER_WARM_CONNECTIONS=false: connections are opened by the calls
    /// themselves (what the worker did before it warmed its pool).
    #[arg(long)]
    no_warm_connections: bool,
    /// An uncoordinated second client on the same AccessKeyId, calling this many times per
    /// second (as the console or another tool would): measures the adaptive pacer.
    #[arg(long, default_value_t = 0)]
    competitor_qps: u32,
    /// Pipeline ceiling: quota lifted, no latency; reports throughput and the worker's cost.
    #[arg(long)]
    ceiling: bool,
    /// Scheduled run: every job gets `not_before` = enqueue time + this many seconds (enough
    /// for the workers to receive and hold them all first).
    #[arg(long, conflicts_with_all = ["ceiling", "warm"])]
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
    let keys: Vec<String> = (0..args.keys as usize).map(key_id).collect();
    let mut config = FakeLiveConfig::new(
        keys.iter()
            .map(|k| (k.clone(), Secret::new(KEY_SECRET)))
            .collect(),
    );
    for k in &keys {
        config = config.with_account(k, ACCOUNT_UID);
    }
    config.qps = qps;
    config.latency = latency;
    config.connect_delay = Duration::from_millis(args.connect_delay_ms);
    let pki = if args.tls {
        let pki = Pki::make(&format!("stopcaster-bench-{id}"))?;
        config.tls = Some(fake_live::tls_config(&pki.cert, &pki.key)?);
        Some(pki)
    } else {
        None
    };
    let fake = fake_live::spawn(config)
        .await
        .context("starting the stand-in")?;
    let pool = stopcaster::migrate(&database_url)
        .await
        .context("creating the bench database")?;
    let setup = Setup {
        studios,
        qps,
        database_url: &database_url,
        prefix: &prefix,
        keys: &keys,
        ca_file: pki.as_ref().map(|p| p.ca.as_path()),
    };
    let result = measure(&args, &setup, &pool, &fake).await;
    cleanup(&args, &pool, &db_name, &prefix).await;
    drop(pki);
    result
}

/// What `measure` needs of `run`'s preparations.
struct Setup<'a> {
    studios: usize,
    qps: u32,
    database_url: &'a str,
    prefix: &'a str,
    keys: &'a [String],
    ca_file: Option<&'a std::path::Path>,
}

/// A CA and a certificate it signed for 127.0.0.1, made with the `openssl` command line in a
/// directory of their own, removed on drop.
struct Pki {
    dir: std::path::PathBuf,
    ca: std::path::PathBuf,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

impl Pki {
    fn make(name: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let pki = Self {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            dir,
        };
        let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
        let ca_key = path(&pki.dir.join("ca-key.pem"));
        let csr = path(&pki.dir.join("cert.csr"));
        let ext = pki.dir.join("ext.cnf");
        std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n")?;
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        let steps: [Vec<String>; 3] = [
            [
                "req",
                "-x509",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=stopcaster bench CA",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain(ec.iter().map(|s| s.to_string()))
            .chain([
                "-keyout".into(),
                ca_key.clone(),
                "-out".into(),
                path(&pki.ca),
            ])
            .collect(),
            ["req", "-nodes", "-subj", "/CN=127.0.0.1"]
                .iter()
                .map(|s| s.to_string())
                .chain(ec.iter().map(|s| s.to_string()))
                .chain(["-keyout".into(), path(&pki.key), "-out".into(), csr.clone()])
                .collect(),
            [
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &csr,
                "-CA",
                &path(&pki.ca),
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-extfile",
                &path(&ext),
                "-out",
                &path(&pki.cert),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ];
        for step in steps {
            let out = Command::new("openssl")
                .args(&step)
                .stdin(Stdio::null())
                .output()
                .context("running openssl (--tls makes its certificates with it)")?;
            if !out.status.success() {
                bail!(
                    "openssl {} failed: {}",
                    step[0],
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        Ok(pki)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn measure(
    args: &BenchArgs,
    setup: &Setup<'_>,
    pool: &PgPool,
    fake: &fake_live::FakeLiveHandle,
) -> anyhow::Result<()> {
    let Setup {
        studios,
        qps,
        database_url,
        prefix,
        ..
    } = *setup;
    let names = Names::new(prefix);
    let names = &names;
    let enqueue = |ids: Vec<String>, due: Option<time::OffsetDateTime>| async move {
        let mut plan = stopcaster::plan_enqueue(ids, None, Some(format!("bench-{prefix}")))?;
        for job in &mut plan.jobs {
            job.not_before = due;
        }
        let started = Instant::now();
        let published = stopcaster::publish_enqueue(&args.amqp_url, names, &plan, |_| {}).await?;
        if published.unconfirmed() > 0 {
            bail!("{} jobs not confirmed", published.unconfirmed());
        }
        anyhow::Ok(started.elapsed())
    };
    let ids: Vec<String> = (0..studios).map(|i| format!("bench-studio-{i}")).collect();
    let due = args.scheduled.map(|secs| {
        (time::OffsetDateTime::now_utc() + time::Duration::seconds(secs as i64))
            .replace_nanosecond(0)
            .expect("zero nanoseconds")
    });
    // Cold: the batch waits in the queue for workers that are just starting.
    let mut enqueue_time = Duration::ZERO;
    if !args.warm {
        enqueue_time = enqueue(ids.clone(), due).await?;
    }
    let mut start_wall = time::OffsetDateTime::now_utc();
    let exe = std::env::current_exe()?;
    let mut workers: Vec<WorkerProc> = (0..args.workers)
        .map(|i| {
            let mut command = Command::new(&exe);
            command
                .arg("worker")
                .env("AMQP_URL", &args.amqp_url)
                .env("DATABASE_URL", database_url)
                .env("STOPCASTER_QUEUE_PREFIX", prefix)
                .env(
                    "ALIBABA_CLOUD_ACCESS_KEY_ID",
                    &setup.keys[i % setup.keys.len()],
                )
                .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", KEY_SECRET)
                .env_remove("ALIBABA_CLOUD_SECURITY_TOKEN")
                .env_remove("STOPCASTER_ACCOUNT_UID")
                .env("STOPCASTER_STS_ENDPOINT", fake.endpoint())
                .env("STOPCASTER_ENDPOINT", fake.endpoint())
                .env("STOPCASTER_QPS", qps.to_string())
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
            match setup.ca_file {
                Some(ca) => command.env("STOPCASTER_CA_FILE", ca),
                None => command.env_remove("STOPCASTER_CA_FILE"),
            };
            command.spawn().map(|child| WorkerProc { child })
        })
        .collect::<Result<_, _>>()
        .context("starting workers")?;
    // Generous: a benchmark that times out measures nothing.
    let timeout = Duration::from_secs(60)
        + Duration::from_secs_f64(studios as f64 / f64::from(qps.min(50)) * 3.0);
    // Postgres that restarts under a run (on a shared machine) is waited out, as the workers
    // do, and said: such a run measures the outage, not the pacing.
    let outages = std::sync::atomic::AtomicU32::new(0);
    let outages = &outages;
    // A scheduled run: when the workers held every job as `scheduled`.
    let all_held: std::sync::Mutex<Option<Duration>> = std::sync::Mutex::new(None);
    let all_held = &all_held;
    let workers_started = Instant::now();
    let wait_for = |count: usize, since: Instant| async move {
        let mut done = 0;
        loop {
            match store::count_finished_jobs(pool).await {
                Ok(n) => done = n,
                Err(_) => {
                    outages.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            if done as usize >= count {
                return anyhow::Ok(());
            }
            if due.is_some()
                && all_held.lock().expect("not poisoned").is_none()
                && store::count_jobs_with_status(pool, JobStatus::Scheduled)
                    .await
                    .is_ok_and(|held| held as usize >= count)
            {
                *all_held.lock().expect("not poisoned") = Some(workers_started.elapsed());
            }
            if since.elapsed() > timeout {
                bail!("only {done} of {count} jobs finished within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    if args.warm {
        // Warm: once every worker consumes, a small batch, so that each has used its
        // connections; then a pause, so they are idle, as between two batches.
        wait_for_consumers(&args.amqp_url, names, args.workers, timeout).await?;
        let warm_ids = (0..WARM_UP_STUDIOS)
            .map(|i| format!("bench-warmup-{i}"))
            .collect();
        enqueue(warm_ids, None).await?;
        wait_for(WARM_UP_STUDIOS, Instant::now()).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        start_wall = time::OffsetDateTime::now_utc();
        enqueue_time = enqueue(ids, None).await?;
    }
    let started = Instant::now();
    let competitor = (args.competitor_qps > 0)
        .then(|| tokio::spawn(compete(fake.endpoint(), args.competitor_qps)));
    let expected = studios + if args.warm { WARM_UP_STUDIOS } else { 0 };
    // A batch that does not finish in time is still measured, as far as it went.
    let unfinished = wait_for(expected, started).await.err();
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
    let throttled_warm_up = all_calls
        .iter()
        .filter(|c| {
            c.caster_id
                .as_deref()
                .is_some_and(|id| id.starts_with("bench-warmup-"))
        })
        .filter(|c| c.code.as_deref() == Some("Throttling.User"))
        .count();
    println!(
        "setup: {} studios, {} worker process(es), quota {} calls/s, pacer margin {} ms, stand-in latency {:?}, {} cores; {} key(s) of one account, {} batch, {}, connect delay {} ms{}",
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
            .unwrap_or(1),
        setup.keys.len(),
        if args.warm { "warm" } else { "cold" },
        if args.tls { "https" } else { "http" },
        args.connect_delay_ms,
        if args.no_warm_connections {
            ", workers without warm connections"
        } else {
            ""
        }
    );
    println!(
        "enqueue: {studios} jobs confirmed in {:.2} s ({:.0} jobs/s)",
        enqueue_time.as_secs_f64(),
        studios as f64 / enqueue_time.as_secs_f64()
    );
    if let Some(e) = &unfinished {
        println!("timeout: {e}");
    }
    let outages = outages.load(std::sync::atomic::Ordering::Relaxed);
    if outages > 0 {
        println!(
            "database_unavailable: {outages} polls failed during the run (not a valid measurement)"
        );
    }
    println!("succeeded: {succeeded}");
    println!("calls: {}", calls.len());
    println!("throttled: {throttled_ours}");
    if args.warm {
        println!("throttled_in_warm_up_batch: {throttled_warm_up}");
    }
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
            all_held.lock().expect("not poisoned").map_or_else(
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
            "max_calls_in_any_1s_window: {} (the account's, over every batch)",
            stats
                .max_in_any_1s_window_by_account
                .get(ACCOUNT_UID)
                .copied()
                .unwrap_or(0)
        );
        if let Some(first) = first {
            println!(
                "first_call_after: {:.3} s (from {})",
                (first - start_wall).as_seconds_f64(),
                if args.warm {
                    "the measured batch's enqueue"
                } else {
                    "the workers' start"
                }
            );
        }
        let cpu: f64 = costs.iter().map(|c| c.0).sum();
        println!(
            "worker_cpu: {cpu:.2} s total over {} process(es)",
            costs.len()
        );
    }
    Ok(())
}

/// Waits until the jobs queue has `count` consumers.
async fn wait_for_consumers(
    amqp_url: &str,
    names: &Names,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let conn = stopcaster::connect_broker(amqp_url, "stopcaster bench").await?;
    let channel = conn.create_channel().await?;
    // The workers' own topology, so that the passive declarations below find the queue.
    stopcaster::declare_topology(&channel, names).await?;
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

/// When the stand-in decided a call (its log's RFC 3339 time).
fn call_time(call: &fake_live::CallLogEntry) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(&call.time, &time::format_description::well_known::Rfc3339).ok()
}

/// Calls StopCaster `qps` times a second with the bench's key, on its own studios, ignoring
/// every answer, until aborted.
async fn compete(endpoint: String, qps: u32) {
    let client =
        match stopcaster_live::LiveClient::new(&stopcaster_live::ClientConfig::new(endpoint)) {
            Ok(c) => c,
            Err(_) => return,
        };
    let credentials = stopcaster_live::credentials::Credentials::new(KEY_ID, KEY_SECRET);
    let region = stopcaster_live::ids::RegionId::parse("cn-shanghai").expect("a valid region");
    let mut tick = tokio::time::interval(Duration::from_secs(1) / qps);
    for i in 0u64.. {
        tick.tick().await;
        let caster =
            stopcaster_live::ids::CasterId::parse(&format!("competitor-{i}")).expect("a valid id");
        let client = client.clone();
        let credentials = credentials.clone();
        let region = region.clone();
        tokio::spawn(async move {
            let request = stopcaster_live::StopCasterRequest {
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
    if let Ok(conn) = stopcaster::connect_broker(&args.amqp_url, "stopcaster bench cleanup").await
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
