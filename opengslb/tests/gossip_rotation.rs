//! Gossip key rotation under load, with real processes on loopback (no root needed): an overwatch and
//! several agents report continuously while the operator's three steps go through with SIGHUPs (the
//! new key added second everywhere, then put first, then the old one removed), the overwatch first in
//! each step, and drains are toggled between the SIGHUPs. No report is lost or refused: every report
//! the agents say they sent is applied, and no datagram fails to open anywhere; every drain reaches DNS
//! and the API within the deadline of a change made at once. After the last step an agent still on the
//! old key is shut out, and each of its datagrams is counted. A config the agent cannot load is refused
//! on SIGHUP, and the agent keeps running and reporting.

mod common;

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use common::{
    AT_ONCE,
    dnsq::Asker,
    http::call,
    labs::{self, AGENT_TOKEN, KEY},
    netns::{Proc, TempDir, wait_every, wait_for},
};
use opengslb::{
    config::{GossipKey, Secret},
    gossip::{
        seal::Sealer,
        wire::{KIND_REPORT, REPORT_VERSION, Report, Signals},
    },
};

/// The key rotated in.
const NEW_KEY: &str = "HxgZGhscHR4fEBESExQVFhcICQoLDA0ODwABAgMEBQY=";

/// The agents reporting through the rotation.
const AGENTS: usize = 6;

/// Synthetic agents the test runs itself, for load: each sends a sealed report (no backends) every
/// [`LOAD_EVERY`], about 200 reports a second together, ten times what the real agents send.
const LOAD_SENDERS: usize = 8;
const LOAD_EVERY: Duration = Duration::from_millis(40);

/// The overwatch's static servers, always in DNS (validation is off in [`labs::overwatch`]).
const STATIC: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)];

/// Every refusal a report can meet once it opened, as `opengslb_agent_reports_total` names them.
const REFUSALS: [&str; 6] = [
    "malformed",
    "bad_token",
    "unknown_service",
    "clock",
    "stale",
    "capacity",
];

/// Every reason a datagram can be dropped before use, as `opengslb_gossip_dropped_total` names them.
const DROPS: [&str; 11] = [
    "too_short",
    "too_large",
    "bad_magic",
    "bad_version",
    "no_key_opens",
    "replayed",
    "unknown_kind",
    "bad_swim",
    "stray_ack",
    "bad_ack",
    "queue_full",
];

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_opengslb"))
}

/// A key ring as a gossip block's YAML.
fn ring_yaml(ring: &[&str]) -> String {
    let keys: Vec<String> = ring.iter().map(|k| format!("\"{k}\"")).collect();
    format!("encryption_keys: [{}]", keys.join(", "))
}

/// The value of one sample (`name{labels}`) at `addr`'s `/metrics`, 0 when absent.
fn metric(addr: SocketAddr, sample: &str) -> u64 {
    call(addr, "GET", "/metrics", &[], None)
        .1
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0)
}

fn reports(metrics: SocketAddr, result: &str) -> u64 {
    metric(
        metrics,
        &format!("opengslb_agent_reports_total{{result=\"{result}\"}}"),
    )
}

fn dropped(metrics: SocketAddr, reason: &str) -> u64 {
    metric(
        metrics,
        &format!("opengslb_gossip_dropped_total{{reason=\"{reason}\"}}"),
    )
}

/// Sends `signal` to a running child.
fn signal(proc: &Proc, signal: i32) {
    let pid = proc.child.as_ref().expect("a running process").id();
    // SAFETY: kill(2) on our own child's pid, not reaped yet.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
}

/// SIGTERM, and the exit within 10 s (killed after that); whether it exited successfully.
fn terminate(proc: &mut Proc) -> bool {
    let Some(mut child) = proc.child.take() else {
        return false;
    };
    // SAFETY: kill(2) on our own child's pid, not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.success();
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

fn count(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

/// A TCP port that accepts and closes: what an agent's TCP check needs. Stops on drop.
struct Backend {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Backend {
    fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a backend port");
        let port = listener.local_addr().expect("bound").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => drop(conn),
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn key_bytes(ring: &[&str]) -> Vec<[u8; 32]> {
    ring.iter()
        .map(|k| *GossipKey::from_base64(k).expect("a key").as_bytes())
        .collect()
}

/// The synthetic agents: each its own socket, sealer (so its own epoch) and numbering, sending valid
/// reports under the ring it is given, as a real agent's node does.
struct Load {
    ring: Arc<Mutex<Option<Vec<[u8; 32]>>>>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Load {
    fn start(gossip: u16, ring: &[&str]) -> Self {
        let to = SocketAddr::from((Ipv4Addr::LOCALHOST, gossip));
        let first = key_bytes(ring);
        let pending: Arc<Mutex<Option<Vec<[u8; 32]>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (p, st, n) = (pending.clone(), stop.clone(), sent.clone());
        let thread = thread::spawn(move || {
            let started_ms = now_ms();
            let mut senders: Vec<(UdpSocket, Sealer, Report)> = (0..LOAD_SENDERS)
                .map(|k| {
                    let sock = UdpSocket::bind("127.0.0.1:0").expect("a load socket");
                    sock.set_nonblocking(true).expect("nonblocking");
                    let report = Report {
                        version: REPORT_VERSION,
                        agent_id: format!("load-{k}"),
                        started_ms,
                        sent_ms: started_ms,
                        seq: 0,
                        interval_ms: 300,
                        missed_threshold: 10,
                        token: Secret::new(AGENT_TOKEN),
                        region: None,
                        leaving: false,
                        backends: Vec::new(),
                        signals: Signals::default(),
                    };
                    (sock, Sealer::new(&first).expect("a sealer"), report)
                })
                .collect();
            let mut buf = [0u8; 9000];
            while !st.load(Ordering::Relaxed) {
                if let Some(ring) = p.lock().expect("ring").take() {
                    for (_, sealer, _) in &mut senders {
                        sealer.set_ring(&ring).expect("a ring");
                    }
                }
                for (sock, sealer, report) in &mut senders {
                    report.seq += 1;
                    report.sent_ms = now_ms();
                    let datagram = sealer.seal(KIND_REPORT, &report.encode());
                    if sock.send_to(&datagram, to).is_ok() {
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                    // The overwatch's acks: read and dropped.
                    while sock.recv_from(&mut buf).is_ok() {}
                }
                thread::sleep(LOAD_EVERY);
            }
        });
        Self {
            ring: pending,
            stop,
            sent,
            thread: Some(thread),
        }
    }

    /// Seals with `ring` from the next round on.
    fn rotate(&self, ring: &[&str]) {
        *self.ring.lock().expect("ring") = Some(key_bytes(ring));
    }

    /// Stops; how many reports it sent.
    fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("the load thread");
        }
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop();
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What an agent said when it stopped.
#[derive(Debug, Default)]
struct Stopped {
    reports_sent: u64,
    datagrams_sent: u64,
    dropped: u64,
}

/// One agent process in its own directory, reporting a backend of its own under the address `addr`.
struct Agent {
    dir: PathBuf,
    gossip: u16,
    addr: Ipv4Addr,
    backend: Backend,
    drained: bool,
    proc: Proc,
}

impl Agent {
    fn start(root: &Path, n: usize, gossip: u16, addr: Ipv4Addr, ring: &[&str]) -> Self {
        let dir = root.join(format!("agent{n}"));
        std::fs::create_dir_all(&dir).expect("agent dir");
        let backend = Backend::new();
        let mut a = Self {
            dir,
            gossip,
            addr,
            backend,
            drained: false,
            proc: Proc { child: None },
        };
        a.write(ring);
        a.proc = labs::spawn(bin(), &a.dir, "agent");
        a
    }

    fn text(&self, ring: &[&str]) -> String {
        labs::agent(&self.dir, self.gossip, self.backend.port)
            .replace(&format!("encryption_key: \"{KEY}\""), &ring_yaml(ring))
            .replace(
                "address: 127.0.0.1, port",
                &format!("address: 127.0.0.1, advertise_address: {}, port", self.addr),
            )
    }

    fn config(&self) -> PathBuf {
        self.dir.join("agent.yaml")
    }

    fn write(&self, ring: &[&str]) {
        common::write_private(&self.config(), &self.text(ring));
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("agent.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        self.proc
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGHUP, and waits until the log has `needle` once more than before.
    fn hup_until(&self, needle: &str) {
        let before = count(&self.log_path(), needle);
        signal(&self.proc, libc::SIGHUP);
        assert!(
            wait_for(Duration::from_secs(10), || count(&self.log_path(), needle)
                > before),
            "{needle:?} after SIGHUP\n{}",
            self.log()
        );
    }

    fn set_drain(&mut self, on: bool) {
        let file = self.dir.join("drain");
        if on {
            std::fs::File::create(&file).expect("drain file");
        } else {
            std::fs::remove_file(&file).expect("drain file gone");
        }
        self.drained = on;
    }

    /// SIGTERM; what it said it sent.
    fn stop(&mut self) -> Stopped {
        assert!(terminate(&mut self.proc), "a clean exit\n{}", self.log());
        let log = self.log();
        let line = log
            .lines()
            .find(|l| l.contains("agent stopped"))
            .unwrap_or_else(|| panic!("the agent's last words\n{log}"));
        let field = |name: &str| -> u64 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}="))?.parse().ok())
                .unwrap_or_else(|| panic!("{name} in {line}"))
        };
        Stopped {
            reports_sent: field("reports_sent"),
            datagrams_sent: field("datagrams_sent"),
            dropped: field("dropped"),
        }
    }
}

/// The overwatch (userspace DNS, API, metrics, gossip on loopback).
struct Overwatch {
    dir: PathBuf,
    dns: u16,
    api: SocketAddr,
    metrics: SocketAddr,
    gossip: u16,
    proc: Proc,
}

impl Overwatch {
    fn start(dir: &Path, ring: &[&str]) -> Self {
        let mut ow = Self {
            dir: dir.to_path_buf(),
            dns: common::free_port(),
            api: SocketAddr::from((Ipv4Addr::LOCALHOST, common::free_port())),
            metrics: SocketAddr::from((Ipv4Addr::LOCALHOST, common::free_port())),
            gossip: common::free_port(),
            proc: Proc { child: None },
        };
        ow.write(ring);
        ow.proc = labs::spawn(bin(), dir, "overwatch");
        labs::wait_ready(ow.api, || ow.log());
        ow
    }

    fn write(&self, ring: &[&str]) {
        let text = format!(
            "{}metrics: {{ enabled: true, address: \"{}\" }}\n",
            labs::overwatch(&self.dir, self.dns, self.api, self.gossip, ""),
            self.metrics
        )
        .replace(&format!("encryption_key: \"{KEY}\""), &ring_yaml(ring));
        common::write_private(&self.dir.join("overwatch.yaml"), &text);
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("overwatch.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Writes `ring`, SIGHUPs, and waits until the gossip node took it.
    fn rotate(&self, ring: &[&str]) {
        const DONE: &str = "gossip key ring replaced";
        self.write(ring);
        let before = count(&self.log_path(), DONE);
        signal(&self.proc, libc::SIGHUP);
        assert!(
            wait_for(Duration::from_secs(10), || count(&self.log_path(), DONE)
                > before),
            "the overwatch took the ring {ring:?}\n{}",
            self.log()
        );
    }

    /// Every opened report that met a refusal, and every datagram dropped, by name (0s left out).
    fn refusals(&self) -> Vec<(String, u64)> {
        let text = call(self.metrics, "GET", "/metrics", &[], None).1;
        let sample = |s: String| {
            text.lines()
                .find_map(|l| l.strip_prefix(&s)?.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        REFUSALS
            .iter()
            .map(|r| {
                (
                    format!("report {r}"),
                    sample(format!("opengslb_agent_reports_total{{result=\"{r}\"}}")),
                )
            })
            .chain(DROPS.iter().map(|r| {
                (
                    format!("datagram {r}"),
                    sample(format!("opengslb_gossip_dropped_total{{reason=\"{r}\"}}")),
                )
            }))
            .filter(|(_, n)| *n != 0)
            .collect()
    }

    /// The reason the API gives for the backend at `addr`, if it knows it.
    fn reason(&self, addr: Ipv4Addr) -> Option<String> {
        let (status, body) = call(
            self.api,
            "GET",
            "/api/v1/overwatch/backends?service=app.demo.local",
            &[],
            None,
        );
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["backends"]
            .as_array()?
            .iter()
            .find(|b| b["address"] == addr.to_string())
            .and_then(|b| b["reason"].as_str().map(str::to_owned))
    }
}

/// What DNS should answer: the static servers and every agent that is not drained.
fn expected(agents: &[Agent]) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = STATIC
        .iter()
        .copied()
        .chain(agents.iter().filter(|a| !a.drained).map(|a| a.addr))
        .collect();
    v.sort();
    v
}

/// Waits until DNS answers `want` and the API gives agent `i` the reason its drain state calls for;
/// how long it took, or a failure past [`AT_ONCE`].
fn shows(ow: &Overwatch, dns: &mut Asker, agents: &[Agent], i: usize, since: Instant) -> Duration {
    let want = expected(agents);
    let reason = if agents[i].drained {
        "agent_draining"
    } else {
        "healthy"
    };
    let mut last = None;
    let ok = wait_every(Duration::from_millis(20), AT_ONCE, || {
        last = dns.a("app.demo.local", false);
        last.as_ref() == Some(&want) && ow.reason(agents[i].addr).as_deref() == Some(reason)
    });
    let took = since.elapsed();
    assert!(
        ok,
        "agent {i} drained={} shows in DNS and the API within {AT_ONCE:?}: DNS {last:?}, want {want:?}, API {:?}\n{}",
        agents[i].drained,
        ow.reason(agents[i].addr),
        ow.log()
    );
    took
}

#[test]
fn a_key_rotation_under_load_loses_no_report_and_shuts_out_the_old_key() {
    let started = Instant::now();
    let dir = TempDir::new("rotation");
    let ow = Overwatch::start(&dir.0, &[KEY]);
    let mut agents: Vec<Agent> = (0..AGENTS)
        .map(|i| {
            Agent::start(
                &dir.0,
                i,
                ow.gossip,
                Ipv4Addr::new(192, 0, 2, 101 + i as u8),
                &[KEY],
            )
        })
        .collect();
    let mut dns = Asker::new(SocketAddr::from((Ipv4Addr::LOCALHOST, ow.dns)));
    let all = expected(&agents);
    assert!(
        wait_for(Duration::from_secs(30), || dns
            .a("app.demo.local", false)
            .as_ref()
            == Some(&all)),
        "every agent's backend in DNS: {:?}, want {all:?}\n{}",
        dns.a("app.demo.local", false),
        ow.log()
    );
    assert_eq!(ow.refusals(), [], "nothing refused before the rotation");
    let mut load = Load::start(ow.gossip, &[KEY]);
    assert!(
        wait_for(Duration::from_secs(10), || reports(ow.metrics, "applied")
            > 5 * LOAD_SENDERS as u64),
        "the load's reports are applied\n{}",
        ow.log()
    );

    // The rotation. In each step the overwatch goes first, then the synthetic agents, then the real
    // ones one by one; around every SIGHUP an agent's drain is toggled and must show at once, and
    // reports keep flowing for one report interval before the next SIGHUP.
    let hold = Duration::from_millis(300);
    let rotation = Instant::now();
    let mut toggles: Vec<Duration> = Vec::new();
    let steps: [(&str, &[&str]); 3] = [
        ("a: the new key second", &[KEY, NEW_KEY]),
        ("b: the new key first", &[NEW_KEY, KEY]),
        ("c: the old key removed", &[NEW_KEY]),
    ];
    for (s, (step, ring)) in steps.iter().enumerate() {
        let x = s % AGENTS;
        let flipped = !agents[x].drained;
        agents[x].set_drain(flipped);
        let t = Instant::now();
        ow.rotate(ring);
        toggles.push(shows(&ow, &mut dns, &agents, x, t));
        thread::sleep(hold);
        load.rotate(ring);
        for j in 0..AGENTS {
            agents[j].write(ring);
            let x = (j + s + 1) % AGENTS;
            let flipped = !agents[x].drained;
            agents[x].set_drain(flipped);
            let t = Instant::now();
            agents[j].hup_until("SIGHUP: gossip key ring applied");
            toggles.push(shows(&ow, &mut dns, &agents, x, t));
            thread::sleep(hold);
        }
        assert_eq!(ow.refusals(), [], "nothing refused after step {step}");
        println!(
            "step {step}: done at {:?}, {} reports applied so far (the metrics lag up to 1 s)",
            rotation.elapsed(),
            reports(ow.metrics, "applied")
        );
    }
    let rotation = rotation.elapsed();
    for a in &mut agents {
        assert!(a.alive(), "{}", a.log());
        assert!(
            !a.log().contains("need a restart"),
            "a ring change needs no restart\n{}",
            a.log()
        );
    }
    assert!(
        !ow.log().contains("need a restart"),
        "a ring change needs no restart\n{}",
        ow.log()
    );

    // An agent still on the old key, as from a forgotten config: shut out, every datagram counted,
    // never in DNS.
    let stale_addr = Ipv4Addr::new(192, 0, 2, 200);
    let mut stale = Agent::start(&dir.0, AGENTS, ow.gossip, stale_addr, &[KEY]);
    let mut leaked = false;
    assert!(
        wait_for(Duration::from_secs(15), || {
            leaked |= dns
                .a("app.demo.local", false)
                .is_some_and(|v| v.contains(&stale_addr));
            stale.log().contains("status=\"healthy\"") && dropped(ow.metrics, "no_key_opens") >= 10
        }),
        "the stale agent checked its backend and reported; its datagrams were refused\n{}",
        stale.log()
    );
    assert!(!leaked, "the stale agent's backend never reached DNS");
    assert_eq!(ow.reason(stale_addr), None, "the API never heard of it");
    let stale_said = stale.stop();
    let refused_ok = wait_for(AT_ONCE, || {
        dropped(ow.metrics, "no_key_opens") == stale_said.datagrams_sent
    });
    let refused = dropped(ow.metrics, "no_key_opens");
    assert!(
        refused_ok,
        "every datagram of the stale agent refused and counted: {refused} of {stale_said:?}"
    );

    // Every report the agents sent was applied: their own count on exit against the overwatch's.
    let load_sent = load.stop();
    let mut sent = load_sent;
    for a in &mut agents {
        let said = a.stop();
        assert_eq!(said.dropped, 0, "the agent opened everything\n{}", a.log());
        sent += said.reports_sent;
    }
    let accounted = || reports(ow.metrics, "applied") + reports(ow.metrics, "left");
    let all_in = wait_for(AT_ONCE, || accounted() >= sent);
    let (applied, left) = (reports(ow.metrics, "applied"), reports(ow.metrics, "left"));
    println!(
        "{AGENTS} agents and {LOAD_SENDERS} synthetic ones, rotation in {rotation:?}: {sent} reports sent \
         ({load_sent} by the synthetic agents), {applied} applied, {left} leaving; \
         {} drains toggled, each in DNS and the API within {:?} (median {:?}); the stale agent's {} datagrams \
         ({} reports) all refused; test {:?}",
        toggles.len(),
        toggles.iter().max().copied().unwrap_or_default(),
        {
            let mut t = toggles.clone();
            t.sort();
            t.get(t.len() / 2).copied().unwrap_or_default()
        },
        stale_said.datagrams_sent,
        stale_said.reports_sent,
        started.elapsed()
    );
    assert!(
        all_in,
        "every report arrived: {sent} sent, {applied} + {left} accounted"
    );
    assert_eq!(applied + left, sent, "no report counted twice or made up");
    assert_eq!(
        ow.refusals(),
        [(
            "datagram no_key_opens".to_owned(),
            stale_said.datagrams_sent
        )],
        "the stale agent's datagrams are the only ones refused"
    );
    assert!(stale_said.reports_sent > 0);
    common::http::promtool_check(&call(ow.metrics, "GET", "/metrics", &[], None).1);
}

#[test]
fn an_agent_refuses_a_config_it_cannot_load_on_sighup_and_keeps_reporting() {
    let dir = TempDir::new("agent-reload");
    let ow = Overwatch::start(&dir.0, &[KEY]);
    let mut agent = Agent::start(&dir.0, 0, ow.gossip, Ipv4Addr::new(192, 0, 2, 101), &[KEY]);
    let mut dns = Asker::new(SocketAddr::from((Ipv4Addr::LOCALHOST, ow.dns)));
    let agents = std::slice::from_ref(&agent);
    assert!(
        wait_for(Duration::from_secs(30), || dns.a("app.demo.local", false)
            == Some(expected(agents))),
        "the agent's backend in DNS\n{}",
        agent.log()
    );
    let good = agent.text(&[KEY]);
    const REFUSED: &str = "SIGHUP: the new config is refused; keeping the running one";
    let cases: [(&str, String); 4] = [
        ("not YAML", "agent: [unclosed\n".to_owned()),
        (
            "an unknown key",
            good.replace("agent:\n", "agent:\n  colour: blue\n"),
        ),
        (
            "a key that is not base64 of 32 bytes",
            good.replace(KEY, "bm90IGEga2V5"),
        ),
        (
            "no backend",
            good.lines()
                .filter(|l| !l.trim_start().starts_with("- {"))
                .map(|l| {
                    if l == "  backends:" {
                        "  backends: []"
                    } else {
                        l
                    }
                })
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    ];
    for (what, text) in &cases {
        common::write_private(&agent.config(), text);
        let applied = reports(ow.metrics, "applied");
        agent.hup_until(REFUSED);
        assert!(agent.alive(), "{what}: still running\n{}", agent.log());
        assert!(
            wait_for(AT_ONCE, || reports(ow.metrics, "applied") > applied + 2),
            "{what}: still reporting\n{}",
            agent.log()
        );
    }
    // Readable by others: refused too, as at start.
    common::write_private(&agent.config(), &agent.text(&[KEY, NEW_KEY]));
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(agent.config(), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
    }
    agent.hup_until(REFUSED);
    assert!(
        !agent.log().contains("gossip key ring applied"),
        "a refused file changes nothing\n{}",
        agent.log()
    );
    // Other changes are named and wait for a restart; the ring that came with them is applied.
    let moved = agent
        .text(&[KEY, NEW_KEY])
        .replace("interval: 1s", "interval: 2s");
    common::write_private(&agent.config(), &moved);
    agent.hup_until("gossip key ring applied");
    let log = agent.log();
    assert!(
        log.lines()
            .any(|l| l.contains("need a restart") && l.contains("agent.backends")),
        "the change is named\n{log}"
    );
    // Still reporting, and a drain still shows at once.
    assert!(agent.alive(), "{}", agent.log());
    agent.set_drain(true);
    let t = Instant::now();
    let took = shows(&ow, &mut dns, std::slice::from_ref(&agent), 0, t);
    println!(
        "{} bad configs refused on SIGHUP, the agent kept running; a drain after them in DNS in {took:?}",
        cases.len() + 1
    );
    assert_eq!(ow.refusals(), [], "nothing refused at the overwatch");
}

#[test]
fn an_agent_left_out_of_the_rotation_is_out_once_the_old_key_goes_and_back_with_a_sighup() {
    let dir = TempDir::new("rotation-forgotten");
    let ow = Overwatch::start(&dir.0, &[KEY]);
    let mut agents: Vec<Agent> = (0..2)
        .map(|i| {
            Agent::start(
                &dir.0,
                i,
                ow.gossip,
                Ipv4Addr::new(192, 0, 2, 101 + i as u8),
                &[KEY],
            )
        })
        .collect();
    let mut dns = Asker::new(SocketAddr::from((Ipv4Addr::LOCALHOST, ow.dns)));
    let all = expected(&agents);
    assert!(
        wait_for(Duration::from_secs(30), || dns
            .a("app.demo.local", false)
            .as_ref()
            == Some(&all)),
        "both agents in DNS\n{}",
        ow.log()
    );
    let forgotten = agents[1].addr;
    // Steps a and b skip agent 1: it still seals with the old key, which every ring still opens.
    for ring in [&[KEY, NEW_KEY][..], &[NEW_KEY, KEY][..]] {
        ow.rotate(ring);
        agents[0].write(ring);
        agents[0].hup_until("SIGHUP: gossip key ring applied");
    }
    // Longer than the 0.9 s after which a silent agent is dead: its reports still arrive.
    thread::sleep(Duration::from_secs(2));
    assert_eq!(dns.a("app.demo.local", false), Some(all.clone()));
    assert_eq!(ow.reason(forgotten).as_deref(), Some("healthy"));
    assert_eq!(
        ow.refusals(),
        [],
        "nothing refused while the old key is in every ring"
    );
    // Step c: its reports no longer open, and it is out as a dead agent; the other stays.
    ow.rotate(&[NEW_KEY]);
    let t = Instant::now();
    let mut without: Vec<Ipv4Addr> = STATIC.iter().copied().chain([agents[0].addr]).collect();
    without.sort();
    assert!(
        wait_for(AT_ONCE, || dns.a("app.demo.local", false).as_ref()
            == Some(&without)
            && ow.reason(forgotten).as_deref() == Some("agent_dead")),
        "the forgotten agent out: DNS {:?}, API {:?}\n{}",
        dns.a("app.demo.local", false),
        ow.reason(forgotten),
        ow.log()
    );
    let out_after = t.elapsed();
    assert!(dropped(ow.metrics, "no_key_opens") > 0);
    assert_eq!(ow.reason(agents[0].addr).as_deref(), Some("healthy"));
    // Its SIGHUP brings it back, no restart needed.
    agents[1].write(&[NEW_KEY]);
    let t = Instant::now();
    agents[1].hup_until("SIGHUP: gossip key ring applied");
    let back = shows(&ow, &mut dns, &agents, 1, t);
    println!(
        "an agent left out of steps a and b: in DNS through them, out {out_after:?} after step c \
         ({} of its datagrams refused), back {back:?} after its SIGHUP",
        dropped(ow.metrics, "no_key_opens")
    );
    for a in &mut agents {
        assert!(a.alive(), "{}", a.log());
    }
}
