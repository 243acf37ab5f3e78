//! AccessKey credentials and where they come from. The secret lives only in memory: `Debug` and
//! `Display` redact it, and nothing serializes it, so it cannot reach a log line, a row, a
//! message or an error text.
//!
//! The sources of Alibaba Cloud's default credentials chain live in the submodules:
//! [`chain`] decides which one is configured (pure), [`fetch`] obtains credentials from it
//! ([`sts`], [`ecs`], [`uri`]; [`profile`] reads the aliyun CLI's config), [`refresh`] keeps
//! temporary ones fresh in the background behind a [`CredentialsProvider`], and [`account`]
//! learns the account UID the pacer keys on. [`http`] builds the HTTP clients (with
//! `STOPCASTER_CA_FILE`) and holds the error types every source shares.

use std::fmt;

use time::OffsetDateTime;

mod account;
pub mod chain;
mod clock;
mod ecs;
mod fetch;
pub mod http;
#[cfg(test)]
mod http_tests;
pub mod profile;
mod refresh;
mod sts;
mod uri;

pub use account::AccountKeyOrigin;
pub use chain::{ConfigError, Source, SourceKind};
pub use http::HttpClients;
pub use refresh::{CredentialsError, CredentialsProvider, ProviderContext, RefreshPolicy};

/// An AccessKey pair, optionally with an STS security token and, for temporary credentials,
/// the moment they expire.
#[derive(Clone)]
pub struct Credentials {
    access_key_id: String,
    secret: Secret,
    security_token: Option<Secret>,
    expiration: Option<OffsetDateTime>,
}

/// A string that never prints itself.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The only way to read the value; named so that every use stands out in review.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Credentials {
    pub fn new(access_key_id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret: Secret::new(secret),
            security_token: None,
            expiration: None,
        }
    }

    pub fn with_security_token(mut self, token: Option<String>) -> Self {
        self.security_token = token.filter(|t| !t.is_empty()).map(Secret::new);
        self
    }

    /// Marks these as temporary credentials that stop working at `expiration`.
    pub fn with_expiration(mut self, expiration: Option<OffsetDateTime>) -> Self {
        self.expiration = expiration;
        self
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    pub fn security_token(&self) -> Option<&Secret> {
        self.security_token.as_ref()
    }

    /// When temporary credentials expire; `None` for long-term AccessKeys.
    pub fn expiration(&self) -> Option<OffsetDateTime> {
        self.expiration
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret", &self.secret)
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "***"),
            )
            .field("expiration", &self.expiration)
            .finish()
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessKeyId {}", self.access_key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_secret() {
        let c = Credentials::new("LTAIexample", "s3cr3t-value")
            .with_security_token(Some("tok3n-value".into()));
        for shown in [format!("{c:?}"), format!("{c}"), format!("{c:#?}")] {
            assert!(!shown.contains("s3cr3t-value"), "{shown}");
            assert!(!shown.contains("tok3n-value"), "{shown}");
            assert!(shown.contains("LTAIexample"), "{shown}");
        }
        assert_eq!(c.secret().expose(), "s3cr3t-value");
    }
}
