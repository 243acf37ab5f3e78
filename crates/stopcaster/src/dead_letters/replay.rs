//! `dead-letters replay`: per message, reopen the job row and record the replay (one
//! transaction, left open), publish the original body to `P.jobs` and wait for the confirm,
//! commit, and only then acknowledge the dead letter.

use crate::domain::display::{CELL_CHARS, bounded};
use std::collections::HashSet;

use lapin::Channel;
use lapin::options::BasicAckOptions;
use uuid::Uuid;

use super::DeadLetterError;
use super::letter::DeadLetter;
use super::queue::{Taken, requeue, take_unacked};
use crate::broker::{self, Names};
use crate::domain::JobStatus;
use crate::store::{self, JobFilter, ReplayRecord};

/// Which dead letters to replay.
#[derive(Clone, Debug)]
pub(crate) enum Selection {
    All,
    Jobs(Vec<Uuid>),
    /// The dead letters whose job's row matches the filter (never an empty filter: the
    /// callers refuse it, and it would match nothing here).
    Matching(JobFilter),
}

/// How many dead letters a replay reopens in one transaction and publishes before waiting for
/// their confirms together: thousands replay in seconds, and a failure leaves at most one
/// chunk's messages published twice (harmless: see the module comment).
const CHUNK: usize = 500;

/// A selection made concrete for the dead letters read: which job ids are chosen.
pub(super) enum Chosen {
    All,
    Jobs(HashSet<Uuid>),
}

impl Chosen {
    /// Resolves `selection` against the job ids of `letters`: for a filter, asks the database
    /// which of those jobs match it (so that the work is bounded by the queue, not the table).
    pub(super) async fn resolve(
        selection: &Selection,
        letters: &[DeadLetter],
        pool: &sqlx::PgPool,
    ) -> Result<Chosen, sqlx::Error> {
        Ok(match selection {
            Selection::All => Chosen::All,
            Selection::Jobs(ids) => Chosen::Jobs(ids.iter().copied().collect()),
            Selection::Matching(filter) => {
                let ids: Vec<Uuid> = letters.iter().filter_map(DeadLetter::job_uuid).collect();
                let matched = store::filter_job_ids(pool, filter, &ids).await?;
                Chosen::Jobs(matched.into_iter().collect())
            }
        })
    }

    pub(super) fn contains(&self, letter: &DeadLetter) -> bool {
        match self {
            Chosen::All => true,
            Chosen::Jobs(ids) => letter.job_uuid().is_some_and(|id| ids.contains(&id)),
        }
    }
}

/// The dead letters a replay of `selection` would take now, oldest first; changes nothing
/// (`--dry-run`, the dashboard's count). The same choice as [`replay`] makes.
pub(crate) async fn preview(
    amqp_url: &str,
    names: &Names,
    pool: &sqlx::PgPool,
    selection: &Selection,
) -> Result<Vec<DeadLetter>, DeadLetterError> {
    let letters = super::list(amqp_url, names).await?;
    let chosen = Chosen::resolve(selection, &letters, pool).await?;
    Ok(letters.into_iter().filter(|l| chosen.contains(l)).collect())
}

impl Selection {
    /// What the audit trail says was chosen.
    pub(crate) fn describe(&self) -> String {
        match self {
            Selection::All => "all dead letters".to_owned(),
            Selection::Jobs(ids) => crate::domain::audit::ids_target("dead letters of ", ids),
            Selection::Matching(filter) => {
                format!("dead letters matching {}", filter.describe())
            }
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
    let letters: Vec<DeadLetter> = messages
        .iter()
        .map(|m| DeadLetter::from_message(&m.delivery.properties, &m.delivery.data))
        .collect();
    let chosen = match Chosen::resolve(selection, &letters, pool).await {
        Ok(c) => c,
        Err(e) => {
            requeue(&channel, &names.dead, &messages).await;
            let _ = connection.close(200, "done".into()).await;
            return Err(e.into());
        }
    };
    let mut pass = Pass {
        pool,
        names,
        publish: &publish,
        chosen: &chosen,
        max_attempts,
        report: ReplayReport::default(),
        done: HashSet::new(),
        left: Vec::new(),
    };
    let failure = pass
        .run(messages.into_iter().zip(letters).collect(), &mut each)
        .await
        .err();
    requeue(&channel, &names.dead, &pass.left).await;
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
    chosen: &'a Chosen,
    max_attempts: u32,
    report: ReplayReport,
    /// Jobs replayed in this pass: a second dead letter of one is removed, not replayed.
    done: HashSet<Uuid>,
    /// Messages to hand back to the queue.
    left: Vec<Taken>,
}

/// A chosen dead letter in a chunk: replayed, or (a second letter of a job replayed in this
/// pass) removed once the chunk is committed.
struct Item {
    message: Taken,
    letter: DeadLetter,
    job_id: Uuid,
    duplicate: bool,
}

impl Pass<'_> {
    /// Replays the chosen messages in order, [`CHUNK`] at a time; stops at the first failure,
    /// leaving its chunk and everything after it in `left`.
    async fn run(
        &mut self,
        messages: Vec<(Taken, DeadLetter)>,
        each: &mut impl FnMut(&Replayed),
    ) -> Result<(), DeadLetterError> {
        let mut chunk: Vec<Item> = Vec::new();
        let mut in_chunk: HashSet<Uuid> = HashSet::new();
        let mut queue = messages.into_iter();
        while let Some((message, letter)) = queue.next() {
            if !self.chosen.contains(&letter) {
                self.left.push(message);
                continue;
            }
            let Some(job_id) = letter.job_uuid() else {
                self.report.without_job_id += 1;
                self.left.push(message);
                continue;
            };
            let duplicate = self.done.contains(&job_id) || !in_chunk.insert(job_id);
            chunk.push(Item {
                message,
                letter,
                job_id,
                duplicate,
            });
            if chunk.len() >= CHUNK {
                in_chunk.clear();
                if let Err(e) = self.replay_chunk(std::mem::take(&mut chunk), each).await {
                    self.left.extend(queue.map(|(m, _)| m));
                    return Err(e);
                }
            }
        }
        if !chunk.is_empty() {
            self.replay_chunk(chunk, each).await?;
        }
        Ok(())
    }

    /// One chunk: reopen the rows and record the replays (one transaction, left open), publish
    /// the original bodies and wait for their confirms, commit, and only then acknowledge the
    /// dead letters. On a failure every message of the chunk goes back to `left`.
    async fn replay_chunk(
        &mut self,
        chunk: Vec<Item>,
        each: &mut impl FnMut(&Replayed),
    ) -> Result<(), DeadLetterError> {
        match self.reopen_and_publish(&chunk).await {
            Ok(records) => {
                for (item, record) in chunk.into_iter().zip(records) {
                    item.message
                        .delivery
                        .acker
                        .ack(BasicAckOptions::default())
                        .await?;
                    if record.is_some() {
                        self.done.insert(item.job_id);
                    }
                    let replayed = Replayed {
                        job_id: item.job_id,
                        letter: item.letter,
                        record,
                    };
                    each(&replayed);
                    self.report.replayed.push(replayed);
                }
                Ok(())
            }
            Err(e) => {
                // Stop at the first failure: the broker or the database is likely down for
                // the rest too. Everything not done stays in P.dead.
                self.left.extend(chunk.into_iter().map(|i| i.message));
                Err(e)
            }
        }
    }

    /// The records of the chunk's items (`None` for a duplicate), committed once every
    /// message is confirmed on the work queue.
    async fn reopen_and_publish(
        &self,
        chunk: &[Item],
    ) -> Result<Vec<Option<ReplayRecord>>, DeadLetterError> {
        let mut tx = self.pool.begin().await?;
        let fresh: Vec<(crate::domain::JobId, Option<&str>)> = chunk
            .iter()
            .filter(|i| !i.duplicate)
            .map(|i| (i.job_id.into(), i.letter.reason.as_deref()))
            .collect();
        let mut reopened = store::reopen_for_replay(&mut tx, &fresh, self.max_attempts)
            .await?
            .into_iter();
        let records: Vec<Option<ReplayRecord>> = chunk
            .iter()
            .map(|i| if i.duplicate { None } else { reopened.next() })
            .collect();
        // Fresh job messages: the original body, none of the dead letter's headers,
        // message_id = job id (which a body without its own job_id is known by).
        let messages: Vec<(String, &[u8])> = chunk
            .iter()
            .filter(|i| !i.duplicate)
            .map(|i| (i.job_id.to_string(), i.message.delivery.data.as_slice()))
            .collect();
        let confirmed =
            broker::publish_jobs_confirmed(self.publish, "", &self.names.jobs, &messages).await;
        if confirmed.iter().any(|ok| !ok) {
            return Err(DeadLetterError::Broker(broker::BrokerError::Nacked));
        }
        // If this commit fails, the messages just published find their rows still terminal
        // and are acknowledged without a call; the dead letters stay for another replay.
        tx.commit().await?;
        Ok(records)
    }
}
