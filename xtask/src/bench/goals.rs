//! The goals for the traffic part, each as a ratio measured in this run: met, or missed by how
//! much. Never asserted anywhere: the bench reports them.

use serde_json::{Value, json};

use super::load::Step;
use super::traffic::Measured;

/// One goal's verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Goal {
    pub name: String,
    pub target: String,
    pub value: String,
    /// `None` when the run could not measure it (a server skipped, nothing answered).
    pub met: Option<bool>,
    /// How far off, when missed.
    pub missed_by: Option<String>,
}

impl Goal {
    pub fn json(&self) -> Value {
        json!({"name": self.name, "target": self.target, "value": self.value, "met": self.met,
               "missed_by": self.missed_by})
    }

    /// The goal from a section's JSON.
    pub fn from_json(v: &Value) -> Self {
        let s = |k: &str| v[k].as_str().unwrap_or("?").to_owned();
        Self {
            name: s("name"),
            target: s("target"),
            value: s("value"),
            met: v["met"].as_bool(),
            missed_by: v["missed_by"].as_str().map(str::to_owned),
        }
    }

    /// "met", "missed by …", or "not judged" (not measured, or nothing to compare with).
    pub fn verdict(&self) -> String {
        match (self.met, &self.missed_by) {
            (Some(true), _) => "met".to_owned(),
            (Some(false), Some(by)) => format!("missed by {by}"),
            (Some(false), None) => "missed".to_owned(),
            (None, _) => "not judged".to_owned(),
        }
    }
}

/// A goal on `ratio` (`value` shown as measured): at least `target` if `at_least`, else at most.
fn ratio_goal(name: &str, ratio: Option<f64>, target: f64, at_least: bool, value: String) -> Goal {
    let sign = if at_least { "≥" } else { "≤" };
    let Some(r) = ratio.filter(|r| r.is_finite()) else {
        return Goal {
            name: name.to_owned(),
            target: format!("{sign} {target}×"),
            value: "not measured".to_owned(),
            met: None,
            missed_by: None,
        };
    };
    let met = if at_least { r >= target } else { r <= target };
    Goal {
        name: name.to_owned(),
        target: format!("{sign} {target}×"),
        value: format!("{r:.2}× ({value})"),
        met: Some(met),
        missed_by: (!met).then(|| format!("{:.2}×", (r - target).abs())),
    }
}

fn find<'a>(all: &'a [Measured], key: &str) -> Option<&'a Measured> {
    all.iter()
        .find(|m| m.server.key == key && m.skipped.is_none())
}

/// The traffic goals of the issue, from this run's figures.
pub fn traffic(all: &[Measured]) -> Vec<Goal> {
    let xdp = find(all, "ours_xdp_driver");
    let user = find(all, "ours_userspace");
    let knot_xdp = find(all, "knot_xdp");
    let knot_udp = find(all, "knot_udp");
    let floor = find(all, "floor");
    // A measured server with no rate ≥99 % answered has a best rate below the lowest one: 0 here.
    let best = |m: Option<&Measured>| m.map(|m| m.best().map_or(0.0, |s| s.answered_rate()));
    let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let mut goals = Vec::new();

    // XDP: ≥99 % answered at the generator's limit, else ≥1.3× Knot XDP's best rate.
    let name = "XDP path: ≥99 % answered at the generator's limit, or ≥1.3× Knot XDP's best rate";
    goals.push(match xdp {
        Some(m) if m.generator_limited() && m.best() == m.steps.last() => {
            let top = m.steps.last().expect("a step");
            Goal {
                name: name.to_owned(),
                target: "≥ 99 % at the generator's limit".to_owned(),
                value: format!(
                    "{:.2} % at {} qps offered ({:.0} qps sent): the generator's limit",
                    top.answered_fraction() * 100.0,
                    top.offered,
                    top.sent as f64 / top.secs as f64
                ),
                met: Some(true),
                missed_by: None,
            }
        }
        _ => ratio_goal(
            name,
            div(best(xdp), best(knot_xdp)),
            1.3,
            true,
            format!(
                "{} vs {} qps",
                fmt_rate(best(xdp)),
                fmt_rate(best(knot_xdp))
            ),
        ),
    });

    let cpu = |m: Option<&Measured>| m.and_then(|m| m.fixed?.cpu_ns_per_answer());
    goals.push(ratio_goal(
        "CPU per answered query, XDP path vs Knot XDP",
        div(cpu(xdp), cpu(knot_xdp)),
        0.1,
        false,
        format!("{} vs {} ns", fmt_ns(cpu(xdp)), fmt_ns(cpu(knot_xdp))),
    ));
    let name = "Userspace path's best rate vs Knot UDP's";
    let top = |m: &Measured| {
        m.steps
            .iter()
            .map(Step::answered_fraction)
            .fold(0.0, f64::max)
            * 100.0
    };
    goals.push(match (user, knot_udp) {
        // No rate answered ≥99 %: a best rate below the lowest one measured, which cannot be compared
        // with another server's unless that one has a best rate.
        (Some(u), Some(k)) if u.best().is_none() && !u.steps.is_empty() => Goal {
            name: name.to_owned(),
            target: "≥ 1.2×".to_owned(),
            value: format!(
                "no rate with ≥99 % answered (at most {:.1} %) vs {}",
                top(u),
                k.best().map_or_else(
                    || format!("none for Knot UDP either (at most {:.1} %)", top(k)),
                    |b| format!("{:.0} qps", b.answered_rate())
                )
            ),
            met: k.best().is_some().then_some(false),
            missed_by: Some("more than the lowest rate measured".to_owned()),
        },
        _ => ratio_goal(
            name,
            div(best(user), best(knot_udp)),
            1.2,
            true,
            format!(
                "{} vs {} qps",
                fmt_rate(best(user)),
                fmt_rate(best(knot_udp))
            ),
        ),
    });
    let avg = |m: Option<&Measured>| m.and_then(|m| m.latency.as_ref()).map(|l| l.avg * 1e6);
    goals.push(ratio_goal(
        "Average latency at the fixed dnsperf rate, XDP path vs Knot XDP",
        div(avg(xdp), avg(knot_xdp)),
        0.5,
        false,
        format!("{} vs {} µs", fmt_us(avg(xdp)), fmt_us(avg(knot_xdp))),
    ));

    let ns = |m: Option<&Measured>| m.and_then(|m| m.fixed?.xdp_ns_per_packet());
    let ours_ns = ns(xdp);
    goals.push(match ours_ns {
        Some(v) => Goal {
            name: "XDP program under load, ns per packet (bpf_stats)".to_owned(),
            target: "≤ 150 ns".to_owned(),
            value: format!("{v:.0} ns"),
            met: Some(v <= 150.0),
            missed_by: (v > 150.0)
                .then(|| format!("{:.0} ns ({:.1}× the target)", v - 150.0, v / 150.0)),
        },
        None => Goal {
            name: "XDP program under load, ns per packet (bpf_stats)".to_owned(),
            target: "≤ 150 ns".to_owned(),
            value: "not measured".to_owned(),
            met: None,
            missed_by: None,
        },
    });
    if floor.is_some() {
        goals.push(ratio_goal(
            "XDP program under load vs the minimal XDP_TX responder",
            div(ours_ns, ns(floor)),
            1.2,
            false,
            format!("{} vs {} ns", fmt_ns(ours_ns), fmt_ns(ns(floor))),
        ));
    }
    goals
}

fn fmt_rate(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{r:.0}"))
}

fn fmt_ns(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{r:.0}"))
}

fn fmt_us(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{r:.1}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_goal_says_by_how_much_it_missed() {
        let g = ratio_goal("g", Some(0.9), 1.3, true, "9 vs 10".into());
        assert_eq!(g.met, Some(false));
        assert_eq!(g.verdict(), "missed by 0.40×");
        let g = ratio_goal("g", Some(0.05), 0.1, false, String::new());
        assert_eq!(g.verdict(), "met");
        assert_eq!(
            ratio_goal("g", None, 1.0, true, String::new()).verdict(),
            "not judged"
        );
    }

    #[test]
    fn every_goal_is_there_even_with_nothing_measured() {
        let goals = traffic(&[]);
        assert_eq!(goals.len(), 5);
        assert!(goals.iter().all(|g| g.met.is_none()));
    }
}
