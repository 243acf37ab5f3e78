//! The stand-in's STS, ECS metadata service, credentials URI, per-account throttle, TLS and
//! connect delay, over real HTTP on 127.0.0.1 with real clients: our own `LiveClient` for
//! StopCaster, hand-signed requests for STS (what `alibabacloud_credentials` sends; the Python
//! library itself is driven in `tests/python_sdk.rs`).

mod keys;
mod metadata;
mod sts;
mod transport;

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use stopcaster::signer;
use stopcaster::{CallOutcome, ClientConfig, LiveClient, StopCasterRequest};
use stopcaster::{CasterId, RegionId};
use stopcaster::{Credentials, Secret};
use stopcaster_fake_live::{
    self as fake_live, CallLogEntry, FakeLiveConfig, FakeLiveHandle, Role, Stats,
};

/// Two keys of account 100 (a RAM user's and the account's, say), one of account 200.
const A1: (&str, &str) = ("LTAI-a1", "secret-a1");
const A2: (&str, &str) = ("LTAI-a2", "secret-a2");
const B: (&str, &str) = ("LTAI-b", "secret-b");
const UID_A: &str = "1000000000000100";
const UID_B: &str = "1000000000000200";
const ROLE: &str = "acs:ram::1000000000000100:role/stopcaster";
const PROVIDER: &str = "acs:ram::1000000000000100:oidc-provider/ack-rrsa";

fn config() -> FakeLiveConfig {
    let mut config = FakeLiveConfig::new(
        [A1, A2, B]
            .iter()
            .map(|(id, secret)| (id.to_string(), Secret::new(*secret)))
            .collect(),
    )
    .with_account(A1.0, UID_A)
    .with_account(A2.0, UID_A)
    .with_account(B.0, UID_B);
    config.ram_roles = vec![Role::parse(ROLE).unwrap()];
    config
}

async fn start(config: FakeLiveConfig) -> FakeLiveHandle {
    fake_live::spawn(config).await.expect("stand-in starts")
}

async fn json<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> T {
    let body = response.bytes().await.unwrap();
    serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)))
}

/// An STS call, signed like `alibabacloud_credentials` signs AssumeRole (GET, every parameter
/// in the query) when `key` is given, unsigned (as AssumeRoleWithOIDC is) otherwise.
async fn sts(
    fake: &FakeLiveHandle,
    key: Option<(&str, &str, Option<&str>)>,
    action: &str,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let nonce = uuid::Uuid::new_v4().to_string();
    let timestamp = signer::format_timestamp(time::OffsetDateTime::now_utc());
    let mut params: BTreeMap<&str, &str> = BTreeMap::from([
        ("Action", action),
        ("Format", "JSON"),
        ("Version", "2015-04-01"),
        ("Timestamp", timestamp.as_str()),
    ]);
    params.extend(extra.iter().copied());
    if let Some((id, _, token)) = key {
        params.extend([
            ("AccessKeyId", id),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", nonce.as_str()),
        ]);
        if let Some(token) = token {
            params.insert("SecurityToken", token);
        }
    }
    let mut query = signer::canonical_query(params.iter().map(|(k, v)| (*k, *v)));
    if let Some((_, secret, _)) = key {
        let signature = signer::sign_string(secret, &signer::string_to_sign("GET", &query));
        query.push_str(&format!(
            "&Signature={}",
            signer::percent_encode(&signature)
        ));
    }
    let response = reqwest::get(format!("{}/?{query}", fake.endpoint()))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, json(response).await)
}

#[track_caller]
fn sts_error(answer: &(u16, Value), status: u16, code: &str) {
    let (got, body) = answer;
    assert_eq!(
        (*got, body["Code"].as_str()),
        (status, Some(code)),
        "{body}"
    );
    assert_eq!(body["HostId"], "sts.aliyuncs.com", "{body}");
    assert!(body["RequestId"].as_str().is_some_and(|r| r.len() == 36));
    assert!(body["Message"].as_str().is_some_and(|m| !m.is_empty()));
}

/// Temporary credentials from an STS answer.
#[track_caller]
fn temp_creds(answer: &(u16, Value)) -> Credentials {
    let (status, body) = answer;
    assert_eq!(*status, 200, "{body}");
    let c = &body["Credentials"];
    let id = c["AccessKeyId"].as_str().unwrap();
    assert!(id.starts_with("STS."), "{id}");
    let expiration = c["Expiration"].as_str().unwrap();
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::PrimitiveDateTime::parse(expiration, &format)
        .expect("Expiration is YYYY-MM-DDTHH:MM:SSZ");
    Credentials::new(id, c["AccessKeySecret"].as_str().unwrap())
        .with_security_token(Some(c["SecurityToken"].as_str().unwrap().to_owned()))
}

fn key_of(c: &Credentials) -> (&str, &str, Option<&str>) {
    (
        c.access_key_id(),
        c.secret().expose(),
        c.security_token().map(Secret::expose),
    )
}

async fn assume(fake: &FakeLiveHandle, key: (&str, &str), session: &str) -> Credentials {
    let answer = sts(
        fake,
        Some((key.0, key.1, None)),
        "AssumeRole",
        &[("RoleArn", ROLE), ("RoleSessionName", session)],
    )
    .await;
    temp_creds(&answer)
}

async fn stop(fake: &FakeLiveHandle, creds: &Credentials, caster: &str) -> CallOutcome {
    let client = LiveClient::new(&ClientConfig::new(fake.endpoint())).unwrap();
    common::stop_as(&client, creds, caster).await
}

#[track_caller]
fn refused(outcome: &CallOutcome, status: u16, code: &str) {
    assert_eq!(
        (outcome.http_status(), outcome.error_code()),
        (Some(status), Some(code)),
        "{outcome:?}"
    );
}
