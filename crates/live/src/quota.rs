//! Alibaba's quota headers: `x-ratelimit-user-api` (this API, this account) and
//! `x-ratelimit-user` (every API of the account), each `Limit:N,Remain:R,TimeLeft:MS,Reset:EPOCH`.
//! Pure parsing, read as Alibaba's own SDKs read it: `Utils.get_throttling_time_left` in
//! aliyun/darabonba-openapi (`python/alibabacloud_tea_openapi/utils.py`, and the same function
//! in its Go, Java, TypeScript, PHP and C++ ports) splits the value on `,`, each pair on `:`,
//! trims, and waits the larger `TimeLeft` of the two headers, in milliseconds, a missing or
//! unreadable one counting as 0. Fields are matched by name, in any order; unknown ones are
//! ignored, like the SDKs do.

use std::time::Duration;

/// The header for this API's quota of the account.
pub const USER_API_HEADER: &str = "x-ratelimit-user-api";
/// The header for the account's quota over every API.
pub const USER_HEADER: &str = "x-ratelimit-user";

/// One quota header's fields; each is `None` when absent or unreadable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    /// Calls allowed per window.
    pub limit: Option<u32>,
    /// Calls left in the current window, this call counted.
    pub remain: Option<u32>,
    /// Milliseconds until a call is allowed again (0 when one is).
    pub time_left_ms: Option<u64>,
    /// When the window resets, Unix seconds.
    pub reset: Option<i64>,
}

/// Parses one header value; `None` when it names none of the four fields.
pub fn parse_quota(value: &str) -> Option<Quota> {
    let mut quota = Quota::default();
    let mut any = false;
    for pair in value.split(',') {
        let Some((key, value)) = pair.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "Limit" => quota.limit = value.parse().ok(),
            "Remain" => quota.remain = value.parse().ok(),
            "TimeLeft" => quota.time_left_ms = value.parse().ok(),
            "Reset" => quota.reset = value.parse().ok(),
            _ => continue,
        }
        any = true;
    }
    any.then_some(quota)
}

/// Both quota headers of one answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaHeaders {
    pub user_api: Option<Quota>,
    pub user: Option<Quota>,
}

impl QuotaHeaders {
    /// Reads the two headers from a lookup by (lower-case) name.
    pub fn read<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Self {
        Self {
            user_api: header(USER_API_HEADER).and_then(parse_quota),
            user: header(USER_HEADER).and_then(parse_quota),
        }
    }

    /// How long to wait after a throttle: the larger `TimeLeft` of the two headers, as
    /// Alibaba's SDKs wait; `None` when neither header gives one.
    pub fn time_left(&self) -> Option<Duration> {
        let api = self.user_api.and_then(|q| q.time_left_ms);
        let user = self.user.and_then(|q| q.time_left_ms);
        api.max(user).map(Duration::from_millis)
    }

    /// The quota that binds this call: the header with the fewer calls remaining (the API's
    /// when they tie), only if it gives both `Limit` and `Remain`.
    pub fn binding(&self) -> Option<(u32, u32)> {
        let pair = |q: Option<Quota>| q.and_then(|q| Some((q.limit?, q.remain?)));
        match (pair(self.user_api), pair(self.user)) {
            (Some(api), Some(user)) if user.1 < api.1 => Some(user),
            (Some(api), _) => Some(api),
            (None, user) => user,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.user_api.is_none() && self.user.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_gateways_format() {
        assert_eq!(
            parse_quota("Limit:10,Remain:3,TimeLeft:0,Reset:1764770000"),
            Some(Quota {
                limit: Some(10),
                remain: Some(3),
                time_left_ms: Some(0),
                reset: Some(1_764_770_000),
            })
        );
        // Spaces, another order, an unknown field: as the SDKs read it.
        assert_eq!(
            parse_quota(" TimeLeft: 250 , Limit:10 ,Window:1"),
            Some(Quota {
                limit: Some(10),
                time_left_ms: Some(250),
                ..Quota::default()
            })
        );
        assert_eq!(parse_quota(""), None);
        assert_eq!(parse_quota("garbage"), None);
        // A field present but unreadable counts as absent.
        assert_eq!(parse_quota("TimeLeft:soon").unwrap().time_left_ms, None);
    }

    #[test]
    fn waits_the_larger_time_left_of_the_two() {
        let headers = |api: Option<&'static str>, user: Option<&'static str>| {
            QuotaHeaders::read(|name| match name {
                USER_API_HEADER => api,
                USER_HEADER => user,
                _ => None,
            })
        };
        // The SDKs' own test vectors (darabonba-openapi's `GetThrottlingTimeLeft` tests).
        assert_eq!(headers(Some(""), Some("")).time_left(), None);
        assert_eq!(
            headers(Some(""), Some("Limit:1,Remain:0,TimeLeft:2000,Reset:1234")).time_left(),
            Some(Duration::from_millis(2000))
        );
        assert_eq!(
            headers(
                Some("Limit:10,Remain:0,TimeLeft:700,Reset:1"),
                Some("Limit:100,Remain:40,TimeLeft:300,Reset:1")
            )
            .time_left(),
            Some(Duration::from_millis(700))
        );
        assert!(headers(None, None).is_empty());
    }

    #[test]
    fn the_binding_quota_is_the_one_with_fewer_calls_left() {
        let api = parse_quota("Limit:10,Remain:4");
        let user = parse_quota("Limit:100,Remain:2");
        let both = QuotaHeaders {
            user_api: api,
            user,
        };
        assert_eq!(both.binding(), Some((100, 2)));
        let only_api = QuotaHeaders {
            user_api: api,
            user: None,
        };
        assert_eq!(only_api.binding(), Some((10, 4)));
        let no_remain = QuotaHeaders {
            user_api: parse_quota("Limit:10"),
            user: None,
        };
        assert_eq!(no_remain.binding(), None);
    }
}
