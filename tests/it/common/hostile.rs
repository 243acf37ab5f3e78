//! What a hostile producer can put in a message, for the tests of bounded and escaped output:
//! a 5 MB CasterId, escape sequences and the right-to-left override in every field. Also the
//! test's own reading of the documented escaped form and of RFC 4180 CSV, written here rather
//! than borrowed from the product, so that a test checks the product against the documentation.

use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{TestEnv, wait_for};

/// Clears the terminal and sets its title when printed raw.
pub const ESC: &str = "\u{1b}]0;owned\u{7}\u{1b}[2J";
/// `cas-exe.png` on the screen when the override is not escaped.
pub const RLO_CASTER: &str = "cas-\u{202e}gnp.exe";
/// A 5 MiB value, in characters.
pub const BIG: usize = 5 * 1024 * 1024;
/// What follows a value cut to size: its full length.
pub const BIG_MARKER: &str = "… (5,242,880 chars)";
/// The longest CasterId a row can hold here: Postgres indexes the column, and an index entry
/// must fit in a third of a page (2,704 bytes) once compressed.
pub const ROW_CASTER: usize = 200_000;
pub const ROW_MARKER: &str = "… (200,000 chars)";
/// Well below what one page or table of a few rows needs, far below 5 MB.
pub const SMALL: usize = 200_000;

/// The rows and dead letters [`publish`] made.
pub struct Hostile {
    /// Rejected unread (5 MB body): its dead letter's CasterId is 5 MB; its row then gets a
    /// [`ROW_CASTER`] CasterId and a 5 MB error message.
    pub big: uuid::Uuid,
    /// Rejected (control characters): ESC and U+202E in its CasterId and batch.
    pub ctl: uuid::Uuid,
    pub ctl_caster: String,
    pub ctl_batch: String,
    /// Accepted (U+202E is no control character), failed at the stand-in.
    pub rlo: uuid::Uuid,
    pub rlo_batch: String,
    /// Scheduled a day ahead; its CasterId then made 5 MB, ending with U+202E and ESC.
    pub scheduled: uuid::Uuid,
}

/// Publishes the hostile messages to a running worker and waits until they are rows and dead
/// letters. The worker itself keeps a rejected message's CasterId under 1 KiB and the API's
/// errors are short: the long CasterIds and 5 MB error messages of rows are written by SQL,
/// standing for whatever a row may hold (an older version's, or an answer nobody expected).
pub async fn publish(env: &TestEnv) -> Hostile {
    let ctl_caster = format!("{RLO_CASTER}{ESC}");
    let ctl_batch = format!("bat-\u{202e}{ESC}\u{2066}");
    let rlo_batch = "bidi-\u{202e}cba\u{2069}".to_owned();
    let (ctl, rlo, scheduled) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    let tomorrow = (OffsetDateTime::now_utc() + time::Duration::days(1))
        .format(&Rfc3339)
        .unwrap();
    let bodies = [
        json!({"caster_id": "c".repeat(BIG), "batch_id": "big"}),
        json!({"job_id": ctl, "caster_id": ctl_caster, "batch_id": ctl_batch,
               "region_id": format!("cn-{ESC}\u{202e}"), "account": format!("a{ESC}")}),
        json!({"job_id": rlo, "caster_id": RLO_CASTER, "batch_id": rlo_batch,
               "region_id": "cn-shanghai"}),
        json!({"job_id": scheduled, "caster_id": "sched-1", "batch_id": "later",
               "not_before": tomorrow}),
    ];
    let bodies: Vec<Vec<u8>> = bodies.iter().map(|b| b.to_string().into_bytes()).collect();
    env.publish_raw(&bodies).await;
    env.wait_terminal(3, Duration::from_secs(30)).await;
    let dead = env.names().dead;
    wait_for(Duration::from_secs(30), || async {
        env.queue_len(&dead).await == 3
    })
    .await
    .expect("three dead letters");
    wait_for(Duration::from_secs(30), || async {
        env.count_status("scheduled").await == 1
    })
    .await
    .expect("one scheduled job");
    // A body too large to read gets a job id of the worker's.
    let big: uuid::Uuid = sqlx::query_scalar(
        "SELECT job_id FROM caster_stop_jobs WHERE error_message LIKE 'body of % bytes exceeds %'",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    let hostile = format!("{ESC}{RLO_CASTER}");
    sqlx::query(
        "UPDATE caster_stop_jobs SET caster_id = repeat('c', $2), \
         error_message = $3 || repeat('e', $4) WHERE job_id = $1",
    )
    .bind(big)
    .bind(ROW_CASTER as i32)
    .bind(&hostile)
    .bind(BIG as i32)
    .execute(&env.pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE caster_stop_attempts SET error_message = $2 || repeat('m', $3) WHERE job_id = $1",
    )
    .bind(rlo)
    .bind(&hostile)
    .bind(BIG as i32)
    .execute(&env.pool)
    .await
    .unwrap();
    // The repeated part first: Postgres compresses an index entry only when the value's start
    // compresses.
    sqlx::query("UPDATE caster_stop_jobs SET caster_id = repeat('c', $3) || $2 WHERE job_id = $1")
        .bind(scheduled)
        .bind(format!("{RLO_CASTER}{ESC}"))
        .bind(ROW_CASTER as i32)
        .execute(&env.pool)
        .await
        .unwrap();
    Hostile {
        big,
        ctl,
        ctl_caster,
        ctl_batch,
        rlo,
        rlo_batch,
        scheduled,
    }
}

/// The escaped form as README documents it: `\\`, `\xNN`, `\u{N}`.
pub fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let code = match chars.next() {
            Some('\\') => '\\' as u32,
            Some('x') => u32::from_str_radix(&chars.by_ref().take(2).collect::<String>(), 16)
                .unwrap_or_else(|_| panic!("bad \\x in {text:?}")),
            Some('u') => {
                assert_eq!(chars.next(), Some('{'), "{text:?}");
                let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                u32::from_str_radix(&hex, 16).unwrap()
            }
            other => panic!("not the escaped form: \\{other:?} in {text:?}"),
        };
        out.push(char::from_u32(code).unwrap());
    }
    out
}

/// The escaped form of `text`, as the documentation has it (for finding it in an output).
pub fn escaped(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\\' => "\\\\".to_owned(),
            c if (c as u32) < 0x20 || c == '\u{7f}' => format!("\\x{:02x}", c as u32),
            '\u{80}'..='\u{9f}'
            | '\u{61c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}' => format!("\\u{{{:x}}}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

/// RFC 4180: records of fields, quoted fields with `""` for a quote, CRLF between records.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {
                chars.next();
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => {
                assert!(c != '\r' && c != '\n' && c != '"', "a bare {c:?} in CSV");
                field.push(c);
            }
        }
    }
    assert!(
        !quoted && field.is_empty() && record.is_empty(),
        "unterminated CSV"
    );
    records
}

/// Panics if `text` holds a character that acts on a terminal or reorders a line.
pub fn assert_inert(text: &str, what: &str) {
    let bad = text.char_indices().find(|&(_, c)| {
        (c.is_control() && c != '\n' && c != '\r' && c != '\t')
            || matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    });
    if let Some((i, c)) = bad {
        let near: String = text[i..].chars().take(80).collect();
        panic!("{what}: raw {c:?} at byte {i}: {near:?}");
    }
}
