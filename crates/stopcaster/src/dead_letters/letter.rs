//! What a dead letter says about itself: its job, studio, reason and time, read from our
//! headers, RabbitMQ's `x-death` and the body, in that order of trust.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::broker;
use crate::domain::JobId;
use crate::domain::time::rfc3339_micros as timestamp;

/// A dead letter as `list` shows it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DeadLetter {
    /// The `x-stopcaster-job-id` header; failing that the body's `job_id` or the `message_id`.
    pub job_id: Option<String>,
    /// From the body, when it is a JSON object with a text `caster_id`.
    pub caster_id: Option<String>,
    pub batch_id: Option<String>,
    /// The `x-stopcaster-reason` header (for a message RabbitMQ dead-lettered itself, the
    /// `x-death` reason, e.g. `delivery_limit`).
    pub reason: Option<String>,
    /// The message's `timestamp` property, else the first `x-death` time.
    pub when: Option<OffsetDateTime>,
}

impl DeadLetter {
    pub(crate) fn from_message(properties: &BasicProperties, body: &[u8]) -> Self {
        let object = serde_json::from_slice::<Value>(body)
            .ok()
            .filter(Value::is_object);
        let text = |name: &str| {
            object
                .as_ref()
                .and_then(|o| o.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let death = first_x_death(properties);
        let job_id = broker::header_text(properties, broker::JOB_ID_HEADER)
            .or_else(|| text("job_id").filter(|id| JobId::parse(id).is_some()))
            .or_else(|| {
                properties
                    .message_id()
                    .as_ref()
                    .map(|m| m.as_str().to_owned())
                    .filter(|id| JobId::parse(id).is_some())
            });
        let reason = broker::header_text(properties, broker::REASON_HEADER)
            .or_else(|| death.and_then(|d| table_text(d, "reason")));
        let when = (*properties.timestamp())
            .or_else(|| {
                death.and_then(|d| match d.inner().get("time") {
                    Some(AMQPValue::Timestamp(t)) => Some(*t),
                    _ => None,
                })
            })
            .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs as i64).ok());
        DeadLetter {
            job_id,
            caster_id: text("caster_id"),
            batch_id: text("batch_id"),
            reason,
            when,
        }
    }

    /// The job id as a UUID, what a replay is keyed by.
    pub(crate) fn job_uuid(&self) -> Option<Uuid> {
        self.job_id
            .as_deref()
            .and_then(JobId::parse)
            .map(|j| j.as_uuid())
    }

    pub(crate) fn json(&self) -> Value {
        json!({
            "job_id": self.job_id,
            "caster_id": self.caster_id,
            "batch_id": self.batch_id,
            "reason": self.reason,
            "when": self.when.map(timestamp),
        })
    }
}

fn first_x_death(properties: &BasicProperties) -> Option<&FieldTable> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get("x-death")? {
        AMQPValue::FieldArray(a) => match a.as_slice().first()? {
            AMQPValue::FieldTable(t) => Some(t),
            _ => None,
        },
        _ => None,
    }
}

fn table_text(t: &FieldTable, name: &str) -> Option<String> {
    match t.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::FieldArray;

    #[test]
    fn reads_headers_and_body() {
        let props = broker::dead_letter_properties(
            &broker::job_properties("1b4e28ba-2fa1-11d2-883f-0016cb4c4dd6"),
            "1b4e28ba-2fa1-11d2-883f-0016cb4c4dd6",
            "InvalidCaster.NotFound",
        )
        .with_timestamp(1_700_000_000);
        let l = DeadLetter::from_message(&props, br#"{"caster_id":"c1","batch_id":"b"}"#);
        assert_eq!(
            l.job_id.as_deref(),
            Some("1b4e28ba-2fa1-11d2-883f-0016cb4c4dd6")
        );
        assert_eq!(l.caster_id.as_deref(), Some("c1"));
        assert_eq!(l.batch_id.as_deref(), Some("b"));
        assert_eq!(l.reason.as_deref(), Some("InvalidCaster.NotFound"));
        assert_eq!(l.when.map(|t| t.unix_timestamp()), Some(1_700_000_000));
        assert!(l.job_uuid().is_some());
    }

    #[test]
    fn falls_back_to_x_death_and_message_id() {
        let mut death = FieldTable::default();
        death.insert(
            "reason".into(),
            AMQPValue::LongString("delivery_limit".into()),
        );
        death.insert("time".into(), AMQPValue::Timestamp(1_600_000_000));
        let mut deaths = FieldArray::default();
        deaths.push(AMQPValue::FieldTable(death));
        let mut headers = FieldTable::default();
        headers.insert("x-death".into(), AMQPValue::FieldArray(deaths));
        let props =
            broker::job_properties("1b4e28ba-2fa1-11d2-883f-0016cb4c4dd6").with_headers(headers);
        let l = DeadLetter::from_message(&props, b"not json");
        assert_eq!(
            l.job_id.as_deref(),
            Some("1b4e28ba-2fa1-11d2-883f-0016cb4c4dd6")
        );
        assert_eq!(l.caster_id, None);
        assert_eq!(l.reason.as_deref(), Some("delivery_limit"));
        assert_eq!(l.when.map(|t| t.unix_timestamp()), Some(1_600_000_000));
        // No header, no UUID anywhere: no job id.
        let l = DeadLetter::from_message(&BasicProperties::default(), br#"{"job_id":"x"}"#);
        assert_eq!(l.job_id, None);
        assert_eq!(l.when, None);
    }
}
