//! The stand-in's throttle over any sliding second, and its throughput.

use super::*;

fn millis(entry: &CallLogEntry) -> i64 {
    let t =
        time::OffsetDateTime::parse(&entry.time, &time::format_description::well_known::Rfc3339)
            .unwrap();
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Admitted calls of one key in the busiest window shorter than one second, from the log.
fn busiest_second(log: &[CallLogEntry]) -> usize {
    let mut times: Vec<i64> = log.iter().filter(|c| c.admitted).map(millis).collect();
    times.sort_unstable();
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|&&t| t - times[i] < 1000)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_throttle_holds_over_any_sliding_second() {
    let mut config = config();
    config.qps = 5;
    let fake = start(config).await;
    let client = client(&fake);
    let started = Instant::now();

    // Key B: a steady 3.3 calls a second, under its quota, while A hammers its own.
    let b_client = client.clone();
    let b = tokio::spawn(async move {
        let creds = Credentials::new(KEY_B, SECRET_B);
        let mut outcomes = Vec::new();
        for i in 0..7 {
            outcomes.push(stop_as(&b_client, &creds, &format!("b-{i}")).await);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        outcomes
    });

    // Key A: bursts of concurrent calls, then sequential ones, spread over about two seconds.
    let mut a_outcomes = Vec::new();
    let mut n = 0;
    for _round in 0..4 {
        let burst: Vec<_> = (0..10)
            .map(|_| {
                n += 1;
                let client = client.clone();
                let id = format!("a-{n}");
                tokio::spawn(async move { stop(&client, &id).await })
            })
            .collect();
        for call in burst {
            a_outcomes.push(call.await.unwrap());
        }
        for _ in 0..5 {
            n += 1;
            a_outcomes.push(stop(&client, &format!("a-{n}")).await);
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let b_outcomes = b.await.unwrap();
    assert_eq!(a_outcomes.len(), 60);
    assert!(started.elapsed() >= Duration::from_millis(1500));

    let a_log = calls_for(&fake, &format!("access_key_id={KEY}")).await;
    let b_log = calls_for(&fake, &format!("access_key_id={KEY_B}")).await;
    assert_eq!(a_log.len(), 60);
    assert_eq!(b_log.len(), 7);

    // What the client saw agrees with the log, call by call.
    for entry in &a_log {
        assert_eq!(entry.admitted, entry.http_status == Some(200), "{entry:?}");
        assert!(entry.admitted || entry.code.as_deref() == Some("Throttling.User"));
    }
    let stopped = a_outcomes
        .iter()
        .filter(|o| matches!(o, CallOutcome::Stopped { .. }))
        .count();
    let throttled = a_outcomes.iter().filter(|o| o.is_throttled()).count();
    assert_eq!(stopped + throttled, 60, "{a_outcomes:?}");
    assert_eq!(stopped, a_log.iter().filter(|c| c.admitted).count());

    // The promise: no sliding second holds more than 5 admitted calls of A, and the limit was
    // actually reached (the test would catch a throttle that refused everything, or nothing).
    assert_eq!(busiest_second(&a_log), 5);
    assert!(throttled >= 20, "only {throttled} of 60 throttled");
    assert!(stopped >= 10, "only {stopped} admitted over two seconds");

    // B was never throttled by A's traffic.
    assert!(
        b_outcomes
            .iter()
            .all(|o| matches!(o, CallOutcome::Stopped { .. })),
        "{b_outcomes:?}"
    );
    assert!(b_log.iter().all(|c| c.admitted));
    assert!(busiest_second(&b_log) <= 5);

    let stats: Stats = get_json(format!("{}/_fake/stats", fake.endpoint())).await;
    assert_eq!(stats.max_in_any_1s_window.get(KEY), Some(&5));
    assert!(
        stats
            .max_in_any_1s_window
            .get(KEY_B)
            .is_some_and(|&m| m <= 5)
    );
    assert_eq!(stats.throttled, throttled as u64);
    assert_eq!(stats.admitted_by_key.get(KEY_B), Some(&7));
}

/// Load check, run by hand: `cargo test --release --test fake_live -- --ignored --nocapture
/// throughput`. Client and server share the process (and the machine's two cores), so the
/// server alone does better than this reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load test; run by hand in release mode"]
async fn throughput() {
    let mut config = config();
    config.qps = u32::MAX;
    let fake = start(config).await;
    let client = client(&fake);
    let run_for = Duration::from_secs(3);
    let started = Instant::now();
    let workers: Vec<_> = (0..32)
        .map(|w| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut ok = 0u64;
                let mut i = 0u64;
                while started.elapsed() < run_for {
                    i += 1;
                    if matches!(
                        stop(&client, &format!("w{w}-{i}")).await,
                        CallOutcome::Stopped { .. }
                    ) {
                        ok += 1;
                    }
                }
                (i, ok)
            })
        })
        .collect();
    let (mut sent, mut ok) = (0, 0);
    for w in workers {
        let (s, o) = w.await.unwrap();
        sent += s;
        ok += o;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rate = sent as f64 / elapsed;
    println!(
        "{sent} signed StopCaster calls in {elapsed:.2} s: {rate:.0} requests/s ({ok} stopped)"
    );
    assert_eq!(ok, sent);
    assert_eq!(fake.stats().total, sent);
    if !cfg!(debug_assertions) {
        assert!(rate >= 5000.0, "{rate:.0} requests/s");
    }
}
