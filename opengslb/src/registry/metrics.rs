//! The backends' effective status and the names' all-down state at `/metrics`, as of the last time the
//! control plane was evaluated (each publish, and every second), not at scrape time.

use std::sync::Mutex;

use super::{BackendStatus, NameStatus, Status};
use crate::metrics::{Collector, DescriptorEncoder, flags, gauge};

/// What the last evaluation showed; families with no rows are left out.
#[derive(Debug, Default)]
pub struct StatusMetrics {
    shown: Mutex<(Vec<BackendStatus>, Vec<NameStatus>)>,
}

impl StatusMetrics {
    /// Shows these backends and names from now on.
    pub fn set(&self, backends: Vec<BackendStatus>, names: Vec<NameStatus>) {
        if let Ok(mut slot) = self.shown.lock() {
            *slot = (backends, names);
        }
    }
}

impl Collector for StatusMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (backends, names) = self.shown.lock().map(|s| s.clone()).unwrap_or_default();
        let count = |f: fn(&BackendStatus) -> bool| backends.iter().filter(|b| f(b)).count() as i64;
        gauge(
            &mut encoder,
            "opengslb_overwatch_backends",
            "Backends known: static, API-made and agents' (by service, address and port)",
            backends.len() as i64,
        )?;
        gauge(
            &mut encoder,
            "opengslb_overwatch_backends_healthy",
            "Backends whose own status is healthy (see opengslb_backend_up for each)",
            count(|b| b.status == Status::Healthy),
        )?;
        gauge(
            &mut encoder,
            "opengslb_overwatch_overrides_active",
            "Backends an operator's override holds in or out",
            count(|b| b.override_.is_some()),
        )?;
        if !backends.is_empty() {
            let rows = backends.iter().map(|b| {
                let labels = [
                    ("service", b.key.service.to_string()),
                    ("address", b.key.address.to_string()),
                    ("port", b.key.port.to_string()),
                    ("source", b.source.as_str().to_owned()),
                    ("reason", b.reason.as_str().to_owned()),
                    ("agent", b.agent_id.clone().unwrap_or_default()),
                ];
                (labels, b.status == Status::Healthy)
            });
            flags(
                &mut encoder,
                "opengslb_backend_up",
                "1 while the backend's own status is healthy, else 0; DNS may still hand it out under an all-down policy (see opengslb_name_all_down). `reason` says why (healthy, override, agent_draining, agent_unhealthy, agent_left, agent_dead, stale, validation_failed), `agent` who reports on it",
                rows,
            )?;
        }
        if !names.is_empty() {
            let rows = names.iter().map(|n| {
                let labels = [("name", n.name.as_str()), ("policy", n.policy.as_str())];
                (labels, n.all_down)
            });
            flags(
                &mut encoder,
                "opengslb_name_all_down",
                "1 while no backend of the name is healthy (or it has none), so DNS answers what its all-down `policy` chooses (all: every backend, last_healthy: the last healthy set, empty: none), else 0",
                rows,
            )?;
        }
        Ok(())
    }
}
