//! Thresholds with hysteresis and a minimum hold time.

use std::time::{Duration, Instant};

/// A threshold with hysteresis and a minimum hold time, so that a signal
/// hovering around its threshold does not flap the backend in and out of DNS.
#[derive(Debug, Clone)]
pub struct Trigger {
    threshold: f64,
    hysteresis: f64,
    min_hold: Duration,
    firing_since: Option<Instant>,
}

impl Trigger {
    /// Fires at `value >= threshold`; clears once `value < threshold -
    /// hysteresis` after firing for at least `min_hold`. A negative or
    /// non-finite hysteresis is treated as zero.
    #[must_use]
    pub fn new(threshold: f64, hysteresis: f64, min_hold: Duration) -> Self {
        Self {
            threshold,
            hysteresis: if hysteresis.is_finite() {
                hysteresis.max(0.0)
            } else {
                0.0
            },
            min_hold,
            firing_since: None,
        }
    }

    /// Feeds the latest value and returns whether the trigger is firing.
    /// `None` or a non-finite value keeps the current state.
    pub fn update(&mut self, now: Instant, value: Option<f64>) -> bool {
        let Some(value) = value.filter(|v| v.is_finite()) else {
            return self.firing();
        };
        match self.firing_since {
            None if value >= self.threshold => self.firing_since = Some(now),
            Some(since)
                if value < self.threshold - self.hysteresis
                    && now.saturating_duration_since(since) >= self.min_hold =>
            {
                self.firing_since = None;
            }
            _ => {}
        }
        self.firing()
    }

    /// Whether the trigger is firing.
    #[must_use]
    pub fn firing(&self) -> bool {
        self.firing_since.is_some()
    }

    /// The value at or above which the trigger fires.
    #[must_use]
    pub fn threshold(&self) -> f64 {
        self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::signals::test_support::secs;

    #[test]
    fn trigger_fires_at_threshold_and_none_keeps_state() {
        let mut trigger = Trigger::new(90.0, 5.0, Duration::ZERO);
        let t0 = Instant::now();
        assert!(!trigger.update(t0, Some(89.9)));
        assert!(!trigger.update(t0, None));
        assert!(
            !trigger.update(t0, Some(f64::INFINITY)),
            "non-finite keeps state"
        );
        assert!(trigger.update(t0, Some(90.0)));
        assert!(trigger.update(t0 + secs(1), None));
        assert!(trigger.update(t0 + secs(1), Some(f64::NAN)));
        assert!(trigger.firing());
        assert!(!trigger.update(t0 + secs(2), Some(84.9)));
        assert!(
            !trigger.update(t0 + secs(3), Some(89.0)),
            "below threshold does not refire"
        );
    }

    #[test]
    fn trigger_hysteresis_band_keeps_firing() {
        let mut trigger = Trigger::new(90.0, 5.0, secs(30));
        let t0 = Instant::now();
        assert!(trigger.update(t0, Some(95.0)));
        assert!(trigger.update(t0 + secs(40), Some(86.0)));
        assert!(
            trigger.update(t0 + secs(41), Some(85.0)),
            "boundary is not below"
        );
        assert!(!trigger.update(t0 + secs(42), Some(84.9)));
    }

    #[test]
    fn trigger_min_hold_delays_clearing() {
        let mut trigger = Trigger::new(90.0, 5.0, secs(30));
        let t0 = Instant::now();
        assert!(trigger.update(t0, Some(91.0)));
        assert!(trigger.update(t0 + secs(29), Some(10.0)));
        assert!(!trigger.update(t0 + secs(30), Some(10.0)));
        // Refiring starts a new hold period.
        assert!(trigger.update(t0 + secs(31), Some(99.0)));
        assert!(trigger.update(t0 + secs(50), Some(10.0)));
        assert!(!trigger.update(t0 + secs(61), Some(10.0)));
    }

    #[test]
    fn trigger_sanitises_hysteresis() {
        let mut trigger = Trigger::new(50.0, -10.0, Duration::ZERO);
        let t0 = Instant::now();
        assert!(trigger.update(t0, Some(50.0)));
        assert!(!trigger.update(t0, Some(49.9)));
    }
}
