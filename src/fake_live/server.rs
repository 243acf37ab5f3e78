//! The stand-in's HTTP side: the RPC endpoint at `/` and the per-call pipeline that runs the
//! checks in the order documented on [`super`]; the `/_fake/` routes are in [`super::admin`].

use std::collections::{BTreeMap, HashMap};
use std::io;
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
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::admin;
use super::protocol::{self, Refusal};
use super::severable::{Conn, SeverableListener};
use super::state::{self, CallRecord, State, StopResult};
use super::{CallLogEntry, FakeLiveConfig, Fault, Stats};
use crate::live::credentials::Secret;
use crate::live::signer;

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
    keys: HashMap<String, Secret>,
    qps: u32,
    fail_rate_bits: AtomicU64,
    latency_ns: AtomicU64,
    clock: Clock,
    state: Mutex<State>,
}

impl Shared {
    pub fn new(config: FakeLiveConfig) -> Self {
        let shared = Self {
            keys: config.access_keys.into_iter().collect(),
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
            time: crate::domain::time::rfc3339_millis(self.clock.wall(r.at_ns)),
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
        }
    }

    pub fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        let mut admitted: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        {
            let st = self.lock();
            for r in &st.log {
                stats.total += 1;
                if r.http_status == Some(200) {
                    stats.ok += 1;
                }
                if r.http_status.is_none() {
                    stats.dropped += 1;
                }
                if let Some(code) = r.code {
                    if code == Refusal::Throttled.code() {
                        stats.throttled += 1;
                    }
                    *stats.by_code.entry(code.to_owned()).or_default() += 1;
                }
                if let Some(fault) = r.fault {
                    *stats.by_fault.entry(fault.to_owned()).or_default() += 1;
                }
                if r.admitted
                    && let Some(key) = &r.access_key_id
                {
                    admitted.entry(key.to_string()).or_default().push(r.at_ns);
                }
            }
        }
        for (key, mut times) in admitted {
            times.sort_unstable();
            stats
                .admitted_by_key
                .insert(key.clone(), times.len() as u64);
            let max = state::max_in_any_window(&times, 1_000_000_000);
            stats.max_in_any_1s_window.insert(key, max as u64);
        }
        stats
    }
}

/// Serves `shared` on `listener` until `shutdown` is cancelled, then lets calls in flight end.
pub(crate) async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, keys = shared.keys.len(), qps = shared.qps, "fake-live serving");
    let app = router(shared);
    axum::serve(
        SeverableListener(listener),
        app.into_make_service_with_connect_info::<Conn>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(rpc).post(rpc))
        .merge(admin::routes())
        .fallback(not_found)
        .with_state(shared)
}

/// What the server decided for one call, before any latency is added.
enum Answer {
    Stopped,
    Refused(Refusal),
    Html502,
    /// Close the connection without answering.
    Drop,
}

/// A request that passed every check that needs no shared state (steps 1 to 8).
struct Verified<'a> {
    access_key_id: &'a str,
    nonce: &'a str,
    timestamp: i64,
    caster_id: &'a str,
}

/// Steps 1 to 8 of the documented order: everything decidable from the request alone.
fn verify<'a>(
    keys: &HashMap<String, Secret>,
    method: &str,
    params: &'a BTreeMap<String, String>,
    now: OffsetDateTime,
) -> Result<Verified<'a>, Refusal> {
    let get = |name: &'static str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
            .ok_or(Refusal::MissingParameter(name))
    };
    let action = get("Action")?;
    let version = get("Version")?;
    if version != protocol::API_VERSION {
        return Err(Refusal::InvalidVersion);
    }
    if action != protocol::ACTION {
        return Err(Refusal::InvalidAction);
    }
    let access_key_id = get("AccessKeyId")?;
    let signature = get("Signature")?;
    let signature_method = get("SignatureMethod")?;
    let nonce = get("SignatureNonce")?;
    let signature_version = get("SignatureVersion")?;
    let timestamp = get("Timestamp")?;
    let caster_id = get("CasterId")?;
    let secret = keys.get(access_key_id).ok_or(Refusal::AccessKeyNotFound)?;
    if signature_method != "HMAC-SHA1" {
        return Err(Refusal::SignatureMethod);
    }
    if signature_version != "1.0" {
        return Err(Refusal::SignatureVersion);
    }
    let timestamp = signer::parse_timestamp(timestamp).ok_or(Refusal::TimestampFormat)?;
    if (now - timestamp).abs() > time::Duration::seconds(protocol::MAX_CLOCK_SKEW_SECS) {
        return Err(Refusal::TimestampExpired);
    }
    let query = signer::canonical_query(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let string_to_sign = signer::string_to_sign(method, &query);
    let expected = signer::sign_string(secret.expose(), &string_to_sign);
    if !signer::signature_matches(&expected, signature) {
        return Err(Refusal::SignatureDoesNotMatch(string_to_sign));
    }
    Ok(Verified {
        access_key_id,
        nonce,
        timestamp: timestamp.unix_timestamp(),
        caster_id,
    })
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

/// Steps 9 to 14, under the state lock.
fn decide(
    st: &mut State,
    qps: u32,
    fail_rate: f64,
    verified: Result<Verified<'_>, Refusal>,
    now: Instant,
    wall_now: i64,
) -> Decision {
    let v = match verified {
        Ok(v) => v,
        Err(refusal) => return Decision::refused(refusal),
    };
    // Only a proven caller consumes a nonce, so a forged request cannot burn someone's nonce.
    if !st
        .nonces
        .check_and_insert(v.access_key_id, v.nonce, v.timestamp, wall_now)
    {
        return Decision::refused(Refusal::NonceUsed);
    }
    if !st.throttle.admit(v.access_key_id, now, qps) {
        return Decision::refused(Refusal::Throttled);
    }
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
            stop(st, v.caster_id)
        }
        Some(Fault::StopThenDrop) => {
            // The studio's fate is sealed before the answer is lost.
            let _ = stop(st, v.caster_id);
            Answer::Drop
        }
        None if fail_rate > 0.0 && rand::random::<f64>() < fail_rate => {
            Answer::Refused(Refusal::ServiceUnavailable)
        }
        None => stop(st, v.caster_id),
    };
    decision
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
    let verified = verify(&shared.keys, method, &params, wall_now);
    let request_id = uuid::Uuid::new_v4();
    let fail_rate = shared.fail_rate();

    let decision = {
        let mut st = shared.lock();
        // Taken under the lock, so log order is decision order and times never go backwards.
        let now = Instant::now();
        let decision = decide(
            &mut st,
            shared.qps,
            fail_rate,
            verified,
            now,
            wall_now.unix_timestamp(),
        );
        let (http_status, code) = match &decision.answer {
            Answer::Stopped => (Some(200), None),
            Answer::Refused(r) => (Some(r.status()), Some(r.code())),
            Answer::Html502 => (Some(502), None),
            Answer::Drop => (None, None),
        };
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
        });
        decision
    };

    let request_id = protocol::request_id_text(request_id);
    tracing::debug!(
        access_key_id = params.get("AccessKeyId").map(String::as_str),
        caster_id = params.get("CasterId").map(String::as_str),
        method,
        code = match &decision.answer {
            Answer::Stopped => "ok",
            Answer::Refused(r) => r.code(),
            Answer::Html502 => "html502",
            Answer::Drop => "dropped",
        },
        fault = decision.fault.map(|f| f.label()),
        request_id = %request_id,
        "StopCaster call"
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
        Answer::Refused(refusal) => json(
            StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST),
            &request_id,
            protocol::error_body(&request_id, &refusal),
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
        protocol::error_body(&request_id, &Refusal::InvalidAction),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> HashMap<String, Secret> {
        HashMap::from([("ak".to_owned(), Secret::new("sk"))])
    }

    fn signed(
        method: &str,
        secret: &str,
        mut params: BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let sig = signer::sign(
            method,
            secret,
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        params.insert("Signature".into(), sig);
        params
    }

    fn base(now: OffsetDateTime) -> BTreeMap<String, String> {
        [
            ("AccessKeyId", "ak"),
            ("Action", "StopCaster"),
            ("CasterId", "c1"),
            ("Format", "JSON"),
            ("RegionId", "cn-shanghai"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "n1"),
            ("SignatureVersion", "1.0"),
            ("Version", "2016-11-01"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .chain([("Timestamp".to_owned(), signer::format_timestamp(now))])
        .collect()
    }

    fn code(r: Result<Verified<'_>, Refusal>) -> &'static str {
        match r {
            Ok(_) => "ok",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn verification_order_and_codes() {
        let now = OffsetDateTime::now_utc();
        let k = keys();
        let good = signed("POST", "sk", base(now));
        assert_eq!(code(verify(&k, "POST", &good, now)), "ok");
        assert_eq!(code(verify(&k, "GET", &good, now)), "SignatureDoesNotMatch");

        let without = |name: &str| {
            let mut p = good.clone();
            p.remove(name);
            p
        };
        for name in [
            "Action",
            "Version",
            "AccessKeyId",
            "Signature",
            "SignatureNonce",
            "Timestamp",
            "CasterId",
        ] {
            let p = without(name);
            let err = verify(&k, "POST", &p, now).err().unwrap();
            assert_eq!(
                err,
                Refusal::MissingParameter(match name {
                    "Action" => "Action",
                    "Version" => "Version",
                    "AccessKeyId" => "AccessKeyId",
                    "Signature" => "Signature",
                    "SignatureNonce" => "SignatureNonce",
                    "Timestamp" => "Timestamp",
                    _ => "CasterId",
                })
            );
        }
        // RegionId is optional for StopCaster (Alibaba's parameter table), but signed.
        assert_eq!(
            code(verify(&k, "POST", &without("RegionId"), now)),
            "SignatureDoesNotMatch"
        );
        assert_eq!(
            code(verify(
                &k,
                "POST",
                &signed("POST", "sk", {
                    let mut p = base(now);
                    p.remove("RegionId");
                    p
                }),
                now
            )),
            "ok"
        );

        let with = |name: &str, value: &str| {
            let mut p = base(now);
            p.insert(name.into(), value.into());
            signed("POST", "sk", p)
        };
        assert_eq!(
            code(verify(&k, "POST", &with("Version", "2014-11-11"), now)),
            "InvalidVersion"
        );
        assert_eq!(
            code(verify(&k, "POST", &with("Action", "StartCaster"), now)),
            "InvalidAction.NotFound"
        );
        assert_eq!(
            code(verify(&k, "POST", &with("AccessKeyId", "nope"), now)),
            "InvalidAccessKeyId.NotFound"
        );
        assert_eq!(
            code(verify(
                &k,
                "POST",
                &with("SignatureMethod", "HMAC-SHA256"),
                now
            )),
            "InvalidSignatureMethod"
        );
        assert_eq!(
            code(verify(&k, "POST", &with("SignatureVersion", "2.0"), now)),
            "InvalidSignatureVersion"
        );
        assert_eq!(
            code(verify(&k, "POST", &with("Timestamp", "yesterday"), now)),
            "InvalidTimeStamp.Format"
        );
        let skew = |secs: i64| signer::format_timestamp(now + time::Duration::seconds(secs));
        assert_eq!(
            code(verify(&k, "POST", &with("Timestamp", &skew(-16 * 60)), now)),
            "InvalidTimeStamp.Expired"
        );
        assert_eq!(
            code(verify(&k, "POST", &with("Timestamp", &skew(16 * 60)), now)),
            "InvalidTimeStamp.Expired"
        );
        assert_eq!(
            code(verify(&k, "POST", &with("Timestamp", &skew(-14 * 60)), now)),
            "ok"
        );
        assert_eq!(
            code(verify(&k, "POST", &with("Timestamp", &skew(14 * 60)), now)),
            "ok"
        );
        // A malformed CasterId is the studio's verdict, not the gateway's.
        assert_eq!(
            code(verify(&k, "POST", &with("CasterId", "a b"), now)),
            "ok"
        );
        assert_eq!(
            code(verify(&k, "POST", &signed("POST", "wrong", base(now)), now)),
            "SignatureDoesNotMatch"
        );
        // Unknown key wins over a bad signature, as upstream: the secret is needed to check it.
        let mut p = with("AccessKeyId", "nope");
        p.insert("Signature".into(), "x".into());
        assert_eq!(
            code(verify(&k, "POST", &p, now)),
            "InvalidAccessKeyId.NotFound"
        );
    }

    #[test]
    fn decision_pipeline() {
        let now = OffsetDateTime::now_utc();
        let k = keys();
        let mut st = State::new(None);
        let t = Instant::now();
        let ts = now.unix_timestamp();
        let call = |st: &mut State, nonce: &str, caster: &str, qps: u32| {
            let mut p = base(now);
            p.insert("SignatureNonce".into(), nonce.into());
            p.insert("CasterId".into(), caster.into());
            let p = signed("POST", "sk", p);
            let d = decide(st, qps, 0.0, verify(&k, "POST", &p, now), t, ts);
            match d.answer {
                Answer::Stopped => "ok",
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
