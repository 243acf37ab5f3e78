//! The audit's queries (`stopcaster report`, `bench`): jobs by filter, and their summary; the
//! job row that both `report` and the dashboard list ([`JobRow`]).

use std::time::Duration;

use serde::Serialize;
use sqlx::{PgPool, Postgres};
use time::OffsetDateTime;

use crate::domain::JobStatus;

/// The filters of `stopcaster report`, and of the bulk actions (`cancel`, `dead-letters
/// replay`, the dashboard's "Replay N" and "Cancel N"), which select with the same SQL; `None`
/// means "any".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobFilter {
    pub batch_id: Option<String>,
    pub caster_id: Option<String>,
    pub status: Option<JobStatus>,
    /// The error code of the job's last failed call (or its rejection reason).
    pub error_code: Option<String>,
    /// The job's account; `default` also matches jobs that named none.
    pub account: Option<String>,
    /// A RequestId of any of the job's calls.
    pub request_id: Option<String>,
    /// Jobs created at most this long ago (by the database's clock).
    pub since: Option<Duration>,
    /// Jobs created at least this long ago (by the database's clock).
    pub until: Option<Duration>,
    /// Jobs created at or after this time (the dashboard's `from`).
    pub created_from: Option<OffsetDateTime>,
    /// Jobs created before this time (the dashboard's `to`).
    pub created_before: Option<OffsetDateTime>,
}

impl JobFilter {
    /// `--batch b --error-code X`: a filter as the flags that give it, values escaped.
    pub(crate) fn describe(&self) -> String {
        let f = self;
        let shown = |v: &str| {
            crate::domain::display::bounded(v, crate::domain::display::CELL_CHARS).into_owned()
        };
        let mut parts = Vec::new();
        for (flag, v) in [
            ("--batch", &f.batch_id),
            ("--caster", &f.caster_id),
            ("--error-code", &f.error_code),
            ("--account", &f.account),
            ("--request-id", &f.request_id),
        ] {
            if let Some(v) = v {
                parts.push(format!("{flag} {}", shown(v)));
            }
        }
        if let Some(s) = f.status {
            parts.push(format!("--status {}", s.as_str()));
        }
        if let Some(d) = f.since {
            parts.push(format!("--since {}s", d.as_secs()));
        }
        if let Some(d) = f.until {
            parts.push(format!("--until {}s", d.as_secs()));
        }
        // The dashboard's time range, which the commands give as durations instead.
        if let Some(t) = f.created_from {
            parts.push(format!("from {}", crate::domain::time::rfc3339_micros(t)));
        }
        if let Some(t) = f.created_before {
            parts.push(format!("to {}", crate::domain::time::rfc3339_micros(t)));
        }
        parts.join(" ")
    }

    /// True when no condition is set: such a filter matches every job, which a bulk action
    /// refuses to take as its selection.
    pub(crate) fn is_empty(&self) -> bool {
        *self == JobFilter::default()
    }
}

/// Appends the `WHERE` clause of `filter` (over the alias `j`). Only the conditions asked for
/// are written, as plain equalities, so that the planner can use `caster_stop_jobs_batch`,
/// `_caster`, `_status`, `_error_key`, `_created` and `caster_stop_attempts_request` (a
/// `$1 IS NULL OR ...` form would defeat them). True when a `WHERE` was written.
pub(super) fn push_job_filter<'a>(
    qb: &mut sqlx::QueryBuilder<'a, Postgres>,
    filter: &'a JobFilter,
) -> bool {
    let mut sep = " WHERE ";
    let mut and = |qb: &mut sqlx::QueryBuilder<'a, Postgres>| {
        qb.push(sep);
        sep = " AND ";
    };
    if let Some(batch) = &filter.batch_id {
        and(qb);
        qb.push("j.batch_id = ").push_bind(batch.as_str());
    }
    if let Some(caster) = &filter.caster_id {
        and(qb);
        qb.push("j.caster_id = ").push_bind(caster.as_str());
    }
    if let Some(status) = filter.status {
        and(qb);
        qb.push("j.status = ").push_bind(status.as_str());
    }
    if let Some(code) = &filter.error_code {
        and(qb);
        qb.push("j.error_code = ").push_bind(code.as_str());
    }
    if let Some(account) = &filter.account {
        and(qb);
        if account == DEFAULT_ACCOUNT {
            qb.push("(j.account IS NULL OR j.account = ")
                .push_bind(account.as_str())
                .push(")");
        } else {
            qb.push("j.account = ").push_bind(account.as_str());
        }
    }
    if let Some(request_id) = &filter.request_id {
        and(qb);
        qb.push("j.job_id IN (SELECT a.job_id FROM caster_stop_attempts a WHERE a.request_id = ")
            .push_bind(request_id.as_str())
            .push(")");
    }
    if let Some(since) = filter.since {
        and(qb);
        qb.push("j.created_at >= now() - make_interval(secs => ")
            .push_bind(since.as_secs_f64())
            .push(")");
    }
    if let Some(until) = filter.until {
        and(qb);
        qb.push("j.created_at < now() - make_interval(secs => ")
            .push_bind(until.as_secs_f64())
            .push(")");
    }
    if let Some(from) = filter.created_from {
        and(qb);
        qb.push("j.created_at >= ").push_bind(from);
    }
    if let Some(before) = filter.created_before {
        and(qb);
        qb.push("j.created_at < ").push_bind(before);
    }
    sep == " AND "
}

/// The account name of the environment's credentials (what jobs naming no account use).
pub(crate) const DEFAULT_ACCOUNT: &str = "default";

/// Of `among`, the jobs that match `filter` (a bulk replay's choice among the dead letters it
/// read). An empty filter matches none: a bulk action needs a condition.
pub(crate) async fn filter_job_ids(
    pool: &PgPool,
    filter: &JobFilter,
    among: &[uuid::Uuid],
) -> Result<Vec<uuid::Uuid>, sqlx::Error> {
    if filter.is_empty() || among.is_empty() {
        return Ok(Vec::new());
    }
    let mut qb = sqlx::QueryBuilder::new("SELECT j.job_id FROM caster_stop_jobs j");
    push_job_filter(&mut qb, filter);
    qb.push(" AND j.job_id = ANY(").push_bind(among).push(")");
    qb.build_query_scalar().fetch_all(pool).await
}

/// One job as `report` and the dashboard list it. Serialized for the dashboard's JSON;
/// `report` writes its own JSON, with fixed-precision timestamps. Read by column name from
/// [`JOB_COLUMNS`] in the filtered lists, whose text is built at run time; the static queries
/// that return it (`query_as!`) are checked against the schema at build time.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub(crate) struct JobRow {
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
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// The configured account whose credentials and quota the job uses; `None`: the default.
    pub account: Option<String>,
    /// The due time of a scheduled job.
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_before: Option<OffsetDateTime>,
}

/// The columns of [`JobRow`], over the alias `j`, for the queries whose filters are built at
/// run time.
pub(super) const JOB_COLUMNS: &str = "j.job_id, j.caster_id, j.region_id, j.batch_id, j.status,
     j.conclusion, j.request_id, j.error_code, j.http_status, j.attempts, j.replays,
     j.created_at, j.finished_at, j.account, j.not_before";

/// The text of the `report` job query.
fn report_jobs_query(filter: &JobFilter, limit: Option<u32>) -> sqlx::QueryBuilder<'_, Postgres> {
    let mut qb = sqlx::QueryBuilder::new(format!("SELECT {JOB_COLUMNS} FROM caster_stop_jobs j"));
    push_job_filter(&mut qb, filter);
    qb.push(" ORDER BY j.created_at DESC, j.job_id");
    if let Some(limit) = limit {
        qb.push(" LIMIT ").push_bind(i64::from(limit));
    }
    qb
}

/// Jobs matching `filter`, newest first, at most `limit` (`None`: all).
pub(crate) async fn report_jobs(
    pool: &PgPool,
    filter: &JobFilter,
    limit: Option<u32>,
) -> Result<Vec<JobRow>, sqlx::Error> {
    report_jobs_query(filter, limit)
        .build_query_as::<JobRow>()
        .fetch_all(pool)
        .await
}

/// The calls made for the jobs matching a filter, and their failures.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct CallTotals {
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

/// Totals over the jobs matching a filter (no limit) and their attempts.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ReportSummary {
    /// (status, jobs), every status listed, zeros included.
    pub by_status: Vec<(String, i64)>,
    pub totals: CallTotals,
    /// The earliest and latest due time (`not_before`) of the jobs still to run (scheduled or
    /// pending), and the database's clock when the summary was taken.
    pub first_due: Option<OffsetDateTime>,
    pub last_due: Option<OffsetDateTime>,
    pub now: Option<OffsetDateTime>,
}

impl ReportSummary {
    pub(crate) fn count(&self, status: JobStatus) -> i64 {
        self.by_status
            .iter()
            .find(|(s, _)| s == status.as_str())
            .map_or(0, |(_, n)| *n)
    }

    pub(crate) fn total(&self) -> i64 {
        self.by_status.iter().map(|(_, n)| n).sum()
    }

    /// Jobs still to run: scheduled or pending.
    pub(crate) fn remaining(&self) -> i64 {
        self.count(JobStatus::Scheduled) + self.count(JobStatus::Pending)
    }

    /// When the jobs still to run should be done at `qps` calls per second, one call each:
    /// they start at the later of now and their earliest due time and go at the pace, and the
    /// last cannot start before its own due time. `None` when nothing is left.
    pub(crate) fn expected_finish(&self, qps: u32) -> Option<OffsetDateTime> {
        let remaining = self.remaining();
        let now = self.now?;
        if remaining == 0 {
            return None;
        }
        let per_call = time::Duration::seconds_f64(1.0 / f64::from(qps.max(1)));
        let start = self.first_due.map_or(now, |due| due.max(now));
        let paced = start + per_call * (remaining as f64);
        let last = self.last_due.map_or(now, |due| due.max(now)) + per_call;
        Some(paced.max(last))
    }
}

/// The due times of the jobs still to run, as [`report_summary`] reads them.
#[derive(sqlx::FromRow)]
struct DueSpan {
    first_due: Option<OffsetDateTime>,
    last_due: Option<OffsetDateTime>,
    now: OffsetDateTime,
}

/// The calls of the jobs matching a filter, as [`call_totals`] reads them.
#[derive(sqlx::FromRow)]
struct CallCounts {
    calls: i64,
    first_call: Option<OffsetDateTime>,
    last_call: Option<OffsetDateTime>,
    retried: i64,
    throttled: i64,
}

/// The summary of the jobs matching `filter`. Each statement is driven by the same filter, so
/// that a batch summary reads the batch's rows through `caster_stop_jobs_batch` and their
/// attempts through the attempts' primary key.
pub(crate) async fn report_summary(
    pool: &PgPool,
    filter: &JobFilter,
) -> Result<ReportSummary, sqlx::Error> {
    let mut qb = sqlx::QueryBuilder::new("SELECT j.status, count(*) AS n FROM caster_stop_jobs j");
    push_job_filter(&mut qb, filter);
    qb.push(" GROUP BY j.status");
    let counts: Vec<(String, i64)> = qb.build_query_as().fetch_all(pool).await?;
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

    let totals = call_totals(pool, filter).await?;

    let mut qb = sqlx::QueryBuilder::new(
        "SELECT min(j.not_before) AS first_due, max(j.not_before) AS last_due, now() AS now
         FROM caster_stop_jobs j",
    );
    let filtered = push_job_filter(&mut qb, filter);
    qb.push(if filtered { " AND " } else { " WHERE " })
        .push("j.status IN ('scheduled', 'pending')");
    let due: DueSpan = qb.build_query_as().fetch_one(pool).await?;

    Ok(ReportSummary {
        first_due: due.first_due,
        last_due: due.last_due,
        now: Some(due.now),
        by_status,
        totals,
    })
}

/// The calls of the jobs matching `filter`: each job's attempts read through the attempts'
/// primary key (a lateral join, so that a batch of ten thousand jobs never scans the whole
/// attempts table), and the failed jobs by code.
pub(crate) async fn call_totals(
    pool: &PgPool,
    filter: &JobFilter,
) -> Result<CallTotals, sqlx::Error> {
    let mut qb = sqlx::QueryBuilder::new(
        "SELECT coalesce(sum(a.n), 0)::bigint AS calls, min(a.first) AS first_call,
                max(a.last) AS last_call, coalesce(sum(a.retried), 0)::bigint AS retried,
                coalesce(sum(a.throttled), 0)::bigint AS throttled
         FROM caster_stop_jobs j CROSS JOIN LATERAL (
             SELECT count(*) AS n, min(started_at) AS first, max(started_at) AS last,
                    count(*) FILTER (WHERE attempt > 1) AS retried,
                    count(*) FILTER (WHERE error_code LIKE 'Throttling%') AS throttled
             FROM caster_stop_attempts a WHERE a.job_id = j.job_id) a",
    );
    push_job_filter(&mut qb, filter);
    let calls: CallCounts = qb.build_query_as().fetch_one(pool).await?;

    let mut qb = sqlx::QueryBuilder::new(
        "SELECT coalesce(j.error_code, j.conclusion, '') AS code, count(*) AS n
         FROM caster_stop_jobs j",
    );
    let filtered = push_job_filter(&mut qb, filter);
    qb.push(if filtered { " AND " } else { " WHERE " })
        .push("j.status IN ('failed', 'rejected') GROUP BY 1 ORDER BY 2 DESC, 1");
    let failures_by_code: Vec<(String, i64)> = qb.build_query_as().fetch_all(pool).await?;
    Ok(CallTotals {
        calls: calls.calls,
        first_call: calls.first_call,
        last_call: calls.last_call,
        retried_attempts: calls.retried,
        throttled_attempts: calls.throttled,
        failures_by_code,
    })
}

/// Jobs that reached a terminal status (`bench` waits for all of a batch's).
pub async fn count_finished_jobs(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM caster_stop_jobs
           WHERE status NOT IN ('pending', 'scheduled')"#,
    )
    .fetch_one(pool)
    .await
}

/// Transactions committed in this database so far, by every session (`bench` divides their
/// growth by its calls). Sessions report theirs when they end, or idle, up to a second late.
pub async fn committed_transactions(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT xact_commit AS "n!" FROM pg_stat_database WHERE datname = current_database()"#,
    )
    .fetch_one(pool)
    .await
}

/// Jobs with this status.
pub async fn count_jobs_with_status(pool: &PgPool, status: JobStatus) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM caster_stop_jobs WHERE status = $1"#,
        status.as_str(),
    )
    .fetch_one(pool)
    .await
}

/// From the first call's start to the last call's end, over every attempt; `None` before any.
pub async fn call_span(
    pool: &PgPool,
) -> Result<Option<(OffsetDateTime, OffsetDateTime)>, sqlx::Error> {
    let span = sqlx::query!(
        r#"SELECT min(started_at) AS "first?", max(finished_at) AS "last?"
           FROM caster_stop_attempts"#,
    )
    .fetch_one(pool)
    .await?;
    Ok(span.first.zip(span.last))
}

#[cfg(test)]
mod schedule_tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn expected_finish_paces_the_rest_after_their_due_time() {
        let now = datetime!(2026-11-27 12:00 UTC);
        let mut s = ReportSummary {
            by_status: vec![("scheduled".into(), 95), ("pending".into(), 5)],
            now: Some(now),
            ..Default::default()
        };
        assert_eq!(
            s.expected_finish(10),
            Some(datetime!(2026-11-27 12:00:10 UTC))
        );
        s.first_due = Some(datetime!(2026-11-27 13:00 UTC));
        s.last_due = s.first_due;
        assert_eq!(
            s.expected_finish(10),
            Some(datetime!(2026-11-27 13:00:10 UTC))
        );
        // Spread out: the last due time bounds it.
        s.last_due = Some(datetime!(2026-11-27 15:00 UTC));
        assert_eq!(
            s.expected_finish(10),
            Some(datetime!(2026-11-27 15:00:00.1 UTC))
        );
        s.by_status = vec![("succeeded".into(), 100)];
        assert_eq!(s.expected_finish(10), None);
    }
}
