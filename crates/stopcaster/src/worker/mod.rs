//! The worker: consumes stop jobs from RabbitMQ until shutdown, then drains.
//!
//! - [`session`]: the broker session loop, with reconnects, bounded concurrency and the drain.
//! - [`job`]: one delivery from bytes to a disposition (parse, record, pace, call, decide).
//! - [`verdict`]: what to do after a call, a pure function; [`backoff`]: the delay before a retry.
//! - [`pacer`]: calls on the account's quota, shared by every replica through Postgres.
//! - [`quota`]: what Alibaba's quota headers say of each account: the metrics, and the room the
//!   pacer leaves another caller.
//! - [`pause`]: accounts whose credentials were refused, or whose [`circuit`] opened (the
//!   endpoint cannot be reached or keeps failing), wait, one probe call at a time; [`reach`]
//!   brings the probe forward when an unreachable endpoint answers again; [`operator`] reads
//!   the operators' pauses (`stopcaster pause`) into it.
//! - [`stager`]: hands scheduled jobs back to the queue as they fall due; [`due`]: the worker's
//!   side of a due time.
//! - [`in_flight`], [`metrics`], [`health`]: this process's view of itself; [`start`]: what a
//!   worker sets up before its first delivery.
//!
//! Depends on [`crate::domain`], [`stopcaster_live`] (the calls), [`crate::store`] (every record)
//! and [`crate::broker`]; the commands in `ops` never reach into it.

pub(crate) mod backoff;
mod circuit;
mod due;
mod health;
mod in_flight;
mod job;
mod metrics;
mod operator;
pub mod pacer;
mod pause;
mod quota;
mod reach;
mod session;
mod stager;
mod start;
mod verdict;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::broker::Names;
use crate::config::{ApiArgs, BrokerArgs, DatabaseArgs, WorkerArgs};
use crate::redact::url_without_password;
use crate::store;
use stopcaster_live::accounts::Account;

pub(crate) use self::start::StartError;

/// Runs a worker until `shutdown` is cancelled, then drains. Returns `Ok(false)` when shutdown
/// came before the database was ever reachable (nothing was taken).
pub async fn run(
    broker: BrokerArgs,
    database: DatabaseArgs,
    api: ApiArgs,
    args: WorkerArgs,
    shutdown: CancellationToken,
) -> Result<bool, StartError> {
    let accounts = start::accounts(&api, &args, &shutdown).await?;
    // One line that says what this worker uses, before anything can wait: URLs without their
    // passwords, accounts by AccessKeyId, never a secret.
    tracing::info!(
        broker = %url_without_password(&broker.amqp_url),
        queue_prefix = %broker.queue_prefix,
        database = %url_without_password(&database.database_url),
        endpoints = %api
            .endpoint_settings()
            .describe(start::account_endpoints(&accounts)),
        region = %api.default_region,
        qps = args.qps,
        concurrency = args.concurrency,
        pacer = %args.pacer,
        accounts = %start::describe_accounts(&accounts),
        "worker starting"
    );
    let Some(pool) = start::database(&database, &shutdown).await? else {
        tracing::info!("shut down before the database was reachable; nothing was taken");
        return Ok(false);
    };
    let quota = quota::QuotaWatch::default();
    let pacer = start::pacer(&args, &database, &accounts, quota.clone()).await?;
    let ctx = Arc::new(start::job_context(
        pool, pacer, quota, accounts, &api, &args,
    )?);
    ctx.metrics.set_database_up(true);
    if let Some(addr) = args.metrics_addr {
        start::serve_health(addr, &ctx, &shutdown).await?;
    }
    // Before the first delivery: a worker that warmed while holding its prefetched jobs would
    // leave the others to run out of work meanwhile.
    shutdown
        .run_until_cancelled(warm_default_endpoints(&ctx))
        .await;
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
        ctx.wake_stager.clone(),
        shutdown.clone(),
    ));
    let reach = tokio::spawn(reach::run(
        ctx.clone(),
        ctx.wake_stager.clone(),
        shutdown.clone(),
    ));
    // Before the first delivery: a job must not slip through a pause in force at start.
    operator::read_once(&ctx, &mut false).await;
    let operator = tokio::spawn(operator::run(ctx.clone(), shutdown.clone()));
    session::run(config, ctx.clone(), shutdown).await;
    let _ = stager.await;
    let _ = reach.await;
    let _ = operator.await;
    if let Err(e) = store::clear_pauses(&ctx.pool, &ctx.worker_id, None).await {
        tracing::debug!(error = %e, "could not clear this worker's pauses");
    }
    tracing::info!("worker stopped");
    Ok(true)
}

/// Warms the endpoints of the default region's jobs, one per account's endpoint (the others
/// are warmed by their first job).
async fn warm_default_endpoints(ctx: &job::JobContext) {
    let accounts = ctx
        .accounts
        .default
        .iter()
        .chain(ctx.accounts.named.values());
    let mut clients: Vec<&stopcaster_live::LiveClient> = Vec::new();
    for account in accounts {
        let client = ctx
            .clients
            .client_for(&ctx.default_region, account_endpoint(account));
        if !clients.iter().any(|c| std::ptr::eq(*c, client)) {
            clients.push(client);
        }
    }
    futures_util::future::join_all(clients.into_iter().map(|c| c.warm())).await;
}

fn account_endpoint(account: &Account) -> Option<&str> {
    account.endpoint.as_deref()
}
