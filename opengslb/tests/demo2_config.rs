//! The Demo 2 overwatch config, as the original's users have it, runs: in a network namespace this test
//! creates, the three webapp addresses (10.20.0.21–23, on that namespace's loopback interface, so no
//! packet can leave it) each get a real nginx, and the overwatch started from the file answers with
//! all three; a stopped webapp leaves DNS by external validation and comes back when restarted.
//!
//! Needs root: `cargo xtask test` runs it (`--ignored`).

mod common;

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    process::Command,
    time::Duration,
};

use common::{
    netns::{Netns, Proc, TempDir, wait_for},
    nginx::Nginx,
};

/// Demo 2's check interval (`health_check.interval: 5s`).
const INTERVAL: Duration = Duration::from_secs(5);

fn seen(ns: &Netns, queries: usize) -> BTreeSet<Ipv4Addr> {
    (0..queries)
        .flat_map(|_| {
            let out = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &ns.name,
                    "dig",
                    "@127.0.0.1",
                    "app.demo.local",
                ])
                .args(["+short", "+tries=1", "+time=1"])
                .output()
                .expect("dig");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<Ipv4Addr>>()
        })
        .collect()
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn demo2_overwatch_config_serves_its_zone_with_validation() {
    common::require_root();
    let ns = Netns::new("d2");
    let webapps: Vec<Ipv4Addr> = (21..=23).map(|i| Ipv4Addr::new(10, 20, 0, i)).collect();
    for a in &webapps {
        ns.exec(&["ip", "addr", "add", &format!("{a}/32"), "dev", "lo"]);
    }
    let dir = TempDir::new("d2");
    let mut nginx: Vec<Nginx> = webapps
        .iter()
        .enumerate()
        .map(|(i, a)| {
            Nginx::start(
                &dir.0.join(format!("web{i}")),
                SocketAddr::from((*a, 80)),
                Some(&ns.name),
            )
        })
        .collect();

    // Demo 2's file as it is, copied owner-only: it holds the gossip key.
    let demo2 =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/testdata/demo2-overwatch.yaml");
    let config = dir.0.join("overwatch.yaml");
    common::write_private(&config, &std::fs::read_to_string(demo2).unwrap());
    let mut cmd = ns.command(Path::new(env!("CARGO_BIN_EXE_opengslb")));
    cmd.args(["overwatch", "--config"]).arg(&config);
    let log = dir.0.join("overwatch.log");
    let _server = Proc::spawn(cmd, &log);
    let all: BTreeSet<Ipv4Addr> = webapps.iter().copied().collect();
    assert!(
        wait_for(Duration::from_secs(20), || seen(&ns, 6) == all),
        "the three webapps are answered in turn: {:?}\n{}",
        seen(&ns, 6),
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    nginx[1].stop();
    let two: BTreeSet<Ipv4Addr> = [webapps[0], webapps[2]].into();
    assert!(
        wait_for(3 * INTERVAL, || seen(&ns, 6) == two),
        "a stopped webapp leaves DNS within 3 check intervals: {:?}",
        seen(&ns, 6)
    );
    nginx[1].resume();
    assert!(
        wait_for(3 * INTERVAL, || seen(&ns, 6) == all),
        "a restarted webapp comes back: {:?}",
        seen(&ns, 6)
    );
}
