//! Alibaba Cloud RPC signature v1 (HMAC-SHA1), as pure functions.
//!
//! The algorithm, as Alibaba's SDKs implement it: sort the parameters by name in byte order,
//! percent-encode every name and value over its UTF-8 bytes leaving only `A-Z a-z 0-9 - _ . ~`,
//! join them as a query string, then sign `METHOD&%2F&encode(query)` with HMAC-SHA1 keyed by
//! `secret + "&"` and Base64 the digest. The client signs with it and the stand-in verifies with
//! it, so the two can only disagree with Alibaba, never with each other; the vectors in
//! `shared/vectors` and the Python SDK tests pin it to Alibaba's own code.

use base64::Engine as _;
use hmac::{KeyInit, Mac};

type HmacSha1 = hmac::Hmac<sha1::Sha1>;

/// Percent-encodes `input` the way the RPC signature wants: RFC 3986 unreserved characters
/// stay, every other byte of the UTF-8 form becomes `%XX` (upper-case hex).
pub fn percent_encode(input: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(input.len() * 3 / 2);
    for &b in input.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        }
    }
    out
}

/// The canonical query string: parameters sorted by name (byte order), each pair encoded.
/// A `Signature` parameter, if present, is left out: it is never part of what is signed.
pub fn canonical_query<'a, I>(params: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut pairs: Vec<(&str, &str)> = params
        .into_iter()
        .filter(|(k, _)| *k != "Signature")
        .collect();
    pairs.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then(a.1.cmp(b.1)));
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&percent_encode(k));
        out.push('=');
        out.push_str(&percent_encode(v));
    }
    out
}

/// `METHOD&%2F&encode(canonical_query)`.
pub fn string_to_sign(method: &str, canonical_query: &str) -> String {
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        percent_encode("/"),
        percent_encode(canonical_query)
    )
}

/// Base64(HMAC-SHA1(secret + "&", string_to_sign)).
pub fn sign_string(secret: &str, string_to_sign: &str) -> String {
    let mut key = Vec::with_capacity(secret.len() + 1);
    key.extend_from_slice(secret.as_bytes());
    key.push(b'&');
    let mut mac = HmacSha1::new_from_slice(&key).expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The signature of a request with these parameters (any `Signature` among them is ignored).
pub fn sign<'a, I>(method: &str, secret: &str, params: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    sign_string(secret, &string_to_sign(method, &canonical_query(params)))
}

/// Constant-time check of a received signature against the expected one.
pub fn signature_matches(expected: &str, received: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    expected.len() == received.len() && bool::from(expected.as_bytes().ct_eq(received.as_bytes()))
}

/// The protocol's `Timestamp` text, defined with the project's other timestamp formats.
pub use crate::time::{parse_rpc_timestamp as parse_timestamp, rpc_timestamp as format_timestamp};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_only_unreserved_characters_as_is() {
        assert_eq!(percent_encode("aZ09-_.~"), "aZ09-_.~");
        assert_eq!(percent_encode(" "), "%20");
        assert_eq!(percent_encode("*"), "%2A");
        assert_eq!(percent_encode("/+=&%"), "%2F%2B%3D%26%25");
        assert_eq!(percent_encode("é"), "%C3%A9");
        assert_eq!(percent_encode("演播"), "%E6%BC%94%E6%92%AD");
    }

    #[test]
    fn sorts_by_byte_order_and_ignores_signature() {
        let q = canonical_query([("b", "1"), ("B", "2"), ("a", "x y"), ("Signature", "zzz")]);
        assert_eq!(q, "B=2&a=x%20y&b=1");
    }

    #[test]
    fn constant_time_compare() {
        assert!(signature_matches("abc=", "abc="));
        assert!(!signature_matches("abc=", "abd="));
        assert!(!signature_matches("abc=", "abc"));
    }
}
