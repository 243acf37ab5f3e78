//! The `stopcaster` binary: the command line and its dispatch, nothing else. The only place,
//! with the benchmark driver, that uses `anyhow`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use stopcaster::fake_live::{self, FakeLiveConfig};
use stopcaster::{
    ApiArgs, BenchArgs, BrokerArgs, DashboardArgs, DatabaseArgs, DeadLettersCommand, EnqueueArgs,
    ReportArgs, Secret, WorkerArgs,
};

#[derive(Parser)]
#[command(
    name = "stopcaster",
    version,
    about = "Stops Alibaba Cloud ApsaraVideo Live production studios from a RabbitMQ queue"
)]
struct Cli {
    /// Log format: text or json.
    #[arg(
        long,
        env = "STOPCASTER_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Consume stop jobs until SIGINT/SIGTERM, then drain and exit 0.
    Worker {
        #[command(flatten)]
        broker: BrokerArgs,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        worker: WorkerArgs,
    },
    /// Publish one job per studio with publisher confirms; prints the batch id.
    Enqueue(EnqueueArgs),
    /// Audit queries over the results tables: jobs newest first, plus a summary.
    Report {
        #[command(flatten)]
        report: ReportArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Inspect the dead-letter queue P.dead; put chosen jobs back on the work queue.
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
    /// Create the database if missing and apply the migrations.
    Migrate {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// One signed StopCaster call now, no queue. Exit codes: 0 stopped, 3 permanent API error,
    /// 4 retryable API error (5xx, throttling), 5 transport failure, 1 configuration error.
    Stop {
        caster_id: String,
        /// RegionId (default: STOPCASTER_REGION).
        #[arg(long)]
        region: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The web dashboard (default 127.0.0.1:8090); read-only without STOPCASTER_DASHBOARD_PASSWORD.
    Dashboard(DashboardArgs),
    /// Benchmark: real worker processes against the stand-in, RabbitMQ and Postgres.
    Bench(BenchArgs),
    /// A local stand-in for the ApsaraVideo Live endpoint.
    FakeLive {
        /// Where to serve.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Accepted AccessKey pair ID:SECRET (repeatable); default: the environment's.
        #[arg(long = "access-key")]
        access_keys: Vec<String>,
        /// Calls per AccessKeyId in any sliding one-second window.
        #[arg(long, default_value_t = 10)]
        qps: u32,
        /// JSON object {"<CasterId>": "running"|"stopped"}; other ids are then NotFound.
        #[arg(long)]
        casters: Option<PathBuf>,
        /// Share of calls answered 503 ServiceUnavailable.
        #[arg(long, default_value_t = 0.0)]
        fail_rate: f64,
        /// Latency added to each call, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    stopcaster::init_logging(&cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Worker {
            broker,
            database,
            api,
            worker,
        } => {
            let shutdown = CancellationToken::new();
            tokio::spawn(signal_shutdown(shutdown.clone()));
            stopcaster::run_worker(broker, database, api, worker, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Enqueue(args) => {
            stopcaster::run_enqueue(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { report, database } => {
            stopcaster::run_report(&report, &database.database_url, &mut std::io::stdout()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::DeadLetters(command) => {
            let missing = stopcaster::run_dead_letters(&command, &mut std::io::stdout()).await?;
            for id in &missing {
                eprintln!("{id}: no dead letter for this job in the dead-letter queue");
            }
            Ok(if missing.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Migrate { database } => {
            stopcaster::migrate(&database.database_url).await?;
            eprintln!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Stop {
            caster_id,
            region,
            api,
        } => Ok(stopcaster::run_stop(&caster_id, region.as_deref(), &api).await?),
        Command::Dashboard(args) => {
            let shutdown = CancellationToken::new();
            tokio::spawn(signal_shutdown(shutdown.clone()));
            stopcaster::run_dashboard(args, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            stopcaster::run_bench(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::FakeLive {
            listen,
            access_keys,
            qps,
            casters,
            fail_rate,
            latency_ms,
        } => {
            let mut keys = Vec::new();
            for pair in access_keys {
                let (id, secret) = pair
                    .split_once(':')
                    .context("--access-key wants ID:SECRET")?;
                keys.push((id.to_owned(), Secret::new(secret)));
            }
            if keys.is_empty() {
                let id = std::env::var("ALIBABA_CLOUD_ACCESS_KEY_ID").ok();
                let secret = std::env::var("ALIBABA_CLOUD_ACCESS_KEY_SECRET").ok();
                match (id, secret) {
                    (Some(id), Some(secret)) => keys.push((id, Secret::new(secret))),
                    _ => bail!(
                        "no access keys: pass --access-key ID:SECRET or set ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET"
                    ),
                }
            }
            let mut config = FakeLiveConfig::new(keys);
            config.qps = qps;
            config.fail_rate = fail_rate;
            config.latency = Duration::from_millis(latency_ms);
            if let Some(path) = casters {
                config.casters = Some(fake_live::load_casters(&path).map_err(anyhow::Error::msg)?);
            }
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let addr = listener.local_addr()?;
            eprintln!("fake-live listening on http://{addr}");
            let _ = std::io::stderr().flush();
            let shutdown = CancellationToken::new();
            tokio::spawn(signal_shutdown(shutdown.clone()));
            fake_live::serve(listener, config, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
async fn signal_shutdown(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
    token.cancel();
}
