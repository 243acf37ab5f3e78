//! `stopcaster dashboard` in a real browser (Debian's chromium through chromedriver, driven by
//! fantoccini), against a real worker, RabbitMQ, Postgres and the stand-in: every page shows
//! the data of a small batch, hostile ids and labels stay text and run nothing, read-only
//! without a password, refusals of a wrong password and a foreign Origin, a replay from the
//! page that brings a job back, and no error in the browser's console.

mod account;
mod actions;
mod api;
mod bulk;
mod hardening;
mod hostile;
mod operator;
mod pages;
mod refusals;
mod scale;

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
        Self::start_with(env, &[], extra)
    }

    /// With more flags of `stopcaster dashboard`.
    fn start_with(env: &TestEnv, args: &[&str], extra: &[(&str, &str)]) -> Dashboard {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stopcaster"))
            .args(["dashboard", "--listen", "127.0.0.1:0", "--refresh-s", "1"])
            .args(args)
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
        let port = common::free_port();
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

    /// The text of what `css` selects, found afresh when the live refresh replaced it between
    /// the find and the read.
    async fn text(&self, css: &str) -> String {
        for _ in 0..20 {
            let element = self
                .client
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("{css}: {e}"));
            match element.text().await {
                Ok(text) => return text,
                Err(e) if e.is_stale_element_reference() => continue,
                Err(e) => panic!("{css}: {e}"),
            }
        }
        panic!("{css}: replaced at every read");
    }

    /// Clicks what `css` selects. The live refresh may replace it between the find and the
    /// click (until a box is checked or a dialog open, the page refreshes itself): then it is
    /// found afresh.
    async fn click(&self, css: &str) {
        for _ in 0..20 {
            let element = self
                .client
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("{css}: {e}"));
            match element.click().await {
                Ok(()) => return,
                Err(e) if e.is_stale_element_reference() => continue,
                Err(e) => panic!("{css}: {e}"),
            }
        }
        panic!("{css}: replaced at every click");
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

/// Pauses `default` from the open page's form (the overview's or the account page's) with
/// `reason` and, if given, `until`, and confirms. `reason` holds [`HOSTILE_BATCH`], which the
/// confirmation must show as text.
async fn pause_from_page(browser: &Browser, reason: &str, until: Option<&str>) {
    let mut script = format!(
        "document.getElementById('pause-reason').value = {};",
        json!(reason)
    );
    if let Some(until) = until {
        script += &format!(
            " document.getElementById('pause-until').value = {};",
            json!(until)
        );
    }
    browser.eval(&script).await;
    browser.click("#pause-button").await;
    browser
        .wait_text("#confirm-list", |t| t.contains(HOSTILE_BATCH))
        .await;
    browser.click("#confirm-ok").await;
    browser
        .wait_text("#action-result", |t| t.contains("Paused default"))
        .await;
}

/// Resumes `default` from the open page's Resume button (the overview's or the account
/// page's), clicked from the page's own script (the live refresh replaces the row every
/// second), and confirms.
async fn resume_from_page(browser: &Browser) {
    browser
        .eval("document.querySelector(\"button[data-resume='default']\").click();")
        .await;
    browser
        .wait_text("#confirm-title", |t| t.contains("Resume"))
        .await;
    browser.click("#confirm-ok").await;
    browser
        .wait_text("#action-result", |t| t.contains("Resumed default"))
        .await;
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

// ---- the benchmark ------------------------------------------------------------------------
