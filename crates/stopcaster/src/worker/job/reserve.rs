//! Everything before a call, with the pacer slot held: fresh credentials for a probe, warm
//! connections, the slot, credentials still valid at the slot, and the attempt row committed
//! before the call. The slot is a [`Reserved`] guard: whichever way this step ends without a
//! call, the slot goes back to the schedule, here by one awaited release before the step's
//! after-effects (a wait, a pause report), on any other path by the guard's drop.

use std::sync::Arc;
use std::time::Duration;

use stopcaster_live::LiveClient;
use stopcaster_live::accounts::Account;
use stopcaster_live::credentials::{Credentials, CredentialsError};
use tracing::{debug, warn};

use super::Disposition;
use super::attempt::Probe;
use super::step::{Interrupt, Step};
use crate::domain::Job;
use crate::store::{self, AttemptStart, JobState, ScheduledCall};
use crate::worker::circuit::Signal;
use crate::worker::pacer::Reserved;

/// The pause code of an account whose source cannot give credentials that are still valid.
const CREDENTIALS_UNAVAILABLE: &str = "CredentialsUnavailable";

/// How long to wait before asking an unavailable pacer again.
const PACER_RETRY: Duration = Duration::from_millis(500);

/// How long to wait for another worker's claim on the job to end.
const CLAIM_RETRY: Duration = Duration::from_secs(1);

/// A call ready to leave: its slot, its credentials and its recorded attempt.
pub(super) struct Ready<'a> {
    pub(super) slot: Reserved<'a>,
    pub(super) credentials: Arc<Credentials>,
    pub(super) attempt: u32,
    /// An earlier attempt may have reached the API unanswered.
    pub(super) unknown_before: bool,
    pub(super) probe: Option<Probe<'a>>,
    /// The client of the job's endpoint.
    pub(super) client: &'a LiveClient,
}

/// What [`prepare`] found with the slot held.
struct Prepared {
    credentials: Arc<Credentials>,
    attempt: u32,
    unknown_before: bool,
}

/// How the reservation step ended.
pub(super) enum Reservation<'a> {
    Ready(Ready<'a>),
    /// No call this time round: take another turn.
    Again,
    /// No call at all: the delivery's disposition.
    Done(Disposition),
}

/// Why a reserved slot will not be used.
enum Unready {
    Shutdown,
    NoCredentials(CredentialsError),
    /// The job was finished meanwhile (by another delivery).
    NotPending,
    ClaimedElsewhere,
    Interrupted(Interrupt),
}

/// Reserves a slot and prepares the call on it.
pub(super) async fn reserve<'a>(
    step: &Step<'a>,
    client: &'a LiveClient,
    job: &Job,
    state: &JobState,
    account: &'a Account,
    probe: Option<Probe<'a>>,
) -> Result<Reservation<'a>, Interrupt> {
    let ctx = step.ctx;
    // A probe asks the source for fresh credentials first (a no-op for static keys); if the
    // source does not answer, the current ones are still tried below.
    if probe.is_some() {
        let _ = account.credentials.refresh_now().await;
    }
    // Connections opened before the slot, not on its time (see `LiveClient::warm`).
    step.shutdown.run_until_cancelled(client.warm()).await;
    let slot = match ctx
        .pacer
        .reserve(&account.pacer_key, state.not_before)
        .await
    {
        Ok(slot) => slot,
        Err(e) => {
            warn!(error = %e, "pacer unavailable");
            step.sleep(PACER_RETRY).await?;
            return Ok(Reservation::Again);
        }
    };
    ctx.metrics.pacer_wait(slot.wait);
    // With the shared schedule, the call is counted as the schedule's with its attempt.
    let call = slot.database_time().map(|slot| ScheduledCall {
        account: &account.pacer_key,
        slot,
    });
    match prepare(step, job, account, call).await {
        Ok(Prepared {
            credentials,
            attempt,
            unknown_before,
        }) => Ok(Reservation::Ready(Ready {
            slot,
            credentials,
            attempt,
            unknown_before,
            probe,
            client,
        })),
        Err(unready) => {
            slot.release().await;
            unready_after_release(step, account, unready, probe).await
        }
    }
}

/// With the slot held: the credentials to sign with and the attempt row.
async fn prepare(
    step: &Step<'_>,
    job: &Job,
    account: &Account,
    call: Option<ScheduledCall<'_>>,
) -> Result<Prepared, Unready> {
    let ctx = step.ctx;
    if step.shutdown.is_cancelled() {
        return Err(Unready::Shutdown);
    }
    // Read now, just before the slot, not before the wait for it: credentials that were valid
    // when the job queued for its slot may have expired meanwhile, and no call is signed with
    // expired credentials.
    let credentials = account
        .credentials
        .current()
        .map_err(Unready::NoCredentials)?;
    let start = step
        .db(|| store::start_attempt(&ctx.pool, job.job_id, &ctx.worker_id, ctx.claim_lease, call))
        .await
        .map_err(Unready::Interrupted)?;
    match start {
        AttemptStart::Started {
            attempt,
            unknown_before,
        } => Ok(Prepared {
            credentials,
            attempt,
            unknown_before,
        }),
        AttemptStart::NotPending => Err(Unready::NotPending),
        AttemptStart::ClaimedElsewhere => Err(Unready::ClaimedElsewhere),
    }
}

/// What follows a slot given back. The probe, if any, is held until this returns, so a
/// paused account's next probe waits for this one's waits too.
async fn unready_after_release<'a>(
    step: &Step<'_>,
    account: &Account,
    unready: Unready,
    probe: Option<Probe<'_>>,
) -> Result<Reservation<'a>, Interrupt> {
    match unready {
        Unready::Shutdown => Err(Interrupt::Requeue),
        Unready::NoCredentials(e) => {
            // The account waits like one whose credentials were refused: one probe at a time
            // asks the source again.
            warn!(account = %account.name, error = %e, "no usable credentials");
            step.ctx.pauses.report(
                &account.name,
                "",
                Signal::Refused(CREDENTIALS_UNAVAILABLE),
                probe.map(Probe::reported),
            );
            Ok(Reservation::Again)
        }
        Unready::NotPending => Ok(Reservation::Done(Disposition::Ack)),
        Unready::ClaimedElsewhere => {
            debug!("another worker holds this job; waiting");
            if !step.fits(CLAIM_RETRY) {
                return Err(Interrupt::Requeue);
            }
            step.sleep(CLAIM_RETRY).await?;
            Ok(Reservation::Again)
        }
        Unready::Interrupted(i) => Err(i),
    }
}
