//! The call and what follows it: wait for the slot, check the account's gate once more, send,
//! read the answer's quota headers, call again a refusal of a timestamp the endpoint's `Date`
//! has corrected since, tell the account's pause and circuit what the answer says, then commit the attempt with its
//! verdict, give it back to the budget if its account paused, or schedule the retry. Each
//! attempt's lines carry its number in an `attempt` span of their own.

use std::time::Duration;

use stopcaster_live::accounts::Account;
use stopcaster_live::{Answer, CallOutcome, StopCasterRequest};
use tokio::time::Instant;
use tracing::{Instrument as _, debug, info, info_span, warn};

use super::Disposition;
use super::attempt::Probe;
use super::decide;
use super::reserve::Ready;
use super::step::{Interrupt, Step};
use crate::domain::display::escape;
use crate::domain::{Job, Verdict};
use crate::store::{self, Answered, JobState};
use crate::worker::circuit::{self, Signal};
use crate::worker::due;
use crate::worker::pacer::Reserved;
use crate::worker::pause::{Change, Report};
use crate::worker::verdict::{self, Next};

/// How an attempt settled.
pub(super) enum Settled {
    /// The job is finished (or was already): the delivery's disposition.
    Done(Disposition),
    /// The call failed for its account's reasons (credentials refused, the circuit open): the
    /// attempt is recorded and given back to the budget.
    WaitedForAccount,
    /// The account paused while the call waited for its slot: it stayed home, its slot and its
    /// attempt given back.
    StayedHome,
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
    let attempt = ready.attempt;
    async {
        if !slot_due(step, account, &ready).await {
            return stay_home(step, job, account, ready.slot, attempt).await;
        }
        settle(step, job, state, account, request, ready, budget).await
    }
    .instrument(info_span!("attempt", attempt))
    .await
}

/// Waits for the slot; false if the account paused meanwhile and this call is not its probe.
/// A call that waits for its slot gives way the moment its account pauses, so that the
/// account's probe is not queued behind slots nobody will use.
async fn slot_due(step: &Step<'_>, account: &Account, ready: &Ready<'_>) -> bool {
    let pauses = &step.ctx.pauses;
    if ready.probe.is_some() {
        ready.slot.due().await;
        return true;
    }
    tokio::select! {
        () = ready.slot.due() => {}
        () = pauses.until_paused(&account.name) => {}
    }
    pauses.may_leave(&account.name, None)
}

/// The account paused before this call left: the slot goes back to the schedule and the
/// attempt recorded for the call is withdrawn, since no call was made.
async fn stay_home(
    step: &Step<'_>,
    job: &Job,
    account: &Account,
    slot: Reserved<'_>,
    attempt: u32,
) -> Result<Settled, Interrupt> {
    let ctx = step.ctx;
    let slot_time = slot.database_time();
    slot.release().await;
    debug!("pause came while the call waited for its slot: it stays home, slot given back");
    step.db(|| store::withdraw_attempt(&ctx.pool, job.job_id, attempt, &ctx.worker_id))
        .await?;
    // Counted as the schedule's with its attempt: no longer.
    if let Some(slot) = slot_time
        && let Err(err) = store::forget_recent_call(&ctx.pool, &account.pacer_key, slot).await
    {
        debug!(error = %err, "could not forget a call that stayed home");
    }
    Ok(Settled::StayedHome)
}

/// Sends the call on its slot and settles the attempt.
async fn settle(
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
        client,
    } = ready;
    let ctx = step.ctx;
    due::at_due_time(&ctx.metrics, state, attempt).await;
    let slot = slot.spend();
    let started = Instant::now();
    // A late call is reported while it is in flight, not once it is answered: at 2 s of
    // latency, twenty more slots would be handed out on the old schedule before its answer
    // came back, and the late call and the next on time would share a server second with
    // ten others.
    ctx.quota.sent(&account.pacer_key, started);
    let slot_time = slot.database_time();
    ctx.pacer.sent(&slot, started);
    let answer = client
        .call(&credentials, request, account.signature_version)
        .await;
    let answered = Instant::now();
    let outcome = &answer.outcome;
    ctx.metrics.api_call(outcome, answered - started);
    // A slow round trip may have reached the server late: the calls after it keep their
    // distance from where it may have landed.
    ctx.pacer.answered(&slot, started, answered);
    read_quota(step, account, &answer, started, slot_time).await;
    // Kept on the attempt's row: the dashboard, another process, draws it.
    let quota = answer.quota.binding();
    if answer.clock_corrected() {
        // Signed with a clock its answer (or another's) since showed to be off: the call is
        // made again with the endpoint's time, and the account stays up. Refused again with
        // that time, it pauses as any refusal does.
        info!(
            skew_seconds = answer.skew_after,
            "timestamp refused: clock corrected from the endpoint's Date, calling again"
        );
        let answered = Answered { outcome, quota };
        step.db(|| store::finish_given_back_attempt(&ctx.pool, job.job_id, attempt, answered))
            .await?;
        return Ok(Settled::WaitedForAccount);
    }
    let outcome = outcome.clone();
    let report = tell_pause(step, job, account, &outcome, probe).await;
    log_outcome(&outcome);
    let answered = Answered {
        outcome: &outcome,
        quota,
    };
    if decide::given_back(&outcome, report.paused) {
        return wait_for_account(step, job, attempt, answered).await;
    }
    match verdict::decide(&outcome, attempt, budget, unknown_before) {
        Next::Finish(verdict) => finish(step, job, attempt, answered, &verdict).await,
        Next::WaitForAccount => {
            step.db(|| store::finish_attempt(&ctx.pool, job.job_id, attempt, answered, None, None))
                .await?;
            Ok(Settled::WaitedForAccount)
        }
        Next::Retry => retry(step, job, attempt, answered).await,
    }
}

/// What the answer's quota headers say: the metrics; the calls of someone else in the
/// account's second, for the room the pacer leaves them (our calls in that second: the shared
/// schedule's, every worker's, when it is shared; this process's otherwise); after a throttle,
/// the schedule resumes at the gateway's `TimeLeft` (a guess only when it gives none).
async fn read_quota(
    step: &Step<'_>,
    account: &Account,
    answer: &Answer,
    started: Instant,
    slot: Option<time::OffsetDateTime>,
) {
    let ctx = step.ctx;
    let key = &account.pacer_key;
    let binding = answer.quota.binding();
    if let Some((limit, remain)) = binding {
        ctx.metrics.quota(&account.name, limit, remain);
    }
    let throttled = answer.outcome.is_throttled();
    let schedule_calls = match slot {
        Some(slot) if throttled => {
            if let Err(err) = store::forget_recent_call(&ctx.pool, key, slot).await {
                debug!(error = %err, "could not forget a throttled call");
            }
            None
        }
        // Only when this process's own calls do not explain the gateway's count.
        Some(slot)
            if binding.is_some_and(|(limit, remain)| {
                !ctx.quota.own_explain(key, started, limit, remain)
            }) =>
        {
            store::count_recent_calls(&ctx.pool, key, slot)
                .await
                .map_err(|err| debug!(error = %err, "could not count the schedule's calls"))
                .ok()
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        }
        _ => None,
    };
    ctx.quota
        .answered(key, started, binding, throttled, schedule_calls);
    if throttled {
        ctx.pacer.throttled_for(key, answer.quota.time_left()).await;
    }
}

/// A call failed by the world while its account is paused (or that paused it): recorded,
/// then given back to the job's budget. The job waits for the account's turn, no backoff.
async fn wait_for_account(
    step: &Step<'_>,
    job: &Job,
    attempt: u32,
    answered: Answered<'_>,
) -> Result<Settled, Interrupt> {
    let ctx = step.ctx;
    step.db(|| store::finish_given_back_attempt(&ctx.pool, job.job_id, attempt, answered))
        .await?;
    Ok(Settled::WaitedForAccount)
}

/// Reports the answer to the account's pause and circuit: a refusal pauses it, and so does a
/// fault that opens the circuit; any answer of the API itself resumes it. The pause is
/// recorded for the dashboard (refreshed at each failure while paused, so a dashboard can tell
/// a live pause from a dead worker's) and cleared when it ends. Bookkeeping: a failure to
/// record holds no job up.
async fn tell_pause(
    step: &Step<'_>,
    job: &Job,
    account: &Account,
    outcome: &CallOutcome,
    probe: Option<Probe<'_>>,
) -> Report {
    let ctx = step.ctx;
    let signal = circuit::signal(outcome);
    let report = ctx.pauses.report(
        &account.name,
        job.caster_id.as_str(),
        signal,
        probe.map(Probe::reported),
    );
    let recorded = match (&report.change, report.paused) {
        (Some(Change::Resumed { .. }), _) => {
            // Its parked jobs come back now rather than at the next probe's time.
            match store::release_parked(&ctx.pool, &account.name).await {
                Ok(0) => {}
                Ok(_) => ctx.wake_stager.notify_one(),
                Err(err) => {
                    warn!(error = %err, "could not release the account's parked jobs; they come back at their park's end");
                }
            }
            store::clear_pauses(&ctx.pool, &ctx.worker_id, Some(&account.name)).await
        }
        (_, true) => {
            let code = match signal {
                Signal::Refused(code) => code,
                Signal::Fault(f) => f.code,
                Signal::Answered => "",
            };
            store::record_pause(&ctx.pool, &account.name, &ctx.worker_id, code).await
        }
        _ => Ok(()),
    };
    if let Err(err) = recorded {
        debug!(error = %err, "could not record the pause");
    }
    report
}

/// Commits the last attempt with the job's verdict. Only the first to commit it counts the job
/// and dead-letters it; a second (a redelivery racing this one) just acknowledges.
async fn finish(
    step: &Step<'_>,
    job: &Job,
    attempt: u32,
    answered: Answered<'_>,
    verdict: &Verdict,
) -> Result<Settled, Interrupt> {
    let ctx = step.ctx;
    let outcome = answered.outcome;
    let first = step
        .db(|| {
            store::finish_attempt(
                &ctx.pool,
                job.job_id,
                attempt,
                answered,
                Some(verdict),
                None,
            )
        })
        .await?;
    if !first {
        return Ok(Settled::Done(Disposition::Ack));
    }
    ctx.metrics.job_finished(verdict.status.as_str());
    let done = decide::finished(verdict, outcome, job.job_id);
    match &done {
        Disposition::DeadLetter { reason, .. } => warn!(reason = %escape(reason), "job failed"),
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
    answered: Answered<'_>,
) -> Result<Settled, Interrupt> {
    let ctx = step.ctx;
    let delay: Duration = ctx.backoff.random_delay(attempt);
    let next_at = time::OffsetDateTime::now_utc() + delay;
    step.db(|| {
        store::finish_attempt(
            &ctx.pool,
            job.job_id,
            attempt,
            answered,
            None,
            Some(next_at),
        )
    })
    .await?;
    if !step.fits(delay) {
        return Ok(Settled::Done(Disposition::Republish { job_id: job.job_id }));
    }
    debug!(?delay, "retrying after backoff");
    step.sleep(delay).await?;
    Ok(Settled::Retry)
}

fn log_outcome(outcome: &CallOutcome) {
    match outcome {
        CallOutcome::Stopped { request_id, .. } => debug!(request_id, "StopCaster ok"),
        other => warn!(
            outcome = other.label(),
            http_status = other.http_status(),
            code = other.error_code().unwrap_or(""),
            request_id = other.request_id().unwrap_or(""),
            message = %escape(other.error_message().unwrap_or("")),
            "StopCaster failed"
        ),
    }
}
