//! Agents and the overwatch, as real processes in a network namespace this test creates: the drain
//! file takes a backend out of DNS (XDP and userspace) while nginx keeps serving `/health`; a killed
//! agent is out within seconds, a stopped one at once, a restarted one comes back; a wrong key, a wrong
//! token, a replayed or forged datagram never registers anything; several overwatches each learn every
//! agent; fifty agents under churn converge.
//!
//! Needs root: `cargo xtask test` runs it (`--ignored`). All traffic stays inside the namespace.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use common::{
    AT_ONCE,
    dnsq::Asker,
    http::{get as http_get, metric},
    netns::{Netns, Proc, TempDir, wait_every, wait_for},
    nginx::Nginx,
    rng::Rng,
};

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OTHER_KEY: &str = "HxgZGhscHR4fEBESExQVFhcICQoLDA0ODwABAgMEBQY=";
const TOKEN: &str = "app-token-0123456789";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_opengslb"))
}

/// An overwatch: XDP on the namespace's lo, validation of the static servers every second.
fn overwatch_config(n: u8, dir: &Path, domains: &str, servers: &str, tokens: &str) -> String {
    format!(
        r#"mode: overwatch
logging: {{ format: text }}
dns:
  listen_address: "127.0.0.{n}:53"
  zones: [lab.test]
  default_ttl: 1
  xdp: {{ interfaces: [lo], mode: skb }}
overwatch:
  identity: {{ node_id: ow{n} }}
  gossip: {{ bind_address: "127.0.0.{n}:7946", encryption_key: "{KEY}" }}
  agent_tokens: {{ {tokens} }}
  data_dir: {dir}/data{n}
metrics: {{ enabled: true, address: "127.0.0.{n}:9090" }}
regions:
  - name: lab
    servers: [{servers}]
    health_check: {{ type: http, path: /health, interval: 1s, timeout: 500ms, failure_threshold: 2, success_threshold: 1 }}
domains:
{domains}"#,
        dir = dir.display()
    )
}

/// An overwatch process, its bpffs root and log.
struct Overwatch {
    _proc: Proc,
    log: PathBuf,
}

impl Overwatch {
    fn start(ns: &Netns, dir: &Path, n: u8, config: &str) -> Self {
        let cfg = dir.join(format!("ow{n}.yaml"));
        // Several overwatches on one lo: only the first attaches XDP; the others answer from userspace.
        let text = if n > 1 {
            config.replace(
                "xdp: { interfaces: [lo], mode: skb }",
                "xdp: { interfaces: [] }",
            )
        } else {
            config.to_owned()
        };
        common::write_private(&cfg, &text);
        // One bpffs root per overwatch: the tests run in parallel, and a start clears its root's pins.
        let root = Path::new("/sys/fs/bpf").join(format!("{}-ow{n}", ns.name));
        let mut cmd = ns.command(bin());
        cmd.args(["overwatch", "--detach-on-exit", "--config"])
            .arg(&cfg)
            .arg("--bpffs-root")
            .arg(&root);
        let log = dir.join(format!("ow{n}.log"));
        Self {
            _proc: Proc::spawn(cmd, &log),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// One agent process, restartable, with its own drain file and control socket.
struct Agent {
    ns_name: String,
    config: PathBuf,
    drain: PathBuf,
    log: PathBuf,
    proc: Option<Proc>,
}

struct AgentSpec<'a> {
    service: &'a str,
    address: Ipv4Addr,
    port: u16,
    check: &'a str,
    key: &'a str,
    token: &'a str,
    seeds: &'a str,
    /// More `agent:` keys, indented by two spaces.
    extra: &'a str,
}

impl Agent {
    fn new(ns: &Netns, dir: &Path, tag: &str, spec: &AgentSpec<'_>) -> Self {
        let drain = dir.join(format!("drain-{tag}"));
        let socket = dir.join(format!("agent-{tag}.sock"));
        let config = dir.join(format!("agent-{tag}.yaml"));
        common::write_private(
            &config,
            &format!(
                r#"mode: agent
logging: {{ format: text }}
agent:
  identity: {{ region: lab, service_token: "{token}" }}
  backends:
    - service: {service}
      address: {address}
      port: {port}
      health_check: {{ {check} }}
  gossip: {{ encryption_key: "{key}", overwatch_nodes: [{seeds}] }}
  drain_file: {drain}
  control_socket: {socket}
{extra}"#,
                token = spec.token,
                service = spec.service,
                address = spec.address,
                port = spec.port,
                check = spec.check,
                key = spec.key,
                seeds = spec.seeds,
                drain = drain.display(),
                socket = socket.display(),
                extra = spec.extra,
            ),
        );
        let mut a = Self {
            ns_name: ns.name.clone(),
            config,
            drain,
            log: dir.join(format!("agent-{tag}.log")),
            proc: None,
        };
        a.start(ns);
        a
    }

    fn start(&mut self, ns: &Netns) {
        assert_eq!(ns.name, self.ns_name);
        let mut cmd = ns.command(bin());
        cmd.args(["agent", "--config"]).arg(&self.config);
        self.proc = Some(Proc::spawn(cmd, &self.log));
    }

    /// SIGTERM, and wait for the exit.
    fn terminate(&mut self) {
        if let Some(mut p) = self.proc.take()
            && let Some(mut child) = p.child.take()
        {
            // SAFETY: kill on a pid we own and have not reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    /// SIGKILL: no leave, no goodbye.
    fn kill(&mut self) {
        if let Some(mut p) = self.proc.take()
            && let Some(mut child) = p.child.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn set_drain_file(&self, on: bool) {
        if on {
            std::fs::File::create(&self.drain).unwrap();
        } else {
            std::fs::remove_file(&self.drain).unwrap();
        }
    }

    /// `opengslb agent drain on|off` against this agent's socket.
    fn drain_command(&self, on: bool) -> String {
        let out = Command::new(bin())
            .args(["agent", "--config"])
            .arg(&self.config)
            .arg("drain")
            .arg(if on { "on" } else { "off" })
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Whether the overwatch whose metrics are at `addr` counts `n` agents alive.
fn agents_alive(ns: &Netns, addr: &str, n: u64) -> bool {
    let addr: SocketAddr = addr.parse().unwrap();
    metric(ns, addr, "opengslb_agents{state=\"alive\"}") == n
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

// How long other changes may take to reach DNS, at 3x or more what the design needs.
/// A kill is noticed after 3 missed 300 ms reports, or by SWIM within 3 s, whichever comes first.
const KILLED: Duration = Duration::from_secs(9);
/// A restarted agent waits for a first passing check (1 s interval), then announces and reports.
const RESTARTED: Duration = Duration::from_secs(15);

const HTTP_CHECK: &str = "type: http, path: /health, interval: 1s, timeout: 500ms, failure_threshold: 2, success_threshold: 1";

fn app_domain() -> &'static str {
    "  - { name: app.lab.test, routing_algorithm: round-robin, regions: [lab], ttl: 1, max_answers: 16 }\n"
}

fn app_servers() -> &'static str {
    "{ address: 127.0.0.11, port: 8081, service: app.lab.test }, { address: 127.0.0.12, port: 8082, service: app.lab.test }"
}

/// The usual lab: two nginx backends of `app.lab.test` (127.0.0.11:8081 and 127.0.0.12:8082) in a
/// namespace, and an overwatch that accepts [`TOKEN`] for the app. Fields drop in order: processes
/// first, the namespace last.
struct AppLab {
    ow: Overwatch,
    _nginx: [Nginx; 2],
    b1: Ipv4Addr,
    b2: Ipv4Addr,
    dir: TempDir,
    ns: Netns,
}

impl AppLab {
    fn new(tag: &str) -> Self {
        let ns = Netns::new(tag);
        let dir = TempDir::new(tag);
        let (b1, b2) = (Ipv4Addr::new(127, 0, 0, 11), Ipv4Addr::new(127, 0, 0, 12));
        let nginx = [
            Nginx::start(&dir.0.join("n1"), (b1, 8081).into(), Some(&ns.name)),
            Nginx::start(&dir.0.join("n2"), (b2, 8082).into(), Some(&ns.name)),
        ];
        let ow = Overwatch::start(&ns, &dir.0, 1, &Self::overwatch_text(&dir, 1));
        Self {
            ow,
            _nginx: nginx,
            b1,
            b2,
            dir,
            ns,
        }
    }

    fn overwatch_text(dir: &TempDir, n: u8) -> String {
        let tokens = format!("app.lab.test: \"{TOKEN}\"");
        overwatch_config(n, &dir.0, app_domain(), app_servers(), &tokens)
    }

    /// An agent checking the second backend over HTTP, with more `agent:` keys in `extra`.
    fn agent(&self, tag: &str, seeds: &str, extra: &str) -> Agent {
        let spec = AgentSpec {
            service: "app.lab.test",
            address: self.b2,
            port: 8082,
            check: HTTP_CHECK,
            key: KEY,
            token: TOKEN,
            seeds,
            extra,
        };
        Agent::new(&self.ns, &self.dir.0, tag, &spec)
    }
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn drain_file_takes_the_backend_out_of_dns_while_nginx_still_serves() {
    common::require_root();
    let lab = AppLab::new("agd");
    let (ns, ow, b1, b2) = (&lab.ns, &lab.ow, lab.b1, lab.b2);
    let agent = lab.agent("d", "\"127.0.0.1:7946\"", "");
    let mut dns = ns.enter(|| Asker::new("127.0.0.1:53".parse().unwrap()));
    let both = [b1, b2];
    assert!(
        wait_for(Duration::from_secs(20), || dns.both("app.lab.test")
            == Some(both.to_vec())),
        "both backends answered at start\n{}\n{}",
        ow.log(),
        agent.log()
    );
    let metrics: SocketAddr = "127.0.0.1:9090".parse().unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || metric(
            ns,
            metrics,
            "opengslb_agent_reports_total{result=\"applied\"}"
        ) > 0),
        "the agent's reports are applied\n{}",
        ow.log()
    );
    // An overwatch with XDP attached (its counters), gossip, agents and validation: promtool accepts
    // every metric it shows.
    let scrape = http_get(ns, metrics, "/metrics");
    assert!(scrape.contains("opengslb_xdp_packets_total{"), "{scrape}");
    common::http::promtool_check(&scrape);

    const TRIALS: usize = 50;
    let mut out = Vec::with_capacity(TRIALS);
    let mut back = Vec::with_capacity(TRIALS);
    for trial in 0..TRIALS {
        agent.set_drain_file(true);
        let t0 = Instant::now();
        // The design says at once; the bound is generous because waiting costs time only on failure.
        let gone = wait_every(Duration::from_millis(1), AT_ONCE, || {
            dns.a("app.lab.test", false) == Some(vec![b1])
                && dns.a("app.lab.test", true) == Some(vec![b1])
        });
        let took = t0.elapsed();
        assert!(
            gone,
            "trial {trial}: the drained backend left XDP and userspace answers within {AT_ONCE:?}\n{}",
            agent.log()
        );
        out.push(took);
        if trial == 0 {
            // Demo 2's point: the app is fine, the agent knew, DNS stopped handing it out.
            let status = http_get(ns, (b2, 8082).into(), "/health");
            assert!(status.starts_with("HTTP/1.1 200"), "{status}");
            // The overwatch shows why, and who said so.
            let shown = http_get(ns, metrics, "/metrics");
            let row = shown
                .lines()
                .find(|l| {
                    l.starts_with("opengslb_backend_up{") && l.contains("address=\"127.0.0.12\"")
                })
                .unwrap_or_default();
            assert!(
                row.contains("reason=\"agent_draining\"")
                    && row.contains("agent=\"")
                    && row.ends_with(" 0"),
                "{row}\n{shown}"
            );
        }
        agent.set_drain_file(false);
        let t1 = Instant::now();
        assert!(
            wait_every(Duration::from_millis(1), AT_ONCE, || dns
                .both("app.lab.test")
                == Some(both.to_vec())),
            "trial {trial}: back once the drain file is gone"
        );
        back.push(t1.elapsed());
    }
    out.sort();
    back.sort();
    println!(
        "drain file -> out of XDP and userspace answers, {TRIALS} trials: p50 {:?}, p99 {:?}, max {:?}",
        percentile(&out, 0.5),
        percentile(&out, 0.99),
        out[TRIALS - 1]
    );
    println!(
        "drain file removed -> back: p50 {:?}, p99 {:?}, max {:?}",
        percentile(&back, 0.5),
        percentile(&back, 0.99),
        back[TRIALS - 1]
    );

    // The command does the same without the file.
    assert_eq!(agent.drain_command(true), "ok draining=true");
    assert!(wait_for(AT_ONCE, || dns.both("app.lab.test") == Some(vec![b1])));
    assert_eq!(agent.drain_command(false), "ok draining=false");
    assert!(wait_for(AT_ONCE, || dns.both("app.lab.test") == Some(both.to_vec())));
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn a_killed_agent_is_out_within_seconds_a_stopped_one_at_once_and_a_restarted_one_is_back() {
    common::require_root();
    let lab = AppLab::new("agk");
    let (ns, ow, b1, b2) = (&lab.ns, &lab.ow, lab.b1, lab.b2);
    let mut agent = lab.agent("k", "\"127.0.0.1:7946\"", "");
    let mut dns = ns.enter(|| Asker::new("127.0.0.1:53".parse().unwrap()));
    let both = vec![b1, b2];
    // The overwatch heard the agent (not just the agent checked): only then is there a claim to lose.
    let claimed = |agent: &Agent| {
        agent.log().contains("status=\"healthy\"") && agents_alive(ns, "127.0.0.1:9090", 1)
    };
    assert!(
        wait_for(Duration::from_secs(20), || claimed(&agent)
            && dns.both("app.lab.test") == Some(both.clone())),
        "the agent reports and both answer\n{}\n{}",
        ow.log(),
        agent.log()
    );

    // kill -9: no goodbye; the missed reports give it away (validation still passes: nginx is up).
    agent.kill();
    let t = Instant::now();
    assert!(
        wait_for(KILLED, || dns.both("app.lab.test") == Some(vec![b1])),
        "a killed agent's backend is out within {KILLED:?}\n{}\n{}",
        ow.log(),
        agent.log()
    );
    println!("kill -9 -> out after {:?}", t.elapsed());

    agent.start(ns);
    let t = Instant::now();
    assert!(
        wait_for(RESTARTED, || dns.both("app.lab.test") == Some(both.clone())),
        "a restarted agent's backend is back\n{}",
        agent.log()
    );
    println!("restart -> back after {:?}", t.elapsed());
    assert!(wait_for(Duration::from_secs(5), || claimed(&agent)));

    agent.terminate();
    let t = Instant::now();
    assert!(
        wait_for(AT_ONCE, || dns.both("app.lab.test") == Some(vec![b1])),
        "a stopped agent's backend is out within {AT_ONCE:?}\n{}",
        ow.log()
    );
    println!("SIGTERM -> out after {:?}", t.elapsed());
    assert!(ow.log().contains("agent left"), "{}", ow.log());
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn wrong_keys_tokens_replays_and_forgeries_never_register() {
    common::require_root();
    let ns = Netns::new("ags");
    let dir = TempDir::new("ags");
    let b1 = Ipv4Addr::new(127, 0, 0, 11);
    let _n1 = Nginx::start(&dir.0.join("n1"), (b1, 8081).into(), Some(&ns.name));
    // Agent-only backends of `pool.lab.test` would show up in its answers if accepted.
    let hostile = Ipv4Addr::new(127, 0, 0, 50);
    let _nh = Nginx::start(&dir.0.join("nh"), (hostile, 8080).into(), Some(&ns.name));
    let domains = format!(
        "{}  - {{ name: pool.lab.test, routing_algorithm: round-robin, regions: [lab], ttl: 1, max_answers: 16 }}\n",
        app_domain()
    );
    let tokens = format!("app.lab.test: \"{TOKEN}\", pool.lab.test: \"pool-token-0123456789\"");
    let servers = "{ address: 127.0.0.11, port: 8081, service: app.lab.test }";
    let ow = Overwatch::start(
        &ns,
        &dir.0,
        1,
        &overwatch_config(1, &dir.0, &domains, servers, &tokens),
    );
    let metrics: SocketAddr = "127.0.0.1:9090".parse().unwrap();
    // A tap posing as a second overwatch: it receives what agents send, so the test can replay it.
    let tap = ns.enter(|| UdpSocket::bind("127.0.0.1:7999").unwrap());
    let seeds = "\"127.0.0.1:7946\", \"127.0.0.1:7999\"";
    let mut dns = ns.enter(|| Asker::new("127.0.0.1:53".parse().unwrap()));
    let check = "type: tcp, interval: 1s, timeout: 500ms, success_threshold: 1";
    let mut wrong_key = Agent::new(
        &ns,
        &dir.0,
        "key",
        &AgentSpec {
            service: "pool.lab.test",
            address: hostile,
            port: 8080,
            check,
            key: OTHER_KEY,
            token: "pool-token-0123456789",
            seeds,
            extra: "",
        },
    );
    let wrong_token = Agent::new(
        &ns,
        &dir.0,
        "token",
        &AgentSpec {
            service: "pool.lab.test",
            address: hostile,
            port: 8080,
            check,
            key: KEY,
            token: "not-the-pool-token-0000",
            seeds,
            extra: "",
        },
    );
    // Both hostile agents ran their checks and sent reports: the overwatch refused every one.
    let sample = |s: &str| metric(&ns, metrics, s);
    assert!(
        wait_for(Duration::from_secs(10), || {
            sample("opengslb_gossip_dropped_total{reason=\"no_key_opens\"}") >= 3
                && sample("opengslb_agent_reports_total{result=\"bad_token\"}") >= 3
                && wrong_token.log().contains("status=\"healthy\"")
        }),
        "reports under a wrong key or token are refused and counted\n{}\n{}\n{}",
        http_get(&ns, metrics, "/metrics"),
        wrong_key.log(),
        wrong_token.log()
    );
    assert_eq!(
        sample("opengslb_agent_reports_total{result=\"applied\"}"),
        0,
        "nothing from either agent was applied"
    );
    assert_eq!(dns.both("pool.lab.test"), Some(vec![]));
    assert!(
        !ow.log().contains("not-the-pool-token"),
        "no token is ever logged"
    );
    assert!(!wrong_token.log().contains("not-the-pool-token"));

    // Replay: a sealed datagram the tap received from the wrong-token agent, sent again to the
    // overwatch, is refused before it is even read. Forgeries (a flipped bit, junk) are too.
    // The wrong-key agent's own datagrams would add to the forgery count: stop it first, and take the
    // baselines once what it sent has been counted (the count holds still for two report intervals).
    wrong_key.kill();
    let mut last = (u64::MAX, Instant::now());
    assert!(
        wait_for(Duration::from_secs(10), || {
            let now = sample("opengslb_gossip_dropped_total{reason=\"no_key_opens\"}");
            if now != last.0 {
                last = (now, Instant::now());
            }
            last.1.elapsed() >= Duration::from_millis(600)
        }),
        "the forgery count settles once the wrong-key agent is gone"
    );
    let mut captured = Vec::new();
    ns.enter(|| {
        let mut buf = [0u8; 9000];
        // What arrived before the overwatch listened never reached it: only fresh datagrams count.
        tap.set_nonblocking(true).unwrap();
        while tap.recv_from(&mut buf).is_ok() {}
        tap.set_nonblocking(false).unwrap();
        tap.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        while captured.len() < 20 {
            let Ok((n, from)) = tap.recv_from(&mut buf) else {
                break;
            };
            captured.push((buf[..n].to_vec(), from));
        }
    });
    assert!(
        !captured.is_empty(),
        "the tap received the agents' datagrams"
    );
    let replayed_before = sample("opengslb_gossip_dropped_total{reason=\"replayed\"}");
    let forged_before = sample("opengslb_gossip_dropped_total{reason=\"no_key_opens\"}");
    let magic_before = sample("opengslb_gossip_dropped_total{reason=\"bad_magic\"}");
    // Only sealed reports under the shared key were also sent to the overwatch (SWIM datagrams are
    // sealed per destination, and the wrong-key agent's cannot open): those are the replays.
    let key = *opengslb::config::GossipKey::from_base64(KEY)
        .unwrap()
        .as_bytes();
    let mut opener = opengslb::gossip::seal::Opener::new(&[key]).unwrap();
    let reports: Vec<&Vec<u8>> = captured
        .iter()
        .map(|(d, _)| d)
        .filter(|d| {
            opener
                .open(d)
                .is_ok_and(|o| o.kind == opengslb::gossip::wire::KIND_REPORT)
        })
        .collect();
    assert!(!reports.is_empty(), "the tap received sealed reports");
    let mut rng = Rng::new(0xA6E7);
    ns.enter(|| {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        for d in &reports {
            s.send_to(d, "127.0.0.1:7946").unwrap();
            let mut f = d.to_vec();
            let i = 28 + rng.below(f.len() as u64 - 28) as usize;
            f[i] ^= 1 << rng.below(8);
            s.send_to(&f, "127.0.0.1:7946").unwrap();
        }
        s.send_to(&[b'x'; 100], "127.0.0.1:7946").unwrap();
    });
    let n = reports.len() as u64;
    assert!(
        wait_for(Duration::from_secs(10), || {
            let replayed =
                sample("opengslb_gossip_dropped_total{reason=\"replayed\"}") - replayed_before;
            let forged =
                sample("opengslb_gossip_dropped_total{reason=\"no_key_opens\"}") - forged_before;
            let magic =
                sample("opengslb_gossip_dropped_total{reason=\"bad_magic\"}") - magic_before;
            replayed == n && forged == n && magic == 1
        }),
        "{n} replays, {n} forgeries and one stray datagram are dropped and counted\n{}",
        http_get(&ns, metrics, "/metrics")
    );
    assert_eq!(dns.both("pool.lab.test"), Some(vec![]));
    assert_eq!(dns.both("app.lab.test"), Some(vec![b1]), "{}", ow.log());
    // The overwatch is still well.
    assert!(http_get(&ns, metrics, "/health").ends_with("OK"));
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn every_overwatch_learns_every_agent_even_one_started_later() {
    common::require_root();
    let lab = AppLab::new("agm");
    let (ns, ow1, b1, b2) = (&lab.ns, &lab.ow, lab.b1, lab.b2);
    let agent = lab.agent("m", "\"127.0.0.1:7946\", \"127.0.0.2:7946\"", "");
    // The second overwatch starts after the agent (heard by the first): the agent keeps announcing
    // until it answers.
    assert!(
        wait_for(Duration::from_secs(20), || agents_alive(
            ns,
            "127.0.0.1:9090",
            1
        )),
        "the first overwatch hears the agent\n{}",
        agent.log()
    );
    let ow2 = Overwatch::start(ns, &lab.dir.0, 2, &AppLab::overwatch_text(&lab.dir, 2));
    let mut dns1 = ns.enter(|| Asker::new("127.0.0.1:53".parse().unwrap()));
    let mut dns2 = ns.enter(|| Asker::new("127.0.0.2:53".parse().unwrap()));
    let both = vec![b1, b2];
    assert!(
        wait_for(Duration::from_secs(20), || {
            agents_alive(ns, "127.0.0.1:9090", 1)
                && agents_alive(ns, "127.0.0.2:9090", 1)
                && dns1.both("app.lab.test") == Some(both.clone())
                && dns2.a("app.lab.test", false) == Some(both.clone())
        }),
        "both overwatches know the agent\n{}\n{}\n{}",
        ow1.log(),
        ow2.log(),
        agent.log()
    );
    agent.set_drain_file(true);
    assert!(
        wait_for(AT_ONCE, || dns1.both("app.lab.test") == Some(vec![b1])
            && dns2.a("app.lab.test", false) == Some(vec![b1])),
        "a drain reaches every overwatch"
    );
}

/// Fifty agents, ten per service, each checking its own TCP listener; random drains, undrains,
/// graceful restarts and kills for a bounded time. After each change, every name's answers (XDP and
/// userspace) converge to exactly the agents that are running, checked and not drained.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn fifty_agents_under_churn_converge() {
    common::require_root();
    const AGENTS: usize = 50;
    const SERVICES: usize = 5;
    const CHANGES: usize = 40;
    let ns = Netns::new("agc");
    let dir = TempDir::new("agc");
    let addr = |i: usize| Ipv4Addr::new(127, 0, 1, 10 + i as u8);
    // Listeners the agents' TCP checks connect to; a thread accepts and drops connections.
    let listeners: Vec<std::net::TcpListener> = ns.enter(|| {
        (0..AGENTS)
            .map(|i| {
                let l = std::net::TcpListener::bind((addr(i), 9000)).unwrap();
                l.set_nonblocking(true).unwrap();
                l
            })
            .collect()
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopper = stop.clone();
    let acceptor = std::thread::spawn(move || {
        while !stopper.load(std::sync::atomic::Ordering::Relaxed) {
            for l in &listeners {
                while l.accept().is_ok() {}
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let service = |i: usize| format!("pool{}.lab.test", i % SERVICES);
    let mut domains = String::new();
    let mut tokens = Vec::new();
    for s in 0..SERVICES {
        domains += &format!(
            "  - {{ name: pool{s}.lab.test, routing_algorithm: round-robin, regions: [lab], ttl: 1, max_answers: 16 }}\n"
        );
        tokens.push(format!("pool{s}.lab.test: \"pool-token-{s}-0123456789\""));
    }
    let ow = Overwatch::start(
        &ns,
        &dir.0,
        1,
        &overwatch_config(1, &dir.0, &domains, "", &tokens.join(", ")),
    );
    let check = "type: tcp, interval: 1s, timeout: 500ms, success_threshold: 1";
    let services: Vec<String> = (0..AGENTS).map(service).collect();
    let agent_tokens: Vec<String> = (0..AGENTS)
        .map(|i| format!("pool-token-{}-0123456789", i % SERVICES))
        .collect();
    let mut agents: Vec<Agent> = (0..AGENTS)
        .map(|i| {
            Agent::new(
                &ns,
                &dir.0,
                &i.to_string(),
                &AgentSpec {
                    service: &services[i],
                    address: addr(i),
                    port: 9000,
                    check,
                    key: KEY,
                    token: &agent_tokens[i],
                    seeds: "\"127.0.0.1:7946\"",
                    extra: "",
                },
            )
        })
        .collect();
    // What each agent should look like from DNS: in (running and not drained) or out.
    let mut running = vec![true; AGENTS];
    let mut by_file = [false; AGENTS];
    let mut by_hand = [false; AGENTS];
    let mut drained = vec![false; AGENTS];
    let mut dns = ns.enter(|| Asker::new("127.0.0.1:53".parse().unwrap()));
    let mut converged =
        |running: &[bool], drained: &[bool], timeout: Duration| -> Result<Duration, String> {
            let t = Instant::now();
            let mut last = String::new();
            let ok = wait_for(timeout, || {
                (0..SERVICES).all(|s| {
                    let want: BTreeSet<Ipv4Addr> = (0..AGENTS)
                        .filter(|&i| i % SERVICES == s && running[i] && !drained[i])
                        .map(addr)
                        .collect();
                    let name = format!("pool{s}.lab.test");
                    let got = dns.both(&name);
                    let ok = got
                        .as_ref()
                        .map(|g| g.iter().copied().collect::<BTreeSet<_>>())
                        == Some(want.clone());
                    if !ok {
                        last = format!("{name}: want {want:?}, got {got:?}");
                    }
                    ok
                })
            });
            if ok { Ok(t.elapsed()) } else { Err(last) }
        };
    let t0 = Instant::now();
    converged(&running, &drained, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("all fifty agents registered: {e}\n{}", ow.log()));
    let registered = t0.elapsed();
    // The agents' first reports reach DNS before their SWIM joins have settled: fifty members learning
    // of each other at once load both cores for a second or so, which can delay reports past their
    // deadline. Churn starts once every agent is alive, none dead, and DNS has stayed converged.
    let metrics: SocketAddr = "127.0.0.1:9090".parse().unwrap();
    let quiet = Duration::from_secs(3);
    let mut calm_since = None;
    let settled = wait_for(Duration::from_secs(60), || {
        let calm = agents_alive(&ns, "127.0.0.1:9090", AGENTS as u64)
            && metric(&ns, metrics, "opengslb_agents{state=\"dead\"}") == 0
            && converged(&running, &drained, Duration::ZERO).is_ok();
        let since = *calm_since.get_or_insert_with(Instant::now);
        if !calm {
            calm_since = None;
        }
        calm && since.elapsed() >= quiet
    });
    assert!(
        settled,
        "fifty agents settle (alive, none dead, DNS converged for {quiet:?})\n{}",
        ow.log()
    );
    // Deaths the churn does not cause: agents whose reports came late on a loaded machine, each back
    // with its next report. Figures, not bounds: they depend on the load.
    let deaths = |log: &str| {
        log.matches("agent missed its reports").count()
            + log.matches("SWIM declared the agent down").count()
    };
    let settled_log = ow.log();
    println!(
        "fifty agents: in DNS after {registered:?}, settled after {:?}; {} deaths while settling",
        t0.elapsed(),
        deaths(&settled_log)
    );

    let mut rng = Rng::new(0x50A6);
    // Convergence times by kind of change, for the figures printed at the end.
    let mut took: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for change in 0..CHANGES {
        let i = rng.below(AGENTS as u64) as usize;
        let what = rng.below(4);
        let (kind, timeout) = match (what, running[i]) {
            // Not running: start it (its check must pass once before it is back).
            // A drain set by hand does not survive a restart; the drain file does.
            (_, false) => {
                agents[i].start(&ns);
                running[i] = true;
                by_hand[i] = false;
                ("restart", RESTARTED)
            }
            (0, true) => {
                by_file[i] = !by_file[i];
                agents[i].set_drain_file(by_file[i]);
                ("drain file", AT_ONCE)
            }
            (1, true) => {
                by_hand[i] = !by_hand[i];
                agents[i].drain_command(by_hand[i]);
                ("drain command", AT_ONCE)
            }
            (2, true) => {
                agents[i].terminate();
                running[i] = false;
                ("SIGTERM", AT_ONCE)
            }
            _ => {
                agents[i].kill();
                running[i] = false;
                ("SIGKILL", KILLED)
            }
        };
        drained[i] = by_file[i] || by_hand[i];
        match converged(&running, &drained, timeout) {
            Ok(t) => took.entry(kind).or_default().push(t),
            Err(e) => panic!(
                "change {change} (agent {i}, {kind}): not converged within {timeout:?}: {e}\n{}\n{}",
                agents[i].log(),
                ow.log()
            ),
        }
    }
    for (kind, times) in &mut took {
        times.sort();
        println!(
            "{kind}: {} changes, median {:?}, slowest {:?}",
            times.len(),
            percentile(times, 0.5),
            percentile(times, 1.0)
        );
    }
    let kills = took.get("SIGKILL").map_or(0, Vec::len);
    let log = ow.log();
    println!(
        "deaths during the churn: {} for {kills} kills",
        deaths(log.get(settled_log.len()..).unwrap_or_default())
    );
    // Read from a scrape that answered, so a failed scrape cannot pass for zero.
    let mut shown = String::new();
    assert!(
        wait_for(Duration::from_secs(10), || {
            shown = http_get(&ns, metrics, "/metrics");
            shown.contains("opengslb_gossip_dropped_total{")
        }),
        "the overwatch's metrics answer"
    );
    assert!(
        shown
            .lines()
            .any(|l| l == "opengslb_gossip_dropped_total{reason=\"queue_full\"} 0"),
        "no report is dropped by the overwatch\n{shown}"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = acceptor.join();
}

/// The app's own Prometheus counters drive a predictive drain: when the share of 5xx responses crosses
/// the threshold, the agent drains its backend (validation still passes) with the rate as its reason;
/// when it falls back, the backend returns once the hold time has passed.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn an_error_rate_from_the_apps_metrics_drains_and_recovers_with_hysteresis() {
    use std::sync::{Arc, Mutex, atomic::AtomicBool, atomic::Ordering};
    common::require_root();
    let lab = AppLab::new("agp");
    let (ns, ow, b1, b2) = (&lab.ns, &lab.ow, lab.b1, lab.b2);
    // The app's metrics endpoint: counters the test moves, served inside the namespace.
    let counters = Arc::new(Mutex::new((0u64, 0u64)));
    let listener = ns.enter(|| std::net::TcpListener::bind("127.0.0.1:9500").unwrap());
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let (counters, stop) = (counters.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let mut req = [0u8; 1024];
                        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                        let _ = s.read(&mut req);
                        let (total, failed) = *counters.lock().unwrap();
                        let body = format!(
                            "# TYPE http_requests_total counter\n\
                             http_requests_total{{code=\"200\"}} {}\n\
                             http_requests_total{{code=\"503\"}} {failed}\n",
                            total - failed
                        );
                        let _ = write!(
                            s,
                            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        })
    };
    // While the app runs, requests keep coming: 100 per 100 ms, `failing` of them 5xx.
    let failing = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let traffic = {
        let (counters, stop, failing) = (counters.clone(), stop.clone(), failing.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut c = counters.lock().unwrap();
                c.0 += 100;
                c.1 += failing.load(Ordering::Relaxed);
                drop(c);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let extra = r#"  predictive:
    enabled: true
    check_interval: 1s
    cpu: { enabled: false }
    memory: { enabled: false }
    error_rate:
      threshold: 10
      bleed_duration: 3s
      source:
        url: http://127.0.0.1:9500/metrics
        total_metric: http_requests_total
        failed_metric: http_requests_total{code=~"5.."}
metrics: { enabled: true, address: "127.0.0.1:9101" }
"#;
    let agent = lab.agent("p", "\"127.0.0.1:7946\"", extra);
    let mut dns = ns.enter(|| Asker::new("127.0.0.1:53".parse().unwrap()));
    let both = vec![b1, b2];
    assert!(
        wait_for(Duration::from_secs(20), || agent
            .log()
            .contains("status=\"healthy\"")
            && agents_alive(ns, "127.0.0.1:9090", 1)
            && dns.both("app.lab.test") == Some(both.clone())),
        "in at 0 % errors\n{}\n{}",
        ow.log(),
        agent.log()
    );
    // 30 % of requests fail: out within a sample or two, nginx's /health still 200.
    failing.store(30, Ordering::Relaxed);
    let t = Instant::now();
    // A sample or two at 1 s, a scrape and a report: about 2.5 s.
    assert!(
        wait_for(Duration::from_secs(10), || dns.both("app.lab.test")
            == Some(vec![b1])),
        "a 30 % error rate drains the backend\n{}",
        agent.log()
    );
    println!("error rate 30 % -> out after {:?}", t.elapsed());
    // The first sample may straddle the change; the next ones read the full rate.
    assert!(
        wait_for(Duration::from_secs(10), || agent
            .log()
            .contains("reason=error rate 30% >= 10%")),
        "{}",
        agent.log()
    );
    // The agent shows it too.
    let shown = http_get(ns, "127.0.0.1:9101".parse().unwrap(), "/metrics");
    for line in [
        "opengslb_predictive_bleeding 1",
        "opengslb_agent_draining{reason=\"error rate 30% >= 10%\"} 1",
        "opengslb_predictive_error_rate 30",
    ] {
        assert!(
            shown.lines().any(|l| l.starts_with(line)),
            "{line}\n{shown}"
        );
    }
    // 9 %: under the threshold but inside the hysteresis band (10 - 2): stays out.
    failing.store(9, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        dns.both("app.lab.test"),
        Some(vec![b1]),
        "held by hysteresis"
    );
    // 0 %: back, once the hold time (3 s) has passed: a sample, the hold, a report, about 4.5 s.
    failing.store(0, Ordering::Relaxed);
    let t = Instant::now();
    assert!(
        wait_for(Duration::from_secs(15), || dns.both("app.lab.test")
            == Some(both.clone())),
        "back when errors stop\n{}",
        agent.log()
    );
    println!("error rate 0 % -> back after {:?}", t.elapsed());
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
    let _ = traffic.join();
}

/// RFC 3339 UTC time `secs` seconds from now, by `date` (the tests have no calendar code of their own).
fn rfc3339_in(secs: u64) -> String {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + secs;
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{at}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A maintenance window in the agent's config drains its backend on schedule, and only inside it.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn a_maintenance_window_drains_on_schedule() {
    common::require_root();
    let lab = AppLab::new("agw");
    let (ns, ow, b1, b2) = (&lab.ns, &lab.ow, lab.b1, lab.b2);
    // Far enough ahead for the overwatch and the agent to start on a loaded machine.
    const OPENS_IN: u64 = 25;
    const LASTS: u64 = 3;
    let opens = Instant::now() + Duration::from_secs(OPENS_IN);
    let extra = format!(
        "  maintenance:\n    windows:\n      - {{ start: \"{}\", end: \"{}\" }}\n",
        rfc3339_in(OPENS_IN),
        rfc3339_in(OPENS_IN + LASTS)
    );
    let agent = lab.agent("w", "\"127.0.0.1:7946\"", &extra);
    let mut dns = ns.enter(|| Asker::new("127.0.0.1:53".parse().unwrap()));
    let both = vec![b1, b2];
    assert!(
        wait_for(Duration::from_secs(OPENS_IN - 5), || agents_alive(
            ns,
            "127.0.0.1:9090",
            1
        ) && dns
            .both("app.lab.test")
            == Some(both.clone())),
        "in before the window opens\n{}\n{}",
        ow.log(),
        agent.log()
    );
    assert!(Instant::now() < opens);
    // The agent looks at its windows every second, then reports at once.
    let until = opens + AT_ONCE;
    assert!(
        wait_for(until.saturating_duration_since(Instant::now()), || dns
            .both("app.lab.test")
            == Some(vec![b1])),
        "out once the window opens\n{}",
        agent.log()
    );
    assert!(
        Instant::now() + Duration::from_millis(1100) >= opens,
        "not out before the window"
    );
    assert!(
        agent.log().contains("reason=maintenance window"),
        "{}",
        agent.log()
    );
    let until = opens + Duration::from_secs(LASTS) + AT_ONCE;
    assert!(
        wait_for(until.saturating_duration_since(Instant::now()), || dns
            .both("app.lab.test")
            == Some(both.clone())),
        "back once it closes\n{}",
        agent.log()
    );
}

/// An app whose metrics endpoint hangs (it accepts and never answers) must not stall the agent: its
/// reports keep coming, so the overwatch never takes it for dead, and the drain file still acts at once.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn a_hanging_metrics_endpoint_never_holds_up_the_reports() {
    common::require_root();
    let lab = AppLab::new("agh");
    let (ns, b1, b2) = (&lab.ns, lab.b1, lab.b2);
    // Connections complete in the kernel's backlog and are never answered.
    let _silent = ns.enter(|| std::net::TcpListener::bind("127.0.0.1:9501").unwrap());
    let extra = r#"  predictive:
    enabled: true
    check_interval: 1s
    error_rate:
      source:
        url: http://127.0.0.1:9501/metrics
        total_metric: http_requests_total
        failed_metric: http_requests_total{code=~"5.."}
"#;
    let agent = lab.agent("h", "\"127.0.0.1:7946\"", extra);
    let mut dns = ns.enter(|| Asker::new("127.0.0.1:53".parse().unwrap()));
    let both = vec![b1, b2];
    assert!(
        wait_for(Duration::from_secs(20), || agents_alive(
            ns,
            "127.0.0.1:9090",
            1
        ) && dns.both("app.lab.test")
            == Some(both.clone())),
        "the agent reports\n{}\n{}",
        lab.ow.log(),
        agent.log()
    );
    // Several scrapes time out (2 s each) meanwhile; the agent stays alive throughout: the
    // overwatch never notes a death (a scrape of its metrics could be slow; its log is not).
    let applied = || {
        metric(
            ns,
            "127.0.0.1:9090".parse().unwrap(),
            "opengslb_agent_reports_total{result=\"applied\"}",
        )
    };
    let before = applied();
    std::thread::sleep(Duration::from_secs(5));
    let log = lab.ow.log();
    assert!(
        !log.contains("agent missed its reports") && !log.contains("SWIM declared the agent down"),
        "the agent was declared dead while its scrape hung\n{log}"
    );
    // A report every 300 ms: about 16 in 5 s, not one per 2 s scrape.
    let during = applied().saturating_sub(before);
    println!("reports applied in 5 s while the scrapes hung: {during}");
    assert!(
        during >= 8,
        "reports kept coming: {during} in 5 s\n{}",
        agent.log()
    );
    agent.set_drain_file(true);
    assert!(
        wait_for(AT_ONCE, || dns.both("app.lab.test") == Some(vec![b1])),
        "the drain file acts at once while a scrape hangs"
    );
}

/// `opengslb agent drain on|off` with more arguments: its exit status, stdout, stderr, and how long it
/// took.
fn drain_with(agent: &Agent, on: bool, args: &[&str]) -> (Option<i32>, String, String, Duration) {
    let t0 = Instant::now();
    let out = Command::new(bin())
        .args(["agent", "--config"])
        .arg(&agent.config)
        .arg("drain")
        .arg(if on { "on" } else { "off" })
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        t0.elapsed(),
    )
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn a_waiting_drain_returns_once_every_overwatch_answers_without_the_backend() {
    common::require_root();
    let ns = Netns::new("agk");
    let dir = TempDir::new("agk");
    let (b1, b2) = (Ipv4Addr::new(127, 0, 0, 11), Ipv4Addr::new(127, 0, 0, 12));
    let _nginx = [
        Nginx::start(&dir.0.join("n1"), (b1, 8081).into(), Some(&ns.name)),
        Nginx::start(&dir.0.join("n2"), (b2, 8082).into(), Some(&ns.name)),
    ];
    // `solo.lab.test` has no static server: the agent's backend is its only one, and policy `all`
    // answers with it when it is out.
    let domains = format!(
        "{}  - {{ name: solo.lab.test, routing_algorithm: round-robin, regions: [lab], ttl: 1, all_down: all }}\n",
        app_domain()
    );
    let tokens = format!("app.lab.test: \"{TOKEN}\", solo.lab.test: \"{TOKEN}\"");
    let text = |n| overwatch_config(n, &dir.0, &domains, app_servers(), &tokens);
    let ow1 = Overwatch::start(&ns, &dir.0, 1, &text(1));
    let ow2 = Overwatch::start(&ns, &dir.0, 2, &text(2));
    let seeds = "\"127.0.0.1:7946\", \"127.0.0.2:7946\"";
    let spec = |service, address, port| AgentSpec {
        service,
        address,
        port,
        check: HTTP_CHECK,
        key: KEY,
        token: TOKEN,
        seeds,
        extra: "",
    };
    let app = Agent::new(&ns, &dir.0, "k", &spec("app.lab.test", b2, 8082));
    let solo = Agent::new(&ns, &dir.0, "s", &spec("solo.lab.test", b1, 8081));
    let mut dns1 = ns.enter(|| Asker::new("127.0.0.1:53".parse().unwrap()));
    let mut dns2 = ns.enter(|| Asker::new("127.0.0.2:53".parse().unwrap()));
    let both = vec![b1, b2];
    assert!(
        wait_for(Duration::from_secs(20), || {
            dns1.both("app.lab.test") == Some(both.clone())
                && dns2.a("app.lab.test", false) == Some(both.clone())
                && dns1.both("solo.lab.test") == Some(vec![b1])
                && dns2.a("solo.lab.test", false) == Some(vec![b1])
        }),
        "both overwatches answer with both agents' backends\n{}\n{}\n{}",
        ow1.log(),
        ow2.log(),
        app.log()
    );

    // Confirmed: the moment the command returns, neither overwatch answers with the backend.
    let (code, out, err, took) = drain_with(&app, true, &["--wait"]);
    assert_eq!(code, Some(0), "{out}\n{err}\n{}", app.log());
    let (xdp1, user1, user2) = (
        dns1.a("app.lab.test", false),
        dns1.a("app.lab.test", true),
        dns2.a("app.lab.test", false),
    );
    assert!(
        out.starts_with("ok draining=true confirmed by ow1 (127.0.0.1:7946), ow2 (127.0.0.2:7946)"),
        "{out}"
    );
    assert_eq!(
        (xdp1, user1, user2),
        (Some(vec![b1]), Some(vec![b1]), Some(vec![b1])),
        "answers right after `drain on --wait` returned"
    );
    println!("drain on --wait returned in {took:?}: {out}");

    let (code, out, err, took) = drain_with(&app, false, &["--wait", "--timeout", "10s"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let (both1, user2) = (dns1.both("app.lab.test"), dns2.a("app.lab.test", false));
    assert_eq!(
        (both1, user2),
        (Some(both.clone()), Some(both.clone())),
        "answers right after `drain off --wait` returned"
    );
    println!("drain off --wait returned in {took:?}: {out}");

    // The only backend of a name under policy `all`: out by the agent, still answered by policy.
    let (code, out, err, _) = drain_with(&solo, true, &["--wait"]);
    assert_eq!(code, Some(2), "{out}\n{err}");
    assert!(
        err.contains("all-down")
            && err.contains("ow1 (127.0.0.1:7946)")
            && err.contains("ow2 (127.0.0.2:7946)")
            && err.contains("solo.lab.test"),
        "{err}"
    );
    assert_eq!(dns1.both("solo.lab.test"), Some(vec![b1]), "policy `all`");
    assert_eq!(solo.drain_command(false), "ok draining=false");

    // One overwatch gone: the wait ends at its timeout, naming it; the drain still applies.
    drop(ow2);
    let (code, out, err, took) = drain_with(&app, true, &["--wait", "--timeout", "2s"]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(
        err.contains("timeout")
            && err.contains("127.0.0.2:7946")
            && !err.contains("127.0.0.1:7946"),
        "{err}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(dns1.both("app.lab.test"), Some(vec![b1]), "drained anyway");
}
