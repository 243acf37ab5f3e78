//! `--accounts N`: a fleet of N accounts, each of its own UID with one key, the workers given
//! them all in an accounts file (keys by environment variable, UIDs learnt from the stand-in's
//! STS), the jobs interleaved across them. Also what the figures need to know of the fleet.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context as _;

use stopcaster_live::ids::AccountName;

use super::{ACCOUNT_UID, KEY_SECRET};

/// The `i`-th account's AccessKeyId.
pub(super) fn key_id(i: usize) -> String {
    format!("LTAIbenchfleet{i:04}")
}

/// The `i`-th account's UID (the first is the single-account bench's).
pub(super) fn uid(i: usize) -> String {
    let base: u64 = ACCOUNT_UID.parse().expect("a numeric UID");
    (base + i as u64).to_string()
}

/// The name of the account the `k`-th job names: round-robin, so every account's schedule
/// starts with the first jobs.
pub(super) fn account_of(k: usize, accounts: usize) -> AccountName {
    AccountName::parse(&format!("a{}", k % accounts)).expect("a valid account name")
}

/// The accounts file of a fleet run, removed when dropped.
pub(super) struct AccountsFile {
    pub path: PathBuf,
    pub accounts: usize,
}

impl AccountsFile {
    pub(super) fn write(run_id: &str, accounts: usize) -> anyhow::Result<Self> {
        let specs: Vec<String> = (0..accounts)
            .map(|i| {
                format!(
                    r#""a{i}": {{"access_key_id_env": "BENCH_FLEET_ID_{i}", "access_key_secret_env": "BENCH_FLEET_SECRET"}}"#
                )
            })
            .collect();
        let path = std::env::temp_dir().join(format!("stopcaster-bench-{run_id}-accounts.json"));
        std::fs::write(
            &path,
            format!(r#"{{"accounts": {{{}}}}}"#, specs.join(", ")),
        )
        .with_context(|| format!("writing {}", path.display()))?;
        Ok(Self { path, accounts })
    }

    /// The file and each account's key for a worker's environment.
    pub(super) fn configure(&self, command: &mut Command) {
        command
            .env("STOPCASTER_ACCOUNTS_FILE", &self.path)
            .env("BENCH_FLEET_SECRET", KEY_SECRET);
        for i in 0..self.accounts {
            command.env(format!("BENCH_FLEET_ID_{i}"), key_id(i));
        }
    }
}

impl Drop for AccountsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
