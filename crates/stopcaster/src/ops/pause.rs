//! `stopcaster pause` and `stopcaster resume`: an operator's pause of one account, written to
//! Postgres, where every worker reads it within a second (see `worker/operator.rs`); the
//! account's jobs wait with their attempt budget untouched, its scheduled stops are held and
//! reported late. Each is recorded in the audit trail.

use std::io::Write;
use std::path::PathBuf;

use time::OffsetDateTime;

use crate::config::DatabaseArgs;
use crate::domain::audit::{Action, Entry, Outcome};
use crate::domain::display::{CELL_CHARS, bounded};
use crate::domain::pause::{self, PauseRequestError};
use crate::domain::time::rfc3339_micros;
use crate::ops::audit::{ActorArgs, record};
use crate::store;

/// `stopcaster pause`'s arguments.
#[derive(clap::Args, Clone, Debug)]
pub struct PauseArgs {
    /// The account: a name of the accounts file, or `default` for the environment's credentials.
    #[arg(long)]
    pub account: String,
    /// Why: what the next operator, /readyz and the dashboard show.
    #[arg(long)]
    pub reason: String,
    /// Lift the pause by itself at this time: RFC 3339 (2026-12-03T21:30:00Z) or a duration from
    /// now (30m, 2h). Default: until `stopcaster resume`.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Named accounts, to refuse a name that is not one of them.
    #[arg(long, env = "STOPCASTER_ACCOUNTS_FILE")]
    pub accounts_file: Option<PathBuf>,
    #[command(flatten)]
    pub actor: ActorArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// `stopcaster resume`'s arguments.
#[derive(clap::Args, Clone, Debug)]
pub struct ResumeArgs {
    /// The account paused by `stopcaster pause` (or the dashboard).
    #[arg(long)]
    pub account: String,
    #[command(flatten)]
    pub actor: ActorArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    #[error(transparent)]
    Request(#[from] PauseRequestError),
    #[error("accounts file {0}: {1}")]
    AccountsFile(String, String),
    #[error("--until {0}: that time has passed by the database's clock; nothing was paused")]
    PastOnServer(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("writing the output: {0}")]
    Io(#[from] std::io::Error),
}

/// The names of the accounts file, if one is given.
pub(crate) fn account_names(path: Option<&PathBuf>) -> Result<Option<Vec<String>>, PauseError> {
    let Some(path) = path else { return Ok(None) };
    let err = |m: String| PauseError::AccountsFile(path.display().to_string(), m);
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    Ok(Some(
        value
            .get("accounts")
            .and_then(|a| a.as_object())
            .map(|a| a.keys().cloned().collect())
            .unwrap_or_default(),
    ))
}

/// What an audit row says a pause was.
pub(crate) fn pause_target(account: &str, reason: &str, until: Option<OffsetDateTime>) -> String {
    let until = until.map_or_else(
        || "until resumed".to_owned(),
        |u| format!("until {}", rfc3339_micros(u)),
    );
    format!("account {account} ({until}): {reason}")
}

/// Runs `stopcaster pause`: one line saying what is now paused.
pub async fn run_pause(args: &PauseArgs, out: &mut dyn Write) -> Result<(), PauseError> {
    let known = account_names(args.accounts_file.as_ref())?;
    let account = pause::account(&args.account, known.as_deref())?;
    let reason = pause::reason(&args.reason)?;
    let until = args
        .until
        .as_deref()
        .map(|u| pause::until(u, OffsetDateTime::now_utc()))
        .transpose()?;
    let who = args.actor.who();
    let pool = store::migrate(&args.database.database_url).await?;
    let done = store::pause_account(&pool, &account, &reason, &who, until).await;
    let target = pause_target(&account, &reason, until);
    let outcome = match &done {
        Ok(true) => Outcome::Ok,
        Ok(false) => Outcome::Failed("until has passed by the database's clock".into()),
        Err(e) => Outcome::Failed(format!("database: {e}")),
    };
    record(
        &pool,
        &Entry::new(Action::Pause, &who, &target, Some(1), outcome),
    )
    .await;
    pool.close().await;
    if !done? {
        return Err(PauseError::PastOnServer(
            args.until.clone().unwrap_or_default(),
        ));
    }
    writeln!(
        out,
        "account {account} paused {}: {}; every worker holds its calls within a second",
        until.map_or_else(
            || "until `stopcaster resume`".to_owned(),
            |u| format!("until {}", rfc3339_micros(u))
        ),
        bounded(&reason, CELL_CHARS)
    )?;
    Ok(())
}

/// Runs `stopcaster resume`: one line saying what pause ended, or that there was none.
pub async fn run_resume(args: &ResumeArgs, out: &mut dyn Write) -> Result<(), PauseError> {
    let account = pause::account(&args.account, None)?;
    let who = args.actor.who();
    let pool = store::migrate(&args.database.database_url).await?;
    let ended = store::resume_account(&pool, &account).await;
    if let Ok(Some(_)) = &ended {
        // Its parked jobs go back to the queue now rather than at the end of their park.
        if let Err(e) = store::release_parked(&pool, &account).await {
            eprintln!("warning: parked jobs are released by the workers instead: {e}");
        }
    }
    let outcome = match &ended {
        Ok(Some(_)) => Outcome::Ok,
        Ok(None) => Outcome::Partial("the account was not paused by an operator".into()),
        Err(e) => Outcome::Failed(format!("database: {e}")),
    };
    let count = matches!(ended, Ok(Some(_))).then_some(1).or(Some(0));
    record(
        &pool,
        &Entry::new(
            Action::Resume,
            &who,
            &format!("account {account}"),
            count,
            outcome,
        ),
    )
    .await;
    pool.close().await;
    match ended? {
        Some(p) => writeln!(
            out,
            "account {account} resumed (paused by {} at {}: {}); every worker calls again within a second",
            bounded(&p.paused_by, CELL_CHARS),
            rfc3339_micros(p.paused_at),
            bounded(&p.reason, CELL_CHARS)
        )?,
        None => writeln!(
            out,
            "account {account} was not paused by an operator: nothing to resume"
        )?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_row_says_which_account_until_when_and_why() {
        assert_eq!(
            pause_target("prod", "key leaked", None),
            "account prod (until resumed): key leaked"
        );
        let at = time::macros::datetime!(2026-12-03 21:30 UTC);
        assert_eq!(
            pause_target("prod", "r", Some(at)),
            "account prod (until 2026-12-03T21:30:00.000000Z): r"
        );
    }
}
