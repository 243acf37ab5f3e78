//! The stand-in's HTTP side: the RPC endpoint at `/` and the per-call pipeline that runs the
//! checks in the order documented on [`crate`]: the shared state is in [`shared`], the decision
//! under its lock in [`decide`]; the `/_fake/` routes are in [`crate::admin`].

mod decide;
mod shared;

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use self::decide::{Answer, Call, Decision, assume_role_with_oidc, decide};
pub(crate) use self::shared::Shared;
use crate::identity::Role;
use crate::listener::Listener;
use crate::protocol::{self, Refusal, Service};
use crate::severable::Conn;
use crate::state::CallRecord;
use crate::verify::{self, Action, Verified};
use crate::verify_v3::{self, V3Signed};
use crate::{admin, metadata};

/// Serves `shared` on `listener` until `shutdown` is cancelled, then lets calls in flight end.
pub(crate) async fn run(
    listener: Listener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let addr = axum::serve::Listener::local_addr(&listener)?;
    tracing::info!(%addr, keys = shared.identity.key_count(), qps = shared.qps, "fake-live serving");
    let app = router(shared);
    axum::serve(listener, app.into_make_service_with_connect_info::<Conn>())
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(rpc).post(rpc))
        .merge(admin::routes())
        .merge(metadata::routes())
        .fallback(not_found)
        .with_state(shared)
}

/// One request: read its parameters, verify it, decide under the lock (logging the call in
/// decision order), wait the latency, answer.
async fn rpc(
    AxumState(shared): AxumState<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let method = signed_method(&method);
    let mut params = read_params(query.as_deref(), &headers, &body);
    // A V3 request's own parameters travel in its headers: read them before routing.
    let v3 = verify_v3::is_v3(&headers)
        .then(|| verify_v3::read(method, query.as_deref(), &headers, &body, &mut params));
    // The stand-in's own clock, `--clock-offset-s` off: its timestamp checks and its `Date`.
    let wall_now = OffsetDateTime::now_utc() + shared.clock_offset;
    let request_id = uuid::Uuid::new_v4();
    let request_id_text = protocol::request_id_text(request_id);
    let routed = verify::route(&params);
    let service = routed
        .as_ref()
        .map_or_else(|_| verify::service_of(&params), |a| a.service());
    let call = Call {
        identity: &shared.identity,
        params: &params,
        request_id: &request_id_text,
        wall_now,
    };
    let (early, verified) = verify_call(&shared, routed, method, v3.as_ref(), &call).await;
    let signature = if v3.is_some() { "v3" } else { "v1" };
    let logged = Logged {
        method,
        request_id,
        signature,
    };
    let (decision, quota) = decide_logged(&shared, early, &verified, &call, &logged);
    trace(&params, method, &decision, &request_id_text);
    let delay = shared.latency() + decision.delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let response = respond(decision.answer, &request_id_text, service, &conn);
    with_headers(response, wall_now, quota)
}

/// The method as signed; the routes only let these three through.
fn signed_method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        _ => "POST",
    }
}

/// Steps 1 to 8: an answer already, for `AssumeRoleWithOIDC` (which is not signed), or the
/// verified caller, or why the call is refused.
async fn verify_call<'p>(
    shared: &Shared,
    routed: Result<Action, Refusal>,
    method: &'static str,
    v3: Option<&Result<V3Signed, Refusal>>,
    call: &Call<'p>,
) -> (Option<Answer>, Result<Verified<'p>, Refusal>) {
    match routed {
        Ok(Action::AssumeRoleWithOidc) => {
            let answer =
                assume_role_with_oidc(shared, call.params, call.request_id, call.wall_now).await;
            (Some(answer), Err(Refusal::InvalidAction))
        }
        Ok(action) => {
            let verified = match v3 {
                Some(Err(refusal)) => Err(refusal.clone()),
                signed => verify::verify(
                    &shared.identity,
                    action,
                    method,
                    call.params,
                    signed.and_then(|s| s.as_ref().ok()),
                    call.wall_now,
                ),
            };
            (None, verified)
        }
        Err(refusal) => (None, Err(refusal)),
    }
}

/// What a call's line in the log takes from the request besides its parameters.
struct Logged {
    method: &'static str,
    request_id: uuid::Uuid,
    signature: &'static str,
}

/// The decision, taken under the lock with the call's line in the log, and the
/// `x-ratelimit-user-api` header of a verified StopCaster call.
fn decide_logged(
    shared: &Shared,
    early: Option<Answer>,
    verified: &Result<Verified<'_>, Refusal>,
    call: &Call<'_>,
    logged: &Logged,
) -> (Decision, Option<String>) {
    let oidc = early.is_some();
    let account = account_of(shared, call.params, oidc, verified);
    let fail_rate = shared.fail_rate();
    let mut st = shared.lock();
    // Taken under the lock, so log order is decision order and times never go backwards.
    let now = Instant::now();
    let decision = match early {
        Some(answer) => Decision {
            answer,
            delay: Duration::ZERO,
            admitted: false,
            fault: None,
        },
        None => decide(&mut st, shared.qps, fail_rate, verified, call, now),
    };
    // No parameters at all is no call: a client warming a connection (`GET /`). It is
    // answered like any request without `Action`, but kept out of the log.
    if !call.params.is_empty() {
        let at_ns = shared.clock.offset_ns(now);
        let mut line = record(
            call.params,
            &decision,
            at_ns,
            logged.method,
            logged.request_id,
            account,
        );
        line.signature = logged.signature;
        st.log.push(line);
    }
    let quota = match (verified, oidc) {
        (Ok(v), false) if v.action == Action::StopCaster => {
            let (remain, time_left) = st.throttle.remaining(&v.caller.account, now, shared.qps);
            Some(quota_header(shared.qps, remain, time_left, call.wall_now))
        }
        _ => None,
    };
    (decision, quota)
}

/// Ours, not hyper's, `Date` (the stand-in's clock may be set off), and the quota header.
fn with_headers(
    mut response: Response,
    wall_now: OffsetDateTime,
    quota: Option<String>,
) -> Response {
    let headers = response.headers_mut();
    if let Ok(date) = HeaderValue::from_str(&stopcaster_live::time::http_date(wall_now)) {
        headers.insert(header::DATE, date);
    }
    if let Some(quota) = quota.and_then(|q| HeaderValue::from_str(&q).ok()) {
        headers.insert(stopcaster_live::quota::USER_API_HEADER, quota);
    }
    response
}

/// `x-ratelimit-user-api` as Alibaba's gateway writes it: the account's limit, the calls left
/// in the current (sliding) second, the milliseconds until a call is admitted again, and when
/// that is, in Unix seconds.
fn quota_header(limit: u32, remain: u32, time_left: Duration, wall_now: OffsetDateTime) -> String {
    let reset = (wall_now + time_left).unix_timestamp();
    format!(
        "Limit:{limit},Remain:{remain},TimeLeft:{},Reset:{reset}",
        time_left.as_millis()
    )
}

/// The query's parameters, and a form body's.
fn read_params(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    if let Some(query) = query {
        protocol::decode_form(query.as_bytes(), &mut params);
    }
    if is_form(headers) {
        protocol::decode_form(body, &mut params);
    }
    params
}

/// The account a call is counted against in the log: the role's for `AssumeRoleWithOIDC`, the
/// verified caller's otherwise.
fn account_of(
    shared: &Shared,
    params: &BTreeMap<String, String>,
    oidc: bool,
    verified: &Result<Verified<'_>, Refusal>,
) -> Option<Box<str>> {
    match (oidc, verified) {
        (true, _) => verify::param(params, "RoleArn")
            .and_then(|arn| shared.identity.role(arn))
            .map(|role: &Role| Box::from(role.account.as_str())),
        (false, Ok(v)) => Some(Box::from(v.caller.account.as_str())),
        (false, Err(_)) => None,
    }
}

/// The call's line in the log.
fn record(
    params: &BTreeMap<String, String>,
    decision: &Decision,
    at_ns: u64,
    method: &'static str,
    request_id: uuid::Uuid,
    account: Option<Box<str>>,
) -> CallRecord {
    let (http_status, code) = match &decision.answer {
        Answer::Stopped | Answer::Sts(_) => (Some(200), None),
        Answer::Refused(r) => (Some(r.status()), Some(r.code())),
        Answer::Html502 => (Some(502), None),
        Answer::Drop => (None, None),
    };
    CallRecord {
        at_ns,
        wall: time::OffsetDateTime::now_utc(),
        method,
        access_key_id: boxed(params, "AccessKeyId"),
        caster_id: boxed(params, "CasterId"),
        action: boxed(params, "Action"),
        http_status,
        code,
        request_id,
        nonce: boxed(params, "SignatureNonce"),
        admitted: decision.admitted,
        fault: decision.fault.map(|f| f.label()),
        account,
        signature: "v1",
    }
}

fn trace(params: &BTreeMap<String, String>, method: &str, decision: &Decision, request_id: &str) {
    tracing::debug!(
        action = params.get("Action").map(String::as_str),
        access_key_id = params.get("AccessKeyId").map(String::as_str),
        caster_id = params.get("CasterId").map(String::as_str),
        method,
        code = match &decision.answer {
            Answer::Stopped | Answer::Sts(_) => "ok",
            Answer::Refused(r) => r.code(),
            Answer::Html502 => "html502",
            Answer::Drop => "dropped",
        },
        fault = decision.fault.map(|f| f.label()),
        request_id = %request_id,
        "fake-live call"
    );
}

fn respond(answer: Answer, request_id: &str, service: Service, conn: &Conn) -> Response {
    match answer {
        Answer::Stopped => json(
            StatusCode::OK,
            request_id,
            protocol::success_body(request_id),
        ),
        Answer::Sts(body) => json(StatusCode::OK, request_id, body),
        Answer::Refused(refusal) => json(
            StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST),
            request_id,
            protocol::error_body(request_id, &refusal, service),
        ),
        Answer::Html502 => (
            StatusCode::BAD_GATEWAY,
            [(header::CONTENT_TYPE, "text/html")],
            protocol::HTML_502,
        )
            .into_response(),
        Answer::Drop => {
            conn.sever();
            // Never written: the connection fails on its first write.
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

fn boxed(params: &BTreeMap<String, String>, name: &str) -> Option<Box<str>> {
    params.get(name).map(|v| Box::from(v.as_str()))
}

fn json(status: StatusCode, request_id: &str, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-acs-request-id", v);
    }
    response
}

async fn not_found() -> Response {
    let request_id = protocol::request_id_text(uuid::Uuid::new_v4());
    json(
        StatusCode::NOT_FOUND,
        &request_id,
        protocol::error_body(&request_id, &Refusal::InvalidAction, Service::Live),
    )
}
