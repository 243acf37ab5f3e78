//! The plumbing every step of a delivery shares: database statements retried until the hold
//! cap, waits that give way to shutdown, and the two ways processing stops short of a
//! disposition.

use std::time::Duration;

use backon::Retryable as _;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::{Disposition, JobContext, decide};
use crate::store;

/// Why processing stopped before a disposition was reached.
pub(super) enum Interrupt {
    /// Shutdown, or the delivery was held too long while the database was away.
    Requeue,
    /// The database kept refusing a statement until the hold cap.
    Database(sqlx::Error),
}

impl From<Interrupt> for Disposition {
    fn from(i: Interrupt) -> Self {
        match i {
            Interrupt::Requeue => Disposition::Requeue,
            Interrupt::Database(e) => {
                error!(error = %e, "database error at the hold cap; the delivery goes back to the queue");
                Disposition::Requeue
            }
        }
    }
}

/// Shared plumbing of one delivery's steps: database retries bounded by the hold cap, and
/// waits that give way to shutdown.
pub(super) struct Step<'a> {
    pub(super) ctx: &'a JobContext,
    pub(super) shutdown: &'a CancellationToken,
    pub(super) received: Instant,
}

impl Step<'_> {
    pub(super) fn held(&self) -> Duration {
        self.received.elapsed()
    }

    /// Whether waiting `wait` more keeps the delivery within the hold cap.
    pub(super) fn fits(&self, wait: Duration) -> bool {
        decide::fits_hold(self.held(), wait, self.ctx.hold_cap)
    }

    /// Runs a database operation, retrying with backoff while it fails. Gives up (the delivery
    /// goes back to the queue) when the next wait would pass the hold cap; a shutdown does not
    /// stop it, since an outcome already obtained is worth committing within the drain time.
    ///
    /// Errors other than unavailability are retried too: handing such a delivery straight back
    /// would have the broker redeliver it at once, in a tight loop, until its delivery limit
    /// dead-letters it without a row. Held and retried, it costs one slow warning a few seconds.
    pub(super) async fn db<T, F, Fut>(&self, op: F) -> Result<T, Interrupt>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let result = op
            .retry(store::unavailable_backoff())
            .adjust(|_, wait| wait.filter(|w| self.fits(*w)))
            .notify(|e, wait| {
                if store::is_transient(e) {
                    self.ctx.metrics.set_database_up(false);
                    warn!(error = %e, retry_in = ?wait, "database unavailable");
                } else {
                    error!(error = %e, retry_in = ?wait, "database refused a statement; retrying");
                }
            })
            .await;
        match result {
            Ok(v) => {
                self.ctx.metrics.set_database_up(true);
                Ok(v)
            }
            Err(e) if store::is_transient(&e) => {
                self.ctx.metrics.set_database_up(false);
                warn!(error = %e, "database still unavailable at the hold cap; requeueing");
                Err(Interrupt::Requeue)
            }
            Err(e) => Err(Interrupt::Database(e)),
        }
    }

    /// Sleeps `d` unless shutdown comes first.
    pub(super) async fn sleep(&self, d: Duration) -> Result<(), Interrupt> {
        self.shutdown
            .run_until_cancelled(tokio::time::sleep(d))
            .await
            .ok_or(Interrupt::Requeue)
    }
}
