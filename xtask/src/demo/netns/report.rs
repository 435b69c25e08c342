//! What the demo tells: a timeline as things happen, then a table of the scenarios, the client's totals,
//! XDP's share, and with `--json` one object with every figure.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The scenarios, in the order they run.
#[derive(Clone, Copy, Debug)]
pub enum Scenario {
    NginxStop,
    Drain,
    AgentKill,
}

impl Scenario {
    /// Its key in the JSON.
    pub fn key(self) -> &'static str {
        match self {
            Self::NginxStop => "nginx_stop",
            Self::Drain => "drain",
            Self::AgentKill => "agent_kill",
        }
    }

    /// Its name in the table.
    pub fn title(self) -> &'static str {
        match self {
            Self::NginxStop => "nginx stopped",
            Self::Drain => "drain file",
            Self::AgentKill => "agent killed (-9)",
        }
    }
}

/// What one scenario measured.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// From the trigger to the last answer with webapp2 (zero if none came after it).
    pub removal: Duration,
    /// Requests that failed from the trigger until shortly after webapp2 was answered again.
    pub failed: usize,
    /// From the undo to the first answer with webapp2 again.
    pub recovery: Duration,
}

/// Whether XDP attached, as the overwatch logged it.
pub enum Xdp {
    /// Attached, in this mode (`skb` on a veth).
    Attached(String),
    /// Not attached: the overwatch's log line saying why, or that it said nothing.
    Not(String),
}

/// Every figure of a run.
pub struct Figures {
    pub scenarios: Vec<(Scenario, Outcome)>,
    pub requests: usize,
    pub failed: usize,
    /// Requests without a DNS answer (no reply, or no address in it).
    pub unanswered: usize,
    /// Answers with an address other than the three webapps'.
    pub foreign: usize,
    pub xdp: Xdp,
    /// `answered N` of `opengslb xdp counters` (zero when it could not be read).
    pub xdp_answered: u64,
    pub duration: Duration,
}

/// Prints events as they happen, stamped with the time since the run began.
pub struct Timeline {
    t0: Instant,
}

impl Timeline {
    pub fn new(t0: Instant) -> Self {
        Self { t0 }
    }

    /// When the run began.
    pub fn t0(&self) -> Instant {
        self.t0
    }

    /// The time since the run began.
    pub fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// An event now.
    pub fn note(&self, what: &str) {
        self.note_at(self.now(), what);
    }

    /// An event at `at` (measured ones are known only once the client's records show them).
    pub fn note_at(&self, at: Duration, what: &str) {
        eprintln!("t+{:>7.3}s  {what}", at.as_secs_f64());
    }
}

/// Seconds, to the millisecond.
pub fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

impl Figures {
    /// The table and the totals, for a person.
    pub fn print(&self) {
        let w = 18;
        eprintln!();
        eprintln!(
            "{:<w$} | {:>16} | {:>15} | {:>10}",
            "scenario", "out of DNS after", "failed requests", "back after"
        );
        eprintln!("{:-<w$}-|-{:->16}-|-{:->15}-|-{:->10}", "", "", "", "");
        for (s, o) in &self.scenarios {
            eprintln!(
                "{:<w$} | {:>16} | {:>15} | {:>10}",
                s.title(),
                secs(o.removal),
                o.failed,
                secs(o.recovery)
            );
        }
        eprintln!();
        eprintln!(
            "client: {} requests in {}, {} failed, {} without a DNS answer, {} answers outside 10.20.0.21-23",
            self.requests,
            secs(self.duration),
            self.failed,
            self.unanswered,
            self.foreign
        );
        match &self.xdp {
            Xdp::Attached(mode) => eprintln!("XDP: attached to the overwatch's eth0 ({mode} mode)"),
            Xdp::Not(why) => eprintln!("XDP: not attached ({why})"),
        }
        eprintln!(
            "XDP: answered {} DNS queries in the kernel (opengslb xdp counters)",
            self.xdp_answered
        );
    }

    /// Every figure as one JSON object.
    pub fn json(&self) -> Value {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let mut v = json!({
            "requests": self.requests,
            "failed_requests": self.failed,
            "unanswered": self.unanswered,
            "foreign_answers": self.foreign,
            "xdp_attached": matches!(self.xdp, Xdp::Attached(_)),
            "xdp_answered": self.xdp_answered,
            "duration_ms": ms(self.duration),
        });
        for (s, o) in &self.scenarios {
            v[s.key()] = json!({
                "removal_ms": ms(o.removal),
                "failed_requests": o.failed,
                "recovery_ms": ms(o.recovery),
            });
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_every_figure_by_scenario() {
        let o = Outcome {
            removal: Duration::from_millis(1500),
            failed: 3,
            recovery: Duration::from_millis(2200),
        };
        let f = Figures {
            scenarios: vec![(Scenario::NginxStop, o), (Scenario::AgentKill, o)],
            requests: 100,
            failed: 3,
            unanswered: 0,
            foreign: 0,
            xdp: Xdp::Attached("skb".into()),
            xdp_answered: 90,
            duration: Duration::from_secs(2),
        };
        let v = f.json();
        assert_eq!(v["nginx_stop"]["removal_ms"], 1500);
        assert_eq!(v["agent_kill"]["failed_requests"], 3);
        assert_eq!(v["agent_kill"]["recovery_ms"], 2200);
        assert_eq!(v["xdp_answered"], 90);
        assert_eq!(v["foreign_answers"], 0);
        assert!(v.get("drain").is_none());
    }
}
