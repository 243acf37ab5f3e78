//! Where a job stands: its status column and the verdict that ends it.

/// A job's status column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    Pending,
    Succeeded,
    Failed,
    Rejected,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 4] = [
        JobStatus::Pending,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        self != JobStatus::Pending
    }
}

/// A terminal status to write with the last attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub status: JobStatus,
    pub conclusion: &'static str,
    pub evidence_request_id: Option<String>,
}

/// Conclusions written to `caster_stop_jobs.conclusion`.
pub mod conclusion {
    pub const STOPPED: &str = "stopped";
    pub const STOPPED_BY_UNANSWERED_ATTEMPT: &str = "stopped-by-unanswered-attempt";
    pub const API_ERROR: &str = "api-error";
    pub const RETRIES_EXHAUSTED: &str = "retries-exhausted";
    pub const UNKNOWN_ACCOUNT: &str = "unknown-account";
    /// A retryable failure of `stopcaster stop`, which makes one call and leaves retrying to
    /// the operator.
    pub const NOT_RETRIED: &str = "not-retried";
}
