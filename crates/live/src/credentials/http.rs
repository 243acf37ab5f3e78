//! What every HTTP credentials source shares: the reqwest clients (with the extra CA
//! certificates of `STOPCASTER_CA_FILE` and Alibaba's timeouts), the error a fetch ends in, and
//! the helpers that keep secrets out of that error: URLs lose their query and user info, and
//! transport errors are described by their causes, never by reqwest's `Display` (which names
//! the full URL, signed query and security token included).

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;

/// Timeouts of STS and the credentials URI: credentials-go `ram_role_arn.go`, `oidc.go`,
/// `uri.go` (5 s to connect, 10 s to read), plus an overall bound.
pub const STS_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const STS_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const STS_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeouts of the ECS metadata service: credentials-go `ecs_ram_role.go` and credentials-python
/// `ecs_ram_role.py` (1 s to connect, 1 s to read). They are what makes a machine outside ECS
/// learn quickly that there is no metadata service, so they stay short. Connect and read are
/// bounded apart (not by one overall timeout) so that an address nobody answers fails as a
/// connect error, which is what tells "no metadata service" from "a slow one".
pub const METADATA_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub const METADATA_READ_TIMEOUT: Duration = Duration::from_secs(1);
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// The clients the sources use: one for STS and credentials URIs, one with short timeouts and
/// no proxy for the instance metadata service (a link-local-like address no proxy can reach).
#[derive(Clone, Debug)]
pub struct HttpClients {
    pub sts: reqwest::Client,
    pub metadata: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    #[error("cannot read the CA file {path}: {error}")]
    CaFileRead { path: String, error: String },
    #[error("the CA file {path} holds no PEM certificate")]
    CaFileEmpty { path: String },
    #[error("the CA file {path} is not valid PEM: {error}")]
    CaFileInvalid { path: String, error: String },
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

impl HttpClients {
    /// Both clients, trusting the certificates of `ca_file` besides the usual roots.
    pub fn new(ca_file: Option<&Path>) -> Result<Self, ClientBuildError> {
        let build = |b: reqwest::ClientBuilder| {
            b.build()
                .map_err(|e| ClientBuildError::Build(describe_causes(&e.without_url())))
        };
        Ok(Self {
            sts: build(
                client_builder(ca_file)?
                    .connect_timeout(STS_CONNECT_TIMEOUT)
                    .read_timeout(STS_READ_TIMEOUT)
                    .timeout(STS_TIMEOUT),
            )?,
            metadata: build(
                client_builder(ca_file)?
                    .connect_timeout(METADATA_CONNECT_TIMEOUT)
                    .read_timeout(METADATA_READ_TIMEOUT)
                    .timeout(METADATA_TIMEOUT)
                    .no_proxy(),
            )?,
        })
    }
}

/// A reqwest client builder that also trusts the PEM certificates of `ca_file` (on top of the
/// platform's roots, not instead of them: a proxy's CA is added, Alibaba's stays trusted).
/// Redirects are not followed: a credentials answer that redirects is not one, and following
/// it would send a signed query or a token somewhere nobody configured. Shared so the API
/// client can trust the same file.
pub fn client_builder(ca_file: Option<&Path>) -> Result<reqwest::ClientBuilder, ClientBuildError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("stopcaster/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = ca_file {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|e| ClientBuildError::CaFileRead {
            path: shown.clone(),
            error: e.to_string(),
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            ClientBuildError::CaFileInvalid {
                path: shown.clone(),
                error: describe_causes(&e),
            }
        })?;
        if certs.is_empty() {
            return Err(ClientBuildError::CaFileEmpty { path: shown });
        }
        builder = builder.tls_certs_merge(certs);
    }
    Ok(builder)
}

/// Why fetching credentials from a source failed. Names the source, the endpoint (without
/// query or user info) and what went wrong; never a body, a token or a secret.
#[derive(Debug, thiserror::Error)]
#[error("{provider} ({endpoint}): {kind}")]
pub struct FetchError {
    /// Which source: `sts AssumeRole`, `ecs metadata`, `credentials uri`...
    pub provider: String,
    /// Where it was asked, redacted by [`redact_url`].
    pub endpoint: String,
    pub kind: FetchErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchErrorKind {
    /// No usable answer: no connection, a timeout, a lost connection.
    #[error("{message}")]
    Transport { connect: bool, message: String },
    /// An HTTP error answer; Alibaba's error code and RequestId when the body had them.
    #[error("HTTP {status}{}{}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(),
        request_id.as_deref().map(|r| format!(" (RequestId {r})")).unwrap_or_default())]
    Api {
        status: u16,
        code: Option<String>,
        request_id: Option<String>,
    },
    /// A 200 whose body is not the expected shape; says which part, never the body.
    #[error("unexpected answer: {0}")]
    Malformed(String),
    /// The OIDC token file could not be read.
    #[error("cannot read the OIDC token file {path}: {error}")]
    TokenFile { path: String, error: String },
    /// The metadata service knows no RAM role for this instance.
    #[error("no RAM role is attached to this instance")]
    NoRole,
}

impl FetchError {
    pub fn new(provider: impl Into<String>, endpoint: &str, kind: FetchErrorKind) -> Self {
        Self {
            provider: provider.into(),
            endpoint: redact_url(endpoint),
            kind,
        }
    }

    /// True when the endpoint could not be reached at all (no connection made).
    pub fn is_connect(&self) -> bool {
        matches!(self.kind, FetchErrorKind::Transport { connect: true, .. })
    }

    /// Alibaba's error code, if the answer had one.
    pub fn code(&self) -> Option<&str> {
        match &self.kind {
            FetchErrorKind::Api { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The HTTP status of an error answer.
    pub fn http_status(&self) -> Option<u16> {
        match &self.kind {
            FetchErrorKind::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A URL as it may be shown: scheme, host, port and path; the query (a signed query, a token a
/// credentials URI may carry) and any user info are dropped. Unparsable input is not echoed.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(unparsable URL)".to_owned();
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let rest = &rest[..end];
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}{path}")
}

/// A transport failure as a [`FetchErrorKind`], described without the URL.
pub fn transport(e: &reqwest::Error) -> FetchErrorKind {
    let what = if e.is_connect() {
        "connection failed"
    } else if e.is_timeout() {
        "timed out"
    } else {
        "request or response lost"
    };
    let causes = describe_causes(e);
    FetchErrorKind::Transport {
        connect: e.is_connect(),
        message: if causes.is_empty() {
            what.to_owned()
        } else {
            format!("{what}: {causes}")
        },
    }
}

/// The error's causes, joined; the error's own `Display` is skipped because reqwest's names
/// the URL.
fn describe_causes(e: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut source = e.source();
    while let Some(err) = source {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&err.to_string());
        source = err.source();
    }
    out
}

/// The fields of an Alibaba error body worth naming (credentials-go and the project's
/// `api::outcome` read the same ones). `Message` is left out on purpose: it can quote a
/// parameter back, and a parameter may be a token.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorBody {
    code: Option<String>,
    request_id: Option<String>,
}

/// An error answer: its status and, if the body is Alibaba's error JSON, its code and
/// RequestId.
pub fn api_error(status: u16, body: &[u8]) -> FetchErrorKind {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let (code, request_id) = parsed.map_or((None, None), |b| (b.code, b.request_id));
    FetchErrorKind::Api {
        status,
        code,
        request_id,
    }
}

/// A JSON body that did not fit, described by position only: serde's message may quote the
/// offending value, which could be a secret.
pub fn malformed_json(what: &str, e: &serde_json::Error) -> FetchErrorKind {
    let category = match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "not JSON",
        serde_json::error::Category::Data => "JSON of an unexpected shape",
    };
    FetchErrorKind::Malformed(format!(
        "{what} is {category} (line {}, column {})",
        e.line(),
        e.column()
    ))
}

/// Parses an `Expiration`: Alibaba writes `YYYY-MM-DDTHH:MM:SSZ` (credentials-go parses exactly
/// `2006-01-02T15:04:05Z`); full RFC 3339 is accepted too for credentials URIs that write it.
pub fn parse_expiration(s: &str) -> Option<OffsetDateTime> {
    crate::signer::parse_timestamp(s)
        .or_else(|| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
}

/// A required string field of an answer, or which one was missing.
pub fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, FetchErrorKind> {
    match value.as_deref() {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(FetchErrorKind::Malformed(format!("no {name}"))),
    }
}

/// The four fields every temporary-credentials answer has, as credentials.
pub fn temporary_credentials(
    access_key_id: &Option<String>,
    access_key_secret: &Option<String>,
    security_token: &Option<String>,
    expiration: &Option<String>,
    prefix: &str,
) -> Result<super::Credentials, FetchErrorKind> {
    let id = required(access_key_id, &format!("{prefix}AccessKeyId"))?;
    let secret = required(access_key_secret, &format!("{prefix}AccessKeySecret"))?;
    let token = required(security_token, &format!("{prefix}SecurityToken"))?;
    let expiration = required(expiration, &format!("{prefix}Expiration"))?;
    let expiration = parse_expiration(expiration).ok_or_else(|| {
        FetchErrorKind::Malformed(format!(
            "{prefix}Expiration is not a YYYY-MM-DDTHH:MM:SSZ time"
        ))
    })?;
    // Refused rather than stored: stored, they would be refreshed at once, again and again.
    if expiration <= super::clock::now() {
        return Err(FetchErrorKind::Malformed(format!(
            "{prefix}Expiration {} is already past (is this machine's clock right?)",
            crate::signer::format_timestamp(expiration)
        )));
    }
    Ok(super::Credentials::new(id, secret)
        .with_security_token(Some(token.to_owned()))
        .with_expiration(Some(expiration)))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FlatCredentials {
    code: Option<String>,
    access_key_id: Option<String>,
    access_key_secret: Option<String>,
    security_token: Option<String>,
    expiration: Option<String>,
}

/// The answer of the ECS metadata service and of a credentials URI, one shape:
/// `{"Code": "Success", "AccessKeyId", "AccessKeySecret", "SecurityToken", "Expiration"}`
/// (ECS adds `LastUpdated`). `Code` must be `Success`, as credentials-python checks for both
/// (`ecs_ram_role.py`, `uri.py`) and the contract says.
pub fn parse_flat_credentials(
    status: u16,
    body: &[u8],
) -> Result<super::Credentials, FetchErrorKind> {
    if status != 200 {
        return Err(api_error(status, body));
    }
    let parsed: FlatCredentials =
        serde_json::from_slice(body).map_err(|e| malformed_json("the body", &e))?;
    if parsed.code.as_deref() != Some("Success") {
        return Err(FetchErrorKind::Malformed(
            match parsed.code {
                None => "no Code",
                Some(_) => "Code is not Success",
            }
            .to_owned(),
        ));
    }
    temporary_credentials(
        &parsed.access_key_id,
        &parsed.access_key_secret,
        &parsed.security_token,
        &parsed.expiration,
        "",
    )
}

/// Reads a response body, mapping a lost body to a transport error.
pub async fn read_body(response: reqwest::Response) -> Result<(u16, Vec<u8>), FetchErrorKind> {
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| transport(&e))?;
    Ok((status, body.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_query_and_user_info() {
        assert_eq!(
            redact_url("https://sts.aliyuncs.com/?AccessKeyId=a&Signature=s&SecurityToken=t"),
            "https://sts.aliyuncs.com/"
        );
        assert_eq!(
            redact_url("http://user:pass@127.0.0.1:8080/creds?token=abc#frag"),
            "http://127.0.0.1:8080/creds"
        );
        assert_eq!(
            redact_url("http://100.100.100.200"),
            "http://100.100.100.200"
        );
        assert_eq!(redact_url("not a url secret"), "(unparsable URL)");
    }

    #[test]
    fn api_errors_keep_code_and_request_id_but_not_the_message() {
        let body = br#"{"RequestId":"R-1","HostId":"sts.aliyuncs.com","Code":"InvalidParameter.OIDCToken","Message":"token eyJsecret is invalid"}"#;
        let kind = api_error(400, body);
        let shown = kind.to_string();
        assert_eq!(shown, "HTTP 400 InvalidParameter.OIDCToken (RequestId R-1)");
        assert!(!shown.contains("eyJsecret"));
        assert_eq!(
            api_error(502, b"<html>bad gateway</html>").to_string(),
            "HTTP 502"
        );
    }

    #[test]
    fn malformed_json_does_not_quote_values() {
        let e = serde_json::from_str::<ErrorBody>(r#"{"Code": 12345678}"#)
            .err()
            .expect("a number is not a code");
        let shown = malformed_json("the body", &e).to_string();
        assert!(!shown.contains("12345678"), "{shown}");
        assert!(shown.contains("unexpected shape"), "{shown}");
    }

    #[test]
    fn parses_flat_credentials() {
        let ok = br#"{"AccessKeyId":"STS.e","AccessKeySecret":"e-secret","Expiration":"2030-01-01T00:00:00Z","SecurityToken":"e-token","LastUpdated":"2029-12-31T18:00:00Z","Code":"Success"}"#;
        let c = parse_flat_credentials(200, ok).unwrap();
        assert_eq!(c.access_key_id(), "STS.e");
        assert_eq!(c.secret().expose(), "e-secret");
        assert_eq!(c.security_token().unwrap().expose(), "e-token");
        assert!(c.expiration().is_some());
        for (status, body, expected) in [
            (200, &br#"{"Code":"Failed","AccessKeyId":"a"}"#[..], "Code is not Success"),
            (200, br#"{"AccessKeyId":"a"}"#, "no Code"),
            (
                200,
                br#"{"Code":"Success","AccessKeyId":"a","AccessKeySecret":"leak","SecurityToken":"t"}"#,
                "no Expiration",
            ),
            (
                200,
                br#"{"Code":"Success","AccessKeySecret":"leak","SecurityToken":"t","Expiration":"2030-01-01T00:00:00Z"}"#,
                "no AccessKeyId",
            ),
            (
                200,
                br#"{"Code":"Success","AccessKeyId":"a","AccessKeySecret":"leak","SecurityToken":"t","Expiration":"2020-01-01T00:00:00Z"}"#,
                "Expiration 2020-01-01T00:00:00Z is already past",
            ),
            (404, b"Not Found", "HTTP 404"),
            (500, br#"{"Code":"InternalError","RequestId":"x"}"#, "HTTP 500 InternalError (RequestId x)"),
        ] {
            let e = parse_flat_credentials(status, body).unwrap_err().to_string();
            assert!(e.contains(expected), "{e}");
            assert!(!e.contains("leak"), "{e}");
        }
    }

    #[test]
    fn expiration_formats() {
        let t = time::macros::datetime!(2024-01-02 03:04:05 UTC);
        assert_eq!(parse_expiration("2024-01-02T03:04:05Z"), Some(t));
        assert_eq!(parse_expiration("2024-01-02T11:04:05+08:00"), Some(t));
        assert_eq!(parse_expiration("tomorrow"), None);
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("ca-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let e = client_builder(Some(&missing)).unwrap_err().to_string();
        assert!(e.contains("missing.pem"), "{e}");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let e = client_builder(Some(&empty)).unwrap_err().to_string();
        assert!(e.contains("empty.pem") && e.contains("no PEM"), "{e}");
        let system = Path::new("/etc/ssl/certs/ca-certificates.crt");
        if system.exists() {
            HttpClients::new(Some(system)).expect("a real CA bundle is accepted");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
