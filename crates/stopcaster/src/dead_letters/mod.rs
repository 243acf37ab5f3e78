//! The dead-letter queue `P.dead`, below the commands and the dashboard, which both list and
//! replay through it.
//!
//! Both read `P.dead` through a consumer without auto-ack, at most as many messages as a passive
//! declare counted (a requeued message would otherwise come back and be read forever), or, when
//! it counted 0, until the queue goes quiet, if one `basic.get` shows it was not empty (a quorum
//! queue without a reachable leader is counted 0: [`queue`]). What is not taken is handed back
//! unacknowledged, so it stays in the queue in its place.
//!
//! A replay, per chunk of messages (see `replay::CHUNK`; one message behaves the same): reopen the job row and record the replay (one transaction, left
//! open), publish the original body to `P.jobs` and wait for the broker's confirm, commit, and
//! only then acknowledge the dead letter. A failure at any step leaves the dead letter in
//! `P.dead` and the row as it was (or, after the commit, a harmless extra message), so running
//! the replay again is always safe.

mod letter;
mod queue;
mod replay;

use crate::broker::BrokerError;

pub(crate) use letter::DeadLetter;
pub(crate) use queue::list;
pub(crate) use replay::{ReplayReport, Selection, audit_outcome, preview, replay};

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    // Not transparent: the broker error stays in the source chain, where the one-line error
    // report finds what it says about the server (a timeout, for one).
    #[error("{0}")]
    Broker(#[from] BrokerError),
    /// Most likely the queue does not exist: nothing was ever dead-lettered under this prefix,
    /// or the prefix is wrong.
    #[error("cannot read the queue {queue}")]
    Queue {
        queue: String,
        #[source]
        error: lapin::Error,
    },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The command named no selection, or more than one.
    #[error("{0}")]
    Usage(&'static str),
    #[error("writing the output: {0}")]
    Io(#[from] std::io::Error),
}

impl From<lapin::Error> for DeadLetterError {
    fn from(e: lapin::Error) -> Self {
        DeadLetterError::Broker(BrokerError::Amqp(e))
    }
}
