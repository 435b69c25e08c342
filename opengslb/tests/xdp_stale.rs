//! A data plane without its control plane: the overwatch stamps a heartbeat into the XDP program's
//! config every second from its main loop; with the process stopped (SIGSTOP, as a hung overwatch would
//! be), the table goes stale after `dns.xdp.stale_after`, and the program then keeps answering, counted
//! (`when_stale: serve`), or answers nothing (`when_stale: pass`); once the process runs again it answers
//! as before.
//!
//! Needs root: `cargo xtask test` runs these (`--ignored`). Everything runs on the `lo` of a namespace
//! the test creates.

mod common;

use std::{path::Path, process::Command, time::Duration};

use aya::maps::{Array, Map, MapData};
use aya::programs::xdp::XdpMode;
use common::netns::{Netns, TempDir, wait_for, xdp_only_overwatch};
use opengslb::xdp::{Counters, link_pin, monotonic_coarse_ns, pin_dir};
use opengslb_common::{
    counters::Counter,
    maps::{CONFIG_MAP, XdpConfig},
};

/// The shortest `stale_after` the config allows.
const STALE_AFTER: Duration = Duration::from_secs(3);

fn config(when_stale: &str) -> String {
    format!(
        r#"mode: overwatch
overwatch: {{ validation: {{ enabled: false }} }}
dns:
  listen_address: "127.0.0.1:53"
  zones: [demo.local]
  xdp: {{ interfaces: [lo], mode: skb, stale_after: {}s, when_stale: {when_stale} }}
regions:
  - name: local
    servers:
      - {{ address: 192.0.2.1, service: app.demo.local }}
domains:
  - {{ name: app.demo.local, routing_algorithm: round-robin, regions: [local], ttl: 5 }}
"#,
        STALE_AFTER.as_secs()
    )
}

/// Whether one `dig` from the namespace got the answer (no answer within a second is `false`).
fn answered(ns: &Netns) -> bool {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .args(["dig", "@127.0.0.1", "app.demo.local", "A", "+short"])
        .args(["+tries=1", "+time=1"])
        .output()
        .expect("run dig");
    String::from_utf8_lossy(&out.stdout).trim() == "192.0.2.1"
}

/// The program's settings as the overwatch last wrote them to its pinned config map.
fn pinned_config(pins: &Path) -> XdpConfig {
    let data = MapData::from_pin(pins.join(CONFIG_MAP)).expect("the pinned config map");
    let map = Array::<_, XdpConfig>::try_from(Map::Array(data)).expect("an array");
    map.get(&0, 0).expect("its one entry")
}

/// Sends `signal` to `pid`.
fn signal(pid: u32, signal: i32) {
    // SAFETY: kill on a child we have not reaped.
    unsafe { libc::kill(pid as i32, signal) };
}

/// Lets a stopped process run again when the test ends, however it ends, so it can clean up on SIGINT.
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        signal(self.0, libc::SIGCONT);
    }
}

fn run(when_stale: &str) {
    common::require_root();
    let ns = Netns::new(&format!("stale{when_stale}"));
    let dir = TempDir::new(&format!("stale{when_stale}"));
    let cfg = dir.0.join("overwatch.yaml");
    std::fs::write(&cfg, config(when_stale)).unwrap();
    let bpffs_root =
        Path::new("/sys/fs/bpf").join(format!("ogs-test-{}-stale{when_stale}", std::process::id()));
    let log = dir.0.join("overwatch.log");
    let mut server = xdp_only_overwatch(&ns, &cfg, &bpffs_root, &log);
    let pid = server.child.as_ref().unwrap().id();
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    let pins = pin_dir(&bpffs_root);
    assert!(
        wait_for(Duration::from_secs(20), || {
            link_pin(&bpffs_root, "lo", XdpMode::Skb).exists()
        }),
        "the overwatch did not attach: {}",
        logged()
    );
    let count = |c| Counters::read_pinned(&pins).unwrap().get(c);
    assert!(answered(&ns), "answered while the overwatch runs");
    assert_eq!(count(Counter::Stale) + count(Counter::ServedStale), 0);

    signal(pid, libc::SIGSTOP);
    let resume = Resume(pid);
    let stopped = std::time::Instant::now();
    // Stale after STALE_AFTER (and up to a second of the last heartbeat's age); waits up to 3× that.
    let (counter, want_answer) = match when_stale {
        "serve" => (Counter::ServedStale, true),
        _ => (Counter::Stale, false),
    };
    let went_stale = wait_for((STALE_AFTER + Duration::from_secs(1)) * 3, || {
        answered(&ns) == want_answer && count(counter) > 0
    });
    println!(
        "{when_stale}: stale after {:.1} s with the overwatch stopped",
        stopped.elapsed().as_secs_f64()
    );
    assert!(
        went_stale,
        "{when_stale}: no stale outcome with the overwatch stopped: {}",
        Counters::read_pinned(&pins).unwrap()
    );
    // Measured from the last heartbeat the stopped overwatch wrote (it may be older than the stop by a
    // tick or, on a busy machine, more), on the clock the program reads.
    let heartbeat = pinned_config(&pins).heartbeat_ns;
    let age = Duration::from_nanos(monotonic_coarse_ns().saturating_sub(heartbeat));
    println!(
        "{when_stale}: the last heartbeat {:.1} s old",
        age.as_secs_f64()
    );
    assert!(
        age > STALE_AFTER,
        "{when_stale}: stale with a heartbeat {age:?} old, before stale_after"
    );
    if want_answer {
        assert_eq!(count(Counter::Stale), 0, "serve never passes");
    } else {
        assert_eq!(count(Counter::ServedStale), 0, "pass never answers stale");
        assert!(!answered(&ns), "nothing answers a stale table");
    }

    drop(resume);
    assert!(
        wait_for(Duration::from_secs(10), || answered(&ns)),
        "{when_stale}: not answered again once the overwatch runs"
    );
    let settled = count(counter);
    for _ in 0..3 {
        assert!(answered(&ns));
    }
    assert_eq!(
        count(counter),
        settled,
        "fresh again: no more stale outcomes"
    );
    assert!(server.interrupt(), "clean exit on SIGINT: {}", logged());
    assert!(!bpffs_root.exists(), "pins removed");
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn a_stopped_overwatch_leaves_a_stale_table_served_and_counted() {
    run("serve");
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn a_stopped_overwatch_leaves_a_stale_table_unanswered_when_told_to_pass() {
    run("pass");
}
