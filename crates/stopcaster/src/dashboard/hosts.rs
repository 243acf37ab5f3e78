//! Which `Host` headers a dashboard with a password answers to. A web page elsewhere can make
//! its own host name resolve to the dashboard's address (DNS rebinding); the browser then
//! sends that page's name as `Host`, which is not one the operator allowed, and gets 421.
//!
//! By default: `localhost`, `127.0.0.1`, `[::1]`, the `--listen` address, and the address the
//! client actually connected to (so that `--listen 0.0.0.0:8090` answers to
//! `http://10.0.0.5:8090`: an address typed as digits cannot be rebound, only a name can).
//! `STOPCASTER_DASHBOARD_HOSTS` replaces all of these with its own list. Ports are ignored.

use std::net::{IpAddr, SocketAddr};

/// The host names and addresses allowed, normalised ([`normalise`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AllowedHosts {
    names: Vec<String>,
    /// Also the address the connection came in on (the default list only).
    connection_address: bool,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "STOPCASTER_DASHBOARD_HOSTS: {0:?} is not a host name or an address (a comma-separated list such as dash.example.com,10.0.0.5)"
)]
pub(crate) struct BadHost(pub String);

impl AllowedHosts {
    /// The operator's list (`None` or blank: the default list).
    pub(crate) fn new(listen: SocketAddr, list: Option<&str>) -> Result<Self, BadHost> {
        let list = list.map(str::trim).filter(|l| !l.is_empty());
        let Some(list) = list else {
            let mut names: Vec<String> =
                ["localhost", "127.0.0.1", "::1"].map(str::to_owned).into();
            if !listen.ip().is_unspecified() {
                names.push(normalise_ip(listen.ip()));
            }
            return Ok(AllowedHosts {
                names,
                connection_address: true,
            });
        };
        let names = list
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|entry| {
                Some(entry)
                    .filter(|e| plausible(e))
                    .and_then(host_of)
                    .ok_or_else(|| BadHost(entry.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AllowedHosts {
            names,
            connection_address: false,
        })
    }

    /// The request's `Host` header is allowed; `local` is the address the connection came in
    /// on.
    pub(crate) fn allows(&self, host_header: &str, local: Option<IpAddr>) -> bool {
        let Some(host) = host_of(host_header) else {
            return false;
        };
        if self.names.contains(&host) {
            return true;
        }
        self.connection_address && local.is_some_and(|ip| normalise_ip(ip) == host)
    }
}

/// The host of a `Host` header or a list entry, port and brackets removed, normalised:
/// `Example.COM.:8090` is `example.com`, `[::0001]:80` is `::1`.
fn host_of(text: &str) -> Option<String> {
    let text = text.trim();
    let name = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.starts_with(':')) {
            return None;
        }
        inside
    } else if text.matches(':').count() > 1 {
        // An IPv6 address without brackets (a list entry may be written so).
        text
    } else {
        text.split_once(':').map_or(text, |(name, _port)| name)
    };
    if name.is_empty() {
        return None;
    }
    Some(normalise(name))
}

fn normalise(name: &str) -> String {
    match name.parse::<IpAddr>() {
        Ok(ip) => normalise_ip(ip),
        Err(_) => name.trim_end_matches('.').to_ascii_lowercase(),
    }
}

fn normalise_ip(ip: IpAddr) -> String {
    ip.to_canonical().to_string()
}

/// A list entry looks like a host name or an address, perhaps with a port (no spaces, slashes
/// or schemes).
fn plausible(entry: &str) -> bool {
    entry
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_default_list() {
        let h = AllowedHosts::new(listen("10.0.0.5:8090"), None).unwrap();
        for ok in [
            "localhost:8090",
            "LOCALHOST",
            "127.0.0.1:8090",
            "[::1]:8090",
            "10.0.0.5:8090",
            "10.0.0.5",
            "localhost.:1",
        ] {
            assert!(h.allows(ok, None), "{ok}");
        }
        for bad in [
            "",
            "evil.example:8090",
            "10.0.0.6:8090",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "[::1",
            "[::1]x",
            ":8090",
        ] {
            assert!(!h.allows(bad, None), "{bad}");
        }
        assert_eq!(
            AllowedHosts::new(listen("10.0.0.5:8090"), Some("  ")).unwrap(),
            h,
            "a blank list is no list"
        );
    }

    #[test]
    fn a_wildcard_listen_answers_to_the_address_connected_to() {
        let h = AllowedHosts::new(listen("0.0.0.0:8090"), None).unwrap();
        let local: IpAddr = "10.0.0.5".parse().unwrap();
        assert!(h.allows("10.0.0.5:8090", Some(local)));
        assert!(!h.allows("10.0.0.6:8090", Some(local)));
        assert!(!h.allows("0.0.0.0:8090", Some(local)));
        assert!(!h.allows("evil.example:8090", Some(local)));
        // A v4 client on a dual-stack socket comes in on a mapped address.
        let mapped: IpAddr = "::ffff:10.0.0.5".parse().unwrap();
        assert!(h.allows("10.0.0.5", Some(mapped)));
    }

    #[test]
    fn the_operators_list_replaces_the_default() {
        let h = AllowedHosts::new(
            listen("0.0.0.0:8090"),
            Some("Dash.Example.com, 10.0.0.5:8090,[2001:db8::1],2001:db8::2,"),
        )
        .unwrap();
        for ok in [
            "dash.example.com:8090",
            "DASH.example.COM",
            "dash.example.com.",
            "10.0.0.5",
            "[2001:db8::1]:443",
            "[2001:db8:0::2]",
        ] {
            assert!(h.allows(ok, None), "{ok}");
        }
        let local: IpAddr = "10.0.0.9".parse().unwrap();
        for bad in [
            "localhost:8090",
            "127.0.0.1",
            "10.0.0.9",
            "sub.dash.example.com",
        ] {
            assert!(!h.allows(bad, Some(local)), "{bad}");
        }
    }

    #[test]
    fn a_bad_entry_is_refused_by_name() {
        for bad in ["http://dash.example.com", "dash example", "a/b", "[::1"] {
            let e = AllowedHosts::new(listen("0.0.0.0:1"), Some(&format!("ok.example,{bad}")));
            assert_eq!(e, Err(BadHost(bad.to_owned())), "{bad}");
        }
    }
}
