//! One fetch of credentials from a configured source: the dispatch over [`SourceKind`]. No
//! caching and no retry here; [`super::refresh`] decides when to fetch and what to do when a
//! fetch fails.

use std::future::Future;
use std::pin::Pin;

use super::Credentials;
use super::chain::{Source, SourceKind};
use super::http::{FetchError, HttpClients};
use super::{ecs, sts, uri};

/// Fetches credentials from `source` once. For `AssumeRole` the base source is fetched first,
/// every time: its credentials may be temporary too (a `ChainableRamRoleArn` over an ECS role),
/// and a refresh every forty minutes or so can afford the extra call that caching would save.
pub(super) fn fetch<'a>(
    source: &'a Source,
    clients: &'a HttpClients,
) -> Pin<Box<dyn Future<Output = Result<Credentials, FetchError>> + Send + 'a>> {
    Box::pin(async move {
        match &source.kind {
            SourceKind::Static(credentials) => Ok(credentials.clone()),
            SourceKind::Oidc(role) => sts::assume_role_with_oidc(&clients.sts, role).await,
            SourceKind::Uri(source) => uri::fetch(&clients.sts, source).await,
            SourceKind::AssumeRole { base, role } => {
                let base = fetch(base, clients).await?;
                sts::assume_role(&clients.sts, &base, role).await
            }
            SourceKind::Ecs(role) => ecs::fetch(&clients.metadata, role).await,
        }
    })
}
