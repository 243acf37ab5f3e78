//! `stopcaster cancel`: cancels jobs that no call has been made for (`scheduled`, or `pending`
//! with no attempt), by id or by batch; they become `cancelled`, with who and when, and are
//! never called. Jobs already started or ended are reported as such, never silently skipped.
//! The statement and its guarantee are in [`crate::store::cancel_jobs`].

use std::io::Write;

use crate::config::DatabaseArgs;
use crate::domain::audit::{ACTOR_CHARS, Action, Entry, Outcome, Who, ids_target};
use crate::domain::display::bounded;
use crate::ops::audit::{self, ActorArgs};
use crate::store::{self, CancelOutcome, CancelRow};

/// `stopcaster cancel`'s arguments.
#[derive(clap::Args, Clone, Debug)]
pub struct CancelArgs {
    /// Job ids to cancel.
    #[arg(value_parser = crate::ops::args::job_id)]
    pub job_ids: Vec<uuid::Uuid>,
    /// Cancel every job of this batch that no call has been made for.
    #[arg(long)]
    pub batch: Option<String>,
    #[command(flatten)]
    pub actor: ActorArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("name job ids, or a batch with --batch")]
    Nothing,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("writing the output: {0}")]
    Io(#[from] std::io::Error),
}

/// What `cancel` did, counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CancelSummary {
    pub cancelled: usize,
    pub already_cancelled: usize,
    pub ended: usize,
    pub started: usize,
    pub unknown: usize,
}

impl CancelSummary {
    /// True when none of the jobs will be called from now on: each is cancelled (now or
    /// before) or had ended. False when a job had already started (it runs to its end) or an
    /// id is unknown (a wrong id, or a job still in the queue that no worker has received).
    pub fn settled(&self) -> bool {
        self.started == 0 && self.unknown == 0
    }
}

/// Who is cancelling: `user@host`, for `cancelled_by` (escaped: it is shown as it is stored).
pub(crate) fn operator(who: &Who) -> String {
    format!(
        "{}@{}",
        bounded(&who.actor, ACTOR_CHARS),
        bounded(&who.origin, ACTOR_CHARS)
    )
}

/// What the audit trail says was asked to be cancelled.
pub(crate) fn cancel_target(args: &CancelArgs) -> String {
    let ids = (!args.job_ids.is_empty()).then(|| ids_target("jobs ", &args.job_ids));
    let batch = args.batch.as_ref().map(|b| format!("batch {b}"));
    [ids, batch]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("; ")
}

/// How many were cancelled, and whether all that was named is settled.
pub(crate) fn audit_outcome(rows: &[CancelRow]) -> (Option<usize>, Outcome) {
    let cancelled = rows
        .iter()
        .filter(|r| matches!(r.outcome, CancelOutcome::Cancelled { .. }))
        .count();
    let started = rows
        .iter()
        .filter(|r| matches!(r.outcome, CancelOutcome::Started { .. }))
        .count();
    let unknown = rows
        .iter()
        .filter(|r| r.outcome == CancelOutcome::Unknown)
        .count();
    let outcome = if started + unknown == 0 {
        Outcome::Ok
    } else {
        Outcome::Partial(format!(
            "{started} already started (not cancelled), {unknown} unknown"
        ))
    };
    (Some(cancelled), outcome)
}

/// Runs `stopcaster cancel`: one line per job on `out`, a count on standard error.
pub async fn run(args: &CancelArgs, out: &mut dyn Write) -> Result<CancelSummary, CancelError> {
    if args.job_ids.is_empty() && args.batch.is_none() {
        return Err(CancelError::Nothing);
    }
    let ids = &args.job_ids;
    let pool = store::pool(&args.database.database_url, 2).await?;
    let who = args.actor.who();
    let rows = store::cancel_jobs(&pool, ids, args.batch.as_deref(), &operator(&who)).await;
    let (count, outcome) = match &rows {
        Ok(rows) => audit_outcome(rows),
        Err(e) => (None, Outcome::Failed(format!("database: {e}"))),
    };
    audit::record(
        &pool,
        &Entry::new(Action::Cancel, &who, &cancel_target(args), count, outcome),
    )
    .await;
    pool.close().await;
    let rows = rows?;
    let mut summary = CancelSummary::default();
    for row in &rows {
        writeln!(out, "{}", describe(row))?;
        match row.outcome {
            CancelOutcome::Cancelled { .. } => summary.cancelled += 1,
            CancelOutcome::AlreadyCancelled { .. } => summary.already_cancelled += 1,
            CancelOutcome::Ended { .. } => summary.ended += 1,
            CancelOutcome::Started { .. } => summary.started += 1,
            CancelOutcome::Unknown => summary.unknown += 1,
        }
    }
    out.flush()?;
    if let Some(batch) = &args.batch
        && !rows.iter().any(|r| r.outcome != CancelOutcome::Unknown)
    {
        eprintln!("batch {batch}: no jobs recorded (wrong id, or none received by a worker yet)");
        summary.unknown += 1;
    }
    eprintln!(
        "{} cancelled, {} already cancelled, {} already ended, {} already started (not cancelled), {} unknown",
        summary.cancelled,
        summary.already_cancelled,
        summary.ended,
        summary.started,
        summary.unknown
    );
    Ok(summary)
}

/// One line for a job: `cancelled`, `already cancelled`, `already ended`, `already started`
/// or `unknown`, the job id, and what else is known.
pub(crate) fn describe(row: &CancelRow) -> String {
    let caster = row
        .caster_id
        .as_deref()
        .map(|c| format!(" caster {c}"))
        .unwrap_or_default();
    let id = row.job_id;
    match &row.outcome {
        CancelOutcome::Cancelled { was } => format!("cancelled {id}{caster} (was {was})"),
        CancelOutcome::AlreadyCancelled { by, at } => format!(
            "already cancelled {id}{caster} (by {}, at {})",
            by.as_deref().unwrap_or("?"),
            at.map_or_else(|| "?".to_owned(), crate::domain::time::rfc3339_micros)
        ),
        CancelOutcome::Ended { status } => format!("already ended {id}{caster} ({status})"),
        CancelOutcome::Started { attempts } => format!(
            "already started {id}{caster} ({attempts} call(s) made): not cancelled, it runs to its end"
        ),
        CancelOutcome::Unknown => format!(
            "unknown {id}: no such job recorded (a wrong id, or a message no worker has received yet)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_what_happened() {
        let id = uuid::Uuid::nil();
        let row = |outcome| CancelRow {
            job_id: id,
            caster_id: Some("c1".into()),
            outcome,
        };
        assert_eq!(
            describe(&row(CancelOutcome::Cancelled {
                was: "scheduled".into()
            })),
            format!("cancelled {id} caster c1 (was scheduled)")
        );
        assert!(
            describe(&row(CancelOutcome::Started { attempts: 1 }))
                .starts_with(&format!("already started {id} caster c1 (1 call(s) made)"))
        );
        assert_eq!(
            describe(&row(CancelOutcome::Ended {
                status: "succeeded".into()
            })),
            format!("already ended {id} caster c1 (succeeded)")
        );
        assert!(describe(&row(CancelOutcome::Unknown)).starts_with("unknown "));
        let who = crate::domain::audit::Who::new("a\u{1b}", crate::domain::audit::Source::Cli, "h");
        assert_eq!(operator(&who), "a\\x1b@h");
        let mut s = CancelSummary {
            cancelled: 2,
            ended: 1,
            ..Default::default()
        };
        assert!(s.settled());
        s.started = 1;
        assert!(!s.settled());
    }
}
