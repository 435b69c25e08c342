//! Learned latency end to end, from real clients' TCP connections to DNS answers. Two client namespaces
//! (10.1.0.0/24 and 10.2.0.0/24) reach a server namespace holding two backends, A (10.9.0.1) and B
//! (10.9.0.2), one real nginx listening on both, through a router namespace. The router sends B's
//! packets to the first subnet and A's to the second through a delay line of our own (a TUN device,
//! this kernel has no netem), so each subnet is near one backend and far from the other. The clients
//! hold keep-alive connections to both backends; the agent beside nginx reads their round-trip times from
//! the kernel and reports them; the overwatch (a `learned-latency` name, one answer) must send each
//! subnet to its nearer backend, by EDNS Client Subnet and by a query's source address.
//!
//! Needs root: `cargo xtask test` runs it (`--ignored`). All traffic stays inside the namespaces.

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use common::{
    delay::DelayLine,
    dnsq::Asker,
    http,
    labs::KEY,
    netns::{Netns, Proc, TempDir, sh, wait_every},
    nginx::Nginx,
};

/// The one-way delay added between each subnet and its far backend.
const DELAY: Duration = Duration::from_millis(40);
/// How long the whole test may run: the delay line and the clients stop by then whatever happens.
const MAX_RUN: Duration = Duration::from_secs(180);
const A: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
const PORT: u16 = 8080;
const DNS: u16 = 5300;
const GOSSIP: u16 = 7946;
const API: &str = "127.0.0.1:8081";
const TOKEN: &str = "lab-token-0123456789";
/// The agent's learning settings: what the wait below is 3x of.
const POLL_S: u64 = 1;
const MIN_AGE_S: u64 = 1;
const MIN_SAMPLES: u64 = 3;
const REPORT_S: u64 = 2;

/// A veth pair `tag` between `a` (with `addrs_a`) and `b` (with `addr_b`), both up.
fn link(a: &Netns, b: &Netns, tag: &str, addrs_a: &[&str], addr_b: &str) {
    let pid = std::process::id() % 100_000;
    let (da, db) = (format!("ll{pid}{tag}a"), format!("ll{pid}{tag}b"));
    sh(&[
        "ip", "link", "add", &da, "netns", &a.name, "type", "veth", "peer", "name", &db, "netns",
        &b.name,
    ]);
    for addr in addrs_a {
        a.exec(&["ip", "addr", "add", addr, "dev", &da]);
    }
    b.exec(&["ip", "addr", "add", addr_b, "dev", &db]);
    a.exec(&["ip", "link", "set", &da, "up"]);
    b.exec(&["ip", "link", "set", &db, "up"]);
}

/// Keep-alive HTTP connections from a namespace to both backends, each sending a request every 200 ms
/// (so the kernel keeps measuring), until dropped or [`MAX_RUN`].
struct Clients {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<u64>>,
}

impl Clients {
    fn start(ns: &Netns, per_backend: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..per_backend)
            .flat_map(|_| [A, B])
            .map(|backend| {
                let conn = ns.enter(|| {
                    TcpStream::connect_timeout(
                        &SocketAddr::from((backend, PORT)),
                        Duration::from_secs(3),
                    )
                    .expect("a client connects")
                });
                let stop = stop.clone();
                std::thread::spawn(move || keep_asking(conn, &stop))
            })
            .collect();
        Self { stop, threads }
    }

    /// Stops them; returns how many requests were answered.
    fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .drain(..)
            .map(|t| t.join().unwrap_or_default())
            .sum()
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.stop();
    }
}

fn keep_asking(mut conn: TcpStream, stop: &AtomicBool) -> u64 {
    let end = Instant::now() + MAX_RUN;
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let mut answered = 0;
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        if conn
            .write_all(b"GET /health HTTP/1.1\r\nHost: lab\r\n\r\n")
            .is_err()
        {
            break;
        }
        match conn.read(&mut buf) {
            Ok(n) if n > 0 => answered += 1,
            _ => break,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    answered
}

/// The TCP handshake time from `ns` to `to`, the best of three.
fn connect_time(ns: &Netns, to: Ipv4Addr) -> Duration {
    ns.enter(|| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                TcpStream::connect_timeout(&SocketAddr::from((to, PORT)), Duration::from_secs(3))
                    .expect("connect");
                t.elapsed()
            })
            .min()
            .unwrap_or_default()
    })
}

fn overwatch_config(dir: &Path) -> String {
    format!(
        r#"mode: overwatch
logging: {{ format: text }}
overwatch:
  validation: {{ enabled: false }}
  gossip: {{ bind_address: "127.0.0.1:{GOSSIP}", encryption_key: "{KEY}" }}
  agent_tokens: {{ app.lab.test: "{TOKEN}" }}
  data_dir: {data}
dns:
  listen_address: "0.0.0.0:{DNS}"
  zones: [lab.test]
  default_ttl: 5
regions:
  - name: lab
    servers: []
domains:
  - {{ name: app.lab.test, routing_algorithm: learned-latency, regions: [lab], max_answers: 1 }}
api:
  enabled: true
  address: "{API}"
  allowed_networks: [127.0.0.0/8]
"#,
        data = dir.join("data").display(),
    )
}

fn agent_config(dir: &Path) -> String {
    let check = "health_check: { type: tcp, interval: 1s, timeout: 500ms, failure_threshold: 2, success_threshold: 1 }";
    format!(
        r#"mode: agent
logging: {{ format: text }}
agent:
  identity: {{ service_token: "{TOKEN}" }}
  backends:
    - {{ service: app.lab.test, address: {A}, port: {PORT}, {check} }}
    - {{ service: app.lab.test, address: {B}, port: {PORT}, {check} }}
  gossip: {{ encryption_key: "{KEY}", overwatch_nodes: ["127.0.0.1:{GOSSIP}"] }}
  latency_learning:
    enabled: true
    poll_interval: {POLL_S}s
    min_connection_age: {MIN_AGE_S}s
    min_samples: {MIN_SAMPLES}
    report_interval: {REPORT_S}s
  drain_file: {drain}
  control_socket: {socket}
"#,
        drain = dir.join("drain").display(),
        socket = dir.join("agent.sock").display(),
    )
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn clients_in_two_subnets_are_each_sent_to_their_nearer_backend() {
    common::require_root();
    let dir = TempDir::new("ll");
    let c1 = Netns::new("llc1");
    let c2 = Netns::new("llc2");
    let router = Netns::new("llr");
    let srv = Netns::new("lls");
    link(&c1, &router, "c1", &["10.1.0.2/24"], "10.1.0.1/24");
    link(&c2, &router, "c2", &["10.2.0.2/24"], "10.2.0.1/24");
    link(
        &srv,
        &router,
        "s",
        &["10.9.0.1/24", "10.9.0.2/24"],
        "10.9.0.254/24",
    );
    c1.exec(&["ip", "route", "add", "default", "via", "10.1.0.1"]);
    c2.exec(&["ip", "route", "add", "default", "via", "10.2.0.1"]);
    srv.exec(&["ip", "route", "add", "default", "via", "10.9.0.254"]);
    for key in [
        "net.ipv4.ip_forward=1",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
    ] {
        router.exec(&["sysctl", "-qw", key]);
    }
    let dev = format!("ll{}dl", std::process::id() % 100_000);
    let mut line = DelayLine::start(&router, &dev, DELAY, MAX_RUN);
    router.exec(&["sysctl", "-qw", &format!("net.ipv4.conf.{dev}.rp_filter=0")]);
    router.exec(&["ip", "route", "add", "default", "dev", &dev, "table", "100"]);
    router.exec(&[
        "ip", "rule", "add", "pref", "100", "iif", &dev, "lookup", "main",
    ]);
    for (pref, from, to) in [("200", B, "10.1.0.0/24"), ("201", A, "10.2.0.0/24")] {
        router.exec(&[
            "ip",
            "rule",
            "add",
            "pref",
            pref,
            "from",
            &from.to_string(),
            "to",
            to,
            "lookup",
            "100",
        ]);
    }
    let _nginx = Nginx::start(
        &dir.0.join("nginx"),
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT)),
        Some(&srv.name),
    );
    // The delay line works: each subnet is near one backend and DELAY (one way) from the other.
    let near = |ns: &Netns, to| {
        wait_every(Duration::from_millis(100), Duration::from_secs(10), || {
            ns.enter(|| {
                TcpStream::connect_timeout(&SocketAddr::from((to, PORT)), Duration::from_secs(1))
                    .is_ok()
            })
        })
    };
    assert!(near(&c1, A) && near(&c2, B), "nginx is up and routed");
    let times = [
        ("10.1.0.0/24 to A", connect_time(&c1, A)),
        ("10.1.0.0/24 to B", connect_time(&c1, B)),
        ("10.2.0.0/24 to A", connect_time(&c2, A)),
        ("10.2.0.0/24 to B", connect_time(&c2, B)),
    ];
    println!("TCP handshakes through the router: {times:?}");
    assert!(
        times[0].1 < DELAY / 2 && times[3].1 < DELAY / 2,
        "{times:?}"
    );
    assert!(times[1].1 >= DELAY && times[2].1 >= DELAY, "{times:?}");

    let ow_cfg = dir.0.join("overwatch.yaml");
    common::write_private(&ow_cfg, &overwatch_config(&dir.0));
    let agent_cfg = dir.0.join("agent.yaml");
    common::write_private(&agent_cfg, &agent_config(&dir.0));
    let bin = Path::new(env!("CARGO_BIN_EXE_opengslb"));
    let spawn = |mode: &str, cfg: &Path| {
        let mut cmd = srv.command(bin);
        cmd.args([mode, "--config"]).arg(cfg);
        Proc::spawn(cmd, &dir.0.join(format!("{mode}.log")))
    };
    let _overwatch = spawn("overwatch", &ow_cfg);
    let _agent = spawn("agent", &agent_cfg);
    let logs = || {
        ["overwatch", "agent"]
            .map(|m| std::fs::read_to_string(dir.0.join(format!("{m}.log"))).unwrap_or_default())
            .join("\n----\n")
    };
    let mut clients = [Clients::start(&c1, 3), Clients::start(&c2, 3)];

    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, DNS));
    let mut asker = srv.enter(|| Asker::new(server));
    let mut from_c1 = c1.enter(|| Asker::from("0.0.0.0:0".parse().unwrap(), (A, DNS).into()));
    // Each asks at its own backend's address, both on one interface: the wildcard listener answers
    // from the address asked.
    let mut from_c2 = c2.enter(|| Asker::from("0.0.0.0:0".parse().unwrap(), (B, DNS).into()));
    let s1: IpAddr = "10.1.0.0".parse().unwrap();
    let s2: IpAddr = "10.2.0.0".parse().unwrap();
    // Each asked twice in a row, five times over: a round-robin of the two backends (what a subnet gets
    // with nothing learned) alternates, so it cannot pass.
    let mut last = Vec::new();
    let mut learned = || {
        (0..5).all(|_| {
            last = vec![
                asker.a_for("app.lab.test", s1, 24),
                asker.a_for("app.lab.test", s1, 24),
                asker.a_for("app.lab.test", s2, 24),
                asker.a_for("app.lab.test", s2, 24),
                from_c1.a("app.lab.test", false),
                from_c1.a("app.lab.test", false),
                from_c2.a("app.lab.test", false),
                from_c2.a("app.lab.test", false),
            ];
            let want = [A, A, B, B, A, A, B, B].map(|a| Some(vec![a]));
            last == want
        })
    };
    // Learning needs a connection MIN_AGE_S old, MIN_SAMPLES polls, then a report: the wait is 3x that,
    // from the first poll.
    let needs = Duration::from_secs(MIN_AGE_S + MIN_SAMPLES * POLL_S + REPORT_S);
    let started = Instant::now();
    let ok = wait_every(
        Duration::from_millis(250),
        needs * 3 + Duration::from_secs(5),
        &mut learned,
    );
    let took = started.elapsed();
    let table = srv.enter(|| {
        http::call(
            API.parse().unwrap(),
            "GET",
            "/api/v1/overwatch/latency",
            &[],
            None,
        )
        .1
    });
    println!("learned in {took:?} (needs about {needs:?}); the table: {table}");
    assert!(
        ok,
        "each subnet sent to its nearer backend: last answers (ECS 1 twice, ECS 2 twice, from 1 twice, from 2 twice) {last:?}\n{table}\n{}",
        logs()
    );
    let table: serde_json::Value = serde_json::from_str(&table).expect("the table is JSON");
    for e in table["entries"].as_array().expect("entries") {
        let far = matches!(
            (e["subnet"].as_str(), e["backend"].as_str()),
            (Some("10.1.0.0/24"), Some("10.9.0.2")) | (Some("10.2.0.0/24"), Some("10.9.0.1"))
        );
        let ms = e["ewma_ms"].as_f64().unwrap_or_default();
        assert_eq!(e["source"], "agent", "{e}");
        // Far: at least the added delay (each direction of an RTT counts once); near: well under it.
        if far {
            assert!(ms >= DELAY.as_secs_f64() * 1000.0 * 0.9, "{e}");
        } else {
            assert!(ms < DELAY.as_secs_f64() * 1000.0 / 2.0, "{e}");
        }
    }
    assert_eq!(table["count"], 4, "two subnets x two backends: {table}");
    let answered: u64 = clients.iter_mut().map(Clients::stop).sum();
    println!(
        "client requests answered: {answered}; packets delayed: {}",
        line.stop()
    );
}
