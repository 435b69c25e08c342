//! The drain decision and its human-readable reason, from the firing triggers.

use super::trigger::Trigger;

/// Whether to drain this backend, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// True when at least one trigger is firing.
    pub draining: bool,
    /// One entry per firing trigger, joined by `", "`; empty when not draining.
    pub reason: String,
}

/// Combines `(name, trigger, latest value)` items into a [`Verdict`].
///
/// A firing trigger reads `cpu 97% >= 90%`. One still held by hysteresis or
/// its hold time reads `cpu 85% (held, threshold 90%)`, and one without a
/// current value `cpu n/a (held, threshold 90%)`, so the text never claims a
/// comparison that is false.
#[must_use]
pub fn verdict(items: &[(&str, &Trigger, Option<f64>)]) -> Verdict {
    let reasons: Vec<String> = items
        .iter()
        .filter(|(_, trigger, _)| trigger.firing())
        .map(|(name, trigger, value)| {
            let threshold = format_number(trigger.threshold());
            match value {
                Some(v) if *v >= trigger.threshold() => {
                    format!("{name} {}% >= {threshold}%", format_number(*v))
                }
                Some(v) => format!(
                    "{name} {}% (held, threshold {threshold}%)",
                    format_number(*v)
                ),
                None => format!("{name} n/a (held, threshold {threshold}%)"),
            }
        })
        .collect();
    Verdict {
        draining: !reasons.is_empty(),
        reason: reasons.join(", "),
    }
}

/// No decimals when the value rounds to an integer at one decimal, else one.
fn format_number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let rounded = (value * 10.0).round() / 10.0;
    // Avoid printing "-0" for tiny negative values.
    let rounded = if rounded == 0.0 { 0.0 } else { rounded };
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::signals::test_support::secs;
    use std::time::Instant;

    #[test]
    fn verdict_lists_firing_triggers() {
        let t0 = Instant::now();
        let mut cpu = Trigger::new(90.0, 5.0, secs(60));
        let mut memory = Trigger::new(85.5, 5.0, secs(60));
        let mut errors = Trigger::new(5.0, 1.0, secs(60));
        cpu.update(t0, Some(97.0));
        memory.update(t0, Some(91.25));
        errors.update(t0, Some(1.0));
        let v = verdict(&[
            ("cpu", &cpu, Some(97.0)),
            ("memory", &memory, Some(91.25)),
            ("errors", &errors, Some(1.0)),
        ]);
        assert_eq!(
            v,
            Verdict {
                draining: true,
                reason: "cpu 97% >= 90%, memory 91.3% >= 85.5%".into()
            }
        );
    }

    #[test]
    fn verdict_describes_held_triggers_truthfully() {
        let t0 = Instant::now();
        let mut cpu = Trigger::new(90.0, 5.0, secs(60));
        cpu.update(t0, Some(95.0));
        cpu.update(t0 + secs(1), Some(87.0));
        let v = verdict(&[("cpu", &cpu, Some(87.0))]);
        assert_eq!(v.reason, "cpu 87% (held, threshold 90%)");
        let v = verdict(&[("cpu", &cpu, None)]);
        assert_eq!(v.reason, "cpu n/a (held, threshold 90%)");
        assert!(v.draining);
    }

    #[test]
    fn verdict_not_draining_when_nothing_fires() {
        let cpu = Trigger::new(90.0, 5.0, secs(60));
        assert_eq!(verdict(&[("cpu", &cpu, Some(50.0))]), Verdict::default());
        assert_eq!(verdict(&[]), Verdict::default());
    }

    #[test]
    fn numbers_format_with_at_most_one_decimal() {
        assert_eq!(format_number(97.0), "97");
        assert_eq!(format_number(12.5), "12.5");
        assert_eq!(format_number(97.96), "98");
        assert_eq!(format_number(-0.01), "0");
        assert_eq!(format_number(0.3333), "0.3");
    }
}
