//! The choices between a job's steps, as pure functions of what the steps found: what an
//! opened row says, how many attempts a job has, whether a wait fits the hold cap, what an
//! answer tells the account's pause, and what a finished job's delivery becomes. Kept apart
//! from the effects so each guarantee has a test that needs no database, broker or clock.

use std::time::Duration;

use time::OffsetDateTime;

use super::Disposition;
use crate::domain::{JobId, JobStatus, Verdict};
use crate::store::JobState;
use crate::worker::circuit::{self, Signal};
use crate::worker::verdict;
use stopcaster_live::CallOutcome;

/// What the opened row settles before any call: a scheduled job is held by its row (ack); a
/// finished one is acknowledged, after its dead letter if a crash lost that. `None`: call.
pub(super) fn on_open(
    status: JobStatus,
    dead_lettered: bool,
    job_id: JobId,
) -> Option<Disposition> {
    match status {
        JobStatus::Scheduled => Some(Disposition::Ack),
        JobStatus::Failed | JobStatus::Rejected if !dead_lettered => {
            Some(Disposition::DeadLetter {
                job_id,
                reason: "redelivered".into(),
            })
        }
        s if s.is_terminal() => Some(Disposition::Ack),
        _ => None,
    }
}

/// A rejected message's delivery: dead-lettered once, acknowledged on redelivery after that.
pub(super) fn on_rejected(dead_lettered: bool, job_id: JobId, reason: &str) -> Disposition {
    if dead_lettered {
        Disposition::Ack
    } else {
        Disposition::DeadLetter {
            job_id,
            reason: reason.to_owned(),
        }
    }
}

/// Attempts the job may make in all: its own budget (raised by replays) or the configured
/// one, plus every call refused for its credentials, which was not the job's fault.
pub(super) fn attempt_budget(state: &JobState, max_attempts: u32) -> u32 {
    state.attempt_budget.unwrap_or(max_attempts) + state.refused_attempts
}

/// Whether the job's attempts are used up before this delivery makes any.
pub(super) fn exhausted(state: &JobState, budget: u32) -> bool {
    state.attempts >= budget
}

/// How long from `now` until `at` (nothing if it has passed).
pub(super) fn wait_until(at: OffsetDateTime, now: OffsetDateTime) -> Duration {
    Duration::try_from((at - now).max(time::Duration::ZERO)).unwrap_or_default()
}

/// Whether a delivery held `held` may wait `wait` more without passing the hold cap.
pub(super) fn fits_hold(held: Duration, wait: Duration, cap: Duration) -> bool {
    held + wait <= cap
}

/// Parks shorter than this are not worth a round trip through the database and the queue.
pub(super) const PARK_MIN: Duration = Duration::from_secs(1);

/// A parked job is back at least this often, whatever its account's probe schedule says: a
/// worker that dies leaves its paused accounts' jobs to the other workers within this.
pub(super) const PARK_MAX: Duration = Duration::from_secs(60);

/// How long a delivery may wait for its paused account's turn, from its arrival: `park_after`,
/// never past the hold cap (both are well under RabbitMQ's `consumer_timeout`).
pub(super) fn turn_hold(park_after: Duration, hold_cap: Duration) -> Duration {
    park_after.min(hold_cap)
}

/// How long a job is parked once its wait for a paused account has grown long: until the
/// account's next probe is due (`next_probe_in`), so that a job is back to make it; while a
/// probe is in flight (`None`), [`PARK_MIN`], to hear its answer early. Within
/// [`PARK_MIN`]..=[`PARK_MAX`].
pub(super) fn park_for(next_probe_in: Option<Duration>) -> Duration {
    next_probe_in.unwrap_or(PARK_MIN).clamp(PARK_MIN, PARK_MAX)
}

/// Whether a failed call is given back to its job's budget: a fault of the world (no answer,
/// a 5xx) while its account is paused, or that paused it (opened its circuit). A refusal of
/// the credentials is given back by its verdict ([`verdict::Next::WaitForAccount`]); any other
/// answer is the job's.
pub(super) fn given_back(outcome: &CallOutcome, paused: bool) -> bool {
    paused && matches!(circuit::signal(outcome), Signal::Fault(_))
}

/// The delivery of a job whose last attempt reached a verdict: a success is acknowledged, a
/// failure dead-lettered with the reason operators filter on.
pub(super) fn finished(verdict: &Verdict, outcome: &CallOutcome, job_id: JobId) -> Disposition {
    match verdict.status {
        JobStatus::Succeeded => Disposition::Ack,
        _ => Disposition::DeadLetter {
            job_id,
            reason: verdict::dead_letter_reason(outcome, verdict),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::conclusion;
    use stopcaster_live::{ApiError, TransportError, TransportKind};

    fn state(attempts: u32, attempt_budget: Option<u32>, refused_attempts: u32) -> JobState {
        JobState {
            status: JobStatus::Pending,
            attempts,
            attempt_budget,
            refused_attempts,
            next_attempt_at: None,
            dead_lettered: false,
            not_before: None,
            due_ahead: false,
        }
    }

    fn api_error(code: &str) -> ApiError {
        ApiError {
            http_status: 400,
            code: code.to_owned(),
            message: String::new(),
            request_id: Some("req".to_owned()),
            host_id: None,
            recommend: None,
        }
    }

    fn job_id() -> JobId {
        JobId::new_random()
    }

    #[test]
    fn an_opened_row_settles_scheduled_and_finished_jobs_without_a_call() {
        let id = job_id();
        assert_eq!(
            on_open(JobStatus::Scheduled, false, id),
            Some(Disposition::Ack)
        );
        assert_eq!(
            on_open(JobStatus::Succeeded, false, id),
            Some(Disposition::Ack)
        );
        assert_eq!(
            on_open(JobStatus::Cancelled, false, id),
            Some(Disposition::Ack)
        );
        assert_eq!(on_open(JobStatus::Failed, true, id), Some(Disposition::Ack));
        // A crash between the verdict and its dead letter: the redelivery sends it.
        for status in [JobStatus::Failed, JobStatus::Rejected] {
            assert_eq!(
                on_open(status, false, id),
                Some(Disposition::DeadLetter {
                    job_id: id,
                    reason: "redelivered".into()
                })
            );
        }
        assert_eq!(on_open(JobStatus::Pending, false, id), None);
    }

    #[test]
    fn a_rejected_message_is_dead_lettered_once() {
        let id = job_id();
        assert_eq!(on_rejected(true, id, "bad"), Disposition::Ack);
        assert_eq!(
            on_rejected(false, id, "bad"),
            Disposition::DeadLetter {
                job_id: id,
                reason: "bad".into()
            }
        );
    }

    #[test]
    fn refused_credentials_give_their_attempts_back() {
        assert_eq!(attempt_budget(&state(0, None, 0), 8), 8);
        assert_eq!(attempt_budget(&state(0, Some(12), 0), 8), 12);
        assert_eq!(attempt_budget(&state(0, None, 3), 8), 11);
        assert!(!exhausted(&state(7, None, 0), 8));
        assert!(exhausted(&state(8, None, 0), 8));
        assert!(!exhausted(
            &state(8, None, 1),
            attempt_budget(&state(8, None, 1), 8)
        ));
    }

    #[test]
    fn a_long_wait_for_a_paused_account_parks_until_its_next_probe() {
        let s = Duration::from_secs;
        assert_eq!(turn_hold(s(30), s(300)), s(30));
        assert_eq!(turn_hold(s(600), s(300)), s(300), "never past the hold cap");
        assert_eq!(turn_hold(s(0), s(300)), s(0));
        assert_eq!(park_for(Some(s(16))), s(16), "back for the next probe");
        assert_eq!(park_for(Some(Duration::ZERO)), PARK_MIN);
        assert_eq!(park_for(None), PARK_MIN, "a probe in flight: back soon");
        assert_eq!(park_for(Some(s(3600))), PARK_MAX);
    }

    #[test]
    fn waits_are_never_negative_and_bounded_by_the_hold_cap() {
        let now = time::macros::datetime!(2026-01-01 00:00:00 UTC);
        assert_eq!(
            wait_until(now - time::Duration::SECOND, now),
            Duration::ZERO
        );
        assert_eq!(
            wait_until(now + time::Duration::milliseconds(1500), now),
            Duration::from_millis(1500)
        );
        let s = Duration::from_secs;
        assert!(fits_hold(s(10), s(20), s(30)));
        assert!(!fits_hold(s(10), s(21), s(30)));
    }

    #[test]
    fn only_the_worlds_faults_on_a_paused_account_are_given_back() {
        let refused_connection = CallOutcome::Transport(TransportError {
            kind: TransportKind::Connect,
            message: String::new(),
        });
        let storm = CallOutcome::Retryable(ApiError {
            http_status: 503,
            ..api_error("ServiceUnavailable")
        });
        for fault in [&refused_connection, &storm] {
            assert!(given_back(fault, true));
            assert!(
                !given_back(fault, false),
                "the circuit is closed: the job's budget"
            );
        }
        // Answers of the API itself are the job's even while its account is paused; a refusal
        // is given back by its verdict.
        assert!(!given_back(&CallOutcome::Permanent(api_error("X")), true));
        assert!(!given_back(
            &CallOutcome::Retryable(api_error("Throttling")),
            true
        ));
        assert!(!given_back(
            &CallOutcome::CredentialsRefused(api_error("SignatureDoesNotMatch")),
            true
        ));
    }

    #[test]
    fn a_success_is_acked_and_a_failure_dead_lettered() {
        let id = job_id();
        let ok = CallOutcome::Stopped {
            request_id: "r".into(),
            http_status: 200,
        };
        let verdict = match verdict::decide(&ok, 1, 8, false) {
            verdict::Next::Finish(v) => v,
            other => panic!("{other:?}"),
        };
        assert_eq!(finished(&verdict, &ok, id), Disposition::Ack);
        let exhausted = verdict::failed(conclusion::RETRIES_EXHAUSTED);
        let busy = CallOutcome::Retryable(api_error("ServiceUnavailable"));
        assert_eq!(
            finished(&exhausted, &busy, id),
            Disposition::DeadLetter {
                job_id: id,
                reason: verdict::RETRIES_EXHAUSTED.into()
            }
        );
    }
}
