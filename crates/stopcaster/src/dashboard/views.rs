//! What each page shows: the data (serialized for `/api/`, so the pages and the API show the
//! same thing; the lists' texts bounded) and the askama templates that render it. Templates
//! escape every value for HTML (the `.html` extension turns it on): a CasterId, batch label,
//! payload or error text is always text; and every value from a message goes through [`show`]
//! (or [`text`], [`long_text`], [`payload`]): control and bidirectional characters visibly
//! escaped, long values cut with their length. The chart is SVG computed here, numbers only.

use std::borrow::Cow;
use std::collections::BTreeMap;

use askama::Template;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::assets;
pub(crate) use super::chart::{AccountCalls, Chart, account_calls, chart};
use super::queues::QueueDepth;
use super::search::{form_encode, path_segment};
use crate::dead_letters::DeadLetter;
use crate::domain::JobStatus;
use crate::domain::display::{self, CELL_CHARS, PAYLOAD_CHARS, TEXT_CHARS, bounded, bounded_as};
use crate::store::{AttemptRow, BatchRow, JobDetail, JobFilter, JobRow, PauseRow, ReplayRow};

/// What every page's frame needs.
pub(super) struct Layout {
    pub title: String,
    /// Which item of the navigation is this page.
    pub nav: &'static str,
    pub read_only: bool,
    pub refresh_s: u32,
    pub css: String,
    pub js: String,
    pub icon: String,
    pub queue_prefix: String,
}

impl Layout {
    pub(super) fn new(
        state: &super::AppState,
        title: impl Into<String>,
        nav: &'static str,
    ) -> Self {
        Self {
            title: title.into(),
            nav,
            read_only: state.read_only(),
            refresh_s: state.refresh_s,
            css: assets::path("dashboard.css"),
            js: assets::path("dashboard.js"),
            icon: assets::path("icon.svg"),
            queue_prefix: state.queue_prefix.clone(),
        }
    }
}

// ---- helpers the templates call (askama passes arguments by reference) --------------------

/// A time as RFC 3339 UTC, or `-`.
pub(super) fn when(t: &Option<OffsetDateTime>) -> String {
    t.map_or_else(|| "-".to_owned(), super::ts)
}

pub(super) fn at(t: &OffsetDateTime) -> String {
    super::ts(*t)
}

/// Optional text from a message, or `-`, as a cell shows it: escaped and bounded ([`show`]).
pub(super) fn text(v: &Option<String>) -> Cow<'_, str> {
    v.as_deref().map_or(Cow::Borrowed("-"), show)
}

/// A value from a message as a cell shows it: control and bidirectional characters escaped
/// (`\x1b`, `\u{202e}`), at most [`CELL_CHARS`] characters, then `… (N chars)`. Every value
/// that came from a message goes through here or [`long_text`], once per place: a page's size
/// is bounded whatever its rows hold.
pub(super) fn show(v: &str) -> Cow<'_, str> {
    bounded(v, CELL_CHARS)
}

/// A long text (an error message) as the job's page shows it: as [`text`], up to
/// [`TEXT_CHARS`] characters; the whole is at `/api/jobs/ID`.
pub(super) fn long_text(v: &Option<String>) -> Cow<'_, str> {
    v.as_deref()
        .map_or(Cow::Borrowed("-"), |t| bounded(t, TEXT_CHARS))
}

/// The message body as the job's page shows it: lines kept, the rest escaped, up to
/// [`PAYLOAD_CHARS`] characters.
pub(super) fn payload(v: &str) -> Cow<'_, str> {
    bounded_as(v, PAYLOAD_CHARS, display::Layout::Block)
}

/// Whether a value is short enough to be a link's target (a longer one is shown, not linked:
/// its link would repeat it whole).
fn linkable(v: &str) -> bool {
    v.len() <= CELL_CHARS
}

pub(super) fn num(v: &Option<i32>) -> String {
    v.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

pub(super) fn job_href(id: &Uuid) -> String {
    format!("/jobs/{id}")
}

pub(super) fn batch_href(batch: &Option<String>) -> String {
    match batch {
        Some(b) if linkable(b) => format!("/batches/{}", path_segment(b)),
        Some(_) => "/batches".to_owned(),
        None => "/jobs".to_owned(),
    }
}

/// A job's account as operators name it: `default` when its message named none.
pub(super) fn account_name(account: &Option<String>) -> &str {
    account
        .as_deref()
        .unwrap_or(crate::domain::pause::DEFAULT_ACCOUNT)
}

/// `/accounts/NAME` (the list of accounts for a name too long to link).
pub(super) fn account_href(name: &str) -> String {
    if linkable(name) {
        format!("/accounts/{}", path_segment(name))
    } else {
        "/accounts".to_owned()
    }
}

/// `/jobs?NAME=VALUE`: the job list filtered on one field (unfiltered for a value too long
/// to link).
pub(super) fn filter_href(name: &str, value: &str) -> String {
    if linkable(value) {
        format!("/jobs?{}={}", form_encode(name), form_encode(value))
    } else {
        "/jobs".to_owned()
    }
}

/// A duration in seconds as `1h 02m 03s`.
pub(super) fn duration(secs: &f64) -> String {
    let s = secs.max(0.0).ceil() as u64;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

// ---- the overview ---------------------------------------------------------------------

/// Jobs of one status.
#[derive(Clone, Debug, Serialize)]
pub(super) struct StatusCount {
    pub status: String,
    pub jobs: i64,
}

/// Every status the contract names, zeros included, then any other the table holds.
pub(super) fn status_counts(counts: &BTreeMap<String, i64>) -> Vec<StatusCount> {
    let mut out: Vec<StatusCount> = JobStatus::ALL
        .iter()
        .map(|s| StatusCount {
            status: s.as_str().to_owned(),
            jobs: counts.get(s.as_str()).copied().unwrap_or(0),
        })
        .collect();
    for (s, n) in counts {
        if JobStatus::parse(s).is_none() {
            out.push(StatusCount {
                status: s.clone(),
                jobs: *n,
            });
        }
    }
    out
}

/// The overview (`/`, `/api/overview`).
#[derive(Clone, Debug, Serialize)]
pub(super) struct Overview {
    #[serde(with = "time::serde::rfc3339")]
    pub now: OffsetDateTime,
    pub jobs: i64,
    pub by_status: Vec<StatusCount>,
    pub window_seconds: u32,
    pub calls: Vec<AccountCalls>,
    /// `P.jobs` and `P.dead` (empty when they could not be read).
    pub queues: Vec<QueueDepth>,
    /// Why the queues could not be read.
    pub queues_error: Option<String>,
    pub paused_accounts: Vec<PauseRow>,
    /// Accounts paused by an operator (`stopcaster pause`, the buttons).
    pub operator_pauses: Vec<crate::store::OperatorPause>,
    /// The accounts the pause form offers.
    pub pausable: Vec<String>,
    pub scheduled: ScheduledSummary,
    pub batches: Vec<BatchRow>,
}

#[derive(Clone, Debug, Serialize)]
pub(super) struct ScheduledSummary {
    pub total: i64,
    /// The earliest due.
    pub next: Vec<JobRow>,
}

#[derive(Template)]
#[template(path = "overview.html")]
pub(super) struct OverviewPage<'a> {
    pub layout: Layout,
    pub data: &'a Overview,
    pub charts: Vec<Chart>,
}

// ---- jobs -------------------------------------------------------------------------------

/// A page of the filtered job list (`/jobs`, `/api/jobs`).
#[derive(Clone, Debug, Serialize)]
pub(super) struct JobList {
    pub jobs: Vec<JobRow>,
    /// The `after` of the next page; `None` on the last one.
    pub next: Option<String>,
}

pub(super) struct StatusOption {
    pub value: &'static str,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "jobs.html")]
pub(super) struct JobsPage<'a> {
    pub layout: Layout,
    pub data: &'a JobList,
    pub form: &'a super::search::SearchParams,
    pub statuses: Vec<StatusOption>,
    /// The filters as a query string (for the next page and the exports).
    pub query: String,
    pub first_page: bool,
    /// With a filter and a password: how many matching jobs a cancel would cancel now.
    pub cancellable: Option<usize>,
}

pub(super) fn status_options(selected: Option<&str>) -> Vec<StatusOption> {
    JobStatus::ALL
        .into_iter()
        .map(JobStatus::as_str)
        .map(|value| StatusOption {
            value,
            selected: selected == Some(value),
        })
        .collect()
}

/// Optional form text, or empty.
pub(super) fn field(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

/// One job (`/jobs/ID`, `/api/jobs/ID`).
#[derive(Clone, Debug, Serialize)]
pub(super) struct JobView {
    pub job: JobDetail,
    pub attempts: Vec<AttemptRow>,
    pub replays: Vec<ReplayRow>,
    /// Whether the job may be cancelled now (scheduled, or pending with no call made).
    pub cancellable: bool,
}

#[derive(Template)]
#[template(path = "job.html")]
pub(super) struct JobPage<'a> {
    pub layout: Layout,
    pub data: &'a JobView,
}

// ---- batches ----------------------------------------------------------------------------

/// `/batches`, `/api/batches`.
#[derive(Clone, Debug, Serialize)]
pub(super) struct BatchList {
    pub batches: Vec<BatchRow>,
}

#[derive(Template)]
#[template(path = "batches.html")]
pub(super) struct BatchesPage<'a> {
    pub layout: Layout,
    pub data: &'a BatchList,
}

impl BatchRow {
    pub(crate) fn count(&self, status: &str) -> i64 {
        self.by_status.get(status).copied().unwrap_or(0)
    }

    /// Jobs that are done: neither pending nor scheduled.
    pub(crate) fn done(&self) -> i64 {
        self.jobs
            - self.count(JobStatus::Pending.as_str())
            - self.count(JobStatus::Scheduled.as_str())
    }

    pub(crate) fn percent_done(&self) -> u32 {
        percent(self.done(), self.jobs)
    }
}

/// `part` of `whole` in whole percent, rounded down (100 only when all are done).
pub(super) fn percent(part: i64, whole: i64) -> u32 {
    if whole <= 0 {
        0
    } else {
        ((part.max(0) as f64 / whole as f64) * 100.0).floor() as u32
    }
}

/// One account's share of a batch's pending jobs and the time it needs for them.
#[derive(Clone, Debug, Serialize)]
pub(super) struct AccountPace {
    pub account: Option<String>,
    pub pending: i64,
    pub qps: u32,
    pub seconds: f64,
}

/// A batch (`/batches/ID`, `/api/batches/ID`).
#[derive(Clone, Debug, Serialize)]
pub(super) struct BatchView {
    pub batch_id: String,
    pub jobs: i64,
    pub by_status: Vec<StatusCount>,
    pub done: i64,
    pub percent_done: u32,
    pub calls: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub first_call: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_call: Option<OffsetDateTime>,
    pub retried_attempts: i64,
    pub throttled_attempts: i64,
    /// Failed and rejected jobs by error code (the conclusion where there is none).
    pub failures_by_error_code: Vec<(String, i64)>,
    pub pace: Vec<AccountPace>,
    /// When the pending jobs are done at their accounts' pace, if there are any.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expected_finish: Option<OffsetDateTime>,
    pub expected_seconds: Option<f64>,
    /// The newest jobs of the batch (the rest: `/jobs?batch=ID`).
    pub newest_jobs: Vec<JobRow>,
}

#[derive(Template)]
#[template(path = "batch.html")]
pub(super) struct BatchPage<'a> {
    pub layout: Layout,
    pub data: &'a BatchView,
    pub jobs_href: String,
}

// ---- dead letters and scheduled ---------------------------------------------------------

/// A dead letter as the page and the API show it.
#[derive(Clone, Debug, Serialize)]
pub(super) struct LetterView {
    pub job_id: Option<String>,
    /// The job id when it is one (what the page links to and replays).
    #[serde(skip)]
    pub job_uuid: Option<Uuid>,
    pub caster_id: Option<String>,
    pub batch_id: Option<String>,
    pub reason: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub when: Option<OffsetDateTime>,
}

impl From<&DeadLetter> for LetterView {
    fn from(l: &DeadLetter) -> Self {
        Self {
            job_id: l.job_id.clone(),
            job_uuid: l.job_uuid(),
            caster_id: l.caster_id.clone(),
            batch_id: l.batch_id.clone(),
            reason: l.reason.clone(),
            when: l.when,
        }
    }
}

/// The most dead letters a page (or its JSON) lists; the count is always the whole.
pub(super) const MAX_LETTERS_SHOWN: usize = 500;

/// `/dead-letters`, `/api/dead-letters`.
#[derive(Clone, Debug, Serialize)]
pub(super) struct DeadLetterList {
    pub queue: String,
    /// Every message in the queue.
    pub count: usize,
    /// Those matching the filter (every message without one): what "Replay N" replays.
    pub matching: usize,
    /// The first [`MAX_LETTERS_SHOWN`] of those matching.
    pub messages: Vec<LetterView>,
    /// A filter is applied.
    pub filtered: bool,
}

/// The dead letters' filters, report's: the job rows of the letters are matched in Postgres,
/// as `stopcaster dead-letters replay --batch ... --error-code ...` matches them.
#[derive(Clone, Debug, Default, serde::Deserialize, Serialize)]
pub(super) struct LetterFilter {
    pub batch: Option<String>,
    pub caster: Option<String>,
    pub error_code: Option<String>,
    pub account: Option<String>,
    pub status: Option<String>,
    /// Created within this long: `90s`, `15m`, `2h`, `7d`.
    pub since: Option<String>,
}

impl LetterFilter {
    fn get(v: &Option<String>) -> Option<String> {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }

    /// The store's filter, or why a field is wrong (for a 400).
    pub(super) fn to_filter(&self) -> Result<JobFilter, String> {
        let status = Self::get(&self.status)
            .map(|s| JobStatus::parse(&s).ok_or_else(|| format!("status: unknown status {s:?}")))
            .transpose()?;
        let since = Self::get(&self.since)
            .map(|s| crate::domain::parse_since(&s).map_err(|e| format!("since: {e}")))
            .transpose()?;
        Ok(JobFilter {
            batch_id: Self::get(&self.batch),
            caster_id: Self::get(&self.caster),
            error_code: Self::get(&self.error_code),
            account: Self::get(&self.account),
            status,
            since,
            ..Default::default()
        })
    }
}

#[derive(Template)]
#[template(path = "dead_letters.html")]
pub(super) struct DeadLettersPage<'a> {
    pub layout: Layout,
    pub data: &'a Result<DeadLetterList, String>,
    pub filter: &'a LetterFilter,
    pub statuses: Vec<StatusOption>,
}

/// `/scheduled`, `/api/scheduled`.
#[derive(Clone, Debug, Serialize)]
pub(super) struct ScheduledList {
    pub total: i64,
    pub jobs: Vec<JobRow>,
}

#[derive(Template)]
#[template(path = "scheduled.html")]
pub(super) struct ScheduledPage<'a> {
    pub layout: Layout,
    pub data: &'a ScheduledList,
}

// ---- errors -----------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "error.html")]
pub(super) struct ErrorPage {
    pub layout: Layout,
    pub status: u16,
    pub message: String,
}

/// A query-string value, percent-encoded.
pub(super) fn form(s: &str) -> String {
    form_encode(s)
}
