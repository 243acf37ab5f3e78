//! `stopcaster dead-letters`: look at the dead-letter queue `P.dead` without emptying it, and
//! put chosen jobs back on the work queue `P.jobs` with a fresh attempt budget. The reading and
//! the replay are [`crate::dead_letters`]', shared with the dashboard; this module is the
//! command line and what it prints.

use std::io::Write;

use serde_json::json;
use uuid::Uuid;

use crate::broker::Names;
use crate::config::{AttemptsArgs, BrokerArgs, DatabaseArgs};
use crate::domain::time::rfc3339_micros as timestamp;
use crate::ops::table::{cell, table};

use crate::dead_letters::{
    DeadLetter, DeadLetterError, ReplayReport, Selection, list, preview, replay,
};
use crate::domain::audit::{Action, Entry, Outcome};
use crate::ops::audit::{self, ActorArgs};
use crate::ops::filter::FilterArgs;

/// How many dead letters `--dry-run` lists after the count.
const SAMPLE: usize = 20;

/// The replay's selection from its arguments: exactly one of `--all`, ids, or filters.
fn selection(
    all: bool,
    job_ids: &[Uuid],
    filter: &FilterArgs,
) -> Result<Selection, DeadLetterError> {
    let filter = filter.filter();
    match (all, job_ids.is_empty(), filter.is_empty()) {
        (true, true, true) => Ok(Selection::All),
        (false, false, true) => Ok(Selection::Jobs(job_ids.to_vec())),
        (false, true, false) => Ok(Selection::Matching(filter)),
        (false, true, true) => Err(DeadLetterError::Usage(
            "name what to replay: --all, job ids, or filters (--batch, --error-code, ...)",
        )),
        _ => Err(DeadLetterError::Usage(
            "choose one of --all, job ids, or filters (--batch, --error-code, ...)",
        )),
    }
}

/// `stopcaster dead-letters ...`
#[derive(clap::Subcommand, Clone, Debug)]
// Parsed once per run: the size of its largest variant (replay's filters) costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum DeadLettersCommand {
    /// Show the messages in P.dead (job id, caster, reason, when) without removing them.
    List {
        /// table or json.
        #[arg(long, value_parser = crate::ops::args::choice::<ListFormat>("a format"), default_value = "table")]
        format: ListFormat,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Put chosen dead letters back on P.jobs; exits 1 if a named job is not in P.dead.
    ///
    /// Each failed job is reopened (pending, with STOPCASTER_MAX_ATTEMPTS more calls), its
    /// original body republished with confirms, and only then its dead letter removed. A
    /// rejected (malformed) message is republished too, and will be rejected and dead-lettered
    /// again. Running it twice does no harm.
    Replay {
        /// Replay every message in P.dead.
        #[arg(long, conflicts_with = "job_ids")]
        all: bool,
        /// Job ids to replay (the x-stopcaster-job-id of their dead letters).
        #[arg(value_parser = crate::ops::args::job_id)]
        job_ids: Vec<Uuid>,
        /// Replay the dead letters whose job matches these filters (report's), instead of
        /// --all or ids.
        #[command(flatten)]
        filter: FilterArgs,
        /// Print how many dead letters would be replayed and a sample of them; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// A replayed job gets this many calls on top of those it already made.
        #[command(flatten)]
        attempts: AttemptsArgs,
        #[command(flatten)]
        actor: ActorArgs,
        #[command(flatten)]
        broker: BrokerArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    #[default]
    Table,
    Json,
}

/// Runs a `dead-letters` subcommand, writing to `out`. Returns the named job ids that were not
/// found in `P.dead` (the caller exits non-zero for them).
pub async fn run(
    command: &DeadLettersCommand,
    out: &mut dyn Write,
) -> Result<Vec<Uuid>, DeadLetterError> {
    match command {
        DeadLettersCommand::List { format, broker } => {
            let names = Names::new(&broker.queue_prefix);
            let letters = list(&broker.amqp_url, &names).await?;
            write_list(out, &names.dead, *format, &letters)?;
            out.flush()?;
            Ok(Vec::new())
        }
        DeadLettersCommand::Replay {
            all,
            job_ids,
            filter,
            dry_run,
            attempts,
            actor,
            broker,
            database,
        } => {
            let names = Names::new(&broker.queue_prefix);
            let selection = selection(*all, job_ids, filter)?;
            // Applies migrations/ (caster_stop_replays) like the worker does.
            let pool = crate::store::migrate(&database.database_url).await?;
            if *dry_run {
                let result = preview(&broker.amqp_url, &names, &pool, &selection).await;
                pool.close().await;
                write_preview(out, &result?)?;
                out.flush()?;
                return Ok(Vec::new());
            }
            let max_attempts = attempts.max_attempts.max(1);
            let url = &broker.amqp_url;
            let result =
                replay_audited(out, url, &names, &pool, &selection, max_attempts, actor).await;
            pool.close().await;
            let report = result?;
            if report.without_job_id > 0 {
                eprintln!(
                    "{} dead letter(s) without a readable job id left in {}",
                    report.without_job_id, names.dead
                );
            }
            if report.replayed.is_empty() {
                eprintln!("nothing replayed");
            }
            Ok(report.missing)
        }
    }
}

/// Replays `selection`, printing a line per job as it goes, and records the replay in the
/// audit trail whatever its result. A line that cannot be written fails the command only
/// once the replay is over and recorded.
async fn replay_audited(
    out: &mut dyn Write,
    amqp_url: &str,
    names: &Names,
    pool: &sqlx::PgPool,
    selection: &Selection,
    max_attempts: u32,
    actor: &ActorArgs,
) -> Result<ReplayReport, DeadLetterError> {
    let mut write_error = None;
    let result = replay(amqp_url, names, pool, selection, max_attempts, |r| {
        if let Err(e) = writeln!(out, "{}", r.describe()).and_then(|()| out.flush()) {
            write_error.get_or_insert(e);
        }
    })
    .await;
    let outcome = match &result {
        Ok(report) => report.audit_outcome(),
        Err(e) => Outcome::Failed(e.to_string()),
    };
    let count = result.as_ref().ok().map(|r| r.replayed.len());
    let entry = Entry::new(
        Action::Replay,
        &actor.who(),
        &selection.describe(),
        count,
        outcome,
    );
    audit::record(pool, &entry).await;
    let report = result?;
    match write_error {
        Some(e) => Err(e.into()),
        None => Ok(report),
    }
}

/// `--dry-run`: the count, then a sample.
fn write_preview(out: &mut dyn Write, letters: &[DeadLetter]) -> std::io::Result<()> {
    writeln!(out, "would replay {} dead letter(s)", letters.len())?;
    let shown = |v: &Option<String>| cell(v.as_deref().unwrap_or("-").to_owned());
    for l in letters.iter().take(SAMPLE) {
        writeln!(
            out,
            "  {} (caster {}, batch {}, reason {})",
            shown(&l.job_id),
            shown(&l.caster_id),
            shown(&l.batch_id),
            shown(&l.reason)
        )?;
    }
    if letters.len() > SAMPLE {
        writeln!(out, "  ... and {} more", letters.len() - SAMPLE)?;
    }
    Ok(())
}

/// Writes `letters` as a table or one JSON document.
pub(crate) fn write_list(
    out: &mut dyn Write,
    queue: &str,
    format: ListFormat,
    letters: &[DeadLetter],
) -> std::io::Result<()> {
    match format {
        ListFormat::Json => {
            let doc = json!({
                "queue": queue,
                "count": letters.len(),
                "messages": letters.iter().map(DeadLetter::json).collect::<Vec<_>>(),
            });
            writeln!(out, "{doc:#}")
        }
        ListFormat::Table => {
            let shown = |v: &Option<String>| cell(v.as_deref().unwrap_or("-").to_owned());
            let rows: Vec<Vec<String>> = letters
                .iter()
                .map(|l| {
                    vec![
                        shown(&l.job_id),
                        shown(&l.caster_id),
                        shown(&l.batch_id),
                        shown(&l.reason),
                        l.when.map_or_else(|| "-".to_owned(), timestamp),
                    ]
                })
                .collect();
            out.write_all(
                table(
                    &["job_id", "caster_id", "batch_id", "reason", "when"],
                    &rows,
                )
                .as_bytes(),
            )?;
            writeln!(out, "{} message(s) in {queue}", letters.len())
        }
    }
}
