//! `stopcaster enqueue`: turn a list of CasterIds into confirmed job messages, one per studio.

use std::collections::HashSet;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use lapin::options::BasicPublishOptions;
use serde_json::json;

use crate::broker::{self, BrokerError, Names};
use crate::domain::{CasterId, JobId, RegionId, Rejection};

/// The jobs one `enqueue` publishes.
#[derive(Debug)]
pub struct Plan {
    pub batch_id: String,
    pub jobs: Vec<(JobId, CasterId)>,
    pub region: Option<RegionId>,
    /// Ids given more than once (enqueued once).
    pub duplicates: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("invalid CasterId {id:?}: {rejection}")]
    InvalidCasterId { id: String, rejection: Rejection },
    #[error("invalid region: {0}")]
    InvalidRegion(Rejection),
    #[error("no CasterIds given")]
    Empty,
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// Ids from a file's text: one per line, surrounding blanks trimmed, blank lines and `#`
/// comments skipped.
pub fn parse_id_lines(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
}

/// Validates and de-duplicates the ids, giving each job an id.
pub fn plan(
    ids: Vec<String>,
    region: Option<&str>,
    batch: Option<String>,
) -> Result<Plan, EnqueueError> {
    let region = region
        .map(RegionId::parse)
        .transpose()
        .map_err(EnqueueError::InvalidRegion)?;
    let mut seen = HashSet::new();
    let mut jobs = Vec::with_capacity(ids.len());
    let mut duplicates = Vec::new();
    for id in ids {
        let caster = CasterId::parse(&id).map_err(|rejection| EnqueueError::InvalidCasterId {
            id: id.clone(),
            rejection,
        })?;
        if seen.insert(id.clone()) {
            jobs.push((JobId::new_random(), caster));
        } else {
            duplicates.push(id);
        }
    }
    if jobs.is_empty() {
        return Err(EnqueueError::Empty);
    }
    Ok(Plan {
        batch_id: batch.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        jobs,
        region,
        duplicates,
    })
}

/// The message body of one job.
pub fn job_body(
    job_id: JobId,
    caster: &CasterId,
    region: Option<&RegionId>,
    batch_id: &str,
) -> Vec<u8> {
    let mut body = json!({
        "job_id": job_id.to_string(),
        "caster_id": caster.as_str(),
        "batch_id": batch_id,
    });
    if let Some(region) = region {
        body["region_id"] = json!(region.as_str());
    }
    serde_json::to_vec(&body).expect("a JSON object serializes")
}

/// What the broker confirmed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PublishReport {
    pub confirmed: usize,
    /// Indexes into the plan's jobs of those not confirmed (nacked, returned, or never
    /// published): each may or may not be in the queue.
    pub unconfirmed_jobs: Vec<usize>,
}

impl PublishReport {
    pub fn unconfirmed(&self) -> usize {
        self.unconfirmed_jobs.len()
    }
}

/// Publishes every job of the plan (persistent, mandatory) and waits for all confirms.
/// Publishing is pipelined: confirms are awaited together, so thousands take seconds.
/// `progress` is told the running report after each confirm.
pub async fn publish(
    amqp_url: &str,
    names: &Names,
    plan: &Plan,
    mut progress: impl FnMut(&PublishReport),
) -> Result<PublishReport, EnqueueError> {
    let connection = broker::connect(amqp_url, "stopcaster enqueue").await?;
    let channel = broker::confirm_channel(&connection).await?;
    broker::declare_topology(&channel, names).await?;
    let mut pending = FuturesUnordered::new();
    let mut report = PublishReport::default();
    for (index, (job_id, caster)) in plan.jobs.iter().enumerate() {
        let body = job_body(*job_id, caster, plan.region.as_ref(), &plan.batch_id);
        let published = channel
            .basic_publish(
                names.exchange.as_str().into(),
                broker::STOP_ROUTING_KEY.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &body,
                broker::job_properties(&job_id.to_string()),
            )
            .await;
        match published {
            Ok(confirm) => pending.push(async move { (index, confirm.await) }),
            Err(e) => {
                tracing::warn!(error = %e, "publish failed");
                report.unconfirmed_jobs.push(index);
            }
        }
    }
    while let Some((index, confirmation)) = pending.next().await {
        // An ack for a message the broker returned (mandatory, no route) is no delivery.
        let delivered = confirmation.is_ok_and(|c| c.is_ack() && c.take_message().is_none());
        if delivered {
            report.confirmed += 1;
        } else {
            report.unconfirmed_jobs.push(index);
        }
        progress(&report);
    }
    report.unconfirmed_jobs.sort_unstable();
    let _ = channel.close(200, "done".into()).await;
    let _ = connection.close(200, "done".into()).await;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_lines_skip_blanks_and_comments() {
        let ids: Vec<String> = parse_id_lines("a\n\n  # note\n b \n#x\nc").collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[test]
    fn plan_dedupes_and_validates() {
        let p = plan(
            vec!["a".into(), "b".into(), "a".into()],
            Some("cn-beijing"),
            Some("L".into()),
        )
        .unwrap();
        assert_eq!(p.jobs.len(), 2);
        assert_eq!(p.duplicates, ["a"]);
        assert_eq!(p.batch_id, "L");
        assert!(matches!(
            plan(vec!["bad\u{7}".into()], None, None),
            Err(EnqueueError::InvalidCasterId { .. })
        ));
        assert!(matches!(plan(vec![], None, None), Err(EnqueueError::Empty)));
        let body: serde_json::Value =
            serde_json::from_slice(&job_body(p.jobs[0].0, &p.jobs[0].1, p.region.as_ref(), "L"))
                .unwrap();
        assert_eq!(body["caster_id"], "a");
        assert_eq!(body["region_id"], "cn-beijing");
        assert_eq!(body["batch_id"], "L");
    }
}
