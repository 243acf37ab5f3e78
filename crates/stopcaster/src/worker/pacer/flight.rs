//! Each account's round-trip floor in this process ([`RttFloor`]): how much longer than usual a
//! call's round trip took, which bounds how late it may have reached the server; and the recent
//! lateness of its calls ([`JitterWindow`]), from which its margin is learnt; and the pushes
//! this process made to its schedule.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::margin::JitterWindow;
use super::maths::RttFloor;
use super::{Rate, account_entry};

/// The round-trip floors and recent lateness of this process's accounts.
#[derive(Clone, Default)]
pub(super) struct Flights(Arc<Mutex<HashMap<String, Flight>>>);

#[derive(Default)]
struct Flight {
    floor: Option<RttFloor>,
    jitter: JitterWindow,
    /// Every push this process made to the account's schedule, added up.
    pushed: Duration,
}

impl Flights {
    /// The excess of a round trip of `rtt` answered at `at` over the account's floor, which it
    /// then updates; the call's arrival lateness (`late` plus the excess) joins the account's
    /// jitter window, unless no floor was known (the first call's excess is its whole round
    /// trip, not jitter). Allocates only for an account's first call.
    pub(super) fn excess(
        &self,
        account: &str,
        late: Duration,
        rtt: Duration,
        at: Instant,
    ) -> Duration {
        let mut flights = self.0.lock().expect("pacer flights poisoned");
        let flight = account_entry(&mut flights, account);
        let excess = RttFloor::excess(flight.floor.as_ref(), rtt, at);
        if flight.floor.is_some() {
            flight.jitter.observe(late + excess, at);
        }
        flight.floor = Some(RttFloor::observe(flight.floor, rtt, at));
        excess
    }

    /// The pushes this process made to the account's schedule so far, added up: read when a
    /// slot is reserved, so that a late call knows which pushes came after its reservation
    /// (`maths::uncovered`).
    pub(super) fn pushed(&self, account: &str) -> Duration {
        let flights = self.0.lock().expect("pacer flights poisoned");
        flights.get(account).map_or(Duration::ZERO, |f| f.pushed)
    }

    /// Counts a push of the account's schedule.
    pub(super) fn add_pushed(&self, account: &str, by: Duration) {
        let mut flights = self.0.lock().expect("pacer flights poisoned");
        account_entry(&mut flights, account).pushed += by;
    }

    /// The account's configured rate with the margin learnt from its recent jitter (never
    /// under the configured one).
    pub(super) fn rate(&self, account: &str, configured: Rate) -> Rate {
        let flights = self.0.lock().expect("pacer flights poisoned");
        let margin = flights.get(account).map_or(configured.margin, |f| {
            f.jitter.margin(configured.margin, Instant::now())
        });
        Rate {
            margin,
            ..configured
        }
    }
}
