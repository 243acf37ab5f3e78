//! `dead-letters replay`: per message, reopen the job row and record the replay (one
//! transaction, left open), publish the original body to `P.jobs` and wait for the confirm,
//! commit, and only then acknowledge the dead letter.

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
pub enum Selection {
    All,
    Jobs(Vec<Uuid>),
}

/// One dead letter a replay handled.
#[derive(Clone, Debug)]
pub struct Replayed {
    pub job_id: Uuid,
    pub letter: DeadLetter,
    /// `None` for a second dead letter of a job already replayed in this run: removed, not
    /// published again.
    pub record: Option<ReplayRecord>,
}

impl Replayed {
    /// A line for the operator.
    pub fn describe(&self) -> String {
        let caster = self
            .letter
            .caster_id
            .as_deref()
            .or(self.record.as_ref().and_then(|r| r.caster_id.as_deref()))
            .unwrap_or("-");
        let reason = self.letter.reason.as_deref().unwrap_or("-");
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
pub struct ReplayReport {
    pub replayed: Vec<Replayed>,
    /// Named job ids with no dead letter in `P.dead`.
    pub missing: Vec<Uuid>,
    /// Chosen dead letters left in place because no job id could be read from them.
    pub without_job_id: usize,
}

/// Replays the chosen dead letters (see the module comment for the order of effects); calls
/// `each` after each one is done.
pub async fn replay(
    amqp_url: &str,
    names: &Names,
    pool: &sqlx::PgPool,
    selection: &Selection,
    max_attempts: u32,
    mut each: impl FnMut(&Replayed),
) -> Result<ReplayReport, DeadLetterError> {
    let connection = broker::connect(amqp_url, "stopcaster dead-letters replay").await?;
    let channel = connection.create_channel().await?;
    broker::declare_topology(&channel, names).await?;
    let publish = broker::confirm_channel(&connection).await?;
    let messages = take_unacked(&channel, &names.dead).await?;
    let mut report = ReplayReport::default();
    let mut done: HashSet<Uuid> = HashSet::new();
    let mut left = Vec::new();
    let mut failure = None;
    let mut queue = messages.into_iter();
    for message in queue.by_ref() {
        let letter = DeadLetter::from_message(&message.delivery.properties, &message.delivery.data);
        let chosen = match selection {
            Selection::All => true,
            Selection::Jobs(ids) => letter.job_uuid().is_some_and(|id| ids.contains(&id)),
        };
        if !chosen {
            left.push(message);
            continue;
        }
        let Some(job_id) = letter.job_uuid() else {
            report.without_job_id += 1;
            left.push(message);
            continue;
        };
        if done.contains(&job_id) {
            message
                .delivery
                .acker
                .ack(BasicAckOptions::default())
                .await?;
            let replayed = Replayed {
                job_id,
                letter,
                record: None,
            };
            each(&replayed);
            report.replayed.push(replayed);
            continue;
        }
        match replay_one(
            pool,
            names,
            &publish,
            &message,
            job_id,
            &letter,
            max_attempts,
        )
        .await
        {
            Ok(record) => {
                done.insert(job_id);
                let replayed = Replayed {
                    job_id,
                    letter,
                    record: Some(record),
                };
                each(&replayed);
                report.replayed.push(replayed);
            }
            Err(e) => {
                // Stop at the first failure: the broker or the database is likely down for
                // the rest too. Everything not done stays in P.dead.
                left.push(message);
                failure = Some(e);
                break;
            }
        }
    }
    left.extend(queue);
    requeue(&left).await;
    let _ = publish.close(200, "done".into()).await;
    let _ = channel.close(200, "done".into()).await;
    let _ = connection.close(200, "done".into()).await;
    if let Some(e) = failure {
        return Err(e);
    }
    if let Selection::Jobs(ids) = selection {
        let mut seen = HashSet::new();
        report.missing = ids
            .iter()
            .filter(|id| !done.contains(id) && seen.insert(**id))
            .copied()
            .collect();
    }
    Ok(report)
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
