//! Which signature a StopCaster call carries, and the signed request of each: `v1`, the RPC
//! HMAC-SHA1 signature in the query ([`crate::signer`]), or `v3`, `ACS3-HMAC-SHA256` in the
//! `Authorization` header ([`crate::signer_v3`]). Pure: the nonce and time are arguments.

use crate::client::{ACTION, API_VERSION, StopCasterRequest, signed_query};
use crate::credentials::Credentials;
use crate::signer;
use crate::signer_v3;

/// The signature a call is signed with (`STOPCASTER_SIGNATURE_VERSION`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SignatureVersion {
    /// The RPC signature, HMAC-SHA1, `SignatureVersion=1.0` (the V2.0 SDKs' `v2`).
    #[default]
    V1,
    /// `ACS3-HMAC-SHA256`, the V2.0 SDKs' default.
    V3,
}

#[derive(Debug, thiserror::Error)]
#[error("unknown signature version {0:?}: expected v1 (or its alias v2) or v3")]
pub struct UnknownSignatureVersion(pub String);

impl SignatureVersion {
    /// `v1` (or `v2`, as the V2.0 SDKs call the RPC signature) or `v3`, any case.
    pub fn parse(text: &str) -> Result<Self, UnknownSignatureVersion> {
        match text.trim().to_ascii_lowercase().as_str() {
            "v1" | "v2" => Ok(Self::V1),
            "v3" => Ok(Self::V3),
            _ => Err(UnknownSignatureVersion(text.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V3 => "v3",
        }
    }
}

/// A call's query string (after `?`) and the headers it must send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRequest {
    pub query: String,
    pub headers: Vec<(&'static str, String)>,
}

/// What a signature covers besides the credentials and the call's own parameters.
#[derive(Clone, Copy, Debug)]
pub struct Envelope<'a> {
    pub method: &'a str,
    /// The `host` header: the endpoint's host, with its port unless it is the scheme's.
    pub host: &'a str,
    pub nonce: &'a str,
    /// `2024-01-02T03:04:05Z`.
    pub timestamp: &'a str,
}

/// The signed request of a StopCaster call with an empty body.
pub fn sign_request(
    version: SignatureVersion,
    credentials: &Credentials,
    request: StopCasterRequest<'_>,
    envelope: Envelope<'_>,
) -> SignedRequest {
    match version {
        SignatureVersion::V1 => SignedRequest {
            query: signed_query(
                envelope.method,
                credentials,
                request,
                envelope.nonce,
                envelope.timestamp,
            ),
            headers: Vec::new(),
        },
        SignatureVersion::V3 => sign_v3(credentials, request, envelope),
    }
}

fn sign_v3(
    credentials: &Credentials,
    request: StopCasterRequest<'_>,
    envelope: Envelope<'_>,
) -> SignedRequest {
    let query = signer::canonical_query([
        ("CasterId", request.caster_id.as_str()),
        ("RegionId", request.region_id.as_str()),
    ]);
    let mut headers: Vec<(&'static str, String)> = vec![
        ("host", envelope.host.to_owned()),
        ("x-acs-action", ACTION.to_owned()),
        ("x-acs-content-sha256", signer_v3::hashed_payload(b"")),
        ("x-acs-date", envelope.timestamp.to_owned()),
        ("x-acs-signature-nonce", envelope.nonce.to_owned()),
        ("x-acs-version", API_VERSION.to_owned()),
    ];
    if let Some(token) = credentials.security_token() {
        // As the SDKs do: the key id is sent beside the token, both signed.
        headers.push(("x-acs-accesskey-id", credentials.access_key_id().to_owned()));
        headers.push(("x-acs-security-token", token.expose().to_owned()));
    }
    let (canonical_headers, signed_headers) =
        signer_v3::canonical_headers(headers.iter().map(|(k, v)| (*k, v.as_str())));
    let canonical = signer_v3::canonical_request(
        envelope.method,
        "/",
        &query,
        &canonical_headers,
        &signed_headers,
        &signer_v3::hashed_payload(b""),
    );
    let signature = signer_v3::sign_string(
        credentials.secret().expose(),
        &signer_v3::string_to_sign(&canonical),
    );
    headers.push((
        "authorization",
        signer_v3::authorization(credentials.access_key_id(), &signed_headers, &signature),
    ));
    SignedRequest { query, headers }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{CasterId, RegionId};

    #[test]
    fn parses_the_versions_and_the_sdks_alias() {
        assert_eq!(SignatureVersion::parse("v1").unwrap(), SignatureVersion::V1);
        assert_eq!(SignatureVersion::parse("V2").unwrap(), SignatureVersion::V1);
        assert_eq!(SignatureVersion::parse("v3").unwrap(), SignatureVersion::V3);
        assert!(SignatureVersion::parse("v4").is_err());
        assert_eq!(SignatureVersion::default(), SignatureVersion::V1);
    }

    #[test]
    fn v3_signs_the_headers_and_sends_the_token() {
        let caster = CasterId::parse("c1").unwrap();
        let region = RegionId::parse("cn-shanghai").unwrap();
        let request = StopCasterRequest {
            caster_id: &caster,
            region_id: &region,
        };
        let envelope = Envelope {
            method: "POST",
            host: "live.aliyuncs.com",
            nonce: "n",
            timestamp: "2024-01-02T03:04:05Z",
        };
        let creds = Credentials::new("STS.id", "s").with_security_token(Some("tok".into()));
        let signed = sign_request(SignatureVersion::V3, &creds, request, envelope);
        assert_eq!(signed.query, "CasterId=c1&RegionId=cn-shanghai");
        let header = |name: &str| {
            signed
                .headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("x-acs-security-token"), Some("tok"));
        let auth = header("authorization").unwrap();
        assert!(
            auth.contains("SignedHeaders=host;x-acs-accesskey-id;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-security-token;x-acs-signature-nonce;x-acs-version,"),
            "{auth}"
        );
        let plain = sign_request(
            SignatureVersion::V3,
            &Credentials::new("STS.id", "s"),
            request,
            envelope,
        );
        assert!(
            plain
                .headers
                .iter()
                .all(|(k, _)| *k != "x-acs-security-token")
        );
    }
}
