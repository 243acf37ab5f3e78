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
use crate::skew;
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

/// Sends an STS request and reads the answer and its `Date`.
async fn send(
    http: &reqwest::Client,
    endpoint: &str,
    request: RpcRequest,
    provider: &str,
) -> Result<(u16, Vec<u8>, Option<time::OffsetDateTime>), FetchError> {
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
        .and_then(crate::time::parse_http_date);
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
        let sample = date.map(|d| skew::sample_between(d, sent, received));
        let learnt = clock::learnt_from(status, code.as_deref(), sample);
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
#[path = "sts_tests.rs"]
mod tests;
