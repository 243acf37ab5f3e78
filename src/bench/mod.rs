//! `stopcaster bench`: real worker processes against the stand-in, with the real RabbitMQ and
//! Postgres, measured from the outside. A benchmark, not a test: it prints figures and their
//! setup for `docs/BENCHMARKS.md`.
//!
//! Pacing run: N studios, W worker replicas sharing one account at `--qps`; prints calls,
//! throttled calls, makespan (first to last call at the stand-in), the ideal (N-1)/QPS,
//! efficiency = ideal / makespan, and the most calls the stand-in admitted in any one-second
//! window. Fleet run (`--accounts N`): N accounts of their own UIDs, one key each, the jobs
//! interleaved across them; prints the worst account's peak per second and the efficiency
//! against one account's share. Every paced run prints the workers' CPU per 1,000 calls and
//! the Postgres transactions per call. Ceiling run (`--ceiling`): quota lifted, no latency; prints jobs/s with durable
//! records, CPU seconds per 1,000 jobs and the worker's peak RSS. Scheduled run
//! (`--scheduled SECS`): every job due SECS after it is enqueued; prints when the workers held
//! them all as `scheduled`, when the first and last calls left against the due time, calls
//! before it (must be 0), and the workers' peak RSS. Idle run (`--idle-interval-ms MS`): one
//! job every MS to workers that already consume; prints the median and p90 of enqueue to the
//! call's arrival at the stand-in.

mod fleet;
mod idle;
mod measure;
mod pki;
mod results;
mod workers;

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use sqlx::PgPool;

use stopcaster::Names;
use stopcaster_fake_live::{self as fake_live, FakeLiveConfig};
use stopcaster_live::credentials::Secret;

use stopcaster as store;

use pki::Pki;

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
    #[arg(long, default_value_t = stopcaster::DEFAULT_QPS)]
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
    /// A fleet: this many accounts, each of its own UID with one AccessKey, given to the
    /// workers in an accounts file (UIDs learnt from STS); the jobs name them round-robin.
    #[arg(long, default_value_t = 1, conflicts_with = "keys", value_parser = clap::value_parser!(u64).range(1..=1000))]
    accounts: u64,
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
    /// Idle latency: once every worker consumes, one job every this many milliseconds;
    /// prints the median and p90 of enqueue (just before the publish) to the call's arrival
    /// at the stand-in.
    #[arg(long, conflicts_with_all = ["ceiling", "warm", "scheduled", "competitor_qps"])]
    idle_interval_ms: Option<u64>,
    /// The workers' STOPCASTER_PACER_MARGIN_MS: what each second of the schedule adds for
    /// jitter (each millisecond costs 0.1 % of the quota).
    #[arg(long, default_value_t = stopcaster::DEFAULT_PACER_MARGIN_MS)]
    pacer_margin_ms: u64,
    /// Postgres server URL (a fresh database is created on it and dropped afterwards).
    #[arg(
        long,
        env = "STOPCASTER_BENCH_PG",
        hide_env_values = true,
        default_value = "postgres://127.0.0.1:5432"
    )]
    postgres: String,
    /// RabbitMQ URL.
    #[arg(
        long,
        env = "AMQP_URL",
        hide_env_values = true,
        default_value = stopcaster::DEFAULT_AMQP_URL
    )]
    amqp_url: String,
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
    let accounts = args.accounts as usize;
    let (keys, uids): (Vec<String>, Vec<String>) = if accounts > 1 {
        (0..accounts)
            .map(|i| (fleet::key_id(i), fleet::uid(i)))
            .unzip()
    } else {
        (0..args.keys as usize)
            .map(|i| (key_id(i), ACCOUNT_UID.to_owned()))
            .unzip()
    };
    let mut config = FakeLiveConfig::new(
        keys.iter()
            .map(|k| (k.clone(), Secret::new(KEY_SECRET)))
            .collect(),
    );
    for (k, uid) in keys.iter().zip(&uids) {
        config = config.with_account(k, uid);
    }
    let accounts_file = (accounts > 1)
        .then(|| fleet::AccountsFile::write(id, accounts))
        .transpose()?;
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
        uids: &uids,
        accounts_file: accounts_file.as_ref(),
        ca_file: pki.as_ref().map(|p| p.ca.as_path()),
    };
    let result = match args.idle_interval_ms {
        Some(ms) => idle::measure(&args, &setup, &pool, &fake, Duration::from_millis(ms)).await,
        None => measure::measure(&args, &setup, &pool, &fake).await,
    };
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
    /// Each key's account UID (one UID for `--keys`, one per account for `--accounts`).
    uids: &'a [String],
    /// A fleet run's accounts file.
    accounts_file: Option<&'a fleet::AccountsFile>,
    ca_file: Option<&'a std::path::Path>,
}

/// Drops the run's database and deletes its queues and exchanges.
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
