//! Each account's round-trip floor in this process ([`RttFloor`]): how much longer than usual a
//! call's round trip took, which bounds how late it may have reached the server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::maths::RttFloor;

/// The round-trip floors of this process's accounts.
#[derive(Clone, Default)]
pub(super) struct Flights(Arc<Mutex<HashMap<String, RttFloor>>>);

impl Flights {
    /// The excess of a round trip of `rtt` answered at `at` over the account's floor, which it
    /// then updates. Allocates only for an account's first call.
    pub(super) fn excess(&self, account: &str, rtt: Duration, at: Instant) -> Duration {
        let mut floors = self.0.lock().expect("pacer flights poisoned");
        match floors.get_mut(account) {
            Some(floor) => {
                let excess = RttFloor::excess(Some(floor), rtt, at);
                *floor = RttFloor::observe(Some(*floor), rtt, at);
                excess
            }
            None => {
                floors.insert(account.to_owned(), RttFloor::observe(None, rtt, at));
                RttFloor::excess(None, rtt, at)
            }
        }
    }
}
