//! Demo 2 as its seed document tells it, with agents: an overwatch namespace (10.20.0.10) and three
//! webapp namespaces (10.20.0.21–23) joined by veth pairs, each webapp a real nginx plus an agent run
//! from Demo 2's agent config, which checks `127.0.0.1:80`. The agents report their backends at the
//! address their gossip leaves from (no `127.0.0.1` leaks into DNS, the original's defect), and the drain
//! file takes webapp 2 out of DNS while its nginx still answers `/health` with 200.
//!
//! The config files are Demo 2's, with two changes a test must make: each agent gets its own drain file
//! and control socket (the three share one file system here), and the overwatch's `data_dir` is the
//! test's directory (it pins the agents' token there, trust on first use).
//!
//! Needs root: `cargo xtask test` runs it (`--ignored`). All traffic stays inside the namespaces.

mod common;

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    time::{Duration, Instant},
};

use common::{
    AT_ONCE,
    dnsq::Asker,
    http,
    netns::{Netns, Proc, TempDir, sh, wait_every, wait_for},
    nginx::Nginx,
};

fn testdata(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/config/testdata")
            .join(name),
    )
    .unwrap()
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn demo2_agents_drain_a_webapp_out_of_dns_while_its_nginx_stays_up() {
    common::require_root();
    let dir = TempDir::new("d2a");
    let ow = Netns::new("d2o");
    let webapps: Vec<Netns> = (1..=3).map(|i| Netns::new(&format!("d2w{i}"))).collect();
    let addr = |i: usize| Ipv4Addr::new(10, 20, 0, 20 + i as u8);
    let pid = std::process::id() % 100_000;
    for (i, w) in webapps.iter().enumerate() {
        let (host, peer) = (format!("d2{pid}o{i}"), format!("d2{pid}w{i}"));
        sh(&[
            "ip", "link", "add", &host, "netns", &ow.name, "type", "veth", "peer", "name", &peer,
            "netns", &w.name,
        ]);
        ow.exec(&["ip", "addr", "add", "10.20.0.10/32", "dev", &host]);
        ow.exec(&["ip", "link", "set", &host, "up"]);
        ow.exec(&[
            "ip",
            "route",
            "add",
            &format!("{}/32", addr(i + 1)),
            "dev",
            &host,
        ]);
        w.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", addr(i + 1)),
            "dev",
            &peer,
        ]);
        w.exec(&["ip", "link", "set", &peer, "up"]);
    }
    let _nginx: Vec<Nginx> = webapps
        .iter()
        .enumerate()
        .map(|(i, w)| {
            Nginx::start(
                &dir.0.join(format!("web{i}")),
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, 80)),
                Some(&w.name),
            )
        })
        .collect();

    let ow_cfg = dir.0.join("overwatch.yaml");
    let text = testdata("demo2-overwatch.yaml").replace(
        "data_dir: /var/lib/opengslb",
        &format!("data_dir: {}", dir.0.join("data").display()),
    );
    common::write_private(&ow_cfg, &text);
    let bin = Path::new(env!("CARGO_BIN_EXE_opengslb"));
    let mut cmd = ow.command(bin);
    cmd.args(["overwatch", "--config"]).arg(&ow_cfg);
    let ow_log = dir.0.join("overwatch.log");
    let _overwatch = Proc::spawn(cmd, &ow_log);
    let ow_logged = || std::fs::read_to_string(&ow_log).unwrap_or_default();

    let agent_text = testdata("demo2-agent.yaml");
    let mut drains = Vec::new();
    let _agents: Vec<Proc> = webapps
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let drain = dir.0.join(format!("drain{i}"));
            let text = agent_text.replacen(
                "agent:\n",
                &format!(
                    "agent:\n  drain_file: {}\n  control_socket: {}\n",
                    drain.display(),
                    dir.0.join(format!("agent{i}.sock")).display()
                ),
                1,
            );
            drains.push(drain);
            let cfg = dir.0.join(format!("agent{i}.yaml"));
            common::write_private(&cfg, &text);
            let mut cmd = w.command(bin);
            cmd.args(["agent", "--config"]).arg(&cfg);
            Proc::spawn(cmd, &dir.0.join(format!("agent{i}.log")))
        })
        .collect();

    let mut asker = ow.enter(|| Asker::new("127.0.0.1:53".parse().unwrap()));
    // Demo 2 answers one address per query, in turn: six queries see every backend in.
    let mut seen = || -> BTreeSet<Ipv4Addr> {
        (0..6)
            .flat_map(|_| asker.a("app.demo.local", false).unwrap_or_default())
            .collect()
    };
    let all: BTreeSet<Ipv4Addr> = (1..=3).map(addr).collect();
    // Every agent reported its backend at its webapp's address: three agents alive, and the answers
    // are exactly the three webapps (no 127.0.0.1).
    let metrics: SocketAddr = "127.0.0.1:9090".parse().unwrap();
    let alive = || http::metric(&ow, metrics, "opengslb_agents{state=\"alive\"}") == 3;
    assert!(
        wait_for(Duration::from_secs(30), || alive() && seen() == all),
        "three agents report and the three webapps are answered: {:?}\n{}",
        seen(),
        ow_logged()
    );
    // Every metric of an overwatch with agents, gossip and validation, and of an agent, passes promtool.
    http::promtool_check(&http::get(&ow, metrics, "/metrics"));
    http::promtool_check(&http::get(
        &webapps[0],
        "127.0.0.1:9100".parse().unwrap(),
        "/metrics",
    ));
    let reported = ow_logged();
    for i in 1..=3 {
        assert!(
            reported.contains(&format!("backend={} ", addr(i)))
                || reported.contains(&format!("from={}:", addr(i))),
            "agent {i} reported from its webapp's address\n{reported}"
        );
    }

    // ./scripts/drain.sh webapp2 on
    std::fs::File::create(&drains[1]).unwrap();
    let t = Instant::now();
    let two: BTreeSet<Ipv4Addr> = [addr(1), addr(3)].into();
    assert!(
        wait_every(Duration::from_millis(1), AT_ONCE, || seen() == two),
        "webapp2 leaves DNS within {AT_ONCE:?} of its drain file: {:?}",
        seen()
    );
    let took = t.elapsed();
    println!("Demo 2: drain file -> webapp2 out of DNS after {took:?}");
    // curl http://10.20.0.22/health  # Returns 200!
    let health = http::get(&ow, (addr(2), 80).into(), "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // Validation still passes, yet it stays out: the agent's word wins.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(seen(), two);

    // ./scripts/drain.sh webapp2 off
    std::fs::remove_file(&drains[1]).unwrap();
    assert!(
        wait_for(AT_ONCE, || seen() == all),
        "webapp2 comes back when its drain file goes"
    );
}
