//! The overwatch's gossip node, as the control loop's shell sees it: a source of event batches. What
//! the events do is [`super::reports`]'s.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::info;

use crate::{
    config::Config,
    gossip::{
        member::{Role, hostname},
        node::{EVENT_QUEUE, Event, Node, NodeConfig, NodeStats},
    },
};

/// Events handled before one publish: a burst (agents arriving after a restart) costs one publish.
const BATCH: usize = 256;

/// The running node's events and counters; the node itself runs on the tracker until the token is
/// cancelled.
pub(super) struct Gossip {
    /// The node's counters, for the metrics.
    pub stats: Arc<NodeStats>,
    /// The node, to send acks through.
    pub node: Option<Node>,
    events: mpsc::Receiver<Event>,
}

impl Gossip {
    /// Starts the node when the config has a gossip key; without one gossip is off, as in the original.
    pub async fn start(
        cfg: &Config,
        tracker: &TaskTracker,
        token: CancellationToken,
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
        Ok(Some(Self {
            stats: node.stats.clone(),
            node: Some(node),
            events,
        }))
    }

    /// The next events, as many as are queued (up to a batch); pending forever once the node is gone.
    pub async fn next(&mut self) -> Vec<Event> {
        let Some(first) = self.events.recv().await else {
            return std::future::pending().await;
        };
        let mut batch = vec![first];
        self.fill(&mut batch, BATCH);
        batch
    }

    /// What is queued now, at most the queue's capacity: a deadline is judged after what had arrived
    /// when it passed, and a flood that keeps coming cannot hold it back.
    pub fn queued(&mut self) -> Vec<Event> {
        let mut batch = Vec::new();
        self.fill(&mut batch, EVENT_QUEUE);
        batch
    }

    fn fill(&mut self, batch: &mut Vec<Event>, limit: usize) {
        while batch.len() < limit {
            match self.events.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> Event {
        Event::MemberUp(crate::gossip::member::Member::new(
            Role::Agent,
            "a1".into(),
            "127.0.0.1:1".parse().unwrap(),
        ))
    }

    #[tokio::test]
    async fn batches_are_bounded_and_queued_takes_what_waits() {
        let (tx, events) = mpsc::channel(EVENT_QUEUE);
        let mut g = Gossip {
            stats: Arc::default(),
            node: None,
            events,
        };
        for _ in 0..BATCH + 3 {
            tx.try_send(up()).unwrap();
        }
        assert_eq!(g.next().await.len(), BATCH);
        assert_eq!(g.queued().len(), 3);
        assert!(g.queued().is_empty());
    }
}
