//! The figures a run prints, one `name: value` line each, for `docs/BENCHMARKS.md`: the setup,
//! the counts, then the pacing, ceiling or scheduled figures.

use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;
use time::OffsetDateTime;

use stopcaster_fake_live as fake_live;

use super::{BenchArgs, Setup, store};

/// What a run gathered.
pub(super) struct Outcome {
    pub enqueue_time: Duration,
    /// Why the batch did not finish in time, when it did not.
    pub unfinished: Option<anyhow::Error>,
    /// Polls of the database that failed.
    pub outages: u32,
    /// A scheduled run: when the workers held every job as `scheduled`.
    pub all_held: Option<Duration>,
    /// When the measured batch was enqueued (warm) or the workers started (cold).
    pub start_wall: OffsetDateTime,
    pub due: Option<OffsetDateTime>,
    /// Each worker's CPU seconds and peak RSS in KiB.
    pub costs: Vec<(f64, u64)>,
    pub stats: fake_live::Stats,
    pub all_calls: Vec<fake_live::CallLogEntry>,
    pub succeeded: i64,
    /// Postgres transactions committed from the workers' start to their stop (less the
    /// bench's own polls), when the statistics could be read.
    pub transactions: Option<i64>,
}

impl Outcome {
    /// The measured batch's calls (not the warm-up's, nor a competitor's).
    fn ours(&self) -> Vec<&fake_live::CallLogEntry> {
        self.all_calls.iter().filter(|c| is_ours(c)).collect()
    }

    /// Every StopCaster call of the workers, the warm-up batch's too (the CPU and the
    /// transactions counted are the whole run's).
    fn worker_calls(&self) -> usize {
        self.all_calls
            .iter()
            .filter(|c| {
                c.caster_id
                    .as_deref()
                    .is_some_and(|id| id.starts_with("bench-"))
            })
            .count()
    }

    fn cpu(&self) -> f64 {
        self.costs.iter().map(|c| c.0).sum()
    }
}

fn is_ours(c: &fake_live::CallLogEntry) -> bool {
    c.caster_id
        .as_deref()
        .is_some_and(|id| id.starts_with("bench-studio-"))
}

fn throttled(c: &fake_live::CallLogEntry) -> bool {
    c.code.as_deref() == Some("Throttling.User")
}

/// When the stand-in decided a call (its log's RFC 3339 time).
fn call_time(call: &fake_live::CallLogEntry) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(&call.time, &time::format_description::well_known::Rfc3339).ok()
}

pub(super) async fn print(
    args: &BenchArgs,
    setup: &Setup<'_>,
    pool: &PgPool,
    outcome: &Outcome,
) -> anyhow::Result<()> {
    print_setup(args, setup);
    print_counts(args, setup, outcome);
    if let Some(due) = outcome.due {
        print_scheduled(args, setup, outcome, due)?;
    } else if args.ceiling {
        print_ceiling(setup, pool, outcome).await?;
    } else {
        print_paced(args, setup, outcome);
    }
    print_cost(outcome);
    Ok(())
}

/// What a call costs the workers: CPU, and Postgres transactions (both over the whole run,
/// the workers' start and a warm-up batch included).
fn print_cost(outcome: &Outcome) {
    let calls = outcome.worker_calls().max(1) as f64;
    println!(
        "cpu_per_1000_calls: {:.3} s (worker user+system, over {} calls)",
        outcome.cpu() / calls * 1000.0,
        calls
    );
    match outcome.transactions {
        Some(n) => println!(
            "pg_transactions_per_call: {:.2} (xact_commit growth of the run's database)",
            n as f64 / calls
        ),
        None => println!("pg_transactions_per_call: unknown (pg_stat_database unreadable)"),
    }
}

fn print_setup(args: &BenchArgs, setup: &Setup<'_>) {
    println!(
        "setup: {} studios, {} worker process(es), quota {} calls/s, pacer margin {} ms, stand-in latency {:?}, {} cores; {}, {} batch, {}, connect delay {} ms{}",
        setup.studios,
        args.workers,
        if args.ceiling {
            "lifted".to_owned()
        } else {
            setup.qps.to_string()
        },
        args.pacer_margin_ms,
        if args.ceiling {
            Duration::ZERO
        } else {
            Duration::from_millis(args.latency_ms)
        },
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        match setup.accounts_file {
            Some(f) => format!("{} accounts of one key each, jobs interleaved", f.accounts),
            None => format!("{} key(s) of one account", setup.keys.len()),
        },
        if args.warm { "warm" } else { "cold" },
        if args.tls { "https" } else { "http" },
        args.connect_delay_ms,
        if args.no_warm_connections {
            ", workers without warm connections"
        } else {
            ""
        }
    );
}

fn print_counts(args: &BenchArgs, setup: &Setup<'_>, outcome: &Outcome) {
    let studios = setup.studios;
    println!(
        "enqueue: {studios} jobs confirmed in {:.2} s ({:.0} jobs/s)",
        outcome.enqueue_time.as_secs_f64(),
        studios as f64 / outcome.enqueue_time.as_secs_f64()
    );
    if let Some(e) = &outcome.unfinished {
        println!("timeout: {e}");
    }
    if outcome.outages > 0 {
        println!(
            "database_unavailable: {} polls failed during the run (not a valid measurement)",
            outcome.outages
        );
    }
    let calls = outcome.ours();
    println!("succeeded: {}", outcome.succeeded);
    println!("calls: {}", calls.len());
    println!(
        "throttled: {}",
        calls.iter().filter(|c| throttled(c)).count()
    );
    if args.warm {
        let throttled_warm_up = outcome
            .all_calls
            .iter()
            .filter(|c| {
                c.caster_id
                    .as_deref()
                    .is_some_and(|id| id.starts_with("bench-warmup-"))
            })
            .filter(|c| throttled(c))
            .count();
        println!("throttled_in_warm_up_batch: {throttled_warm_up}");
    }
    if args.competitor_qps > 0 {
        let theirs: Vec<_> = outcome.all_calls.iter().filter(|c| !is_ours(c)).collect();
        let refused = theirs.iter().filter(|c| throttled(c)).count();
        println!(
            "competitor: {} calls at {}/s, {refused} throttled",
            theirs.len(),
            args.competitor_qps
        );
    }
}

fn print_scheduled(
    args: &BenchArgs,
    setup: &Setup<'_>,
    outcome: &Outcome,
    due: OffsetDateTime,
) -> anyhow::Result<()> {
    let times: Vec<OffsetDateTime> = outcome.ours().into_iter().filter_map(call_time).collect();
    let first = times.iter().min().copied().context("no call")?;
    let last = times.iter().max().copied().context("no call")?;
    let early = times.iter().filter(|t| **t < due).count();
    let rss: Vec<String> = outcome
        .costs
        .iter()
        .map(|c| format!("{:.1}", c.1 as f64 / 1024.0))
        .collect();
    println!(
        "scheduled: all {} held as scheduled {} after the workers started; due {} s after enqueue",
        setup.studios,
        outcome.all_held.map_or_else(
            || "never (some ran first?)".to_owned(),
            |d| format!("{:.2} s", d.as_secs_f64())
        ),
        args.scheduled.unwrap_or_default()
    );
    println!("calls_before_due: {early}");
    println!(
        "first_call_after_due: {:.3} s",
        (first - due).as_seconds_f64()
    );
    println!(
        "last_call_after_due: {:.3} s (ideal (N-1)/QPS: {:.3} s)",
        (last - due).as_seconds_f64(),
        (setup.studios as f64 - 1.0) / f64::from(setup.qps.max(1))
    );
    println!(
        "peak_rss: {} MiB (each worker's VmHWM); worker_cpu: {:.2} s",
        rss.join(", "),
        outcome.cpu()
    );
    Ok(())
}

async fn print_ceiling(setup: &Setup<'_>, pool: &PgPool, outcome: &Outcome) -> anyhow::Result<()> {
    let studios = setup.studios;
    let (first, last) = store::call_span(pool)
        .await?
        .context("the batch made no call")?;
    let secs = (last - first).as_seconds_f64();
    let rss = outcome.costs.iter().map(|c| c.1).max().unwrap_or(0);
    println!(
        "ceiling: {:.0} jobs/s with durable records ({studios} jobs in {secs:.2} s, first call to last commit)",
        studios as f64 / secs
    );
    println!(
        "cpu: {:.3} CPU seconds per 1,000 jobs (worker user+system)",
        outcome.cpu() / studios as f64 * 1000.0
    );
    println!("peak_rss: {:.1} MiB (worker VmHWM)", rss as f64 / 1024.0);
    Ok(())
}

fn print_paced(args: &BenchArgs, setup: &Setup<'_>, outcome: &Outcome) {
    let calls = outcome.ours();
    let times: Vec<OffsetDateTime> = calls
        .iter()
        .filter(|c| c.http_status == Some(200))
        .filter_map(|c| call_time(c))
        .collect();
    let first = times.iter().min().copied();
    let last = times.iter().max().copied();
    let makespan = match (first, last) {
        (Some(a), Some(b)) => (b - a).as_seconds_f64(),
        _ => f64::NAN,
    };
    // With a competitor, the quota left to us is what the ideal is measured against.
    let available = f64::from(setup.qps.saturating_sub(args.competitor_qps).max(1));
    // A fleet's ideal is one account's share: its jobs (the most any account has) at its pace.
    let accounts = setup.accounts_file.map_or(1, |f| f.accounts);
    let per_account = setup.studios.div_ceil(accounts);
    let ideal = (per_account as f64 - 1.0) / available;
    println!("makespan: {makespan:.3} s (first to last successful call at the stand-in)");
    println!("ideal: {ideal:.3} s ((N-1)/QPS available to the workers, N the jobs of one account)");
    println!("efficiency: {:.4}", ideal / makespan);
    if let Some(first) = first {
        let at: Vec<String> = calls
            .iter()
            .filter(|c| throttled(c))
            .filter_map(|c| call_time(c))
            .map(|t| format!("{:.3}", (t - first).as_seconds_f64()))
            .collect();
        if !at.is_empty() {
            println!("throttled_at_s: {}", at.join(" "));
        }
    }
    print_admission(setup, outcome);
    if let Some(first) = first {
        println!(
            "first_call_after: {:.3} s (from {})",
            (first - outcome.start_wall).as_seconds_f64(),
            if args.warm {
                "the measured batch's enqueue"
            } else {
                "the workers' start"
            }
        );
    }
    println!(
        "worker_cpu: {:.2} s total over {} process(es)",
        outcome.cpu(),
        outcome.costs.len()
    );
}

/// How close the stand-in came to an 11th call in a window: the shortest span of qps+1
/// consecutive admitted arrivals of one account (at least 1 s means never throttled by us),
/// and the most it admitted in any second of the worst account.
fn print_admission(setup: &Setup<'_>, outcome: &Outcome) {
    let qps = setup.qps as usize;
    let mut span = f64::INFINITY;
    let mut uids: Vec<&String> = setup.uids.iter().collect();
    uids.dedup();
    for uid in &uids {
        let mut admitted: Vec<OffsetDateTime> = outcome
            .all_calls
            .iter()
            .filter(|c| c.admitted && c.account_uid.as_ref() == Some(*uid))
            .filter_map(call_time)
            .collect();
        admitted.sort();
        span = admitted
            .windows(qps + 1)
            .map(|w| (w[w.len() - 1] - w[0]).as_seconds_f64())
            .fold(span, f64::min);
    }
    println!("shortest_span_of_{}_admitted_calls: {span:.3} s", qps + 1);
    let worst = uids
        .iter()
        .filter_map(|uid| outcome.stats.max_in_any_1s_window_by_account.get(*uid))
        .max()
        .copied()
        .unwrap_or(0);
    println!(
        "max_calls_in_any_1s_window: {worst} (the worst of {} account(s), over every batch)",
        uids.len()
    );
}
