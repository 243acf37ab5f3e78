//! The `stopcaster` binary: parses the command line and wires the library together. The only
//! place that uses `anyhow`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

mod bench;

use anyhow::{Context as _, bail};
use backon::Retryable as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use stopcaster::api::{CallOutcome, LiveClient, StopCasterRequest};
use stopcaster::broker::Names;
use stopcaster::config::{ApiArgs, BrokerArgs, DatabaseArgs, WorkerArgs};
use stopcaster::domain::{CasterId, RegionId};
use stopcaster::fake_live;
use stopcaster::job::{InFlight, JobContext};
use stopcaster::pacer::{LocalPacer, Pacer, Rate, SharedPacer};
use stopcaster::{enqueue, storage, telemetry, worker};

/// Exit codes of `stopcaster stop`.
mod exit {
    pub const PERMANENT: u8 = 3;
    pub const RETRYABLE: u8 = 4;
    pub const TRANSPORT: u8 = 5;
}

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
    Enqueue {
        /// CasterIds to stop.
        caster_ids: Vec<String>,
        /// Read CasterIds from a file, one per line (`-` for standard input; blank lines and
        /// `#` comments are skipped).
        #[arg(long)]
        file: Option<PathBuf>,
        /// RegionId for these jobs (default: the worker's STOPCASTER_REGION).
        #[arg(long)]
        region: Option<String>,
        /// Batch label (default: a new UUID).
        #[arg(long)]
        batch: Option<String>,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Audit queries over the results tables: jobs newest first, plus a summary.
    Report {
        #[command(flatten)]
        report: stopcaster::report::ReportArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Inspect the dead-letter queue P.dead; put chosen jobs back on the work queue.
    #[command(subcommand)]
    DeadLetters(stopcaster::dead_letters::DeadLettersCommand),
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
    /// Benchmark: real worker processes against the stand-in, RabbitMQ and Postgres.
    Bench(bench::BenchArgs),
    /// A local stand-in for the ApsaraVideo Live endpoint.
    FakeLive(fake_live::FakeLiveArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(&cli.log_format);
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
        Command::Report { report, database } => {
            stopcaster::report::run(&report, &database.database_url, &mut std::io::stdout())
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::DeadLetters(command) => {
            let missing = stopcaster::dead_letters::run(&command, &mut std::io::stdout()).await?;
            for id in &missing {
                eprintln!("{id}: no dead letter for this job in the dead-letter queue");
            }
            Ok(if missing.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Worker {
            broker,
            database,
            api,
            worker,
        } => run_worker(broker, database, api, worker).await,
        Command::Enqueue {
            caster_ids,
            file,
            region,
            batch,
            broker,
        } => {
            let mut ids = caster_ids;
            if let Some(path) = file {
                let text = if path.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin()).context("reading standard input")?
                } else {
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?
                };
                ids.extend(enqueue::parse_id_lines(&text));
            }
            let plan = enqueue::plan(ids, region.as_deref(), batch)?;
            for dup in &plan.duplicates {
                eprintln!("duplicate CasterId {dup}: enqueued once");
            }
            let total = plan.jobs.len();
            let started = std::time::Instant::now();
            let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
                let bar = indicatif::ProgressBar::new(total as u64);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:40} {pos}/{len} confirmed ({per_sec}, {eta} left)",
                    )
                    .expect("a valid template"),
                );
                bar
            });
            // Plain lines when not on a terminal: one per tenth of the batch.
            let step = total.div_ceil(10).max(1);
            let report = enqueue::publish(
                &broker.amqp_url,
                &Names::new(&broker.queue_prefix),
                &plan,
                |r| {
                    let done = r.confirmed + r.unconfirmed();
                    match &bar {
                        Some(bar) => bar.set_position(done as u64),
                        None if done % step == 0 || done == total => {
                            eprintln!("{done}/{total} confirmed")
                        }
                        None => {}
                    }
                },
            )
            .await?;
            if let Some(bar) = bar {
                bar.finish();
            }
            eprintln!(
                "{total} jobs published in {:.2} s",
                started.elapsed().as_secs_f64()
            );
            println!("{}", plan.batch_id);
            eprintln!(
                "{} jobs confirmed in batch {}",
                report.confirmed, plan.batch_id
            );
            for &index in &report.unconfirmed_jobs {
                let (job_id, caster) = &plan.jobs[index];
                eprintln!("not confirmed: {caster} (job {job_id})");
            }
            if report.unconfirmed() > 0 {
                bail!(
                    "{} of {} jobs were not confirmed by the broker",
                    report.unconfirmed(),
                    plan.jobs.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            bench::run(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { database } => {
            storage::migrate(&database.database_url).await?;
            eprintln!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Stop {
            caster_id,
            region,
            api,
        } => {
            let credentials = api.credentials()?;
            let caster_id = CasterId::parse(&caster_id)?;
            let region = match region {
                Some(r) => RegionId::parse(&r)?,
                None => api.region()?,
            };
            let client = LiveClient::new(&api.client_config())?;
            let outcome = client
                .stop_caster(
                    &credentials,
                    StopCasterRequest {
                        caster_id: &caster_id,
                        region_id: &region,
                    },
                )
                .await;
            Ok(match outcome {
                CallOutcome::Stopped { request_id, .. } => {
                    println!("{request_id}");
                    ExitCode::SUCCESS
                }
                CallOutcome::Permanent(e) | CallOutcome::Retryable(e) => {
                    let code = if stopcaster::api::outcome::classify(e.http_status, &e.code)
                        == stopcaster::api::Class::Retryable
                    {
                        exit::RETRYABLE
                    } else {
                        exit::PERMANENT
                    };
                    eprintln!(
                        "{}: {} (RequestId {})",
                        e.code,
                        e.message,
                        e.request_id.as_deref().unwrap_or("none")
                    );
                    ExitCode::from(code)
                }
                CallOutcome::Transport(t) => {
                    eprintln!("{}: {} (RequestId none)", t.code(), t.message);
                    ExitCode::from(exit::TRANSPORT)
                }
            })
        }
        Command::FakeLive(args) => {
            let shutdown = CancellationToken::new();
            tokio::spawn(signal_shutdown(shutdown.clone()));
            fake_live::run(args, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn run_worker(
    broker: BrokerArgs,
    database: DatabaseArgs,
    api: ApiArgs,
    args: WorkerArgs,
) -> anyhow::Result<ExitCode> {
    let accounts = args.accounts(&api)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_shutdown(shutdown.clone()));
    // Until the database answers; a shutdown meanwhile ends the wait (nothing is held yet).
    let until_shutdown = {
        let shutdown = shutdown.clone();
        move |wait: Duration| {
            shutdown
                .clone()
                .run_until_cancelled_owned(tokio::time::sleep(wait))
        }
    };
    let pool = (|| storage::migrate(&database.database_url))
        .retry(storage::unavailable_backoff())
        .sleep(until_shutdown)
        .when(|e| storage::is_transient(e) && !shutdown.is_cancelled())
        .notify(|e, wait| {
            tracing::warn!(error = %e, retry_in = ?wait, "database unavailable at start; retrying");
        })
        .await;
    let pool = match pool {
        Ok(pool) => pool,
        Err(_) if shutdown.is_cancelled() => {
            tracing::info!("shut down before the database was reachable; nothing was taken");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e).context("preparing the database"),
    };
    let rate_accounts = accounts.clone();
    let margin = Duration::from_millis(args.pacer_margin_ms);
    let rates = move |key: &str| Rate {
        qps: rate_accounts.qps_of(key).unwrap_or(1),
        margin,
    };
    let pacer = match args.pacer.as_str() {
        "shared" => Pacer::Shared(SharedPacer::new(
            storage::pacer_pool(&database.database_url)
                .await
                .context("connecting the pacer")?,
            rates,
        )),
        "local" => Pacer::Local(LocalPacer::new(rates)),
        other => bail!("STOPCASTER_PACER must be shared or local, not {other:?}"),
    };
    let client_config = api.client_config();
    let worker_id = format!(
        "{}-{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into()),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let ctx = Arc::new(JobContext {
        pool,
        client: LiveClient::new(&client_config)?,
        pacer,
        accounts,
        default_region: api.region()?,
        max_attempts: args.max_attempts.max(1),
        backoff: args.backoff(),
        hold_cap: Duration::from_secs(args.hold_cap_s),
        claim_lease: client_config.timeout + client_config.connect_timeout + Duration::from_secs(5),
        worker_id,
        in_flight: InFlight::default(),
        metrics: Default::default(),
    });
    ctx.metrics.set_database_up(true);
    if let Some(addr) = args.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics address {addr}"))?;
        tokio::spawn(stopcaster::http::serve_metrics(
            listener,
            ctx.clone(),
            shutdown.clone(),
        ));
    }
    let config = worker::WorkerConfig {
        amqp_url: broker.amqp_url,
        names: Names::new(&broker.queue_prefix),
        concurrency: args.concurrency,
        drain_timeout: Duration::from_secs(args.drain_timeout_s),
    };
    worker::run(config, ctx, shutdown).await?;
    tracing::info!("worker stopped");
    Ok(ExitCode::SUCCESS)
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
