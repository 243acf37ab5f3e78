//! The call and what follows it: send on the slot, tell the account's pause what the answer
//! says of the credentials, then commit the attempt with its verdict, or schedule the retry.

use std::time::Duration;

use stopcaster_live::accounts::Account;
use stopcaster_live::{CallOutcome, StopCasterRequest};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::Disposition;
use super::attempt::Probe;
use super::decide::{self, Answer};
use super::reserve::Ready;
use super::step::{Interrupt, Step};
use crate::domain::{Job, Verdict};
use crate::store::{self, JobState};
use crate::worker::due;
use crate::worker::pause::Change;
use crate::worker::verdict::{self, Next};

/// How an attempt settled.
pub(super) enum Settled {
    /// The job is finished (or was already): the delivery's disposition.
    Done(Disposition),
    /// The credentials were refused: the attempt is recorded and given back to the budget.
    WaitedForAccount,
    /// A retryable failure; the backoff has been waited.
    Retry,
}

/// Makes the call prepared in `ready` and settles its attempt.
pub(super) async fn call_and_settle(
    step: &Step<'_>,
    job: &Job,
    state: &JobState,
    account: &Account,
    request: StopCasterRequest<'_>,
    ready: Ready<'_>,
    budget: u32,
) -> Result<Settled, Interrupt> {
    let Ready {
        slot,
        credentials,
        attempt,
        unknown_before,
        probe,
    } = ready;
    let ctx = step.ctx;
    tracing::Span::current().record("attempt", attempt);
    slot.due().await;
    due::at_due_time(&ctx.metrics, state, attempt).await;
    let slot = slot.spend();
    let started = Instant::now();
    // A late call is reported while it is in flight, not once it is answered: at 2 s of
    // latency, twenty more slots would be handed out on the old schedule before its answer
    // came back, and the late call and the next on time would share a server second with
    // ten others.
    let (outcome, ()) = tokio::join!(
        ctx.client.stop_caster(&credentials, request),
        ctx.pacer.sent(&slot, started),
    );
    ctx.metrics.api_call(&outcome, started.elapsed());
    if outcome.is_throttled() {
        ctx.pacer.throttled(&account.pacer_key).await;
    }
    tell_pause(step, account, &outcome, probe).await;
    let next = verdict::decide(&outcome, attempt, budget, unknown_before);
    log_outcome(&outcome, attempt);
    match next {
        Next::Finish(verdict) => finish(step, job, attempt, &outcome, &verdict).await,
        Next::WaitForAccount => {
            step.db(|| store::finish_attempt(&ctx.pool, job.job_id, attempt, &outcome, None, None))
                .await?;
            Ok(Settled::WaitedForAccount)
        }
        Next::Retry => retry(step, job, attempt, &outcome).await,
    }
}

/// Reports the answer to the account's pause; a refusal pauses it, any API answer resumes it.
async fn tell_pause(
    step: &Step<'_>,
    account: &Account,
    outcome: &CallOutcome,
    probe: Option<Probe<'_>>,
) {
    let ctx = step.ctx;
    match decide::answer(outcome) {
        Answer::Refused(code) => {
            ctx.pauses
                .report(&account.name, Some(code), probe.map(Probe::reported));
            // Refreshed at each refusal, so a dashboard can tell a live pause from a dead
            // worker's. Bookkeeping: a failure here holds no job up.
            if let Err(err) =
                store::record_pause(&ctx.pool, &account.name, &ctx.worker_id, code).await
            {
                debug!(error = %err, "could not record the pause");
            }
        }
        Answer::Silent => drop(probe),
        Answer::Accepted => {
            let change = ctx
                .pauses
                .report(&account.name, None, probe.map(Probe::reported));
            if change == Some(Change::Resumed)
                && let Err(err) =
                    store::clear_pauses(&ctx.pool, &ctx.worker_id, Some(&account.name)).await
            {
                debug!(error = %err, "could not clear the pause");
            }
        }
    }
}

/// Commits the last attempt with the job's verdict. Only the first to commit it counts the job
/// and dead-letters it; a second (a redelivery racing this one) just acknowledges.
async fn finish(
    step: &Step<'_>,
    job: &Job,
    attempt: u32,
    outcome: &CallOutcome,
    verdict: &Verdict,
) -> Result<Settled, Interrupt> {
    let ctx = step.ctx;
    let first = step
        .db(|| store::finish_attempt(&ctx.pool, job.job_id, attempt, outcome, Some(verdict), None))
        .await?;
    if !first {
        return Ok(Settled::Done(Disposition::Ack));
    }
    ctx.metrics.job_finished(verdict.status.as_str());
    let done = decide::finished(verdict, outcome, job.job_id);
    match &done {
        Disposition::DeadLetter { reason, .. } => warn!(%reason, "job failed"),
        _ => info!(
            conclusion = verdict.conclusion,
            request_id = outcome.request_id().unwrap_or(""),
            "studio stopped"
        ),
    }
    Ok(Settled::Done(done))
}

/// Commits the attempt with its next attempt's time, then waits the backoff, unless that
/// would pass the hold cap: then the delivery goes back to the queue as a copy.
async fn retry(
    step: &Step<'_>,
    job: &Job,
    attempt: u32,
    outcome: &CallOutcome,
) -> Result<Settled, Interrupt> {
    let ctx = step.ctx;
    let delay: Duration = ctx.backoff.random_delay(attempt);
    let next_at = time::OffsetDateTime::now_utc() + delay;
    step.db(|| store::finish_attempt(&ctx.pool, job.job_id, attempt, outcome, None, Some(next_at)))
        .await?;
    if !step.fits(delay) {
        return Ok(Settled::Done(Disposition::Republish { job_id: job.job_id }));
    }
    debug!(?delay, "retrying after backoff");
    step.sleep(delay).await?;
    Ok(Settled::Retry)
}

fn log_outcome(outcome: &CallOutcome, attempt: u32) {
    match outcome {
        CallOutcome::Stopped { request_id, .. } => debug!(attempt, request_id, "StopCaster ok"),
        other => warn!(
            attempt,
            outcome = other.label(),
            http_status = other.http_status(),
            code = other.error_code().unwrap_or(""),
            request_id = other.request_id().unwrap_or(""),
            message = other.error_message().unwrap_or(""),
            "StopCaster failed"
        ),
    }
}
