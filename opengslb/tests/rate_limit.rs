//! Response rate limiting end to end: an overwatch with `dns.rate_limit` in a namespace of its own, XDP
//! on its `lo`. One client prefix (127.0.0.0/24) floods it at 25 times its rate while a client in
//! another prefix (127.0.1.0/24) asks at half the rate; through the XDP path (A queries) and then the
//! userspace one (SOA queries, which XDP passes). The flood gets its rate and its burst answered, and
//! every second limited reply truncated; the other prefix gets every answer; the metrics count both.
//!
//! Needs root: `cargo xtask test` runs this (`--ignored`).

mod common;

use std::{
    io::ErrorKind,
    net::{SocketAddr, UdpSocket},
    path::Path,
    thread,
    time::{Duration, Instant},
};

use common::{
    http::call,
    netns::{Netns, Proc, TempDir, wait_for},
};
use hickory_proto::{
    op::Message,
    rr::{Name, RecordType},
};

const RATE: u64 = 200;
const FLOOD_QPS: u64 = 5_000;
const OTHER_QPS: u64 = 100;
const SECONDS: u64 = 3;
const DNS: &str = "127.0.0.1:53";
const METRICS: &str = "127.0.0.1:9153";

fn config() -> String {
    format!(
        r#"mode: overwatch
logging: {{ format: text }}
overwatch: {{ validation: {{ enabled: false }} }}
metrics: {{ enabled: true, address: "{METRICS}" }}
dns:
  listen_address: "{DNS}"
  zones: [demo.local]
  xdp: {{ interfaces: [lo], mode: skb }}
  rate_limit: {{ responses_per_second: {RATE}, slip: 2 }}
regions:
  - name: local
    servers:
      - {{ address: 192.0.2.1, service: app.demo.local }}
domains:
  - {{ name: app.demo.local, regions: [local], ttl: 5 }}
"#
    )
}

/// What one client got back.
#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    answered: u64,
    truncated: u64,
    other: u64,
}

/// Sends `qps` copies of the query for `name` and `qtype` a second for [`SECONDS`] from `src`, and
/// tallies the replies (waiting a second after the last query for stragglers).
fn load(src: &str, name: &str, qtype: RecordType, qps: u64) -> Tally {
    let sock = UdpSocket::bind((src, 0)).expect("bind the client address");
    sock.connect(DNS).unwrap();
    sock.set_nonblocking(true).unwrap();
    let mut query = Message::query();
    query.add_query(hickory_proto::op::Query::query(
        Name::from_ascii(name).unwrap(),
        qtype,
    ));
    let mut wire = query.to_vec().unwrap();
    let total = qps * SECONDS;
    let mut t = Tally::default();
    let mut buf = [0u8; 1500];
    let start = Instant::now();
    let end = Duration::from_secs(SECONDS + 1);
    while start.elapsed() < end {
        let due = ((start.elapsed().as_secs_f64() * qps as f64) as u64).min(total);
        while t.sent < due {
            wire[..2].copy_from_slice(&(t.sent as u16).to_be_bytes());
            match sock.send(&wire) {
                Ok(_) => t.sent += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("send: {e}"),
            }
        }
        loop {
            match sock.recv(&mut buf) {
                Ok(n) if n >= 12 => {
                    let tc = buf[2] & 0x02 != 0;
                    let rcode = buf[3] & 0x0f;
                    let ancount = u16::from_be_bytes([buf[6], buf[7]]);
                    if tc && ancount == 0 {
                        t.truncated += 1;
                    } else if rcode == 0 && ancount > 0 {
                        t.answered += 1;
                    } else {
                        t.other += 1;
                    }
                }
                Ok(_) => t.other += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("recv: {e}"),
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
    t
}

/// The value of the sample `line` (a metric with its labels) on the overwatch's `/metrics`.
fn metric(ns: &Netns, line: &str) -> u64 {
    let (status, body) = ns.enter(|| call(METRICS.parse().unwrap(), "GET", "/metrics", &[], None));
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line} in\n{body}"))
}

/// Checks that the metrics `slipped` and `dropped` count what the flood `t` got (the XDP counters reach
/// the metrics once a second).
fn assert_counted(ns: &Netns, path: &str, t: &Tally, slipped: &str, dropped: &str) {
    let counted = wait_for(Duration::from_secs(5), || {
        metric(ns, slipped) >= t.truncated && metric(ns, dropped) >= (t.sent - t.answered) / 3
    });
    println!(
        "{path} counted {} dropped, {} slipped",
        metric(ns, dropped),
        metric(ns, slipped)
    );
    assert!(
        counted,
        "{path}: every truncated reply and the drops are counted"
    );
}

/// Floods from one prefix while another asks, both for `name` and `qtype`; checks both and returns the
/// flood's tally.
fn flood_beside_another_prefix(ns: &Netns, name: &str, qtype: RecordType, path: &str) -> Tally {
    let (flood, other) = thread::scope(|s| {
        let flood = s.spawn(|| ns.enter(|| load("127.0.0.1", name, qtype, FLOOD_QPS)));
        let other = s.spawn(|| ns.enter(|| load("127.0.1.1", name, qtype, OTHER_QPS)));
        (flood.join().unwrap(), other.join().unwrap())
    });
    println!("{path}: the flooding prefix: {flood:?}");
    println!("{path}: the other prefix:    {other:?}");
    assert_eq!(
        (other.answered, other.truncated, other.other),
        (other.sent, 0, 0),
        "{path}: the other prefix gets every answer"
    );
    assert_eq!(flood.sent, FLOOD_QPS * SECONDS);
    assert_eq!(flood.other, 0, "{path}: no other kind of reply");
    // The rate for the seconds the flood lasted, plus the burst (one second's worth); a few more if the
    // machine stalled the sender past its seconds (a second's worth of slack), none fewer than 80 %.
    let most = RATE + RATE * (SECONDS + 1);
    let least = RATE * SECONDS * 4 / 5;
    assert!(
        (least..=most).contains(&flood.answered),
        "{path}: {} answered, expected {least}..={most}",
        flood.answered
    );
    let limited = flood.sent - flood.answered;
    assert!(
        flood.truncated.abs_diff(limited / 2) <= limited / 50 + 1,
        "{path}: every second limited reply is truncated: {flood:?}"
    );
    flood
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn a_flooding_prefix_is_limited_while_another_is_answered_on_both_paths() {
    common::require_root();
    let ns = Netns::new("ratelimit");
    let dir = TempDir::new("ratelimit");
    let cfg = dir.0.join("overwatch.yaml");
    std::fs::write(&cfg, config()).unwrap();
    let log = dir.0.join("overwatch.log");
    let bpffs_root = Path::new("/sys/fs/bpf").join(format!("ogs-test-{}-rrl", std::process::id()));
    let mut cmd = ns.command(Path::new(env!("CARGO_BIN_EXE_opengslb")));
    cmd.args(["overwatch", "--detach-on-exit", "--config"])
        .arg(&cfg)
        .arg("--bpffs-root")
        .arg(&bpffs_root);
    let mut server = Proc::spawn(cmd, &log);
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    let metrics: SocketAddr = METRICS.parse().unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || {
            ns.enter(|| call(metrics, "GET", "/metrics", &[], None))
                .1
                .contains("outcome=\"answered_a\"")
        }),
        "the overwatch did not start with XDP: {}",
        logged()
    );

    let xdp = flood_beside_another_prefix(&ns, "app.demo.local.", RecordType::A, "XDP");
    assert_counted(
        &ns,
        "XDP",
        &xdp,
        "opengslb_xdp_packets_total{outcome=\"rate_slipped\"}",
        "opengslb_xdp_packets_total{outcome=\"rate_limited\"}",
    );
    // SOA queries are answered by userspace, which limits with buckets of its own.
    let user = flood_beside_another_prefix(&ns, "demo.local.", RecordType::SOA, "userspace");
    assert_counted(
        &ns,
        "userspace",
        &user,
        "opengslb_dns_rate_limited_total{action=\"slipped\"}",
        "opengslb_dns_rate_limited_total{action=\"dropped\"}",
    );

    assert!(
        server.interrupt(),
        "the overwatch stops on SIGINT: {}",
        logged()
    );
    assert!(!logged().contains("ERROR"), "{}", logged());
}
