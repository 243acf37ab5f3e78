//! `stopcaster dashboard`: a web page for operators and auditors over Postgres and RabbitMQ.
//!
//! Server-rendered HTML from askama templates (escaped by default: whatever a message carried
//! is shown as text), a little JavaScript for the live refresh and the confirmed actions, and
//! an SVG chart drawn on the server; every asset is compiled into the binary ([`assets`]) and a
//! strict Content-Security-Policy forbids anything else. The same data is served as JSON under
//! `/api/` ([`routes`]). Safe by default ([`auth`]): without a password it is read-only and
//! listens on loopback only; with one, every request needs it and actions need the dashboard's
//! own `Origin`.
//!
//! Depends on [`crate::store`] for every query, [`crate::broker`] for queue depths,
//! [`crate::dead_letters`] for listing and replaying dead letters and [`crate::export`] for the
//! CSV export; never on the operators' commands (`ops`).

mod actor;
mod api_tokens;
mod assets;
mod auth;
mod chart;
mod hosts;
mod job_requests;
mod limiter;
mod pace;
mod queues;
mod routes;
mod search;
mod serve;
mod views;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::broker::Names;
use crate::config::{AttemptsArgs, BrokerArgs, DatabaseArgs};
use crate::domain::time::rfc3339_micros;

/// The options of `stopcaster dashboard`.
#[derive(clap::Args, Clone, Debug)]
pub struct DashboardArgs {
    /// Where to serve. Beyond loopback only with a password.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// The password (HTTP basic auth, any user name); enables replay and cancel. Prefer the
    /// variable: flags show in `ps`.
    #[arg(long, env = "STOPCASTER_DASHBOARD_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// With a password: the host names (or addresses) the dashboard answers to,
    /// comma-separated; other `Host` headers get 421. Default: the --listen address, the
    /// address connected to, localhost, 127.0.0.1 and [::1].
    #[arg(long, env = "STOPCASTER_DASHBOARD_HOSTS", value_name = "NAMES")]
    pub hosts: Option<String>,
    /// Seconds a connection has to send a request's headers (and the longest a kept-alive
    /// connection may wait idle); slower connections are closed.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout_s: u64,
    /// Connections open at once; the next ones are closed at once.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Seconds the open connections get to finish after SIGINT/SIGTERM before they are closed.
    #[arg(long, default_value_t = 10)]
    pub drain_s: u64,
    /// Each account's quota in calls per second, drawn on the chart (the workers' setting).
    #[arg(long, env = "STOPCASTER_QPS", default_value_t = crate::config::DEFAULT_QPS)]
    pub qps: u32,
    /// The workers' accounts file, for the quotas of named accounts (only `qps` is read).
    #[arg(long, env = "STOPCASTER_ACCOUNTS_FILE")]
    pub accounts_file: Option<PathBuf>,
    /// A file of `name:token` (or `name:sha256:HEX`) lines: the bearer tokens that may
    /// enqueue with `POST /api/jobs`. Read at each request: removing a line revokes its token.
    #[arg(long, env = "STOPCASTER_API_TOKENS", value_name = "PATH")]
    pub api_tokens: Option<PathBuf>,
    /// Seconds between live refreshes of a page (0: no live refresh).
    #[arg(long, default_value_t = 3)]
    pub refresh_s: u32,
    /// A replayed job gets this many calls on top of those it already made.
    #[command(flatten)]
    pub attempts: AttemptsArgs,
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error(
        "refusing to listen on {0} without a password: set STOPCASTER_DASHBOARD_PASSWORD, or listen on a loopback address such as 127.0.0.1:8090"
    )]
    PublicWithoutPassword(SocketAddr),
    #[error(
        "refusing to listen on {0} with a password shorter than {min} characters: set a longer STOPCASTER_DASHBOARD_PASSWORD (a passphrase of a few words), or listen on a loopback address such as 127.0.0.1:8090",
        min = auth::MIN_PASSWORD_CHARS
    )]
    ShortPassword(SocketAddr),
    /// A bad entry of STOPCASTER_DASHBOARD_HOSTS.
    #[error("{0}")]
    Hosts(String),
    #[error("accounts file {0}: {1}")]
    AccountsFile(String, String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("listening on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
}

/// What every handler shares.
pub(crate) struct AppState {
    pub pool: sqlx::PgPool,
    pub broker: queues::Broker,
    /// `None`: read-only.
    pub password: Option<auth::Password>,
    /// The `Host` names answered to, with a password.
    pub hosts: hosts::AllowedHosts,
    /// Wrong passwords per client address.
    pub limiter: std::sync::Mutex<limiter::Limiter>,
    pub default_qps: u32,
    pub account_qps: HashMap<String, u32>,
    /// The accounts file's names (a pause must name one, or `default`); `None` without one.
    pub account_names: Option<Vec<String>>,
    pub max_attempts: u32,
    pub refresh_s: u32,
    pub queue_prefix: String,
    /// `STOPCASTER_API_TOKENS`: `None`, no HTTP enqueue.
    pub api_tokens: Option<PathBuf>,
}

impl AppState {
    pub(crate) fn read_only(&self) -> bool {
        self.password.is_none()
    }

    /// The quota of a job's account (`None`: the default account).
    pub(crate) fn qps_of(&self, account: Option<&str>) -> u32 {
        account
            .and_then(|a| self.account_qps.get(a).copied())
            .unwrap_or(self.default_qps)
            .max(1)
    }
}

/// Checks the options before anything is opened: a dashboard reachable from other machines
/// needs a password, and one long enough to withstand guessing.
pub(crate) fn check_listen(
    listen: SocketAddr,
    password: Option<&str>,
) -> Result<(), DashboardError> {
    if listen.ip().is_loopback() {
        return Ok(());
    }
    match password {
        None => Err(DashboardError::PublicWithoutPassword(listen)),
        Some(p) if p.chars().count() < auth::MIN_PASSWORD_CHARS => {
            Err(DashboardError::ShortPassword(listen))
        }
        Some(_) => Ok(()),
    }
}

/// The password, if one is set (an empty one counts as none).
fn password(args: &DashboardArgs) -> Option<String> {
    args.password.clone().filter(|p| !p.is_empty())
}

/// Named accounts' quotas from the accounts file (the file's other fields are the worker's).
fn account_quotas(args: &DashboardArgs) -> Result<HashMap<String, u32>, DashboardError> {
    let Some(path) = &args.accounts_file else {
        return Ok(HashMap::new());
    };
    let err = |m: String| DashboardError::AccountsFile(path.display().to_string(), m);
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    let mut quotas = HashMap::new();
    if let Some(accounts) = value.get("accounts").and_then(|a| a.as_object()) {
        for (name, spec) in accounts {
            let qps = spec
                .get("qps")
                .and_then(|q| q.as_u64())
                .and_then(|q| u32::try_from(q).ok())
                .unwrap_or(args.qps);
            quotas.insert(name.clone(), qps);
        }
    }
    Ok(quotas)
}

/// Runs the dashboard until `shutdown` is cancelled. Prints the address it serves on.
pub async fn run(args: DashboardArgs, shutdown: CancellationToken) -> Result<(), DashboardError> {
    let password = password(&args);
    check_listen(args.listen, password.as_deref())?;
    let hosts = hosts::AllowedHosts::new(args.listen, args.hosts.as_deref())
        .map_err(|e| DashboardError::Hosts(e.to_string()))?;
    let account_qps = account_quotas(&args)?;
    // The ledger of job counts and the indexes come with the migrations, like the worker's.
    let pool = crate::store::migrate(&args.database.database_url).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| DashboardError::Listen(args.listen, e))?;
    let local = listener
        .local_addr()
        .map_err(|e| DashboardError::Listen(args.listen, e))?;
    let state = Arc::new(AppState {
        pool: pool.clone(),
        broker: queues::Broker::new(
            args.broker.amqp_url.clone(),
            Names::new(&args.broker.queue_prefix),
        ),
        password: password.as_deref().map(auth::Password::new),
        hosts,
        limiter: std::sync::Mutex::new(limiter::Limiter::new(limiter::Policy::default())),
        default_qps: args.qps,
        account_names: args
            .accounts_file
            .is_some()
            .then(|| account_qps.keys().cloned().collect()),
        account_qps,
        max_attempts: args.attempts.max_attempts.max(1),
        refresh_s: args.refresh_s,
        queue_prefix: args.broker.queue_prefix.clone(),
        api_tokens: args.api_tokens.clone(),
    });
    let mode = if state.read_only() {
        "read-only (no STOPCASTER_DASHBOARD_PASSWORD)"
    } else {
        "password required"
    };
    eprintln!("dashboard listening on http://{local} ({mode})");
    tracing::info!(%local, mode, "dashboard started");
    tokio::spawn(fold_counts(pool.clone(), shutdown.clone()));
    let limits = serve::Limits {
        header_timeout: Duration::from_secs(args.header_timeout_s),
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        drain: Duration::from_secs(args.drain_s),
    };
    serve::serve(listener, routes::router(state), limits, shutdown).await;
    pool.close().await;
    Ok(())
}

/// Keeps the ledger of job counts short: folds it whenever it has grown by a few thousand rows.
async fn fold_counts(pool: sqlx::PgPool, shutdown: CancellationToken) {
    const EVERY: Duration = Duration::from_secs(10);
    const THRESHOLD: i64 = 2_000;
    while shutdown
        .run_until_cancelled(tokio::time::sleep(EVERY))
        .await
        .is_some()
    {
        match crate::store::job_counts_rows(&pool).await {
            Ok(n) if n < THRESHOLD => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "reading the size of the job counts");
                continue;
            }
        }
        match crate::store::fold_job_counts(&pool).await {
            Ok(rows) => tracing::debug!(rows, "folded the job counts"),
            Err(e) => tracing::warn!(error = %e, "folding the job counts"),
        }
    }
}

/// A timestamp for pages and JSON: RFC 3339 in UTC, microseconds.
pub(crate) fn ts(t: time::OffsetDateTime) -> String {
    rfc3339_micros(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_loopback_a_password_of_twelve_characters() {
        let public: SocketAddr = "0.0.0.0:8090".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8090".parse().unwrap();
        assert!(matches!(
            check_listen(public, None),
            Err(DashboardError::PublicWithoutPassword(_))
        ));
        assert!(matches!(
            check_listen(public, Some("elevenchars")),
            Err(DashboardError::ShortPassword(_))
        ));
        // Characters, not bytes: eleven accented letters are still too short.
        assert!(check_listen(public, Some(&"é".repeat(11))).is_err());
        assert!(check_listen(public, Some("twelve chars")).is_ok());
        assert!(check_listen(local, None).is_ok());
        assert!(check_listen(local, Some("x")).is_ok());
        let e = check_listen(public, Some("short")).unwrap_err().to_string();
        assert!(
            e.contains("shorter than 12 characters") && !e.contains("short\""),
            "{e}"
        );
    }
}
