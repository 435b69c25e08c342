//! The routing algorithms through the DNS server, end to end: an overwatch process (userspace server
//! only, no root needed) answering weighted, failover and geolocation names; geolocation by custom CIDR,
//! by the MaxMind test database and by EDNS Client Subnet, with the scope echoed; and with
//! `geolocation.ecs_enabled: false`, by the source address whatever the Client Subnet says.

mod common;

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    path::Path,
    process::Command,
    time::Duration,
};

use common::netns::{Proc, TempDir, wait_for};
use hickory_proto::{
    op::{Edns, Message, Query},
    rr::{
        Name, RData, RecordType,
        rdata::opt::{ClientSubnet, EdnsCode, EdnsOption},
    },
};

/// The overwatch's config; `ecs` is its `geolocation.ecs_enabled`.
fn config(port: u16, ecs: bool) -> String {
    let db = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/geo-test.mmdb");
    format!(
        r#"mode: overwatch
overwatch:
  validation: {{ enabled: false }}
  geolocation:
    database_path: "{db}"
    default_region: eu
    ecs_enabled: {ecs}
    custom_mappings:
      - {{ cidr: 192.0.2.0/25, region: us }}
dns:
  listen_address: "127.0.0.1:{port}"
  zones: [lab.test]
regions:
  - name: eu
    countries: [DE]
    servers:
      - {{ address: 192.0.2.1, weight: 300, service: w.lab.test }}
      - {{ address: 192.0.2.2, weight: 100, service: w.lab.test }}
      - {{ address: 192.0.2.11, service: f.lab.test }}
      - {{ address: 192.0.2.12, service: f.lab.test }}
      - {{ address: 192.0.2.21, service: g.lab.test }}
  - name: us
    countries: [US]
    servers:
      - {{ address: 192.0.2.31, service: g.lab.test }}
domains:
  - {{ name: w.lab.test, routing_algorithm: weighted, regions: [eu] }}
  - {{ name: f.lab.test, routing_algorithm: failover, regions: [eu] }}
  - {{ name: g.lab.test, routing_algorithm: geolocation, regions: [eu, us] }}
"#,
        db = db.display()
    )
}

/// One A query; returns the addresses and the ECS scope echoed, if any.
fn ask(port: u16, name: &str, ecs: Option<(IpAddr, u8)>) -> (Vec<Ipv4Addr>, Option<u8>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Connected: before the server is up, the port's refusal ends the wait at once. Generous otherwise,
    // since a lost reply is a failed check (waiting costs time only on failure).
    sock.connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut m = Message::query();
    m.metadata.id = 9;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    if let Some((addr, prefix)) = ecs {
        let mut e = Edns::new();
        e.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::new(addr, prefix, 0)));
        m.set_edns(e);
    }
    sock.send(&m.to_vec().unwrap()).unwrap();
    let mut buf = [0u8; 1500];
    let Ok(n) = sock.recv(&mut buf) else {
        return (Vec::new(), None);
    };
    let r = Message::from_vec(&buf[..n]).unwrap();
    let addrs = r
        .answers
        .iter()
        .filter_map(|a| match &a.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    let scope = r
        .edns
        .as_ref()
        .and_then(|e| match e.option(EdnsCode::Subnet) {
            Some(EdnsOption::Subnet(s)) => Some(s.scope_prefix()),
            _ => None,
        });
    (addrs, scope)
}

/// Starts an overwatch on `config(port, ecs)` in `dir` and waits until it answers.
fn start(dir: &TempDir, port: u16, ecs: bool) -> Proc {
    let cfg = dir.0.join("overwatch.yaml");
    std::fs::write(&cfg, config(port, ecs)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opengslb"));
    cmd.args(["overwatch", "--config"]).arg(&cfg);
    let log = dir.0.join("log");
    let server = Proc::spawn(cmd, &log);
    assert!(
        wait_for(Duration::from_secs(20), || !ask(port, "f.lab.test.", None)
            .0
            .is_empty()),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    server
}

#[test]
fn weighted_failover_and_geolocation_through_the_dns_server() {
    let dir = TempDir::new("routing");
    let port = common::free_port();
    let _server = start(&dir, port, true);

    // Weighted 300:100: three quarters of the first answers go to .1.
    let mut counts: HashMap<Ipv4Addr, u32> = HashMap::new();
    for _ in 0..400 {
        let (a, _) = ask(port, "w.lab.test.", None);
        *counts.entry(a[0]).or_default() += 1;
    }
    assert_eq!(
        counts.get(&Ipv4Addr::new(192, 0, 2, 1)),
        Some(&300),
        "{counts:?}"
    );
    assert_eq!(
        counts.get(&Ipv4Addr::new(192, 0, 2, 2)),
        Some(&100),
        "{counts:?}"
    );

    // Failover: always the first in config order.
    for _ in 0..10 {
        assert_eq!(
            ask(port, "f.lab.test.", None).0,
            [Ipv4Addr::new(192, 0, 2, 11)]
        );
    }

    let eu = Ipv4Addr::new(192, 0, 2, 21);
    let us = Ipv4Addr::new(192, 0, 2, 31);
    // Geolocation by a custom CIDR rule (ECS inside 192.0.2.0/25): the us region, scope /25.
    let (a, scope) = ask(
        port,
        "g.lab.test.",
        Some(("192.0.2.64".parse().unwrap(), 26)),
    );
    assert_eq!(a, [us]);
    assert_eq!(scope, Some(25));
    // By the MaxMind test database: 203.0.113.0/24 is US, 198.51.100.0/24 is DE (region eu).
    let (a, scope) = ask(
        port,
        "g.lab.test.",
        Some(("203.0.113.0".parse().unwrap(), 24)),
    );
    assert_eq!(a, [us]);
    assert_eq!(scope, Some(24));
    let (a, _) = ask(
        port,
        "g.lab.test.",
        Some(("198.51.100.0".parse().unwrap(), 24)),
    );
    assert_eq!(a, [eu]);
    // No ECS: the source address (127.0.0.1) is in no rule nor the database: the default region.
    assert_eq!(ask(port, "g.lab.test.", None).0, [eu]);
}

/// `geolocation.ecs_enabled: false`: the Client Subnet option is parsed and echoed with scope 0 (the answer
/// holds for every client of the resolver), and the client is placed by the source address.
#[test]
fn with_ecs_off_a_client_subnet_is_echoed_but_not_used() {
    let dir = TempDir::new("routing-noecs");
    let port = common::free_port();
    let _server = start(&dir, port, false);
    let eu = Ipv4Addr::new(192, 0, 2, 21);
    // Subnets the custom rule and the database place in us: the source address (127.0.0.1) decides, eu.
    for subnet in ["192.0.2.64", "203.0.113.0"] {
        let (a, scope) = ask(port, "g.lab.test.", Some((subnet.parse().unwrap(), 24)));
        assert_eq!((a, scope), (vec![eu], Some(0)), "ECS {subnet}");
    }
    assert_eq!(ask(port, "g.lab.test.", None).0, [eu]);
}
