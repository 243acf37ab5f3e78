//! The stager: every worker runs one. It hands scheduled jobs back to the queue shortly before
//! they are due, and parked jobs (waiting on a paused account, see `job/attempt.rs`) when their
//! park ends, so that the pipeline (pacer, attempts, verdicts) takes them from there. A parked
//! row is claimed, published and cleared exactly like a due one below.
//!
//! A round, on the database's clock: claim the scheduled rows due within [`schedule::LEAD`],
//! earliest first, at most [`BATCH`], `FOR UPDATE SKIP LOCKED` (so the stagers of several
//! workers share the work without waiting on each other); publish each job's stored message to
//! `P.jobs` and wait for the broker's confirms; mark the rows `pending` (`staged_at`) and
//! commit. A crash between the confirms and the commit leaves the rows `scheduled` and their
//! messages on the queue: a worker receiving such a message finds the row within the lead and
//! takes it (`store::open_job`), and the stager's next copy, if any, meets a job that claims
//! and statuses already serialize. Nothing is called twice, nothing before its due time.
//!
//! Memory stays flat however many jobs fall due together: a round holds at most [`BATCH`] rows,
//! and no round starts while [`BACKLOG`] staged jobs are still waiting for their first call (the
//! rest stay `scheduled`, cancellable as such, and are staged as the workers take the backlog).
//!
//! Between rounds it sleeps until the next row enters the lead, at most [`MAX_SLEEP`] (so rows
//! written meanwhile by other workers are seen), and wakes at once on shutdown or when this
//! worker released parked jobs.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::try_join_all;
use lapin::{Channel, Connection};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::metrics::Metrics;
use crate::broker::{self, BrokerError, Names};
use crate::domain::schedule;
use crate::store;

/// Rows claimed and published in one round.
pub(super) const BATCH: u32 = 500;
/// Staged jobs not yet called beyond which no more are staged.
pub(super) const BACKLOG: i64 = 2_000;
/// Longest sleep between rounds.
pub(super) const MAX_SLEEP: Duration = Duration::from_secs(1);

/// Where the stager publishes.
#[derive(Clone, Debug)]
pub(super) struct StagerConfig {
    pub amqp_url: String,
    pub names: Names,
    pub worker_id: String,
}

#[derive(Debug, thiserror::Error)]
enum StageError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// What a round found.
enum Round {
    /// Staged some: look again at once.
    Staged(usize),
    /// Nothing to do for this long.
    Idle(Duration),
}

/// Runs until `shutdown`. Database and broker failures are logged and retried.
pub(super) async fn run(
    pool: PgPool,
    config: StagerConfig,
    metrics: Metrics,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut broker: Option<(Connection, Arc<Channel>)> = None;
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let result = round(&pool, &config, &mut broker, &metrics).await;
        let wait = match result {
            Ok(Round::Staged(n)) => {
                failures = 0;
                debug!(staged = n, "staged due jobs");
                continue;
            }
            Ok(Round::Idle(wait)) => {
                failures = 0;
                wait.min(MAX_SLEEP)
            }
            Err(e) => {
                failures += 1;
                if matches!(e, StageError::Broker(_)) {
                    broker = None;
                }
                let wait = Duration::from_millis(200 * u64::from(failures.min(10)));
                warn!(error = %e, retry_in = ?wait, "stager: round failed; the rows stay scheduled");
                wait
            }
        };
        // Woken early when parked jobs were released (their account resumed, or its probe was
        // brought forward): they are handed back now, not at the end of this sleep.
        let sleep = async {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = wake.notified() => {}
            }
        };
        shutdown.run_until_cancelled(sleep).await;
    }
    if let Some((connection, channel)) = broker {
        let _ = channel.close(200, "shutdown".into()).await;
        let _ = connection.close(200, "shutdown".into()).await;
    }
    debug!("stager stopped");
}

async fn round(
    pool: &PgPool,
    config: &StagerConfig,
    broker: &mut Option<(Connection, Arc<Channel>)>,
    metrics: &Metrics,
) -> Result<Round, StageError> {
    let scheduled = stage_scheduled(pool, config, broker, metrics).await?;
    let parked = unpark(pool, config, broker, metrics).await?;
    Ok(match (scheduled, parked) {
        (Round::Idle(a), Round::Idle(b)) => Round::Idle(a.min(b)),
        (Round::Staged(a), Round::Staged(b)) => Round::Staged(a + b),
        (Round::Staged(n), _) | (_, Round::Staged(n)) => Round::Staged(n),
    })
}

/// Scheduled rows due within the lead: to the queue, marked `pending`.
async fn stage_scheduled(
    pool: &PgPool,
    config: &StagerConfig,
    broker: &mut Option<(Connection, Arc<Channel>)>,
    metrics: &Metrics,
) -> Result<Round, StageError> {
    let (next, scheduled) = store::next_due(pool).await?;
    metrics.set_scheduled(u64::try_from(scheduled).unwrap_or(0));
    let Some(next) = next else {
        return Ok(Round::Idle(MAX_SLEEP));
    };
    if next > schedule::LEAD {
        return Ok(Round::Idle(next - schedule::LEAD));
    }
    let backlog = store::staged_backlog(pool).await?;
    if backlog >= BACKLOG {
        debug!(
            backlog,
            "stager: the workers have enough staged jobs; waiting"
        );
        return Ok(Round::Idle(Duration::from_millis(200)));
    }
    let limit = BATCH.min(u32::try_from(BACKLOG - backlog).unwrap_or(BATCH));
    let channel = channel(config, broker).await?;
    let staging = store::claim_due(pool, schedule::LEAD, limit).await?;
    if staging.jobs.is_empty() {
        // Due rows exist but other stagers hold them.
        return Ok(Round::Idle(Duration::from_millis(100)));
    }
    let n = staging.jobs.len();
    // A failure drops `staging` (rollback): the rows stay scheduled and are staged again.
    publish_all(&channel, config, &staging.jobs).await?;
    staging.commit().await?;
    Ok(Round::Staged(n))
}

/// Parked rows whose park has ended (their account's probe is due, or it resumed): to the
/// queue, their park cleared. They are still `pending`: the delivery takes them from there.
async fn unpark(
    pool: &PgPool,
    config: &StagerConfig,
    broker: &mut Option<(Connection, Arc<Channel>)>,
    metrics: &Metrics,
) -> Result<Round, StageError> {
    let waiting = store::waiting(pool).await?;
    metrics.set_parked(u64::try_from(waiting.parked).unwrap_or(0));
    metrics.set_oldest_pending(waiting.oldest_pending);
    match waiting.next_unparked {
        None => return Ok(Round::Idle(MAX_SLEEP)),
        Some(next) if !next.is_zero() => return Ok(Round::Idle(next)),
        Some(_) => {}
    }
    let channel = channel(config, broker).await?;
    let unparking = store::claim_unparked(pool, BATCH).await?;
    if unparking.jobs.is_empty() {
        return Ok(Round::Idle(Duration::from_millis(100)));
    }
    let n = unparking.jobs.len();
    // A failure drops `unparking` (rollback): the rows stay parked and are handed back again.
    publish_all(&channel, config, &unparking.jobs).await?;
    unparking.commit().await?;
    debug!(unparked = n, "parked jobs handed back to the queue");
    Ok(Round::Staged(n))
}

/// The stager's publishing channel, connected (and the topology declared) if need be.
async fn channel(
    config: &StagerConfig,
    broker: &mut Option<(Connection, Arc<Channel>)>,
) -> Result<Arc<Channel>, StageError> {
    if let Some((connection, channel)) = broker
        && connection.status().connected()
        && channel.status().connected()
    {
        return Ok(channel.clone());
    }
    let (connection, _node) = broker::connect_to(
        &config.amqp_url,
        &format!("stopcaster stager {}", config.worker_id),
        broker::Order::Spread,
    )
    .await?;
    let channel = Arc::new(broker::confirm_channel(&connection).await?);
    broker::declare_topology(&connection, &config.names).await?;
    info!("stager connected");
    *broker = Some((connection, channel.clone()));
    Ok(channel)
}

/// Publishes each job's stored message to `P.jobs`, pipelined: every publish is sent, then the
/// confirms are awaited together.
async fn publish_all(
    channel: &Channel,
    config: &StagerConfig,
    jobs: &[store::DueJob],
) -> Result<(), StageError> {
    try_join_all(jobs.iter().map(|job| {
        let id = job.job_id.to_string();
        async move {
            broker::publish_confirmed(
                channel,
                "",
                &config.names.jobs,
                job.payload.as_bytes(),
                broker::job_properties(&id),
            )
            .await
        }
    }))
    .await?;
    Ok(())
}
