//! Command-line and environment configuration (each setting is a flag and a variable), and
//! turning it into the library's types.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::domain::RegionId;
use stopcaster_live::accounts::AccountPlan;
use stopcaster_live::credentials::{self, Source, chain};
use stopcaster_live::{ClientConfig, EndpointSettings, SignatureVersion};

/// Calls per second per account when nothing says otherwise: Alibaba's StopCaster quota.
pub const DEFAULT_QPS: u32 = 10;
/// The margin added to each second of the pacer's schedule unless configured otherwise, in
/// milliseconds: a few milliseconds of network and scheduling jitter, at 0.1 % of the quota
/// each. The one source of the default: the flag, the pacer's `Rate::new` and bench use it.
pub const DEFAULT_PACER_MARGIN_MS: u64 = 5;
/// RabbitMQ on this machine, as its image starts (user guest, vhost `/`).
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The headings options are grouped under in `--help`.
const CONNECTION: &str = "Connection";
const CREDENTIALS: &str = "Credentials";
const API: &str = "API";
const PACING: &str = "Pacing";
const RETRIES: &str = "Retries";
const RUNNING: &str = "Running";

#[derive(Args, Clone, Debug)]
pub struct DatabaseArgs {
    /// Postgres URL.
    // hide_env_values: `--help` would print the URL taken from the environment, password and
    // all (clap cannot print it redacted).
    #[arg(
        help_heading = CONNECTION,
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://127.0.0.1/stopcaster"
    )]
    pub database_url: String,
}

#[derive(Args, Clone, Debug)]
pub struct BrokerArgs {
    /// RabbitMQ URL.
    // hide_env_values: as for DATABASE_URL.
    #[arg(
        help_heading = CONNECTION,
        long,
        env = "AMQP_URL",
        hide_env_values = true,
        default_value = DEFAULT_AMQP_URL
    )]
    pub amqp_url: String,
    /// Prefix P of every broker name (P, P.jobs, P.dlx, P.dead).
    #[arg(help_heading = CONNECTION, long, env = "STOPCASTER_QUEUE_PREFIX", default_value = "stopcaster")]
    pub queue_prefix: String,
}

#[derive(Args, Clone, Debug)]
pub struct ApiArgs {
    /// AccessKey id of the default account.
    #[arg(help_heading = CREDENTIALS, long, env = "ALIBABA_CLOUD_ACCESS_KEY_ID")]
    pub access_key_id: Option<String>,
    /// AccessKey secret of the default account (prefer the variable: flags show in `ps`).
    #[arg(help_heading = CREDENTIALS, long, env = "ALIBABA_CLOUD_ACCESS_KEY_SECRET", hide_env_values = true)]
    pub access_key_secret: Option<String>,
    /// STS security token, signed and sent when set.
    #[arg(help_heading = CREDENTIALS, long, env = "ALIBABA_CLOUD_SECURITY_TOKEN", hide_env_values = true)]
    pub security_token: Option<String>,
    /// The Alibaba Cloud account UID whose quota the default credentials use (default: learned
    /// from STS GetCallerIdentity).
    #[arg(help_heading = CREDENTIALS, long, env = "STOPCASTER_ACCOUNT_UID")]
    pub account_uid: Option<String>,
    /// PEM file of extra CA certificates to trust (a stand-in or a proxy serving TLS).
    #[arg(help_heading = API, long, env = "STOPCASTER_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// API endpoint for every region (default: by region, from Alibaba Cloud's table;
    /// `STOPCASTER_ENDPOINT_<REGION>` overrides one region).
    #[arg(help_heading = API, long, env = "STOPCASTER_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Signature of the calls: `v1` (RPC HMAC-SHA1; `v2` is the V2.0 SDKs' name for it) or
    /// `v3` (`ACS3-HMAC-SHA256`); an account of the accounts file may set its own.
    #[arg(
        help_heading = API,
        long,
        env = "STOPCASTER_SIGNATURE_VERSION",
        default_value = "v1",
        value_parser = parse_signature_version
    )]
    pub signature_version: SignatureVersion,
    /// RegionId for jobs that name none.
    #[arg(
        help_heading = API,
        long = "default-region",
        env = "STOPCASTER_REGION",
        default_value = "cn-shanghai"
    )]
    pub default_region: String,
    /// Connect timeout of a call, in milliseconds.
    #[arg(help_heading = API, long, env = "STOPCASTER_CONNECT_TIMEOUT_MS", default_value_t = 5000)]
    pub connect_timeout_ms: u64,
    /// Overall timeout of a call, in milliseconds.
    #[arg(help_heading = API, long, env = "STOPCASTER_TIMEOUT_MS", default_value_t = 10000)]
    pub timeout_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Credentials(#[from] credentials::ConfigError),
    #[error("invalid {0}: {1}")]
    Invalid(&'static str, String),
}

impl ApiArgs {
    /// The client settings but for the endpoint, which [`ApiArgs::endpoint_settings`] decides.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            endpoint: String::new(),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            timeout: Duration::from_millis(self.timeout_ms),
            ca_file: self.ca_file.clone(),
            signature: self.signature_version,
        }
    }

    /// The global endpoint (the flag or `STOPCASTER_ENDPOINT`) and every
    /// `STOPCASTER_ENDPOINT_<REGION>` of the process environment.
    pub fn endpoint_settings(&self) -> EndpointSettings {
        EndpointSettings::from_vars(
            self.endpoint.clone().filter(|e| !e.trim().is_empty()),
            std::env::vars(),
        )
    }

    /// A variable as the credentials chain sees it: the flags above win over the process
    /// environment (they are the same settings).
    fn env_var(&self, name: &str) -> Option<String> {
        let flag = match name {
            chain::ACCESS_KEY_ID => &self.access_key_id,
            chain::ACCESS_KEY_SECRET => &self.access_key_secret,
            chain::SECURITY_TOKEN => &self.security_token,
            _ => return std::env::var(name).ok(),
        };
        flag.clone().or_else(|| std::env::var(name).ok())
    }

    /// The default account's source, from Alibaba Cloud's default credentials chain.
    pub fn credentials_source(&self) -> Result<Source, ConfigError> {
        Ok(chain::from_env(&|name| self.env_var(name))?)
    }

    /// The default account: the chain's source, the configured UID, the worker's quota.
    pub fn default_account(&self, qps: u32) -> Result<AccountPlan, ConfigError> {
        Ok(AccountPlan {
            name: "default".to_owned(),
            source: self.credentials_source()?,
            qps,
            account_uid: self.account_uid.clone().filter(|u| !u.trim().is_empty()),
            endpoint: None,
            signature_version: None,
        })
    }

    /// Where `GetCallerIdentity` goes for sources that call no STS of their own.
    pub fn sts_endpoint(&self) -> String {
        chain::sts_endpoint(&|name| self.env_var(name), None, None)
    }

    pub fn region(&self) -> Result<RegionId, ConfigError> {
        RegionId::parse(&self.default_region)
            .map_err(|e| ConfigError::Invalid("STOPCASTER_REGION", e.to_string()))
    }
}

fn parse_signature_version(text: &str) -> Result<SignatureVersion, String> {
    SignatureVersion::parse(text).map_err(|e| e.to_string())
}

/// The attempt budget, shared by the worker (calls per job) and `dead-letters replay` (calls a
/// replayed job gets on top of those it made).
#[derive(Args, Clone, Debug)]
pub struct AttemptsArgs {
    /// Calls per job before a retryable failure is given up and dead-lettered.
    #[arg(help_heading = RETRIES, long, env = "STOPCASTER_MAX_ATTEMPTS", default_value_t = 8)]
    pub max_attempts: u32,
}

#[derive(Args, Clone, Debug)]
pub struct WorkerArgs {
    /// StopCaster calls per second per account, summed over every worker sharing the database.
    #[arg(help_heading = PACING, long, env = "STOPCASTER_QPS", default_value_t = DEFAULT_QPS)]
    pub qps: u32,
    /// Safety margin added to each second of the pacer's schedule, in milliseconds: the least
    /// an account's margin learnt from its calls' jitter may be (it learns up to 20 ms).
    #[arg(help_heading = PACING, long, env = "STOPCASTER_PACER_MARGIN_MS", default_value_t = DEFAULT_PACER_MARGIN_MS)]
    pub pacer_margin_ms: u64,
    #[command(flatten)]
    pub attempts: AttemptsArgs,
    /// First backoff ceiling, in milliseconds.
    #[arg(help_heading = RETRIES, long, env = "STOPCASTER_BACKOFF_INITIAL_MS", default_value_t = 500)]
    pub backoff_initial_ms: u64,
    /// Largest backoff, in milliseconds.
    #[arg(help_heading = RETRIES, long, env = "STOPCASTER_BACKOFF_MAX_MS", default_value_t = 30000)]
    pub backoff_max_ms: u64,
    /// Deliveries held and processed at once (the AMQP prefetch).
    #[arg(help_heading = RUNNING, long, env = "STOPCASTER_CONCURRENCY", default_value_t = 64)]
    pub concurrency: u16,
    /// Seconds in-flight jobs get to finish after SIGINT/SIGTERM.
    #[arg(help_heading = RUNNING, long, env = "STOPCASTER_DRAIN_TIMEOUT_S", default_value_t = 30)]
    pub drain_timeout_s: u64,
    /// Longest a delivery is held (in backoff or waiting for the database) before it is handed
    /// back to the queue, in seconds; well under RabbitMQ's consumer_timeout.
    #[arg(help_heading = RETRIES, long, env = "STOPCASTER_HOLD_CAP_S", default_value_t = 300)]
    pub hold_cap_s: u64,
    /// Longest a delivery waits for its paused account before it is parked in Postgres (still
    /// `pending`, acknowledged, handed back at the account's next probe or when it resumes), in
    /// seconds; never later than the hold cap.
    #[arg(help_heading = RETRIES, long, env = "STOPCASTER_PARK_AFTER_S", default_value_t = 30)]
    pub park_after_s: u64,
    /// Pacer: shared (through Postgres, for several replicas) or local (this process only).
    #[arg(help_heading = PACING, long, env = "STOPCASTER_PACER", value_enum, default_value_t = PacerKind::Shared)]
    pub pacer: PacerKind,
    /// JSON file naming the accounts a job may select with its `account` field (docs/pacing.md, "Several accounts").
    #[arg(help_heading = CREDENTIALS, long, env = "STOPCASTER_ACCOUNTS_FILE")]
    pub accounts_file: Option<std::path::PathBuf>,
    /// Serve Prometheus /metrics, /healthz and /readyz here (for example 127.0.0.1:9187).
    #[arg(help_heading = RUNNING, long, env = "STOPCASTER_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Open the connections calls will need before taking pacer slots, at start and after
    /// 10 s idle (`GET /` without parameters, no API call); `false` opens them on demand.
    #[arg(help_heading = RUNNING, long, env = "STOPCASTER_WARM_CONNECTIONS", default_value_t = true, action = clap::ArgAction::Set)]
    pub warm_connections: bool,
}

/// Where the pacer keeps each account's schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PacerKind {
    /// In Postgres, shared by every worker of the database.
    Shared,
    /// In this process only.
    Local,
}

impl std::fmt::Display for PacerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PacerKind::Shared => "shared",
            PacerKind::Local => "local",
        })
    }
}

impl WorkerArgs {
    /// The named accounts of the accounts file, if one is configured.
    pub fn named_accounts(&self) -> Result<Vec<AccountPlan>, ConfigError> {
        match &self.accounts_file {
            Some(path) => stopcaster_live::accounts::load_file(path, self.qps)
                .map_err(|e| ConfigError::Invalid("STOPCASTER_ACCOUNTS_FILE", e.to_string())),
            None => Ok(Vec::new()),
        }
    }
}
