//! Tables and watches that fit a terminal: `report`'s default and wide forms, a watch on a
//! mistyped batch, `enqueue`'s progress bar.

use super::*;

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
