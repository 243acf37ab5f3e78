//! The job message's parsing: what is accepted, what is rejected and in which words.

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
    let Parsed::Job(job) = parse(r#"{"caster_id":"c","not_before":"2026-11-27T21:00:00+08:00"}"#)
    else {
        panic!()
    };
    assert_eq!(
        job.not_before,
        Some(time::macros::datetime!(2026-11-27 13:00 UTC))
    );
    // Past and null: accepted (past runs at once, null is absent).
    let Parsed::Job(job) = parse(r#"{"caster_id":"c","not_before":"2020-01-01T00:00:00Z"}"#) else {
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
