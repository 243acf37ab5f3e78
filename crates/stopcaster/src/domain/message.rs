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
pub const MAX_BODY_BYTES: usize = 64 * 1024;

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
pub enum Parsed {
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
pub fn parse_message(body: &[u8], message_id: Option<&str>) -> Parsed {
    parse_message_at(body, message_id, OffsetDateTime::now_utc())
}

/// [`parse_message`] as of `now`, which only the far-future check of `not_before` reads.
pub fn parse_message_at(body: &[u8], message_id: Option<&str>, now: OffsetDateTime) -> Parsed {
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
pub fn payload_text(body: &[u8]) -> (String, bool) {
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
mod tests {
    use super::*;
    use crate::domain::MAX_CASTER_ID_BYTES;
    use uuid::Uuid;

    fn reason(body: &[u8]) -> String {
        match parse_message(body, None) {
            Parsed::Rejected { rejection, .. } => rejection.reason,
            Parsed::Job(job) => panic!("accepted {job:?}"),
        }
    }

    #[test]
    fn accepts_a_full_job() {
        let id = Uuid::new_v4();
        let body = format!(
            r#"{{"caster_id":"LIVEPRODUCER_POST-cn-0pp1czt","region_id":"cn-beijing","job_id":"{id}","batch_id":"b1","account":"prod","extra":[1,2]}}"#
        );
        let Parsed::Job(job) = parse_message(body.as_bytes(), None) else {
            panic!()
        };
        assert_eq!(job.job_id.as_uuid(), id);
        assert_eq!(job.caster_id.as_str(), "LIVEPRODUCER_POST-cn-0pp1czt");
        assert_eq!(job.region_id.unwrap().as_str(), "cn-beijing");
        assert_eq!(job.batch_id.as_deref(), Some("b1"));
        assert_eq!(job.account.unwrap().as_str(), "prod");
    }

    #[test]
    fn what_enqueue_writes_parses_back_to_the_same_job() {
        let job = Job {
            job_id: JobId::new_random(),
            caster_id: CasterId::parse("LIVEPRODUCER_POST-cn-0pp1czt").unwrap(),
            region_id: Some(RegionId::parse("cn-beijing").unwrap()),
            batch_id: Some("b1".into()),
            account: Some(AccountName::parse("prod").unwrap()),
            not_before: Some(time::macros::datetime!(2026-11-27 21:00:00.25 +08:00)),
        };
        let body = serde_json::to_vec(&job).unwrap();
        let Parsed::Job(back) = parse_message(&body, None) else {
            panic!("rejected {}", String::from_utf8_lossy(&body))
        };
        assert_eq!(back, job);
        let text = String::from_utf8_lossy(&body).into_owned();
        assert!(
            text.contains(r#""not_before":"2026-11-27T21:00:00.25+08:00""#),
            "{text}"
        );
        let minimal = Job {
            region_id: None,
            batch_id: None,
            account: None,
            not_before: None,
            ..job
        };
        let body = serde_json::to_vec(&minimal).unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("null"));
        let Parsed::Job(back) = parse_message(&body, None) else {
            panic!()
        };
        assert_eq!(back, minimal);
    }

    #[test]
    fn not_before_is_read_checked_and_named_in_rejections() {
        let now = time::macros::datetime!(2026-11-27 12:00 UTC);
        let parse = |body: &str| parse_message_at(body.as_bytes(), None, now);
        let Parsed::Job(job) =
            parse(r#"{"caster_id":"c","not_before":"2026-11-27T21:00:00+08:00"}"#)
        else {
            panic!()
        };
        assert_eq!(
            job.not_before,
            Some(time::macros::datetime!(2026-11-27 13:00 UTC))
        );
        // Past and null: accepted (past runs at once, null is absent).
        let Parsed::Job(job) = parse(r#"{"caster_id":"c","not_before":"2020-01-01T00:00:00Z"}"#)
        else {
            panic!()
        };
        assert!(job.not_before.is_some());
        let Parsed::Job(job) = parse(r#"{"caster_id":"c","not_before":null}"#) else {
            panic!()
        };
        assert_eq!(job.not_before, None);
        // Just under a year ahead is fine; beyond is rejected.
        assert!(matches!(
            parse(r#"{"caster_id":"c","not_before":"2027-11-27T12:00:00Z"}"#),
            Parsed::Job(_)
        ));
        for (body, want) in [
            (
                r#"{"caster_id":"c","not_before":"2027-11-29T12:00:00Z"}"#,
                "not_before is more than 366 days ahead",
            ),
            (
                r#"{"caster_id":"c","not_before":"tomorrow"}"#,
                "not_before is not an RFC 3339 time",
            ),
            (
                r#"{"caster_id":"c","not_before":"2026-11-27 21:00"}"#,
                "not_before is not an RFC 3339 time",
            ),
            (
                r#"{"caster_id":"c","not_before":"2026-11-27T21:00:00"}"#,
                "not_before is not an RFC 3339 time",
            ),
            (
                r#"{"caster_id":"c","not_before":1764248400}"#,
                "not_before is a JSON number",
            ),
        ] {
            let Parsed::Rejected { rejection, .. } = parse(body) else {
                panic!("{body} accepted")
            };
            assert!(
                rejection.reason.contains(want),
                "{body}: {}",
                rejection.reason
            );
        }
    }

    #[test]
    fn job_id_falls_back_to_message_id_then_random() {
        let mid = Uuid::new_v4().to_string();
        let Parsed::Job(job) = parse_message(br#"{"caster_id":"c1"}"#, Some(&mid)) else {
            panic!()
        };
        assert_eq!(job.job_id.to_string(), mid);
        let Parsed::Job(job) = parse_message(br#"{"caster_id":"c1"}"#, Some("not-a-uuid")) else {
            panic!()
        };
        assert_ne!(job.job_id.to_string(), "not-a-uuid");
    }

    #[test]
    fn rejects_malformed_messages_with_reasons() {
        let long = format!(r#"{{"caster_id":"{}"}}"#, "a".repeat(20_000));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let cases: Vec<(&[u8], &str)> = vec![
            (b"", "empty body"),
            (b"not json", "not JSON"),
            (b"[1,2]", "array"),
            (b"{}", "caster_id is missing"),
            (br#"{"caster_id":""}"#, "caster_id is empty"),
            (br#"{"caster_id":42}"#, "number"),
            (br#"{"caster_id":null}"#, "null"),
            (b"{\"caster_id\":\"\xff\xfe\"}", "not UTF-8"),
            (b"{\"caster_id\":\"a\0b\"}", "NUL"),
            (long.as_bytes(), "too long"),
            (deep.as_bytes(), "not JSON"),
            (
                br#"{"caster_id":"c","job_id":"nope"}"#,
                "job_id is not a UUID",
            ),
            (br#"{"caster_id":"c","job_id":7}"#, "job_id is not a string"),
            (br#"{"caster_id":"a\u0007b"}"#, "control characters"),
            (br#"{"caster_id":"c","region_id":5}"#, "region_id"),
            (br#""just a string""#, "string"),
            (br#"{"caster_id":"c","account":""}"#, "account is empty"),
        ];
        for (body, want) in cases {
            let got = reason(body);
            assert!(got.contains(want), "{body:?}: {got}");
        }
    }

    #[test]
    fn rejected_fields_are_stored_without_nul() {
        let Parsed::Rejected {
            caster_id,
            batch_id,
            rejection,
            ..
        } = parse_message(br#"{"caster_id":"a\u0000b","batch_id":"x\\y\u0000"}"#, None)
        else {
            panic!()
        };
        assert!(rejection.reason.contains("control characters"));
        assert_eq!(caster_id.as_deref(), Some("a\\x00b"));
        assert_eq!(batch_id.as_deref(), Some("x\\\\y\\x00"));
        let Parsed::Rejected { caster_id, .. } =
            parse_message(br#"{"caster_id":"plain\\text","job_id":5}"#, None)
        else {
            panic!()
        };
        assert_eq!(
            caster_id.as_deref(),
            Some("plain\\text"),
            "no NUL: kept as is"
        );
    }

    #[test]
    fn rejected_message_keeps_its_job_id_when_valid() {
        let id = Uuid::new_v4();
        let body = format!(r#"{{"caster_id":5,"job_id":"{id}","batch_id":"b"}}"#);
        let Parsed::Rejected {
            job_id, batch_id, ..
        } = parse_message(body.as_bytes(), None)
        else {
            panic!()
        };
        assert_eq!(job_id.as_uuid(), id);
        assert_eq!(batch_id.as_deref(), Some("b"));
    }

    #[test]
    fn payload_text_escapes_reversibly() {
        assert_eq!(payload_text(b"{\"a\":1}"), ("{\"a\":1}".into(), false));
        assert_eq!(
            payload_text(b"a\0b\\\xff"),
            ("a\\x00b\\\\\\xFF".into(), true)
        );
        assert_eq!(payload_text("é\0".as_bytes()), ("é\\x00".into(), true));
    }

    /// The inverse of [`payload_text`]'s escaping.
    fn unescape(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.find('\\') {
            out.extend_from_slice(&rest.as_bytes()[..i]);
            let tail = &rest[i + 1..];
            if let Some(after) = tail.strip_prefix('\\') {
                out.push(b'\\');
                rest = after;
            } else {
                let hex = tail.strip_prefix('x').expect("\\x escape");
                out.push(u8::from_str_radix(&hex[..2], 16).unwrap());
                rest = &hex[2..];
            }
        }
        out.extend_from_slice(rest.as_bytes());
        out
    }

    /// Mutated and random bodies, from a fixed seed: parsing never panics, an accepted job holds
    /// only what the checks allow, and the stored payload gives back every byte.
    #[test]
    fn random_bodies_never_panic_and_lose_nothing() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(0x5707_CA57);
        let seeds: [&[u8]; 4] = [
            br#"{"caster_id":"LIVEPRODUCER_POST-cn-0pp1czt","region_id":"cn-beijing","batch_id":"b"}"#,
            br#"{"caster_id":"c","job_id":"9b2f3a1e-7c4d-4e5f-8a6b-1c2d3e4f5a6b","account":"prod"}"#,
            "{\"caster_id\":\"演播室\\u0000\",\"x\":[[{}]]}".as_bytes(),
            b"[\"caster_id\"]",
        ];
        let (mut jobs, mut rejected) = (0, 0);
        for _ in 0..20_000 {
            let mut body = seeds[rng.random_range(0..seeds.len())].to_vec();
            for _ in 0..rng.random_range(0..4) {
                match rng.random_range(0..4) {
                    0 if !body.is_empty() => {
                        let i = rng.random_range(0..body.len());
                        body[i] = rng.random();
                    }
                    1 => {
                        let i = rng.random_range(0..=body.len());
                        body.insert(i, rng.random());
                    }
                    2 if !body.is_empty() => {
                        let i = rng.random_range(0..body.len());
                        body.remove(i);
                    }
                    _ => {
                        let i = rng.random_range(0..=body.len());
                        body.truncate(i);
                    }
                }
            }
            match parse_message(&body, None) {
                Parsed::Job(job) => {
                    jobs += 1;
                    let id = job.caster_id.as_str();
                    assert!(
                        !id.is_empty() && id.len() <= MAX_CASTER_ID_BYTES,
                        "{body:?}"
                    );
                    assert!(!id.chars().any(char::is_control), "{body:?}");
                }
                Parsed::Rejected { rejection, .. } => {
                    rejected += 1;
                    assert!(!rejection.reason.is_empty());
                }
            }
            let (text, escaped) = payload_text(&body);
            assert!(!text.contains('\0'));
            if escaped {
                assert_eq!(unescape(&text), body);
            } else {
                assert_eq!(text.as_bytes(), body);
            }
        }
        assert!(
            jobs > 1_000 && rejected > 1_000,
            "{jobs} jobs, {rejected} rejected"
        );
    }
}
