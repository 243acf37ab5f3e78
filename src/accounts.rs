//! The accounts jobs may use: credentials plus the quota they share. The default account comes
//! from the environment; named ones are selected by a job's `account` field.

use std::collections::HashMap;

use crate::credentials::Credentials;
use crate::domain::AccountName;

/// One account: its credentials and the key its quota is paced under.
#[derive(Clone, Debug)]
pub struct Account {
    /// The pacer's key: the AccessKeyId, since Alibaba counts the quota per account key.
    pub pacer_key: String,
    pub credentials: Credentials,
    pub qps: u32,
}

impl Account {
    pub fn new(credentials: Credentials, qps: u32) -> Self {
        Self {
            pacer_key: credentials.access_key_id().to_owned(),
            credentials,
            qps,
        }
    }
}

/// The default account and the named ones.
#[derive(Clone, Debug, Default)]
pub struct Accounts {
    pub default: Option<Account>,
    pub named: HashMap<String, Account>,
}

impl Accounts {
    /// The account a job names, or the default one.
    pub fn resolve(&self, name: Option<&AccountName>) -> Option<&Account> {
        match name {
            None => self.default.as_ref(),
            Some(name) => self.named.get(name.as_str()),
        }
    }

    /// The quota of a pacer key (the smallest configured for it, if accounts share a key).
    pub fn qps_of(&self, pacer_key: &str) -> Option<u32> {
        self.default
            .iter()
            .chain(self.named.values())
            .filter(|a| a.pacer_key == pacer_key)
            .map(|a| a.qps)
            .min()
    }
}
