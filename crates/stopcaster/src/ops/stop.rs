//! `stopcaster stop`: one signed StopCaster call now, no queue, for an operator at a terminal.
//!
//! The call goes on the record like a job's (batch [`STOP_COMMAND_BATCH`]): its row in
//! `caster_stop_jobs` and its attempt, with the RequestId, in `caster_stop_attempts`, through
//! the same store functions the worker uses. The record is kept when the database can be
//! reached; when it cannot, the call is made all the same (stopping the studio is what the
//! operator asked for) and a warning says it was not recorded.

use std::process::ExitCode;
use std::time::Duration;

use sqlx::PgPool;

use crate::config::{ApiArgs, ConfigError};
use tokio_util::sync::CancellationToken;

use crate::domain::audit::{Action, Entry, Outcome, Who};
use crate::domain::{CasterId, Job, JobId, JobStatus, RegionId, Rejection, Verdict, conclusion};
use crate::errors::{Targets, one_line};
use crate::ops::audit::{self, ActorArgs};
use crate::store::{self, AttemptStart};
use stopcaster_live::client::ClientError;
use stopcaster_live::credentials::http::ClientBuildError;
use stopcaster_live::credentials::{
    CredentialsError, CredentialsProvider, HttpClients, ProviderContext, RefreshPolicy,
};
use stopcaster_live::{ApiError, CallOutcome, ClientConfig, LiveClient, StopCasterRequest};

/// The batch id of the calls `stop` records.
pub(crate) const STOP_COMMAND_BATCH: &str = "stop-command";

/// Exit codes of `stopcaster stop` besides 0 (stopped) and 1 (configuration).
mod exit {
    pub(super) const PERMANENT: u8 = 3;
    pub(super) const RETRYABLE: u8 = 4;
    pub(super) const TRANSPORT: u8 = 5;
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

/// Makes the call, records it when the database at `database_url` can be reached, prints the
/// RequestId (stdout) or the error (stderr), and returns the exit code that says which kind of
/// answer it was. The region is the `--region` (`STOPCASTER_REGION`) setting.
pub async fn run(
    caster_id: &str,
    api: &ApiArgs,
    database_url: &str,
    actor: &ActorArgs,
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
    let region = RegionId::parse(&api.default_region)?;
    let client_config = api.client_config();
    let client = LiveClient::new(&ClientConfig {
        endpoint: api.endpoint_settings().resolve(&region, None),
        ..client_config.clone()
    })?;
    let job = stop_job(caster_id, &region);
    let targets = Targets {
        broker: None,
        database: Some(database_url.to_owned()),
    };
    let lease = store::claim_lease(&client_config);
    let record = Record::open_or_warn(database_url, &job, &region, lease, &targets).await;
    let request = StopCasterRequest {
        caster_id: &job.caster_id,
        region_id: &region,
    };
    let answer = client.call(&credentials, request, None).await;
    let outcome = answer.outcome;
    if let Some(record) = record {
        let entry = audit_entry(&actor.who(), &job, &region, &outcome);
        let answered = store::Answered {
            outcome: &outcome,
            quota: answer.quota.binding(),
        };
        record.finish_or_warn(&entry, answered, &targets).await;
    }
    Ok(report(outcome))
}

/// The job this call is recorded as: a new id, in batch [`STOP_COMMAND_BATCH`].
fn stop_job(caster_id: CasterId, region: &RegionId) -> Job {
    Job {
        job_id: JobId::new_random(),
        caster_id,
        region_id: Some(region.clone()),
        batch_id: Some(STOP_COMMAND_BATCH.to_owned()),
        account: None,
        not_before: None,
    }
}

/// Prints the RequestId (stdout) or the error (stderr); the exit code says which kind of
/// answer it was.
fn report(outcome: CallOutcome) -> ExitCode {
    match outcome {
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
    }
}

/// The job row and attempt of this call, opened before it is made, so that a call cut short
/// (a crash, Ctrl-C) leaves an attempt whose outcome is unknown, as a worker's would.
struct Record {
    pool: PgPool,
    job_id: JobId,
    attempt: u32,
}

impl Record {
    /// Opens the record, or warns that the call is not recorded: it is made all the same.
    async fn open_or_warn(
        database_url: &str,
        job: &Job,
        region: &RegionId,
        lease: Duration,
        targets: &Targets,
    ) -> Option<Self> {
        match Self::open(database_url, job, region, lease).await {
            Ok(record) => Some(record),
            Err(e) => {
                eprintln!(
                    "warning: this call is not recorded: {}",
                    one_line(&e, targets)
                );
                None
            }
        }
    }

    /// Puts the call in the audit trail and its outcome on its attempt, or warns that the
    /// outcome is not recorded.
    async fn finish_or_warn(self, entry: &Entry, answered: store::Answered<'_>, targets: &Targets) {
        audit::record(&self.pool, entry).await;
        if let Err(e) = self.finish(answered).await {
            eprintln!(
                "warning: the call was made but its outcome is not recorded: {}",
                one_line(&e, targets)
            );
        }
    }

    async fn open(
        database_url: &str,
        job: &Job,
        region: &RegionId,
        lease: Duration,
    ) -> Result<Self, sqlx::Error> {
        let pool = store::pool_checked(database_url, 1).await?;
        let payload = String::from_utf8(crate::ops::enqueue::job_body(job))
            .expect("a serialized job is UTF-8");
        store::open_job(&pool, job, region, &payload, false).await?;
        let worker = format!("stop-command-{}", std::process::id());
        match store::start_attempt(&pool, job.job_id, &worker, lease, None).await? {
            AttemptStart::Started { attempt, .. } => Ok(Self {
                pool,
                job_id: job.job_id,
                attempt,
            }),
            // A new job id: nobody else can hold or have finished it.
            other => Err(sqlx::Error::Protocol(format!(
                "a new job row was found {other:?}"
            ))),
        }
    }

    /// The attempt's answer, with the quota header it carried (the dashboard draws it).
    async fn finish(self, answered: store::Answered<'_>) -> Result<(), sqlx::Error> {
        let verdict = verdict(answered.outcome);
        store::finish_attempt(
            &self.pool,
            self.job_id,
            self.attempt,
            answered,
            Some(&verdict),
            None,
        )
        .await?;
        self.pool.close().await;
        Ok(())
    }
}

/// The audit trail's row for one `stop`: the studio, its job, and the answer.
fn audit_entry(who: &Who, job: &Job, region: &RegionId, outcome: &CallOutcome) -> Entry {
    let target = format!("caster {} in {region} (job {})", job.caster_id, job.job_id);
    let result = match outcome {
        CallOutcome::Stopped { .. } => Outcome::Ok,
        CallOutcome::Permanent(e)
        | CallOutcome::CredentialsRefused(e)
        | CallOutcome::Retryable(e) => Outcome::Failed(e.code.clone()),
        CallOutcome::Transport(t) => Outcome::Failed(t.code().to_owned()),
    };
    let count = matches!(outcome, CallOutcome::Stopped { .. })
        .then_some(1)
        .or(Some(0));
    Entry::new(Action::Stop, who, &target, count, result)
}

/// How a single call ends the job: it is not retried, so every failure is final.
fn verdict(outcome: &CallOutcome) -> Verdict {
    let (status, conclusion) = match outcome {
        CallOutcome::Stopped { .. } => (JobStatus::Succeeded, conclusion::STOPPED),
        // Refused credentials pause an account in a worker; for this one call they are final.
        CallOutcome::Permanent(_) | CallOutcome::CredentialsRefused(_) => {
            (JobStatus::Failed, conclusion::API_ERROR)
        }
        CallOutcome::Retryable(_) | CallOutcome::Transport(_) => {
            (JobStatus::Failed, conclusion::NOT_RETRIED)
        }
    };
    Verdict {
        status,
        conclusion,
        evidence_request_id: None,
    }
}

fn print_error(e: &ApiError) {
    eprintln!(
        "{}: {} (RequestId {})",
        e.code,
        e.message,
        e.request_id.as_deref().unwrap_or("none")
    );
}
