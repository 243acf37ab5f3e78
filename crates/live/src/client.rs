//! The HTTP client for StopCaster: builds the signed query (pure), POSTs it with reqwest, and
//! turns whatever happens into a [`CallOutcome`]. Every call is signed afresh with a new
//! SignatureNonce and Timestamp, so a retry is never refused as a replay.
//!
//! # Warm connections
//! A call that has to open a connection first (TCP, then TLS: two or three round trips to a
//! far endpoint) reaches the server that much later than its pacer slot, while the next call,
//! on a connection already open, arrives on time: the two land closer than the pacer's period
//! and an eleventh call can fall into one server second. So before a worker takes a slot after
//! being idle ([`LiveClient::warm`]), it opens the connections it will need: a first request
//! opens one, a second one on it measures the round trip, and then [`pool_size`] requests at
//! once open the rest. These requests are `GET /` without parameters: no API call (the
//! stand-in answers `MissingParameter` and counts nothing; Alibaba's gateway likewise refuses
//! a request with no `Action`, before any quota). The pool keeps idle connections for
//! [`POOL_IDLE`], with TCP keep-alive, and the connections a busy worker reuses stay open;
//! after [`REWARM_AFTER_IDLE`] without a call, the next call warms the pool again first.
//!
//! # What an answer says besides its body
//! Each answer's quota headers are read ([`crate::quota`]) and handed back in the [`Answer`];
//! its `Date` header is a sample of the endpoint's clock ([`crate::skew`]), kept per client
//! (per endpoint), and every call is signed with the local time corrected by it, so a machine
//! whose clock is minutes off is not refused with `InvalidTimeStamp.Expired`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::credentials::Credentials;
use crate::ids::{CasterId, RegionId};
use crate::outcome::{CallOutcome, TransportError, TransportKind, interpret};
use crate::quota::QuotaHeaders;
use crate::signer;
use crate::signing::{Envelope, SignatureVersion, sign_request};
use crate::skew::{self, Skew};

/// The code of a call refused for its Timestamp.
pub const TIMESTAMP_EXPIRED: &str = "InvalidTimeStamp.Expired";

/// What one call came to, and what its answer said besides its body.
#[derive(Clone, Debug)]
pub struct Answer {
    pub outcome: CallOutcome,
    /// Its quota headers (empty when there was no answer, or the endpoint sends none).
    pub quota: QuotaHeaders,
    /// The clock correction, in seconds, the call was signed with.
    pub signed_with_skew: i64,
    /// The client's clock correction once the answer was read.
    pub skew_after: i64,
}

impl Answer {
    /// A refusal of the call's Timestamp that the correction learnt since it was signed (from
    /// this answer's `Date` or another's) may cure: the call is worth making again, and no
    /// reason to pause the account. Refused again with the same correction, it is not.
    pub fn clock_corrected(&self) -> bool {
        self.outcome.error_code() == Some(TIMESTAMP_EXPIRED)
            && ((self.skew_after - self.signed_with_skew).abs() as f64) >= skew::STEP
    }
}

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
    /// The signature of calls whose account names none (`STOPCASTER_SIGNATURE_VERSION`).
    pub signature: SignatureVersion,
}

impl ClientConfig {
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            ca_file: None,
            signature: SignatureVersion::V1,
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
    Trust(#[from] crate::credentials::http::ClientBuildError),
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

/// How long the pool keeps an idle connection.
pub const POOL_IDLE: Duration = Duration::from_secs(90);
/// A client that made no call for this long warms its pool again before the next one: idle
/// connections may have been closed by the server or a middlebox meanwhile.
pub const REWARM_AFTER_IDLE: Duration = Duration::from_secs(10);
/// Connections beyond the estimate, for jitter in the round trip.
const SPARE_CONNECTIONS: usize = 2;

/// Connections a pool needs so that no call at `qps` has to open one: the calls in flight at
/// once (Little's law: rate × round trip) with a quarter more for a slower round trip, plus
/// [`SPARE_CONNECTIONS`], at most `cap` (the worker cannot have more calls in flight than
/// its concurrency) and at least one.
pub fn pool_size(qps: u32, round_trip: Duration, cap: usize) -> usize {
    let in_flight = (f64::from(qps) * round_trip.as_secs_f64() * 1.25).ceil() as usize;
    (in_flight + SPARE_CONNECTIONS).min(cap).max(1)
}

/// Whether a pool last used at `last` (never: `None`) should be warmed before a call at `now`.
pub fn needs_warming(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|last| now.saturating_duration_since(last) >= REWARM_AFTER_IDLE)
}

/// What [`LiveClient::warm`] sizes the pool for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Warming {
    /// The calls per second this client may make (every account's quota together).
    pub qps: u32,
    /// The most calls it makes at once.
    pub max_connections: usize,
}

#[derive(Debug, Default)]
struct Warmth {
    /// Held while the pool is warmed: callers of `warm` wait for one warming, not start theirs.
    warming: tokio::sync::Mutex<()>,
    /// The last call started or finished, or the last warming finished.
    last_used: Mutex<Option<Instant>>,
}

/// A reusable StopCaster client (one connection pool).
#[derive(Clone, Debug)]
pub struct LiveClient {
    http: reqwest::Client,
    base: String,
    /// The `host` header a V3 signature covers.
    host: String,
    signature: SignatureVersion,
    warming: Option<Warming>,
    warmth: Arc<Warmth>,
    /// The endpoint's clock against ours, from its answers' `Date`.
    skew: Arc<Mutex<Skew>>,
}

impl LiveClient {
    pub fn new(config: &ClientConfig) -> Result<Self, ClientError> {
        let endpoint = config.endpoint.trim_end_matches('/');
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(ClientError::Endpoint(config.endpoint.clone()));
        }
        let http = crate::credentials::http::client_builder(config.ca_file.as_deref())?
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .user_agent(concat!("stopcaster/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(usize::MAX)
            .tcp_keepalive(Duration::from_secs(30))
            .build()?;
        let base = format!("{endpoint}/");
        let host = reqwest::Url::parse(&base)
            .ok()
            .and_then(|url| {
                let host = url.host_str()?.to_owned();
                Some(match url.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host,
                })
            })
            .ok_or_else(|| ClientError::Endpoint(config.endpoint.clone()))?;
        Ok(Self {
            http,
            base,
            host,
            signature: config.signature,
            warming: None,
            warmth: Arc::default(),
            skew: Arc::default(),
        })
    }

    /// Makes [`LiveClient::warm`] open connections for this rate.
    pub fn with_warming(mut self, warming: Warming) -> Self {
        self.warming = Some(warming);
        self
    }

    fn touch(&self) {
        *self.warmth.last_used.lock().expect("warmth poisoned") = Some(Instant::now());
    }

    fn needs_warming(&self) -> bool {
        needs_warming(
            *self.warmth.last_used.lock().expect("warmth poisoned"),
            Instant::now(),
        )
    }

    /// Before taking a pacer slot: if this client has been idle (or never used), opens the
    /// connections its calls will need, so that none of them waits for a handshake. Returns
    /// at once when the pool is in use; concurrent callers wait for the one warming. Failures
    /// are not errors: the calls will open connections themselves and say what went wrong.
    pub async fn warm(&self) {
        let Some(warming) = self.warming else {
            return;
        };
        if !self.needs_warming() {
            return;
        }
        let _one = self.warmth.warming.lock().await;
        if !self.needs_warming() {
            return;
        }
        let started = Instant::now();
        // The first request opens a connection; the second, on it, is one round trip.
        let opened = self.touch_endpoint().await;
        let round_trip = if opened {
            let asked = Instant::now();
            self.touch_endpoint().await.then(|| asked.elapsed())
        } else {
            None
        };
        let connections = match round_trip {
            Some(rtt) => {
                let n = pool_size(warming.qps, rtt, warming.max_connections);
                // At once: each request takes an idle connection or opens one.
                futures_util::future::join_all((0..n).map(|_| self.touch_endpoint())).await;
                n
            }
            None => 0,
        };
        tracing::debug!(
            connections,
            round_trip = ?round_trip,
            took = ?started.elapsed(),
            "connection pool warmed"
        );
        self.touch();
    }

    /// `GET /` without parameters, read to the end so its connection goes back to the pool.
    /// True if the endpoint answered at all.
    async fn touch_endpoint(&self) -> bool {
        match self.get_base().await {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %transport_error(&e).message, "warming a connection failed");
                false
            }
        }
    }

    /// Whether the endpoint answers HTTP at all, whatever the answer: the same `GET /` without
    /// parameters as the warming's, so no API call (no quota spent, no call counted). False
    /// when it cannot be had: connection refused, DNS, a certificate this client does not
    /// trust, a timeout. For a paused account, to notice the endpoint's return between probes.
    pub async fn reachable(&self) -> bool {
        self.get_base().await.is_ok()
    }

    async fn get_base(&self) -> Result<(), reqwest::Error> {
        self.http.get(&self.base).send().await?.bytes().await?;
        Ok(())
    }

    /// Makes one call signed as the client's settings say. Never returns an error: every
    /// failure is a [`CallOutcome`].
    pub async fn stop_caster(
        &self,
        credentials: &Credentials,
        request: StopCasterRequest<'_>,
    ) -> CallOutcome {
        self.stop_caster_signed(credentials, request, None).await
    }

    /// Makes one call with this signature (`None`: the client's own).
    pub async fn stop_caster_signed(
        &self,
        credentials: &Credentials,
        request: StopCasterRequest<'_>,
        signature: Option<SignatureVersion>,
    ) -> CallOutcome {
        self.call(credentials, request, signature).await.outcome
    }

    /// Seconds to add to this machine's clock to read the endpoint's (0 until an answer's
    /// `Date` shows a difference beyond noise).
    pub fn clock_skew(&self) -> i64 {
        self.skew.lock().expect("skew poisoned").correction()
    }

    /// Takes an answer's `Date` in; logs once when the correction changes by a step.
    fn observe_date(&self, date: Option<&str>, sent: time::OffsetDateTime) {
        let Some(date) = date.and_then(crate::time::parse_http_date) else {
            return;
        };
        let sample = skew::sample_between(date, sent, time::OffsetDateTime::now_utc());
        let (before, after) = {
            let mut skew = self.skew.lock().expect("skew poisoned");
            let before = skew.correction();
            skew.observe(sample);
            (before, skew.correction())
        };
        if ((after - before).abs() as f64) >= skew::STEP {
            tracing::warn!(
                endpoint = %self.base,
                skew_seconds = after,
                "this machine's clock differs from the endpoint's: calls are signed with the endpoint's time"
            );
        }
    }

    /// Makes one call with this signature (`None`: the client's own), signed with the
    /// endpoint's time as far as its answers told it, and returns what the answer said.
    pub async fn call(
        &self,
        credentials: &Credentials,
        request: StopCasterRequest<'_>,
        signature: Option<SignatureVersion>,
    ) -> Answer {
        let signed_with_skew = self.clock_skew();
        let nonce = uuid::Uuid::new_v4().to_string();
        let timestamp = signer::format_timestamp(
            time::OffsetDateTime::now_utc() + time::Duration::seconds(signed_with_skew),
        );
        let signed = sign_request(
            signature.unwrap_or(self.signature),
            credentials,
            request,
            Envelope {
                method: "POST",
                host: &self.host,
                nonce: &nonce,
                timestamp: &timestamp,
            },
        );
        let mut post = self.http.post(format!("{}?{}", self.base, signed.query));
        for (name, value) in &signed.headers {
            post = post.header(*name, value);
        }
        self.touch();
        let sent = time::OffsetDateTime::now_utc();
        let answer = |outcome, quota| Answer {
            outcome,
            quota,
            signed_with_skew,
            skew_after: self.clock_skew(),
        };
        let response = match post.send().await {
            Ok(response) => response,
            Err(e) => {
                return answer(
                    CallOutcome::Transport(transport_error(&e)),
                    QuotaHeaders::default(),
                );
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let quota = QuotaHeaders::read(header);
        self.observe_date(header("date"), sent);
        let outcome = match response.bytes().await {
            Ok(body) => interpret(status, &body),
            Err(e) => CallOutcome::Transport(transport_error(&e)),
        };
        self.touch();
        // interpret() scrubbed the parameters named like secrets; these are the values
        // themselves, wherever they are.
        let outcome =
            crate::scrub::scrub_outcome(outcome, &crate::scrub::known_values(credentials));
        answer(outcome, quota)
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
    let mut causes = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        causes.push_str(": ");
        causes.push_str(&err.to_string());
        source = err.source();
    }
    let kind = match kind {
        TransportKind::Connect => crate::outcome::connect_failure(&causes),
        other => other,
    };
    let message = match kind {
        TransportKind::Connect => "connection failed",
        TransportKind::Dns => "host name not resolved",
        TransportKind::Tls => "TLS handshake failed",
        TransportKind::Timeout => "timed out",
        TransportKind::Lost => "request or response lost",
    };
    TransportError {
        kind,
        message: format!("{message}{causes}"),
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
