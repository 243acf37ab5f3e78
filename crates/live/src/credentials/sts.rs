//! STS (`Version=2015-04-01`): `AssumeRole`, `AssumeRoleWithOIDC` and `GetCallerIdentity`. The
//! requests are built and the answers parsed by pure functions; the `async fn`s only send them.
//!
//! Request shapes follow credentials-go (`providers/ram_role_arn.go`, `providers/oidc.go`):
//! `POST https://<sts>/?<common parameters>` with the business parameters
//! (`RoleArn`, `RoleSessionName`, `DurationSeconds`, `Policy`, `ExternalId`, `OIDCProviderArn`,
//! `OIDCToken`) in an `application/x-www-form-urlencoded` body, and the HMAC-SHA1 RPC signature
//! computed over query and body parameters together ([`crate::signer`]). Keeping them in the
//! body keeps the OIDC token out of every URL (and so out of any proxy's access log).
//! credentials-python sends the same parameters as a GET query; STS and the stand-in accept
//! both. `AssumeRoleWithOIDC` is not signed: the token is the proof.

use super::Credentials;
use super::chain::{OidcRole, RamRole};
use super::clock;
use super::http::{
    FetchError, FetchErrorKind, api_error, malformed_json, read_body, temporary_credentials,
    transport,
};
use crate::signer;
use serde::Deserialize;

pub(super) const VERSION: &str = "2015-04-01";

/// A request ready to send: the query string (after `?`) and the form body.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct RpcRequest {
    pub query: String,
    pub body: String,
}

/// Never printed whole: the query holds a signature and maybe a token, the body maybe a token.
impl std::fmt::Debug for RpcRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RpcRequest(***)")
    }
}

/// Signs `common` and `business` together (the RPC signature covers every parameter wherever
/// it travels) and puts the signature in the query.
fn signed<'a>(
    credentials: &'a Credentials,
    mut common: Vec<(&'a str, &'a str)>,
    business: &[(&str, &str)],
    nonce: &'a str,
    timestamp: &'a str,
) -> RpcRequest {
    common.extend([
        ("AccessKeyId", credentials.access_key_id()),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", nonce),
        ("SignatureVersion", "1.0"),
        ("Timestamp", timestamp),
    ]);
    if let Some(token) = credentials.security_token() {
        common.push(("SecurityToken", token.expose()));
    }
    let signature = signer::sign(
        "POST",
        credentials.secret().expose(),
        common.iter().chain(business).copied(),
    );
    let query = signer::canonical_query(common.iter().copied());
    RpcRequest {
        query: format!("{query}&Signature={}", signer::percent_encode(&signature)),
        body: signer::canonical_query(business.iter().copied()),
    }
}

fn common(action: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![("Action", action), ("Format", "JSON"), ("Version", VERSION)]
}

/// `AssumeRole`, signed with `credentials` (the role's trusted identity).
pub(super) fn assume_role_request(
    credentials: &Credentials,
    role: &RamRole,
    nonce: &str,
    timestamp: &str,
) -> RpcRequest {
    let duration = role.duration_seconds.to_string();
    let mut business: Vec<(&str, &str)> = vec![
        ("DurationSeconds", &duration),
        ("RoleArn", &role.role_arn),
        ("RoleSessionName", &role.session_name),
    ];
    if let Some(policy) = &role.policy {
        business.push(("Policy", policy));
    }
    if let Some(external_id) = &role.external_id {
        business.push(("ExternalId", external_id.expose()));
    }
    signed(
        credentials,
        common("AssumeRole"),
        &business,
        nonce,
        timestamp,
    )
}

/// `AssumeRoleWithOIDC` with `token` (the token file's current content), unsigned.
pub(super) fn assume_role_with_oidc_request(
    role: &OidcRole,
    token: &str,
    timestamp: &str,
) -> RpcRequest {
    let duration = role.duration_seconds.to_string();
    let mut query = common("AssumeRoleWithOIDC");
    query.push(("Timestamp", timestamp));
    let mut business: Vec<(&str, &str)> = vec![
        ("DurationSeconds", &duration),
        ("OIDCProviderArn", &role.oidc_provider_arn),
        ("OIDCToken", token),
        ("RoleArn", &role.role_arn),
        ("RoleSessionName", &role.session_name),
    ];
    if let Some(policy) = &role.policy {
        business.push(("Policy", policy));
    }
    RpcRequest {
        query: signer::canonical_query(query),
        body: signer::canonical_query(business),
    }
}

/// `GetCallerIdentity`, signed; no business parameters.
pub(super) fn caller_identity_request(
    credentials: &Credentials,
    nonce: &str,
    timestamp: &str,
) -> RpcRequest {
    signed(
        credentials,
        common("GetCallerIdentity"),
        &[],
        nonce,
        timestamp,
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeRoleBody {
    credentials: Option<StsCredentials>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsCredentials {
    access_key_id: Option<String>,
    access_key_secret: Option<String>,
    security_token: Option<String>,
    expiration: Option<String>,
}

/// An `AssumeRole`/`AssumeRoleWithOIDC` answer:
/// `{"RequestId", "AssumedRoleUser": {...}, "Credentials": {"AccessKeyId", "AccessKeySecret",
/// "SecurityToken", "Expiration"}}` on 200, Alibaba's error JSON otherwise.
pub(super) fn parse_assume_role(status: u16, body: &[u8]) -> Result<Credentials, FetchErrorKind> {
    if status != 200 {
        return Err(api_error(status, body));
    }
    let parsed: AssumeRoleBody =
        serde_json::from_slice(body).map_err(|e| malformed_json("the body", &e))?;
    let c = parsed
        .credentials
        .ok_or_else(|| FetchErrorKind::Malformed("no Credentials".to_owned()))?;
    temporary_credentials(
        &c.access_key_id,
        &c.access_key_secret,
        &c.security_token,
        &c.expiration,
        "Credentials.",
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CallerIdentityBody {
    account_id: Option<String>,
}

/// A `GetCallerIdentity` answer: its `AccountId` (the account UID, the same for the main
/// account and all its RAM users and roles).
pub(super) fn parse_caller_identity(status: u16, body: &[u8]) -> Result<String, FetchErrorKind> {
    if status != 200 {
        return Err(api_error(status, body));
    }
    let parsed: CallerIdentityBody =
        serde_json::from_slice(body).map_err(|e| malformed_json("the body", &e))?;
    super::http::required(&parsed.account_id, "AccountId").map(str::to_owned)
}

/// Sends an STS request and reads the answer and its `Date` (Unix seconds).
async fn send(
    http: &reqwest::Client,
    endpoint: &str,
    request: RpcRequest,
    provider: &str,
) -> Result<(u16, Vec<u8>, Option<i64>), FetchError> {
    let fail = |kind| FetchError::new(provider, endpoint, kind);
    let url = format!("{}/?{}", endpoint.trim_end_matches('/'), request.query);
    let response = http
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        // credentials-go sets it: STS answers are small, and compressed ones need a feature.
        .header("Accept-Encoding", "identity")
        .body(request.body)
        .send()
        .await
        .map_err(|e| fail(transport(&e)))?;
    let date = response
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|d| d.to_str().ok())
        .and_then(crate::time::parse_http_date)
        .map(time::OffsetDateTime::unix_timestamp);
    let (status, body) = read_body(response).await.map_err(fail)?;
    Ok((status, body, date))
}

/// Sends the request `build` makes for a timestamp, stamped in the servers' time
/// ([`clock::now`]). When STS refuses the timestamp and its `Date` shows this machine's clock
/// is off, the correction is learnt and the request built and sent once more.
async fn send_stamped(
    http: &reqwest::Client,
    endpoint: &str,
    provider: &str,
    build: impl Fn(&str) -> RpcRequest,
) -> Result<(u16, Vec<u8>), FetchError> {
    let unix = |t: time::OffsetDateTime| t.unix_timestamp_nanos() as f64 / 1e9;
    let mut corrected = false;
    loop {
        let sent = time::OffsetDateTime::now_utc();
        let request = build(&signer::format_timestamp(clock::now()));
        let (status, body, date) = send(http, endpoint, request, provider).await?;
        let received = time::OffsetDateTime::now_utc();
        let code = match api_error(status, &body) {
            FetchErrorKind::Api { code, .. } if status != 200 => code,
            _ => None,
        };
        let learnt = clock::learnt_from(status, code.as_deref(), date, unix(sent), unix(received));
        match learnt {
            Some(correction) if !corrected => {
                clock::learn(correction);
                corrected = true;
            }
            _ => return Ok((status, body)),
        }
    }
}

fn nonce() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Assumes `role` with `credentials`.
pub(super) async fn assume_role(
    http: &reqwest::Client,
    credentials: &Credentials,
    role: &RamRole,
) -> Result<Credentials, FetchError> {
    const PROVIDER: &str = "sts AssumeRole";
    let build = |timestamp: &str| assume_role_request(credentials, role, &nonce(), timestamp);
    let (status, body) = send_stamped(http, &role.sts_endpoint, PROVIDER, build).await?;
    parse_assume_role(status, &body)
        .map_err(|kind| FetchError::new(PROVIDER, &role.sts_endpoint, kind))
}

/// Assumes `role` with the token now in its token file (read here, for every request: the
/// file rotates, and an old token may already be refused).
pub(super) async fn assume_role_with_oidc(
    http: &reqwest::Client,
    role: &OidcRole,
) -> Result<Credentials, FetchError> {
    const PROVIDER: &str = "sts AssumeRoleWithOIDC";
    // A small local file (a projected volume on ACK): read in place, not worth a blocking task.
    let token = std::fs::read_to_string(&role.token_file).map_err(|e| {
        FetchError::new(
            PROVIDER,
            &role.sts_endpoint,
            FetchErrorKind::TokenFile {
                path: role.token_file.display().to_string(),
                error: e.to_string(),
            },
        )
    })?;
    // Sent exactly as read, as credentials-go and -python do: a stand-in comparing with the
    // same file must see the same bytes.
    let build = |timestamp: &str| assume_role_with_oidc_request(role, &token, timestamp);
    let (status, body) = send_stamped(http, &role.sts_endpoint, PROVIDER, build).await?;
    parse_assume_role(status, &body)
        .map_err(|kind| FetchError::new(PROVIDER, &role.sts_endpoint, kind))
}

/// The account UID (`AccountId`) the credentials belong to, from `GetCallerIdentity`.
pub(super) async fn caller_identity(
    http: &reqwest::Client,
    sts_endpoint: &str,
    credentials: &Credentials,
) -> Result<String, FetchError> {
    const PROVIDER: &str = "sts GetCallerIdentity";
    let build = |timestamp: &str| caller_identity_request(credentials, &nonce(), timestamp);
    let (status, body) = send_stamped(http, sts_endpoint, PROVIDER, build).await?;
    parse_caller_identity(status, &body)
        .map_err(|kind| FetchError::new(PROVIDER, sts_endpoint, kind))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::credentials::Secret;

    /// Decodes `a=b&c=d` (the tests' own, minimal: `%XX` only, as the signer writes).
    fn decode(s: &str) -> BTreeMap<String, String> {
        fn unescape(s: &str) -> String {
            let bytes = s.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                    i += 3;
                } else {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
            String::from_utf8(out).unwrap()
        }
        s.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (unescape(k), unescape(v))
            })
            .collect()
    }

    fn role() -> RamRole {
        RamRole {
            role_arn: "acs:ram::100:role/stopper".into(),
            session_name: "sess".into(),
            duration_seconds: 3600,
            policy: Some("{\"Version\":\"1\"}".into()),
            external_id: Some(Secret::new("ext")),
            sts_endpoint: "https://sts.aliyuncs.com".into(),
        }
    }

    #[test]
    fn assume_role_is_signed_over_query_and_body() {
        let creds = Credentials::new("testid", "testsecret");
        let r = assume_role_request(&creds, &role(), "nonce-1", "2024-01-02T03:04:05Z");
        let query = decode(&r.query);
        let body = decode(&r.body);
        assert_eq!(query["Action"], "AssumeRole");
        assert_eq!(query["Version"], "2015-04-01");
        assert_eq!(query["Format"], "JSON");
        assert_eq!(query["AccessKeyId"], "testid");
        assert_eq!(query["SignatureMethod"], "HMAC-SHA1");
        assert_eq!(query["SignatureVersion"], "1.0");
        assert_eq!(query["SignatureNonce"], "nonce-1");
        assert_eq!(query["Timestamp"], "2024-01-02T03:04:05Z");
        assert!(!query.contains_key("SecurityToken"));
        assert!(!query.contains_key("RoleArn"));
        assert_eq!(body["RoleArn"], "acs:ram::100:role/stopper");
        assert_eq!(body["RoleSessionName"], "sess");
        assert_eq!(body["DurationSeconds"], "3600");
        assert_eq!(body["Policy"], "{\"Version\":\"1\"}");
        assert_eq!(body["ExternalId"], "ext");
        // What a verifier does: every parameter but Signature, wherever it came from.
        let mut all = query.clone();
        all.extend(body.clone());
        let expected = signer::sign(
            "POST",
            "testsecret",
            all.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        assert_eq!(query["Signature"], expected);
        // Another secret, another signature: the check above could fail.
        assert_ne!(
            query["Signature"],
            signer::sign(
                "POST",
                "other",
                all.iter().map(|(k, v)| (k.as_str(), v.as_str()))
            )
        );
        assert_eq!(format!("{r:?}"), "RpcRequest(***)");
    }

    #[test]
    fn a_temporary_base_sends_its_token() {
        let creds = Credentials::new("STS.id", "s").with_security_token(Some("tok".into()));
        let mut bare = role();
        bare.policy = None;
        bare.external_id = None;
        let r = assume_role_request(&creds, &bare, "n", "t");
        let query = decode(&r.query);
        assert_eq!(query["SecurityToken"], "tok");
        let body = decode(&r.body);
        assert!(!body.contains_key("Policy") && !body.contains_key("ExternalId"));
    }

    #[test]
    fn oidc_is_unsigned_and_carries_the_token_in_the_body() {
        let role = OidcRole {
            role_arn: "acs:ram::100:role/r".into(),
            oidc_provider_arn: "acs:ram::100:oidc-provider/ack".into(),
            token_file: "/t".into(),
            session_name: "s".into(),
            duration_seconds: 900,
            policy: None,
            sts_endpoint: "https://sts.aliyuncs.com".into(),
        };
        let r = assume_role_with_oidc_request(&role, "eyJ.token+/=", "2024-01-02T03:04:05Z");
        let query = decode(&r.query);
        assert_eq!(
            query.keys().collect::<Vec<_>>(),
            ["Action", "Format", "Timestamp", "Version"]
        );
        assert_eq!(query["Action"], "AssumeRoleWithOIDC");
        let body = decode(&r.body);
        assert_eq!(body["OIDCToken"], "eyJ.token+/=");
        assert_eq!(body["OIDCProviderArn"], "acs:ram::100:oidc-provider/ack");
        assert_eq!(body["RoleArn"], "acs:ram::100:role/r");
        assert_eq!(body["RoleSessionName"], "s");
        assert_eq!(body["DurationSeconds"], "900");
        assert!(!r.query.contains("eyJ"));
    }

    #[test]
    fn caller_identity_is_signed() {
        let creds = Credentials::new("testid", "testsecret");
        let r = caller_identity_request(&creds, "n", "2024-01-02T03:04:05Z");
        assert_eq!(r.body, "");
        let query = decode(&r.query);
        assert_eq!(query["Action"], "GetCallerIdentity");
        let expected = signer::sign(
            "POST",
            "testsecret",
            query.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        assert_eq!(query["Signature"], expected);
    }

    #[test]
    fn parses_assume_role_answers() {
        let ok = br#"{"RequestId":"R","AssumedRoleUser":{"Arn":"acs:ram::100:role/r/s","AssumedRoleId":"3:s"},
            "Credentials":{"AccessKeyId":"STS.new","AccessKeySecret":"new-secret","SecurityToken":"new-token","Expiration":"2030-01-02T03:04:05Z"}}"#;
        let c = parse_assume_role(200, ok).unwrap();
        assert_eq!(c.access_key_id(), "STS.new");
        assert_eq!(c.secret().expose(), "new-secret");
        assert_eq!(c.security_token().unwrap().expose(), "new-token");
        assert_eq!(
            c.expiration(),
            Some(time::macros::datetime!(2030-01-02 03:04:05 UTC))
        );

        let e = parse_assume_role(
            403,
            br#"{"RequestId":"R2","HostId":"sts.aliyuncs.com","Code":"NoPermission","Message":"You are not authorized"}"#,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "HTTP 403 NoPermission (RequestId R2)");

        for (body, expected) in [
            (&br#"{"RequestId":"R"}"#[..], "no Credentials"),
            (
                br#"{"Credentials":{"AccessKeyId":"a","AccessKeySecret":"leak","Expiration":"2030-01-02T03:04:05Z"}}"#,
                "no Credentials.SecurityToken",
            ),
            (
                br#"{"Credentials":{"AccessKeyId":"a","AccessKeySecret":"leak","SecurityToken":"t"}}"#,
                "no Credentials.Expiration",
            ),
            (
                br#"{"Credentials":{"AccessKeyId":"a","AccessKeySecret":"leak","SecurityToken":"t","Expiration":"soon"}}"#,
                "Credentials.Expiration is not",
            ),
            (b"<html>", "not JSON"),
        ] {
            let e = parse_assume_role(200, body).unwrap_err().to_string();
            assert!(e.contains(expected), "{e}");
            assert!(!e.contains("leak"), "{e}");
        }
    }

    #[test]
    fn parses_caller_identity() {
        let ok = br#"{"IdentityType":"RAMUser","AccountId":"1234567890123456","RequestId":"R","PrincipalId":"2","UserId":"2","Arn":"acs:ram::1234567890123456:user/u"}"#;
        assert_eq!(parse_caller_identity(200, ok).unwrap(), "1234567890123456");
        assert!(
            parse_caller_identity(200, br#"{"RequestId":"R"}"#)
                .unwrap_err()
                .to_string()
                .contains("no AccountId")
        );
        let e = parse_caller_identity(400, br#"{"Code":"InvalidAccessKeyId.NotFound"}"#)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "HTTP 400 InvalidAccessKeyId.NotFound");
    }
}
