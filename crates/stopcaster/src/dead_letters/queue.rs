//! Reading `P.dead` without emptying it: a consumer without auto-ack, at most as many
//! messages as a passive declare counted, and everything not taken handed back in place.
//!
//! A count of 0 is not trusted: RabbitMQ answers 0 for a quorum queue whose leader it cannot
//! reach (the leader's node just died and the election is under way), and `dead-letters list`
//! would show an empty to-do list that is not empty. So a 0 is checked with one `basic.get`:
//! an empty queue answers empty at once, a leaderless one fails, and a queue that holds
//! messages after all is read as if uncounted ([`reading_limit`]).

use lapin::Channel;
use std::time::Duration;

use futures_util::StreamExt as _;
use lapin::message::Delivery;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicQosOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;

use super::DeadLetterError;
use super::letter::DeadLetter;
use crate::broker::{self, Names};

/// A message taken from the queue and not acknowledged yet: it stays the broker's until
/// acked, nacked or the channel closes.
pub(crate) struct Taken {
    pub delivery: Delivery,
}

/// How long a read waits for the next message once none arrives: the queue then holds fewer
/// ready messages than counted (another reader holds some unacknowledged).
const IDLE: Duration = Duration::from_secs(2);

/// Takes up to the counted number of messages of `queue` without acknowledging them, through a
/// consumer whose prefetch is that count (the broker streams them: thousands take a moment,
/// where a `basic.get` each would take a round trip each). At most 65,535 in one read, the
/// largest prefetch; a replay of more is run again for the rest.
pub(super) async fn take_unacked(
    channel: &Channel,
    queue: &str,
) -> Result<Vec<Taken>, DeadLetterError> {
    let declared = look_up(channel, queue)
        .await
        .map_err(|error| DeadLetterError::Queue {
            queue: queue.to_owned(),
            error,
        })?;
    let mut taken = Vec::new();
    let mut counted = declared.message_count();
    if counted == 0 {
        match channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await?
        {
            None => return Ok(taken),
            Some(message) => taken.push(Taken {
                delivery: message.delivery,
            }),
        }
        counted = UNCOUNTED;
    }
    let count = reading_limit(counted);
    channel
        .basic_qos(count as u16, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let tag = consumer.tag();
    while taken.len() < count as usize {
        match tokio::time::timeout(IDLE, consumer.next()).await {
            Ok(Some(Ok(delivery))) => taken.push(Taken { delivery }),
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) | Err(_) => break,
        }
    }
    // Deliveries that arrive before the cancel is confirmed stay unacknowledged on the
    // channel, which hands them back when it closes.
    channel
        .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
        .await?;
    Ok(taken)
}

/// What a count of 0 that turned out wrong stands for: read until the queue goes quiet.
const UNCOUNTED: u32 = u32::MAX;

/// How many messages one read takes at most, given the passive declare's count (or
/// [`UNCOUNTED`]): the largest prefetch a consumer can ask for bounds it.
fn reading_limit(counted: u32) -> u32 {
    counted.min(u32::from(u16::MAX))
}

/// How long a hand-back waits for the queue to show its messages ready again.
const SETTLE: Duration = Duration::from_secs(10);

/// Hands messages back to the queue (one `nack` with `multiple` up to the last one: every
/// message taken and not acknowledged goes back), then waits until the queue counts at least
/// that many ready, at most [`SETTLE`]: a quorum queue applies the hand-back after answering,
/// and a `--dry-run` followed by the replay must see the same messages.
pub(super) async fn requeue(channel: &Channel, queue: &str, messages: &[Taken]) {
    let Some(last) = messages.iter().max_by_key(|m| m.delivery.delivery_tag) else {
        return;
    };
    let nacked = last
        .delivery
        .acker
        .nack(BasicNackOptions {
            multiple: true,
            requeue: true,
        })
        .await;
    if nacked.is_err() {
        return;
    }
    let settled = async {
        loop {
            match ready(channel, queue).await {
                Some(n) if n as usize >= messages.len() => return,
                Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                None => return,
            }
        }
    };
    let _ = tokio::time::timeout(SETTLE, settled).await;
}

/// `queue` as the broker holds it (a passive declaration: it must exist, nothing is changed).
async fn look_up(channel: &Channel, queue: &str) -> Result<lapin::Queue, lapin::Error> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Messages ready in `queue`, `None` when it cannot be read.
async fn ready(channel: &Channel, queue: &str) -> Option<u32> {
    look_up(channel, queue)
        .await
        .ok()
        .map(|q| q.message_count())
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
            requeue(&channel, &names.dead, messages).await;
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
    fn a_count_is_the_limit_up_to_the_largest_prefetch() {
        assert_eq!(reading_limit(7), 7);
        assert_eq!(reading_limit(1), 1);
        assert_eq!(reading_limit(70_000), 65_535);
        assert_eq!(reading_limit(UNCOUNTED), 65_535);
    }
}
