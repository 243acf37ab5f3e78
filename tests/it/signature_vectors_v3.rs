//! Pins the V3 signer (`ACS3-HMAC-SHA256`) to Alibaba's own code: every vector of
//! `tests/vectors/acs3-signature-v3.json`, computed by `alibabacloud_tea_openapi`
//! (`tests/sdk/make_vectors_v3.py`), must come out of our functions byte for byte, and the
//! client's request builder must send the SDK's `Authorization` header.

use std::collections::BTreeMap;

use serde::Deserialize;
use stopcaster_live::signing::{Envelope, SignatureVersion, sign_request};
use stopcaster_live::{signer, signer_v3};

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    method: String,
    access_key_id: String,
    secret: String,
    security_token: Option<String>,
    query: BTreeMap<String, String>,
    headers: BTreeMap<String, String>,
    hashed_payload: String,
    canonical_query: String,
    canonical_headers: String,
    signed_headers: String,
    canonical_request: String,
    string_to_sign: String,
    signature: String,
    authorization: String,
}

fn vectors() -> Vec<Vector> {
    let path = format!(
        "{}/tests/vectors/acs3-signature-v3.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let file: File = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(file.vectors.len() >= 5, "{path} has too few vectors");
    file.vectors
}

#[test]
fn the_pure_functions_reproduce_the_sdk() {
    for v in vectors() {
        let n = &v.name;
        assert_eq!(signer_v3::hashed_payload(b""), v.hashed_payload, "{n}");
        let query = signer::canonical_query(v.query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(query, v.canonical_query, "{n}");
        let (headers, signed) =
            signer_v3::canonical_headers(v.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(headers, v.canonical_headers, "{n}");
        assert_eq!(signed, v.signed_headers, "{n}");
        let request = signer_v3::canonical_request(
            &v.method,
            "/",
            &query,
            &headers,
            &signed,
            &v.hashed_payload,
        );
        assert_eq!(request, v.canonical_request, "{n}");
        let string_to_sign = signer_v3::string_to_sign(&request);
        assert_eq!(string_to_sign, v.string_to_sign, "{n}");
        let signature = signer_v3::sign_string(&v.secret, &string_to_sign);
        assert_eq!(signature, v.signature, "{n}");
        assert_eq!(
            signer_v3::authorization(&v.access_key_id, &signed, &signature),
            v.authorization,
            "{n}"
        );
        let parsed = signer_v3::parse_authorization(&v.authorization).unwrap();
        assert_eq!(parsed.signature, v.signature, "{n}");
    }
}

#[test]
fn the_client_sends_the_sdks_authorization() {
    let mut checked = 0;
    for v in vectors() {
        let Some(region) = v.query.get("RegionId") else {
            continue; // our StopCaster always names its region
        };
        let caster = stopcaster::CasterId::parse(&v.query["CasterId"]).unwrap();
        let region = stopcaster::RegionId::parse(region).unwrap();
        let credentials = stopcaster::Credentials::new(v.access_key_id.clone(), v.secret.clone())
            .with_security_token(v.security_token.clone());
        let signed = sign_request(
            SignatureVersion::V3,
            &credentials,
            stopcaster::StopCasterRequest {
                caster_id: &caster,
                region_id: &region,
            },
            Envelope {
                method: &v.method,
                host: &v.headers["host"],
                nonce: &v.headers["x-acs-signature-nonce"],
                timestamp: &v.headers["x-acs-date"],
            },
        );
        assert_eq!(signed.query, v.canonical_query, "{}", v.name);
        let sent: BTreeMap<&str, &str> = signed
            .headers
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        assert_eq!(sent["authorization"], v.authorization, "{}", v.name);
        for (name, value) in &v.headers {
            assert_eq!(sent[name.as_str()], value, "{} header {name}", v.name);
        }
        checked += 1;
    }
    assert!(checked >= 4, "{checked}");
}
