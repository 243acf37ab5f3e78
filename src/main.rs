//! The `stopcaster` binary: the command line and its dispatch, nothing else. The only place,
//! with the benchmark driver, that uses `anyhow`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use stopcaster_fake_live as fake_live;

mod bench;

use bench::BenchArgs;
use stopcaster::{
    ActorArgs, ApiArgs, AuditArgs, BrokerArgs, CancelArgs, DashboardArgs, DatabaseArgs,
    DeadLettersCommand, EnqueueArgs, LogFormat, PauseArgs, ReportArgs, ResumeArgs, WorkerArgs,
};

#[derive(Parser)]
#[command(
    name = "stopcaster",
    version,
    about = "Stops Alibaba Cloud ApsaraVideo Live production studios from a RabbitMQ queue"
)]
struct Cli {
    /// Log format.
    #[arg(
        long,
        env = "STOPCASTER_LOG_FORMAT",
        value_enum,
        ignore_case = true,
        default_value_t = LogFormat::Text,
        global = true
    )]
    log_format: LogFormat,
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
    /// Cancel jobs not yet called, so that they never are.
    ///
    /// A job not yet called is scheduled, or pending with no call made; it becomes cancelled.
    /// Exit 0 when none of the named jobs will be called any more; 1 when one had already
    /// started or an id is unknown.
    Cancel(CancelArgs),
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
    /// Create the database if missing and apply the migrations; with --broker, move the queues
    /// an older version declared to the current arguments instead, keeping every message.
    Migrate {
        /// Migrate the broker's queues (stop the workers first), not the database.
        #[arg(long = "broker")]
        queues: bool,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// One signed StopCaster call now, without the queue.
    ///
    /// Prints the RequestId or the error. The call is recorded like a job (batch
    /// stop-command) when the database is reachable. Exit codes: 0 stopped, 3 permanent API
    /// error, 4 retryable API error (5xx, throttling), 5 transport failure, 1 configuration
    /// error.
    // The region is the API settings' own (STOPCASTER_REGION), named --region here: a studio has
    // one region, and one flag for it is all `stop` needs.
    #[command(mut_arg("default_region", |a| a
        .long("region")
        .value_name("REGION")
        .help("RegionId of the studio")))]
    #[command(mut_arg("database_url", |a| a
        .help("Postgres URL, where the call is recorded (when unreachable: the call is made, not recorded)")))]
    Stop {
        /// The production studio's CasterId (1 to 64 letters, digits, `-`, `_`).
        caster_id: String,
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        actor: ActorArgs,
    },
    /// Pause an account by hand: every worker holds its calls within a second.
    ///
    /// Its jobs wait (pending, attempt budget untouched) and its scheduled stops are held and
    /// reported late, until `stopcaster resume` or --until. Recorded in the audit trail.
    Pause(PauseArgs),
    /// End an operator's pause of an account (`stopcaster pause`).
    Resume(ResumeArgs),
    /// The operators' actions (enqueue, cancel, replay, pause, resume, stop), newest first.
    Audit(AuditArgs),
    /// The web dashboard (default 127.0.0.1:8090); read-only without STOPCASTER_DASHBOARD_PASSWORD.
    Dashboard(DashboardArgs),
    /// Benchmark: real worker processes against the stand-in, RabbitMQ and Postgres.
    Bench(BenchArgs),
    /// A local stand-in for the ApsaraVideo Live endpoint (and STS, ECS metadata).
    FakeLive(fake_live::FakeLiveArgs),
}

/// Log filter of the commands that run until stopped: what they do, minus the database's
/// notices (`relation ... already exists, skipping` at every start).
const SERVICE_LOG_FILTER: &str = "info,sqlx::postgres::notice=warn";
/// Log filter of the one-shot commands: their answer is their output; only real warnings are
/// logged. lapin logs a failed connection as errors of its own before returning it, and the
/// command prints that error itself, once.
const ONE_SHOT_LOG_FILTER: &str = "warn,lapin=off";

impl Command {
    /// Commands that do one thing and exit, as opposed to services.
    fn is_one_shot(&self) -> bool {
        matches!(
            self,
            Command::Enqueue(_)
                | Command::Cancel(_)
                | Command::Report { .. }
                | Command::DeadLetters(_)
                | Command::Migrate { .. }
                | Command::Stop { .. }
                | Command::Pause(_)
                | Command::Resume(_)
                | Command::Audit(_)
        )
    }

    /// The servers this command talks to, for naming them in an error.
    fn targets(&self) -> stopcaster::ErrorTargets {
        let (broker, database) = match self {
            Command::Worker {
                broker, database, ..
            } => (Some(broker), Some(database)),
            Command::Enqueue(args) => (Some(&args.broker), None),
            Command::Cancel(args) => (None, Some(&args.database)),
            Command::Dashboard(args) => (Some(&args.broker), Some(&args.database)),
            Command::Report { database, .. } => (None, Some(database)),
            Command::Migrate {
                queues: true,
                broker,
                ..
            } => (Some(broker), None),
            Command::Migrate { database, .. } => (None, Some(database)),
            Command::DeadLetters(DeadLettersCommand::List { broker, .. }) => (Some(broker), None),
            Command::DeadLetters(DeadLettersCommand::Replay {
                broker, database, ..
            }) => (Some(broker), Some(database)),
            Command::Stop { database, .. } => (None, Some(database)),
            Command::Pause(args) => (None, Some(&args.database)),
            Command::Resume(args) => (None, Some(&args.database)),
            Command::Audit(args) => (None, Some(&args.database)),
            Command::Bench(_) | Command::FakeLive { .. } => (None, None),
        };
        stopcaster::ErrorTargets {
            broker: broker.map(|b| b.amqp_url.clone()),
            database: database.map(|d| d.database_url.clone()),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = if cli.command.is_one_shot() {
        ONE_SHOT_LOG_FILTER
    } else {
        SERVICE_LOG_FILTER
    };
    stopcaster::init_logging(cli.log_format, filter);
    let targets = cli.command.targets();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            tracing::debug!("the error in full: {e:#}");
            eprintln!("error: {}", stopcaster::error_line(e.as_ref(), &targets));
            ExitCode::FAILURE
        }
    }
}

// Over 80 lines on purpose: a flat dispatch, one short arm per command, read as one list.
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
        Command::Cancel(args) => {
            let summary = stopcaster::run_cancel(&args, &mut std::io::stdout()).await?;
            Ok(if summary.settled() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
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
        Command::Migrate {
            queues: true,
            broker,
            ..
        } => {
            stopcaster::run_migrate_broker(&broker, &mut std::io::stdout()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { database, .. } => {
            stopcaster::migrate(&database.database_url).await?;
            eprintln!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Stop {
            caster_id,
            api,
            database,
            actor,
        } => Ok(stopcaster::run_stop(&caster_id, &api, &database.database_url, &actor).await?),
        Command::Pause(args) => {
            stopcaster::run_pause(&args, &mut std::io::stdout()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Resume(args) => {
            stopcaster::run_resume(&args, &mut std::io::stdout()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(args) => {
            stopcaster::run_audit(&args, &mut std::io::stdout()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dashboard(args) => {
            let shutdown = CancellationToken::new();
            tokio::spawn(signal_shutdown(shutdown.clone()));
            stopcaster::run_dashboard(args, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            let shutdown = CancellationToken::new();
            tokio::spawn(signal_shutdown(shutdown.clone()));
            // On a signal the run is dropped, and with it its worker processes, which are
            // killed: an interrupted bench leaves no worker behind on its queues.
            match shutdown.run_until_cancelled(bench::run(args)).await {
                Some(done) => {
                    done?;
                    Ok(ExitCode::SUCCESS)
                }
                None => Ok(ExitCode::from(130)),
            }
        }
        Command::FakeLive(args) => {
            let shutdown = CancellationToken::new();
            tokio::spawn(signal_shutdown(shutdown.clone()));
            fake_live::run(args, shutdown).await?;
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
