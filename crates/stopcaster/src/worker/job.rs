//! One delivery, from bytes to a disposition: parse, record, pace, call, decide, retry. The
//! broker side (ack, dead letter, republish) is the caller's; this module only says which.
//!
//! Order of effects, which the guarantees rest on: the job row exists before any call; each
//! attempt row is written before its call and completed after it; the terminal status is
//! committed with the last attempt; only then does the caller dead-letter (with confirms) and
//! acknowledge.

use std::time::Duration;

use backon::Retryable as _;
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::domain::{Job, JobId, Parsed, RegionId, parse_message, payload_text};
use crate::domain::{JobStatus, conclusion};
use crate::store::{self, AttemptStart, RejectedMessage};
use crate::worker::backoff::Backoff;
use crate::worker::due;
use crate::worker::in_flight::InFlight;
use crate::worker::pacer::Pacer;
use crate::worker::pause::{Change, Pauses, Turn};
use crate::worker::verdict::{self, Next};
use stopcaster_live::accounts::Accounts;
use stopcaster_live::{CallOutcome, LiveClient, StopCasterRequest};

/// Everything a job needs, shared by all of a worker's jobs.
pub struct JobContext {
    pub pool: PgPool,
    pub client: LiveClient,
    pub pacer: Pacer,
    pub accounts: Accounts,
    pub default_region: RegionId,
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Longest a delivery is held before it is handed back to the queue (RabbitMQ's
    /// consumer_timeout is 30 minutes).
    pub hold_cap: Duration,
    /// How long a claim on a job lasts (covers one call).
    pub claim_lease: Duration,
    /// This worker's name in attempt rows and claims.
    pub worker_id: String,
    pub in_flight: InFlight,
    pub metrics: crate::worker::metrics::Metrics,
    /// Accounts paused because their credentials were refused.
    pub pauses: Pauses,
}

/// What to do with a delivery once its outcome is committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
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

/// Why processing stopped before a disposition was reached.
enum Interrupt {
    /// Shutdown, or the delivery was held too long while the database was away.
    Requeue,
    /// The database kept refusing a statement until the hold cap.
    Database(sqlx::Error),
}

impl From<Interrupt> for Disposition {
    fn from(i: Interrupt) -> Self {
        match i {
            Interrupt::Requeue => Disposition::Requeue,
            Interrupt::Database(e) => {
                error!(error = %e, "database error at the hold cap; the delivery goes back to the queue");
                Disposition::Requeue
            }
        }
    }
}

/// A delivery being processed.
pub struct Delivery<'a> {
    pub body: &'a [u8],
    pub message_id: Option<&'a str>,
    pub received: Instant,
}

/// Processes one delivery to a disposition.
pub async fn process(
    ctx: &JobContext,
    delivery: Delivery<'_>,
    shutdown: &CancellationToken,
) -> Disposition {
    let (payload, escaped) = payload_text(delivery.body);
    match parse_message(delivery.body, delivery.message_id) {
        Parsed::Rejected {
            job_id,
            caster_id,
            batch_id,
            rejection,
        } => {
            let span = info_span!("job", %job_id, caster_id = caster_id.as_deref().unwrap_or(""));
            async {
                warn!(reason = %rejection.reason, "malformed message rejected");
                ctx.metrics.job_finished("rejected");
                let record = RejectedMessage {
                    job_id,
                    caster_id: caster_id.as_deref(),
                    batch_id: batch_id.as_deref(),
                    payload: &payload,
                    payload_escaped: escaped,
                    reason: &rejection.reason,
                };
                let step = Step {
                    ctx,
                    shutdown,
                    received: delivery.received,
                };
                match step.db(|| store::record_rejected(&ctx.pool, &record)).await {
                    Ok(_) => match step.db(|| store::is_dead_lettered(&ctx.pool, job_id)).await {
                        Ok(true) => Disposition::Ack,
                        Ok(false) => Disposition::DeadLetter {
                            job_id,
                            reason: rejection.reason.clone(),
                        },
                        Err(i) => i.into(),
                    },
                    Err(i) => i.into(),
                }
            }
            .instrument(span)
            .await
        }
        Parsed::Job(job) => {
            let span = info_span!("job", job_id = %job.job_id, caster_id = %job.caster_id, attempt = tracing::field::Empty);
            let _guard = ctx
                .in_flight
                .claim(job.job_id)
                .instrument(span.clone())
                .await;
            let step = Step {
                ctx,
                shutdown,
                received: delivery.received,
            };
            run_job(&step, &job, &payload, escaped)
                .instrument(span)
                .await
                .unwrap_or_else(Disposition::from)
        }
    }
}

/// Shared plumbing of one delivery's steps: database retries bounded by the hold cap, and
/// waits that give way to shutdown.
struct Step<'a> {
    ctx: &'a JobContext,
    shutdown: &'a CancellationToken,
    received: Instant,
}

impl Step<'_> {
    fn held(&self) -> Duration {
        self.received.elapsed()
    }

    /// Runs a database operation, retrying with backoff while it fails. Gives up (the delivery
    /// goes back to the queue) when the next wait would pass the hold cap; a shutdown does not
    /// stop it, since an outcome already obtained is worth committing within the drain time.
    ///
    /// Errors other than unavailability are retried too: handing such a delivery straight back
    /// would have the broker redeliver it at once, in a tight loop, until its delivery limit
    /// dead-letters it without a row. Held and retried, it costs one slow warning a few seconds.
    async fn db<T, F, Fut>(&self, op: F) -> Result<T, Interrupt>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let result = op
            .retry(store::unavailable_backoff())
            .adjust(|_, wait| wait.filter(|w| self.held() + *w <= self.ctx.hold_cap))
            .notify(|e, wait| {
                if store::is_transient(e) {
                    self.ctx.metrics.set_database_up(false);
                    warn!(error = %e, retry_in = ?wait, "database unavailable");
                } else {
                    error!(error = %e, retry_in = ?wait, "database refused a statement; retrying");
                }
            })
            .await;
        match result {
            Ok(v) => {
                self.ctx.metrics.set_database_up(true);
                Ok(v)
            }
            Err(e) if store::is_transient(&e) => {
                self.ctx.metrics.set_database_up(false);
                warn!(error = %e, "database still unavailable at the hold cap; requeueing");
                Err(Interrupt::Requeue)
            }
            Err(e) => Err(Interrupt::Database(e)),
        }
    }

    /// Sleeps `d` unless shutdown comes first.
    async fn sleep(&self, d: Duration) -> Result<(), Interrupt> {
        self.shutdown
            .run_until_cancelled(tokio::time::sleep(d))
            .await
            .ok_or(Interrupt::Requeue)
    }
}

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
    if state.status == JobStatus::Scheduled {
        // Committed as scheduled: the row holds the schedule, the stager hands it back.
        debug!(not_before = ?state.not_before, "scheduled; held in the database until due");
        return Ok(Disposition::Ack);
    }
    if state.status.is_terminal() {
        debug!(
            status = state.status.as_str(),
            "already finished; acknowledging without a call"
        );
        return Ok(match state.status {
            JobStatus::Failed | JobStatus::Rejected if !state.dead_lettered => {
                Disposition::DeadLetter {
                    job_id: job.job_id,
                    reason: "redelivered".into(),
                }
            }
            _ => Disposition::Ack,
        });
    }
    let Some(account) = ctx.accounts.resolve(job.account.as_ref()) else {
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
        return Ok(Disposition::DeadLetter {
            job_id: job.job_id,
            reason: "UnknownAccount".into(),
        });
    };
    // Calls refused for their credentials are given back: they were not the job's fault.
    let mut budget = state.attempt_budget.unwrap_or(ctx.max_attempts) + state.refused_attempts;
    if state.attempts >= budget {
        // The last attempt's verdict was lost with a crash: its outcome was unknown.
        let verdict = verdict::failed(conclusion::RETRIES_EXHAUSTED);
        step.db(|| store::conclude_job(&ctx.pool, job.job_id, &verdict, None))
            .await?;
        ctx.metrics.job_finished("failed");
        return Ok(Disposition::DeadLetter {
            job_id: job.job_id,
            reason: verdict::RETRIES_EXHAUSTED.into(),
        });
    }
    if let Some(next) = due::earliest_start(&state) {
        let wait = (next - time::OffsetDateTime::now_utc()).max(time::Duration::ZERO);
        let wait = Duration::try_from(wait).unwrap_or_default();
        if !wait.is_zero() {
            if step.held() + wait > ctx.hold_cap {
                return Ok(Disposition::Republish { job_id: job.job_id });
            }
            step.sleep(wait).await?;
        }
    }
    let request = StopCasterRequest {
        caster_id: &job.caster_id,
        region_id: region,
    };
    loop {
        // A paused account's jobs wait here, taking no pacer slot, until it is their turn to
        // probe or the account resumes; past the hold cap the delivery goes back to the queue.
        let deadline = step.received + ctx.hold_cap;
        let turn = step
            .shutdown
            .run_until_cancelled(ctx.pauses.wait_turn(&account.name, deadline))
            .await
            .ok_or(Interrupt::Requeue)?;
        let probe = match turn {
            Some(Turn::Probe(id)) => {
                debug!(account = %account.name, "probing a paused account");
                Some(Probe {
                    pauses: &ctx.pauses,
                    account: &account.name,
                    id,
                })
            }
            Some(_) => None,
            None => return Ok(Disposition::Republish { job_id: job.job_id }),
        };
        // A probe asks the source for fresh credentials first (a no-op for static keys); if
        // the source does not answer, the current ones are still tried below.
        if probe.is_some() {
            let _ = account.credentials.refresh_now().await;
        }
        // Connections opened before the slot, not on its time (see `LiveClient::warm`).
        step.shutdown.run_until_cancelled(ctx.client.warm()).await;
        let slot = match ctx
            .pacer
            .acquire_from(&account.pacer_key, state.not_before)
            .await
        {
            Ok(slot) => slot,
            Err(e) => {
                warn!(error = %e, "pacer unavailable");
                step.sleep(Duration::from_millis(500)).await?;
                continue;
            }
        };
        ctx.metrics.pacer_wait(slot.wait);
        if step.shutdown.is_cancelled() {
            ctx.pacer.release(slot).await;
            return Err(Interrupt::Requeue);
        }
        // Read now, just before the slot, not before the wait for it: credentials that were
        // valid when the job queued for its slot may have expired meanwhile, and no call is
        // signed with expired credentials.
        let credentials = match account.credentials.current() {
            Ok(credentials) => credentials,
            Err(e) => {
                ctx.pacer.release(slot).await;
                // The account waits like one whose credentials were refused: one probe at a
                // time asks the source again.
                warn!(account = %account.name, error = %e, "no usable credentials");
                ctx.pauses.report(
                    &account.name,
                    Some(CREDENTIALS_UNAVAILABLE),
                    probe.map(Probe::reported),
                );
                continue;
            }
        };
        let (attempt, unknown_before) = match step
            .db(|| store::start_attempt(&ctx.pool, job.job_id, &ctx.worker_id, ctx.claim_lease))
            .await
        {
            Ok(AttemptStart::Started {
                attempt,
                unknown_before,
            }) => (attempt, unknown_before),
            Ok(AttemptStart::NotPending) => {
                ctx.pacer.release(slot).await;
                return Ok(Disposition::Ack);
            }
            Ok(AttemptStart::ClaimedElsewhere) => {
                ctx.pacer.release(slot).await;
                debug!("another worker holds this job; waiting");
                if step.held() + Duration::from_secs(1) > ctx.hold_cap {
                    return Err(Interrupt::Requeue);
                }
                step.sleep(Duration::from_secs(1)).await?;
                continue;
            }
            Err(i) => {
                ctx.pacer.release(slot).await;
                return Err(i);
            }
        };
        tracing::Span::current().record("attempt", attempt);
        slot.due().await;
        due::at_due_time(&ctx.metrics, &state, attempt).await;
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
        match &outcome {
            CallOutcome::CredentialsRefused(e) => {
                ctx.pauses
                    .report(&account.name, Some(&e.code), probe.map(Probe::reported));
                // Refreshed at each refusal, so a dashboard can tell a live pause from a
                // dead worker's. Bookkeeping: a failure here holds no job up.
                if let Err(err) =
                    store::record_pause(&ctx.pool, &account.name, &ctx.worker_id, &e.code).await
                {
                    debug!(error = %err, "could not record the pause");
                }
            }
            // A transport failure says nothing of the credentials: a probe's turn passes on.
            CallOutcome::Transport(_) => drop(probe),
            _ => {
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
        let next = verdict::decide(&outcome, attempt, budget, unknown_before);
        log_outcome(&outcome, attempt);
        match next {
            Next::Finish(verdict) => {
                let first = step
                    .db(|| {
                        store::finish_attempt(
                            &ctx.pool,
                            job.job_id,
                            attempt,
                            &outcome,
                            Some(&verdict),
                            None,
                        )
                    })
                    .await?;
                if !first {
                    return Ok(Disposition::Ack);
                }
                ctx.metrics.job_finished(verdict.status.as_str());
                return Ok(match verdict.status {
                    JobStatus::Succeeded => {
                        info!(
                            conclusion = verdict.conclusion,
                            request_id = outcome.request_id().unwrap_or(""),
                            "studio stopped"
                        );
                        Disposition::Ack
                    }
                    _ => {
                        let reason = verdict::dead_letter_reason(&outcome, &verdict);
                        warn!(%reason, "job failed");
                        Disposition::DeadLetter {
                            job_id: job.job_id,
                            reason,
                        }
                    }
                });
            }
            Next::WaitForAccount => {
                step.db(|| {
                    store::finish_attempt(&ctx.pool, job.job_id, attempt, &outcome, None, None)
                })
                .await?;
                budget += 1;
            }
            Next::Retry => {
                let delay = ctx.backoff.random_delay(attempt);
                let next_at = time::OffsetDateTime::now_utc() + delay;
                step.db(|| {
                    store::finish_attempt(
                        &ctx.pool,
                        job.job_id,
                        attempt,
                        &outcome,
                        None,
                        Some(next_at),
                    )
                })
                .await?;
                if step.held() + delay > ctx.hold_cap {
                    return Ok(Disposition::Republish { job_id: job.job_id });
                }
                debug!(?delay, "retrying after backoff");
                step.sleep(delay).await?;
            }
        }
    }
}

/// The pause code of an account whose source cannot give credentials that are still valid.
const CREDENTIALS_UNAVAILABLE: &str = "CredentialsUnavailable";

/// This job's turn to probe a paused account. Dropped without a report (the job ended another
/// way), it passes the turn on.
struct Probe<'a> {
    pauses: &'a Pauses,
    account: &'a str,
    id: u64,
}

impl Probe<'_> {
    /// The id to report the probe's answer with; the turn is then settled by the report.
    fn reported(self) -> u64 {
        let id = self.id;
        std::mem::forget(self);
        id
    }
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        self.pauses.abandon(self.account, self.id);
    }
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
