//! A local axum server that plays STS, the ECS metadata service and a credentials URI for the
//! tests of [`super::http_tests`]: it verifies signatures like Alibaba does and records every
//! request.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use time::{Duration, OffsetDateTime};
use tokio_util::sync::CancellationToken;

use super::HttpClients;
use super::chain::{Source, SourceKind, UriSource};
use super::refresh::{ProviderContext, RefreshPolicy};
use crate::signer;

/// One request as the mock saw it.
#[derive(Clone, Debug)]
pub(super) struct Seen {
    pub(super) at: OffsetDateTime,
    pub(super) method: String,
    pub(super) path: String,
    pub(super) params: BTreeMap<String, String>,
    pub(super) headers: HashMap<String, String>,
    pub(super) answered: u16,
}

pub(super) struct Mock {
    pub(super) lifetime: Mutex<Duration>,
    pub(super) fail: AtomicBool,
    /// ECS: refuse GETs without the IMDSv2 header.
    pub(super) require_imds_token: AtomicBool,
    /// ECS: answer the token PUT with 403 (an instance with IMDSv2 off, say).
    pub(super) refuse_token_put: AtomicBool,
    pub(super) issued: AtomicU64,
    /// AccessKeyId -> secret of every key it knows (the base key and what it issued).
    pub(super) secrets: Mutex<HashMap<String, String>>,
    pub(super) seen: Mutex<Vec<Seen>>,
}

impl Mock {
    pub(super) fn new(lifetime: Duration) -> Arc<Self> {
        Arc::new(Self {
            lifetime: Mutex::new(lifetime),
            fail: AtomicBool::new(false),
            require_imds_token: AtomicBool::new(true),
            refuse_token_put: AtomicBool::new(false),
            issued: AtomicU64::new(0),
            secrets: Mutex::new(HashMap::from([("LTAIbase".into(), "base-secret".into())])),
            seen: Mutex::new(Vec::new()),
        })
    }

    pub(super) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub(super) fn count(&self, pred: impl Fn(&Seen) -> bool) -> usize {
        self.seen.lock().unwrap().iter().filter(|s| pred(s)).count()
    }

    /// New temporary credentials, remembered so they can sign later calls.
    pub(super) fn issue(&self) -> (String, String, String, String) {
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let id = format!("STS.issued{n}");
        let secret = format!("issued-secret-{n}");
        self.secrets
            .lock()
            .unwrap()
            .insert(id.clone(), secret.clone());
        let expiration = OffsetDateTime::now_utc() + *self.lifetime.lock().unwrap();
        (
            id,
            secret,
            format!("issued-token-{n}"),
            signer::format_timestamp(expiration),
        )
    }
}

pub(super) fn decode(s: &str, into: &mut BTreeMap<String, String>) {
    pub(super) fn unescape(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }
    for pair in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        into.insert(unescape(k), unescape(v));
    }
}

pub(super) fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (status, axum::Json(value)).into_response()
}

pub(super) fn alibaba_error(status: StatusCode, code: &str, message: &str) -> Response {
    json(
        status,
        serde_json::json!({"RequestId": "req-1", "HostId": "mock", "Code": code, "Message": message, "Recommend": "https://api.aliyun.com"}),
    )
}

pub(super) async fn handle(
    State(mock): State<Arc<Mock>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let mut params = BTreeMap::new();
    decode(uri.query().unwrap_or(""), &mut params);
    decode(&body, &mut params);
    let header_map: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let response = answer(&mock, &method, uri.path(), &params, &header_map);
    mock.seen.lock().unwrap().push(Seen {
        at: OffsetDateTime::now_utc(),
        method: method.to_string(),
        path: uri.path().to_owned(),
        params,
        headers: header_map,
        answered: response.status().as_u16(),
    });
    response
}

pub(super) fn answer(
    mock: &Mock,
    method: &Method,
    path: &str,
    params: &BTreeMap<String, String>,
    headers: &HashMap<String, String>,
) -> Response {
    if mock.fail.load(Ordering::SeqCst) {
        return alibaba_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "The request processing has failed due to some unknown error.",
        );
    }
    let imds_token_ok = headers
        .get("x-aliyun-ecs-metadata-token")
        .map(String::as_str)
        == Some("imds-token-1")
        || !mock.require_imds_token.load(Ordering::SeqCst);
    match (method.as_str(), path) {
        ("PUT", "/latest/api/token") => {
            if mock.refuse_token_put.load(Ordering::SeqCst) {
                return StatusCode::FORBIDDEN.into_response();
            }
            match headers
                .get("x-aliyun-ecs-metadata-token-ttl-seconds")
                .and_then(|v| v.parse::<u32>().ok())
            {
                Some(1..=21600) => "imds-token-1".into_response(),
                _ => StatusCode::BAD_REQUEST.into_response(),
            }
        }
        ("GET", "/latest/meta-data/ram/security-credentials/") if imds_token_ok => {
            "stopper-role".into_response()
        }
        ("GET", "/latest/meta-data/ram/security-credentials/stopper-role") if imds_token_ok => {
            flat(mock)
        }
        ("GET", p) if p.starts_with("/latest/") => StatusCode::UNAUTHORIZED.into_response(),
        ("GET", "/creds") => flat(mock),
        ("POST", "/") => sts_answer(mock, params),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

pub(super) fn flat(mock: &Mock) -> Response {
    let (id, secret, token, expiration) = mock.issue();
    json(
        StatusCode::OK,
        serde_json::json!({"Code": "Success", "AccessKeyId": id, "AccessKeySecret": secret,
            "SecurityToken": token, "Expiration": expiration, "LastUpdated": "2024-01-01T00:00:00Z"}),
    )
}

pub(super) fn sts_answer(mock: &Mock, params: &BTreeMap<String, String>) -> Response {
    if params.get("Version").map(String::as_str) != Some("2015-04-01")
        || params.get("Format").map(String::as_str) != Some("JSON")
    {
        return alibaba_error(StatusCode::BAD_REQUEST, "InvalidVersion", "bad version");
    }
    let action = params.get("Action").cloned().unwrap_or_default();
    if action != "AssumeRoleWithOIDC" {
        // Verify the RPC signature over every parameter, as STS does.
        let id = params.get("AccessKeyId").cloned().unwrap_or_default();
        let Some(secret) = mock.secrets.lock().unwrap().get(&id).cloned() else {
            return alibaba_error(StatusCode::NOT_FOUND, "InvalidAccessKeyId.NotFound", "nope");
        };
        let expected = signer::sign(
            "POST",
            &secret,
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        if params.get("Signature") != Some(&expected) {
            return alibaba_error(
                StatusCode::BAD_REQUEST,
                "SignatureDoesNotMatch",
                &format!(
                    "Specified signature is not matched with our calculation. server string to sign is:{secret}"
                ),
            );
        }
        if id.starts_with("STS.")
            && params
                .get("SecurityToken")
                .map(|t| t.replace("token", "secret"))
                != Some(secret.clone())
        {
            return alibaba_error(
                StatusCode::BAD_REQUEST,
                "InvalidSecurityToken.Malformed",
                "x",
            );
        }
    }
    match action.as_str() {
        "AssumeRole" | "AssumeRoleWithOIDC" => {
            if action == "AssumeRoleWithOIDC"
                && !params
                    .get("OIDCToken")
                    .is_some_and(|t| t.starts_with("oidc-"))
            {
                return alibaba_error(
                    StatusCode::BAD_REQUEST,
                    "AuthenticationFail.OIDCToken.Invalid",
                    &format!("the token {} is invalid", params["OIDCToken"]),
                );
            }
            for required in ["RoleArn", "RoleSessionName", "DurationSeconds"] {
                if !params.contains_key(required) {
                    return alibaba_error(StatusCode::BAD_REQUEST, "MissingParameter", required);
                }
            }
            let (id, secret, token, expiration) = mock.issue();
            json(
                StatusCode::OK,
                serde_json::json!({"RequestId": "req-2",
                    "AssumedRoleUser": {"Arn": format!("{}/{}", params["RoleArn"], params["RoleSessionName"]), "AssumedRoleId": "3000:s"},
                    "Credentials": {"AccessKeyId": id, "AccessKeySecret": secret, "SecurityToken": token, "Expiration": expiration}}),
            )
        }
        "GetCallerIdentity" => json(
            StatusCode::OK,
            serde_json::json!({"IdentityType": "RAMUser", "AccountId": "1234567890123456", "RequestId": "req-3",
                "PrincipalId": "2", "UserId": "2", "Arn": "acs:ram::1234567890123456:user/u"}),
        ),
        _ => alibaba_error(StatusCode::BAD_REQUEST, "InvalidAction.NotFound", "no"),
    }
}

pub(super) async fn serve(mock: Arc<Mock>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(handle).with_state(mock);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

pub(super) fn ctx(shutdown: &CancellationToken) -> ProviderContext {
    ProviderContext {
        clients: HttpClients::new(None).unwrap(),
        policy: RefreshPolicy {
            min_backoff: StdDuration::from_millis(100),
            max_backoff: StdDuration::from_millis(300),
        },
        shutdown: shutdown.clone(),
    }
}

/// Awaits `cond`, checking every 20 ms, for at most `within`.
pub(super) async fn wait_for(what: &str, within: StdDuration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

pub(super) fn uri_source(base: &str) -> Source {
    Source {
        label: "credentials-uri".into(),
        kind: SourceKind::Uri(UriSource {
            url: format!("{base}/creds?token=uri-query-secret"),
        }),
    }
}

pub(super) fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("creds-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
