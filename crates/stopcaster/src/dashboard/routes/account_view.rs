//! One account's page, `/accounts/NAME`, and its JSON twin `/api/accounts/NAME`: its calls per
//! second against its quota (the overview's chart, over a longer window), the quota header's
//! `Limit`/`Remain`, whether it is paused now (by an operator, or by a worker whose
//! credentials were refused) and the operators' pauses and resumes from the audit trail, its
//! backlog and when that drains at its pace, and its calls' errors by code. A name nothing
//! knows (not `default`, not in the accounts file, in no job, pause or audited pause) is a 404.

use std::collections::BTreeMap;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Serialize;
use time::OffsetDateTime;

use super::{Failure, Shared, api, page, render};
use crate::dashboard::chart::{AccountCalls, Chart, QuotaHeader, account_calls, chart};
use crate::dashboard::views::{Layout, show};
use crate::dashboard::{AppState, pace};
use crate::domain::pause::DEFAULT_ACCOUNT;
use crate::store::{self, AuditRow, Backlog, CallErrors, OperatorPause, PauseRow};

/// The chart's window: a few minutes, to see a batch's pace and its throttling together.
const WINDOW_S: u32 = 300;
/// The most pauses and resumes the history lists.
const HISTORY_LIMIT: i64 = 100;
/// The longest name looked up (a job's account is shorter still).
const MAX_NAME_BYTES: usize = 1024;
/// The errors' short window.
const RECENT: Duration = Duration::from_secs(3600);
/// The errors' long window: bounded, so that the page costs the same on a table of millions
/// of calls (the attempts' `started_at` index), and long enough to see yesterday's evening.
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Calls and their errors over a window.
#[derive(Clone, Debug, Serialize)]
pub(super) struct ErrorWindow {
    /// `last hour`, `last 24 hours`.
    pub window: &'static str,
    pub seconds: u64,
    #[serde(flatten)]
    pub errors: CallErrors,
}

/// The backlog and when it drains.
#[derive(Clone, Debug, Serialize)]
pub(super) struct BacklogView {
    #[serde(flatten)]
    pub jobs: Backlog,
    /// The pending jobs' first calls at the account's configured quota.
    pub drain_seconds: Option<f64>,
    /// When they are done, if the account is not paused.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expected_drain: Option<OffsetDateTime>,
}

/// `/accounts/NAME`, `/api/accounts/NAME`.
#[derive(Clone, Debug, Serialize)]
pub(super) struct AccountView {
    pub account: String,
    #[serde(with = "time::serde::rfc3339")]
    pub now: OffsetDateTime,
    /// The configured quota (the workers' `STOPCASTER_QPS` or the accounts file's `qps`).
    pub qps: u32,
    /// The latest answer's quota header in the window, if the endpoint sent one.
    pub quota_header: Option<QuotaHeader>,
    pub window_seconds: u32,
    /// Calls per second over the window, oldest first.
    pub calls: AccountCalls,
    /// Paused by an operator now.
    pub operator_pause: Option<OperatorPause>,
    /// Paused now by workers whose credentials were refused (held only while the pause lasts).
    pub automatic_pauses: Vec<PauseRow>,
    /// The operators' pauses and resumes of this account, newest first.
    pub pause_history: Vec<AuditRow>,
    pub backlog: BacklogView,
    pub errors: Vec<ErrorWindow>,
}

impl AccountView {
    pub(super) fn paused(&self) -> bool {
        self.operator_pause.is_some() || !self.automatic_pauses.is_empty()
    }
}

/// Whether `name` is an account to show a page for.
async fn known(state: &AppState, name: &str) -> Result<bool, Failure> {
    if name == DEFAULT_ACCOUNT
        || state.account_qps.contains_key(name)
        || state
            .account_names
            .as_ref()
            .is_some_and(|n| n.iter().any(|k| k == name))
    {
        return Ok(true);
    }
    Ok(store::account_seen(&state.pool, name).await?)
}

/// The rows of `name`'s calls (`default` also gathers the jobs naming no account), as one
/// account's.
fn own_calls(state: &AppState, name: &str, rows: Vec<store::CallsInSecond>) -> AccountCalls {
    let key = |a: &Option<String>| a.as_deref().unwrap_or(DEFAULT_ACCOUNT) == name;
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| key(&r.account))
        .map(|r| store::CallsInSecond {
            account: Some(name.to_owned()),
            ..r
        })
        .collect();
    account_calls(&rows, &[], WINDOW_S, |a| state.qps_of(a))
        .pop()
        .unwrap_or_else(|| AccountCalls {
            account: Some(name.to_owned()),
            qps: state.qps_of(Some(name)),
            quota_header: None,
            per_second: vec![0; WINDOW_S as usize],
            throttled_per_second: vec![0; WINDOW_S as usize],
            calls: 0,
            throttled: 0,
            peak: 0,
        })
}

async fn account(state: &AppState, name: &str) -> Result<AccountView, Failure> {
    // The name came in the URL: shown bounded and escaped, as every value from outside.
    let unknown = || Failure::not_found(format!("no account {}", show(name)));
    // Not `pause::account`'s check: a job row may name an account no pause could (control
    // characters, from a rejected message), and its page shows it escaped.
    if name.is_empty() || name.len() > MAX_NAME_BYTES || !known(state, name).await? {
        return Err(unknown());
    }
    let name = name.to_owned();
    let pool = &state.pool;
    let (calls, quotas, operator, automatic, history, backlog, recent, all) = tokio::join!(
        store::calls_per_second(pool, WINDOW_S),
        store::latest_quotas(pool, WINDOW_S),
        store::operator_pauses(pool),
        store::account_pauses(pool),
        store::pause_history(pool, &name, HISTORY_LIMIT),
        store::account_backlog(pool, &name),
        store::account_errors(pool, &name, RECENT),
        store::account_errors(pool, &name, DAY),
    );
    let (now, rows) = calls?;
    let mut calls = own_calls(state, &name, rows);
    let quota_header = quotas?
        .into_iter()
        .find(|q| q.account.as_deref().unwrap_or(DEFAULT_ACCOUNT) == name)
        .and_then(|q| {
            Some(QuotaHeader {
                limit: u32::try_from(q.limit).ok()?,
                remain: u32::try_from(q.remain).ok()?,
            })
        });
    calls.quota_header = quota_header;
    let operator_pause = operator?.into_iter().find(|p| p.account == name);
    let automatic_pauses: Vec<PauseRow> = automatic?
        .into_iter()
        .filter(|p| p.account == name)
        .collect();
    let held = operator_pause.is_some() || !automatic_pauses.is_empty();
    let jobs = backlog?;
    // At the pace the workers keep: their configured quota (the gateway's `Limit` may be
    // higher; they do not go faster for it), as the batch page's expected finish.
    let qps = state.qps_of(Some(&name));
    let drain_seconds = (jobs.pending > 0).then(|| pace::drain_seconds(jobs.pending, qps));
    let expected_drain = drain_seconds
        .filter(|_| !held)
        .map(|s| pace::finish_at(OffsetDateTime::now_utc(), s));
    Ok(AccountView {
        qps,
        account: name,
        now,
        quota_header,
        window_seconds: WINDOW_S,
        calls,
        operator_pause,
        automatic_pauses,
        pause_history: history?,
        backlog: BacklogView {
            jobs,
            drain_seconds,
            expected_drain,
        },
        errors: vec![
            ErrorWindow {
                window: "last hour",
                seconds: RECENT.as_secs(),
                errors: recent?,
            },
            ErrorWindow {
                window: "last 24 hours",
                seconds: DAY.as_secs(),
                errors: all?,
            },
        ],
    })
}

#[derive(Template)]
#[template(path = "account.html")]
pub(super) struct AccountPage<'a> {
    pub layout: Layout,
    pub data: &'a AccountView,
    pub chart: Chart,
}

pub(super) async fn account_page(
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Response {
    let data = account(&state, &name).await;
    page(&state, data, |d| {
        render(&AccountPage {
            layout: Layout::new(&state, format!("Account {}", show(&d.account)), "accounts"),
            data: d,
            chart: chart(&d.calls),
        })
    })
}

pub(super) async fn account_api(State(state): State<Shared>, Path(name): Path<String>) -> Response {
    api(account(&state, &name).await)
}

// ---- the list of accounts ---------------------------------------------------------------

/// An account in `/accounts`.
#[derive(Clone, Debug, Serialize)]
pub(super) struct AccountItem {
    pub account: String,
    pub qps: u32,
    /// Calls in the last [`WINDOW_S`] seconds.
    pub recent_calls: i64,
    pub paused: bool,
}

/// `/accounts`, `/api/accounts`: `default`, the accounts file's, and any other that called
/// lately or is paused.
#[derive(Clone, Debug, Serialize)]
pub(super) struct AccountList {
    pub window_seconds: u32,
    pub accounts: Vec<AccountItem>,
}

async fn accounts(state: &AppState) -> Result<AccountList, Failure> {
    let pool = &state.pool;
    let (calls, operator, automatic) = tokio::join!(
        store::calls_per_second(pool, WINDOW_S),
        store::operator_pauses(pool),
        store::account_pauses(pool),
    );
    let mut items: BTreeMap<String, AccountItem> = BTreeMap::new();
    let mut names: Vec<String> = vec![DEFAULT_ACCOUNT.to_owned()];
    names.extend(state.account_qps.keys().cloned());
    for name in names {
        entry(&mut items, state, &name);
    }
    for r in calls?.1 {
        entry(
            &mut items,
            state,
            r.account.as_deref().unwrap_or(DEFAULT_ACCOUNT),
        )
        .recent_calls += r.calls;
    }
    for p in operator? {
        entry(&mut items, state, &p.account).paused = true;
    }
    for p in automatic? {
        entry(&mut items, state, &p.account).paused = true;
    }
    Ok(AccountList {
        window_seconds: WINDOW_S,
        accounts: items.into_values().collect(),
    })
}

fn entry<'a>(
    items: &'a mut BTreeMap<String, AccountItem>,
    state: &AppState,
    name: &str,
) -> &'a mut AccountItem {
    items.entry(name.to_owned()).or_insert_with(|| AccountItem {
        account: name.to_owned(),
        qps: state.qps_of(Some(name)),
        recent_calls: 0,
        paused: false,
    })
}

#[derive(Template)]
#[template(path = "accounts.html")]
pub(super) struct AccountsPage<'a> {
    pub layout: Layout,
    pub data: &'a AccountList,
}

pub(super) async fn accounts_page(State(state): State<Shared>) -> Response {
    let data = accounts(&state).await;
    page(&state, data, |d| {
        render(&AccountsPage {
            layout: Layout::new(&state, "Accounts", "accounts"),
            data: d,
        })
    })
}

pub(super) async fn accounts_api(State(state): State<Shared>) -> Response {
    api(accounts(&state).await)
}
