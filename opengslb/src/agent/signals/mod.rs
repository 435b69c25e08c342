//! Local load signals for the agent: CPU and memory use as the container sees
//! them, an error rate from Prometheus counters or failed health checks, and
//! thresholds that decide when to drain this backend from DNS.
//!
//! Everything that reads the filesystem takes a root directory so tests can
//! point it at a fake tree; production passes `/`.

mod cgroup;
mod checks;
mod prometheus;
#[cfg(test)]
mod test_support;
mod trigger;
mod verdict;

pub use cgroup::{CpuSampler, memory_percent};
pub use checks::{CheckWindow, MAX_CHECKS};
pub use prometheus::{ErrorRateFromCounters, sum_matching};
pub use trigger::Trigger;
pub use verdict::{Verdict, verdict};

/// Latest raw signal values, `None` where a signal is unavailable.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Signals {
    /// CPU use in percent of the allowed CPU.
    pub cpu_percent: Option<f64>,
    /// Memory working set in percent of the limit.
    pub memory_percent: Option<f64>,
    /// Failed requests or checks in percent.
    pub error_rate_percent: Option<f64>,
}

/// Keeps a ratio inside `0..=100`, rejecting NaN and infinities.
fn clamp_percent(value: f64) -> Option<f64> {
    value.is_finite().then(|| value.clamp(0.0, 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_default_is_all_unknown() {
        let signals = Signals::default();
        assert_eq!(signals.cpu_percent, None);
        assert_eq!(signals.memory_percent, None);
        assert_eq!(signals.error_rate_percent, None);
    }
}
