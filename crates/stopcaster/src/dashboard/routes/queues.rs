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

/// The dead letters, those matching the filter counted and the first of them listed. A
/// filter is matched against the letters' job rows, with the same query as a replay by
/// filter, so the count shown is what "Replay N" replays (as long as nothing changes between).
async fn dead_letter_list(
    state: &AppState,
    filter: &LetterFilter,
) -> Result<DeadLetterList, Failure> {
    let wanted = filter.to_filter().map_err(Failure::bad_request)?;
    let letters = state
        .broker
        .dead_letters()
        .await
        .map_err(|e| Failure::new(StatusCode::BAD_GATEWAY, e))?;
    let views: Vec<LetterView> = letters.iter().map(LetterView::from).collect();
    let count = views.len();
    let matching: Vec<LetterView> = if wanted.is_empty() {
        views
    } else {
        let ids: Vec<Uuid> = views.iter().filter_map(|l| l.job_uuid).collect();
        let chosen: std::collections::HashSet<Uuid> =
            store::filter_job_ids(&state.pool, &wanted, &ids)
                .await?
                .into_iter()
                .collect();
        views
            .into_iter()
            .filter(|l| l.job_uuid.is_some_and(|id| chosen.contains(&id)))
            .collect()
    };
    Ok(DeadLetterList {
        queue: state.broker.names.dead.clone(),
        count,
        matching: matching.len(),
        filtered: !wanted.is_empty(),
        messages: matching.into_iter().take(MAX_LETTERS_SHOWN).collect(),
    })
}

pub(super) async fn dead_letters_page(
    State(state): State<Shared>,
    Query(filter): Query<LetterFilter>,
) -> Response {
    let data = dead_letter_list(&state, &filter).await;
    let status = data.as_ref().map_or_else(|f| f.status, |_| StatusCode::OK);
    let data = data.map_err(|f| f.message);
    let page = DeadLettersPage {
        layout: Layout::new(&state, "Dead letters", "dead-letters"),
        data: &data,
        filter: &filter,
        statuses: status_options(filter.status.as_deref()),
    };
    (status, render(&page)).into_response()
}

pub(super) async fn dead_letters_api(
    State(state): State<Shared>,
    Query(filter): Query<LetterFilter>,
) -> Response {
    api(dead_letter_list(&state, &filter).await)
}

/// The body of `POST /api/dead-letters/replay`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayRequest {
    #[serde(default)]
    job_ids: Option<Vec<Uuid>>,
    #[serde(default)]
    all: bool,
    /// The page's filter: the dead letters whose job matches it, chosen on the server.
    #[serde(default)]
    filter: Option<LetterFilter>,
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
                "expected {{\"job_ids\": [...]}}, {{\"filter\": {{...}}}} or {{\"all\": true}}: {e}"
            ))
            .api();
        }
    };
    let filter = match request
        .filter
        .as_ref()
        .map(LetterFilter::to_filter)
        .transpose()
    {
        Ok(f) => f.filter(|f| !f.is_empty()),
        Err(e) => return Failure::bad_request(e).api(),
    };
    let selection = match (request.all, request.job_ids, filter) {
        (true, None, None) => Selection::All,
        (false, Some(ids), None) if !ids.is_empty() => Selection::Jobs(ids),
        (false, None, Some(filter)) => Selection::Matching(filter),
        _ => {
            return Failure::bad_request(
                "expected one of {\"job_ids\": [...]} with at least one id, {\"filter\": {...}} \
                 with at least one condition, or {\"all\": true}",
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
                by_filter = matches!(selection, Selection::Matching(_)),
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
