//! Slow start: the share a backend that came back gets while it ramps up (docs/control-plane.md, "Slow
//! start").
//!
//! The domain's `slow_start` window is cut into [`STEPS`] equal steps; in step `k` (1-based) the backend
//! counts for `k / (STEPS + 1)` of its weight, so it starts with about a tenth of it, never nothing, and
//! rises evenly to its full weight at the window's end. Whole steps rather than a smooth line keep the table still between them:
//! the overwatch re-renders on its one-second tick, and only a new step changes what it publishes, so a
//! ramp rewrites the table (and the XDP map) at most [`STEPS`] times, and not at all once it is over.

use std::time::Duration;

/// How many steps a ramp takes.
pub const STEPS: u32 = 10;

/// The step (1..=[`STEPS`]) of a ramp `elapsed` into its `window`; `None` once the window is over (the
/// backend has its full share).
pub fn step(elapsed: Duration, window: Duration) -> Option<u32> {
    if elapsed >= window {
        return None;
    }
    // elapsed < window, so the quotient is below STEPS.
    let k = elapsed.as_nanos() * u128::from(STEPS) / window.as_nanos();
    Some(u32::try_from(k).map_or(STEPS, |k| k + 1))
}

/// `weight` as it counts in step `step` (`None`: full), against the others' weights scaled by
/// `STEPS + 1`: weights stay integers, and a positive weight stays positive, so the backend keeps at least
/// one slot of the weight slot table.
pub fn weight(weight: u32, step: Option<u32>) -> u32 {
    weight.saturating_mul(step.unwrap_or(STEPS + 1).min(STEPS + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ramp_moves_in_ten_equal_steps_and_ends_with_its_window() {
        let window = Duration::from_secs(30);
        let at = |ms| step(Duration::from_millis(ms), window);
        assert_eq!(at(0), Some(1));
        assert_eq!(at(2_999), Some(1));
        assert_eq!(at(3_000), Some(2));
        assert_eq!(at(15_000), Some(6));
        assert_eq!(at(26_999), Some(9));
        assert_eq!(at(27_000), Some(10));
        assert_eq!(at(29_999), Some(10));
        assert_eq!(at(30_000), None);
        assert_eq!(at(3_600_000), None);
        // The schedule: one change every window/10, ten in all, then none.
        let changes = (0..=40_000)
            .step_by(100)
            .map(at)
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] != w[1])
            .count();
        assert_eq!(changes, 10);
        // Odd windows: the steps still cover it, the first starting at once.
        let w = Duration::from_nanos(7);
        assert_eq!(step(Duration::ZERO, w), Some(1));
        assert_eq!(step(Duration::from_nanos(6), w), Some(9));
        assert_eq!(step(Duration::ZERO, Duration::ZERO), None);
    }

    #[test]
    fn ramped_weights_stay_positive_and_proportional() {
        assert_eq!(weight(100, None), 1100);
        assert_eq!(weight(100, Some(1)), 100);
        assert_eq!(weight(100, Some(10)), 1000);
        assert_eq!(
            weight(1, Some(1)),
            1,
            "an eleventh of a weight of 1 is still 1 in elevenths"
        );
        assert_eq!(weight(0, Some(5)), 0, "weight 0 stays out");
        assert_eq!(weight(u32::MAX, None), u32::MAX, "saturates, never wraps");
        assert_eq!(weight(7, Some(99)), 77, "a step past the last is full");
    }
}
