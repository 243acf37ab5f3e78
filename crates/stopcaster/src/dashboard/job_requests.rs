//! The body of `POST /api/jobs` turned into job messages, or refused field by field: pure, no
//! I/O. Each job goes through the very parser the worker applies to an AMQP message
//! ([`crate::domain::parse_message`]), so the API accepts exactly what the worker would.
//!
//! The body is one message object, or `{"batch": LABEL, "jobs": [message, ...]}`. A job without
//! `job_id` gets a new UUID; a job without `batch_id` gets the envelope's `batch`, else one new
//! batch id for the whole request. The same `job_id` twice in one request is published once.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::domain::{Parsed, parse_message};

/// Most jobs in one request.
pub(crate) const MAX_JOBS: usize = 10_000;
/// The fields of a message, in the order a refusal looks for the one it names.
const FIELDS: [&str; 6] = [
    "job_id",
    "caster_id",
    "region_id",
    "batch_id",
    "account",
    "not_before",
];

/// A request's jobs, ready to publish.
#[derive(Debug)]
pub(crate) struct Planned {
    pub batch_id: String,
    pub jobs: Vec<PlannedJob>,
}

#[derive(Debug)]
pub(crate) struct PlannedJob {
    pub job_id: String,
    /// The message as received, with `job_id` and `batch_id` filled in; other fields kept.
    pub body: Vec<u8>,
    /// An earlier job of the same request has this id: not published again.
    pub duplicate: bool,
}

/// One refused field: where (`jobs[2].caster_id`, or `caster_id` for a single message) and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct FieldError {
    pub field: String,
    pub error: String,
}

fn refused(field: impl Into<String>, error: impl Into<String>) -> Vec<FieldError> {
    vec![FieldError {
        field: field.into(),
        error: error.into(),
    }]
}

/// The field a parser's reason names (its reasons start with the field's name).
fn field_of(reason: &str) -> &'static str {
    FIELDS
        .iter()
        .find(|f| reason.starts_with(*f))
        .copied()
        .unwrap_or("body")
}

/// Parses a request body; `new_id` makes the ids the request leaves to the server.
pub(crate) fn plan(
    body: &[u8],
    mut new_id: impl FnMut() -> String,
) -> Result<Planned, Vec<FieldError>> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| refused("body", format!("not a JSON document: {e}")))?;
    let Value::Object(object) = value else {
        return Err(refused(
            "body",
            "expected a JSON object: one message, or {\"batch\": ..., \"jobs\": [...]}",
        ));
    };
    let request = Request::read(object)?;
    let batch_id = request.batch_id().unwrap_or_else(&mut new_id);
    let Request {
        items, enveloped, ..
    } = request;
    let mut errors = Vec::new();
    let mut jobs = Vec::with_capacity(items.len());
    let mut seen = HashSet::new();
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(message) = item else {
            errors.push(FieldError {
                field: field_at(enveloped, i, None),
                error: "a message is a JSON object".into(),
            });
            continue;
        };
        match complete(message, &batch_id, &mut new_id) {
            Ok((job_id, body)) => {
                let duplicate = !seen.insert(job_id.clone());
                jobs.push(PlannedJob {
                    job_id,
                    body,
                    duplicate,
                });
            }
            Err(reason) => errors.push(FieldError {
                field: field_at(enveloped, i, Some(field_of(&reason))),
                error: reason,
            }),
        }
    }
    if errors.is_empty() {
        Ok(Planned { batch_id, jobs })
    } else {
        Err(errors)
    }
}

/// A request's messages, still unparsed.
struct Request {
    /// The envelope's `batch`.
    batch: Option<String>,
    items: Vec<Value>,
    /// Sent as `{"batch": ..., "jobs": [...]}`, so that a refusal names `jobs[i]`.
    enveloped: bool,
}

impl Request {
    /// One message, or an envelope of 1 to [`MAX_JOBS`] of them.
    fn read(object: Map<String, Value>) -> Result<Self, Vec<FieldError>> {
        if !object.contains_key("jobs") {
            return Ok(Self {
                batch: None,
                items: vec![Value::Object(object)],
                enveloped: false,
            });
        }
        let mut batch = None;
        let mut jobs = Vec::new();
        for (key, v) in object {
            match (key.as_str(), v) {
                ("batch", Value::String(b)) => batch = Some(b),
                ("batch", Value::Null) => {}
                ("batch", _) => return Err(refused("batch", "batch is not a string")),
                ("jobs", Value::Array(a)) => jobs = a,
                ("jobs", _) => return Err(refused("jobs", "jobs is not an array")),
                (other, _) => {
                    return Err(refused(
                        other,
                        format!("unknown field {other:?}: expected batch and jobs"),
                    ));
                }
            }
        }
        if jobs.is_empty() || jobs.len() > MAX_JOBS {
            return Err(refused(
                "jobs",
                format!("jobs holds 1 to {MAX_JOBS} messages, not {}", jobs.len()),
            ));
        }
        Ok(Self {
            batch,
            items: jobs,
            enveloped: true,
        })
    }

    /// The answer's batch id when the request names one: the envelope's, or a single
    /// message's own.
    fn batch_id(&self) -> Option<String> {
        self.batch.clone().or_else(|| {
            (!self.enveloped)
                .then(|| self.items[0].get("batch_id").and_then(Value::as_str))
                .flatten()
                .map(str::to_owned)
        })
    }
}

/// Where a refusal points: the message `i` (`jobs[i]`, or the whole body when it is the only
/// one), or one of its fields.
fn field_at(enveloped: bool, i: usize, field: Option<&str>) -> String {
    match (enveloped, field) {
        (true, Some(field)) => format!("jobs[{i}].{field}"),
        (true, None) => format!("jobs[{i}]"),
        (false, Some(field)) => field.to_owned(),
        (false, None) => "body".into(),
    }
}

/// The message with its ids filled in, through the worker's parser: its job id and body, or
/// the parser's reason for refusing it.
fn complete(
    mut message: Map<String, Value>,
    batch_id: &str,
    new_id: &mut impl FnMut() -> String,
) -> Result<(String, Vec<u8>), String> {
    fill(&mut message, "job_id", new_id);
    fill(&mut message, "batch_id", &mut || batch_id.to_owned());
    let bytes = serde_json::to_vec(&Value::Object(message)).expect("JSON serializes");
    match parse_message(&bytes, None) {
        Parsed::Job(job) => Ok((job.job_id.to_string(), bytes)),
        Parsed::Rejected { rejection, .. } => Err(rejection.reason),
    }
}

/// Sets `name` when the message has none (absent or null).
fn fill(message: &mut Map<String, Value>, name: &str, make: &mut impl FnMut() -> String) {
    if message.get(name).is_none_or(Value::is_null) {
        message.insert(name.to_owned(), Value::String(make()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("00000000-0000-4000-8000-{n:012}")
        }
    }

    #[test]
    fn one_message_or_a_batch() {
        let p = plan(
            br#"{"caster_id": "c1", "batch_id": "b", "extra": 1}"#,
            ids(),
        )
        .unwrap();
        assert_eq!(p.batch_id, "b");
        assert_eq!(p.jobs.len(), 1);
        let body: Value = serde_json::from_slice(&p.jobs[0].body).unwrap();
        assert_eq!(body["job_id"], "00000000-0000-4000-8000-000000000001");
        assert_eq!(body["extra"], 1, "other fields are kept");
        let id = "1b4e28ba-2fa1-11d2-883f-0016cb4c4dd6";
        let text = format!(
            r#"{{"batch": "night", "jobs": [{{"caster_id": "a", "job_id": "{id}"}},
                {{"caster_id": "b", "batch_id": "own"}}, {{"caster_id": "a", "job_id": "{id}"}}]}}"#
        );
        let p = plan(text.as_bytes(), ids()).unwrap();
        assert_eq!(p.batch_id, "night");
        let dup: Vec<bool> = p.jobs.iter().map(|j| j.duplicate).collect();
        assert_eq!(dup, [false, false, true]);
        let second: Value = serde_json::from_slice(&p.jobs[1].body).unwrap();
        assert_eq!(second["batch_id"], "own");
        let p = plan(br#"{"jobs": [{"caster_id": "a"}]}"#, ids()).unwrap();
        assert_eq!(p.batch_id, "00000000-0000-4000-8000-000000000001");
    }

    #[test]
    fn refusals_name_each_field() {
        let e = plan(
            br#"{"jobs": [{"caster_id": "ok"}, {"region_id": "x"}, {"caster_id": "a\u0007b"},
                 {"caster_id": "c", "not_before": "tomorrow"}, 7, {"caster_id": "c", "job_id": 1}]}"#,
            ids(),
        )
        .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "jobs[1].caster_id",
                "jobs[2].caster_id",
                "jobs[3].not_before",
                "jobs[4]",
                "jobs[5].job_id"
            ]
        );
        for (body, field) in [
            (&b"nope"[..], "body"),
            (b"[1]", "body"),
            (br#"{"caster_id": 5}"#, "caster_id"),
            (br#"{"caster_id": "c", "account": "a\u0007b"}"#, "account"),
            (br#"{"jobs": []}"#, "jobs"),
            (br#"{"jobs": {}}"#, "jobs"),
            (br#"{"batch": 1, "jobs": [{"caster_id": "c"}]}"#, "batch"),
            (br#"{"job": 1, "jobs": [{"caster_id": "c"}]}"#, "job"),
        ] {
            let e = plan(body, ids()).unwrap_err();
            assert_eq!(e[0].field, field, "{}", String::from_utf8_lossy(body));
        }
    }
}

/// `docs/job-message.schema.json` says what this parser accepts: its fields are the parser's,
/// and each of its examples passes both the schema (checked by hand: required fields, types,
/// lengths, no control characters) and the parser.
#[cfg(test)]
mod schema_tests {
    use super::*;

    const SCHEMA: &str = include_str!("../../../../docs/job-message.schema.json");

    fn check_against_schema(schema: &Value, example: &Value) -> Result<(), String> {
        let object = example.as_object().ok_or("not an object")?;
        for required in schema["required"].as_array().unwrap() {
            let name = required.as_str().unwrap();
            if !object.contains_key(name) {
                return Err(format!("{name} is required"));
            }
        }
        for (name, rule) in schema["properties"].as_object().unwrap() {
            let Some(value) = object.get(name) else {
                continue;
            };
            let types: Vec<&str> = match &rule["type"] {
                Value::String(t) => vec![t.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            let ok_type = match value {
                Value::Null => types.contains(&"null"),
                Value::String(_) => types.contains(&"string"),
                _ => false,
            };
            if !ok_type {
                return Err(format!("{name} has the wrong type"));
            }
            if let Value::String(s) = value {
                let chars = s.chars().count() as u64;
                if rule["minLength"].as_u64().is_some_and(|min| chars < min)
                    || rule["maxLength"].as_u64().is_some_and(|max| chars > max)
                {
                    return Err(format!("{name} has the wrong length"));
                }
                if rule["pattern"]
                    .as_str()
                    .is_some_and(|p| p.contains("\\u0000"))
                    && s.chars().any(char::is_control)
                {
                    return Err(format!("{name} holds a control character"));
                }
            }
        }
        Ok(())
    }

    #[test]
    fn the_schema_describes_the_parser_and_its_examples_pass_both() {
        let schema: Value = serde_json::from_str(SCHEMA).expect("the schema is JSON");
        let mut names: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        let mut fields = FIELDS.to_vec();
        fields.sort_unstable();
        assert_eq!(names, fields, "the schema's fields are the parser's");
        let examples = schema["examples"].as_array().unwrap();
        assert!(examples.len() >= 2);
        for example in examples {
            check_against_schema(&schema, example).unwrap();
            let body = serde_json::to_vec(example).unwrap();
            assert!(
                matches!(parse_message(&body, None), Parsed::Job(_)),
                "{example}"
            );
        }
        // And the checker refuses what the parser refuses.
        for bad in [
            serde_json::json!({"region_id": "cn-shanghai"}),
            serde_json::json!({"caster_id": 7}),
            serde_json::json!({"caster_id": "a\u{7}b"}),
            serde_json::json!({"caster_id": "c", "batch_id": ""}),
        ] {
            assert!(check_against_schema(&schema, &bad).is_err(), "{bad}");
            let body = serde_json::to_vec(&bad).unwrap();
            assert!(matches!(
                parse_message(&body, None),
                Parsed::Rejected { .. }
            ));
        }
    }
}
