//! The stand-in over real HTTP on 127.0.0.1, driven by our own client for every outcome the
//! worker must tell apart, and by raw requests for what our client never sends (replays, stale
//! timestamps, GET, form bodies, missing parameters).

mod faults;
mod requests;
mod throttle;
mod verdicts;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::stop_as;
use stopcaster::signed_query;
use stopcaster::signer;
use stopcaster::{CallOutcome, ClientConfig, LiveClient, StopCasterRequest, TransportKind};
use stopcaster::{CasterId, RegionId};
use stopcaster::{Credentials, Secret};
use stopcaster_fake_live::{
    self as fake_live, CallLogEntry, FakeLiveConfig, FakeLiveHandle, Fault, Stats, StudioState,
};

const KEY: &str = "LTAI-test-key";
const SECRET: &str = "test-secret/with+odd=chars";
const KEY_B: &str = "LTAI-other-key";
const SECRET_B: &str = "other-secret";

fn config() -> FakeLiveConfig {
    FakeLiveConfig::new(vec![
        (KEY.to_owned(), Secret::new(SECRET)),
        (KEY_B.to_owned(), Secret::new(SECRET_B)),
    ])
}

async fn start(config: FakeLiveConfig) -> FakeLiveHandle {
    fake_live::spawn(config).await.expect("stand-in starts")
}

fn creds() -> Credentials {
    Credentials::new(KEY, SECRET)
}

fn client(fake: &FakeLiveHandle) -> LiveClient {
    LiveClient::new(&ClientConfig::new(fake.endpoint())).unwrap()
}

async fn stop(client: &LiveClient, caster: &str) -> CallOutcome {
    stop_as(client, &creds(), caster).await
}

#[track_caller]
fn permanent(outcome: &CallOutcome, status: u16, code: &str) {
    match outcome {
        CallOutcome::Permanent(e) => assert_alibaba_error(e, status, code),
        other => panic!("expected permanent {status} {code}, got {other:?}"),
    }
}

/// An answer that refuses the credentials (the worker pauses the account on it).
fn refused(outcome: &CallOutcome, status: u16, code: &str) {
    match outcome {
        CallOutcome::CredentialsRefused(e) => assert_alibaba_error(e, status, code),
        other => panic!("expected credentials refused {status} {code}, got {other:?}"),
    }
}

fn assert_alibaba_error(e: &stopcaster::ApiError, status: u16, code: &str) {
    {
        {
            assert_eq!((e.http_status, e.code.as_str()), (status, code), "{e:?}");
            assert_eq!(e.host_id.as_deref(), Some("live.aliyuncs.com"));
            assert_eq!(
                e.recommend.as_deref(),
                Some(format!("https://api.aliyun.com/troubleshoot?q={code}&product=live").as_str())
            );
            assert!(e.request_id.is_some());
            assert!(!e.message.is_empty());
        }
    }
}

#[track_caller]
fn retryable(outcome: &CallOutcome, status: u16, code: &str) {
    match outcome {
        CallOutcome::Retryable(e) => {
            assert_eq!((e.http_status, e.code.as_str()), (status, code), "{e:?}")
        }
        other => panic!("expected retryable {status} {code}, got {other:?}"),
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(url: String) -> T {
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

async fn calls_for(fake: &FakeLiveHandle, filter: &str) -> Vec<CallLogEntry> {
    get_json(format!("{}/_fake/calls?{filter}", fake.endpoint())).await
}

/// A raw answer: status, content type, parsed JSON body (if it is JSON).
async fn send(request: reqwest::RequestBuilder) -> (u16, String, serde_json::Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.bytes().await.unwrap();
    (
        status,
        content_type,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

fn now_timestamp() -> String {
    signer::format_timestamp(time::OffsetDateTime::now_utc())
}

fn query(method: &str, caster: &str, nonce: &str, timestamp: &str) -> String {
    let caster_id = CasterId::parse(caster).unwrap();
    let region_id = RegionId::parse("cn-shanghai").unwrap();
    signed_query(
        method,
        &creds(),
        StopCasterRequest {
            caster_id: &caster_id,
            region_id: &region_id,
        },
        nonce,
        timestamp,
    )
}

fn new_nonce() -> String {
    uuid::Uuid::new_v4().to_string()
}
