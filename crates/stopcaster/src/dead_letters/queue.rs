//! Reading `P.dead` without emptying it: `basic.get` without auto-ack, at most as many
//! messages as a passive declare counted, and everything not taken handed back in place.

use lapin::Channel;
use lapin::message::BasicGetMessage;
use lapin::options::{BasicGetOptions, BasicNackOptions, QueueDeclareOptions};
use lapin::types::FieldTable;

use super::DeadLetterError;
use super::letter::DeadLetter;
use crate::broker::{self, Names};

/// Takes up to the counted number of messages of `queue` without acknowledging them: they stay
/// the broker's until acked, nacked or the channel closes.
pub(super) async fn take_unacked(
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
pub(super) async fn requeue(messages: impl IntoIterator<Item = &BasicGetMessage>) {
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
pub(crate) async fn list(
    amqp_url: &str,
    names: &Names,
) -> Result<Vec<DeadLetter>, DeadLetterError> {
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
