//! AccessKey credentials. The secret lives only in memory: `Debug` and `Display` redact it, and
//! nothing serializes it, so it cannot reach a log line, a row, a message or an error text.

use std::fmt;

/// An AccessKey pair, optionally with an STS security token.
#[derive(Clone)]
pub struct Credentials {
    access_key_id: String,
    secret: Secret,
    security_token: Option<Secret>,
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
        }
    }

    pub fn with_security_token(mut self, token: Option<String>) -> Self {
        self.security_token = token.filter(|t| !t.is_empty()).map(Secret::new);
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
