//! The overview's chart: calls per second of each account against its quota, as SVG numbers
//! computed here (the template draws them; no script, no outside asset). The quota is the
//! `Limit` of Alibaba's quota header on the account's latest answer when one was recorded (the
//! gateway's own figure), the configured qps otherwise.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::{CallsInSecond, LatestQuota};

/// One account's calls over the window.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct AccountCalls {
    /// The job's `account`; `null`: the default account.
    pub account: Option<String>,
    /// The configured qps.
    pub qps: u32,
    /// The quota header of the account's latest answer in the window; when present its `limit`
    /// is the chart's quota line instead of `qps`.
    pub quota_header: Option<QuotaHeader>,
    /// Calls started in each second, oldest first; the last is the current second.
    pub per_second: Vec<i64>,
    pub throttled_per_second: Vec<i64>,
    pub calls: i64,
    pub throttled: i64,
    pub peak: i64,
}

/// `Limit` and `Remain` of Alibaba's quota header (`x-ratelimit-user-api`, or
/// `x-ratelimit-user` when it bound the call) on an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct QuotaHeader {
    pub limit: u32,
    pub remain: u32,
}

impl AccountCalls {
    pub(super) fn label(&self) -> &str {
        self.account.as_deref().unwrap_or("default")
    }

    /// The quota the chart draws: the gateway's `Limit` when known, the configured qps else.
    pub(crate) fn quota(&self) -> u32 {
        self.quota_header.map_or(self.qps, |h| h.limit)
    }
}

/// The caption of an account's quota: the line's value, and the header it came from.
pub(crate) fn quota_caption(quota: u32, header: Option<QuotaHeader>) -> String {
    match header {
        Some(h) => format!(
            "quota {quota}/s (Alibaba's header: Limit {}, Remain {})",
            h.limit, h.remain
        ),
        None => format!("quota {quota}/s"),
    }
}

/// Turns per-second rows into one series per account, each `window` seconds long, with the
/// account's latest quota header if `quotas` has one.
pub(crate) fn account_calls(
    rows: &[CallsInSecond],
    quotas: &[LatestQuota],
    window: u32,
    qps_of: impl Fn(Option<&str>) -> u32,
) -> Vec<AccountCalls> {
    let header_of = |account: &Option<String>| {
        let q = quotas.iter().find(|q| &q.account == account)?;
        Some(QuotaHeader {
            limit: u32::try_from(q.limit).ok()?,
            remain: u32::try_from(q.remain).ok()?,
        })
    };
    let mut by_account: BTreeMap<Option<String>, AccountCalls> = BTreeMap::new();
    for r in rows {
        let entry = by_account
            .entry(r.account.clone())
            .or_insert_with(|| AccountCalls {
                account: r.account.clone(),
                qps: qps_of(r.account.as_deref()),
                quota_header: header_of(&r.account),
                per_second: vec![0; window as usize],
                throttled_per_second: vec![0; window as usize],
                calls: 0,
                throttled: 0,
                peak: 0,
            });
        let Ok(ago) = usize::try_from(r.seconds_ago) else {
            continue;
        };
        if ago >= window as usize {
            continue;
        }
        let i = window as usize - 1 - ago;
        entry.per_second[i] += r.calls;
        entry.throttled_per_second[i] += r.throttled;
        entry.calls += r.calls;
        entry.throttled += r.throttled;
        entry.peak = entry.peak.max(entry.per_second[i]);
    }
    by_account.into_values().collect()
}

/// The chart of one account, in SVG user units.
pub(crate) struct Chart {
    pub label: String,
    /// "quota N/s", and the header's `Limit` and `Remain` when the line is the header's.
    pub quota_caption: String,
    pub calls: i64,
    pub throttled: i64,
    pub peak: i64,
    pub width: u32,
    pub height: u32,
    pub bars: Vec<Bar>,
    /// The quota line's height.
    pub quota_y: f64,
    pub top_label: i64,
}

pub(crate) struct Bar {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    pub calls: i64,
    pub seconds_ago: usize,
    /// More calls than the quota, or throttled answers in that second.
    pub over: bool,
}

pub(crate) const CHART_WIDTH: u32 = 600;
pub(crate) const CHART_HEIGHT: u32 = 120;

pub(crate) fn chart(a: &AccountCalls) -> Chart {
    let n = a.per_second.len().max(1);
    let quota = a.quota();
    let top = (i64::from(quota) * 5 / 4).max(a.peak).max(1);
    let plot = f64::from(CHART_HEIGHT) - 4.0;
    let y_of = |v: f64| f64::from(CHART_HEIGHT) - v / top as f64 * plot;
    let w = f64::from(CHART_WIDTH) / n as f64;
    let bars = a
        .per_second
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(i, &calls)| {
            let y = y_of(calls as f64);
            Bar {
                x: round2(i as f64 * w),
                y: round2(y),
                w: round2((w - 0.5).max(0.5)),
                h: round2(f64::from(CHART_HEIGHT) - y),
                calls,
                seconds_ago: n - 1 - i,
                over: calls > i64::from(quota) || a.throttled_per_second[i] > 0,
            }
        })
        .collect();
    Chart {
        label: a.label().to_owned(),
        quota_caption: quota_caption(quota, a.quota_header),
        calls: a.calls,
        throttled: a.throttled,
        peak: a.peak,
        width: CHART_WIDTH,
        height: CHART_HEIGHT,
        bars,
        quota_y: round2(y_of(f64::from(quota))),
        top_label: top,
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(account: Option<&str>, seconds_ago: i64, calls: i64) -> CallsInSecond {
        CallsInSecond {
            account: account.map(str::to_owned),
            seconds_ago,
            calls,
            throttled: 0,
        }
    }

    #[test]
    fn the_headers_limit_is_the_quota_line_and_the_configured_qps_without_one() {
        let rows = [
            second(None, 0, 4),
            second(Some("acme"), 1, 12),
            second(Some("acme"), 0, 3),
        ];
        let quotas = [LatestQuota {
            account: Some("acme".into()),
            limit: 20,
            remain: 17,
        }];
        let calls = account_calls(&rows, &quotas, 10, |_| 10);
        let default = &calls[0];
        assert_eq!((default.label(), default.quota_header), ("default", None));
        assert_eq!(default.quota(), 10);
        let acme = &calls[1];
        assert_eq!(
            acme.quota_header,
            Some(QuotaHeader {
                limit: 20,
                remain: 17
            })
        );
        assert_eq!(acme.quota(), 20);
        // 12 calls are over the configured 10/s but not over the gateway's 20.
        let drawn = chart(acme);
        assert!(drawn.bars.iter().all(|b| !b.over));
        assert_eq!(
            drawn.quota_caption,
            "quota 20/s (Alibaba's header: Limit 20, Remain 17)"
        );
        assert_eq!(chart(default).quota_caption, "quota 10/s");
    }

    #[test]
    fn an_unreadable_recorded_header_is_no_header() {
        let quotas = [LatestQuota {
            account: None,
            limit: -1,
            remain: 0,
        }];
        let calls = account_calls(&[second(None, 0, 1)], &quotas, 5, |_| 7);
        assert_eq!((calls[0].quota_header, calls[0].quota()), (None, 7));
    }
}
