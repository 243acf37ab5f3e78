//! The one helper every integration test shares: a fresh database, a unique queue prefix, the
//! stand-in on port 0, and the real `stopcaster` binary as a child process. Everything it makes
//! is removed when the `TestEnv` drops, so tests run in parallel and leave nothing behind.

pub mod hostile;
pub mod http;
pub mod pki;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions,
    QueueDeleteOptions,
};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::Value;
use sqlx::PgPool;
use stopcaster::Secret;
use stopcaster_fake_live::{self as fake_live, FakeLiveConfig, FakeLiveHandle};

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const PG_BASE: &str = "postgres://root@127.0.0.1:5432";
pub const KEY_ID: &str = "LTAI5tTestKeyId0001";
/// Distinctive so that a log search for it cannot match anything else.
pub const KEY_SECRET: &str = "S3cr3t-Never-Log-Me-9f8e7d6c5b4a";

/// The account UID the test workers are told their default key belongs to.
pub const ACCOUNT_UID: &str = "5000000000000001";
/// Worker settings for tests about what happens to jobs, not about pacing: 1,000 calls/s and 16
/// at once.
pub const FAST: &[(&str, &str)] = &[("STOPCASTER_QPS", "1000"), ("STOPCASTER_CONCURRENCY", "16")];

pub struct TestEnv {
    pub prefix: String,
    pub db_name: String,
    pub database_url: String,
    pub pool: PgPool,
    pub fake: FakeLiveHandle,
    pub http: reqwest::Client,
}

pub fn unique(tag: &str) -> String {
    format!("{tag}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

impl TestEnv {
    /// A fresh environment with a stand-in that knows the test key pair.
    pub async fn new() -> Self {
        Self::with_fake(FakeLiveConfig::new(vec![(
            KEY_ID.into(),
            Secret::new(KEY_SECRET),
        )]))
        .await
    }

    /// A fresh environment whose stand-in knows `running` as running studios (others: not
    /// found) and allows 1,000 calls per second, for tests about what happens to jobs, not
    /// about pacing.
    pub async fn with_running(running: &[&str]) -> Self {
        let mut config = FakeLiveConfig::new(vec![(KEY_ID.into(), Secret::new(KEY_SECRET))]);
        config.qps = 1000;
        config.casters = Some(
            running
                .iter()
                .map(|c| (c.to_string(), fake_live::StudioState::Running))
                .collect(),
        );
        Self::with_fake(config).await
    }

    pub async fn with_fake(config: FakeLiveConfig) -> Self {
        let db_name = unique("stopcaster_test");
        let database_url = format!("{PG_BASE}/{db_name}");
        let pool = stopcaster::migrate(&database_url)
            .await
            .expect("create and migrate the test database");
        let fake = fake_live::spawn(config).await.expect("start the stand-in");
        Self {
            prefix: unique("sct"),
            db_name,
            database_url,
            pool,
            fake,
            http: reqwest::Client::new(),
        }
    }

    pub fn names(&self) -> stopcaster::Names {
        stopcaster::Names::new(&self.prefix)
    }

    /// The environment a worker or CLI child process gets.
    pub fn child_env(&self) -> Vec<(String, String)> {
        [
            ("AMQP_URL", AMQP_URL.to_owned()),
            ("DATABASE_URL", self.database_url.clone()),
            ("STOPCASTER_QUEUE_PREFIX", self.prefix.clone()),
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID.to_owned()),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", KEY_SECRET.to_owned()),
            ("STOPCASTER_ENDPOINT", self.fake.endpoint()),
            // The stand-in answers STS too. Most tests configure the account's UID, so their
            // call logs hold StopCaster calls only; tests/credentials.rs learns it from STS.
            ("STOPCASTER_STS_ENDPOINT", self.fake.endpoint()),
            ("STOPCASTER_ACCOUNT_UID", ACCOUNT_UID.to_owned()),
            ("STOPCASTER_BACKOFF_INITIAL_MS", "20".to_owned()),
            ("STOPCASTER_BACKOFF_MAX_MS", "200".to_owned()),
            ("STOPCASTER_TIMEOUT_MS", "2000".to_owned()),
            ("RUST_LOG", "info,stopcaster=debug".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Starts `stopcaster worker` with the test environment plus `extra`.
    pub fn spawn_worker(&self, extra: &[(&str, &str)]) -> Worker {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stopcaster"));
        cmd.arg("worker")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.child_env())
            .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn the worker");
        let logs = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    logs.lock().unwrap().push(line);
                }
            });
        }
        Worker { child, logs }
    }

    /// Runs a `stopcaster` subcommand to completion with the test environment.
    pub fn run_cli(&self, args: &[&str], extra: &[(&str, &str)]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_stopcaster"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.child_env())
            .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .stdin(Stdio::null())
            .output()
            .expect("run stopcaster")
    }

    pub async fn amqp(&self) -> (Connection, lapin::Channel) {
        let conn = Connection::connect(AMQP_URL, ConnectionProperties::default())
            .await
            .expect("connect to RabbitMQ");
        let channel = conn.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        stopcaster::declare_topology(&conn, &self.names())
            .await
            .expect("declare topology");
        (conn, channel)
    }

    /// Messages ready in `queue` (a passive declare).
    pub async fn queue_len(&self, queue: &str) -> u32 {
        let (conn, ch) = self.amqp().await;
        let q = ch
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .unwrap();
        conn.close(200, "".into()).await.ok();
        q.message_count()
    }

    /// Publishes raw bodies to `P.jobs` and waits for the broker's confirms.
    pub async fn publish_raw(&self, bodies: &[Vec<u8>]) {
        let (conn, channel) = self.amqp().await;
        for body in bodies {
            let confirm = channel
                .basic_publish(
                    "".into(),
                    self.names().jobs.as_str().into(),
                    BasicPublishOptions::default(),
                    body,
                    BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_content_type("application/json".into()),
                )
                .await
                .unwrap();
            assert!(confirm.await.unwrap().is_ack());
        }
        conn.close(200, "".into()).await.ok();
    }

    /// Publishes one job per caster with a known job id; returns the job ids.
    pub async fn publish_jobs(&self, casters: &[String]) -> Vec<uuid::Uuid> {
        let ids: Vec<uuid::Uuid> = casters.iter().map(|_| uuid::Uuid::new_v4()).collect();
        let bodies: Vec<Vec<u8>> = casters
            .iter()
            .zip(&ids)
            .map(|(c, id)| {
                serde_json::to_vec(
                    &serde_json::json!({"caster_id": c, "job_id": id.to_string(), "batch_id": "t"}),
                )
                .unwrap()
            })
            .collect();
        self.publish_raw(&bodies).await;
        ids
    }

    /// Takes every message from `P.dead`: (body, job id header, reason header).
    pub async fn drain_dead(&self) -> Vec<(Vec<u8>, Option<String>, Option<String>)> {
        let (conn, channel) = self.amqp().await;
        let mut out = Vec::new();
        while let Some(msg) = channel
            .basic_get(
                self.names().dead.as_str().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()
        {
            let props = &msg.delivery.properties;
            out.push((
                msg.delivery.data.clone(),
                stopcaster::header_text(props, stopcaster::JOB_ID_HEADER),
                stopcaster::header_text(props, stopcaster::REASON_HEADER),
            ));
        }
        conn.close(200, "".into()).await.ok();
        out
    }

    /// Rows of `caster_stop_jobs` as JSON objects.
    pub async fn jobs(&self) -> Vec<Value> {
        self.json_rows(sqlx::query_scalar(
            "SELECT to_jsonb(j) AS row FROM caster_stop_jobs j ORDER BY created_at, job_id",
        ))
        .await
    }

    pub async fn job(&self, id: uuid::Uuid) -> Value {
        let query = sqlx::query_scalar(
            "SELECT to_jsonb(j) AS row FROM caster_stop_jobs j WHERE job_id = $1",
        );
        let mut rows = self.json_rows(query.bind(id)).await;
        assert_eq!(rows.len(), 1, "job {id}");
        rows.remove(0)
    }

    pub async fn attempts(&self, id: uuid::Uuid) -> Vec<Value> {
        let query = sqlx::query_scalar(
            "SELECT to_jsonb(a) AS row FROM caster_stop_attempts a WHERE job_id = $1 ORDER BY attempt",
        );
        self.json_rows(query.bind(id)).await
    }

    async fn json_rows(
        &self,
        query: sqlx::query::QueryScalar<'_, sqlx::Postgres, Value, sqlx::postgres::PgArguments>,
    ) -> Vec<Value> {
        query.fetch_all(&self.pool).await.unwrap()
    }

    pub async fn count_status(&self, status: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM caster_stop_jobs WHERE status = $1")
            .bind(status)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Waits until `n` rows are terminal (neither pending nor scheduled).
    pub async fn wait_terminal(&self, n: i64, timeout: Duration) {
        let pool = self.pool.clone();
        wait_for(timeout, || {
            let pool = pool.clone();
            async move {
                let done: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM caster_stop_jobs WHERE status NOT IN ('pending', 'scheduled')",
                )
                .fetch_one(&pool)
                .await
                .unwrap_or(0);
                done >= n
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} jobs did not finish within {timeout:?}"));
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        let db = self.db_name.clone();
        // Async cleanup from a synchronous Drop: its own thread and runtime. It must not touch
        // the pool, whose sockets belong to the test's (now blocked) runtime; DROP DATABASE
        // WITH (FORCE) ends those connections.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(conn) =
                    Connection::connect(AMQP_URL, ConnectionProperties::default()).await
                    && let Ok(ch) = conn.create_channel().await
                {
                    let names = stopcaster::Names::new(&prefix);
                    for q in [&names.jobs, &names.dead] {
                        let _ = ch
                            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                            .await;
                    }
                    for x in [&names.exchange, &names.dlx] {
                        let _ = ch
                            .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
                            .await;
                    }
                    let _ = conn.close(200, "".into()).await;
                }
                if let Ok(admin) = PgPool::connect(&format!("{PG_BASE}/postgres")).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
                        .execute(&admin)
                        .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

/// A running `stopcaster worker`; killed when dropped.
pub struct Worker {
    pub child: Child,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Worker {
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits for a log line containing `needle`.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) {
        let logs = self.logs.clone();
        let needle = needle.to_owned();
        wait_for(timeout, || {
            let found = logs.lock().unwrap().iter().any(|l| l.contains(&needle));
            async move { found }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no log line with {:?} within {timeout:?}; logs:\n{}",
                needle,
                self.logs().join("\n")
            )
        });
    }

    pub async fn wait_ready(&self) {
        self.wait_log("consuming", Duration::from_secs(30)).await;
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "worker did not exit within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub async fn wait_for<F, Fut>(timeout: Duration, mut cond: F) -> Result<(), ()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs a command to completion, panicking with its standard error unless it succeeded.
pub fn run_command(cmd: &str, args: &[&str]) {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A port with nothing listening on it (bound, then released), for a server to take or for a
/// client to find closed.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `127.0.0.1:PORT` of a [`free_port`].
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// A new, empty directory under the system's temporary directory, named after `tag`.
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique(tag));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A finished command's standard output, as text.
pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A finished command's standard error, as text.
pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One StopCaster call of `caster` in `cn-shanghai` with `creds`, through our client.
pub async fn stop_as(
    client: &stopcaster::LiveClient,
    creds: &stopcaster::Credentials,
    caster: &str,
) -> stopcaster::CallOutcome {
    let caster_id = stopcaster::CasterId::parse(caster).unwrap();
    let region_id = stopcaster::RegionId::parse("cn-shanghai").unwrap();
    client
        .stop_caster(
            creds,
            stopcaster::StopCasterRequest {
                caster_id: &caster_id,
                region_id: &region_id,
            },
        )
        .await
}
