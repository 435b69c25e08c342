//! The overwatch's side of gossip: its node, and the book that turns agents' reports, leaves and
//! deaths into registry changes.

use std::{sync::Arc, time::Instant};

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use super::agents::{Accepted, AgentBook, Refusal};
use crate::{
    config::Config,
    gossip::{
        member::Role,
        node::{Event, Node, NodeConfig},
    },
    metrics::{GossipSource, Metrics},
    registry::Registry,
};

/// The running gossip receiver.
pub(super) struct Gossip {
    node: Node,
    events: mpsc::Receiver<Event>,
    book: AgentBook,
    metrics: Arc<Metrics>,
}

/// This host's name, the default node id.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
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
        let keys: Vec<[u8; 32]> = g.key_ring().iter().map(|k| *k.as_bytes()).collect();
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
        let book = AgentBook::new(&cfg.overwatch.agent_tokens, &cfg.overwatch.data_dir);
        if cfg.overwatch.agent_tokens.is_empty() {
            warn!(
                data_dir = %cfg.overwatch.data_dir.display(),
                "overwatch.agent_tokens is empty: the first token seen for each service is pinned (trust on first use)"
            );
        }
        let gossip = Self {
            node,
            events,
            book,
            metrics,
        };
        gossip.update_metrics();
        Ok(Some(gossip))
    }

    /// The next event; pending forever once the node is gone.
    pub async fn next(&mut self) -> Event {
        match self.events.recv().await {
            Some(e) => e,
            None => std::future::pending().await,
        }
    }

    /// When the next agent goes dead if it stays silent.
    pub fn deadline(&self) -> Option<Instant> {
        self.book.next_deadline()
    }

    /// Takes a reloaded config's tokens.
    pub fn reload(&mut self, cfg: &Config) {
        self.book
            .reload_tokens(&cfg.overwatch.agent_tokens, &cfg.overwatch.data_dir);
    }

    /// Applies one event to the registry; returns whether the answers may have changed.
    pub fn handle(&mut self, event: Event, registry: &mut Registry, now: Instant) -> bool {
        let changed = match event {
            Event::Report { payload, from, .. } => {
                match self.book.on_report(&payload, from, now) {
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
                    Err(Refusal::Stale) => false,
                    Err(refusal) => {
                        // The datagram opened under the shared key: a misconfigured or hostile agent.
                        warn!(%from, why = ?refusal, "agent report refused");
                        false
                    }
                }
            }
            Event::MemberDown(m) if m.role == Role::Agent => {
                if self.book.member_down(&m.name) {
                    info!(agent = %m.name, "SWIM declared the agent down: its backends are out");
                    registry.agent_dead(&m.name)
                } else {
                    false
                }
            }
            Event::MemberUp(_) | Event::MemberDown(_) => false,
        };
        self.update_metrics();
        changed
    }

    /// Marks agents silent past their deadline dead; returns whether the answers may have changed.
    pub fn expire(&mut self, registry: &mut Registry, now: Instant) -> bool {
        let dead = self.book.expire(now);
        let mut changed = false;
        for agent in &dead {
            info!(%agent, "agent missed its reports: its backends are out");
            changed |= registry.agent_dead(agent);
        }
        if !dead.is_empty() {
            self.update_metrics();
        }
        changed
    }

    fn update_metrics(&self) {
        let source = GossipSource {
            node: self.node.stats.clone(),
            reports: self.book.counts.iter().map(|(k, v)| (*k, *v)).collect(),
            agents: self
                .book
                .by_life()
                .iter()
                .map(|(l, n)| (l.as_str(), *n))
                .collect(),
        };
        if let Ok(mut slot) = self.metrics.sources.gossip.lock() {
            *slot = Some(source);
        }
    }
}
