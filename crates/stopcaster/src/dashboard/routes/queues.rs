//! What waits: the dead letters (with replay) and the scheduled jobs (with cancel).

use axum::Json;
use axum::body::Bytes;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::{Failure, Shared, api, page, render};
use crate::dashboard::views::*;
use crate::dashboard::{AppState, auth};
use crate::dead_letters::Selection;
use crate::domain::audit::{Action, Entry, Outcome};
use crate::store;

async fn dead_letter_list(
    state: &AppState,
    filter: &LetterFilter,
) -> Result<DeadLetterList, String> {
    let letters = state.broker.dead_letters().await?;
    let views: Vec<LetterView> = letters.iter().map(LetterView::from).collect();
    Ok(DeadLetterList {
        queue: state.broker.names.dead.clone(),
        count: views.len(),
        filtered: !filter.is_empty(),
        messages: views.into_iter().filter(|l| filter.matches(l)).collect(),
    })
}

pub(super) async fn dead_letters_page(
    State(state): State<Shared>,
    Query(filter): Query<LetterFilter>,
) -> Response {
    let data = dead_letter_list(&state, &filter).await;
    let status = if data.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    let page = DeadLettersPage {
        layout: Layout::new(&state, "Dead letters", "dead-letters"),
        data: &data,
        filter: &filter,
    };
    (status, render(&page)).into_response()
}

pub(super) async fn dead_letters_api(
    State(state): State<Shared>,
    Query(filter): Query<LetterFilter>,
) -> Response {
    api(dead_letter_list(&state, &filter)
        .await
        .map_err(|e| Failure::new(StatusCode::BAD_GATEWAY, e)))
}

/// The body of `POST /api/dead-letters/replay`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayRequest {
    #[serde(default)]
    job_ids: Option<Vec<Uuid>>,
    #[serde(default)]
    all: bool,
}

pub(super) async fn replay_api(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Who, for the log and the audit trail (the one place a replay from the dashboard is
    // recorded).
    let actor = auth::actor(&headers, peer.ip());
    let who = auth::who(&headers, peer.ip());
    let request: ReplayRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return Failure::bad_request(format!(
                "expected {{\"job_ids\": [...]}} or {{\"all\": true}}: {e}"
            ))
            .api();
        }
    };
    let selection = match (request.all, request.job_ids) {
        (true, None) => Selection::All,
        (false, Some(ids)) if !ids.is_empty() => Selection::Jobs(ids),
        _ => {
            return Failure::bad_request(
                "expected either {\"job_ids\": [...]} with at least one id, or {\"all\": true}",
            )
            .api();
        }
    };
    let result = state
        .broker
        .replay(&state.pool, &selection, state.max_attempts)
        .await;
    let (count, outcome) = match &result {
        Ok(r) => (
            Some(r.replayed.len()),
            crate::dead_letters::audit_outcome(r.missing.len(), r.without_job_id),
        ),
        Err(e) => (None, Outcome::Failed(e.clone())),
    };
    let entry = Entry::new(Action::Replay, &who, &selection.describe(), count, outcome);
    if let Err(e) = store::record_action(&state.pool, &entry).await {
        tracing::warn!(error = %e, "a replay from the dashboard is not in the audit trail");
    }
    match result {
        Ok(outcome) => {
            tracing::info!(
                replayed = outcome.replayed.len(),
                missing = outcome.missing.len(),
                all = matches!(selection, Selection::All),
                user = %actor.user,
                client = %actor.address,
                "replayed from the dashboard"
            );
            Json(outcome).into_response()
        }
        Err(e) => {
            tracing::warn!(user = %actor.user, client = %actor.address, error = %e,
                "a replay from the dashboard failed");
            Failure::new(StatusCode::BAD_GATEWAY, e).api()
        }
    }
}

// ---- scheduled --------------------------------------------------------------------------

async fn scheduled(state: &AppState) -> Result<ScheduledList, Failure> {
    let (total, jobs) = store::scheduled_jobs(&state.pool, 500).await?;
    Ok(ScheduledList { total, jobs })
}

pub(super) async fn scheduled_page(State(state): State<Shared>) -> Response {
    let data = scheduled(&state).await;
    page(&state, data, |d| {
        render(&ScheduledPage {
            layout: Layout::new(&state, "Scheduled", "scheduled"),
            data: d,
        })
    })
}

pub(super) async fn scheduled_api(State(state): State<Shared>) -> Response {
    api(scheduled(&state).await)
}
