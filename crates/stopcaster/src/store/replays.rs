//! Reopening dead-lettered jobs for `stopcaster dead-letters replay`, and the record of each
//! replay in `caster_stop_replays`.

use std::collections::{HashMap, HashSet};

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

/// A row as a replay found it: status, error code, CasterId.
type Found = (Option<JobStatus>, Option<String>, Option<String>);

/// Reopens jobs for a replay and records each replay in `caster_stop_replays`, in the caller's
/// transaction: the caller commits only once the messages are back on the work queue, and the
/// row locks taken here make a worker that receives one meanwhile wait for that commit. A few
/// statements for the whole list, whatever its length (a chunk of a bulk replay). One record
/// per `(job, reason)`, in order; a job listed twice is reopened once.
///
/// Only a `failed` row goes back to `pending` (budget: `attempts + max_attempts` more calls);
/// a `rejected` row stays rejected but loses `dead_lettered_at`, since its message will be
/// rejected again and must be dead-lettered again. `pending` and `succeeded` rows are left
/// alone, which makes a repeated replay harmless.
pub(crate) async fn reopen_for_replay(
    conn: &mut sqlx::PgConnection,
    jobs: &[(JobId, Option<&str>)],
    max_attempts: u32,
) -> Result<Vec<ReplayRecord>, sqlx::Error> {
    let ids: Vec<uuid::Uuid> = jobs.iter().map(|(id, _)| id.as_uuid()).collect();
    let found = lock_rows(conn, &ids).await?;
    let reopened = reopen(conn, &found, max_attempts).await?;
    let records = records(jobs, &found, reopened);
    insert_records(conn, &ids, jobs, &records).await?;
    Ok(records)
}

/// The rows of `ids` that exist, locked until the caller's transaction ends.
async fn lock_rows(
    conn: &mut sqlx::PgConnection,
    ids: &[uuid::Uuid],
) -> Result<HashMap<uuid::Uuid, Found>, sqlx::Error> {
    // Locked in one order, so that two replays of overlapping sets cannot deadlock.
    let rows = sqlx::query!(
        "SELECT job_id, status, error_code, caster_id FROM caster_stop_jobs
         WHERE job_id = ANY($1) ORDER BY job_id FOR UPDATE",
        ids,
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.job_id,
                (JobStatus::parse(&r.status), r.error_code, r.caster_id),
            )
        })
        .collect())
}

/// Reopens the `failed` and `rejected` rows among `found`; returns the ids reopened.
async fn reopen(
    conn: &mut sqlx::PgConnection,
    found: &HashMap<uuid::Uuid, Found>,
    max_attempts: u32,
) -> Result<HashSet<uuid::Uuid>, sqlx::Error> {
    let with = |wanted: JobStatus| -> Vec<uuid::Uuid> {
        found
            .iter()
            .filter(|(_, (s, _, _))| *s == Some(wanted))
            .map(|(id, _)| *id)
            .collect()
    };
    let failed = sqlx::query_scalar!(
        "UPDATE caster_stop_jobs
             SET status = 'pending', conclusion = NULL, finished_at = NULL,
                 dead_lettered_at = NULL, next_attempt_at = NULL,
                 claimed_by = NULL, claimed_until = NULL,
                 attempt_budget = attempts + $2, replays = replays + 1,
                 updated_at = now()
             WHERE job_id = ANY($1) AND status = 'failed'
             RETURNING job_id",
        &with(JobStatus::Failed),
        i32::try_from(max_attempts).unwrap_or(i32::MAX),
    )
    .fetch_all(&mut *conn)
    .await?;
    let rejected = sqlx::query_scalar!(
        "UPDATE caster_stop_jobs
             SET dead_lettered_at = NULL, replays = replays + 1, updated_at = now()
             WHERE job_id = ANY($1) AND status = 'rejected'
             RETURNING job_id",
        &with(JobStatus::Rejected),
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(failed.into_iter().chain(rejected).collect())
}

/// One record per listed job, in order, from the rows as found and the ids reopened.
fn records(
    jobs: &[(JobId, Option<&str>)],
    found: &HashMap<uuid::Uuid, Found>,
    mut reopened: HashSet<uuid::Uuid>,
) -> Vec<ReplayRecord> {
    jobs.iter()
        .map(|(id, _)| {
            let (previous_status, previous_error_code, caster_id) = found
                .get(&id.as_uuid())
                .cloned()
                .unwrap_or((None, None, None));
            ReplayRecord {
                previous_status,
                previous_error_code,
                caster_id,
                // Only the first listing of a job counts as the one that reopened it.
                reopened: reopened.remove(&id.as_uuid()),
            }
        })
        .collect()
}

/// The replays' rows in `caster_stop_replays`, one per record, with each job's reason.
async fn insert_records(
    conn: &mut sqlx::PgConnection,
    ids: &[uuid::Uuid],
    jobs: &[(JobId, Option<&str>)],
    records: &[ReplayRecord],
) -> Result<(), sqlx::Error> {
    let statuses: Vec<Option<&str>> = records
        .iter()
        .map(|r| r.previous_status.map(JobStatus::as_str))
        .collect();
    let codes: Vec<Option<&str>> = records
        .iter()
        .map(|r| r.previous_error_code.as_deref())
        .collect();
    let reasons: Vec<Option<&str>> = jobs.iter().map(|(_, r)| *r).collect();
    let flags: Vec<bool> = records.iter().map(|r| r.reopened).collect();
    sqlx::query!(
        "INSERT INTO caster_stop_replays
           (job_id, previous_status, previous_error_code, reason, reopened)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bool[])",
        ids,
        &statuses as &[Option<&str>],
        &codes as &[Option<&str>],
        &reasons as &[Option<&str>],
        &flags,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_listed_twice_is_reopened_by_its_first_listing_and_a_missing_row_has_no_status() {
        let (failed, missing) = (JobId::new_random(), JobId::new_random());
        let found = HashMap::from([(
            failed.as_uuid(),
            (
                Some(JobStatus::Failed),
                Some("E".to_owned()),
                Some("c".to_owned()),
            ),
        )]);
        let jobs = [(failed, None), (missing, Some("why")), (failed, None)];
        let records = records(&jobs, &found, HashSet::from([failed.as_uuid()]));
        let reopened: Vec<bool> = records.iter().map(|r| r.reopened).collect();
        assert_eq!(reopened, [true, false, false]);
        assert_eq!(records[0].previous_status, Some(JobStatus::Failed));
        assert_eq!(records[2].previous_error_code.as_deref(), Some("E"));
        assert_eq!(records[1].previous_status, None);
        assert_eq!(records[1].caster_id, None);
    }
}
