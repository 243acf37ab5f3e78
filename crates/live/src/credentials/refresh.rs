//! Keeping temporary credentials fresh: the pure timing rules ([`refresh_at`], [`usable_until`])
//! and [`CredentialsProvider`], which holds the current credentials and refreshes them in the
//! background.
//!
//! The contract: temporary credentials are refreshed "when a third of their lifetime remains,
//! and at the latest 15 minutes before expiry"; a failed refresh is retried with backoff while
//! the current ones are still valid; no call is signed with expired credentials. Alibaba's
//! libraries refresh lazily on the caller's path (credentials-python `refreshable.py`: stale 15
//! minutes before expiry); here a task does it ahead of time, so a StopCaster call never waits
//! for STS.

use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use backon::Retryable as _;
use time::{Duration, OffsetDateTime};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::Credentials;
use super::account::{AccountKey, resolve_account_key};
use super::chain::{self, ConfigError, EcsRole, Source, SourceKind};
use super::fetch::fetch;
use super::http::{ClientBuildError, FetchError, FetchErrorKind, HttpClients};

/// The latest a refresh may come: this long before expiry, when the lifetime allows.
pub(super) const LATEST_BEFORE_EXPIRY: Duration = Duration::minutes(15);
/// A refresh never comes sooner than this after the credentials were obtained (or a third of
/// their lifetime, if that is shorter), so a source issuing lifetimes just over 15 minutes is
/// not asked again every second.
pub(super) const MIN_REFRESH_INTERVAL: Duration = Duration::minutes(1);
/// Credentials are treated as expired this long before their `Expiration` (or a tenth of their
/// lifetime, if shorter): a call signed just before expiry could arrive just after it, and
/// clocks differ by a little.
pub(super) const EXPIRY_MARGIN: Duration = Duration::seconds(10);

/// When to refresh credentials obtained at `obtained` that expire at `expires`.
///
/// With lifetime `L = expires - obtained`, the time left at the refresh is `max(L/3, 15 min)`
/// when `L > 15 min` (a third remains, or 15 minutes if that is more), and `L/3` otherwise (the
/// 15-minute bound cannot be met, so only the third applies): 1 h refreshes at 40 min (20 min
/// left), 2 h at 80 min, 20 min at 5 min (15 left), 900 s at 600 s (300 left), 3 s at 2 s. The
/// refresh is never sooner than `min(L/3, 1 min)` after `obtained` ([`MIN_REFRESH_INTERVAL`]).
/// Credentials already expired when obtained are refreshed at once.
pub(super) fn refresh_at(obtained: OffsetDateTime, expires: OffsetDateTime) -> OffsetDateTime {
    let lifetime = expires - obtained;
    if lifetime <= Duration::ZERO {
        return obtained;
    }
    let third = lifetime / 3_i32;
    let left = if lifetime > LATEST_BEFORE_EXPIRY {
        third.max(LATEST_BEFORE_EXPIRY)
    } else {
        third
    };
    (expires - left).max(obtained + third.min(MIN_REFRESH_INTERVAL))
}

/// Until when credentials may sign a call: `expires` less `min(10 s, L/10)`.
pub(super) fn usable_until(obtained: OffsetDateTime, expires: OffsetDateTime) -> OffsetDateTime {
    let lifetime = (expires - obtained).max(Duration::ZERO);
    expires - EXPIRY_MARGIN.min(lifetime / 10_i32)
}

/// The backoff between failed refreshes: exponential with jitter, without an end (after
/// expiry, too, the source is asked again until it answers).
#[derive(Clone, Copy, Debug)]
pub struct RefreshPolicy {
    pub min_backoff: StdDuration,
    pub max_backoff: StdDuration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            min_backoff: StdDuration::from_secs(1),
            max_backoff: StdDuration::from_secs(60),
        }
    }
}

impl RefreshPolicy {
    fn backoff(&self) -> backon::ExponentialBuilder {
        backon::ExponentialBuilder::new()
            .with_min_delay(self.min_backoff)
            .with_max_delay(self.max_backoff)
            .with_jitter()
            .without_max_times()
    }
}

/// What a provider needs besides its source.
#[derive(Clone, Debug)]
pub struct ProviderContext {
    pub clients: HttpClients,
    pub policy: RefreshPolicy,
    /// Cancelling it stops the background refresh (so does dropping the last handle).
    pub shutdown: CancellationToken,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Clients(#[from] ClientBuildError),
    /// Nothing configured, and the chain's last resort, the ECS metadata service, is not there.
    #[error(
        "no credentials configured: set {} and {} (or another source of the default chain: \
         OIDC, a credentials URI, an aliyun CLI profile), or run on an ECS instance with a RAM \
         role; {} skips the metadata service. It was asked: {detail}",
        chain::ACCESS_KEY_ID,
        chain::ACCESS_KEY_SECRET,
        chain::ECS_METADATA_DISABLED
    )]
    NoCredentials { detail: Box<FetchError> },
    #[error("credentials from {source_label}: {error}")]
    Fetch {
        source_label: String,
        #[source]
        error: Box<FetchError>,
    },
    #[error(
        "the credentials from {source_label} expired at {} and no refresh has succeeded{}",
        crate::signer::format_timestamp(*expired_at),
        last_error.as_deref().map(|e| format!(" (last error: {e})")).unwrap_or_default()
    )]
    Expired {
        source_label: String,
        expired_at: OffsetDateTime,
        last_error: Option<String>,
    },
}

#[derive(Clone)]
struct Held {
    credentials: Arc<Credentials>,
    obtained: OffsetDateTime,
    /// Bumped at every store, so concurrent refreshes can tell one already happened.
    generation: u64,
}

struct Shared {
    source: Source,
    clients: HttpClients,
    policy: RefreshPolicy,
    state: watch::Sender<Held>,
    /// One fetch at a time: the background refresh and `refresh_now` never both ask.
    fetch_lock: tokio::sync::Mutex<()>,
    last_error: Mutex<Option<String>>,
}

/// The handles' shared part; dropping it (the last [`CredentialsProvider`]) stops the task,
/// which holds only [`Shared`].
struct Handle {
    shared: Arc<Shared>,
    _stop: DropGuard,
}

/// The current credentials of one source, refreshed in the background. Cheap to clone.
#[derive(Clone)]
pub struct CredentialsProvider {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for CredentialsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.handle.shared.state.borrow().clone();
        f.debug_struct("CredentialsProvider")
            .field("source", &self.handle.shared.source.label)
            .field("credentials", &held.credentials)
            .finish()
    }
}

impl CredentialsProvider {
    /// Fetches the first credentials (an error if that fails) and, for temporary ones, starts
    /// the background refresh. Needs a Tokio runtime.
    pub async fn start(source: Source, ctx: ProviderContext) -> Result<Self, CredentialsError> {
        let obtained = super::clock::now();
        let credentials = fetch(&source, &ctx.clients)
            .await
            .map_err(|e| start_error(&source, e))?;
        // Static keys are no news (the worker's start-up line names them); temporary ones are.
        if credentials.expiration().is_some() {
            tracing::info!(
                source = %source.label,
                access_key_id = credentials.access_key_id(),
                expires = ?credentials.expiration(),
                "credentials obtained"
            );
        }
        let refreshing = credentials.expiration().is_some();
        let (state, _) = watch::channel(Held {
            credentials: Arc::new(credentials),
            obtained,
            generation: 0,
        });
        let shared = Arc::new(Shared {
            source,
            clients: ctx.clients,
            policy: ctx.policy,
            state,
            fetch_lock: tokio::sync::Mutex::new(()),
            last_error: Mutex::new(None),
        });
        let stop = ctx.shutdown.child_token();
        if refreshing {
            tokio::spawn(run(shared.clone(), stop.clone()));
        }
        Ok(Self {
            handle: Arc::new(Handle {
                shared,
                _stop: stop.drop_guard(),
            }),
        })
    }

    /// The credentials to sign with now; an error once they are (nearly, see
    /// [`usable_until`]) expired and no refresh has succeeded.
    pub fn current(&self) -> Result<Arc<Credentials>, CredentialsError> {
        self.handle.shared.current()
    }

    /// Fetches new credentials now (when the API refused the current ones) and returns them.
    /// Calls that overlap share one fetch. A no-op for static sources, which have nothing
    /// newer to give.
    pub async fn refresh_now(&self) -> Result<Arc<Credentials>, CredentialsError> {
        let shared = &self.handle.shared;
        if shared.source.is_static() {
            return shared.current();
        }
        let seen = shared.state.borrow().generation;
        shared
            .refresh_once(seen)
            .await
            .map_err(|error| CredentialsError::Fetch {
                source_label: shared.source.label.clone(),
                error: Box::new(error),
            })?;
        shared.current()
    }

    /// The source's label (`env`, `oidc`, `ecs-ram-role`...).
    pub fn source_label(&self) -> &str {
        &self.handle.shared.source.label
    }

    /// The source itself, e.g. for its STS endpoint.
    pub fn source(&self) -> &Source {
        &self.handle.shared.source
    }

    /// The HTTP clients the provider uses (for [`super::sts::caller_identity`]).
    pub fn clients(&self) -> &HttpClients {
        &self.handle.shared.clients
    }

    /// The pacer key for these credentials ([`super::account`]): `configured` if given, else
    /// `GetCallerIdentity` at the source's own STS endpoint or `default_sts_endpoint`
    /// ([`chain::sts_endpoint`]), else the AccessKeyId with a warning. Call it once, after
    /// `start`: the UID does not change when temporary keys do.
    pub async fn account_key(
        &self,
        account: &str,
        configured: Option<&str>,
        default_sts_endpoint: &str,
    ) -> Result<AccountKey, CredentialsError> {
        let credentials = self.current()?;
        let endpoint = self.source().sts_endpoint().unwrap_or(default_sts_endpoint);
        Ok(resolve_account_key(
            account,
            configured,
            &self.clients().sts,
            endpoint,
            &credentials,
        )
        .await)
    }
}

impl Shared {
    fn current(&self) -> Result<Arc<Credentials>, CredentialsError> {
        let held = self.state.borrow().clone();
        if let Some(expires) = held.credentials.expiration()
            && super::clock::now() >= usable_until(held.obtained, expires)
        {
            return Err(CredentialsError::Expired {
                source_label: self.source.label.clone(),
                expired_at: expires,
                last_error: self.last_error.lock().expect("not poisoned").clone(),
            });
        }
        Ok(held.credentials)
    }

    /// Fetches and stores new credentials, unless a store happened since generation `seen`
    /// (another refresh got there first: its result is as fresh as ours would be).
    async fn refresh_once(&self, seen: u64) -> Result<(), FetchError> {
        let _one_at_a_time = self.fetch_lock.lock().await;
        if self.state.borrow().generation != seen {
            return Ok(());
        }
        let obtained = super::clock::now();
        match fetch(&self.source, &self.clients).await {
            Ok(credentials) => {
                tracing::info!(
                    source = %self.source.label,
                    access_key_id = credentials.access_key_id(),
                    expires = ?credentials.expiration(),
                    "credentials refreshed"
                );
                *self.last_error.lock().expect("not poisoned") = None;
                self.state.send_modify(|held| {
                    *held = Held {
                        credentials: Arc::new(credentials),
                        obtained,
                        generation: held.generation + 1,
                    }
                });
                Ok(())
            }
            Err(e) => {
                *self.last_error.lock().expect("not poisoned") = Some(e.to_string());
                Err(e)
            }
        }
    }
}

/// The background refresh: sleeps until [`refresh_at`], refreshes with backoff until it works,
/// starts over; a `refresh_now` in between reschedules it. Ends when cancelled or when the
/// credentials have no expiry.
async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let mut changes = shared.state.subscribe();
    loop {
        let held = changes.borrow_and_update().clone();
        let Some(expires) = held.credentials.expiration() else {
            return;
        };
        let at = refresh_at(held.obtained, expires);
        tokio::select! {
            () = stop.cancelled() => return,
            _ = changes.changed() => continue,
            () = sleep_until(at) => {}
        }
        let label = shared.source.label.clone();
        let attempt = || shared.refresh_once(held.generation);
        let refresh = attempt
            .retry(shared.policy.backoff())
            .sleep(tokio::time::sleep)
            .notify(|e: &FetchError, wait: StdDuration| {
                let valid = super::clock::now() < usable_until(held.obtained, expires);
                tracing::warn!(
                    source = %label,
                    error = %e,
                    retry_in_ms = wait.as_millis() as u64,
                    current_still_valid = valid,
                    "credentials refresh failed"
                );
            });
        tokio::select! {
            () = stop.cancelled() => return,
            _ = refresh => {}
        }
    }
}

/// Sleeps until a wall-clock time (expiry is wall-clock, so the schedule is too).
async fn sleep_until(at: OffsetDateTime) {
    let wait = at - super::clock::now();
    if wait > Duration::ZERO {
        tokio::time::sleep(wait.unsigned_abs()).await;
    }
}

/// A first fetch that failed. From the implicit ECS source (nothing configured), a metadata
/// service that is not there or knows no role means there are no credentials at all.
fn start_error(source: &Source, error: FetchError) -> CredentialsError {
    let implicit = matches!(
        &source.kind,
        SourceKind::Ecs(EcsRole { implicit: true, .. })
    );
    if implicit && (error.is_connect() || matches!(error.kind, FetchErrorKind::NoRole)) {
        CredentialsError::NoCredentials {
            detail: Box::new(error),
        }
    } else {
        CredentialsError::Fetch {
            source_label: source.label.clone(),
            error: Box::new(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2024-01-01 00:00:00 UTC);

    fn after(lifetime: Duration) -> Duration {
        refresh_at(T0, T0 + lifetime) - T0
    }

    #[test]
    fn one_hour_refreshes_when_a_third_remains() {
        assert_eq!(after(Duration::hours(1)), Duration::minutes(40));
        assert_eq!(after(Duration::hours(2)), Duration::minutes(80));
        assert_eq!(after(Duration::hours(6)), Duration::hours(4));
    }

    #[test]
    fn fifteen_minutes_before_expiry_at_the_latest() {
        // A third of 30 min is 10 min: too close, 15 min before wins.
        assert_eq!(after(Duration::minutes(30)), Duration::minutes(15));
        assert_eq!(after(Duration::minutes(20)), Duration::minutes(5));
        // 45 min: both rules agree.
        assert_eq!(after(Duration::minutes(45)), Duration::minutes(30));
    }

    #[test]
    fn lifetimes_of_fifteen_minutes_or_less_keep_a_third() {
        assert_eq!(after(Duration::seconds(900)), Duration::seconds(600));
        assert_eq!(after(Duration::minutes(15)), Duration::minutes(10));
        assert_eq!(after(Duration::seconds(3)), Duration::seconds(2));
        assert_eq!(after(Duration::seconds(6)), Duration::seconds(4));
    }

    #[test]
    fn never_sooner_than_a_minute_or_a_third() {
        // 15 min + 1 s: 15 min before expiry would be 1 s after obtaining.
        assert_eq!(after(Duration::seconds(901)), Duration::minutes(1));
        // Already expired, or expiring as obtained: at once.
        assert_eq!(refresh_at(T0, T0 - Duration::seconds(5)), T0);
        assert_eq!(refresh_at(T0, T0), T0);
    }

    #[test]
    fn usable_until_keeps_a_small_margin() {
        assert_eq!(
            usable_until(T0, T0 + Duration::hours(1)),
            T0 + Duration::hours(1) - Duration::seconds(10)
        );
        assert_eq!(
            usable_until(T0, T0 + Duration::seconds(3)),
            T0 + Duration::milliseconds(2700)
        );
        assert_eq!(
            usable_until(T0, T0 - Duration::seconds(1)),
            T0 - Duration::seconds(1)
        );
    }

    #[tokio::test]
    async fn static_sources_never_expire_and_refresh_now_is_a_no_op() {
        let source = Source {
            label: "env".into(),
            kind: SourceKind::Static(Credentials::new("LTAIs", "s")),
        };
        let provider = CredentialsProvider::start(
            source,
            ProviderContext {
                clients: HttpClients::new(None).unwrap(),
                policy: RefreshPolicy::default(),
                shutdown: CancellationToken::new(),
            },
        )
        .await
        .unwrap();
        assert_eq!(provider.current().unwrap().access_key_id(), "LTAIs");
        assert_eq!(
            provider.refresh_now().await.unwrap().access_key_id(),
            "LTAIs"
        );
        assert!(!format!("{provider:?}").contains("\"s\""));
    }
}
