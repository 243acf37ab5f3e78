//! `POST /api/jobs`: schedulers enqueue over HTTP. A bearer token of `STOPCASTER_API_TOKENS`
//! (read afresh at each request: a token removed from the file is refused from the next
//! request on), the body checked by the worker's own parser ([`crate::dashboard::job_requests`]),
//! the jobs published with confirms; the answer is the batch id and each job's status. Wrong
//! tokens count against their address in the password's limiter (429 with `Retry-After`).

use std::net::IpAddr;
use std::sync::PoisonError;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Shared;
use crate::dashboard::api_tokens::{ApiTokens, bearer};
use crate::dashboard::job_requests::{FieldError, Planned, PlannedJob, plan};
use crate::dashboard::limiter::retry_after_secs;
use crate::domain::audit::{Action, Entry, Outcome, Who};
use crate::store;

/// The largest body accepted (10,000 jobs of about 100 bytes each).
pub(crate) const BODY_LIMIT: usize = 1024 * 1024;

fn unauthorized(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            axum::http::header::WWW_AUTHENTICATE,
            r#"Bearer realm="stopcaster""#,
        )],
        Json(json!({ "error": message })),
    )
        .into_response()
}

/// The name of the request's token, or the answer that refuses it. The file is read now: an
/// unreadable or malformed file refuses every token (503), and says which line, never what
/// it holds.
async fn authorize(
    state: &Shared,
    headers: &HeaderMap,
    client: IpAddr,
) -> Result<String, Response> {
    let Some(path) = &state.api_tokens else {
        return Err(unauthorized(
            "no API tokens are configured (STOPCASTER_API_TOKENS)",
        ));
    };
    let unavailable = |why: String| {
        tracing::warn!(file = %path.display(), "API tokens: {why}");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": format!("the API tokens file cannot be used: {why}") })),
        )
            .into_response()
    };
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| unavailable(e.kind().to_string()))?;
    let tokens = ApiTokens::parse(&text).map_err(|e| unavailable(e.to_string()))?;
    let Some(presented) = bearer(headers) else {
        return Err(unauthorized(
            "an API token is required: Authorization: Bearer TOKEN",
        ));
    };
    match tokens.name_of(presented) {
        Some(name) => Ok(name.to_owned()),
        None => {
            wrong_token(state, client);
            Err(unauthorized("unknown or revoked API token"))
        }
    }
}

/// 429 while `client` is locked out by the limiter the password uses: wrong tokens and wrong
/// passwords count together, so neither gives a guesser more tries.
fn locked_out(state: &Shared, client: IpAddr) -> Option<Response> {
    let limiter = state.limiter.lock().unwrap_or_else(PoisonError::into_inner);
    let wait = limiter.check(client, Instant::now()).err()?;
    Some(
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after_secs(wait).to_string())],
            Json(json!({
                "error": "too many wrong API tokens or passwords from this address: try again after Retry-After seconds"
            })),
        )
            .into_response(),
    )
}

/// Counts a wrong token against its address (a request without one does not count, as for
/// the password); the first of a burst is logged, never the token.
fn wrong_token(state: &Shared, client: IpAddr) {
    let mut limiter = state.limiter.lock().unwrap_or_else(PoisonError::into_inner);
    let failure = limiter.fail(client, Instant::now());
    drop(limiter);
    if failure.first_of_burst {
        tracing::warn!(%client, "wrong API token on POST /api/jobs (further failures from this \
            address are not logged until 15 minutes without any; after 5, it is locked out for \
            a time that doubles with each failure)");
    }
}

pub(crate) async fn enqueue_api(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = locked_out(&state, peer.ip()) {
        return refusal;
    }
    let token = match authorize(&state, &headers, peer.ip()).await {
        Ok(name) => name,
        Err(refusal) => {
            tracing::info!(client = %peer.ip(), "POST /api/jobs refused: no valid token");
            return refusal;
        }
    };
    let planned = match plan(&body, || uuid::Uuid::new_v4().to_string()) {
        Ok(p) => p,
        Err(errors) => return invalid_body(&errors),
    };
    publish(&state, &token, peer.ip(), &planned).await
}

/// Publishes the jobs with confirms, records the enqueue in the audit trail by the token's
/// name, and answers each job's status: 201 when the broker confirmed them all, else 503.
async fn publish(state: &Shared, token: &str, client: IpAddr, planned: &Planned) -> Response {
    let messages: Vec<(String, &[u8])> = planned
        .jobs
        .iter()
        .filter(|j| !j.duplicate)
        .map(|j| (j.job_id.clone(), j.body.as_slice()))
        .collect();
    let who = Who::api(token, client);
    let target = format!("batch {}", planned.batch_id);
    let confirmed = match state.broker.publish_jobs(&messages).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(token = %token, error = %e, "POST /api/jobs: publishing failed");
            let failed = Outcome::Failed(e.to_string());
            let entry = Entry::new(Action::Enqueue, &who, &target, Some(0), failed);
            record(state, entry).await;
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": e, "batch_id": planned.batch_id })),
            )
                .into_response();
        }
    };
    let published = Published::of(&planned.jobs, confirmed);
    tracing::info!(token = %token, client = %client, batch_id = %planned.batch_id,
        jobs = published.jobs.len(), confirmed = published.all, "jobs enqueued over HTTP");
    let outcome = published.outcome(messages.len());
    let entry = Entry::new(
        Action::Enqueue,
        &who,
        &target,
        Some(published.count),
        outcome,
    );
    record(state, entry).await;
    let status = if published.all {
        StatusCode::CREATED
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "batch_id": planned.batch_id, "jobs": published.jobs })),
    )
        .into_response()
}

/// 400 naming the first refused field, and listing them all.
fn invalid_body(errors: &[FieldError]) -> Response {
    let first = &errors[0];
    (
        StatusCode::BAD_REQUEST,
        Json(json!({
            "error": format!("{}: {}", first.field, first.error),
            "field": first.field,
            "errors": errors,
        })),
    )
        .into_response()
}

/// Each job's status in the answer, from the broker's confirms of the jobs sent.
struct Published {
    jobs: Vec<serde_json::Value>,
    /// Jobs the broker confirmed.
    count: usize,
    /// Every job sent was confirmed.
    all: bool,
}

impl Published {
    /// `confirmed` holds one flag per job sent, that is per job not a duplicate, in order.
    fn of(planned: &[PlannedJob], confirmed: Vec<bool>) -> Self {
        let mut confirmed = confirmed.into_iter();
        let mut all = true;
        let jobs: Vec<serde_json::Value> = planned
            .iter()
            .map(|j| {
                let status = if j.duplicate {
                    "duplicate"
                } else if confirmed.next().unwrap_or(false) {
                    "published"
                } else {
                    all = false;
                    "not_confirmed"
                };
                json!({ "job_id": j.job_id, "status": status })
            })
            .collect();
        let count = jobs.iter().filter(|j| j["status"] == "published").count();
        Self { jobs, count, all }
    }

    /// The audit trail's outcome, `sent` jobs having been published.
    fn outcome(&self, sent: usize) -> Outcome {
        if self.all {
            Outcome::Ok
        } else {
            Outcome::Partial(format!("{} not confirmed by the broker", sent - self.count))
        }
    }
}

/// The one place an enqueue over HTTP is recorded in the audit trail (by the token's name).
async fn record(state: &Shared, entry: Entry) {
    if let Err(e) = store::record_action(&state.pool, &entry).await {
        tracing::warn!(error = %e, "an enqueue over HTTP is not in the audit trail");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, duplicate: bool) -> PlannedJob {
        PlannedJob {
            job_id: id.to_owned(),
            body: Vec::new(),
            duplicate,
        }
    }

    #[test]
    fn a_duplicate_takes_no_confirm_and_a_missing_confirm_is_not_confirmed() {
        let jobs = [
            job("a", false),
            job("a", true),
            job("b", false),
            job("c", false),
        ];
        let published = Published::of(&jobs, vec![true, false]);
        let statuses: Vec<&str> = published
            .jobs
            .iter()
            .map(|j| j["status"].as_str().unwrap())
            .collect();
        assert_eq!(
            statuses,
            ["published", "duplicate", "not_confirmed", "not_confirmed"]
        );
        assert_eq!((published.count, published.all), (1, false));
        assert_eq!(
            published.outcome(3),
            Outcome::Partial("2 not confirmed by the broker".into())
        );
        let published = Published::of(&jobs[..2], vec![true]);
        assert!(published.all);
        assert_eq!(published.outcome(1), Outcome::Ok);
    }
}
