//! What a worker sets up before its first delivery: its accounts and their credentials, the
//! database (waited for, since a worker may start before it), the pacer, the job context and
//! the health endpoint. Each a step of its own, so `run` reads as the order they come in.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use backon::Retryable as _;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::health;
use super::job::JobContext;
use super::pacer::{LocalPacer, Pacer, Rate, SharedPacer, room_rate};
use super::quota::QuotaWatch;
use crate::config::{ApiArgs, ConfigError, DatabaseArgs, PacerKind, WorkerArgs};
use crate::redact::url_without_password;
use crate::store;
use stopcaster_live::EndpointClients;
use stopcaster_live::accounts::{self, Accounts, AccountsError};
use stopcaster_live::client::{ClientError, Warming};
use stopcaster_live::credentials::http::ClientBuildError;
use stopcaster_live::credentials::{HttpClients, ProviderContext, RefreshPolicy};

/// Why a worker could not start. Once started, a worker only ends by shutdown: broker and
/// database outages are waited out.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    // A source, not only text: the binary's one-line error finds the server's words in it and
    // names the URL.
    #[error("preparing the database: {0}")]
    Database(#[source] sqlx::Error),
    #[error("connecting the pacer: {0}")]
    Pacer(#[source] sqlx::Error),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Accounts(#[from] AccountsError),
    #[error(transparent)]
    Trust(#[from] ClientBuildError),
    #[error("binding the metrics address {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Obtains the credentials of the default account (if the chain finds any) and of the
/// accounts file's, starts their background refresh, and learns each account's pacer key.
pub(super) async fn accounts(
    api: &ApiArgs,
    args: &WorkerArgs,
    shutdown: &CancellationToken,
) -> Result<Accounts, StartError> {
    let named = args.named_accounts()?;
    let default = match api.default_account(args.qps) {
        Ok(plan) => Some(plan),
        // Half-configured or unreadable settings are an error even with named accounts.
        Err(e) => return Err(e.into()),
    };
    let ctx = ProviderContext {
        clients: HttpClients::new(api.ca_file.as_deref())?,
        policy: RefreshPolicy::default(),
        shutdown: shutdown.clone(),
    };
    Ok(accounts::start(default, named, &ctx, &api.sts_endpoint()).await?)
}

/// The accounts by name, credentials source, AccessKeyId and the account they are paced
/// under: `default (env, LTAI..., account 1234...), prod (...)`.
pub(super) fn describe_accounts(accounts: &Accounts) -> String {
    let mut named: Vec<_> = accounts.named.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    accounts
        .default
        .iter()
        .map(|a| ("default", a))
        .chain(named.into_iter().map(|(name, a)| (name.as_str(), a)))
        .map(|(name, a)| {
            let key = a
                .credentials
                .current()
                .map(|c| c.access_key_id().to_owned())
                .unwrap_or_else(|_| "expired".to_owned());
            format!(
                "{name} ({}, {key}, account {})",
                a.credentials.source_label(),
                a.pacer_key
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Migrates and opens the database, waiting while it is unavailable. `None`: shutdown came
/// first (nothing is held yet, so the wait simply ends).
pub(super) async fn database(
    database: &DatabaseArgs,
    shutdown: &CancellationToken,
) -> Result<Option<PgPool>, StartError> {
    let until_shutdown = {
        let shutdown = shutdown.clone();
        move |wait: Duration| {
            shutdown
                .clone()
                .run_until_cancelled_owned(tokio::time::sleep(wait))
        }
    };
    let pool = (|| store::migrate(&database.database_url))
        .retry(store::unavailable_backoff())
        .sleep(until_shutdown)
        .when(|e| store::is_transient(e) && !shutdown.is_cancelled())
        .notify(|e, wait| {
            tracing::warn!(
                database = %url_without_password(&database.database_url),
                error = %e,
                retry_in = ?wait,
                "database unavailable at start; retrying"
            );
        })
        .await;
    match pool {
        Ok(pool) => Ok(Some(pool)),
        Err(_) if shutdown.is_cancelled() => Ok(None),
        Err(e) => Err(StartError::Database(e)),
    }
}

/// The pacer this worker's settings ask for, each account on its own quota, less the room
/// another caller seen in the quota headers uses.
pub(super) async fn pacer(
    args: &WorkerArgs,
    database: &DatabaseArgs,
    accounts: &Accounts,
    quota: QuotaWatch,
) -> Result<Pacer, StartError> {
    let rate_accounts = accounts.clone();
    let margin = Duration::from_millis(args.pacer_margin_ms);
    let rates = move |key: &str| {
        let (limit, others) = quota.seen(key);
        let configured = Rate {
            qps: rate_accounts.qps_of(key).unwrap_or(1),
            margin,
        };
        room_rate(configured, limit, others)
    };
    Ok(match args.pacer {
        PacerKind::Shared => Pacer::Shared(SharedPacer::new(
            store::pacer_pool(&database.database_url)
                .await
                .map_err(StartError::Pacer)?,
            rates,
        )),
        PacerKind::Local => Pacer::Local(LocalPacer::new(rates)),
    })
}

/// How many connections to keep warm: each endpoint's pool is warmed for every account's quota
/// at once (any account may call any endpoint).
fn warming(accounts: &Accounts, concurrency: u16) -> Warming {
    let mut pacer_keys: Vec<&str> = accounts
        .default
        .iter()
        .chain(accounts.named.values())
        .map(|a| a.pacer_key.as_str())
        .collect();
    pacer_keys.sort_unstable();
    pacer_keys.dedup();
    Warming {
        qps: pacer_keys
            .iter()
            .filter_map(|k| accounts.qps_of(k))
            .fold(0u32, u32::saturating_add),
        max_connections: usize::from(concurrency.max(1)),
    }
}

/// The accounts that name an endpoint of their own, with it.
pub(super) fn account_endpoints(accounts: &Accounts) -> impl Iterator<Item = (&str, &str)> {
    accounts
        .default
        .iter()
        .chain(accounts.named.values())
        .filter_map(|a| Some((a.name.as_str(), a.endpoint.as_deref()?)))
}

/// This worker's name in attempt rows and claims: host, process and a random part, so two
/// workers never share one.
fn worker_id() -> String {
    format!(
        "{}-{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into()),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Everything the worker's jobs share.
pub(super) fn job_context(
    pool: PgPool,
    pacer: Pacer,
    quota: QuotaWatch,
    accounts: Accounts,
    api: &ApiArgs,
    args: &WorkerArgs,
) -> Result<JobContext, StartError> {
    let client_config = api.client_config();
    let clients = EndpointClients::new(
        api.endpoint_settings(),
        account_endpoints(&accounts).map(|(_, e)| e),
        &client_config,
        args.warm_connections
            .then(|| warming(&accounts, args.concurrency)),
    )?;
    Ok(JobContext {
        pool,
        clients,
        pacer,
        accounts,
        default_region: api.region()?,
        max_attempts: args.attempts.max_attempts.max(1),
        backoff: Backoff {
            initial: Duration::from_millis(args.backoff_initial_ms),
            max: Duration::from_millis(args.backoff_max_ms.max(args.backoff_initial_ms)),
        },
        hold_cap: Duration::from_secs(args.hold_cap_s),
        park_after: Duration::from_secs(args.park_after_s),
        claim_lease: store::claim_lease(&client_config),
        worker_id: worker_id(),
        in_flight: Default::default(),
        metrics: Default::default(),
        pauses: Default::default(),
        wake_stager: Default::default(),
        quota,
    })
}

/// Binds the metrics and health address and serves it until shutdown.
pub(super) async fn serve_health(
    addr: SocketAddr,
    ctx: &Arc<JobContext>,
    shutdown: &CancellationToken,
) -> Result<(), StartError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    tokio::spawn(health::serve(
        listener,
        health::Health {
            metrics: ctx.metrics.clone(),
            in_flight: ctx.in_flight.clone(),
            pauses: ctx.pauses.clone(),
            clients: ctx.clients.clone(),
        },
        shutdown.clone(),
    ));
    Ok(())
}
