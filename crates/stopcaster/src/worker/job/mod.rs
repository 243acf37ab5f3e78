//! One delivery, from bytes to a disposition: parse, record, pace, call, decide, retry. The
//! broker side (ack, dead letter, republish) is the caller's; this module only says which.
//!
//! Order of effects, which the guarantees rest on: the job row exists before any call; each
//! attempt row is written before its call and completed after it; the terminal status is
//! committed with the last attempt; only then does the caller dead-letter (with confirms) and
//! acknowledge.
//!
//! The flow reads top to bottom in [`run_job`]: open the row, gate on what it says, wait for
//! the start, then the attempts ([`attempt`]: turn, [`reserve`], then [`settle`]: call, answer, settle). The choices
//! between the steps are pure functions in [`decide`], tested on their own; the effects and the
//! waits are in the steps.

mod attempt;
mod decide;
mod reserve;
mod settle;
mod step;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use self::step::{Interrupt, Step};
use crate::domain::display::escape;
use crate::domain::{Job, JobId, Parsed, RegionId, parse_message, payload_text};
use crate::domain::{JobStatus, conclusion};
use crate::store::{self, JobState, RejectedMessage};
use crate::worker::backoff::Backoff;
use crate::worker::due;
use crate::worker::in_flight::InFlight;
use crate::worker::pacer::Pacer;
use crate::worker::pause::Pauses;
use crate::worker::verdict;
use stopcaster_live::EndpointClients;
use stopcaster_live::accounts::Accounts;

/// Everything a job needs, shared by all of a worker's jobs.
pub(super) struct JobContext {
    pub pool: PgPool,
    /// A client per endpoint: the job's region and account pick one.
    pub clients: EndpointClients,
    pub pacer: Pacer,
    pub accounts: Accounts,
    pub default_region: RegionId,
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Longest a delivery is held before it is handed back to the queue (RabbitMQ's
    /// consumer_timeout is 30 minutes).
    pub hold_cap: Duration,
    /// Longest a delivery waits for its paused account before it is parked in Postgres.
    pub park_after: Duration,
    /// How long a claim on a job lasts (covers one call).
    pub claim_lease: Duration,
    /// This worker's name in attempt rows and claims.
    pub worker_id: String,
    pub in_flight: InFlight,
    pub metrics: crate::worker::metrics::Metrics,
    /// Accounts paused: their credentials were refused, or their circuit opened.
    pub pauses: Pauses,
    /// Wakes the stager at once, when parked jobs were released.
    pub wake_stager: Arc<Notify>,
    /// What the quota headers said of each account; the pacer's rates read it.
    pub quota: crate::worker::quota::QuotaWatch,
}

/// What to do with a delivery once its outcome is committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Disposition {
    /// Done (or a duplicate of something done): acknowledge.
    Ack,
    /// Publish to `P.dead` with these headers, confirm, then mark the row and acknowledge.
    DeadLetter { job_id: JobId, reason: String },
    /// Give the delivery back to the queue unacknowledged (shutdown, database unavailable for
    /// too long): nothing about it was lost, the next delivery continues from the database.
    Requeue,
    /// Held too long: publish a copy (same body, `message_id` = job id) and acknowledge this one.
    Republish { job_id: JobId },
}

/// A delivery being processed.
pub(super) struct Delivery<'a> {
    pub body: &'a [u8],
    pub message_id: Option<&'a str>,
    pub received: Instant,
}

/// Processes one delivery to a disposition.
pub(super) async fn process(
    ctx: &JobContext,
    delivery: Delivery<'_>,
    shutdown: &CancellationToken,
) -> Disposition {
    let (payload, escaped) = payload_text(delivery.body);
    let step = Step {
        ctx,
        shutdown,
        received: delivery.received,
    };
    match parse_message(delivery.body, delivery.message_id) {
        Parsed::Rejected {
            job_id,
            caster_id,
            batch_id,
            rejection,
        } => {
            // Escaped: a message's text must not write escape sequences to the log or reorder
            // its line (U+202E).
            let shown = escape(caster_id.as_deref().unwrap_or(""));
            let span = info_span!("job", %job_id, caster_id = %shown);
            let record = RejectedMessage {
                job_id,
                caster_id: caster_id.as_deref(),
                batch_id: batch_id.as_deref(),
                payload: &payload,
                payload_escaped: escaped,
                reason: &rejection.reason,
            };
            reject(&step, &record)
                .instrument(span)
                .await
                .unwrap_or_else(Disposition::from)
        }
        Parsed::Job(job) => {
            // Each attempt's number is in a span of its own ([`settle`]), so a line names one.
            let caster_id = escape(job.caster_id.as_str());
            let span = info_span!("job", job_id = %job.job_id, caster_id = %caster_id);
            let _guard = ctx
                .in_flight
                .claim(job.job_id)
                .instrument(span.clone())
                .await;
            run_job(&step, &job, &payload, escaped)
                .instrument(span)
                .await
                .unwrap_or_else(Disposition::from)
        }
    }
}

/// A message that is not a job: its row, then its dead letter unless a redelivery finds it
/// already sent.
async fn reject(step: &Step<'_>, record: &RejectedMessage<'_>) -> Result<Disposition, Interrupt> {
    let ctx = step.ctx;
    warn!(reason = %escape(record.reason), "malformed message rejected");
    ctx.metrics.job_finished("rejected");
    step.db(|| store::record_rejected(&ctx.pool, record))
        .await?;
    let dead_lettered = step
        .db(|| store::is_dead_lettered(&ctx.pool, record.job_id))
        .await?;
    Ok(decide::on_rejected(
        dead_lettered,
        record.job_id,
        record.reason,
    ))
}

/// The job's flow, step by step.
async fn run_job(
    step: &Step<'_>,
    job: &Job,
    payload: &str,
    escaped: bool,
) -> Result<Disposition, Interrupt> {
    let ctx = step.ctx;
    let region = job.region_id.as_ref().unwrap_or(&ctx.default_region);
    let state = step
        .db(|| store::open_job(&ctx.pool, job, region, payload, escaped))
        .await?;
    if let Some(done) = decide::on_open(state.status, state.dead_lettered, job.job_id) {
        log_settled_on_open(&state);
        return Ok(done);
    }
    let Some(account) = ctx.accounts.resolve(job.account.as_ref()) else {
        return unknown_account(step, job).await;
    };
    let budget = decide::attempt_budget(&state, ctx.max_attempts);
    if decide::exhausted(&state, budget) {
        return exhausted(step, job).await;
    }
    if let Some(done) = wait_for_start(step, job, &state).await? {
        return Ok(done);
    }
    attempt::attempts(step, job, &state, account, region, budget).await
}

fn log_settled_on_open(state: &JobState) {
    if state.status == JobStatus::Scheduled {
        // Committed as scheduled: the row holds the schedule, the stager hands it back.
        debug!(not_before = ?state.not_before, "scheduled; held in the database until due");
    } else {
        debug!(
            status = state.status.as_str(),
            "already finished; acknowledging without a call"
        );
    }
}

/// The job names an account this worker does not have: no call can be made for it.
async fn unknown_account(step: &Step<'_>, job: &Job) -> Result<Disposition, Interrupt> {
    let ctx = step.ctx;
    let verdict = verdict::failed(conclusion::UNKNOWN_ACCOUNT);
    let message = "the job names an account that is not configured";
    step.db(|| {
        store::conclude_job(
            &ctx.pool,
            job.job_id,
            &verdict,
            Some(("UnknownAccount", message)),
        )
    })
    .await?;
    warn!(account = ?job.account, "the job names an account that is not configured");
    ctx.metrics.job_finished("failed");
    Ok(Disposition::DeadLetter {
        job_id: job.job_id,
        reason: "UnknownAccount".into(),
    })
}

/// Every attempt was used, the last one's verdict lost with a crash: its outcome was unknown.
async fn exhausted(step: &Step<'_>, job: &Job) -> Result<Disposition, Interrupt> {
    let ctx = step.ctx;
    let verdict = verdict::failed(conclusion::RETRIES_EXHAUSTED);
    step.db(|| store::conclude_job(&ctx.pool, job.job_id, &verdict, None))
        .await?;
    ctx.metrics.job_finished("failed");
    Ok(Disposition::DeadLetter {
        job_id: job.job_id,
        reason: verdict::RETRIES_EXHAUSTED.into(),
    })
}

/// Waits for the backoff's next attempt or the scheduled slot's lead, unless that would hold
/// the delivery past the hold cap: then it goes back to the queue as a copy.
async fn wait_for_start(
    step: &Step<'_>,
    job: &Job,
    state: &JobState,
) -> Result<Option<Disposition>, Interrupt> {
    let Some(next) = due::earliest_start(state) else {
        return Ok(None);
    };
    let wait = decide::wait_until(next, time::OffsetDateTime::now_utc());
    if wait.is_zero() {
        return Ok(None);
    }
    if !step.fits(wait) {
        return Ok(Some(Disposition::Republish { job_id: job.job_id }));
    }
    step.sleep(wait).await?;
    Ok(None)
}
