//! A credentials URI (`ALIBABA_CLOUD_CREDENTIALS_URI`): a plain `GET` of the configured URL,
//! answering `{"Code": "Success", "AccessKeyId", "AccessKeySecret", "SecurityToken",
//! "Expiration"}` (credentials-go `providers/uri.go`, credentials-python `provider/uri.py`:
//! no headers, 5 s to connect, 10 s to read, `Code` must be `Success` as Python checks).
//! The URL may carry a token in its query, so errors show it without one.

use super::Credentials;
use super::chain::UriSource;
use super::http::{FetchError, parse_flat_credentials, read_body, transport};

const PROVIDER: &str = "credentials uri";

/// Fetches the credentials the URI issues now.
pub(super) async fn fetch(
    http: &reqwest::Client,
    source: &UriSource,
) -> Result<Credentials, FetchError> {
    let fail = |kind| FetchError::new(PROVIDER, &source.url, kind);
    let response = http
        .get(&source.url)
        .send()
        .await
        .map_err(|e| fail(transport(&e)))?;
    let (status, body) = read_body(response).await.map_err(fail)?;
    parse_flat_credentials(status, &body).map_err(fail)
}
