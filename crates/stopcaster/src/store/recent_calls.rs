//! The calls of each account's shared schedule over the last seconds (`stopcaster_recent_calls`),
//! counted against a quota header's `Remain` by [`crate::worker`]'s quota watch: what every
//! worker of the schedule called is not another caller's.

use sqlx::PgPool;
use time::OffsetDateTime;

/// Forgets a call the gateway refused for the quota (it does not count it either), or one that
/// stayed home. Calls are recorded with their attempt (`start_attempt`), deleting the
/// account's rows older than a few seconds.
pub(crate) async fn forget_recent_call(
    pool: &PgPool,
    account: &str,
    slot: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM stopcaster_recent_calls WHERE ctid IN
           (SELECT ctid FROM stopcaster_recent_calls WHERE account = $1 AND slot = $2 LIMIT 1)",
        account,
        slot,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The calls of `account`'s schedule in the second up to `slot` (`(slot - 1 s, slot]`, as the
/// gateway's window), this one included.
pub(crate) async fn count_recent_calls(
    pool: &PgPool,
    account: &str,
    slot: OffsetDateTime,
) -> Result<i64, sqlx::Error> {
    let count = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM stopcaster_recent_calls
           WHERE account = $1 AND slot > $2::timestamptz - interval '1 second' AND slot <= $2"#,
        account,
        slot,
    )
    .fetch_one(pool)
    .await?;
    Ok(count)
}
