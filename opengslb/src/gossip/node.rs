//! A gossip node: one UDP socket carrying SWIM membership (foca) and agents' reports, every datagram
//! sealed. Agents and overwatches both run one; it is driven by a Tokio task that owns the socket, the
//! foca instance and its timers, and talks to the rest of the process through channels.

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    num::{NonZeroU32, NonZeroUsize},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use foca::{AccumulatingRuntime, Foca, NoCustomBroadcast, OwnedNotification, PostcardCodec, Timer};
use rand::rngs::StdRng;
use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot, watch},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, info, warn};

use super::{
    member::{Member, Role},
    seal::{DropCounts, MAX_DATAGRAM, Opener, SealError, Sealer},
    wire::{KIND_ACK, KIND_LATENCY, KIND_REPORT, KIND_SWIM},
};
use crate::config::{GossipKey, NodeAddress};

/// How often an agent re-announces itself to its seeds: at once while it knows no overwatch (the
/// original gave up after one try), and at this pace afterwards so a restarted overwatch learns it again.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);

/// How often seed names are looked up again (IP literals never are).
const RESOLVE_EVERY: Duration = Duration::from_secs(5);

/// How to run a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Agent or overwatch.
    pub role: Role,
    /// The agent id or overwatch node id.
    pub name: String,
    /// Where to bind the UDP socket.
    pub bind: SocketAddr,
    /// The address peers reach this node at (with the bound port); `None`: derived from `bind` and the
    /// first seed.
    pub advertise: Option<IpAddr>,
    /// Overwatches to announce to (agents): retried until one answers, and now and then afterwards.
    pub seeds: Vec<NodeAddress>,
    /// The key ring: the first key seals, all open.
    pub keys: Vec<GossipKey>,
    /// SWIM probe period.
    pub probe_interval: Duration,
    /// SWIM probe round-trip allowance.
    pub probe_timeout: Duration,
    /// Time between gossip rounds.
    pub gossip_interval: Duration,
}

/// Events the node queues for its owner; past this they are dropped and counted (`queue_full`).
pub const EVENT_QUEUE: usize = 4096;

/// How long SWIM remembers a member it declared down. Agents restart on a new port, so each restart
/// leaves one down member behind; foca's default (a day) would let them pile up.
const REMOVE_DOWN_AFTER: Duration = Duration::from_secs(120);

/// What a node tells its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A report payload opened (still to be decoded and authenticated).
    Report {
        /// The payload.
        payload: Vec<u8>,
        /// The sending process's epoch (a new one after every restart).
        sender_epoch: u64,
        /// Where it came from.
        from: SocketAddr,
    },
    /// An agent's learned-latency payload opened (still to be decoded and authenticated).
    Latency {
        /// The payload.
        payload: Vec<u8>,
        /// Where it came from.
        from: SocketAddr,
    },
    /// An overwatch's ack payload opened (still to be decoded), from one of this node's seeds.
    Ack {
        /// The payload.
        payload: Vec<u8>,
        /// Which overwatch sent it.
        from: SocketAddr,
    },
    /// SWIM says a member is up.
    MemberUp(Member),
    /// SWIM says a member is down (failed, or left).
    MemberDown(Member),
}

/// Counters of a node, shared with the metrics.
#[derive(Debug, Default)]
pub struct NodeStats {
    /// Datagrams received (before opening).
    pub received: AtomicU64,
    /// Datagrams sent.
    pub sent: AtomicU64,
    /// Of those, reports (one per overwatch a report goes to).
    pub reports_sent: AtomicU64,
    /// Opened datagrams of an unknown kind.
    pub unknown_kind: AtomicU64,
    /// Opened SWIM datagrams foca refused.
    pub bad_swim: AtomicU64,
    /// Opened acks from an address this node does not report to.
    pub stray_ack: AtomicU64,
    /// Opened acks that do not decode (the owner counts them).
    pub bad_ack: AtomicU64,
    /// Events dropped because the owner was not keeping up.
    pub queue_full: AtomicU64,
    /// Sends that failed.
    pub send_errors: AtomicU64,
    /// Datagrams that did not open, by reason (copied from the opener).
    pub seal_drops: std::sync::Mutex<DropCounts>,
}

impl NodeStats {
    /// Datagrams dropped before reaching foca or the owner, by reason, for the metrics.
    pub fn drops(&self) -> Vec<(&'static str, u64)> {
        let seal = self.seal_drops.lock().map(|d| *d).unwrap_or_default();
        let mut out: Vec<(&'static str, u64)> = seal.by_reason().to_vec();
        out.push(("unknown_kind", self.unknown_kind.load(Ordering::Relaxed)));
        out.push(("bad_swim", self.bad_swim.load(Ordering::Relaxed)));
        out.push(("stray_ack", self.stray_ack.load(Ordering::Relaxed)));
        out.push(("bad_ack", self.bad_ack.load(Ordering::Relaxed)));
        out.push(("queue_full", self.queue_full.load(Ordering::Relaxed)));
        out
    }
}

/// Why [`Node::set_keys`] refused a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    /// The ring is empty: there would be nothing to seal with.
    #[error("the gossip key ring is empty")]
    Empty,
    /// The node has stopped.
    #[error("the gossip node has stopped")]
    Stopped,
}

enum Command {
    /// A payload of this kind for every overwatch: a report, or learned latency.
    Report(u8, Vec<u8>),
    Ack(SocketAddr, Vec<u8>),
    Leave(oneshot::Sender<()>),
}

/// The owner's handle on a running node.
#[derive(Clone, Debug)]
pub struct Node {
    commands: mpsc::Sender<Command>,
    /// The key ring; a new value is applied by the node's task (a watch, not a command, so that setting
    /// it never waits or fails on a full queue, and only the latest ring counts).
    keys: Arc<watch::Sender<Vec<GossipKey>>>,
    seeds: watch::Receiver<Vec<SocketAddr>>,
    overwatches: watch::Receiver<BTreeSet<SocketAddr>>,
    /// The node's counters.
    pub stats: Arc<NodeStats>,
    /// The address peers reach this node at.
    pub advertised: SocketAddr,
}

impl Node {
    /// Binds the socket and starts the node on `tracker`. Events arrive on the returned receiver.
    pub async fn start(
        cfg: NodeConfig,
        tracker: &TaskTracker,
        token: CancellationToken,
    ) -> anyhow::Result<(Self, mpsc::Receiver<Event>)> {
        use anyhow::Context as _;
        let socket = UdpSocket::bind(cfg.bind)
            .await
            .with_context(|| format!("cannot bind the gossip socket to {}", cfg.bind))?;
        let bound = socket.local_addr()?;
        let seeds = spawn_resolver(cfg.seeds.clone(), tracker, token.clone()).await;
        let advertised = match cfg.advertise {
            Some(ip) => SocketAddr::new(ip, bound.port()),
            None => super::member::advertised(bound, seeds.borrow().first().copied()),
        };
        let ring: Vec<[u8; 32]> = cfg.keys.iter().map(|k| *k.as_bytes()).collect();
        let sealer = Sealer::new(&ring).context("gossip sealer")?;
        let opener = Opener::new(&ring).context("gossip opener")?;
        let me = Member::new(cfg.role, cfg.name.clone(), advertised);
        let mut swim = foca::Config::new_lan(NonZeroU32::new(64).unwrap_or(NonZeroU32::MIN));
        swim.probe_period = cfg.probe_interval;
        swim.probe_rtt = cfg.probe_timeout;
        if let Some(g) = swim.periodic_gossip.as_mut() {
            g.frequency = cfg.gossip_interval;
        }
        // Room for the seal's header, inner prefix and tag within an Ethernet MTU.
        swim.max_packet_size = NonZeroUsize::new(1400).unwrap_or(NonZeroUsize::MIN);
        swim.remove_down_after = Some(REMOVE_DOWN_AFTER);
        let rng: StdRng = rand::make_rng();
        let foca = Foca::new(me, swim, rng, PostcardCodec);
        let (cmd_tx, cmd_rx) = mpsc::channel(256);
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
        let (ow_tx, ow_rx) = watch::channel(BTreeSet::new());
        let (timer_tx, timer_rx) = mpsc::channel(1024);
        let (keys_tx, keys_rx) = watch::channel(cfg.keys.clone());
        let stats = Arc::new(NodeStats::default());
        info!(role = cfg.role.as_str(), name = %cfg.name, bind = %bound, advertised = %advertised, "gossip node up");
        let task = Task {
            socket,
            sealer,
            opener,
            foca,
            runtime: AccumulatingRuntime::new(),
            seeds: seeds.clone(),
            events: ev_tx,
            overwatches: ow_tx,
            timers: timer_tx,
            stats: stats.clone(),
            tracker: tracker.clone(),
            token: token.clone(),
            left: false,
        };
        tracker.spawn(task.run(cmd_rx, timer_rx, keys_rx));
        Ok((
            Self {
                commands: cmd_tx,
                keys: Arc::new(keys_tx),
                seeds,
                overwatches: ow_rx,
                stats,
                advertised,
            },
            ev_rx,
        ))
    }

    /// Sends a report payload, sealed, to the configured overwatches (the seeds). Never blocks: when the
    /// node is behind, the report is dropped (the next one follows within an interval).
    pub fn send_report(&self, payload: Vec<u8>) {
        if self
            .commands
            .try_send(Command::Report(KIND_REPORT, payload))
            .is_err()
        {
            self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends a learned-latency payload, sealed, to the configured overwatches, as [`Node::send_report`]
    /// does (and dropped like one when the node is behind: the next period's replaces it).
    pub fn send_latency(&self, payload: Vec<u8>) {
        if self
            .commands
            .try_send(Command::Report(KIND_LATENCY, payload))
            .is_err()
        {
            self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends an ack payload, sealed, to the agent at `to`. Never blocks: when the node is behind, the ack
    /// is dropped (the agent's next report brings another).
    pub fn send_ack(&self, to: SocketAddr, payload: Vec<u8>) {
        if self.commands.try_send(Command::Ack(to, payload)).is_err() {
            self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Replaces the key ring of the running node: the first key seals from the next datagram on, every
    /// key opens. Membership, timers and replay windows stay, so a rotation loses nothing. The node
    /// applies it between two datagrams, at once.
    pub fn set_keys(&self, keys: &[GossipKey]) -> Result<(), KeysError> {
        if keys.is_empty() {
            return Err(KeysError::Empty);
        }
        self.keys
            .send(keys.to_vec())
            .map_err(|_| KeysError::Stopped)
    }

    /// Leaves the cluster: tells the members, then returns (within a second at most).
    pub async fn leave(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Leave(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), rx).await;
        }
    }

    /// The overwatches this node reports to: its seeds, resolved.
    pub fn report_targets(&self) -> Vec<SocketAddr> {
        let mut targets = self.seeds.borrow().clone();
        targets.sort();
        targets.dedup();
        targets
    }

    /// The overwatches SWIM currently knows up, by address.
    pub fn overwatches(&self) -> BTreeSet<SocketAddr> {
        self.overwatches.borrow().clone()
    }
}

/// Keeps the seeds' addresses resolved, in a task of its own so a slow resolver never holds up the
/// node's loop (and with it the reports). IP literals need no task.
async fn spawn_resolver(
    seeds: Vec<NodeAddress>,
    tracker: &TaskTracker,
    token: CancellationToken,
) -> watch::Receiver<Vec<SocketAddr>> {
    let literal: Option<Vec<SocketAddr>> = seeds
        .iter()
        .map(|s| s.host.parse().ok().map(|ip| SocketAddr::new(ip, s.port)))
        .collect();
    if let Some(addrs) = literal {
        let (_tx, rx) = watch::channel(addrs);
        return rx;
    }
    let mut known = vec![Vec::new(); seeds.len()];
    refresh(&seeds, &mut known).await;
    let (tx, rx) = watch::channel(known.concat());
    tracker.spawn(async move {
        loop {
            tokio::select! {
                () = token.cancelled() => break,
                () = tokio::time::sleep(RESOLVE_EVERY) => {
                    refresh(&seeds, &mut known).await;
                    let all = known.concat();
                    tx.send_if_modified(|old| {
                        let changed = *old != all;
                        if changed {
                            old.clone_from(&all);
                        }
                        changed
                    });
                }
            }
        }
    });
    rx
}

/// Looks every seed up again. Each keeps its last good addresses: one failed lookup must not stop its
/// reports.
async fn refresh(seeds: &[NodeAddress], known: &mut [Vec<SocketAddr>]) {
    for (seed, last) in seeds.iter().zip(known) {
        match tokio::net::lookup_host((seed.host.as_str(), seed.port)).await {
            Ok(addrs) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                if !addrs.is_empty() {
                    *last = addrs;
                }
            }
            Err(e) => debug!(seed = %seed, error = %e, "cannot resolve a gossip seed yet"),
        }
    }
}

type Swim = Foca<Member, PostcardCodec, StdRng, NoCustomBroadcast>;

struct Task {
    socket: UdpSocket,
    sealer: Sealer,
    opener: Opener,
    foca: Swim,
    runtime: AccumulatingRuntime<Member>,
    /// The overwatches this node reports to: the configured seeds, resolved. Only they get reports (which
    /// carry the service token): a member that merely claims to be an overwatch gets none.
    seeds: watch::Receiver<Vec<SocketAddr>>,
    events: mpsc::Sender<Event>,
    /// The overwatches SWIM knows up, by address.
    overwatches: watch::Sender<BTreeSet<SocketAddr>>,
    timers: mpsc::Sender<Timer<Member>>,
    stats: Arc<NodeStats>,
    tracker: TaskTracker,
    token: CancellationToken,
    /// Set once this node left: being declared down is then expected, not a reason to rejoin.
    left: bool,
}

impl Task {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut timers: mpsc::Receiver<Timer<Member>>,
        mut keys: watch::Receiver<Vec<GossipKey>>,
    ) {
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let mut announce = tokio::time::interval(ANNOUNCE_EVERY);
        announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.token.cancelled() => break,
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => self.receive(&buf[..len], from).await,
                    Err(e) => debug!(error = %e, "gossip receive failed"),
                },
                Ok(()) = keys.changed() => {
                    let ring = keys.borrow_and_update().clone();
                    self.set_ring(&ring);
                }
                Some(timer) = timers.recv() => {
                    if let Err(e) = self.foca.handle_timer(timer, &mut self.runtime) {
                        debug!(error = %e, "foca timer");
                    }
                    self.drain().await;
                }
                Some(cmd) = commands.recv() => match cmd {
                    Command::Report(kind, payload) => {
                        let datagram = self.sealer.seal(kind, &payload);
                        let targets: BTreeSet<SocketAddr> =
                            self.seeds.borrow().iter().copied().collect();
                        for to in targets {
                            if self.send(&datagram, to).await && kind == KIND_REPORT {
                                self.stats.reports_sent.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Command::Ack(to, payload) => {
                        let datagram = self.sealer.seal(KIND_ACK, &payload);
                        self.send(&datagram, to).await;
                    }
                    Command::Leave(done) => {
                        self.left = true;
                        if let Err(e) = self.foca.leave_cluster(&mut self.runtime) {
                            debug!(error = %e, "foca leave");
                        }
                        self.drain().await;
                        let _ = done.send(());
                    }
                },
                _ = announce.tick() => {
                    let seeds = self.seeds.borrow().clone();
                    for addr in seeds {
                        let seed = Member {
                            role: Role::Overwatch,
                            name: String::new(),
                            addr,
                            incarnation: 0,
                        };
                        if let Err(e) = self.foca.announce(seed, &mut self.runtime) {
                            debug!(error = %e, "foca announce");
                        }
                    }
                    self.drain().await;
                    // Once an overwatch answered, re-announce only now and then; when none is left
                    // (all restarted, or the network was cut), eagerly again.
                    let period = if self.overwatches.borrow().is_empty() {
                        ANNOUNCE_EVERY
                    } else {
                        ANNOUNCE_EVERY * 10
                    };
                    if announce.period() != period {
                        announce = tokio::time::interval(period);
                        announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        announce.reset();
                    }
                }
            }
        }
    }

    fn set_ring(&mut self, ring: &[GossipKey]) {
        let bytes: Vec<[u8; 32]> = ring.iter().map(|k| *k.as_bytes()).collect();
        // Node::set_keys refuses an empty ring, the only way either can fail; both or neither change.
        match (self.sealer.set_ring(&bytes), self.opener.set_ring(&bytes)) {
            (Ok(()), Ok(())) => {
                info!(
                    keys = ring.len(),
                    "gossip key ring replaced: the first key seals, every key opens"
                )
            }
            (a, b) => warn!(error = ?a.err().or(b.err()), "gossip key ring not replaced"),
        }
    }

    async fn receive(&mut self, datagram: &[u8], from: SocketAddr) {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let opened = self.opener.open(datagram);
        let opened = match opened {
            Ok(o) => o,
            Err(e) => {
                self.note_drop(e, from);
                return;
            }
        };
        match opened.kind {
            KIND_SWIM => {
                if let Err(e) = self.foca.handle_data(&opened.payload, &mut self.runtime) {
                    self.stats.bad_swim.fetch_add(1, Ordering::Relaxed);
                    debug!(%from, error = %e, "SWIM datagram refused");
                }
                self.drain().await;
            }
            KIND_REPORT => self.emit(Event::Report {
                payload: opened.payload,
                sender_epoch: opened.sender_epoch,
                from,
            }),
            KIND_LATENCY => self.emit(Event::Latency {
                payload: opened.payload,
                from,
            }),
            // Only the overwatches this node reports to can acknowledge its reports; the check is by
            // address, as reports go to those addresses.
            // A dual-stack socket sees IPv4 peers as mapped IPv6 addresses; seeds are plain ones.
            KIND_ACK
                if self
                    .seeds
                    .borrow()
                    .contains(&SocketAddr::new(from.ip().to_canonical(), from.port())) =>
            {
                self.emit(Event::Ack {
                    payload: opened.payload,
                    from: SocketAddr::new(from.ip().to_canonical(), from.port()),
                });
            }
            KIND_ACK => {
                self.stats.stray_ack.fetch_add(1, Ordering::Relaxed);
                debug!(%from, "ack from an address this node does not report to dropped");
            }
            kind => {
                self.stats.unknown_kind.fetch_add(1, Ordering::Relaxed);
                debug!(%from, kind, "gossip datagram of an unknown kind dropped");
            }
        }
    }

    fn note_drop(&self, error: SealError, from: SocketAddr) {
        if let Ok(mut d) = self.stats.seal_drops.lock() {
            *d = self.opener.drops();
        }
        // Forged or foreign traffic can be a flood: one line per datagram only at debug level.
        debug!(%from, %error, "gossip datagram dropped");
    }

    fn emit(&self, event: Event) {
        if self.events.try_send(event).is_err() {
            self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends one datagram; whether it went.
    async fn send(&self, datagram: &[u8], to: SocketAddr) -> bool {
        match self.socket.send_to(datagram, to).await {
            Ok(_) => {
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(e) => {
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                debug!(%to, error = %e, "gossip send failed");
                false
            }
        }
    }

    /// Carries out what foca asked for: sends, timers, and membership changes.
    async fn drain(&mut self) {
        while let Some((to, data)) = self.runtime.to_send() {
            let datagram = self.sealer.seal(KIND_SWIM, &data);
            self.send(&datagram, to.addr).await;
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            let tx = self.timers.clone();
            let token = self.token.clone();
            self.tracker.spawn(async move {
                tokio::select! {
                    () = token.cancelled() => {}
                    () = tokio::time::sleep(after) => { let _ = tx.send(timer).await; }
                }
            });
        }
        while let Some(n) = self.runtime.to_notify() {
            match n {
                OwnedNotification::MemberUp(m) => {
                    info!(role = m.role.as_str(), name = %m.name, addr = %m.addr, "member up");
                    if m.role == Role::Overwatch {
                        self.overwatches.send_if_modified(|set| set.insert(m.addr));
                    }
                    self.emit(Event::MemberUp(m));
                }
                OwnedNotification::MemberDown(m) => {
                    info!(role = m.role.as_str(), name = %m.name, addr = %m.addr, "member down");
                    if m.role == Role::Overwatch {
                        self.overwatches.send_if_modified(|set| set.remove(&m.addr));
                    }
                    self.emit(Event::MemberDown(m));
                }
                OwnedNotification::Defunct if !self.left => {
                    warn!("this node was declared down by the cluster; rejoining");
                }
                other => debug!(notification = ?other, "foca"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(role: Role, name: &str, key: u8, seeds: Vec<NodeAddress>) -> NodeConfig {
        NodeConfig {
            role,
            name: name.into(),
            bind: "127.0.0.1:0".parse().unwrap(),
            advertise: None,
            seeds,
            keys: vec![GossipKey::from_bytes([key; 32])],
            probe_interval: Duration::from_millis(200),
            probe_timeout: Duration::from_millis(100),
            gossip_interval: Duration::from_millis(50),
        }
    }

    /// An overwatch under key `ow_key`, and an agent seeded with it under `agent_key`.
    struct Pair {
        ow: Node,
        ow_events: mpsc::Receiver<Event>,
        agent: Node,
        _agent_events: mpsc::Receiver<Event>,
        tracker: TaskTracker,
        token: CancellationToken,
    }

    impl Pair {
        async fn start(ow_key: u8, agent_key: u8) -> Self {
            let tracker = TaskTracker::new();
            let token = CancellationToken::new();
            let ow_cfg = config(Role::Overwatch, "ow", ow_key, vec![]);
            let (ow, ow_events) = Node::start(ow_cfg, &tracker, token.clone()).await.unwrap();
            let seed = NodeAddress {
                host: "127.0.0.1".into(),
                port: ow.advertised.port(),
            };
            let agent_cfg = config(Role::Agent, "a", agent_key, vec![seed]);
            let (agent, agent_events) = Node::start(agent_cfg, &tracker, token.clone())
                .await
                .unwrap();
            Self {
                ow,
                ow_events,
                agent,
                _agent_events: agent_events,
                tracker,
                token,
            }
        }

        /// The next report the overwatch gets, within 10 s (generous: waiting costs time only on failure).
        async fn next_report(&mut self) -> Option<Vec<u8>> {
            loop {
                match tokio::time::timeout(Duration::from_secs(10), self.ow_events.recv()).await {
                    Ok(Some(Event::Report { payload, .. })) => return Some(payload),
                    Ok(Some(_)) => {}
                    _ => return None,
                }
            }
        }

        async fn stop(self) {
            self.token.cancel();
            self.tracker.close();
            self.tracker.wait().await;
        }
    }

    #[tokio::test]
    async fn an_agent_finds_its_overwatch_and_reports_reach_it() {
        let mut p = Pair::start(7, 7).await;
        // SWIM: the agent learns the overwatch as a member (generous bound: waiting costs time only on
        // failure).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while p.agent.overwatches().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(p.agent.overwatches(), BTreeSet::from([p.ow.advertised]));
        p.agent.send_report(b"hello".to_vec());
        assert_eq!(p.next_report().await.as_deref(), Some(&b"hello"[..]));
        p.stop().await;
    }

    #[tokio::test]
    async fn a_member_that_only_claims_to_be_an_overwatch_gets_no_report() {
        let mut p = Pair::start(7, 7).await;
        // An impostor with the key joins through the agent, calling itself an overwatch.
        let seed = NodeAddress {
            host: "127.0.0.1".into(),
            port: p.agent.advertised.port(),
        };
        let impostor_cfg = config(Role::Overwatch, "impostor", 7, vec![seed]);
        let (impostor, mut impostor_events) =
            Node::start(impostor_cfg, &p.tracker, p.token.clone())
                .await
                .unwrap();
        // Generous bound: waiting costs time only on failure.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !p.agent.overwatches().contains(&impostor.advertised)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            p.agent.overwatches().contains(&impostor.advertised),
            "SWIM knows it as a member"
        );
        p.agent.send_report(b"token inside".to_vec());
        assert_eq!(
            p.next_report().await.as_deref(),
            Some(&b"token inside"[..]),
            "the configured overwatch gets it"
        );
        let got = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                match impostor_events.recv().await {
                    Some(Event::Report { .. }) => return true,
                    Some(_) => {}
                    None => return false,
                }
            }
        })
        .await;
        assert!(!matches!(got, Ok(true)), "the impostor got a report");
        p.stop().await;
    }

    fn ring(keys: &[u8]) -> Vec<GossipKey> {
        keys.iter()
            .map(|k| GossipKey::from_bytes([*k; 32]))
            .collect()
    }

    #[tokio::test]
    async fn a_live_key_rotation_loses_no_report_and_shuts_out_the_old_key() {
        let mut p = Pair::start(7, 7).await;
        let drops = |n: &Node| n.stats.drops().iter().map(|(_, c)| c).sum::<u64>();
        p.agent.send_report(b"0".to_vec());
        assert_eq!(p.next_report().await.as_deref(), Some(&b"0"[..]));
        // The three steps, the overwatch first in each, with a report after every change.
        let steps: [(&[u8], &[u8]); 3] = [(&[7, 9], b"a"), (&[9, 7], b"b"), (&[9], b"c")];
        for (keys, tag) in steps {
            for node in [p.ow.clone(), p.agent.clone()] {
                node.set_keys(&ring(keys)).unwrap();
                // The ring is applied by the node's task; a report sent now may still use the old
                // one, which every ring of this step opens.
                p.agent.send_report(tag.to_vec());
                assert_eq!(p.next_report().await.as_deref(), Some(tag));
            }
        }
        assert_eq!(drops(&p.ow), 0, "{:?}", p.ow.stats.drops());
        assert_eq!(drops(&p.agent), 0, "{:?}", p.agent.stats.drops());
        assert_eq!(p.ow.set_keys(&[]), Err(KeysError::Empty));
        // A node still on the old key is shut out and counted.
        let seed = NodeAddress {
            host: "127.0.0.1".into(),
            port: p.ow.advertised.port(),
        };
        let stale_cfg = config(Role::Agent, "stale", 7, vec![seed]);
        let (stale, _stale_events) = Node::start(stale_cfg, &p.tracker, p.token.clone())
            .await
            .unwrap();
        stale.send_report(b"stale".to_vec());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while drops(&p.ow) == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(drops(&p.ow) >= 1, "{:?}", p.ow.stats.drops());
        assert_eq!(
            drops(&p.ow),
            p.ow.stats.seal_drops.lock().unwrap().no_key_opens
        );
        p.agent.send_report(b"after".to_vec());
        assert_eq!(p.next_report().await.as_deref(), Some(&b"after"[..]));
        p.stop().await;
    }

    #[tokio::test]
    async fn cut_oversized_replayed_reordered_and_foreign_datagrams_on_the_wire() {
        use super::super::seal::{MAX_PAYLOAD, Sealer};
        let tracker = TaskTracker::new();
        let token = CancellationToken::new();
        let (ow, mut events) = Node::start(
            config(Role::Overwatch, "ow", 7, vec![]),
            &tracker,
            token.clone(),
        )
        .await
        .unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = ow.advertised;
        let sealer = Sealer::new(&[[7; 32]]).unwrap();
        let [d1, d2, d3] = [b"1", b"2", b"3"].map(|p| sealer.seal(KIND_REPORT, p));
        let foreign = Sealer::new(&[[8; 32]]).unwrap().seal(KIND_REPORT, b"x");
        let oversized = sealer.seal(KIND_REPORT, &vec![0; MAX_PAYLOAD + 1]);
        let sends: [&[u8]; 9] = [
            &d2,                 // reordered: the later one first...
            &d1,                 // ...and the earlier one still opens
            &d1,                 // replayed
            &d3[..d3.len() - 1], // cut by a byte: the tag does not match
            &d3[..10],           // cut short
            &oversized,          // one byte over the limit
            &vec![b'O'; 60_000], // far over it (the receive buffer only holds the limit and one)
            &foreign,            // another key
            &d3,                 // whole: its cut copies did not use up its counter
        ];
        for d in sends {
            sock.send_to(d, to).await.unwrap();
        }
        let mut got = Vec::new();
        while got.len() < 3 {
            match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
                Ok(Some(Event::Report { payload, .. })) => got.push(payload),
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        assert_eq!(got, [b"2".to_vec(), b"1".to_vec(), b"3".to_vec()]);
        let counts = |stats: &NodeStats| -> Vec<(&'static str, u64)> {
            stats.drops().into_iter().filter(|(_, n)| *n != 0).collect()
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while ow.stats.received.load(Ordering::Relaxed) < sends.len() as u64
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            counts(&ow.stats),
            [
                ("too_short", 1),
                ("too_large", 2),
                ("no_key_opens", 2),
                ("replayed", 1)
            ]
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(200), events.recv())
                .await
                .is_err(),
            "nothing else reached the owner"
        );
        token.cancel();
        tracker.close();
        tracker.wait().await;
    }

    #[tokio::test]
    async fn a_node_under_another_key_is_dropped_and_counted() {
        let mut p = Pair::start(7, 8).await;
        p.agent.send_report(b"hello".to_vec());
        // Waits until the agent's packets have reached the overwatch and been dropped there, unopened
        // (generous bound: waiting costs time only on failure).
        let no_key = |p: &Pair| {
            p.ow.stats
                .drops()
                .iter()
                .find(|(r, _)| *r == "no_key_opens")
                .map(|(_, n)| *n)
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while no_key(&p) < Some(1) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(no_key(&p) >= Some(1), "{:?}", p.ow.stats.drops());
        assert!(
            p.agent.overwatches().is_empty(),
            "no membership under a wrong key"
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(200), p.ow_events.recv())
                .await
                .is_err(),
            "nothing reached the owner"
        );
        p.stop().await;
    }
}
