//! `stopcaster_audit`: the operators' actions, one row each, written once. [`record_action`] is
//! the one writer: the commands, the dashboard's handlers and the API call it with an
//! [`Entry`] whose free text is cut to a bounded length (`domain::audit`); readers
//! escape it when they show it.

use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;
use time::OffsetDateTime;

use crate::domain::audit::Entry;

/// Records one action.
pub(crate) async fn record_action(pool: &PgPool, entry: &Entry) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO stopcaster_audit (action, actor, source, origin, target, count, outcome, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        entry.action.as_str(),
        entry.who.actor,
        entry.who.source.as_str(),
        entry.who.origin,
        entry.target,
        entry.count,
        entry.outcome.as_str(),
        entry.outcome.detail(),
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// One recorded action, as `stopcaster audit`, the dashboard's `/audit` and `/api/audit` list it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct AuditRow {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub action: String,
    pub actor: String,
    pub source: String,
    pub origin: String,
    pub target: String,
    pub count: Option<i64>,
    pub outcome: String,
    pub detail: Option<String>,
}

/// The actions of the last `since` (all when `None`), newest first, at most `limit`.
pub(crate) async fn audit_rows(
    pool: &PgPool,
    since: Option<Duration>,
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    let since_s = since.map(|d| d.as_secs_f64());
    sqlx::query_as!(
        AuditRow,
        "SELECT id, at, action, actor, source, origin, target, count, outcome, detail
         FROM stopcaster_audit
         WHERE $1::float8 IS NULL OR at >= now() - make_interval(secs => $1)
         ORDER BY at DESC, id DESC LIMIT $2",
        since_s,
        limit,
    )
    .fetch_all(pool)
    .await
}
