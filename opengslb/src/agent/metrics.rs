//! The agent's own state at `/metrics`: its drain and the predictive signals, as of its last input.

use std::sync::Mutex;

use crate::{
    gossip::wire::Signals,
    metrics::{Collector, DescriptorEncoder, gauge, gauges},
};

/// What an agent shows of itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentView {
    /// Why its backends drain, if they do.
    pub draining: Option<String>,
    /// A predictive signal holds the drain.
    pub predictive: bool,
    /// The predictive signals as last measured.
    pub signals: Signals,
}

/// The agent's last view; nothing shows before the first.
#[derive(Debug, Default)]
pub struct AgentMetrics {
    last: Mutex<Option<AgentView>>,
}

impl AgentMetrics {
    /// Shows `view` from now on.
    pub fn set(&self, view: AgentView) {
        if let Ok(mut slot) = self.last.lock() {
            *slot = Some(view);
        }
    }
}

impl Collector for AgentMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(a) = self.last.lock().ok().and_then(|g| g.clone()) else {
            return Ok(());
        };
        gauges(
            &mut encoder,
            "opengslb_agent_draining",
            "1 while this agent reports its backends draining; `reason` says why (drain file present, drained by operator, maintenance window, or the predictive signal)",
            [(
                [("reason", a.draining.as_deref().unwrap_or(""))],
                i64::from(a.draining.is_some()),
            )],
        )?;
        gauge(
            &mut encoder,
            "opengslb_predictive_bleeding",
            "1 while a predictive signal (CPU, memory, error rate) drains this agent's backends",
            i64::from(a.predictive),
        )?;
        for (name, help, v) in [
            (
                "opengslb_predictive_cpu_percent",
                "CPU use of this agent's cgroup, in percent of what it may use",
                a.signals.cpu,
            ),
            (
                "opengslb_predictive_memory_percent",
                "Memory use (working set) of this agent's cgroup, in percent of its limit",
                a.signals.memory,
            ),
            (
                "opengslb_predictive_error_rate",
                "Share of failed requests (or failed checks), in percent",
                a.signals.error_rate,
            ),
        ] {
            if let Some(v) = v {
                gauge(&mut encoder, name, help, f64::from(v))?;
            }
        }
        Ok(())
    }
}
