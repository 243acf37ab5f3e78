//! The dashboard's queries: job counts from the ledger `caster_stop_job_counts` (kept by
//! triggers, see `migrations/0005_dashboard_indexes.sql`), calls per second, a job with its
//! attempts, and the filtered job list with keyset pagination over (created_at DESC, job_id
//! DESC), each filter served by an index ending with that pair; scheduled jobs and paused
//! accounts. `stopcaster dashboard` applies the migrations at start, so every table and column
//! read here exists.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::{PgPool, Postgres, QueryBuilder};
use time::OffsetDateTime;
use uuid::Uuid;

use super::reports::{JOB_COLUMNS, JobRow};

/// Where a page of the filtered list starts: the last row of the page before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: OffsetDateTime,
    pub job_id: Uuid,
}

/// The dashboard's search; `None` means "any". Each condition is written only when asked for,
/// as a plain comparison, so that the planner picks the index for it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobSearch {
    pub status: Option<String>,
    pub batch_id: Option<String>,
    pub caster_id: Option<String>,
    pub error_code: Option<String>,
    /// A RequestId of any of the job's calls (the successful one, an error, the evidence).
    pub request_id: Option<String>,
    /// Created at or after.
    pub from: Option<OffsetDateTime>,
    /// Created before.
    pub to: Option<OffsetDateTime>,
}

impl JobSearch {
    fn push_where<'a>(&'a self, qb: &mut QueryBuilder<'a, Postgres>, after: Option<Cursor>) {
        let mut sep = " WHERE ";
        let mut and = |qb: &mut QueryBuilder<'a, Postgres>| {
            qb.push(sep);
            sep = " AND ";
        };
        if let Some(v) = &self.status {
            and(qb);
            qb.push("j.status = ").push_bind(v.as_str());
        }
        if let Some(v) = &self.batch_id {
            and(qb);
            qb.push("j.batch_id = ").push_bind(v.as_str());
        }
        if let Some(v) = &self.caster_id {
            and(qb);
            qb.push("j.caster_id = ").push_bind(v.as_str());
        }
        if let Some(v) = &self.error_code {
            and(qb);
            qb.push("j.error_code = ").push_bind(v.as_str());
        }
        if let Some(v) = &self.request_id {
            and(qb);
            qb.push(
                "j.job_id IN (SELECT a.job_id FROM caster_stop_attempts a WHERE a.request_id = ",
            )
            .push_bind(v.as_str())
            .push(")");
        }
        if let Some(v) = self.from {
            and(qb);
            qb.push("j.created_at >= ").push_bind(v);
        }
        if let Some(v) = self.to {
            and(qb);
            qb.push("j.created_at < ").push_bind(v);
        }
        if let Some(c) = after {
            and(qb);
            qb.push("(j.created_at, j.job_id) < (")
                .push_bind(c.created_at)
                .push(", ")
                .push_bind(c.job_id)
                .push(")");
        }
    }
}

fn search_query(
    explain: bool,
    search: &JobSearch,
    after: Option<Cursor>,
    limit: u32,
) -> QueryBuilder<'_, Postgres> {
    let mut qb = QueryBuilder::new(if explain { "EXPLAIN " } else { "" });
    qb.push(format_args!("SELECT {JOB_COLUMNS} FROM caster_stop_jobs j"));
    search.push_where(&mut qb, after);
    qb.push(" ORDER BY j.created_at DESC, j.job_id DESC LIMIT ")
        .push_bind(i64::from(limit));
    qb
}

/// Up to `limit` jobs matching `search`, newest first, after `after`.
pub(crate) async fn search_jobs(
    pool: &PgPool,
    search: &JobSearch,
    after: Option<Cursor>,
    limit: u32,
) -> Result<Vec<JobRow>, sqlx::Error> {
    search_query(false, search, after, limit)
        .build_query_as::<JobRow>()
        .fetch_all(pool)
        .await
}

/// The plan Postgres picks for a page of `search` (the benchmark prints it).
pub async fn explain_search(
    pool: &PgPool,
    search: &JobSearch,
    after: Option<Cursor>,
    limit: u32,
) -> Result<String, sqlx::Error> {
    let lines: Vec<String> = search_query(true, search, after, limit)
        .build_query_scalar()
        .fetch_all(pool)
        .await?;
    Ok(lines.join("\n"))
}

/// Jobs by status, from the ledger: every batch, or one. Statuses with no job are left out.
pub(crate) async fn job_counts(
    pool: &PgPool,
    batch_id: Option<&str>,
) -> Result<BTreeMap<String, i64>, sqlx::Error> {
    Ok(match batch_id {
        None => sqlx::query!(
            r#"SELECT status AS "status!", sum(jobs)::bigint AS "n!" FROM caster_stop_job_counts
               GROUP BY status HAVING sum(jobs) <> 0"#,
        )
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|r| (r.status, r.n))
        .collect(),
        Some(batch) => sqlx::query!(
            r#"SELECT status AS "status!", sum(jobs)::bigint AS "n!" FROM caster_stop_job_counts
               WHERE batch_id = $1 GROUP BY status HAVING sum(jobs) <> 0"#,
            batch,
        )
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|r| (r.status, r.n))
        .collect(),
    })
}

/// Folds the ledger into one row per batch and status (the sums do not change). Concurrent
/// writers are not blocked: rows they add meanwhile are left for the next fold.
pub(crate) async fn fold_job_counts(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let result = sqlx::query!(
        "WITH gone AS (DELETE FROM caster_stop_job_counts RETURNING *)
         INSERT INTO caster_stop_job_counts (batch_id, status, jobs, changed_at)
         SELECT batch_id, status, sum(jobs), max(changed_at) FROM gone
         GROUP BY batch_id, status HAVING sum(jobs) <> 0",
    )
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

/// Rows in the ledger (the dashboard folds it when it has grown).
pub(crate) async fn job_counts_rows(pool: &PgPool) -> Result<i64, sqlx::Error> {
    // An estimate is enough to decide, and free.
    sqlx::query_scalar!(
        r#"SELECT greatest(n_live_tup, 0)::bigint AS "n!" FROM pg_stat_user_tables
         WHERE relname = 'caster_stop_job_counts'"#,
    )
    .fetch_optional(pool)
    .await
    .map(|n| n.unwrap_or(0))
}

/// A batch in the list of batches.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct BatchRow {
    /// `None`: the jobs whose message named no batch.
    pub batch_id: Option<String>,
    pub jobs: i64,
    pub by_status: BTreeMap<String, i64>,
    /// When a job of the batch last arrived or changed status.
    #[serde(with = "time::serde::rfc3339")]
    pub last_change: OffsetDateTime,
}

/// The batches whose jobs changed most recently, at most `limit`.
pub(crate) async fn recent_batches(
    pool: &PgPool,
    limit: u32,
) -> Result<Vec<BatchRow>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"WITH s AS (
             SELECT batch_id, status, sum(jobs)::bigint AS n, max(changed_at) AS changed_at
             FROM caster_stop_job_counts GROUP BY batch_id, status)
         SELECT batch_id AS "batch_id?",
                jsonb_object_agg(status, n) FILTER (WHERE n <> 0) AS "by_status?",
                sum(n)::bigint AS "jobs!", max(changed_at) AS "last_change!"
         FROM s GROUP BY batch_id HAVING sum(n) <> 0
         ORDER BY max(changed_at) DESC, batch_id LIMIT $1"#,
        i64::from(limit),
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| BatchRow {
            batch_id: r.batch_id,
            jobs: r.jobs,
            by_status: r
                .by_status
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default(),
            last_change: r.last_change,
        })
        .collect())
}

/// Pending jobs of a batch by account (`None`: the default account), for its expected finish.
pub(crate) async fn pending_by_account(
    pool: &PgPool,
    batch_id: &str,
) -> Result<Vec<(Option<String>, i64)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT account AS "account?", count(*) AS "n!" FROM caster_stop_jobs
         WHERE batch_id = $1 AND status = 'pending' GROUP BY account ORDER BY account"#,
        batch_id,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.account, r.n)).collect())
}

/// Calls started in one second for one account.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct CallsInSecond {
    /// The job's account; `None` for the default one.
    pub account: Option<String>,
    /// Seconds before `now` (0: the current second).
    pub seconds_ago: i64,
    pub calls: i64,
    pub throttled: i64,
}

/// Calls per second over the last `window_secs` seconds, by account, and the database's `now`.
pub(crate) async fn calls_per_second(
    pool: &PgPool,
    window_secs: u32,
) -> Result<(OffsetDateTime, Vec<CallsInSecond>), sqlx::Error> {
    let now = sqlx::query_scalar!(r#"SELECT date_trunc('second', clock_timestamp()) AS "now!""#)
        .fetch_one(pool)
        .await?;
    let rows = sqlx::query_as!(
        CallsInSecond,
        r#"SELECT j.account AS "account?",
                greatest(floor(extract(epoch FROM $1 - date_trunc('second', a.started_at))), 0)::bigint
                    AS "seconds_ago!",
                count(*) AS "calls!",
                count(*) FILTER (WHERE a.error_code LIKE 'Throttling%') AS "throttled!"
         FROM caster_stop_attempts a JOIN caster_stop_jobs j ON j.job_id = a.job_id
         WHERE a.started_at >= $1 - make_interval(secs => $2)
         GROUP BY 1, 2 ORDER BY 1, 2 DESC"#,
        now,
        f64::from(window_secs.saturating_sub(1)),
    )
    .fetch_all(pool)
    .await?;
    Ok((now, rows))
}

/// The quota header of an account's latest answer (`Limit`, `Remain`), as its attempt recorded it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct LatestQuota {
    /// The job's account; `None` for the default one.
    pub account: Option<String>,
    pub limit: i32,
    pub remain: i32,
}

/// Each account's latest answer with a quota header among the calls started in the last
/// `window_secs` seconds (the chart's window: an account without a call there has no chart).
pub(crate) async fn latest_quotas(
    pool: &PgPool,
    window_secs: u32,
) -> Result<Vec<LatestQuota>, sqlx::Error> {
    sqlx::query_as!(
        LatestQuota,
        r#"SELECT DISTINCT ON (j.account)
                j.account AS "account?", a.quota_limit AS "limit!", a.quota_remain AS "remain!"
         FROM caster_stop_attempts a JOIN caster_stop_jobs j ON j.job_id = a.job_id
         WHERE a.started_at >= clock_timestamp() - make_interval(secs => $1)
           AND a.quota_limit IS NOT NULL AND a.quota_remain IS NOT NULL
         ORDER BY j.account, a.finished_at DESC"#,
        f64::from(window_secs),
    )
    .fetch_all(pool)
    .await
}

/// A job's row, as the job page shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct JobDetail {
    #[serde(flatten)]
    pub row: JobRow,
    pub evidence_request_id: Option<String>,
    pub error_message: Option<String>,
    pub payload: String,
    pub payload_escaped: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub dead_lettered_at: Option<OffsetDateTime>,
    /// Who cancelled the job and when.
    pub cancelled_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub cancelled_at: Option<OffsetDateTime>,
}

/// One StopCaster call of a job.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct AttemptRow {
    pub attempt: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    pub http_status: Option<i32>,
    pub request_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// `None` while the call is in flight.
    pub outcome: Option<String>,
    pub outcome_unknown: bool,
    pub worker: Option<String>,
}

/// One replay of a job by an operator.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct ReplayRow {
    #[serde(with = "time::serde::rfc3339")]
    pub replayed_at: OffsetDateTime,
    pub previous_status: Option<String>,
    pub previous_error_code: Option<String>,
    pub reason: Option<String>,
    pub reopened: bool,
}

/// A job, its calls and its replays; `None` if there is no such job.
pub(crate) async fn job_detail(
    pool: &PgPool,
    job_id: Uuid,
) -> Result<Option<(JobDetail, Vec<AttemptRow>, Vec<ReplayRow>)>, sqlx::Error> {
    let Some(detail) = job_detail_row(pool, job_id).await? else {
        return Ok(None);
    };
    let attempts = sqlx::query_as!(
        AttemptRow,
        "SELECT attempt, started_at, finished_at, http_status, request_id, error_code,
                error_message, outcome, outcome_unknown, worker
         FROM caster_stop_attempts WHERE job_id = $1 ORDER BY attempt",
        job_id,
    )
    .fetch_all(pool)
    .await?;
    let replays = sqlx::query_as!(
        ReplayRow,
        "SELECT replayed_at, previous_status, previous_error_code, reason, reopened
         FROM caster_stop_replays WHERE job_id = $1 ORDER BY replayed_at",
        job_id,
    )
    .fetch_all(pool)
    .await?;
    Ok(Some((detail, attempts, replays)))
}

async fn job_detail_row(pool: &PgPool, job_id: Uuid) -> Result<Option<JobDetail>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT job_id, caster_id, region_id, batch_id, status, conclusion, request_id,
                error_code, http_status, attempts, replays, created_at, finished_at, account,
                not_before, evidence_request_id, error_message, payload, payload_escaped,
                updated_at, next_attempt_at, dead_lettered_at, cancelled_by, cancelled_at
         FROM caster_stop_jobs WHERE job_id = $1",
        job_id,
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| JobDetail {
        row: JobRow {
            job_id: r.job_id,
            caster_id: r.caster_id,
            region_id: r.region_id,
            batch_id: r.batch_id,
            status: r.status,
            conclusion: r.conclusion,
            request_id: r.request_id,
            error_code: r.error_code,
            http_status: r.http_status,
            attempts: r.attempts,
            replays: r.replays,
            created_at: r.created_at,
            finished_at: r.finished_at,
            account: r.account,
            not_before: r.not_before,
        },
        evidence_request_id: r.evidence_request_id,
        error_message: r.error_message,
        payload: r.payload,
        payload_escaped: r.payload_escaped,
        updated_at: r.updated_at,
        next_attempt_at: r.next_attempt_at,
        dead_lettered_at: r.dead_lettered_at,
        cancelled_by: r.cancelled_by,
        cancelled_at: r.cancelled_at,
    }))
}

/// Scheduled jobs, earliest due first, at most `limit`, and how many there are.
pub(crate) async fn scheduled_jobs(
    pool: &PgPool,
    limit: u32,
) -> Result<(i64, Vec<JobRow>), sqlx::Error> {
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM caster_stop_jobs WHERE status = 'scheduled'"#
    )
    .fetch_one(pool)
    .await?;
    let rows = sqlx::query_as!(
        JobRow,
        "SELECT job_id, caster_id, region_id, batch_id, status, conclusion, request_id,
                error_code, http_status, attempts, replays, created_at, finished_at, account,
                not_before
         FROM caster_stop_jobs
         WHERE status = 'scheduled' ORDER BY not_before NULLS FIRST, job_id LIMIT $1",
        i64::from(limit),
    )
    .fetch_all(pool)
    .await?;
    Ok((total, rows))
}

/// An account paused because its credentials were refused.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct PauseRow {
    pub account: String,
    pub code: String,
    pub worker: String,
    #[serde(with = "time::serde::rfc3339")]
    pub paused_at: OffsetDateTime,
    /// When the worker last confirmed the pause (it does at each refused probe, at most a
    /// minute apart).
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Not confirmed for over three minutes: its worker has probably stopped.
    pub stale: bool,
}

/// Paused accounts.
pub(crate) async fn account_pauses(pool: &PgPool) -> Result<Vec<PauseRow>, sqlx::Error> {
    sqlx::query_as!(
        PauseRow,
        r#"SELECT account, code, worker, paused_at, updated_at,
                updated_at < now() - interval '3 minutes' AS "stale!"
         FROM stopcaster_account_pauses ORDER BY paused_at, account LIMIT 100"#,
    )
    .fetch_all(pool)
    .await
}
