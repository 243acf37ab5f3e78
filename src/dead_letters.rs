//! `stopcaster dead-letters`: look at the dead-letter queue `P.dead` without emptying it, and
//! put chosen jobs back on the work queue `P.jobs` with a fresh attempt budget.
//!
//! Both read `P.dead` with `basic.get` without auto-ack, at most as many messages as a passive
//! declare counted (a requeued message would otherwise come back and be read forever). What is
//! not taken is handed back unacknowledged, so it stays in the queue in its place.
//!
//! A replay, per message: reopen the job row and record the replay (one transaction, left
//! open), publish the original body to `P.jobs` and wait for the broker's confirm, commit, and
//! only then acknowledge the dead letter. A failure at any step leaves the dead letter in
//! `P.dead` and the row as it was (or, after the commit, a harmless extra message), so running
//! the replay again is always safe.

use std::collections::HashSet;
use std::io::Write;

use lapin::message::BasicGetMessage;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::broker::{self, BrokerError, Names};
use crate::config::{BrokerArgs, DatabaseArgs};
use crate::domain::JobId;
use crate::report::{table, timestamp};
use crate::storage::{self, JobStatus, ReplayRecord};

/// `stopcaster dead-letters ...`
#[derive(clap::Subcommand, Clone, Debug)]
pub enum DeadLettersCommand {
    /// Show the messages in P.dead (job id, caster, reason, when) without removing them.
    List {
        /// table or json.
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
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
        #[arg(required_unless_present = "all")]
        job_ids: Vec<Uuid>,
        /// Calls a replayed job gets on top of those it already made.
        #[arg(long, env = "STOPCASTER_MAX_ATTEMPTS", default_value_t = 8)]
        max_attempts: u32,
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

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// Most likely the queue does not exist: nothing was ever dead-lettered under this prefix,
    /// or the prefix is wrong.
    #[error("cannot read the queue {queue}")]
    Queue {
        queue: String,
        #[source]
        error: lapin::Error,
    },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("writing the output: {0}")]
    Io(#[from] std::io::Error),
}

impl From<lapin::Error> for DeadLetterError {
    fn from(e: lapin::Error) -> Self {
        DeadLetterError::Broker(BrokerError::Amqp(e))
    }
}

/// A dead letter as `list` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// The `x-stopcaster-job-id` header; failing that the body's `job_id` or the `message_id`.
    pub job_id: Option<String>,
    /// From the body, when it is a JSON object with a text `caster_id`.
    pub caster_id: Option<String>,
    pub batch_id: Option<String>,
    /// The `x-stopcaster-reason` header (for a message RabbitMQ dead-lettered itself, the
    /// `x-death` reason, e.g. `delivery_limit`).
    pub reason: Option<String>,
    /// The message's `timestamp` property, else the first `x-death` time.
    pub when: Option<OffsetDateTime>,
}

impl DeadLetter {
    pub fn from_message(properties: &BasicProperties, body: &[u8]) -> Self {
        let object = serde_json::from_slice::<Value>(body)
            .ok()
            .filter(Value::is_object);
        let text = |name: &str| {
            object
                .as_ref()
                .and_then(|o| o.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let death = first_x_death(properties);
        let job_id = broker::header_text(properties, broker::JOB_ID_HEADER)
            .or_else(|| text("job_id").filter(|id| JobId::parse(id).is_some()))
            .or_else(|| {
                properties
                    .message_id()
                    .as_ref()
                    .map(|m| m.as_str().to_owned())
                    .filter(|id| JobId::parse(id).is_some())
            });
        let reason = broker::header_text(properties, broker::REASON_HEADER)
            .or_else(|| death.and_then(|d| table_text(d, "reason")));
        let when = (*properties.timestamp())
            .or_else(|| {
                death.and_then(|d| match d.inner().get("time") {
                    Some(AMQPValue::Timestamp(t)) => Some(*t),
                    _ => None,
                })
            })
            .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs as i64).ok());
        DeadLetter {
            job_id,
            caster_id: text("caster_id"),
            batch_id: text("batch_id"),
            reason,
            when,
        }
    }

    /// The job id as a UUID, what a replay is keyed by.
    pub fn job_uuid(&self) -> Option<Uuid> {
        self.job_id
            .as_deref()
            .and_then(JobId::parse)
            .map(|j| j.as_uuid())
    }

    fn json(&self) -> Value {
        json!({
            "job_id": self.job_id,
            "caster_id": self.caster_id,
            "batch_id": self.batch_id,
            "reason": self.reason,
            "when": self.when.map(timestamp),
        })
    }
}

fn first_x_death(properties: &BasicProperties) -> Option<&FieldTable> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get("x-death")? {
        AMQPValue::FieldArray(a) => match a.as_slice().first()? {
            AMQPValue::FieldTable(t) => Some(t),
            _ => None,
        },
        _ => None,
    }
}

fn table_text(t: &FieldTable, name: &str) -> Option<String> {
    match t.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// Takes up to the counted number of messages of `queue` without acknowledging them: they stay
/// the broker's until acked, nacked or the channel closes.
async fn take_unacked(
    channel: &Channel,
    queue: &str,
) -> Result<Vec<BasicGetMessage>, DeadLetterError> {
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|error| DeadLetterError::Queue {
            queue: queue.to_owned(),
            error,
        })?;
    let mut taken = Vec::new();
    for _ in 0..declared.message_count() {
        match channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await?
        {
            Some(message) => taken.push(message),
            None => break,
        }
    }
    Ok(taken)
}

/// Hands messages back to the queue.
async fn requeue(messages: impl IntoIterator<Item = &BasicGetMessage>) {
    for m in messages {
        let _ = m
            .delivery
            .acker
            .nack(BasicNackOptions {
                multiple: false,
                requeue: true,
            })
            .await;
    }
}

/// The dead letters now in `P.dead`, oldest first; they all stay there.
pub async fn list(amqp_url: &str, names: &Names) -> Result<Vec<DeadLetter>, DeadLetterError> {
    let connection = broker::connect(amqp_url, "stopcaster dead-letters list").await?;
    let channel = connection.create_channel().await?;
    let result = take_unacked(&channel, &names.dead).await;
    let letters = match &result {
        Ok(messages) => {
            let letters = messages
                .iter()
                .map(|m| DeadLetter::from_message(&m.delivery.properties, &m.delivery.data))
                .collect();
            requeue(messages).await;
            letters
        }
        Err(_) => Vec::new(),
    };
    // Closing also requeues whatever a failed nack left unacknowledged.
    let _ = channel.close(200, "done".into()).await;
    let _ = connection.close(200, "done".into()).await;
    result.map(|_| letters)
}

/// Writes `letters` as a table or one JSON document.
pub fn write_list(
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
            let cell =
                |v: &Option<String>| v.as_deref().unwrap_or("-").replace(char::is_control, " ");
            let rows: Vec<Vec<String>> = letters
                .iter()
                .map(|l| {
                    vec![
                        cell(&l.job_id),
                        cell(&l.caster_id),
                        cell(&l.batch_id),
                        cell(&l.reason),
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
    let record = storage::reopen_for_replay(
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
            max_attempts,
            broker,
            database,
        } => {
            let names = Names::new(&broker.queue_prefix);
            // Applies migrations/ (caster_stop_replays) like the worker does.
            let pool = storage::migrate(&database.database_url).await?;
            let selection = if *all {
                Selection::All
            } else {
                Selection::Jobs(job_ids.clone())
            };
            let mut write_error = None;
            let result = replay(
                &broker.amqp_url,
                &names,
                &pool,
                &selection,
                (*max_attempts).max(1),
                |r| {
                    if let Err(e) = writeln!(out, "{}", r.describe()).and_then(|()| out.flush()) {
                        write_error.get_or_insert(e);
                    }
                },
            )
            .await;
            pool.close().await;
            let report = result?;
            if let Some(e) = write_error {
                return Err(e.into());
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::FieldArray;

    #[test]
    fn reads_headers_and_body() {
        let props = broker::dead_letter_properties(
            &broker::job_properties("1b4e28ba-2fa1-11d2-883f-0016cb4c4dd6"),
            "1b4e28ba-2fa1-11d2-883f-0016cb4c4dd6",
            "InvalidCaster.NotFound",
        )
        .with_timestamp(1_700_000_000);
        let l = DeadLetter::from_message(&props, br#"{"caster_id":"c1","batch_id":"b"}"#);
        assert_eq!(
            l.job_id.as_deref(),
            Some("1b4e28ba-2fa1-11d2-883f-0016cb4c4dd6")
        );
        assert_eq!(l.caster_id.as_deref(), Some("c1"));
        assert_eq!(l.batch_id.as_deref(), Some("b"));
        assert_eq!(l.reason.as_deref(), Some("InvalidCaster.NotFound"));
        assert_eq!(l.when.map(|t| t.unix_timestamp()), Some(1_700_000_000));
        assert!(l.job_uuid().is_some());
    }

    #[test]
    fn falls_back_to_x_death_and_message_id() {
        let mut death = FieldTable::default();
        death.insert(
            "reason".into(),
            AMQPValue::LongString("delivery_limit".into()),
        );
        death.insert("time".into(), AMQPValue::Timestamp(1_600_000_000));
        let mut deaths = FieldArray::default();
        deaths.push(AMQPValue::FieldTable(death));
        let mut headers = FieldTable::default();
        headers.insert("x-death".into(), AMQPValue::FieldArray(deaths));
        let props =
            broker::job_properties("1b4e28ba-2fa1-11d2-883f-0016cb4c4dd6").with_headers(headers);
        let l = DeadLetter::from_message(&props, b"not json");
        assert_eq!(
            l.job_id.as_deref(),
            Some("1b4e28ba-2fa1-11d2-883f-0016cb4c4dd6")
        );
        assert_eq!(l.caster_id, None);
        assert_eq!(l.reason.as_deref(), Some("delivery_limit"));
        assert_eq!(l.when.map(|t| t.unix_timestamp()), Some(1_600_000_000));
        // No header, no UUID anywhere: no job id.
        let l = DeadLetter::from_message(&BasicProperties::default(), br#"{"job_id":"x"}"#);
        assert_eq!(l.job_id, None);
        assert_eq!(l.when, None);
    }
}
