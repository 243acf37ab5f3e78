//! The aliyun CLI's config file (`~/.aliyun/config.json`) as a credentials source: which profile
//! is selected and what source its mode makes. Pure: the caller passes the file's text.
//!
//! Field names and modes follow credentials-go `providers/cli_profile.go` (its `profile` struct)
//! and credentials-python `provider/cli_profile.py`:
//!
//! | mode | fields | source |
//! | --- | --- | --- |
//! | `AK` | `access_key_id`, `access_key_secret` | static |
//! | `StsToken` | + `sts_token` | static |
//! | `RamRoleArn` | AK + `ram_role_arn`, `ram_session_name`, `expired_seconds`, `policy`, `external_id`, `sts_region`, `enable_vpc` | `AssumeRole` signed with the AK |
//! | `EcsRamRole` | `ram_role_name` (optional: discovered) | ECS metadata |
//! | `OIDC` | `ram_role_arn`, `oidc_provider_arn`, `oidc_token_file`, session, duration, `policy`, `sts_region`, `enable_vpc` | `AssumeRoleWithOIDC` |
//! | `ChainableRamRoleArn` | `source_profile` + the `RamRoleArn` fields | `source_profile`'s credentials, then `AssumeRole` |
//!
//! The session name is `ram_session_name` (credentials-go, for every mode), else
//! `role_session_name` (credentials-python's OIDC mode), else `ALIBABA_CLOUD_ROLE_SESSION_NAME`,
//! else a default. Other modes (`CloudSSO`, `OAuth`, `External`, ...) are refused by name.

use std::path::PathBuf;

use serde::Deserialize;

use super::chain::{
    self, CliConfigFile, ConfigError, EcsRole, Env, OidcRole, RamRole, Source, SourceKind,
    duration_seconds,
};
use super::{Credentials, Secret};

#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    current: String,
    #[serde(default)]
    profiles: Vec<Profile>,
}

/// One profile. Deliberately no `Debug`: it holds secrets.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Profile {
    name: String,
    mode: String,
    access_key_id: String,
    access_key_secret: String,
    sts_token: String,
    ram_role_arn: String,
    ram_session_name: String,
    role_session_name: String,
    expired_seconds: Option<u32>,
    sts_region: String,
    enable_vpc: Option<bool>,
    source_profile: String,
    ram_role_name: String,
    oidc_token_file: String,
    oidc_provider_arn: String,
    policy: String,
    external_id: String,
}

/// The modes this reads.
pub const SUPPORTED_MODES: &[&str] = &[
    "AK",
    "StsToken",
    "RamRoleArn",
    "EcsRamRole",
    "OIDC",
    "ChainableRamRoleArn",
];

/// A `ChainableRamRoleArn` may chain through this many profiles; more is surely a loop.
const MAX_CHAIN: usize = 8;

/// The source of the selected profile: `wanted` (`ALIBABA_CLOUD_PROFILE`) or the file's
/// `current`. `Ok(None)` when no profile is selected, or when `current` selects the blank `AK`
/// placeholder the CLI writes before anyone configures it (so an ECS instance with a stale
/// blank config still reaches its RAM role).
pub fn select(
    env: Env<'_>,
    path: &str,
    text: &str,
    wanted: Option<&str>,
) -> Result<Option<Source>, ConfigError> {
    let config = parse(path, text)?;
    let name = match wanted {
        Some(name) => name,
        None if config.current.is_empty() => return Ok(None),
        None => {
            let current = config.current.as_str();
            let placeholder = config.profiles.iter().any(|p| {
                p.name == current
                    && p.mode == "AK"
                    && p.access_key_id.is_empty()
                    && p.access_key_secret.is_empty()
            });
            if placeholder {
                return Ok(None);
            }
            current
        }
    };
    resolve(env, path, &config, name, &mut Vec::new()).map(Some)
}

/// The source of the profile `name`, for an account that names one (`aliyun_profile` in the
/// accounts file): like [`select`] with the profile named, and an error when the file does not
/// exist.
pub fn named(env: Env<'_>, file: &CliConfigFile, name: &str) -> Result<Source, ConfigError> {
    let Some(text) = &file.text else {
        return Err(ConfigError::CliConfig {
            path: file.path.clone(),
            message: format!("the file does not exist, so it has no profile {name:?}"),
        });
    };
    let config = parse(&file.path, text)?;
    resolve(env, &file.path, &config, name, &mut Vec::new())
}

fn parse(path: &str, text: &str) -> Result<Config, ConfigError> {
    serde_json::from_str(text).map_err(|e| ConfigError::CliConfig {
        path: path.to_owned(),
        // By position only: serde's message may quote a value, and values here are secrets.
        message: format!(
            "not valid JSON of the expected shape (line {}, column {})",
            e.line(),
            e.column()
        ),
    })
}

fn resolve(
    env: Env<'_>,
    path: &str,
    config: &Config,
    name: &str,
    seen: &mut Vec<String>,
) -> Result<Source, ConfigError> {
    let fields = Fields {
        env,
        path,
        name,
        p: lookup(path, config, name, seen)?,
    };
    let p = fields.p;
    let kind = match p.mode.as_str() {
        "AK" => SourceKind::Static(fields.access_key()?),
        "StsToken" => SourceKind::Static(
            fields
                .access_key()?
                .with_security_token(Some(fields.need(&p.sts_token, "sts_token")?)),
        ),
        "RamRoleArn" => SourceKind::AssumeRole {
            base: Box::new(Source {
                label: format!("cli-profile {name:?} (AK)"),
                kind: SourceKind::Static(fields.access_key()?),
            }),
            role: fields.ram_role()?,
        },
        "EcsRamRole" => SourceKind::Ecs(fields.ecs_role()),
        "OIDC" => SourceKind::Oidc(fields.oidc_role()?),
        "ChainableRamRoleArn" => {
            let source = fields.need(&p.source_profile, "source_profile")?;
            let role = fields.ram_role()?;
            SourceKind::AssumeRole {
                base: Box::new(resolve(env, path, config, &source, seen)?),
                role,
            }
        }
        "" => return Err(fields.err("no mode".to_owned())),
        other => {
            return Err(fields.err(format!(
                "mode {other} is not supported (supported: {})",
                SUPPORTED_MODES.join(", ")
            )));
        }
    };
    Ok(Source {
        label: format!("cli-profile {name:?} ({})", p.mode),
        kind,
    })
}

/// The profile `name`, refused if a `source_profile` chain comes back to it (or runs longer
/// than any sane chain).
fn lookup<'c>(
    path: &str,
    config: &'c Config,
    name: &str,
    seen: &mut Vec<String>,
) -> Result<&'c Profile, ConfigError> {
    let err = |message: String| profile_error(path, name, message);
    if seen.iter().any(|s| s == name) || seen.len() >= MAX_CHAIN {
        seen.push(name.to_owned());
        return Err(err(format!(
            "source_profile chain loops: {}",
            seen.join(" -> ")
        )));
    }
    seen.push(name.to_owned());
    config
        .profiles
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| err("no such profile".to_owned()))
}

fn profile_error(path: &str, name: &str, message: String) -> ConfigError {
    ConfigError::CliProfile {
        path: path.to_owned(),
        profile: name.to_owned(),
        message,
    }
}

/// A blank field is an absent one in the CLI's file.
fn optional(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

/// One profile's fields, read into a source's parts with errors that name the profile.
struct Fields<'a> {
    env: Env<'a>,
    path: &'a str,
    name: &'a str,
    p: &'a Profile,
}

impl Fields<'_> {
    fn err(&self, message: String) -> ConfigError {
        profile_error(self.path, self.name, message)
    }

    /// A field the profile's mode cannot do without.
    fn need(&self, value: &str, field: &str) -> Result<String, ConfigError> {
        if value.is_empty() {
            Err(self.err(format!("mode {} needs {field}", self.p.mode)))
        } else {
            Ok(value.to_owned())
        }
    }

    fn session_name(&self) -> String {
        optional(&self.p.ram_session_name)
            .or_else(|| optional(&self.p.role_session_name))
            .or_else(|| (self.env)(chain::ROLE_SESSION_NAME).filter(|v| !v.is_empty()))
            .unwrap_or_else(chain::default_session_name)
    }

    fn sts_endpoint(&self) -> String {
        chain::sts_endpoint(
            self.env,
            optional(&self.p.sts_region).as_deref(),
            self.p.enable_vpc,
        )
    }

    fn duration_seconds(&self) -> Result<u32, ConfigError> {
        duration_seconds(self.p.expired_seconds)
            .map_err(|m| self.err(format!("expired_seconds: {m}")))
    }

    fn access_key(&self) -> Result<Credentials, ConfigError> {
        Ok(Credentials::new(
            self.need(&self.p.access_key_id, "access_key_id")?,
            self.need(&self.p.access_key_secret, "access_key_secret")?,
        ))
    }

    fn ram_role(&self) -> Result<RamRole, ConfigError> {
        Ok(RamRole {
            role_arn: self.need(&self.p.ram_role_arn, "ram_role_arn")?,
            session_name: self.session_name(),
            duration_seconds: self.duration_seconds()?,
            policy: optional(&self.p.policy),
            external_id: optional(&self.p.external_id).map(Secret::new),
            sts_endpoint: self.sts_endpoint(),
        })
    }

    fn ecs_role(&self) -> EcsRole {
        EcsRole {
            role_name: optional(&self.p.ram_role_name),
            endpoint: chain::ecs_metadata_endpoint(self.env),
            imdsv1_disabled: (self.env)(chain::IMDSV1_DISABLED)
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            implicit: false,
        }
    }

    fn oidc_role(&self) -> Result<OidcRole, ConfigError> {
        let p = self.p;
        Ok(OidcRole {
            role_arn: self.need(&p.ram_role_arn, "ram_role_arn")?,
            oidc_provider_arn: self.need(&p.oidc_provider_arn, "oidc_provider_arn")?,
            token_file: PathBuf::from(self.need(&p.oidc_token_file, "oidc_token_file")?),
            session_name: self.session_name(),
            duration_seconds: self.duration_seconds()?,
            policy: optional(&p.policy),
            sts_endpoint: self.sts_endpoint(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::chain::tests::env_of;
    use super::*;

    const PATH: &str = "/home/u/.aliyun/config.json";

    const CONFIG: &str = r#"{
      "current": "ak",
      "profiles": [
        {"name": "ak", "mode": "AK", "access_key_id": "LTAIak", "access_key_secret": "ak-secret", "region_id": "cn-shanghai"},
        {"name": "sts", "mode": "StsToken", "access_key_id": "STS.k", "access_key_secret": "sts-secret", "sts_token": "sts-token"},
        {"name": "ram", "mode": "RamRoleArn", "access_key_id": "LTAIram", "access_key_secret": "ram-secret",
         "ram_role_arn": "acs:ram::100:role/stopper", "ram_session_name": "sess", "expired_seconds": 1800,
         "policy": "{\"Statement\":[]}", "external_id": "ext-1", "sts_region": "cn-hangzhou", "enable_vpc": true},
        {"name": "ecs", "mode": "EcsRamRole", "ram_role_name": "worker-role"},
        {"name": "ecs-discover", "mode": "EcsRamRole"},
        {"name": "oidc", "mode": "OIDC", "ram_role_arn": "acs:ram::100:role/r", "oidc_provider_arn": "acs:ram::100:oidc-provider/ack",
         "oidc_token_file": "/var/run/secrets/token", "role_session_name": "py-style"},
        {"name": "chain", "mode": "ChainableRamRoleArn", "source_profile": "ram", "ram_role_arn": "acs:ram::200:role/other"},
        {"name": "loop-a", "mode": "ChainableRamRoleArn", "source_profile": "loop-b", "ram_role_arn": "a"},
        {"name": "loop-b", "mode": "ChainableRamRoleArn", "source_profile": "loop-a", "ram_role_arn": "b"},
        {"name": "ram-no-arn", "mode": "RamRoleArn", "access_key_id": "LTAI", "access_key_secret": "s"},
        {"name": "ak-no-secret", "mode": "AK", "access_key_id": "LTAI"},
        {"name": "short", "mode": "RamRoleArn", "access_key_id": "LTAI", "access_key_secret": "s", "ram_role_arn": "a", "expired_seconds": 600},
        {"name": "sso", "mode": "CloudSSO"},
        {"name": "blank", "mode": "AK", "access_key_id": "", "access_key_secret": ""}
      ]
    }"#;

    fn pick(name: Option<&str>) -> Result<Option<Source>, ConfigError> {
        select(&env_of(&[]), PATH, CONFIG, name)
    }

    #[test]
    fn current_profile_and_static_modes() {
        let s = pick(None).unwrap().unwrap();
        assert_eq!(s.label, "cli-profile \"ak\" (AK)");
        let SourceKind::Static(c) = &s.kind else {
            panic!()
        };
        assert_eq!(c.access_key_id(), "LTAIak");
        assert_eq!(c.secret().expose(), "ak-secret");
        assert!(c.security_token().is_none());

        let s = pick(Some("sts")).unwrap().unwrap();
        let SourceKind::Static(c) = &s.kind else {
            panic!()
        };
        assert_eq!(c.security_token().unwrap().expose(), "sts-token");
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("sts-secret") && !shown.contains("sts-token"),
            "{shown}"
        );
    }

    #[test]
    fn ram_role_arn_signs_with_the_profile_key() {
        let s = pick(Some("ram")).unwrap().unwrap();
        let SourceKind::AssumeRole { base, role } = &s.kind else {
            panic!()
        };
        let SourceKind::Static(c) = &base.kind else {
            panic!()
        };
        assert_eq!(c.access_key_id(), "LTAIram");
        assert_eq!(role.role_arn, "acs:ram::100:role/stopper");
        assert_eq!(role.session_name, "sess");
        assert_eq!(role.duration_seconds, 1800);
        assert_eq!(role.policy.as_deref(), Some("{\"Statement\":[]}"));
        assert_eq!(role.external_id.as_ref().unwrap().expose(), "ext-1");
        assert_eq!(
            role.sts_endpoint,
            "https://sts-vpc.cn-hangzhou.aliyuncs.com"
        );
        assert!(!format!("{s:?}").contains("ext-1"));
    }

    #[test]
    fn ecs_and_oidc_modes() {
        let s = pick(Some("ecs")).unwrap().unwrap();
        let SourceKind::Ecs(e) = s.kind else { panic!() };
        assert_eq!(e.role_name.as_deref(), Some("worker-role"));
        assert!(!e.implicit);
        let s = pick(Some("ecs-discover")).unwrap().unwrap();
        let SourceKind::Ecs(e) = s.kind else { panic!() };
        assert_eq!(e.role_name, None);

        let env = env_of(&[(chain::STS_ENDPOINT, "http://127.0.0.1:9")]);
        let s = select(&env, PATH, CONFIG, Some("oidc")).unwrap().unwrap();
        let SourceKind::Oidc(o) = s.kind else {
            panic!()
        };
        assert_eq!(o.oidc_provider_arn, "acs:ram::100:oidc-provider/ack");
        assert_eq!(o.token_file, PathBuf::from("/var/run/secrets/token"));
        assert_eq!(o.session_name, "py-style");
        assert_eq!(o.duration_seconds, 3600);
        assert_eq!(o.sts_endpoint, "http://127.0.0.1:9");
    }

    #[test]
    fn chainable_uses_the_source_profile() {
        let env = env_of(&[(chain::ROLE_SESSION_NAME, "from-env")]);
        let s = select(&env, PATH, CONFIG, Some("chain")).unwrap().unwrap();
        assert_eq!(s.label, "cli-profile \"chain\" (ChainableRamRoleArn)");
        let SourceKind::AssumeRole { base, role } = &s.kind else {
            panic!()
        };
        assert_eq!(role.role_arn, "acs:ram::200:role/other");
        assert_eq!(role.session_name, "from-env");
        assert_eq!(role.sts_endpoint, "https://sts.aliyuncs.com");
        assert_eq!(base.label, "cli-profile \"ram\" (RamRoleArn)");
        let SourceKind::AssumeRole { role: inner, .. } = &base.kind else {
            panic!()
        };
        assert_eq!(inner.role_arn, "acs:ram::100:role/stopper");

        let e = pick(Some("loop-a")).unwrap_err().to_string();
        assert!(e.contains("loop-a -> loop-b -> loop-a"), "{e}");
    }

    #[test]
    fn missing_fields_and_bad_modes_are_named() {
        for (name, expected) in [
            ("ram-no-arn", "mode RamRoleArn needs ram_role_arn"),
            ("ak-no-secret", "mode AK needs access_key_secret"),
            ("short", "at least 900 seconds"),
            ("sso", "mode CloudSSO is not supported"),
            ("nope", "no such profile"),
        ] {
            let e = pick(Some(name)).unwrap_err().to_string();
            assert!(e.contains(expected), "{name}: {e}");
            assert!(e.contains(PATH) && e.contains(name), "{name}: {e}");
        }
    }

    #[test]
    fn nothing_selected_is_not_configured() {
        let text = r#"{"profiles":[{"name":"ak","mode":"AK","access_key_id":"a","access_key_secret":"b"}]}"#;
        assert!(select(&env_of(&[]), PATH, text, None).unwrap().is_none());
        let blank = r#"{"current":"default","profiles":[{"name":"default","mode":"AK","access_key_id":"","access_key_secret":""}]}"#;
        assert!(select(&env_of(&[]), PATH, blank, None).unwrap().is_none());
        // Named explicitly, the blank profile is an error, not a skip.
        let e = select(&env_of(&[]), PATH, blank, Some("default")).unwrap_err();
        assert!(e.to_string().contains("needs access_key_id"), "{e}");
    }

    #[test]
    fn an_account_can_name_a_profile() {
        let file = CliConfigFile {
            path: PATH.into(),
            text: Some(CONFIG.into()),
        };
        let s = named(&env_of(&[]), &file, "ram").unwrap();
        assert_eq!(s.label, "cli-profile \"ram\" (RamRoleArn)");
        assert_eq!(
            s.sts_endpoint(),
            Some("https://sts-vpc.cn-hangzhou.aliyuncs.com")
        );
        assert!(named(&env_of(&[]), &file, "nope").is_err());
        let missing = CliConfigFile {
            path: PATH.into(),
            text: None,
        };
        let e = named(&env_of(&[]), &missing, "ram")
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist") && e.contains("\"ram\""), "{e}");
    }

    #[test]
    fn invalid_json_is_reported_by_position_only() {
        let text = r#"{"current":"a","profiles":[{"name":"a","access_key_secret":"leaky","expired_seconds":"x-secret"}]}"#;
        let e = select(&env_of(&[]), PATH, text, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains(PATH) && e.contains("line 1"), "{e}");
        assert!(!e.contains("x-secret") && !e.contains("leaky"), "{e}");
    }
}
