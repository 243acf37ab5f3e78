//! A job's lifecycle in `caster_stop_jobs` and `caster_stop_attempts`: opened once, an attempt
//! row written before each call and completed after it, a terminal status written once with the
//! last attempt. The conditions that keep the record exact live in the statements.

use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;

use crate::domain::{Job, JobId, JobStatus, RegionId, Verdict, schedule};
use stopcaster_live::CallOutcome;

/// A malformed message, as recorded.
#[derive(Debug)]
pub(crate) struct RejectedMessage<'a> {
    pub job_id: JobId,
    pub caster_id: Option<&'a str>,
    pub batch_id: Option<&'a str>,
    pub payload: &'a str,
    pub payload_escaped: bool,
    pub reason: &'a str,
}

/// Records a rejected message. False when a row with its job id already exists (a redelivery,
/// or a malformed copy of a known job): that row is left as it is.
pub(crate) async fn record_rejected(
    pool: &PgPool,
    m: &RejectedMessage<'_>,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query!(
        "INSERT INTO caster_stop_jobs
           (job_id, caster_id, batch_id, status, conclusion, error_code, error_message,
            payload, payload_escaped, finished_at)
         VALUES ($1, $2, $3, 'rejected', 'rejected', 'Rejected', $4, $5, $6, now())
         ON CONFLICT (job_id) DO NOTHING",
        m.job_id.as_uuid(),
        m.caster_id,
        m.batch_id,
        m.reason,
        m.payload,
        m.payload_escaped,
    )
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// What the database knows of a job when a delivery of it starts.
#[derive(Clone, Debug)]
pub(crate) struct JobState {
    pub status: JobStatus,
    pub attempts: u32,
    /// Attempts allowed in all (the configured maximum, raised by replays).
    pub attempt_budget: Option<u32>,
    /// Calls refused for their credentials, which the budget gives back.
    pub refused_attempts: u32,
    pub next_attempt_at: Option<OffsetDateTime>,
    /// For a failed or rejected job: its dead letter was confirmed by the broker.
    pub dead_lettered: bool,
    /// The due time the message carried: no call before it.
    pub not_before: Option<OffsetDateTime>,
    /// The job was due later than when it was received (it was scheduled, not late on arrival).
    pub due_ahead: bool,
}

/// Inserts the job, or finds it. A job due later than [`schedule::LEAD`] from now (the
/// database's clock) is inserted `scheduled` with its `not_before`: the schedule is this row,
/// and the delivery may be acknowledged once it is committed. Otherwise it is `pending`, and a
/// `scheduled` row found within the lead of its due time becomes `pending` here (`staged_at`):
/// this delivery carries it, whether the stager's or a redelivery of the original.
///
/// One statement, committed on its own: no `BEGIN`/`COMMIT` round trips around it (a single
/// statement is atomic and durable at its commit all the same).
pub(crate) async fn open_job(
    pool: &PgPool,
    job: &Job,
    region: &RegionId,
    payload: &str,
    payload_escaped: bool,
) -> Result<JobState, sqlx::Error> {
    let row = sqlx::query!(
        r#"INSERT INTO caster_stop_jobs
           (job_id, caster_id, region_id, batch_id, account, payload, payload_escaped,
            not_before, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
                 CASE WHEN $8 > now() + make_interval(secs => $9) THEN 'scheduled'
                      ELSE 'pending' END)
         ON CONFLICT (job_id) DO UPDATE SET
           status = CASE WHEN caster_stop_jobs.status = 'scheduled'
                          AND caster_stop_jobs.not_before <= now() + make_interval(secs => $9)
                         THEN 'pending' ELSE caster_stop_jobs.status END,
           staged_at = CASE WHEN caster_stop_jobs.status = 'scheduled'
                             AND caster_stop_jobs.not_before <= now() + make_interval(secs => $9)
                            THEN now() ELSE caster_stop_jobs.staged_at END
         RETURNING status, attempts, attempt_budget, refused_attempts, next_attempt_at,
                   dead_lettered_at IS NOT NULL AS "dead_lettered!", not_before,
                   coalesce(not_before > created_at, false) AS "due_ahead!""#,
        job.job_id.as_uuid(),
        job.caster_id.as_str(),
        region.as_str(),
        job.batch_id.as_deref(),
        job.account.as_ref().map(|a| a.as_str()),
        payload,
        payload_escaped,
        job.not_before,
        schedule::LEAD.as_secs_f64(),
    )
    .fetch_one(pool)
    .await?;
    Ok(JobState {
        status: JobStatus::parse(&row.status).unwrap_or(JobStatus::Pending),
        attempts: row.attempts as u32,
        attempt_budget: row.attempt_budget.map(|b| b as u32),
        refused_attempts: row.refused_attempts as u32,
        next_attempt_at: row.next_attempt_at,
        dead_lettered: row.dead_lettered,
        not_before: row.not_before,
        due_ahead: row.due_ahead,
    })
}

/// How long a claim on a job lasts (see [`start_attempt`]): one call, connect and answer, with
/// room to record it. The worker and `stop` claim alike.
pub(crate) fn claim_lease(client: &stopcaster_live::ClientConfig) -> Duration {
    client.timeout + client.connect_timeout + Duration::from_secs(5)
}

/// What [`start_attempt`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttemptStart {
    /// Attempt number `attempt` is recorded and this worker holds the job until the lease ends.
    /// `unknown_before`: an earlier attempt, by any worker, may have stopped the studio without
    /// anyone seeing the answer (read from the history, so every worker concludes alike).
    Started { attempt: u32, unknown_before: bool },
    /// The job is terminal: another delivery finished it.
    NotPending,
    /// Another live worker holds the job for a call right now.
    ClaimedElsewhere,
}

/// A call of an account's shared schedule, about to leave at `slot` (the database's clock): what
/// `stopcaster_recent_calls` counts (see [`super::recent_calls`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScheduledCall<'a> {
    pub account: &'a str,
    pub slot: OffsetDateTime,
}

/// Numbers and records a new attempt before its call, and claims the job for `lease` so that
/// no other worker calls for it meanwhile. With `call`, the same statement records it among the
/// schedule's recent calls (one round trip and one commit fewer per call than a statement of
/// its own); a call that then stays home is forgotten with `forget_recent_call`.
pub(crate) async fn start_attempt(
    pool: &PgPool,
    job_id: JobId,
    worker: &str,
    lease: Duration,
    call: Option<ScheduledCall<'_>>,
) -> Result<AttemptStart, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query!(
        r#"UPDATE caster_stop_jobs j
         SET attempts = j.attempts + CASE WHEN free THEN 1 ELSE 0 END,
             claimed_by = CASE WHEN free THEN $2 ELSE j.claimed_by END,
             claimed_until = CASE WHEN free THEN now() + make_interval(secs => $3)
                                  ELSE j.claimed_until END,
             updated_at = CASE WHEN free THEN now() ELSE j.updated_at END
         FROM (SELECT job_id, (claimed_until IS NULL OR claimed_until < now() OR claimed_by = $2)
                              AS free
               FROM caster_stop_jobs WHERE job_id = $1 FOR UPDATE) c
         WHERE j.job_id = c.job_id AND j.status = 'pending'
         RETURNING j.attempts, c.free AS "free!""#,
        job_id.as_uuid(),
        worker,
        lease.as_secs_f64(),
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(AttemptStart::NotPending);
    };
    if !row.free {
        return Ok(AttemptStart::ClaimedElsewhere);
    }
    // Nobody else holds the job, so an attempt still open was cut short by a crash: its outcome
    // is unknown. One statement after the claim (two round trips fewer than three): marking the
    // cut attempt, reading whether any attempt's outcome is unknown, and recording the new one.
    // The job's row is locked by the claim above, so nobody else writes its attempts meanwhile;
    // the read sees the statement's snapshot, before the marking, so the attempts marked now
    // count as unknown through `interrupted`.
    let unknown_before = sqlx::query_scalar!(
        r#"WITH interrupted AS (
             UPDATE caster_stop_attempts
             SET outcome = 'transport-error', error_code = 'Interrupted',
                 error_message = 'the worker stopped during the call; its outcome is unknown',
                 outcome_unknown = true, finished_at = clock_timestamp()
             WHERE job_id = $1 AND outcome IS NULL
             RETURNING 1
           ), recorded AS (
             INSERT INTO caster_stop_attempts (job_id, attempt, worker) VALUES ($1, $2, $3)
           ), old_calls AS (
             DELETE FROM stopcaster_recent_calls WHERE ctid = ANY (ARRAY (
               SELECT ctid FROM stopcaster_recent_calls
               WHERE account = $4 AND slot < $5::timestamptz - interval '5 seconds'
               FOR UPDATE SKIP LOCKED))
           ), scheduled_call AS (
             INSERT INTO stopcaster_recent_calls (account, slot)
             SELECT $4, $5 WHERE $4::text IS NOT NULL
           )
           SELECT (EXISTS (SELECT 1 FROM interrupted)
                   OR EXISTS (SELECT 1 FROM caster_stop_attempts
                              WHERE job_id = $1 AND outcome_unknown)) AS "unknown!""#,
        job_id.as_uuid(),
        row.attempts,
        worker,
        call.map(|c| c.account),
        call.map(|c| c.slot),
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(AttemptStart::Started {
        attempt: row.attempts as u32,
        unknown_before,
    })
}

/// What an attempt's answer left to record: its outcome, and the `(Limit, Remain)` of the quota
/// header that bound the call (`QuotaHeaders::binding`), for the dashboard's chart.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Answered<'a> {
    pub outcome: &'a CallOutcome,
    pub quota: Option<(u32, u32)>,
}

/// Completes an attempt and, in the same transaction, the job's last-error columns and its
/// terminal status if `verdict` is given. Returns false if the job was already terminal (another
/// delivery got there first); the attempt is recorded either way.
pub(crate) async fn finish_attempt(
    pool: &PgPool,
    job_id: JobId,
    attempt: u32,
    answer: Answered<'_>,
    verdict: Option<&Verdict>,
    next_attempt_at: Option<OffsetDateTime>,
) -> Result<bool, sqlx::Error> {
    let refused = matches!(answer.outcome, CallOutcome::CredentialsRefused(_));
    finish(
        pool,
        job_id,
        attempt,
        answer,
        verdict,
        next_attempt_at,
        refused,
    )
    .await
}

/// Completes an attempt that failed for its account's reasons (the world failed it while the
/// account was paused, or it paused it) and, in the same transaction, gives it back to the
/// job's budget. False if the job is no longer pending.
pub(crate) async fn finish_given_back_attempt(
    pool: &PgPool,
    job_id: JobId,
    attempt: u32,
    answer: Answered<'_>,
) -> Result<bool, sqlx::Error> {
    finish(pool, job_id, attempt, answer, None, None, true).await
}

/// [`finish_attempt`], the attempt given back to the budget if `given_back`. Never more given
/// back than made (`refused_attempts < attempts`): a statement retried after its answer was
/// lost cannot give the same attempt back twice.
async fn finish(
    pool: &PgPool,
    job_id: JobId,
    attempt: u32,
    answer: Answered<'_>,
    verdict: Option<&Verdict>,
    next_attempt_at: Option<OffsetDateTime>,
    given_back: bool,
) -> Result<bool, sqlx::Error> {
    let Answered { outcome, quota } = answer;
    // Postgres has no unsigned int; a header beyond i32 is no quota anyone is given.
    let quota_field = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    let succeeded_call = matches!(outcome, CallOutcome::Stopped { .. });
    let stopped = verdict.is_some_and(|v| v.status == JobStatus::Succeeded);
    let request_id = if succeeded_call || !stopped {
        outcome.request_id()
    } else {
        None
    };
    // One statement, so one round trip and one commit: the attempt's update runs in a
    // data-modifying WITH, which Postgres always runs to completion whether or not the job's
    // update matches, and both commit together or not at all, as the two statements of one
    // transaction did. The count returned is the job's update's.
    let updated = sqlx::query!(
        "WITH attempt AS (
           UPDATE caster_stop_attempts
           SET finished_at = clock_timestamp(), http_status = $3, request_id = $4,
               error_code = $5, error_message = $6, outcome = $7, outcome_unknown = $8,
               quota_limit = $9, quota_remain = $10
           WHERE job_id = $1 AND attempt = $2
         )
         UPDATE caster_stop_jobs SET
           updated_at = now(),
           request_id = coalesce($11, CASE WHEN $15 THEN NULL ELSE request_id END),
           error_code = CASE WHEN $12 THEN error_code ELSE $5 END,
           error_message = CASE WHEN $12 THEN error_message ELSE $6 END,
           http_status = CASE WHEN $12 THEN http_status ELSE $3 END,
           status = coalesce($13, status),
           conclusion = coalesce($14, conclusion),
           evidence_request_id = $16,
           next_attempt_at = $17,
           claimed_by = NULL,
           claimed_until = NULL,
           finished_at = CASE WHEN $13 IS NULL THEN NULL ELSE now() END,
           refused_attempts = refused_attempts
                              + CASE WHEN $18 AND refused_attempts < attempts THEN 1 ELSE 0 END
         WHERE job_id = $1 AND status = 'pending'",
        job_id.as_uuid(),
        attempt as i32,
        outcome.http_status().map(i32::from),
        outcome.request_id(),
        outcome.error_code(),
        outcome.error_message(),
        outcome.label(),
        outcome.outcome_unknown(),
        quota.map(|q| quota_field(q.0)),
        quota.map(|q| quota_field(q.1)),
        request_id,
        succeeded_call,
        verdict.map(|v| v.status.as_str()),
        verdict.map(|v| v.conclusion),
        stopped,
        verdict.and_then(|v| v.evidence_request_id.as_deref()),
        next_attempt_at,
        given_back,
    )
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Writes a terminal status without a call (a job found out of attempts when picked up
/// again). False if it was no longer pending.
pub(crate) async fn conclude_job(
    pool: &PgPool,
    job_id: JobId,
    verdict: &Verdict,
    error: Option<(&str, &str)>,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query!(
        "UPDATE caster_stop_jobs
         SET status = $2, conclusion = $3, updated_at = now(), finished_at = now(),
             claimed_by = NULL, claimed_until = NULL,
             error_code = coalesce($4, error_code), error_message = coalesce($5, error_message)
         WHERE job_id = $1 AND status = 'pending'",
        job_id.as_uuid(),
        verdict.status.as_str(),
        verdict.conclusion,
        error.map(|e| e.0),
        error.map(|e| e.1),
    )
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Notes that the broker confirmed a job's dead letter.
pub(crate) async fn mark_dead_lettered(pool: &PgPool, job_id: JobId) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE caster_stop_jobs SET dead_lettered_at = now() WHERE job_id = $1",
        job_id.as_uuid(),
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Whether a rejected or failed job's dead letter is already confirmed.
pub(crate) async fn is_dead_lettered(pool: &PgPool, job_id: JobId) -> Result<bool, sqlx::Error> {
    let done = sqlx::query_scalar!(
        r#"SELECT dead_lettered_at IS NOT NULL AS "done!" FROM caster_stop_jobs WHERE job_id = $1"#,
        job_id.as_uuid(),
    )
    .fetch_optional(pool)
    .await?;
    Ok(done.unwrap_or(false))
}
