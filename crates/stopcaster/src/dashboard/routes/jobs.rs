//! The jobs: the filtered list, its streamed export, one job and its cancel.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Failure, Shared, api, api_exact, page, render};
use crate::dashboard::AppState;
use crate::dashboard::auth;
use crate::dashboard::search::{Search, SearchParams, encode_cursor};
use crate::dashboard::views::*;
use crate::domain::JobStatus;
use crate::domain::audit::{Action, Entry, Outcome};
use crate::export::{self, csv_record};
use crate::store::{self, CancelOutcome, Cursor, JobRow, JobSearch};

fn checked(params: &SearchParams) -> Result<Search, Failure> {
    params
        .check(OffsetDateTime::now_utc())
        .map_err(Failure::bad_request)
}

fn cursor_of(row: &JobRow) -> Cursor {
    Cursor {
        created_at: row.created_at,
        job_id: row.job_id,
    }
}

async fn job_list(state: &AppState, search: &Search) -> Result<JobList, Failure> {
    // One row more than the page tells whether there is a next page.
    let mut jobs =
        store::search_jobs(&state.pool, &search.filter, search.after, search.limit + 1).await?;
    let more = jobs.len() > search.limit as usize;
    jobs.truncate(search.limit as usize);
    let next = if more {
        jobs.last().map(|r| encode_cursor(&cursor_of(r)))
    } else {
        None
    };
    Ok(JobList { jobs, next })
}

pub(super) async fn jobs_page(
    State(state): State<Shared>,
    Query(params): Query<SearchParams>,
) -> Response {
    let search = checked(&params);
    let data = match &search {
        Ok(s) => job_list(&state, s).await,
        Err(e) => Err(Failure::bad_request(e.message.clone())),
    };
    let query = search
        .as_ref()
        .map(|s| s.query(&params))
        .unwrap_or_default();
    let first_page = search.as_ref().is_ok_and(|s| s.after.is_none());
    let cancellable = match &search {
        Ok(s) if !state.read_only() && !s.job_filter().is_empty() => {
            store::preview_cancel(&state.pool, &[], &s.job_filter())
                .await
                .ok()
                .map(|rows| cancelled_count(&rows))
        }
        _ => None,
    };
    page(&state, data, |d| {
        render(&JobsPage {
            layout: Layout::new(&state, "Jobs", "jobs"),
            data: d,
            form: &params,
            statuses: status_options(params.status.as_deref()),
            query: query.clone(),
            first_page,
            cancellable,
        })
    })
}

pub(super) async fn jobs_api(
    State(state): State<Shared>,
    Query(params): Query<SearchParams>,
) -> Response {
    let data = match checked(&params) {
        Ok(s) => job_list(&state, &s).await,
        Err(f) => Err(f),
    };
    api(data)
}

/// Rows fetched per query of an export.
const EXPORT_PAGE: u32 = 2_000;

struct ExportState {
    pool: sqlx::PgPool,
    filter: JobSearch,
    after: Option<Cursor>,
    csv: bool,
    started: bool,
    rows: u64,
    done: bool,
}

/// `GET /api/jobs/export?FILTERS&format=csv|json`: every matching job, newest first, streamed
/// page by page along the same keyset as the list (so memory stays flat for any size).
pub(super) async fn jobs_export(
    State(state): State<Shared>,
    Query(params): Query<SearchParams>,
) -> Response {
    let search = match checked(&params) {
        Ok(s) => s,
        Err(f) => return f.api(),
    };
    let csv = match params.format.as_deref().unwrap_or("csv") {
        "csv" => true,
        "json" => false,
        other => {
            return Failure::bad_request(format!("format: {other:?}: expected csv or json")).api();
        }
    };
    let stream_state = ExportState {
        pool: state.pool.clone(),
        filter: search.filter,
        after: search.after,
        csv,
        started: false,
        rows: 0,
        done: false,
    };
    let stream = futures_util::stream::unfold(stream_state, next_chunk);
    let stamp = OffsetDateTime::now_utc().unix_timestamp();
    let (content_type, ext) = if csv {
        ("text/csv; charset=utf-8; header=present", "csv")
    } else {
        ("application/json", "json")
    };
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"stopcaster-jobs-{stamp}.{ext}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// The export's next chunk: the header (or `[`) first, then a page of rows; `None` after the
/// last page.
async fn next_chunk(mut st: ExportState) -> Option<(Result<Bytes, std::io::Error>, ExportState)> {
    if st.done {
        return None;
    }
    let mut chunk = String::new();
    if !st.started {
        st.started = true;
        if st.csv {
            chunk.push_str(&csv_record(export::COLUMNS));
        } else {
            chunk.push('[');
        }
    }
    let rows = match store::search_jobs(&st.pool, &st.filter, st.after, EXPORT_PAGE).await {
        Ok(rows) => rows,
        Err(e) => {
            st.done = true;
            return Some((Err(std::io::Error::other(format!("database: {e}"))), st));
        }
    };
    for r in &rows {
        if st.csv {
            chunk.push_str(&export::csv_row(r));
        } else {
            if st.rows > 0 {
                chunk.push(',');
            }
            chunk.push('\n');
            chunk.push_str(&serde_json::to_string(r).unwrap_or_default());
        }
        st.after = Some(cursor_of(r));
        st.rows += 1;
    }
    if rows.len() < EXPORT_PAGE as usize {
        st.done = true;
        if !st.csv {
            chunk.push_str("\n]\n");
        }
    }
    Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), st))
}

fn parse_job_id(text: &str) -> Result<Uuid, Failure> {
    Uuid::parse_str(text).map_err(|_| Failure::not_found(format!("{text:?} is not a job id")))
}

async fn job(state: &AppState, id: &str) -> Result<JobView, Failure> {
    let id = parse_job_id(id)?;
    let Some((job, attempts, replays)) = store::job_detail(&state.pool, id).await? else {
        return Err(Failure::not_found(format!("no job {id}")));
    };
    let cancellable =
        JobStatus::parse(&job.row.status).is_some_and(|s| s.cancellable(job.row.attempts));
    Ok(JobView {
        job,
        attempts,
        replays,
        cancellable,
    })
}

pub(super) async fn job_page(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    let data = job(&state, &id).await;
    page(&state, data, |d| {
        render(&JobPage {
            layout: Layout::new(&state, format!("Job {}", d.job.row.job_id), "jobs"),
            data: d,
        })
    })
}

pub(super) async fn job_api(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    api_exact(job(&state, &id).await)
}

/// `POST /api/jobs/ID/cancel`: 200 when cancelled; 409 when the job has gone too far (its
/// status is in the answer); 404 for no such job.
pub(super) async fn cancel_api(
    State(state): State<Shared>,
    Path(id): Path<String>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let who = auth::who(&headers, peer.ip());
    let target = format!("job {}", id.trim());
    // The one place a cancel from the dashboard is recorded: the outcome and how many.
    let mut recorded: (Option<usize>, Outcome) = (Some(0), Outcome::Failed("refused".into()));
    let result: Result<Response, Failure> = async {
        let id = parse_job_id(&id)?;
        // Who, for the record (`stopcaster cancel` writes user@host): the basic-auth user name,
        // sanitised, and the browser's address.
        let actor = auth::actor(&headers, peer.ip());
        let by = actor.to_string();
        let rows = store::cancel_jobs(&state.pool, &[id], &store::JobFilter::default(), &by).await;
        if let Err(e) = &rows {
            recorded.1 = Outcome::Failed(format!("database: {e}"));
        }
        let outcome = rows?
            .into_iter()
            .find(|r| r.job_id == id)
            .map_or(CancelOutcome::Unknown, |r| r.outcome);
        let status = match outcome {
            CancelOutcome::Cancelled { .. } => {
                recorded = (Some(1), Outcome::Ok);
                tracing::info!(job_id = %id, user = %actor.user, client = %actor.address,
                    "cancelled from the dashboard");
                return Ok(
                    Json(json!({"job_id": id, "cancelled": true, "status": JobStatus::Cancelled.as_str()}))
                        .into_response(),
                );
            }
            CancelOutcome::Unknown => {
                recorded.1 = Outcome::Failed("no such job".into());
                return Err(Failure::not_found(format!("no job {id}")));
            }
            CancelOutcome::AlreadyCancelled { .. } => JobStatus::Cancelled.as_str().to_owned(),
            // A scheduled job always meets the cancel condition, so one left uncancelled
            // and not ended is pending with a call made or being made.
            CancelOutcome::Started { .. } => JobStatus::Pending.as_str().to_owned(),
            CancelOutcome::Ended { status } => status,
        };
        recorded.1 = Outcome::Partial(format!("not cancelled: the job is {status}"));
        Ok((
            StatusCode::CONFLICT,
            Json(json!({
                "job_id": id, "cancelled": false, "status": status,
                "error": format!("job {id} is {status}: only a scheduled job, or a pending one with no call made, can be cancelled"),
            })),
        )
            .into_response())
    }
    .await;
    if let Err(f) = &result
        && matches!(recorded.1, Outcome::Failed(ref w) if w == "refused")
    {
        recorded.1 = Outcome::Failed(f.message().to_owned());
    }
    let entry = Entry::new(Action::Cancel, &who, &target, recorded.0, recorded.1);
    if let Err(e) = store::record_action(&state.pool, &entry).await {
        tracing::warn!(error = %e, "a cancel from the dashboard is not in the audit trail");
    }
    result.unwrap_or_else(Failure::api)
}

fn cancelled_count(rows: &[store::CancelRow]) -> usize {
    rows.iter()
        .filter(|r| matches!(r.outcome, CancelOutcome::Cancelled { .. }))
        .count()
}

/// The body of `POST /api/jobs/cancel`: the list's filters, as in its URL.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CancelMatching {
    filter: SearchParams,
}

/// `POST /api/jobs/cancel` (`{"filter": {...}}`): cancels the jobs matching the list's filter
/// that no call has been made for, chosen on the server by the same statement as `stopcaster
/// cancel` with filters; answers how many were cancelled and how many had gone too far.
pub(super) async fn cancel_matching_api(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let who = auth::who(&headers, peer.ip());
    // The one place a cancel by filter from the dashboard is recorded.
    let mut recorded: (String, Option<usize>, Outcome) = (
        "jobs matching an unreadable filter".into(),
        Some(0),
        Outcome::Failed("refused".into()),
    );
    let result: Result<Response, Failure> = async {
        let request: CancelMatching = serde_json::from_slice(&body)
            .map_err(|e| Failure::bad_request(format!("expected {{\"filter\": {{...}}}}: {e}")))?;
        let filter = checked(&request.filter)?.job_filter();
        if filter.is_empty() {
            return Err(Failure::bad_request(
                "a filter is required: cancel acts on nothing by default",
            ));
        }
        recorded.0 = format!("jobs matching {}", filter.describe());
        let actor = auth::actor(&headers, peer.ip());
        let rows = store::cancel_jobs(&state.pool, &[], &filter, &actor.to_string()).await;
        if let Err(e) = &rows {
            recorded.2 = Outcome::Failed(format!("database: {e}"));
        }
        let rows = rows?;
        let cancelled = cancelled_count(&rows);
        recorded.1 = Some(cancelled);
        recorded.2 = if cancelled == rows.len() {
            Outcome::Ok
        } else {
            Outcome::Partial(format!(
                "{} already started or ended (not cancelled)",
                rows.len() - cancelled
            ))
        };
        tracing::info!(cancelled, matched = rows.len(), user = %actor.user,
            client = %actor.address, "cancelled by filter from the dashboard");
        Ok(Json(json!({
            "cancelled": cancelled,
            "not_cancelled": rows.len() - cancelled,
        }))
        .into_response())
    }
    .await;
    if let Err(f) = &result
        && matches!(recorded.2, Outcome::Failed(ref w) if w == "refused")
    {
        recorded.2 = Outcome::Failed(f.message().to_owned());
    }
    let entry = Entry::new(Action::Cancel, &who, &recorded.0, recorded.1, recorded.2);
    if let Err(e) = store::record_action(&state.pool, &entry).await {
        tracing::warn!(error = %e, "a cancel by filter from the dashboard is not in the audit trail");
    }
    result.unwrap_or_else(Failure::api)
}
