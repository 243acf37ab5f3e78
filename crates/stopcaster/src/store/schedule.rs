//! Scheduled jobs: the stager's claim on due rows, its sleep, and cancelling (`stopcaster
//! cancel` and the dashboard's cancel share [`cancel_jobs`]). Every time here is the database's
//! clock, so workers need no clock agreement to stage on time.

use std::time::Duration;

use sqlx::{PgPool, Postgres, Transaction};
use time::OffsetDateTime;

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

/// Cancels the named jobs and those of `batch` that no call has been made for: `scheduled`, or
/// `pending` with no attempt and no claim. The condition is re-checked on each row after any
/// lock held by a worker starting an attempt is released, and `start_attempt` requires
/// `pending`: once this has returned, no cancelled job is ever called, and a job that a worker
/// started first is reported as started, not cancelled.
pub(crate) async fn cancel_jobs(
    pool: &PgPool,
    ids: &[uuid::Uuid],
    batch: Option<&str>,
    by: &str,
) -> Result<Vec<CancelRow>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let cancelled = sqlx::query!(
        r#"UPDATE caster_stop_jobs j
         SET status = 'cancelled', conclusion = 'cancelled', cancelled_by = $3,
             cancelled_at = now(), finished_at = now(), updated_at = now()
         FROM (SELECT job_id, status AS was FROM caster_stop_jobs
               WHERE job_id = ANY($1) OR batch_id = $2) t
         WHERE j.job_id = t.job_id
           AND (j.status = 'scheduled'
                OR (j.status = 'pending' AND j.attempts = 0
                    AND (j.claimed_until IS NULL OR j.claimed_until < now())))
         RETURNING j.job_id, j.caster_id, t.was AS "was!", j.not_before"#,
        ids,
        batch,
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
         WHERE (job_id = ANY($1) OR batch_id = $2) AND NOT job_id = ANY($3)",
        ids,
        batch,
        &done,
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    for r in others {
        let outcome = match r.status.as_str() {
            "cancelled" => CancelOutcome::AlreadyCancelled {
                by: r.cancelled_by,
                at: r.cancelled_at,
            },
            "pending" | "scheduled" => CancelOutcome::Started {
                attempts: r.attempts,
            },
            _ => CancelOutcome::Ended { status: r.status },
        };
        rows.push((r.not_before, cancel_row(r.job_id, r.caster_id, outcome)));
    }
    rows.sort_by_key(|(due, r)| (*due, r.job_id));
    let mut rows: Vec<CancelRow> = rows.into_iter().map(|(_, r)| r).collect();
    for id in ids {
        if !rows.iter().any(|r| r.job_id == *id) {
            rows.push(cancel_row(*id, None, CancelOutcome::Unknown));
        }
    }
    Ok(rows)
}

fn cancel_row(job_id: uuid::Uuid, caster_id: Option<String>, outcome: CancelOutcome) -> CancelRow {
    CancelRow {
        job_id,
        caster_id,
        outcome,
    }
}
