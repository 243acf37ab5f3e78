//! STS (`Version=2015-04-01`) as the stand-in answers it: `AssumeRole`, `AssumeRoleWithOIDC`
//! and `GetCallerIdentity`, in the JSON shapes of Alibaba's `alibabacloud_sts20150401` models
//! (`AssumeRoleResponseBody`, `AssumeRoleWithOIDCResponseBody`,
//! `GetCallerIdentityResponseBody`), which `alibabacloud_credentials` reads `Credentials` from.
//!
//! The gateway's checks (signature, nonce, SecurityToken) have been made by the caller; what is
//! left here is STS's own verdict on the role, the session and the OIDC token.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use super::identity::{Caller, Identity, Issued, Principal, Role};
use super::protocol::Refusal;
use super::verify::param;
use stopcaster_live::signer;

/// `DurationSeconds` STS takes (its message: "The Min/Max value of DurationSeconds is
/// 15min/1hr."); the lifetime issued is also capped by `--sts-lifetime`.
const MIN_DURATION_SECS: u64 = 900;
const MAX_DURATION_SECS: u64 = 3600;

/// `Credentials` of an STS answer, also the core of the metadata and credentials-URI answers.
pub(crate) fn credentials_json(issued: &Issued) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("AccessKeyId".into(), issued.access_key_id.clone().into());
    m.insert("AccessKeySecret".into(), issued.secret.expose().into());
    m.insert("SecurityToken".into(), issued.token.expose().into());
    m.insert(
        "Expiration".into(),
        signer::format_timestamp(issued.expiration).into(),
    );
    m
}

/// The role a request names, or STS's refusal.
fn role<'a>(
    identity: &'a Identity,
    params: &BTreeMap<String, String>,
) -> Result<&'a Role, Refusal> {
    let arn = param(params, "RoleArn").ok_or(Refusal::MissingParameter("RoleArn"))?;
    Role::parse(arn).map_err(|_| Refusal::RoleArnMalformed)?;
    identity
        .role(arn)
        .ok_or_else(|| Refusal::RoleNotFound(arn.to_owned()))
}

/// `RoleSessionName` (2 to 64 of `A-Z a-z 0-9 . @ - _`) and `DurationSeconds`, as STS checks them.
fn session_and_duration(
    params: &BTreeMap<String, String>,
) -> Result<(String, Option<Duration>), Refusal> {
    let session =
        param(params, "RoleSessionName").ok_or(Refusal::MissingParameter("RoleSessionName"))?;
    let ok = |c: char| c.is_ascii_alphanumeric() || ".@-_".contains(c);
    if !(2..=64).contains(&session.len()) || !session.chars().all(ok) {
        return Err(Refusal::RoleSessionNameMalformed);
    }
    let duration = match param(params, "DurationSeconds") {
        None => None,
        Some(s) => {
            let secs: u64 = s.parse().map_err(|_| Refusal::DurationSecondsInvalid)?;
            if !(MIN_DURATION_SECS..=MAX_DURATION_SECS).contains(&secs) {
                return Err(Refusal::DurationSecondsInvalid);
            }
            Some(Duration::from_secs(secs))
        }
    };
    Ok((session.to_owned(), duration))
}

fn assumed(role: &Role, session: &str, issued: &Issued, request_id: &str) -> Vec<u8> {
    let body = json!({
        "RequestId": request_id,
        "AssumedRoleUser": {
            // AssumeRole's own form (role/<name>/<session>); GetCallerIdentity says assumed-role.
            "Arn": format!("{}/{session}", role.arn),
            "AssumedRoleId": format!("{}:{session}", role.id),
        },
        "Credentials": credentials_json(issued),
    });
    serde_json::to_vec(&body).expect("JSON value serializes")
}

/// `AssumeRole`, signed by `caller`: any key of the role's account may assume it, including a
/// temporary key of a role of that account (role chaining).
pub(crate) fn assume_role(
    identity: &Identity,
    caller: &Caller,
    params: &BTreeMap<String, String>,
    request_id: &str,
    now: OffsetDateTime,
) -> Result<Vec<u8>, Refusal> {
    let role = role(identity, params)?;
    if caller.account != role.account {
        return Err(Refusal::AssumeRoleDenied);
    }
    let (session, duration) = session_and_duration(params)?;
    let issued = identity.issue(role, &session, duration, now);
    Ok(assumed(role, &session, &issued, request_id))
}

/// `AssumeRoleWithOIDC`, unsigned: the OIDC token is the proof. `expected` is the content of
/// `--oidc-token-file`, read afresh for this request (`None`: no file configured, so no token
/// can be right); surrounding whitespace is ignored on both sides, as a file's final newline is
/// no part of a token.
pub(crate) fn assume_role_with_oidc(
    identity: &Identity,
    params: &BTreeMap<String, String>,
    expected: Option<&str>,
    request_id: &str,
    now: OffsetDateTime,
) -> Result<Vec<u8>, Refusal> {
    let token = param(params, "OIDCToken")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(Refusal::OidcTokenEmpty)?;
    let role = role(identity, params)?;
    let provider =
        param(params, "OIDCProviderArn").ok_or(Refusal::MissingParameter("OIDCProviderArn"))?;
    let registered = provider
        .strip_prefix("acs:ram::")
        .and_then(|rest| rest.split_once(":oidc-provider/"))
        .is_some_and(|(account, name)| account == role.account && !name.is_empty());
    if !registered {
        return Err(Refusal::OidcProviderNotFound);
    }
    let matches = expected
        .map(str::trim)
        .is_some_and(|e| !e.is_empty() && bool::from(e.as_bytes().ct_eq(token.as_bytes())));
    if !matches {
        return Err(Refusal::OidcTokenInvalid);
    }
    let (session, duration) = session_and_duration(params)?;
    let issued = identity.issue(role, &session, duration, now);
    Ok(assumed(role, &session, &issued, request_id))
}

/// `GetCallerIdentity`: a configured key is its account's own (root) identity; a temporary key
/// is an `AssumedRoleUser`, shaped as Alibaba answers one (with `RoleId`, without `UserId`).
pub(crate) fn get_caller_identity(caller: &Caller, request_id: &str) -> Vec<u8> {
    let account = caller.account.as_str();
    let body = match &caller.principal {
        Principal::Account => json!({
            "RequestId": request_id,
            "IdentityType": "Account",
            "AccountId": account,
            "UserId": account,
            "PrincipalId": account,
            "Arn": format!("acs:ram::{account}:root"),
        }),
        Principal::Role { role, session } => json!({
            "RequestId": request_id,
            "IdentityType": "AssumedRoleUser",
            "AccountId": account,
            "RoleId": role.id,
            "PrincipalId": format!("{}:{session}", role.id),
            "Arn": format!("acs:ram::{account}:assumed-role/{}/{session}", role.name),
        }),
    };
    serde_json::to_vec(&body).expect("JSON value serializes")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use stopcaster_live::credentials::Secret;

    const ROLE: &str = "acs:ram::100:role/worker";

    fn identity() -> Identity {
        Identity::new(
            vec![
                ("a".into(), Secret::new("s")),
                ("b".into(), Secret::new("t")),
            ],
            &HashMap::from([("a".into(), "100".into()), ("b".into(), "200".into())]),
            vec![Role::parse(ROLE).unwrap()],
            Duration::from_secs(3600),
        )
    }

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn code<T>(r: Result<T, Refusal>) -> &'static str {
        r.err().map_or("ok", |e| e.code())
    }

    #[test]
    fn assume_role_checks() {
        let id = identity();
        let now = OffsetDateTime::now_utc();
        let a = id.caller("a", None, now).unwrap();
        let b = id.caller("b", None, now).unwrap();
        let p =
            |arn: &str, session: &str| params(&[("RoleArn", arn), ("RoleSessionName", session)]);
        let ok = assume_role(&id, &a, &p(ROLE, "s1"), "RID", now).unwrap();
        let v: Value = serde_json::from_slice(&ok).unwrap();
        assert_eq!(v["RequestId"], "RID");
        assert_eq!(v["AssumedRoleUser"]["Arn"], format!("{ROLE}/s1"));
        let key = v["Credentials"]["AccessKeyId"].as_str().unwrap();
        let token = v["Credentials"]["SecurityToken"].as_str().unwrap();
        let temp = id.caller(key, Some(token), now).unwrap();
        assert_eq!(temp.account, "100");
        assert_eq!(
            code(assume_role(&id, &b, &p(ROLE, "s1"), "R", now)),
            "NoPermission"
        );
        assert_eq!(
            code(assume_role(&id, &temp, &p(ROLE, "s2"), "R", now)),
            "ok"
        );
        assert_eq!(
            code(assume_role(
                &id,
                &a,
                &p("acs:ram::100:role/other", "s"),
                "R",
                now
            )),
            "EntityNotExist.Role"
        );
        assert_eq!(
            code(assume_role(&id, &a, &p("nope", "s1"), "R", now)),
            "InvalidParameter.RoleArn"
        );
        assert_eq!(
            code(assume_role(&id, &a, &p(ROLE, "a b"), "R", now)),
            "InvalidParameter.RoleSessionName"
        );
        let mut short = p(ROLE, "s1");
        short.insert("DurationSeconds".into(), "60".into());
        assert_eq!(
            code(assume_role(&id, &a, &short, "R", now)),
            "InvalidParameter.DurationSeconds"
        );
    }

    #[test]
    fn oidc_checks() {
        let id = identity();
        let now = OffsetDateTime::now_utc();
        let p = |provider: &str, token: &str| {
            params(&[
                ("RoleArn", ROLE),
                ("OIDCProviderArn", provider),
                ("OIDCToken", token),
                ("RoleSessionName", "pod"),
            ])
        };
        let good = "acs:ram::100:oidc-provider/ack";
        let run = |p, expected| code(assume_role_with_oidc(&id, &p, expected, "R", now));
        assert_eq!(run(p(good, "tok"), Some("tok\n")), "ok");
        assert_eq!(
            run(p(good, "tok"), Some("other")),
            "AuthenticationFail.OIDCToken.Invalid"
        );
        assert_eq!(
            run(p(good, "tok"), None),
            "AuthenticationFail.OIDCToken.Invalid"
        );
        assert_eq!(
            run(p(good, ""), Some("tok")),
            "AuthenticationFail.OIDCToken.Invalid"
        );
        assert_eq!(
            run(p("acs:ram::200:oidc-provider/ack", "tok"), Some("tok")),
            "AuthenticationFail.NoPermission"
        );
        assert_eq!(
            assume_role_with_oidc(&id, &p(good, ""), Some("tok"), "R", now).unwrap_err(),
            Refusal::OidcTokenEmpty
        );
    }

    #[test]
    fn caller_identities() {
        let id = identity();
        let now = OffsetDateTime::now_utc();
        let a = id.caller("a", None, now).unwrap();
        let v: Value = serde_json::from_slice(&get_caller_identity(&a, "R")).unwrap();
        assert_eq!(v["AccountId"], "100");
        assert_eq!(v["IdentityType"], "Account");
        assert_eq!(v["Arn"], "acs:ram::100:root");
        let role = id.role(ROLE).unwrap().clone();
        let issued = id.issue(&role, "sess", None, now);
        let t = id
            .caller(&issued.access_key_id, Some(issued.token.expose()), now)
            .unwrap();
        let v: Value = serde_json::from_slice(&get_caller_identity(&t, "R")).unwrap();
        assert_eq!(v["AccountId"], "100");
        assert_eq!(v["IdentityType"], "AssumedRoleUser");
        assert_eq!(v["Arn"], "acs:ram::100:assumed-role/worker/sess");
        assert_eq!(v["PrincipalId"], format!("{}:sess", role.id));
    }
}
