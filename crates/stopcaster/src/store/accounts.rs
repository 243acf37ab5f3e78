//! One account's figures for the dashboard's account page (`/accounts/NAME`): its backlog, its
//! answers' errors by code over a window, its operators' pause history from the audit trail,
//! and whether anything at all names it. An account is named as the operators name it:
//! `default` also covers the jobs whose message named no account (`account IS NULL`), as the
//! report's `--account default` does.

use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;
use time::OffsetDateTime;

use super::AuditRow;

/// An account's jobs still to call.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Backlog {
    pub pending: i64,
    pub scheduled: i64,
    /// When the oldest pending job arrived.
    #[serde(with = "time::serde::rfc3339::option")]
    pub oldest_pending: Option<OffsetDateTime>,
    /// The earliest `not_before` of the scheduled jobs.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_due: Option<OffsetDateTime>,
}

/// The pending and scheduled jobs of `account` (through the status index: a backlog is small
/// next to the table).
pub(crate) async fn account_backlog(pool: &PgPool, account: &str) -> Result<Backlog, sqlx::Error> {
    let r = sqlx::query!(
        r#"SELECT count(*) FILTER (WHERE status = 'pending') AS "pending!",
                count(*) FILTER (WHERE status = 'scheduled') AS "scheduled!",
                min(created_at) FILTER (WHERE status = 'pending') AS oldest_pending,
                min(not_before) FILTER (WHERE status = 'scheduled') AS next_due
         FROM caster_stop_jobs
         WHERE status IN ('pending', 'scheduled')
           AND (account = $1 OR ($1 = 'default' AND account IS NULL))"#,
        account,
    )
    .fetch_one(pool)
    .await?;
    Ok(Backlog {
        pending: r.pending,
        scheduled: r.scheduled,
        oldest_pending: r.oldest_pending,
        next_due: r.next_due,
    })
}

/// An account's calls over a window and what went wrong with them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct CallErrors {
    /// StopCaster calls started in the window (attempt rows).
    pub calls: i64,
    /// Of those, answered `Throttling*`.
    pub throttled: i64,
    /// Calls that did not succeed by error code (`HTTP N` or the outcome where the answer had
    /// no code), most frequent first, at most [`MAX_CODES`].
    pub by_code: Vec<(String, i64)>,
}

/// The most error codes listed per window.
pub(crate) const MAX_CODES: i64 = 50;

/// `account`'s calls started within the last `window`.
pub(crate) async fn account_errors(
    pool: &PgPool,
    account: &str,
    window: Duration,
) -> Result<CallErrors, sqlx::Error> {
    let secs = window.as_secs_f64();
    let totals = sqlx::query!(
        r#"SELECT count(*) AS "calls!",
                count(*) FILTER (WHERE a.error_code LIKE 'Throttling%') AS "throttled!"
         FROM caster_stop_attempts a JOIN caster_stop_jobs j ON j.job_id = a.job_id
         WHERE (j.account = $1 OR ($1 = 'default' AND j.account IS NULL))
           AND a.started_at >= now() - make_interval(secs => $2)"#,
        account,
        secs,
    )
    .fetch_one(pool)
    .await?;
    let codes = sqlx::query!(
        r#"SELECT coalesce(a.error_code, 'HTTP ' || a.http_status, a.outcome) AS "code!",
                count(*) AS "n!"
         FROM caster_stop_attempts a JOIN caster_stop_jobs j ON j.job_id = a.job_id
         WHERE (j.account = $1 OR ($1 = 'default' AND j.account IS NULL))
           AND a.started_at >= now() - make_interval(secs => $2)
           AND a.outcome IS NOT NULL AND a.outcome <> 'ok'
         GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $3"#,
        account,
        secs,
        MAX_CODES,
    )
    .fetch_all(pool)
    .await?;
    Ok(CallErrors {
        calls: totals.calls,
        throttled: totals.throttled,
        by_code: codes.into_iter().map(|r| (r.code, r.n)).collect(),
    })
}

/// The audit trail's pauses and resumes of `account` (what the commands and the dashboard
/// record: target `account NAME` or `account NAME (until ...): reason`), newest first.
pub(crate) async fn pause_history(
    pool: &PgPool,
    account: &str,
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as!(
        AuditRow,
        "SELECT id, at, action, actor, source, origin, target, count, outcome, detail
         FROM stopcaster_audit
         WHERE action IN ('pause', 'resume')
           AND (target = 'account ' || $1 OR starts_with(target, 'account ' || $1 || ' (until '))
         ORDER BY at DESC, id DESC LIMIT $2",
        account,
        limit,
    )
    .fetch_all(pool)
    .await
}

/// Whether any job, pause or audited pause names `account`: an account page for a name
/// nothing knows is a 404.
pub(crate) async fn account_seen(pool: &PgPool, account: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM caster_stop_jobs
                          WHERE account = $1 OR ($1 = 'default' AND account IS NULL))
               OR EXISTS (SELECT 1 FROM stopcaster_operator_pauses WHERE account = $1)
               OR EXISTS (SELECT 1 FROM stopcaster_account_pauses WHERE account = $1)
               OR EXISTS (SELECT 1 FROM stopcaster_audit
                          WHERE action IN ('pause', 'resume')
                            AND (target = 'account ' || $1
                                 OR starts_with(target, 'account ' || $1 || ' (until ')))
           AS "seen!""#,
        account,
    )
    .fetch_one(pool)
    .await
}
