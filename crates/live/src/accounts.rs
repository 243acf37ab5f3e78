//! The accounts jobs may use: credentials that stay fresh, the quota they share and the key
//! the pacer paces them under (the Alibaba Cloud account's UID). The default account comes from
//! the default credentials chain; named ones from the accounts file, selected by a job's
//! `account` field.
//!
//! Deciding where each account's credentials come from is pure ([`resolve_spec`] gives an
//! [`AccountPlan`]); [`start`] then obtains them and learns each account's UID.

use std::collections::HashMap;

use crate::credentials::chain::{self, CliConfigFile, Env};
use crate::credentials::{
    AccountKeyOrigin, Credentials, CredentialsError, CredentialsProvider, ProviderContext, Source,
    SourceKind,
};
use crate::ids::AccountName;
use crate::signing::SignatureVersion;

/// One account: its credentials and the key its quota is paced under.
#[derive(Clone, Debug)]
pub struct Account {
    /// The name jobs select it by; `default` for the chain's.
    pub name: String,
    /// The pacer's key: the account's UID (or, failing that, the AccessKeyId).
    pub pacer_key: String,
    pub credentials: CredentialsProvider,
    pub qps: u32,
    /// The accounts file's `endpoint` for this account (see [`crate::endpoints`]).
    pub endpoint: Option<String>,
    /// The accounts file's `signature_version`; `None`: `STOPCASTER_SIGNATURE_VERSION`.
    pub signature_version: Option<SignatureVersion>,
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
        qps_of(
            self.default
                .iter()
                .chain(self.named.values())
                .map(|a| (a.pacer_key.as_str(), a.qps)),
            pacer_key,
        )
    }
}

/// The smallest quota configured for `pacer_key` among (key, qps) pairs: accounts that share
/// a UID share one quota.
fn qps_of<'a>(accounts: impl Iterator<Item = (&'a str, u32)>, pacer_key: &str) -> Option<u32> {
    accounts
        .filter(|(key, _)| *key == pacer_key)
        .map(|(_, qps)| qps)
        .min()
}

/// An account before its credentials are obtained.
#[derive(Clone, Debug)]
pub struct AccountPlan {
    pub name: String,
    pub source: Source,
    pub qps: u32,
    /// `STOPCASTER_ACCOUNT_UID` or `account_uid`: the pacer key without asking STS.
    pub account_uid: Option<String>,
    /// The accounts file's `endpoint`: this account's calls go there unless the region's own
    /// variable says otherwise.
    pub endpoint: Option<String>,
    /// The accounts file's `signature_version`.
    pub signature_version: Option<SignatureVersion>,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("accounts file {path}: {message}")]
    File { path: String, message: String },
    #[error("account {account:?}: {message}")]
    Account { account: String, message: String },
    #[error("account {account:?}: {error}")]
    Credentials {
        account: String,
        #[source]
        error: CredentialsError,
    },
}

/// Obtains every account's credentials (starting their refresh) and learns its pacer key.
/// Without named accounts, a default account is required; with them, a default whose chain
/// found nothing at all is left out with a warning.
pub async fn start(
    default: Option<AccountPlan>,
    named: Vec<AccountPlan>,
    ctx: &ProviderContext,
    default_sts_endpoint: &str,
) -> Result<Accounts, AccountsError> {
    let has_named = !named.is_empty();
    let default = match default {
        None => None,
        Some(plan) => match start_one(plan, ctx, default_sts_endpoint).await {
            Ok(account) => Some(account),
            Err(AccountsError::Credentials {
                error: CredentialsError::NoCredentials { .. },
                ..
            }) if has_named => {
                tracing::warn!("no default credentials; jobs must name an account");
                None
            }
            Err(e) => return Err(e),
        },
    };
    let mut accounts = Accounts {
        default,
        named: HashMap::new(),
    };
    for plan in named {
        let account = start_one(plan, ctx, default_sts_endpoint).await?;
        accounts.named.insert(account.name.clone(), account);
    }
    Ok(accounts)
}

async fn start_one(
    plan: AccountPlan,
    ctx: &ProviderContext,
    default_sts_endpoint: &str,
) -> Result<Account, AccountsError> {
    let err = |error| AccountsError::Credentials {
        account: plan.name.clone(),
        error,
    };
    let credentials = CredentialsProvider::start(plan.source, ctx.clone())
        .await
        .map_err(err)?;
    let key = credentials
        .account_key(
            &plan.name,
            plan.account_uid.as_deref(),
            default_sts_endpoint,
        )
        .await
        .map_err(err)?;
    tracing::info!(
        account = %plan.name,
        source = credentials.source_label(),
        pacer_key = %key.key,
        pacer_key_from = match key.origin {
            AccountKeyOrigin::Configured => "configured account UID",
            AccountKeyOrigin::CallerIdentity => "GetCallerIdentity",
            AccountKeyOrigin::AccessKeyId => "AccessKeyId",
        },
        qps = plan.qps,
        "account ready"
    );
    Ok(Account {
        name: plan.name,
        pacer_key: key.key,
        credentials,
        qps: plan.qps,
        endpoint: plan.endpoint,
        signature_version: plan.signature_version,
    })
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
    /// A profile of the aliyun CLI's config (`~/.aliyun/config.json`), any mode the
    /// credentials chain knows: `AK`, `StsToken`, `RamRoleArn`, `EcsRamRole`, `OIDC`,
    /// `ChainableRamRoleArn`.
    pub aliyun_profile: Option<String>,
    /// The Alibaba Cloud account UID the quota is counted under; default: learned from STS.
    pub account_uid: Option<String>,
    /// This account's quota; default `STOPCASTER_QPS`.
    pub qps: Option<u32>,
    /// The endpoint of this account's calls, over `STOPCASTER_ENDPOINT` and the region's table
    /// entry (not over `STOPCASTER_ENDPOINT_<REGION>`).
    pub endpoint: Option<String>,
    /// `v1` (or `v2`) or `v3`; default `STOPCASTER_SIGNATURE_VERSION`.
    pub signature_version: Option<String>,
}

/// The accounts file: `{"accounts": {"<name>": AccountSpec, ...}}`.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsFile {
    pub accounts: HashMap<String, AccountSpec>,
}

/// Decides one account's source. `env` reads a variable; `aliyun_config` is the CLI's config
/// file, if any. Pure apart from those two, for tests.
pub fn resolve_spec(
    name: &str,
    spec: &AccountSpec,
    default_qps: u32,
    env: Env<'_>,
    aliyun_config: Option<&CliConfigFile>,
) -> Result<AccountPlan, AccountsError> {
    let err = |message: String| AccountsError::Account {
        account: name.to_owned(),
        message,
    };
    let source = match (
        &spec.aliyun_profile,
        &spec.access_key_id_env,
        &spec.access_key_secret_env,
    ) {
        (Some(profile), None, None) => {
            let file =
                aliyun_config.ok_or_else(|| err("no aliyun CLI config file found".into()))?;
            crate::credentials::profile::named(env, file, profile)
                .map_err(|e| err(e.to_string()))?
        }
        (None, Some(id_var), Some(secret_var)) => {
            let read = |var: &str| {
                env(var)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| err(format!("{var} is not set")))
            };
            let token = spec.security_token_env.as_deref().and_then(env);
            Source {
                label: "accounts-file-env".to_owned(),
                kind: SourceKind::Static(
                    Credentials::new(read(id_var)?, read(secret_var)?).with_security_token(token),
                ),
            }
        }
        _ => {
            return Err(err(
                "name either aliyun_profile, or access_key_id_env and access_key_secret_env".into(),
            ));
        }
    };
    Ok(AccountPlan {
        name: name.to_owned(),
        source,
        qps: spec.qps.unwrap_or(default_qps),
        account_uid: spec.account_uid.clone().filter(|u| !u.trim().is_empty()),
        endpoint: spec.endpoint.clone().filter(|e| !e.trim().is_empty()),
        signature_version: spec
            .signature_version
            .as_deref()
            .map(SignatureVersion::parse)
            .transpose()
            .map_err(|e| err(e.to_string()))?,
    })
}

/// Reads the accounts file and decides every account's source.
pub fn load_file(
    path: &std::path::Path,
    default_qps: u32,
) -> Result<Vec<AccountPlan>, AccountsError> {
    let file_err = |message: String| AccountsError::File {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let file: AccountsFile = serde_json::from_str(&text).map_err(|e| file_err(e.to_string()))?;
    let env = |var: &str| std::env::var(var).ok();
    let aliyun = chain::read_cli_config(&env).map_err(|e| file_err(e.to_string()))?;
    let mut plans = file
        .accounts
        .iter()
        .map(|(name, spec)| resolve_spec(name, spec, default_qps, &env, aliyun.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    plans.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(plans)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALIYUN: &str = r#"{"current":"default","profiles":[
        {"name":"default","mode":"AK","access_key_id":"LTAIa","access_key_secret":"sa","region_id":"cn-hangzhou"},
        {"name":"sts","mode":"StsToken","access_key_id":"STS.b","access_key_secret":"sb","sts_token":"tok"},
        {"name":"ram","mode":"RamRoleArn","access_key_id":"x","access_key_secret":"y"},
        {"name":"role","mode":"RamRoleArn","access_key_id":"LTAIr","access_key_secret":"sr","ram_role_arn":"acs:ram::1234:role/stopper"}]}"#;

    fn spec(json: &str) -> AccountSpec {
        serde_json::from_str(json).unwrap()
    }

    fn cli() -> CliConfigFile {
        CliConfigFile {
            path: "/home/op/.aliyun/config.json".into(),
            text: Some(ALIYUN.into()),
        }
    }

    fn static_credentials(plan: &AccountPlan) -> &Credentials {
        match &plan.source.kind {
            SourceKind::Static(c) => c,
            other => panic!("{other:?}"),
        }
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
                r#"{"access_key_id_env":"PROD_ID","access_key_secret_env":"PROD_SECRET","qps":5,"account_uid":"1234"}"#,
            ),
            10,
            &env,
            None,
        )
        .unwrap();
        assert_eq!(a.qps, 5);
        assert_eq!(a.account_uid.as_deref(), Some("1234"));
        assert_eq!(a.endpoint, None);
        assert_eq!(static_credentials(&a).access_key_id(), "LTAIprod");
        assert_eq!(static_credentials(&a).secret().expose(), "prod-secret");

        let b = resolve_spec(
            "b",
            &spec(r#"{"aliyun_profile":"sts","endpoint":"http://127.0.0.1:9","signature_version":"v3"}"#),
            10,
            &env,
            Some(&cli()),
        )
        .unwrap();
        assert_eq!(b.qps, 10);
        assert_eq!(b.account_uid, None);
        assert_eq!(b.endpoint.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(b.signature_version, Some(SignatureVersion::V3));
        assert_eq!(a.signature_version, None);
        assert_eq!(static_credentials(&b).access_key_id(), "STS.b");
        assert_eq!(
            static_credentials(&b).security_token().unwrap().expose(),
            "tok"
        );
        let c = resolve_spec(
            "c",
            &spec(r#"{"aliyun_profile":"default"}"#),
            10,
            &env,
            Some(&cli()),
        )
        .unwrap();
        assert!(static_credentials(&c).security_token().is_none());
        // Every mode of the chain, not only static keys: a role assumed with the profile's key.
        let d = resolve_spec(
            "d",
            &spec(r#"{"aliyun_profile":"role"}"#),
            10,
            &env,
            Some(&cli()),
        )
        .unwrap();
        assert!(
            matches!(&d.source.kind, SourceKind::AssumeRole { role, .. } if role.role_arn == "acs:ram::1234:role/stopper"),
            "{:?}",
            d.source
        );
    }

    #[test]
    fn explains_what_is_wrong() {
        let env = |_: &str| None;
        for (json, profiles, expected) in [
            (r#"{"aliyun_profile":"ram"}"#, Some(cli()), "ram_role_arn"),
            (r#"{"aliyun_profile":"nope"}"#, Some(cli()), "nope"),
            (r#"{"aliyun_profile":"nope"}"#, None, "no aliyun CLI config"),
            (
                r#"{"access_key_id_env":"A","access_key_secret_env":"B"}"#,
                None,
                "A is not set",
            ),
            (r#"{"qps":3}"#, None, "either"),
            (
                r#"{"aliyun_profile":"default","signature_version":"v4"}"#,
                Some(cli()),
                "unknown signature version",
            ),
        ] {
            let e = resolve_spec("x", &spec(json), 10, &env, profiles.as_ref()).unwrap_err();
            assert!(e.to_string().contains(expected), "{json}: {e}");
        }
        assert!(
            serde_json::from_str::<AccountSpec>(r#"{"secret":"inline"}"#).is_err(),
            "no inline secrets"
        );
    }

    #[test]
    fn accounts_with_the_same_key_share_its_quota() {
        let accounts = [("K1", 10), ("K1", 4), ("K2", 7)];
        assert_eq!(qps_of(accounts.into_iter(), "K1"), Some(4));
        assert_eq!(qps_of(accounts.into_iter(), "K2"), Some(7));
        assert_eq!(qps_of(accounts.into_iter(), "K3"), None);
    }
}
