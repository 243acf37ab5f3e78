//! `stopcaster cancel`: cancels jobs that no call has been made for (`scheduled`, or `pending`
//! with no attempt), by id or by batch; they become `cancelled`, with who and when, and are
//! never called. Jobs already started or ended are reported as such, never silently skipped.
//! The statement and its guarantee are in [`crate::store::cancel_jobs`].

use std::io::Write;

use crate::config::DatabaseArgs;
use crate::domain::audit::{ACTOR_CHARS, Action, Entry, Outcome, Who, ids_target};
use crate::domain::display::bounded;
use crate::ops::audit::{self, ActorArgs};
use crate::ops::filter::FilterArgs;
use crate::store::{self, CancelOutcome, CancelRow};

/// How many jobs `--dry-run` lists after the count.
pub(crate) const SAMPLE: usize = 20;

/// `stopcaster cancel`'s arguments.
#[derive(clap::Args, Clone, Debug)]
pub struct CancelArgs {
    /// Job ids to cancel.
    #[arg(value_parser = crate::ops::args::job_id)]
    pub job_ids: Vec<uuid::Uuid>,
    /// Cancel the jobs matching these filters (every job of a batch with --batch) that no
    /// call has been made for; the others are listed as started or ended.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Print how many jobs would be cancelled and a sample of them, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub actor: ActorArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error(
        "name job ids, or filters (--batch, --status, --error-code, ...): cancel acts on nothing by default"
    )]
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
    let filter = args.filter.filter();
    let filter = (!filter.is_empty()).then(|| args.filter.describe());
    [ids, filter]
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

impl CancelSummary {
    fn count(&mut self, outcome: &CancelOutcome) {
        match outcome {
            CancelOutcome::Cancelled { .. } => self.cancelled += 1,
            CancelOutcome::AlreadyCancelled { .. } => self.already_cancelled += 1,
            CancelOutcome::Ended { .. } => self.ended += 1,
            CancelOutcome::Started { .. } => self.started += 1,
            CancelOutcome::Unknown => self.unknown += 1,
        }
    }
}

/// Runs `stopcaster cancel`: one line per job on `out`, a count on standard error; with
/// `--dry-run`, the count and a sample of what would be cancelled, and nothing changed.
pub async fn run(args: &CancelArgs, out: &mut dyn Write) -> Result<CancelSummary, CancelError> {
    let filter = args.filter.filter();
    if args.job_ids.is_empty() && filter.is_empty() {
        return Err(CancelError::Nothing);
    }
    let ids = &args.job_ids;
    let pool = store::pool(&args.database.database_url, 2).await?;
    let rows = if args.dry_run {
        // A count and a sample change nothing: no audit row.
        store::preview_cancel(&pool, ids, &filter).await
    } else {
        let who = args.actor.who();
        let rows = store::cancel_jobs(&pool, ids, &filter, &operator(&who)).await;
        let (count, outcome) = match &rows {
            Ok(rows) => audit_outcome(rows),
            Err(e) => (None, Outcome::Failed(format!("database: {e}"))),
        };
        audit::record(
            &pool,
            &Entry::new(Action::Cancel, &who, &cancel_target(args), count, outcome),
        )
        .await;
        rows
    };
    pool.close().await;
    let rows = rows?;
    let mut summary = CancelSummary::default();
    for row in &rows {
        summary.count(&row.outcome);
    }
    if args.dry_run {
        writeln!(out, "would cancel {} job(s)", summary.cancelled)?;
        for row in rows
            .iter()
            .filter(|r| matches!(r.outcome, CancelOutcome::Cancelled { .. }))
            .take(SAMPLE)
        {
            writeln!(
                out,
                "  {}",
                describe(row).replacen("cancelled", "would cancel", 1)
            )?;
        }
        if summary.cancelled > SAMPLE {
            writeln!(out, "  ... and {} more", summary.cancelled - SAMPLE)?;
        }
    } else {
        for row in &rows {
            writeln!(out, "{}", describe(row))?;
        }
    }
    out.flush()?;
    if !filter.is_empty() && !rows.iter().any(|r| r.outcome != CancelOutcome::Unknown) {
        eprintln!(
            "{}: no jobs recorded match (a wrong value, or none received by a worker yet)",
            args.filter.describe()
        );
        summary.unknown += 1;
    }
    let verb = if args.dry_run {
        "would be cancelled"
    } else {
        "cancelled"
    };
    eprintln!(
        "{} {verb}, {} already cancelled, {} already ended, {} already started (not cancelled), {} unknown",
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
