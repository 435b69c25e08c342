//! The etcd cluster the shared-store tests and bench run (`tests/common/etcd.rs`), checked on its own:
//! three members start and agree, a key written through one member is read through another, the cluster
//! keeps serving with its leader killed (a quorum of two elects another), and the killed member rejoins
//! on its data and catches up. Once on loopback (no root; free ports, never the system etcd's 2379/2380) and once inside
//! a namespace (root), each member on its own address of the namespace's `lo`.

mod common;

use std::time::{Duration, Instant};

use common::{
    etcd::{EtcdCluster, memory_dir},
    netns::Netns,
};

/// Far more than a healthy three-member cluster needs on loopback (under a second), as a loaded machine
/// may be slow at random.
const HEALTHY: Duration = Duration::from_secs(10);

/// Writes and reads across members, kills the leader, writes and reads on the other two, restarts it;
/// prints the times.
fn exercise(c: &mut EtcdCluster, what: &str) {
    let started = Instant::now();
    let up = c.wait_healthy(HEALTHY);
    c.put(0, "/lab/a", "one");
    assert_eq!(c.get(2, "/lab/a").as_deref(), Some("one"), "{}", c.logs());

    // The leader, the member whose loss costs most: an election.
    let leader = c
        .leader()
        .unwrap_or_else(|| panic!("no agreed leader\n{}", c.logs()));
    let (x, y) = ((leader + 1) % 3, (leader + 2) % 3);
    c.kill(leader);
    assert!(!c.running(leader));
    // A write sent before the others notice would be forwarded to the dead leader and wait out etcd's
    // request timeout (about 6 s here); they serve again once they elected a new one.
    let elected = c.wait_healthy(HEALTHY);
    let t = Instant::now();
    c.put(x, "/lab/b", "two");
    c.put(y, "/lab/a", "three");
    assert_eq!(c.get(x, "/lab/a").as_deref(), Some("three"), "{}", c.logs());
    assert_eq!(c.get(y, "/lab/b").as_deref(), Some("two"), "{}", c.logs());
    let degraded = t.elapsed();

    c.restart(leader);
    let rejoin = c.wait_healthy(HEALTHY);
    // The restarted member caught up with what was written while it was down.
    assert_eq!(
        c.get(leader, "/lab/a").as_deref(),
        Some("three"),
        "{}",
        c.logs()
    );
    assert_eq!(
        c.get(leader, "/lab/b").as_deref(),
        Some("two"),
        "{}",
        c.logs()
    );
    assert_eq!(c.get(leader, "/lab/none"), None);
    eprintln!(
        "etcd lab ({what}): 3 members healthy {:.0} ms after start; leader m{leader} killed, the other \
         two serving {:.0} ms later; 2 writes + 2 reads on them {:.0} ms; m{leader} healthy again {:.0} \
         ms after its restart; all {:.1} s",
        up.as_secs_f64() * 1e3,
        elected.as_secs_f64() * 1e3,
        degraded.as_secs_f64() * 1e3,
        rejoin.as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_loopback_cluster_keeps_serving_with_its_leader_down() {
    let dir = memory_dir("etcd-lo");
    let mut c = EtcdCluster::loopback(3, &dir.0);
    for e in c.endpoints() {
        assert!(!e.ends_with(":2379") && !e.ends_with(":2380"), "{e}");
    }
    exercise(&mut c, "loopback");
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn a_namespace_cluster_keeps_serving_with_its_leader_down() {
    common::require_root();
    let ns = Netns::new("etcd");
    let dir = memory_dir("etcd-ns");
    // The namespace's own `lo`: etcd's usual ports are free there whatever runs outside.
    let mut c = EtcdCluster::on_ips(
        Some(&ns),
        &["127.0.0.1", "127.0.0.2", "127.0.0.3"],
        2379,
        2380,
        &dir.0,
    );
    assert_eq!(c.endpoint(2), "http://127.0.0.3:2379");
    exercise(&mut c, "namespace");
}
