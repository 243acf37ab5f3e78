//! The RPC wire format as `live.aliyuncs.com` speaks it, for the stand-in: decoding parameters
//! from a query string or form body, and Alibaba's error codes, HTTP statuses, messages and JSON
//! bodies. No state and no I/O.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;

/// The API versions and actions the stand-in serves. Its own constants rather than the
/// client's, so a change to the client cannot silently change what the stand-in accepts.
pub(crate) const API_VERSION: &str = "2016-11-01";
pub(crate) const ACTION: &str = "StopCaster";
pub(crate) const STS_VERSION: &str = "2015-04-01";
/// Allowed distance between a request's Timestamp and the server clock, either way.
pub(crate) const MAX_CLOCK_SKEW_SECS: i64 = 15 * 60;

/// Adds the pairs of an `application/x-www-form-urlencoded` string (a query string is decoded
/// the same way, as Alibaba's servers do) to `into`; a later pair replaces an earlier one of the
/// same name, as the SDKs' own dict merges of query and body do. Malformed escapes stay literal
/// and invalid UTF-8 becomes U+FFFD rather than refusing the request: the signature check then
/// decides, like upstream.
pub(crate) fn decode_form(input: &[u8], into: &mut BTreeMap<String, String>) {
    for pair in input.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        into.insert(percent_decode(name), percent_decode(value));
    }
}

fn percent_decode(input: &[u8]) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < input.len() => match (hex(input[i + 1]), hex(input[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// The product whose gateway answers: it names the `HostId` and the `Recommend` link of errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    Live,
    Sts,
}

impl Service {
    pub(crate) fn host_id(self) -> &'static str {
        match self {
            Service::Live => "live.aliyuncs.com",
            Service::Sts => "sts.aliyuncs.com",
        }
    }

    fn product(self) -> &'static str {
        match self {
            Service::Live => "live",
            Service::Sts => "Sts",
        }
    }
}

/// Why a call is refused: each variant is one of Alibaba's error codes with its HTTP status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    MissingParameter(&'static str),
    InvalidVersion,
    InvalidAction,
    AccessKeyNotFound,
    SignatureMethod,
    SignatureVersion,
    TimestampFormat,
    TimestampExpired,
    /// Carries the server's string to sign: the SDKs compare it with their own.
    SignatureDoesNotMatch(String),
    NonceUsed,
    Throttled,
    ServiceUnavailable,
    InternalError,
    CasterIdMalformed,
    CasterNotFound,
    IncorrectSceneStatus,
    // Temporary keys: the gateway's checks of the SecurityToken, before the signature.
    MissingSecurityToken,
    SecurityTokenMalformed,
    SecurityTokenMismatch,
    SecurityTokenExpired,
    // STS actions.
    RoleArnMalformed,
    /// Carries the ARN asked for, which Alibaba names in the message.
    RoleNotFound(String),
    AssumeRoleDenied,
    RoleSessionNameMalformed,
    DurationSecondsInvalid,
    OidcTokenEmpty,
    OidcTokenInvalid,
    OidcProviderNotFound,
    /// The stand-in could not read its own `--oidc-token-file`.
    OidcTokenFileUnreadable,
}

impl Refusal {
    /// Statuses from Alibaba's documentation: StopCaster's error table (IncorrectSceneStatus
    /// and InvalidCasterId.Malformed 400, InvalidCaster.NotFound 404, InternalError 500), the
    /// common POP gateway errors (the `InvalidSecurityToken.*` family 400) and STS's error table
    /// (`AuthenticationFail.*` 401).
    pub(crate) fn status(&self) -> u16 {
        match self {
            Refusal::InvalidAction
            | Refusal::AccessKeyNotFound
            | Refusal::CasterNotFound
            | Refusal::RoleNotFound(_) => 404,
            Refusal::AssumeRoleDenied => 403,
            Refusal::OidcTokenEmpty | Refusal::OidcTokenInvalid | Refusal::OidcProviderNotFound => {
                401
            }
            Refusal::InternalError | Refusal::OidcTokenFileUnreadable => 500,
            Refusal::ServiceUnavailable => 503,
            _ => 400,
        }
    }

    pub(crate) fn code(&self) -> &'static str {
        match self {
            Refusal::MissingParameter(_) => "MissingParameter",
            Refusal::InvalidVersion => "InvalidVersion",
            Refusal::InvalidAction => "InvalidAction.NotFound",
            Refusal::AccessKeyNotFound => "InvalidAccessKeyId.NotFound",
            Refusal::SignatureMethod => "InvalidSignatureMethod",
            Refusal::SignatureVersion => "InvalidSignatureVersion",
            Refusal::TimestampFormat => "InvalidTimeStamp.Format",
            Refusal::TimestampExpired => "InvalidTimeStamp.Expired",
            Refusal::SignatureDoesNotMatch(_) => "SignatureDoesNotMatch",
            Refusal::NonceUsed => "SignatureNonceUsed",
            Refusal::Throttled => "Throttling.User",
            Refusal::ServiceUnavailable => "ServiceUnavailable",
            Refusal::InternalError => "InternalError",
            Refusal::CasterIdMalformed => "InvalidCasterId.Malformed",
            Refusal::CasterNotFound => "InvalidCaster.NotFound",
            Refusal::IncorrectSceneStatus => "IncorrectSceneStatus",
            Refusal::MissingSecurityToken => "MissingSecurityToken",
            Refusal::SecurityTokenMalformed => "InvalidSecurityToken.Malformed",
            Refusal::SecurityTokenMismatch => "InvalidSecurityToken.MismatchWithAccessKey",
            Refusal::SecurityTokenExpired => "InvalidSecurityToken.Expired",
            Refusal::RoleArnMalformed => "InvalidParameter.RoleArn",
            Refusal::RoleNotFound(_) => "EntityNotExist.Role",
            Refusal::AssumeRoleDenied => "NoPermission",
            Refusal::RoleSessionNameMalformed => "InvalidParameter.RoleSessionName",
            Refusal::DurationSecondsInvalid => "InvalidParameter.DurationSeconds",
            Refusal::OidcTokenEmpty | Refusal::OidcTokenInvalid => {
                "AuthenticationFail.OIDCToken.Invalid"
            }
            Refusal::OidcProviderNotFound => "AuthenticationFail.NoPermission",
            Refusal::OidcTokenFileUnreadable => "InternalError",
        }
    }

    pub(crate) fn message(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Refusal::MissingParameter(name) => {
                return Cow::Owned(format!(
                    "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
                ));
            }
            Refusal::SignatureDoesNotMatch(sts) => {
                // aliyunsdkcore splits this message at ':' and compares the rest with its own
                // string to sign, so nothing before the colon may contain one.
                return Cow::Owned(format!(
                    "Specified signature is not matched with our calculation. server string to sign is:{sts}"
                ));
            }
            Refusal::InvalidVersion => "Specified parameter Version is not valid.",
            Refusal::InvalidAction => {
                "Specified api is not found, please check your url and method."
            }
            Refusal::AccessKeyNotFound => "Specified access key is not found.",
            Refusal::SignatureMethod => "Specified signature method is not supported.",
            Refusal::SignatureVersion => "Specified signature version is not supported.",
            Refusal::TimestampFormat => "Specified time stamp or date value is not well formatted.",
            Refusal::TimestampExpired => "Specified time stamp or date value is expired.",
            Refusal::NonceUsed => "Specified signature nonce was used already.",
            Refusal::Throttled => "Request was denied due to user flow control.",
            Refusal::ServiceUnavailable => {
                "The request has failed due to a temporary failure of the server."
            }
            Refusal::InternalError => {
                "The request processing has failed due to some unknown error, exception or failure."
            }
            Refusal::CasterIdMalformed => "The specified CasterId is malformed.",
            Refusal::CasterNotFound => "The specified caster does not exist.",
            Refusal::IncorrectSceneStatus => {
                "The current status of the caster does not support this operation: it is not running."
            }
            Refusal::MissingSecurityToken => "SecurityToken is mandatory for this action.",
            Refusal::SecurityTokenMalformed => "Specified SecurityToken is malformed.",
            Refusal::SecurityTokenMismatch => {
                "Specified SecurityToken mismatch with the AccessKey."
            }
            Refusal::SecurityTokenExpired => "Specified SecurityToken is expired.",
            Refusal::RoleArnMalformed => "The parameter RoleArn is wrongly formed.",
            Refusal::RoleNotFound(arn) => {
                return Cow::Owned(format!("The role not exists: {arn}."));
            }
            Refusal::AssumeRoleDenied => "No permission perform sts:AssumeRole on this Role.",
            Refusal::RoleSessionNameMalformed => "The parameter RoleSessionName is wrongly formed.",
            Refusal::DurationSecondsInvalid => "The Min/Max value of DurationSeconds is 15min/1hr.",
            Refusal::OidcTokenEmpty => "The OIDCToken can not empty.",
            Refusal::OidcTokenInvalid => "The Jwt content is invalid that cannot be recognized.",
            Refusal::OidcProviderNotFound => "No such OIDC Provider registered.",
            Refusal::OidcTokenFileUnreadable => {
                "The request processing has failed due to some unknown error, exception or failure."
            }
        })
    }
}

/// Alibaba's RequestId form: an upper-case hyphenated UUID.
pub(crate) fn request_id_text(id: uuid::Uuid) -> String {
    let mut buf = uuid::Uuid::encode_buffer();
    id.hyphenated().encode_upper(&mut buf).to_owned()
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SuccessBody<'a> {
    request_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorBody<'a> {
    request_id: &'a str,
    host_id: &'a str,
    code: &'a str,
    message: &'a str,
    recommend: String,
}

pub(crate) fn success_body(request_id: &str) -> Vec<u8> {
    serde_json::to_vec(&SuccessBody { request_id }).expect("plain struct serializes")
}

pub(crate) fn error_body(request_id: &str, refusal: &Refusal, service: Service) -> Vec<u8> {
    let code = refusal.code();
    serde_json::to_vec(&ErrorBody {
        request_id,
        host_id: service.host_id(),
        code,
        message: &refusal.message(),
        recommend: format!(
            "https://api.aliyun.com/troubleshoot?q={code}&product={}",
            service.product()
        ),
    })
    .expect("plain struct serializes")
}

/// What a gateway in front of the API answers when its upstream fails: not Alibaba's JSON, so
/// clients must cope with a body they cannot parse.
pub(crate) const HTML_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>Tengine</center>\r\n</body>\r\n</html>\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        decode_form(s.as_bytes(), &mut m);
        m
    }

    #[test]
    fn decodes_like_a_form() {
        let m = decode("a=x%20y+z&b=%E6%BC%94%2A~&c&&d=1%2&e=%zz&a2=%2B%3D%26%25");
        assert_eq!(m["a"], "x y z");
        assert_eq!(m["b"], "演*~");
        assert_eq!(m["c"], "");
        assert_eq!(m["d"], "1%2");
        assert_eq!(m["e"], "%zz");
        assert_eq!(m["a2"], "+=&%");
        assert_eq!(decode("x=%")["x"], "%");
        assert_eq!(decode("x=%4")["x"], "%4");
        assert_eq!(decode("x=%41")["x"], "A");
        assert_eq!(decode("x=%ff")["x"], "\u{fffd}");
    }

    #[test]
    fn later_pairs_win() {
        let mut m = decode("a=1&b=2");
        decode_form(b"a=3", &mut m);
        assert_eq!(m["a"], "3");
        assert_eq!(m["b"], "2");
    }

    #[test]
    fn error_bodies_have_alibabas_shape() {
        let body = error_body("RID", &Refusal::CasterNotFound, Service::Live);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["RequestId"], "RID");
        assert_eq!(v["HostId"], "live.aliyuncs.com");
        assert_eq!(v["Code"], "InvalidCaster.NotFound");
        assert_eq!(v["Message"], "The specified caster does not exist.");
        assert_eq!(
            v["Recommend"],
            "https://api.aliyun.com/troubleshoot?q=InvalidCaster.NotFound&product=live"
        );
        assert_eq!(Refusal::CasterNotFound.status(), 404);
        let sts = error_body("RID", &Refusal::SecurityTokenExpired, Service::Sts);
        let v: serde_json::Value = serde_json::from_slice(&sts).unwrap();
        assert_eq!(v["HostId"], "sts.aliyuncs.com");
        assert_eq!(v["Code"], "InvalidSecurityToken.Expired");
        assert_eq!(v["Message"], "Specified SecurityToken is expired.");
        assert_eq!(
            v["Recommend"],
            "https://api.aliyun.com/troubleshoot?q=InvalidSecurityToken.Expired&product=Sts"
        );
        assert_eq!(Refusal::SecurityTokenExpired.status(), 400);
        assert_eq!(Refusal::OidcTokenInvalid.status(), 401);
    }

    #[test]
    fn signature_message_splits_like_aliyunsdkcore() {
        let sts = "POST&%2F&A%3D1%26T%3D2024-01-02T03%253A04%253A05Z";
        let m = Refusal::SignatureDoesNotMatch(sts.into()).message();
        assert_eq!(m.split(':').nth(1), Some(sts));
        assert_eq!(m.split(':').count(), 2);
    }

    #[test]
    fn request_ids_are_upper_case_uuids() {
        let id = request_id_text(uuid::Uuid::new_v4());
        assert_eq!(id.len(), 36);
        assert_eq!(id, id.to_ascii_uppercase());
        assert!(uuid::Uuid::parse_str(&id).is_ok());
    }
}
