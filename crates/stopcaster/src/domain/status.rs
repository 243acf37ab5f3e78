//! Where a job stands: its status column and the verdict that ends it.

/// A job's status column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    /// Received, due later (`not_before`): held in Postgres until the stager hands it back.
    Scheduled,
    Pending,
    Succeeded,
    Failed,
    Rejected,
    /// Cancelled by `stopcaster cancel` before any call: never called.
    Cancelled,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Scheduled,
        JobStatus::Pending,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Rejected,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Scheduled => "scheduled",
            JobStatus::Pending => "pending",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Rejected => "rejected",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// Whether `cancel` can still stop a job of this status that made `attempts` calls: a
    /// scheduled one, or a pending one with no call made (the condition `store::cancel_jobs`
    /// checks in SQL).
    pub fn cancellable(self, attempts: i32) -> bool {
        self == JobStatus::Scheduled || (self == JobStatus::Pending && attempts == 0)
    }

    /// Finished for good: no call will ever be made for it again (cancelled included;
    /// scheduled and pending are not).
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobStatus::Pending | JobStatus::Scheduled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_only_the_waiting_ones_are_open() {
        for status in JobStatus::ALL {
            assert_eq!(JobStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(JobStatus::parse("nope"), None);
        let open: Vec<_> = JobStatus::ALL
            .into_iter()
            .filter(|s| !s.is_terminal())
            .collect();
        assert_eq!(open, [JobStatus::Scheduled, JobStatus::Pending]);
        assert!(JobStatus::Cancelled.is_terminal());
    }

    #[test]
    fn only_jobs_not_yet_called_are_cancellable() {
        assert!(JobStatus::Scheduled.cancellable(0));
        assert!(JobStatus::Pending.cancellable(0));
        assert!(!JobStatus::Pending.cancellable(1));
        for done in [
            JobStatus::Succeeded,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ] {
            assert!(!done.cancellable(0));
        }
    }
}

/// A terminal status to write with the last attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub status: JobStatus,
    pub conclusion: &'static str,
    pub evidence_request_id: Option<String>,
}

/// Conclusions written to `caster_stop_jobs.conclusion`.
pub(crate) mod conclusion {
    pub(crate) const STOPPED: &str = "stopped";
    pub(crate) const STOPPED_BY_UNANSWERED_ATTEMPT: &str = "stopped-by-unanswered-attempt";
    pub(crate) const API_ERROR: &str = "api-error";
    pub(crate) const RETRIES_EXHAUSTED: &str = "retries-exhausted";
    pub(crate) const UNKNOWN_ACCOUNT: &str = "unknown-account";
    /// A retryable failure of `stopcaster stop`, which makes one call and leaves retrying to
    /// the operator.
    pub(crate) const NOT_RETRIED: &str = "not-retried";
}
