//! What the HTTP sources send and how the background refresh behaves, against [`Recorder`]: a
//! local server that records every request and answers what each test scripts, nothing more.
//! It has no rules and no keys of its own (a test may check a signature in its asserts); what STS and the metadata service do with
//! a request (signatures, tokens, roles) is tested against the one stand-in, `fake-live`, in
//! the integration tests (`tests/it/credentials_provider.rs`). Lifetimes are a few seconds;
//! the tests await conditions rather than sleeping, except to let a lifetime pass where that is
//! the point.

mod refresh;
mod sources;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use time::{Duration, OffsetDateTime};
use tokio_util::sync::CancellationToken;

use super::chain::{
    self, CliConfigFile, EcsRole, OidcRole, RamRole, Source, SourceKind, UriSource,
};
use super::refresh::{CredentialsError, CredentialsProvider, ProviderContext, RefreshPolicy};
use super::{Credentials, HttpClients};
use crate::signer;

/// One request as the recorder saw it: query and form parameters merged.
#[derive(Clone, Debug)]
struct Seen {
    at: OffsetDateTime,
    method: String,
    path: String,
    params: BTreeMap<String, String>,
    headers: HashMap<String, String>,
    answered: u16,
}

type Script = dyn Fn(&Seen) -> (u16, String) + Send + Sync;

/// Records requests and answers each with what the test's script returns for it.
struct Recorder {
    script: Box<Script>,
    seen: Mutex<Vec<Seen>>,
}

impl Recorder {
    /// Serves on 127.0.0.1; the recorder and its base URL.
    async fn serve(
        script: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static,
    ) -> (Arc<Self>, String) {
        let recorder = Arc::new(Self {
            script: Box::new(script),
            seen: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(record)
            .with_state(recorder.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (recorder, format!("http://{addr}"))
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self, pred: impl Fn(&Seen) -> bool) -> usize {
        self.seen.lock().unwrap().iter().filter(|s| pred(s)).count()
    }
}

async fn record(
    State(recorder): State<Arc<Recorder>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> (axum::http::StatusCode, String) {
    let mut params = BTreeMap::new();
    for text in [uri.query().unwrap_or(""), body.as_str()] {
        let url = reqwest::Url::parse(&format!("http://form/?{text}")).unwrap();
        params.extend(
            url.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned())),
        );
    }
    let mut seen = Seen {
        at: OffsetDateTime::now_utc(),
        method: method.to_string(),
        path: uri.path().to_owned(),
        params,
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        answered: 0,
    };
    let (status, body) = (recorder.script)(&seen);
    seen.answered = status;
    recorder.seen.lock().unwrap().push(seen);
    (axum::http::StatusCode::from_u16(status).unwrap(), body)
}

/// Numbered temporary credentials living `lifetime`, in the flat shape of the metadata service
/// and a credentials URI; `{"Credentials": …}` of STS when `sts`.
fn issued(n: u64, lifetime: Duration, sts: bool) -> String {
    let creds = serde_json::json!({
        "AccessKeyId": format!("STS.issued{n}"),
        "AccessKeySecret": format!("issued-secret-{n}"),
        "SecurityToken": format!("issued-token-{n}"),
        "Expiration": signer::format_timestamp(OffsetDateTime::now_utc() + lifetime),
    });
    let body = if sts {
        serde_json::json!({"RequestId": "req-2", "Credentials": creds})
    } else {
        let mut flat = creds;
        flat["Code"] = "Success".into();
        flat
    };
    body.to_string()
}

/// A credentials URI answering fresh numbered credentials, or 500 while `failing` is set.
async fn uri_server(lifetime: Duration) -> (Arc<Recorder>, String, Arc<AtomicBool>) {
    let failing = Arc::new(AtomicBool::new(false));
    let counter = AtomicU64::new(0);
    let fail = failing.clone();
    let (recorder, base) = Recorder::serve(move |_| {
        if fail.load(Ordering::SeqCst) {
            let body = serde_json::json!({"RequestId": "req-1", "Code": "InternalError",
                "Message": "The request processing has failed due to some unknown error."});
            return (500, body.to_string());
        }
        (
            200,
            issued(counter.fetch_add(1, Ordering::SeqCst) + 1, lifetime, false),
        )
    })
    .await;
    (recorder, base, failing)
}

fn ctx(shutdown: &CancellationToken) -> ProviderContext {
    ProviderContext {
        clients: HttpClients::new(None).unwrap(),
        policy: RefreshPolicy {
            min_backoff: StdDuration::from_millis(100),
            max_backoff: StdDuration::from_millis(300),
        },
        shutdown: shutdown.clone(),
    }
}

/// Awaits `cond`, checking every 20 ms, for at most `within`.
async fn wait_for(what: &str, within: StdDuration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

fn uri_source(base: &str) -> Source {
    Source {
        label: "credentials-uri".into(),
        kind: SourceKind::Uri(UriSource {
            url: format!("{base}/creds?token=uri-query-secret"),
        }),
    }
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("creds-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An STS that answers every `AssumeRole*` with numbered credentials living `lifetime`.
async fn sts_server(lifetime: Duration) -> (Arc<Recorder>, String) {
    let counter = AtomicU64::new(0);
    Recorder::serve(
        move |seen| match seen.params.get("Action").map(String::as_str) {
            Some("GetCallerIdentity") => (
                200,
                serde_json::json!({"RequestId": "req-3", "AccountId": "1234567890123456"})
                    .to_string(),
            ),
            _ => (
                200,
                issued(counter.fetch_add(1, Ordering::SeqCst) + 1, lifetime, true),
            ),
        },
    )
    .await
}

fn alibaba_error(code: &str, message: &str) -> String {
    serde_json::json!({"RequestId": "req-1", "HostId": "recorder", "Code": code,
        "Message": message, "Recommend": "https://api.aliyun.com"})
    .to_string()
}
