//! Who is calling: the configured AccessKeys and the account each belongs to, the RAM roles
//! that may be assumed, and the temporary `STS.` keys issued for them, with the SecurityToken
//! checks Alibaba's gateway makes before it looks at a signature.
//!
//! Everything the stand-in throttles and answers per account goes through [`Identity`]: a
//! temporary key is charged to the account of its role, so every key of one UID shares one
//! window, as Alibaba counts it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use super::protocol::Refusal;
use stopcaster_live::credentials::Secret;

/// Why a `--access-key` or `--ram-role` value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityConfigError {
    #[error("--access-key wants ID:SECRET[:UID], got one without a secret (key {0:?})")]
    AccessKey(String),
    #[error("{0:?} is not a RAM role ARN (acs:ram::<UID>:role/<name>)")]
    RoleArn(String),
}

/// A RAM role the stand-in lets callers assume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    /// As configured: `acs:ram::<UID>:role/<name>`.
    pub arn: String,
    pub account: String,
    pub name: String,
    /// The RoleId Alibaba shows in `AssumedRoleId` and `PrincipalId`: 18 digits, stable per ARN.
    pub id: String,
}

impl Role {
    /// Parses `acs:ram::<UID>:role/<name>`, the only ARN form STS takes for a role.
    pub fn parse(arn: &str) -> Result<Self, IdentityConfigError> {
        let err = || IdentityConfigError::RoleArn(arn.to_owned());
        let rest = arn.strip_prefix("acs:ram::").ok_or_else(err)?;
        let (account, name) = rest.split_once(":role/").ok_or_else(err)?;
        let name_ok = |c: char| c.is_ascii_alphanumeric() || "-_.@".contains(c);
        if account.is_empty()
            || !account.bytes().all(|b| b.is_ascii_digit())
            || name.is_empty()
            || name.len() > 64
            || !name.chars().all(name_ok)
        {
            return Err(err());
        }
        Ok(Self {
            arn: arn.to_owned(),
            account: account.to_owned(),
            name: name.to_owned(),
            id: stable_digits("role", arn, 18),
        })
    }
}

/// Parses one `--access-key ID:SECRET[:UID]`. The last part is the UID when there are three or
/// more parts and it is all digits (UIDs are numbers; Alibaba's secrets are base62), so a
/// secret that itself holds a colon still works without a UID.
pub fn parse_access_key(
    value: &str,
) -> Result<(String, Secret, Option<String>), IdentityConfigError> {
    let (id, rest) = value
        .split_once(':')
        .filter(|(id, secret)| !id.is_empty() && !secret.is_empty())
        .ok_or_else(|| {
            IdentityConfigError::AccessKey(value.split(':').next().unwrap_or("").into())
        })?;
    match rest.rsplit_once(':') {
        Some((secret, uid))
            if !secret.is_empty() && !uid.is_empty() && uid.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Ok((id.to_owned(), Secret::new(secret), Some(uid.to_owned())))
        }
        _ => Ok((id.to_owned(), Secret::new(rest), None)),
    }
}

/// The account UID a key without one belongs to: an account of its own, 16 digits like a real
/// UID, the same on every run so that demos and `GetCallerIdentity` are repeatable.
pub fn default_account(access_key_id: &str) -> String {
    stable_digits("account", access_key_id, 16)
}

fn stable_digits(kind: &str, seed: &str, len: usize) -> String {
    let digest = Sha1::new()
        .chain_update(kind)
        .chain_update([0])
        .chain_update(seed)
        .finalize();
    // Leading 1, as real UIDs and RoleIds have no leading zero.
    let mut out = String::from("1");
    for b in digest.iter().cycle() {
        if out.len() == len {
            break;
        }
        out.push(char::from(b'0' + b % 10));
    }
    out
}

/// What a request's caller is, once its key (and token) checked out.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub secret: Secret,
    pub account: String,
    pub principal: Principal,
}

#[derive(Clone, Debug)]
pub(crate) enum Principal {
    /// A configured AccessKey: shown as the account itself (its root identity).
    Account,
    /// A temporary key issued for this role session.
    Role { role: Role, session: String },
}

/// Temporary credentials as issued; the secret and token redact themselves.
#[derive(Clone)]
pub(crate) struct Issued {
    pub access_key_id: String,
    pub secret: Secret,
    pub token: Secret,
    pub expiration: OffsetDateTime,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("access_key_id", &self.access_key_id)
            .field("secret", &self.secret)
            .field("token", &self.token)
            .field("expiration", &self.expiration)
            .finish()
    }
}

#[derive(Debug)]
struct TempKey {
    secret: Secret,
    token: Secret,
    expires: OffsetDateTime,
    role: Role,
    session: String,
}

/// How long an expired temporary key is remembered, so that it is still answered `Expired`
/// (as Alibaba's self-describing tokens are) rather than as a stranger's.
const EXPIRED_MEMORY: time::Duration = time::Duration::hours(24);

/// Random bytes behind a SecurityToken. Well-formed tokens are `CAIS` and these in unpadded
/// base64: the shape is checked before the lookup, so garbage is `Malformed` while a real token
/// shown with the wrong key is `MismatchWithAccessKey`.
const TOKEN_BYTES: usize = 96;
const TOKEN_PREFIX: &str = "CAIS";

/// The stand-in's principals. The configured keys and roles are fixed; issued keys sit behind
/// their own lock, never held while the server's state lock is taken.
#[derive(Debug)]
pub(crate) struct Identity {
    keys: HashMap<String, (Secret, String)>,
    roles: Vec<Role>,
    lifetime: Duration,
    issued: Mutex<HashMap<String, TempKey>>,
}

impl Identity {
    pub(crate) fn new(
        keys: Vec<(String, Secret)>,
        accounts: &HashMap<String, String>,
        roles: Vec<Role>,
        lifetime: Duration,
    ) -> Self {
        let keys = keys
            .into_iter()
            .map(|(id, secret)| {
                let account = accounts
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| default_account(&id));
                (id, (secret, account))
            })
            .collect();
        Self {
            keys,
            roles,
            lifetime,
            issued: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn lifetime(&self) -> Duration {
        self.lifetime
    }

    fn issued(&self) -> MutexGuard<'_, HashMap<String, TempKey>> {
        // Every change is a single insert or retain: a panic leaves consistent data.
        self.issued.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Step 5 and the token checks: the caller behind `access_key_id`, or why not.
    pub(crate) fn caller(
        &self,
        access_key_id: &str,
        security_token: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Caller, Refusal> {
        if let Some((secret, account)) = self.keys.get(access_key_id) {
            return Ok(Caller {
                secret: secret.clone(),
                account: account.clone(),
                principal: Principal::Account,
            });
        }
        if !access_key_id.starts_with("STS.") {
            return Err(Refusal::AccessKeyNotFound);
        }
        let token = security_token.ok_or(Refusal::MissingSecurityToken)?;
        if !well_formed_token(token) {
            return Err(Refusal::SecurityTokenMalformed);
        }
        let issued = self.issued();
        let key = issued
            .get(access_key_id)
            .filter(|k| bool::from(k.token.expose().as_bytes().ct_eq(token.as_bytes())))
            .ok_or(Refusal::SecurityTokenMismatch)?;
        if now >= key.expires {
            return Err(Refusal::SecurityTokenExpired);
        }
        Ok(Caller {
            secret: key.secret.clone(),
            account: key.role.account.clone(),
            principal: Principal::Role {
                role: key.role.clone(),
                session: key.session.clone(),
            },
        })
    }

    pub(crate) fn role(&self, arn: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.arn == arn)
    }

    /// The role the ECS metadata service and the credentials URI hand out: the first configured.
    pub(crate) fn instance_role(&self) -> Option<&Role> {
        self.roles.first()
    }

    /// Issues temporary credentials for a session of `role`, valid for `duration` capped at
    /// the configured lifetime.
    pub(crate) fn issue(
        &self,
        role: &Role,
        session: &str,
        duration: Option<Duration>,
        now: OffsetDateTime,
    ) -> Issued {
        let lifetime = duration.map_or(self.lifetime, |d| d.min(self.lifetime));
        let expires = now + lifetime;
        let access_key_id = format!("STS.{}", random_alnum(28));
        let secret = Secret::new(random_alnum(44));
        let token = Secret::new(format!(
            "{TOKEN_PREFIX}{}",
            STANDARD_NO_PAD.encode(rand::random::<[u8; TOKEN_BYTES]>())
        ));
        let mut issued = self.issued();
        issued.retain(|_, k| k.expires + EXPIRED_MEMORY > now);
        issued.insert(
            access_key_id.clone(),
            TempKey {
                secret: secret.clone(),
                token: token.clone(),
                expires,
                role: role.clone(),
                session: session.to_owned(),
            },
        );
        Issued {
            access_key_id,
            secret,
            token,
            // What clients are told: whole seconds, never later than the real expiry.
            expiration: expires.replace_nanosecond(0).unwrap_or(expires),
        }
    }
}

fn well_formed_token(token: &str) -> bool {
    token
        .strip_prefix(TOKEN_PREFIX)
        .and_then(|b64| STANDARD_NO_PAD.decode(b64).ok())
        .is_some_and(|bytes| bytes.len() == TOKEN_BYTES)
}

fn random_alnum(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(lifetime: Duration) -> Identity {
        Identity::new(
            vec![
                ("a1".into(), Secret::new("s1")),
                ("a2".into(), Secret::new("s2")),
                ("b".into(), Secret::new("s3")),
            ],
            &HashMap::from([("a1".into(), "100".into()), ("a2".into(), "100".into())]),
            vec![Role::parse("acs:ram::100:role/worker").unwrap()],
            lifetime,
        )
    }

    #[test]
    fn access_key_flags() {
        let (id, secret, uid) = parse_access_key("ID:SECRET:1234").unwrap();
        assert_eq!(
            (id.as_str(), secret.expose(), uid.as_deref()),
            ("ID", "SECRET", Some("1234"))
        );
        let (_, secret, uid) = parse_access_key("ID:SEC:RET").unwrap();
        assert_eq!((secret.expose(), uid), ("SEC:RET", None));
        let (_, secret, uid) = parse_access_key("ID:SECRET").unwrap();
        assert_eq!((secret.expose(), uid), ("SECRET", None));
        assert!(parse_access_key("ID").is_err());
        assert!(parse_access_key("ID:").is_err());
        let err = parse_access_key(":x").unwrap_err().to_string();
        assert!(!err.contains('x'), "no secret in the error: {err}");
    }

    #[test]
    fn role_arns() {
        let r = Role::parse("acs:ram::1234567890123456:role/stopcaster").unwrap();
        assert_eq!(
            (r.account.as_str(), r.name.as_str()),
            ("1234567890123456", "stopcaster")
        );
        assert_eq!(r.id.len(), 18);
        assert_eq!(r.id, Role::parse(&r.arn).unwrap().id, "stable");
        for bad in [
            "acs:ram::x:role/a",
            "acs:ram::1:user/a",
            "acs:ram::1:role/",
            "arn:ram::1:role/a",
            "acs:ram:::role/a",
        ] {
            assert!(Role::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_accounts_are_stable_16_digit_numbers() {
        let a = default_account("LTAI-x");
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(a, default_account("LTAI-x"));
        assert_ne!(a, default_account("LTAI-y"));
    }

    #[test]
    fn permanent_keys_carry_their_account() {
        let id = identity(Duration::from_secs(60));
        let now = OffsetDateTime::now_utc();
        assert_eq!(id.caller("a1", None, now).unwrap().account, "100");
        assert_eq!(id.caller("a2", None, now).unwrap().account, "100");
        assert_eq!(
            id.caller("b", None, now).unwrap().account,
            default_account("b")
        );
        assert_eq!(
            id.caller("nope", None, now).unwrap_err(),
            Refusal::AccessKeyNotFound
        );
    }

    #[test]
    fn temporary_keys_and_their_tokens() {
        let id = identity(Duration::from_secs(60));
        let now = OffsetDateTime::now_utc();
        let role = id.role("acs:ram::100:role/worker").unwrap().clone();
        let t = id.issue(&role, "s", None, now);
        let other = id.issue(&role, "s", Some(Duration::from_secs(10)), now);
        assert!(t.access_key_id.starts_with("STS."));
        assert!(t.expiration <= now + Duration::from_secs(60));
        assert!(
            other.expiration <= now + Duration::from_secs(10),
            "capped by the request"
        );
        let tok = t.token.expose();
        let caller = id.caller(&t.access_key_id, Some(tok), now).unwrap();
        assert_eq!(caller.account, "100");
        assert_eq!(caller.secret.expose(), t.secret.expose());
        let code =
            |key: &str, token: Option<&str>, at| id.caller(key, token, at).unwrap_err().code();
        assert_eq!(code(&t.access_key_id, None, now), "MissingSecurityToken");
        assert_eq!(
            code(&t.access_key_id, Some("garbage"), now),
            "InvalidSecurityToken.Malformed"
        );
        assert_eq!(
            code(&t.access_key_id, Some(other.token.expose()), now),
            "InvalidSecurityToken.MismatchWithAccessKey"
        );
        assert_eq!(
            code("STS.never-issued", Some(tok), now),
            "InvalidSecurityToken.MismatchWithAccessKey"
        );
        let later = now + Duration::from_secs(61);
        assert_eq!(
            code(&t.access_key_id, Some(tok), later),
            "InvalidSecurityToken.Expired"
        );
        // Still known as expired a while later, even after other issues pruned the store.
        let much_later = now + Duration::from_secs(3600);
        id.issue(&role, "s", None, much_later);
        assert_eq!(
            code(&t.access_key_id, Some(tok), much_later),
            "InvalidSecurityToken.Expired"
        );
        assert_eq!(code("STS.x", None, now), "MissingSecurityToken");
    }
}
