//! The stand-in's HTTP side: the RPC endpoint at `/` and the per-call pipeline that runs the
//! checks in the order documented on [`super`]; the `/_fake/` routes are in [`super::admin`].

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::identity::{Identity, Role};
use super::listener::Listener;
use super::metadata::Metadata;
use super::protocol::{self, Refusal, Service};
use super::severable::Conn;
use super::state::{self, CallRecord, State, StopResult};
use super::verify::{self, Action, Verified};
use super::{CallLogEntry, FakeLiveConfig, Fault, Stats, admin, metadata, sts};

/// Maps the monotonic instants the throttle decides on to wall-clock times for the log, so the
/// log's timestamps show exactly the spacing the throttle saw, whatever NTP does meanwhile.
#[derive(Debug)]
struct Clock {
    origin: Instant,
    origin_wall: OffsetDateTime,
}

impl Clock {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            origin_wall: OffsetDateTime::now_utc(),
        }
    }

    fn offset_ns(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    fn wall(&self, offset_ns: u64) -> OffsetDateTime {
        self.origin_wall + Duration::from_nanos(offset_ns)
    }
}

/// Server state shared by every connection and by [`super::FakeLiveHandle`].
#[derive(Debug)]
pub(crate) struct Shared {
    pub identity: Identity,
    oidc_token_file: Option<PathBuf>,
    pub metadata: Metadata,
    qps: u32,
    fail_rate_bits: AtomicU64,
    latency_ns: AtomicU64,
    clock: Clock,
    state: Mutex<State>,
}

impl Shared {
    pub fn new(config: FakeLiveConfig) -> Self {
        let shared = Self {
            identity: Identity::new(
                config.access_keys,
                &config.accounts,
                config.ram_roles,
                config.sts_lifetime,
            ),
            oidc_token_file: config.oidc_token_file,
            metadata: Metadata::default(),
            qps: config.qps,
            fail_rate_bits: AtomicU64::new(0),
            latency_ns: AtomicU64::new(0),
            clock: Clock::new(),
            state: Mutex::new(State::new(config.casters)),
        };
        shared.set_fail_rate(config.fail_rate);
        shared.set_latency(config.latency);
        shared
    }

    /// The state lock. Never held across an await; a panic while holding it leaves consistent
    /// data (every mutation is a single step), so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_fail_rate(&self, rate: f64) {
        let rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        self.fail_rate_bits.store(rate.to_bits(), Ordering::Relaxed);
    }

    pub fn fail_rate(&self) -> f64 {
        f64::from_bits(self.fail_rate_bits.load(Ordering::Relaxed))
    }

    pub fn set_latency(&self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency_ns.store(ns, Ordering::Relaxed);
    }

    pub fn latency(&self) -> Duration {
        Duration::from_nanos(self.latency_ns.load(Ordering::Relaxed))
    }

    /// The log as served by `GET /_fake/calls`, optionally filtered.
    pub fn calls(&self, caster_id: Option<&str>, access_key_id: Option<&str>) -> Vec<CallLogEntry> {
        let matches = |r: &CallRecord| {
            caster_id.is_none_or(|c| r.caster_id.as_deref() == Some(c))
                && access_key_id.is_none_or(|k| r.access_key_id.as_deref() == Some(k))
        };
        // Copy under the lock, format outside it: the log can be long.
        let records: Vec<CallRecord> = self
            .lock()
            .log
            .iter()
            .filter(|r| matches(r))
            .cloned()
            .collect();
        records.iter().map(|r| self.entry(r)).collect()
    }

    fn entry(&self, r: &CallRecord) -> CallLogEntry {
        CallLogEntry {
            time: stopcaster_live::time::rfc3339_millis(self.clock.wall(r.at_ns)),
            method: r.method.to_owned(),
            access_key_id: r.access_key_id.as_deref().map(str::to_owned),
            caster_id: r.caster_id.as_deref().map(str::to_owned),
            action: r.action.as_deref().map(str::to_owned),
            http_status: r.http_status,
            code: r.code.map(str::to_owned),
            request_id: protocol::request_id_text(r.request_id),
            nonce: r.nonce.as_deref().map(str::to_owned),
            admitted: r.admitted,
            fault: r.fault.map(str::to_owned),
            account_uid: r.account.as_deref().map(str::to_owned),
        }
    }

    pub fn stats(&self) -> Stats {
        // Under the lock: the counting is linear and the log only grows.
        state::stats(&self.lock().log)
    }
}

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

/// What the server decided for one call, before any latency is added.
enum Answer {
    Stopped,
    /// An STS action's JSON answer.
    Sts(Vec<u8>),
    Refused(Refusal),
    Html502,
    /// Close the connection without answering.
    Drop,
}

struct Decision {
    answer: Answer,
    delay: Duration,
    admitted: bool,
    fault: Option<Fault>,
}

impl Decision {
    fn refused(refusal: Refusal) -> Self {
        Self {
            answer: Answer::Refused(refusal),
            delay: Duration::ZERO,
            admitted: false,
            fault: None,
        }
    }
}

/// What a call's decision reads besides the state.
struct Call<'a> {
    identity: &'a Identity,
    params: &'a BTreeMap<String, String>,
    request_id: &'a str,
    wall_now: OffsetDateTime,
}

/// Steps 9 to 14 (and STS's own checks), under the state lock.
fn decide(
    st: &mut State,
    qps: u32,
    fail_rate: f64,
    verified: &Result<Verified<'_>, Refusal>,
    call: &Call<'_>,
    now: Instant,
) -> Decision {
    let v = match verified {
        Ok(v) => v,
        Err(refusal) => return Decision::refused(refusal.clone()),
    };
    // Only a proven caller consumes a nonce, so a forged request cannot burn someone's nonce.
    if !st.nonces.check_and_insert(
        v.access_key_id,
        v.nonce,
        v.timestamp,
        call.wall_now.unix_timestamp(),
    ) {
        return Decision::refused(Refusal::NonceUsed);
    }
    let sts_answer = |result: Result<Vec<u8>, Refusal>| Decision {
        answer: result.map_or_else(Answer::Refused, Answer::Sts),
        delay: Duration::ZERO,
        admitted: false,
        fault: None,
    };
    match v.action {
        Action::StopCaster => {}
        Action::AssumeRole => {
            return sts_answer(sts::assume_role(
                call.identity,
                &v.caller,
                call.params,
                call.request_id,
                call.wall_now,
            ));
        }
        Action::GetCallerIdentity => {
            return sts_answer(Ok(sts::get_caller_identity(&v.caller, call.request_id)));
        }
        // Unsigned: decided before any of this, in `rpc`.
        Action::AssumeRoleWithOidc => return Decision::refused(Refusal::InvalidAction),
    }
    // Alibaba counts the quota per account: every key of one UID, temporary keys included.
    if !st.throttle.admit(&v.caller.account, now, qps) {
        return Decision::refused(Refusal::Throttled);
    }
    let caster_id = verify::param(call.params, "CasterId").unwrap_or_default();
    let fault = st.faults.pop_front();
    let mut decision = Decision {
        answer: Answer::Stopped,
        delay: Duration::ZERO,
        admitted: true,
        fault,
    };
    decision.answer = match fault {
        Some(Fault::Status503) => Answer::Refused(Refusal::ServiceUnavailable),
        Some(Fault::Status500InternalError) => Answer::Refused(Refusal::InternalError),
        Some(Fault::Throttle) => Answer::Refused(Refusal::Throttled),
        Some(Fault::Html502) => Answer::Html502,
        Some(Fault::DropConnection) => Answer::Drop,
        Some(Fault::Delay(d)) => {
            decision.delay = d;
            stop(st, caster_id)
        }
        Some(Fault::StopThenDrop) => {
            // The studio's fate is sealed before the answer is lost.
            let _ = stop(st, caster_id);
            Answer::Drop
        }
        None if fail_rate > 0.0 && rand::random::<f64>() < fail_rate => {
            Answer::Refused(Refusal::ServiceUnavailable)
        }
        None => stop(st, caster_id),
    };
    decision
}

/// `AssumeRoleWithOIDC`, which no signature guards: STS's checks against the token file, read
/// afresh now because the file rotates (Kubernetes replaces it hourly).
async fn assume_role_with_oidc(
    shared: &Shared,
    params: &BTreeMap<String, String>,
    request_id: &str,
    wall_now: OffsetDateTime,
) -> Answer {
    if let Err(refusal) = verify::check_required(Action::AssumeRoleWithOidc, params) {
        return Answer::Refused(refusal);
    }
    let expected = match &shared.oidc_token_file {
        None => None,
        Some(path) => match tokio::fs::read_to_string(path).await {
            Ok(token) => Some(token),
            Err(e) => {
                // The path and the error only: the token is a credential.
                tracing::warn!(path = %path.display(), error = %e, "fake-live cannot read its OIDC token file");
                return Answer::Refused(Refusal::OidcTokenFileUnreadable);
            }
        },
    };
    match sts::assume_role_with_oidc(
        &shared.identity,
        params,
        expected.as_deref(),
        request_id,
        wall_now,
    ) {
        Ok(body) => Answer::Sts(body),
        Err(refusal) => Answer::Refused(refusal),
    }
}

/// Steps 12 to 14: what the studio itself says.
fn stop(st: &mut State, caster_id: &str) -> Answer {
    if !state::well_formed_caster_id(caster_id) {
        return Answer::Refused(Refusal::CasterIdMalformed);
    }
    match st.studios.stop(caster_id) {
        StopResult::Stopped => Answer::Stopped,
        StopResult::AlreadyStopped => Answer::Refused(Refusal::IncorrectSceneStatus),
        StopResult::NotFound => Answer::Refused(Refusal::CasterNotFound),
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

async fn rpc(
    AxumState(shared): AxumState<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The method is part of what is signed; the routes only let these three through.
    let method: &'static str = match method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        _ => "POST",
    };
    let mut params = BTreeMap::new();
    if let Some(query) = &query {
        protocol::decode_form(query.as_bytes(), &mut params);
    }
    if is_form(&headers) {
        protocol::decode_form(&body, &mut params);
    }
    let wall_now = OffsetDateTime::now_utc();
    let request_id = uuid::Uuid::new_v4();
    let request_id_text = protocol::request_id_text(request_id);
    let routed = verify::route(&params);
    let service = routed
        .as_ref()
        .map_or_else(|_| verify::service_of(&params), |a| a.service());
    let (early, verified) = match routed {
        Ok(Action::AssumeRoleWithOidc) => {
            let answer = assume_role_with_oidc(&shared, &params, &request_id_text, wall_now).await;
            (Some(answer), Err(Refusal::InvalidAction))
        }
        Ok(action) => (
            None,
            verify::verify(&shared.identity, action, method, &params, wall_now),
        ),
        Err(refusal) => (None, Err(refusal)),
    };
    let account = match (&early, &verified) {
        (Some(_), _) => verify::param(&params, "RoleArn")
            .and_then(|arn| shared.identity.role(arn))
            .map(|role: &Role| Box::from(role.account.as_str())),
        (None, Ok(v)) => Some(Box::from(v.caller.account.as_str())),
        (None, Err(_)) => None,
    };
    let fail_rate = shared.fail_rate();

    let decision = {
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
            None => {
                let call = Call {
                    identity: &shared.identity,
                    params: &params,
                    request_id: &request_id_text,
                    wall_now,
                };
                decide(&mut st, shared.qps, fail_rate, &verified, &call, now)
            }
        };
        let (http_status, code) = match &decision.answer {
            Answer::Stopped | Answer::Sts(_) => (Some(200), None),
            Answer::Refused(r) => (Some(r.status()), Some(r.code())),
            Answer::Html502 => (Some(502), None),
            Answer::Drop => (None, None),
        };
        // No parameters at all is no call: a client warming a connection (`GET /`). It is
        // answered like any request without `Action`, but kept out of the log.
        if !params.is_empty() {
            st.log.push(CallRecord {
                at_ns: shared.clock.offset_ns(now),
                method,
                access_key_id: boxed(&params, "AccessKeyId"),
                caster_id: boxed(&params, "CasterId"),
                action: boxed(&params, "Action"),
                http_status,
                code,
                request_id,
                nonce: boxed(&params, "SignatureNonce"),
                admitted: decision.admitted,
                fault: decision.fault.map(|f| f.label()),
                account,
            });
        }
        decision
    };

    let request_id = request_id_text;
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

    let delay = shared.latency() + decision.delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match decision.answer {
        Answer::Stopped => json(
            StatusCode::OK,
            &request_id,
            protocol::success_body(&request_id),
        ),
        Answer::Sts(body) => json(StatusCode::OK, &request_id, body),
        Answer::Refused(refusal) => json(
            StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST),
            &request_id,
            protocol::error_body(&request_id, &refusal, service),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::tests::{base, check, identity, signed};

    #[test]
    fn decision_pipeline() {
        let now = OffsetDateTime::now_utc();
        let k = identity();
        let mut st = State::new(None);
        let t = Instant::now();
        let call = |st: &mut State, nonce: &str, caster: &str, qps: u32| {
            let mut p = base(now);
            p.insert("SignatureNonce".into(), nonce.into());
            p.insert("CasterId".into(), caster.into());
            let p = signed("POST", "sk", p);
            let c = Call {
                identity: &k,
                params: &p,
                request_id: "RID",
                wall_now: now,
            };
            let d = decide(st, qps, 0.0, &check(&k, "POST", &p, now), &c, t);
            match d.answer {
                Answer::Stopped => "ok",
                Answer::Sts(_) => "sts",
                Answer::Refused(r) => r.code(),
                Answer::Html502 => "html502",
                Answer::Drop => "drop",
            }
        };
        assert_eq!(call(&mut st, "a", "c1", 10), "ok");
        assert_eq!(call(&mut st, "a", "c2", 10), "SignatureNonceUsed");
        assert_eq!(call(&mut st, "b", "c1", 10), "IncorrectSceneStatus");
        assert_eq!(
            call(&mut st, "c", "bad id", 10),
            "InvalidCasterId.Malformed"
        );
        st.faults
            .extend([Fault::StopThenDrop, Fault::Status503, Fault::Html502]);
        assert_eq!(call(&mut st, "d", "c3", 10), "drop");
        assert_eq!(
            st.studios.get("c3"),
            Some(super::super::StudioState::Stopped)
        );
        assert_eq!(call(&mut st, "e", "c4", 10), "ServiceUnavailable");
        assert_eq!(st.studios.get("c4"), None, "a 503 stops nothing");
        assert_eq!(call(&mut st, "f", "c4", 10), "html502");
        assert_eq!(call(&mut st, "g", "c4", 10), "ok");
        // Same instant, qps 7 already used up by the seven admitted calls above.
        st.faults.push_back(Fault::DropConnection);
        assert_eq!(call(&mut st, "h", "c5", 7), "Throttling.User");
        assert_eq!(st.faults.len(), 1, "a throttled call consumes no fault");
    }
}
