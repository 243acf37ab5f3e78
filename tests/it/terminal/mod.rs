//! What a new user meets at the terminal, through the real binary: errors in one line that
//! name the server and the cause (and fail fast), quiet one-shot commands, plain log files,
//! the worker's start-up line, arguments refused in words, tables that fit, watches that end,
//! and `stop` on the record.

mod errors;
mod help;
mod output;
mod stop;
mod tables;

use crate::common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{AMQP_URL, KEY_ID, KEY_SECRET, PG_BASE, TestEnv, stderr};

/// A password that must never be printed.
const PASSWORD: &str = "pw-Never-Shown-42";
/// Generous: a refused connection answers in milliseconds; a pool timeout took 5 s.
const FAST: Duration = Duration::from_secs(4);

/// Runs `stopcaster` with only `env` (and PATH) set, and the default log filter; its output
/// and how long it took.
fn run(args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_stopcaster"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run stopcaster");
    (out, started.elapsed())
}

/// A failed command's standard error: exactly one line, `error: ...`, without the password.
fn one_error_line(args: &[&str], out: &Output) -> String {
    let text = stderr(out);
    assert!(!out.status.success(), "{args:?} succeeded: {text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line, not:\n{text}");
    assert!(lines[0].starts_with("error: "), "{text}");
    assert!(
        !text.contains(PASSWORD),
        "{args:?} printed the password: {text}"
    );
    assert!(
        !text.contains("\x1b["),
        "no colour off a terminal: {text:?}"
    );
    lines[0].to_owned()
}

/// The test environment with the default log filter (the shared one turns on debug logs).
fn quiet(env: &TestEnv, args: &[&str]) -> Output {
    env.run_cli(args, &[("RUST_LOG", "")])
}

/// Inserts a finished job row as the worker would have left it.
async fn insert_job(env: &TestEnv, caster: &str, batch: &str, status: &str, code: Option<&str>) {
    sqlx::query(
        "INSERT INTO caster_stop_jobs (job_id, caster_id, region_id, batch_id, status, conclusion,
                                       request_id, error_code, http_status, attempts, payload,
                                       finished_at)
         VALUES ($1, $2, 'cn-shanghai', $3, $4, 'api-error', $5, $6, 404, 3, '{}', now())",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(caster)
    .bind(batch)
    .bind(status)
    .bind(uuid::Uuid::new_v4().to_string().to_uppercase())
    .bind(code)
    .execute(&env.pool)
    .await
    .unwrap();
}

fn stdout_ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", stderr(out));
    String::from_utf8(out.stdout.clone()).unwrap()
}
