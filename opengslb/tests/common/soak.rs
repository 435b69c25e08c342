//! The soak: a steady query load on one overwatch while fifty agents drain and return at random, the
//! overwatch reloads its config (SIGHUP) every few seconds, agents are killed (SIGKILL) and started
//! again, and operators' overrides come and go through the API. Shared by the `soak` test (about a
//! minute) and the `soak` bench target (ten minutes): [`run`] does the work and returns what it saw;
//! each caller judges the figures against its own bounds.
//!
//! Two network namespaces joined by a veth pair. The server side holds the overwatch (XDP on its veth
//! end in generic mode and the userspace server on the same address; gossip, API and metrics on its
//! loopback), the fifty agents, and the TCP listeners their checks connect to (one thread accepts for
//! all). The client side holds dnsperf, the steady load, and the poller, which asks names plainly (the
//! XDP program answers) and with EDNS Client Subnet (which XDP passes to userspace), each name with a
//! change pending every few milliseconds and the others in turn, and judges each answer against the changes
//! asked for: a change has reached DNS at the
//! first round, sent after it was asked for, in which both paths agree with it; a drained backend seen
//! again before it was returned, or an address that is no backend of the name, is a failure.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{BufRead as _, BufReader, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use opengslb::xdp::{Counters, pin_dir};
use opengslb_common::counters::Counter;

use super::{
    AT_ONCE,
    dnsq::Asker,
    http::{call, get},
    labs::{KEY, TOKEN},
    netns::{Netns, Proc, TempDir, Veth, wait_for},
    rng::Rng,
};

pub const AGENTS: usize = 50;
const SERVICES: usize = 5;
/// At most this many backends of a name are out at once, so no name falls to its all-down policy
/// (which answers with every backend, drained ones included).
const MAX_OUT_PER_NAME: usize = 4;
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 7, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 7, 2);
const CHECK_PORT: u16 = 9000;
/// The API's, the metrics' and gossip's addresses, on the server namespace's loopback.
const API: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
const METRICS: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9090);
const GOSSIP: &str = "127.0.0.1:7946";

/// The poller's pause between rounds (a round asks a name on both paths), and while a change is pending.
const POLL_EVERY: Duration = Duration::from_millis(5);
const POLL_PENDING: Duration = Duration::from_millis(1);
/// One poll waits this long for its reply: a lost datagram costs a round, not seconds of blindness.
const POLL_TIMEOUT: Duration = Duration::from_millis(250);
/// Between SIGHUPs.
const RELOAD_EVERY: Duration = Duration::from_secs(3);
/// How long a SIGHUP may take to be logged as reloaded (generous: waiting costs time only on failure).
const RELOAD_WAIT: Duration = Duration::from_secs(5);
/// How long a killed agent may take to leave DNS: 3 missed 300 ms reports, or SWIM within 3 s; 3×.
const KILLED: Duration = Duration::from_secs(9);
/// A restarted agent waits for a first passing check (1 s interval), then reports: 3× and more.
const RESTARTED: Duration = Duration::from_secs(15);
/// How long every agent may take to be in DNS and settled at start (fifty processes joining at once).
const SETTLE: Duration = Duration::from_secs(90);

/// What one run does.
pub struct Settings {
    /// The opengslb binary.
    pub bin: PathBuf,
    /// Names the namespaces and files, so that runs do not collide.
    pub tag: &'static str,
    /// Churn, reloads and load before the first memory reading.
    pub warmup: Duration,
    /// Churn, reloads and load after it, up to the last memory reading.
    pub soak: Duration,
    /// dnsperf's steady rate.
    pub qps: u64,
    /// The random schedule's seed.
    pub seed: u64,
    /// One agent is killed and restarted in every such period (at least once).
    pub kill_every: Duration,
}

/// Percentiles of a set of durations.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    pub n: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Stats {
    pub fn of(v: &[Duration]) -> Option<Self> {
        let mut v = v.to_vec();
        v.sort();
        let at = |p: f64| v[(((v.len() - 1) as f64) * p).round() as usize];
        (!v.is_empty()).then(|| Self {
            n: v.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        })
    }
}

/// dnsperf's counts.
#[derive(Clone, Copy, Debug, Default)]
pub struct Load {
    pub sent: u64,
    pub completed: u64,
    pub seconds: f64,
}

/// What a run saw.
#[derive(Debug, Default)]
pub struct Figures {
    /// Time from asking for a change to DNS (both paths) agreeing, by kind of change.
    pub took: BTreeMap<&'static str, Vec<Duration>>,
    /// Changes asked for, by kind.
    pub asked: BTreeMap<&'static str, u64>,
    /// Everything that went wrong: a change not in DNS within its bound, a drained backend answered
    /// again, an unknown address, a reload not logged, a control socket or API call refused.
    pub failures: Vec<String>,
    /// Poll rounds in which a backend that was back in DNS was missing from an answer, with the first
    /// few: an agent's reports came late and the overwatch took it for dead (a loaded machine), or worse.
    pub absences: u64,
    pub absence_examples: Vec<String>,
    /// Poll rounds, and those in which a path did not answer within [`POLL_TIMEOUT`].
    pub polls: u64,
    pub poll_timeouts: u64,
    /// How much earlier than measured each change may have reached DNS: the poll's resolution.
    pub resolution: Option<Stats>,
    pub load: Load,
    /// Plain A queries the XDP program answered, and queries it passed to userspace for Client Subnet.
    pub xdp_answered: u64,
    pub xdp_passed_ecs: u64,
    /// The overwatch's resident memory (KiB): after the warm-up, at the end, and the most seen between.
    pub rss_start_kib: u64,
    pub rss_end_kib: u64,
    pub rss_max_kib: u64,
    pub reloads_sent: u64,
    pub reloads_logged: u64,
    /// `opengslb_config_reloads_total` by result.
    pub reloads_success: u64,
    pub reloads_failure: u64,
    /// Drains asked for (file and control socket), and the draining reports the agents logged.
    pub drains_asked: u64,
    pub drains_reported: u64,
    /// `opengslb_agent_reports_total` by result, and the gossip datagrams dropped by reason (non-zero).
    pub reports: BTreeMap<String, u64>,
    pub gossip_dropped: BTreeMap<String, u64>,
    /// Agents alive and dead at the end, and the overrides still active.
    pub alive_at_end: u64,
    pub dead_at_end: u64,
    pub overrides_at_end: u64,
    /// `/api/v1/overwatch/stats` at the end, as read.
    pub api_end: String,
    /// Agents the overwatch declared dead, and how many were killed.
    pub deaths: usize,
    pub kills: usize,
    /// ERROR lines in the overwatch's and the agents' logs.
    pub error_lines: Vec<String>,
    /// From the start to every agent in DNS and settled; the churn's length; the whole run.
    pub settled_after: Duration,
    pub churned: Duration,
    pub elapsed: Duration,
}

impl Figures {
    /// The drains' times to out of DNS (file and control socket together).
    pub fn drain_stats(&self) -> Option<Stats> {
        let all: Vec<Duration> = ["drain (file)", "drain (socket)"]
            .iter()
            .flat_map(|k| self.took.get(k).into_iter().flatten().copied())
            .collect();
        Stats::of(&all)
    }

    /// The overwatch's RSS growth after the warm-up, in percent.
    pub fn rss_growth_percent(&self) -> f64 {
        (self.rss_end_kib as f64 - self.rss_start_kib as f64) * 100.0
            / self.rss_start_kib.max(1) as f64
    }

    /// What did not hold, besides the bounds each caller judges (drain time, memory).
    pub fn problems(&self) -> Vec<String> {
        let mut p = self.failures.clone();
        for (kind, n) in &self.asked {
            let seen = self.took.get(kind).map_or(0, Vec::len) as u64;
            if seen != *n {
                p.push(format!(
                    "{kind}: {n} asked for, {seen} seen in DNS (a report or a change lost)"
                ));
            }
        }
        if self.drains_reported != self.drains_asked {
            p.push(format!(
                "{} drains asked for, {} draining reports logged by the agents",
                self.drains_asked, self.drains_reported
            ));
        }
        if self.reloads_logged != self.reloads_sent
            || self.reloads_success != self.reloads_sent
            || self.reloads_failure != 0
        {
            p.push(format!(
                "{} SIGHUPs sent, {} logged as reloaded, metrics: {} success, {} failure",
                self.reloads_sent, self.reloads_logged, self.reloads_success, self.reloads_failure
            ));
        }
        for (result, n) in &self.reports {
            if !matches!(result.as_str(), "applied" | "left" | "stale") && *n > 0 {
                p.push(format!("{n} agent reports refused as {result}"));
            }
        }
        if !self.gossip_dropped.is_empty() {
            p.push(format!(
                "gossip datagrams dropped: {:?}",
                self.gossip_dropped
            ));
        }
        if self.alive_at_end != AGENTS as u64 || self.overrides_at_end != 0 {
            p.push(format!(
                "at the end: {} agents alive (want {AGENTS}), {} overrides active (want 0)",
                self.alive_at_end, self.overrides_at_end
            ));
        }
        if !self.error_lines.is_empty() {
            p.push(format!(
                "ERROR lines in the logs:\n{}",
                self.error_lines.join("\n")
            ));
        }
        // An agent taken for dead that was not killed: its reports stopped reaching the overwatch in
        // time. A backend missing while it should be in DNS is the same seen from outside.
        if self.deaths != self.kills || self.absences != 0 {
            p.push(format!(
                "{} agents declared dead for {} kills; {} poll rounds missing a backend that should be in DNS{}",
                self.deaths,
                self.kills,
                self.absences,
                if self.absence_examples.is_empty() {
                    String::new()
                } else {
                    format!(" (first: {})", self.absence_examples.join("; "))
                }
            ));
        }
        // The steady load itself: a gap in the answers (XDP detached by a reload, say) loses queries.
        if self.load.completed * 100 < self.load.sent * 99 {
            p.push(format!(
                "dnsperf: {} of {} queries answered (less than 99 %)",
                self.load.completed, self.load.sent
            ));
        }
        if self.load.completed == 0 || self.xdp_answered == 0 || self.xdp_passed_ecs == 0 {
            p.push(format!(
                "no load: dnsperf {:?}, XDP answered {}, passed for ECS {}",
                self.load, self.xdp_answered, self.xdp_passed_ecs
            ));
        }
        if self.rss_start_kib == 0 || self.rss_end_kib == 0 {
            p.push("the overwatch's VmRSS could not be read".into());
        }
        p
    }

    /// Every figure, for people.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "soak: {AGENTS} agents in DNS and settled after {:.1} s; churn for {:.1} s; whole run {:.1} s",
            self.settled_after.as_secs_f64(),
            self.churned.as_secs_f64(),
            self.elapsed.as_secs_f64()
        );
        for (kind, times) in &self.took {
            if let Some(st) = Stats::of(times) {
                let _ = writeln!(
                    s,
                    "  {kind:<20} {:>4} of {:>4} asked -> DNS: p50 {:>7.1} ms, p99 {:>7.1} ms, max {:>7.1} ms",
                    st.n,
                    self.asked.get(kind).copied().unwrap_or(0),
                    ms(st.p50),
                    ms(st.p99),
                    ms(st.max)
                );
            }
        }
        if let Some(d) = self.drain_stats() {
            let _ = writeln!(
                s,
                "  drains (file and socket): {} -> out of DNS p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                d.n,
                ms(d.p50),
                ms(d.p99),
                ms(d.max)
            );
        }
        if let Some(r) = self.resolution {
            let _ = writeln!(
                s,
                "  resolution (each time is at most this much above the true one): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                ms(r.p50),
                ms(r.p99),
                ms(r.max)
            );
        }
        let _ = writeln!(
            s,
            "  load: dnsperf sent {}, answered {} (lost {}) in {:.1} s ({:.0} qps); XDP answered {} plain A, passed {} with ECS to userspace",
            self.load.sent,
            self.load.completed,
            self.load.sent.saturating_sub(self.load.completed),
            self.load.seconds,
            self.load.completed as f64 / self.load.seconds.max(1e-9),
            self.xdp_answered,
            self.xdp_passed_ecs
        );
        let _ = writeln!(
            s,
            "  poller: {} rounds ({} with a path silent for {} ms); {} rounds missing a backend that was back in DNS{}",
            self.polls,
            self.poll_timeouts,
            POLL_TIMEOUT.as_millis(),
            self.absences,
            if self.absence_examples.is_empty() {
                String::new()
            } else {
                format!(" (first: {})", self.absence_examples.join("; "))
            }
        );
        let _ = writeln!(
            s,
            "  overwatch VmRSS: {} KiB after the warm-up, {} KiB at the end ({:+.1} %), at most {} KiB",
            self.rss_start_kib,
            self.rss_end_kib,
            self.rss_growth_percent(),
            self.rss_max_kib
        );
        let _ = writeln!(
            s,
            "  reloads: {} SIGHUPs, {} logged, metrics {} success / {} failure",
            self.reloads_sent, self.reloads_logged, self.reloads_success, self.reloads_failure
        );
        let _ = writeln!(
            s,
            "  reports: {} drains asked, {} draining reports logged by agents; overwatch {:?}; gossip dropped {:?}",
            self.drains_asked, self.drains_reported, self.reports, self.gossip_dropped
        );
        let _ = writeln!(
            s,
            "  at the end: {} agents alive, {} dead, {} overrides; API: {}; {} agents declared dead for {} kills; {} ERROR lines",
            self.alive_at_end,
            self.dead_at_end,
            self.overrides_at_end,
            self.api_end,
            self.deaths,
            self.kills,
            self.error_lines.len()
        );
        s
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1, 10 + i as u8)
}

fn pool(s: usize) -> String {
    format!("pool{s}.soak.test")
}

fn agent_token(s: usize) -> String {
    format!("pool-token-{s}-0123456789")
}

/// The overwatch's config; `generation` (one per reload) moves `reload.soak.test` between two
/// addresses, so each reload changes something that DNS shows.
fn overwatch_config(dir: &Path, iface: &str, generation: u64) -> String {
    let mut domains = String::new();
    let mut tokens = Vec::new();
    for s in 0..SERVICES {
        let _ = writeln!(
            domains,
            "  - {{ name: {}, routing_algorithm: round-robin, regions: [lab], ttl: 1, max_answers: 16 }}",
            pool(s)
        );
        tokens.push(format!("{}: \"{}\"", pool(s), agent_token(s)));
    }
    format!(
        r#"# generation {generation}
mode: overwatch
logging: {{ format: text }}
dns:
  listen_address: "{SERVER}:53"
  zones: [soak.test]
  default_ttl: 1
  xdp: {{ interfaces: [{iface}], mode: skb }}
overwatch:
  identity: {{ node_id: soak }}
  validation: {{ enabled: false }}
  gossip: {{ bind_address: "{GOSSIP}", encryption_key: "{KEY}" }}
  agent_tokens: {{ {tokens} }}
  data_dir: {data}
metrics: {{ enabled: true, address: "{METRICS}" }}
api: {{ enabled: true, address: "{API}", token: "{TOKEN}" }}
regions:
  - name: lab
    servers:
      - {{ address: 192.0.2.{last}, service: reload.soak.test }}
domains:
{domains}  - {{ name: reload.soak.test, routing_algorithm: round-robin, regions: [lab], ttl: 1 }}
"#,
        tokens = tokens.join(", "),
        data = dir.join("data").display(),
        last = 1 + generation % 2,
    )
}

/// Writes the config as an operator's tooling should: a file beside it, renamed over it, so a reload
/// never reads half a file.
fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("yaml.tmp");
    super::write_private(&tmp, text);
    std::fs::rename(&tmp, path).expect("rename the config into place");
}

/// One agent: its files, and its process while running; each life logs to a file of its own.
struct Agent {
    i: usize,
    dir: PathBuf,
    config: PathBuf,
    drain: PathBuf,
    socket: PathBuf,
    lives: usize,
    proc: Option<Proc>,
}

impl Agent {
    fn new(dir: &Path, i: usize) -> Self {
        let s = i % SERVICES;
        let drain = dir.join(format!("drain-{i}"));
        let socket = dir.join(format!("agent-{i}.sock"));
        let config = dir.join(format!("agent-{i}.yaml"));
        super::write_private(
            &config,
            &format!(
                r#"mode: agent
logging: {{ format: text }}
agent:
  identity: {{ region: lab, service_token: "{token}" }}
  backends:
    - service: {service}
      address: {address}
      port: {CHECK_PORT}
      health_check: {{ type: tcp, interval: 1s, timeout: 500ms, success_threshold: 1 }}
  gossip: {{ encryption_key: "{KEY}", overwatch_nodes: ["{GOSSIP}"] }}
  drain_file: {drain}
  control_socket: {socket}
"#,
                token = agent_token(s),
                service = pool(s),
                address = addr(i),
                drain = drain.display(),
                socket = socket.display(),
            ),
        );
        Self {
            i,
            dir: dir.to_owned(),
            config,
            drain,
            socket,
            lives: 0,
            proc: None,
        }
    }

    fn log(&self, life: usize) -> PathBuf {
        self.dir.join(format!("agent-{}-{life}.log", self.i))
    }

    fn start(&mut self, ns: &Netns, bin: &Path) {
        self.lives += 1;
        let mut cmd = ns.command(bin);
        cmd.args(["agent", "--config"]).arg(&self.config);
        self.proc = Some(Proc::spawn(cmd, &self.log(self.lives)));
    }

    /// SIGKILL: no leaving report, no goodbye.
    fn kill(&mut self) {
        if let Some(mut p) = self.proc.take()
            && let Some(mut c) = p.child.take()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every life's log, in order.
    fn logs(&self) -> String {
        (1..=self.lives)
            .map(|l| std::fs::read_to_string(self.log(l)).unwrap_or_default())
            .collect()
    }

    /// One line to the agent's control socket; its answer.
    fn control(&self, line: &str) -> Result<String, String> {
        let mut s = UnixStream::connect(&self.socket)
            .map_err(|e| format!("agent {}: control socket: {e}", self.i))?;
        let t = Some(Duration::from_secs(3));
        let _ = s.set_read_timeout(t);
        let _ = s.set_write_timeout(t);
        s.write_all(format!("{line}\n").as_bytes())
            .map_err(|e| format!("agent {}: control socket write: {e}", self.i))?;
        let mut reply = String::new();
        BufReader::new(s)
            .read_line(&mut reply)
            .map_err(|e| format!("agent {}: control socket read: {e}", self.i))?;
        Ok(reply.trim().to_owned())
    }
}

/// How an agent was taken out, which decides how it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Out {
    DrainFile,
    DrainSocket,
    Override,
    Kill,
}

impl Out {
    fn kind(self) -> &'static str {
        match self {
            Self::DrainFile => "drain (file)",
            Self::DrainSocket => "drain (socket)",
            Self::Override => "override set",
            Self::Kill => "SIGKILL",
        }
    }

    fn back_kind(self) -> &'static str {
        match self {
            Self::DrainFile => "undrain (file)",
            Self::DrainSocket => "undrain (socket)",
            Self::Override => "override cleared",
            Self::Kill => "restart",
        }
    }

    /// How long DNS may take to follow: a drain or an override at once ([`AT_ONCE`], far more than 3×
    /// what it needs; the drain's own 1 s bound is judged on the figures), a kill or a restart as the
    /// agent tests allow.
    fn bound(self, back: bool) -> Duration {
        match (self, back) {
            (Self::Kill, false) => KILLED,
            (Self::Kill, true) => RESTARTED,
            _ => AT_ONCE,
        }
    }
}

/// What DNS should show of one agent, and whether it does yet.
#[derive(Clone, Copy, Debug)]
struct Track {
    want_in: bool,
    kind: &'static str,
    asked: Instant,
    /// When a poll round sent after `asked` first had both paths agree with `want_in`.
    seen: Option<Instant>,
    bound: Duration,
}

/// What the poller and the driver share.
struct Shared {
    tracks: Vec<Track>,
    /// Whether the changes seen count (not while the agents first come up).
    counting: bool,
    took: BTreeMap<&'static str, Vec<Duration>>,
    failures: Vec<String>,
    failure_count: usize,
    absences: u64,
    absence_examples: Vec<String>,
    polls: u64,
    poll_timeouts: u64,
    /// When the last round of each name was sent.
    last_sent: [Option<Instant>; SERVICES],
    /// For each change seen: how much earlier it may have reached DNS than measured (from the later of
    /// the previous round of its name and the change to the round that saw it).
    resolution: Vec<Duration>,
}

impl Shared {
    fn fail(&mut self, what: String) {
        self.failure_count += 1;
        if self.failures.len() < 30 {
            self.failures.push(what);
        }
    }

    /// Judges one poll round of name `s`: both paths' answers, the round sent at `sent` and over at
    /// `got`.
    fn observe(
        &mut self,
        s: usize,
        sent: Instant,
        got: Instant,
        xdp: &[Ipv4Addr],
        user: &[Ipv4Addr],
    ) {
        let mut failures = Vec::new();
        for a in xdp.iter().chain(user) {
            if !(0..AGENTS).any(|i| i % SERVICES == s && addr(i) == *a) {
                failures.push(format!("{}: answered {a}, no backend of it", pool(s)));
            }
        }
        for i in (s..AGENTS).step_by(SERVICES) {
            let t = &mut self.tracks[i];
            if sent < t.asked {
                continue;
            }
            let (in_x, in_u) = (xdp.contains(&addr(i)), user.contains(&addr(i)));
            match (t.want_in, t.seen) {
                (true, None) if in_x && in_u => t.seen = Some(got),
                (false, None) if !in_x && !in_u => t.seen = Some(got),
                (false, Some(_)) if in_x || in_u => failures.push(format!(
                    "agent {i} ({}, {}) answered again after it left DNS: XDP {in_x}, userspace {in_u}",
                    pool(s),
                    t.kind
                )),
                (true, Some(_)) if !(in_x && in_u) => {
                    self.absences += 1;
                    if self.absence_examples.len() < 5 {
                        self.absence_examples.push(format!(
                            "agent {i} missing from XDP {} userspace {} ({:.1} s after {})",
                            !in_x,
                            !in_u,
                            (got - t.asked).as_secs_f64(),
                            t.kind
                        ));
                    }
                    continue;
                }
                _ => continue,
            }
            let t = self.tracks[i];
            if t.seen == Some(got) && self.counting {
                self.took.entry(t.kind).or_default().push(got - t.asked);
                let before = self.last_sent[s].map_or(t.asked, |l| l.max(t.asked));
                self.resolution.push(got - before);
            }
        }
        for f in failures {
            self.fail(f);
        }
    }
}

/// Sets a flag when dropped: threads in a scope stop even when the driver panics.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The poller, in the client namespace, until `stop` or `deadline`.
fn poll(shared: &Mutex<Shared>, stop: &AtomicBool, deadline: Instant) {
    let mut dns = Asker::from((Ipv4Addr::UNSPECIFIED, 0).into(), (SERVER, 53).into());
    dns.set_timeout(POLL_TIMEOUT);
    let names: Vec<String> = (0..SERVICES).map(pool).collect();
    let mut next = 0;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        // Every name with a change DNS does not show yet, each time, so its time is measured finely;
        // and one more name in turn, so every name is watched for backends that should not be there.
        let mut due: Vec<usize> = {
            let sh = shared.lock().expect("shared");
            (0..SERVICES)
                .filter(|&s| {
                    (s..AGENTS)
                        .step_by(SERVICES)
                        .any(|i| sh.tracks[i].seen.is_none())
                })
                .collect()
        };
        // Finely while a change is pending (a few tenths of the time), at rest otherwise.
        let pause = if due.is_empty() {
            POLL_EVERY
        } else {
            POLL_PENDING
        };
        if !due.contains(&next) {
            due.push(next);
        }
        next = (next + 1) % SERVICES;
        for s in due {
            let sent = Instant::now();
            let xdp = dns.a(&names[s], false);
            let user = dns.a(&names[s], true);
            let got = Instant::now();
            let mut sh = shared.lock().expect("shared");
            sh.polls += 1;
            match (xdp, user) {
                (Some(x), Some(u)) => sh.observe(s, sent, got, &x, &u),
                _ => sh.poll_timeouts += 1,
            }
            sh.last_sent[s] = Some(sent);
        }
        thread::sleep(pause);
    }
}

/// Removes what the overwatch pinned, however the run ends.
struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = opengslb::xdp::remove_all(&self.0);
    }
}

/// The listeners the agents' checks connect to, accepted by one thread until dropped.
struct Listeners {
    stop: std::sync::Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Listeners {
    fn start(ns: &Netns) -> Self {
        let listeners: Vec<TcpListener> = ns.enter(|| {
            (0..AGENTS)
                .map(|i| {
                    let l = TcpListener::bind((addr(i), CHECK_PORT)).expect("bind a backend");
                    l.set_nonblocking(true).expect("nonblocking");
                    l
                })
                .collect()
        });
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        // A check connects once a second per agent; the kernel completes the handshake from the
        // backlog, so accepting every 20 ms is plenty and costs little.
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                for l in &listeners {
                    while l.accept().is_ok() {}
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The overwatch's VmRSS in KiB (0 when it cannot be read).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Every sample of `metric` (`name{label="value"} n`) in a scrape, by the value of `label`.
fn by_label(scrape: &str, metric: &str, label: &str) -> BTreeMap<String, u64> {
    let prefix = format!("{metric}{{{label}=\"");
    scrape
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (value, n) = rest.split_once("\"} ")?;
            Some((value.to_owned(), n.trim().parse().ok()?))
        })
        .collect()
}

/// dnsperf's counts from its output.
fn dnsperf_load(out: &str) -> Load {
    let num = |key: &str| -> Option<f64> {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|w| w.parse().ok())
    };
    Load {
        sent: num("Queries sent:").unwrap_or(0.0) as u64,
        completed: num("Queries completed:").unwrap_or(0.0) as u64,
        seconds: num("Run time (s):").unwrap_or(0.0),
    }
}

/// ERROR lines of a text log (`<timestamp> <LEVEL> <target>: <message>`).
pub fn errors(log: &str, who: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("ERROR"))
        .map(|l| format!("{who}: {l}"))
        .collect()
}

/// The run: sets everything up, soaks, takes everything down (also when it fails), and returns what
/// it saw. Panics only when the lab cannot be set up.
pub fn run(set: &Settings) -> Figures {
    super::require_root();
    let started = Instant::now();
    let bin = set.bin.as_path();
    // Dropped in reverse: agents and the overwatch, listeners, pins, files, then the namespaces.
    let srv = Netns::new(&format!("{}-s", set.tag));
    let cli = Netns::new(&format!("{}-c", set.tag));
    let veth = Veth::new(
        &srv,
        &cli,
        &[&format!("{SERVER}/24")],
        &[&format!("{CLIENT}/24")],
    );
    let dir = TempDir::new(set.tag);
    let pins = Pins(Path::new("/sys/fs/bpf").join(&srv.name));
    let _listeners = Listeners::start(&srv);

    let cfg = dir.0.join("overwatch.yaml");
    write_config(&cfg, &overwatch_config(&dir.0, &veth.a, 0));
    let ow_log = dir.0.join("overwatch.log");
    let mut cmd = srv.command(bin);
    cmd.args(["overwatch", "--detach-on-exit", "--config"])
        .arg(&cfg)
        .arg("--bpffs-root")
        .arg(&pins.0);
    let mut overwatch = Proc::spawn(cmd, &ow_log);
    let ow_pid = overwatch.child.as_ref().expect("running").id();
    let ow_text = || std::fs::read_to_string(&ow_log).unwrap_or_default();
    srv.enter(|| super::labs::wait_ready(API, ow_text));

    let mut agents: Vec<Agent> = (0..AGENTS).map(|i| Agent::new(&dir.0, i)).collect();
    for a in &mut agents {
        a.start(&srv, bin);
    }
    let t0 = Instant::now();
    let shared = Mutex::new(Shared {
        tracks: vec![
            Track {
                want_in: true,
                kind: "start",
                asked: t0,
                seen: None,
                bound: SETTLE,
            };
            AGENTS
        ],
        counting: false,
        took: BTreeMap::new(),
        failures: Vec::new(),
        failure_count: 0,
        absences: 0,
        absence_examples: Vec::new(),
        polls: 0,
        poll_timeouts: 0,
        last_sent: [None; SERVICES],
        resolution: Vec::new(),
    });
    let stop = AtomicBool::new(false);
    let churn_over = AtomicBool::new(false);
    let reloads_logged = || ow_text().matches("SIGHUP: config reloaded").count() as u64;
    let mut f = Figures::default();
    let run_deadline = t0 + SETTLE * 2 + set.warmup + set.soak + Duration::from_secs(120);

    thread::scope(|scope| {
        let _stop = (SetOnDrop(&stop), SetOnDrop(&churn_over));
        let poller = {
            let (cli, shared, stop) = (&cli, &shared, &stop);
            scope.spawn(move || cli.enter(|| poll(shared, stop, run_deadline)))
        };

        // Every agent in DNS, then settled: alive, none dead, DNS steady for 3 s. Fifty members
        // learning of each other at once load both cores for a while, which can delay reports past
        // their deadline; the churn starts once that is over.
        let all_in = |sh: &Shared| sh.tracks.iter().all(|t| t.seen.is_some());
        assert!(
            wait_for(SETTLE, || all_in(&shared.lock().unwrap())),
            "all {AGENTS} agents in DNS within {SETTLE:?}\n{}",
            ow_text()
        );
        let scrape = || get(&srv, METRICS, "/metrics");
        let agents_in = |scrape: &str, state: &str| {
            by_label(scrape, "opengslb_agents", "state")
                .get(state)
                .copied()
                .unwrap_or(0)
        };
        let quiet = Duration::from_secs(3);
        let mut calm_since: Option<Instant> = None;
        let settled = wait_for(SETTLE, || {
            let m = scrape();
            let calm = agents_in(&m, "alive") == AGENTS as u64
                && agents_in(&m, "dead") == 0
                && shared.lock().unwrap().absences == 0;
            if !calm {
                shared.lock().unwrap().absences = 0;
                calm_since = None;
                return false;
            }
            calm_since.get_or_insert_with(Instant::now).elapsed() >= quiet
        });
        assert!(
            settled,
            "{AGENTS} agents settle (alive, none dead, DNS steady for {quiet:?})\n{}",
            ow_text()
        );
        f.settled_after = started.elapsed();
        let deaths_before = {
            let log = ow_text();
            log.matches("agent missed its reports").count()
                + log.matches("SWIM declared the agent down").count()
        };
        {
            let mut sh = shared.lock().unwrap();
            sh.counting = true;
            sh.absences = 0;
            sh.absence_examples.clear();
        }
        let counters = || Counters::read_pinned(&pin_dir(&pins.0)).ok();
        let before = counters();

        // The steady load, for the warm-up and the soak, from the client namespace.
        let queries = dir.0.join("queries.txt");
        let list: String = (0..SERVICES).map(|s| format!("{} A\n", pool(s))).collect();
        std::fs::write(&queries, list).expect("dnsperf's queries");
        let secs = (set.warmup + set.soak).as_secs().max(1) + 1;
        let mut perf_cmd = Command::new("ip");
        perf_cmd
            .args(["netns", "exec", &cli.name, "dnsperf", "-s"])
            .arg(SERVER.to_string())
            .arg("-d")
            .arg(&queries)
            .args([
                "-l",
                &secs.to_string(),
                "-Q",
                &set.qps.to_string(),
                "-t",
                "2",
            ]);
        let perf_log = dir.0.join("dnsperf.log");
        let mut perf = Proc::spawn(perf_cmd, &perf_log);

        // SIGHUP every few seconds, each once the previous one is logged as reloaded (signals sent
        // faster than they are handled would merge).
        let reloader = {
            let (cfg, dir, iface, churn_over, reloads_logged) =
                (&cfg, &dir, &veth.a, &churn_over, &reloads_logged);
            scope.spawn(move || {
                let mut sent = 0u64;
                let mut problems = Vec::new();
                while !churn_over.load(Ordering::Relaxed) && Instant::now() < run_deadline {
                    thread::sleep(RELOAD_EVERY);
                    sent += 1;
                    write_config(cfg, &overwatch_config(&dir.0, iface, sent));
                    // SAFETY: kill on our own child's pid, which has not been reaped.
                    unsafe { libc::kill(ow_pid as i32, libc::SIGHUP) };
                    if !wait_for(RELOAD_WAIT, || reloads_logged() >= sent) {
                        problems.push(format!("reload {sent} not logged within {RELOAD_WAIT:?}"));
                    }
                }
                (sent, problems)
            })
        };

        // The churn: a change every 100 to 400 ms, each backend out for 0.3 to 2.5 s once DNS shows
        // it out; a kill in every `kill_every`.
        let mut rng = Rng::new(set.seed);
        let mut out: Vec<Option<(Out, Instant)>> = vec![None; AGENTS];
        let churn_start = Instant::now();
        let warm_end = churn_start + set.warmup;
        let end = warm_end + set.soak;
        let mut rss_read = false;
        let mut next_change = churn_start;
        let mut next_rss = churn_start;
        let kill_every = set.kill_every.min(set.warmup + set.soak);
        let mut next_kill = churn_start + kill_every / 3;
        let bearer = format!("Bearer {TOKEN}");
        let override_path = |i: usize| {
            format!(
                "/api/v1/overwatch/backends/{}/{}/{CHECK_PORT}/override",
                pool(i % SERVICES),
                addr(i)
            )
        };
        let mut problems = Vec::new();
        // Room for a kill just before the end: out, then restarted and back.
        let wind_down = end + KILLED + RESTARTED + Duration::from_secs(10);
        loop {
            let now = Instant::now();
            if now >= warm_end && !rss_read {
                f.rss_start_kib = rss_kib(ow_pid);
                f.rss_max_kib = f.rss_start_kib;
                rss_read = true;
            }
            if rss_read && now >= next_rss {
                f.rss_max_kib = f.rss_max_kib.max(rss_kib(ow_pid));
                next_rss = now + Duration::from_secs(1);
            }
            if now >= end && f.rss_end_kib == 0 {
                f.rss_end_kib = rss_kib(ow_pid);
                f.churned = churn_start.elapsed();
            }
            let tracks = shared.lock().unwrap().tracks.clone();
            // Returns: each once DNS shows it out and its time is up; a change DNS did not follow
            // within its bound is a failure, and the agent returns anyway so the run goes on.
            for i in 0..AGENTS {
                let t = tracks[i];
                if let Some((how, back_at)) = out[i] {
                    let late = t.seen.is_none() && now > t.asked + t.bound;
                    if late {
                        problems.push(format!(
                            "agent {i}: {} not out of DNS within {:?}",
                            t.kind, t.bound
                        ));
                    }
                    if !(late || (t.seen.is_some() && now >= back_at)) {
                        continue;
                    }
                    let mut sh = shared.lock().unwrap();
                    sh.tracks[i] = Track {
                        want_in: true,
                        kind: how.back_kind(),
                        asked: Instant::now(),
                        seen: None,
                        bound: how.bound(true),
                    };
                    drop(sh);
                    *f.asked.entry(how.back_kind()).or_default() += 1;
                    let done = match how {
                        Out::DrainFile => std::fs::remove_file(&agents[i].drain)
                            .map_err(|e| format!("agent {i}: removing the drain file: {e}")),
                        Out::DrainSocket => agents[i].control("drain off").and_then(|r| {
                            (r == "ok draining=false")
                                .then_some(())
                                .ok_or(format!("agent {i}: drain off answered {r:?}"))
                        }),
                        Out::Override => {
                            let (code, body) = srv.enter(|| {
                                call(
                                    API,
                                    "DELETE",
                                    &override_path(i),
                                    &[("Authorization", &bearer)],
                                    None,
                                )
                            });
                            (200..300)
                                .contains(&code)
                                .then_some(())
                                .ok_or(format!("agent {i}: clearing the override: {code} {body}"))
                        }
                        Out::Kill => {
                            agents[i].start(&srv, bin);
                            Ok(())
                        }
                    };
                    if let Err(e) = done {
                        problems.push(e);
                    }
                    out[i] = None;
                } else if t.seen.is_none() && now > t.asked + t.bound {
                    problems.push(format!(
                        "agent {i}: {} not back in DNS within {:?}",
                        t.kind, t.bound
                    ));
                    // Given up on: judged from now on as in, so one failure is told once.
                    shared.lock().unwrap().tracks[i].seen = Some(now);
                }
            }
            if now >= end {
                let all_back = out.iter().all(Option::is_none)
                    && shared
                        .lock()
                        .unwrap()
                        .tracks
                        .iter()
                        .all(|t| t.seen.is_some());
                if all_back || now >= wind_down {
                    if !all_back {
                        problems.push(format!(
                            "not every agent back in DNS {:?} after the churn",
                            wind_down - end
                        ));
                    }
                    break;
                }
                thread::sleep(Duration::from_millis(20));
                continue;
            }
            // A new change: an agent DNS shows in, of a name with room for one more out.
            let kill = now >= next_kill;
            if kill || now >= next_change {
                let out_of = |s: usize| {
                    (s..AGENTS)
                        .step_by(SERVICES)
                        .filter(|&j| out[j].is_some())
                        .count()
                };
                let candidates: Vec<usize> = (0..AGENTS)
                    .filter(|&i| {
                        out[i].is_none()
                            && tracks[i].want_in
                            && tracks[i].seen.is_some()
                            && out_of(i % SERVICES) < MAX_OUT_PER_NAME
                    })
                    .collect();
                if !candidates.is_empty() {
                    let i = rng.pick(&candidates);
                    let how = if kill {
                        Out::Kill
                    } else {
                        match rng.below(10) {
                            0..4 => Out::DrainFile,
                            4..7 => Out::DrainSocket,
                            _ => Out::Override,
                        }
                    };
                    let hold = Duration::from_millis(rng.range(300, 2500));
                    let asked = Instant::now();
                    shared.lock().unwrap().tracks[i] = Track {
                        want_in: false,
                        kind: how.kind(),
                        asked,
                        seen: None,
                        bound: how.bound(false),
                    };
                    *f.asked.entry(how.kind()).or_default() += 1;
                    let done = match how {
                        Out::DrainFile => std::fs::File::create(&agents[i].drain)
                            .map(drop)
                            .map_err(|e| format!("agent {i}: writing the drain file: {e}")),
                        Out::DrainSocket => agents[i].control("drain on").and_then(|r| {
                            (r == "ok draining=true")
                                .then_some(())
                                .ok_or(format!("agent {i}: drain on answered {r:?}"))
                        }),
                        Out::Override => {
                            let (code, body) = srv.enter(|| {
                                call(
                                    API,
                                    "POST",
                                    &override_path(i),
                                    &[("Authorization", &bearer), ("X-User", "soak")],
                                    Some(r#"{"healthy": false, "reason": "soak"}"#),
                                )
                            });
                            (200..300)
                                .contains(&code)
                                .then_some(())
                                .ok_or(format!("agent {i}: setting an override: {code} {body}"))
                        }
                        Out::Kill => {
                            agents[i].kill();
                            f.kills += 1;
                            Ok(())
                        }
                    };
                    if matches!(how, Out::DrainFile | Out::DrainSocket) {
                        f.drains_asked += 1;
                    }
                    if let Err(e) = done {
                        problems.push(e);
                    }
                    out[i] = Some((how, asked + hold));
                    if kill {
                        next_kill += kill_every;
                    }
                }
                if !kill {
                    next_change = now + Duration::from_millis(rng.range(100, 400));
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        churn_over.store(true, Ordering::Relaxed);
        let (sent, reload_problems) = reloader.join().expect("the reloader");
        problems.extend(reload_problems);
        f.reloads_sent = sent;
        f.reloads_logged = reloads_logged();

        // dnsperf stops by itself at the end of its run (it began with the warm-up).
        let mut child = perf.child.take().expect("dnsperf running");
        let finished = wait_for(Duration::from_secs(60), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !finished {
            let _ = child.kill();
            let _ = child.wait();
            problems.push("dnsperf did not stop by itself".into());
        }
        f.load = dnsperf_load(&std::fs::read_to_string(&perf_log).unwrap_or_default());
        if let (Some(b), Some(a)) = (before, counters()) {
            f.xdp_answered = a.get(Counter::AnsweredA) - b.get(Counter::AnsweredA);
            f.xdp_passed_ecs = a.get(Counter::Ecs) - b.get(Counter::Ecs);
        }

        stop.store(true, Ordering::Relaxed);
        poller.join().expect("the poller");
        let mut sh = shared.lock().unwrap();
        for p in problems {
            sh.fail(p);
        }
        f.took = std::mem::take(&mut sh.took);
        f.failures = std::mem::take(&mut sh.failures);
        if sh.failure_count > f.failures.len() {
            f.failures
                .push(format!("... {} failures in all", sh.failure_count));
        }
        f.absences = sh.absences;
        f.absence_examples = std::mem::take(&mut sh.absence_examples);
        f.polls = sh.polls;
        f.poll_timeouts = sh.poll_timeouts;
        f.resolution = Stats::of(&sh.resolution);

        let log = ow_text();
        f.deaths = log.matches("agent missed its reports").count()
            + log.matches("SWIM declared the agent down").count();
        f.deaths = f.deaths.saturating_sub(deaths_before);
    });

    // The last reload's record is what DNS answers: the reloads reached both paths.
    let last = Ipv4Addr::new(192, 0, 2, 1 + (f.reloads_sent % 2) as u8);
    let mut dns = cli.enter(|| Asker::from((Ipv4Addr::UNSPECIFIED, 0).into(), (SERVER, 53).into()));
    let reload_answer = dns.both("reload.soak.test");
    if reload_answer != Some(vec![last]) {
        f.failures.push(format!(
            "reload.soak.test answered {reload_answer:?} after {} reloads, want [{last}]",
            f.reloads_sent
        ));
    }

    // The overwatch's own counts.
    let scrape = get(&srv, METRICS, "/metrics");
    if !scrape.contains("opengslb_agents{") {
        f.failures.push(format!(
            "the overwatch's metrics did not answer: {scrape:?}"
        ));
    }
    let reloads = by_label(&scrape, "opengslb_config_reloads_total", "result");
    f.reloads_success = reloads.get("success").copied().unwrap_or(0);
    f.reloads_failure = reloads.get("failure").copied().unwrap_or(0);
    f.reports = by_label(&scrape, "opengslb_agent_reports_total", "result");
    f.gossip_dropped = by_label(&scrape, "opengslb_gossip_dropped_total", "reason")
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    let agents_by = by_label(&scrape, "opengslb_agents", "state");
    f.alive_at_end = agents_by.get("alive").copied().unwrap_or(0);
    f.dead_at_end = agents_by.get("dead").copied().unwrap_or(0);
    f.overrides_at_end = scrape
        .lines()
        .find_map(|l| l.strip_prefix("opengslb_overwatch_overrides_active "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(u64::MAX);
    // The API's view of the same end: every agent's backend and the static one healthy, none draining,
    // no override.
    let (code, body) = srv.enter(|| call(API, "GET", "/api/v1/overwatch/stats", &[], None));
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let all = AGENTS as u64 + 1;
    for (key, want) in [
        ("active_agents", AGENTS as u64),
        ("total_backends", all),
        ("healthy_backends", all),
        ("draining_backends", 0),
        ("active_overrides", 0),
    ] {
        let got = stats[key].as_u64();
        let _ = write!(
            f.api_end,
            "{}{key} {}",
            if f.api_end.is_empty() { "" } else { ", " },
            got.map_or("?".into(), |n| n.to_string())
        );
        if got != Some(want) {
            f.failures.push(format!(
                "/api/v1/overwatch/stats at the end: {key} {got:?}, want {want} ({code} {body})"
            ));
        }
    }

    // Down, agents first (SIGTERM to all at once: each leaves), then the overwatch.
    for a in &agents {
        if let Some(c) = a.proc.as_ref().and_then(|p| p.child.as_ref()) {
            // SAFETY: kill on our own child, not yet reaped.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
    }
    for a in &mut agents {
        if let Some(mut p) = a.proc.take()
            && let Some(mut c) = p.child.take()
        {
            let _ = c.wait();
        }
    }
    if !overwatch.interrupt() {
        f.failures
            .push("the overwatch did not exit cleanly on SIGINT".into());
    }

    f.drains_reported = agents
        .iter()
        .map(|a| {
            a.logs()
                .lines()
                .filter(|l| l.contains(": reporting "))
                .filter(|l| l.contains("status=\"draining\"") || l.contains("status=draining"))
                .count() as u64
        })
        .sum();
    f.error_lines = errors(&ow_text(), "overwatch");
    for a in &agents {
        f.error_lines
            .extend(errors(&a.logs(), &format!("agent {}", a.i)));
    }
    f.error_lines.truncate(20);
    f.elapsed = started.elapsed();
    f
}
