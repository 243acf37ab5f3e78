//! `stopcaster report`: audit listings over `caster_stop_jobs` and `caster_stop_attempts`, as
//! an aligned table for people, or JSON or CSV for programs. The queries are in
//! [`crate::store`]; this module parses the options and writes the output.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::domain::display::escape;
use crate::domain::{JobStatus, parse_since};
use crate::export::{COLUMNS, csv_record, csv_row, fields, timestamp};
use crate::ops::filter::FilterArgs;
use crate::ops::table::{Cut, Flexible, cell, fit, shorten, table};
use crate::store::{self, JobFilter, JobRow, ReportSummary};

/// How often `--watch` prints the summary again.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);
/// The widest a line of the default table and of the summary gets: a terminal's width with
/// room to spare.
pub(crate) const TABLE_WIDTH: usize = 100;
/// How many characters of a job id or RequestId the default table shows: enough to tell
/// them apart in a batch and to search for them.
const SHORT_ID: usize = 8;

/// Output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
    Csv,
}

/// The options of `stopcaster report`.
#[derive(clap::Args, Clone, Debug)]
pub struct ReportArgs {
    /// The filters; `--batch` adds the batch summary, `--request-id` finds the job of any
    /// call that got that RequestId.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// table, json or csv. The table shows the columns an operator scans first, in 100
    /// characters; --wide shows every column.
    #[arg(long, value_parser = crate::ops::args::choice::<Format>("a format"), default_value = "table")]
    pub format: Format,
    /// Most jobs listed, newest first (0: no limit). The summary always counts them all.
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    /// The table with every column (as in JSON and CSV), ids and times in full.
    #[arg(long)]
    pub wide: bool,
    /// Print the batch summary every 2 s until the batch has jobs and none is scheduled or pending.
    #[arg(long, requires = "batch")]
    pub watch: bool,
    /// With --watch: give up, exiting 1, when the batch is not finished after this long
    /// (90s, 15m, 2h, 1h30m).
    #[arg(long, requires = "watch", value_parser = parse_since)]
    pub timeout: Option<Duration>,
    /// With --watch: the batch's size (what `enqueue` reported), so that the watch also waits
    /// for jobs still in the queue, which have no row yet.
    #[arg(long, requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    pub expect: Option<u64>,
    /// Calls per second the workers make (as they are configured), for a batch's expected
    /// finish.
    #[arg(long, env = "STOPCASTER_QPS", default_value_t = crate::config::DEFAULT_QPS)]
    pub qps: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("writing the output: {0}")]
    Io(#[from] std::io::Error),
    #[error("batch {batch} not finished after {}: {recorded} jobs recorded, {pending} pending", seconds(*.after))]
    WatchTimedOut {
        batch: String,
        after: Duration,
        recorded: i64,
        pending: i64,
    },
}

/// `90 s`, `2.5 s`.
fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// The default table's columns: which studio, how it ended, and where to look further: the
/// first characters of `job_id`, `caster_id`, `status`, `attempts` (calls made),
/// `error_code`, the first characters of `request_id`, `finished_at` to the second.
pub const NARROW_COLUMNS: [&str; 7] = [
    "job", "caster", "status", "calls", "error", "request", "finished",
];
/// The columns of [`NARROW_COLUMNS`] shortened (with `…`) when the table would be too wide;
/// the others have a bounded width. Error codes keep the most (`InvalidCaster.NotFound`
/// whole); CasterIds are cut in the middle, since ids of one account share their start.
const NARROW_FLEXIBLE: [Flexible; 2] = [
    Flexible {
        column: 1,
        floor: 16,
        cut: Cut::Middle,
    },
    Flexible {
        column: 4,
        floor: 22,
        cut: Cut::End,
    },
];

/// A row's cells in the default table, in [`NARROW_COLUMNS`] order: short ids, times to the
/// second, `-` for NULL.
fn narrow_fields(row: &JobRow) -> Vec<String> {
    let short = |id: &str| id.chars().take(SHORT_ID).collect::<String>();
    let or_dash = |c: Option<String>| c.unwrap_or_else(|| "-".to_owned());
    vec![
        short(&row.job_id.to_string()),
        or_dash(row.caster_id.clone()),
        row.status.clone(),
        row.attempts.to_string(),
        or_dash(row.error_code.clone()),
        or_dash(row.request_id.as_deref().map(short)),
        or_dash(row.finished_at.map(crate::domain::time::rfc3339_seconds)),
    ]
    .into_iter()
    .map(cell)
    .collect()
}

fn row_json(row: &JobRow) -> Value {
    json!({
        "job_id": row.job_id.to_string(),
        "caster_id": row.caster_id,
        "region_id": row.region_id,
        "batch_id": row.batch_id,
        "status": row.status,
        "conclusion": row.conclusion,
        "request_id": row.request_id,
        "error_code": row.error_code,
        "http_status": row.http_status,
        "attempts": row.attempts,
        "replays": row.replays,
        "created_at": timestamp(row.created_at),
        "finished_at": row.finished_at.map(timestamp),
        "account": row.account,
        "not_before": row.not_before.map(timestamp),
    })
}

/// A batch's expected finish, added to its summary: when the jobs still to run (scheduled or
/// pending) should be done at `qps`, after their due time.
fn with_expected_finish(mut doc: Value, summary: &ReportSummary, qps: u32) -> Value {
    doc["expected_finish"] = json!(summary.expected_finish(qps).map(timestamp));
    doc["first_due"] = json!(summary.first_due.map(timestamp));
    doc
}

fn expected_finish_text(summary: &ReportSummary, qps: u32) -> String {
    match summary.expected_finish(qps) {
        Some(at) => {
            let due = summary
                .first_due
                .filter(|d| summary.now.is_some_and(|now| *d > now))
                .map(|d| format!(", first due {}", timestamp(d)))
                .unwrap_or_default();
            format!(
                "expected finish: {} ({} left at {qps}/s{due})\n",
                timestamp(at),
                summary.remaining()
            )
        }
        None => String::new(),
    }
}

/// The summary as a JSON object.
pub(crate) fn summary_json(summary: &ReportSummary) -> Value {
    let by_status: serde_json::Map<String, Value> = summary
        .by_status
        .iter()
        .map(|(s, n)| (s.clone(), json!(n)))
        .collect();
    let failures: serde_json::Map<String, Value> = summary
        .totals
        .failures_by_code
        .iter()
        .map(|(c, n)| (c.clone(), json!(n)))
        .collect();
    json!({
        "jobs": summary.total(),
        "by_status": by_status,
        "calls": summary.totals.calls,
        "first_call": summary.totals.first_call.map(timestamp),
        "last_call": summary.totals.last_call.map(timestamp),
        "retried_attempts": summary.totals.retried_attempts,
        "throttled_attempts": summary.totals.throttled_attempts,
        "failures_by_error_code": failures,
    })
}

/// The summary as a few lines of text, each within [`TABLE_WIDTH`] (a long label is
/// shortened: the operator typed it).
pub(crate) fn summary_text(summary: &ReportSummary, label: &str) -> String {
    let counts = summary
        .by_status
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let jobs = format!(": {} jobs", summary.total());
    let label = shorten(&escape(label), TABLE_WIDTH - jobs.chars().count(), Cut::End);
    let mut out = format!("{label}{jobs}\nstatus: {counts}\n");
    let when = |t: Option<OffsetDateTime>| t.map_or_else(|| "-".to_owned(), timestamp);
    out.push_str(&format!(
        "calls: {} (first {}, last {})\nretried attempts {}; throttled attempts {}\n",
        summary.totals.calls,
        when(summary.totals.first_call),
        when(summary.totals.last_call),
        summary.totals.retried_attempts,
        summary.totals.throttled_attempts
    ));
    if !summary.totals.failures_by_code.is_empty() {
        out.push_str("failures by error code:\n");
        let codes: Vec<(String, i64)> = summary
            .totals
            .failures_by_code
            .iter()
            .map(|(c, n)| (cell(c.clone()), *n))
            .collect();
        let width = codes
            .iter()
            .map(|(c, _)| c.chars().count())
            .max()
            .unwrap_or(0);
        for (code, n) in &codes {
            out.push_str(&format!("  {code:<width$}  {n}\n"));
        }
    }
    out
}

impl ReportArgs {
    pub fn filter(&self) -> JobFilter {
        self.filter.filter()
    }

    fn label(&self) -> String {
        match &self.filter.batch {
            Some(b) => format!("batch {b}"),
            None => "matching".to_owned(),
        }
    }
}

/// Runs the report against `database_url` and writes it to `out`.
pub async fn run(
    args: &ReportArgs,
    database_url: &str,
    out: &mut dyn Write,
) -> Result<(), ReportError> {
    let pool = store::pool_checked(database_url, 2).await?;
    let result = if args.watch {
        watch(args, &pool, out).await
    } else {
        once(args, &pool, out).await
    };
    pool.close().await;
    result
}

async fn once(
    args: &ReportArgs,
    pool: &sqlx::PgPool,
    out: &mut dyn Write,
) -> Result<(), ReportError> {
    let filter = args.filter();
    let limit = (args.limit > 0).then_some(args.limit);
    let jobs = store::report_jobs(pool, &filter, limit).await?;
    // The summary of an unfiltered JSON/CSV listing could scan the whole table: only when asked
    // for (a batch) or for people (table).
    let summary = if args.filter.batch.is_some() || args.format == Format::Table {
        Some(store::report_summary(pool, &filter).await?)
    } else {
        None
    };
    match args.format {
        Format::Json => {
            let doc = json!({
                "jobs": jobs.iter().map(row_json).collect::<Vec<_>>(),
                "summary": summary
                    .as_ref()
                    .map(|s| with_expected_finish(summary_json(s), s, args.qps)),
            });
            writeln!(out, "{doc:#}")?;
        }
        Format::Csv => {
            out.write_all(csv_record(COLUMNS).as_bytes())?;
            for row in &jobs {
                out.write_all(csv_row(row).as_bytes())?;
            }
            // CSV has no place for it: the summary goes to standard error.
            if let Some(summary) = &summary {
                eprint!("{}", summary_text(summary, &args.label()));
                eprint!("{}", expected_finish_text(summary, args.qps));
            }
        }
        // A bare header would look like a failure to read.
        Format::Table if jobs.is_empty() => writeln!(out, "no jobs match")?,
        Format::Table => {
            let text = if args.wide {
                let rows: Vec<Vec<String>> = jobs
                    .iter()
                    .map(|r| {
                        fields(r)
                            .into_iter()
                            .map(|c| cell(c.unwrap_or_else(|| "-".to_owned())))
                            .collect()
                    })
                    .collect();
                table(&COLUMNS, &rows)
            } else {
                let mut rows: Vec<Vec<String>> = jobs.iter().map(narrow_fields).collect();
                fit(&NARROW_COLUMNS, &mut rows, &NARROW_FLEXIBLE, TABLE_WIDTH);
                table(&NARROW_COLUMNS, &rows)
            };
            out.write_all(text.as_bytes())?;
            if let Some(summary) = &summary {
                writeln!(out)?;
                out.write_all(summary_text(summary, &args.label()).as_bytes())?;
                out.write_all(expected_finish_text(summary, args.qps).as_bytes())?;
            }
        }
    }
    if limit.is_some_and(|l| jobs.len() as u64 >= u64::from(l)) {
        eprintln!(
            "(the newest {} jobs; --limit N or --limit 0 for more)",
            jobs.len()
        );
    }
    out.flush()?;
    Ok(())
}

/// Prints the summary every [`WATCH_INTERVAL`] until [`batch_finished`].
async fn watch(
    args: &ReportArgs,
    pool: &sqlx::PgPool,
    out: &mut dyn Write,
) -> Result<(), ReportError> {
    let filter = args.filter();
    let started = Instant::now();
    let mut warned = false;
    loop {
        let summary = store::report_summary(pool, &filter).await?;
        // At once, rather than a silent wait that may never end: a mistyped batch id looks
        // exactly like a batch whose jobs are all still queued.
        if summary.total() == 0 && !warned {
            warned = true;
            eprintln!(
                "warning: batch {} has no jobs yet (is the id right? a job gets its row when a \
                 worker receives it)",
                args.filter.batch.as_deref().unwrap_or_default()
            );
        }
        let now = timestamp(OffsetDateTime::now_utc());
        match args.format {
            Format::Json => {
                let mut doc = with_expected_finish(summary_json(&summary), &summary, args.qps);
                doc["at"] = json!(now);
                writeln!(out, "{doc}")?;
            }
            Format::Table | Format::Csv => {
                writeln!(out, "[{now}]")?;
                out.write_all(summary_text(&summary, &args.label()).as_bytes())?;
                out.write_all(expected_finish_text(&summary, args.qps).as_bytes())?;
            }
        }
        out.flush()?;
        if batch_finished(&summary, args.expect) {
            return Ok(());
        }
        let mut wait = WATCH_INTERVAL;
        if let Some(timeout) = args.timeout {
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(ReportError::WatchTimedOut {
                    batch: args.filter.batch.clone().unwrap_or_default(),
                    after: timeout,
                    recorded: summary.total(),
                    pending: summary.count(JobStatus::Pending),
                });
            }
            wait = wait.min(left);
        }
        tokio::time::sleep(wait).await;
    }
}

/// A watched batch is finished when none of its jobs is scheduled or pending and it has at least `expect`
/// jobs (at least one when the size is not given). Jobs still in the queue have no row yet, so
/// an empty batch is waited for rather than taken as finished, and without `expect` a batch
/// whose every received job is done looks finished while more wait in the queue.
pub(crate) fn batch_finished(summary: &ReportSummary, expect: Option<u64>) -> bool {
    let recorded = u64::try_from(summary.total()).unwrap_or(0);
    recorded >= expect.unwrap_or(1) && summary.remaining() == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["id", "status"],
            &[
                vec!["1".into(), "succeeded".into()],
                vec!["22222".into(), "-".into()],
            ],
        );
        assert_eq!(t, "id     status\n1      succeeded\n22222  -\n");
    }

    #[test]
    fn summary_text_lists_failures() {
        let mut s = ReportSummary {
            by_status: vec![("pending".into(), 0), ("failed".into(), 2)],
            ..Default::default()
        };
        s.totals.calls = 3;
        s.totals.retried_attempts = 1;
        s.totals.failures_by_code = vec![("InvalidCaster.NotFound".into(), 2)];
        let text = summary_text(&s, "batch b");
        assert!(
            text.starts_with("batch b: 2 jobs\nstatus: pending 0, failed 2\n"),
            "{text}"
        );
        let long = summary_text(&s, &format!("batch {}", "b".repeat(300)));
        assert!(
            long.lines().all(|l| l.chars().count() <= TABLE_WIDTH),
            "{long}"
        );
        assert!(
            long.starts_with("batch bbb") && long.contains("…: 2 jobs\n"),
            "{long}"
        );
        assert!(text.contains("retried attempts 1"));
        assert!(text.contains("  InvalidCaster.NotFound  2\n"));
        let j = summary_json(&s);
        assert_eq!(j["by_status"]["failed"], 2);
        assert_eq!(j["failures_by_error_code"]["InvalidCaster.NotFound"], 2);
        assert!(j["first_call"].is_null());
    }

    #[test]
    fn a_watched_batch_is_finished_when_nothing_is_pending_and_enough_are_recorded() {
        let summary = |pending: i64, succeeded: i64| ReportSummary {
            by_status: vec![
                ("pending".to_owned(), pending),
                ("succeeded".to_owned(), succeeded),
            ],
            ..Default::default()
        };
        assert!(!batch_finished(&summary(0, 0), None), "no row yet");
        assert!(!batch_finished(&summary(1, 2), None));
        assert!(batch_finished(&summary(0, 2), None));
        assert!(!batch_finished(&summary(0, 2), Some(3)), "one still queued");
        assert!(batch_finished(&summary(0, 3), Some(3)));
        assert!(!batch_finished(&summary(1, 3), Some(3)));
    }
}
