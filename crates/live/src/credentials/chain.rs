//! Which credentials source is configured, as a pure function of an environment lookup and the
//! aliyun CLI config's text, so every rule has a unit test. [`from_env`] is the thin
//! impure wrapper that reads the real environment and file.
//!
//! The order is the contract's ("Credentials"), which is Alibaba's default chain
//! (credentials-go `providers/default.go`, credentials-python `provider/default.py`) except
//! that the credentials URI comes third, before the CLI profile, where the contract puts it
//! (both libraries try it last). Where this is stricter than those libraries it is on purpose:
//! they try every source and collect errors, so a half-configured source silently gives way to
//! the next one (often the ECS role, another identity); here a source that is half configured
//! is an error naming what is missing, and the first configured source is the only one used.
//!
//! 1. `ALIBABA_CLOUD_ACCESS_KEY_ID` + `ALIBABA_CLOUD_ACCESS_KEY_SECRET`
//!    (+ `ALIBABA_CLOUD_SECURITY_TOKEN`).
//! 2. RRSA/OIDC: `ALIBABA_CLOUD_ROLE_ARN`, `ALIBABA_CLOUD_OIDC_PROVIDER_ARN`,
//!    `ALIBABA_CLOUD_OIDC_TOKEN_FILE` (+ `ALIBABA_CLOUD_ROLE_SESSION_NAME`).
//! 3. `ALIBABA_CLOUD_CREDENTIALS_URI`.
//! 4. The aliyun CLI config (`ALIBABA_CLOUD_CONFIG_FILE`, as credentials-go's
//!    `cli_profile.go` honours it, else `~/.aliyun/config.json`), profile
//!    `ALIBABA_CLOUD_PROFILE` or `current`; skipped with `ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true`.
//! 5. The ECS instance RAM role, unless `ALIBABA_CLOUD_ECS_METADATA_DISABLED=true`: named by
//!    `ALIBABA_CLOUD_ECS_METADATA`, else discovered. Like Alibaba's libraries this is tried
//!    even when nothing names it ([`EcsRole::implicit`]); an unreachable metadata service then
//!    means "no credentials configured" (see [`super::refresh::CredentialsError::NoCredentials`]).

use std::fmt;
use std::path::PathBuf;

use super::profile;
use super::{Credentials, Secret};

/// An environment lookup: the value of a variable, if set.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

pub const ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
pub const ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
pub const SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";
pub const ROLE_ARN: &str = "ALIBABA_CLOUD_ROLE_ARN";
pub const OIDC_PROVIDER_ARN: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
pub const OIDC_TOKEN_FILE: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";
pub const ROLE_SESSION_NAME: &str = "ALIBABA_CLOUD_ROLE_SESSION_NAME";
pub const CREDENTIALS_URI: &str = "ALIBABA_CLOUD_CREDENTIALS_URI";
pub const CONFIG_FILE: &str = "ALIBABA_CLOUD_CONFIG_FILE";
pub const PROFILE: &str = "ALIBABA_CLOUD_PROFILE";
pub const CLI_PROFILE_DISABLED: &str = "ALIBABA_CLOUD_CLI_PROFILE_DISABLED";
pub const ECS_METADATA: &str = "ALIBABA_CLOUD_ECS_METADATA";
pub const ECS_METADATA_DISABLED: &str = "ALIBABA_CLOUD_ECS_METADATA_DISABLED";
pub const IMDSV1_DISABLED: &str = "ALIBABA_CLOUD_IMDSV1_DISABLED";
pub const STS_REGION: &str = "ALIBABA_CLOUD_STS_REGION";
pub const VPC_ENDPOINT_ENABLED: &str = "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED";
pub const STS_ENDPOINT: &str = "STOPCASTER_STS_ENDPOINT";
/// The STS endpoint ACK's pod-identity webhook injects next to the RRSA variables (often a
/// host without a scheme, e.g. `sts-vpc.cn-hangzhou.aliyuncs.com`).
pub const ALIBABA_STS_ENDPOINT: &str = "ALIBABA_CLOUD_STS_ENDPOINT";
pub const ECS_METADATA_ENDPOINT: &str = "STOPCASTER_ECS_METADATA_ENDPOINT";

pub const DEFAULT_STS_ENDPOINT: &str = "https://sts.aliyuncs.com";
pub const DEFAULT_ECS_METADATA_ENDPOINT: &str = "http://100.100.100.200";
/// `DurationSeconds` when none is configured (credentials-go and -python: 3600).
pub const DEFAULT_DURATION_SECONDS: u32 = 3600;
/// STS refuses shorter sessions; Alibaba's libraries refuse them before asking.
pub const MIN_DURATION_SECONDS: u32 = 900;

/// A configured source and a short label naming it in logs, metrics and errors.
#[derive(Clone, Debug)]
pub struct Source {
    /// `env`, `oidc`, `credentials-uri`, `cli-profile "NAME" (MODE)`, `ecs-ram-role`.
    pub label: String,
    pub kind: SourceKind,
}

#[derive(Clone, Debug)]
pub enum SourceKind {
    /// Long-term AccessKeys or a fixed STS token: never refreshed.
    Static(Credentials),
    /// `AssumeRoleWithOIDC` with the token file's current content.
    Oidc(OidcRole),
    /// An HTTP GET answering temporary credentials.
    Uri(UriSource),
    /// `AssumeRole` signed with the credentials of `base` (fetched afresh each time, since
    /// they may be temporary themselves).
    AssumeRole { base: Box<Source>, role: RamRole },
    /// The ECS instance's RAM role through the metadata service.
    Ecs(EcsRole),
}

impl Source {
    /// True when its credentials never change, so there is nothing to refresh.
    pub fn is_static(&self) -> bool {
        matches!(self.kind, SourceKind::Static(_))
    }

    /// The STS endpoint this source calls, if it calls one (a profile's `sts_region` may make
    /// it differ from the environment's). `GetCallerIdentity` for its credentials can go there.
    pub fn sts_endpoint(&self) -> Option<&str> {
        match &self.kind {
            SourceKind::Oidc(role) => Some(&role.sts_endpoint),
            SourceKind::AssumeRole { role, .. } => Some(&role.sts_endpoint),
            SourceKind::Static(_) | SourceKind::Uri(_) | SourceKind::Ecs(_) => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// The parameters of an `AssumeRoleWithOIDC` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcRole {
    pub role_arn: String,
    pub oidc_provider_arn: String,
    /// Read afresh for every request: the token rotates (ACK rewrites it).
    pub token_file: PathBuf,
    pub session_name: String,
    pub duration_seconds: u32,
    pub policy: Option<String>,
    /// Full URL, e.g. `https://sts.aliyuncs.com`.
    pub sts_endpoint: String,
}

/// The parameters of an `AssumeRole` call.
#[derive(Clone, Debug)]
pub struct RamRole {
    pub role_arn: String,
    pub session_name: String,
    pub duration_seconds: u32,
    pub policy: Option<String>,
    /// Not meant to be secret, but it guards the role's trust policy: kept out of logs anyway.
    pub external_id: Option<Secret>,
    pub sts_endpoint: String,
}

/// A credentials URI. `Debug` shows it without its query, which may carry a token.
#[derive(Clone, PartialEq, Eq)]
pub struct UriSource {
    pub url: String,
}

impl fmt::Debug for UriSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UriSource")
            .field("url", &super::http::redact_url(&self.url))
            .finish()
    }
}

/// The ECS metadata service and which role to ask it for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcsRole {
    /// `None`: discovered from `/latest/meta-data/ram/security-credentials/`.
    pub role_name: Option<String>,
    /// Full URL, e.g. `http://100.100.100.200`.
    pub endpoint: String,
    /// `ALIBABA_CLOUD_IMDSV1_DISABLED=true`: no fallback to requests without a token.
    pub imdsv1_disabled: bool,
    /// True when nothing named this source and it is only the chain's last resort.
    pub implicit: bool,
}

/// A configuration that names a source but not well enough to use it. Messages name variables,
/// files, profiles and fields, never their secret values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{set} is set but not {missing}")]
    Incomplete { set: String, missing: String },
    #[error("{var}: {message}")]
    InvalidValue { var: &'static str, message: String },
    #[error("aliyun CLI config {path}: {message}")]
    CliConfig { path: String, message: String },
    #[error("aliyun CLI config {path}, profile {profile:?}: {message}")]
    CliProfile {
        path: String,
        profile: String,
        message: String,
    },
    #[error(
        "no credentials configured: set {ACCESS_KEY_ID} and {ACCESS_KEY_SECRET}, or {ROLE_ARN}, \
         {OIDC_PROVIDER_ARN} and {OIDC_TOKEN_FILE}, or {CREDENTIALS_URI}, or configure an aliyun \
         CLI profile{}{}",
        cli_config_path.as_deref().map(|p| format!(" in {p}")).unwrap_or_default(),
        if *ecs_disabled { String::new() } else { ", or run on an ECS instance with a RAM role".to_owned() }
    )]
    NothingConfigured {
        cli_config_path: Option<String>,
        ecs_disabled: bool,
    },
}

/// The aliyun CLI config as found: where it is and, if it exists, its text.
#[derive(Clone, Debug)]
pub struct CliConfigFile {
    pub path: String,
    pub text: Option<String>,
}

/// A variable's value, with an empty value meaning unset (as in Alibaba's libraries).
fn var(env: Env<'_>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

/// `true`/`TRUE`/`True` only, as Alibaba's `strings.ToLower(...) == "true"`.
fn flag(env: Env<'_>, name: &str) -> bool {
    var(env, name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The STS endpoint: `STOPCASTER_STS_ENDPOINT` when set, else `ALIBABA_CLOUD_STS_ENDPOINT` (what
/// ACK injects; `https://` is assumed for a bare host), else derived like credentials-go's
/// `ram_role_arn.go`/`oidc.go`: `sts-vpc.` instead of `sts.` when VPC is enabled, `<R>.` for an
/// STS region, `https://sts.aliyuncs.com` without a region (VPC alone does not change it, as in
/// those libraries). A profile's own `sts_region` and `enable_vpc` come before the environment's
/// (credentials-python: a profile's explicit `enable_vpc: false` wins over the variable).
pub fn sts_endpoint(env: Env<'_>, region: Option<&str>, vpc: Option<bool>) -> String {
    if let Some(endpoint) = var(env, STS_ENDPOINT).or_else(|| var(env, ALIBABA_STS_ENDPOINT)) {
        let endpoint = endpoint.trim_end_matches('/');
        return if endpoint.contains("://") {
            endpoint.to_owned()
        } else {
            format!("https://{endpoint}")
        };
    }
    let vpc = vpc.unwrap_or_else(|| flag(env, VPC_ENDPOINT_ENABLED));
    let prefix = if vpc { "sts-vpc" } else { "sts" };
    match region
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .or_else(|| var(env, STS_REGION))
    {
        Some(region) => format!("https://{prefix}.{region}.aliyuncs.com"),
        None => DEFAULT_STS_ENDPOINT.to_owned(),
    }
}

/// The metadata service: `STOPCASTER_ECS_METADATA_ENDPOINT` or `http://100.100.100.200`.
pub fn ecs_metadata_endpoint(env: Env<'_>) -> String {
    var(env, ECS_METADATA_ENDPOINT)
        .map(|e| e.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| DEFAULT_ECS_METADATA_ENDPOINT.to_owned())
}

/// Where the aliyun CLI config is: `ALIBABA_CLOUD_CONFIG_FILE`, else `$HOME/.aliyun/config.json`.
pub fn cli_config_path(env: Env<'_>) -> Option<PathBuf> {
    var(env, CONFIG_FILE)
        .map(PathBuf::from)
        .or_else(|| var(env, "HOME").map(|h| PathBuf::from(h).join(".aliyun/config.json")))
}

/// `RoleSessionName` when none is configured. Alibaba's libraries use
/// `credentials-go-<µs>`/`credentials-python-<s>`; the same shape names this program in the
/// role's audit trail (ActionTrail shows it).
pub fn default_session_name() -> String {
    format!(
        "stopcaster-{}",
        time::OffsetDateTime::now_utc().unix_timestamp()
    )
}

/// A configured `DurationSeconds` (0 or absent: the default), refused below STS's minimum.
pub fn duration_seconds(configured: Option<u32>) -> Result<u32, String> {
    match configured {
        None | Some(0) => Ok(DEFAULT_DURATION_SECONDS),
        Some(s) if s < MIN_DURATION_SECONDS => Err(format!(
            "a session lasts at least {MIN_DURATION_SECONDS} seconds, not {s}"
        )),
        Some(s) => Ok(s),
    }
}

/// The first configured source. `cli_config` is the aliyun CLI config (`None` when no path
/// could be determined, `text: None` when the file does not exist). The order is
/// credentials-go's default chain; each source is configured, absent (`None`: ask the next) or
/// half-configured (an error, never a skip to the next).
pub fn select(env: Env<'_>, cli_config: Option<&CliConfigFile>) -> Result<Source, ConfigError> {
    if let Some(source) = static_keys(env)? {
        return Ok(source);
    }
    if let Some(source) = oidc(env)? {
        return Ok(source);
    }
    if let Some(source) = credentials_uri(env)? {
        return Ok(source);
    }
    if let Some(source) = cli_profile(env, cli_config)? {
        return Ok(source);
    }
    ecs_role(env, cli_config)
}

/// 1. Static AccessKeys (credentials-go `env.go`). Half a pair is an error, not a skip.
fn static_keys(env: Env<'_>) -> Result<Option<Source>, ConfigError> {
    match (var(env, ACCESS_KEY_ID), var(env, ACCESS_KEY_SECRET)) {
        (Some(id), Some(secret)) => {
            let token = var(env, SECURITY_TOKEN);
            let label = if token.is_some() { "env-sts" } else { "env" };
            Ok(Some(Source {
                label: label.to_owned(),
                kind: SourceKind::Static(Credentials::new(id, secret).with_security_token(token)),
            }))
        }
        (Some(_), None) => Err(incomplete(ACCESS_KEY_ID, &[ACCESS_KEY_SECRET])),
        (None, Some(_)) => Err(incomplete(ACCESS_KEY_SECRET, &[ACCESS_KEY_ID])),
        (None, None) => Ok(None),
    }
}

/// 2. RRSA/OIDC (credentials-python `auth_util.enable_oidc_credential`: all three set).
fn oidc(env: Env<'_>) -> Result<Option<Source>, ConfigError> {
    let oidc = [ROLE_ARN, OIDC_PROVIDER_ARN, OIDC_TOKEN_FILE].map(|v| (v, var(env, v)));
    if let [(_, Some(role_arn)), (_, Some(provider)), (_, Some(file))] = &oidc {
        return Ok(Some(Source {
            label: "oidc".to_owned(),
            kind: SourceKind::Oidc(OidcRole {
                role_arn: role_arn.clone(),
                oidc_provider_arn: provider.clone(),
                token_file: PathBuf::from(file),
                session_name: var(env, ROLE_SESSION_NAME).unwrap_or_else(default_session_name),
                duration_seconds: DEFAULT_DURATION_SECONDS,
                policy: None,
                sts_endpoint: sts_endpoint(env, None, None),
            }),
        }));
    }
    if let Some((set, _)) = oidc.iter().find(|(_, v)| v.is_some()) {
        let missing: Vec<&str> = oidc
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(n, _)| *n)
            .collect();
        return Err(incomplete(set, &missing));
    }
    Ok(None)
}

/// 3. Credentials URI.
fn credentials_uri(env: Env<'_>) -> Result<Option<Source>, ConfigError> {
    let Some(url) = var(env, CREDENTIALS_URI) else {
        return Ok(None);
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ConfigError::InvalidValue {
            var: CREDENTIALS_URI,
            message: "not an http:// or https:// URL".to_owned(),
        });
    }
    Ok(Some(Source {
        label: "credentials-uri".to_owned(),
        kind: SourceKind::Uri(UriSource { url }),
    }))
}

/// 4. The aliyun CLI profile.
fn cli_profile(
    env: Env<'_>,
    cli_config: Option<&CliConfigFile>,
) -> Result<Option<Source>, ConfigError> {
    if flag(env, CLI_PROFILE_DISABLED) {
        return Ok(None);
    }
    let wanted = var(env, PROFILE);
    match cli_config {
        Some(CliConfigFile {
            path,
            text: Some(text),
        }) => profile::select(env, path, text, wanted.as_deref()),
        Some(CliConfigFile { path, text: None }) if wanted.is_some() => {
            Err(ConfigError::CliConfig {
                path: path.clone(),
                message: format!("{PROFILE} names a profile but the file does not exist"),
            })
        }
        _ => Ok(None),
    }
}

/// 5. The ECS instance RAM role, the last resort unless disabled.
fn ecs_role(env: Env<'_>, cli_config: Option<&CliConfigFile>) -> Result<Source, ConfigError> {
    if flag(env, ECS_METADATA_DISABLED) {
        return Err(ConfigError::NothingConfigured {
            cli_config_path: cli_config.map(|c| c.path.clone()),
            ecs_disabled: true,
        });
    }
    let role_name = var(env, ECS_METADATA);
    Ok(Source {
        label: "ecs-ram-role".to_owned(),
        kind: SourceKind::Ecs(EcsRole {
            implicit: role_name.is_none(),
            role_name,
            endpoint: ecs_metadata_endpoint(env),
            imdsv1_disabled: flag(env, IMDSV1_DISABLED),
        }),
    })
}

fn incomplete(set: &str, missing: &[&str]) -> ConfigError {
    ConfigError::Incomplete {
        set: set.to_owned(),
        missing: missing.join(" and "),
    }
}

/// Reads the aliyun CLI config file `env` points at (or the default one), then [`select`]s.
pub fn from_env(env: Env<'_>) -> Result<Source, ConfigError> {
    select(env, read_cli_config(env)?.as_ref())
}

/// The aliyun CLI config file `env` points at: `None` when no path can be determined, `text:
/// None` when the file does not exist.
pub fn read_cli_config(env: Env<'_>) -> Result<Option<CliConfigFile>, ConfigError> {
    cli_config_path(env)
        .map(|path| {
            let shown = path.display().to_string();
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(CliConfigFile {
                    path: shown,
                    text: Some(text),
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CliConfigFile {
                    path: shown,
                    text: None,
                }),
                Err(e) => Err(ConfigError::CliConfig {
                    path: shown,
                    message: format!("cannot read it: {e}"),
                }),
            }
        })
        .transpose()
}

#[cfg(test)]
#[path = "chain_tests.rs"]
pub(super) mod tests;
