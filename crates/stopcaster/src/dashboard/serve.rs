//! The dashboard's accept loop, with the limits `axum::serve` cannot set: a connection must
//! finish each request's headers in time (hyper starts that clock whenever the connection
//! waits for a request, so it also closes an idle kept-alive connection), at most so many
//! connections are open (the next ones are closed at once), and on shutdown the open ones get
//! a bounded time to finish before they are closed, so that the process exits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The limits of the server.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Time to send a request's headers, from the moment the connection waits for one.
    pub header_timeout: Duration,
    pub max_connections: usize,
    /// Time the open connections get after shutdown is asked.
    pub drain: Duration,
}

/// The address a connection came in on, in each request's extensions (the Host check allows
/// it when the dashboard listens on every address).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LocalAddr(pub SocketAddr);

/// Serves `app` until `shutdown`, then drains. Each request carries the client's
/// [`ConnectInfo`] and the [`LocalAddr`].
pub(crate) async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = JoinSet::new();
    // One warning per stretch of refusals, not one per refused connection.
    let mut full = false;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, most likely: give the open connections a moment.
                tracing::warn!(error = %e, "accepting a dashboard connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if !full {
                tracing::warn!(
                    %peer,
                    max = limits.max_connections,
                    "dashboard connections refused: as many are open as allowed"
                );
                full = true;
            }
            drop(stream);
            continue;
        };
        full = false;
        let conn = connection(stream, peer, app.clone(), limits, shutdown.clone());
        connections.spawn(async move {
            conn.await;
            drop(permit);
        });
    }
    drop(listener);
    drain(connections, limits.drain).await;
}

/// Serves one connection; on shutdown finishes the request in progress, if any, and closes.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: axum::Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let local = stream.local_addr().ok();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        if let Some(local) = local {
            request.extensions_mut().insert(LocalAddr(local));
        }
        tower_service::Service::call(&mut app.clone(), request)
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let served = tokio::select! {
        served = conn.as_mut() => served,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = served {
        // A header timeout, a client gone, a malformed request: the client's business.
        tracing::debug!(%peer, error = %e, "dashboard connection closed");
    }
}

/// Waits up to `bound` for the connections to end, then closes what is left.
async fn drain(mut connections: JoinSet<()>, bound: Duration) {
    let ended = tokio::time::timeout(bound, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !ended {
        tracing::warn!(
            open = connections.len(),
            drain_s = bound.as_secs_f64(),
            "closing the dashboard connections still open after the drain time"
        );
        connections.shutdown().await;
    }
}
