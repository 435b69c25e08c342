//! The agent: runs beside the app, checks its backends, and reports them to every overwatch, sealed, at
//! once on every change and every [`REPORT_INTERVAL`] (or `agent.heartbeat.interval`, if shorter) otherwise. It drains its backends (reports them
//! `draining` while staying alive, so the overwatch knows draining from dead) while the drain file
//! exists, while an operator says so (`opengslb agent drain on`), during a maintenance window, or while a
//! predictive signal fires. On SIGTERM or SIGINT it says it is leaving, so its backends are out at once.
//! On SIGHUP it reads its config file again and applies a changed gossip key ring ([`reload`]).

mod actor;
pub mod drain;
pub mod latency;
mod metrics;
mod predict;
mod reload;
pub mod signals;

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use actor::{Agent, Effect, Input, Tracked, reason_room};
use metrics::AgentMetrics;

use crate::{
    config::{AgentBackend, Config},
    gossip::{
        member::Role,
        node::{Event, Node, NodeConfig},
        wire::{Ack, REPORT_VERSION, Report, Signals},
    },
    health::{CheckPolicy, CheckSpec, ProbeResult, Prober, Scheduled, Target, Validation},
    metrics::Metrics,
};

/// The longest time between two reports; `agent.heartbeat.interval` may shorten it
/// ([`HeartbeatConfig::report_interval`](crate::config::HeartbeatConfig::report_interval)).
pub use crate::config::REPORT_INTERVAL;

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

/// Runs the agent until SIGTERM or SIGINT; `config` is the file SIGHUP re-reads.
pub fn run(cfg: Config, config: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(run_async(cfg, config))
}

async fn run_async(cfg: Config, config: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let mut running = cfg.clone();
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
    let shown = Arc::new(AgentMetrics::default());
    let learning = Arc::new(latency::LatencyStats::default());
    if cfg.metrics.enabled {
        serve_metrics(
            &cfg,
            &node,
            (shown.clone(), learning.clone()),
            &tracker,
            token.clone(),
        )
        .await?;
    }
    if agent.latency_learning.enabled {
        let measured = agent
            .backends
            .iter()
            .zip(&reported)
            .map(|(b, (service, addr, port))| latency::Measured {
                service: service.clone(),
                checked: b.address,
                reported: *addr,
                port: *port,
            })
            .collect();
        latency::spawn(
            &agent.latency_learning,
            measured,
            (id.clone(), service_token.clone()),
            node.clone(),
            learning,
            &tracker,
            token.clone(),
        );
        info!(poll = ?agent.latency_learning.poll_interval, report = ?agent.latency_learning.report_interval, "learning clients' latency from the kernel's TCP connections");
    }
    let started_ms = crate::gossip::unix_ms();
    let (confirm_tx, confirm_rx) = watch::channel(drain::Confirm {
        overwatches: node.report_targets(),
        ..drain::Confirm::default()
    });
    // Membership events matter to the overwatch; the agent keeps the overwatches' acks, for drains
    // that wait for them.
    let acks_to = confirm_tx.clone();
    let stats = node.stats.clone();
    tracker.spawn(async move {
        while let Some(event) = events.recv().await {
            let Event::Ack { payload, from } = event else {
                continue;
            };
            match Ack::decode(&payload) {
                // An ack of an earlier life's report numbers another sequence.
                Ok(ack) if ack.started_ms == started_ms => {
                    acks_to.send_modify(|c| {
                        c.acks.insert(from, ack);
                    });
                }
                Ok(_) => {}
                Err(e) => {
                    stats
                        .bad_ack
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!(%from, error = %e, "malformed ack dropped");
                }
            }
        }
    });

    let tracked: Vec<Tracked> = agent
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
    drain::serve(
        &agent.control_socket,
        manual_tx,
        confirm_rx,
        &tracker,
        token.clone(),
    )?;
    // Sampling may wait on the app's metrics endpoint: it runs in a task of its own, so the reports
    // never wait for it.
    let (checks_tx, mut predicted) =
        predict::Predictor::new(&agent.predictive)?.spawn(&tracker, token.clone());

    let report_every = agent.heartbeat.report_interval();
    let base = Report {
        version: REPORT_VERSION,
        agent_id: id.clone(),
        started_ms,
        sent_ms: started_ms,
        seq: 0,
        interval_ms: u32::try_from(report_every.as_millis()).unwrap_or(u32::MAX),
        missed_threshold: agent
            .heartbeat
            .missed_threshold
            .clamp(1, crate::config::MAX_MISSED),
        token: service_token,
        region: agent.identity.region.clone(),
        leaving: false,
        backends: Vec::new(),
        signals: Signals::default(),
    };
    let reason_room = reason_room(&base, &reported)?;
    info!(agent = %id, backends = tracked.len(), overwatches = agent.gossip.overwatch_nodes.len(), report_every = ?report_every, drain_file = %agent.drain_file.display(), "agent running");
    let file = *drain_file.borrow_and_update();
    let mut state = Agent::new(agent, base, tracked, reason_room, file);

    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    // SIGHUP would end the process by default: it means a reload.
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let mut report_tick = tokio::time::interval(report_every);
    report_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut schedule_tick = tokio::time::interval(Duration::from_secs(1));
    'run: loop {
        let input = tokio::select! {
            _ = int.recv() => Input::Shutdown,
            _ = term.recv() => Input::Shutdown,
            _ = hup.recv() => {
                reload::on_sighup(config.as_deref(), &mut running, &node);
                continue;
            }
            Some((i, result)) = probe_rx.recv() => Input::Probe(i, result),
            Ok(()) = drain_file.changed() => Input::DrainFile(*drain_file.borrow_and_update()),
            Ok(()) = manual.changed() => Input::Manual(*manual.borrow_and_update()),
            _ = schedule_tick.tick() => Input::Schedule,
            Ok(()) = predicted.changed() => Input::Predicted(predicted.borrow_and_update().clone()),
            _ = report_tick.tick() => Input::ReportDue,
        };
        let manual_now = match &input {
            Input::Manual(on) => Some(*on),
            _ => None,
        };
        let effects = state.handle(input, Instant::now(), crate::gossip::unix_ms());
        if let Some(on) = manual_now {
            // The report just sent (or, if nothing changed, the last one) carries this drain.
            let seq = state.seq();
            let targets = node.report_targets();
            confirm_tx.send_modify(|c| {
                if c.manual != on || c.since_seq == 0 {
                    c.manual = on;
                    c.since_seq = seq;
                }
                c.overwatches = targets;
            });
        }
        for effect in effects {
            match effect {
                Effect::Send(payload) => node.send_report(payload),
                // Best effort: a full queue drops a sample of the error rate, never a report.
                Effect::Sample { at, ok } => _ = checks_tx.try_send((at, ok)),
                Effect::Show(view) => shown.set(view),
                Effect::Leave(reports) => {
                    for payload in reports {
                        node.send_report(payload);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    break 'run;
                }
            }
        }
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
    // What this life sent and dropped, for whoever checks that its reports all arrived: after the
    // node's task stopped, so nothing is sent after the figures.
    let stats = &node.stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    info!(
        reports_sent = load(&stats.reports_sent),
        datagrams_sent = load(&stats.sent),
        datagrams_received = load(&stats.received),
        dropped = stats.drops().iter().map(|(_, n)| n).sum::<u64>(),
        "agent stopped"
    );
    Ok(())
}

/// Serves `/metrics` (the gossip node's counters and the agent's own state) and `/health` on
/// `metrics.address`.
async fn serve_metrics(
    cfg: &Config,
    node: &Node,
    (shown, learning): (Arc<AgentMetrics>, Arc<latency::LatencyStats>),
    tracker: &TaskTracker,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let mut metrics = Metrics::new();
    metrics.collect(node.stats.clone());
    metrics.collect(shown);
    metrics.collect(learning);
    let listener = tokio::net::TcpListener::bind(cfg.metrics.address)
        .await
        .with_context(|| format!("metrics.address {}", cfg.metrics.address))?;
    let metrics = Arc::new(metrics);
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

/// `opengslb agent drain on|off [--wait]|status`: tells the running agent through its control socket.
pub fn control(
    socket: &std::path::Path,
    cmd: drain::Command,
    wait: Option<Duration>,
) -> anyhow::Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(drain::send(socket, cmd, wait))
}

#[cfg(test)]
mod tests;
