//! Every SQL statement of the project, over one `PgPool`: this file holds the pools, the
//! migrations and the rule for which database errors are worth waiting out; each table's
//! concern has a file ([`accounts`], [`jobs`], [`pacer`], [`parking`], [`pauses`], [`operator_pauses`], [`audit`], [`reports`], [`replays`],
//! [`schedule`], [`dashboard`], [`recent_calls`]). Callers get typed rows; the conditions that keep records exact
//! (a terminal status is written once, attempt numbers come from one atomic counter) live in
//! the statements themselves.
//!
//! Every statement whose text is fixed is a `sqlx::query!` (or `query_as!`, `query_scalar!`):
//! its columns, parameters and their nullability are checked against the schema at build
//! time, from `.sqlx/` at the workspace root (the build runs with `SQLX_OFFLINE`, see
//! `.cargo/config.toml`), so a renamed column or a changed type fails the build instead of a
//! running worker. Only the filtered lists of `report` and the dashboard build their text at
//! run time; they read typed rows (`FromRow`) by column name. After changing a statement or
//! adding a migration, `scripts/check-sql --prepare` rewrites `.sqlx/`; CI checks it.
//!
//! Depends on [`crate::domain`] and the outcome and client settings of [`stopcaster_live`]; nothing here decides
//! what a job should do next.

mod accounts;
mod audit;
mod dashboard;
mod jobs;
mod operator_pauses;
mod pacer;
mod parking;
mod pauses;
mod recent_calls;
mod replays;
mod reports;
mod schedule;

pub(crate) use accounts::{
    Backlog, CallErrors, account_backlog, account_errors, account_seen, pause_history,
};
pub(crate) use audit::{AuditRow, audit_rows, record_action};
pub(crate) use dashboard::{
    AttemptRow, BatchRow, CallsInSecond, Cursor, JobDetail, LatestQuota, PauseRow, ReplayRow,
    account_pauses, calls_per_second, fold_job_counts, job_counts, job_counts_rows, job_detail,
    latest_quotas, pending_by_account, recent_batches, scheduled_jobs, search_jobs,
};
pub use dashboard::{JobSearch, explain_search};
pub(crate) use jobs::{
    Answered, AttemptStart, JobState, RejectedMessage, ScheduledCall, claim_lease, conclude_job,
    finish_attempt, finish_given_back_attempt, is_dead_lettered, mark_dead_lettered, open_job,
    record_rejected, start_attempt,
};
pub(crate) use operator_pauses::{OperatorPause, operator_pauses, pause_account, resume_account};
pub use pacer::pacer_state;
pub(crate) use pacer::{push_back_pacer, release_pacer_slot, reserve_pacer_slots, throttle_pacer};
pub(crate) use parking::{claim_unparked, park_job, release_parked, waiting};
pub(crate) use pauses::{clear_pauses, record_pause, withdraw_attempt};
pub(crate) use recent_calls::{count_recent_calls, forget_recent_call};
pub(crate) use replays::{ReplayRecord, reopen_for_replay};
pub(crate) use reports::{
    JobFilter, JobRow, ReportSummary, call_totals, filter_job_ids, report_jobs, report_summary,
};
pub use reports::{call_span, committed_transactions, count_finished_jobs, count_jobs_with_status};
pub(crate) use schedule::{
    CancelOutcome, CancelRow, DueJob, cancel_jobs, claim_due, next_due, preview_cancel,
    staged_backlog,
};

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{
    ConnectOptions, Connection as _, PgConnection, PgPool, Postgres, migrate::MigrateDatabase,
};

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Creates the database if it is missing and applies `migrations/`.
pub async fn migrate(database_url: &str) -> Result<PgPool, sqlx::Error> {
    if !Postgres::database_exists(database_url).await? {
        match Postgres::create_database(database_url).await {
            Ok(()) => tracing::info!("created the database"),
            // Another replica created it between the check and here.
            Err(e)
                if Postgres::database_exists(database_url)
                    .await
                    .unwrap_or(false) =>
            {
                tracing::debug!(error = %e, "database appeared concurrently")
            }
            Err(e) => return Err(e),
        }
    }
    let pool = pool(database_url, 16).await?;
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// A connection pool that waits at most a few seconds for a connection, so that a database
/// outage surfaces as errors the caller retries rather than as a hang.
pub async fn pool(database_url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = database_url
        .parse::<PgConnectOptions>()?
        .disable_statement_logging();
    pool_options()
        .max_connections(max_connections)
        .connect_with(options)
        .await
}

/// A connection that sat idle this long is checked with a round trip before it is handed out.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Pool options shared by every pool: a few seconds' wait at most for a connection, and a
/// liveness check only for a connection that sat idle. sqlx's default checks every connection
/// it hands out with a round trip of its own (and again, always, as it takes it back), which
/// on a busy worker doubled the round trips of each statement. A connection in steady use
/// needs no check: if the database went away under it, its next statement fails, the caller
/// retries, and the pool drops the broken connection as it takes it back.
fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= CHECK_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// How long a one-shot command waits for the database to answer its first connection.
const FIRST_CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// A pool for a one-shot command (`report`, `stop`), after one connection made by hand: a
/// database that is down, missing or refusing the login is an error at once, with its real
/// cause. A pool alone retries a refused connection until its acquire timeout and then says
/// only that it timed out, which suits the worker (it waits out outages) but not a command
/// an operator is waiting for.
pub(crate) async fn pool_checked(
    database_url: &str,
    max_connections: u32,
) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = database_url
        .parse::<PgConnectOptions>()?
        .disable_statement_logging();
    let first = tokio::time::timeout(
        FIRST_CONNECTION_TIMEOUT,
        PgConnection::connect_with(&options),
    )
    .await
    .map_err(|_| {
        sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer from the database",
        ))
    })??;
    first.close().await?;
    pool(database_url, max_connections).await
}

/// A small pool for the shared pacer whose commits do not wait for the WAL flush
/// (`synchronous_commit = off`): a reservation then takes one round trip, evenly.
pub(crate) async fn pacer_pool(database_url: &str) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = database_url
        .parse::<PgConnectOptions>()?
        .options([("synchronous_commit", "off")])
        .disable_statement_logging();
    pool_options()
        .max_connections(4)
        .connect_with(options)
        .await
}

/// Drops a database (a benchmark's own), closing its connections; `admin_url` names another
/// database on the same server. The name is quoted as an identifier.
pub async fn drop_database(admin_url: &str, name: &str) -> Result<(), sqlx::Error> {
    let admin = PgPool::connect(admin_url).await?;
    let quoted = name.replace('"', "\"\"");
    let result = sqlx::query(&format!(
        "DROP DATABASE IF EXISTS \"{quoted}\" WITH (FORCE)"
    ))
    .execute(&admin)
    .await;
    admin.close().await;
    result.map(drop)
}

/// The waits between tries while the database is unreachable: 100 ms doubling to 5 s, jittered
/// so that replicas cut off together do not return together; endless, so callers bound it
/// (the hold cap, a shutdown). `backon` keeps this state in memory, which suits a reconnect;
/// a job's retry delays come from [`crate::worker::backoff`], whose state lives in the job row.
pub(crate) fn unavailable_backoff() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
}

/// True for errors that mean "the database is unreachable right now" (retry later), as opposed
/// to errors in what we asked.
pub(crate) fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            // admin_shutdown, crash_shutdown, cannot_connect_now, connection exceptions,
            // serialization failures.
            matches!(db.code().as_deref(), Some(c) if c.starts_with("08") || c.starts_with("57P") || c == "40001" || c == "40P01")
        }
        _ => false,
    }
}
