//! The operator commands through the real binary, against RabbitMQ, Postgres and the stand-in:
//! `report` (CSV, JSON, table, filters, `--watch`) agrees with the tables, and `dead-letters
//! list` / `replay` inspect and re-run dead-lettered jobs without harm when repeated.

pub(crate) mod bulk;
mod dead_letters;
mod enqueue;
mod figures;
mod hostile;
mod report;
mod request_id;

use crate::common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{FAST, TestEnv};
use serde_json::Value;
use stopcaster_fake_live::{Fault, StudioState};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const WAIT: Duration = Duration::from_secs(30);

/// Runs the CLI and insists on success; its standard output.
fn cli_ok(env: &TestEnv, args: &[&str]) -> String {
    let out = env.run_cli(args, &[]);
    assert!(
        out.status.success(),
        "stopcaster {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn cli_json(env: &TestEnv, args: &[&str]) -> Value {
    let out = cli_ok(env, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

/// A minimal RFC 4180 reader (quoted fields, doubled quotes, CRLF records): enough to check
/// what `report --format csv` wrote.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => assert_eq!(chars.next(), Some('\n'), "CR without LF"),
            (false, '\n') => panic!("a record ends with LF alone, not CRLF"),
            (false, c) => field.push(c),
        }
        if !quoted && c == '\r' {
            record.push(std::mem::take(&mut field));
            records.push(std::mem::take(&mut record));
        }
    }
    assert!(field.is_empty() && record.is_empty(), "unterminated record");
    records
}

#[test]
fn the_csv_reader_reads_quotes() {
    assert_eq!(
        parse_csv("a,\"b,\"\"c\"\"\",\r\n,x\r\n"),
        [vec!["a", "b,\"c\"", ""], vec!["", "x"]]
    );
}

fn ts(value: &Value) -> Option<OffsetDateTime> {
    value
        .as_str()
        .map(|s| OffsetDateTime::parse(s, &Rfc3339).unwrap_or_else(|e| panic!("{s:?}: {e}")))
}

/// Waits until the job's dead letter is confirmed in `P.dead` (the worker notes it after the
/// broker's confirm).
async fn wait_dead_lettered(env: &TestEnv, id: uuid::Uuid) {
    let pool = env.pool.clone();
    common::wait_for(WAIT, || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT dead_lettered_at IS NOT NULL FROM caster_stop_jobs WHERE job_id = $1",
            )
            .bind(id)
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
            .unwrap_or(false)
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no dead letter for {id}"));
}
