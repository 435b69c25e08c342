//! Gossip events to registry changes: the book of agents judges each report, leave and SWIM death, and
//! what it accepts is applied to the registry. No I/O: events and clocks come in as arguments.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    time::{Duration, Instant},
};

use ipnet::IpNet;
use tracing::{info, warn};

use super::agents::{Accepted, AckDue, AgentBook, Arrival, Refusal};
use crate::api::{BookView, MemberRow};
use crate::{
    config::Config,
    gossip::{member::Role, node::Event},
    name::DnsName,
    registry::Registry,
    routing::learned::LearnedLatency,
    store::Location,
};

/// Members the view keeps at most; past it, those down are forgotten.
const MAX_MEMBERS: usize = 4096;

/// A refused report is logged at most this often per sender, so a misbehaving agent cannot flood the log.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The book of agents, and when each refused sender was last logged.
pub(super) struct Reports {
    book: AgentBook,
    warned: HashMap<SocketAddr, Instant>,
    /// Every member SWIM told of, by name and address, and whether it is up.
    members: BTreeMap<(String, SocketAddr), (Role, bool)>,
    /// Reports applied since the last publish, by sender: one ack each, the latest report's, goes out
    /// after the publish.
    acks: HashMap<SocketAddr, AckDue>,
}

fn services(cfg: &Config) -> impl Iterator<Item = DnsName> + '_ {
    cfg.domains.iter().map(|d| d.name.clone())
}

impl Reports {
    /// The book a config describes, when it has a gossip key; without one gossip is off, as in the
    /// original, and no agent can report.
    pub fn new(cfg: &Config) -> Option<Self> {
        if cfg.overwatch.gossip.key_ring().is_empty() {
            return None;
        }
        if cfg.overwatch.agent_tokens.is_empty() {
            warn!(
                data_dir = %cfg.overwatch.data_dir.display(),
                "overwatch.agent_tokens is empty: the first token seen for each service is pinned (trust on first use)"
            );
        }
        let book = AgentBook::new(
            &cfg.overwatch.agent_tokens,
            Location::of(&cfg.overwatch),
            services(cfg),
        );
        Some(Self {
            book,
            warned: HashMap::new(),
            members: BTreeMap::new(),
            acks: HashMap::new(),
        })
    }

    /// When the next agent goes dead if it stays silent.
    pub fn deadline(&self) -> Option<Instant> {
        self.book.next_deadline()
    }

    /// Takes a reloaded config's tokens and services.
    pub fn reload(&mut self, cfg: &Config) {
        self.book.reload(
            &cfg.overwatch.agent_tokens,
            Location::of(&cfg.overwatch),
            services(cfg),
        );
    }

    /// A pin another overwatch sharing the store made (`Some`) or removed (`None`).
    pub fn pin_stored(&mut self, service: &DnsName, digest: Option<[u8; 32]>) {
        self.book.pin_stored(service, digest);
    }

    /// The book as the metrics show it.
    pub fn view(&self, now: Instant, wall_ms: u64) -> BookView {
        let mut view = self.book.view(now, wall_ms);
        view.members = self
            .members
            .iter()
            .map(|((name, addr), (role, up))| MemberRow {
                name: name.clone(),
                role: role.as_str(),
                addr: *addr,
                up: *up,
            })
            .collect();
        view
    }

    /// The reports applied since the last call, to acknowledge now that their table is published.
    pub fn take_acks(&mut self) -> Vec<AckDue> {
        self.acks.drain().map(|(_, a)| a).collect()
    }

    /// The book itself, for tests that look at agents' lives.
    #[cfg(test)]
    pub fn book(&self) -> &AgentBook {
        &self.book
    }

    /// Applies events to the registry, and agents' learned latency to `learned`; returns whether the
    /// answers may have changed (learned latency changes no table: the DNS path reads it per query).
    pub fn handle(
        &mut self,
        events: Vec<Event>,
        registry: &mut Registry,
        learned: &LearnedLatency,
        now: Instant,
        wall_ms: u64,
    ) -> bool {
        let mut changed = false;
        for event in events {
            if let Event::Latency { payload, from } = event {
                self.learn(&payload, from, learned, now, wall_ms);
            } else {
                changed |= self.apply(event, registry, now, wall_ms);
            }
        }
        changed
    }

    /// One agent's learned latency to one backend, into the table, by the backend's address.
    fn learn(
        &mut self,
        payload: &[u8],
        from: SocketAddr,
        learned: &LearnedLatency,
        now: Instant,
        wall_ms: u64,
    ) {
        match self.book.on_latency(payload, wall_ms) {
            Ok(report) => learned.write(|t| {
                for s in &report.subnets {
                    // The wire check bounded the prefix by the family.
                    if let Ok(net) = IpNet::new(s.network, s.prefix_len) {
                        let rtt = Duration::from_micros(u64::from(s.rtt_us));
                        t.observe(
                            net,
                            report.address.to_canonical(),
                            rtt,
                            u64::from(s.samples),
                            now,
                        );
                    }
                }
            }),
            Err(refusal) => {
                if self.should_warn(from, now) {
                    warn!(%from, why = ?refusal, "learned-latency report refused (further refusals from this sender are counted, and logged at most every 10 s)");
                }
            }
        }
    }

    fn apply(&mut self, event: Event, registry: &mut Registry, now: Instant, wall_ms: u64) -> bool {
        match &event {
            Event::MemberUp(m) | Event::MemberDown(m) => {
                // Bounded like SWIM's own list: a member down this long is forgotten there too.
                if self.members.len() >= MAX_MEMBERS {
                    self.members.retain(|_, (_, up)| *up);
                }
                let up = matches!(event, Event::MemberUp(_));
                self.members.insert((m.name.clone(), m.addr), (m.role, up));
            }
            Event::Report { .. } | Event::Latency { .. } | Event::Ack { .. } => {}
        }
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
                let result = self.book.on_report(arrival);
                if let Some(due) = self.book.take_applied() {
                    // Bounded by the book: at most one pending ack per sender of an applied report.
                    self.acks.insert(due.to, due);
                }
                match result {
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
            // An overwatch reports to no one, so its node passes on no acks.
            Event::MemberUp(_)
            | Event::MemberDown(_)
            | Event::Ack { .. }
            | Event::Latency { .. } => false,
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
    pub fn expire(&mut self, registry: &mut Registry, now: Instant) -> bool {
        let mut changed = false;
        for agent in self.book.expire(now) {
            info!(%agent, "agent missed its reports: its backends are out");
            changed |= registry.agent_dead(&agent);
        }
        changed
    }
}
