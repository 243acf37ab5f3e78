//! The stand-in's state shared by every connection and by the handle: identities, the studios,
//! the throttle, the call log, and the settings tests change while it runs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::identity::Identity;
use crate::metadata::Metadata;
use crate::protocol;
use crate::state::{self, CallRecord, State};
use crate::{CallLogEntry, FakeLiveConfig, Stats};

/// Maps the monotonic instants the throttle decides on to wall-clock times for the log, so the
/// log's timestamps show exactly the spacing the throttle saw, whatever NTP does meanwhile.
#[derive(Debug)]
pub(super) struct Clock {
    origin: Instant,
    origin_wall: OffsetDateTime,
}

impl Clock {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            origin_wall: OffsetDateTime::now_utc(),
        }
    }

    pub(super) fn offset_ns(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    fn wall(&self, offset_ns: u64) -> OffsetDateTime {
        self.origin_wall + Duration::from_nanos(offset_ns)
    }
}

/// Server state shared by every connection and by [`super::FakeLiveHandle`].
#[derive(Debug)]
pub(crate) struct Shared {
    pub identity: Identity,
    pub(super) oidc_token_file: Option<PathBuf>,
    pub metadata: Metadata,
    pub(super) qps: u32,
    /// Added to the real time: the stand-in's clock (`--clock-offset-s`).
    pub(super) clock_offset: time::Duration,
    fail_rate_bits: AtomicU64,
    latency_ns: AtomicU64,
    pub(super) clock: Clock,
    state: Mutex<State>,
}

impl Shared {
    pub(crate) fn new(config: FakeLiveConfig) -> Self {
        let shared = Self {
            identity: Identity::new(
                config.access_keys,
                &config.accounts,
                config.ram_roles,
                config.sts_lifetime,
            ),
            oidc_token_file: config.oidc_token_file,
            metadata: Metadata::default(),
            qps: config.qps,
            clock_offset: time::Duration::seconds(config.clock_offset_s),
            fail_rate_bits: AtomicU64::new(0),
            latency_ns: AtomicU64::new(0),
            clock: Clock::new(),
            state: Mutex::new(State::new(config.casters)),
        };
        shared.set_fail_rate(config.fail_rate);
        shared.set_latency(config.latency);
        shared
    }

    /// The state lock. Never held across an await; a panic while holding it leaves consistent
    /// data (every mutation is a single step), so poisoning is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_fail_rate(&self, rate: f64) {
        let rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        self.fail_rate_bits.store(rate.to_bits(), Ordering::Relaxed);
    }

    pub(crate) fn fail_rate(&self) -> f64 {
        f64::from_bits(self.fail_rate_bits.load(Ordering::Relaxed))
    }

    pub(crate) fn set_latency(&self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency_ns.store(ns, Ordering::Relaxed);
    }

    pub(crate) fn latency(&self) -> Duration {
        Duration::from_nanos(self.latency_ns.load(Ordering::Relaxed))
    }

    /// The log as served by `GET /_fake/calls`, optionally filtered.
    pub(crate) fn calls(
        &self,
        caster_id: Option<&str>,
        access_key_id: Option<&str>,
    ) -> Vec<CallLogEntry> {
        let matches = |r: &CallRecord| {
            caster_id.is_none_or(|c| r.caster_id.as_deref() == Some(c))
                && access_key_id.is_none_or(|k| r.access_key_id.as_deref() == Some(k))
        };
        // Copy under the lock, format outside it: the log can be long.
        let records: Vec<CallRecord> = self
            .lock()
            .log
            .iter()
            .filter(|r| matches(r))
            .cloned()
            .collect();
        records.iter().map(|r| self.entry(r)).collect()
    }

    fn entry(&self, r: &CallRecord) -> CallLogEntry {
        CallLogEntry {
            time: stopcaster_live::time::rfc3339_millis(self.clock.wall(r.at_ns)),
            wall_time: stopcaster_live::time::rfc3339_millis(r.wall),
            method: r.method.to_owned(),
            access_key_id: r.access_key_id.as_deref().map(str::to_owned),
            caster_id: r.caster_id.as_deref().map(str::to_owned),
            action: r.action.as_deref().map(str::to_owned),
            http_status: r.http_status,
            code: r.code.map(str::to_owned),
            request_id: protocol::request_id_text(r.request_id),
            nonce: r.nonce.as_deref().map(str::to_owned),
            admitted: r.admitted,
            fault: r.fault.map(str::to_owned),
            account_uid: r.account.as_deref().map(str::to_owned),
            signature: r.signature.to_owned(),
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        // Under the lock: the counting is linear and the log only grows.
        state::stats(&self.lock().log)
    }
}
