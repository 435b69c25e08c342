//! The overwatch's side of gossip: its node, and the book that turns agents' reports, leaves and
//! deaths into registry changes.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use super::agents::{Accepted, AgentBook, Arrival, Refusal};
use crate::{
    config::Config,
    gossip::{
        member::{Role, hostname},
        node::{EVENT_QUEUE, Event, Node, NodeConfig, NodeStats},
        unix_ms,
    },
    metrics::{AgentRow, BookView, GossipSource, Metrics},
    registry::Registry,
};

/// A refused report is logged at most this often per sender, so a misbehaving agent cannot flood the log.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Events handled before one publish: a burst (agents arriving after a restart) costs one publish.
const BATCH: usize = 256;

/// The running gossip receiver.
pub(super) struct Gossip {
    /// The node's counters; the node itself runs on the tracker until the token is cancelled.
    stats: Arc<NodeStats>,
    events: mpsc::Receiver<Event>,
    book: AgentBook,
    metrics: Arc<Metrics>,
    warned: HashMap<SocketAddr, Instant>,
}

fn services(cfg: &Config) -> impl Iterator<Item = crate::name::DnsName> + '_ {
    cfg.domains.iter().map(|d| d.name.clone())
}

impl Gossip {
    /// Starts the receiver when the config has a gossip key; without one gossip is off, as in the
    /// original.
    pub async fn start(
        cfg: &Config,
        tracker: &TaskTracker,
        token: CancellationToken,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Option<Self>> {
        let g = &cfg.overwatch.gossip;
        let keys = g.key_ring().to_vec();
        if keys.is_empty() {
            info!("overwatch.gossip has no encryption_key: gossip is off, no agent can report");
            return Ok(None);
        }
        let name = cfg
            .overwatch
            .identity
            .node_id
            .clone()
            .unwrap_or_else(hostname);
        let node_cfg = NodeConfig {
            role: Role::Overwatch,
            name,
            bind: g.bind_address,
            advertise: None,
            seeds: Vec::new(),
            keys,
            probe_interval: g.probe_interval,
            probe_timeout: g.probe_timeout,
            gossip_interval: g.gossip_interval,
        };
        let (node, events) = Node::start(node_cfg, tracker, token)
            .await
            .context("overwatch.gossip.bind_address")?;
        let book = AgentBook::new(
            &cfg.overwatch.agent_tokens,
            &cfg.overwatch.data_dir,
            services(cfg),
        );
        if cfg.overwatch.agent_tokens.is_empty() {
            warn!(
                data_dir = %cfg.overwatch.data_dir.display(),
                "overwatch.agent_tokens is empty: the first token seen for each service is pinned (trust on first use)"
            );
        }
        let gossip = Self {
            stats: node.stats.clone(),
            events,
            book,
            metrics,
            warned: HashMap::new(),
        };
        gossip.update_metrics();
        Ok(Some(gossip))
    }

    /// The next events, as many as are queued (up to a batch); pending forever once the node is gone.
    pub async fn next(&mut self) -> Vec<Event> {
        let Some(first) = self.events.recv().await else {
            return std::future::pending().await;
        };
        let mut batch = vec![first];
        self.fill(&mut batch);
        batch
    }

    /// Adds what is queued to `batch`, up to a batch.
    fn fill(&mut self, batch: &mut Vec<Event>) {
        while batch.len() < BATCH {
            match self.events.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
    }

    /// When the next agent goes dead if it stays silent.
    pub fn deadline(&self) -> Option<Instant> {
        self.book.next_deadline()
    }

    /// Takes a reloaded config's tokens.
    pub fn reload(&mut self, cfg: &Config) {
        self.book.reload(
            &cfg.overwatch.agent_tokens,
            &cfg.overwatch.data_dir,
            services(cfg),
        );
    }

    /// Applies a batch of events to the registry; returns whether the answers may have changed.
    pub fn handle(&mut self, events: Vec<Event>, registry: &mut Registry, now: Instant) -> bool {
        let wall = unix_ms();
        let mut changed = false;
        for event in events {
            changed |= self.apply(event, registry, now, wall);
        }
        changed
    }

    fn apply(&mut self, event: Event, registry: &mut Registry, now: Instant, wall_ms: u64) -> bool {
        match event {
            Event::Report {
                payload,
                sender_epoch,
                from,
            } => {
                let arrival = Arrival {
                    payload: &payload,
                    sender_epoch,
                    from,
                    now,
                    wall_ms,
                };
                match self.book.on_report(arrival) {
                    Ok(Accepted::Reports(reports)) => reports
                        .into_iter()
                        .fold(false, |c, r| registry.apply_agent_report(r, now) | c),
                    Ok(Accepted::Left(agent)) => {
                        let changed = registry.agent_left(&agent);
                        if changed {
                            info!(%agent, "agent left: its backends are out");
                        }
                        changed
                    }
                    Err(Refusal::Stale) => {
                        tracing::debug!(%from, "agent report not newer than the last applied: ignored");
                        false
                    }
                    Err(refusal) => {
                        // The datagram opened under the shared key: a misconfigured or hostile agent.
                        if self.should_warn(from, now) {
                            warn!(%from, why = ?refusal, "agent report refused (further refusals from this sender are counted, and logged at most every 10 s)");
                        }
                        false
                    }
                }
            }
            Event::MemberDown(m) if m.role == Role::Agent => {
                let mut changed = false;
                for agent in self.book.member_down(&m.name, m.addr) {
                    info!(%agent, "SWIM declared the agent down: its backends are out");
                    changed |= registry.agent_dead(&agent);
                }
                changed
            }
            Event::MemberUp(_) | Event::MemberDown(_) => false,
        }
    }

    fn should_warn(&mut self, from: SocketAddr, now: Instant) -> bool {
        if self.warned.len() > 1024 {
            self.warned.clear();
        }
        match self.warned.get(&from) {
            Some(t) if now.saturating_duration_since(*t) < WARN_EVERY => false,
            _ => {
                self.warned.insert(from, now);
                true
            }
        }
    }

    /// Marks agents silent past their deadline dead; returns whether the answers may have changed.
    /// Reports already received are applied first: a control loop that fell behind must not take its
    /// own backlog for the agents' silence.
    pub fn expire(&mut self, registry: &mut Registry, now: Instant) -> bool {
        // At most the queue's capacity: what was queued when we started is applied, and a flood that
        // keeps coming cannot hold the expiry back.
        let mut changed = false;
        let mut applied = 0;
        while applied < EVENT_QUEUE {
            let mut batch = Vec::new();
            self.fill(&mut batch);
            if batch.is_empty() {
                break;
            }
            applied += batch.len();
            changed |= self.handle(batch, registry, now);
        }
        let dead = self.book.expire(now);
        for agent in &dead {
            info!(%agent, "agent missed its reports: its backends are out");
            changed |= registry.agent_dead(agent);
        }
        changed
    }

    /// Each agent for the metrics; report times on the wall clock.
    fn agent_rows(&self) -> Vec<AgentRow> {
        let (now, wall) = (Instant::now(), unix_ms() as f64 / 1000.0);
        self.book
            .agents()
            .map(|(id, a)| AgentRow {
                id: id.clone(),
                state: a.life.as_str(),
                last_report: wall - now.saturating_duration_since(a.last_report).as_secs_f64(),
                backends: a.backends,
            })
            .collect()
    }

    /// Shows the node's counters and a snapshot of the book at `/metrics`. Called from the control
    /// loop's one-second tick, not per report: a snapshot walks every agent.
    pub fn update_metrics(&self) {
        let source = GossipSource {
            node: self.stats.clone(),
            book: Some(BookView {
                reports: self.book.counts.iter().map(|(k, v)| (*k, *v)).collect(),
                agents: self.agent_rows(),
            }),
        };
        if let Ok(mut slot) = self.metrics.sources.gossip.lock() {
            *slot = Some(source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::Secret,
        gossip::wire::{BackendReport, REPORT_VERSION, Report, Signals, Status},
        overwatch::agents::Life,
    };

    const TOKEN: &str = "app-token-0123456789";

    fn report(seq: u64) -> Event {
        let now = unix_ms();
        let r = Report {
            version: REPORT_VERSION,
            agent_id: "a1".into(),
            started_ms: now - 1000,
            sent_ms: now,
            seq,
            interval_ms: 300,
            missed_threshold: 3,
            token: Secret::new(TOKEN),
            region: None,
            leaving: false,
            backends: vec![BackendReport {
                service: "app.example.com".into(),
                address: "192.0.2.1".parse().unwrap(),
                port: 80,
                weight: 100,
                status: Status::Healthy,
                reason: String::new(),
            }],
            signals: Signals::default(),
        };
        Event::Report {
            payload: r.encode(),
            sender_epoch: 7,
            from: "127.0.0.1:40000".parse().unwrap(),
        }
    }

    fn life(g: &Gossip) -> Life {
        g.book.agents().next().map(|(_, a)| a.life).unwrap()
    }

    /// The control loop can fall behind (a slow publish, a loaded machine): a report that arrived
    /// before the agent's deadline, but still waits in the queue when the deadline is judged, keeps the
    /// agent alive.
    #[test]
    fn reports_queued_when_a_deadline_passes_are_applied_before_it_is_judged() {
        let cfg = Config::from_yaml_str(&format!(
            "dns: {{ zones: [example.com] }}\n\
             overwatch: {{ agent_tokens: {{ app.example.com: \"{TOKEN}\" }} }}\n\
             domains: [{{ name: app.example.com }}]\n"
        ))
        .unwrap();
        let (tx, events) = mpsc::channel(EVENT_QUEUE);
        let book = AgentBook::new(
            &cfg.overwatch.agent_tokens,
            &cfg.overwatch.data_dir,
            services(&cfg),
        );
        let mut g = Gossip {
            stats: Arc::default(),
            events,
            book,
            metrics: Arc::new(Metrics::new()),
            warned: HashMap::new(),
        };
        let mut registry = Registry::from_config(&cfg);
        let t0 = Instant::now();
        assert!(g.handle(vec![report(1)], &mut registry, t0));
        assert_eq!(life(&g), Life::Alive);

        tx.try_send(report(2)).unwrap();
        let behind = t0 + Duration::from_secs(2);
        assert!(!g.expire(&mut registry, behind), "nothing changes");
        assert_eq!(life(&g), Life::Alive, "the queued report counts");

        // Silent after that: dead at its deadline (3 × 300 ms).
        assert!(g.expire(&mut registry, behind + Duration::from_secs(1)));
        assert_eq!(life(&g), Life::Dead);
    }
}
