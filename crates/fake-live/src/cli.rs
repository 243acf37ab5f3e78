//! `stopcaster fake-live`: its flags (the public contract's table) and how they become a
//! [`FakeLiveConfig`], so `main.rs` only dispatches.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use super::{FakeLiveConfig, Role, load_casters, parse_access_key, serve, tls_config};

/// A local stand-in for the ApsaraVideo Live endpoint, STS and the ECS metadata service.
#[derive(clap::Args, Debug)]
pub struct FakeLiveArgs {
    /// Where to serve.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Accepted AccessKey ID:SECRET[:UID] (repeatable); default: the environment's
    /// ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET. Without UID, a key is an account of its own.
    #[arg(long = "access-key")]
    pub access_keys: Vec<String>,
    /// StopCaster calls per account in any sliding one-second window.
    #[arg(long, default_value_t = 10)]
    pub qps: u32,
    /// A RAM role (acs:ram::UID:role/NAME) that AssumeRole and AssumeRoleWithOIDC may assume
    /// (repeatable); the first is the ECS metadata service's and /_fake/credentials' role.
    #[arg(long = "ram-role")]
    pub ram_roles: Vec<String>,
    /// The OIDC token AssumeRoleWithOIDC accepts, read afresh for each request.
    #[arg(long)]
    pub oidc_token_file: Option<PathBuf>,
    /// Lifetime of the temporary credentials issued, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub sts_lifetime: u64,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Each new connection's first request is taken only after this delay, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub connect_delay_ms: u64,
    /// JSON object {"<CasterId>": "running"|"stopped"}; other ids are then NotFound.
    #[arg(long)]
    pub casters: Option<PathBuf>,
    /// Share of calls answered 503 ServiceUnavailable.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Latency added to each call, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Its clock runs this many seconds ahead (negative: behind): timestamp checks and the
    /// Date header.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub clock_offset_s: i64,
}

impl FakeLiveArgs {
    /// The configuration these flags (and, for keys, the environment) describe.
    pub fn config(&self) -> anyhow::Result<FakeLiveConfig> {
        let mut keys = Vec::new();
        let mut accounts = Vec::new();
        for value in &self.access_keys {
            let (id, secret, uid) = parse_access_key(value)?;
            if let Some(uid) = uid {
                accounts.push((id.clone(), uid));
            }
            keys.push((id, secret));
        }
        if keys.is_empty() {
            let id = std::env::var("ALIBABA_CLOUD_ACCESS_KEY_ID").ok();
            let secret = std::env::var("ALIBABA_CLOUD_ACCESS_KEY_SECRET").ok();
            match (id, secret) {
                (Some(id), Some(secret)) => {
                    keys.push((id, stopcaster_live::credentials::Secret::new(secret)));
                }
                _ => bail!(
                    "no access keys: pass --access-key ID:SECRET or set ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET"
                ),
            }
        }
        let mut config = FakeLiveConfig::new(keys);
        config.accounts = accounts.into_iter().collect();
        config.qps = self.qps;
        config.ram_roles = self
            .ram_roles
            .iter()
            .map(|arn| Role::parse(arn))
            .collect::<Result<_, _>>()?;
        config.oidc_token_file = self.oidc_token_file.clone();
        config.sts_lifetime = Duration::from_secs(self.sts_lifetime);
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config.tls = Some(tls_config(cert, key)?);
        }
        config.connect_delay = Duration::from_millis(self.connect_delay_ms);
        config.fail_rate = self.fail_rate;
        config.latency = Duration::from_millis(self.latency_ms);
        config.clock_offset_s = self.clock_offset_s;
        if let Some(path) = &self.casters {
            config.casters = Some(load_casters(path).map_err(anyhow::Error::msg)?);
        }
        Ok(config)
    }
}

/// Serves until `shutdown` is cancelled; prints `fake-live listening on URL` to stderr once
/// bound, which scripts and tests wait for.
pub async fn run(args: FakeLiveArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = args.config()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    eprintln!("fake-live listening on {scheme}://{addr}");
    let _ = std::io::stderr().flush();
    serve(listener, config, shutdown).await?;
    Ok(())
}
