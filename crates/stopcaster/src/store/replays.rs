//! Reopening dead-lettered jobs for `stopcaster dead-letters replay`, and the record of each
//! replay in `caster_stop_replays`.

use crate::domain::{JobId, JobStatus};

/// What a replay found and did to a job's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReplayRecord {
    /// `None`: the job has no row (the worker creates it when the message comes back).
    pub previous_status: Option<JobStatus>,
    pub previous_error_code: Option<String>,
    pub caster_id: Option<String>,
    /// The row was reopened: a failed job is pending again with a fresh attempt budget, or a
    /// rejected message's dead letter was cleared so that the worker dead-letters it again.
    pub reopened: bool,
}

/// Reopens a job for a replay and records the replay in `caster_stop_replays`, in the caller's
/// transaction: the caller commits only once the message is back on the work queue, and the
/// row lock taken here makes a worker that receives it meanwhile wait for that commit.
///
/// Only a `failed` row goes back to `pending` (budget: `attempts + max_attempts` more calls);
/// a `rejected` row stays rejected but loses `dead_lettered_at`, since its message will be
/// rejected again and must be dead-lettered again. `pending` and `succeeded` rows are left
/// alone, which makes a repeated replay harmless.
pub(crate) async fn reopen_for_replay(
    conn: &mut sqlx::PgConnection,
    job_id: JobId,
    max_attempts: u32,
    reason: Option<&str>,
) -> Result<ReplayRecord, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT status, error_code, caster_id FROM caster_stop_jobs WHERE job_id = $1 FOR UPDATE",
        job_id.as_uuid(),
    )
    .fetch_optional(&mut *conn)
    .await?;
    let mut record = ReplayRecord {
        previous_status: None,
        previous_error_code: None,
        caster_id: None,
        reopened: false,
    };
    if let Some(row) = row {
        record.previous_status = JobStatus::parse(&row.status);
        record.previous_error_code = row.error_code;
        record.caster_id = row.caster_id;
        let reopened = match record.previous_status {
            Some(JobStatus::Failed) => sqlx::query!(
                "UPDATE caster_stop_jobs
                     SET status = 'pending', conclusion = NULL, finished_at = NULL,
                         dead_lettered_at = NULL, next_attempt_at = NULL,
                         claimed_by = NULL, claimed_until = NULL,
                         attempt_budget = attempts + $2, replays = replays + 1,
                         updated_at = now()
                     WHERE job_id = $1 AND status = 'failed'",
                job_id.as_uuid(),
                i32::try_from(max_attempts).unwrap_or(i32::MAX),
            )
            .execute(&mut *conn)
            .await?
            .rows_affected(),
            Some(JobStatus::Rejected) => sqlx::query!(
                "UPDATE caster_stop_jobs
                     SET dead_lettered_at = NULL, replays = replays + 1, updated_at = now()
                     WHERE job_id = $1 AND status = 'rejected'",
                job_id.as_uuid(),
            )
            .execute(&mut *conn)
            .await?
            .rows_affected(),
            _ => 0,
        };
        record.reopened = reopened == 1;
    }
    sqlx::query!(
        "INSERT INTO caster_stop_replays
           (job_id, previous_status, previous_error_code, reason, reopened)
         VALUES ($1, $2, $3, $4, $5)",
        job_id.as_uuid(),
        record.previous_status.map(JobStatus::as_str),
        record.previous_error_code.as_deref(),
        reason,
        record.reopened,
    )
    .execute(&mut *conn)
    .await?;
    Ok(record)
}
