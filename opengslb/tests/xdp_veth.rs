//! The XDP program on a veth pair between two network namespaces this test creates, with no userspace
//! DNS listener at all: real `dig` and `kdig` queries (their default EDNS options included) for A and AAAA
//! over IPv4 and IPv6 must be answered by XDP, and its counters must rise by the number of queries.
//!
//! Needs root: `cargo xtask test` runs these (`--ignored`). Traffic stays inside the two namespaces.

mod common;

use std::{net::IpAddr, path::Path, process::Command, time::Duration};

use aya::programs::xdp::XdpMode;
use common::netns::{Netns, Proc, TempDir, Veth, wait_for, xdp_only_overwatch};
use opengslb::xdp::{AttachMode, Counters, Dataplane, link_pin, pin_dir};

const SERVER4: &str = "198.18.0.1";
const SERVER6: &str = "fd00:5eed::1";

fn config(iface: &str, mode: &str) -> String {
    format!(
        r#"mode: overwatch
overwatch: {{ validation: {{ enabled: false }} }}
dns:
  listen_address: "[::]:53"
  zones: [demo.local]
  default_ttl: 5
  xdp: {{ interfaces: [{iface}], mode: {mode} }}
metrics: {{ enabled: true, address: "127.0.0.1:9091" }}
regions:
  - name: local
    servers:
      - {{ address: 192.0.2.1, service: app.demo.local }}
      - {{ address: 192.0.2.2, service: app.demo.local }}
      - {{ address: 192.0.2.3, service: app.demo.local }}
      - {{ address: "2001:db8::1", service: app.demo.local }}
      - {{ address: "2001:db8::2", service: app.demo.local }}
      - {{ address: "2001:db8::3", service: app.demo.local }}
domains:
  - {{ name: app.demo.local, routing_algorithm: round-robin, regions: [local], ttl: 5 }}
"#
    )
}

/// One query from the client namespace; returns the addresses answered.
fn query(cli: &Netns, tool: &str, server: &str, qtype: &str) -> Vec<IpAddr> {
    let at = format!("@{server}");
    let args: Vec<&str> = match tool {
        "dig" => vec![
            "dig",
            &at,
            "app.demo.local",
            qtype,
            "+short",
            "+tries=1",
            "+time=2",
        ],
        _ => vec![
            "kdig",
            &at,
            "app.demo.local",
            qtype,
            "+short",
            "+retry=0",
            "+time=2",
        ],
    };
    let out = Command::new("ip")
        .args(["netns", "exec", &cli.name])
        .args(&args)
        .output()
        .expect("run the DNS client");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn run(mode: &str) {
    common::require_root();
    let srv = Netns::new(&format!("s{mode}"));
    let cli = Netns::new(&format!("c{mode}"));
    let veth = Veth::new(
        &srv,
        &cli,
        &[&format!("{SERVER4}/24"), &format!("{SERVER6}/64")],
        &["198.18.0.2/24", "fd00:5eed::2/64"],
    );
    // In native mode, XDP_TX into a veth is delivered only if the peer has a native program too
    // (drivers/net/veth.c wakes the peer's NAPI only then): our program with no port does nothing but pass.
    let _client_side = (mode == "driver").then(|| {
        cli.enter(|| {
            let mut dp = Dataplane::load(None).expect("load");
            dp.configure(0, 1232).unwrap();
            dp.attach(&veth.b, AttachMode::Driver)
                .expect("native XDP on the client end");
            dp
        })
    });

    let dir = TempDir::new(mode);
    let cfg = dir.0.join("overwatch.yaml");
    std::fs::write(&cfg, config(&veth.a, mode)).unwrap();
    let bpffs_root =
        Path::new("/sys/fs/bpf").join(format!("ogs-test-{}-{mode}", std::process::id()));
    let log = dir.0.join("overwatch.log");
    let mut server = xdp_only_overwatch(&srv, &cfg, &bpffs_root, &log);
    let used = if mode == "driver" {
        XdpMode::Driver
    } else {
        XdpMode::Skb
    };
    let link_pin = link_pin(&bpffs_root, &veth.a, used);
    assert!(
        wait_for(Duration::from_secs(20), || link_pin.exists()),
        "the overwatch did not attach: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // Nothing listens on port 53 in the server namespace: only XDP can answer.
    let listeners = srv.exec(&["ss", "-Hlun", "sport = :53"]);
    assert!(
        listeners.stdout.is_empty(),
        "a UDP listener on :53: {:?}",
        listeners
    );

    let before = Counters::read_pinned(&pin_dir(&bpffs_root)).unwrap();
    let mut sent = 0;
    let mut answered = 0;
    let mut failures = Vec::new();
    for tool in ["dig", "kdig"] {
        for server in [SERVER4, SERVER6] {
            for qtype in ["A", "AAAA"] {
                for _ in 0..3 {
                    sent += 1;
                    let got = query(&cli, tool, server, qtype);
                    let ok = got.len() == 1
                        && match (qtype, got[0]) {
                            ("A", IpAddr::V4(a)) => a.octets()[..3] == [192, 0, 2],
                            ("AAAA", IpAddr::V6(a)) => a.segments()[..2] == [0x2001, 0xdb8],
                            _ => false,
                        };
                    if ok {
                        answered += 1;
                    } else {
                        failures.push(format!("{tool} @{server} {qtype}: {got:?}"));
                    }
                }
            }
        }
    }
    let after = Counters::read_pinned(&pin_dir(&bpffs_root)).unwrap();
    let delta = |c| after.get(c) - before.get(c);
    use opengslb_common::counters::Counter;
    let xdp_answers = delta(Counter::AnsweredA) + delta(Counter::AnsweredAaaa);
    println!(
        "{mode}: {answered}/{sent} answered; XDP answered {xdp_answers}, grown at the head {}, \
         adjust_tail passes {}",
        delta(Counter::GrewHead),
        delta(Counter::AdjustTail)
    );
    assert!(
        failures.is_empty(),
        "{mode}: unanswered: {failures:#?}\ncounters: {after}"
    );
    assert_eq!(xdp_answers, sent, "every answer came from XDP");
    assert_eq!(delta(Counter::AnsweredA), sent / 2);

    // The per-name query counts include what XDP answered (read from the program's per-entry counters
    // once a second).
    let want = [("A", sent / 2), ("AAAA", sent / 2)].map(|(t, n)| {
        format!("opengslb_dns_queries_total{{domain=\"app.demo.local\",type=\"{t}\",status=\"NOERROR\"}} {n}\n")
    });
    let mut metrics = String::new();
    let counted = wait_for(Duration::from_secs(10), || {
        let out = srv.exec(&["curl", "-sf", "http://127.0.0.1:9091/metrics"]);
        metrics = String::from_utf8_lossy(&out.stdout).into_owned();
        want.iter().all(|line| metrics.contains(line.as_str()))
    });
    assert!(counted, "{mode}: want {want:?} in /metrics:\n{metrics}");

    assert!(server.interrupt(), "the overwatch exits cleanly on SIGINT");
    assert!(!link_pin.exists(), "the link pin is removed");
    assert!(!bpffs_root.exists(), "the pin directory is removed");
    let xdp = srv.exec(&["ip", "link", "show", &veth.a]);
    assert!(
        !String::from_utf8_lossy(&xdp.stdout).contains("xdp"),
        "XDP is detached: {}",
        String::from_utf8_lossy(&xdp.stdout)
    );
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn dig_and_kdig_answered_by_xdp_in_skb_mode() {
    run("skb");
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn dig_and_kdig_answered_by_xdp_in_native_mode() {
    run("driver");
}

/// What `cargo xtask run` starts: the embedded default config, XDP on lo, plain `dig` answered from XDP
/// for A and AAAA. Run in a namespace of its own, so the host's lo is never touched.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn embedded_default_config_answers_plain_dig_on_lo() {
    common::require_root();
    let ns = Netns::new("lo");
    let dir = TempDir::new("lo");
    let bpffs_root = Path::new("/sys/fs/bpf").join(format!("ogs-test-{}-lo", std::process::id()));
    let mut cmd = ns.command(Path::new(env!("CARGO_BIN_EXE_opengslb")));
    cmd.args(["overwatch", "--detach-on-exit", "--bpffs-root"])
        .arg(&bpffs_root);
    let log = dir.0.join("overwatch.log");
    let mut server = Proc::spawn(cmd, &log);
    let link_pin = link_pin(&bpffs_root, "lo", XdpMode::Skb);
    assert!(
        wait_for(Duration::from_secs(20), || link_pin.exists()),
        "the overwatch did not attach: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    for (qtype, n) in [("A", 3), ("AAAA", 3)] {
        for _ in 0..n {
            let got = query(&ns, "dig", "127.0.0.1", qtype);
            assert_eq!(got.len(), 1, "dig {qtype}: {got:?}");
        }
    }
    let c = Counters::read_pinned(&pin_dir(&bpffs_root)).unwrap();
    use opengslb_common::counters::Counter;
    assert_eq!(c.get(Counter::AnsweredA), 3, "{c}");
    assert_eq!(c.get(Counter::AnsweredAaaa), 3, "{c}");
    // `opengslb xdp counters` reads the same pins.
    let out = Command::new(env!("CARGO_BIN_EXE_opengslb"))
        .args(["xdp", "counters", "--bpffs-root"])
        .arg(&bpffs_root)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("answered 6"),
        "{out:?}"
    );
    assert!(server.interrupt(), "clean exit on SIGINT");
    assert!(!bpffs_root.exists(), "pins removed");
}

/// `auto` asks the kernel, through the namespace the overwatch runs in, whether the interface is virtual:
/// a veth named `eth0` (as in a container) gets skb mode even where the root namespace's `/sys`, which a
/// process that only entered the namespace still sees, shows a physical `eth0`. Native mode there would
/// drop every reply (see above).
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn auto_mode_picks_skb_on_a_veth_named_like_a_physical_interface() {
    common::require_root();
    let srv = Netns::new("auto");
    let cli = Netns::new("autoc");
    let veth = Veth::new(&srv, &cli, &[], &[]);
    srv.exec(&["ip", "link", "set", &veth.a, "down"]);
    srv.exec(&["ip", "link", "set", &veth.a, "name", "eth0"]);
    srv.exec(&["ip", "link", "set", "eth0", "up"]);
    let physical = Path::new("/sys/class/net/eth0/device").exists();
    println!(
        "the root namespace's /sys shows {} eth0",
        if physical {
            "a physical"
        } else {
            "no physical"
        }
    );
    let mode = srv.enter(|| {
        let mut dp = Dataplane::load(None).expect("load");
        dp.configure(0, 1232).unwrap();
        dp.attach("eth0", AttachMode::Auto).expect("attach")
    });
    assert!(
        matches!(mode, XdpMode::Skb),
        "auto chose {mode:?} on a veth"
    );
}
