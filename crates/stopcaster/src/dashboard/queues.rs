//! The broker side of the dashboard: queue depths (passive declares over one kept
//! connection), and the dead-letter queue through `crate::dead_letters`, one listing or replay
//! at a time (a listing holds the messages it reads until it hands them back, so a replay
//! running meanwhile would not see them).

use std::time::{Duration, Instant};

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde::Serialize;
use tokio::sync::Mutex;

use crate::broker::{self, Names};
use crate::dead_letters::{self, DeadLetter, Selection};

/// How long a listing of the dead-letter queue is reused: live refreshes of several open
/// pages then read the queue at most every few seconds (a listing holds the messages it reads
/// for a moment, and a `dead-letters replay` run meanwhile would not see them).
const LIST_TTL: Duration = Duration::from_secs(5);
/// The queue depths are one part of the overview: a broker that does not answer soon is
/// reported rather than waited for.
const TIMEOUT: Duration = Duration::from_secs(2);
/// A listing reads every dead letter.
const LIST_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) struct Broker {
    url: String,
    pub names: Names,
    connection: Mutex<Option<lapin::Connection>>,
    /// The confirm channel `POST /api/jobs` publishes on, over its own connection.
    publisher: Mutex<Option<(lapin::Connection, lapin::Channel)>>,
    dead_letters: Mutex<Option<(Instant, Vec<DeadLetter>)>>,
}

/// A queue's depth: messages ready for delivery and consumers attached.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct QueueDepth {
    pub queue: String,
    /// `None`: the queue does not exist (nothing declared it under this prefix yet).
    pub ready: Option<u32>,
    pub consumers: Option<u32>,
}

impl Broker {
    pub(crate) fn new(url: String, names: Names) -> Self {
        Self {
            url,
            names,
            connection: Mutex::new(None),
            publisher: Mutex::new(None),
            dead_letters: Mutex::new(None),
        }
    }

    /// Depths of `P.jobs` and `P.dead`. The error is a sentence for the page: it never
    /// includes the broker URL (which may hold a password).
    pub(crate) async fn depths(&self) -> Result<Vec<QueueDepth>, String> {
        match tokio::time::timeout(TIMEOUT, self.depths_inner()).await {
            Ok(Ok(d)) => Ok(d),
            Ok(Err(e)) => {
                *self.connection.lock().await = None;
                Err(format!("RabbitMQ: {e}"))
            }
            Err(_) => {
                *self.connection.lock().await = None;
                Err(format!("RabbitMQ did not answer within {TIMEOUT:?}"))
            }
        }
    }

    async fn depths_inner(&self) -> Result<Vec<QueueDepth>, String> {
        let mut guard = self.connection.lock().await;
        if !guard.as_ref().is_some_and(|c| c.status().connected()) {
            let c = broker::connect(&self.url, "stopcaster dashboard")
                .await
                .map_err(|e| describe_broker_error(&e))?;
            *guard = Some(c);
        }
        let connection = guard.as_ref().expect("connected above");
        let mut depths = Vec::new();
        for queue in [&self.names.jobs, &self.names.dead] {
            // A passive declare of a missing queue closes its channel: one channel each.
            let channel = connection
                .create_channel()
                .await
                .map_err(|e| describe_lapin_error(&e))?;
            let declared = channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await;
            match declared {
                Ok(q) => {
                    depths.push(QueueDepth {
                        queue: queue.clone(),
                        ready: Some(q.message_count()),
                        consumers: Some(q.consumer_count()),
                    });
                    let _ = channel.close(200, "done".into()).await;
                }
                Err(_) => depths.push(QueueDepth {
                    queue: queue.clone(),
                    ready: None,
                    consumers: None,
                }),
            }
        }
        Ok(depths)
    }

    /// Publishes job messages with confirms on the kept publishing channel (opened, and the
    /// topology declared, at first use or after a failure); one flag per message, true when
    /// confirmed. The error is a sentence without the broker URL.
    pub(crate) async fn publish_jobs(
        &self,
        messages: &[(String, &[u8])],
    ) -> Result<Vec<bool>, String> {
        let channel = {
            let mut guard = self.publisher.lock().await;
            if !guard
                .as_ref()
                .is_some_and(|(c, ch)| c.status().connected() && ch.status().connected())
            {
                let connection = broker::connect(&self.url, "stopcaster dashboard api")
                    .await
                    .map_err(|e| format!("RabbitMQ: {}", describe_broker_error(&e)))?;
                broker::declare_topology(&connection, &self.names)
                    .await
                    .map_err(|e| format!("RabbitMQ: {}", describe_broker_error(&e)))?;
                let channel = broker::confirm_channel(&connection)
                    .await
                    .map_err(|e| format!("RabbitMQ: {}", describe_broker_error(&e)))?;
                *guard = Some((connection, channel));
            }
            guard.as_ref().expect("opened above").1.clone()
        };
        let confirmed = broker::publish_jobs_confirmed(
            &channel,
            &self.names.exchange,
            broker::STOP_ROUTING_KEY,
            messages,
        )
        .await;
        if confirmed.iter().any(|c| !c) {
            // Reopened at the next request.
            *self.publisher.lock().await = None;
        }
        Ok(confirmed)
    }

    /// The dead letters in `P.dead`, oldest first (a listing at most [`LIST_TTL`] old).
    pub(crate) async fn dead_letters(&self) -> Result<Vec<DeadLetter>, String> {
        let mut cache = self.dead_letters.lock().await;
        if let Some((at, letters)) = cache.as_ref()
            && at.elapsed() < LIST_TTL
        {
            return Ok(letters.clone());
        }
        let listed = tokio::time::timeout(LIST_TIMEOUT, dead_letters::list(&self.url, &self.names))
            .await
            .map_err(|_| "RabbitMQ did not answer in time".to_owned())?
            .map_err(|e| describe_dead_letter_error(&e))?;
        *cache = Some((Instant::now(), listed.clone()));
        Ok(listed)
    }

    /// Replays the chosen dead letters (see `crate::dead_letters`); one line per dead letter
    /// handled, and the named jobs that were not in `P.dead`.
    pub(crate) async fn replay(
        &self,
        pool: &sqlx::PgPool,
        selection: &Selection,
        max_attempts: u32,
    ) -> Result<ReplayOutcome, String> {
        // Holding the listing's lock: no listing of ours runs during the replay.
        let mut cache = self.dead_letters.lock().await;
        *cache = None;
        let mut lines = Vec::new();
        let report =
            dead_letters::replay(&self.url, &self.names, pool, selection, max_attempts, |r| {
                lines.push(r.describe())
            })
            .await
            .map_err(|e| describe_dead_letter_error(&e))?;
        Ok(ReplayOutcome {
            replayed: report.replayed.iter().map(|r| r.job_id).collect(),
            lines,
            missing: report.missing,
            without_job_id: report.without_job_id,
        })
    }
}

/// What a replay did, for the page and the API.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ReplayOutcome {
    pub replayed: Vec<uuid::Uuid>,
    pub lines: Vec<String>,
    /// Named jobs with no dead letter in `P.dead` (already replayed, or never dead-lettered).
    pub missing: Vec<uuid::Uuid>,
    /// Chosen dead letters left in place because no job id could be read from them.
    pub without_job_id: usize,
}

fn describe_lapin_error(e: &lapin::Error) -> String {
    // lapin's errors name the failure, not the URL.
    e.to_string()
}

fn describe_broker_error(e: &broker::BrokerError) -> String {
    e.to_string()
}

fn describe_dead_letter_error(e: &dead_letters::DeadLetterError) -> String {
    use std::error::Error as _;
    let mut text = e.to_string();
    if let Some(source) = e.source() {
        text.push_str(": ");
        text.push_str(&source.to_string());
    }
    text
}
