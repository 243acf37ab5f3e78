//! Wrong passwords limited per client address (OWASP's advice against online guessing): a few
//! free failures, then the address is locked out for a time that doubles with each further
//! failure, up to a ceiling; a success from the address forgets it. While locked out nothing
//! is checked (the right password too is refused), so guesses cost the attacker the lockout
//! and not us a comparison.
//!
//! Pure and clock-driven (the caller passes `now`), so every rule is unit-tested without
//! waiting. Memory is bounded: at most [`Policy::max_tracked`] addresses, the longest quiet
//! ones evicted first. An IPv6 client is tracked by its /64, the block a single host usually
//! holds, so that it cannot rotate through addresses to escape its lockout.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The numbers of the limiter.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    /// Failures allowed before the first lockout (typos, a stale saved password).
    pub free_failures: u32,
    /// The first lockout; each further failure doubles it.
    pub first_lockout: Duration,
    /// The longest lockout.
    pub max_lockout: Duration,
    /// An address with no failure for this long starts afresh (a new burst).
    pub forget_after: Duration,
    /// Addresses tracked at once.
    pub max_tracked: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            free_failures: 5,
            first_lockout: Duration::from_secs(1),
            max_lockout: Duration::from_secs(300),
            forget_after: Duration::from_secs(900),
            max_tracked: 10_000,
        }
    }
}

/// What is known of one client's recent failures.
#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    locked_until: Option<Instant>,
    last_failure: Instant,
}

/// What a failure did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    /// Failures of the current burst, this one included.
    pub failures: u32,
    /// The first failure of a burst: the one that is logged.
    pub first_of_burst: bool,
    /// The lockout this failure started, if any.
    pub lockout: Option<Duration>,
}

/// The failures of each client address.
#[derive(Debug)]
pub(crate) struct Limiter {
    policy: Policy,
    entries: HashMap<IpAddr, Entry>,
}

/// The key an address is tracked by: IPv4 as is, IPv6 by its /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
    }
}

impl Limiter {
    pub(crate) fn new(policy: Policy) -> Self {
        Limiter {
            policy,
            entries: HashMap::new(),
        }
    }

    /// `Err(wait)` while `ip` is locked out: the request is refused without looking at its
    /// password, and may come back after `wait`.
    pub(crate) fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        match self
            .entries
            .get(&client_key(ip))
            .and_then(|e| e.locked_until)
        {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a wrong password from `ip`.
    pub(crate) fn fail(&mut self, ip: IpAddr, now: Instant) -> Failure {
        let key = client_key(ip);
        let forget = self.policy.forget_after;
        if self
            .entries
            .get(&key)
            .is_some_and(|e| now.saturating_duration_since(e.quiet_since()) >= forget)
        {
            self.entries.remove(&key);
        }
        if !self.entries.contains_key(&key) {
            self.make_room(now);
        }
        let entry = self.entries.entry(key).or_insert(Entry {
            failures: 0,
            locked_until: None,
            last_failure: now,
        });
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        let lockout = lockout_after(&self.policy, entry.failures);
        entry.locked_until = lockout.map(|d| now + d);
        Failure {
            failures: entry.failures,
            first_of_burst: entry.failures == 1,
            lockout,
        }
    }

    /// Records a right password from `ip`: its failures are forgotten. Returns how many there
    /// were (worth a line in the log when not zero).
    pub(crate) fn succeed(&mut self, ip: IpAddr) -> u32 {
        self.entries
            .remove(&client_key(ip))
            .map_or(0, |e| e.failures)
    }

    /// Addresses tracked now.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.entries.len()
    }

    /// Keeps one place free for a new address: forgets the quiet ones, then if still full the
    /// one quiet the longest.
    fn make_room(&mut self, now: Instant) {
        if self.entries.len() < self.policy.max_tracked {
            return;
        }
        let forget = self.policy.forget_after;
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.quiet_since()) < forget);
        while self.entries.len() >= self.policy.max_tracked.max(1) {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.quiet_since())
                .map(|(k, _)| *k)
            else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }
}

impl Entry {
    /// When the address last did anything that counts: its last failure or, later, the end of
    /// its lockout.
    fn quiet_since(&self) -> Instant {
        self.locked_until
            .map_or(self.last_failure, |u| u.max(self.last_failure))
    }
}

/// The lockout the `failures`-th failure of a burst starts: none within the free ones, then
/// the first lockout doubled with each failure, up to the ceiling.
fn lockout_after(policy: &Policy, failures: u32) -> Option<Duration> {
    let beyond = failures.checked_sub(policy.free_failures)?.checked_sub(1)?;
    let factor = 2u32.checked_pow(beyond.min(31)).unwrap_or(u32::MAX);
    Some(
        policy
            .first_lockout
            .checked_mul(factor)
            .unwrap_or(policy.max_lockout)
            .min(policy.max_lockout),
    )
}

/// A `Retry-After` value: whole seconds, rounded up, at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let s = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    s.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn five_free_failures_then_doubling_lockouts_up_to_the_ceiling() {
        let p = Policy::default();
        let got: Vec<Option<u64>> = (1..=16)
            .map(|n| lockout_after(&p, n).map(|d| d.as_secs()))
            .collect();
        assert_eq!(
            got,
            [
                None,
                None,
                None,
                None,
                None,
                Some(1),
                Some(2),
                Some(4),
                Some(8),
                Some(16),
                Some(32),
                Some(64),
                Some(128),
                Some(256),
                Some(300),
                Some(300)
            ]
        );
        assert_eq!(lockout_after(&p, u32::MAX), Some(secs(300)));
    }

    #[test]
    fn locked_out_until_the_time_is_over_and_per_address() {
        let mut l = Limiter::new(Policy::default());
        let t0 = Instant::now();
        for n in 1..=5 {
            let f = l.fail(A, t0);
            assert_eq!(f.lockout, None, "failure {n}");
            assert_eq!(f.first_of_burst, n == 1);
            assert_eq!(l.check(A, t0), Ok(()));
        }
        assert_eq!(l.fail(A, t0).lockout, Some(secs(1)));
        assert_eq!(l.check(A, t0), Err(secs(1)));
        assert_eq!(
            l.check(A, t0 + Duration::from_millis(400)),
            Err(Duration::from_millis(600))
        );
        assert_eq!(l.check(B, t0), Ok(()), "another address is not locked");
        let t1 = t0 + secs(1);
        assert_eq!(l.check(A, t1), Ok(()));
        // The next failure of the burst locks for longer.
        let f = l.fail(A, t1);
        assert_eq!((f.failures, f.first_of_burst), (7, false));
        assert_eq!(l.check(A, t1), Err(secs(2)));
    }

    #[test]
    fn a_success_forgets_the_failures() {
        let mut l = Limiter::new(Policy::default());
        let t0 = Instant::now();
        for _ in 0..4 {
            l.fail(A, t0);
        }
        assert_eq!(l.succeed(A), 4);
        assert_eq!(l.succeed(A), 0);
        let f = l.fail(A, t0);
        assert!(f.first_of_burst);
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn a_quiet_address_starts_a_new_burst() {
        let mut l = Limiter::new(Policy::default());
        let t0 = Instant::now();
        for _ in 0..8 {
            l.fail(A, t0);
        }
        // Locked 8 s from t0; quiet 15 minutes after that.
        let later = t0 + secs(8) + secs(900);
        let f = l.fail(A, later);
        assert_eq!((f.failures, f.first_of_burst, f.lockout), (1, true, None));
    }

    #[test]
    fn memory_is_bounded_and_the_longest_quiet_go_first() {
        let mut l = Limiter::new(Policy {
            max_tracked: 3,
            ..Policy::default()
        });
        let t0 = Instant::now();
        let ip = |n: u8| IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, n));
        for n in 0..3 {
            l.fail(ip(n), t0 + secs(u64::from(n)));
        }
        for _ in 0..6 {
            l.fail(ip(0), t0 + secs(3));
        }
        // ip(1) has been quiet the longest now.
        l.fail(ip(9), t0 + secs(4));
        assert_eq!(l.tracked(), 3);
        assert!(
            l.check(ip(0), t0 + secs(3)).is_err(),
            "the locked one stays"
        );
        assert!(
            l.fail(ip(1), t0 + secs(5)).first_of_burst,
            "ip(1) was evicted"
        );
        for n in 0..200 {
            l.fail(ip(n), t0 + secs(6));
        }
        assert_eq!(l.tracked(), 3);
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let mut l = Limiter::new(Policy::default());
        let t0 = Instant::now();
        for n in 0..6u16 {
            let ip = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, n));
            l.fail(ip, t0);
        }
        let other_host = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert!(l.check(other_host, t0).is_err());
        let other_net = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(l.check(other_net, t0), Ok(()));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(client_key(mapped), A);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(secs(300)), 300);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
