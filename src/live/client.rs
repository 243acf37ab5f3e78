//! The HTTP client for StopCaster: builds the signed query (pure), POSTs it with reqwest, and
//! turns whatever happens into a [`CallOutcome`]. Every call is signed afresh with a new
//! SignatureNonce and Timestamp, so a retry is never refused as a replay.

use std::time::Duration;

use crate::domain::{CasterId, RegionId};
use crate::live::credentials::Credentials;
use crate::live::outcome::{CallOutcome, TransportError, TransportKind, interpret};
use crate::live::signer;

pub const API_VERSION: &str = "2016-11-01";
pub const ACTION: &str = "StopCaster";

/// One StopCaster call's business parameters.
#[derive(Clone, Copy, Debug)]
pub struct StopCasterRequest<'a> {
    pub caster_id: &'a CasterId,
    pub region_id: &'a RegionId,
}

/// Timeouts and endpoint.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `https://live.aliyuncs.com`, or `http://127.0.0.1:PORT` for the stand-in.
    pub endpoint: String,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// Extra CA certificates to trust (`STOPCASTER_CA_FILE`).
    pub ca_file: Option<std::path::PathBuf>,
}

impl ClientConfig {
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            ca_file: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid endpoint {0:?}: expected http:// or https://")]
    Endpoint(String),
    #[error("cannot build the HTTP client: {0}")]
    Build(#[from] reqwest::Error),
    #[error(transparent)]
    Trust(#[from] crate::live::credentials::http::ClientBuildError),
}

/// The full, signed query string of a StopCaster call (what goes after `?`).
pub fn signed_query(
    method: &str,
    credentials: &Credentials,
    request: StopCasterRequest<'_>,
    nonce: &str,
    timestamp: &str,
) -> String {
    let mut params: Vec<(&str, &str)> = vec![
        ("AccessKeyId", credentials.access_key_id()),
        ("Action", ACTION),
        ("CasterId", request.caster_id.as_str()),
        ("Format", "JSON"),
        ("RegionId", request.region_id.as_str()),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", nonce),
        ("SignatureVersion", "1.0"),
        ("Timestamp", timestamp),
        ("Version", API_VERSION),
    ];
    if let Some(token) = credentials.security_token() {
        params.push(("SecurityToken", token.expose()));
    }
    let query = signer::canonical_query(params.iter().copied());
    let signature = signer::sign_string(
        credentials.secret().expose(),
        &signer::string_to_sign(method, &query),
    );
    format!("{query}&Signature={}", signer::percent_encode(&signature))
}

/// A reusable StopCaster client (one connection pool).
#[derive(Clone, Debug)]
pub struct LiveClient {
    http: reqwest::Client,
    base: String,
}

impl LiveClient {
    pub fn new(config: &ClientConfig) -> Result<Self, ClientError> {
        let endpoint = config.endpoint.trim_end_matches('/');
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(ClientError::Endpoint(config.endpoint.clone()));
        }
        let http = crate::live::credentials::http::client_builder(config.ca_file.as_deref())?
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .user_agent(concat!("stopcaster/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(50))
            .build()?;
        Ok(Self {
            http,
            base: format!("{endpoint}/"),
        })
    }

    /// Makes one signed call. Never returns an error: every failure is a [`CallOutcome`].
    pub async fn stop_caster(
        &self,
        credentials: &Credentials,
        request: StopCasterRequest<'_>,
    ) -> CallOutcome {
        let nonce = uuid::Uuid::new_v4().to_string();
        let timestamp = signer::format_timestamp(time::OffsetDateTime::now_utc());
        let url = format!(
            "{}?{}",
            self.base,
            signed_query("POST", credentials, request, &nonce, &timestamp)
        );
        let response = match self.http.post(url).send().await {
            Ok(response) => response,
            Err(e) => return CallOutcome::Transport(transport_error(&e)),
        };
        let status = response.status().as_u16();
        match response.bytes().await {
            Ok(body) => interpret(status, &body),
            Err(e) => CallOutcome::Transport(transport_error(&e)),
        }
    }
}

fn transport_error(e: &reqwest::Error) -> TransportError {
    let kind = if e.is_connect() {
        TransportKind::Connect
    } else if e.is_timeout() {
        TransportKind::Timeout
    } else {
        TransportKind::Lost
    };
    // reqwest's own Display names the URL, which holds the whole signed query: describe the
    // error by its causes instead, which is what an operator needs.
    let mut message = String::from(match kind {
        TransportKind::Connect => "connection failed",
        TransportKind::Timeout => "timed out",
        TransportKind::Lost => "request or response lost",
    });
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        message.push_str(": ");
        message.push_str(&err.to_string());
        source = err.source();
    }
    TransportError { kind, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_query_matches_the_documented_vector() {
        let creds = Credentials::new("testid", "testsecret");
        let caster = CasterId::parse("a2b8e671-2fe5-4642-a2ec-bf93880e1697").unwrap();
        let region = RegionId::parse("cn-shanghai").unwrap();
        let q = signed_query(
            "POST",
            &creds,
            StopCasterRequest {
                caster_id: &caster,
                region_id: &region,
            },
            "c9c7d5a6-1b3f-4b0e-9a44-2f1d6f3e8a10",
            "2024-01-02T03:04:05Z",
        );
        // V1 of shared/vectors/rpc-signature-v1.json, Base64 `+`/`/`/`=` percent-encoded.
        assert!(
            q.ends_with("&Signature=NLCqQkLf0UGNtU7aSBpXLoEz4CA%3D"),
            "{q}"
        );
        assert!(q.starts_with("AccessKeyId=testid&Action=StopCaster&CasterId="));
    }

    #[test]
    fn security_token_is_signed() {
        let creds = Credentials::new("id", "s").with_security_token(Some("tok".into()));
        let caster = CasterId::parse("c").unwrap();
        let region = RegionId::parse("r").unwrap();
        let req = StopCasterRequest {
            caster_id: &caster,
            region_id: &region,
        };
        let q = signed_query("POST", &creds, req, "n", "t");
        assert!(q.contains("&SecurityToken=tok&"));
        let plain = signed_query("POST", &Credentials::new("id", "s"), req, "n", "t");
        assert_ne!(q.rsplit('=').next(), plain.rsplit('=').next());
    }
}
