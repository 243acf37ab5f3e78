//! The contract's topology, declared idempotently by every worker and command: the exchanges
//! `P` and `P.dlx`, the quorum queues `P.jobs` and `P.dead`, and their bindings.
//!
//! A queue's arguments cannot change once it exists: RabbitMQ refuses a declaration with other
//! arguments (`PRECONDITION_FAILED`) and closes the channel. Queues declared by an older
//! version (a classic `P.dead`; a `P.jobs` that dead-letters at most once) are therefore used
//! as they are, found with a passive declaration on a fresh channel, and reported in one log
//! line naming `stopcaster migrate --broker` ([`super::migrate`]), instead of failing every
//! start.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ErrorKind, ExchangeKind};
use tracing::warn;

use super::{BrokerError, DELIVERY_LIMIT, Names, STOP_ROUTING_KEY};

/// AMQP's reply code for a declaration whose arguments differ from the existing queue's.
const PRECONDITION_FAILED: u16 = 406;

/// One queue of the topology: its name, its arguments, and the binding that feeds it.
#[derive(Clone, Debug)]
pub(crate) struct QueueSpec {
    pub(crate) name: String,
    pub(crate) args: FieldTable,
    pub(crate) exchange: String,
    pub(crate) routing_key: &'static str,
}

/// How a queue stood after its declaration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Declared {
    /// Declared (or already there) with the current arguments.
    Current,
    /// There already, with the arguments of an older version: used as it is.
    Older,
}

/// The queues of the topology, dead letters first (the work queue dead-letters into them).
pub(crate) fn queues(names: &Names) -> [QueueSpec; 2] {
    let mut dead = FieldTable::default();
    dead.insert("x-queue-type".into(), text("quorum"));
    let mut jobs = FieldTable::default();
    jobs.insert("x-queue-type".into(), text("quorum"));
    jobs.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(DELIVERY_LIMIT),
    );
    jobs.insert("x-dead-letter-exchange".into(), text(&names.dlx));
    // At-least-once dead-lettering (RabbitMQ 3.10 and later) keeps a message that reached the
    // delivery limit in `P.jobs` until `P.dead` has confirmed it; it requires reject-publish.
    jobs.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    jobs.insert("x-overflow".into(), text("reject-publish"));
    [
        QueueSpec {
            name: names.dead.clone(),
            args: dead,
            exchange: names.dlx.clone(),
            routing_key: "",
        },
        QueueSpec {
            name: names.jobs.clone(),
            args: jobs,
            exchange: names.exchange.clone(),
            routing_key: STOP_ROUTING_KEY,
        },
    ]
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

/// Declares the exchanges, queues and bindings of the contract on channels of its own.
/// Idempotent; a queue of an older version is used as it is and reported (one line).
pub async fn declare_topology(connection: &Connection, names: &Names) -> Result<(), BrokerError> {
    declare_exchanges(connection, names).await?;
    let mut older = Vec::new();
    for spec in queues(names) {
        if declare_queue(connection, &spec).await? == Declared::Older {
            older.push(spec.name);
        }
    }
    if !older.is_empty() {
        warn!(
            queues = %older.join(", "),
            "queues declared by an older version of stopcaster, used as they are; \
             run `stopcaster migrate --broker` to move them to the current arguments \
             (quorum dead letters, at-least-once dead-lettering), keeping every message"
        );
    }
    Ok(())
}

pub(crate) async fn declare_exchanges(
    connection: &Connection,
    names: &Names,
) -> Result<(), BrokerError> {
    let channel = connection.create_channel().await?;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    for (name, kind) in [
        (&names.dlx, ExchangeKind::Fanout),
        (&names.exchange, ExchangeKind::Direct),
    ] {
        channel
            .exchange_declare(name.as_str().into(), kind, durable, FieldTable::default())
            .await?;
    }
    close(channel).await;
    Ok(())
}

/// Declares one queue with its current arguments, or finds it there with older ones, and binds
/// it.
pub(crate) async fn declare_queue(
    connection: &Connection,
    spec: &QueueSpec,
) -> Result<Declared, BrokerError> {
    let channel = connection.create_channel().await?;
    let declared = match channel
        .queue_declare(
            spec.name.as_str().into(),
            QueueDeclareOptions::durable(),
            spec.args.clone(),
        )
        .await
    {
        Ok(_) => (channel, Declared::Current),
        Err(e) if is_precondition_failed(&e) => {
            // The refusal closed that channel.
            let channel = connection.create_channel().await?;
            channel
                .queue_declare(
                    spec.name.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            (channel, Declared::Older)
        }
        Err(e) => return Err(e.into()),
    };
    let (channel, how) = declared;
    channel
        .queue_bind(
            spec.name.as_str().into(),
            spec.exchange.as_str().into(),
            spec.routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    close(channel).await;
    Ok(how)
}

/// True when the broker refused a declaration for its arguments.
pub(crate) fn is_precondition_failed(error: &lapin::Error) -> bool {
    matches!(error.kind(), ErrorKind::ProtocolError(e) if e.get_id() == PRECONDITION_FAILED)
}

/// Closes a short-lived channel; a failure leaves it to the connection's end.
pub(crate) async fn close(channel: lapin::Channel) {
    let _ = channel.close(200, "done".into()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg<'a>(spec: &'a QueueSpec, name: &str) -> Option<&'a AMQPValue> {
        spec.args.inner().get(name)
    }

    #[test]
    fn both_queues_are_quorum_and_the_work_queue_dead_letters_at_least_once() {
        let [dead, jobs] = queues(&Names::new("p"));
        assert_eq!(dead.name, "p.dead");
        assert_eq!(arg(&dead, "x-queue-type"), Some(&text("quorum")));
        assert_eq!((dead.exchange.as_str(), dead.routing_key), ("p.dlx", ""));
        assert_eq!(jobs.name, "p.jobs");
        assert_eq!(arg(&jobs, "x-queue-type"), Some(&text("quorum")));
        assert_eq!(arg(&jobs, "x-dead-letter-exchange"), Some(&text("p.dlx")));
        assert_eq!(
            arg(&jobs, "x-dead-letter-strategy"),
            Some(&text("at-least-once"))
        );
        assert_eq!(arg(&jobs, "x-overflow"), Some(&text("reject-publish")));
        assert_eq!((jobs.exchange.as_str(), jobs.routing_key), ("p", "stop"));
    }
}
