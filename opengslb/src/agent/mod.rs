//! The agent: runs beside the app, checks its backends, and reports them to every overwatch, sealed, at
//! once on every change and every [`REPORT_INTERVAL`] otherwise. It drains its backends (reports them
//! `draining` while staying alive, so the overwatch knows draining from dead) while the drain file
//! exists, while an operator says so (`opengslb agent drain on`), during a maintenance window, or while a
//! predictive signal fires. On SIGTERM or SIGINT it says it is leaving, so its backends are out at once.

pub mod drain;
mod predict;
pub mod signals;

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use crate::{
    config::{AgentBackend, Config},
    gossip::{
        member::Role,
        node::{Node, NodeConfig},
        wire::{BackendReport, REPORT_VERSION, Report, Signals, Status},
    },
    health::{
        CheckOutcome, CheckPolicy, CheckSpec, ProbeResult, Prober, Scheduled, Target, Validation,
        ValidationState,
    },
};

/// How often a report goes out when nothing changes. With the default `missed_threshold` of 3, an
/// overwatch declares a silent agent dead after about 0.9 s.
pub const REPORT_INTERVAL: Duration = Duration::from_millis(300);

/// How many times the leaving report is sent (UDP may lose one).
const LEAVE_REPEATS: u32 = 3;

/// Health checks in flight at once.
const PROBE_CONCURRENCY: usize = 8;

/// The agent's identity: the host name and a digest of its backends as reported (service, advertised
/// address, port), so it is stable across restarts and distinct for several agents on one host, even
/// when they all check `127.0.0.1:80` (Demo 2's webapps).
pub fn agent_id(reported: &[(String, IpAddr, u16)]) -> String {
    let mut keys: Vec<String> = reported
        .iter()
        .map(|(service, address, port)| format!("{service}|{address}|{port}"))
        .collect();
    keys.sort();
    let digest = Sha256::digest(keys.join("\n").as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", crate::gossip::member::hostname())
}

/// The address a backend is reported at: its `advertise_address`, else its checked address unless that
/// is a loopback one, which remote clients cannot reach: then the address the agent's gossip leaves
/// from. When that is loopback too (agent and overwatch on one host), the checked address stands.
pub fn advertised_address(backend: &AgentBackend, gossip_source: IpAddr) -> IpAddr {
    match backend.advertise_address {
        Some(a) => a,
        None if backend.address.is_loopback() && !gossip_source.is_loopback() => gossip_source,
        None => backend.address,
    }
}

/// One backend as the agent tracks it.
struct Tracked {
    report_as: (String, IpAddr, u16),
    weight: u32,
    policy: CheckPolicy,
    validation: Validation,
    last_error: Option<String>,
}

/// Why the backends drain, if they do: the first of these that holds.
#[derive(Default)]
struct DrainInputs {
    file: bool,
    manual: bool,
    maintenance: bool,
    predictive: Option<String>,
}

impl DrainInputs {
    fn reason(&self) -> Option<String> {
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

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(cfg: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(run_async(cfg))
}

async fn run_async(cfg: Config) -> anyhow::Result<()> {
    let agent = &cfg.agent;
    let service_token = agent
        .identity
        .service_token
        .clone()
        .context("agent.identity.service_token is required")?;
    // The address this agent's gossip leaves from, as the node will work it out, to report loopback-
    // checked backends at.
    let first_seed = match agent.gossip.overwatch_nodes.first() {
        Some(s) => tokio::net::lookup_host((s.host.as_str(), s.port))
            .await
            .ok()
            .and_then(|mut a| a.next()),
        None => None,
    };
    let source = crate::gossip::member::reachable_ip(first_seed);
    let reported: Vec<(String, IpAddr, u16)> = agent
        .backends
        .iter()
        .map(|b| (b.service.to_string(), advertised_address(b, source), b.port))
        .collect();
    let id = agent_id(&reported);
    let tracker = TaskTracker::new();
    let token = CancellationToken::new();
    let defaults = crate::config::OverwatchGossip::default();
    let node_cfg = NodeConfig {
        role: Role::Agent,
        name: id.clone(),
        bind: gossip_bind(),
        advertise: Some(source),
        seeds: agent.gossip.overwatch_nodes.clone(),
        keys: agent.gossip.key_ring().to_vec(),
        probe_interval: defaults.probe_interval,
        probe_timeout: defaults.probe_timeout,
        gossip_interval: defaults.gossip_interval,
    };
    let (node, mut events) = Node::start(node_cfg, &tracker, token.clone()).await?;
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
    if cfg.metrics.enabled {
        serve_metrics(&cfg, &node, metrics.clone(), &tracker, token.clone()).await?;
    }
    // Membership events matter to the overwatch; the agent only needs the node's view of overwatches.
    tracker.spawn(async move { while events.recv().await.is_some() {} });

    let mut tracked: Vec<Tracked> = agent
        .backends
        .iter()
        .zip(&reported)
        .map(|(b, (_, addr, _))| {
            let addr = *addr;
            if addr != b.address {
                info!(service = %b.service, checked = %b.address, reported = %addr, "backend reported at its advertised address");
            }
            Tracked {
                report_as: (b.service.to_string(), addr, b.port),
                weight: b.weight,
                policy: CheckPolicy::from_health_check(&b.health_check, 0.3),
                validation: Validation::default(),
                last_error: None,
            }
        })
        .collect();
    let probes: Vec<Scheduled<usize>> = agent
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| Scheduled {
            key: i,
            target: Target {
                address: b.address,
                port: b.port,
                check: CheckSpec::from_config(&b.health_check, None),
            },
            interval: b.health_check.interval,
        })
        .collect();
    let (probe_tx, mut probe_rx) = mpsc::channel::<(usize, ProbeResult)>(256);
    let _prober = Prober::spawn(probes, PROBE_CONCURRENCY, probe_tx, &tracker, token.clone());

    let (mut drain_file, _watcher) = drain::watch_file(&agent.drain_file)
        .with_context(|| format!("agent.drain_file {}", agent.drain_file.display()))?;
    let (manual_tx, mut manual) = watch::channel(false);
    drain::serve(&agent.control_socket, manual_tx, &tracker, token.clone())?;
    // Sampling may wait on the app's metrics endpoint: it runs in a task of its own, so the reports
    // never wait for it.
    let (checks_tx, mut predicted) =
        predict::Predictor::new(&agent.predictive)?.spawn(&tracker, token.clone());

    let started_ms = crate::gossip::unix_ms();
    let mut sender = Sender {
        node: node.clone(),
        base: Report {
            version: REPORT_VERSION,
            agent_id: id.clone(),
            started_ms,
            sent_ms: started_ms,
            seq: 0,
            interval_ms: REPORT_INTERVAL.as_millis() as u32,
            missed_threshold: agent
                .heartbeat
                .missed_threshold
                .clamp(1, crate::config::MAX_MISSED),
            token: service_token,
            region: agent.identity.region.clone(),
            leaving: false,
            backends: Vec::new(),
            signals: Signals::default(),
        },
        last: None,
    };
    let reason_room = reason_room(&sender.base, &reported)?;
    info!(agent = %id, backends = tracked.len(), overwatches = agent.gossip.overwatch_nodes.len(), drain_file = %agent.drain_file.display(), "agent running");

    let mut inputs = DrainInputs {
        file: *drain_file.borrow_and_update(),
        ..DrainInputs::default()
    };
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    // SIGHUP would end the process by default; an operator who sends it expects a reload, not a leave.
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let mut report_tick = tokio::time::interval(REPORT_INTERVAL);
    report_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut schedule_tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let mut force = false;
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = hup.recv() => {
                warn!("SIGHUP: the agent does not reload its config; restart it to apply changes (it leaves and rejoins)");
            }
            Some((i, result)) = probe_rx.recv() => {
                if let Some(t) = tracked.get_mut(i) {
                    // Best effort: a full queue drops a sample of the error rate, never a report.
                    let _ = checks_tx.try_send((Instant::now(), result.ok));
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
            Ok(()) = drain_file.changed() => {
                inputs.file = *drain_file.borrow_and_update();
                info!(draining = inputs.file, file = %agent.drain_file.display(), "drain file changed");
            }
            Ok(()) = manual.changed() => {
                inputs.manual = *manual.borrow_and_update();
            }
            _ = schedule_tick.tick() => {
                let on = agent.maintenance.active_at(SystemTime::now());
                if on != inputs.maintenance {
                    info!(in_window = on, "maintenance window");
                    inputs.maintenance = on;
                }
            }
            Ok(()) = predicted.changed() => {
                let (verdict, signals) = predicted.borrow_and_update().clone();
                sender.base.signals = signals;
                if verdict != inputs.predictive {
                    info!(reason = ?verdict, "predictive drain");
                    inputs.predictive = verdict;
                }
            }
            _ = report_tick.tick() => force = true,
        }
        let drain = inputs.reason();
        let backends = statuses(&tracked, drain.as_deref(), reason_room);
        metrics.set_agent(crate::metrics::AgentView {
            draining: drain,
            predictive: inputs.predictive.is_some(),
            signals: sender.base.signals,
        });
        sender.send(backends, force);
    }

    info!(agent = %id, "leaving: telling the overwatches");
    sender.base.leaving = true;
    for _ in 0..LEAVE_REPEATS {
        sender.send(sender.base.backends.clone(), true);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.leave().await;
    token.cancel();
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .is_err()
    {
        warn!("some tasks did not stop within 5 s");
    }
    Ok(())
}

/// Serves `/metrics` (the gossip node's counters) and `/health` on `metrics.address`.
async fn serve_metrics(
    cfg: &Config,
    node: &Node,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    tracker: &TaskTracker,
    token: CancellationToken,
) -> anyhow::Result<()> {
    if let Ok(mut slot) = metrics.sources.gossip.lock() {
        *slot = Some(crate::metrics::GossipSource {
            node: node.stats.clone(),
            book: None,
        });
    }
    let listener = tokio::net::TcpListener::bind(cfg.metrics.address)
        .await
        .with_context(|| format!("metrics.address {}", cfg.metrics.address))?;
    tracker.spawn(async move {
        if let Err(e) = crate::metrics::serve(listener, metrics, token).await {
            warn!(error = %e, "metrics server stopped");
        }
    });
    Ok(())
}

/// The gossip socket's bind address: every address, a port of the kernel's choosing (as the original);
/// IPv6 with IPv4 mapped when the host has IPv6.
fn gossip_bind() -> SocketAddr {
    let v6: SocketAddr = (std::net::Ipv6Addr::UNSPECIFIED, 0).into();
    if std::net::UdpSocket::bind(v6).is_ok() {
        v6
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    }
}

/// What the agent says about each backend now. A drain covers every backend. Otherwise a backend with no
/// check verdict yet is left out, so a restarting agent does not pull a working backend out before its
/// first check.
fn statuses(tracked: &[Tracked], drain: Option<&str>, reason_room: usize) -> Vec<BackendReport> {
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
fn bounded_reason(reason: &str, room: usize) -> String {
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

/// The longest reason a report carries; the wire allows 256 bytes.
const MAX_REASON: usize = 200;

/// How many bytes each backend's reason may take so that a report with every field at its largest still
/// fits one datagram; an error if even empty reasons do not fit.
fn reason_room(base: &Report, reported: &[(String, IpAddr, u16)]) -> anyhow::Result<usize> {
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

/// Seals and sends reports, numbering them.
struct Sender {
    node: Node,
    base: Report,
    last: Option<Vec<BackendReport>>,
}

impl Sender {
    /// Sends when the backends changed since the last report, or when `force`.
    fn send(&mut self, backends: Vec<BackendReport>, force: bool) {
        let changed = self.last.as_ref() != Some(&backends);
        if !changed && !force {
            return;
        }
        if changed {
            for b in &backends {
                info!(service = %b.service, address = %b.address, port = b.port, status = b.status.as_str(), reason = %b.reason, "reporting");
            }
        }
        self.base.seq += 1;
        self.base.sent_ms = crate::gossip::unix_ms();
        self.base.backends.clone_from(&backends);
        let payload = self.base.encode();
        if payload.len() > crate::gossip::seal::MAX_PAYLOAD {
            // Config validation bounds the backends, and reasons are bounded: this is a bug, said loudly.
            tracing::error!(
                bytes = payload.len(),
                "a report is too large to send; the overwatches will declare this agent dead"
            );
        }
        self.node.send_report(payload);
        self.last = Some(backends);
    }
}

/// `opengslb agent drain on|off|status`: tells the running agent through its control socket.
pub fn control(socket: &std::path::Path, cmd: drain::Command) -> anyhow::Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(drain::send(socket, cmd))
}

#[cfg(test)]
mod tests;
