//! The batches: the recent ones, and one with its progress and expected finish.

use axum::extract::{Path, State};
use axum::response::Response;
use time::OffsetDateTime;

use super::{Failure, Shared, api, page, render};
use crate::dashboard::views::{self, *};
use crate::dashboard::{AppState, pace};
use crate::domain::JobStatus;
use crate::store::{self, JobSearch};

async fn batches(state: &AppState) -> Result<BatchList, Failure> {
    Ok(BatchList {
        batches: store::recent_batches(&state.pool, 200).await?,
    })
}

pub(super) async fn batches_page(State(state): State<Shared>) -> Response {
    let data = batches(&state).await;
    page(&state, data, |d| {
        render(&BatchesPage {
            layout: Layout::new(&state, "Batches", "batches"),
            data: d,
        })
    })
}

pub(super) async fn batches_api(State(state): State<Shared>) -> Response {
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
    let left: i64 = [JobStatus::Pending, JobStatus::Scheduled]
        .iter()
        .filter_map(|s| counts.get(s.as_str()))
        .sum();
    let done = jobs - left;
    let pace: Vec<AccountPace> = pending
        .into_iter()
        .map(|(account, n)| {
            let qps = state.qps_of(account.as_deref());
            AccountPace {
                seconds: pace::drain_seconds(n, qps),
                account,
                pending: n,
                qps,
            }
        })
        .collect();
    let expected_seconds = pace.iter().map(|p| p.seconds).reduce(f64::max);
    let expected_finish = expected_seconds.map(|s| pace::finish_at(OffsetDateTime::now_utc(), s));
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

pub(super) async fn batch_page(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    let data = batch(&state, &id).await;
    page(&state, data, |d| {
        render(&BatchPage {
            layout: Layout::new(&state, format!("Batch {}", show(&d.batch_id)), "batches"),
            data: d,
            jobs_href: views::filter_href("batch", &d.batch_id),
        })
    })
}

pub(super) async fn batch_api(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    api(batch(&state, &id).await)
}
