//! Alibaba Cloud signature V3 (`ACS3-HMAC-SHA256`), as pure functions: the default of
//! Alibaba's V2.0 SDKs (`alibabacloud-tea-openapi`'s `Utils.get_authorization`).
//!
//! The canonical request is `METHOD\nPATH\nQUERY\nHEADERS\nSIGNED_HEADERS\nHASHED_PAYLOAD`:
//! QUERY as the RPC signature sorts and encodes it; HEADERS one `name:value\n` per signed header,
//! names lower-cased and sorted, values trimmed (several values of one name sorted and joined
//! with `,`); SIGNED_HEADERS their names joined with `;`; HASHED_PAYLOAD the hex SHA-256 of the
//! body, also sent as `x-acs-content-sha256`. The string to sign is
//! `ACS3-HMAC-SHA256\n` + hex SHA-256 of the canonical request, signed with HMAC-SHA256 keyed by
//! the secret itself (no `&`), in hex; the `Authorization` header carries it:
//! `ACS3-HMAC-SHA256 Credential=ID,SignedHeaders=a;b,Signature=HEX`. For an RPC call the
//! parameters stay in the query; `Action`, `Version`, the time, the nonce and an STS token
//! travel as `x-acs-*` headers, all signed.

use std::collections::BTreeMap;

use hmac::{KeyInit, Mac};
use sha2::Digest as _;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";
/// The headers a V3 request must sign (the token's too, when it sends one).
pub const REQUIRED_SIGNED_HEADERS: &[&str] = &[
    "host",
    "x-acs-action",
    "x-acs-content-sha256",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-version",
];

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0xf) as usize] as char);
    }
    out
}

/// Hex SHA-256 of `bytes`: the hashed payload (`x-acs-content-sha256`).
pub fn hashed_payload(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes))
}

/// The canonical headers and the signed headers' list, from `(name, value)` pairs.
pub fn canonical_headers<'a, I>(headers: I) -> (String, String)
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut by_name: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (name, value) in headers {
        by_name
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(value.trim());
    }
    let mut canonical = String::new();
    for (name, values) in &mut by_name {
        values.sort_unstable();
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(&values.join(","));
        canonical.push('\n');
    }
    let signed = by_name.keys().cloned().collect::<Vec<_>>().join(";");
    (canonical, signed)
}

/// The canonical request of a call.
pub fn canonical_request(
    method: &str,
    path: &str,
    canonical_query: &str,
    canonical_headers: &str,
    signed_headers: &str,
    hashed_payload: &str,
) -> String {
    format!(
        "{}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{hashed_payload}",
        method.to_ascii_uppercase()
    )
}

/// `ACS3-HMAC-SHA256\n` + hex SHA-256 of the canonical request.
pub fn string_to_sign(canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{}",
        hashed_payload(canonical_request.as_bytes())
    )
}

/// Hex HMAC-SHA256 of the string to sign, keyed by the secret.
pub fn sign_string(secret: &str, string_to_sign: &str) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// The `Authorization` header's value.
pub fn authorization(access_key_id: &str, signed_headers: &str, signature: &str) -> String {
    format!(
        "{ALGORITHM} Credential={access_key_id},SignedHeaders={signed_headers},Signature={signature}"
    )
}

/// An `Authorization` header taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub access_key_id: &'a str,
    /// Lower-case names, in the order sent.
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

/// Reads an `ACS3-HMAC-SHA256` `Authorization` header; `None` if it is not one or is malformed.
pub fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.trim().strip_prefix(ALGORITHM)?.strip_prefix(' ')?;
    let (mut id, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (key, val) = part.trim().split_once('=')?;
        match key {
            "Credential" => id = Some(val),
            "SignedHeaders" => signed = Some(val),
            "Signature" => signature = Some(val),
            _ => return None,
        }
    }
    let signed_headers: Vec<&str> = signed?.split(';').filter(|h| !h.is_empty()).collect();
    Some(Authorization {
        access_key_id: id.filter(|i| !i.is_empty())?,
        signed_headers,
        signature: signature.filter(|s| !s.is_empty())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_the_empty_payload_as_the_sdks_send_it() {
        assert_eq!(
            hashed_payload(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn headers_are_lower_cased_sorted_trimmed_and_joined() {
        let (canonical, signed) = canonical_headers([
            ("X-Acs-Date", " t "),
            ("host", "h"),
            ("x-b", "2"),
            ("X-B", "1"),
        ]);
        assert_eq!(canonical, "host:h\nx-acs-date:t\nx-b:1,2\n");
        assert_eq!(signed, "host;x-acs-date;x-b");
    }

    #[test]
    fn authorization_round_trips() {
        let value = authorization("ak", "host;x-acs-date", "abc");
        assert_eq!(
            value,
            "ACS3-HMAC-SHA256 Credential=ak,SignedHeaders=host;x-acs-date,Signature=abc"
        );
        let parsed = parse_authorization(&value).unwrap();
        assert_eq!(parsed.access_key_id, "ak");
        assert_eq!(parsed.signed_headers, ["host", "x-acs-date"]);
        assert_eq!(parsed.signature, "abc");
        assert!(parse_authorization("ACS3-HMAC-SHA256 Credential=ak,Signature=x").is_none());
        assert!(
            parse_authorization("ACS3-HMAC-SM3 Credential=a,SignedHeaders=h,Signature=x").is_none()
        );
        assert!(parse_authorization("acs ak:sig").is_none());
    }
}
