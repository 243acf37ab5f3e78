//! Noticing an endpoint's return between probes. An account paused because its calls could not
//! reach the endpoint (a transport code: refused connection, DNS, TLS, timeout) probes with a
//! backoff up to 60 s apart, so a return would be noticed up to a minute late. Meanwhile, every
//! [`CHECK_EVERY`], this worker's one check asks whether the endpoints answer HTTP at all
//! (`EndpointClients::reachable`: `GET /` without parameters, no API call, no quota, no call
//! counted). When it does, each such account's next probe is brought forward to now
//! ([`Pauses::probe_now`]) and its parked jobs are released, so that one of them comes back
//! from the queue at once to make it.
//!
//! Not for 5xx codes (`ServiceUnavailable`, ...): that endpoint answers HTTP all along, so the
//! check says nothing and the probes keep their backoff. Likewise, an account is brought
//! forward once per return (until a check fails again): an endpoint that answers `GET /` while
//! its calls keep timing out is probed on the backoff, not every second.
//!
//! The check asks every endpoint in use (a worker's jobs may go to several regions' endpoints)
//! and counts a return only when all answer: an endpoint still down keeps its accounts' probes
//! on their backoff, at worst a little later for an account that only used the other one.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::job::JobContext;
use crate::store;

/// How often the endpoint is checked while an account is paused with a transport code.
pub(super) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Whether a pause's code says the endpoint could not be reached at all.
pub(super) fn is_transport(code: &str) -> bool {
    matches!(
        code,
        "Transport.Connect" | "Transport.Dns" | "Transport.Tls" | "Transport.Timeout"
    )
}

/// The accounts whose probe was brought forward since the endpoint was last seen unreachable.
#[derive(Debug, Default)]
pub(super) struct Returns {
    forwarded: BTreeSet<String>,
}

impl Returns {
    /// After a check: the accounts (of `paused`, those paused with a transport code now) whose
    /// probe to bring forward. None while unreachable (and every one may be brought forward at
    /// the next return); once reachable, those not brought forward yet since.
    pub(super) fn due_probes(&mut self, paused: &[String], reachable: bool) -> Vec<String> {
        self.forwarded.retain(|a| paused.contains(a));
        if !reachable {
            self.forwarded.clear();
            return Vec::new();
        }
        paused
            .iter()
            .filter(|a| !self.forwarded.contains(*a))
            .cloned()
            .collect()
    }

    /// `account`'s probe was brought forward: not again until the endpoint fails a check.
    pub(super) fn forwarded(&mut self, account: String) {
        self.forwarded.insert(account);
    }
}

/// Runs until `shutdown`: idle while no account is paused with a transport code, checking
/// every [`CHECK_EVERY`] while one is. `wake_stager` hands released parked jobs back at once.
pub(super) async fn run(
    ctx: Arc<JobContext>,
    wake_stager: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut returns = Returns::default();
    loop {
        let idle = ctx.pauses.until_paused_with(is_transport);
        if shutdown.run_until_cancelled(idle).await.is_none() {
            break;
        }
        let paused: Vec<String> = ctx
            .pauses
            .paused()
            .into_iter()
            .filter(|(_, code)| is_transport(code))
            .map(|(account, _)| account)
            .collect();
        let Some(reachable) = shutdown.run_until_cancelled(ctx.clients.reachable()).await else {
            break;
        };
        for account in returns.due_probes(&paused, reachable) {
            if ctx.pauses.probe_now(&account) {
                info!(
                    account,
                    "the endpoint answers again: probing the paused account now"
                );
                release(&ctx, &account, &wake_stager).await;
                returns.forwarded(account);
            }
        }
        let pause = tokio::time::sleep(CHECK_EVERY);
        if shutdown.run_until_cancelled(pause).await.is_none() {
            break;
        }
    }
    debug!("reachability check stopped");
}

/// Ends the park of `account`'s jobs, so that one is back to make the probe now rather than
/// at the old probe time. Bookkeeping: on failure they come back at their park's end.
async fn release(ctx: &JobContext, account: &str, wake_stager: &Notify) {
    match store::release_parked(&ctx.pool, account).await {
        Ok(0) => {}
        Ok(_) => wake_stager.notify_one(),
        Err(err) => {
            warn!(error = %err, "could not release the account's parked jobs; they come back at their park's end");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn transport_codes_only() {
        for code in [
            "Transport.Connect",
            "Transport.Dns",
            "Transport.Tls",
            "Transport.Timeout",
        ] {
            assert!(is_transport(code), "{code}");
        }
        for code in [
            "ServiceUnavailable",
            "InternalError",
            "UnexpectedResponse",
            "Transport.Lost",
            "SignatureDoesNotMatch",
        ] {
            assert!(!is_transport(code), "{code}");
        }
    }

    #[test]
    fn each_account_is_brought_forward_once_per_return() {
        let mut r = Returns::default();
        let paused = names(&["a", "b"]);
        assert!(r.due_probes(&paused, false).is_empty(), "still down");
        assert_eq!(r.due_probes(&paused, true), paused, "back: both");
        r.forwarded("a".into());
        // `b`'s probe was in flight: asked again at the next check; `a` is not.
        assert_eq!(r.due_probes(&paused, true), names(&["b"]));
        r.forwarded("b".into());
        assert!(
            r.due_probes(&paused, true).is_empty(),
            "reachable all along"
        );
        // Down again, then back: both once more.
        assert!(r.due_probes(&paused, false).is_empty());
        assert_eq!(r.due_probes(&paused, true), paused);
        r.forwarded("a".into());
        // `a` resumed, then paused again while the endpoint stayed reachable: a fresh pause.
        assert_eq!(r.due_probes(&names(&["b"]), true), names(&["b"]));
        assert_eq!(r.due_probes(&paused, true), paused);
    }
}
