//! The routing algorithms through the DNS server, end to end: an overwatch process (userspace server
//! only, no root needed) answering weighted, failover, geolocation and learned-latency names;
//! geolocation by custom CIDR, by the MaxMind test database and by EDNS Client Subnet, with the scope
//! echoed; with `geolocation.ecs_enabled: false`, by the source address whatever the Client Subnet says;
//! learned latency put in through the API sending each subnet to its fastest backend.

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

/// The overwatch's config; `ecs` is its `geolocation.ecs_enabled`; the API on `port + 1`.
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
api:
  enabled: true
  address: "127.0.0.1:{api}"
  allowed_networks: [127.0.0.0/8]
regions:
  - name: eu
    countries: [DE]
    servers:
      - {{ address: 192.0.2.1, weight: 300, service: w.lab.test }}
      - {{ address: 192.0.2.2, weight: 100, service: w.lab.test }}
      - {{ address: 192.0.2.11, service: f.lab.test }}
      - {{ address: 192.0.2.12, service: f.lab.test }}
      - {{ address: 192.0.2.21, service: g.lab.test }}
      - {{ address: 192.0.2.41, service: l.lab.test }}
  - name: us
    countries: [US]
    servers:
      - {{ address: 192.0.2.31, service: g.lab.test }}
      - {{ address: 192.0.2.51, service: l.lab.test }}
domains:
  - {{ name: w.lab.test, routing_algorithm: weighted, regions: [eu] }}
  - {{ name: f.lab.test, routing_algorithm: failover, regions: [eu] }}
  - {{ name: g.lab.test, routing_algorithm: geolocation, regions: [eu, us] }}
  - {{ name: l.lab.test, routing_algorithm: learned-latency, regions: [eu, us] }}
"#,
        db = db.display(),
        api = port + 1
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

/// `learned-latency`: before anything is learned, geolocation's answer; once a subnet has latencies, its
/// fastest backend, by the Client Subnet address or by the source address, the scope at least the learned
/// subnet's /24; the table as the API shows it; bad entries refused.
#[test]
fn learned_latency_sends_each_subnet_to_its_fastest_backend() {
    let dir = TempDir::new("routing-learned");
    let port = common::free_port();
    let _server = start(&dir, port, true);
    let api = SocketAddr::from((Ipv4Addr::LOCALHOST, port + 1));
    assert!(wait_for(Duration::from_secs(10), || {
        common::http::call(api, "GET", "/api/v1/live", &[], None).0 == 200
    }));
    let eu = Ipv4Addr::new(192, 0, 2, 41);
    let us = Ipv4Addr::new(192, 0, 2, 51);
    let us_clients: IpAddr = "203.0.113.0".parse().unwrap();
    let de_clients: IpAddr = "198.51.100.0".parse().unwrap();
    // Nothing learned: geolocation (the database says US and DE), scope the learned subnet's /24.
    assert_eq!(
        ask(port, "l.lab.test.", Some((us_clients, 24))),
        (vec![us], Some(24))
    );
    assert_eq!(ask(port, "l.lab.test.", Some((de_clients, 24))).0, [eu]);
    assert_eq!(
        ask(port, "l.lab.test.", None).0,
        [eu],
        "127.0.0.1: the default region"
    );
    // US clients measured faster to the eu backend, DE clients to the us one, loopback to us.
    let put = |subnet: &str, backend: Ipv4Addr, ms: f64| {
        let body = format!(
            r#"{{"subnet":"{subnet}","backend":"{backend}","latency_ms":{ms},"samples":10}}"#
        );
        common::http::call(api, "POST", "/api/v1/overwatch/latency", &[], Some(&body))
    };
    for (subnet, backend, ms) in [
        ("203.0.113.0/24", eu, 5.0),
        ("203.0.113.0/24", us, 80.0),
        ("198.51.100.7", us, 3.0),
        ("198.51.100.0/24", eu, 50.0),
        ("127.0.0.0/24", us, 1.0),
    ] {
        let (status, body) = put(subnet, backend, ms);
        assert_eq!(status, 201, "{subnet} {backend}: {body}");
    }
    assert_eq!(
        ask(
            port,
            "l.lab.test.",
            Some(("203.0.113.77".parse().unwrap(), 32))
        ),
        (vec![eu], Some(24)),
        "the learned choice holds for the /24"
    );
    assert_eq!(ask(port, "l.lab.test.", Some((de_clients, 24))).0, [us]);
    assert_eq!(
        ask(port, "l.lab.test.", None).0,
        [us],
        "by the source address"
    );
    // A subnet with nothing learned still gets geolocation (outside the database: the default region).
    assert_eq!(
        ask(
            port,
            "l.lab.test.",
            Some(("203.0.114.0".parse().unwrap(), 24))
        )
        .0,
        [eu]
    );
    let (status, table) = common::http::call(api, "GET", "/api/v1/overwatch/latency", &[], None);
    assert_eq!(status, 200, "{table}");
    let table: serde_json::Value = serde_json::from_str(&table).unwrap();
    println!("the table: {table:#}");
    assert_eq!(table["count"], 5, "{table}");
    assert_eq!(table["subnet_count"], 3, "{table}");
    let de = table["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["subnet"] == "198.51.100.0/24" && e["backend"] == "192.0.2.51")
        .unwrap_or_else(|| panic!("{table}"));
    assert_eq!(
        (
            &de["ewma_ms"],
            &de["sample_count"],
            &de["source"],
            &de["region"]
        ),
        (
            &serde_json::json!(3.0),
            &serde_json::json!(10),
            &serde_json::json!("api"),
            &serde_json::json!("us")
        )
    );
    // Bad entries: a clear 400 (or the extractor's 422), the table unchanged.
    for (body, want) in [
        (
            r#"{"subnet":"nope","backend":"192.0.2.41","latency_ms":1}"#,
            400,
        ),
        (
            r#"{"subnet":"10.0.0.0/8","backend":"x","latency_ms":1}"#,
            400,
        ),
        (
            r#"{"subnet":"10.0.0.0/8","backend":"192.0.2.41","latency_ms":0}"#,
            400,
        ),
        (
            r#"{"subnet":"10.0.0.0/8","backend":"192.0.2.41","latency_ms":1,"samples":0}"#,
            400,
        ),
        (
            r#"{"subnet":"10.0.0.0/8","backend":"192.0.2.41","latency_ms":1,"region":"us"}"#,
            400,
        ),
        (
            r#"{"subnet":"10.0.0.0/8","backend":"192.0.2.41","latency_ms":1,"bogus":1}"#,
            422,
        ),
    ] {
        let (status, answer) =
            common::http::call(api, "POST", "/api/v1/overwatch/latency", &[], Some(body));
        assert_eq!(status, want, "{body}: {answer}");
        assert!(answer.contains("\"error\""), "{answer}");
    }
    let (_, after) = common::http::call(api, "GET", "/api/v1/overwatch/latency", &[], None);
    let after: serde_json::Value = serde_json::from_str(&after).unwrap();
    assert_eq!(after["count"], 5, "{after}");
    // The explanation shows the learned choice.
    let (status, why) = common::http::call(
        api,
        "GET",
        "/api/v1/dns/explain?name=l.lab.test&client=198.51.100.9",
        &[],
        None,
    );
    assert_eq!(status, 200, "{why}");
    let why: serde_json::Value = serde_json::from_str(&why).unwrap();
    assert_eq!(why["policy"]["kind"], "learned_latency", "{why}");
    assert_eq!(why["policy"]["learned"]["fastest"], "192.0.2.51", "{why}");
    assert_eq!(why["records"], serde_json::json!(["192.0.2.51"]), "{why}");
}
