//! Process counters, rendered in the Prometheus text format. Plain atomics and one small map:
//! recording costs a lock-free add or a short lock, nothing on the hot path allocates twice.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stopcaster_live::CallOutcome;

use super::pause::Held;
use crate::domain::JobStatus;
use crate::domain::display;

/// The `code` label of an operator's pause in `stopcaster_account_paused`.
pub(super) const OPERATOR_CODE: &str = "Operator.Paused";

/// Upper bounds (seconds) of the histogram of how late scheduled calls leave.
const LATENESS_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0,
];

/// Upper bounds (seconds) of the API latency histogram.
const LATENCY_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Clone, Default)]
pub(super) struct Metrics(Arc<Inner>);

#[derive(Default)]
struct Inner {
    jobs: Mutex<BTreeMap<String, u64>>,
    attempts: Mutex<BTreeMap<(String, String), u64>>,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    pacer_wait_us: AtomicU64,
    pacer_slots: AtomicU64,
    pub broker_up: AtomicBool,
    /// The broker node of the current session (its address without password), for `/readyz`.
    broker_node: Mutex<Option<String>>,
    pub database_up: AtomicBool,
    /// Jobs `scheduled` in the database (all workers'), as the stager last counted them.
    scheduled: AtomicU64,
    /// Jobs parked in the database while their account is paused (all workers').
    parked: AtomicU64,
    /// Age of the oldest pending job in milliseconds (all workers'), 0 when none.
    oldest_pending_ms: AtomicU64,
    lateness_buckets: [AtomicU64; LATENESS_BUCKETS.len()],
    lateness_count: AtomicU64,
    lateness_sum_us: AtomicU64,
    /// Per account: the last (Limit, Remain) its answers' quota headers gave.
    quota: Mutex<BTreeMap<String, (u32, u32)>>,
}

impl Metrics {
    pub(super) fn job_finished(&self, status: &str) {
        *self
            .0
            .jobs
            .lock()
            .expect("metrics poisoned")
            .entry(status.to_owned())
            .or_default() += 1;
    }

    pub(super) fn api_call(&self, outcome: &CallOutcome, latency: Duration) {
        let key = (
            outcome.label().to_owned(),
            outcome.error_code().unwrap_or("").to_owned(),
        );
        *self
            .0
            .attempts
            .lock()
            .expect("metrics poisoned")
            .entry(key)
            .or_default() += 1;
        let secs = latency.as_secs_f64();
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.0.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.0.latency_count.fetch_add(1, Ordering::Relaxed);
        self.0
            .latency_sum_us
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
    }

    /// What an answer's quota headers said of `account` (`stopcaster_quota_limit`,
    /// `stopcaster_quota_remaining`).
    pub(super) fn quota(&self, account: &str, limit: u32, remain: u32) {
        self.0
            .quota
            .lock()
            .expect("metrics poisoned")
            .insert(account.to_owned(), (limit, remain));
    }

    pub(super) fn pacer_wait(&self, wait: Duration) {
        self.0.pacer_slots.fetch_add(1, Ordering::Relaxed);
        self.0
            .pacer_wait_us
            .fetch_add(wait.as_micros() as u64, Ordering::Relaxed);
    }

    /// How many jobs are `scheduled` (the gauge `stopcaster_scheduled_jobs`).
    pub(super) fn set_scheduled(&self, n: u64) {
        self.0.scheduled.store(n, Ordering::Relaxed);
    }

    /// How many jobs are parked (the gauge `stopcaster_parked_jobs`).
    pub(super) fn set_parked(&self, n: u64) {
        self.0.parked.store(n, Ordering::Relaxed);
    }

    /// Age of the oldest pending job (the gauge `stopcaster_oldest_pending_seconds`; 0 when
    /// nothing is pending).
    pub(super) fn set_oldest_pending(&self, age: Option<Duration>) {
        let ms = age.map_or(0, |a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX));
        self.0.oldest_pending_ms.store(ms, Ordering::Relaxed);
    }

    /// How late a scheduled job's first call left after its due time.
    pub(super) fn call_lateness(&self, late: Duration) {
        let secs = late.as_secs_f64();
        for (i, bound) in LATENESS_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.0.lateness_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.0.lateness_count.fetch_add(1, Ordering::Relaxed);
        self.0
            .lateness_sum_us
            .fetch_add(late.as_micros() as u64, Ordering::Relaxed);
    }

    pub(super) fn set_broker_up(&self, up: bool) {
        self.0.broker_up.store(up, Ordering::Relaxed);
    }

    pub(super) fn set_broker_node(&self, node: Option<String>) {
        *self.0.broker_node.lock().unwrap_or_else(|e| e.into_inner()) = node;
    }

    pub(super) fn broker_node(&self) -> Option<String> {
        self.0
            .broker_node
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn set_database_up(&self, up: bool) {
        self.0.database_up.store(up, Ordering::Relaxed);
    }

    pub(super) fn broker_up(&self) -> bool {
        self.0.broker_up.load(Ordering::Relaxed)
    }

    pub(super) fn database_up(&self) -> bool {
        self.0.database_up.load(Ordering::Relaxed)
    }

    /// The Prometheus exposition text. `in_flight` is sampled by the caller.
    pub(super) fn render(
        &self,
        in_flight: usize,
        paused: &[(String, String)],
        held: &[(String, Held)],
    ) -> String {
        let mut out = String::new();
        self.render_counters(&mut out, paused, held);
        histogram(
            &mut out,
            "stopcaster_api_latency_seconds",
            "StopCaster call latency.",
            &LATENCY_BUCKETS,
            &self.0.latency_buckets,
            &self.0.latency_count,
            &self.0.latency_sum_us,
        );
        self.render_pacer(&mut out);
        histogram(
            &mut out,
            "stopcaster_call_lateness_seconds",
            "How long after its due time (not_before) a scheduled job's first call left.",
            &LATENESS_BUCKETS,
            &self.0.lateness_buckets,
            &self.0.lateness_count,
            &self.0.lateness_sum_us,
        );
        self.render_gauges(&mut out, in_flight);
        self.render_quota(&mut out);
        out
    }

    fn render_quota(&self, out: &mut String) {
        let quota = self.0.quota.lock().expect("metrics poisoned");
        out.push_str("# HELP stopcaster_quota_limit The account's calls per second, as its last answer's quota header gave it.\n# TYPE stopcaster_quota_limit gauge\n");
        for (account, (limit, _)) in quota.iter() {
            let _ = writeln!(
                out,
                "stopcaster_quota_limit{{account=\"{}\"}} {limit}",
                label(account)
            );
        }
        out.push_str("# HELP stopcaster_quota_remaining Calls left in the account's current second, as its last answer's quota header gave it.\n# TYPE stopcaster_quota_remaining gauge\n");
        for (account, (_, remain)) in quota.iter() {
            let _ = writeln!(
                out,
                "stopcaster_quota_remaining{{account=\"{}\"}} {remain}",
                label(account)
            );
        }
    }

    fn render_counters(
        &self,
        out: &mut String,
        paused: &[(String, String)],
        held: &[(String, Held)],
    ) {
        out.push_str("# HELP stopcaster_account_paused 1 for a paused account: by the code that paused it (credentials refused, endpoint failing), or Operator.Paused with who paused it, why and until when.\n# TYPE stopcaster_account_paused gauge\n");
        for (account, code) in paused {
            let _ = writeln!(
                out,
                "stopcaster_account_paused{{account=\"{}\",code=\"{}\"}} 1",
                label(account),
                label(code)
            );
        }
        for (account, h) in held {
            let until = h
                .until
                .map(crate::domain::time::rfc3339_micros)
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "stopcaster_account_paused{{account=\"{}\",code=\"{OPERATOR_CODE}\",paused_by=\"{}\",reason=\"{}\",until=\"{}\"}} 1",
                label(account),
                label(&display::bounded(&h.by, display::CELL_CHARS)),
                label(&display::bounded(&h.reason, display::CELL_CHARS)),
                label(&until)
            );
        }
        out.push_str("# HELP stopcaster_jobs_total Jobs finished, by final status.\n# TYPE stopcaster_jobs_total counter\n");
        // Every final status from the start, at 0: a series born at 1 hides its first
        // increase from `increase()`, and the dead-letter alert would miss the first one.
        let jobs = self.0.jobs.lock().expect("metrics poisoned");
        let mut names: Vec<&str> = JobStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .map(JobStatus::as_str)
            .collect();
        names.extend(
            jobs.keys()
                .map(String::as_str)
                .filter(|s| JobStatus::parse(s).is_none()),
        );
        for status in names {
            let n = jobs.get(status).copied().unwrap_or(0);
            let _ = writeln!(out, "stopcaster_jobs_total{{status=\"{status}\"}} {n}");
        }
        drop(jobs);
        out.push_str("# HELP stopcaster_attempts_total StopCaster calls, by outcome and error code.\n# TYPE stopcaster_attempts_total counter\n");
        for ((outcome, code), n) in self.0.attempts.lock().expect("metrics poisoned").iter() {
            let _ = writeln!(
                out,
                "stopcaster_attempts_total{{outcome=\"{outcome}\",code=\"{}\"}} {n}",
                label(code)
            );
        }
    }

    fn render_pacer(&self, out: &mut String) {
        out.push_str("# HELP stopcaster_pacer_wait_seconds_total Time spent waiting for pacer slots.\n# TYPE stopcaster_pacer_wait_seconds_total counter\n");
        let _ = writeln!(
            out,
            "stopcaster_pacer_wait_seconds_total {}",
            self.0.pacer_wait_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "# TYPE stopcaster_pacer_slots_total counter\nstopcaster_pacer_slots_total {}",
            self.0.pacer_slots.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP stopcaster_scheduled_jobs Jobs held as scheduled in Postgres, due later.\n# TYPE stopcaster_scheduled_jobs gauge\nstopcaster_scheduled_jobs {}",
            self.0.scheduled.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP stopcaster_parked_jobs Jobs pending in Postgres while their account is paused, no delivery held.\n# TYPE stopcaster_parked_jobs gauge\nstopcaster_parked_jobs {}",
            self.0.parked.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP stopcaster_oldest_pending_seconds Age of the oldest pending job in Postgres (all workers'), 0 when none: a backlog nobody drains.\n# TYPE stopcaster_oldest_pending_seconds gauge\nstopcaster_oldest_pending_seconds {:.3}",
            self.0.oldest_pending_ms.load(Ordering::Relaxed) as f64 / 1000.0
        );
    }

    fn render_gauges(&self, out: &mut String, in_flight: usize) {
        let _ = writeln!(
            out,
            "# HELP stopcaster_jobs_in_flight Jobs being processed.\n# TYPE stopcaster_jobs_in_flight gauge\nstopcaster_jobs_in_flight {in_flight}"
        );
        let _ = writeln!(
            out,
            "# HELP stopcaster_broker_connected 1 when connected to RabbitMQ.\n# TYPE stopcaster_broker_connected gauge\nstopcaster_broker_connected {}",
            u8::from(self.broker_up())
        );
        let _ = writeln!(
            out,
            "# HELP stopcaster_database_connected 1 when Postgres answered last.\n# TYPE stopcaster_database_connected gauge\nstopcaster_database_connected {}",
            u8::from(self.database_up())
        );
    }
}

/// One histogram in the exposition format: its buckets, `+Inf`, sum (kept in microseconds)
/// and count.
fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    bounds: &[f64],
    buckets: &[AtomicU64],
    count: &AtomicU64,
    sum_us: &AtomicU64,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (bound, n) in bounds.iter().zip(buckets) {
        let n = n.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
    }
    let count = count.load(Ordering::Relaxed);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(
        out,
        "{name}_sum {}",
        sum_us.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(out, "{name}_count {count}");
}

/// `stopcaster_clock_skew_seconds`: each endpoint's clock against this machine's.
pub(super) fn render_clock_skews(out: &mut String, skews: &[(String, i64)]) {
    out.push_str("# HELP stopcaster_clock_skew_seconds The endpoint's clock minus this machine's, from its answers' Date; calls are signed with it added.\n# TYPE stopcaster_clock_skew_seconds gauge\n");
    for (endpoint, skew) in skews {
        let _ = writeln!(
            out,
            "stopcaster_clock_skew_seconds{{endpoint=\"{}\"}} {skew}",
            label(endpoint)
        );
    }
}

/// A Prometheus label value, escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        m.job_finished("succeeded");
        m.job_finished("succeeded");
        m.api_call(
            &CallOutcome::Stopped {
                request_id: "R".into(),
                http_status: 200,
            },
            Duration::from_millis(30),
        );
        let text = m.render(
            3,
            &[("prod".to_owned(), "SignatureDoesNotMatch".to_owned())],
            &[(
                "live".to_owned(),
                Held {
                    reason: "say \"hi\"\n\u{1b}".into(),
                    by: "alice via cli (h)".into(),
                    until: None,
                    until_at: None,
                },
            )],
        );
        assert!(text.contains(
            "stopcaster_account_paused{account=\"live\",code=\"Operator.Paused\",paused_by=\"alice via cli (h)\",reason=\"say \\\"hi\\\"\\\\x0a\\\\x1b\",until=\"\"} 1"
        ), "{text}");
        assert!(text.contains(
            "stopcaster_account_paused{account=\"prod\",code=\"SignatureDoesNotMatch\"} 1"
        ));
        assert!(
            text.contains("stopcaster_jobs_total{status=\"succeeded\"} 2"),
            "{text}"
        );
        assert!(text.contains("stopcaster_attempts_total{outcome=\"ok\",code=\"\"} 1"));
        assert!(text.contains("stopcaster_api_latency_seconds_bucket{le=\"0.025\"} 0"));
        assert!(text.contains("stopcaster_api_latency_seconds_bucket{le=\"0.05\"} 1"));
        assert!(text.contains("stopcaster_jobs_in_flight 3"));
        assert!(
            text.contains("stopcaster_jobs_total{status=\"failed\"} 0"),
            "every final status from the start: {text}"
        );
        m.set_scheduled(7);
        m.call_lateness(Duration::from_millis(30));
        let text = m.render(0, &[], &[]);
        assert!(text.contains("stopcaster_scheduled_jobs 7"), "{text}");
        assert!(
            text.contains("stopcaster_oldest_pending_seconds 0.000"),
            "{text}"
        );
        m.set_oldest_pending(Some(Duration::from_millis(61_250)));
        let later = m.render(0, &[], &[]);
        assert!(
            later.contains("stopcaster_oldest_pending_seconds 61.250"),
            "{later}"
        );
        assert!(text.contains("stopcaster_call_lateness_seconds_bucket{le=\"0.025\"} 0"));
        assert!(text.contains("stopcaster_call_lateness_seconds_bucket{le=\"0.05\"} 1"));
        assert!(text.contains("stopcaster_call_lateness_seconds_count 1"));
        m.quota("prod", 10, 4);
        let text = m.render(0, &[], &[]);
        assert!(
            text.contains("stopcaster_quota_limit{account=\"prod\"} 10"),
            "{text}"
        );
        assert!(text.contains("stopcaster_quota_remaining{account=\"prod\"} 4"));
        let mut out = String::new();
        render_clock_skews(&mut out, &[("http://x".to_owned(), 1200)]);
        assert!(out.contains("stopcaster_clock_skew_seconds{endpoint=\"http://x\"} 1200"));
    }
}
