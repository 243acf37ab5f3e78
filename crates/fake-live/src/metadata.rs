//! The ECS instance metadata service's RAM-role credentials, and a credentials URI, both for the
//! first `--ram-role`, as `alibabacloud_credentials`' `EcsRamRoleCredentialsProvider` and
//! `URLCredentialsProvider` read them.
//!
//! - `PUT /latest/api/token` with `X-aliyun-ecs-metadata-token-ttl-seconds: 1..=21600`: a
//!   session token (text) for the IMDSv2 ("security hardening") mode; other TTLs get 400.
//! - `GET /latest/meta-data/ram/security-credentials/`: the role's name (text).
//! - `GET /latest/meta-data/ram/security-credentials/ROLE`: `{"Code": "Success",
//!   "AccessKeyId", "AccessKeySecret", "SecurityToken", "Expiration", "LastUpdated"}`; the same
//!   credentials until half their lifetime has passed, as the instance's are rotated ahead of
//!   expiry; another role name gets 404.
//!
//! Both GETs need `X-aliyun-ecs-metadata-token`: the stand-in plays an instance whose metadata
//! access is hardened (`HttpTokens=required`), so a client that skipped the token is caught
//! rather than served: no token 403, an unknown or expired one 401.
//!
//! - `GET /_fake/credentials`: fresh temporary credentials at each call, `{"Code": "Success",
//!   "AccessKeyId", "AccessKeySecret", "SecurityToken", "Expiration"}`, what
//!   `ALIBABA_CLOUD_CREDENTIALS_URI` must answer.
//!
//! Without a role every one of these answers 404.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use time::OffsetDateTime;

use super::identity::Issued;
use super::server::Shared;
use super::sts::credentials_json;
use stopcaster_live::signer;

const TTL_HEADER: &str = "x-aliyun-ecs-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aliyun-ecs-metadata-token";
/// The longest session token the metadata service issues (six hours).
const MAX_TTL_SECS: u64 = 21_600;
/// Session names of the credentials these endpoints issue, as `GetCallerIdentity` shows them.
const ECS_SESSION: &str = "fake-live-ecs";
const URI_SESSION: &str = "fake-live-uri";

/// Session tokens issued and the instance's current credentials.
#[derive(Debug, Default)]
pub(crate) struct Metadata {
    tokens: Mutex<HashMap<String, Instant>>,
    current: Mutex<Option<(Issued, OffsetDateTime)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change is a single insert or replace: a panic leaves consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/latest/api/token", put(token))
        .route("/latest/meta-data/ram/security-credentials", get(role_name))
        .route(
            "/latest/meta-data/ram/security-credentials/",
            get(role_name),
        )
        .route(
            "/latest/meta-data/ram/security-credentials/{role}",
            get(role_credentials),
        )
        .route("/_fake/credentials", get(uri_credentials))
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body.into()).into_response()
}

async fn token(AxumState(shared): AxumState<Arc<Shared>>, headers: HeaderMap) -> Response {
    let ttl = headers
        .get(TTL_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ttl| (1..=MAX_TTL_SECS).contains(ttl));
    let Some(ttl) = ttl else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("{TTL_HEADER} must be 1 to {MAX_TTL_SECS}"),
        );
    };
    let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 42]>());
    let now = Instant::now();
    let mut tokens = lock(&shared.metadata.tokens);
    tokens.retain(|_, expires| *expires > now);
    tokens.insert(token.clone(), now + Duration::from_secs(ttl));
    text(StatusCode::OK, token)
}

/// The hardened mode's check of the session token: the answer refusing the request, if any.
fn token_refusal(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) else {
        return Some(text(StatusCode::FORBIDDEN, "403 - Forbidden"));
    };
    let valid = lock(&shared.metadata.tokens)
        .get(token)
        .is_some_and(|expires| *expires > Instant::now());
    (!valid).then(|| text(StatusCode::UNAUTHORIZED, "401 - Unauthorized"))
}

fn no_role() -> Response {
    text(StatusCode::NOT_FOUND, "404 - Not Found")
}

async fn role_name(AxumState(shared): AxumState<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(refused) = token_refusal(&shared, &headers) {
        return refused;
    }
    match shared.identity.instance_role() {
        Some(role) => text(StatusCode::OK, role.name.clone()),
        None => no_role(),
    }
}

async fn role_credentials(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = token_refusal(&shared, &headers) {
        return refused;
    }
    let Some(role) = shared.identity.instance_role().filter(|r| r.name == name) else {
        return no_role();
    };
    let now = OffsetDateTime::now_utc();
    let half_life = shared.identity.lifetime() / 2;
    let (issued, updated) = {
        let mut current = lock(&shared.metadata.current);
        let fresh = current
            .as_ref()
            .is_some_and(|(issued, _)| issued.expiration - now > half_life);
        if !fresh {
            let issued = shared.identity.issue(role, ECS_SESSION, None, now);
            *current = Some((issued, now));
        }
        current.clone().expect("set above")
    };
    let mut body = credentials_json(&issued);
    body.insert(
        "LastUpdated".into(),
        signer::format_timestamp(updated).into(),
    );
    body.insert("Code".into(), "Success".into());
    axum::Json(Value::Object(body)).into_response()
}

async fn uri_credentials(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    let Some(role) = shared.identity.instance_role() else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({
                "Code": "NoRole",
                "Message": "fake-live has no --ram-role to issue credentials for",
            })),
        )
            .into_response();
    };
    let issued = shared
        .identity
        .issue(role, URI_SESSION, None, OffsetDateTime::now_utc());
    let mut body = credentials_json(&issued);
    body.insert("Code".into(), "Success".into());
    axum::Json(Value::Object(body)).into_response()
}
