//! `stopcaster dashboard` in a real browser (Debian's chromium through chromedriver, driven by
//! fantoccini), against a real worker, RabbitMQ, Postgres and the stand-in: every page shows
//! the data of a small batch, hostile ids and labels stay text and run nothing, read-only
//! without a password, refusals of a wrong password and a foreign Origin, a replay from the
//! page that brings a job back, and no error in the browser's console.

use crate::common;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{KEY_SECRET, TestEnv, wait_for};
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use stopcaster_fake_live::StudioState;

const WAIT: Duration = Duration::from_secs(30);
const HOSTILE_BATCH: &str = "<script>alert(1)</script>";
const HOSTILE_CASTER: &str = "\"><img src=x onerror=alert(2)>";
const PASSWORD: &str = "correct horse battery staple";

fn enqueue(env: &TestEnv, batch: &str, casters: &[&str]) {
    let mut args = vec!["enqueue", "--batch", batch];
    args.extend_from_slice(casters);
    let out = env.run_cli(&args, &[]);
    assert!(
        out.status.success(),
        "enqueue failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- the dashboard process --------------------------------------------------------------

struct Dashboard {
    child: Child,
    addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Dashboard {
    fn start(env: &TestEnv, extra: &[(&str, &str)]) -> Dashboard {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stopcaster"))
            .args(["dashboard", "--listen", "127.0.0.1:0", "--refresh-s", "1"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.child_env())
            .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the dashboard");
        let (tx, rx) = std::sync::mpsc::channel();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("dashboard listening on http://") {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("the dashboard did not start: {:?}", logs.lock().unwrap()));
        Dashboard {
            child,
            addr: addr.parse().unwrap(),
            logs,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The URL with the password in it, for the browser's first navigation.
    fn url_with_password(&self, path: &str) -> String {
        format!(
            "http://admin:{}@{}{path}",
            PASSWORD.replace(' ', "%20"),
            self.addr
        )
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("dashboard's log:\n{}", self.logs.lock().unwrap().join("\n"));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- the browser ------------------------------------------------------------------------

struct Browser {
    client: Client,
    driver: Child,
    port: u16,
    profile: std::path::PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `POST /session/{id}/se/log {"type": "browser"}`: chromedriver's console log.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or("")))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

impl Browser {
    async fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt-get install chromium-driver; .ci/run installs it)");
        let profile = std::env::temp_dir().join(common::unique("chromium-profile"));
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--window-size=1400,1000",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": "/usr/bin/chromium", "args": args}),
        );
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        // An alert stays open (and is seen) instead of being dismissed silently.
        caps.insert("unhandledPromptBehavior".into(), json!("ignore"));
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(caps);
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        for _ in 0..100 {
            match builder.connect(&url).await {
                Ok(client) => {
                    return Browser {
                        client,
                        driver,
                        port,
                        profile,
                    };
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no WebDriver session: {last:?}");
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
        self.assert_no_dialog().await;
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn body_text(&self) -> String {
        self.text("body").await
    }

    async fn exists(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .is_empty()
    }

    async fn eval(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.expect(script)
    }

    /// No alert, confirm or prompt is open: no injected script ran.
    async fn assert_no_dialog(&self) {
        if let Ok(text) = self.client.get_alert_text().await {
            panic!("a JavaScript dialog is open: {text:?}");
        }
    }

    /// The console's entries since the last call; panics on any error (or CSP violation).
    async fn assert_clean_console(&self) {
        let log = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("the browser log");
        let entries = log.as_array().cloned().unwrap_or_default();
        let bad: Vec<&Value> = entries
            .iter()
            .filter(|e| matches!(e["level"].as_str(), Some("SEVERE") | Some("WARNING")))
            .collect();
        assert!(bad.is_empty(), "browser console: {bad:#?}");
    }

    /// Waits until the element's text satisfies `check`.
    async fn wait_text(&self, css: &str, check: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        for _ in 0..200 {
            if let Ok(e) = self.client.find(Locator::Css(css)).await
                && let Ok(t) = e.text().await
            {
                if check(&t) {
                    return t;
                }
                last = t;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css}: text still {last:?}");
    }

    async fn screenshot(&self, path: &std::path::Path) {
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(path, png).unwrap();
    }

    async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver's /shutdown quits the browsers of its sessions too, even when a test
        // failed before closing its own.
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            use std::io::{Read as _, Write as _};
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(
                b"GET /shutdown HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            );
            let _ = s.read_to_end(&mut Vec::new());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

async fn job_id_of(env: &TestEnv, caster: &str) -> uuid::Uuid {
    sqlx::query_scalar("SELECT job_id FROM caster_stop_jobs WHERE caster_id = $1")
        .bind(caster)
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---- the tests --------------------------------------------------------------------------

/// A batch with a hostile label, two studios stopped and one hostile CasterId failed: every
/// page shows it, as text, runs no script, logs no error, and offers no action (read-only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_a_batch_and_hostile_strings_stay_text() {
    let env = TestEnv::with_running(&["studio-a", "studio-b"]).await;
    let worker = env.spawn_worker(&[("STOPCASTER_QPS", "1000")]);
    worker.wait_ready().await;
    enqueue(
        &env,
        HOSTILE_BATCH,
        &["studio-a", "studio-b", HOSTILE_CASTER],
    );
    env.wait_terminal(3, WAIT).await;
    let failed_id = job_id_of(&env, HOSTILE_CASTER).await;
    let ok_id = job_id_of(&env, "studio-a").await;
    let ok_request_id: String =
        sqlx::query_scalar("SELECT request_id FROM caster_stop_jobs WHERE job_id = $1")
            .bind(ok_id)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    // Until the dead letter is in P.dead.
    wait_for(WAIT, || async {
        env.queue_len(&env.names().dead).await == 1
    })
    .await
    .expect("one dead letter");

    let dash = Dashboard::start(&env, &[]);
    let browser = Browser::start().await;

    // The overview: counts, the queue, the batch (its label as text), the chart.
    browser.goto(&dash.url("/")).await;
    assert_eq!(browser.text(".card[data-status=succeeded] .n").await, "2");
    assert_eq!(browser.text(".card[data-status=failed] .n").await, "1");
    assert_eq!(
        browser.text("#recent-batches tbody td a").await,
        HOSTILE_BATCH
    );
    assert!(
        browser
            .body_text()
            .await
            .contains(&format!("{}.dead", env.prefix))
    );
    assert!(browser.exists("svg.bars rect").await, "the chart has bars");
    assert!(
        browser.body_text().await.contains("quota 10/s"),
        "{}",
        browser.body_text().await
    );
    assert_eq!(
        browser.eval("return document.scripts.length").await,
        json!(1)
    );
    assert_eq!(
        browser.eval("return document.images.length").await,
        json!(0)
    );
    assert!(
        !browser.exists("button.danger").await,
        "read-only: no actions"
    );
    browser.assert_clean_console().await;

    // The batch: progress, counts, failures by code, its jobs with the hostile caster as text.
    browser
        .goto(&dash.url(&format!("/batches/{}", encode(HOSTILE_BATCH))))
        .await;
    assert_eq!(browser.text("#batch-id").await, HOSTILE_BATCH);
    assert_eq!(browser.text("#batch-done").await, "3 of 3");
    assert!(
        browser
            .text("#failures")
            .await
            .contains("InvalidCasterId.Malformed")
    );
    assert!(browser.text("table.jobs").await.contains(HOSTILE_CASTER));
    assert_eq!(
        browser.eval("return document.images.length").await,
        json!(0)
    );
    assert!(
        browser
            .text("#batch-calls")
            .await
            .contains("StopCaster calls 3")
    );

    // The failed job: its row, its attempt with the RequestId, its payload, all as text.
    browser.goto(&dash.url(&format!("/jobs/{failed_id}"))).await;
    assert_eq!(browser.text("#job-status").await, "failed");
    assert_eq!(browser.text("#job-caster").await, HOSTILE_CASTER);
    assert_eq!(browser.text("#job-batch").await, HOSTILE_BATCH);
    let attempts = env.attempts(failed_id).await;
    let rid = attempts[0]["request_id"].as_str().unwrap();
    assert!(browser.text("#attempts").await.contains(rid));
    assert!(browser.text("#payload").await.contains(HOSTILE_CASTER));
    assert!(!browser.exists("button[data-cancel]").await);

    // A succeeded job shows its RequestId and conclusion.
    browser.goto(&dash.url(&format!("/jobs/{ok_id}"))).await;
    assert_eq!(browser.text("#job-request-id").await, ok_request_id);
    assert_eq!(browser.text("#job-conclusion").await, "stopped");

    // Search: by status, by RequestId, by batch; kept in the URL; exports of the same view.
    browser.goto(&dash.url("/jobs?status=failed")).await;
    let rows = browser
        .client
        .find_all(Locator::Css("table.jobs tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    browser
        .goto(&dash.url(&format!("/jobs?request_id={ok_request_id}")))
        .await;
    let text = browser.text("table.jobs tbody").await;
    assert!(text.contains(&ok_id.to_string()), "{text}");
    assert_eq!(
        browser
            .client
            .find_all(Locator::Css("table.jobs tbody tr"))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        browser
            .eval("return document.querySelector('input[name=request_id]').value")
            .await,
        json!(ok_request_id)
    );
    let csv_href = browser
        .client
        .find(Locator::Css("#export-csv"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let csv = env
        .http
        .get(dash.url(&csv_href))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert_eq!(
        csv.lines().next().unwrap(),
        stopcaster::REPORT_COLUMNS.join(","),
        "the columns of report --format csv"
    );
    assert!(csv.contains(&ok_request_id));
    browser
        .goto(&dash.url(&format!("/jobs?batch={}", encode(HOSTILE_BATCH))))
        .await;
    assert_eq!(
        browser
            .client
            .find_all(Locator::Css("table.jobs tbody tr"))
            .await
            .unwrap()
            .len(),
        3
    );

    // A filter being typed survives the live refresh.
    let input = browser
        .client
        .find(Locator::Css("input[name=caster]"))
        .await
        .unwrap();
    input.send_keys("studio-").await.unwrap();
    browser
        .eval("document.activeElement.blur(); return null")
        .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        browser
            .eval("return document.querySelector('input[name=caster]').value")
            .await,
        json!("studio-")
    );

    // Dead letters: the failed job, no replay buttons or checkboxes without a password.
    browser.goto(&dash.url("/dead-letters")).await;
    assert_eq!(browser.text("#dead-count").await, "1");
    assert!(browser.text("#dead-letters").await.contains(HOSTILE_CASTER));
    assert!(!browser.exists("#replay-selected").await);
    assert!(!browser.exists("input[type=checkbox]").await);

    // Scheduled: none in this batch.
    browser.goto(&dash.url("/scheduled")).await;
    assert!(browser.text("h1").await.contains("Scheduled"));
    assert_eq!(browser.text("#scheduled-count").await, "0");
    assert_eq!(
        browser.eval("return document.images.length").await,
        json!(0)
    );
    browser.assert_no_dialog().await;
    browser.assert_clean_console().await;

    // Live refresh: a new job appears without navigation; paused, it does not.
    browser.goto(&dash.url("/")).await;
    enqueue(&env, "live", &["studio-live-1"]);
    browser
        .wait_text(".card[data-status=failed] .n", |t| t == "2")
        .await;
    browser
        .client
        .find(Locator::Css("#live-toggle"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(
        browser
            .eval("return document.getElementById('live-toggle').getAttribute('aria-pressed')")
            .await,
        json!("true")
    );
    enqueue(&env, "live", &["studio-live-2"]);
    env.wait_terminal(5, WAIT).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        browser.text(".card[data-status=failed] .n").await,
        "2",
        "paused"
    );
    browser
        .client
        .find(Locator::Css("#live-toggle"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_text(".card[data-status=failed] .n", |t| t == "3")
        .await;
    browser.assert_clean_console().await;
    browser.assert_no_dialog().await;
    browser.close().await;

    // The JSON API shows the same.
    let get = |path: String| {
        let http = env.http.clone();
        let url = dash.url(&path);
        async move {
            let r = http.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap()
        }
    };
    let batches = get("/api/batches".into()).await;
    assert!(
        batches["batches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["batch_id"] == HOSTILE_BATCH && b["jobs"] == 3)
    );
    let batch = get(format!("/api/batches/{}", encode(HOSTILE_BATCH))).await;
    assert_eq!(batch["done"], 3);
    assert_eq!(
        batch["failures_by_error_code"][0][0],
        "InvalidCasterId.Malformed"
    );
    let job = get(format!("/api/jobs/{failed_id}")).await;
    assert_eq!(job["job"]["caster_id"], HOSTILE_CASTER);
    assert_eq!(job["attempts"][0]["request_id"], rid);
    let letters = get("/api/dead-letters".into()).await;
    assert!(letters["count"].as_u64().unwrap() >= 1);
    let list = get("/api/jobs?status=succeeded&limit=1".into()).await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
    let next = list["next"].as_str().expect("a second page").to_owned();
    let page2 = get(format!("/api/jobs?status=succeeded&limit=1&after={next}")).await;
    assert_ne!(page2["jobs"][0]["job_id"], list["jobs"][0]["job_id"]);
    assert_eq!(
        env.http
            .get(dash.url("/api/jobs/not-a-job"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // Read-only: actions refused, other methods not allowed.
    let own = dash.url("");
    let r = env
        .http
        .post(dash.url("/api/dead-letters/replay"))
        .header("origin", &own)
        .header("content-type", "application/json")
        .body(json!({"all": true}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = env
        .http
        .post(dash.url(&format!("/api/jobs/{failed_id}/cancel")))
        .header("origin", &own)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = env
        .http
        .delete(dash.url("/api/batches"))
        .send()
        .await
        .unwrap();
    assert!(matches!(r.status().as_u16(), 403 | 405), "{}", r.status());
    assert_eq!(
        env.queue_len(&env.names().dead).await,
        3,
        "nothing replayed"
    );
    drop(worker);
    drop(dash);
}

/// With the password: a job that failed (studio unknown) is fixed (the studio appears),
/// replayed from the page after a confirmation, and succeeds; another is replayed through
/// "all matching" a filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_the_page_brings_a_job_back() {
    let env = TestEnv::with_running(&["studio-1", "studio-2", "studio-3"]).await;
    let worker = env.spawn_worker(&[("STOPCASTER_QPS", "1000")]);
    worker.wait_ready().await;
    enqueue(
        &env,
        "end-of-show-42",
        &[
            "studio-1",
            "studio-2",
            "studio-3",
            "studio-late",
            "studio-later",
        ],
    );
    env.wait_terminal(5, WAIT).await;
    wait_for(WAIT, || async {
        env.queue_len(&env.names().dead).await == 2
    })
    .await
    .expect("two dead letters");
    let late = job_id_of(&env, "studio-late").await;
    let later = job_id_of(&env, "studio-later").await;
    // The cause is fixed: the studios exist now.
    env.fake.set_caster("studio-late", StudioState::Running);
    env.fake.set_caster("studio-later", StudioState::Running);

    let dash = Dashboard::start(&env, &[("STOPCASTER_DASHBOARD_PASSWORD", PASSWORD)]);
    let browser = Browser::start().await;
    browser.goto(&dash.url_with_password("/")).await;
    assert_eq!(browser.text(".card[data-status=failed] .n").await, "2");
    browser.goto(&dash.url("/batches/end-of-show-42")).await;
    assert_eq!(browser.text("#batch-done").await, "5 of 5");

    browser.goto(&dash.url("/dead-letters")).await;
    assert_eq!(browser.text("#dead-count").await, "2");
    let select = format!("input[name=job][value='{late}']");
    browser
        .client
        .find(Locator::Css(&select))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_text("#replay-selected", |t| t.contains("1 selected"))
        .await;
    browser
        .client
        .find(Locator::Css("#replay-selected"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The confirmation names the job; nothing happens before it is confirmed.
    let confirm = browser
        .wait_text("#confirm-list", |t| t.contains(&late.to_string()))
        .await;
    assert!(confirm.contains("studio-late"));
    assert_eq!(env.queue_len(&env.names().dead).await, 2);
    browser
        .client
        .find(Locator::Css("#confirm-ok"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_text("#action-result", |t| t.contains("Replayed 1"))
        .await;
    env.wait_terminal(5, WAIT).await;
    wait_for(WAIT, || async {
        env.job(late).await["status"] == "succeeded"
    })
    .await
    .expect("the replayed job succeeded");

    // The other one: filter on its caster, replay all that match.
    browser
        .goto(&dash.url("/dead-letters?caster=studio-later"))
        .await;
    assert_eq!(browser.text("#match-count").await, "1");
    browser
        .client
        .find(Locator::Css("#replay-matching"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_text("#confirm-list", |t| t.contains(&later.to_string()))
        .await;
    browser
        .client
        .find(Locator::Css("#confirm-ok"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_text("#action-result", |t| t.contains("Replayed 1"))
        .await;
    wait_for(WAIT, || async {
        env.job(later).await["status"] == "succeeded"
    })
    .await
    .expect("the second replayed job succeeded");
    assert_eq!(env.queue_len(&env.names().dead).await, 0);

    // The job page shows the replay and the success.
    browser.goto(&dash.url(&format!("/jobs/{late}"))).await;
    browser.wait_text("#job-status", |t| t == "succeeded").await;
    assert!(browser.body_text().await.contains("Replays"));
    browser.assert_no_dialog().await;
    browser.assert_clean_console().await;
    browser.close().await;
    drop(worker);
}

/// The password, the Origin and the Host are checked before anything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_foreign_origin_and_public_address_are_refused() {
    let env = TestEnv::new().await;
    let dash = Dashboard::start(&env, &[("STOPCASTER_DASHBOARD_PASSWORD", PASSWORD)]);
    let http = &env.http;
    let own = dash.url("");

    // Every request needs the password, pages, API and assets alike.
    for path in ["/", "/api/batches", "/dead-letters", "/nothing-here"] {
        let r = http.get(dash.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic ")
        );
        let r = http
            .get(dash.url(path))
            .basic_auth("admin", Some("wrong password"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = http
        .get(dash.url("/"))
        .basic_auth("anyone", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let html = r.text().await.unwrap();
    assert!(!html.contains(KEY_SECRET) && !html.contains(PASSWORD));
    assert!(!html.contains("guest:guest") && !html.contains("postgres://"));

    // Actions: only from the dashboard's own Origin.
    let replay = |origin: Option<&str>| {
        let mut r = http
            .post(dash.url("/api/dead-letters/replay"))
            .basic_auth("admin", Some(PASSWORD))
            .header("content-type", "application/json")
            .body(json!({"job_ids": [uuid::Uuid::new_v4()]}).to_string());
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    assert_eq!(
        replay(Some("http://evil.example")).await.unwrap().status(),
        403
    );
    assert_eq!(replay(Some("null")).await.unwrap().status(), 403);
    assert_eq!(replay(None).await.unwrap().status(), 403);
    let ok = replay(Some(&own)).await.unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = serde_json::from_str(&ok.text().await.unwrap()).unwrap();
    assert_eq!(body["missing"].as_array().unwrap().len(), 1);
    let r = http
        .post(dash.url(&format!("/api/jobs/{}/cancel", uuid::Uuid::new_v4())))
        .basic_auth("admin", Some(PASSWORD))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A wrong password is refused before the Origin is looked at.
    let r = http
        .post(dash.url("/api/dead-letters/replay"))
        .basic_auth("admin", Some("nope"))
        .header("origin", &own)
        .header("content-type", "application/json")
        .body(json!({"all": true}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    drop(dash);

    // Without a password: read-only, and only loopback host names.
    let dash = Dashboard::start(&env, &[]);
    let r = http
        .get(dash.url("/"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
    let r = http
        .post(dash.url("/api/dead-letters/replay"))
        .header("origin", dash.url(""))
        .header("content-type", "application/json")
        .body(json!({"all": true}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("read-only"));
    drop(dash);

    // Beyond loopback without a password: refused at start.
    let out = env.run_cli(&["dashboard", "--listen", "0.0.0.0:0"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without a password"), "{err}");
    // With one, it starts.
    let mut child = Command::new(env!("CARGO_BIN_EXE_stopcaster"))
        .args(["dashboard", "--listen", "0.0.0.0:0"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.child_env())
        .env("STOPCASTER_DASHBOARD_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("dashboard listening"))
        .unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.contains("dashboard listening on http://0.0.0.0:"),
        "{line}"
    );
}

/// Scheduled stops and paused accounts: the overview shows both, `/scheduled` lists the stops
/// earliest first, and one is cancelled from the page after a confirmation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_stops_are_cancelled_from_the_page_and_paused_accounts_shown() {
    let env = TestEnv::new().await;
    sqlx::query(
        "INSERT INTO stopcaster_account_pauses (account, code, worker, paused_at, updated_at)
         VALUES ('media', 'SignatureDoesNotMatch', 'worker-7', now(), now()),
                ('archive', 'InvalidAccessKeyId.NotFound', 'worker-gone',
                 now() - interval '1 hour', now() - interval '50 minutes')",
    )
    .execute(&env.pool)
    .await
    .unwrap();
    let (first, second, done) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    for (id, caster, status, due_min) in [
        (first, HOSTILE_CASTER, "scheduled", 5),
        (second, "studio-tonight", "scheduled", 90),
        (done, "studio-done", "succeeded", 0),
    ] {
        sqlx::query(
            "INSERT INTO caster_stop_jobs (job_id, caster_id, batch_id, status, not_before, payload)
             VALUES ($1, $2, 'end-of-show', $3, now() + make_interval(mins => $4), '{}')",
        )
        .bind(id)
        .bind(caster)
        .bind(status)
        .bind(due_min)
        .execute(&env.pool)
        .await
        .unwrap();
    }

    let dash = Dashboard::start(&env, &[("STOPCASTER_DASHBOARD_PASSWORD", PASSWORD)]);
    let browser = Browser::start().await;
    browser.goto(&dash.url_with_password("/")).await;
    let pauses = browser.text("#pauses").await;
    assert!(
        pauses.contains("media") && pauses.contains("SignatureDoesNotMatch"),
        "{pauses}"
    );
    let stale: Vec<String> = pauses
        .lines()
        .filter(|l| l.contains("stale"))
        .map(str::to_owned)
        .collect();
    assert_eq!(stale.len(), 1, "{pauses}");
    assert!(stale[0].contains("worker-gone"), "{pauses}");
    assert_eq!(browser.text(".card[data-status=scheduled] .n").await, "2");

    browser.goto(&dash.url("/scheduled")).await;
    assert_eq!(browser.text("#scheduled-count").await, "2");
    let rows = browser.text("#scheduled tbody").await;
    let (a, b) = (
        rows.find(HOSTILE_CASTER).unwrap(),
        rows.find("studio-tonight").unwrap(),
    );
    assert!(a < b, "earliest due first: {rows}");
    let button = format!("button[data-cancel='{first}']");
    browser
        .client
        .find(Locator::Css(&button))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_text("#confirm-list", |t| t.contains(HOSTILE_CASTER))
        .await;
    assert_eq!(
        env.job(first).await["status"],
        "scheduled",
        "not before the confirmation"
    );
    browser
        .client
        .find(Locator::Css("#confirm-ok"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_text("#action-result", |t| t.contains("Cancelled"))
        .await;
    assert_eq!(env.job(first).await["status"], "cancelled");
    browser.wait_text("#scheduled-count", |t| t == "1").await;
    browser.goto(&dash.url(&format!("/jobs/{first}"))).await;
    assert_eq!(browser.text("#job-status").await, "cancelled");
    let by = browser.text("#job-cancelled").await;
    assert!(by.contains("admin@dashboard (127.0.0.1)"), "{by}");
    assert!(!browser.exists("button[data-cancel]").await);
    browser.assert_no_dialog().await;
    browser.assert_clean_console().await;
    browser.close().await;

    // Through the API: a job already ended or called is not cancelled (409), an unknown one is
    // 404.
    let cancel = |id: uuid::Uuid| {
        env.http
            .post(dash.url(&format!("/api/jobs/{id}/cancel")))
            .basic_auth("admin", Some(PASSWORD))
            .header("origin", dash.url(""))
            .send()
    };
    let r = cancel(done).await.unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["status"], "succeeded");
    let called = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO caster_stop_jobs (job_id, caster_id, status, attempts, payload)
         VALUES ($1, 'studio-called', 'pending', 1, '{}')",
    )
    .bind(called)
    .execute(&env.pool)
    .await
    .unwrap();
    let r = cancel(called).await.unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["status"], "pending");
    assert_eq!(env.job(called).await["status"], "pending");
    assert_eq!(cancel(first).await.unwrap().status(), 409);
    assert_eq!(cancel(uuid::Uuid::new_v4()).await.unwrap().status(), 404);
    assert_eq!(cancel(second).await.unwrap().status(), 200);
    assert_eq!(env.job(second).await["status"], "cancelled");
}

/// A broker that cannot be reached is reported in place (the overview still shows what
/// Postgres knows), and the report names neither the broker's URL nor its password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_reported_in_place_without_its_url() {
    let env = TestEnv::new().await;
    let closed = free_port();
    let url = format!("amqp://guest:Br0ker-Pa55word@127.0.0.1:{closed}/%2f");
    let dash = Dashboard::start(&env, &[("AMQP_URL", &url)]);
    let r = env.http.get(dash.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("Queue depths unavailable"), "{html}");
    assert!(
        html.contains("jobs by status"),
        "the rest of the page is there"
    );
    let r = env
        .http
        .get(dash.url("/dead-letters"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let html = r.text().await.unwrap();
    assert!(html.contains("Cannot read the dead-letter queue"), "{html}");
    let r = env
        .http
        .get(dash.url("/api/dead-letters"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let json: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert!(json["error"].is_string());
    for text in [html, json.to_string()] {
        assert!(
            !text.contains("Br0ker-Pa55word") && !text.contains("amqp://"),
            "{text}"
        );
    }
}

/// The ledger of job counts agrees with the table through inserts, status changes, a batch
/// change, deletes, a fold and a truncate.
#[tokio::test]
async fn job_counts_ledger_matches_the_table() {
    let env = TestEnv::new().await;
    let pool = &env.pool;
    let exec = |sql: &'static str| async move {
        sqlx::query(sql).execute(pool).await.unwrap();
    };
    let check = || async {
        let truth: Vec<(Option<String>, String, i64)> = sqlx::query_as(
            "SELECT batch_id, status, count(*) FROM caster_stop_jobs GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        let ledger: Vec<(Option<String>, String, i64)> = sqlx::query_as(
            "SELECT batch_id, status, sum(jobs)::bigint FROM caster_stop_job_counts
             GROUP BY 1, 2 HAVING sum(jobs) <> 0 ORDER BY 1, 2",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(ledger, truth);
    };
    exec("INSERT INTO caster_stop_jobs (job_id, caster_id, batch_id, payload)
          SELECT gen_random_uuid(), 'c' || g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'b' || (g % 2) END, '{}'
          FROM generate_series(1, 300) g").await;
    check().await;
    exec("UPDATE caster_stop_jobs SET status = 'succeeded' WHERE caster_id LIKE 'c1%'").await;
    exec("UPDATE caster_stop_jobs SET status = 'failed' WHERE caster_id LIKE 'c2%'").await;
    exec("UPDATE caster_stop_jobs SET attempts = attempts + 1").await;
    check().await;
    exec("UPDATE caster_stop_jobs SET batch_id = 'moved' WHERE caster_id LIKE 'c3%'").await;
    exec("DELETE FROM caster_stop_jobs WHERE caster_id LIKE 'c4%'").await;
    check().await;
    exec(
        "WITH gone AS (DELETE FROM caster_stop_job_counts RETURNING *)
          INSERT INTO caster_stop_job_counts (batch_id, status, jobs, changed_at)
          SELECT batch_id, status, sum(jobs), max(changed_at) FROM gone
          GROUP BY batch_id, status HAVING sum(jobs) <> 0",
    )
    .await;
    check().await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM caster_stop_job_counts")
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(rows <= 12, "folded to one row per batch and status: {rows}");
    exec("TRUNCATE caster_stop_jobs CASCADE").await;
    check().await;
}

/// The README's screenshots (`docs/dashboard-*.png`): a batch of 60 studios at the default
/// quota of 10 calls per second, 6 of them unknown to the API, photographed while it runs.
/// `cargo test --test dashboard -- --ignored screenshots_for_the_readme`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/dashboard-*.png"]
async fn screenshots_for_the_readme() {
    let running: Vec<String> = (1..=54).map(|i| format!("studio-{i:02}")).collect();
    let env = TestEnv::with_running(&running.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let worker = env.spawn_worker(&[]);
    worker.wait_ready().await;
    let mut casters = running.clone();
    casters.extend((1..=6).map(|i| format!("studio-gone-{i}")));
    let refs: Vec<&str> = casters.iter().map(String::as_str).collect();
    enqueue(&env, "end-of-show-42", &refs);
    let dash = Dashboard::start(&env, &[("STOPCASTER_DASHBOARD_PASSWORD", PASSWORD)]);
    let browser = Browser::start().await;
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    tokio::time::sleep(Duration::from_secs(4)).await;
    browser
        .goto(&dash.url_with_password("/batches/end-of-show-42"))
        .await;
    browser.screenshot(&docs.join("dashboard-batch.png")).await;
    env.wait_terminal(60, WAIT).await;
    browser.goto(&dash.url("/")).await;
    browser
        .screenshot(&docs.join("dashboard-overview.png"))
        .await;
    browser.goto(&dash.url("/dead-letters")).await;
    browser
        .client
        .find(Locator::Css("#replay-matching"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_text("#confirm-list", |t| t.contains("studio-gone"))
        .await;
    browser
        .screenshot(&docs.join("dashboard-replay-confirm.png"))
        .await;
    browser.assert_clean_console().await;
    browser.close().await;
    drop(worker);
}

// ---- the benchmark ------------------------------------------------------------------------

/// Times the overview and the filtered lists over 1,000,000 jobs (docs/BENCHMARKS.md):
/// `cargo test --release --test dashboard -- --ignored --nocapture bench_one_million_jobs`
/// (`DASHBOARD_BENCH_JOBS` changes the size). Prints each query's plan and each endpoint's
/// median, 95th percentile and worst time over 30 requests; fails if a median reaches 100 ms
/// or a filter's plan reads the whole jobs table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: fills a database with a million jobs"]
async fn bench_one_million_jobs() {
    let jobs: i64 = std::env::var("DASHBOARD_BENCH_JOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let env = TestEnv::new().await;
    let pool = &env.pool;
    let started = std::time::Instant::now();
    // 100 batches; 1 % failed (three codes), 0.5 % rejected, 0.5 % pending, the rest
    // succeeded; created over the last 7 days, newest last; one attempt per job with a
    // RequestId, a tenth of them on the account "media".
    sqlx::query(
        "INSERT INTO caster_stop_jobs (job_id, caster_id, region_id, batch_id, account, status,
             conclusion, request_id, error_code, http_status, attempts, payload, created_at,
             updated_at, finished_at)
         SELECT md5('job' || g)::uuid, 'studio-' || g, 'cn-shanghai', 'batch-' || (g % 100),
                CASE WHEN g % 10 = 0 THEN 'media' END,
                CASE WHEN g % 100 = 0 THEN 'failed' WHEN g % 200 = 1 THEN 'rejected'
                     WHEN g % 200 = 3 THEN 'pending' ELSE 'succeeded' END,
                CASE WHEN g % 100 = 0 THEN 'api-error' WHEN g % 200 = 1 THEN 'rejected'
                     WHEN g % 200 = 3 THEN NULL ELSE 'stopped' END,
                md5('rid' || g),
                CASE WHEN g % 100 = 0 THEN (ARRAY['InvalidCaster.NotFound', 'IncorrectSceneStatus',
                     'InvalidCasterId.Malformed'])[1 + (g / 100) % 3] END,
                CASE WHEN g % 100 = 0 THEN 404 END, 1,
                json_build_object('caster_id', 'studio-' || g)::text,
                now() - make_interval(secs => ($1 - g) * 604800.0 / $1),
                now(), now()
         FROM generate_series(1, $1) g",
    )
    .bind(jobs)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO caster_stop_attempts (job_id, attempt, started_at, finished_at, http_status,
             request_id, error_code, outcome)
         SELECT job_id, 1, created_at,
                created_at, coalesce(http_status, 200), request_id, error_code,
                CASE WHEN status = 'succeeded' THEN 'ok' ELSE 'permanent' END
         FROM caster_stop_jobs WHERE status <> 'pending'",
    )
    .execute(pool)
    .await
    .unwrap();
    // The last five minutes: ten calls a second on the default account.
    sqlx::query(
        "UPDATE caster_stop_attempts a SET started_at = now() - make_interval(secs => s.n / 10.0)
         FROM (SELECT job_id, row_number() OVER (ORDER BY created_at DESC) AS n
               FROM caster_stop_jobs WHERE account IS NULL AND status = 'succeeded'
               ORDER BY created_at DESC LIMIT 3000) s
         WHERE a.job_id = s.job_id",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("VACUUM ANALYZE caster_stop_jobs")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("VACUUM ANALYZE caster_stop_attempts")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "WITH gone AS (DELETE FROM caster_stop_job_counts RETURNING *)
         INSERT INTO caster_stop_job_counts (batch_id, status, jobs, changed_at)
         SELECT batch_id, status, sum(jobs), max(changed_at) FROM gone
         GROUP BY batch_id, status HAVING sum(jobs) <> 0",
    )
    .execute(pool)
    .await
    .unwrap();
    // The steady state: the dashboard folds the ledger every few seconds, autovacuum follows.
    sqlx::query("VACUUM ANALYZE caster_stop_job_counts")
        .execute(pool)
        .await
        .unwrap();
    println!("filled {jobs} jobs in {:.1?}", started.elapsed());

    let rid: String = sqlx::query_scalar(
        "SELECT request_id FROM caster_stop_jobs WHERE caster_id = 'studio-4242'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let job: uuid::Uuid =
        sqlx::query_scalar("SELECT job_id FROM caster_stop_jobs WHERE caster_id = 'studio-4242'")
            .fetch_one(pool)
            .await
            .unwrap();
    let day_ago = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let day_ago_text = day_ago
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();

    // The plans: every filter through an index.
    let search = |f: fn(&mut stopcaster::JobSearch)| {
        let mut s = stopcaster::JobSearch::default();
        f(&mut s);
        s
    };
    let plans = [
        ("no filter", search(|_| {})),
        ("status", search(|s| s.status = Some("failed".into()))),
        ("batch", search(|s| s.batch_id = Some("batch-42".into()))),
        (
            "caster",
            search(|s| s.caster_id = Some("studio-4242".into())),
        ),
        (
            "error code",
            search(|s| s.error_code = Some("InvalidCaster.NotFound".into())),
        ),
        (
            "time range",
            stopcaster::JobSearch {
                from: Some(day_ago),
                ..Default::default()
            },
        ),
        (
            "status and time range",
            stopcaster::JobSearch {
                status: Some("failed".into()),
                from: Some(day_ago),
                ..Default::default()
            },
        ),
    ];
    for (name, s) in &plans {
        let plan = stopcaster::explain_search(pool, s, None, 51).await.unwrap();
        println!("EXPLAIN {name}:\n{plan}\n");
        assert!(
            !plan.contains("Seq Scan on caster_stop_jobs"),
            "{name} reads the whole table:\n{plan}"
        );
    }
    let s = stopcaster::JobSearch {
        request_id: Some(rid.clone()),
        ..Default::default()
    };
    let plan = stopcaster::explain_search(pool, &s, None, 51)
        .await
        .unwrap();
    println!("EXPLAIN RequestId:\n{plan}\n");
    assert!(!plan.contains("Seq Scan"), "{plan}");

    // The endpoints, through the real server.
    let dash = Dashboard::start(&env, &[]);
    let page2: Value = serde_json::from_str(
        &env.http
            .get(dash.url("/api/jobs?status=succeeded"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    let after = page2["next"].as_str().unwrap().to_owned();
    let endpoints = [
        ("/".to_owned(), true),
        ("/api/overview".to_owned(), true),
        ("/jobs".to_owned(), true),
        ("/jobs?status=failed".to_owned(), true),
        ("/jobs?batch=batch-42".to_owned(), true),
        ("/jobs?caster=studio-4242".to_owned(), true),
        ("/jobs?error_code=InvalidCaster.NotFound".to_owned(), true),
        (format!("/jobs?request_id={rid}"), true),
        (
            format!("/jobs?status=failed&from={}", encode(&day_ago_text)),
            true,
        ),
        ("/jobs?since=1h".to_owned(), true),
        (format!("/jobs?status=succeeded&after={after}"), true),
        ("/api/jobs?batch=batch-42&status=failed".to_owned(), true),
        ("/batches/batch-42".to_owned(), false),
        ("/api/batches".to_owned(), false),
        (format!("/jobs/{job}"), false),
    ];
    println!("| endpoint | median | p95 | worst |\n| --- | --- | --- | --- |");
    let mut slow = Vec::new();
    for (path, required) in &endpoints {
        let url = dash.url(path);
        for _ in 0..3 {
            let r = env.http.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            r.bytes().await.unwrap();
        }
        let mut times = Vec::new();
        for _ in 0..30 {
            let t = std::time::Instant::now();
            let r = env.http.get(&url).send().await.unwrap();
            r.bytes().await.unwrap();
            times.push(t.elapsed());
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let (p50, p95, worst) = (ms(times[15]), ms(times[28]), ms(times[29]));
        println!("| `{path}` | {p50:.1} ms | {p95:.1} ms | {worst:.1} ms |");
        if *required && p50 >= 100.0 {
            slow.push(format!("{path}: {p50:.1} ms"));
        }
    }
    assert!(slow.is_empty(), "medians of 100 ms or more: {slow:?}");
}
