//! The operators' side of the audit trail: who runs a command (`--actor`, else the OS user; the
//! host name), recording an action ([`record`], the one call each command makes once it knows
//! the outcome) and `stopcaster audit`, which lists the trail as a table, JSON or CSV.

use std::io::Write;
use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;

use crate::config::DatabaseArgs;
use crate::domain::audit::{Entry, Outcome, Source, Who};
use crate::domain::parse_since;
use crate::export::{AUDIT_COLUMNS, audit_csv_row, audit_fields, csv_record};
use crate::ops::table::{cell, table};
use crate::store;

/// `--actor NAME`: who the audit trail says acted (default: the OS user).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ActorArgs {
    /// Who the audit trail names for this action (default: the OS user, $USER).
    #[arg(long, value_name = "NAME")]
    pub actor: Option<String>,
}

impl ActorArgs {
    /// Who runs this command, from this host.
    pub(crate) fn who(&self) -> Who {
        let user = self.actor.clone().unwrap_or_else(os_user);
        Who::new(&user, Source::Cli, &host_name())
    }
}

/// The OS user running a command (`USER`, `LOGNAME`, `USERNAME`), or `unknown`.
pub(crate) fn os_user() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// This machine's host name, or `unknown`.
pub(crate) fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Records `entry`. A trail that cannot be written does not undo the action (it is done):
/// a warning says the action is missing from the trail.
pub(crate) async fn record(pool: &PgPool, entry: &Entry) {
    if let Err(e) = store::record_action(pool, entry).await {
        eprintln!(
            "warning: this {} is not in the audit trail: database: {e}",
            entry.action.as_str()
        );
    }
}

/// [`record`] for a command that has no pool open (`enqueue`): connects briefly. A database
/// that cannot be reached is warned of only when the action was done (`Failed` has its own
/// error line, which stays the one line the operator reads).
pub(crate) async fn record_at(database_url: &str, entry: &Entry) {
    match store::pool_checked(database_url, 1).await {
        Ok(pool) => {
            record(&pool, entry).await;
            pool.close().await;
        }
        Err(_) if matches!(entry.outcome, Outcome::Failed(_)) => {}
        Err(e) => eprintln!(
            "warning: this {} is not in the audit trail: database: {e}",
            entry.action.as_str()
        ),
    }
}

/// `stopcaster audit`'s arguments.
#[derive(clap::Args, Clone, Debug)]
pub struct AuditArgs {
    /// Only actions of the last DURATION (90s, 2h, 7d).
    #[arg(long, value_parser = parse_since)]
    pub since: Option<Duration>,
    /// table, json or csv.
    #[arg(long, value_parser = crate::ops::args::choice::<AuditFormat>("a format"), default_value = "table")]
    pub format: AuditFormat,
    /// At most this many actions, newest first.
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditFormat {
    #[default]
    Table,
    Json,
    Csv,
}

/// Runs `stopcaster audit`, writing to `out`.
pub async fn run(args: &AuditArgs, out: &mut dyn Write) -> Result<(), AuditError> {
    let pool = store::migrate(&args.database.database_url).await?;
    let rows = store::audit_rows(&pool, args.since, i64::from(args.limit)).await;
    pool.close().await;
    let rows = rows?;
    match args.format {
        AuditFormat::Json => {
            let doc = json!({ "actions": rows });
            writeln!(out, "{doc:#}")?;
        }
        AuditFormat::Csv => {
            out.write_all(csv_record(AUDIT_COLUMNS).as_bytes())?;
            for row in &rows {
                out.write_all(audit_csv_row(row).as_bytes())?;
            }
        }
        AuditFormat::Table if rows.is_empty() => writeln!(out, "no actions recorded")?,
        AuditFormat::Table => {
            let header = &AUDIT_COLUMNS[..AUDIT_COLUMNS.len() - 1];
            let lines: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    audit_fields(r)
                        .into_iter()
                        .take(header.len())
                        .map(|c| cell(c.unwrap_or_else(|| "-".to_owned())))
                        .collect()
                })
                .collect();
            out.write_all(table(header, &lines).as_bytes())?;
        }
    }
    out.flush()?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("writing the output: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_actor_is_the_flag_or_the_os_user_from_this_host() {
        let who = ActorArgs {
            actor: Some("alice".into()),
        }
        .who();
        assert_eq!(who.actor, "alice");
        assert_eq!(who.source, Source::Cli);
        assert_eq!(who.origin, crate::domain::audit::clip(&host_name(), 64));
        assert!(!ActorArgs::default().who().actor.is_empty());
    }
}
