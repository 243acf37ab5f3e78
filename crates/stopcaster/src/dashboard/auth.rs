//! Who may see and do what, checked on every request before any handler runs:
//!
//! 1. Without a password the dashboard listens on loopback only, and answers only requests
//!    whose `Host` is a loopback name: a web page elsewhere that rebinds its own host name to
//!    127.0.0.1 (DNS rebinding) gets 421, not our data.
//! 2. With a password, every request needs it (HTTP basic auth, any user name), compared in
//!    constant time; without one, 401 with a `WWW-Authenticate` challenge.
//! 3. Actions (`POST`) are refused (403) in read-only mode, and with a password when their
//!    `Origin` (or, lacking it, their `Referer`) is not the dashboard's own: a page on another
//!    site cannot make a logged-in browser replay or cancel.
//!
//! Every answer also carries the security headers: a Content-Security-Policy that allows
//! nothing but the dashboard's own scripts, styles, images and requests (so a string that
//! somehow became markup could still run nothing), no framing, no sniffing, no caching.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use subtle::ConstantTimeEq as _;

use super::AppState;

pub(super) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The middleware: the checks above, then the handler, then the headers.
pub(super) async fn guard(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = match check(&state, request.method(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    };
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Why a request is refused before any handler sees it.
struct Refusal {
    status: StatusCode,
    message: &'static str,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", self.message),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="stopcaster dashboard", charset="UTF-8""#),
            );
        }
        r
    }
}

fn refuse(status: StatusCode, message: &'static str) -> Refusal {
    Refusal { status, message }
}

fn check(state: &AppState, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    match &state.password {
        None => {
            if !is_loopback_host(host) {
                return Err(refuse(
                    StatusCode::MISDIRECTED_REQUEST,
                    "this dashboard has no password and answers only to loopback host names \
                     (127.0.0.1, [::1], localhost)",
                ));
            }
        }
        Some(password) => {
            if !password_matches(headers, password) {
                return Err(refuse(
                    StatusCode::UNAUTHORIZED,
                    "the dashboard's password is required (HTTP basic auth, any user name)",
                ));
            }
        }
    }
    if is_action(method) {
        if state.read_only() {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "read-only: start the dashboard with STOPCASTER_DASHBOARD_PASSWORD to replay or cancel",
            ));
        }
        if !same_origin(headers, host) {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "refused: an action must come from the dashboard's own pages (its Origin header \
                 must be this dashboard's address)",
            ));
        }
    }
    Ok(())
}

/// Methods that change something. The router answers 405 to those it does not route.
fn is_action(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The `Host` names a loopback address: `127.x.x.x`, `[::1]` or `localhost`, any port.
pub(super) fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((inside, _port)) => inside,
            None => return false,
        },
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// The basic-auth password of the request equals `password` (any user name). Compared in
/// constant time, so that the time taken says nothing about how much of a guess was right.
pub(super) fn password_matches(headers: &HeaderMap, password: &str) -> bool {
    let Some(given) = basic_password(headers) else {
        return false;
    };
    // ct_eq on slices of different lengths is false at once; the length is no secret worth
    // hiding next to the content.
    bool::from(given.as_bytes().ct_eq(password.as_bytes()))
}

fn basic_password(headers: &HeaderMap) -> Option<String> {
    basic_credentials(headers).map(|(_, password)| password)
}

/// The user name of the request's basic auth (any name is accepted; it is recorded with a
/// cancel).
pub(super) fn basic_user(headers: &HeaderMap) -> Option<String> {
    basic_credentials(headers).map(|(user, _)| user)
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The action comes from a page of this dashboard: its `Origin` (else its `Referer`) has the
/// request's own `Host`. Browsers send `Origin` with every POST; a request with neither is not
/// from one of our pages and is refused too (scripts set `Origin` themselves, see docs/dashboard.md).
pub(super) fn same_origin(headers: &HeaderMap, host: &str) -> bool {
    if host.is_empty() {
        return false;
    }
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(source) = source else { return false };
    let Some(rest) = source
        .strip_prefix("http://")
        .or_else(|| source.strip_prefix("https://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn loopback_hosts() {
        for ok in [
            "127.0.0.1:8090",
            "127.0.0.1",
            "127.1.2.3:1",
            "localhost:8090",
            "LOCALHOST",
            "[::1]:8090",
            "[::1]",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example:8090",
            "10.0.0.1:8090",
            "localhost.evil.example",
            "[::2]:80",
            "[::1",
            "127.0.0.1.evil.example",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn basic_auth_any_user() {
        let auth = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert!(password_matches(
            &headers(&[("authorization", &auth("anyone:s3cret"))]),
            "s3cret"
        ));
        assert!(password_matches(
            &headers(&[("authorization", &auth(":s3cret"))]),
            "s3cret"
        ));
        assert!(password_matches(
            &headers(&[("authorization", &auth("u:pa:ss"))]),
            "pa:ss"
        ));
        for wrong in [
            auth("u:s3cre"),
            auth("u:s3cret!"),
            auth("s3cret"),
            "Bearer s3cret".into(),
        ] {
            assert!(
                !password_matches(&headers(&[("authorization", &wrong)]), "s3cret"),
                "{wrong}"
            );
        }
        assert!(!password_matches(&HeaderMap::new(), "s3cret"));
    }

    #[test]
    fn origin_must_be_our_own() {
        let host = "127.0.0.1:8090";
        assert!(same_origin(
            &headers(&[("origin", "http://127.0.0.1:8090")]),
            host
        ));
        assert!(same_origin(
            &headers(&[("referer", "http://127.0.0.1:8090/dead-letters?x=1")]),
            host
        ));
        for bad in [
            "http://evil.example",
            "http://127.0.0.1:8091",
            "http://127.0.0.1:8090.evil.example",
            "null",
            "",
        ] {
            assert!(!same_origin(&headers(&[("origin", bad)]), host), "{bad}");
        }
        // A foreign Origin is not excused by a matching Referer.
        assert!(!same_origin(
            &headers(&[
                ("origin", "http://evil.example"),
                ("referer", "http://127.0.0.1:8090/")
            ]),
            host
        ));
        assert!(!same_origin(&HeaderMap::new(), host));
    }
}
