//! Who may see and do what, checked on every request before any handler runs:
//!
//! 1. Without a password the dashboard listens on loopback only, and answers only requests
//!    whose `Host` is a loopback name: a web page elsewhere that rebinds its own host name to
//!    127.0.0.1 (DNS rebinding) gets 421, not our data.
//! 2. With a password, the `Host` must be one the operator allowed ([`super::hosts`]; else
//!    421), then every request needs the password (HTTP basic auth, any user name; else 401
//!    with a `WWW-Authenticate` challenge). Wrong passwords are limited per client address
//!    ([`super::limiter`]: 429 with `Retry-After`) and logged once per burst, with the address
//!    and the user name, never the password. The password is compared as a SHA-256 digest in
//!    constant time, so neither its content nor its length shows in the time taken.
//! 3. Actions (`POST`) are refused (403) in read-only mode, and with a password when their
//!    `Origin` (or, lacking it, their `Referer`) is not the dashboard's own: a page on another
//!    site cannot make a logged-in browser replay or cancel.
//!
//! Every answer also carries the security headers: a Content-Security-Policy that allows
//! nothing but the dashboard's own scripts, styles, images and requests (so a string that
//! somehow became markup could still run nothing), no framing, no sniffing, no caching.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::AppState;
use super::actor::{Actor, sanitise_user};
use super::limiter::retry_after_secs;
use super::serve::LocalAddr;

pub(super) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The shortest password accepted when the dashboard listens beyond loopback.
pub(crate) const MIN_PASSWORD_CHARS: usize = 12;

/// The dashboard's password, kept as its SHA-256 digest.
pub(crate) struct Password([u8; 32]);

impl Password {
    pub(crate) fn new(password: &str) -> Self {
        Password(Sha256::digest(password.as_bytes()).into())
    }

    /// Digests are compared, not the texts: both are 32 bytes whatever was typed, and the
    /// comparison takes the same time wherever they differ.
    pub(crate) fn matches(&self, given: &str) -> bool {
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        bool::from(given.ct_eq(&self.0))
    }
}

/// The middleware: the checks above, then the handler, then the headers.
pub(super) async fn guard(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let local = request.extensions().get::<LocalAddr>().map(|l| l.0.ip());
    let checked = check(
        &state,
        request.method(),
        request.uri().path(),
        request.headers(),
        Client { client, local },
    );
    let mut response = match checked {
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

/// Where a request comes from: the client's address and the one it connected to.
#[derive(Clone, Copy, Debug)]
struct Client {
    client: IpAddr,
    local: Option<IpAddr>,
}

/// Why a request is refused before any handler sees it.
struct Refusal {
    status: StatusCode,
    message: &'static str,
    retry_after: Option<Duration>,
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
        if let Some(wait) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, retry_after_secs(wait).into());
        }
        r
    }
}

fn refuse(status: StatusCode, message: &'static str) -> Refusal {
    Refusal {
        status,
        message,
        retry_after: None,
    }
}

/// True for `POST /api/jobs`, which schedulers call with a bearer token of their own instead
/// of the dashboard's password (and from no page, so with no `Origin`): its handler checks the
/// token.
fn is_token_api(method: &Method, path: &str) -> bool {
    method == Method::POST && path == "/api/jobs"
}

fn check(
    state: &AppState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    from: Client,
) -> Result<(), Refusal> {
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
            if !state.hosts.allows(host, from.local) {
                return Err(refuse(
                    StatusCode::MISDIRECTED_REQUEST,
                    "this dashboard does not answer to this host name (see \
                     STOPCASTER_DASHBOARD_HOSTS)",
                ));
            }
            if !is_token_api(method, path) {
                authenticate(state, password, headers, from.client)?;
            }
        }
    }
    if is_action(method) && !is_token_api(method, path) {
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

/// The password check, through the limiter: a locked-out address is refused whatever it
/// sends; a wrong password counts against its address (a request without one does not: a
/// browser's first request never has one).
fn authenticate(
    state: &AppState,
    password: &Password,
    headers: &HeaderMap,
    client: IpAddr,
) -> Result<(), Refusal> {
    let unauthorized = || {
        refuse(
            StatusCode::UNAUTHORIZED,
            "the dashboard's password is required (HTTP basic auth, any user name)",
        )
    };
    let now = Instant::now();
    let mut limiter = state.limiter.lock().unwrap_or_else(PoisonError::into_inner);
    if let Err(wait) = limiter.check(client, now) {
        return Err(Refusal {
            retry_after: Some(wait),
            ..refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "too many wrong passwords from this address: try again after Retry-After seconds",
            )
        });
    }
    let Some((user, given)) = basic_credentials(headers) else {
        return Err(unauthorized());
    };
    if password.matches(&given) {
        let failures = limiter.succeed(client);
        drop(limiter);
        if failures > 0 {
            tracing::info!(%client, user = %sanitise_user(&user), failures,
                "dashboard password right after wrong ones");
        }
        return Ok(());
    }
    let failure = limiter.fail(client, now);
    drop(limiter);
    if failure.first_of_burst {
        tracing::warn!(
            %client,
            user = %sanitise_user(&user),
            "wrong dashboard password (further failures from this address are not logged until \
             a right one, or 15 minutes without any; after 5, it is locked out for a time that \
             doubles with each failure)"
        );
    }
    Err(unauthorized())
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

/// Who sent an action: the basic-auth user name (any name is accepted; it is recorded,
/// sanitised) and the client's address.
/// Who acted, as the audit trail names them: the basic-auth user name as typed (cut to a
/// bounded length; every reader escapes it), from the client's address.
pub(super) fn who(headers: &HeaderMap, client: IpAddr) -> crate::domain::audit::Who {
    let user = basic_credentials(headers).map(|(user, _)| user);
    crate::domain::audit::Who::new(
        user.as_deref().unwrap_or(""),
        crate::domain::audit::Source::Dashboard,
        &client.to_string(),
    )
}

pub(super) fn actor(headers: &HeaderMap, client: IpAddr) -> Actor {
    let user = basic_credentials(headers).map(|(user, _)| user);
    Actor::new(user.as_deref(), client)
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

    fn password_matches(headers: &HeaderMap, password: &str) -> bool {
        basic_credentials(headers).is_some_and(|(_, given)| Password::new(password).matches(&given))
    }

    #[test]
    fn digests_compare_whatever_the_lengths() {
        let p = Password::new("correct horse battery staple");
        assert!(p.matches("correct horse battery staple"));
        for wrong in [
            "",
            "c",
            "correct horse battery stapl",
            "correct horse battery staple!",
        ] {
            assert!(!p.matches(wrong), "{wrong}");
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
