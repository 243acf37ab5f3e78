//! `dead-letters replay`: per message, reopen the job row and record the replay (one
//! transaction, left open), publish the original body to `P.jobs` and wait for the confirm,
//! commit, and only then acknowledge the dead letter.

use crate::domain::display::{CELL_CHARS, bounded};
use std::collections::HashSet;

use lapin::Channel;
use lapin::message::BasicGetMessage;
use lapin::options::BasicAckOptions;
use uuid::Uuid;

use super::DeadLetterError;
use super::letter::DeadLetter;
use super::queue::{requeue, take_unacked};
use crate::broker::{self, Names};
use crate::domain::JobStatus;
use crate::store::{self, ReplayRecord};

/// Which dead letters to replay.
#[derive(Clone, Debug)]
pub(crate) enum Selection {
    All,
    Jobs(Vec<Uuid>),
}

impl Selection {
    /// What the audit trail says was chosen.
    pub(crate) fn describe(&self) -> String {
        match self {
            Selection::All => "all dead letters".to_owned(),
            Selection::Jobs(ids) => crate::domain::audit::ids_target("dead letters of ", ids),
        }
    }
}

impl ReplayReport {
    /// How a replay ends in the audit trail: ok, or partial with what was not replayed.
    pub(crate) fn audit_outcome(&self) -> crate::domain::audit::Outcome {
        audit_outcome(self.missing.len(), self.without_job_id)
    }
}

/// How a replay ends in the audit trail, from what it could not replay.
pub(crate) fn audit_outcome(
    missing: usize,
    without_job_id: usize,
) -> crate::domain::audit::Outcome {
    use crate::domain::audit::Outcome;
    if missing == 0 && without_job_id == 0 {
        return Outcome::Ok;
    }
    Outcome::Partial(format!(
        "{missing} named job(s) not in the dead-letter queue, {without_job_id} dead letter(s) without a job id left in place"
    ))
}

/// One dead letter a replay handled.
#[derive(Clone, Debug)]
pub(crate) struct Replayed {
    pub job_id: Uuid,
    pub letter: DeadLetter,
    /// `None` for a second dead letter of a job already replayed in this run: removed, not
    /// published again.
    pub record: Option<ReplayRecord>,
}

impl Replayed {
    /// A line for the operator.
    pub(crate) fn describe(&self) -> String {
        let caster = self
            .letter
            .caster_id
            .as_deref()
            .or(self.record.as_ref().and_then(|r| r.caster_id.as_deref()))
            .unwrap_or("-");
        // Both came from the message: escaped and bounded as every value shown to people.
        let caster = bounded(caster, CELL_CHARS);
        let reason = bounded(self.letter.reason.as_deref().unwrap_or("-"), CELL_CHARS);
        let Some(record) = &self.record else {
            return format!(
                "{}: duplicate dead letter of a job replayed above; removed",
                self.job_id
            );
        };
        let what = match (record.previous_status, record.reopened) {
            (Some(JobStatus::Failed), true) => "failed job reopened as pending".to_owned(),
            (Some(JobStatus::Rejected), _) => {
                "rejected (malformed) message: the worker will reject and dead-letter it again"
                    .to_owned()
            }
            (Some(status), _) => format!("job already {}, row left as is", status.as_str()),
            (None, _) => "no job row; the worker creates it".to_owned(),
        };
        format!(
            "replayed {} (caster {caster}, reason {reason}): {what}",
            self.job_id
        )
    }
}

/// What a replay did.
#[derive(Debug, Default)]
pub(crate) struct ReplayReport {
    pub replayed: Vec<Replayed>,
    /// Named job ids with no dead letter in `P.dead`.
    pub missing: Vec<Uuid>,
    /// Chosen dead letters left in place because no job id could be read from them.
    pub without_job_id: usize,
}

/// Replays the chosen dead letters (see the module comment for the order of effects); calls
/// `each` after each one is done.
pub(crate) async fn replay(
    amqp_url: &str,
    names: &Names,
    pool: &sqlx::PgPool,
    selection: &Selection,
    max_attempts: u32,
    mut each: impl FnMut(&Replayed),
) -> Result<ReplayReport, DeadLetterError> {
    let connection = broker::connect(amqp_url, "stopcaster dead-letters replay").await?;
    let channel = connection.create_channel().await?;
    broker::declare_topology(&connection, names).await?;
    let publish = broker::confirm_channel(&connection).await?;
    let messages = take_unacked(&channel, &names.dead).await?;
    let mut pass = Pass {
        pool,
        names,
        publish: &publish,
        selection,
        max_attempts,
        report: ReplayReport::default(),
        done: HashSet::new(),
        left: Vec::new(),
    };
    let failure = pass.run(messages, &mut each).await.err();
    requeue(&pass.left).await;
    let _ = publish.close(200, "done".into()).await;
    let _ = channel.close(200, "done".into()).await;
    let _ = connection.close(200, "done".into()).await;
    if let Some(e) = failure {
        return Err(e);
    }
    let mut report = pass.report;
    if let Selection::Jobs(ids) = selection {
        let mut seen = HashSet::new();
        report.missing = ids
            .iter()
            .filter(|id| !pass.done.contains(id) && seen.insert(**id))
            .copied()
            .collect();
    }
    Ok(report)
}

/// One replay's walk over the dead letters it took.
struct Pass<'a> {
    pool: &'a sqlx::PgPool,
    names: &'a Names,
    publish: &'a Channel,
    selection: &'a Selection,
    max_attempts: u32,
    report: ReplayReport,
    /// Jobs replayed in this pass: a second dead letter of one is removed, not replayed.
    done: HashSet<Uuid>,
    /// Messages to hand back to the queue.
    left: Vec<BasicGetMessage>,
}

impl Pass<'_> {
    /// Replays the chosen messages in order; stops at the first failure, leaving it and
    /// everything after it in `left`.
    async fn run(
        &mut self,
        messages: Vec<BasicGetMessage>,
        each: &mut impl FnMut(&Replayed),
    ) -> Result<(), DeadLetterError> {
        let mut queue = messages.into_iter();
        while let Some(message) = queue.next() {
            let letter =
                DeadLetter::from_message(&message.delivery.properties, &message.delivery.data);
            let chosen = match self.selection {
                Selection::All => true,
                Selection::Jobs(ids) => letter.job_uuid().is_some_and(|id| ids.contains(&id)),
            };
            if !chosen {
                self.left.push(message);
                continue;
            }
            let Some(job_id) = letter.job_uuid() else {
                self.report.without_job_id += 1;
                self.left.push(message);
                continue;
            };
            let record = if self.done.contains(&job_id) {
                message
                    .delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await?;
                None
            } else {
                let replayed = replay_one(
                    self.pool,
                    self.names,
                    self.publish,
                    &message,
                    job_id,
                    &letter,
                    self.max_attempts,
                )
                .await;
                match replayed {
                    Ok(record) => Some(record),
                    Err(e) => {
                        // Stop at the first failure: the broker or the database is likely
                        // down for the rest too. Everything not done stays in P.dead.
                        self.left.push(message);
                        self.left.extend(queue);
                        return Err(e);
                    }
                }
            };
            if record.is_some() {
                self.done.insert(job_id);
            }
            let replayed = Replayed {
                job_id,
                letter,
                record,
            };
            each(&replayed);
            self.report.replayed.push(replayed);
        }
        Ok(())
    }
}

async fn replay_one(
    pool: &sqlx::PgPool,
    names: &Names,
    publish: &Channel,
    message: &BasicGetMessage,
    job_id: Uuid,
    letter: &DeadLetter,
    max_attempts: u32,
) -> Result<ReplayRecord, DeadLetterError> {
    let mut tx = pool.begin().await?;
    let record = store::reopen_for_replay(
        &mut tx,
        job_id.into(),
        max_attempts,
        letter.reason.as_deref(),
    )
    .await?;
    // A fresh job message: the original body, none of the dead letter's headers, message_id =
    // job id (which a body without its own job_id is known by).
    broker::publish_confirmed(
        publish,
        "",
        &names.jobs,
        &message.delivery.data,
        broker::job_properties(&job_id.to_string()),
    )
    .await?;
    // If this commit fails, the message just published finds the row still terminal and is
    // acknowledged without a call; the dead letter stays for another replay.
    tx.commit().await?;
    message
        .delivery
        .acker
        .ack(BasicAckOptions::default())
        .await?;
    Ok(record)
}
