//! What a StopCaster call came to, and which failures are worth retrying. Pure functions over
//! an HTTP status and a body, so every rule of the contract has a unit test.

use serde::Deserialize;

/// How a failure is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Try again after a backoff: 5xx and throttling.
    Retryable,
    /// Give up now: every other 4xx.
    Permanent,
    /// Not the job's fault: the credentials or the clock were refused. The account pauses.
    CredentialsRefused,
}

/// Answers that condemn the credentials or the clock rather than the job (the contract's list).
pub const CREDENTIALS_REFUSED: [&str; 8] = [
    "InvalidAccessKeyId.NotFound",
    "InvalidAccessKeyId.Inactive",
    "Forbidden.AccessKeyDisabled",
    "SignatureDoesNotMatch",
    "InvalidSecurityToken.Expired",
    "InvalidSecurityToken.Malformed",
    "InvalidSecurityToken.MismatchWithAccessKey",
    "InvalidTimeStamp.Expired",
];

/// Classifies an error answer. Throttling is retryable whatever its status (Alibaba answers
/// `Throttling.User` with 400); other 4xx are permanent; 5xx and anything unexpected are
/// retryable.
pub fn classify(http_status: u16, code: &str) -> Class {
    if CREDENTIALS_REFUSED.contains(&code) {
        Class::CredentialsRefused
    } else if is_throttling(code) {
        Class::Retryable
    } else if (400..500).contains(&http_status) {
        Class::Permanent
    } else {
        Class::Retryable
    }
}

/// True for the throttling codes (counted apart in reports and fed back to the pacer).
pub fn is_throttling(code: &str) -> bool {
    code == "Throttling" || code.starts_with("Throttling.")
}

/// An error answer from the API (or a body that was not one of Alibaba's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub http_status: u16,
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
    pub host_id: Option<String>,
    pub recommend: Option<String>,
}

/// A call that got no usable answer. `may_have_reached_api` is false only when the request
/// certainly never left (the connection could not be made).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportError {
    pub kind: TransportKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// No connection (refused, reset while connecting, unreachable): the request was never
    /// sent.
    Connect,
    /// The endpoint's host name did not resolve: the request was never sent.
    Dns,
    /// The TLS handshake failed (an untrusted certificate, say): the request was never sent.
    Tls,
    /// Sent, no answer in time: the studio may or may not have stopped.
    Timeout,
    /// Sent, connection lost or answer unreadable: the studio may or may not have stopped.
    Lost,
}

impl TransportError {
    pub fn may_have_reached_api(&self) -> bool {
        matches!(self.kind, TransportKind::Timeout | TransportKind::Lost)
    }

    /// The code recorded for it (`error_code`, dead-letter reason).
    pub fn code(&self) -> &'static str {
        match self.kind {
            TransportKind::Connect => "Transport.Connect",
            TransportKind::Dns => "Transport.Dns",
            TransportKind::Tls => "Transport.Tls",
            TransportKind::Timeout => "Transport.Timeout",
            TransportKind::Lost => "Transport.Lost",
        }
    }
}

/// Which connection failure the text of its causes describes: a name that did not resolve, a
/// TLS handshake that failed, or any other failure to connect. Read from the text because the
/// HTTP stack's connector hides its error types; the operator reads the same text in the log.
pub fn connect_failure(causes: &str) -> TransportKind {
    let text = causes.to_ascii_lowercase();
    if text.contains("dns error")
        || text.contains("failed to lookup address")
        || text.contains("name or service not known")
        || text.contains("no such host")
    {
        TransportKind::Dns
    } else if text.contains("certificate")
        || text.contains("tls")
        || text.contains("handshake")
        || text.contains("invalidcontenttype")
    {
        TransportKind::Tls
    } else {
        TransportKind::Connect
    }
}

/// What one StopCaster call came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    Stopped {
        request_id: String,
        http_status: u16,
    },
    Retryable(ApiError),
    Permanent(ApiError),
    /// Refused for the credentials or the clock ([`CREDENTIALS_REFUSED`]).
    CredentialsRefused(ApiError),
    Transport(TransportError),
}

impl CallOutcome {
    /// The `outcome` column of `caster_stop_attempts`.
    pub fn label(&self) -> &'static str {
        match self {
            CallOutcome::Stopped { .. } => "ok",
            CallOutcome::Retryable(_) => "retryable",
            CallOutcome::Permanent(_) => "permanent",
            CallOutcome::CredentialsRefused(_) => "credentials-refused",
            CallOutcome::Transport(_) => "transport-error",
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            CallOutcome::Stopped { http_status, .. } => Some(*http_status),
            CallOutcome::Retryable(e)
            | CallOutcome::Permanent(e)
            | CallOutcome::CredentialsRefused(e) => Some(e.http_status),
            CallOutcome::Transport(_) => None,
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        match self {
            CallOutcome::Stopped { request_id, .. } => Some(request_id),
            CallOutcome::Retryable(e)
            | CallOutcome::Permanent(e)
            | CallOutcome::CredentialsRefused(e) => e.request_id.as_deref(),
            CallOutcome::Transport(_) => None,
        }
    }

    pub fn error_code(&self) -> Option<&str> {
        match self {
            CallOutcome::Stopped { .. } => None,
            CallOutcome::Retryable(e)
            | CallOutcome::Permanent(e)
            | CallOutcome::CredentialsRefused(e) => Some(&e.code),
            CallOutcome::Transport(t) => Some(t.code()),
        }
    }

    pub fn error_message(&self) -> Option<&str> {
        match self {
            CallOutcome::Stopped { .. } => None,
            CallOutcome::Retryable(e)
            | CallOutcome::Permanent(e)
            | CallOutcome::CredentialsRefused(e) => Some(&e.message),
            CallOutcome::Transport(t) => Some(&t.message),
        }
    }

    /// Whether the call may have stopped the studio without our seeing the answer: the
    /// evidence that makes a later `IncorrectSceneStatus` a success. Recorded with the attempt.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, CallOutcome::Transport(t) if t.may_have_reached_api())
    }

    pub fn is_throttled(&self) -> bool {
        matches!(self, CallOutcome::Retryable(e) if is_throttling(&e.code))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Body {
    request_id: Option<String>,
    host_id: Option<String>,
    code: Option<String>,
    message: Option<String>,
    recommend: Option<String>,
}

/// Code recorded for an answer whose body is not Alibaba's JSON (a proxy's HTML 502, say).
pub const UNEXPECTED_RESPONSE: &str = "UnexpectedResponse";

/// Interprets an HTTP answer. A 2xx with a `RequestId` and no `Code` is a stop; a 2xx without
/// one is treated as a lost answer, since the call may have taken effect. The texts it keeps
/// are scrubbed of credentials (Alibaba quotes the token in `SignatureDoesNotMatch`), so the
/// outcome can be stored, logged and shown.
pub fn interpret(http_status: u16, body: &[u8]) -> CallOutcome {
    crate::scrub::scrub_outcome(read_answer(http_status, body), &[])
}

fn read_answer(http_status: u16, body: &[u8]) -> CallOutcome {
    let parsed: Option<Body> = serde_json::from_slice(body).ok();
    let success = (200..300).contains(&http_status);
    match parsed {
        Some(Body {
            request_id: Some(request_id),
            code: None,
            ..
        }) if success => CallOutcome::Stopped {
            request_id,
            http_status,
        },
        Some(Body {
            code: Some(code),
            request_id,
            host_id,
            message,
            recommend,
        }) => {
            let error = ApiError {
                http_status,
                message: message.unwrap_or_default(),
                code,
                request_id,
                host_id,
                recommend,
            };
            match classify(http_status, &error.code) {
                Class::Retryable => CallOutcome::Retryable(error),
                Class::Permanent => CallOutcome::Permanent(error),
                Class::CredentialsRefused => CallOutcome::CredentialsRefused(error),
            }
        }
        _ if success => CallOutcome::Transport(TransportError {
            kind: TransportKind::Lost,
            message: format!("HTTP {http_status} without a RequestId: {}", snippet(body)),
        }),
        _ => {
            let error = ApiError {
                http_status,
                code: UNEXPECTED_RESPONSE.to_owned(),
                message: format!("HTTP {http_status}: {}", snippet(body)),
                request_id: None,
                host_id: None,
                recommend: None,
            };
            match classify(http_status, &error.code) {
                Class::Retryable => CallOutcome::Retryable(error),
                Class::Permanent => CallOutcome::Permanent(error),
                Class::CredentialsRefused => CallOutcome::CredentialsRefused(error),
            }
        }
    }
}

/// The start of a body, as text, for an error message.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_documented_code() {
        let cases = [
            (403, "IncorrectSceneStatus", Class::Permanent),
            (400, "InvalidCasterId.Malformed", Class::Permanent),
            (403, "IllegalOperation", Class::Permanent),
            (500, "InternalError", Class::Retryable),
            (404, "InvalidCaster.NotFound", Class::Permanent),
            (404, "InvalidScene.NotFound", Class::Permanent),
            (400, "Throttling", Class::Retryable),
            (503, "Throttling", Class::Retryable),
            (400, "Throttling.User", Class::Retryable),
            (400, "Throttling.Api", Class::Retryable),
            (503, "ServiceUnavailable", Class::Retryable),
            (400, "SignatureDoesNotMatch", Class::CredentialsRefused),
            (400, "SignatureNonceUsed", Class::Permanent),
            (400, "InvalidTimeStamp.Expired", Class::CredentialsRefused),
            (
                404,
                "InvalidAccessKeyId.NotFound",
                Class::CredentialsRefused,
            ),
            (
                403,
                "InvalidAccessKeyId.Inactive",
                Class::CredentialsRefused,
            ),
            (
                403,
                "Forbidden.AccessKeyDisabled",
                Class::CredentialsRefused,
            ),
            (
                400,
                "InvalidSecurityToken.Expired",
                Class::CredentialsRefused,
            ),
            (
                400,
                "InvalidSecurityToken.Malformed",
                Class::CredentialsRefused,
            ),
            (
                400,
                "InvalidSecurityToken.MismatchWithAccessKey",
                Class::CredentialsRefused,
            ),
            (400, "InvalidTimeStamp.Format", Class::Permanent),
            (403, "Forbidden.RAM", Class::Permanent),
            (400, "MissingParameter", Class::Permanent),
        ];
        for (status, code, want) in cases {
            assert_eq!(classify(status, code), want, "{status} {code}");
        }
        assert!(is_throttling("Throttling.User"));
        assert!(!is_throttling("ThrottlingX"));
    }

    #[test]
    fn success_body() {
        let o = interpret(200, br#"{"RequestId":"ABC-1"}"#);
        assert_eq!(
            o,
            CallOutcome::Stopped {
                request_id: "ABC-1".into(),
                http_status: 200
            }
        );
        assert_eq!(o.label(), "ok");
    }

    #[test]
    fn error_body_keeps_all_fields() {
        let body = br#"{"RequestId":"R","HostId":"live.aliyuncs.com","Code":"InvalidCaster.NotFound","Message":"The specified caster does not exist.","Recommend":"https://x"}"#;
        let CallOutcome::Permanent(e) = interpret(404, body) else {
            panic!()
        };
        assert_eq!(e.code, "InvalidCaster.NotFound");
        assert_eq!(e.request_id.as_deref(), Some("R"));
        assert_eq!(e.host_id.as_deref(), Some("live.aliyuncs.com"));
        assert_eq!(e.recommend.as_deref(), Some("https://x"));
        assert_eq!(e.message, "The specified caster does not exist.");
    }

    #[test]
    fn refused_credentials_are_their_own_outcome() {
        let o = interpret(
            400,
            br#"{"RequestId":"R","Code":"SignatureDoesNotMatch","Message":"m"}"#,
        );
        assert!(matches!(o, CallOutcome::CredentialsRefused(_)));
        assert_eq!(o.label(), "credentials-refused");
        assert_eq!(o.error_code(), Some("SignatureDoesNotMatch"));
        assert!(!o.outcome_unknown());
    }

    #[test]
    fn throttling_400_is_retryable() {
        let o = interpret(
            400,
            br#"{"RequestId":"R","Code":"Throttling.User","Message":"m"}"#,
        );
        assert!(matches!(o, CallOutcome::Retryable(_)));
        assert!(o.is_throttled());
    }

    #[test]
    fn non_json_bodies() {
        let o = interpret(502, b"<html><body>502 Bad Gateway</body></html>");
        let CallOutcome::Retryable(e) = o else {
            panic!()
        };
        assert_eq!(e.code, UNEXPECTED_RESPONSE);
        assert!(e.message.contains("502 Bad Gateway"));
        assert!(matches!(
            interpret(404, b"not found"),
            CallOutcome::Permanent(_)
        ));
        assert!(matches!(
            interpret(200, b"<html>ok</html>"),
            CallOutcome::Transport(TransportError {
                kind: TransportKind::Lost,
                ..
            })
        ));
    }

    #[test]
    fn transport_connect_never_reached_the_api() {
        let t = |kind| TransportError {
            kind,
            message: String::new(),
        };
        assert!(!t(TransportKind::Connect).may_have_reached_api());
        assert!(!t(TransportKind::Dns).may_have_reached_api());
        assert!(!t(TransportKind::Tls).may_have_reached_api());
        assert!(t(TransportKind::Timeout).may_have_reached_api());
        assert!(t(TransportKind::Lost).may_have_reached_api());
    }

    #[test]
    fn connect_failures_are_told_apart_by_their_causes() {
        let cases = [
            (
                "client error (Connect): dns error: failed to lookup address information: Name or service not known",
                TransportKind::Dns,
            ),
            (
                "client error (Connect): invalid peer certificate: UnknownIssuer",
                TransportKind::Tls,
            ),
            (
                "client error (Connect): tcp connect error: Connection refused (os error 111)",
                TransportKind::Connect,
            ),
        ];
        for (causes, want) in cases {
            assert_eq!(connect_failure(causes), want, "{causes}");
        }
        let code = |kind| {
            TransportError {
                kind,
                message: String::new(),
            }
            .code()
        };
        assert_eq!(code(TransportKind::Dns), "Transport.Dns");
        assert_eq!(code(TransportKind::Tls), "Transport.Tls");
    }
}
