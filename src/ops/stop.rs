//! `stopcaster stop`: one signed StopCaster call now, no queue, for an operator at a terminal.

use std::process::ExitCode;

use crate::config::{ApiArgs, ConfigError};
use crate::domain::{CasterId, RegionId, Rejection};
use tokio_util::sync::CancellationToken;

use crate::live::client::ClientError;
use crate::live::credentials::http::ClientBuildError;
use crate::live::credentials::{
    CredentialsError, CredentialsProvider, HttpClients, ProviderContext, RefreshPolicy,
};
use crate::live::{ApiError, CallOutcome, LiveClient, StopCasterRequest};

/// Exit codes of `stopcaster stop` besides 0 (stopped) and 1 (configuration).
mod exit {
    pub const PERMANENT: u8 = 3;
    pub const RETRYABLE: u8 = 4;
    pub const TRANSPORT: u8 = 5;
}

#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("invalid argument: {0}")]
    Invalid(#[from] Rejection),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    Trust(#[from] ClientBuildError),
}

/// Makes the call, prints the RequestId (stdout) or the error (stderr), and returns the exit
/// code that says which kind of answer it was.
pub async fn run(
    caster_id: &str,
    region: Option<&str>,
    api: &ApiArgs,
) -> Result<ExitCode, StopError> {
    let provider = CredentialsProvider::start(
        api.credentials_source()?,
        ProviderContext {
            clients: HttpClients::new(api.ca_file.as_deref())?,
            policy: RefreshPolicy::default(),
            shutdown: CancellationToken::new(),
        },
    )
    .await?;
    let credentials = provider.current()?;
    let caster_id = CasterId::parse(caster_id)?;
    let region = match region {
        Some(r) => RegionId::parse(r)?,
        None => api.region()?,
    };
    let client = LiveClient::new(&api.client_config())?;
    let outcome = client
        .stop_caster(
            &credentials,
            StopCasterRequest {
                caster_id: &caster_id,
                region_id: &region,
            },
        )
        .await;
    Ok(match outcome {
        CallOutcome::Stopped { request_id, .. } => {
            println!("{request_id}");
            ExitCode::SUCCESS
        }
        // The outcome's variant is its classification: 3 permanent, 4 worth retrying.
        // Refused credentials are permanent for this one call: nothing retries it.
        CallOutcome::Permanent(e) | CallOutcome::CredentialsRefused(e) => {
            print_error(&e);
            ExitCode::from(exit::PERMANENT)
        }
        CallOutcome::Retryable(e) => {
            print_error(&e);
            ExitCode::from(exit::RETRYABLE)
        }
        CallOutcome::Transport(t) => {
            eprintln!("{}: {} (RequestId none)", t.code(), t.message);
            ExitCode::from(exit::TRANSPORT)
        }
    })
}

fn print_error(e: &ApiError) {
    eprintln!(
        "{}: {} (RequestId {})",
        e.code,
        e.message,
        e.request_id.as_deref().unwrap_or("none")
    );
}
