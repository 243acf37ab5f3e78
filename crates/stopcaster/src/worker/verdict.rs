//! What to do after a call: succeed, fail, or retry. A pure function of the call's outcome, the
//! attempt number, the budget and whether an earlier attempt's outcome is unknown.

use crate::domain::{JobStatus, Verdict, conclusion};
use stopcaster_live::CallOutcome;

/// Dead-letter reason of a job whose retryable failures used up its attempts.
pub(super) const RETRIES_EXHAUSTED: &str = "retries-exhausted";

/// The next step of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Next {
    Finish(Verdict),
    Retry,
    /// The credentials were refused: not the job's fault. It stays pending, its budget
    /// untouched, and waits for its account to resume.
    WaitForAccount,
}

/// Decides after attempt `attempt` of `budget`. `unknown_before` says an earlier attempt may
/// have reached the API without our seeing the answer.
pub(super) fn decide(
    outcome: &CallOutcome,
    attempt: u32,
    budget: u32,
    unknown_before: bool,
) -> Next {
    match outcome {
        CallOutcome::Stopped { .. } => Next::Finish(Verdict {
            status: JobStatus::Succeeded,
            conclusion: conclusion::STOPPED,
            evidence_request_id: None,
        }),
        // The studio is already stopped and an earlier attempt of ours may have done it: it
        // did, as far as anyone can tell, and asking again would only fail again.
        CallOutcome::Permanent(e) if e.code == "IncorrectSceneStatus" && unknown_before => {
            Next::Finish(Verdict {
                status: JobStatus::Succeeded,
                conclusion: conclusion::STOPPED_BY_UNANSWERED_ATTEMPT,
                evidence_request_id: e.request_id.clone(),
            })
        }
        CallOutcome::Permanent(_) => Next::Finish(failed(conclusion::API_ERROR)),
        CallOutcome::CredentialsRefused(_) => Next::WaitForAccount,
        CallOutcome::Retryable(_) | CallOutcome::Transport(_) if attempt >= budget => {
            Next::Finish(failed(conclusion::RETRIES_EXHAUSTED))
        }
        CallOutcome::Retryable(_) | CallOutcome::Transport(_) => Next::Retry,
    }
}

/// A failed verdict with this conclusion.
pub(super) fn failed(conclusion: &'static str) -> Verdict {
    Verdict {
        status: JobStatus::Failed,
        conclusion,
        evidence_request_id: None,
    }
}

/// Whether this outcome leaves the studio's state unknown (the call may have stopped it).
#[cfg(test)]
fn leaves_outcome_unknown(outcome: &CallOutcome) -> bool {
    outcome.outcome_unknown()
}

/// The `x-stopcaster-reason` of a failed job: the API's error code, or `retries-exhausted`.
pub(super) fn dead_letter_reason(outcome: &CallOutcome, verdict: &Verdict) -> String {
    if verdict.conclusion == conclusion::RETRIES_EXHAUSTED {
        RETRIES_EXHAUSTED.to_owned()
    } else {
        outcome.error_code().unwrap_or("unknown").to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stopcaster_live::{ApiError, TransportError, TransportKind};

    fn api(status: u16, code: &str) -> ApiError {
        ApiError {
            http_status: status,
            code: code.into(),
            message: String::new(),
            request_id: Some("R".into()),
            host_id: None,
            recommend: None,
        }
    }

    #[test]
    fn success_and_permanent_failures_finish() {
        let ok = CallOutcome::Stopped {
            request_id: "R".into(),
            http_status: 200,
        };
        assert!(
            matches!(decide(&ok, 1, 8, false), Next::Finish(v) if v.status == JobStatus::Succeeded && v.conclusion == "stopped")
        );
        let nf = CallOutcome::Permanent(api(404, "InvalidCaster.NotFound"));
        let Next::Finish(v) = decide(&nf, 1, 8, true) else {
            panic!()
        };
        assert_eq!(v.status, JobStatus::Failed);
        assert_eq!(dead_letter_reason(&nf, &v), "InvalidCaster.NotFound");
    }

    #[test]
    fn incorrect_scene_status_after_unknown_outcome_is_success() {
        let iss = CallOutcome::Permanent(api(403, "IncorrectSceneStatus"));
        let Next::Finish(v) = decide(&iss, 2, 8, true) else {
            panic!()
        };
        assert_eq!(v.status, JobStatus::Succeeded);
        assert_eq!(v.conclusion, "stopped-by-unanswered-attempt");
        assert_eq!(v.evidence_request_id.as_deref(), Some("R"));
        // Without an unknown attempt before, it is a permanent failure.
        let Next::Finish(v) = decide(&iss, 1, 8, false) else {
            panic!()
        };
        assert_eq!(v.status, JobStatus::Failed);
    }

    #[test]
    fn retryable_until_the_budget() {
        let busy = CallOutcome::Retryable(api(503, "ServiceUnavailable"));
        assert_eq!(decide(&busy, 7, 8, false), Next::Retry);
        let Next::Finish(v) = decide(&busy, 8, 8, false) else {
            panic!()
        };
        assert_eq!(dead_letter_reason(&busy, &v), "retries-exhausted");
        let lost = CallOutcome::Transport(TransportError {
            kind: TransportKind::Timeout,
            message: String::new(),
        });
        assert_eq!(decide(&lost, 1, 8, false), Next::Retry);
        assert!(leaves_outcome_unknown(&lost));
        let refused = CallOutcome::Transport(TransportError {
            kind: TransportKind::Connect,
            message: String::new(),
        });
        assert!(!leaves_outcome_unknown(&refused));
    }

    #[test]
    fn refused_credentials_never_finish_a_job() {
        let refused = CallOutcome::CredentialsRefused(api(400, "SignatureDoesNotMatch"));
        assert_eq!(decide(&refused, 1, 8, false), Next::WaitForAccount);
        // Not even on the last attempt of the budget: the call was not the job's fault.
        assert_eq!(decide(&refused, 8, 8, true), Next::WaitForAccount);
    }
}
