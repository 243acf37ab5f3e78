//! Operators' pauses and the audit trail: `POST /api/accounts/NAME/pause` and `.../resume`
//! (the overview's buttons call them; the password and `Origin` rules are the guard's, as for
//! replay), the page `/audit` and `GET /api/audit` (JSON, or `?format=csv`). Each action is
//! recorded in the audit trail here, in the handler, once.

use std::net::SocketAddr;

use askama::Template;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use super::{Failure, Shared, api, page, render};
use crate::dashboard::auth;
use crate::dashboard::views::Layout;
use crate::domain::audit::{Action, Entry, Outcome};
use crate::domain::parse_since;
use crate::domain::pause;
use crate::export::{AUDIT_COLUMNS, audit_csv_row, csv_record};
use crate::store::{self, AuditRow};

/// The body of `POST /api/accounts/NAME/pause`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PauseRequest {
    reason: String,
    #[serde(default)]
    until: Option<String>,
}

/// What the audit trail says a pause was.
fn pause_target(account: &str, reason: &str, until: Option<OffsetDateTime>) -> String {
    let until = until.map_or_else(
        || "until resumed".to_owned(),
        |u| format!("until {}", crate::domain::time::rfc3339_micros(u)),
    );
    format!("account {account} ({until}): {reason}")
}

async fn audit(state: &crate::dashboard::AppState, entry: Entry) {
    if let Err(e) = store::record_action(&state.pool, &entry).await {
        tracing::warn!(error = %e, action = entry.action.as_str(), "an action is not in the audit trail");
    }
}

pub(super) async fn pause_api(
    State(state): State<Shared>,
    Path(name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let who = auth::who(&headers, peer.ip());
    let checked = (|| {
        let request: PauseRequest = serde_json::from_slice(&body).map_err(|e| {
            format!("expected {{\"reason\": \"...\", \"until\": \"RFC 3339 time or 30m\"}}: {e}")
        })?;
        let account =
            pause::account(&name, state.account_names.as_deref()).map_err(|e| e.to_string())?;
        let reason = pause::reason(&request.reason).map_err(|e| e.to_string())?;
        let until = request
            .until
            .as_deref()
            .filter(|u| !u.trim().is_empty())
            .map(|u| pause::until(u, OffsetDateTime::now_utc()))
            .transpose()
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((account, reason, until))
    })();
    let (account, reason, until) = match checked {
        Ok(c) => c,
        Err(why) => {
            let target = format!("account {name}");
            audit(
                &state,
                Entry::new(
                    Action::Pause,
                    &who,
                    &target,
                    Some(0),
                    Outcome::Failed(why.clone()),
                ),
            )
            .await;
            return Failure::bad_request(why).api();
        }
    };
    let target = pause_target(&account, &reason, until);
    let done = store::pause_account(&state.pool, &account, &reason, &who, until).await;
    let (outcome, response) = match done {
        Ok(true) => {
            tracing::info!(%account, by = %who, "account paused from the dashboard");
            (
                Outcome::Ok,
                Json(json!({"account": account, "paused": true, "reason": reason, "until": until.map(crate::domain::time::rfc3339_micros)}))
                    .into_response(),
            )
        }
        Ok(false) => {
            let why = "until has passed by the database's clock: nothing was paused".to_owned();
            (
                Outcome::Failed(why.clone()),
                Failure::bad_request(why).api(),
            )
        }
        Err(e) => (
            Outcome::Failed(format!("database: {e}")),
            Failure::from(e).api(),
        ),
    };
    let count = matches!(outcome, Outcome::Ok).then_some(1).or(Some(0));
    audit(
        &state,
        Entry::new(Action::Pause, &who, &target, count, outcome),
    )
    .await;
    response
}

pub(super) async fn resume_api(
    State(state): State<Shared>,
    Path(name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let who = auth::who(&headers, peer.ip());
    let account = match pause::account(&name, None) {
        Ok(a) => a,
        Err(e) => return Failure::bad_request(e.to_string()).api(),
    };
    let target = format!("account {account}");
    let ended = store::resume_account(&state.pool, &account).await;
    let (outcome, count, response) = match ended {
        Ok(Some(_)) => {
            if let Err(e) = store::release_parked(&state.pool, &account).await {
                tracing::debug!(error = %e, "parked jobs are released by the workers instead");
            }
            tracing::info!(%account, by = %who, "account resumed from the dashboard");
            (
                Outcome::Ok,
                1,
                Json(json!({"account": account, "resumed": true})).into_response(),
            )
        }
        Ok(None) => (
            Outcome::Partial("the account was not paused by an operator".into()),
            0,
            Json(json!({"account": account, "resumed": false, "error": "the account was not paused by an operator"}))
                .into_response(),
        ),
        Err(e) => (
            Outcome::Failed(format!("database: {e}")),
            0,
            Failure::from(e).api(),
        ),
    };
    audit(
        &state,
        Entry::new(Action::Resume, &who, &target, Some(count), outcome),
    )
    .await;
    response
}

// ---- the audit trail ----------------------------------------------------------------------

/// The most actions a page or an answer lists.
const AUDIT_LIMIT: i64 = 1_000;

#[derive(Debug, Default, Deserialize)]
pub(super) struct AuditQuery {
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    format: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub(super) struct AuditList {
    pub since: Option<String>,
    pub actions: Vec<AuditRow>,
}

async fn audit_list(
    state: &crate::dashboard::AppState,
    q: &AuditQuery,
) -> Result<AuditList, Failure> {
    let since_text = q.since.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let since = since_text
        .map(parse_since)
        .transpose()
        .map_err(|e| Failure::bad_request(e.to_string()))?;
    Ok(AuditList {
        since: since_text.map(str::to_owned),
        actions: store::audit_rows(&state.pool, since, AUDIT_LIMIT).await?,
    })
}

#[derive(Template)]
#[template(path = "audit.html")]
pub(super) struct AuditPage<'a> {
    pub layout: Layout,
    pub data: &'a AuditList,
}

pub(super) async fn audit_page(
    State(state): State<Shared>,
    Query(q): Query<AuditQuery>,
) -> Response {
    let data = audit_list(&state, &q).await;
    page(&state, data, |d| {
        render(&AuditPage {
            layout: Layout::new(&state, "Audit", "audit"),
            data: d,
        })
    })
}

/// `GET /api/audit`: JSON (texts bounded as every list's), or `?format=csv` (every cell
/// escaped, as the report's CSV).
pub(super) async fn audit_api(
    State(state): State<Shared>,
    Query(q): Query<AuditQuery>,
) -> Response {
    let data = audit_list(&state, &q).await;
    if q.format.as_deref() != Some("csv") {
        return api(data);
    }
    match data {
        Ok(list) => {
            let mut out = csv_record(AUDIT_COLUMNS);
            for row in &list.actions {
                out.push_str(&audit_csv_row(row));
            }
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"stopcaster-audit.csv\"",
                    ),
                ],
                out,
            )
                .into_response()
        }
        Err(f) => f.api(),
    }
}
