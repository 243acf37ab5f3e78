//! A message body becomes a [`Job`] once, here, at the edge. What cannot become a job becomes
//! a [`Rejection`] with a reason that goes into the database and the dead-letter header.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use stopcaster_live::ids::{
    AccountName, CasterId, MAX_SHORT_FIELD_BYTES, RegionId, Rejection, short_text,
};

use super::JobId;

/// Bodies larger than this are rejected unread (they are still stored and dead-lettered).
pub(super) const MAX_BODY_BYTES: usize = 64 * 1024;

/// A well-formed stop request, and the message that carries it: `enqueue` serializes this type
/// and [`parse_message`] gives it back, so the two sides cannot drift apart (a unit test holds
/// them to each other). The parser is written by hand rather than derived so that a malformed
/// field gets a reason naming it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Job {
    pub job_id: JobId,
    pub caster_id: CasterId,
    /// `None`: the worker's default region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region_id: Option<RegionId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    /// `None`: the credentials from the environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountName>,
    /// No call before this time (a scheduled stop); `None` or past: at once. RFC 3339.
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_before: Option<OffsetDateTime>,
}

/// What a delivery's bytes turned out to be. A rejected message still gets a job id (from
/// the body, the AMQP `message_id` or a new one) and whatever fields could be read, so its row
/// says as much as the message did.
#[derive(Debug)]
pub(crate) enum Parsed {
    Job(Job),
    Rejected {
        job_id: JobId,
        caster_id: Option<String>,
        batch_id: Option<String>,
        rejection: Rejection,
    },
}

/// Turns a message body into a job. `message_id` is the AMQP property, used as the job id when
/// the body names none and it is a UUID.
pub(crate) fn parse_message(body: &[u8], message_id: Option<&str>) -> Parsed {
    parse_message_at(body, message_id, OffsetDateTime::now_utc())
}

/// [`parse_message`] as of `now`, which only the far-future check of `not_before` reads.
pub(super) fn parse_message_at(
    body: &[u8],
    message_id: Option<&str>,
    now: OffsetDateTime,
) -> Parsed {
    let fallback_id = || {
        message_id
            .and_then(JobId::parse)
            .unwrap_or_else(JobId::new_random)
    };
    let object = match decode_object(body) {
        Ok(object) => object,
        Err(rejection) => {
            return Parsed::Rejected {
                job_id: fallback_id(),
                caster_id: None,
                batch_id: None,
                rejection,
            };
        }
    };
    // Fields of a rejected message are stored as the columns can hold them: Postgres text
    // refuses NUL, and a row that cannot be written would leave the message without one.
    let text_field = |name: &str| {
        object
            .get(name)
            .and_then(Value::as_str)
            .map(|text| storable(text.to_owned()))
    };
    let rejected = |job_id: JobId, rejection: Rejection| Parsed::Rejected {
        job_id,
        caster_id: text_field("caster_id").filter(|c| c.len() <= 1024),
        batch_id: text_field("batch_id").filter(|b| b.len() <= MAX_SHORT_FIELD_BYTES),
        rejection,
    };
    let job_id = match object.get("job_id") {
        None | Some(Value::Null) => fallback_id(),
        Some(Value::String(s)) => match JobId::parse(s) {
            Some(id) => id,
            None => return rejected(fallback_id(), Rejection::new("job_id is not a UUID")),
        },
        Some(_) => return rejected(fallback_id(), Rejection::new("job_id is not a string")),
    };
    match parse_fields(&object, job_id, now) {
        Ok(job) => Parsed::Job(job),
        Err(rejection) => rejected(job_id, rejection),
    }
}

fn decode_object(body: &[u8]) -> Result<Map<String, Value>, Rejection> {
    if body.is_empty() {
        return Err(Rejection::new("empty body"));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(Rejection::new(format!(
            "body of {} bytes exceeds {MAX_BODY_BYTES}",
            body.len()
        )));
    }
    let text = std::str::from_utf8(body).map_err(|_| Rejection::new("body is not UTF-8"))?;
    if text.contains('\0') {
        return Err(Rejection::new("body contains NUL bytes"));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(Rejection::new(format!(
            "body is a JSON {}, not an object",
            json_kind(&other)
        ))),
        Err(e) => Err(Rejection::new(format!("body is not JSON: {e}"))),
    }
}

fn parse_fields(
    object: &Map<String, Value>,
    job_id: JobId,
    now: OffsetDateTime,
) -> Result<Job, Rejection> {
    let caster_id = match object.get("caster_id") {
        None => return Err(Rejection::new("caster_id is missing")),
        Some(Value::String(s)) => CasterId::parse(s)?,
        Some(other) => {
            return Err(Rejection::new(format!(
                "caster_id is a JSON {}, not a string",
                json_kind(other)
            )));
        }
    };
    let optional = |name: &str| -> Result<Option<&str>, Rejection> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(Rejection::new(format!(
                "{name} is a JSON {}, not a string",
                json_kind(other)
            ))),
        }
    };
    let region_id = optional("region_id")?.map(RegionId::parse).transpose()?;
    let account = optional("account")?.map(AccountName::parse).transpose()?;
    let batch_id = optional("batch_id")?
        .map(|b| {
            short_text(b, MAX_SHORT_FIELD_BYTES)
                .map(str::to_owned)
                .map_err(|why| Rejection::new(format!("batch_id {why}")))
        })
        .transpose()?;
    let not_before = optional("not_before")?
        .map(|t| parse_not_before(t, now))
        .transpose()?;
    Ok(Job {
        job_id,
        caster_id,
        region_id,
        batch_id,
        account,
        not_before,
    })
}

/// A message's `not_before`: RFC 3339, at most [`super::schedule::MAX_AHEAD`] from `now` (a
/// later one is almost certainly a typo, such as a wrong year, that would hold the job
/// silently for years; it is rejected, so it shows in the dead letters at once).
fn parse_not_before(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, Rejection> {
    let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
        Rejection::new(format!(
            "not_before is not an RFC 3339 time ({e}): {:?}",
            short(text)
        ))
    })?;
    if at - now > super::schedule::MAX_AHEAD {
        return Err(Rejection::new(format!(
            "not_before is more than {} days ahead: {text}",
            super::schedule::MAX_AHEAD.whole_days()
        )));
    }
    Ok(at)
}

/// At most 64 characters of a text quoted in a reason.
fn short(text: &str) -> String {
    text.chars().take(64).collect()
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A text field as a column can hold it: unchanged, unless it holds NUL, which Postgres refuses;
/// then escaped as [`payload_text`] escapes (`\x00`, and `\\` for a backslash).
fn storable(text: String) -> String {
    if text.contains('\0') {
        payload_text(text.as_bytes()).0
    } else {
        text
    }
}

/// The payload as text for the `payload` column. Valid UTF-8 without NUL is kept as is (the
/// `false`); anything else is escaped reversibly (`\\` for a backslash, `\xNN` for NUL and for
/// each byte that is not UTF-8) and flagged `true`, so nothing is dropped and Postgres, which
/// refuses NUL in text, accepts it.
pub(crate) fn payload_text(body: &[u8]) -> (String, bool) {
    if let Ok(text) = std::str::from_utf8(body)
        && !text.contains('\0')
    {
        return (text.to_owned(), false);
    }
    let mut out = String::with_capacity(body.len() * 2);
    for chunk in body.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\0' => out.push_str("\\x00"),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    (out, true)
}

#[cfg(test)]
mod tests;
