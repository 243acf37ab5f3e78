//! `stopcaster_account_pauses`: which worker has paused which account, and why, for the
//! dashboard and operators. Bookkeeping only: the pause itself lives in the worker. Also what a
//! pause does to a call it kept home: withdrawn (a call that failed while the account was
//! paused is given back with its outcome, `jobs::finish_given_back_attempt`).

use sqlx::PgPool;

use crate::domain::JobId;

/// Records (or refreshes) a pause of `account` by `worker`.
pub(crate) async fn record_pause(
    pool: &PgPool,
    account: &str,
    worker: &str,
    code: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO stopcaster_account_pauses (account, worker, code) VALUES ($1, $2, $3)
         ON CONFLICT (account, worker) DO UPDATE SET code = $3, updated_at = now()",
        account,
        worker,
        code,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Removes `worker`'s pause of `account` (resumed), or all of its pauses (`None`: stopping).
pub(crate) async fn clear_pauses(
    pool: &PgPool,
    worker: &str,
    account: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM stopcaster_account_pauses WHERE worker = $1 AND ($2::text IS NULL OR account = $2)",
        worker,
        account,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Withdraws attempt `attempt`, recorded before its call, when the call stayed home (its
/// account paused while it waited for its slot): the row goes, the count goes back, the claim
/// ends. Nothing happens if the attempt has an outcome or is not the job's last.
pub(crate) async fn withdraw_attempt(
    pool: &PgPool,
    job_id: JobId,
    attempt: u32,
    worker: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "WITH gone AS (
             DELETE FROM caster_stop_attempts
             WHERE job_id = $1 AND attempt = $2 AND outcome IS NULL AND worker = $3
             RETURNING job_id)
         UPDATE caster_stop_jobs j
         SET attempts = j.attempts - 1, claimed_by = NULL, claimed_until = NULL,
             updated_at = now()
         FROM gone WHERE j.job_id = gone.job_id AND j.attempts = $2",
        job_id.as_uuid(),
        attempt as i32,
        worker,
    )
    .execute(pool)
    .await?;
    Ok(())
}
