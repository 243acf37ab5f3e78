//! The stand-in's `/_fake/` admin API, documented on [`super`]: read-only views of the call log,
//! the studios and the counters, for tests and demos, and the fault controls.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::Fault;
use super::server::Shared;

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_fake/calls", get(calls))
        .route("/_fake/casters", get(casters))
        .route("/_fake/stats", get(stats))
        .route("/_fake/faults", post(faults))
}

#[derive(Deserialize)]
struct CallsFilter {
    caster_id: Option<String>,
    access_key_id: Option<String>,
}

async fn calls(
    AxumState(shared): AxumState<Arc<Shared>>,
    Query(filter): Query<CallsFilter>,
) -> Response {
    axum::Json(shared.calls(filter.caster_id.as_deref(), filter.access_key_id.as_deref()))
        .into_response()
}

async fn casters(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    let casters = shared.lock().studios.snapshot();
    axum::Json(casters).into_response()
}

async fn stats(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    axum::Json(shared.stats()).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsRequest {
    fail_rate: Option<f64>,
    latency_ms: Option<u64>,
    script: Option<Vec<String>>,
    /// Drop faults still pending before adding `script`.
    #[serde(default)]
    clear: bool,
}

async fn faults(AxumState(shared): AxumState<Arc<Shared>>, body: Bytes) -> Response {
    let request: FaultsRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(format!("invalid faults request: {e}")),
    };
    let script = match request
        .script
        .unwrap_or_default()
        .iter()
        .map(|s| Fault::parse(s).ok_or_else(|| format!("unknown fault {s:?}")))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(s) => s,
        Err(e) => return bad_request(e),
    };
    if let Some(rate) = request.fail_rate {
        if !(0.0..=1.0).contains(&rate) {
            return bad_request(format!("fail_rate {rate} is not within 0..=1"));
        }
        shared.set_fail_rate(rate);
    }
    if let Some(ms) = request.latency_ms {
        shared.set_latency(Duration::from_millis(ms));
    }
    let pending = {
        let mut st = shared.lock();
        if request.clear {
            st.faults.clear();
        }
        st.faults.extend(script);
        st.faults.len()
    };
    axum::Json(serde_json::json!({
        "fail_rate": shared.fail_rate(),
        "latency_ms": shared.latency().as_millis() as u64,
        "pending_faults": pending,
    }))
    .into_response()
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}
