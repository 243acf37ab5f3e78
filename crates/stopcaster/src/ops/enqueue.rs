//! `stopcaster enqueue`: turn a list of CasterIds into confirmed job messages, one per studio.

use std::collections::HashSet;
use std::path::PathBuf;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use lapin::options::BasicPublishOptions;

use crate::broker::{self, BrokerError, Names};
use crate::config::{BrokerArgs, DatabaseArgs};
use crate::domain::audit::{Action, Entry, Outcome};
use crate::domain::{CasterId, Job, JobId, RegionId, Rejection};
use crate::ops::audit::{self, ActorArgs};

/// The jobs one `enqueue` publishes.
#[derive(Debug)]
pub struct Plan {
    pub batch_id: String,
    /// In the order given; each is the message published for it.
    pub jobs: Vec<Job>,
    /// Ids given more than once (enqueued once).
    pub duplicates: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("invalid CasterId {id:?}: {rejection}")]
    InvalidCasterId { id: String, rejection: Rejection },
    #[error("invalid region: {0}")]
    InvalidRegion(Rejection),
    #[error(
        "no CasterIds given: name them as arguments (stopcaster enqueue ID...), or one per line \
         in a file (--file PATH) or on standard input (--file -)"
    )]
    Empty,
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    // Not transparent: the broker error stays in the source chain, where the one-line error
    // report finds what it says about the server (a timeout, for one).
    #[error("{0}")]
    Broker(#[from] BrokerError),
    #[error("{unconfirmed} of {total} jobs were not confirmed by the broker")]
    NotConfirmed { unconfirmed: usize, total: usize },
    #[error(transparent)]
    At(#[from] crate::domain::schedule::AtError),
}

/// `stopcaster enqueue`'s arguments.
#[derive(clap::Args, Clone, Debug)]
pub struct EnqueueArgs {
    /// CasterIds to stop.
    pub caster_ids: Vec<String>,
    /// Read CasterIds from a file, one per line (`-` for standard input; blank lines and
    /// `#` comments are skipped).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// RegionId for these jobs (default: the worker's STOPCASTER_REGION).
    #[arg(long)]
    pub region: Option<String>,
    /// Batch label (default: a new UUID).
    #[arg(long)]
    pub batch: Option<String>,
    /// Schedule the stops: an RFC 3339 time, or HH:MM[:SS] for the next such time in --tz.
    #[arg(long)]
    pub at: Option<String>,
    /// IANA time zone of --at HH:MM[:SS], e.g. Asia/Shanghai (default: the local zone).
    #[arg(long, requires = "at")]
    pub tz: Option<String>,
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub actor: ActorArgs,
    /// Where the enqueue is recorded in the audit trail (when unreachable: the jobs are
    /// published all the same, and a warning says the action is not recorded).
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// Runs `stopcaster enqueue`: the batch id on stdout; on stderr a progress bar (terminals
/// only), then one summary line and every unconfirmed job; an error unless the broker
/// confirmed every job.
pub async fn run(args: EnqueueArgs) -> Result<(), EnqueueError> {
    let mut ids = args.caster_ids;
    if let Some(path) = args.file {
        let read = if path.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(&path)
        };
        let text = read.map_err(|source| EnqueueError::Read {
            path: path.display().to_string(),
            source,
        })?;
        ids.extend(parse_id_lines(&text));
    }
    // Read before anything else, so a wrong time stops the command before it publishes.
    let at = args
        .at
        .as_deref()
        .map(|t| schedule_at(t, args.tz.as_deref()))
        .transpose()?;
    let mut plan = plan(ids, args.region.as_deref(), args.batch)?;
    if let Some(at) = &at {
        schedule(&mut plan, at);
    }
    for dup in &plan.duplicates {
        eprintln!("duplicate CasterId {dup}: enqueued once");
    }
    let total = plan.jobs.len();
    let started = std::time::Instant::now();
    let progress = Progress::new(total);
    let published = publish(
        &args.broker.amqp_url,
        &Names::new(&args.broker.queue_prefix),
        &plan,
        |r| progress.show(r.confirmed + r.unconfirmed()),
    )
    .await;
    // The bar goes before anything else is said, whatever happened.
    progress.clear();
    let outcome = match &published {
        Ok(r) if r.unconfirmed() == 0 => Outcome::Ok,
        Ok(r) => Outcome::Partial(format!(
            "{} of {total} jobs not confirmed by the broker",
            r.unconfirmed()
        )),
        Err(e) => Outcome::Failed(e.to_string()),
    };
    let count = published.as_ref().ok().map(|r| r.confirmed);
    let target = enqueue_target(&plan, at.as_ref());
    audit::record_at(
        &args.database.database_url,
        &Entry::new(Action::Enqueue, &args.actor.who(), &target, count, outcome),
    )
    .await;
    let report = published?;
    println!("{}", plan.batch_id);
    eprintln!(
        "{}",
        summary_line(&report, total, &plan.batch_id, started.elapsed())
    );
    for &index in &report.unconfirmed_jobs {
        let job = &plan.jobs[index];
        eprintln!("not confirmed: {} (job {})", job.caster_id, job.job_id);
    }
    if report.unconfirmed() > 0 {
        return Err(EnqueueError::NotConfirmed {
            unconfirmed: report.unconfirmed(),
            total,
        });
    }
    Ok(())
}

/// What the audit trail says was enqueued: the batch, how many studios, when due.
pub(crate) fn enqueue_target(plan: &Plan, at: Option<&crate::domain::schedule::At>) -> String {
    let due = at.map_or_else(String::new, |a| format!(", due {}", a.described));
    format!(
        "batch {}: {} studio(s){due}",
        plan.batch_id,
        plan.jobs.len()
    )
}

/// The one line `enqueue` ends with on stderr: `20 jobs confirmed in batch B (0.03 s)`, or
/// `18 of 20 jobs confirmed ...` when the broker did not confirm them all.
pub(crate) fn summary_line(
    report: &PublishReport,
    total: usize,
    batch_id: &str,
    took: std::time::Duration,
) -> String {
    let count = if report.unconfirmed() == 0 {
        format!("{} jobs", report.confirmed)
    } else {
        format!("{} of {total} jobs", report.confirmed)
    };
    format!(
        "{count} confirmed in batch {batch_id} ({:.2} s)",
        took.as_secs_f64()
    )
}

/// Publishing progress on stderr, on a terminal only: a bar, cleared when done so that the
/// summary line stands alone. Off a terminal (a pipe, a log file) progress lines would be
/// noise: the summary says it all.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(total: usize) -> Self {
        let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} confirmed ({per_sec}, {eta} left)",
                )
                .expect("a valid template"),
            );
            bar
        });
        Self { bar }
    }

    fn show(&self, done: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
        }
    }

    fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Reads `--at` (and `--tz`) as of now; see [`crate::domain::schedule::parse_at`].
fn schedule_at(
    text: &str,
    zone: Option<&str>,
) -> Result<crate::domain::schedule::At, EnqueueError> {
    Ok(crate::domain::schedule::parse_at(
        text,
        zone,
        time::OffsetDateTime::now_utc(),
    )?)
}

/// Gives every job of the plan the due time, and says it on standard error.
pub(crate) fn schedule(plan: &mut Plan, at: &crate::domain::schedule::At) {
    for job in &mut plan.jobs {
        job.not_before = Some(at.at);
    }
    eprintln!(
        "scheduled for {} ({})",
        at.described,
        crate::domain::time::rfc3339_millis(at.at)
    );
}

/// Ids from a file's text: one per line, surrounding blanks trimmed, blank lines and `#`
/// comments skipped.
pub(crate) fn parse_id_lines(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
}

/// Validates and de-duplicates the ids, giving each job an id.
pub fn plan(
    ids: Vec<String>,
    region: Option<&str>,
    batch: Option<String>,
) -> Result<Plan, EnqueueError> {
    let region = region
        .map(RegionId::parse)
        .transpose()
        .map_err(EnqueueError::InvalidRegion)?;
    let batch_id = batch.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut seen = HashSet::new();
    let mut jobs = Vec::with_capacity(ids.len());
    let mut duplicates = Vec::new();
    for id in ids {
        let caster = CasterId::parse(&id).map_err(|rejection| EnqueueError::InvalidCasterId {
            id: id.clone(),
            rejection,
        })?;
        if seen.insert(id.clone()) {
            jobs.push(Job {
                job_id: JobId::new_random(),
                caster_id: caster,
                region_id: region.clone(),
                batch_id: Some(batch_id.clone()),
                account: None,
                not_before: None,
            });
        } else {
            duplicates.push(id);
        }
    }
    if jobs.is_empty() {
        return Err(EnqueueError::Empty);
    }
    Ok(Plan {
        batch_id,
        jobs,
        duplicates,
    })
}

/// The message body of one job: the job itself, serialized (see [`Job`]).
pub(crate) fn job_body(job: &Job) -> Vec<u8> {
    serde_json::to_vec(job).expect("a job serializes")
}

/// What the broker confirmed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PublishReport {
    pub confirmed: usize,
    /// Indexes into the plan's jobs of those not confirmed (nacked, returned, or never
    /// published): each may or may not be in the queue.
    pub unconfirmed_jobs: Vec<usize>,
}

impl PublishReport {
    pub fn unconfirmed(&self) -> usize {
        self.unconfirmed_jobs.len()
    }
}

/// Publishes every job of the plan (persistent, mandatory) and waits for all confirms.
/// Publishing is pipelined: confirms are awaited together, so thousands take seconds.
/// `progress` is told the running report after each confirm.
pub async fn publish(
    amqp_url: &str,
    names: &Names,
    plan: &Plan,
    mut progress: impl FnMut(&PublishReport),
) -> Result<PublishReport, EnqueueError> {
    let connection = broker::connect(amqp_url, "stopcaster enqueue").await?;
    let channel = broker::confirm_channel(&connection).await?;
    broker::declare_topology(&connection, names).await?;
    let mut pending = FuturesUnordered::new();
    let mut report = PublishReport::default();
    for (index, job) in plan.jobs.iter().enumerate() {
        let body = job_body(job);
        let published = channel
            .basic_publish(
                names.exchange.as_str().into(),
                broker::STOP_ROUTING_KEY.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &body,
                broker::job_properties(&job.job_id.to_string()),
            )
            .await;
        match published {
            Ok(confirm) => pending.push(async move { (index, confirm.await) }),
            Err(e) => {
                tracing::warn!(error = %e, "publish failed");
                report.unconfirmed_jobs.push(index);
            }
        }
    }
    while let Some((index, confirmation)) = pending.next().await {
        // An ack for a message the broker returned (mandatory, no route) is no delivery.
        let delivered = confirmation.is_ok_and(|c| c.is_ack() && c.take_message().is_none());
        if delivered {
            report.confirmed += 1;
        } else {
            report.unconfirmed_jobs.push(index);
        }
        progress(&report);
    }
    report.unconfirmed_jobs.sort_unstable();
    let _ = channel.close(200, "done".into()).await;
    let _ = connection.close(200, "done".into()).await;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_lines_skip_blanks_and_comments() {
        let ids: Vec<String> = parse_id_lines("a\n\n  # note\n b \n#x\nc").collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[test]
    fn plan_dedupes_and_validates() {
        let p = plan(
            vec!["a".into(), "b".into(), "a".into()],
            Some("cn-beijing"),
            Some("L".into()),
        )
        .unwrap();
        assert_eq!(p.jobs.len(), 2);
        assert_eq!(p.duplicates, ["a"]);
        assert_eq!(p.batch_id, "L");
        assert!(matches!(
            plan(vec!["bad\u{7}".into()], None, None),
            Err(EnqueueError::InvalidCasterId { .. })
        ));
        assert!(matches!(plan(vec![], None, None), Err(EnqueueError::Empty)));
        let body: serde_json::Value = serde_json::from_slice(&job_body(&p.jobs[0])).unwrap();
        assert_eq!(body["job_id"], p.jobs[0].job_id.to_string());
        assert_eq!(body["caster_id"], "a");
        assert_eq!(body["region_id"], "cn-beijing");
        assert_eq!(body["batch_id"], "L");
    }

    #[test]
    fn one_summary_line() {
        let took = std::time::Duration::from_millis(31);
        let all = PublishReport {
            confirmed: 20,
            unconfirmed_jobs: vec![],
        };
        assert_eq!(
            summary_line(&all, 20, "B", took),
            "20 jobs confirmed in batch B (0.03 s)"
        );
        let some = PublishReport {
            confirmed: 18,
            unconfirmed_jobs: vec![3, 7],
        };
        assert_eq!(
            summary_line(&some, 20, "B", took),
            "18 of 20 jobs confirmed in batch B (0.03 s)"
        );
    }
}
