//! Every SQL statement of the project, over one `PgPool`. Callers get typed rows; the
//! conditions that keep records exact (a terminal status is written once, attempt numbers come
//! from one atomic counter) live in the statements themselves.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool, Postgres, Row, migrate::MigrateDatabase};
use time::OffsetDateTime;

use crate::api::CallOutcome;
use crate::domain::{Job, JobId, RegionId};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

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
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
}

/// A small pool for the shared pacer whose commits do not wait for the WAL flush
/// (`synchronous_commit = off`): a reservation then takes one round trip, evenly.
pub async fn pacer_pool(database_url: &str) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = database_url
        .parse::<PgConnectOptions>()?
        .options([("synchronous_commit", "off")])
        .disable_statement_logging();
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
}

/// The waits between tries while the database is unreachable: 100 ms doubling to 5 s, jittered
/// so that replicas cut off together do not return together; endless, so callers bound it
/// (the hold cap, a shutdown). `backon` keeps this state in memory, which suits a reconnect;
/// a job's retry delays come from [`crate::backoff`], whose state lives in the job row.
pub fn unavailable_backoff() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
}

/// True for errors that mean "the database is unreachable right now" (retry later), as opposed
/// to errors in what we asked.
pub fn is_transient(e: &sqlx::Error) -> bool {
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

/// A job's status column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    Pending,
    Succeeded,
    Failed,
    Rejected,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 4] = [
        JobStatus::Pending,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        self != JobStatus::Pending
    }
}

/// A malformed message, as recorded.
#[derive(Debug)]
pub struct RejectedMessage<'a> {
    pub job_id: JobId,
    pub caster_id: Option<&'a str>,
    pub batch_id: Option<&'a str>,
    pub payload: &'a str,
    pub payload_escaped: bool,
    pub reason: &'a str,
}

/// Records a rejected message. False when a row with its job id already exists (a redelivery,
/// or a malformed copy of a known job): that row is left as it is.
pub async fn record_rejected(pool: &PgPool, m: &RejectedMessage<'_>) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO caster_stop_jobs
           (job_id, caster_id, batch_id, status, conclusion, error_code, error_message,
            payload, payload_escaped, finished_at)
         VALUES ($1, $2, $3, 'rejected', 'rejected', 'Rejected', $4, $5, $6, now())
         ON CONFLICT (job_id) DO NOTHING",
    )
    .bind(m.job_id.as_uuid())
    .bind(m.caster_id)
    .bind(m.batch_id)
    .bind(m.reason)
    .bind(m.payload)
    .bind(m.payload_escaped)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// What the database knows of a job when a delivery of it starts.
#[derive(Clone, Debug)]
pub struct JobState {
    pub status: JobStatus,
    pub attempts: u32,
    /// Attempts allowed in all (the configured maximum, raised by replays).
    pub attempt_budget: Option<u32>,
    /// An earlier attempt may have stopped the studio without our knowing (timeout, lost
    /// answer, crash mid-call, or a call another worker is making right now).
    pub unknown_outcome: bool,
    pub next_attempt_at: Option<OffsetDateTime>,
    /// For a failed or rejected job: its dead letter was confirmed by the broker.
    pub dead_lettered: bool,
}

/// Inserts the job as `pending`, or finds it.
pub async fn open_job(
    pool: &PgPool,
    job: &Job,
    region: &RegionId,
    payload: &str,
    payload_escaped: bool,
) -> Result<JobState, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "INSERT INTO caster_stop_jobs
           (job_id, caster_id, region_id, batch_id, account, payload, payload_escaped)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (job_id) DO UPDATE SET updated_at = caster_stop_jobs.updated_at
         RETURNING status, attempts, attempt_budget, next_attempt_at,
                   dead_lettered_at IS NOT NULL AS dead_lettered",
    )
    .bind(job.job_id.as_uuid())
    .bind(job.caster_id.as_str())
    .bind(region.as_str())
    .bind(job.batch_id.as_deref())
    .bind(job.account.as_ref().map(|a| a.as_str()))
    .bind(payload)
    .bind(payload_escaped)
    .fetch_one(&mut *tx)
    .await?;
    let status: String = row.get("status");
    let status = JobStatus::parse(&status).unwrap_or(JobStatus::Pending);
    let unknown_outcome = status == JobStatus::Pending
        && sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM caster_stop_attempts
                            WHERE job_id = $1 AND (outcome IS NULL OR (outcome = 'transport-error'
                              AND error_code IS DISTINCT FROM 'Transport.Connect')))",
        )
        .bind(job.job_id.as_uuid())
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(JobState {
        status,
        attempts: row.get::<i32, _>("attempts") as u32,
        attempt_budget: row
            .get::<Option<i32>, _>("attempt_budget")
            .map(|b| b as u32),
        unknown_outcome,
        next_attempt_at: row.get("next_attempt_at"),
        dead_lettered: row.get("dead_lettered"),
    })
}

/// What [`start_attempt`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptStart {
    /// Attempt number `n` is recorded and this worker holds the job until the lease ends.
    Started(u32),
    /// The job is terminal: another delivery finished it.
    NotPending,
    /// Another live worker holds the job for a call right now.
    ClaimedElsewhere,
}

/// Numbers and records a new attempt before its call, and claims the job for `lease` so that
/// no other worker calls for it meanwhile.
pub async fn start_attempt(
    pool: &PgPool,
    job_id: JobId,
    worker: &str,
    lease: Duration,
) -> Result<AttemptStart, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "UPDATE caster_stop_jobs j
         SET attempts = j.attempts + CASE WHEN free THEN 1 ELSE 0 END,
             claimed_by = CASE WHEN free THEN $2 ELSE j.claimed_by END,
             claimed_until = CASE WHEN free THEN now() + make_interval(secs => $3)
                                  ELSE j.claimed_until END,
             updated_at = CASE WHEN free THEN now() ELSE j.updated_at END
         FROM (SELECT job_id, (claimed_until IS NULL OR claimed_until < now() OR claimed_by = $2)
                              AS free
               FROM caster_stop_jobs WHERE job_id = $1 FOR UPDATE) c
         WHERE j.job_id = c.job_id AND j.status = 'pending'
         RETURNING j.attempts, c.free",
    )
    .bind(job_id.as_uuid())
    .bind(worker)
    .bind(lease.as_secs_f64())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(AttemptStart::NotPending);
    };
    if !row.get::<bool, _>("free") {
        return Ok(AttemptStart::ClaimedElsewhere);
    }
    // Nobody else holds the job, so an attempt still open was cut short by a crash: its outcome
    // is unknown.
    sqlx::query(
        "UPDATE caster_stop_attempts
         SET outcome = 'transport-error', error_code = 'Interrupted',
             error_message = 'the worker stopped during the call; its outcome is unknown',
             finished_at = clock_timestamp()
         WHERE job_id = $1 AND outcome IS NULL",
    )
    .bind(job_id.as_uuid())
    .execute(&mut *tx)
    .await?;
    let attempt: i32 = row.get("attempts");
    sqlx::query("INSERT INTO caster_stop_attempts (job_id, attempt, worker) VALUES ($1, $2, $3)")
        .bind(job_id.as_uuid())
        .bind(attempt)
        .bind(worker)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(AttemptStart::Started(attempt as u32))
}

/// A terminal status to write with the last attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub status: JobStatus,
    pub conclusion: &'static str,
    pub evidence_request_id: Option<String>,
}

/// Completes an attempt and, in the same transaction, the job's last-error columns and its
/// terminal status if `verdict` is given. Returns false if the job was already terminal (another
/// delivery got there first); the attempt is recorded either way.
pub async fn finish_attempt(
    pool: &PgPool,
    job_id: JobId,
    attempt: u32,
    outcome: &CallOutcome,
    verdict: Option<&Verdict>,
    next_attempt_at: Option<OffsetDateTime>,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE caster_stop_attempts
         SET finished_at = clock_timestamp(), http_status = $3, request_id = $4,
             error_code = $5, error_message = $6, outcome = $7
         WHERE job_id = $1 AND attempt = $2",
    )
    .bind(job_id.as_uuid())
    .bind(attempt as i32)
    .bind(outcome.http_status().map(i32::from))
    .bind(outcome.request_id())
    .bind(outcome.error_code())
    .bind(outcome.error_message())
    .bind(outcome.label())
    .execute(&mut *tx)
    .await?;
    let succeeded_call = matches!(outcome, CallOutcome::Stopped { .. });
    let stopped = verdict.is_some_and(|v| v.status == JobStatus::Succeeded);
    let request_id = if succeeded_call || !stopped {
        outcome.request_id()
    } else {
        None
    };
    let updated = sqlx::query(
        "UPDATE caster_stop_jobs SET
           updated_at = now(),
           request_id = coalesce($2, CASE WHEN $9 THEN NULL ELSE request_id END),
           error_code = CASE WHEN $3 THEN error_code ELSE $4 END,
           error_message = CASE WHEN $3 THEN error_message ELSE $5 END,
           http_status = CASE WHEN $3 THEN http_status ELSE $6 END,
           status = coalesce($7, status),
           conclusion = coalesce($8, conclusion),
           evidence_request_id = $10,
           next_attempt_at = $11,
           claimed_by = NULL,
           claimed_until = NULL,
           finished_at = CASE WHEN $7 IS NULL THEN NULL ELSE now() END
         WHERE job_id = $1 AND status = 'pending'",
    )
    .bind(job_id.as_uuid())
    .bind(request_id)
    .bind(succeeded_call)
    .bind(outcome.error_code())
    .bind(outcome.error_message())
    .bind(outcome.http_status().map(i32::from))
    .bind(verdict.map(|v| v.status.as_str()))
    .bind(verdict.map(|v| v.conclusion))
    .bind(stopped)
    .bind(verdict.and_then(|v| v.evidence_request_id.as_deref()))
    .bind(next_attempt_at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(updated.rows_affected() == 1)
}

/// Writes a terminal status without a call (a job found out of attempts when picked up
/// again). False if it was no longer pending.
pub async fn conclude_job(
    pool: &PgPool,
    job_id: JobId,
    verdict: &Verdict,
    error: Option<(&str, &str)>,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE caster_stop_jobs
         SET status = $2, conclusion = $3, updated_at = now(), finished_at = now(),
             claimed_by = NULL, claimed_until = NULL,
             error_code = coalesce($4, error_code), error_message = coalesce($5, error_message)
         WHERE job_id = $1 AND status = 'pending'",
    )
    .bind(job_id.as_uuid())
    .bind(verdict.status.as_str())
    .bind(verdict.conclusion)
    .bind(error.map(|e| e.0))
    .bind(error.map(|e| e.1))
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Notes that the broker confirmed a job's dead letter.
pub async fn mark_dead_lettered(pool: &PgPool, job_id: JobId) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE caster_stop_jobs SET dead_lettered_at = now() WHERE job_id = $1")
        .bind(job_id.as_uuid())
        .execute(pool)
        .await?;
    Ok(())
}

/// Whether a rejected or failed job's dead letter is already confirmed.
pub async fn is_dead_lettered(pool: &PgPool, job_id: JobId) -> Result<bool, sqlx::Error> {
    let done: Option<bool> = sqlx::query_scalar(
        "SELECT dead_lettered_at IS NOT NULL FROM caster_stop_jobs WHERE job_id = $1",
    )
    .bind(job_id.as_uuid())
    .fetch_optional(pool)
    .await?;
    Ok(done.unwrap_or(false))
}

/// A slot of the shared schedule, on the database's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub slot: OffsetDateTime,
    /// The database's clock when it handed the slot out.
    pub now: OffsetDateTime,
}

/// Takes the next slot of `account`'s shared schedule, at least `lead` from now.
pub async fn reserve_pacer_slot(
    pool: &PgPool,
    account: &str,
    period: Duration,
    recovery_step: f64,
    lead: Duration,
) -> Result<Reservation, sqlx::Error> {
    let sql = "UPDATE stopcaster_pacer p
         SET last_slot = greatest(p.tat, c.now + make_interval(secs => $4)),
             tat = greatest(p.tat, c.now + make_interval(secs => $4))
                   + make_interval(secs => $2 * p.slowdown),
             slowdown = greatest(1.0, p.slowdown - $3)
         FROM (SELECT clock_timestamp() AS now) c
         WHERE p.account = $1
         RETURNING p.last_slot, c.now";
    loop {
        let row = sqlx::query(sql)
            .bind(account)
            .bind(period.as_secs_f64())
            .bind(recovery_step)
            .bind(lead.as_secs_f64())
            .fetch_optional(pool)
            .await?;
        if let Some(row) = row {
            return Ok(Reservation {
                slot: row.get("last_slot"),
                now: row.get("now"),
            });
        }
        sqlx::query("INSERT INTO stopcaster_pacer (account) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(account)
            .execute(pool)
            .await?;
    }
}

/// Gives a slot back if nobody reserved after it, so an unused slot leaves no gap.
pub async fn release_pacer_slot(
    pool: &PgPool,
    account: &str,
    slot: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE stopcaster_pacer SET tat = last_slot WHERE account = $1 AND last_slot = $2",
    )
    .bind(account)
    .bind(slot)
    .execute(pool)
    .await?;
    Ok(())
}

/// Moves `account`'s schedule back by `by` (a call left that much after its slot).
pub async fn push_back_pacer(
    pool: &PgPool,
    account: &str,
    by: Duration,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE stopcaster_pacer SET tat = tat + make_interval(secs => $2) WHERE account = $1",
    )
    .bind(account)
    .bind(by.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(())
}

/// Slows `account` down after a throttled call, at most once per `pause` however many workers
/// report it: pushes the schedule back by `pause` and multiplies `slowdown`.
pub async fn throttle_pacer(
    pool: &PgPool,
    account: &str,
    pause: Duration,
    factor: f64,
    max_slowdown: f64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE stopcaster_pacer
         SET tat = greatest(tat, clock_timestamp()) + make_interval(secs => $2),
             slowdown = least($4, slowdown * $3),
             throttled_at = clock_timestamp()
         WHERE account = $1
           AND (throttled_at IS NULL OR throttled_at < clock_timestamp() - make_interval(secs => $2))",
    )
    .bind(account)
    .bind(pause.as_secs_f64())
    .bind(factor)
    .bind(max_slowdown)
    .execute(pool)
    .await?;
    Ok(())
}

/// The pacer row of an account: (schedule, slowdown).
pub async fn pacer_state(
    pool: &PgPool,
    account: &str,
) -> Result<Option<(OffsetDateTime, f64)>, sqlx::Error> {
    let row = sqlx::query("SELECT tat, slowdown FROM stopcaster_pacer WHERE account = $1")
        .bind(account)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|r| (r.get("tat"), r.get("slowdown"))))
}

// ---- `stopcaster report` (src/report.rs) ----

/// The filters of `stopcaster report`; `None` means "any".
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    pub batch_id: Option<String>,
    pub caster_id: Option<String>,
    pub status: Option<JobStatus>,
    /// Jobs created at most this long ago (by the database's clock).
    pub since: Option<Duration>,
}

/// Appends the `WHERE` clause of `filter` (over the alias `j`). Only the conditions asked for
/// are written, as plain equalities, so that the planner can use `caster_stop_jobs_batch`,
/// `_caster`, `_status` and `_created` (a `$1 IS NULL OR ...` form would defeat them). True
/// when a `WHERE` was written.
fn push_job_filter<'a>(qb: &mut sqlx::QueryBuilder<'a, Postgres>, filter: &'a JobFilter) -> bool {
    let mut sep = " WHERE ";
    if let Some(batch) = &filter.batch_id {
        qb.push(sep).push("j.batch_id = ").push_bind(batch.as_str());
        sep = " AND ";
    }
    if let Some(caster) = &filter.caster_id {
        qb.push(sep)
            .push("j.caster_id = ")
            .push_bind(caster.as_str());
        sep = " AND ";
    }
    if let Some(status) = filter.status {
        qb.push(sep).push("j.status = ").push_bind(status.as_str());
        sep = " AND ";
    }
    if let Some(since) = filter.since {
        qb.push(sep)
            .push("j.created_at >= now() - make_interval(secs => ")
            .push_bind(since.as_secs_f64())
            .push(")");
        sep = " AND ";
    }
    sep == " AND "
}

/// One job as `report` lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobReportRow {
    pub job_id: uuid::Uuid,
    pub caster_id: Option<String>,
    pub region_id: Option<String>,
    pub batch_id: Option<String>,
    pub status: String,
    pub conclusion: Option<String>,
    pub request_id: Option<String>,
    pub error_code: Option<String>,
    pub http_status: Option<i32>,
    pub attempts: i32,
    pub replays: i32,
    pub created_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
}

/// The text of the `report` job query (also what the EXPLAIN checks in the report ran).
pub fn report_jobs_query(
    filter: &JobFilter,
    limit: Option<u32>,
) -> sqlx::QueryBuilder<'_, Postgres> {
    let mut qb = sqlx::QueryBuilder::new(
        "SELECT j.job_id, j.caster_id, j.region_id, j.batch_id, j.status, j.conclusion,
                j.request_id, j.error_code, j.http_status, j.attempts, j.replays,
                j.created_at, j.finished_at
         FROM caster_stop_jobs j",
    );
    push_job_filter(&mut qb, filter);
    qb.push(" ORDER BY j.created_at DESC, j.job_id");
    if let Some(limit) = limit {
        qb.push(" LIMIT ").push_bind(i64::from(limit));
    }
    qb
}

/// Jobs matching `filter`, newest first, at most `limit` (`None`: all).
pub async fn report_jobs(
    pool: &PgPool,
    filter: &JobFilter,
    limit: Option<u32>,
) -> Result<Vec<JobReportRow>, sqlx::Error> {
    let rows = report_jobs_query(filter, limit)
        .build()
        .fetch_all(pool)
        .await?;
    Ok(rows
        .iter()
        .map(|r| JobReportRow {
            job_id: r.get("job_id"),
            caster_id: r.get("caster_id"),
            region_id: r.get("region_id"),
            batch_id: r.get("batch_id"),
            status: r.get("status"),
            conclusion: r.get("conclusion"),
            request_id: r.get("request_id"),
            error_code: r.get("error_code"),
            http_status: r.get("http_status"),
            attempts: r.get("attempts"),
            replays: r.get("replays"),
            created_at: r.get("created_at"),
            finished_at: r.get("finished_at"),
        })
        .collect())
}

/// Totals over the jobs matching a filter (no limit) and their attempts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportSummary {
    /// (status, jobs), every status listed, zeros included.
    pub by_status: Vec<(String, i64)>,
    /// StopCaster calls made (attempt rows).
    pub calls: i64,
    pub first_call: Option<OffsetDateTime>,
    pub last_call: Option<OffsetDateTime>,
    /// Attempts beyond each job's first.
    pub retried_attempts: i64,
    /// Attempts answered `Throttling*`.
    pub throttled_attempts: i64,
    /// Failed and rejected jobs by their error code (the conclusion where there is none),
    /// most frequent first.
    pub failures_by_code: Vec<(String, i64)>,
}

impl ReportSummary {
    pub fn count(&self, status: JobStatus) -> i64 {
        self.by_status
            .iter()
            .find(|(s, _)| s == status.as_str())
            .map_or(0, |(_, n)| *n)
    }

    pub fn total(&self) -> i64 {
        self.by_status.iter().map(|(_, n)| n).sum()
    }
}

/// The summary of the jobs matching `filter`. Three statements, each driven by the same
/// filter, so that a batch summary reads the batch's rows through `caster_stop_jobs_batch` and
/// their attempts through the attempts' primary key.
pub async fn report_summary(
    pool: &PgPool,
    filter: &JobFilter,
) -> Result<ReportSummary, sqlx::Error> {
    let mut qb = sqlx::QueryBuilder::new("SELECT j.status, count(*) AS n FROM caster_stop_jobs j");
    push_job_filter(&mut qb, filter);
    qb.push(" GROUP BY j.status");
    let counts: Vec<(String, i64)> = qb
        .build()
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| (r.get("status"), r.get("n")))
        .collect();
    let by_status = JobStatus::ALL
        .iter()
        .map(|s| {
            let n = counts
                .iter()
                .find(|(c, _)| c == s.as_str())
                .map_or(0, |(_, n)| *n);
            (s.as_str().to_owned(), n)
        })
        .collect();

    let mut qb = sqlx::QueryBuilder::new(
        "SELECT count(*) AS calls, min(a.started_at) AS first_call, max(a.started_at) AS last_call,
                count(*) FILTER (WHERE a.attempt > 1) AS retried,
                count(*) FILTER (WHERE a.error_code LIKE 'Throttling%') AS throttled
         FROM caster_stop_jobs j JOIN caster_stop_attempts a ON a.job_id = j.job_id",
    );
    push_job_filter(&mut qb, filter);
    let row = qb.build().fetch_one(pool).await?;

    let mut qb = sqlx::QueryBuilder::new(
        "SELECT coalesce(j.error_code, j.conclusion, '') AS code, count(*) AS n
         FROM caster_stop_jobs j",
    );
    let filtered = push_job_filter(&mut qb, filter);
    qb.push(if filtered { " AND " } else { " WHERE " })
        .push("j.status IN ('failed', 'rejected') GROUP BY 1 ORDER BY 2 DESC, 1");
    let failures_by_code = qb
        .build()
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| (r.get("code"), r.get("n")))
        .collect();

    Ok(ReportSummary {
        by_status,
        calls: row.get("calls"),
        first_call: row.get("first_call"),
        last_call: row.get("last_call"),
        retried_attempts: row.get("retried"),
        throttled_attempts: row.get("throttled"),
        failures_by_code,
    })
}

// ---- `stopcaster dead-letters replay` (src/dead_letters.rs) ----

/// What a replay found and did to a job's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayRecord {
    /// `None`: the job has no row (the worker creates it when the message comes back).
    pub previous_status: Option<JobStatus>,
    pub previous_error_code: Option<String>,
    pub caster_id: Option<String>,
    /// The row was reopened: a failed job is pending again with a fresh attempt budget, or a
    /// rejected message's dead letter was cleared so that the worker dead-letters it again.
    pub reopened: bool,
}

/// Reopens a job for a replay and records the replay in `caster_stop_replays`, in the caller's
/// transaction: the caller commits only once the message is back on the work queue, and the
/// row lock taken here makes a worker that receives it meanwhile wait for that commit.
///
/// Only a `failed` row goes back to `pending` (budget: `attempts + max_attempts` more calls);
/// a `rejected` row stays rejected but loses `dead_lettered_at`, since its message will be
/// rejected again and must be dead-lettered again. `pending` and `succeeded` rows are left
/// alone, which makes a repeated replay harmless.
pub async fn reopen_for_replay(
    conn: &mut sqlx::PgConnection,
    job_id: JobId,
    max_attempts: u32,
    reason: Option<&str>,
) -> Result<ReplayRecord, sqlx::Error> {
    let row = sqlx::query(
        "SELECT status, error_code, caster_id FROM caster_stop_jobs WHERE job_id = $1 FOR UPDATE",
    )
    .bind(job_id.as_uuid())
    .fetch_optional(&mut *conn)
    .await?;
    let mut record = ReplayRecord {
        previous_status: None,
        previous_error_code: None,
        caster_id: None,
        reopened: false,
    };
    if let Some(row) = row {
        let status: String = row.get("status");
        record.previous_status = JobStatus::parse(&status);
        record.previous_error_code = row.get("error_code");
        record.caster_id = row.get("caster_id");
        let reopened = match record.previous_status {
            Some(JobStatus::Failed) => sqlx::query(
                "UPDATE caster_stop_jobs
                     SET status = 'pending', conclusion = NULL, finished_at = NULL,
                         dead_lettered_at = NULL, next_attempt_at = NULL,
                         claimed_by = NULL, claimed_until = NULL,
                         attempt_budget = attempts + $2, replays = replays + 1,
                         updated_at = now()
                     WHERE job_id = $1 AND status = 'failed'",
            )
            .bind(job_id.as_uuid())
            .bind(i32::try_from(max_attempts).unwrap_or(i32::MAX))
            .execute(&mut *conn)
            .await?
            .rows_affected(),
            Some(JobStatus::Rejected) => sqlx::query(
                "UPDATE caster_stop_jobs
                     SET dead_lettered_at = NULL, replays = replays + 1, updated_at = now()
                     WHERE job_id = $1 AND status = 'rejected'",
            )
            .bind(job_id.as_uuid())
            .execute(&mut *conn)
            .await?
            .rows_affected(),
            _ => 0,
        };
        record.reopened = reopened == 1;
    }
    sqlx::query(
        "INSERT INTO caster_stop_replays
           (job_id, previous_status, previous_error_code, reason, reopened)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(job_id.as_uuid())
    .bind(record.previous_status.map(JobStatus::as_str))
    .bind(record.previous_error_code.as_deref())
    .bind(reason)
    .bind(record.reopened)
    .execute(&mut *conn)
    .await?;
    Ok(record)
}
