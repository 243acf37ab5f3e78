//! Which key the pacer paces an account's calls under. Alibaba counts StopCaster's quota per
//! account (its UID: the main account and all its RAM users and roles), so the key is the UID:
//! configured (`STOPCASTER_ACCOUNT_UID` or an accounts file's `account_uid`), else learned from
//! STS `GetCallerIdentity` when the credentials are first obtained, else, with a warning, the
//! AccessKeyId (which splits one account's quota across keys, and changes with every refresh of
//! temporary credentials).

use super::Credentials;
use super::sts;

/// The environment variable with the default account's UID.
pub(super) const ACCOUNT_UID_VAR: &str = "STOPCASTER_ACCOUNT_UID";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountKeyOrigin {
    /// `STOPCASTER_ACCOUNT_UID` / `account_uid`.
    Configured,
    /// `GetCallerIdentity`'s `AccountId`.
    CallerIdentity,
    /// Neither was available: the AccessKeyId stands in.
    AccessKeyId,
}

/// The pacer key of an account and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountKey {
    pub key: String,
    pub origin: AccountKeyOrigin,
}

/// The decision, pure: configured UID, else learned, else the AccessKeyId. Blank values count
/// as absent.
pub(super) fn account_key(
    configured: Option<&str>,
    learned: Option<&str>,
    access_key_id: &str,
) -> AccountKey {
    fn present(v: Option<&str>) -> Option<&str> {
        v.map(str::trim).filter(|v| !v.is_empty())
    }
    if let Some(uid) = present(configured) {
        AccountKey {
            key: uid.to_owned(),
            origin: AccountKeyOrigin::Configured,
        }
    } else if let Some(uid) = present(learned) {
        AccountKey {
            key: uid.to_owned(),
            origin: AccountKeyOrigin::CallerIdentity,
        }
    } else {
        AccountKey {
            key: access_key_id.to_owned(),
            origin: AccountKeyOrigin::AccessKeyId,
        }
    }
}

/// The pacer key: asks `GetCallerIdentity` only when no UID is configured, and logs a warning
/// when it has to fall back to the AccessKeyId. `account` names the account in that warning.
pub(super) async fn resolve_account_key(
    account: &str,
    configured: Option<&str>,
    http: &reqwest::Client,
    sts_endpoint: &str,
    credentials: &Credentials,
) -> AccountKey {
    let learned = if configured.is_some_and(|c| !c.trim().is_empty()) {
        None
    } else {
        match sts::caller_identity(http, sts_endpoint, credentials).await {
            Ok(uid) => Some(uid),
            Err(e) => {
                tracing::warn!(
                    account,
                    error = %e,
                    access_key_id = credentials.access_key_id(),
                    "cannot learn the account UID; pacing under the AccessKeyId, so other keys \
                     of the same account are paced apart (set {ACCOUNT_UID_VAR} or account_uid)"
                );
                None
            }
        }
    };
    account_key(configured, learned.as_deref(), credentials.access_key_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_then_learned_then_access_key() {
        assert_eq!(
            account_key(Some("111"), Some("222"), "LTAI"),
            AccountKey {
                key: "111".into(),
                origin: AccountKeyOrigin::Configured
            }
        );
        assert_eq!(
            account_key(None, Some("222"), "LTAI"),
            AccountKey {
                key: "222".into(),
                origin: AccountKeyOrigin::CallerIdentity
            }
        );
        assert_eq!(
            account_key(Some("  "), None, "LTAI"),
            AccountKey {
                key: "LTAI".into(),
                origin: AccountKeyOrigin::AccessKeyId
            }
        );
    }
}
