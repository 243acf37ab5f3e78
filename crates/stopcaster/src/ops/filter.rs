//! The job filters that `report`, `cancel` and `dead-letters replay` share: one set of flags,
//! parsed once, turned into the store's [`JobFilter`], so that the bulk actions select exactly
//! what `report` lists with the same flags.

use std::time::Duration;

use crate::domain::{JobStatus, parse_since};
use crate::store::JobFilter;

/// `--batch`, `--caster`, `--status`, `--error-code`, `--account`, `--request-id`, `--since`,
/// `--until`: every one given must hold (they combine with AND).
#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "Filters (every one given must hold)")]
pub struct FilterArgs {
    /// Only this batch (the id `enqueue` printed).
    #[arg(long)]
    pub batch: Option<String>,
    /// Only this CasterId.
    #[arg(long)]
    pub caster: Option<String>,
    /// Only this status: scheduled, pending, succeeded, failed, rejected or cancelled.
    #[arg(long, value_parser = crate::ops::args::status)]
    pub status: Option<JobStatus>,
    /// Only jobs whose last failed call had this error code (or that were rejected for it).
    #[arg(long, value_name = "CODE")]
    pub error_code: Option<String>,
    /// Only jobs of this account (`default`: the environment's credentials).
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
    /// Only the job of the call that got this RequestId (any of its calls).
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
    /// Only jobs created within this long, e.g. 90s, 15m, 2h, 7d, 1h30m.
    #[arg(long, value_parser = parse_since, value_name = "DURATION")]
    pub since: Option<Duration>,
    /// Only jobs created at least this long ago (same forms as --since).
    #[arg(long, value_parser = parse_since, value_name = "DURATION")]
    pub until: Option<Duration>,
}

impl FilterArgs {
    /// The store's filter; blank texts count as not given.
    pub fn filter(&self) -> JobFilter {
        let text = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        JobFilter {
            batch_id: text(&self.batch),
            caster_id: text(&self.caster),
            status: self.status,
            error_code: text(&self.error_code),
            account: text(&self.account),
            request_id: text(&self.request_id),
            since: self.since,
            until: self.until,
            created_from: None,
            created_before: None,
        }
    }

    /// The filters given, as flags, for a line that says what was selected.
    pub fn describe(&self) -> String {
        self.filter().describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_is_not_given_and_filters_combine() {
        let args = FilterArgs {
            batch: Some("  ".into()),
            error_code: Some("InvalidCaster.NotFound".into()),
            status: Some(JobStatus::Failed),
            since: Some(Duration::from_secs(3600)),
            ..Default::default()
        };
        let f = args.filter();
        assert_eq!(f.batch_id, None);
        assert_eq!(f.error_code.as_deref(), Some("InvalidCaster.NotFound"));
        assert!(!f.is_empty());
        assert!(FilterArgs::default().filter().is_empty());
        assert_eq!(
            args.describe(),
            "--error-code InvalidCaster.NotFound --status failed --since 3600s"
        );
    }
}
