//! The worker: consumes stop jobs from RabbitMQ until shutdown, then drains.
//!
//! - [`session`]: the broker session loop, with reconnects, bounded concurrency and the drain.
//! - [`job`]: one delivery from bytes to a disposition (parse, record, pace, call, decide).
//! - [`verdict`]: what to do after a call, a pure function; [`backoff`]: the delay before a retry.
//! - [`pacer`]: calls on the account's quota, shared by every replica through Postgres.
//! - [`pause`]: accounts whose credentials were refused wait, one probe call at a time.
//! - [`stager`]: hands scheduled jobs back to the queue as they fall due; [`due`]: the worker's
//!   side of a due time.
//! - [`in_flight`], [`metrics`], [`health`]: this process's view of itself.
//!
//! Depends on [`crate::domain`], [`stopcaster_live`] (the calls), [`crate::store`] (every record)
//! and [`crate::broker`]; the commands in `ops` never reach into it.

pub mod backoff;
mod due;
mod health;
mod in_flight;
mod job;
mod metrics;
pub mod pacer;
mod pause;
mod session;
mod stager;
mod verdict;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use backon::Retryable as _;
use tokio_util::sync::CancellationToken;

use crate::broker::Names;
use crate::config::{ApiArgs, BrokerArgs, ConfigError, DatabaseArgs, PacerKind, WorkerArgs};
use crate::redact::url_without_password;
use crate::store;
use stopcaster_live::LiveClient;
use stopcaster_live::accounts::{self, Accounts, AccountsError};
use stopcaster_live::client::{ClientError, Warming};
use stopcaster_live::credentials::http::ClientBuildError;
use stopcaster_live::credentials::{HttpClients, ProviderContext, RefreshPolicy};

use self::backoff::Backoff;
use self::job::JobContext;
use self::pacer::{LocalPacer, Pacer, Rate, SharedPacer};

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
async fn start_accounts(
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
fn describe_accounts(accounts: &Accounts) -> String {
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

/// Runs a worker until `shutdown` is cancelled, then drains. Returns `Ok(false)` when shutdown
/// came before the database was ever reachable (nothing was taken).
pub async fn run(
    broker: BrokerArgs,
    database: DatabaseArgs,
    api: ApiArgs,
    args: WorkerArgs,
    shutdown: CancellationToken,
) -> Result<bool, StartError> {
    let accounts = start_accounts(&api, &args, &shutdown).await?;
    // One line that says what this worker uses, before anything can wait: URLs without their
    // passwords, accounts by AccessKeyId, never a secret.
    tracing::info!(
        broker = %url_without_password(&broker.amqp_url),
        queue_prefix = %broker.queue_prefix,
        database = %url_without_password(&database.database_url),
        endpoint = %api.endpoint,
        region = %api.default_region,
        qps = args.qps,
        concurrency = args.concurrency,
        pacer = %args.pacer,
        accounts = %describe_accounts(&accounts),
        "worker starting"
    );
    // Until the database answers; a shutdown meanwhile ends the wait (nothing is held yet).
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
    let pool = match pool {
        Ok(pool) => pool,
        Err(_) if shutdown.is_cancelled() => {
            tracing::info!("shut down before the database was reachable; nothing was taken");
            return Ok(false);
        }
        Err(e) => return Err(StartError::Database(e)),
    };
    let rate_accounts = accounts.clone();
    let margin = Duration::from_millis(args.pacer_margin_ms);
    let rates = move |key: &str| Rate {
        qps: rate_accounts.qps_of(key).unwrap_or(1),
        margin,
    };
    let pacer = match args.pacer {
        PacerKind::Shared => Pacer::Shared(SharedPacer::new(
            store::pacer_pool(&database.database_url)
                .await
                .map_err(StartError::Pacer)?,
            rates,
        )),
        PacerKind::Local => Pacer::Local(LocalPacer::new(rates)),
    };
    let client_config = api.client_config();
    // The pool is warmed for every account's quota at once (one endpoint, one pool).
    let mut pacer_keys: Vec<&str> = accounts
        .default
        .iter()
        .chain(accounts.named.values())
        .map(|a| a.pacer_key.as_str())
        .collect();
    pacer_keys.sort_unstable();
    pacer_keys.dedup();
    let warming = Warming {
        qps: pacer_keys
            .iter()
            .filter_map(|k| accounts.qps_of(k))
            .fold(0u32, u32::saturating_add),
        max_connections: usize::from(args.concurrency.max(1)),
    };
    let worker_id = format!(
        "{}-{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into()),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let ctx = Arc::new(JobContext {
        pool,
        client: if args.warm_connections {
            LiveClient::new(&client_config)?.with_warming(warming)
        } else {
            LiveClient::new(&client_config)?
        },
        pacer,
        accounts,
        default_region: api.region()?,
        max_attempts: args.attempts.max_attempts.max(1),
        backoff: Backoff {
            initial: Duration::from_millis(args.backoff_initial_ms),
            max: Duration::from_millis(args.backoff_max_ms.max(args.backoff_initial_ms)),
        },
        hold_cap: Duration::from_secs(args.hold_cap_s),
        claim_lease: store::claim_lease(&client_config),
        worker_id,
        in_flight: Default::default(),
        metrics: Default::default(),
        pauses: Default::default(),
    });
    ctx.metrics.set_database_up(true);
    if let Some(addr) = args.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        tokio::spawn(health::serve(
            listener,
            health::Health {
                metrics: ctx.metrics.clone(),
                in_flight: ctx.in_flight.clone(),
                pauses: ctx.pauses.clone(),
            },
            shutdown.clone(),
        ));
    }
    // Before the first delivery: a worker that warmed while holding its prefetched jobs would
    // leave the others to run out of work meanwhile.
    shutdown.run_until_cancelled(ctx.client.warm()).await;
    let config = session::SessionConfig {
        amqp_url: broker.amqp_url,
        names: Names::new(&broker.queue_prefix),
        concurrency: args.concurrency,
        drain_timeout: Duration::from_secs(args.drain_timeout_s),
    };
    let stager = tokio::spawn(stager::run(
        ctx.pool.clone(),
        stager::StagerConfig {
            amqp_url: config.amqp_url.clone(),
            names: config.names.clone(),
            worker_id: ctx.worker_id.clone(),
        },
        ctx.metrics.clone(),
        shutdown.clone(),
    ));
    session::run(config, ctx.clone(), shutdown).await;
    let _ = stager.await;
    if let Err(e) = store::clear_pauses(&ctx.pool, &ctx.worker_id, None).await {
        tracing::debug!(error = %e, "could not clear this worker's pauses");
    }
    tracing::info!("worker stopped");
    Ok(true)
}
