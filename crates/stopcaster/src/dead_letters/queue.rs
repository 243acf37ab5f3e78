//! Reading `P.dead` without emptying it: `basic.get` without auto-ack, at most as many
//! messages as a passive declare counted, and everything not taken handed back in place.
//!
//! A count of 0 is not trusted: RabbitMQ answers 0 for a quorum queue whose leader it cannot
//! reach (the leader's node just died and the election is under way), and `dead-letters list`
//! would show an empty to-do list that is not empty. So a 0 is checked by reading until the
//! queue answers empty; the messages read are held unacknowledged, so none comes back.

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
    for _ in 0..reading_limit(declared.message_count()) {
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

/// Most messages read when a passive declare counted 0, which may mean "unknown": enough for
/// any dead-letter queue an operator reads by hand, and a bound should messages be arriving
/// faster than they are read.
const UNCOUNTED_LIMIT: u32 = 100_000;

/// How many messages to read at most, given the count of a passive declare.
fn reading_limit(counted: u32) -> u32 {
    if counted == 0 {
        UNCOUNTED_LIMIT
    } else {
        counted
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_is_the_limit_but_a_zero_may_be_a_leaderless_quorum_queue() {
        assert_eq!(reading_limit(7), 7);
        assert_eq!(reading_limit(1), 1);
        assert_eq!(reading_limit(0), UNCOUNTED_LIMIT);
    }
}
