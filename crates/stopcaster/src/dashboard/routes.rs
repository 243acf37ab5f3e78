//! The routes: each page and its JSON twin are built from one function returning the data
//! ([`overview`], [`job_list`], [`job`], [`batch`], [`batches`], [`dead_letter_list`],
//! [`scheduled`]); the page renders it with its template, the API serializes it. Errors are
//! shown in place: a page gets an error page with the reason, the API a JSON `{"error"}`.

use std::sync::Arc;

use askama::Template;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::search::{Search, SearchParams, encode_cursor};
use super::views::{self, *};
use super::{AppState, assets, auth};
use crate::dead_letters::Selection;
use crate::export::{self, csv_record};
use crate::store::{self, CancelOutcome, Cursor, JobRow, JobSearch};

type Shared = Arc<AppState>;

pub fn router(state: Shared) -> axum::Router {
    axum::Router::new()
        .route("/", get(overview_page))
        .route("/api/overview", get(overview_api))
        .route("/jobs", get(jobs_page))
        .route("/api/jobs", get(jobs_api))
        .route("/api/jobs/export", get(jobs_export))
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
pub struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }

    fn bad_request(why: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, why)
    }

    fn page(self, state: &AppState) -> Response {
        let page = ErrorPage {
            layout: Layout::new(state, format!("Error {}", self.status.as_u16()), ""),
            status: self.status.as_u16(),
            message: self.message,
        };
        (self.status, render(&page)).into_response()
    }

    fn api(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        // sqlx's messages name the failure, never the connection URL.
        Failure::new(StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}"))
    }
}

fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering the page: {e}\n"),
        )
            .into_response(),
    }
}

fn page<T>(
    state: &AppState,
    data: Result<T, Failure>,
    show: impl FnOnce(&T) -> Response,
) -> Response {
    match data {
        Ok(d) => show(&d),
        Err(f) => f.page(state),
    }
}

fn api<T: serde::Serialize>(data: Result<T, Failure>) -> Response {
    match data {
        Ok(d) => Json(d).into_response(),
        Err(f) => f.api(),
    }
}

async fn not_found(State(state): State<Shared>) -> Response {
    Failure::not_found("no such page").page(&state)
}

// ---- the overview -----------------------------------------------------------------------

/// The chart's window: long enough for a batch of a few hundred studios at 10 calls a second.
const CALL_WINDOW_S: u32 = 120;

async fn overview(state: &AppState) -> Result<Overview, Failure> {
    let pool = &state.pool;
    let (counts, calls, queues, paused_accounts, scheduled, batches) = tokio::join!(
        store::job_counts(pool, None),
        store::calls_per_second(pool, CALL_WINDOW_S),
        state.broker.depths(),
        store::account_pauses(pool),
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
        calls: account_calls(&calls, CALL_WINDOW_S, |a| state.qps_of(a)),
        queues_error: queues.as_ref().err().cloned(),
        queues: queues.unwrap_or_default(),
        paused_accounts: paused_accounts?,
        scheduled: ScheduledSummary { total, next },
        batches: batches?,
    })
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

// ---- jobs -------------------------------------------------------------------------------

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

async fn jobs_page(State(state): State<Shared>, Query(params): Query<SearchParams>) -> Response {
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
    page(&state, data, |d| {
        render(&JobsPage {
            layout: Layout::new(&state, "Jobs", "jobs"),
            data: d,
            form: &params,
            statuses: status_options(params.status.as_deref()),
            query: query.clone(),
            first_page,
        })
    })
}

async fn jobs_api(State(state): State<Shared>, Query(params): Query<SearchParams>) -> Response {
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
async fn jobs_export(State(state): State<Shared>, Query(params): Query<SearchParams>) -> Response {
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
    let stream = futures_util::stream::unfold(stream_state, |mut st| async move {
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
    });
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

fn parse_job_id(text: &str) -> Result<Uuid, Failure> {
    Uuid::parse_str(text).map_err(|_| Failure::not_found(format!("{text:?} is not a job id")))
}

async fn job(state: &AppState, id: &str) -> Result<JobView, Failure> {
    let id = parse_job_id(id)?;
    let Some((job, attempts, replays)) = store::job_detail(&state.pool, id).await? else {
        return Err(Failure::not_found(format!("no job {id}")));
    };
    let cancellable =
        job.row.status == "scheduled" || (job.row.status == "pending" && job.row.attempts == 0);
    Ok(JobView {
        job,
        attempts,
        replays,
        cancellable,
    })
}

async fn job_page(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    let data = job(&state, &id).await;
    page(&state, data, |d| {
        render(&JobPage {
            layout: Layout::new(&state, format!("Job {}", d.job.row.job_id), "jobs"),
            data: d,
        })
    })
}

async fn job_api(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    api(job(&state, &id).await)
}

/// `POST /api/jobs/ID/cancel`: 200 when cancelled; 409 when the job has gone too far (its
/// status is in the answer); 404 for no such job.
async fn cancel_api(
    State(state): State<Shared>,
    Path(id): Path<String>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let result: Result<Response, Failure> = async {
        let id = parse_job_id(&id)?;
        // Who, for the record (`stopcaster cancel` writes user@host): the basic-auth user name
        // and the browser's address.
        let user: String = auth::basic_user(&headers)
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "anonymous".to_owned())
            .chars()
            .take(64)
            .collect();
        let by = format!("{user}@dashboard ({})", peer.ip());
        let outcome = store::cancel_jobs(&state.pool, &[id], None, &by)
            .await?
            .into_iter()
            .find(|r| r.job_id == id)
            .map_or(CancelOutcome::Unknown, |r| r.outcome);
        let status = match outcome {
            CancelOutcome::Cancelled { .. } => {
                tracing::info!(job_id = %id, "cancelled from the dashboard");
                return Ok(
                    Json(json!({"job_id": id, "cancelled": true, "status": "cancelled"}))
                        .into_response(),
                );
            }
            CancelOutcome::Unknown => return Err(Failure::not_found(format!("no job {id}"))),
            CancelOutcome::AlreadyCancelled { .. } => "cancelled".to_owned(),
            // A scheduled job always meets the cancel condition, so one left uncancelled
            // and not ended is pending with a call made or being made.
            CancelOutcome::Started { .. } => "pending".to_owned(),
            CancelOutcome::Ended { status } => status,
        };
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
    result.unwrap_or_else(Failure::api)
}

// ---- batches ----------------------------------------------------------------------------

async fn batches(state: &AppState) -> Result<BatchList, Failure> {
    Ok(BatchList {
        batches: store::recent_batches(&state.pool, 200).await?,
    })
}

async fn batches_page(State(state): State<Shared>) -> Response {
    let data = batches(&state).await;
    page(&state, data, |d| {
        render(&BatchesPage {
            layout: Layout::new(&state, "Batches", "batches"),
            data: d,
        })
    })
}

async fn batches_api(State(state): State<Shared>) -> Response {
    api(batches(&state).await)
}

async fn batch(state: &AppState, id: &str) -> Result<BatchView, Failure> {
    let search = JobSearch {
        batch_id: Some(id.to_owned()),
        ..Default::default()
    };
    let of_batch = store::JobFilter {
        batch_id: Some(id.to_owned()),
        ..Default::default()
    };
    let (summary, counts, pending, newest) = tokio::join!(
        store::call_totals(&state.pool, &of_batch),
        store::job_counts(&state.pool, Some(id)),
        store::pending_by_account(&state.pool, id),
        store::search_jobs(&state.pool, &search, None, 20),
    );
    let (summary, counts, pending, newest) = (summary?, counts?, pending?, newest?);
    let jobs: i64 = counts.values().sum();
    if jobs == 0 {
        return Err(Failure::not_found(format!("no job in batch {id:?}")));
    }
    let left =
        counts.get("pending").copied().unwrap_or(0) + counts.get("scheduled").copied().unwrap_or(0);
    let done = jobs - left;
    let pace: Vec<AccountPace> = pending
        .into_iter()
        .map(|(account, n)| {
            let qps = state.qps_of(account.as_deref());
            AccountPace {
                seconds: n as f64 / f64::from(qps),
                account,
                pending: n,
                qps,
            }
        })
        .collect();
    let expected_seconds = pace.iter().map(|p| p.seconds).reduce(f64::max);
    let expected_finish = expected_seconds.map(|s| {
        OffsetDateTime::now_utc() + time::Duration::milliseconds((s * 1000.0).ceil() as i64)
    });
    Ok(BatchView {
        batch_id: id.to_owned(),
        jobs,
        by_status: status_counts(&counts),
        done,
        percent_done: views::percent(done, jobs),
        calls: summary.calls,
        first_call: summary.first_call,
        last_call: summary.last_call,
        retried_attempts: summary.retried_attempts,
        throttled_attempts: summary.throttled_attempts,
        failures_by_error_code: summary.failures_by_code,
        pace,
        expected_finish,
        expected_seconds,
        newest_jobs: newest,
    })
}

async fn batch_page(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    let data = batch(&state, &id).await;
    page(&state, data, |d| {
        render(&BatchPage {
            layout: Layout::new(&state, format!("Batch {}", d.batch_id), "batches"),
            data: d,
            jobs_href: views::filter_href("batch", &d.batch_id),
        })
    })
}

async fn batch_api(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    api(batch(&state, &id).await)
}

// ---- dead letters -----------------------------------------------------------------------

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

async fn dead_letters_page(
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

async fn dead_letters_api(
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
pub struct ReplayRequest {
    #[serde(default)]
    job_ids: Option<Vec<Uuid>>,
    #[serde(default)]
    all: bool,
}

async fn replay_api(State(state): State<Shared>, body: Bytes) -> Response {
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
    match state
        .broker
        .replay(&state.pool, &selection, state.max_attempts)
        .await
    {
        Ok(outcome) => {
            tracing::info!(
                replayed = outcome.replayed.len(),
                missing = outcome.missing.len(),
                "replayed from the dashboard"
            );
            Json(outcome).into_response()
        }
        Err(e) => Failure::new(StatusCode::BAD_GATEWAY, e).api(),
    }
}

// ---- scheduled --------------------------------------------------------------------------

async fn scheduled(state: &AppState) -> Result<ScheduledList, Failure> {
    let (total, jobs) = store::scheduled_jobs(&state.pool, 500).await?;
    Ok(ScheduledList { total, jobs })
}

async fn scheduled_page(State(state): State<Shared>) -> Response {
    let data = scheduled(&state).await;
    page(&state, data, |d| {
        render(&ScheduledPage {
            layout: Layout::new(&state, "Scheduled", "scheduled"),
            data: d,
        })
    })
}

async fn scheduled_api(State(state): State<Shared>) -> Response {
    api(scheduled(&state).await)
}
