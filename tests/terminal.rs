//! What a new user meets at the terminal, through the real binary: errors in one line that
//! name the server and the cause (and fail fast), quiet one-shot commands, plain log files,
//! the worker's start-up line, arguments refused in words, tables that fit, watches that end,
//! and `stop` on the record.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{AMQP_URL, KEY_ID, KEY_SECRET, PG_BASE, TestEnv};

/// A password that must never be printed.
const PASSWORD: &str = "pw-Never-Shown-42";
/// Generous: a refused connection answers in milliseconds; a pool timeout took 5 s.
const FAST: Duration = Duration::from_secs(4);

/// A port with nothing listening on it: bound, then released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

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

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
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

#[test]
fn errors_against_closed_ports_name_the_target_once_and_come_at_once() {
    let port = closed_port();
    let amqp = format!("amqp://guest:{PASSWORD}@127.0.0.1:{port}/%2f");
    let database = format!("postgres://root:{PASSWORD}@127.0.0.1:{port}/stopcaster");
    let env = [
        ("AMQP_URL", amqp.as_str()),
        ("DATABASE_URL", database.as_str()),
    ];
    for args in [
        &["enqueue", "studio-1"][..],
        &["report"],
        &["report", "--batch", "b", "--watch"],
        &["dead-letters", "list"],
        &["migrate"],
    ] {
        let (out, took) = run(args, &env);
        let line = one_error_line(args, &out);
        assert!(
            line.contains(&format!("127.0.0.1:{port}")),
            "{args:?} names the target: {line}"
        );
        assert!(line.contains("connection refused"), "{args:?}: {line}");
        assert_eq!(
            line.matches("refused").count(),
            1,
            "{args:?}: the cause once: {line}"
        );
        assert!(took < FAST, "{args:?} took {took:?}");
    }
    // Replay needs both: the broker is tried first.
    let args = ["dead-letters", "replay", "--all"];
    let (out, took) = run(&args, &env);
    let line = one_error_line(&args, &out);
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    assert!(took < FAST, "replay took {took:?}");
}

#[test]
fn a_missing_database_suggests_migrate() {
    let name = common::unique("stopcaster_missing");
    let database = format!("{PG_BASE}/{name}");
    let (out, took) = run(&["report"], &[("DATABASE_URL", &database)]);
    let line = one_error_line(&["report"], &out);
    assert!(line.contains(&name), "{line}");
    assert!(line.contains("does not exist"), "{line}");
    assert!(line.contains("stopcaster migrate"), "{line}");
    assert!(took < FAST, "took {took:?}");
}

#[test]
fn authentication_failures_say_so() {
    // RabbitMQ: guest with a wrong password. Before, lapin logged three ERROR lines first.
    let amqp = format!("amqp://guest:{PASSWORD}@127.0.0.1:5672/%2f");
    let (out, _) = run(&["dead-letters", "list"], &[("AMQP_URL", &amqp)]);
    let line = one_error_line(&["dead-letters", "list"], &out);
    assert!(line.contains("authentication failed"), "{line}");
    assert!(line.contains("amqp://guest@127.0.0.1:5672"), "{line}");
    // Postgres trusts any password here: a user that does not exist is refused instead.
    let database = format!("postgres://no_such_user_x:{PASSWORD}@127.0.0.1:5432/postgres");
    let (out, took) = run(&["report"], &[("DATABASE_URL", &database)]);
    let line = one_error_line(&["report"], &out);
    assert!(line.contains("authentication failed"), "{line}");
    assert!(line.contains("no_such_user_x@127.0.0.1:5432"), "{line}");
    assert!(took < FAST, "took {took:?}");
}

#[test]
fn the_full_chain_is_logged_at_debug_level() {
    let port = closed_port();
    let amqp = format!("amqp://guest:{PASSWORD}@127.0.0.1:{port}/%2f");
    let (out, _) = run(
        &["dead-letters", "list"],
        &[("AMQP_URL", &amqp), ("RUST_LOG", "debug")],
    );
    let text = stderr(&out);
    assert!(text.contains("the error in full"), "{text}");
    assert!(text.contains("os error 111"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
}

/// The test environment with the default log filter (the shared one turns on debug logs).
fn quiet(env: &TestEnv, args: &[&str]) -> Output {
    env.run_cli(args, &[("RUST_LOG", "")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_commands_print_their_answer_and_no_log_lines() {
    let env = TestEnv::new().await;
    for args in [
        &["migrate"][..],
        &["migrate"],
        &["dead-letters", "replay", "--all"],
        &["dead-letters", "list"],
        &["report"],
    ] {
        let out = quiet(&env, args);
        let text = stderr(&out);
        assert!(out.status.success(), "{args:?}: {text}");
        assert!(
            !text.contains(" INFO ") && !text.contains(" DEBUG "),
            "{args:?} logs: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_log_file_is_plain_text_and_starts_with_its_settings() {
    let env = TestEnv::new().await;
    let dir = std::env::temp_dir().join(common::unique("worker-log"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("worker.log");
    let file = std::fs::File::create(&path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stopcaster"))
        .arg("worker")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.child_env())
        .env("RUST_LOG", "")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&path).unwrap_or_default();
    let ready = common::wait_for(Duration::from_secs(30), || {
        let text = log();
        async move { text.contains("consuming") }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let text = log();
    assert!(ready.is_ok(), "the worker did not start:\n{text}");
    assert!(!text.contains("\x1b["), "colour codes in a file:\n{text}");
    let start: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("worker starting"))
        .collect();
    assert_eq!(start.len(), 1, "{text}");
    let line = start[0];
    for needle in [
        format!("endpoint={}", env.fake.endpoint()),
        "broker=amqp://guest@127.0.0.1:5672/%2f".to_owned(),
        format!("database={}", env.database_url),
        "region=cn-shanghai".to_owned(),
        "qps=10".to_owned(),
        "concurrency=64".to_owned(),
        "pacer=shared".to_owned(),
        format!("default (env, {KEY_ID}, account {})", common::ACCOUNT_UID),
    ] {
        assert!(line.contains(&needle), "{needle:?} missing from: {line}");
    }
    assert!(!text.contains(KEY_SECRET), "{text}");
    assert!(!text.contains("guest:guest"), "{text}");
    assert!(
        AMQP_URL.contains("guest:guest"),
        "the test's URL has a password"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn arguments_that_are_not_what_they_should_be_are_refused_in_words() {
    for (args, words) in [
        (
            &["dead-letters", "replay", "not-a-uuid"][..],
            "not-a-uuid is not a job id (a UUID)",
        ),
        (
            &["report", "--status", "done"],
            "done is not a status: scheduled, pending",
        ),
        (
            &["cancel", "not-a-uuid"],
            "not-a-uuid is not a job id (a UUID)",
        ),
        (&["report", "--since", "2x"], "2x is not a duration"),
        (
            &["report", "--format", "xml"],
            "xml is not a format: table, json or csv",
        ),
        (
            &["dead-letters", "list", "--format", "csv"],
            "csv is not a format: table or json",
        ),
    ] {
        let (out, _) = run(args, &[]);
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: usage error: {text}");
        assert!(text.contains(words), "{args:?}: {text}");
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_report_fits_100_columns_and_wide_has_every_column() {
    let env = TestEnv::new().await;
    let batch = format!("end-of-show-{}", "evening-broadcast-".repeat(8));
    let long_caster = format!("LIVEPRODUCER_POST-cn-{}", "0pp1czt".repeat(6));
    assert!(batch.len() > 150 && long_caster.len() > 60);
    insert_job(
        &env,
        &long_caster,
        &batch,
        "failed",
        Some("InvalidCasterId.Malformed"),
    )
    .await;
    insert_job(&env, "studio-1", &batch, "succeeded", None).await;
    insert_job(
        &env,
        "studio-2",
        "other",
        "failed",
        Some("InvalidCaster.NotFound"),
    )
    .await;

    for args in [&["report", "--batch", &batch][..], &["report"]] {
        let text = stdout_ok(&quiet(&env, args));
        for line in text.lines() {
            assert!(
                line.chars().count() <= 100,
                "{} characters: {line}",
                line.chars().count()
            );
        }
        let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(header, stopcaster::REPORT_NARROW_COLUMNS);
        // The caster that did not fit is shortened, visibly, keeping its start and its end.
        assert!(text.contains("LIVEPRO"), "{text}");
        assert!(text.contains("…"), "{text}");
        assert!(text.contains("0pp1czt "), "{text}");
        assert!(text.contains("InvalidCaster"), "{text}");
        assert!(text.contains("studio-1"), "{text}");
    }
    // Short ids: 8 characters of the job id and of the RequestId; times to the second.
    let text = stdout_ok(&quiet(&env, &["report", "--caster", "studio-2"]));
    let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row.len(), 7, "{text}");
    assert_eq!(row[0].len(), 8, "{text}");
    assert_eq!(row[5].len(), 8, "{text}");
    assert!(
        time::PrimitiveDateTime::parse(
            row[6],
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z")
        )
        .is_ok(),
        "{text}"
    );

    // --wide: every column, ids and times in full (six decimals, as in JSON and CSV).
    let wide = stdout_ok(&quiet(&env, &["report", "--caster", "studio-2", "--wide"]));
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, stopcaster::REPORT_COLUMNS);
    let row: Vec<&str> = wide.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[0].len(), 36, "{wide}");
    assert!(
        row[11].len() == "2026-11-27T11:00:00.123456Z".len() && row[11].ends_with('Z'),
        "{wide}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&stdout_ok(&quiet(&env, &["report", "--format", "json"]))).unwrap();
    for job in doc["jobs"].as_array().unwrap() {
        for field in ["created_at", "finished_at"] {
            let t = job[field].as_str().unwrap();
            assert_eq!(t.len(), 27, "fixed precision: {t}");
        }
    }

    // Nothing matches: said in words, not a bare header.
    let none = stdout_ok(&quiet(&env, &["report", "--batch", "no-such-batch"]));
    assert_eq!(none, "no jobs match\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_on_a_mistyped_batch_warns_at_once_and_gives_up_after_its_timeout() {
    use std::io::BufRead as _;
    let env = TestEnv::new().await;
    insert_job(&env, "studio-1", "show-42", "succeeded", None).await;
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stopcaster"))
        .args(["report", "--batch", "show-24", "--watch", "--timeout", "2s"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.child_env())
        .env("RUST_LOG", "")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Vec<(Duration, String)> = std::io::BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .map(|l| (started.elapsed(), l))
        .collect();
    let status = child.wait().unwrap();
    let took = started.elapsed();
    let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(status.code(), Some(1), "{text:?}");
    assert_eq!(lines.len(), 2, "a warning, then the error: {text:?}");
    assert!(
        lines[0]
            .1
            .starts_with("warning: batch show-24 has no jobs yet"),
        "{text:?}"
    );
    assert!(
        lines[0].0 < Duration::from_millis(1900),
        "not at once: {lines:?}"
    );
    assert!(
        lines[1]
            .1
            .starts_with("error: batch show-24 not finished after 2 s: 0 jobs recorded"),
        "{text:?}"
    );
    assert!(took >= Duration::from_secs(2), "gave up early: {took:?}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_on_a_terminal_clears_its_bar_and_ends_with_one_summary_line() {
    // `script` (util-linux) gives the command a terminal.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` command to provide a terminal");
        return;
    }
    let env = TestEnv::new().await;
    let ids: Vec<String> = (1..=3000).map(|i| format!("tty-{i}")).collect();
    let command = format!(
        "{} enqueue --batch tty-1 {}",
        env!("CARGO_BIN_EXE_stopcaster"),
        ids.join(" ")
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.child_env())
        .env("RUST_LOG", "")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.matches("jobs confirmed in batch").count(),
        1,
        "{text:?}"
    );
    let summary = text
        .find("3000 jobs confirmed in batch tty-1 (")
        .expect("summary");
    assert!(
        text[..summary].ends_with('\n'),
        "the summary starts its own line: {text:?}"
    );
    // Whatever the bar drew was cleared before the batch id and the summary were written.
    if let Some(last_bar) = text.rfind("/3000 confirmed") {
        let cleared = text[last_bar..]
            .find("\x1b[2K")
            .expect("the bar is cleared");
        assert!(last_bar + cleared < summary, "{text:?}");
    }
    assert_eq!(env.queue_len(&env.names().jobs).await, 3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_is_recorded_like_a_job_and_says_so_when_it_cannot_be() {
    let env = TestEnv::new().await;
    let out = quiet(&env, &["stop", "studio-rec", "--region", "cn-beijing"]);
    let request_id = stdout_ok(&out).trim().to_owned();
    assert_eq!(stderr(&out), "", "nothing but the answer");
    assert_eq!(request_id, env.fake.calls()[0].request_id);
    // Again: the studio is stopped now, a permanent error (exit 3), recorded as failed.
    let again = quiet(&env, &["stop", "studio-rec", "--region", "cn-beijing"]);
    assert_eq!(again.status.code(), Some(3), "{}", stderr(&again));

    let doc: serde_json::Value = serde_json::from_str(&stdout_ok(&quiet(
        &env,
        &["report", "--caster", "studio-rec", "--format", "json"],
    )))
    .unwrap();
    let jobs = doc["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{doc:#}");
    let ok = jobs
        .iter()
        .find(|j| j["status"] == "succeeded")
        .expect("the stop");
    assert_eq!(ok["batch_id"], "stop-command");
    assert_eq!(ok["region_id"], "cn-beijing");
    assert_eq!(ok["request_id"], request_id.as_str());
    assert_eq!(ok["attempts"], 1);
    let failed = jobs.iter().find(|j| j["status"] == "failed").unwrap();
    assert_eq!(failed["error_code"], "IncorrectSceneStatus");
    assert_eq!(failed["conclusion"], "api-error");
    let job_id: uuid::Uuid = ok["job_id"].as_str().unwrap().parse().unwrap();
    let attempts = env.attempts(job_id).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["request_id"], request_id.as_str());
    assert_eq!(attempts[0]["outcome"], "ok");
    // The table shows it too, by its short RequestId.
    let table = stdout_ok(&quiet(&env, &["report", "--caster", "studio-rec"]));
    assert!(table.contains(&request_id[..8]), "{table}");
    let wide = stdout_ok(&quiet(
        &env,
        &["report", "--caster", "studio-rec", "--wide"],
    ));
    assert!(wide.contains("stop-command"), "{wide}");
    assert!(wide.contains(&request_id), "{wide}");

    // The database down: the call is still made, the operator is told it is not recorded.
    let port = closed_port();
    let database = format!("postgres://root:{PASSWORD}@127.0.0.1:{port}/stopcaster");
    let started = Instant::now();
    let out = env.run_cli(
        &["stop", "studio-unrecorded"],
        &[("DATABASE_URL", &database), ("RUST_LOG", "")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(started.elapsed() < FAST);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        env.fake.calls()[2].request_id
    );
    let text = stderr(&out);
    assert!(
        text.starts_with("warning: this call is not recorded: cannot connect to Postgres at "),
        "{text}"
    );
    assert!(text.contains("connection refused"), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(!text.contains(PASSWORD));
}

#[test]
fn stop_offers_one_region_flag_and_describes_every_argument() {
    let (out, _) = run(&["stop", "-h"], &[]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    assert_eq!(help.matches("--region").count(), 1, "{help}");
    assert!(!help.contains("--default-region"), "{help}");
    assert!(help.contains("STOPCASTER_REGION"), "{help}");
    assert!(
        help.contains("<CASTER_ID>  The production studio's CasterId"),
        "{help}"
    );
    assert!(help.contains("DATABASE_URL"), "{help}");
}
