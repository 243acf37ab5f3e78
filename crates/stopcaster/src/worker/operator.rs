//! Operators' pauses, read from Postgres (`stopcaster_operator_pauses`) every [`POLL_EVERY`]
//! into this worker's pause gate, so that every worker honours `stopcaster pause` (and the
//! dashboard's button) within a second.
//!
//! Why a poll rather than LISTEN/NOTIFY: a pause with `--until` lifts by itself, and nothing
//! notifies when a time passes, so a timer is needed anyway; a listener also needs a dedicated
//! connection, its reconnects and a full read after each reconnect. Reading a table that is
//! almost always empty four times a second costs each worker next to nothing and bounds the
//! delay by the period plus one query, well inside the second. While the database cannot be
//! read, the last reading stands: a paused account stays paused.
//!
//! When a pause is lifted (resumed, or its `until` passed), the account's parked jobs are
//! released to the queue at once rather than at the end of their park.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::job::JobContext;
use super::pause::Held;
use crate::store::{self, OperatorPause};

/// How often the table is read.
pub(super) const POLL_EVERY: Duration = Duration::from_millis(250);

/// A reading as the gate holds it: each `until` also on this worker's clock.
pub(super) fn held_from(
    rows: Vec<OperatorPause>,
    now: OffsetDateTime,
    now_at: Instant,
) -> BTreeMap<String, Held> {
    rows.into_iter()
        .map(|p| {
            let until_at = p.until.map(|u| {
                let left =
                    Duration::try_from((u - now).max(time::Duration::ZERO)).unwrap_or_default();
                now_at + left
            });
            let by = format!("{} via {} ({})", p.paused_by, p.source, p.origin);
            (
                p.account,
                Held {
                    reason: p.reason,
                    by,
                    until: p.until,
                    until_at,
                },
            )
        })
        .collect()
}

/// Runs until `shutdown`, reading at once and then every [`POLL_EVERY`].
pub(super) async fn run(ctx: Arc<JobContext>, shutdown: CancellationToken) {
    let mut failing = false;
    loop {
        read_once(&ctx, &mut failing).await;
        let pause = tokio::time::sleep(POLL_EVERY);
        if shutdown.run_until_cancelled(pause).await.is_none() {
            return;
        }
    }
}

/// One reading into the gate; `failing` says whether the last one failed (logged once).
pub(super) async fn read_once(ctx: &JobContext, failing: &mut bool) {
    {
        match store::operator_pauses(&ctx.pool).await {
            Ok(rows) => {
                if *failing {
                    tracing::info!("operators' pauses readable again");
                    *failing = false;
                }
                let fresh = held_from(rows, OffsetDateTime::now_utc(), Instant::now());
                let changes = ctx.pauses.hold(fresh);
                for account in &changes.lifted {
                    match store::release_parked(&ctx.pool, account).await {
                        Ok(n) if n > 0 => ctx.wake_stager.notify_one(),
                        Ok(_) => {}
                        Err(e) => tracing::debug!(error = %e, "could not release parked jobs"),
                    }
                }
            }
            Err(e) if !*failing => {
                *failing = true;
                tracing::warn!(error = %e, "cannot read the operators' pauses; the last reading stands");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_keeps_who_why_and_until_on_the_local_clock() {
        let now = OffsetDateTime::now_utc();
        let at = Instant::now();
        let row = |account: &str, until| OperatorPause {
            account: account.into(),
            reason: "key leaked".into(),
            paused_by: "alice".into(),
            source: "cli".into(),
            origin: "host-1".into(),
            until,
            paused_at: now,
        };
        let held = held_from(
            vec![
                row("a", Some(now + time::Duration::seconds(5))),
                row("b", None),
            ],
            now,
            at,
        );
        assert_eq!(held["a"].until_at, Some(at + Duration::from_secs(5)));
        assert_eq!(held["a"].by, "alice via cli (host-1)");
        assert_eq!(held["b"].until_at, None);
        assert_eq!(held["b"].reason, "key leaked");
    }
}
