//! The dashboard under attack, through the real binary: password guessing is limited per
//! address and logged without the password, a short password is refused beyond loopback,
//! connections that stall or trickle are closed, SIGTERM ends the process whatever its
//! clients do, a foreign `Host` gets 421, actions record who sent them (sanitised), and a time
//! filter out of range is a 400 naming it.

use super::*;

use std::time::Instant;

use base64::Engine as _;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A user name with a terminal escape in it, as a hostile client would send it.
const HOSTILE_USER: &str = "mallory\u{1b}]0;pwned\u{7}";
const HOSTILE_USER_ESCAPED: &str = "mallory\\x1b]0;pwned\\x07";

async fn get_as(dash: &Dashboard, http: &reqwest::Client, password: &str) -> reqwest::Response {
    http.get(dash.url("/api/batches"))
        .basic_auth(HOSTILE_USER, Some(password))
        .send()
        .await
        .unwrap()
}

fn retry_after(r: &reqwest::Response) -> u64 {
    r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Waits out a lockout of `secs` seconds: the time itself is what is tested.
async fn wait_out(secs: u64) {
    tokio::time::sleep(Duration::from_secs(secs) + Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_limited_per_address_and_never_logged() {
    let env = TestEnv::new().await;
    let dash = Dashboard::start(&env, &[("STOPCASTER_DASHBOARD_PASSWORD", PASSWORD)]);
    let http = &env.http;

    // 50 guesses in a row: 5 free failures, the 6th locks the address out, then 429s.
    let mut statuses = Vec::new();
    let mut last = None;
    for i in 0..50 {
        let r = get_as(&dash, http, &format!("guess-{i}")).await;
        statuses.push(r.status().as_u16());
        last = Some(r);
    }
    assert_eq!(statuses[..6], [401; 6], "{statuses:?}");
    assert!(statuses[6..].iter().all(|s| [401, 429].contains(s)));
    let failures = statuses.iter().filter(|s| **s == 401).count();
    assert!(failures <= 8, "the lockout held: {statuses:?}");
    let last = last.unwrap();
    assert_eq!(last.status(), 429, "{statuses:?}");
    let wait = retry_after(&last);
    assert!((1..=300).contains(&wait), "{wait}");

    // Once the lockout is over, one more failure locks for twice as long, and the right
    // password is refused too while it lasts.
    wait_out(wait).await;
    assert_eq!(get_as(&dash, http, "one more guess").await.status(), 401);
    let r = get_as(&dash, http, PASSWORD).await;
    assert_eq!(r.status(), 429, "the right password while locked out");
    let wait = retry_after(&r);
    assert!(wait >= 2, "the lockout grows: {wait}");
    wait_out(wait).await;
    assert_eq!(get_as(&dash, http, PASSWORD).await.status(), 200);

    // A success forgets the failures: 5 free ones again.
    for i in 0..5 {
        let r = get_as(&dash, http, &format!("typo-{i}")).await;
        assert_eq!(r.status(), 401, "failure {i} after a success");
    }
    assert_eq!(get_as(&dash, http, PASSWORD).await.status(), 200);

    let logs = dash.logs.lock().unwrap().join("\n");
    assert!(!logs.contains(PASSWORD), "{logs}");
    assert!(!logs.contains("guess-") && !logs.contains("typo-") && !logs.contains("one more"));
    assert!(
        !logs.contains('\u{1b}'),
        "no raw escape in the logs: {logs}"
    );
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("wrong dashboard password"))
        .collect();
    assert_eq!(warnings.len(), 2, "one line per burst: {warnings:#?}");
    for w in &warnings {
        assert!(w.contains("WARN") && w.contains("127.0.0.1"), "{w}");
        assert!(w.contains(HOSTILE_USER_ESCAPED), "{w}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_password_is_refused_beyond_loopback() {
    let env = TestEnv::new().await;
    let short = "hunter2-abc";
    let out = env.run_cli(
        &["dashboard", "--listen", "0.0.0.0:0"],
        &[("STOPCASTER_DASHBOARD_PASSWORD", short)],
    );
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(err.contains("shorter than 12 characters"), "{err}");
    assert!(!err.contains(short), "{err}");
}

/// Reads until the server closes the connection: what it sent, or `None` if it was still open
/// after `limit`.
async fn read_until_closed(
    stream: &mut (impl AsyncRead + Unpin),
    limit: Duration,
) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    closed.ok().map(|()| got)
}

const PARTIAL: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n";
const FULL: &[u8] = b"GET /api/batches HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// The header timeout (2 s here), the idle timeout and the connection cap (2 here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_surplus_connections_are_closed() {
    let env = TestEnv::new().await;
    let dash = Dashboard::start_with(
        &env,
        &["--header-timeout-s", "2", "--max-connections", "2"],
        &[],
    );
    let limit = Duration::from_secs(15);

    // Two stalled connections fill the cap: a third is closed unanswered.
    let mut a = TcpStream::connect(dash.addr).await.unwrap();
    let mut b = TcpStream::connect(dash.addr).await.unwrap();
    a.write_all(PARTIAL).await.unwrap();
    b.write_all(PARTIAL).await.unwrap();
    let mut c = TcpStream::connect(dash.addr).await.unwrap();
    let _ = c.write_all(FULL).await;
    let answer = read_until_closed(&mut c, limit).await.expect("c closed");
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    // The header timeout closes the stalled ones, and a new connection is served again.
    assert!(read_until_closed(&mut a, limit).await.is_some());
    assert!(read_until_closed(&mut b, limit).await.is_some());
    let served = wait_for(limit, || async {
        let mut d = TcpStream::connect(dash.addr).await.unwrap();
        let _ = d.write_all(FULL).await;
        let mut head = [0u8; 12];
        d.read_exact(&mut head).await.is_ok() && head.starts_with(b"HTTP/1.1 200")
    })
    .await;
    assert!(served.is_ok(), "the cap's places came back");

    // A kept-alive connection left idle is closed.
    let mut e = TcpStream::connect(dash.addr).await.unwrap();
    let started = Instant::now();
    e.write_all(FULL).await.unwrap();
    let answer = read_until_closed(&mut e, limit).await.expect("idle closed");
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    assert!(started.elapsed() >= Duration::from_millis(1900));

    // A header line every 400 ms does not keep a connection open past the timeout.
    let (mut rd, mut wr) = TcpStream::connect(dash.addr).await.unwrap().into_split();
    wr.write_all(PARTIAL).await.unwrap();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(400));
    let mut lines = 0;
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            read = rd.read(&mut buf) => if read.map_or(true, |n| n == 0) { break },
            _ = tick.tick() => {
                if wr.write_all(format!("X-Trickle-{lines}: a\r\n").as_bytes()).await.is_err() {
                    break;
                }
                lines += 1;
            }
        }
        assert!(started.elapsed() < limit, "still open after {lines} lines");
    }
    let open = started.elapsed();
    assert!(open >= Duration::from_millis(1900), "{open:?}");
    assert!(lines >= 4, "{lines} lines in {open:?}");
}

/// A connection stalled in its headers and one stalled in a request's body: SIGTERM still
/// ends the process, after the drain time (1 s here), not the header timeout (10 minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_do_not_outlive_the_drain_after_sigterm() {
    let env = TestEnv::new().await;
    let mut dash = Dashboard::start_with(
        &env,
        &["--header-timeout-s", "600", "--drain-s", "1"],
        &[("STOPCASTER_DASHBOARD_PASSWORD", PASSWORD)],
    );
    let mut headers = TcpStream::connect(dash.addr).await.unwrap();
    headers.write_all(PARTIAL).await.unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("admin:{PASSWORD}"));
    let mut body = TcpStream::connect(dash.addr).await.unwrap();
    let request = format!(
        "POST /api/dead-letters/replay HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\n\
         Authorization: Basic {auth}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{\"job_ids\"",
        addr = dash.addr
    );
    body.write_all(request.as_bytes()).await.unwrap();
    // Connections are accepted in order: once a later one is answered, both are being served.
    let r = env
        .http
        .get(dash.url("/api/batches"))
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-s", "TERM", &dash.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut exit = None;
    let exited = wait_for(Duration::from_secs(10), || {
        exit = dash.child.try_wait().unwrap();
        std::future::ready(exit.is_some())
    })
    .await;
    assert!(exited.is_ok(), "still running 10 s after SIGTERM");
    assert!(exit.unwrap().success(), "{exit:?}");
    assert!(started.elapsed() < Duration::from_secs(8));
    let limit = Duration::from_secs(5);
    assert!(read_until_closed(&mut headers, limit).await.is_some());
    assert!(read_until_closed(&mut body, limit).await.is_some());
    let closed = wait_for(limit, || {
        let logs = dash.logs.lock().unwrap().join("\n");
        std::future::ready(logs.contains("still open after the drain time"))
    })
    .await;
    assert!(closed.is_ok(), "{:?}", dash.logs.lock().unwrap());
}

async fn status_for_host(dash: &Dashboard, http: &reqwest::Client, host: &str) -> u16 {
    http.get(dash.url("/api/batches"))
        .header("host", host)
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_gets_421() {
    let env = TestEnv::new().await;
    let http = &env.http;
    let dash = Dashboard::start(&env, &[("STOPCASTER_DASHBOARD_PASSWORD", PASSWORD)]);
    let port = dash.addr.port();
    assert_eq!(
        status_for_host(&dash, http, &format!("127.0.0.1:{port}")).await,
        200
    );
    assert_eq!(
        status_for_host(&dash, http, &format!("localhost:{port}")).await,
        200
    );
    let foreign = format!("rebound.evil.example:{port}");
    assert_eq!(status_for_host(&dash, http, &foreign).await, 421);
    // Before the password is asked for: a rebinding page gets no login prompt.
    let r = http
        .get(dash.url("/"))
        .header("host", &foreign)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
    assert!(!r.headers().contains_key("www-authenticate"));
    drop(dash);

    // The operator's list replaces the default.
    let dash = Dashboard::start(
        &env,
        &[
            ("STOPCASTER_DASHBOARD_PASSWORD", PASSWORD),
            (
                "STOPCASTER_DASHBOARD_HOSTS",
                "dash.example.test, other.example.test",
            ),
        ],
    );
    let port = dash.addr.port();
    let named = format!("Dash.Example.Test:{port}");
    assert_eq!(status_for_host(&dash, http, &named).await, 200);
    assert_eq!(
        status_for_host(&dash, http, &format!("127.0.0.1:{port}")).await,
        421
    );
}

/// A cancel from the dashboard records the user name sanitised and the address, in the row
/// and in the log; a replay in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_record_who_sanitised() {
    let env = TestEnv::new().await;
    let job = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO caster_stop_jobs (job_id, caster_id, status, not_before, payload)
         VALUES ($1, 'studio-later', 'scheduled', now() + interval '1 hour', '{}')",
    )
    .bind(job)
    .execute(&env.pool)
    .await
    .unwrap();
    let dash = Dashboard::start(&env, &[("STOPCASTER_DASHBOARD_PASSWORD", PASSWORD)]);
    let post = |path: String, body: Option<Value>| {
        let mut r = env
            .http
            .post(dash.url(&path))
            .basic_auth(HOSTILE_USER, Some(PASSWORD))
            .header("origin", dash.url(""));
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        r.send()
    };
    let r = post(format!("/api/jobs/{job}/cancel"), None).await.unwrap();
    assert_eq!(r.status(), 200);
    let by: String =
        sqlx::query_scalar("SELECT cancelled_by FROM caster_stop_jobs WHERE job_id = $1")
            .bind(job)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(by, format!("{HOSTILE_USER_ESCAPED}@dashboard (127.0.0.1)"));
    let body = json!({"job_ids": [uuid::Uuid::new_v4()]});
    let r = post("/api/dead-letters/replay".into(), Some(body))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let found = wait_for(WAIT, || {
        let logs = dash.logs.lock().unwrap().clone();
        let has = |what: &str| {
            logs.iter().any(|l| {
                l.contains(what) && l.contains(HOSTILE_USER_ESCAPED) && l.contains("127.0.0.1")
            })
        };
        std::future::ready(
            has("cancelled from the dashboard") && has("replayed from the dashboard"),
        )
    })
    .await;
    assert!(found.is_ok(), "{:#?}", dash.logs.lock().unwrap());
    assert!(!dash.logs.lock().unwrap().join("\n").contains('\u{1b}'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_filter_out_of_range_is_a_400_naming_it() {
    let env = TestEnv::new().await;
    let dash = Dashboard::start(&env, &[]);
    for (param, value) in [
        ("from", "-9999-01-01T00:00"),
        ("to", "0000-06-01T00:00:00Z"),
    ] {
        let query = format!("?{param}={}", encode(value));
        let r = env
            .http
            .get(dash.url(&format!("/api/jobs{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{param}");
        let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(error.starts_with(&format!("{param}: ")), "{error}");
        assert!(!error.contains("database"), "{error}");
        let r = env
            .http
            .get(dash.url(&format!("/jobs{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{param}");
        let html = r.text().await.unwrap();
        assert!(html.contains(&format!("{param}: ")), "{html}");
    }
}
