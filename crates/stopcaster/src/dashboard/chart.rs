//! The overview's chart: calls per second of each account against its quota, as SVG numbers
//! computed here (the template draws them; no script, no outside asset).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::CallsInSecond;

/// One account's calls over the window.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct AccountCalls {
    /// The job's `account`; `null`: the default account.
    pub account: Option<String>,
    pub qps: u32,
    /// Calls started in each second, oldest first; the last is the current second.
    pub per_second: Vec<i64>,
    pub throttled_per_second: Vec<i64>,
    pub calls: i64,
    pub throttled: i64,
    pub peak: i64,
}

impl AccountCalls {
    pub(super) fn label(&self) -> &str {
        self.account.as_deref().unwrap_or("default")
    }
}

/// Turns per-second rows into one series per account, each `window` seconds long.
pub(crate) fn account_calls(
    rows: &[CallsInSecond],
    window: u32,
    qps_of: impl Fn(Option<&str>) -> u32,
) -> Vec<AccountCalls> {
    let mut by_account: BTreeMap<Option<String>, AccountCalls> = BTreeMap::new();
    for r in rows {
        let entry = by_account
            .entry(r.account.clone())
            .or_insert_with(|| AccountCalls {
                account: r.account.clone(),
                qps: qps_of(r.account.as_deref()),
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
    pub qps: u32,
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
    let top = (i64::from(a.qps) * 5 / 4).max(a.peak).max(1);
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
                over: calls > i64::from(a.qps) || a.throttled_per_second[i] > 0,
            }
        })
        .collect();
    Chart {
        label: a.label().to_owned(),
        qps: a.qps,
        calls: a.calls,
        throttled: a.throttled,
        peak: a.peak,
        width: CHART_WIDTH,
        height: CHART_HEIGHT,
        bars,
        quota_y: round2(y_of(f64::from(a.qps))),
        top_label: top,
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
