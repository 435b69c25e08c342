//! Error rate from the growth of a total and a failed counter between scrapes.

use super::exposition::sum_matching;
use crate::agent::signals::clamp_percent;
use crate::config::MetricSelector;

/// Error rate between two scrapes of monotonically increasing counters.
#[derive(Debug, Clone, Default)]
pub struct ErrorRateFromCounters {
    previous: Option<(f64, f64)>,
}

impl ErrorRateFromCounters {
    /// Creates a tracker with no baseline yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the current `total` and `failed` counter values and returns the
    /// percentage of failed requests since the previous call.
    ///
    /// `None` on the first call and after a counter reset (either counter went
    /// down, e.g. the app restarted), both of which restart the baseline.
    /// Negative or non-finite inputs are rejected without touching the
    /// baseline. No requests in the interval gives `Some(0.0)`.
    pub fn update(&mut self, total: f64, failed: f64) -> Option<f64> {
        if !(total.is_finite() && failed.is_finite() && total >= 0.0 && failed >= 0.0) {
            return None;
        }
        let (previous_total, previous_failed) = self.previous.replace((total, failed))?;
        if total < previous_total || failed < previous_failed {
            return None;
        }
        let requests = total - previous_total;
        if requests <= 0.0 {
            return Some(0.0);
        }
        // Failures and totals come from different series and may be scraped a
        // moment apart, so the ratio can exceed 1 slightly.
        clamp_percent((failed - previous_failed) / requests * 100.0)
    }

    /// Sums `total` and `failed` from one scrape and feeds them to
    /// [`update`](Self::update).
    ///
    /// A missing failed series counts as zero, because client libraries only
    /// create a labelled series (such as `code="500"`) on its first
    /// increment. A missing total gives `None` and leaves the baseline alone.
    pub fn update_from_text(
        &mut self,
        text: &str,
        total: &MetricSelector,
        failed: &MetricSelector,
    ) -> Option<f64> {
        let total = sum_matching(text, total)?;
        let failed = sum_matching(text, failed).unwrap_or(0.0);
        self.update(total, failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::signals::test_support::{assert_close, selector};

    #[test]
    fn counters_give_interval_rate() {
        let mut rate = ErrorRateFromCounters::new();
        assert_eq!(rate.update(100.0, 0.0), None);
        assert_close(rate.update(200.0, 10.0), 10.0);
        assert_close(rate.update(200.0, 10.0), 0.0);
        assert_close(rate.update(300.0, 60.0), 50.0);
    }

    #[test]
    fn counter_reset_restarts_baseline() {
        let mut rate = ErrorRateFromCounters::new();
        assert_eq!(rate.update(1000.0, 100.0), None);
        assert_eq!(rate.update(50.0, 1.0), None, "total went down");
        assert_close(rate.update(150.0, 6.0), 5.0);
        assert_eq!(rate.update(160.0, 0.0), None, "failed went down");
        assert_close(rate.update(170.0, 1.0), 10.0);
    }

    #[test]
    fn counters_reject_invalid_values_without_losing_baseline() {
        let mut rate = ErrorRateFromCounters::new();
        assert_eq!(rate.update(100.0, 0.0), None);
        assert_eq!(rate.update(f64::NAN, 0.0), None);
        assert_eq!(rate.update(-1.0, 0.0), None);
        assert_close(rate.update(200.0, 20.0), 20.0);
    }

    #[test]
    fn counters_from_text_treat_missing_failed_series_as_zero() {
        let total = selector("http_requests_total");
        let failed = selector(r#"http_requests_total{code=~"5.."}"#);
        let mut rate = ErrorRateFromCounters::new();
        let scrape = |ok: u32, err: Option<u32>| {
            let ok = format!("http_requests_total{{code=\"200\"}} {ok}\n");
            let failed = err
                .map(|err| format!("http_requests_total{{code=\"500\"}} {err}\n"))
                .unwrap_or_default();
            ok + &failed
        };
        assert_eq!(
            rate.update_from_text(&scrape(10, None), &total, &failed),
            None
        );
        assert_close(
            rate.update_from_text(&scrape(20, None), &total, &failed),
            0.0,
        );
        assert_close(
            rate.update_from_text(&scrape(25, Some(5)), &total, &failed),
            50.0,
        );
        assert_eq!(rate.update_from_text("", &total, &failed), None);
        assert_close(
            rate.update_from_text(&scrape(35, Some(5)), &total, &failed),
            0.0,
        );
    }
}
