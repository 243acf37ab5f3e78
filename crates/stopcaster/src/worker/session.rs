//! The worker loop: keep a broker session up, feed deliveries to [`job::process`] with bounded
//! concurrency, carry out each disposition (ack, dead letter, requeue, republish), and drain on
//! shutdown.
//!
//! Supervision is ours rather than lapin's auto-recovery (which has failed to reconnect after a
//! broker restart, amqp-rs/lapin#450): a session ends on any channel or connection error and a
//! new one is made with backoff, the topology declared again. Jobs still running from the old
//! session finish their database work; their acks fail harmlessly, and RabbitMQ redelivers the
//! messages, which are then recognised as done. A consumer the broker cancels (its queue
//! deleted, a quorum queue's leader moved) is not a lost session: the queues are declared
//! again and consumption resumes on the same channel, whose held deliveries stay good.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use super::backoff::Backoff;
use super::job::{self, Disposition, JobContext};
use crate::broker::{self, Names};
use crate::errors::{Targets, one_line};
use crate::redact::url_without_password;

/// Broker-side settings of a worker.
#[derive(Clone, Debug)]
pub(super) struct SessionConfig {
    pub amqp_url: String,
    pub names: Names,
    /// Deliveries held at once (prefetch) and jobs processed at once.
    pub concurrency: u16,
    /// How long in-flight jobs get to finish after a shutdown signal.
    pub drain_timeout: Duration,
}

/// Runs until `shutdown` is cancelled, then drains. Broker failures are retried forever.
pub(super) async fn run(config: SessionConfig, ctx: Arc<JobContext>, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(usize::from(config.concurrency.max(1))));
    let reconnect = Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(10),
    };
    let mut failures = 0u32;
    let mut ever_consumed = false;
    let mut drained = false;
    while !shutdown.is_cancelled() {
        let began = Instant::now();
        match session(&config, &ctx, &tracker, &permits, &shutdown).await {
            Ok(()) => {
                drained = true;
                break;
            }
            Err(e) => {
                // Up only once a session got as far as consuming.
                ever_consumed |= ctx.metrics.broker_up();
                ctx.metrics.set_broker_up(false);
                // A session that lasted was a recovery, not a failing streak.
                failures = if began.elapsed() > Duration::from_secs(60) {
                    1
                } else {
                    failures + 1
                };
                let wait = reconnect
                    .ceiling(failures)
                    .mul_f64(0.5 + rand::random::<f64>() / 2.0);
                let broker = url_without_password(&config.amqp_url);
                if ever_consumed {
                    warn!(%broker, error = %e, retry_in = ?wait, "broker session ended; reconnecting");
                } else {
                    let targets = Targets {
                        broker: Some(config.amqp_url.clone()),
                        database: None,
                    };
                    warn!(
                        retry_in = ?wait,
                        "{}; no broker session has begun yet, retrying",
                        one_line(&e, &targets)
                    );
                }
                shutdown.run_until_cancelled(tokio::time::sleep(wait)).await;
            }
        }
    }
    if !drained {
        // Shutdown came while disconnected: jobs of earlier sessions may still be running.
        drain(&tracker, config.drain_timeout).await;
    }
}

/// Lets held jobs finish, at most `timeout`; what is left goes back to the queue when its
/// channel closes.
async fn drain(tracker: &TaskTracker, timeout: Duration) {
    tracker.close();
    info!(in_flight = tracker.len(), "draining");
    if tokio::time::timeout(timeout, tracker.wait()).await.is_err() {
        warn!(
            left = tracker.len(),
            "drain timed out; unfinished deliveries go back to the queue"
        );
    }
}

/// One connection's life: returns `Ok` after a clean shutdown, `Err` when the broker went away.
async fn session(
    config: &SessionConfig,
    ctx: &Arc<JobContext>,
    tracker: &TaskTracker,
    permits: &Arc<Semaphore>,
    shutdown: &CancellationToken,
) -> Result<(), broker::BrokerError> {
    let (connection, node) = broker::connect_to(
        &config.amqp_url,
        &format!("stopcaster worker {}", ctx.worker_id),
        broker::Order::Spread,
    )
    .await?;
    let consume = connection.create_channel().await?;
    broker::declare_topology(&connection, &config.names).await?;
    consume
        .basic_qos(config.concurrency, BasicQosOptions::default())
        .await?;
    let publish = Arc::new(broker::confirm_channel(&connection).await?);
    let tag = format!("stopcaster-{}", ctx.worker_id);
    let ended = loop {
        let mut consumer = consume
            .basic_consume(
                config.names.jobs.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        ctx.metrics.set_broker_node(Some(node.clone()));
        ctx.metrics.set_broker_up(true);
        info!(%node, queue = %config.names.jobs, prefetch = config.concurrency, "consuming");
        let lane = Lane {
            ctx,
            tracker,
            permits,
            shutdown,
            publish: &publish,
            names: &config.names,
        };
        match lane.deliver(&mut consumer).await {
            Consumed::Shutdown => break Ok(()),
            Consumed::Failed(e) => break Err(e),
            Consumed::Cancelled => {
                // The queue was deleted, or a quorum queue's leader moved: the channel and
                // the deliveries it holds are still good, so declare and consume again here.
                warn!(queue = %config.names.jobs, "the broker cancelled the consumer; declaring the queues and consuming again");
                shutdown
                    .run_until_cancelled(tokio::time::sleep(RECONSUME_PAUSE))
                    .await;
                if shutdown.is_cancelled() {
                    break Ok(());
                }
                broker::declare_topology(&connection, &config.names).await?;
            }
        }
    };
    if ended.is_ok() {
        // Stop deliveries, let what is held finish, then close (which requeues the rest).
        let _ = consume
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await;
        drain(tracker, config.drain_timeout).await;
        close(&connection, &consume).await;
    }
    ended
}

/// How long to wait before consuming again after the broker cancelled the consumer, so that a
/// broker cancelling it again and again is not met with a tight loop.
const RECONSUME_PAUSE: Duration = Duration::from_millis(200);

/// How a consumer's stream ended.
enum Consumed {
    Shutdown,
    /// The broker cancelled the consumer (`basic.cancel`); the channel is still open.
    Cancelled,
    Failed(broker::BrokerError),
}

/// What feeding a consumer's deliveries to jobs needs.
struct Lane<'a> {
    ctx: &'a Arc<JobContext>,
    tracker: &'a TaskTracker,
    permits: &'a Arc<Semaphore>,
    shutdown: &'a CancellationToken,
    publish: &'a Arc<Channel>,
    names: &'a Names,
}

impl Lane<'_> {
    /// Hands each delivery to a job task, at most `permits` at once, until the stream ends.
    async fn deliver(&self, consumer: &mut lapin::Consumer) -> Consumed {
        loop {
            let permit = tokio::select! {
                p = self.permits.clone().acquire_owned() => p.expect("semaphore never closed"),
                _ = self.shutdown.cancelled() => return Consumed::Shutdown,
            };
            let next = tokio::select! {
                d = consumer.next() => d,
                _ = self.shutdown.cancelled() => return Consumed::Shutdown,
            };
            let delivery = match next {
                Some(Ok(d)) => d,
                Some(Err(e)) => return Consumed::Failed(e.into()),
                // lapin ends the stream when the broker cancels the consumer.
                None => return Consumed::Cancelled,
            };
            let ctx = self.ctx.clone();
            let shutdown = self.shutdown.clone();
            let publish = self.publish.clone();
            let names = self.names.clone();
            self.tracker.spawn(async move {
                let _permit = permit;
                handle_delivery(&ctx, &names, &publish, delivery, &shutdown).await;
            });
        }
    }
}

async fn close(connection: &Connection, channel: &Channel) {
    let _ = channel.close(200, "shutdown".into()).await;
    let _ = connection.close(200, "shutdown".into()).await;
}

async fn handle_delivery(
    ctx: &JobContext,
    names: &Names,
    publish: &Channel,
    delivery: lapin::message::Delivery,
    shutdown: &CancellationToken,
) {
    let message_id = delivery
        .properties
        .message_id()
        .as_ref()
        .map(|m| m.as_str().to_owned());
    let disposition = job::process(
        ctx,
        job::Delivery {
            body: &delivery.data,
            message_id: message_id.as_deref(),
            received: Instant::now(),
        },
        shutdown,
    )
    .await;
    // Settle only once what the disposition asks for is confirmed; otherwise requeue.
    let ack = match disposition {
        Disposition::Ack => true,
        Disposition::Requeue => false,
        Disposition::DeadLetter { job_id, reason } => {
            let props =
                broker::dead_letter_properties(&delivery.properties, &job_id.to_string(), &reason);
            match broker::publish_confirmed(publish, &names.dlx, "", &delivery.data, props).await {
                Ok(()) => {
                    if let Err(e) = crate::store::mark_dead_lettered(&ctx.pool, job_id).await {
                        // The dead letter exists; at worst a redelivery publishes a second copy.
                        warn!(error = %e, "could not note the dead letter");
                    }
                    true
                }
                Err(e) => {
                    error!(error = %e, %job_id, "dead letter not confirmed; requeueing");
                    false
                }
            }
        }
        Disposition::Republish { job_id } => {
            let props = delivery
                .properties
                .clone()
                .with_message_id(job_id.to_string().into())
                .with_delivery_mode(2);
            match broker::publish_confirmed(publish, "", &names.jobs, &delivery.data, props).await {
                Ok(()) => {
                    debug!(%job_id, "held too long; republished for a later delivery");
                    true
                }
                Err(e) => {
                    warn!(error = %e, %job_id, "republish failed; requeueing");
                    false
                }
            }
        }
    };
    let settled = if ack {
        delivery.acker.ack(BasicAckOptions::default()).await
    } else {
        delivery
            .acker
            .reject(BasicRejectOptions { requeue: true })
            .await
    };
    if let Err(e) = settled {
        // The channel is gone: the broker requeues the message, and its next delivery finds the
        // committed outcome.
        warn!(error = %e, "could not settle the delivery; the broker will redeliver it");
    }
}
