//! Which endpoint a call goes to: a job's region picks it from Alibaba Cloud's ApsaraVideo Live
//! endpoint table, unless the settings override it. Pure: the environment is read through a
//! function, so every rule is tested on its own.
//!
//! The order (first that says something wins): `STOPCASTER_ENDPOINT_<REGION>`, the account's
//! `endpoint` in the accounts file, `STOPCASTER_ENDPOINT`, then the table. The table is the
//! "Endpoints" page of ApsaraVideo Live's API reference
//! (<https://www.alibabacloud.com/help/doc-detail/50283.htm>): Singapore and Frankfurt have
//! endpoints of their own, every other region is served by the central one.

use crate::ids::RegionId;

/// The global override (the stand-in, a proxy): every region.
pub const ENDPOINT_VAR: &str = "STOPCASTER_ENDPOINT";
/// The central endpoint, for the regions the table names no endpoint of their own.
pub const CENTRAL_ENDPOINT: &str = "https://live.aliyuncs.com";

/// The regions of Alibaba's table with an endpoint of their own.
pub(crate) const REGIONAL: &[(&str, &str)] = &[
    ("ap-southeast-1", "https://live.ap-southeast-1.aliyuncs.com"),
    ("eu-central-1", "https://live.eu-central-1.aliyuncs.com"),
];

/// The variable that overrides one region's endpoint: `STOPCASTER_ENDPOINT_` and the region
/// id upper-cased with `-` as `_` (`ap-southeast-1` → `STOPCASTER_ENDPOINT_AP_SOUTHEAST_1`).
pub fn region_variable(region: &RegionId) -> String {
    let suffix: String = region
        .as_str()
        .chars()
        .map(|c| match c {
            '-' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    format!("{ENDPOINT_VAR}_{suffix}")
}

/// Every endpoint of Alibaba's table.
pub fn table_endpoints() -> impl Iterator<Item = &'static str> {
    REGIONAL
        .iter()
        .map(|(_, e)| *e)
        .chain(std::iter::once(CENTRAL_ENDPOINT))
}

/// Alibaba's table: the region's own endpoint, or the central one.
pub fn table_endpoint(region: &RegionId) -> &'static str {
    REGIONAL
        .iter()
        .find(|(r, _)| *r == region.as_str())
        .map_or(CENTRAL_ENDPOINT, |(_, e)| e)
}

/// The endpoint of a call in `region` by an account whose accounts-file entry names
/// `account_endpoint` (if any); `env` reads a variable. Empty values count as unset. The
/// result has no trailing `/`.
pub fn resolve(
    region: &RegionId,
    account_endpoint: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> String {
    let set = |v: Option<String>| v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    set(env(&region_variable(region)))
        .or_else(|| set(account_endpoint.map(str::to_owned)))
        .or_else(|| set(env(ENDPOINT_VAR)))
        .unwrap_or_else(|| table_endpoint(region).to_owned())
        .trim_end_matches('/')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(r: &str) -> RegionId {
        RegionId::parse(r).unwrap()
    }

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn names_the_region_variable() {
        assert_eq!(
            region_variable(&region("ap-southeast-1")),
            "STOPCASTER_ENDPOINT_AP_SOUTHEAST_1"
        );
        assert_eq!(
            region_variable(&region("cn-shanghai")),
            "STOPCASTER_ENDPOINT_CN_SHANGHAI"
        );
    }

    #[test]
    fn follows_alibabas_table_without_settings() {
        let none = env_of(&[]);
        for (r, e) in [
            ("ap-southeast-1", "https://live.ap-southeast-1.aliyuncs.com"),
            ("eu-central-1", "https://live.eu-central-1.aliyuncs.com"),
            ("cn-shanghai", "https://live.aliyuncs.com"),
            ("cn-beijing", "https://live.aliyuncs.com"),
            ("ap-northeast-1", "https://live.aliyuncs.com"),
            ("us-west-1", "https://live.aliyuncs.com"),
        ] {
            assert_eq!(resolve(&region(r), None, &none), e, "{r}");
        }
    }

    #[test]
    fn the_global_variable_overrides_every_region() {
        let env = env_of(&[("STOPCASTER_ENDPOINT", "http://127.0.0.1:8080/")]);
        assert_eq!(
            resolve(&region("ap-southeast-1"), None, &env),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            resolve(&region("cn-shanghai"), None, &env),
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn the_account_wins_over_the_global_variable_only() {
        let env = env_of(&[
            ("STOPCASTER_ENDPOINT", "http://global"),
            ("STOPCASTER_ENDPOINT_EU_CENTRAL_1", "http://frankfurt"),
        ]);
        assert_eq!(
            resolve(&region("cn-shanghai"), Some("http://account"), &env),
            "http://account"
        );
        assert_eq!(
            resolve(&region("eu-central-1"), Some("http://account"), &env),
            "http://frankfurt"
        );
        assert_eq!(
            resolve(
                &region("ap-southeast-1"),
                Some("http://account"),
                &env_of(&[])
            ),
            "http://account"
        );
    }

    #[test]
    fn the_region_variable_wins_over_everything_for_its_region_only() {
        let env = env_of(&[
            ("STOPCASTER_ENDPOINT", "http://global"),
            ("STOPCASTER_ENDPOINT_AP_SOUTHEAST_1", "http://singapore"),
        ]);
        assert_eq!(
            resolve(&region("ap-southeast-1"), None, &env),
            "http://singapore"
        );
        assert_eq!(resolve(&region("cn-shanghai"), None, &env), "http://global");
    }

    #[test]
    fn empty_values_are_unset() {
        let env = env_of(&[
            ("STOPCASTER_ENDPOINT", " "),
            ("STOPCASTER_ENDPOINT_EU_CENTRAL_1", ""),
        ]);
        assert_eq!(
            resolve(&region("eu-central-1"), Some(""), &env),
            "https://live.eu-central-1.aliyuncs.com"
        );
    }
}
