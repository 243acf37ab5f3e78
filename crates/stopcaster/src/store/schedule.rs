//! Scheduled jobs: the stager's claim on due rows, its sleep, and cancelling (`stopcaster
//! cancel` and the dashboard's cancel share [`cancel_jobs`]). Every time here is the database's
//! clock, so workers need no clock agreement to stage on time.

use std::time::Duration;

use sqlx::{PgPool, Postgres, Transaction};
use time::OffsetDateTime;

use super::reports::{JobFilter, push_job_filter};

/// A due job the stager is handing to the queue: its stored message.
#[derive(Clone, Debug)]
pub(crate) struct DueJob {
    pub job_id: uuid::Uuid,
    pub payload: String,
}

/// Due rows claimed by one stager (locked, `FOR UPDATE SKIP LOCKED`, so other workers' stagers
/// pass them by) until [`Staging::commit`] marks them `pending` or the transaction is dropped,
/// which leaves them `scheduled`.
pub(crate) struct Staging {
    tx: Transaction<'static, Postgres>,
    pub jobs: Vec<DueJob>,
}

/// Claims at most `limit` scheduled rows due within `lead`, earliest first, and locks them.
pub(crate) async fn claim_due(
    pool: &PgPool,
    lead: Duration,
    limit: u32,
) -> Result<Staging, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let jobs = sqlx::query_as!(
        DueJob,
        "SELECT job_id, payload FROM caster_stop_jobs
         WHERE status = 'scheduled' AND not_before <= now() + make_interval(secs => $1)
         ORDER BY not_before, job_id
         LIMIT $2
         FOR UPDATE SKIP LOCKED",
        lead.as_secs_f64(),
        i64::from(limit),
    )
    .fetch_all(&mut *tx)
    .await?;
    Ok(Staging { tx, jobs })
}

impl Staging {
    /// Marks the claimed rows `pending` (their messages are confirmed on the queue) and commits.
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        let ids: Vec<uuid::Uuid> = self.jobs.iter().map(|j| j.job_id).collect();
        sqlx::query!(
            "UPDATE caster_stop_jobs SET status = 'pending', staged_at = now(), updated_at = now()
             WHERE job_id = ANY($1) AND status = 'scheduled'",
            &ids,
        )
        .execute(&mut *self.tx)
        .await?;
        self.tx.commit().await
    }
}

/// How long until the earliest scheduled row is due (zero if one is overdue), `None` when none
/// is scheduled; and how many are scheduled.
pub(crate) async fn next_due(pool: &PgPool) -> Result<(Option<Duration>, i64), sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT extract(epoch FROM min(not_before) - now())::float8 AS "secs?", count(*) AS "n!"
         FROM caster_stop_jobs WHERE status = 'scheduled'"#,
    )
    .fetch_one(pool)
    .await?;
    Ok((
        row.secs
            .map(|s| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX)),
        row.n,
    ))
}

/// Jobs handed to the queue recently and not called yet: what the workers have still to take.
pub(crate) async fn staged_backlog(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM caster_stop_jobs
         WHERE status = 'pending' AND staged_at IS NOT NULL AND attempts = 0
           AND staged_at > now() - interval '10 minutes'"#,
    )
    .fetch_one(pool)
    .await
}

/// What `cancel` found for one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CancelRow {
    pub job_id: uuid::Uuid,
    pub caster_id: Option<String>,
    pub outcome: CancelOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CancelOutcome {
    /// Cancelled now: it will never be called.
    Cancelled { was: String },
    /// Cancelled before (by whom, when).
    AlreadyCancelled {
        by: Option<String>,
        at: Option<OffsetDateTime>,
    },
    /// A call was made or is being made: not cancelled, it runs to its end.
    Started { attempts: i32 },
    /// Finished (succeeded, failed, rejected).
    Ended { status: String },
    /// No row: a wrong id, or a message no worker has received yet.
    Unknown,
}

/// The jobs a cancel acts on: the named ones and those matching `filter` (none for an empty
/// filter: a bulk action needs a condition), named ones first, without repeats.
async fn cancel_selection(
    conn: &mut sqlx::PgConnection,
    ids: &[uuid::Uuid],
    filter: &JobFilter,
) -> Result<Vec<uuid::Uuid>, sqlx::Error> {
    let mut all: Vec<uuid::Uuid> = Vec::with_capacity(ids.len());
    let mut seen = std::collections::HashSet::new();
    all.extend(ids.iter().filter(|id| seen.insert(**id)));
    if !filter.is_empty() {
        let mut qb = sqlx::QueryBuilder::new("SELECT j.job_id FROM caster_stop_jobs j");
        push_job_filter(&mut qb, filter);
        let matched: Vec<uuid::Uuid> = qb.build_query_scalar().fetch_all(&mut *conn).await?;
        all.extend(matched.into_iter().filter(|id| seen.insert(*id)));
    }
    Ok(all)
}

/// What cancelling a job found in its row, when it was not cancelled now.
fn not_cancelled(
    status: String,
    attempts: i32,
    by: Option<String>,
    at: Option<OffsetDateTime>,
) -> CancelOutcome {
    match status.as_str() {
        "cancelled" => CancelOutcome::AlreadyCancelled { by, at },
        "pending" | "scheduled" => CancelOutcome::Started { attempts },
        _ => CancelOutcome::Ended { status },
    }
}

/// Orders the rows by due time, then id, and adds the named ids that have no row as unknown.
fn finish_rows(
    mut rows: Vec<(Option<OffsetDateTime>, CancelRow)>,
    ids: &[uuid::Uuid],
) -> Vec<CancelRow> {
    rows.sort_by_key(|(due, r)| (*due, r.job_id));
    let mut rows: Vec<CancelRow> = rows.into_iter().map(|(_, r)| r).collect();
    let found: std::collections::HashSet<uuid::Uuid> = rows.iter().map(|r| r.job_id).collect();
    let mut unknown = std::collections::HashSet::new();
    for id in ids {
        if !found.contains(id) && unknown.insert(*id) {
            rows.push(cancel_row(*id, None, CancelOutcome::Unknown));
        }
    }
    rows
}

/// Cancels the named jobs and those matching `filter` that no call has been made for:
/// `scheduled`, or `pending` with no attempt and no claim. The condition is re-checked on each
/// row after any lock held by a worker starting an attempt is released, and `start_attempt`
/// requires `pending`: once this has returned, no cancelled job is ever called, and a job that
/// a worker started first is reported as started, not cancelled.
pub(crate) async fn cancel_jobs(
    pool: &PgPool,
    ids: &[uuid::Uuid],
    filter: &JobFilter,
    by: &str,
) -> Result<Vec<CancelRow>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let chosen = cancel_selection(&mut tx, ids, filter).await?;
    let cancelled = sqlx::query!(
        r#"UPDATE caster_stop_jobs j
         SET status = 'cancelled', conclusion = 'cancelled', cancelled_by = $2,
             cancelled_at = now(), finished_at = now(), updated_at = now()
         FROM (SELECT job_id, status AS was FROM caster_stop_jobs WHERE job_id = ANY($1)) t
         WHERE j.job_id = t.job_id
           AND (j.status = 'scheduled'
                OR (j.status = 'pending' AND j.attempts = 0
                    AND (j.claimed_until IS NULL OR j.claimed_until < now())))
         RETURNING j.job_id, j.caster_id, t.was AS "was!", j.not_before"#,
        &chosen,
        by,
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut rows: Vec<(Option<OffsetDateTime>, CancelRow)> = cancelled
        .into_iter()
        .map(|r| {
            let outcome = CancelOutcome::Cancelled { was: r.was };
            (r.not_before, cancel_row(r.job_id, r.caster_id, outcome))
        })
        .collect();
    let done: Vec<uuid::Uuid> = rows.iter().map(|(_, r)| r.job_id).collect();
    let others = sqlx::query!(
        "SELECT job_id, caster_id, status, attempts, cancelled_by, cancelled_at, not_before
         FROM caster_stop_jobs
         WHERE job_id = ANY($1) AND NOT job_id = ANY($2)",
        &chosen,
        &done,
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    for r in others {
        let outcome = not_cancelled(r.status, r.attempts, r.cancelled_by, r.cancelled_at);
        rows.push((r.not_before, cancel_row(r.job_id, r.caster_id, outcome)));
    }
    Ok(finish_rows(rows, ids))
}

/// What [`cancel_jobs`] would do now with the same selection, changing nothing (`--dry-run`,
/// the dashboard's count): the same rows, each with the outcome its row's state gives.
pub(crate) async fn preview_cancel(
    pool: &PgPool,
    ids: &[uuid::Uuid],
    filter: &JobFilter,
) -> Result<Vec<CancelRow>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let chosen = cancel_selection(&mut conn, ids, filter).await?;
    let found = sqlx::query!(
        r#"SELECT job_id, caster_id, status, attempts, cancelled_by, cancelled_at, not_before,
                  (status = 'scheduled'
                   OR (status = 'pending' AND attempts = 0
                       AND (claimed_until IS NULL OR claimed_until < now()))) AS "cancellable!"
         FROM caster_stop_jobs WHERE job_id = ANY($1)"#,
        &chosen,
    )
    .fetch_all(&mut *conn)
    .await?;
    let rows = found
        .into_iter()
        .map(|r| {
            let outcome = if r.cancellable {
                CancelOutcome::Cancelled { was: r.status }
            } else {
                not_cancelled(r.status, r.attempts, r.cancelled_by, r.cancelled_at)
            };
            (r.not_before, cancel_row(r.job_id, r.caster_id, outcome))
        })
        .collect();
    Ok(finish_rows(rows, ids))
}

fn cancel_row(job_id: uuid::Uuid, caster_id: Option<String>, outcome: CancelOutcome) -> CancelRow {
    CancelRow {
        job_id,
        caster_id,
        outcome,
    }
}
