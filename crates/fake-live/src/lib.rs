//! A local stand-in for the ApsaraVideo Live RPC endpoint (`live.aliyuncs.com`), serving
//! `Action=StopCaster`, `Version=2016-11-01`, and for the STS and ECS metadata endpoints that
//! hand out the credentials to call it with, so the worker, demos and tests run with no cloud
//! account, and so faults the real endpoint rarely shows can be produced on demand.
//!
//! It is meant to be told apart from Alibaba only by what it does not implement; what it does
//! implement follows Alibaba's answers. The official Python SDKs and credentials library call it
//! in `tests/it/python_sdk.rs`, and it verifies signatures with the same [`stopcaster_live::signer`] the
//! client signs with, which `tests/it/signature_vectors.rs` pins to the SDKs' signers.
//!
//! # Checks, in order
//! Parameters come from the query string and, for an `application/x-www-form-urlencoded`
//! body, from the body too (a body pair replaces a query pair of the same name). An empty value
//! counts as absent. One address serves both products: `Version` says which. The first check
//! that fails answers (errors of STS's actions name `sts.aliyuncs.com` as their `HostId`):
//!
//! | step | check | answer |
//! | --- | --- | --- |
//! | 1 | `Action`, `Version` present | 400 `MissingParameter` |
//! | 2 | `Version` is `2016-11-01` (live) or `2015-04-01` (STS) | 400 `InvalidVersion` |
//! | 3 | `Action` is `StopCaster` (live), or `AssumeRole`, `AssumeRoleWithOIDC`, `GetCallerIdentity` (STS) | 404 `InvalidAction.NotFound` |
//! | | `AssumeRoleWithOIDC` is not signed: it goes to its own checks (below) | |
//! | 4 | `AccessKeyId`, `Signature`, `SignatureMethod`, `SignatureNonce`, `SignatureVersion`, `Timestamp`, and the action's own (`CasterId`; `RoleArn`, `RoleSessionName` for `AssumeRole`) present (`RegionId`, `Format` optional) | 400 `MissingParameter` |
//! | 5 | `AccessKeyId` is configured, or is `STS.`-prefixed | 404 `InvalidAccessKeyId.NotFound` |
//! | 5a | for an `STS.` key: `SecurityToken` present; well-formed; issued with this key; not expired | 400 `MissingSecurityToken`, `InvalidSecurityToken.Malformed`, `.MismatchWithAccessKey`, `.Expired` |
//! | 6 | `SignatureMethod` `HMAC-SHA1`, `SignatureVersion` `1.0` | 400 `InvalidSignatureMethod` / `InvalidSignatureVersion` |
//! | 7 | `Timestamp` is `YYYY-MM-DDTHH:MM:SSZ`, within 15 minutes of the clock either way | 400 `InvalidTimeStamp.Format` / `InvalidTimeStamp.Expired` |
//! | 8 | `Signature` matches (the key's secret, or the temporary key's), over every other parameter received and the HTTP method | 400 `SignatureDoesNotMatch` (message ends with the server's string to sign) |
//! | 9 | `SignatureNonce` not used before by this key | 400 `SignatureNonceUsed` |
//! | 10 | `StopCaster`: fewer than `qps` admitted calls of this key's account in the last second (all keys of one UID, temporary keys of its roles included, share the window) | 400 `Throttling.User` |
//! | 11 | next scripted [`Fault`], else a 503 with probability `fail_rate` | the fault |
//! | 12 | `CasterId` is 1 to 64 of `A-Z a-z 0-9 - _` | 400 `InvalidCasterId.Malformed` |
//! | 13 | the studio exists (always, without a casters map) | 404 `InvalidCaster.NotFound` |
//! | 14 | the studio is running: it is stopped | 200 `{"RequestId"}`, else 400 `IncorrectSceneStatus` |
//!
//! After step 9, STS's own checks ([`sts`]):
//!
//! | action | check | answer |
//! | --- | --- | --- |
//! | `GetCallerIdentity` | none | 200 `{"RequestId", "IdentityType", "AccountId", "Arn", "PrincipalId", ...}` |
//! | `AssumeRole` | `RoleArn` is `acs:ram::<UID>:role/<name>` | 400 `InvalidParameter.RoleArn` |
//! | | the role is a `--ram-role` | 404 `EntityNotExist.Role` |
//! | | the caller's account is the role's | 403 `NoPermission` |
//! | | `RoleSessionName` is 2 to 64 of `A-Z a-z 0-9 . @ - _`; `DurationSeconds`, if any, 900 to 3600 | 400 `InvalidParameter.RoleSessionName` / `.DurationSeconds` |
//! | | | 200 `{"RequestId", "AssumedRoleUser", "Credentials"}` |
//! | `AssumeRoleWithOIDC` | `RoleArn`, `OIDCProviderArn`, `RoleSessionName` present | 400 `MissingParameter` |
//! | | `OIDCToken` not empty | 401 `AuthenticationFail.OIDCToken.Invalid` |
//! | | `RoleArn` as for `AssumeRole` | as for `AssumeRole` |
//! | | `OIDCProviderArn` is `acs:ram::<the role's UID>:oidc-provider/<name>` | 401 `AuthenticationFail.NoPermission` |
//! | | `OIDCToken` is the content of `--oidc-token-file`, read now | 401 `AuthenticationFail.OIDCToken.Invalid` |
//! | | session and duration as for `AssumeRole` | as for `AssumeRole` |
//!
//! Temporary credentials last `--sts-lifetime` (capped by a shorter `DurationSeconds`).
//!
//! A request with no parameters at all (`GET /`: a client opening a connection ahead of its
//! calls, as the worker does) is answered `MissingParameter` after the added latency, like
//! any request without `Action`, but it is no call: it is not logged and counts nowhere.
//!
//! A call is *admitted* once it passes step 10; only admitted calls count towards the window.
//! Added latency is slept after the call has been decided (so a studio is stopped even when the
//! client gives up waiting, as with the real endpoint) and before the answer is written.
//!
//! # Metadata service and credentials URI
//! See [`metadata`]: `PUT /latest/api/token`, `GET /latest/meta-data/ram/security-credentials/`
//! and `.../ROLE` (IMDSv2 token required), and `GET /_fake/credentials`.
//!
//! # Connections
//! See [`listener`]: HTTPS with `tls`, and `connect_delay` before each new connection's first
//! request is read (so it is decided, and counted, only then).
//!
//! # Admin API (not under `/`, so it cannot collide with RPC)
//! - `GET /_fake/calls[?caster_id=..&access_key_id=..]`: the call log, every request that
//!   reached the RPC handler (STS calls included), in decision order ([`CallLogEntry`]).
//! - `GET /_fake/casters`: `{"<CasterId>": "running" | "stopped"}`.
//! - `GET /_fake/stats`: [`Stats`].
//! - `POST /_fake/faults` with `{"fail_rate": F, "latency_ms": MS, "script": ["503", "500",
//!   "throttle", "html502", "drop", "stop-then-drop", "delay:MS"], "clear": bool}`, every field
//!   optional: changes fault injection at run time; answers the settings now in force.

// Items are `pub(crate)` unless the crate root exports them: the lint keeps it so.
#![warn(unreachable_pub)]

mod admin;
mod cli;
mod identity;
mod listener;
pub mod metadata;
mod protocol;
mod server;
mod severable;
mod state;
pub mod sts;
mod verify;
mod verify_v3;

pub use cli::{FakeLiveArgs, run};
pub use identity::{IdentityConfigError, Role, default_account, parse_access_key};
pub use listener::{TlsConfigError, tls_config};

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use stopcaster_live::credentials::Secret;

/// A production studio's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StudioState {
    Running,
    Stopped,
}

/// How the stand-in behaves.
#[derive(Clone, Debug)]
pub struct FakeLiveConfig {
    /// Accepted AccessKeyId and secret pairs.
    pub access_keys: Vec<(String, Secret)>,
    /// The account UID of a key; a key not named here is an account of its own
    /// ([`default_account`]).
    pub accounts: HashMap<String, String>,
    /// Admitted StopCaster calls per account in any sliding one-second window (0 admits none).
    pub qps: u32,
    /// Roles `AssumeRole` and `AssumeRoleWithOIDC` may assume; the first is also the one the
    /// metadata service and `/_fake/credentials` issue credentials for.
    pub ram_roles: Vec<Role>,
    /// The OIDC token `AssumeRoleWithOIDC` accepts, read afresh for each request.
    pub oidc_token_file: Option<PathBuf>,
    /// Lifetime of the temporary credentials issued.
    pub sts_lifetime: Duration,
    /// Serve HTTPS with this configuration ([`tls_config`]).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// A new connection's first request is read only after this long.
    pub connect_delay: Duration,
    /// `None`: every well-formed id is a running studio when first seen. `Some`: only these
    /// studios exist.
    pub casters: Option<HashMap<String, StudioState>>,
    /// Share of admitted calls answered 503 `ServiceUnavailable` (clamped to 0..=1).
    pub fail_rate: f64,
    /// Added to every call's answer.
    pub latency: Duration,
    /// Its clock runs this many seconds ahead (negative: behind) of the machine's: its
    /// timestamp checks and the `Date` of its answers.
    pub clock_offset_s: i64,
}

impl FakeLiveConfig {
    pub fn new(access_keys: Vec<(String, Secret)>) -> Self {
        Self {
            access_keys,
            accounts: HashMap::new(),
            qps: 10,
            ram_roles: Vec::new(),
            oidc_token_file: None,
            sts_lifetime: Duration::from_secs(3600),
            tls: None,
            connect_delay: Duration::ZERO,
            casters: None,
            fail_rate: 0.0,
            latency: Duration::ZERO,
            clock_offset_s: 0,
        }
    }

    /// Puts a configured key in account `uid`.
    pub fn with_account(mut self, access_key_id: &str, uid: &str) -> Self {
        self.accounts
            .insert(access_key_id.to_owned(), uid.to_owned());
        self
    }

    fn accepting(&self) -> listener::Accepting {
        listener::Accepting {
            tls: self.tls.clone(),
            connect_delay: self.connect_delay,
        }
    }
}

/// A scripted fault: applies to one admitted call (valid signature, fresh nonce, not
/// throttled), in the order pushed, before the random `fail_rate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 503 `ServiceUnavailable`; the studio is untouched.
    Status503,
    /// 500 `InternalError`; the studio is untouched.
    Status500InternalError,
    /// 400 `Throttling.User`; the studio is untouched.
    Throttle,
    /// 502 with an HTML body, as a gateway in front of the API answers; the studio is untouched.
    Html502,
    /// Reads the request, then closes the connection without answering; the studio is untouched.
    DropConnection,
    /// Processes the call (the studio stops), then waits this long before answering.
    Delay(Duration),
    /// Processes the call (the studio stops), then closes the connection without answering:
    /// the lost response that makes a retry meet `IncorrectSceneStatus`.
    StopThenDrop,
}

impl Fault {
    /// Parses the names `POST /_fake/faults` takes: `503`, `500`, `throttle`, `html502`,
    /// `drop`, `stop-then-drop`, `delay:MS`.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "503" => Fault::Status503,
            "500" => Fault::Status500InternalError,
            "throttle" => Fault::Throttle,
            "html502" => Fault::Html502,
            "drop" => Fault::DropConnection,
            "stop-then-drop" => Fault::StopThenDrop,
            other => {
                let ms = other.strip_prefix("delay:")?.parse().ok()?;
                Fault::Delay(Duration::from_millis(ms))
            }
        })
    }

    /// Its name in the call log (`delay` for any delay).
    pub fn label(&self) -> &'static str {
        match self {
            Fault::Status503 => "503",
            Fault::Status500InternalError => "500",
            Fault::Throttle => "throttle",
            Fault::Html502 => "html502",
            Fault::DropConnection => "drop",
            Fault::Delay(_) => "delay",
            Fault::StopThenDrop => "stop-then-drop",
        }
    }
}

/// One call as `GET /_fake/calls` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallLogEntry {
    /// When it was decided: RFC 3339, UTC, milliseconds truncated. On the stand-in's monotonic
    /// clock from its start, so the spacing of calls is exactly what its throttle saw.
    pub time: String,
    /// The machine's wall clock read when it was decided, for comparing with times the callers
    /// read from the same clock (a due time, an answer's time): after a step of the wall clock
    /// (a virtual machine's clock set right after a pause) `time` is off by the step, this
    /// is not.
    #[serde(default)]
    pub wall_time: String,
    pub method: String,
    pub access_key_id: Option<String>,
    pub caster_id: Option<String>,
    pub action: Option<String>,
    /// `None`: the connection was closed without an answer (see `fault`).
    pub http_status: Option<u16>,
    /// The error code answered; `None` for a success, an HTML 502 or no answer.
    pub code: Option<String>,
    /// Upper-case UUID; the `RequestId` of the answer, if one was sent.
    pub request_id: String,
    pub nonce: Option<String>,
    /// Passed the throttle, so it counts in its account's window.
    pub admitted: bool,
    /// The scripted fault applied to it ([`Fault::label`]).
    pub fault: Option<String>,
    /// The caller's account UID, once its key checked out (for `AssumeRoleWithOIDC`, the
    /// role's).
    #[serde(default)]
    pub account_uid: Option<String>,
    /// How it was signed: `v3` (`ACS3-HMAC-SHA256`, `Authorization` header) or `v1` (the RPC
    /// signature in the parameters).
    #[serde(default)]
    pub signature: String,
}

/// Counts over the whole call log, as `GET /_fake/stats` shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub total: u64,
    /// Answered 200.
    pub ok: u64,
    /// Answered `Throttling.User`.
    pub throttled: u64,
    /// Closed without an answer.
    pub dropped: u64,
    pub by_code: BTreeMap<String, u64>,
    pub by_fault: BTreeMap<String, u64>,
    pub admitted_by_key: BTreeMap<String, u64>,
    /// Per AccessKeyId, the most admitted calls within any window shorter than one second.
    pub max_in_any_1s_window: BTreeMap<String, u64>,
    #[serde(default)]
    pub admitted_by_account: BTreeMap<String, u64>,
    /// Per account UID, the most admitted calls within any window shorter than one second:
    /// never more than `qps`.
    #[serde(default)]
    pub max_in_any_1s_window_by_account: BTreeMap<String, u64>,
}

/// Serves until `shutdown` is cancelled, then waits for calls in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: FakeLiveConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = listener::Listener::new(listener, config.accepting())?;
    server::run(listener, Arc::new(server::Shared::new(config)), shutdown).await
}

/// Binds 127.0.0.1 on a free port and serves there on the current runtime until the handle is
/// dropped.
pub async fn spawn(config: FakeLiveConfig) -> std::io::Result<FakeLiveHandle> {
    let tcp = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = tcp.local_addr()?;
    let tls = config.tls.is_some();
    let listener = listener::Listener::new(tcp, config.accepting())?;
    let shared = Arc::new(server::Shared::new(config));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server::run(listener, shared.clone(), shutdown.clone()));
    drop(task);
    Ok(FakeLiveHandle {
        addr,
        tls,
        shutdown,
        shared,
    })
}

/// A running stand-in; stops serving when dropped.
pub struct FakeLiveHandle {
    pub addr: SocketAddr,
    tls: bool,
    shutdown: CancellationToken,
    shared: Arc<server::Shared>,
}

impl FakeLiveHandle {
    /// `http://127.0.0.1:PORT` (`https://` when serving TLS), what `ClientConfig::endpoint`
    /// wants.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn set_fail_rate(&self, f: f64) {
        self.shared.set_fail_rate(f);
    }

    pub fn set_latency(&self, d: Duration) {
        self.shared.set_latency(d);
    }

    /// Creates the studio or changes its state.
    pub fn set_caster(&self, id: &str, state: StudioState) {
        self.shared.lock().studios.set(id, state);
    }

    /// Appends faults to the script.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.lock().faults.extend(faults);
    }

    /// The call log, as `GET /_fake/calls` serves it.
    pub fn calls(&self) -> Vec<CallLogEntry> {
        self.shared.calls(None, None)
    }

    /// A studio's state, `None` if it does not exist (yet).
    pub fn caster(&self, id: &str) -> Option<StudioState> {
        self.shared.lock().studios.get(id)
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Stops serving (also done on drop).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }
}

impl fmt::Debug for FakeLiveHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeLiveHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeLiveHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Reads a `--casters` file: a JSON object `{"<CasterId>": "running" | "stopped"}`.
pub fn load_casters(path: &Path) -> Result<HashMap<String, StudioState>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read casters file {}: {e}", path.display()))?;
    let casters: HashMap<String, StudioState> = serde_json::from_str(&text).map_err(|e| {
        format!(
            "casters file {} is not a JSON object of \"running\" or \"stopped\": {e}",
            path.display()
        )
    })?;
    // Such an id could never be reached: the API refuses it as malformed first.
    if let Some(bad) = casters.keys().find(|id| !state::well_formed_caster_id(id)) {
        return Err(format!(
            "casters file {}: {bad:?} is not a well-formed CasterId (1 to 64 of A-Z a-z 0-9 - _)",
            path.display()
        ));
    }
    Ok(casters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_names_round_trip() {
        for name in [
            "503",
            "500",
            "throttle",
            "html502",
            "drop",
            "stop-then-drop",
        ] {
            assert_eq!(Fault::parse(name).unwrap().label(), name);
        }
        assert_eq!(
            Fault::parse("delay:250"),
            Some(Fault::Delay(Duration::from_millis(250)))
        );
        assert_eq!(Fault::parse("delay:x"), None);
        assert_eq!(Fault::parse("404"), None);
    }

    #[test]
    fn casters_file() {
        let dir = std::env::temp_dir().join(format!("fake-live-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.json");
        std::fs::write(&good, r#"{"a-1": "running", "B_2": "stopped"}"#).unwrap();
        let m = load_casters(&good).unwrap();
        assert_eq!(m["a-1"], StudioState::Running);
        assert_eq!(m["B_2"], StudioState::Stopped);
        let bad_state = dir.join("bad-state.json");
        std::fs::write(&bad_state, r#"{"a": "paused"}"#).unwrap();
        assert!(
            load_casters(&bad_state)
                .unwrap_err()
                .contains("bad-state.json")
        );
        let bad_id = dir.join("bad-id.json");
        std::fs::write(&bad_id, r#"{"a b": "running"}"#).unwrap();
        assert!(load_casters(&bad_id).unwrap_err().contains("\"a b\""));
        assert!(load_casters(&dir.join("missing.json")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
