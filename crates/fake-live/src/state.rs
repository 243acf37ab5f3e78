//! The stand-in's memory, as plain data with no locks and no I/O: studio states, seen nonces,
//! each account's sliding throttle window, the fault script and the call log. The server wraps one
//! [`State`] in a mutex, so every rule here is a deterministic, unit-tested function.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use super::protocol::Refusal;
use super::{Fault, Stats, StudioState};

/// Everything the server mutates per call, behind its one lock.
#[derive(Debug)]
pub(crate) struct State {
    pub studios: Studios,
    pub nonces: NonceCache,
    pub throttle: Throttle,
    pub faults: VecDeque<Fault>,
    pub log: Vec<CallRecord>,
}

impl State {
    pub(crate) fn new(casters: Option<HashMap<String, StudioState>>) -> Self {
        Self {
            studios: Studios::new(casters),
            nonces: NonceCache::default(),
            throttle: Throttle::default(),
            faults: VecDeque::new(),
            log: Vec::new(),
        }
    }
}

/// What stopping a studio came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopResult {
    Stopped,
    AlreadyStopped,
    NotFound,
}

/// Studio states. Without a configured map the world is open: any id is a running studio the
/// first time it is seen, so demos and load tests need no setup.
#[derive(Debug)]
pub(crate) struct Studios {
    states: HashMap<String, StudioState>,
    closed_world: bool,
}

impl Studios {
    pub(crate) fn new(casters: Option<HashMap<String, StudioState>>) -> Self {
        match casters {
            Some(states) => Self {
                states,
                closed_world: true,
            },
            None => Self {
                states: HashMap::new(),
                closed_world: false,
            },
        }
    }

    pub(crate) fn stop(&mut self, id: &str) -> StopResult {
        match self.states.get_mut(id) {
            Some(state @ StudioState::Running) => {
                *state = StudioState::Stopped;
                StopResult::Stopped
            }
            Some(StudioState::Stopped) => StopResult::AlreadyStopped,
            None if self.closed_world => StopResult::NotFound,
            None => {
                self.states.insert(id.to_owned(), StudioState::Stopped);
                StopResult::Stopped
            }
        }
    }

    pub(crate) fn set(&mut self, id: &str, state: StudioState) {
        self.states.insert(id.to_owned(), state);
    }

    pub(crate) fn get(&self, id: &str) -> Option<StudioState> {
        self.states.get(id).copied()
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<String, StudioState> {
        self.states.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// Whether `id` is a CasterId the API accepts: 1 to 64 of `A-Z a-z 0-9 - _`.
pub(crate) fn well_formed_caster_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// How long past its own Timestamp a nonce is remembered. A request is only accepted while its
/// Timestamp is within 15 minutes of the clock, so once that has passed a replay is refused as
/// expired anyway; the extra minute covers a clock that steps back a little.
const NONCE_MEMORY_SECS: i64 = 15 * 60 + 60;

/// Nonces already used, per AccessKeyId. Each is kept as a 128-bit keyed hash of
/// (AccessKeyId, nonce), so memory per call is small and independent of what clients send; a
/// false "already used" needs a 128-bit collision. Entries leave through a min-heap of expiry
/// times, so pruning costs O(log n) per call and memory is bounded by the call rate times
/// [`NONCE_MEMORY_SECS`] plus 15 minutes.
#[derive(Debug, Default)]
pub(crate) struct NonceCache {
    seen: HashMap<u128, i64>,
    expiries: BinaryHeap<Reverse<(i64, u128)>>,
    hashers: (
        std::collections::hash_map::RandomState,
        std::collections::hash_map::RandomState,
    ),
}

impl NonceCache {
    /// Records the nonce and returns true, or returns false if this key already used it.
    /// `request_ts` is the request's own Timestamp and `now` the server clock (Unix seconds).
    pub(crate) fn check_and_insert(
        &mut self,
        key: &str,
        nonce: &str,
        request_ts: i64,
        now: i64,
    ) -> bool {
        self.prune(now);
        let h = (u128::from(self.hashers.0.hash_one((key, nonce))) << 64)
            | u128::from(self.hashers.1.hash_one((key, nonce)));
        if self.seen.contains_key(&h) {
            return false;
        }
        let expiry = request_ts + NONCE_MEMORY_SECS;
        self.seen.insert(h, expiry);
        self.expiries.push(Reverse((expiry, h)));
        true
    }

    fn prune(&mut self, now: i64) {
        while let Some(Reverse((expiry, h))) = self.expiries.peek().copied() {
            if expiry >= now {
                break;
            }
            self.expiries.pop();
            self.seen.remove(&h);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }
}

/// Sliding window per throttled principal (the server keys it by account UID, as Alibaba
/// counts): a call is admitted iff fewer than `qps` admitted calls of that key fall in
/// `(now - 1 s, now]`. Only admitted calls are kept, at most `qps` per key, so a caller
/// hammering the endpoint cannot grow it.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    windows: HashMap<String, VecDeque<Instant>>,
}

const WINDOW: Duration = Duration::from_secs(1);

impl Throttle {
    pub(crate) fn admit(&mut self, key: &str, now: Instant, qps: u32) -> bool {
        let window = match self.windows.get_mut(key) {
            Some(w) => w,
            None => self.windows.entry(key.to_owned()).or_default(),
        };
        while let Some(&oldest) = window.front() {
            if now.saturating_duration_since(oldest) >= WINDOW {
                window.pop_front();
            } else {
                break;
            }
        }
        if window.len() < qps as usize {
            window.push_back(now);
            true
        } else {
            false
        }
    }

    /// What `key`'s window leaves at `now` (read just after [`Throttle::admit`]): the calls
    /// that remain, and how long until one is admitted again (zero when one would be now).
    pub(crate) fn remaining(&self, key: &str, now: Instant, qps: u32) -> (u32, Duration) {
        let in_window: Vec<Instant> = self
            .windows
            .get(key)
            .map(|w| {
                w.iter()
                    .copied()
                    .filter(|t| now.saturating_duration_since(*t) < WINDOW)
                    .collect()
            })
            .unwrap_or_default();
        let used = u32::try_from(in_window.len()).unwrap_or(u32::MAX);
        if used < qps {
            return (qps - used, Duration::ZERO);
        }
        // The oldest call that must leave before another fits.
        let blocking = in_window[(used - qps) as usize];
        (
            0,
            WINDOW.saturating_sub(now.saturating_duration_since(blocking)),
        )
    }
}

/// One call as the log keeps it: compact, since the whole log stays in memory for the tests.
#[derive(Clone, Debug)]
pub(crate) struct CallRecord {
    /// Nanoseconds since the server's clock origin (see `server::Clock`): the windows.
    pub at_ns: u64,
    /// The wall clock read at arrival (`CallLogEntry::wall_time`).
    pub wall: time::OffsetDateTime,
    pub method: &'static str,
    pub access_key_id: Option<Box<str>>,
    pub caster_id: Option<Box<str>>,
    pub action: Option<Box<str>>,
    /// None when the connection was closed without an answer.
    pub http_status: Option<u16>,
    pub code: Option<&'static str>,
    pub request_id: uuid::Uuid,
    pub nonce: Option<Box<str>>,
    /// Passed the throttle (counts in its key's window).
    pub admitted: bool,
    pub fault: Option<&'static str>,
    /// The caller's account UID, once its key checked out.
    pub account: Option<Box<str>>,
    /// How it was signed: `v3` (`ACS3-HMAC-SHA256`) or `v1` (the RPC signature).
    pub signature: &'static str,
}

/// The counters of `GET /_fake/stats` over the whole log.
pub(crate) fn stats(log: &[CallRecord]) -> Stats {
    let mut stats = Stats::default();
    let mut admitted: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut by_account: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in log {
        stats.total += 1;
        if r.http_status == Some(200) {
            stats.ok += 1;
        }
        if r.http_status.is_none() {
            stats.dropped += 1;
        }
        if let Some(code) = r.code {
            if code == Refusal::Throttled.code() {
                stats.throttled += 1;
            }
            *stats.by_code.entry(code.to_owned()).or_default() += 1;
        }
        if let Some(fault) = r.fault {
            *stats.by_fault.entry(fault.to_owned()).or_default() += 1;
        }
        if r.admitted {
            if let Some(key) = &r.access_key_id {
                admitted.entry(key.to_string()).or_default().push(r.at_ns);
            }
            if let Some(account) = &r.account {
                by_account
                    .entry(account.to_string())
                    .or_default()
                    .push(r.at_ns);
            }
        }
    }
    for (key, mut times) in admitted {
        times.sort_unstable();
        stats
            .admitted_by_key
            .insert(key.clone(), times.len() as u64);
        let max = max_in_any_window(&times, 1_000_000_000);
        stats.max_in_any_1s_window.insert(key, max as u64);
    }
    for (account, mut times) in by_account {
        times.sort_unstable();
        stats
            .admitted_by_account
            .insert(account.clone(), times.len() as u64);
        let max = max_in_any_window(&times, 1_000_000_000);
        stats
            .max_in_any_1s_window_by_account
            .insert(account, max as u64);
    }
    stats
}

/// The most admitted calls of one key that fall within any window shorter than one second:
/// what the throttle promises never exceeds `qps`. `times` must be sorted.
pub(crate) fn max_in_any_window(times: &[u64], window_ns: u64) -> usize {
    let mut best = 0;
    let mut start = 0;
    for (end, &t) in times.iter().enumerate() {
        while t - times[start] >= window_ns {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_world_studios_run_until_stopped() {
        let mut s = Studios::new(None);
        assert_eq!(s.stop("a"), StopResult::Stopped);
        assert_eq!(s.stop("a"), StopResult::AlreadyStopped);
        assert_eq!(s.get("a"), Some(StudioState::Stopped));
        s.set("a", StudioState::Running);
        assert_eq!(s.stop("a"), StopResult::Stopped);
    }

    #[test]
    fn closed_world_studios_know_only_their_map() {
        let map = HashMap::from([
            ("run".to_owned(), StudioState::Running),
            ("off".to_owned(), StudioState::Stopped),
        ]);
        let mut s = Studios::new(Some(map));
        assert_eq!(s.stop("other"), StopResult::NotFound);
        assert_eq!(s.get("other"), None);
        assert_eq!(s.stop("off"), StopResult::AlreadyStopped);
        assert_eq!(s.stop("run"), StopResult::Stopped);
        assert_eq!(s.snapshot().get("run"), Some(&StudioState::Stopped));
    }

    #[test]
    fn caster_id_shape() {
        assert!(well_formed_caster_id(
            "a2b8e671-2fe5-4642-a2ec-bf93880e1697"
        ));
        assert!(well_formed_caster_id("LIVEPRODUCER_POST-cn-0pp1czt"));
        assert!(well_formed_caster_id(&"x".repeat(64)));
        assert!(!well_formed_caster_id(&"x".repeat(65)));
        assert!(!well_formed_caster_id(""));
        assert!(!well_formed_caster_id("a b"));
        assert!(!well_formed_caster_id("a.b"));
        assert!(!well_formed_caster_id("演播室"));
    }

    #[test]
    fn nonces_are_per_key_and_expire() {
        let mut n = NonceCache::default();
        let t = 1_700_000_000;
        assert!(n.check_and_insert("k1", "n", t, t));
        assert!(!n.check_and_insert("k1", "n", t, t + 5));
        assert!(n.check_and_insert("k2", "n", t, t + 5));
        // Pairs that concatenate alike are still different pairs.
        assert!(n.check_and_insert("k1n", "", t, t));
        assert!(n.check_and_insert("k1", "n2", t, t));
        // Kept for as long as a replay could pass the timestamp check.
        assert!(!n.check_and_insert("k1", "n", t, t + 15 * 60));
        // Forgotten once a replay would be refused as expired anyway.
        let later = t + NONCE_MEMORY_SECS + 1;
        assert!(n.check_and_insert("other", "x", later, later));
        assert_eq!(n.len(), 1);
        assert!(n.check_and_insert("k1", "n", later, later));
    }

    #[test]
    fn throttle_is_a_sliding_window_per_key() {
        let mut th = Throttle::default();
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        assert!(th.admit("a", ms(0), 2));
        assert!(th.admit("a", ms(600), 2));
        assert!(!th.admit("a", ms(700), 2));
        assert!(th.admit("b", ms(700), 2), "other keys are unaffected");
        // (now - 1 s, now]: the call at 0 leaves the window exactly at 1000.
        assert!(!th.admit("a", ms(999), 2));
        assert!(th.admit("a", ms(1000), 2));
        assert!(!th.admit("a", ms(1599), 2));
        assert!(th.admit("a", ms(1600), 2));
        // Refused calls did not count: 1000 and 1600 are the two in the window.
        assert!(!th.admit("a", ms(1999), 2));
        assert!(!th.admit("x", ms(0), 0), "qps 0 admits nothing");
    }

    #[test]
    fn remaining_is_what_the_window_leaves() {
        let mut th = Throttle::default();
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        assert_eq!(th.remaining("a", ms(0), 3), (3, Duration::ZERO));
        assert!(th.admit("a", ms(0), 3));
        assert_eq!(th.remaining("a", ms(0), 3), (2, Duration::ZERO));
        assert!(th.admit("a", ms(200), 3));
        assert!(th.admit("a", ms(300), 3));
        // Full: the call at 0 leaves the window at 1000.
        assert_eq!(
            th.remaining("a", ms(400), 3),
            (0, Duration::from_millis(600))
        );
        assert_eq!(th.remaining("a", ms(1000), 3), (1, Duration::ZERO));
    }

    #[test]
    fn window_maximum() {
        let s = 1_000_000_000;
        assert_eq!(max_in_any_window(&[], s), 0);
        assert_eq!(max_in_any_window(&[0, 1, 2], s), 3);
        assert_eq!(max_in_any_window(&[0, s - 1, s, 2 * s], s), 2);
        assert_eq!(max_in_any_window(&[0, 10, s + 5, s + 6, s + 7], s), 4);
    }
}
