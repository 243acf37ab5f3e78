//! The ECS instance's RAM role through the instance metadata service, with IMDSv2 as
//! credentials-go `providers/ecs_ram_role.go` and credentials-python `provider/ecs_ram_role.py`
//! do it:
//!
//! 1. `PUT /latest/api/token` with `X-aliyun-ecs-metadata-token-ttl-seconds: 21600`; the body
//!    is the token.
//! 2. Without a configured role name: `GET /latest/meta-data/ram/security-credentials/` with
//!    `X-aliyun-ecs-metadata-token: <token>`; the body is the role name.
//! 3. `GET /latest/meta-data/ram/security-credentials/<role>` with the same header; the body is
//!    `{"Code": "Success", "AccessKeyId", "AccessKeySecret", "SecurityToken", "Expiration",
//!    "LastUpdated"}`.
//!
//! If the token cannot be had, both libraries fall back to IMDSv1 (the same GETs without the
//! header) unless `ALIBABA_CLOUD_IMDSV1_DISABLED=true`; so does this, except when no
//! connection could be made at all: then there is no metadata service, and trying again
//! without a token would only double the wait on a machine outside ECS. Timeouts are theirs:
//! 1 s to connect, 1 s to read ([`super::http::METADATA_READ_TIMEOUT`]).

use super::Credentials;
use super::chain::EcsRole;
use super::http::{
    FetchError, FetchErrorKind, api_error, parse_flat_credentials, read_body, transport,
};

pub(super) const TOKEN_PATH: &str = "/latest/api/token";
pub(super) const CREDENTIALS_PATH: &str = "/latest/meta-data/ram/security-credentials/";
pub(super) const TOKEN_TTL_HEADER: &str = "X-aliyun-ecs-metadata-token-ttl-seconds";
pub(super) const TOKEN_HEADER: &str = "X-aliyun-ecs-metadata-token";
/// Six hours, Alibaba's `defaultMetadataTokenDuration`. A token is fetched for every refresh
/// anyway, so its lifetime only has to outlast one.
pub(super) const TOKEN_TTL_SECONDS: u32 = 21600;

const PROVIDER: &str = "ecs metadata";

/// Fetches the role's current credentials.
pub(super) async fn fetch(
    http: &reqwest::Client,
    role: &EcsRole,
) -> Result<Credentials, FetchError> {
    let base = role.endpoint.trim_end_matches('/');
    let token = metadata_token(http, base, role.imdsv1_disabled).await?;
    let role_name = match &role.role_name {
        Some(name) => name.clone(),
        None => discover_role(http, base, token.as_deref()).await?,
    };
    let url = format!("{base}{CREDENTIALS_PATH}{role_name}");
    let (status, body) = get(http, &url, token.as_deref()).await?;
    parse_flat_credentials(status, &body).map_err(|kind| FetchError::new(PROVIDER, &url, kind))
}

/// The IMDSv2 token; `None` to go on with IMDSv1.
async fn metadata_token(
    http: &reqwest::Client,
    base: &str,
    imdsv1_disabled: bool,
) -> Result<Option<String>, FetchError> {
    let url = format!("{base}{TOKEN_PATH}");
    let fail = |kind| FetchError::new(PROVIDER, &url, kind);
    let answer = match http
        .put(&url)
        .header(TOKEN_TTL_HEADER, TOKEN_TTL_SECONDS.to_string())
        .send()
        .await
    {
        Ok(response) => read_body(response).await,
        Err(e) => Err(transport(&e)),
    };
    let failure = match answer {
        Ok((200, body)) => match String::from_utf8(body) {
            Ok(token) if !token.is_empty() => return Ok(Some(token)),
            _ => FetchErrorKind::Malformed("the token is empty or not text".to_owned()),
        },
        Ok((status, body)) => api_error(status, &body),
        Err(kind) => kind,
    };
    let unreachable = matches!(failure, FetchErrorKind::Transport { connect: true, .. });
    if imdsv1_disabled || unreachable {
        return Err(fail(failure));
    }
    tracing::debug!(error = %fail(failure), "no IMDSv2 token; trying IMDSv1");
    Ok(None)
}

/// The role attached to the instance (the listing's first line).
async fn discover_role(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
) -> Result<String, FetchError> {
    let url = format!("{base}{CREDENTIALS_PATH}");
    let fail = |kind| FetchError::new(PROVIDER, &url, kind);
    match get(http, &url, token).await? {
        (200, body) => {
            let text = String::from_utf8(body)
                .map_err(|_| fail(FetchErrorKind::Malformed("role name is not text".into())))?;
            text.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| fail(FetchErrorKind::NoRole))
        }
        (404, _) => Err(fail(FetchErrorKind::NoRole)),
        (status, body) => Err(fail(api_error(status, &body))),
    }
}

async fn get(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> Result<(u16, Vec<u8>), FetchError> {
    let mut request = http.get(url);
    if let Some(token) = token {
        request = request.header(TOKEN_HEADER, token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| FetchError::new(PROVIDER, url, transport(&e)))?;
    read_body(response)
        .await
        .map_err(|kind| FetchError::new(PROVIDER, url, kind))
}
