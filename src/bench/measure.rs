//! One run: enqueue the batch (before the workers start, or after a warm-up batch), wait for
//! every job to finish, stop the workers and gather what the stand-in and the database saw.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sqlx::PgPool;
use time::OffsetDateTime;

use stopcaster::{JobStatus, Names};
use stopcaster_fake_live as fake_live;

use super::results::{self, Outcome};
use super::workers::{self, WorkerProc};
use super::{BenchArgs, KEY_ID, KEY_SECRET, Setup, WARM_UP_STUDIOS, fleet, store};

/// What the polling saw while the batch ran.
#[derive(Default)]
pub(super) struct Polling {
    /// Polls that failed: Postgres restarted under the run (on a shared machine), which is
    /// waited out, as the workers do, and said: such a run measures the outage, not the pacing.
    outages: AtomicU32,
    /// A scheduled run: when the workers held every job as `scheduled`.
    all_held: Mutex<Option<Duration>>,
    /// Statements the polling ran (each a transaction of its own, not the workers').
    queries: AtomicU32,
}

/// Runs the batch and prints its figures.
pub(super) async fn measure(
    args: &BenchArgs,
    setup: &Setup<'_>,
    pool: &PgPool,
    fake: &fake_live::FakeLiveHandle,
) -> anyhow::Result<()> {
    let names = Names::new(setup.prefix);
    let batches = Batches {
        args,
        setup,
        names: &names,
    };
    let ids: Vec<String> = (0..setup.studios)
        .map(|i| format!("bench-studio-{i}"))
        .collect();
    let due = args.scheduled.map(|secs| {
        (OffsetDateTime::now_utc() + time::Duration::seconds(secs as i64))
            .replace_nanosecond(0)
            .expect("zero nanoseconds")
    });
    // Cold: the batch waits in the queue for workers that are just starting.
    let mut enqueue_time = Duration::ZERO;
    if !args.warm {
        enqueue_time = batches.enqueue(ids.clone(), due).await?;
    }
    let mut start_wall = OffsetDateTime::now_utc();
    let transactions_before = store::committed_transactions(pool).await.ok();
    let mut workers = workers::spawn(args, setup, fake)?;
    let polling = Polling::default();
    // Generous: a benchmark that times out measures nothing.
    let timeout = Duration::from_secs(60)
        + Duration::from_secs_f64(setup.studios as f64 / f64::from(setup.qps.min(50)) * 3.0);
    let watch = Watch::new(pool, &polling, due.is_some(), timeout);
    if args.warm {
        warm_up(&batches, &watch).await?;
        start_wall = OffsetDateTime::now_utc();
        enqueue_time = batches.enqueue(ids, None).await?;
    }
    let started = Instant::now();
    let competitor = (args.competitor_qps > 0)
        .then(|| tokio::spawn(compete(fake.endpoint(), args.competitor_qps)));
    let expected = setup.studios + if args.warm { WARM_UP_STUDIOS } else { 0 };
    // A batch that does not finish in time is still measured, as far as it went.
    let unfinished = watch.until_finished(expected, started).await.err();
    if let Some(c) = competitor {
        c.abort();
    }
    let costs = stop_workers(&mut workers);
    // The workers' sessions reported their counts as they ended; the bench's own, idle, within
    // a second.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let transactions = workers_transactions(pool, transactions_before, &polling).await;
    let all_calls = calls_logged(fake)?;
    let all_held = *polling.all_held.lock().expect("not poisoned");
    let succeeded = store::count_jobs_with_status(pool, JobStatus::Succeeded).await?;
    let outcome = Outcome {
        enqueue_time,
        unfinished,
        outages: polling.outages.load(Ordering::Relaxed),
        all_held,
        start_wall,
        due,
        costs,
        stats: fake.stats(),
        all_calls,
        succeeded,
        transactions,
    };
    results::print(args, setup, pool, &outcome).await
}

/// Warm: once every worker consumes, a small batch, so that each has used its connections;
/// then a pause, so they are idle, as between two batches.
async fn warm_up(batches: &Batches<'_>, watch: &Watch<'_>) -> anyhow::Result<()> {
    let args = batches.args;
    workers::wait_for_consumers(&args.amqp_url, batches.names, args.workers, watch.timeout).await?;
    let warm_ids = (0..WARM_UP_STUDIOS)
        .map(|i| format!("bench-warmup-{i}"))
        .collect();
    batches.enqueue(warm_ids, None).await?;
    watch
        .until_finished(WARM_UP_STUDIOS, Instant::now())
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}

/// The transactions the workers committed since `before`: the database's count, less the
/// bench's own polls and the reading itself.
async fn workers_transactions(
    pool: &PgPool,
    before: Option<i64>,
    polling: &Polling,
) -> Option<i64> {
    let after = store::committed_transactions(pool).await.ok()?;
    Some(after - before? - 1 - i64::from(polling.queries.load(Ordering::Relaxed)))
}

/// Each worker's CPU seconds and peak RSS, read just before it is stopped.
pub(super) fn stop_workers(workers: &mut [WorkerProc]) -> Vec<(f64, u64)> {
    let costs = workers.iter().filter_map(WorkerProc::cost).collect();
    for w in workers {
        w.terminate();
    }
    costs
}

/// The stand-in's call log, also written to `STOPCASTER_BENCH_CALL_LOG` when that is set.
fn calls_logged(fake: &fake_live::FakeLiveHandle) -> anyhow::Result<Vec<fake_live::CallLogEntry>> {
    let all_calls = fake.calls();
    if let Ok(path) = std::env::var("STOPCASTER_BENCH_CALL_LOG") {
        std::fs::write(&path, serde_json::to_vec(&all_calls)?)
            .with_context(|| format!("writing {path}"))?;
    }
    Ok(all_calls)
}

/// Publishes the run's batches.
struct Batches<'a> {
    args: &'a BenchArgs,
    setup: &'a Setup<'a>,
    names: &'a Names,
}

impl Batches<'_> {
    /// Publishes one job per id, due at `due`, and returns how long the confirms took.
    async fn enqueue(
        &self,
        ids: Vec<String>,
        due: Option<OffsetDateTime>,
    ) -> anyhow::Result<Duration> {
        let batch = Some(format!("bench-{}", self.setup.prefix));
        let mut plan = stopcaster::plan_enqueue(ids, None, batch)?;
        let accounts = self.setup.accounts_file.map_or(1, |f| f.accounts);
        for (k, job) in plan.jobs.iter_mut().enumerate() {
            job.not_before = due;
            if accounts > 1 {
                job.account = Some(fleet::account_of(k, accounts));
            }
        }
        let started = Instant::now();
        let published =
            stopcaster::publish_enqueue(&self.args.amqp_url, self.names, &plan, |_| {}).await?;
        if published.unconfirmed() > 0 {
            bail!("{} jobs not confirmed", published.unconfirmed());
        }
        Ok(started.elapsed())
    }
}

/// Polls the database until a count of jobs has finished.
pub(super) struct Watch<'a> {
    pool: &'a PgPool,
    polling: &'a Polling,
    /// A scheduled run, whose holding of every job is timed.
    scheduled: bool,
    workers_started: Instant,
    timeout: Duration,
}

impl<'a> Watch<'a> {
    /// A watch of a run whose workers start now.
    pub(super) fn new(
        pool: &'a PgPool,
        polling: &'a Polling,
        scheduled: bool,
        timeout: Duration,
    ) -> Self {
        Self {
            pool,
            polling,
            scheduled,
            workers_started: Instant::now(),
            timeout,
        }
    }

    pub(super) async fn until_finished(&self, count: usize, since: Instant) -> anyhow::Result<()> {
        let mut done = 0;
        loop {
            self.polling.queries.fetch_add(1, Ordering::Relaxed);
            match store::count_finished_jobs(self.pool).await {
                Ok(n) => done = n,
                Err(_) => {
                    self.polling.outages.fetch_add(1, Ordering::Relaxed);
                }
            }
            if done as usize >= count {
                return Ok(());
            }
            if self.scheduled
                && self
                    .polling
                    .all_held
                    .lock()
                    .expect("not poisoned")
                    .is_none()
            {
                self.polling.queries.fetch_add(1, Ordering::Relaxed);
                if store::count_jobs_with_status(self.pool, JobStatus::Scheduled)
                    .await
                    .is_ok_and(|held| held as usize >= count)
                {
                    *self.polling.all_held.lock().expect("not poisoned") =
                        Some(self.workers_started.elapsed());
                }
            }
            if since.elapsed() > self.timeout {
                bail!(
                    "only {done} of {count} jobs finished within {:?}",
                    self.timeout
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Calls StopCaster `qps` times a second with the bench's key, on its own studios, ignoring
/// every answer, until aborted.
async fn compete(endpoint: String, qps: u32) {
    let client =
        match stopcaster_live::LiveClient::new(&stopcaster_live::ClientConfig::new(endpoint)) {
            Ok(c) => c,
            Err(_) => return,
        };
    let credentials = stopcaster_live::credentials::Credentials::new(KEY_ID, KEY_SECRET);
    let region = stopcaster_live::ids::RegionId::parse("cn-shanghai").expect("a valid region");
    let mut tick = tokio::time::interval(Duration::from_secs(1) / qps);
    for i in 0u64.. {
        tick.tick().await;
        let caster =
            stopcaster_live::ids::CasterId::parse(&format!("competitor-{i}")).expect("a valid id");
        let client = client.clone();
        let credentials = credentials.clone();
        let region = region.clone();
        tokio::spawn(async move {
            let request = stopcaster_live::StopCasterRequest {
                caster_id: &caster,
                region_id: &region,
            };
            client.stop_caster(&credentials, request).await;
        });
    }
}
