//! SIGHUP reloads under query load: no query is dropped or answered wrongly while the config changes.
//!
//! In a network namespace of its own, the overwatch (XDP on lo in skb mode, the userspace server on
//! 127.0.0.1:53) serves three names: `stable.lab.test`, which never changes; `moving.lab.test`, whose
//! records alternate between two sets on every reload; `blinking.lab.test`, present in every other
//! config. A reloader thread rewrites the config (atomically: a temporary file renamed over it) and sends
//! SIGHUP, a fixed number of times, each once the previous one is logged as reloaded and 100 ms have
//! passed, while client threads in the namespace send a mix of queries: plain A/AAAA (answered by XDP),
//! the same with EDNS Client Subnet (passed by XDP, answered by userspace), SOA, NXDOMAIN names, and now
//! and then the same over TCP. Each query gets one try with a 5 s timeout: a timeout is a dropped query. Every reply must carry our ID and question, and be exactly one of the states the config has
//! ever had: the stable set, moving's set X or set Y (never a mix, never empty), blinking's records or
//! NXDOMAIN with the SOA; `moving` has no AAAA, so its AAAA queries get NODATA throughout.
//!
//! Needs root: `cargo xtask test` runs it (`--ignored`). All traffic stays inside the namespace.

mod common;

use std::{
    collections::BTreeMap,
    fmt,
    io::{ErrorKind, Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket},
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use aya::programs::xdp::XdpMode;
use common::{
    netns::{Netns, Proc, TempDir, wait_for},
    rng::Rng,
};
use hickory_proto::{
    op::{Edns, Message, MessageType, Query, ResponseCode},
    rr::{Name, RData, RecordType},
};
use opengslb::xdp::{Counters, link_pin, pin_dir};
use opengslb_common::counters::Counter;

const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53);
/// The SIGHUPs sent; the load runs until the last one is reloaded.
const RELOADS: u32 = 30;
/// A cap on the run, for a failure only (generous: the reloads take a few seconds).
const RUN: Duration = Duration::from_secs(60);
/// How long each reloaded config is served before the next SIGHUP (pacing, not a wait for anything).
const RELOAD_EVERY: Duration = Duration::from_millis(100);
/// How long a SIGHUP may take to be logged as reloaded (generous: waiting costs time only on failure).
const RELOAD_WAIT: Duration = Duration::from_secs(5);
const CLIENTS: usize = 4;
const MAX_QUERIES_PER_CLIENT: u64 = 50_000;
/// One try per query: no reply within this is a dropped query. Generous, so a slow machine is not taken
/// for a dropped query; a reply that comes later still is caught by the ID check of the next query.
const TIMEOUT: Duration = Duration::from_secs(5);
/// One query in this many goes over TCP (a connection of its own).
const TCP_ONE_IN: u64 = 20;

const STABLE_V4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(192, 0, 2, 1),
    Ipv4Addr::new(192, 0, 2, 2),
    Ipv4Addr::new(192, 0, 2, 3),
];
const STABLE_V6: [Ipv6Addr; 3] = [
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3),
];
const SET_X: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(192, 0, 2, 11)];
const SET_Y: [Ipv4Addr; 3] = [
    Ipv4Addr::new(192, 0, 2, 20),
    Ipv4Addr::new(192, 0, 2, 21),
    Ipv4Addr::new(192, 0, 2, 22),
];
const BLINKING: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 2, 30), Ipv4Addr::new(192, 0, 2, 31)];

/// The config of reload `generation`: even ones have set X and `blinking`, odd ones set Y and no
/// `blinking`. Backends are documentation addresses and validation is off: nothing is probed.
fn config(generation: u32) -> String {
    let even = generation.is_multiple_of(2);
    let server = |addr: String, service: &str| {
        format!("      - {{ address: \"{addr}\", service: {service} }}\n")
    };
    let mut servers = String::new();
    for a in STABLE_V4 {
        servers += &server(a.to_string(), "stable.lab.test");
    }
    for a in STABLE_V6 {
        servers += &server(a.to_string(), "stable.lab.test");
    }
    let moving: &[Ipv4Addr] = if even { &SET_X } else { &SET_Y };
    for a in moving {
        servers += &server(a.to_string(), "moving.lab.test");
    }
    let mut domains = String::new();
    for name in ["stable.lab.test", "moving.lab.test"] {
        domains += &format!(
            "  - {{ name: {name}, routing_algorithm: round-robin, regions: [lab], ttl: 1, max_answers: 16 }}\n"
        );
    }
    if even {
        for a in BLINKING {
            servers += &server(a.to_string(), "blinking.lab.test");
        }
        domains += "  - { name: blinking.lab.test, routing_algorithm: round-robin, regions: [lab], ttl: 1, max_answers: 16 }\n";
    }
    format!(
        r#"# generation {generation}
mode: overwatch
overwatch: {{ validation: {{ enabled: false }} }}
dns:
  listen_address: "127.0.0.1:53"
  zones: [lab.test]
  default_ttl: 1
  xdp: {{ interfaces: [lo], mode: skb }}
regions:
  - name: lab
    servers:
{servers}domains:
{domains}"#
    )
}

/// Writes the config the way an operator's tooling should: a temporary file in the same directory,
/// renamed over the old one, so a reload never reads half a file.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).expect("write the temporary config");
    std::fs::rename(&tmp, path).expect("rename the config into place");
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// Plain A/AAAA: answered by XDP over UDP.
    StableA,
    StableAaaa,
    MovingA,
    /// No AAAA records: NODATA, from userspace.
    MovingAaaa,
    BlinkingA,
    /// With EDNS Client Subnet: passed by XDP, answered by userspace.
    StableEcs,
    MovingEcs,
    BlinkingEcs,
    /// The zone's SOA.
    Soa,
    /// A name that never exists.
    NxDomain,
}

/// The mix, with weights.
const MIX: [(Kind, u64); 10] = [
    (Kind::StableA, 16),
    (Kind::StableAaaa, 10),
    (Kind::MovingA, 20),
    (Kind::MovingAaaa, 4),
    (Kind::BlinkingA, 10),
    (Kind::StableEcs, 8),
    (Kind::MovingEcs, 12),
    (Kind::BlinkingEcs, 6),
    (Kind::Soa, 4),
    (Kind::NxDomain, 10),
];

impl Kind {
    fn pick(rng: &mut Rng) -> Self {
        let total: u64 = MIX.iter().map(|(_, w)| w).sum();
        let mut r = rng.below(total);
        for (k, w) in MIX {
            if r < w {
                return k;
            }
            r -= w;
        }
        unreachable!()
    }

    fn qtype(self) -> RecordType {
        match self {
            Self::StableAaaa | Self::MovingAaaa => RecordType::AAAA,
            Self::Soa => RecordType::SOA,
            _ => RecordType::A,
        }
    }

    fn ecs(self) -> bool {
        matches!(self, Self::StableEcs | Self::MovingEcs | Self::BlinkingEcs)
    }

    fn name(self, rng: &mut Rng) -> String {
        let base = match self {
            Self::StableA | Self::StableAaaa | Self::StableEcs => "stable.lab.test.".to_string(),
            Self::MovingA | Self::MovingAaaa | Self::MovingEcs => "moving.lab.test.".to_string(),
            Self::BlinkingA | Self::BlinkingEcs => "blinking.lab.test.".to_string(),
            Self::Soa => "lab.test.".to_string(),
            Self::NxDomain => format!("nope-{}.lab.test.", rng.below(1000)),
        };
        rng.random_case(&base)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Transport {
    Udp,
    Tcp,
}

/// What a correct reply was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    Stable,
    SetX,
    SetY,
    Blinking,
    BlinkingGone,
    NoData,
    Soa,
    NxDomain,
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::Stable => "stable set",
            Self::SetX => "set X",
            Self::SetY => "set Y",
            Self::Blinking => "blinking's records",
            Self::BlinkingGone => "NXDOMAIN (blinking gone)",
            Self::NoData => "NODATA",
            Self::Soa => "SOA",
            Self::NxDomain => "NXDOMAIN",
        };
        f.write_str(s)
    }
}

/// The query for `kind`: RD at random; ECS kinds carry Client Subnet, the others a bare OPT half the time.
fn query(id: u16, name: &str, kind: Kind, rng: &mut Rng) -> Message {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = rng.coin();
    m.add_query(Query::query(
        Name::from_ascii(name).expect("name"),
        kind.qtype(),
    ));
    if kind.ecs() {
        m.set_edns(common::dnsq::ecs_edns());
    } else if rng.coin() {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m
}

fn sorted<T: Ord + Copy>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// The zone's SOA in the authority section, alone: what a negative answer carries.
fn negative_soa(r: &Message) -> Result<(), String> {
    if !r.answers.is_empty() {
        return Err(format!("answers in a negative reply: {:?}", r.answers));
    }
    match r.authorities.as_slice() {
        [soa]
            if matches!(soa.data, RData::SOA(_))
                && soa.name == Name::from_ascii("lab.test.").unwrap() =>
        {
            Ok(())
        }
        other => Err(format!("authority section not the zone's SOA: {other:?}")),
    }
}

/// Checks a reply against the question and the states the config has had.
fn check(kind: Kind, q: &Message, r: &Message) -> Result<Seen, String> {
    let question = &q.queries[0];
    if r.metadata.message_type != MessageType::Response {
        return Err("QR=0".into());
    }
    if r.metadata.truncation {
        return Err("TC=1".into());
    }
    if !r.metadata.authoritative {
        return Err("AA=0".into());
    }
    match r.queries.as_slice() {
        [rq] if rq.name.eq_case(&question.name) && rq.query_type == question.query_type => {}
        other => return Err(format!("question not echoed: {other:?}")),
    }
    let rcode = r.metadata.response_code;
    let v4: Vec<Ipv4Addr> = r
        .answers
        .iter()
        .filter_map(|a| match &a.data {
            RData::A(x) => Some(x.0),
            _ => None,
        })
        .collect();
    let v6: Vec<Ipv6Addr> = r
        .answers
        .iter()
        .filter_map(|a| match &a.data {
            RData::AAAA(x) => Some(x.0),
            _ => None,
        })
        .collect();
    if kind.qtype() != RecordType::SOA
        && let Some(bad) = r
            .answers
            .iter()
            .find(|a| !a.name.eq_case(&question.name) || a.record_type() != question.query_type)
    {
        return Err(format!("answer record not for the question: {bad:?}"));
    }
    let a_set = |want: &[Ipv4Addr], seen: Seen| -> Result<Seen, String> {
        if rcode == ResponseCode::NoError && sorted(&v4) == sorted(want) {
            Ok(seen)
        } else {
            Err(String::new())
        }
    };
    let verdict = match kind {
        Kind::StableA | Kind::StableEcs => a_set(&STABLE_V4, Seen::Stable),
        Kind::StableAaaa => {
            if rcode == ResponseCode::NoError && sorted(&v6) == sorted(&STABLE_V6) {
                Ok(Seen::Stable)
            } else {
                Err(String::new())
            }
        }
        Kind::MovingA | Kind::MovingEcs => {
            a_set(&SET_X, Seen::SetX).or_else(|_| a_set(&SET_Y, Seen::SetY))
        }
        Kind::MovingAaaa | Kind::BlinkingA | Kind::BlinkingEcs | Kind::NxDomain
            if rcode != ResponseCode::NoError =>
        {
            match (kind, rcode) {
                (Kind::BlinkingA | Kind::BlinkingEcs, ResponseCode::NXDomain) => {
                    negative_soa(r).map(|()| Seen::BlinkingGone)
                }
                (Kind::NxDomain, ResponseCode::NXDomain) => {
                    negative_soa(r).map(|()| Seen::NxDomain)
                }
                _ => Err(String::new()),
            }
        }
        Kind::MovingAaaa => negative_soa(r).map(|()| Seen::NoData),
        Kind::BlinkingA | Kind::BlinkingEcs => a_set(&BLINKING, Seen::Blinking),
        Kind::NxDomain => Err(String::new()),
        Kind::Soa => match r.answers.as_slice() {
            [soa] if rcode == ResponseCode::NoError && matches!(soa.data, RData::SOA(_)) => {
                Ok(Seen::Soa)
            }
            _ => Err(String::new()),
        },
    };
    verdict.map_err(|why| {
        format!(
            "{why}{}rcode {rcode:?}, answers {v4:?} {v6:?}, {} other answers, authorities {:?}",
            if why.is_empty() { "" } else { "; " },
            r.answers.len() - v4.len() - v6.len(),
            r.authorities
        )
    })
}

/// One UDP exchange, one try: `Err` is a dropped query (or a socket error).
fn ask_udp(sock: &UdpSocket, q: &[u8], id: u16) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + TIMEOUT;
    sock.send(q).map_err(|e| format!("send: {e}"))?;
    let mut buf = [0u8; 4096];
    let mut strays = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("timeout: dropped (other replies: {strays:?})"));
        }
        sock.set_read_timeout(Some(left)).expect("timeout");
        match sock.recv(&mut buf) {
            Ok(n) if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id => {
                if strays.is_empty() {
                    return Ok(buf[..n].to_vec());
                }
                return Err(format!("replies with other IDs before ours: {strays:?}"));
            }
            // Not our ID (a late reply to an earlier query would be here): a failure, but we keep
            // waiting for ours, so one failure does not cascade into the next queries.
            Ok(n) => strays.push(buf[..n.min(2)].to_vec()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!("timeout: dropped (other replies: {strays:?})"));
            }
            Err(e) => return Err(format!("recv: {e}")),
        }
    }
}

/// One TCP exchange on a connection of its own, one try.
fn ask_tcp(q: &[u8], id: u16) -> Result<Vec<u8>, String> {
    let mut s =
        TcpStream::connect_timeout(&SERVER, TIMEOUT).map_err(|e| format!("tcp connect: {e}"))?;
    s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    s.set_write_timeout(Some(TIMEOUT)).expect("timeout");
    let mut framed = u16::try_from(q.len()).unwrap().to_be_bytes().to_vec();
    framed.extend_from_slice(q);
    s.write_all(&framed)
        .map_err(|e| format!("tcp write: {e}"))?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)
        .map_err(|e| format!("tcp read (timeout: dropped): {e}"))?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut msg)
        .map_err(|e| format!("tcp read: {e}"))?;
    if msg.len() < 2 || u16::from_be_bytes([msg[0], msg[1]]) != id {
        return Err(format!("tcp reply with another ID: {:?}", msg.get(..2)));
    }
    Ok(msg)
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    sent: BTreeMap<(Kind, Transport), u64>,
    seen: BTreeMap<(Kind, Seen), u64>,
    dropped: u64,
    wrong: u64,
    failures: Vec<String>,
}

impl Tally {
    fn fail(&mut self, dropped: bool, what: String) {
        if dropped {
            self.dropped += 1;
        } else {
            self.wrong += 1;
        }
        if self.failures.len() < 20 {
            self.failures.push(what);
        }
    }

    fn merge(&mut self, o: Self) {
        for (k, n) in o.sent {
            *self.sent.entry(k).or_default() += n;
        }
        for (k, n) in o.seen {
            *self.seen.entry(k).or_default() += n;
        }
        self.dropped += o.dropped;
        self.wrong += o.wrong;
        self.failures.extend(o.failures);
        self.failures.truncate(20);
    }

    fn seen(&self, kind: Kind, s: Seen) -> u64 {
        self.seen.get(&(kind, s)).copied().unwrap_or(0)
    }
}

/// A client's run, on the calling thread (which is in the namespace): until `stop`, the deadline or
/// its query budget.
fn client(seed: u64, deadline: Instant, stop: &AtomicBool) -> Tally {
    let mut rng = Rng::new(seed);
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    sock.connect(SERVER).expect("connect");
    let mut t = Tally::default();
    for n in 0..MAX_QUERIES_PER_CLIENT {
        if Instant::now() >= deadline || stop.load(Ordering::Relaxed) {
            break;
        }
        let kind = Kind::pick(&mut rng);
        let transport = if rng.below(TCP_ONE_IN) == 0 {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        let id = rng.next_u64() as u16;
        let name = kind.name(&mut rng);
        let q = query(id, &name, kind, &mut rng);
        let bytes = q.to_vec().expect("encode");
        *t.sent.entry((kind, transport)).or_default() += 1;
        let reply = match transport {
            Transport::Udp => ask_udp(&sock, &bytes, id),
            Transport::Tcp => ask_tcp(&bytes, id),
        };
        let what = |e: &str| format!("#{n} {kind:?} {transport:?} {name} id {id}: {e}");
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                t.fail(e.contains("dropped"), what(&e));
                continue;
            }
        };
        let r = match Message::from_vec(&reply) {
            Ok(r) => r,
            Err(e) => {
                t.fail(false, what(&format!("unparseable reply: {e}")));
                continue;
            }
        };
        match check(kind, &q, &r) {
            Ok(seen) => *t.seen.entry((kind, seen)).or_default() += 1,
            Err(e) => t.fail(false, what(&e)),
        }
    }
    t
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Whether process `pid` has a handler for SIGHUP (before it has, SIGHUP would kill it).
fn catches_sighup(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|m| m & (1 << (libc::SIGHUP - 1)) != 0)
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn reloads_under_query_load_drop_nothing_and_answer_only_published_states() {
    common::require_root();
    let ns = Netns::new("reload");
    let dir = TempDir::new("reload");
    let cfg = dir.0.join("overwatch.yaml");
    write_atomically(&cfg, &config(0));
    let bpffs_root =
        Path::new("/sys/fs/bpf").join(format!("ogs-test-{}-reload", std::process::id()));
    let mut cmd = ns.command(Path::new(env!("CARGO_BIN_EXE_opengslb")));
    cmd.args(["overwatch", "--detach-on-exit", "--config"])
        .arg(&cfg)
        .arg("--bpffs-root")
        .arg(&bpffs_root);
    let log = dir.0.join("overwatch.log");
    let mut server = Proc::spawn(cmd, &log);
    let pid = server.child.as_ref().expect("running").id();
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    let reloads_logged = || logged().matches("SIGHUP: config reloaded").count();

    // Ready: XDP attached, the userspace server answering, and SIGHUP handled.
    let link_pin = link_pin(&bpffs_root, "lo", XdpMode::Skb);
    let ready = wait_for(Duration::from_secs(20), || {
        link_pin.exists()
            && catches_sighup(pid)
            && ns.enter(|| {
                let mut rng = Rng::new(1);
                let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
                sock.connect(SERVER).unwrap();
                [Kind::StableA, Kind::StableEcs].iter().all(|&k| {
                    let q = query(1, "stable.lab.test.", k, &mut rng);
                    ask_udp(&sock, &q.to_vec().unwrap(), 1)
                        .ok()
                        .and_then(|b| Message::from_vec(&b).ok())
                        .is_some_and(|r| check(k, &q, &r) == Ok(Seen::Stable))
                })
            })
    });
    assert!(ready, "the overwatch did not come up: {}", logged());
    let before = Counters::read_pinned(&pin_dir(&bpffs_root)).expect("counters");

    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let deadline = started + RUN;
    let (tally, reloads) = thread::scope(|s| {
        // Each SIGHUP once the previous one is reloaded (signals sent faster than they are handled
        // would merge); the clients stop when the reloader is done.
        let reloader = s.spawn(|| {
            let mut sent = 0u32;
            for generation in 1..=RELOADS {
                if Instant::now() >= deadline || stop.load(Ordering::Relaxed) {
                    break;
                }
                write_atomically(&cfg, &config(generation));
                // SAFETY: kill on our own child's pid, which has not been reaped.
                assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGHUP) }, 0);
                sent += 1;
                if !wait_for(RELOAD_WAIT, || reloads_logged() >= sent as usize) {
                    break;
                }
                thread::sleep(RELOAD_EVERY);
            }
            stop.store(true, Ordering::Relaxed);
            sent
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let (ns, stop) = (&ns, &stop);
                s.spawn(move || ns.enter(|| client(0x5eed_0000 + i as u64, deadline, stop)))
            })
            .collect();
        let mut total = Tally::default();
        for c in clients {
            match c.join() {
                Ok(t) => total.merge(t),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    std::panic::resume_unwind(e)
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        (total, reloader.join().expect("reloader"))
    });
    let elapsed = started.elapsed();
    let after = Counters::read_pinned(&pin_dir(&bpffs_root)).expect("counters");
    let delta = |c| after.get(c) - before.get(c);
    let text = logged();
    let reloaded = reloads_logged();

    // Totals.
    let sent: u64 = tally.sent.values().sum();
    println!(
        "{sent} queries in {elapsed:.2?} from {CLIENTS} clients ({:.0}/s); {reloads} SIGHUPs sent, \
         {reloaded} reloads logged",
        sent as f64 / elapsed.as_secs_f64()
    );
    for ((kind, transport), n) in &tally.sent {
        println!("  sent {kind:?} over {transport:?}: {n}");
    }
    for ((kind, seen), n) in &tally.seen {
        println!("  {kind:?} answered with {seen}: {n}");
    }
    println!(
        "  XDP answered A {}, AAAA {}; passed for ECS {}, unknown name {}, type {}",
        delta(Counter::AnsweredA),
        delta(Counter::AnsweredAaaa),
        delta(Counter::Ecs),
        delta(Counter::UnknownName),
        delta(Counter::Type)
    );
    println!("  dropped {}, wrong {}", tally.dropped, tally.wrong);

    assert!(
        tally.failures.is_empty() && tally.dropped == 0 && tally.wrong == 0,
        "{} dropped and {} wrong answers; the first ones:\n{}\nthe overwatch's last log lines:\n{}",
        tally.dropped,
        tally.wrong,
        tally.failures.join("\n"),
        tail(&text, 30)
    );
    // The reloads happened, every one of them, and both paths followed them.
    assert!(
        reloads == RELOADS && reloaded == RELOADS as usize,
        "{reloaded} reloads logged for {reloads} of {RELOADS} SIGHUPs (each waited for up to \
         {RELOAD_WAIT:?}, the run capped at {RUN:?}):\n{}",
        tail(&text, 30)
    );
    for (kind, a, b) in [
        (Kind::MovingA, Seen::SetX, Seen::SetY),
        (Kind::MovingEcs, Seen::SetX, Seen::SetY),
        (Kind::BlinkingA, Seen::Blinking, Seen::BlinkingGone),
        (Kind::BlinkingEcs, Seen::Blinking, Seen::BlinkingGone),
    ] {
        assert!(
            tally.seen(kind, a) > 0 && tally.seen(kind, b) > 0,
            "{kind:?} was answered both with {a} and with {b}: each path followed the reloads"
        );
    }
    assert!(delta(Counter::AnsweredA) > 0 && delta(Counter::AnsweredAaaa) > 0);
    assert!(delta(Counter::Ecs) > 0);
    assert!(
        !text.contains("updating the XDP map failed") && !text.contains("is refused"),
        "{}",
        tail(&text, 30)
    );

    assert!(
        server.interrupt(),
        "clean exit on SIGINT:\n{}",
        tail(&logged(), 30)
    );
    assert!(!bpffs_root.exists(), "pins removed");
}
