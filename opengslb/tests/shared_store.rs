//! Three overwatches sharing a three-member etcd cluster (`overwatch.store.etcd`), each in its own
//! network namespace, the cluster in a fourth and an agent in a fifth, all on one bridge
//! (10.99.0.0/24). Checked: an agent reporting to all three is pinned once and answered by all; an
//! override and an API-made server made through one overwatch are served by all within 3 s; the etcd
//! leader killed, a change still reaches all; an overwatch cut off from etcd keeps answering from its
//! last state, says so (`/ready`, `/metrics`), refuses changes with 503, and catches up once healed;
//! and every overwatch gives the same answer set throughout.
//!
//! Needs root: `cargo xtask test` runs it (`--ignored`). All traffic stays inside the namespaces.

mod common;

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::Path,
    time::{Duration, Instant},
};

use common::{
    dnsq::Asker,
    etcd::{EtcdCluster, memory_dir},
    http::{call, get},
    labs::{self, KEY},
    netns::{Netns, Proc, TempDir, sh, wait_every, wait_for},
    write_private,
};

const ETCD: [&str; 3] = ["10.99.0.11", "10.99.0.12", "10.99.0.13"];
const AGENT: &str = "10.99.0.30";
const BACKEND_PORT: u16 = 8080;
const TOKEN: &str = "shared-api-token-0123456789";
const NAME: &str = "app.demo.local";
/// What the design needs for a change to reach every overwatch (the watch: milliseconds).
const REACH: Duration = Duration::from_secs(3);
/// How long an overwatch may take to notice that etcd is gone: the one-second check with its
/// one-second timeout, and margin for a loaded machine.
const NOTICE: Duration = Duration::from_secs(10);

fn ow_ip(i: usize) -> String {
    format!("10.99.0.{}", 21 + i)
}

/// A veth pair from `hub` (enslaved to its bridge) to `ns` (with `addr`/24).
fn wire(hub: &Netns, ns: &Netns, tag: &str, addr: &str) {
    let pid = std::process::id() % 100_000;
    let (h, n) = (format!("ss{pid}{tag}h"), format!("ss{pid}{tag}n"));
    sh(&[
        "ip", "link", "add", &h, "netns", &hub.name, "type", "veth", "peer", "name", &n, "netns",
        &ns.name,
    ]);
    hub.exec(&["ip", "link", "set", &h, "master", "br0", "up"]);
    ns.exec(&["ip", "addr", "add", &format!("{addr}/24"), "dev", &n]);
    ns.exec(&["ip", "link", "set", &n, "up"]);
}

fn overwatch_config(dir: &Path, i: usize, endpoints: &str) -> String {
    let ip = ow_ip(i);
    format!(
        r#"mode: overwatch
logging: {{ format: text }}
overwatch:
  identity: {{ node_id: ow{i}, region: eu }}
  validation: {{ enabled: false }}
  gossip: {{ bind_address: "{ip}:7946", encryption_key: "{KEY}" }}
  data_dir: {data}
  store:
    etcd:
      endpoints: {endpoints}
      prefix: /opengslb-test/
      request_timeout: 1s
dns:
  listen_address: "{ip}:53"
  zones: [demo.local]
  default_ttl: 5
regions:
  - name: eu
    servers:
      - {{ address: 192.0.2.1, service: {NAME} }}
      - {{ address: 192.0.2.2, service: {NAME} }}
domains:
  - {{ name: {NAME}, regions: [eu], ttl: 5, max_answers: 16 }}
api:
  enabled: true
  address: "{ip}:8080"
  allowed_networks: [10.99.0.0/24]
  token: "{TOKEN}"
metrics:
  enabled: true
  address: "{ip}:9090"
"#,
        data = dir.join(format!("ow{i}")).display(),
    )
}

/// The lab: namespaces, the cluster, the overwatches and the agent, gone on drop.
struct Lab {
    dir: TempDir,
    ows: Vec<Netns>,
    procs: Vec<Proc>,
}

impl Lab {
    fn api(&self, i: usize) -> SocketAddr {
        format!("{}:8080", ow_ip(i)).parse().unwrap()
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.0.join(format!("ow{i}.log"))).unwrap_or_default()
    }

    /// A change through overwatch `i`'s API: the status and the body.
    fn change(&self, i: usize, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let auth = format!("Bearer {TOKEN}");
        self.ows[i].enter(|| {
            call(
                self.api(i),
                method,
                path,
                &[("Authorization", &auth), ("X-User", "test")],
                body,
            )
        })
    }

    fn ready(&self, i: usize) -> serde_json::Value {
        let (_, body) = self.ows[i].enter(|| call(self.api(i), "GET", "/api/v1/ready", &[], None));
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
    }

    /// Overwatch `i`'s A records for the name, from inside its namespace.
    fn answer(&self, i: usize) -> Option<BTreeSet<Ipv4Addr>> {
        let server: SocketAddr = format!("{}:53", ow_ip(i)).parse().unwrap();
        self.ows[i].enter(|| {
            let mut q = Asker::from("0.0.0.0:0".parse().unwrap(), server);
            q.set_timeout(Duration::from_millis(500));
            q.a(NAME, false).map(|v| v.into_iter().collect())
        })
    }

    /// Waits until every overwatch in `which` answers `want`; how long that took.
    fn all_answer(&self, which: &[usize], want: &BTreeSet<Ipv4Addr>, limit: Duration) -> Duration {
        let started = Instant::now();
        let ok = wait_every(Duration::from_millis(5), limit, || {
            which.iter().all(|&i| self.answer(i).as_ref() == Some(want))
        });
        let got: Vec<_> = which.iter().map(|&i| self.answer(i)).collect();
        assert!(
            ok,
            "every overwatch of {which:?} answers {want:?} within {limit:?}; they answer {got:?}\n{}",
            self.logs()
        );
        started.elapsed()
    }

    fn logs(&self) -> String {
        (0..3)
            .map(|i| format!("--- ow{i}\n{}", self.log(i)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Cuts overwatch `i` off from etcd (its packets to the members are dropped), or heals it.
    fn partition(&self, i: usize, cut: bool) {
        for ip in ETCD {
            let verb = if cut { "add" } else { "del" };
            self.ows[i].exec(&["ip", "route", verb, "blackhole", &format!("{ip}/32")]);
        }
    }
}

/// Makes server `address` of the name in region `eu` through overwatch `i`: the status and the body.
fn post_server(lab: &Lab, i: usize, address: &str) -> (u16, String) {
    let body = format!(r#"{{"service": "{NAME}", "address": "{address}", "region": "eu"}}"#);
    lab.change(i, "POST", "/api/v1/servers", Some(&body))
}

fn set(addrs: &[&str]) -> BTreeSet<Ipv4Addr> {
    addrs.iter().map(|a| a.parse().unwrap()).collect()
}

/// Sets (or with `healthy: None`, clears) the override of 192.0.2.1 through overwatch `i`, retrying
/// while the store is briefly unavailable (an election under way); the final status.
fn override_1(lab: &Lab, i: usize, healthy: Option<bool>, limit: Duration) -> u16 {
    let path = format!("/api/v1/overwatch/backends/{NAME}/192.0.2.1/80/override");
    let body = healthy.map(|h| format!(r#"{{"healthy": {h}, "reason": "shared"}}"#));
    let method = if healthy.is_some() { "POST" } else { "DELETE" };
    let mut status = 0;
    wait_for(limit, || {
        status = lab.change(i, method, &path, body.as_deref()).0;
        status != 503
    });
    status
}

#[test]
#[ignore = "needs root: network namespaces (cargo xtask test runs it)"]
fn three_overwatches_on_one_etcd_cluster_agree() {
    common::require_root();
    let dir = TempDir::new("shared-store");
    let etcd_dir = memory_dir("shared-store-etcd");
    let hub = Netns::new("ss-etcd");
    hub.exec(&["ip", "link", "add", "br0", "type", "bridge"]);
    for ip in ETCD {
        hub.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "br0"]);
    }
    hub.exec(&["ip", "link", "set", "br0", "up"]);
    let ows: Vec<Netns> = (0..3).map(|i| Netns::new(&format!("ss-ow{i}"))).collect();
    for (i, ns) in ows.iter().enumerate() {
        wire(&hub, ns, &format!("o{i}"), &ow_ip(i));
    }
    let agent_ns = Netns::new("ss-agent");
    wire(&hub, &agent_ns, "ag", AGENT);

    let mut cluster = EtcdCluster::on_ips(Some(&hub), &ETCD, 2379, 2380, &etcd_dir.0);
    let healthy = cluster.wait_healthy(Duration::from_secs(15));
    println!("etcd: three members healthy in {healthy:?}");

    let bin = Path::new(env!("CARGO_BIN_EXE_opengslb"));
    let mut lab = Lab {
        dir,
        ows,
        procs: Vec::new(),
    };
    for i in 0..3 {
        let cfg = lab.dir.0.join(format!("ow{i}.yaml"));
        write_private(
            &cfg,
            &overwatch_config(&lab.dir.0, i, &cluster.endpoints_yaml()),
        );
        let mut cmd = lab.ows[i].command(bin);
        cmd.args(["overwatch", "--config"]).arg(&cfg);
        let proc = Proc::spawn(cmd, &lab.dir.0.join(format!("ow{i}.log")));
        lab.procs.push(proc);
    }
    for i in 0..3 {
        assert!(
            wait_for(
                Duration::from_secs(15),
                || lab.ready(i)["store"]["writable"] == true
            ),
            "ow{i} ready with etcd writable: {}\n{}",
            lab.ready(i),
            lab.logs()
        );
    }

    // An agent reporting to all three: its backend is answered by all, its token pinned once.
    let _backend = agent_ns.enter(|| TcpListener::bind((AGENT, BACKEND_PORT)).unwrap());
    let agent_cfg = lab.dir.0.join("agent.yaml");
    let nodes: Vec<String> = (0..3).map(|i| format!("{}:7946", ow_ip(i))).collect();
    write_private(
        &agent_cfg,
        &labs::agent_at(&lab.dir.0, AGENT, BACKEND_PORT, &nodes),
    );
    let mut cmd = agent_ns.command(bin);
    cmd.args(["agent", "--config"]).arg(&agent_cfg);
    lab.procs
        .push(Proc::spawn(cmd, &lab.dir.0.join("agent.log")));
    let all = set(&["192.0.2.1", "192.0.2.2", AGENT]);
    let t = lab.all_answer(&[0, 1, 2], &all, Duration::from_secs(20));
    println!("the agent's backend answered by all three overwatches {t:?} after it started");
    let pins = cluster.etcdctl(
        0,
        &["get", "--prefix", "/opengslb-test/pins/", "--keys-only"],
    );
    let pins = String::from_utf8_lossy(&pins.stdout).into_owned();
    assert_eq!(
        pins.split_whitespace().collect::<Vec<_>>(),
        [format!("/opengslb-test/pins/{NAME}")],
        "one pin for the service in etcd"
    );

    // An override made on ow0 is served by all.
    assert_eq!(
        override_1(&lab, 0, Some(false), REACH),
        200,
        "{}",
        lab.logs()
    );
    let without_1 = set(&["192.0.2.2", AGENT]);
    let t = lab.all_answer(&[0, 1, 2], &without_1, REACH);
    println!("an override made on ow0 reached every overwatch in {t:?}");
    // A server made through ow1 is served by all.
    let (status, body) = post_server(&lab, 1, "192.0.2.9");
    assert_eq!(status, 201, "{body}");
    let with_9 = set(&["192.0.2.2", "192.0.2.9", AGENT]);
    let t = lab.all_answer(&[0, 1, 2], &with_9, REACH);
    println!("a server made on ow1 reached every overwatch in {t:?}");

    // The etcd leader killed: a change made on ow2 still reaches all.
    let leader = cluster.leader().expect("a leader");
    cluster.kill(leader);
    let started = Instant::now();
    assert_eq!(
        override_1(&lab, 2, None, Duration::from_secs(15)),
        200,
        "{}",
        lab.logs()
    );
    let with_1 = set(&["192.0.2.1", "192.0.2.2", "192.0.2.9", AGENT]);
    lab.all_answer(&[0, 1, 2], &with_1, REACH);
    println!(
        "etcd leader m{leader} killed: a change made on ow2 reached every overwatch {:?} later",
        started.elapsed()
    );
    cluster.restart(leader);
    cluster.wait_healthy(Duration::from_secs(15));

    // ow1 cut off from etcd: it says so, keeps answering, refuses changes.
    for i in 0..3 {
        assert!(
            wait_for(NOTICE, || lab.ready(i)["store"]["writable"] == true),
            "ow{i} writable again after the member's restart: {}",
            lab.ready(i)
        );
    }
    // Counted in the log: the loss the partition causes, not one an election may have caused before.
    let losses = || {
        lab.log(1)
            .matches("the shared store cannot be reached")
            .count()
    };
    let before = losses();
    lab.partition(1, true);
    let started = Instant::now();
    assert!(
        wait_for(NOTICE, || losses() > before
            && lab.ready(1)["store"]["writable"] == false),
        "ow1 says etcd cannot be reached: {}",
        lab.ready(1)
    );
    println!("ow1 noticed the partition in {:?}", started.elapsed());
    let ready = lab.ready(1);
    assert!(ready["store"]["error"].as_str().is_some(), "{ready}");
    assert_eq!(ready["ready"], true, "DNS is still served: {ready}");
    let metrics = get(
        &lab.ows[1],
        format!("{}:9090", ow_ip(1)).parse().unwrap(),
        "/metrics",
    );
    assert!(metrics.contains("\nopengslb_store_up 0\n"), "{metrics}");
    assert_eq!(
        lab.answer(1).as_ref(),
        Some(&with_1),
        "the last state is served"
    );
    let (status, body) = post_server(&lab, 1, "192.0.2.10");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("cannot be reached"), "{body}");
    // Meanwhile a change on ow0 reaches ow0 and ow2, not ow1.
    assert_eq!(override_1(&lab, 0, Some(false), REACH), 200);
    lab.all_answer(&[0, 2], &with_9, REACH);
    assert_eq!(lab.answer(1).as_ref(), Some(&with_1));

    // Healed: ow1 catches up.
    lab.partition(1, false);
    let started = Instant::now();
    lab.all_answer(&[0, 1, 2], &with_9, NOTICE);
    println!(
        "ow1 caught up {:?} after the partition healed",
        started.elapsed()
    );
    assert!(wait_for(NOTICE, || lab.ready(1)["store"]["writable"] == true));
    // `/ready` shows the link as of the loop's last one-second tick.
    let revisions = || -> Vec<_> {
        (0..3)
            .map(|i| lab.ready(i)["store"]["revision"].clone())
            .collect()
    };
    assert!(
        wait_for(NOTICE, || revisions().iter().all(|r| *r == revisions()[0])),
        "every overwatch holds the same revision: {:?}",
        revisions()
    );
    // The agent's backend was answered throughout by all, and they agree at the end.
    for i in 0..3 {
        assert_eq!(lab.answer(i).as_ref(), Some(&with_9), "ow{i}");
    }
}
