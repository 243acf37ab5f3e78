//! A margin per account that learns from the jitter this process measures (issue 21): each
//! answered call's arrival lateness (how late it left its slot, plus how much longer than the
//! account's floor its round trip took), kept for the last [`WINDOW`] calls of the last
//! [`HORIZON`]. Pure (no clock, no I/O): the caller keeps one [`JitterWindow`] per account.
//!
//! Why twice a high percentile: a call late by up to half the margin is let pass, and a call
//! later than that pushes the whole schedule back by its lateness. On a loaded machine most
//! calls are a few milliseconds late, and pushing each of them costs its lateness on every call
//! (ten a second), where a millisecond of margin costs one a second. A margin twice the
//! lateness of nine calls in ten lets those pass and pushes only the outliers; the margin
//! stays between the configured one (the floor) and [`MARGIN_CAP`], and falls back to the
//! floor as the jitter goes (the window refills with on-time calls, or ages out).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// How many recent calls of an account the margin is learnt from (a few seconds at 10 calls/s).
pub(super) const WINDOW: usize = 30;
/// Samples older than this are forgotten, so an account idle after a busy spell starts again
/// at the configured margin.
pub(super) const HORIZON: Duration = Duration::from_secs(10);
/// The most a learnt margin reaches (2 % of the quota): lateness beyond it is the pushes' job.
pub(super) const MARGIN_CAP: Duration = Duration::from_millis(20);
/// Fewer recent samples than this and the configured margin stands (nothing learnt yet).
pub(super) const MIN_SAMPLES: usize = 5;

/// The recent arrival lateness of one account's calls in this process.
#[derive(Clone, Debug, Default)]
pub(super) struct JitterWindow {
    samples: VecDeque<(Duration, Instant)>,
}

impl JitterWindow {
    /// Records a call that reached the server about `lateness` after its slot, answered at `at`.
    pub(super) fn observe(&mut self, lateness: Duration, at: Instant) {
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back((lateness, at));
    }

    /// The margin to pace with at `now`: twice the 90th percentile of the recent lateness,
    /// never under `floor` (the configured margin), never over [`MARGIN_CAP`] unless the floor
    /// is above it.
    pub(super) fn margin(&self, floor: Duration, now: Instant) -> Duration {
        let mut recent: Vec<Duration> = self
            .samples
            .iter()
            .filter(|(_, at)| now.saturating_duration_since(*at) < HORIZON)
            .map(|(lateness, _)| *lateness)
            .collect();
        if recent.len() < MIN_SAMPLES {
            return floor;
        }
        recent.sort_unstable();
        // The least lateness that at least nine samples in ten do not exceed.
        let p90 = recent[(recent.len() * 9).div_ceil(10) - 1];
        (p90 * 2).min(MARGIN_CAP).max(floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOOR: Duration = Duration::from_millis(5);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn nothing_learnt_the_configured_margin_stands() {
        let now = Instant::now();
        let mut w = JitterWindow::default();
        assert_eq!(w.margin(FLOOR, now), FLOOR);
        for _ in 0..MIN_SAMPLES - 1 {
            w.observe(ms(9), now);
        }
        assert_eq!(w.margin(FLOOR, now), FLOOR);
        w.observe(ms(9), now);
        assert_eq!(w.margin(FLOOR, now), ms(18));
    }

    #[test]
    fn on_time_calls_keep_the_floor_and_late_ones_raise_it_to_the_cap() {
        let now = Instant::now();
        let mut w = JitterWindow::default();
        for _ in 0..WINDOW {
            w.observe(Duration::from_micros(800), now);
        }
        assert_eq!(w.margin(FLOOR, now), FLOOR);
        for _ in 0..WINDOW {
            w.observe(ms(40), now);
        }
        assert_eq!(w.margin(FLOOR, now), MARGIN_CAP);
        // A floor configured above the cap wins.
        assert_eq!(w.margin(ms(30), now), ms(30));
    }

    #[test]
    fn a_few_outliers_are_left_to_the_pushes() {
        let now = Instant::now();
        let mut w = JitterWindow::default();
        // 27 calls 4 ms late, 3 calls 120 ms late (pushed whole): the margin follows the 27.
        for k in 0..WINDOW {
            w.observe(if k % 10 == 3 { ms(120) } else { ms(4) }, now);
        }
        assert_eq!(w.margin(FLOOR, now), ms(8));
        // A fourth outlier in the window is no longer one in ten: the cap.
        w.observe(ms(120), now);
        assert_eq!(w.margin(FLOOR, now), MARGIN_CAP);
    }

    #[test]
    fn the_margin_decays_when_the_jitter_goes() {
        let start = Instant::now();
        let mut w = JitterWindow::default();
        for _ in 0..WINDOW {
            w.observe(ms(7), start);
        }
        assert_eq!(w.margin(FLOOR, start), ms(14));
        // On-time calls replace the late ones: back to the floor within a window of calls.
        let mut at = start;
        for _ in 0..WINDOW {
            at += ms(100);
            w.observe(Duration::ZERO, at);
        }
        assert_eq!(w.margin(FLOOR, at), FLOOR);
        // Or the account goes quiet: the late samples age out.
        let mut idle = JitterWindow::default();
        for _ in 0..WINDOW {
            idle.observe(ms(7), start);
        }
        assert_eq!(idle.margin(FLOOR, start + HORIZON - ms(1)), ms(14));
        assert_eq!(idle.margin(FLOOR, start + HORIZON), FLOOR);
    }
}
