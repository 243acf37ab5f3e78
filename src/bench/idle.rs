//! `--idle-interval-ms MS`: the latency of an idle worker. Once every worker consumes, one job
//! every MS milliseconds (far apart enough that the account's schedule is idle at each), and for
//! each job the time from its enqueue to its call's arrival at the stand-in.
//!
//! How it is measured: the enqueue time is this process's wall clock just before the job's
//! `basic_publish` on a confirm channel opened beforehand (so no connection set-up is counted);
//! the arrival is the stand-in's log time for the call (the stand-in runs in this process, so
//! one clock; it decides a call as it arrives, before its latency, and logs the time truncated to
//! the millisecond, so each figure may read up to 1 ms short). The confirm is awaited after the
//! time is taken, as `enqueue` does, so a worker may receive the job before the bench has its
//! confirm.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use sqlx::PgPool;
use time::OffsetDateTime;

use stopcaster::Names;
use stopcaster_fake_live as fake_live;

use super::measure::{Polling, Watch, stop_workers};
use super::{BenchArgs, Setup, fleet, workers};

/// Runs the idle batch and prints its latencies.
pub(super) async fn measure(
    args: &BenchArgs,
    setup: &Setup<'_>,
    pool: &PgPool,
    fake: &fake_live::FakeLiveHandle,
    interval: Duration,
) -> anyhow::Result<()> {
    let names = Names::new(setup.prefix);
    let polling = Polling::default();
    let timeout = Duration::from_secs(60) + interval * setup.studios as u32 * 2;
    let mut workers = workers::spawn(args, setup, fake)?;
    let watch = Watch::new(pool, &polling, false, timeout);
    workers::wait_for_consumers(&args.amqp_url, &names, args.workers, timeout).await?;
    // Let the workers finish starting (credentials, warm connections) before the first job.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let enqueued = publish_one_by_one(args, setup, &names, interval).await?;
    let unfinished = watch
        .until_finished(setup.studios, Instant::now())
        .await
        .err();
    let costs = stop_workers(&mut workers);
    let calls = fake.calls();
    if let Some(e) = unfinished {
        println!("timeout: {e}");
    }
    let latencies = latencies(&enqueued, &calls);
    print(args, setup, interval, &latencies);
    let cpu: f64 = costs.iter().map(|c| c.0).sum();
    println!(
        "worker_cpu: {cpu:.2} s total over {} process(es)",
        costs.len()
    );
    Ok(())
}

/// Publishes each job on its own tick, returning each job's studio and when its publish began.
async fn publish_one_by_one(
    args: &BenchArgs,
    setup: &Setup<'_>,
    names: &Names,
    interval: Duration,
) -> anyhow::Result<HashMap<String, OffsetDateTime>> {
    let ids: Vec<String> = (0..setup.studios)
        .map(|i| format!("bench-studio-{i}"))
        .collect();
    let batch = Some(format!("bench-{}", setup.prefix));
    let mut plan = stopcaster::plan_enqueue(ids, None, batch)?;
    let accounts = setup.accounts_file.map_or(1, |f| f.accounts);
    let conn = stopcaster::connect_broker(&args.amqp_url, "stopcaster bench idle").await?;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut enqueued = HashMap::new();
    for (k, job) in plan.jobs.iter_mut().enumerate() {
        if accounts > 1 {
            job.account = Some(fleet::account_of(k, accounts));
        }
        let body = serde_json::to_vec(&*job)?;
        // The properties `enqueue` gives a job (see `broker::job_properties`).
        let properties = lapin::BasicProperties::default()
            .with_content_type(ShortString::from("application/json"))
            .with_delivery_mode(2)
            .with_message_id(ShortString::from(job.job_id.to_string()));
        tick.tick().await;
        let at = OffsetDateTime::now_utc();
        let confirm = channel
            .basic_publish(
                names.exchange.as_str().into(),
                // `broker::STOP_ROUTING_KEY`, the one route to the jobs queue.
                "stop".into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &body,
                properties,
            )
            .await?
            .await?;
        if !confirm.is_ack() || confirm.take_message().is_some() {
            bail!("job {k} was not confirmed");
        }
        enqueued.insert(job.caster_id.as_str().to_owned(), at);
    }
    let _ = conn.close(200, "".into()).await;
    Ok(enqueued)
}

/// Each job's enqueue-to-arrival time, in milliseconds, in the order of its enqueue (a job
/// called more than once counts its first call).
fn latencies(
    enqueued: &HashMap<String, OffsetDateTime>,
    calls: &[fake_live::CallLogEntry],
) -> Vec<(OffsetDateTime, f64)> {
    let mut first: HashMap<&str, OffsetDateTime> = HashMap::new();
    for call in calls {
        let (Some(id), Ok(t)) = (
            call.caster_id.as_deref(),
            OffsetDateTime::parse(&call.time, &time::format_description::well_known::Rfc3339),
        ) else {
            continue;
        };
        let e = first.entry(id).or_insert(t);
        *e = (*e).min(t);
    }
    let mut out: Vec<(OffsetDateTime, f64)> = enqueued
        .iter()
        .filter_map(|(id, at)| {
            let arrived = first.get(id.as_str())?;
            Some((*at, (*arrived - *at).as_seconds_f64() * 1000.0))
        })
        .collect();
    out.sort_by_key(|(at, _)| *at);
    out
}

/// The `q`-quantile of sorted values (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn print(
    args: &BenchArgs,
    setup: &Setup<'_>,
    interval: Duration,
    latencies: &[(OffsetDateTime, f64)],
) {
    println!(
        "setup: idle latency, {} jobs one every {} ms, {} worker process(es), quota {} calls/s, {}, {}, enqueue = just before the publish, call = its arrival at the stand-in (ms, truncated)",
        setup.studios,
        interval.as_millis(),
        args.workers,
        setup.qps,
        match setup.accounts_file {
            Some(f) => format!("{} accounts, jobs interleaved", f.accounts),
            None => "one account".to_owned(),
        },
        if args.tls { "https" } else { "http" },
    );
    let mut sorted: Vec<f64> = latencies.iter().map(|l| l.1).collect();
    sorted.sort_by(f64::total_cmp);
    println!("calls: {} of {} jobs", sorted.len(), setup.studios);
    println!("enqueue_to_call_median: {:.1} ms", quantile(&sorted, 0.5));
    println!("enqueue_to_call_p90: {:.1} ms", quantile(&sorted, 0.9));
    println!(
        "enqueue_to_call_min_max: {:.1} ms, {:.1} ms",
        sorted.first().copied().unwrap_or(f64::NAN),
        sorted.last().copied().unwrap_or(f64::NAN)
    );
    if let Some((_, first)) = latencies.first() {
        println!("enqueue_to_call_first_job: {first:.1} ms");
    }
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 5.0);
        assert_eq!(quantile(&v, 0.9), 9.0);
        assert_eq!(quantile(&v[..1], 0.9), 1.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
