//! Steps 1 to 8 of the order documented on [`super`]: which action a request asks for, and
//! whether its caller is who it says, decided from the request alone (and the keys issued so
//! far). No state of the server's is touched here, so every rule is a unit-tested function.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::identity::{Caller, Identity};
use super::protocol::{self, Refusal, Service};
use super::verify_v3::V3Signed;
use stopcaster_live::{signer, signer_v3};

/// The actions the stand-in serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    StopCaster,
    AssumeRole,
    AssumeRoleWithOidc,
    GetCallerIdentity,
}

impl Action {
    pub(crate) fn service(self) -> Service {
        match self {
            Action::StopCaster => Service::Live,
            _ => Service::Sts,
        }
    }

    /// The action's own mandatory parameters, checked with the signature's (step 4).
    fn required(self) -> &'static [&'static str] {
        match self {
            Action::StopCaster => &["CasterId"],
            Action::AssumeRole => &["RoleArn", "RoleSessionName"],
            Action::AssumeRoleWithOidc => &["RoleArn", "OIDCProviderArn", "RoleSessionName"],
            Action::GetCallerIdentity => &[],
        }
    }
}

/// A parameter's value; an empty value counts as absent.
pub(crate) fn param<'a>(params: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn required<'a>(
    params: &'a BTreeMap<String, String>,
    name: &'static str,
) -> Result<&'a str, Refusal> {
    param(params, name).ok_or(Refusal::MissingParameter(name))
}

/// Which gateway answers a request's errors: STS for its version, else live.
pub(crate) fn service_of(params: &BTreeMap<String, String>) -> Service {
    if param(params, "Version") == Some(protocol::STS_VERSION) {
        Service::Sts
    } else {
        Service::Live
    }
}

/// Steps 1 to 3: the action asked for. One address serves both products, so the version says
/// which product's actions apply.
pub(crate) fn route(params: &BTreeMap<String, String>) -> Result<Action, Refusal> {
    let action = required(params, "Action")?;
    let version = required(params, "Version")?;
    match version {
        protocol::API_VERSION => match action {
            protocol::ACTION => Ok(Action::StopCaster),
            _ => Err(Refusal::InvalidAction),
        },
        protocol::STS_VERSION => match action {
            "AssumeRole" => Ok(Action::AssumeRole),
            "AssumeRoleWithOIDC" => Ok(Action::AssumeRoleWithOidc),
            "GetCallerIdentity" => Ok(Action::GetCallerIdentity),
            _ => Err(Refusal::InvalidAction),
        },
        _ => Err(Refusal::InvalidVersion),
    }
}

/// The action's own mandatory parameters, for the unsigned `AssumeRoleWithOIDC`.
pub(crate) fn check_required(
    action: Action,
    params: &BTreeMap<String, String>,
) -> Result<(), Refusal> {
    action
        .required()
        .iter()
        .try_for_each(|name| required(params, name).map(drop))
}

/// A signed request whose caller checked out (steps 4 to 8).
#[derive(Debug)]
pub(crate) struct Verified<'a> {
    pub action: Action,
    pub access_key_id: &'a str,
    pub nonce: &'a str,
    /// The request's Timestamp, Unix seconds.
    pub timestamp: i64,
    pub caller: Caller,
}

/// Steps 4 to 8 for a signed action: the RPC signature v1 in `params`, or the V3 signature
/// `v3` (whose headers [`super::verify_v3::read`] put into `params`).
pub(crate) fn verify<'a>(
    identity: &Identity,
    action: Action,
    method: &str,
    params: &'a BTreeMap<String, String>,
    v3: Option<&V3Signed>,
    now: OffsetDateTime,
) -> Result<Verified<'a>, Refusal> {
    let access_key_id = required(params, "AccessKeyId")?;
    let v1 = match v3 {
        Some(_) => None,
        None => Some(required(params, "Signature")?),
    };
    let nonce = required(params, "SignatureNonce")?;
    let timestamp = required(params, "Timestamp")?;
    check_required(action, params)?;
    let caller = identity.caller(access_key_id, param(params, "SecurityToken"), now)?;
    if v1.is_some() {
        if required(params, "SignatureMethod")? != "HMAC-SHA1" {
            return Err(Refusal::SignatureMethod);
        }
        if required(params, "SignatureVersion")? != "1.0" {
            return Err(Refusal::SignatureVersion);
        }
    }
    let timestamp = signer::parse_timestamp(timestamp).ok_or(Refusal::TimestampFormat)?;
    if (now - timestamp).abs() > time::Duration::seconds(protocol::MAX_CLOCK_SKEW_SECS) {
        return Err(Refusal::TimestampExpired);
    }
    let secret = caller.secret.expose();
    let (string_to_sign, matches) = match (v1, v3) {
        (Some(signature), _) => {
            let query =
                signer::canonical_query(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let string_to_sign = signer::string_to_sign(method, &query);
            let expected = signer::sign_string(secret, &string_to_sign);
            let matches = signer::signature_matches(&expected, signature);
            (string_to_sign, matches)
        }
        (None, Some(v3)) => {
            let string_to_sign = signer_v3::string_to_sign(&v3.canonical_request);
            let expected = signer_v3::sign_string(secret, &string_to_sign);
            let matches = signer::signature_matches(&expected, &v3.signature);
            (string_to_sign, matches)
        }
        (None, None) => unreachable!("a request without v3 has its v1 signature"),
    };
    if !matches {
        return Err(Refusal::SignatureDoesNotMatch(string_to_sign));
    }
    Ok(Verified {
        action,
        access_key_id,
        nonce,
        timestamp: timestamp.unix_timestamp(),
        caller,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use stopcaster_live::credentials::Secret;

    pub(crate) fn identity() -> Identity {
        Identity::new(
            vec![("ak".to_owned(), Secret::new("sk"))],
            &HashMap::new(),
            vec![],
            Duration::from_secs(3600),
        )
    }

    pub(crate) fn signed(
        method: &str,
        secret: &str,
        mut params: BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let sig = signer::sign(
            method,
            secret,
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        params.insert("Signature".into(), sig);
        params
    }

    pub(crate) fn base(now: OffsetDateTime) -> BTreeMap<String, String> {
        [
            ("AccessKeyId", "ak"),
            ("Action", "StopCaster"),
            ("CasterId", "c1"),
            ("Format", "JSON"),
            ("RegionId", "cn-shanghai"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "n1"),
            ("SignatureVersion", "1.0"),
            ("Version", "2016-11-01"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .chain([("Timestamp".to_owned(), signer::format_timestamp(now))])
        .collect()
    }

    /// Steps 1 to 8, as the server runs them.
    pub(crate) fn check<'a>(
        id: &Identity,
        method: &str,
        params: &'a BTreeMap<String, String>,
        now: OffsetDateTime,
    ) -> Result<Verified<'a>, Refusal> {
        route(params).and_then(|action| verify(id, action, method, params, None, now))
    }

    fn code(r: Result<Verified<'_>, Refusal>) -> &'static str {
        match r {
            Ok(_) => "ok",
            Err(e) => e.code(),
        }
    }

    // Over 80 lines on purpose: one request altered a step at a time, in the order the checks
    // run, reads as the table of that order; split, the order would no longer be visible.
    #[test]
    fn verification_order_and_codes() {
        let now = OffsetDateTime::now_utc();
        let k = identity();
        let good = signed("POST", "sk", base(now));
        assert_eq!(code(check(&k, "POST", &good, now)), "ok");
        assert_eq!(code(check(&k, "GET", &good, now)), "SignatureDoesNotMatch");

        let without = |name: &str| {
            let mut p = good.clone();
            p.remove(name);
            p
        };
        for name in [
            "Action",
            "Version",
            "AccessKeyId",
            "Signature",
            "SignatureNonce",
            "Timestamp",
            "CasterId",
        ] {
            let p = without(name);
            let err = check(&k, "POST", &p, now).err().unwrap();
            assert_eq!(err, Refusal::MissingParameter(Box::leak(name.into())));
        }
        // RegionId is optional for StopCaster (Alibaba's parameter table), but signed.
        assert_eq!(
            code(check(&k, "POST", &without("RegionId"), now)),
            "SignatureDoesNotMatch"
        );
        let mut no_region = base(now);
        no_region.remove("RegionId");
        assert_eq!(
            code(check(&k, "POST", &signed("POST", "sk", no_region), now)),
            "ok"
        );

        let with = |name: &str, value: &str| {
            let mut p = base(now);
            p.insert(name.into(), value.into());
            signed("POST", "sk", p)
        };
        let code_with = |name: &str, value: &str| code(check(&k, "POST", &with(name, value), now));
        assert_eq!(code_with("Version", "2014-11-11"), "InvalidVersion");
        assert_eq!(code_with("Action", "StartCaster"), "InvalidAction.NotFound");
        // STS actions are STS's, not live's, and the other way round.
        assert_eq!(code_with("Action", "AssumeRole"), "InvalidAction.NotFound");
        assert_eq!(code_with("Version", "2015-04-01"), "InvalidAction.NotFound");
        assert_eq!(
            code_with("AccessKeyId", "nope"),
            "InvalidAccessKeyId.NotFound"
        );
        assert_eq!(code_with("AccessKeyId", "STS.nope"), "MissingSecurityToken");
        assert_eq!(
            code_with("SignatureMethod", "HMAC-SHA256"),
            "InvalidSignatureMethod"
        );
        assert_eq!(
            code_with("SignatureVersion", "2.0"),
            "InvalidSignatureVersion"
        );
        assert_eq!(
            code_with("Timestamp", "yesterday"),
            "InvalidTimeStamp.Format"
        );
        let skew = |secs: i64| signer::format_timestamp(now + time::Duration::seconds(secs));
        assert_eq!(
            code_with("Timestamp", &skew(-16 * 60)),
            "InvalidTimeStamp.Expired"
        );
        assert_eq!(
            code_with("Timestamp", &skew(16 * 60)),
            "InvalidTimeStamp.Expired"
        );
        assert_eq!(code_with("Timestamp", &skew(-14 * 60)), "ok");
        assert_eq!(code_with("Timestamp", &skew(14 * 60)), "ok");
        // A malformed CasterId is the studio's verdict, not the gateway's.
        assert_eq!(code_with("CasterId", "a b"), "ok");
        assert_eq!(
            code(check(&k, "POST", &signed("POST", "wrong", base(now)), now)),
            "SignatureDoesNotMatch"
        );
        // Unknown key wins over a bad signature, as upstream: the secret is needed to check it.
        let mut p = with("AccessKeyId", "nope");
        p.insert("Signature".into(), "x".into());
        assert_eq!(
            code(check(&k, "POST", &p, now)),
            "InvalidAccessKeyId.NotFound"
        );
    }

    #[test]
    fn sts_routes() {
        let mut p = BTreeMap::new();
        p.insert("Version".to_owned(), "2015-04-01".to_owned());
        for (action, routed) in [
            ("AssumeRole", Action::AssumeRole),
            ("AssumeRoleWithOIDC", Action::AssumeRoleWithOidc),
            ("GetCallerIdentity", Action::GetCallerIdentity),
        ] {
            p.insert("Action".to_owned(), action.to_owned());
            assert_eq!(route(&p), Ok(routed));
            assert_eq!(routed.service(), Service::Sts);
        }
        assert_eq!(service_of(&p), Service::Sts);
        p.insert("Action".to_owned(), "StopCaster".to_owned());
        assert_eq!(route(&p), Err(Refusal::InvalidAction));
        let now = OffsetDateTime::now_utc();
        let mut assume = base(now);
        assume.insert("Version".into(), "2015-04-01".into());
        assume.insert("Action".into(), "AssumeRole".into());
        assert_eq!(
            code(check(
                &identity(),
                "POST",
                &signed("POST", "sk", assume),
                now
            )),
            "MissingParameter"
        );
    }
}
