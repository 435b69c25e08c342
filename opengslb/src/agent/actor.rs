//! The agent's loop as a state machine. It owns what the agent knows (each backend's check verdict,
//! why it drains, the report numbering); [`Agent::handle`] takes one [`Input`] and the time and returns
//! the [`Effect`]s to carry out. It never waits, reads a socket or a clock: the shell in
//! [`super::run`] turns probe results, the drain file, the control socket, the predictor, timers and
//! signals into inputs, and sends reports, feeds the predictor and updates the metrics as the effects
//! say.

use std::{
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context as _;
use tracing::{error, info};

use super::{metrics::AgentView, predict::Prediction};
use crate::{
    config::{AgentConfig, MaintenanceConfig},
    gossip::wire::{BackendReport, Report, Signals, Status},
    health::{CheckOutcome, CheckPolicy, ProbeResult, Validation, ValidationState},
};

/// How many times the leaving report is sent (UDP may lose one).
pub(super) const LEAVE_REPEATS: u32 = 3;

/// The longest reason a report carries; the wire allows 256 bytes.
pub(super) const MAX_REASON: usize = 200;

/// What the loop reacts to.
pub(super) enum Input {
    /// A health check of backend `.0` (its index in the config) finished.
    Probe(usize, ProbeResult),
    /// The drain file now exists, or not.
    DrainFile(bool),
    /// An operator drained (`true`) or undrained through the control socket.
    Manual(bool),
    /// The one-second schedule tick: maintenance windows open and close by the wall clock.
    Schedule,
    /// The predictor's latest verdict and signals.
    Predicted(Prediction),
    /// A report is due even if nothing changed (every [`super::REPORT_INTERVAL`]).
    ReportDue,
    /// SIGTERM or SIGINT.
    Shutdown,
}

/// What the shell does for an input, in order.
#[derive(Debug, PartialEq)]
pub(super) enum Effect {
    /// Seal this report payload and send it to every overwatch.
    Send(Vec<u8>),
    /// Give this check result to the predictor (its error rate without an app metrics source).
    Sample {
        /// When the check finished.
        at: Instant,
        /// Whether it passed.
        ok: bool,
    },
    /// Show this at `/metrics`.
    Show(AgentView),
    /// Send these leaving reports (spaced, as UDP may lose one), then leave SWIM and stop.
    Leave(Vec<Vec<u8>>),
}

/// One backend as the agent tracks it.
pub(super) struct Tracked {
    /// Service, advertised address and port, as reported.
    pub report_as: (String, IpAddr, u16),
    /// Its weight, as reported.
    pub weight: u32,
    /// The thresholds its checks are judged by.
    pub policy: CheckPolicy,
    /// The verdict so far.
    pub validation: Validation,
    /// Why its last check failed.
    pub last_error: Option<String>,
}

/// Why the backends drain, if they do: the first of these that holds.
#[derive(Default)]
pub(super) struct DrainInputs {
    pub file: bool,
    pub manual: bool,
    pub maintenance: bool,
    pub predictive: Option<String>,
}

impl DrainInputs {
    pub(super) fn reason(&self) -> Option<String> {
        if self.file {
            Some("drain file present".into())
        } else if self.manual {
            Some("drained by operator".into())
        } else if self.maintenance {
            Some("maintenance window".into())
        } else {
            self.predictive.clone()
        }
    }
}

/// The agent's state.
pub(super) struct Agent {
    tracked: Vec<Tracked>,
    drain: DrainInputs,
    maintenance: MaintenanceConfig,
    /// For the log only.
    drain_file: PathBuf,
    /// The next report but for its backends: identity, numbering, signals.
    base: Report,
    /// The backends last reported, to send at once on a change.
    last: Option<Vec<BackendReport>>,
    reason_room: usize,
}

impl Agent {
    /// An agent reporting `tracked` as `base` says; `file` is whether the drain file exists at start.
    pub fn new(
        cfg: &AgentConfig,
        base: Report,
        tracked: Vec<Tracked>,
        reason_room: usize,
        file: bool,
    ) -> Self {
        Self {
            tracked,
            drain: DrainInputs {
                file,
                ..DrainInputs::default()
            },
            maintenance: cfg.maintenance.clone(),
            drain_file: cfg.drain_file.clone(),
            base,
            last: None,
            reason_room,
        }
    }

    /// The number of the last report sent (0 before the first).
    pub fn seq(&self) -> u64 {
        self.base.seq
    }

    /// Handles one input at `now` (`wall_ms` on the wall clock, which reports carry and maintenance
    /// windows are set in).
    pub fn handle(&mut self, input: Input, now: Instant, wall_ms: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        let mut force = false;
        match input {
            Input::Shutdown => return vec![self.leave(wall_ms)],
            Input::Probe(i, result) => {
                if let Some(t) = self.tracked.get_mut(i) {
                    out.push(Effect::Sample {
                        at: now,
                        ok: result.ok,
                    });
                    t.last_error.clone_from(&result.error);
                    let outcome = CheckOutcome {
                        ok: result.ok,
                        definitive: result.definitive,
                        latency: result.ok.then_some(result.latency),
                    };
                    if t.validation.record(outcome, t.policy) {
                        info!(service = %t.report_as.0, address = %t.report_as.1, state = t.validation.state.as_str(), error = ?result.error, "backend check changed");
                    }
                }
            }
            Input::DrainFile(on) => {
                self.drain.file = on;
                info!(draining = on, file = %self.drain_file.display(), "drain file changed");
            }
            Input::Manual(on) => self.drain.manual = on,
            Input::Schedule => {
                let wall = SystemTime::UNIX_EPOCH + Duration::from_millis(wall_ms);
                let on = self.maintenance.active_at(wall);
                if on != self.drain.maintenance {
                    info!(in_window = on, "maintenance window");
                    self.drain.maintenance = on;
                }
            }
            Input::Predicted((verdict, signals)) => {
                self.base.signals = signals;
                if verdict != self.drain.predictive {
                    info!(reason = ?verdict, "predictive drain");
                    self.drain.predictive = verdict;
                }
            }
            Input::ReportDue => force = true,
        }
        let drain = self.drain.reason();
        let backends = statuses(&self.tracked, drain.as_deref(), self.reason_room);
        out.push(Effect::Show(AgentView {
            draining: drain,
            predictive: self.drain.predictive.is_some(),
            signals: self.base.signals,
        }));
        let changed = self.last.as_ref() != Some(&backends);
        if changed || force {
            if changed {
                for b in &backends {
                    info!(service = %b.service, address = %b.address, port = b.port, status = b.status.as_str(), reason = %b.reason, "reporting");
                }
            }
            out.push(Effect::Send(self.report(backends, wall_ms)));
        }
        out
    }

    /// The leaving reports: the last backends again, marked leaving.
    fn leave(&mut self, wall_ms: u64) -> Effect {
        info!(agent = %self.base.agent_id, "leaving: telling the overwatches");
        self.base.leaving = true;
        let reports = (0..LEAVE_REPEATS)
            .map(|_| self.report(self.base.backends.clone(), wall_ms))
            .collect();
        Effect::Leave(reports)
    }

    /// The next report of `backends`, numbered.
    fn report(&mut self, backends: Vec<BackendReport>, wall_ms: u64) -> Vec<u8> {
        self.base.seq += 1;
        self.base.sent_ms = wall_ms;
        self.base.backends.clone_from(&backends);
        let payload = self.base.encode();
        if payload.len() > crate::gossip::seal::MAX_PAYLOAD {
            // Config validation bounds the backends, and reasons are bounded: this is a bug, said loudly.
            error!(
                bytes = payload.len(),
                "a report is too large to send; the overwatches will declare this agent dead"
            );
        }
        self.last = Some(backends);
        payload
    }
}

/// What the agent says about each backend now. A drain covers every backend. Otherwise a backend with no
/// check verdict yet is left out, so a restarting agent does not pull a working backend out before its
/// first check.
pub(super) fn statuses(
    tracked: &[Tracked],
    drain: Option<&str>,
    reason_room: usize,
) -> Vec<BackendReport> {
    tracked
        .iter()
        .filter_map(|t| {
            let (status, reason) = match (drain, t.validation.state) {
                (Some(why), _) => (Status::Draining, why.to_owned()),
                (None, ValidationState::Passing) => (Status::Healthy, String::new()),
                (None, ValidationState::Failing) => (
                    Status::Unhealthy,
                    t.last_error
                        .clone()
                        .unwrap_or_else(|| "check failing".into()),
                ),
                (None, ValidationState::Unknown) => return None,
            };
            let (service, address, port) = t.report_as.clone();
            let reason = bounded_reason(&reason, reason_room);
            Some(BackendReport {
                service,
                address,
                port,
                weight: t.weight,
                status,
                reason,
            })
        })
        .collect()
}

/// A reason as a report carries it: no control characters, at most `room` bytes (cut at a character
/// boundary), so a long error text can never make a report too big to be accepted.
pub(super) fn bounded_reason(reason: &str, room: usize) -> String {
    let mut out: String = reason.chars().filter(|c| !c.is_control()).collect();
    if out.len() > room {
        let mut cut = room;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// How many bytes each backend's reason may take so that a report with every field at its largest still
/// fits one datagram; an error if even empty reasons do not fit.
pub(super) fn reason_room(
    base: &Report,
    reported: &[(String, IpAddr, u16)],
) -> anyhow::Result<usize> {
    let mut widest = base.clone();
    widest.seq = u64::MAX;
    widest.sent_ms = u64::MAX;
    widest.leaving = true;
    widest.signals = Signals {
        cpu: Some(100.0),
        memory: Some(100.0),
        error_rate: Some(100.0),
    };
    widest.backends = reported
        .iter()
        .map(|(service, address, port)| BackendReport {
            service: service.clone(),
            address: *address,
            port: *port,
            weight: 1000,
            status: Status::Unhealthy,
            reason: String::new(),
        })
        .collect();
    let fixed = widest.encode().len();
    let room = crate::gossip::seal::MAX_PAYLOAD
        .checked_sub(fixed)
        .with_context(|| {
            format!("agent.backends: a report of these {} backends takes {fixed} bytes, more than one datagram holds; run another agent for some of them", reported.len())
        })?;
    // Each reason's length prefix takes up to 2 bytes.
    Ok((room / reported.len().max(1))
        .saturating_sub(2)
        .min(MAX_REASON))
}

#[cfg(test)]
mod tests;
