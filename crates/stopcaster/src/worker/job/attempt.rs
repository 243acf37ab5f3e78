//! A job's attempts, one loop turn each: wait for the account's turn (a paused account's jobs
//! wait here, taking no pacer slot, and are parked in Postgres when the wait grows long),
//! reserve a slot and record the attempt, call (unless the account paused meanwhile), settle.

use std::time::Duration;

use stopcaster_live::StopCasterRequest;
use stopcaster_live::accounts::Account;
use tracing::debug;

use super::decide;

use super::Disposition;
use super::reserve::{self, Reservation};
use super::settle::{self, Settled};
use super::step::{Interrupt, Step};
use crate::domain::{Job, RegionId};
use crate::store::{self, JobState};
use crate::worker::pause::{Pauses, Turn};

/// Makes attempts until one settles the job or the delivery has to go.
pub(super) async fn attempts(
    step: &Step<'_>,
    job: &Job,
    state: &JobState,
    account: &Account,
    region: &RegionId,
    mut budget: u32,
) -> Result<Disposition, Interrupt> {
    let request = StopCasterRequest {
        caster_id: &job.caster_id,
        region_id: region,
    };
    let client = step
        .ctx
        .clients
        .client_for(region, account.endpoint.as_deref());
    loop {
        let probe = match turn(step, account).await? {
            Turned::Call { probe } => probe,
            Turned::Park(park_for) => return park(step, job, park_for).await,
        };
        let ready = match reserve::reserve(step, client, job, state, account, probe).await? {
            Reservation::Ready(ready) => ready,
            Reservation::Again => continue,
            Reservation::Done(done) => return Ok(done),
        };
        match settle::call_and_settle(step, job, state, account, request, ready, budget).await? {
            Settled::Done(done) => return Ok(done),
            Settled::WaitedForAccount => budget += 1,
            Settled::StayedHome | Settled::Retry => {}
        }
    }
}

/// The account's answer to a job waiting for its turn.
enum Turned<'a> {
    /// Call; as the paused account's probe if there is one.
    Call { probe: Option<Probe<'a>> },
    /// The account stayed paused for as long as a delivery may wait: park the job this long.
    Park(Duration),
}

/// Waits until the account lets this job call.
async fn turn<'a>(step: &Step<'a>, account: &'a Account) -> Result<Turned<'a>, Interrupt> {
    let ctx = step.ctx;
    // Past this the job is parked and its delivery acknowledged.
    let deadline = step.received + decide::turn_hold(ctx.park_after, ctx.hold_cap);
    let turn = step
        .shutdown
        .run_until_cancelled(ctx.pauses.wait_turn(&account.name, deadline))
        .await
        .ok_or(Interrupt::Requeue)?;
    Ok(match turn {
        Some(Turn::Probe(id)) => {
            debug!(account = %account.name, "probing a paused account");
            Turned::Call {
                probe: Some(Probe {
                    pauses: &ctx.pauses,
                    account: &account.name,
                    id,
                }),
            }
        }
        Some(_) => Turned::Call { probe: None },
        None => Turned::Park(decide::park_for(ctx.pauses.next_probe_in(&account.name))),
    })
}

/// Parks the job in Postgres (still `pending`, no call undone) and acknowledges its delivery
/// once that is committed: the stager hands it back when the park ends or the account resumes.
/// A job no longer pending (cancelled, or finished by another delivery) is acknowledged too.
async fn park(step: &Step<'_>, job: &Job, park_for: Duration) -> Result<Disposition, Interrupt> {
    let ctx = step.ctx;
    let parked = step
        .db(|| store::park_job(&ctx.pool, job.job_id, park_for))
        .await?;
    if parked {
        debug!(
            ?park_for,
            "account still paused: job parked in the database"
        );
    }
    Ok(Disposition::Ack)
}

/// This job's turn to probe a paused account. Dropped without a report (the job ended another
/// way), it passes the turn on.
pub(super) struct Probe<'a> {
    pauses: &'a Pauses,
    account: &'a str,
    id: u64,
}

impl Probe<'_> {
    /// The id to report the probe's answer with; the turn is then settled by the report.
    pub(super) fn reported(self) -> u64 {
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
