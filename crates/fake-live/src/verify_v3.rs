//! Requests signed with V3 (`ACS3-HMAC-SHA256`): what the `Authorization` and `x-acs-*` headers
//! say, rebuilt into the canonical request the caller must have signed, and the parameters the
//! RPC checks read (`Action`, `Version`, `AccessKeyId`, `SignatureNonce`, `Timestamp`,
//! `SecurityToken`) taken from those headers. Pure; the signature itself is checked in
//! [`super::verify`], once the caller's secret is known.

use std::collections::BTreeMap;

use axum::http::HeaderMap;

use super::protocol::{self, Refusal};
use stopcaster_live::{signer, signer_v3};

/// A V3 request's signature and what it must cover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct V3Signed {
    pub canonical_request: String,
    pub signature: String,
}

/// Whether the request carries a V3 `Authorization` header.
pub(crate) fn is_v3(headers: &HeaderMap) -> bool {
    header(headers, "authorization").is_some_and(|a| a.starts_with(signer_v3::ALGORITHM))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Reads a V3 request: its canonical request and signature, and adds the parameters its
/// headers carry to `params`. `query` is the raw query string (its parameters alone are the
/// canonical query; a form body is covered by the payload hash).
pub(crate) fn read(
    method: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    params: &mut BTreeMap<String, String>,
) -> Result<V3Signed, Refusal> {
    let authorization = header(headers, "authorization").unwrap_or_default();
    let auth = signer_v3::parse_authorization(authorization)
        .ok_or(Refusal::MissingParameter("Authorization"))?;
    for (param, name) in [
        ("Action", "x-acs-action"),
        ("Version", "x-acs-version"),
        ("SignatureNonce", "x-acs-signature-nonce"),
        ("Timestamp", "x-acs-date"),
        ("SecurityToken", "x-acs-security-token"),
    ] {
        if let Some(value) = header(headers, name) {
            params.insert(param.to_owned(), value.to_owned());
        }
    }
    params.insert("AccessKeyId".to_owned(), auth.access_key_id.to_owned());
    let must_sign = signer_v3::REQUIRED_SIGNED_HEADERS.iter().chain(
        headers
            .contains_key("x-acs-security-token")
            .then_some(&"x-acs-security-token"),
    );
    let unsigned = must_sign
        .filter(|h| !auth.signed_headers.contains(h))
        .copied()
        .collect::<Vec<_>>();
    let payload = signer_v3::hashed_payload(body);
    if !unsigned.is_empty() || header(headers, "x-acs-content-sha256") != Some(payload.as_str()) {
        return Err(Refusal::SignatureDoesNotMatch(format!(
            "unsigned headers [{}] or a body not matching x-acs-content-sha256",
            unsigned.join(" ")
        )));
    }
    let mut query_params = BTreeMap::new();
    if let Some(query) = query {
        protocol::decode_form(query.as_bytes(), &mut query_params);
    }
    let canonical_query =
        signer::canonical_query(query_params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let signed_values = auth.signed_headers.iter().flat_map(|name| {
        headers
            .get_all(*name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(move |v| (*name, v))
    });
    let (canonical_headers, signed_headers) = signer_v3::canonical_headers(signed_values);
    Ok(V3Signed {
        canonical_request: signer_v3::canonical_request(
            method,
            "/",
            &canonical_query,
            &canonical_headers,
            &signed_headers,
            &payload,
        ),
        signature: auth.signature.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use stopcaster_live::StopCasterRequest;
    use stopcaster_live::credentials::Credentials;
    use stopcaster_live::ids::{CasterId, RegionId};
    use stopcaster_live::signing::{Envelope, SignatureVersion, sign_request};

    fn signed_headers(token: Option<&str>) -> (String, HeaderMap) {
        let caster = CasterId::parse("c1").unwrap();
        let region = RegionId::parse("cn-shanghai").unwrap();
        let creds = Credentials::new("ak", "sk").with_security_token(token.map(Into::into));
        let signed = sign_request(
            SignatureVersion::V3,
            &creds,
            StopCasterRequest {
                caster_id: &caster,
                region_id: &region,
            },
            Envelope {
                method: "POST",
                host: "127.0.0.1:8080",
                nonce: "n1",
                timestamp: "2024-01-02T03:04:05Z",
            },
        );
        let mut headers = HeaderMap::new();
        for (k, v) in &signed.headers {
            headers.insert(*k, v.parse().unwrap());
        }
        (signed.query, headers)
    }

    #[test]
    fn reads_what_the_client_signs() {
        let (query, headers) = signed_headers(Some("tok"));
        let mut params = BTreeMap::new();
        let v3 = read("POST", Some(&query), &headers, b"", &mut params).unwrap();
        let sts = signer_v3::string_to_sign(&v3.canonical_request);
        assert_eq!(signer_v3::sign_string("sk", &sts), v3.signature);
        assert_eq!(params["Action"], "StopCaster");
        assert_eq!(params["AccessKeyId"], "ak");
        assert_eq!(params["SecurityToken"], "tok");
        assert_eq!(params["Timestamp"], "2024-01-02T03:04:05Z");
    }

    #[test]
    fn a_tampered_query_or_body_does_not_verify() {
        let (_, headers) = signed_headers(None);
        let mut params = BTreeMap::new();
        let v3 = read(
            "POST",
            Some("CasterId=c2&RegionId=cn-shanghai"),
            &headers,
            b"",
            &mut params,
        )
        .unwrap();
        let sts = signer_v3::string_to_sign(&v3.canonical_request);
        assert_ne!(signer_v3::sign_string("sk", &sts), v3.signature);
        let refused = read("POST", None, &headers, b"CasterId=c3", &mut params);
        assert_eq!(refused.unwrap_err().code(), "SignatureDoesNotMatch");
    }
}
