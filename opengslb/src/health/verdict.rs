//! From probe results to a verdict: the thresholds that give a backend's checks hysteresis, and the
//! moving average of their latency. The overwatch's validation and the agent's own checks both judge
//! through [`Validation::record`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::HealthCheck;

/// The outcome of one probe, as a verdict needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckOutcome {
    /// The probe passed.
    pub ok: bool,
    /// A failure that needs no confirmation (connection refused or reset): the backend fails at once,
    /// whatever the failure threshold. Ignored on a pass.
    pub definitive: bool,
    /// How long the probe took, when it measured it.
    pub latency: Option<Duration>,
}

/// How validation results turn into a verdict: the check's thresholds and the latency smoothing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CheckPolicy {
    /// Consecutive passes that make a backend [`ValidationState::Passing`]; 0 counts as 1.
    pub success_threshold: u32,
    /// Consecutive failures that make it [`ValidationState::Failing`]; 0 counts as 1.
    pub failure_threshold: u32,
    /// Weight of a new sample in the latency moving average (`latency_config.smoothing_factor`).
    pub smoothing: f64,
}

impl CheckPolicy {
    /// The thresholds of a config `health_check` block, with the given latency smoothing.
    pub fn from_health_check(check: &HealthCheck, smoothing: f64) -> Self {
        Self {
            success_threshold: check.success_threshold,
            failure_threshold: check.failure_threshold,
            smoothing,
        }
    }
}

/// The config defaults: 2 passes, 3 failures, smoothing 0.3.
impl Default for CheckPolicy {
    fn default() -> Self {
        Self::from_health_check(&HealthCheck::default(), 0.3)
    }
}

/// The state external validation has reached, after hysteresis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidationState {
    /// No verdict yet (no probe, validation disabled, or too few results to cross a threshold). Not a
    /// failure: a backend nobody has checked is answered, as it was before health checking existed.
    #[default]
    Unknown,
    /// `success_threshold` consecutive probes passed.
    Passing,
    /// `failure_threshold` consecutive probes failed, or one definitive failure (connection refused).
    Failing,
}

impl ValidationState {
    /// The name the API and metrics show.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Passing => "passing",
            Self::Failing => "failing",
        }
    }
}

/// What the probes of a backend have found (the overwatch's validation, or an agent's own checks).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Validation {
    /// The verdict.
    pub state: ValidationState,
    /// Passes in a row (0 after a failure).
    pub consecutive_successes: u32,
    /// Failures in a row (0 after a pass).
    pub consecutive_failures: u32,
    /// Latency of the last probe that reported one.
    pub last_latency: Option<Duration>,
    /// Moving average of the latency of passing probes, which `latency` routing uses.
    pub ewma_latency: Option<Duration>,
    /// How many passing probes fed `ewma_latency` (routing's `min_samples`).
    pub latency_samples: u32,
}

impl Validation {
    /// Records one probe outcome under the policy's thresholds: `success_threshold` passes in a row make
    /// it passing, `failure_threshold` failures in a row (or one definitive failure) make it failing;
    /// anything short of that keeps the state it had. Passing probes feed the latency average. Returns
    /// whether the state changed (latency alone is no change).
    pub fn record(&mut self, outcome: CheckOutcome, policy: CheckPolicy) -> bool {
        let v = self;
        let old = v.state;
        if outcome.latency.is_some() {
            v.last_latency = outcome.latency;
        }
        if outcome.ok {
            v.consecutive_successes = v.consecutive_successes.saturating_add(1);
            v.consecutive_failures = 0;
            if v.consecutive_successes >= policy.success_threshold.max(1) {
                v.state = ValidationState::Passing;
            }
            if let Some(sample) = outcome.latency {
                v.ewma_latency = Some(ewma(v.ewma_latency, sample, policy.smoothing));
                v.latency_samples = v.latency_samples.saturating_add(1);
            }
        } else {
            v.consecutive_failures = v.consecutive_failures.saturating_add(1);
            v.consecutive_successes = 0;
            if outcome.definitive || v.consecutive_failures >= policy.failure_threshold.max(1) {
                v.state = ValidationState::Failing;
            }
        }
        v.state != old
    }
}

/// One step of an exponentially weighted moving average of probe latency: `smoothing` is the weight of
/// the new sample, from 0 (ignore it) to 1 (keep only it); out-of-range values are clamped and NaN counts
/// as 1. With no previous value the sample is the average.
pub fn ewma(prev: Option<Duration>, sample: Duration, smoothing: f64) -> Duration {
    let Some(prev) = prev else {
        return sample;
    };
    let alpha = if smoothing.is_nan() {
        1.0
    } else {
        smoothing.clamp(0.0, 1.0)
    };
    let secs = prev.as_secs_f64() + alpha * (sample.as_secs_f64() - prev.as_secs_f64());
    // The mean of two durations is itself a valid duration; only rounding at the far end of the range
    // could fail, and then the newest sample is the best estimate left.
    Duration::try_from_secs_f64(secs).unwrap_or(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ewma_smooths() {
        let ms = Duration::from_millis;
        assert_eq!(ewma(None, ms(80), 0.3), ms(80));
        assert_eq!(ewma(Some(ms(100)), ms(200), 0.5), ms(150));
        assert_eq!(ewma(Some(ms(100)), ms(200), 0.0), ms(100));
        assert_eq!(ewma(Some(ms(100)), ms(200), 7.0), ms(200));
        assert_eq!(ewma(Some(ms(100)), ms(200), f64::NAN), ms(200));
        let d = ewma(Some(ms(100)), ms(0), 0.25);
        assert!(d.abs_diff(ms(75)) < Duration::from_nanos(2), "{d:?}");
    }
}
