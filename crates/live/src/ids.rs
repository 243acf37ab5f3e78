//! Checked identifiers of the vendor's vocabulary: a CasterId, RegionId or account name exists
//! only once its text passed the checks here, so nothing downstream re-checks strings.

use std::fmt;

/// Longest `caster_id` the worker accepts, in bytes. The API's own limit is 64 characters; ids
/// between the two reach the API and fail there with `InvalidCasterId.Malformed`, which is
/// recorded as the API's verdict rather than ours.
pub const MAX_CASTER_ID_BYTES: usize = 128;
/// Longest region id, account name or batch id, in bytes.
pub const MAX_SHORT_FIELD_BYTES: usize = 128;

/// A production studio's CasterId: non-empty, at most 128 bytes, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct CasterId(String);

/// A RegionId such as `cn-shanghai`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct RegionId(String);

/// The name of a configured account (credentials plus quota).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct AccountName(String);

macro_rules! string_newtype {
    ($t:ident) => {
        impl $t {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}
string_newtype!(CasterId);
string_newtype!(RegionId);
string_newtype!(AccountName);

/// `value` if it is non-empty, at most `max` bytes and free of control characters; otherwise
/// why not, in words that follow the field's name.
pub fn short_text(value: &str, max: usize) -> Result<&str, &'static str> {
    if value.is_empty() {
        Err("is empty")
    } else if value.len() > max {
        Err("is too long")
    } else if value.chars().any(char::is_control) {
        Err("contains control characters")
    } else {
        Ok(value)
    }
}

impl CasterId {
    pub fn parse(value: &str) -> Result<Self, Rejection> {
        short_text(value, MAX_CASTER_ID_BYTES)
            .map(|v| Self(v.to_owned()))
            .map_err(|why| Rejection::new(format!("caster_id {why}")))
    }
}

impl RegionId {
    pub fn parse(value: &str) -> Result<Self, Rejection> {
        short_text(value, MAX_SHORT_FIELD_BYTES)
            .map(|v| Self(v.to_owned()))
            .map_err(|why| Rejection::new(format!("region_id {why}")))
    }
}

impl AccountName {
    pub fn parse(value: &str) -> Result<Self, Rejection> {
        short_text(value, MAX_SHORT_FIELD_BYTES)
            .map(|v| Self(v.to_owned()))
            .map_err(|why| Rejection::new(format!("account {why}")))
    }
}

/// Why a message is not a job. The `reason` is what `x-stopcaster-reason` and `error_message`
/// carry; `job_id` is the best id the message offered, if any.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Rejection {
    pub reason: String,
}

impl Rejection {
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}
