//! `stopcaster migrate --broker`: moves queues declared by an older version (a classic
//! `P.dead`, a `P.jobs` without at-least-once dead-lettering) to the current arguments,
//! keeping every message.
//!
//! A queue's arguments cannot change, so each such queue is emptied into a holding queue
//! `Q.migrating`, deleted, declared afresh and refilled. Every message is moved with a
//! publisher confirm before its original is acknowledged, so a crash at any point leaves it in
//! one of the two queues (at worst in both, and a job is idempotent by its id); running the
//! command again finishes the move from `Q.migrating`. It refuses to touch a queue that has
//! consumers: a worker holding unacknowledged messages of a deleted queue could not return
//! them. Stop the workers first; publishers that send during the move are refused (unroutable,
//! seen by them), never lost.

use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection};

use super::topology::{self, Declared, QueueSpec, close, is_precondition_failed};
use super::{BrokerError, Names, confirm_channel, publish_confirmed};

/// Attempts at emptying and deleting a queue that keeps receiving messages.
const DELETE_TRIES: usize = 5;

/// What became of one queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueMigration {
    pub queue: String,
    /// False when it already had the current arguments.
    pub migrated: bool,
    /// Messages moved back into it (from its older self or an interrupted run).
    pub messages: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrateReport {
    pub queues: Vec<QueueMigration>,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(
        "{queue} has {consumers} consumer(s): stop the workers (and `dead-letters` commands) \
         using it, then run `stopcaster migrate --broker` again"
    )]
    InUse { queue: String, consumers: u32 },
    #[error(
        "{0} kept receiving messages while it was being emptied: stop its publishers, then run \
         `stopcaster migrate --broker` again (every message is in {0} or {0}.migrating)"
    )]
    Busy(String),
    #[error(
        "{lost} message(s) reached {queue} in the instant it was deleted and are lost: publish \
         them again (stop the publishers before migrating)"
    )]
    Raced { queue: String, lost: u32 },
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

impl From<lapin::Error> for MigrateError {
    fn from(e: lapin::Error) -> Self {
        Self::Broker(e.into())
    }
}

/// Moves every queue of the topology to the current arguments. Nothing moves while a queue of
/// the topology has consumers: workers dead-letter into `P.dead` while consuming `P.jobs`.
pub(crate) async fn migrate_broker(
    connection: &Connection,
    names: &Names,
) -> Result<MigrateReport, MigrateError> {
    topology::declare_exchanges(connection, names).await?;
    let mut plan = Vec::new();
    for spec in topology::queues(names) {
        let older = probe(connection, &spec).await? == Declared::Older;
        plan.push((spec, older));
    }
    if plan.iter().any(|(_, older)| *older) {
        for (spec, _) in &plan {
            refuse_if_consumed(connection, &spec.name).await?;
        }
    }
    let mut report = MigrateReport::default();
    for (spec, older) in plan {
        report
            .queues
            .push(migrate_queue(connection, &spec, older).await?);
    }
    Ok(report)
}

async fn migrate_queue(
    connection: &Connection,
    spec: &QueueSpec,
    older: bool,
) -> Result<QueueMigration, MigrateError> {
    let holding = format!("{}.migrating", spec.name);
    if older {
        declare_holding(connection, &holding).await?;
        empty_and_delete(connection, spec, &holding).await?;
    }
    topology::declare_queue(connection, spec).await?;
    let messages = if exists(connection, &holding).await? {
        let moved = move_all(connection, &holding, &spec.name).await?;
        delete(connection, &holding).await?;
        moved
    } else {
        0
    };
    Ok(QueueMigration {
        queue: spec.name.clone(),
        migrated: older,
        messages,
    })
}

/// Whether the queue takes the current arguments (creating it if it is missing).
async fn probe(connection: &Connection, spec: &QueueSpec) -> Result<Declared, MigrateError> {
    let channel = connection.create_channel().await?;
    match channel
        .queue_declare(
            spec.name.as_str().into(),
            QueueDeclareOptions::durable(),
            spec.args.clone(),
        )
        .await
    {
        Ok(_) => {
            close(channel).await;
            Ok(Declared::Current)
        }
        Err(e) if is_precondition_failed(&e) => Ok(Declared::Older),
        Err(e) => Err(e.into()),
    }
}

/// A passive declaration: the queue's consumers, or `None` when it does not exist.
async fn consumers(connection: &Connection, queue: &str) -> Result<Option<u32>, MigrateError> {
    let channel = connection.create_channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    match channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
    {
        Ok(q) => {
            close(channel).await;
            Ok(Some(q.consumer_count()))
        }
        // NOT_FOUND closes the channel.
        Err(e) if matches!(e.kind(), lapin::ErrorKind::ProtocolError(a) if a.get_id() == 404) => {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

async fn exists(connection: &Connection, queue: &str) -> Result<bool, MigrateError> {
    Ok(consumers(connection, queue).await?.is_some())
}

async fn refuse_if_consumed(connection: &Connection, queue: &str) -> Result<(), MigrateError> {
    match consumers(connection, queue).await? {
        Some(n) if n > 0 => Err(MigrateError::InUse {
            queue: queue.to_owned(),
            consumers: n,
        }),
        _ => Ok(()),
    }
}

/// A quorum queue, like the queues it holds messages for.
async fn declare_holding(connection: &Connection, holding: &str) -> Result<(), MigrateError> {
    let channel = connection.create_channel().await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(holding.into(), QueueDeclareOptions::durable(), args)
        .await?;
    close(channel).await;
    Ok(())
}

/// Moves everything out of the older queue, then deletes it. It is first unbound from its
/// exchange, so that what publishers send that way is refused (unroutable, seen by them) from
/// then on. Quorum queues cannot be deleted "if empty", so the emptiness is checked just
/// before: a message arriving through the default exchange in between is moved on the next
/// round, and one arriving in the last microseconds is reported, not hidden.
async fn empty_and_delete(
    connection: &Connection,
    spec: &QueueSpec,
    holding: &str,
) -> Result<(), MigrateError> {
    unbind(connection, spec).await?;
    for _ in 0..DELETE_TRIES {
        move_all(connection, &spec.name, holding).await?;
        if ready(connection, &spec.name).await? > 0 {
            continue;
        }
        let lost = delete(connection, &spec.name).await?;
        if lost > 0 {
            return Err(MigrateError::Raced {
                queue: spec.name.clone(),
                lost,
            });
        }
        return Ok(());
    }
    Err(MigrateError::Busy(spec.name.clone()))
}

async fn unbind(connection: &Connection, spec: &QueueSpec) -> Result<(), MigrateError> {
    let channel = connection.create_channel().await?;
    channel
        .queue_unbind(
            spec.name.as_str().into(),
            spec.exchange.as_str().into(),
            spec.routing_key.into(),
            FieldTable::default(),
        )
        .await?;
    close(channel).await;
    Ok(())
}

/// Messages ready in a queue that exists.
async fn ready(connection: &Connection, queue: &str) -> Result<u32, MigrateError> {
    let channel = connection.create_channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let q = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await?;
    close(channel).await;
    Ok(q.message_count())
}

/// Deletes a queue; the messages it still held.
async fn delete(connection: &Connection, queue: &str) -> Result<u32, MigrateError> {
    let channel = connection.create_channel().await?;
    let held = channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await?;
    close(channel).await;
    Ok(held)
}

/// Moves every message of `from` to `to`, each confirmed before its original is acknowledged.
async fn move_all(connection: &Connection, from: &str, to: &str) -> Result<u64, MigrateError> {
    let channel = confirm_channel(connection).await?;
    let mut moved = 0;
    while move_one(&channel, from, to).await? {
        moved += 1;
    }
    close(channel).await;
    Ok(moved)
}

async fn move_one(channel: &Channel, from: &str, to: &str) -> Result<bool, MigrateError> {
    let Some(message) = channel
        .basic_get(from.into(), BasicGetOptions { no_ack: false })
        .await?
    else {
        return Ok(false);
    };
    let delivery = &message.delivery;
    publish_confirmed(channel, "", to, &delivery.data, delivery.properties.clone()).await?;
    channel
        .basic_ack(delivery.delivery_tag, BasicAckOptions::default())
        .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    // The move itself needs a broker: tests/it/broker_migration.rs.
    use super::*;

    #[test]
    fn an_interrupted_run_names_both_places_a_message_can_be() {
        let text = MigrateError::Busy("p.jobs".into()).to_string();
        assert!(text.contains("p.jobs or p.jobs.migrating"), "{text}");
    }
}
