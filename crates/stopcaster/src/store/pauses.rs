//! `stopcaster_account_pauses`: which worker has paused which account, and why, for the
//! dashboard and operators. Bookkeeping only: the pause itself lives in the worker.

use sqlx::PgPool;

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
