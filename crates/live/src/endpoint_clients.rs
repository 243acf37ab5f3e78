//! One [`LiveClient`] per endpoint: each its own connection pool, warmed and measured on its
//! own (a far endpoint's round trip says nothing of a near one's). The overrides are read once,
//! when the set is built, and every endpoint a call can resolve to gets its client then, so a
//! bad setting fails the start, not a job. The quota is not here: it stays per account.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::client::{ClientConfig, ClientError, LiveClient, Warming};
use crate::endpoints::{self, ENDPOINT_VAR};
use crate::ids::RegionId;

/// The endpoint settings, read once: `STOPCASTER_ENDPOINT` and every
/// `STOPCASTER_ENDPOINT_<REGION>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointSettings {
    /// `STOPCASTER_ENDPOINT` (or its flag).
    pub global: Option<String>,
    /// `STOPCASTER_ENDPOINT_<REGION>` variables by name.
    pub per_region: HashMap<String, String>,
}

impl EndpointSettings {
    /// The per-region variables of `vars` (a process's environment), with `global`.
    pub fn from_vars(global: Option<String>, vars: impl Iterator<Item = (String, String)>) -> Self {
        let prefix = format!("{ENDPOINT_VAR}_");
        Self {
            global,
            per_region: vars.filter(|(k, _)| k.starts_with(&prefix)).collect(),
        }
    }

    /// The endpoint of a call in `region` for an account whose own endpoint is `account`.
    pub fn resolve(&self, region: &RegionId, account: Option<&str>) -> String {
        endpoints::resolve(region, account, &|name| {
            if name == ENDPOINT_VAR {
                self.global.clone()
            } else {
                self.per_region.get(name).cloned()
            }
        })
    }

    /// The routes these settings give, for the start-up line: by region, then the accounts'
    /// own (`accounts` as name and endpoint).
    pub fn describe<'a>(&self, accounts: impl Iterator<Item = (&'a str, &'a str)>) -> String {
        let mut routes: Vec<String> = match &self.global {
            Some(global) => vec![format!("every region: {global}")],
            None => endpoints::REGIONAL
                .iter()
                .map(|(region, e)| format!("{region}: {e}"))
                .chain(std::iter::once(format!(
                    "other regions: {}",
                    endpoints::CENTRAL_ENDPOINT
                )))
                .collect(),
        };
        let mut overrides: Vec<String> = self
            .per_region
            .iter()
            .map(|(var, e)| {
                let region = var[ENDPOINT_VAR.len() + 1..].to_ascii_lowercase();
                format!("{}: {}", region.replace('_', "-"), e.trim())
            })
            .collect();
        overrides.sort();
        routes.extend(overrides);
        routes.extend(accounts.map(|(name, e)| format!("account {name}: {e}")));
        routes.join(", ")
    }

    /// Every endpoint a call can resolve to with these settings and these accounts' own.
    fn candidates<'a>(&self, accounts: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
        endpoints::table_endpoints()
            .map(str::to_owned)
            .chain(self.global.iter().cloned())
            .chain(self.per_region.values().cloned())
            .chain(accounts.map(str::to_owned))
            .map(|e| e.trim().trim_end_matches('/').to_owned())
            .filter(|e| !e.is_empty())
            .collect()
    }
}

/// The clients by endpoint, and which endpoints are in use.
#[derive(Clone, Debug)]
pub struct EndpointClients {
    settings: Arc<EndpointSettings>,
    clients: Arc<BTreeMap<String, LiveClient>>,
    /// Whether each endpoint is in use: a flag per endpoint, set without a lock on every job.
    in_use: Arc<BTreeMap<String, AtomicBool>>,
}

impl EndpointClients {
    /// A client for every endpoint these settings and `account_endpoints` can resolve to,
    /// each a copy of `config` but for its endpoint, warmed for `warming` when given.
    pub fn new<'a>(
        settings: EndpointSettings,
        account_endpoints: impl Iterator<Item = &'a str>,
        config: &ClientConfig,
        warming: Option<Warming>,
    ) -> Result<Self, ClientError> {
        let mut clients = BTreeMap::new();
        for endpoint in settings.candidates(account_endpoints) {
            let client = LiveClient::new(&ClientConfig {
                endpoint: endpoint.clone(),
                ..config.clone()
            })?;
            let client = match warming {
                Some(w) => client.with_warming(w),
                None => client,
            };
            clients.insert(endpoint, client);
        }
        let in_use = clients
            .keys()
            .map(|e| (e.clone(), AtomicBool::new(false)))
            .collect();
        Ok(Self {
            settings: Arc::new(settings),
            clients: Arc::new(clients),
            in_use: Arc::new(in_use),
        })
    }

    /// The endpoint of a call in `region` by an account whose own endpoint is `account`.
    pub fn endpoint(&self, region: &RegionId, account: Option<&str>) -> String {
        self.settings.resolve(region, account)
    }

    /// The client of a call in `region` by an account whose own endpoint is `account`; the
    /// endpoint is in use from now on.
    pub fn client_for(&self, region: &RegionId, account: Option<&str>) -> &LiveClient {
        let endpoint = self.endpoint(region, account);
        let client = self
            .clients
            .get(&endpoint)
            .expect("every endpoint a call can resolve to has its client from the start");
        if let Some(used) = self.in_use.get(&endpoint) {
            used.store(true, Ordering::Relaxed);
        }
        client
    }

    /// Whether every endpoint in use answers HTTP at all ([`LiveClient::reachable`]), checked
    /// together; false while none is in use. For a paused account, to notice the endpoints'
    /// return between probes: an endpoint still down keeps the probes on their backoff.
    pub async fn reachable(&self) -> bool {
        let endpoints = self.in_use();
        let clients: Vec<&LiveClient> = endpoints
            .iter()
            .filter_map(|endpoint| self.clients.get(endpoint))
            .collect();
        !clients.is_empty()
            && futures_util::future::join_all(clients.iter().map(|c| c.reachable()))
                .await
                .into_iter()
                .all(|up| up)
    }

    /// Each endpoint in use and its clock's lead over this machine's, in seconds
    /// ([`LiveClient::clock_skew`]).
    pub fn clock_skews(&self) -> Vec<(String, i64)> {
        self.in_use()
            .into_iter()
            .filter_map(|endpoint| {
                let skew = self.clients.get(&endpoint)?.clock_skew();
                Some((endpoint, skew))
            })
            .collect()
    }

    /// The endpoints calls have been made to (or are about to be), in order.
    pub fn in_use(&self) -> Vec<String> {
        self.in_use
            .iter()
            .filter(|(_, used)| used.load(Ordering::Relaxed))
            .map(|(endpoint, _)| endpoint.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(r: &str) -> RegionId {
        RegionId::parse(r).unwrap()
    }

    #[test]
    fn reads_only_the_endpoint_variables() {
        let vars = [
            ("STOPCASTER_ENDPOINT_AP_SOUTHEAST_1", "http://sg"),
            ("STOPCASTER_STS_ENDPOINT", "http://sts"),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let s = EndpointSettings::from_vars(Some("http://all".into()), vars.into_iter());
        assert_eq!(s.per_region.len(), 1);
        assert_eq!(s.resolve(&region("ap-southeast-1"), None), "http://sg");
        assert_eq!(s.resolve(&region("cn-beijing"), None), "http://all");
    }

    #[test]
    fn describes_the_routes() {
        let table = EndpointSettings::default();
        assert_eq!(
            table.describe(std::iter::empty()),
            "ap-southeast-1: https://live.ap-southeast-1.aliyuncs.com, \
             eu-central-1: https://live.eu-central-1.aliyuncs.com, \
             other regions: https://live.aliyuncs.com"
        );
        let vars = [("STOPCASTER_ENDPOINT_CN_SHANGHAI", "http://sh")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let set = EndpointSettings::from_vars(Some("http://all".into()), vars.into_iter());
        assert_eq!(
            set.describe([("prod", "http://prod")].into_iter()),
            "every region: http://all, cn-shanghai: http://sh, account prod: http://prod"
        );
    }

    #[test]
    fn every_resolvable_endpoint_has_a_client_and_use_is_recorded() {
        let mut per_region = HashMap::new();
        per_region.insert(
            "STOPCASTER_ENDPOINT_CN_SHANGHAI".to_owned(),
            "http://sh/".to_owned(),
        );
        let settings = EndpointSettings {
            global: None,
            per_region,
        };
        let clients = EndpointClients::new(
            settings,
            ["http://acct"].into_iter(),
            &ClientConfig::new("unused"),
            None,
        )
        .unwrap();
        assert!(clients.in_use().is_empty());
        for (r, account) in [
            ("cn-shanghai", None),
            ("cn-beijing", None),
            ("ap-southeast-1", None),
            ("eu-central-1", None),
            ("cn-beijing", Some("http://acct")),
        ] {
            clients.client_for(&region(r), account);
        }
        assert_eq!(
            clients.in_use(),
            [
                "http://acct",
                "http://sh",
                "https://live.aliyuncs.com",
                "https://live.ap-southeast-1.aliyuncs.com",
                "https://live.eu-central-1.aliyuncs.com",
            ]
        );
    }

    #[test]
    fn a_bad_endpoint_fails_at_once() {
        let settings = EndpointSettings {
            global: Some("live.aliyuncs.com".into()),
            per_region: HashMap::new(),
        };
        let e = EndpointClients::new(settings, std::iter::empty(), &ClientConfig::new(""), None);
        assert!(matches!(e, Err(ClientError::Endpoint(_))), "{e:?}");
    }
}
