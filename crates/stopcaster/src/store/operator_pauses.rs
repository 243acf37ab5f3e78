//! `stopcaster_operator_pauses`: accounts an operator paused (`stopcaster pause`, the
//! dashboard), read by every worker every quarter second (`worker/operator.rs`). A row holds
//! until `resume` removes it or its `until` passes; an expired row is never returned and is
//! replaced by the next pause of its account.

use serde::Serialize;
use sqlx::PgPool;
use time::OffsetDateTime;

use crate::domain::audit::Who;

/// An operator's pause in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct OperatorPause {
    pub account: String,
    /// As typed: escape it before showing it.
    pub reason: String,
    /// Who, as typed (cut to a bounded length): escape it before showing it.
    pub paused_by: String,
    pub source: String,
    pub origin: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub paused_at: OffsetDateTime,
}

/// Pauses `account` (or replaces its pause) until `until` (`None`: until resumed). False, and
/// nothing written, when `until` is not in the future on the database's clock, the one every
/// worker reads the pause by.
pub(crate) async fn pause_account(
    pool: &PgPool,
    account: &str,
    reason: &str,
    who: &Who,
    until: Option<OffsetDateTime>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "INSERT INTO stopcaster_operator_pauses (account, reason, paused_by, source, origin, until)
         SELECT $1, $2, $3, $4, $5, $6 WHERE $6::timestamptz IS NULL OR $6 > now()
         ON CONFLICT (account) DO UPDATE SET reason = $2, paused_by = $3, source = $4,
             origin = $5, until = $6, paused_at = now()",
        account,
        reason,
        who.actor,
        who.source.as_str(),
        who.origin,
        until,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends the operator's pause of `account`; the pause it ended, if one was in force.
pub(crate) async fn resume_account(
    pool: &PgPool,
    account: &str,
) -> Result<Option<OperatorPause>, sqlx::Error> {
    let gone = sqlx::query_as!(
        OperatorPause,
        "DELETE FROM stopcaster_operator_pauses WHERE account = $1
         RETURNING account, reason, paused_by, source, origin, until, paused_at",
        account,
    )
    .fetch_optional(pool)
    .await?;
    Ok(gone.filter(|p| p.until.is_none_or(|u| u > OffsetDateTime::now_utc())))
}

/// The operators' pauses in force now (on the database's clock), by account.
pub(crate) async fn operator_pauses(pool: &PgPool) -> Result<Vec<OperatorPause>, sqlx::Error> {
    sqlx::query_as!(
        OperatorPause,
        "SELECT account, reason, paused_by, source, origin, until, paused_at
         FROM stopcaster_operator_pauses WHERE until IS NULL OR until > now()
         ORDER BY account",
    )
    .fetch_all(pool)
    .await
}
