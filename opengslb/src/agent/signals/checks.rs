//! Error rate from failed health checks, used when no Prometheus source is
//! configured.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Most health-check results a [`CheckWindow`] keeps; the oldest go first.
pub const MAX_CHECKS: usize = 10_000;

/// Failed-check percentage over a sliding time window, used as the error rate
/// when no Prometheus source is configured.
#[derive(Debug, Clone)]
pub struct CheckWindow {
    window: Duration,
    entries: VecDeque<(Instant, bool)>,
}

impl CheckWindow {
    /// Creates an empty window covering the last `window` of checks.
    #[must_use]
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            entries: VecDeque::new(),
        }
    }

    /// Records one check result, pruning results older than the window and
    /// keeping at most [`MAX_CHECKS`] entries.
    pub fn record(&mut self, now: Instant, ok: bool) {
        while let Some(&(at, _)) = self.entries.front() {
            if now.saturating_duration_since(at) > self.window {
                self.entries.pop_front();
            } else {
                break;
            }
        }
        if self.entries.len() >= MAX_CHECKS {
            self.entries.pop_front();
        }
        self.entries.push_back((now, ok));
    }

    /// Percent of failed checks among those no older than the window at
    /// `now`; `None` when there are none.
    #[must_use]
    pub fn rate(&self, now: Instant) -> Option<f64> {
        let (checks, failed) = self
            .entries
            .iter()
            .filter(|(at, _)| now.saturating_duration_since(*at) <= self.window)
            .fold((0usize, 0usize), |(checks, failed), (_, ok)| {
                (checks + 1, failed + usize::from(!ok))
            });
        (checks > 0).then(|| failed as f64 / checks as f64 * 100.0)
    }

    /// Number of stored results, including ones not yet pruned.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no results are stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::signals::test_support::{assert_close, secs};

    #[test]
    fn check_window_rate_and_pruning() {
        let mut window = CheckWindow::new(secs(10));
        let t0 = Instant::now();
        assert_eq!(window.rate(t0), None);
        assert!(window.is_empty());
        window.record(t0, false);
        window.record(t0 + secs(5), true);
        assert_close(window.rate(t0 + secs(5)), 50.0);
        // Exactly one window old still counts.
        assert_close(window.rate(t0 + secs(10)), 50.0);
        assert_close(window.rate(t0 + secs(11)), 0.0);
        window.record(t0 + secs(10), true);
        assert_eq!(window.len(), 3, "exactly one window old is kept");
        window.record(t0 + secs(12), true);
        assert_eq!(window.len(), 3, "the failure at t0 was pruned");
        assert_close(window.rate(t0 + secs(12)), 0.0);
        assert_eq!(window.rate(t0 + secs(30)), None);
    }

    #[test]
    fn check_window_is_bounded() {
        let mut window = CheckWindow::new(secs(3600));
        let t0 = Instant::now();
        for _ in 0..5 {
            window.record(t0, false);
        }
        for _ in 0..MAX_CHECKS {
            window.record(t0, true);
        }
        assert_eq!(window.len(), MAX_CHECKS);
        assert_close(window.rate(t0), 0.0);
    }
}
