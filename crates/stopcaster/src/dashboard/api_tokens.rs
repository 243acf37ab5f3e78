//! The bearer tokens of `POST /api/jobs` (`STOPCASTER_API_TOKENS`): a file of `name:token` or
//! `name:sha256:HEX` lines, read afresh at each request, so that a token removed from the file
//! (revoked) is refused from the next request on, with no restart and no cache to expire.
//!
//! Only digests are kept: a plain token is hashed as the file is read, and a presented token is
//! hashed and compared with every entry in constant time (no early exit, no comparison whose
//! time depends on where the texts differ). A token never appears in a log, an error or an
//! answer; errors about the file name its line number only.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The tokens of one reading of the file.
#[derive(Clone, Debug, Default)]
pub(crate) struct ApiTokens {
    entries: Vec<Entry>,
}

#[derive(Clone)]
struct Entry {
    name: String,
    digest: [u8; 32],
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The digest of a plain token would let an offline guess be checked: not shown.
        f.debug_struct("Entry").field("name", &self.name).finish()
    }
}

/// A line of the file that is not a token: its number and why, never its text.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {why}")]
pub(crate) struct TokenFileError {
    pub line: usize,
    pub why: &'static str,
}

fn sha256(text: &[u8]) -> [u8; 32] {
    Sha256::digest(text).into()
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

impl ApiTokens {
    /// Parses the file: one `name:token` or `name:sha256:HEX` (64 hex digits, the SHA-256 of the
    /// token) per line; blank lines and `#` comments are skipped. Names are 1 to 64 letters,
    /// digits, `-`, `_`, `.`; tokens at least 16 characters.
    pub(crate) fn parse(text: &str) -> Result<ApiTokens, TokenFileError> {
        let mut entries = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |why| TokenFileError {
                line: index + 1,
                why,
            };
            let (name, secret) = line
                .split_once(':')
                .ok_or_else(|| err("expected name:token or name:sha256:HEX"))?;
            let name_ok = (1..=64).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !name_ok {
                return Err(err("the name is 1 to 64 letters, digits, '-', '_' or '.'"));
            }
            let digest = match secret.strip_prefix("sha256:") {
                Some(hex) => decode_hex(hex)
                    .ok_or_else(|| err("sha256: must be followed by 64 hex digits"))?,
                None if secret.chars().count() < 16 => {
                    return Err(err("a token must be at least 16 characters"));
                }
                None => sha256(secret.as_bytes()),
            };
            entries.push(Entry {
                name: name.to_owned(),
                digest,
            });
        }
        Ok(ApiTokens { entries })
    }

    /// The name of the token presented, if it is one of the file's. Every entry is compared,
    /// in constant time.
    pub(crate) fn name_of(&self, presented: &str) -> Option<&str> {
        let digest = sha256(presented.as_bytes());
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.digest.ct_eq(&digest)) && found.is_none() {
                found = Some(entry.name.as_str());
            }
        }
        found
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The token of an `Authorization: Bearer TOKEN` header.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASHED: &str = "scheduler-token-0123456789";

    #[test]
    fn plain_and_hashed_tokens_name_their_holder() {
        let hex: String = sha256(HASHED.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let text = format!(
            "# schedulers\n\ncron:plain-token-abcdefghijkl\nairflow:sha256:{hex}\n  cms : x \n"
        );
        // The last line has a short token: refused with its line number, not its text.
        let e = ApiTokens::parse(&text).unwrap_err();
        assert_eq!(e.line, 5);
        assert!(!e.to_string().contains(" x"), "{e}");
        let tokens = ApiTokens::parse(&text.replace("  cms : x \n", "")).unwrap();
        assert_eq!(tokens.name_of("plain-token-abcdefghijkl"), Some("cron"));
        assert_eq!(tokens.name_of(HASHED), Some("airflow"));
        assert_eq!(tokens.name_of("plain-token-abcdefghijkX"), None);
        assert_eq!(tokens.name_of(""), None);
        // The hash itself is not a token.
        assert_eq!(tokens.name_of(&format!("sha256:{hex}")), None);
        assert!(!format!("{tokens:?}").contains("plain-token"));
    }

    #[test]
    fn malformed_lines_are_refused() {
        for (text, line) in [
            ("no-colon-here", 1),
            ("\nbad name:0123456789abcdef", 2),
            ("a:sha256:abcd", 1),
            (&format!("a:sha256:{}", "g".repeat(64)), 1),
        ] {
            assert_eq!(ApiTokens::parse(text).unwrap_err().line, line, "{text}");
        }
        assert!(ApiTokens::parse("# nothing\n").unwrap().is_empty());
    }

    #[test]
    fn bearer_header() {
        let mut h = axum::http::HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
