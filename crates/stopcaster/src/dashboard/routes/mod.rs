//! The routes: each page and its JSON twin are built from one function returning the data
//! ([`overview`] here; the jobs in [`jobs`], the batches in [`batches`], the dead letters and
//! the scheduled jobs in [`queues`], the accounts in [`account_view`]); the page renders it with its template, the API
//! serializes it. Errors are shown in place: a page gets an error page with the reason, the API
//! a JSON `{"error"}`.

mod account_view;
mod accounts;
mod batches;
mod enqueue;
mod jobs;
mod queues;

use std::sync::Arc;

use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use self::account_view::{account_api, account_page, accounts_api, accounts_page};
use self::accounts::{audit_api, audit_page, pause_api, resume_api};
use self::batches::{batch_api, batch_page, batches_api, batches_page};
use self::jobs::{
    cancel_api, cancel_matching_api, job_api, job_page, jobs_api, jobs_export, jobs_page,
};
use self::queues::{
    dead_letters_api, dead_letters_page, replay_api, scheduled_api, scheduled_page,
};
use super::views::*;
use super::{AppState, assets, auth};
use crate::domain::display::{API_CHARS, bound_json};
use crate::store;

pub(super) type Shared = Arc<AppState>;

pub(super) fn router(state: Shared) -> axum::Router {
    axum::Router::new()
        .route("/", get(overview_page))
        .route("/api/overview", get(overview_api))
        .route("/jobs", get(jobs_page))
        .route(
            "/api/jobs",
            get(jobs_api)
                .post(enqueue::enqueue_api)
                .layer(axum::extract::DefaultBodyLimit::max(enqueue::BODY_LIMIT)),
        )
        .route("/api/jobs/export", get(jobs_export))
        .route("/api/jobs/cancel", post(cancel_matching_api))
        .route("/jobs/{id}", get(job_page))
        .route("/api/jobs/{id}", get(job_api))
        .route("/api/jobs/{id}/cancel", post(cancel_api))
        .route("/batches", get(batches_page))
        .route("/api/batches", get(batches_api))
        .route("/batches/{id}", get(batch_page))
        .route("/api/batches/{id}", get(batch_api))
        .route("/dead-letters", get(dead_letters_page))
        .route("/api/dead-letters", get(dead_letters_api))
        .route("/api/dead-letters/replay", post(replay_api))
        .route("/accounts", get(accounts_page))
        .route("/api/accounts", get(accounts_api))
        .route("/accounts/{name}", get(account_page))
        .route("/api/accounts/{name}", get(account_api))
        .route("/api/accounts/{name}/pause", post(pause_api))
        .route("/api/accounts/{name}/resume", post(resume_api))
        .route("/audit", get(audit_page))
        .route("/api/audit", get(audit_api))
        .route("/scheduled", get(scheduled_page))
        .route("/api/scheduled", get(scheduled_api))
        .route("/assets/{version}/{name}", get(assets::serve))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .with_state(state)
}

/// Why a request failed, shown in place.
#[derive(Debug)]
pub(super) struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(super) fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }

    pub(super) fn bad_request(why: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, why)
    }

    pub(super) fn page(self, state: &AppState) -> Response {
        let page = ErrorPage {
            layout: Layout::new(state, format!("Error {}", self.status.as_u16()), ""),
            status: self.status.as_u16(),
            message: self.message,
        };
        (self.status, render(&page)).into_response()
    }

    pub(super) fn message(&self) -> &str {
        &self.message
    }

    pub(super) fn api(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        // sqlx's messages name the failure, never the connection URL.
        Failure::new(StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}"))
    }
}

pub(super) fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering the page: {e}\n"),
        )
            .into_response(),
    }
}

pub(super) fn page<T>(
    state: &AppState,
    data: Result<T, Failure>,
    show: impl FnOnce(&T) -> Response,
) -> Response {
    match data {
        Ok(d) => show(&d),
        Err(f) => f.page(state),
    }
}

/// A list's JSON (every endpoint but the single job's): each text cut to [`API_CHARS`]
/// characters with `… (N chars)`, and `"truncated": {"FIELD": N}` in its object, so that an
/// answer's size does not depend on what the messages held. The whole value is at
/// `/api/jobs/JOB_ID` ([`api_exact`]).
pub(super) fn api<T: serde::Serialize>(data: Result<T, Failure>) -> Response {
    match data.map(|d| serde_json::to_value(d)) {
        Ok(Ok(mut doc)) => {
            bound_json(&mut doc, API_CHARS);
            Json(doc).into_response()
        }
        Ok(Err(e)) => Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).api(),
        Err(f) => f.api(),
    }
}

/// The JSON of one item, every value exact.
pub(super) fn api_exact<T: serde::Serialize>(data: Result<T, Failure>) -> Response {
    match data {
        Ok(d) => Json(d).into_response(),
        Err(f) => f.api(),
    }
}

async fn not_found(State(state): State<Shared>) -> Response {
    Failure::not_found("no such page").page(&state)
}

// ---- the overview ------------------------------------------------------------------------

/// The chart's window: long enough for a batch of a few hundred studios at 10 calls a second.
const CALL_WINDOW_S: u32 = 120;

async fn overview(state: &AppState) -> Result<Overview, Failure> {
    let pool = &state.pool;
    let (counts, calls, quotas, queues, paused_accounts, operator_pauses, scheduled, batches) = tokio::join!(
        store::job_counts(pool, None),
        store::calls_per_second(pool, CALL_WINDOW_S),
        store::latest_quotas(pool, CALL_WINDOW_S),
        state.broker.depths(),
        store::account_pauses(pool),
        store::operator_pauses(pool),
        store::scheduled_jobs(pool, 5),
        store::recent_batches(pool, 8),
    );
    let counts = counts?;
    let (now, calls) = calls?;
    let (total, next) = scheduled?;
    Ok(Overview {
        now,
        jobs: counts.values().sum(),
        by_status: status_counts(&counts),
        window_seconds: CALL_WINDOW_S,
        calls: account_calls(&calls, &quotas?, CALL_WINDOW_S, |a| state.qps_of(a)),
        queues_error: queues.as_ref().err().cloned(),
        queues: queues.unwrap_or_default(),
        paused_accounts: paused_accounts?,
        operator_pauses: operator_pauses?,
        pausable: pausable(state),
        scheduled: ScheduledSummary { total, next },
        batches: batches?,
    })
}

/// The accounts the pause form offers: `default` and the accounts file's names.
fn pausable(state: &AppState) -> Vec<String> {
    let mut names = vec![crate::domain::pause::DEFAULT_ACCOUNT.to_owned()];
    let mut named: Vec<String> = state.account_qps.keys().cloned().collect();
    named.sort_unstable();
    names.extend(named);
    names
}

async fn overview_page(State(state): State<Shared>) -> Response {
    let data = overview(&state).await;
    page(&state, data, |d| {
        render(&OverviewPage {
            layout: Layout::new(&state, "Overview", "overview"),
            data: d,
            charts: d.calls.iter().map(chart).collect(),
        })
    })
}

async fn overview_api(State(state): State<Shared>) -> Response {
    api(overview(&state).await)
}
