//! Jobs parked while their account is paused: the worker's park, the stager's claim on the
//! rows whose time came, and the release when the account resumes. A parked job is `pending`
//! like any other (no call made for it is undone, `cancel` and `report` see it as before); only
//! `parked_until` says that no delivery of it is held. Times are the database's clock.

use std::time::Duration;

use sqlx::{PgPool, Postgres, Transaction};

use super::schedule::DueJob;
use crate::domain::JobId;

/// Parks a pending job for `park_for`: its delivery may be acknowledged once this returns true.
/// False if the job is no longer pending (cancelled or finished meanwhile): nothing to park.
pub(crate) async fn park_job(
    pool: &PgPool,
    job_id: JobId,
    park_for: Duration,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query!(
        "UPDATE caster_stop_jobs
         SET parked_until = now() + make_interval(secs => $2), updated_at = now()
         WHERE job_id = $1 AND status = 'pending'",
        job_id.as_uuid(),
        park_for.as_secs_f64(),
    )
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Parked rows claimed by one stager (locked, `FOR UPDATE SKIP LOCKED`) until
/// [`Unparking::commit`] clears their park, or the transaction is dropped, which keeps it.
pub(crate) struct Unparking {
    tx: Transaction<'static, Postgres>,
    pub jobs: Vec<DueJob>,
}

/// Claims at most `limit` pending rows whose park has ended, earliest first, and locks them.
pub(crate) async fn claim_unparked(pool: &PgPool, limit: u32) -> Result<Unparking, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let jobs = sqlx::query_as!(
        DueJob,
        "SELECT job_id, payload FROM caster_stop_jobs
         WHERE status = 'pending' AND parked_until <= now()
         ORDER BY parked_until, job_id
         LIMIT $1
         FOR UPDATE SKIP LOCKED",
        i64::from(limit),
    )
    .fetch_all(&mut *tx)
    .await?;
    Ok(Unparking { tx, jobs })
}

impl Unparking {
    /// Clears the claimed rows' park (their messages are confirmed on the queue) and commits.
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        let ids: Vec<uuid::Uuid> = self.jobs.iter().map(|j| j.job_id).collect();
        sqlx::query!(
            "UPDATE caster_stop_jobs SET parked_until = NULL, updated_at = now()
             WHERE job_id = ANY($1)",
            &ids,
        )
        .execute(&mut *self.tx)
        .await?;
        self.tx.commit().await
    }
}

/// What the stager's round learns of the waiting jobs, in one round trip.
#[derive(Debug)]
pub(crate) struct Waiting {
    /// How long until the earliest parked row's park ends (zero if it has), `None` when none is
    /// parked.
    pub next_unparked: Option<Duration>,
    /// How many are parked.
    pub parked: i64,
    /// Age of the oldest `pending` job (parked or not), `None` when none is: the backlog's age,
    /// which an alert watches (a backlog that no worker drains).
    pub oldest_pending: Option<Duration>,
}

pub(crate) async fn waiting(pool: &PgPool) -> Result<Waiting, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT extract(epoch FROM min(parked_until) - now())::float8 AS "secs?",
                  count(*) AS "n!",
                  (SELECT extract(epoch FROM now() - min(created_at))::float8
                   FROM caster_stop_jobs WHERE status = 'pending') AS "oldest?"
         FROM caster_stop_jobs WHERE status = 'pending' AND parked_until IS NOT NULL"#,
    )
    .fetch_one(pool)
    .await?;
    let secs = |s: f64| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX);
    Ok(Waiting {
        next_unparked: row.secs.map(secs),
        parked: row.n,
        oldest_pending: row.oldest.map(secs),
    })
}

/// Ends the park of every job of `account` (`default` is the jobs that name none): the
/// account resumed, so the stager hands them back to the queue on its next round.
pub(crate) async fn release_parked(pool: &PgPool, account: &str) -> Result<u64, sqlx::Error> {
    let updated = sqlx::query!(
        "UPDATE caster_stop_jobs SET parked_until = now(), updated_at = now()
         WHERE status = 'pending' AND parked_until > now()
           AND coalesce(account, 'default') = $1",
        account,
    )
    .execute(pool)
    .await?;
    Ok(updated.rows_affected())
}
