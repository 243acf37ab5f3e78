//! The worker's own HTTP endpoints: Prometheus `/metrics`, `/healthz` (alive) and `/readyz`
//! (broker and database connected).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::job::JobContext;

/// Serves until `shutdown`.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    ctx: Arc<JobContext>,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(ctx);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        tracing::warn!(error = %e, "metrics server stopped");
    }
}

async fn metrics(
    State(ctx): State<Arc<JobContext>>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        ctx.metrics.render(ctx.in_flight.len()),
    )
}

async fn ready(State(ctx): State<Arc<JobContext>>) -> (StatusCode, &'static str) {
    if ctx.metrics.broker_up() && ctx.metrics.database_up() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
