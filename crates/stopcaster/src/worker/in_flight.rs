//! The job ids this process is working on: a second delivery of a job (a redelivery racing the
//! first, a replay) waits for the first to finish instead of calling in parallel.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::domain::JobId;

/// Job ids being worked on in this process: a second delivery of the same job waits for the
/// first to finish instead of calling in parallel.
#[derive(Clone, Default)]
pub(super) struct InFlight {
    ids: Arc<Mutex<HashSet<JobId>>>,
    released: Arc<Notify>,
}

pub(super) struct InFlightGuard {
    set: InFlight,
    id: JobId,
}

impl InFlight {
    pub(super) async fn claim(&self, id: JobId) -> InFlightGuard {
        loop {
            let released = self.released.notified();
            if self.ids.lock().expect("in-flight set poisoned").insert(id) {
                return InFlightGuard {
                    set: self.clone(),
                    id,
                };
            }
            released.await;
        }
    }

    pub(super) fn len(&self) -> usize {
        self.ids.lock().expect("in-flight set poisoned").len()
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.set
            .ids
            .lock()
            .expect("in-flight set poisoned")
            .remove(&self.id);
        self.set.released.notify_waiters();
    }
}
