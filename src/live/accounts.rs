//! The accounts jobs may use: credentials plus the quota they share. The default account comes
//! from the environment; named ones are selected by a job's `account` field.

use std::collections::HashMap;

use crate::domain::AccountName;
use crate::live::credentials::Credentials;

/// One account: its credentials and the key its quota is paced under.
#[derive(Clone, Debug)]
pub struct Account {
    /// The name jobs select it by; `default` for the environment's.
    pub name: String,
    /// The pacer's key: the AccessKeyId, since Alibaba counts the quota per account key.
    pub pacer_key: String,
    pub credentials: Credentials,
    pub qps: u32,
}

impl Account {
    pub fn new(name: impl Into<String>, credentials: Credentials, qps: u32) -> Self {
        Self {
            name: name.into(),
            pacer_key: credentials.access_key_id().to_owned(),
            credentials,
            qps,
        }
    }
}

/// The default account and the named ones.
#[derive(Clone, Debug, Default)]
pub struct Accounts {
    pub default: Option<Account>,
    pub named: HashMap<String, Account>,
}

impl Accounts {
    /// The account a job names, or the default one.
    pub fn resolve(&self, name: Option<&AccountName>) -> Option<&Account> {
        match name {
            None => self.default.as_ref(),
            Some(name) => self.named.get(name.as_str()),
        }
    }

    /// The quota of a pacer key (the smallest configured for it, if accounts share a key).
    pub fn qps_of(&self, pacer_key: &str) -> Option<u32> {
        self.default
            .iter()
            .chain(self.named.values())
            .filter(|a| a.pacer_key == pacer_key)
            .map(|a| a.qps)
            .min()
    }
}

/// Where a named account's credentials come from, as written in the accounts file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSpec {
    /// Environment variable holding the AccessKey id.
    pub access_key_id_env: Option<String>,
    /// Environment variable holding the AccessKey secret.
    pub access_key_secret_env: Option<String>,
    /// Environment variable holding an STS token (optional).
    pub security_token_env: Option<String>,
    /// A profile of the aliyun CLI's `~/.aliyun/config.json` (mode `AK` or `StsToken`).
    pub aliyun_profile: Option<String>,
    /// This account's quota; default `STOPCASTER_QPS`.
    pub qps: Option<u32>,
}

/// The accounts file: `{"accounts": {"<name>": AccountSpec, ...}}`.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsFile {
    pub accounts: HashMap<String, AccountSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("accounts file {path}: {message}")]
    File { path: String, message: String },
    #[error("account {account:?}: {message}")]
    Account { account: String, message: String },
}

/// The parts of the aliyun CLI's config this reads.
#[derive(serde::Deserialize)]
struct AliyunConfig {
    #[serde(default)]
    profiles: Vec<AliyunProfile>,
}

#[derive(serde::Deserialize)]
struct AliyunProfile {
    name: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    access_key_id: String,
    #[serde(default)]
    access_key_secret: String,
    #[serde(default)]
    sts_token: String,
}

/// Resolves one account's credentials. `env` reads a variable; `aliyun_config` is the text of
/// the CLI's config file, if any. Pure apart from those two, for tests.
pub fn resolve_spec(
    name: &str,
    spec: &AccountSpec,
    default_qps: u32,
    env: &dyn Fn(&str) -> Option<String>,
    aliyun_config: Option<&str>,
) -> Result<Account, AccountsError> {
    let err = |message: String| AccountsError::Account {
        account: name.to_owned(),
        message,
    };
    let qps = spec.qps.unwrap_or(default_qps);
    let credentials = match (
        &spec.aliyun_profile,
        &spec.access_key_id_env,
        &spec.access_key_secret_env,
    ) {
        (Some(profile), None, None) => {
            let text =
                aliyun_config.ok_or_else(|| err("no aliyun CLI config file found".into()))?;
            let config: AliyunConfig = serde_json::from_str(text)
                .map_err(|e| err(format!("aliyun CLI config is not valid: {e}")))?;
            let p = config
                .profiles
                .iter()
                .find(|p| &p.name == profile)
                .ok_or_else(|| err(format!("no profile {profile:?} in the aliyun CLI config")))?;
            if p.access_key_id.is_empty() || p.access_key_secret.is_empty() {
                return Err(err(format!("profile {profile:?} has no AccessKey pair")));
            }
            let token = match p.mode.as_str() {
                "AK" | "" => None,
                "StsToken" => Some(p.sts_token.clone()),
                other => {
                    return Err(err(format!(
                        "profile {profile:?} has mode {other:?}; only AK and StsToken are supported"
                    )));
                }
            };
            Credentials::new(&p.access_key_id, &p.access_key_secret).with_security_token(token)
        }
        (None, Some(id_var), Some(secret_var)) => {
            let read = |var: &str| {
                env(var)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| err(format!("{var} is not set")))
            };
            let token = spec.security_token_env.as_deref().and_then(env);
            Credentials::new(read(id_var)?, read(secret_var)?).with_security_token(token)
        }
        _ => {
            return Err(err(
                "name either aliyun_profile, or access_key_id_env and access_key_secret_env".into(),
            ));
        }
    };
    Ok(Account::new(name, credentials, qps))
}

/// Reads the accounts file and resolves every account in it.
pub fn load_file(
    path: &std::path::Path,
    default_qps: u32,
) -> Result<HashMap<String, Account>, AccountsError> {
    let file_err = |message: String| AccountsError::File {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let file: AccountsFile = serde_json::from_str(&text).map_err(|e| file_err(e.to_string()))?;
    let aliyun_path = std::env::var_os("ALIBABA_CLOUD_CONFIG_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".aliyun/config.json"))
        });
    let aliyun = aliyun_path.and_then(|p| std::fs::read_to_string(p).ok());
    let env = |var: &str| std::env::var(var).ok();
    file.accounts
        .iter()
        .map(|(name, spec)| {
            Ok((
                name.clone(),
                resolve_spec(name, spec, default_qps, &env, aliyun.as_deref())?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALIYUN: &str = r#"{"current":"default","profiles":[
        {"name":"default","mode":"AK","access_key_id":"LTAIa","access_key_secret":"sa","region_id":"cn-hangzhou"},
        {"name":"sts","mode":"StsToken","access_key_id":"STS.b","access_key_secret":"sb","sts_token":"tok"},
        {"name":"ram","mode":"RamRoleArn","access_key_id":"x","access_key_secret":"y"}]}"#;

    fn spec(json: &str) -> AccountSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn resolves_environment_and_cli_profiles() {
        let env = |v: &str| match v {
            "PROD_ID" => Some("LTAIprod".to_owned()),
            "PROD_SECRET" => Some("prod-secret".to_owned()),
            _ => None,
        };
        let a = resolve_spec(
            "prod",
            &spec(
                r#"{"access_key_id_env":"PROD_ID","access_key_secret_env":"PROD_SECRET","qps":5}"#,
            ),
            10,
            &env,
            None,
        )
        .unwrap();
        assert_eq!(a.pacer_key, "LTAIprod");
        assert_eq!(a.qps, 5);
        assert_eq!(a.credentials.secret().expose(), "prod-secret");

        let b = resolve_spec(
            "b",
            &spec(r#"{"aliyun_profile":"sts"}"#),
            10,
            &env,
            Some(ALIYUN),
        )
        .unwrap();
        assert_eq!(b.pacer_key, "STS.b");
        assert_eq!(b.qps, 10);
        assert_eq!(b.credentials.security_token().unwrap().expose(), "tok");
        let c = resolve_spec(
            "c",
            &spec(r#"{"aliyun_profile":"default"}"#),
            10,
            &env,
            Some(ALIYUN),
        )
        .unwrap();
        assert!(c.credentials.security_token().is_none());
    }

    #[test]
    fn explains_what_is_wrong() {
        let env = |_: &str| None;
        for (json, profiles, expected) in [
            (r#"{"aliyun_profile":"ram"}"#, Some(ALIYUN), "RamRoleArn"),
            (r#"{"aliyun_profile":"nope"}"#, Some(ALIYUN), "no profile"),
            (
                r#"{"access_key_id_env":"A","access_key_secret_env":"B"}"#,
                None,
                "A is not set",
            ),
            (r#"{"qps":3}"#, None, "either"),
        ] {
            let e = resolve_spec("x", &spec(json), 10, &env, profiles).unwrap_err();
            assert!(e.to_string().contains(expected), "{json}: {e}");
        }
        assert!(
            serde_json::from_str::<AccountSpec>(r#"{"secret":"inline"}"#).is_err(),
            "no inline secrets"
        );
    }

    #[test]
    fn accounts_with_the_same_key_share_its_quota() {
        let accounts = Accounts {
            default: Some(Account::new("default", Credentials::new("K1", "s"), 10)),
            named: [
                (
                    "a".to_owned(),
                    Account::new("a", Credentials::new("K1", "s"), 4),
                ),
                (
                    "b".to_owned(),
                    Account::new("b", Credentials::new("K2", "s"), 7),
                ),
            ]
            .into(),
        };
        assert_eq!(accounts.qps_of("K1"), Some(4));
        assert_eq!(accounts.qps_of("K2"), Some(7));
        assert_eq!(accounts.qps_of("K3"), None);
    }
}
