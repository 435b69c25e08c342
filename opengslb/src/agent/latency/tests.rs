use std::net::SocketAddr;

use super::*;

fn cfg() -> LatencyLearningConfig {
    LatencyLearningConfig {
        enabled: true,
        min_connection_age: Duration::from_secs(5),
        min_samples: 3,
        ewma_alpha: 0.5,
        max_subnets: 2,
        subnet_ttl: Duration::from_secs(60),
        ..LatencyLearningConfig::default()
    }
}

fn backends() -> Vec<Measured> {
    vec![
        Measured {
            service: "app.lab.test".into(),
            checked: "10.9.0.1".parse().unwrap(),
            reported: "10.9.0.1".parse().unwrap(),
            port: 8080,
        },
        Measured {
            service: "app.lab.test".into(),
            checked: "127.0.0.1".parse().unwrap(),
            reported: "192.0.2.7".parse().unwrap(),
            port: 9090,
        },
    ]
}

fn conn(local: &str, remote: &str, rtt_ms: u64, cookie: u64) -> Conn {
    Conn {
        local: local.parse::<SocketAddr>().unwrap(),
        remote: remote.parse().unwrap(),
        rtt: Duration::from_millis(rtt_ms),
        cookie,
    }
}

#[test]
fn old_enough_connections_feed_their_subnets_average_and_enough_samples_are_reported() {
    let mut l = Learner::new(&cfg(), backends());
    assert_eq!(l.ports(), [8080, 9090]);
    let t0 = Instant::now();
    let s = |n: u64| t0 + Duration::from_secs(n);
    let conns = [
        conn("10.9.0.1:8080", "198.51.100.7", 10, 1),
        conn("10.9.0.1:8080", "198.51.100.9", 30, 2),
        // Another port, and another local address on the port: not a backend's.
        conn("10.9.0.1:22", "198.51.100.7", 10, 3),
        conn("10.9.0.99:8080", "198.51.100.7", 10, 4),
        // A loopback-checked backend takes connections on any address; IPv4-mapped clients as IPv4.
        conn("[::ffff:10.9.0.5]:9090", "::ffff:203.0.113.5", 80, 5),
    ];
    // Too young at first.
    assert_eq!(l.observe(&conns, s(0)), 0);
    assert_eq!(l.observe(&conns, s(4)), 0);
    // Three polls past the minimum age: three samples each of 1, 2 and 5.
    assert_eq!(l.observe(&conns, s(5)), 3);
    assert!(
        l.reports("a", &Secret::new("t"), 1).is_empty(),
        "one poll: not enough samples"
    );
    l.observe(&conns, s(6));
    l.observe(&conns, s(7));
    let reports = l.reports("agent-1", &Secret::new("token-0123456789"), 42);
    assert_eq!(reports.len(), 2, "{reports:?}");
    let first = &reports[0];
    assert_eq!(
        (
            first.agent_id.as_str(),
            first.sent_ms,
            first.port,
            first.address
        ),
        ("agent-1", 42, 8080, "10.9.0.1".parse().unwrap())
    );
    // One /24 for both clients; each poll moves the average halfway to the sample (alpha 0.5):
    // 10, 20 (30), 15 (10), 22.5 (30), 16.25 (10), 23.125 (30).
    assert_eq!(first.subnets.len(), 1);
    let sub = first.subnets[0];
    assert_eq!(
        (sub.network, sub.prefix_len, sub.samples),
        ("198.51.100.0".parse().unwrap(), 24, 6)
    );
    assert!((23_000..=23_300).contains(&sub.rtt_us), "{sub:?}");
    assert_eq!(
        reports[1].address,
        "192.0.2.7".parse::<IpAddr>().unwrap(),
        "reported address"
    );
    assert_eq!(
        reports[1].subnets[0].network,
        "203.0.113.0".parse::<IpAddr>().unwrap()
    );
    // A connection gone is forgotten: a new one under its cookie starts young again.
    assert_eq!(l.observe(&[], s(8)), 0);
    assert_eq!(l.observe(&conns[..1], s(9)), 0);
}

#[test]
fn subnets_are_bounded_and_forgotten_after_their_ttl() {
    let mut l = Learner::new(&cfg(), backends());
    let t0 = Instant::now();
    let old = |remote: &str, cookie| conn("10.9.0.1:8080", remote, 5, cookie);
    let conns = [old("10.1.0.1", 1), old("10.2.0.1", 2), old("10.3.0.1", 3)];
    l.observe(&conns, t0);
    l.observe(&conns, t0 + Duration::from_secs(5));
    assert_eq!(l.subnets(), 2, "max_subnets");
    assert_eq!(l.prune(t0 + Duration::from_secs(66)), 2);
    assert_eq!(l.subnets(), 0);
}

#[test]
fn a_backend_with_many_subnets_sends_several_reports() {
    let cfg = LatencyLearningConfig {
        min_connection_age: Duration::ZERO,
        min_samples: 1,
        ..LatencyLearningConfig::default()
    };
    let mut l = Learner::new(&cfg, backends());
    let conns: Vec<Conn> = (0..300u64)
        .map(|i| {
            conn(
                "10.9.0.1:8080",
                &format!("10.{}.{}.1", i / 256, i % 256),
                5,
                i,
            )
        })
        .collect();
    l.observe(&conns, Instant::now());
    let reports = l.reports("a", &Secret::new("t"), 1);
    assert_eq!(
        reports.iter().map(|r| r.subnets.len()).collect::<Vec<_>>(),
        [128, 128, 44]
    );
    for r in &reports {
        assert!(LatencyReport::decode(&r.encode()).is_ok());
    }
}
