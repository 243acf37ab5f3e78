//! Removes credentials from text the API answers before anyone stores, logs or shows it.
//! Alibaba echoes what it was sent: `SignatureDoesNotMatch` and `IncompleteSignature` quote the
//! server's string to sign (`...%26SecurityToken%3DCAIS...%26...`), ROA answers quote signed
//! headers (`x-acs-security-token:CAIS...`), and a proxy's error page may quote the URL with
//! its `Signature`. Pure functions, so every shape has a unit test.
//!
//! Two passes: the caller's own secret and token are replaced wherever they occur, as they are
//! or percent-encoded once or twice; then the value of every parameter named like a secret
//! ([`SECRET_NAMES`]) is replaced whatever it is, which also catches a value cut short or
//! one the caller does not know (the answer to another key's request, say). Everything else,
//! the code, the AccessKeyId and the other parameters, stays readable.

use crate::credentials::Credentials;
use crate::outcome::{ApiError, CallOutcome, TransportError};
use crate::signer::percent_encode;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Parameter, header and field names whose value is secret, lower case (names match whatever
/// their case). `signature` also covers `x-acs-signature` and ACS3's `Signature=`; it does not
/// match `SignatureNonce` or `SignatureMethod`, since a name must be followed by a separator.
pub const SECRET_NAMES: [&str; 7] = [
    "securitytoken",
    "security-token",
    "security_token",
    "signature",
    "accesskeysecret",
    "access-key-secret",
    "access_key_secret",
];

/// Known values shorter than this are left to the name pass: a short value could be an
/// ordinary word of the message. Real secrets are 30 characters, tokens hundreds.
pub const MIN_KNOWN_LEN: usize = 8;

/// The secret values of `credentials`: the AccessKey secret and the security token.
pub fn known_values(credentials: &Credentials) -> Vec<&str> {
    let mut known = vec![credentials.secret().expose()];
    known.extend(credentials.security_token().map(|t| t.expose()));
    known
}

/// `text` with every credential replaced by [`REDACTED`]: the `known` values wherever they
/// occur (as they are, percent-encoded once or twice), and the value of every parameter named
/// in [`SECRET_NAMES`] (`Name=v&`, `Name%3Dv%26`, `Name%253Dv%2526`, `"Name":"v"`,
/// `Name: v`, `<Name>v</Name>`).
pub fn scrub(text: &str, known: &[&str]) -> String {
    let mut out = text.to_owned();
    let mut forms: Vec<String> = known
        .iter()
        .filter(|v| v.len() >= MIN_KNOWN_LEN)
        .flat_map(|v| {
            let once = percent_encode(v);
            let twice = percent_encode(&once);
            [v.to_string(), once, twice]
        })
        .collect();
    // Longest first, so that a token containing the secret is replaced whole.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    for form in forms {
        if out.contains(&form) {
            out = out.replace(&form, REDACTED);
        }
    }
    scrub_named(&out)
}

/// The outcome with every text the API answered passed through [`scrub`].
pub fn scrub_outcome(outcome: CallOutcome, known: &[&str]) -> CallOutcome {
    let api = |e: ApiError| ApiError {
        http_status: e.http_status,
        code: scrub(&e.code, known),
        message: scrub(&e.message, known),
        request_id: e.request_id.map(|r| scrub(&r, known)),
        host_id: e.host_id.map(|h| scrub(&h, known)),
        recommend: e.recommend.map(|r| scrub(&r, known)),
    };
    match outcome {
        CallOutcome::Stopped {
            request_id,
            http_status,
        } => CallOutcome::Stopped {
            request_id: scrub(&request_id, known),
            http_status,
        },
        CallOutcome::Retryable(e) => CallOutcome::Retryable(api(e)),
        CallOutcome::Permanent(e) => CallOutcome::Permanent(api(e)),
        CallOutcome::CredentialsRefused(e) => CallOutcome::CredentialsRefused(api(e)),
        CallOutcome::Transport(t) => CallOutcome::Transport(TransportError {
            kind: t.kind,
            message: scrub(&strip_url_queries(&t.message), known),
        }),
    }
}

/// `text` with the query of every `http://` or `https://` URL in it replaced by
/// [`REDACTED`]: a signed request's query holds its `Signature` and `SecurityToken`, and
/// nothing an operator needs.
pub fn strip_url_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = find_url(rest) {
        let url_len = rest[at..].find(ends_url).unwrap_or(rest.len() - at);
        let url = &rest[at..at + url_len];
        out.push_str(&rest[..at]);
        match url.find('?') {
            Some(q) => {
                out.push_str(&url[..=q]);
                out.push_str(REDACTED);
            }
            None => out.push_str(url),
        }
        rest = &rest[at + url_len..];
    }
    out.push_str(rest);
    out
}

fn find_url(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    [lower.find("http://"), lower.find("https://")]
        .into_iter()
        .flatten()
        .min()
}

fn ends_url(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')' | ']' | '}' | '`')
}

/// How a value that follows a name is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delimiter {
    /// `=` or `:`: up to `&` or a character that ends a word.
    Plain,
    /// `%3D` (a string to sign): up to `%26`.
    Encoded,
    /// `%253D` (a string to sign inside a query): up to `%2526`.
    TwiceEncoded,
    /// `"...` or `\"...`: up to the closing quote.
    Quoted,
    /// `<Name>`: up to `<`.
    Xml,
}

/// The value of every parameter named in [`SECRET_NAMES`] replaced by [`REDACTED`].
fn scrub_named(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let found = SECRET_NAMES
            .iter()
            .find(|name| bytes[i..].starts_with(name.as_bytes()))
            .and_then(|name| {
                let xml = i > 0 && bytes[i - 1] == b'<';
                value_after(&lower, i + name.len(), xml)
            });
        match found {
            Some((start, end)) if end > start && !text[start..].starts_with(REDACTED) => {
                out.push_str(&text[copied..start]);
                out.push_str(REDACTED);
                copied = end;
                i = end;
            }
            _ => i += 1,
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// Where the value after a name ending at `at` lies, if a separator follows the name. All
/// offsets fall on ASCII characters, so they are char boundaries of the original text.
fn value_after(lower: &str, at: usize, xml: bool) -> Option<(usize, usize)> {
    let rest = &lower[at..];
    if xml {
        return rest
            .strip_prefix('>')
            .map(|_| (at + 1, value_end(lower, at + 1, Delimiter::Xml)));
    }
    // A JSON key's closing quote (escaped if the JSON is itself inside a string), then spaces.
    let after_key = rest
        .strip_prefix("\\\"")
        .or_else(|| rest.strip_prefix('"'))
        .unwrap_or(rest);
    let after_key = after_key.trim_start_matches([' ', '\t']);
    let (delimiter, after_sep) = if let Some(r) = after_key.strip_prefix("%253d") {
        (Delimiter::TwiceEncoded, r)
    } else if let Some(r) = after_key.strip_prefix("%3d") {
        (Delimiter::Encoded, r)
    } else if let Some(r) = after_key
        .strip_prefix('=')
        .or_else(|| after_key.strip_prefix(':'))
    {
        (Delimiter::Plain, r.trim_start_matches([' ', '\t']))
    } else {
        return None;
    };
    let (delimiter, value) = match after_sep
        .strip_prefix("\\\"")
        .or_else(|| after_sep.strip_prefix('"'))
    {
        Some(quoted) if delimiter == Delimiter::Plain => (Delimiter::Quoted, quoted),
        _ => (delimiter, after_sep),
    };
    let start = lower.len() - value.len();
    Some((start, value_end(lower, start, delimiter)))
}

/// Where a value starting at `start` ends.
fn value_end(lower: &str, start: usize, delimiter: Delimiter) -> usize {
    let value = &lower[start..];
    let stop = match delimiter {
        Delimiter::Xml => value.find('<'),
        // A JSON string inside a JSON string ends at `\"`; a lone `\` is an escape (`\/`).
        Delimiter::Quoted => value
            .find('"')
            .map(|q| q - usize::from(value[..q].ends_with('\\'))),
        Delimiter::Plain => value.find(|c: char| c == '&' || ends_word(c)),
        Delimiter::Encoded => earliest(value.find("%26"), value.find(ends_word)),
        Delimiter::TwiceEncoded => earliest(value.find("%2526"), value.find(ends_word)),
    };
    start + stop.unwrap_or(value.len())
}

fn earliest(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    a.into_iter().chain(b).min()
}

/// Characters no credential contains (base64, percent-encoding and `.`, `-`, `_`, `~` do not
/// stop a value) and that end a value in prose, a header or a JSON or XML document.
fn ends_word(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | ',' | ';' | '<' | '>' | '(' | ')' | '[' | ']' | '{' | '}' | '\\' | '`'
        )
}

#[cfg(test)]
#[path = "scrub_tests.rs"]
mod tests;
