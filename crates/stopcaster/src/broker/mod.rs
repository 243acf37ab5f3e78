//! RabbitMQ: connection, the contract's topology (declared idempotently, [`topology`]), the
//! move of queues declared by an older version ([`migrate`]), and publishing with publisher
//! confirms.

mod migrate;
mod nodes;
mod topology;

pub(crate) use nodes::Order;

pub(crate) use migrate::migrate_broker;
pub use migrate::{MigrateError, MigrateReport, QueueMigration};
pub use topology::declare_topology;

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

use crate::redact::url_without_password;

/// Header naming a dead letter's job.
pub const JOB_ID_HEADER: &str = "x-stopcaster-job-id";
/// Header giving why a message was dead-lettered.
pub const REASON_HEADER: &str = "x-stopcaster-reason";
/// Routing key of the work queue on the exchange `P`.
pub(crate) const STOP_ROUTING_KEY: &str = "stop";
/// Deliveries of one message before RabbitMQ itself dead-letters it: a last guard against a
/// message that crashes the worker every time. Fixed, since queue arguments must match on every
/// declaration.
pub(crate) const DELIVERY_LIMIT: i64 = 50;

/// The broker names under a prefix `P`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// `P`: durable direct exchange, routing key `stop` to the work queue.
    pub exchange: String,
    /// `P.jobs`: the work queue (quorum).
    pub jobs: String,
    /// `P.dlx`: the dead-letter exchange (fanout).
    pub dlx: String,
    /// `P.dead`: the dead-letter queue (quorum).
    pub dead: String,
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        Self {
            exchange: prefix.to_owned(),
            jobs: format!("{prefix}.jobs"),
            dlx: format!("{prefix}.dlx"),
            dead: format!("{prefix}.dead"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("the message could not be routed to a queue (returned)")]
    Returned,
    #[error("the broker ended the consumer (channel closed or queue deleted)")]
    ConsumerEnded,
    #[error("RabbitMQ did not answer within {0:?}")]
    Timeout(Duration),
    #[error("AMQP_URL names no address")]
    NoAddress,
}

/// Connects to the first node of `AMQP_URL` (one address or a comma-separated list) that
/// answers, in the order given, naming the connection so it is recognisable in the management
/// UI.
pub async fn connect(url_list: &str, name: &str) -> Result<Connection, BrokerError> {
    Ok(connect_to(url_list, name, Order::AsListed).await?.0)
}

/// Connects to the first node that answers, tried in `order`; the connection and its node's
/// address without password, for the log and `/readyz`.
pub(crate) async fn connect_to(
    url_list: &str,
    name: &str,
    order: Order,
) -> Result<(Connection, String), BrokerError> {
    let urls = {
        let mut rng = rand::rng();
        nodes::in_order(url_list, order, &mut rng)
    };
    let mut last = BrokerError::NoAddress;
    for url in urls {
        match connect_one(url, name).await {
            Ok(connection) => return Ok((connection, url_without_password(url))),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn connect_one(url: &str, name: &str) -> Result<Connection, BrokerError> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    let timeout = Duration::from_secs(10);
    tokio::time::timeout(timeout, Connection::connect(url, props))
        .await
        .map_err(|_| BrokerError::Timeout(timeout))?
        .map_err(BrokerError::from)
}

/// A channel in confirm mode.
pub(crate) async fn confirm_channel(connection: &Connection) -> Result<Channel, BrokerError> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// Publishes one message as `mandatory` and waits for the broker's confirm: `Ok` means the
/// message is routed to a queue and, being persistent, on disk.
pub(crate) async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<(), BrokerError> {
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            properties,
        )
        .await?;
    let timeout = Duration::from_secs(30);
    let confirmation = tokio::time::timeout(timeout, confirm)
        .await
        .map_err(|_| BrokerError::Timeout(timeout))??;
    if confirmation.is_nack() {
        return Err(BrokerError::Nacked);
    }
    if confirmation.take_message().is_some() {
        return Err(BrokerError::Returned);
    }
    Ok(())
}

/// Publishes every `(job id, body)` as a job message (mandatory, persistent) and waits for
/// all their confirms together, so that thousands take a moment rather than a round trip
/// each. One flag per message, in order: true when the broker confirmed it routed.
pub(crate) async fn publish_jobs_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    messages: &[(String, &[u8])],
) -> Vec<bool> {
    let mut confirms = Vec::with_capacity(messages.len());
    for (job_id, body) in messages {
        let published = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                job_properties(job_id),
            )
            .await;
        confirms.push(published.ok());
    }
    let timeout = Duration::from_secs(30);
    let waits = confirms.into_iter().map(|c| async move {
        let Some(confirm) = c else { return false };
        match tokio::time::timeout(timeout, confirm).await {
            // An ack for a message the broker returned (mandatory, no route) is no delivery.
            Ok(Ok(c)) => c.is_ack() && c.take_message().is_none(),
            _ => false,
        }
    });
    futures_util::future::join_all(waits).await
}

/// Properties of a job message: JSON, persistent, `message_id` = job id.
pub(crate) fn job_properties(job_id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_message_id(job_id.into())
}

/// The dead letter of a message: its own properties (persistent), the two headers, and the
/// time it was dead-lettered.
pub(crate) fn dead_letter_properties(
    original: &BasicProperties,
    job_id: &str,
    reason: &str,
) -> BasicProperties {
    let mut headers = original.headers().clone().unwrap_or_default();
    headers.insert(JOB_ID_HEADER.into(), AMQPValue::LongString(job_id.into()));
    headers.insert(REASON_HEADER.into(), AMQPValue::LongString(reason.into()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    // The dead-lettering time, for `dead-letters list` (jobs carry no timestamp of their own).
    original
        .clone()
        .with_delivery_mode(2)
        .with_headers(headers)
        .with_timestamp(now)
}

/// A text header of a message, if present.
pub fn header_text(properties: &BasicProperties, name: &str) -> Option<String> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}
