//! The worker's own HTTP endpoints: Prometheus `/metrics`, `/healthz` (alive) and `/readyz`
//! (broker and database connected; it also names the API endpoints in use, and every paused
//! account: why, and for an operator's pause who, why and until when).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use super::in_flight::InFlight;
use super::metrics::Metrics;
use super::pause::{Held, Pauses};
use crate::domain::display;

/// What the endpoints read: handles onto the worker's own counters, nothing of its jobs.
#[derive(Clone)]
pub(super) struct Health {
    pub metrics: Metrics,
    pub in_flight: InFlight,
    pub pauses: Pauses,
    pub clients: stopcaster_live::EndpointClients,
}

/// Serves until `shutdown`.
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    health: Health,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(health);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        tracing::warn!(error = %e, "metrics server stopped");
    }
}

async fn metrics(
    State(health): State<Health>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        {
            let mut text = health.metrics.render(
                health.in_flight.len(),
                &health.pauses.paused(),
                &health.pauses.held(),
            );
            super::metrics::render_clock_skews(&mut text, &health.clients.clock_skews());
            text
        },
    )
}

/// An operator's pause as `/readyz` names it: who, why (escaped, bounded), until when.
fn held_line(account: &str, held: &Held) -> String {
    let until = held.until.map_or_else(
        || "until resumed".to_owned(),
        |u| format!("until {}", crate::domain::time::rfc3339_micros(u)),
    );
    format!(
        "account {account} paused by operator {}: {} ({until})",
        display::bounded(&held.by, display::CELL_CHARS),
        display::bounded(&held.reason, display::CELL_CHARS)
    )
}

/// Ready when the broker and the database are connected and no account is paused; the body
/// names the broker node in use, and what is not ready (a paused account with the code that
/// paused it).
async fn ready(State(health): State<Health>) -> (StatusCode, String) {
    let mut problems = Vec::new();
    if !health.metrics.broker_up() {
        problems.push("broker unavailable".to_owned());
    }
    if !health.metrics.database_up() {
        problems.push("database unavailable".to_owned());
    }
    for (account, code) in health.pauses.paused() {
        problems.push(format!("account {account} paused: {code}"));
    }
    for (account, held) in health.pauses.held() {
        problems.push(held_line(&account, &held));
    }
    let node = match health.metrics.broker_node() {
        Some(node) if health.metrics.broker_up() => format!("broker node: {node}\n"),
        _ => String::new(),
    };
    let endpoints = format!("endpoints: {}\n", health.clients.in_use().join(", "));
    if problems.is_empty() {
        (StatusCode::OK, format!("ready\n{node}{endpoints}"))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n{node}{endpoints}", problems.join("; ")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operators_pause_is_named_with_who_why_and_until_escaped() {
        let held = Held {
            reason: "key \u{1b}[2Jleak".into(),
            by: "alice via cli (h)".into(),
            until: Some(time::macros::datetime!(2026-12-03 21:00 UTC)),
            until_at: None,
        };
        assert_eq!(
            held_line("prod", &held),
            "account prod paused by operator alice via cli (h): key \\x1b[2Jleak (until 2026-12-03T21:00:00.000000Z)"
        );
        let forever = Held {
            until: None,
            ..held
        };
        assert!(held_line("prod", &forever).ends_with("(until resumed)"));
    }
}
