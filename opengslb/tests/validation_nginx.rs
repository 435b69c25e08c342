//! External validation against real nginx backends in a network namespace this test creates: stopping
//! one takes it out of DNS within about one check interval (the test allows 5×), and starting it brings
//! it back, seen both in answers from XDP (plain queries) and from userspace (queries with EDNS Client
//! Subnet, which XDP passes).
//!
//! Needs root: `cargo xtask test` runs it (`--ignored`). All traffic stays inside the namespace.

mod common;

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use common::{
    netns::{Netns, Proc, TempDir, wait_for},
    nginx::Nginx,
};
use opengslb::xdp::{Counters, pin_dir};
use opengslb_common::counters::Counter;

const INTERVAL: Duration = Duration::from_secs(1);

fn config() -> String {
    r#"mode: overwatch
dns:
  listen_address: "127.0.0.1:53"
  zones: [lab.test]
  default_ttl: 1
  xdp: { interfaces: [lo], mode: skb }
regions:
  - name: lab
    servers:
      - { address: 127.0.0.11, port: 8081, service: app.lab.test }
      - { address: 127.0.0.12, port: 8082, service: app.lab.test }
    health_check: { type: http, path: /health, interval: 1s, timeout: 500ms, failure_threshold: 2, success_threshold: 1 }
domains:
  - { name: app.lab.test, routing_algorithm: round-robin, regions: [lab], ttl: 1, max_answers: 16 }
"#
    .into()
}

/// The A records of `app.lab.test` from inside the namespace; with `ecs` the query carries Client
/// Subnet, so XDP passes it to userspace.
fn answers(ns: &Netns, ecs: bool) -> Vec<Ipv4Addr> {
    let mut args = vec![
        "netns",
        "exec",
        &ns.name,
        "dig",
        "@127.0.0.1",
        "app.lab.test",
        "A",
        "+short",
        "+tries=1",
        "+time=1",
    ];
    if ecs {
        args.push("+subnet=198.51.100.0/24");
    }
    let out = Command::new("ip").args(&args).output().expect("dig");
    let mut v: Vec<Ipv4Addr> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    v.sort();
    v
}

fn both_paths_say(ns: &Netns, want: &[Ipv4Addr]) -> bool {
    answers(ns, false) == want && answers(ns, true) == want
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn stopping_a_backend_takes_it_out_and_starting_it_brings_it_back() {
    common::require_root();
    let ns = Netns::new("val");
    let dir = TempDir::new("val");
    let (b1, b2) = (Ipv4Addr::new(127, 0, 0, 11), Ipv4Addr::new(127, 0, 0, 12));
    let _n1 = Nginx::start(
        &dir.0.join("n1"),
        SocketAddr::from((b1, 8081)),
        Some(&ns.name),
    );
    let mut n2 = Nginx::start(
        &dir.0.join("n2"),
        SocketAddr::from((b2, 8082)),
        Some(&ns.name),
    );
    let cfg = dir.0.join("overwatch.yaml");
    std::fs::write(&cfg, config()).unwrap();
    let bpffs_root = Path::new("/sys/fs/bpf").join(format!("ogs-test-{}-val", std::process::id()));
    let mut cmd = ns.command(Path::new(env!("CARGO_BIN_EXE_opengslb")));
    cmd.args(["overwatch", "--detach-on-exit", "--config"])
        .arg(&cfg)
        .arg("--bpffs-root")
        .arg(&bpffs_root);
    let log = dir.0.join("overwatch.log");
    let _server = Proc::spawn(cmd, &log);
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_for(Duration::from_secs(20), || both_paths_say(&ns, &[b1, b2])),
        "both backends answered at start: {}",
        logged()
    );

    n2.stop();
    let stopped = Instant::now();
    // About one interval by design; five allowed, for a slow, loaded machine.
    assert!(
        wait_for(5 * INTERVAL, || both_paths_say(&ns, &[b1])),
        "a stopped backend leaves DNS within 5 check intervals: {:?} / {:?}\n{}",
        answers(&ns, false),
        answers(&ns, true),
        logged()
    );
    println!(
        "out after {:?} (check interval {INTERVAL:?})",
        stopped.elapsed()
    );

    n2.resume();
    let started = Instant::now();
    assert!(
        wait_for(5 * INTERVAL, || both_paths_say(&ns, &[b1, b2])),
        "a restarted backend comes back within 5 check intervals: {:?}",
        answers(&ns, false)
    );
    println!("back after {:?}", started.elapsed());

    // The plain queries really were answered by XDP, the ECS ones by userspace.
    let c = Counters::read_pinned(&pin_dir(&bpffs_root)).expect("counters");
    assert!(c.get(Counter::AnsweredA) > 0, "{c}");
    assert!(c.get(Counter::Ecs) > 0, "{c}");
}
