//! Tests of the config module: the shipped and demo files load, unknown keys and broken rules are refused
//! with the key named, and the derived records are right.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::*;
use crate::name::DnsName;

const DEMO2_OVERWATCH: &str = include_str!("testdata/demo2-overwatch.yaml");
const DEMO2_AGENT: &str = include_str!("testdata/demo2-agent.yaml");
const ALL_KEYS_OVERWATCH: &str = include_str!("testdata/all-keys-overwatch.yaml");
const ALL_KEYS_AGENT: &str = include_str!("testdata/all-keys-agent.yaml");

/// The key of the demo files: the bytes 0, 1, ..., 31.
const DEMO_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn demo_key() -> GossipKey {
    GossipKey::from_bytes(std::array::from_fn(|i| i as u8))
}

/// A small valid config that the failing cases below each break in one place.
const BASE: &str = "\
dns: { zones: [example.com], default_ttl: 60 }
regions:
  - name: r1
    servers: [{ address: 192.0.2.1, port: 80, weight: 1, service: www.example.com }]
    health_check: { type: http, interval: 10s, timeout: 1s, failure_threshold: 3, success_threshold: 2 }
domains:
  - { name: www.example.com, regions: [r1], ttl: 30, max_answers: 1 }
";

/// `BASE` with `from` replaced by `to`; the replacement must happen.
fn base_with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from:?} is not in BASE");
    BASE.replacen(from, to, 1)
}

fn expect_error(yaml: &str, path: &str, fragment: &str) {
    let err = match Config::from_yaml_str(yaml) {
        Ok(_) => panic!("accepted, expected an error at {path}:\n{yaml}"),
        Err(err) => err,
    };
    let text = err.to_string();
    assert_eq!(err.key_path(), Some(path), "wrong key path in {text:?}");
    assert!(
        text.starts_with(&format!("{path}: ")),
        "{text:?} does not start with the key"
    );
    assert!(
        text.contains(fragment),
        "{text:?} does not contain {fragment:?}"
    );
}

#[test]
fn embedded_default_gives_three_a_and_three_aaaa() {
    let config = Config::embedded_default().expect("default config");
    assert_eq!(
        config.dns.listen_address,
        "127.0.0.1:53".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(config.dns.xdp.interfaces, ["lo"]);
    assert!(config.unused_sections().is_empty());
    let records = config.domain_records();
    assert_eq!(records.len(), 1);
    let app = &records[0];
    assert_eq!(
        (app.name.as_str(), app.zone.as_str(), app.ttl),
        ("app.demo.local", "demo.local", 5)
    );
    assert_eq!(app.algorithm, RoutingAlgorithm::RoundRobin);
    let v4: Vec<Ipv4Addr> = (1..=3).map(|i| Ipv4Addr::new(192, 0, 2, i)).collect();
    let v6: Vec<Ipv6Addr> = (1..=3)
        .map(|i| Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i))
        .collect();
    assert_eq!((app.v4.clone(), app.v6.clone()), (v4, v6));
}

#[test]
fn demo2_overwatch_config_is_accepted() {
    let config = Config::from_yaml_str(DEMO2_OVERWATCH).expect("demo 2 overwatch config");
    assert_eq!(config.mode, Mode::Overwatch);
    assert_eq!(
        config.regions[0].health_check.interval,
        Duration::from_secs(5)
    );
    assert_eq!(config.regions[0].health_check.failure_threshold, 2);
    let ow = &config.overwatch;
    assert_eq!(ow.identity.node_id.as_deref(), Some("demo-overwatch"));
    assert_eq!(ow.identity.region.as_deref(), Some("demo"));
    assert_eq!(
        ow.gossip.bind_address,
        "0.0.0.0:7946".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(ow.gossip.key_ring(), [demo_key()]);
    assert!(ow.validation.enabled);
    assert_eq!(
        (ow.validation.check_interval, ow.validation.check_timeout),
        (Duration::from_secs(5), Duration::from_secs(2))
    );
    assert_eq!(ow.stale.threshold, Duration::from_secs(15));
    assert_eq!(ow.stale.remove_after, Duration::from_secs(60));
    assert!(!ow.dnssec.enabled);
    assert_eq!(ow.dnssec.security_acknowledgment.as_deref(), Some("<text>"));
    assert_eq!(ow.data_dir, Path::new("/var/lib/opengslb"));
    assert!(config.api.enabled);
    assert_eq!(
        config.api.address,
        "0.0.0.0:8080".parse::<SocketAddr>().expect("addr")
    );
    let nets: Vec<String> = config
        .api
        .allowed_networks
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(nets, ["0.0.0.0/0", "::/0"]);
    assert!(!config.api.trust_proxy_headers);
    assert_eq!(
        config.logging,
        LoggingConfig {
            level: LogLevel::Debug,
            format: LogFormat::Text
        }
    );
    // Every key of Demo 2's overwatch file is acted on.
    assert_eq!(config.unused_sections(), Vec::<String>::new());
    assert!(config.metrics.enabled);
    assert_eq!(config.metrics.address.port(), 9090);
    let records = config.domain_records();
    assert_eq!(
        records[0].v4,
        [21, 22, 23].map(|i| Ipv4Addr::new(10, 20, 0, i))
    );
    assert_eq!(records[0].ttl, 5);
}

#[test]
fn demo2_agent_config_is_accepted() {
    let config = Config::from_yaml_str(DEMO2_AGENT).expect("demo 2 agent config");
    assert_eq!(config.mode, Mode::Agent);
    assert_eq!(config.metrics.address.port(), 9100);
    let agent = &config.agent;
    assert_eq!(agent.identity.region.as_deref(), Some("demo"));
    let token = agent.identity.service_token.as_ref().expect("token");
    assert_eq!(token.expose(), "demo-token-0123456789");
    let [backend] = agent.backends.as_slice() else {
        panic!("one backend expected: {:?}", agent.backends);
    };
    assert_eq!(backend.service, "app.demo.local");
    assert_eq!(backend.address, IpAddr::from(Ipv4Addr::LOCALHOST));
    assert_eq!((backend.port, backend.weight), (80, 100));
    assert_eq!(backend.advertise_address, None);
    let hc = &backend.health_check;
    assert_eq!(
        (hc.kind, hc.path.as_str(), hc.interval, hc.timeout),
        (
            HealthCheckType::Http,
            "/health",
            Duration::from_secs(2),
            Duration::from_secs(1)
        )
    );
    assert_eq!((hc.failure_threshold, hc.success_threshold), (2, 1));
    assert_eq!(agent.gossip.key_ring(), [demo_key()]);
    assert_eq!(
        agent.gossip.overwatch_nodes,
        [NodeAddress {
            host: "10.20.0.10".into(),
            port: 7946
        }]
    );
    assert_eq!(agent.heartbeat.interval, Duration::from_secs(5));
    assert_eq!(agent.heartbeat.missed_threshold, 3);
    assert_eq!(agent.drain_file, Path::new("/tmp/drain"));
    assert_eq!(agent.predictive, PredictiveConfig::default());
    // Every key is acted on; a 5 s heartbeat keeps reports every 300 ms.
    assert_eq!(config.unused_sections(), Vec::<String>::new());
    assert_eq!(
        agent.heartbeat.report_interval(),
        Duration::from_millis(300)
    );
}

/// Both demos (docker and namespaces) ship Demo 2's config files; the overwatch's adds only XDP on eth0.
#[test]
fn the_demos_ship_demo2s_configs_with_xdp_on_eth0() {
    let demo = |f: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../demos/demo-2-agent-overwatch/config")
            .join(f);
        Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let ow = demo("overwatch.yaml");
    assert_eq!(ow.dns.xdp.interfaces, ["eth0"]);
    let mut expected = Config::from_yaml_str(DEMO2_OVERWATCH).expect("demo 2 overwatch config");
    expected.dns.xdp.interfaces = vec!["eth0".into()];
    assert_eq!(ow, expected);
    let agent = Config::from_yaml_str(DEMO2_AGENT).expect("demo 2 agent config");
    assert_eq!(demo("agent.yaml"), agent);
}

#[test]
fn defaults_apply_to_missing_keys() {
    let yaml = "dns: { zones: [example.com] }\nregions: [{ name: r, servers: [{ address: '::1', service: \
                example.com }] }]\ndomains: [{ name: Example.COM., regions: [r] }]";
    let config = Config::from_yaml_str(yaml).expect("minimal config");
    assert_eq!(
        config.dns,
        DnsConfig {
            zones: vec!["example.com".parse().unwrap()],
            ..DnsConfig::default()
        }
    );
    assert_eq!(
        config.dns.listen_address,
        "0.0.0.0:53".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(
        (
            config.dns.xdp.mode,
            config.dns.xdp.udp_size,
            config.dns.xdp.stale_after,
            config.dns.xdp.when_stale
        ),
        (
            XdpMode::Auto,
            1232,
            Duration::from_secs(30),
            WhenStale::Serve
        )
    );
    assert!(
        !config.dns.rate_limit.limit().enabled(),
        "rate limiting is off unless asked for"
    );
    assert_eq!(
        (
            config.dns.rate_limit.slip,
            config.dns.rate_limit.ipv4_prefix,
            config.dns.rate_limit.ipv6_prefix
        ),
        (2, 24, 56)
    );
    assert_eq!(config.regions[0].health_check, HealthCheck::default());
    let server = &config.regions[0].servers[0];
    assert_eq!(
        (server.port, server.weight, server.host.as_deref()),
        (80, 100, None)
    );
    let records = config.domain_records();
    assert_eq!(
        (
            records[0].name.as_str(),
            records[0].ttl,
            records[0].max_answers
        ),
        ("example.com", 60, 1)
    );
    assert_eq!(records[0].v6, [Ipv6Addr::LOCALHOST]);
}

#[test]
fn listen_address_forms() {
    for (text, want) in [
        (":53", "0.0.0.0:53"),
        ("[::]:53", "[::]:53"),
        ("127.0.0.1:5353", "127.0.0.1:5353"),
    ] {
        let config = Config::from_yaml_str(&base_with(
            "dns: {",
            &format!("dns: {{ listen_address: \"{text}\","),
        ))
        .expect(text);
        assert_eq!(
            config.dns.listen_address,
            want.parse::<SocketAddr>().expect("addr")
        );
    }
}

/// Each line `from | to | key path | part of the message`: `BASE` with `from` replaced by `to` must be
/// refused with an error about that key. `\n` stands for a newline.
const REFUSED: &str = r#"
dns: | bogus: 1\ndns: | bogus | unknown field `bogus`
default_ttl: 60 | default_ttl: 60, ttl_default: 5 | dns.ttl_default | unknown field
weight: 1, | weight: 1, wieght: 2, | regions[0].servers[0].wieght | unknown field
ttl: 30 | ttl: 30, routing: rr | domains[0].routing | unknown field
failure_threshold: 3 | failure_threshold: 3, retries: 1 | regions[0].health_check.retries | unknown field
dns: | includes: [more.yaml]\ndns: | includes | only a config read from a file may include others
dns: { | mode: master\ndns: { | mode | unknown mode "master"
dns: { | dns: { listen_address: "localhost:53", | dns.listen_address | invalid listen address "localhost:53"
dns: { | dns: { listen_address: "1.2.3.4:0", | dns.listen_address | port must be between 1 and 65535
[example.com] | [] | dns.zones | at least one zone is required
[example.com] | [example.com, Example.com] | dns.zones[1] | duplicate zone
[example.com] | [other.org] | domains[0].name | not inside any of dns.zones
default_ttl: 60 | default_ttl: 2147483648 | dns.default_ttl | at most 2147483647
60 } | 60, xdp: { interfaces: [averyverylongname0] } } | dns.xdp.interfaces[0] | 1 to 15 bytes
60 } | 60, xdp: { interfaces: [''] } } | dns.xdp.interfaces[0] | invalid interface name
60 } | 60, xdp: { interfaces: [lo, lo] } } | dns.xdp.interfaces[1] | duplicate interface
60 } | 60, xdp: { mode: native } } | dns.xdp.mode | unknown XDP mode "native"
60 } | 60, xdp: { udp_size: 256 } } | dns.xdp.udp_size | between 512 and 4096
60 } | 60, xdp: { stale_after: 2s } } | dns.xdp.stale_after | must be 0 (never) or at least 3s
60 } | 60, xdp: { stale_after: 30 } } | dns.xdp.stale_after | missing unit
60 } | 60, xdp: { when_stale: drop } } | dns.xdp.when_stale | unknown stale policy "drop"
60 } | 60, rate_limit: { ipv4_prefix: 33 } } | dns.rate_limit.ipv4_prefix | between 8 and 32
60 } | 60, rate_limit: { ipv6_prefix: 16 } } | dns.rate_limit.ipv6_prefix | between 32 and 128
60 } | 60, rate_limit: { responses_per_second: 10, burst: 0 } } | dns.rate_limit.burst | at least 1
60 } | 60, rate_limit: { responses_per_second: 2000000 } } | dns.rate_limit.responses_per_second | at most 1000000
60 } | 60, rate_limit: { responses_per_second: -1 } } | dns.rate_limit.responses_per_second | -1
60 } | 60, rate_limit: { rate: 10 } } | dns.rate_limit.rate | unknown field
name: r1\n | name: r1\n    servers: []\n  - name: r1\n | regions[1].name | duplicate region
name: r1 | name: '' | regions[0].name | must not be empty
192.0.2.1 | 10.0.0.999 | regions[0].servers[0].address | invalid IP address "10.0.0.999"
port: 80 | port: 0 | regions[0].servers[0].port | between 1 and 65535
port: 80 | port: 70000 | regions[0].servers[0].port | 70000
weight: 1 | weight: -1 | regions[0].servers[0].weight | -1
service: www | service: api | regions[0].servers[0].service | no domain "api.example.com"
type: http | type: icmp | regions[0].health_check.type | unknown health check type "icmp"
10s, timeout | 10s, path: health, timeout | regions[0].health_check.path | must start with '/'
interval: 10s | interval: 500ms | regions[0].health_check.interval | below the 1s minimum
interval: 10s | interval: 10 | regions[0].health_check.interval | missing unit
timeout: 1s | timeout: 50ms | regions[0].health_check.timeout | below the 100ms minimum
timeout: 1s | timeout: 10s | regions[0].health_check.timeout | shorter than interval
failure_threshold: 3 | failure_threshold: 0 | regions[0].health_check.failure_threshold | at least 1
success_threshold: 2 | success_threshold: 0 | regions[0].health_check.success_threshold | at least 1
name: www | name: www. | domains[0].name | label "" is empty
name: www.example.com | name: 'w w.example.com' | domains[0].name | only letters, digits
name: www | name: -www | domains[0].name | start or end with '-'
name: www | name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa | domains[0].name | longer than 63
{ name: www | { name: WWW.Example.com., regions: [r1] }\n  - { name: www | domains[1].name | duplicate domain
regions: [r1] | regions: [r1, r2] | domains[0].regions[1] | no region named "r2"
ttl: 30 | ttl: 4294967295 | domains[0].ttl | at most 2147483647
ttl: 30 | ttl: 30, routing_algorithm: foo | domains[0].routing_algorithm | unknown algorithm "foo" (expected one of round-robin, weighted, failover
max_answers: 1 | max_answers: 0 | domains[0].max_answers | between 1 and 16
max_answers: 1 | max_answers: 17 | domains[0].max_answers | between 1 and 16
max_answers: 1 | max_answers: 1, slow_start: 2h | domains[0].slow_start | outside 1s..=1h
max_answers: 1 | max_answers: 1, slow_start: 500ms | domains[0].slow_start | outside 1s..=1h
max_answers: 1 | max_answers: 1, slow_start: soon | domains[0].slow_start | invalid duration
weight: 1, service: www.example.com | weight: 1 | regions[0].servers[0].service | missing field `service`
"#;

#[test]
fn unknown_keys_and_broken_rules_are_refused_naming_the_key() {
    for line in REFUSED.lines().filter(|l| !l.is_empty()) {
        let fields: Vec<String> = line.split(" | ").map(|f| f.replace("\\n", "\n")).collect();
        let [from, to, path, fragment] = fields.as_slice() else {
            panic!("malformed case {line:?}");
        };
        expect_error(&base_with(from, to), path, fragment);
    }
    let long_name = format!("name: {}example.com", "abcdefghi.".repeat(25));
    let yaml = base_with("name: www.example.com", &long_name);
    expect_error(&yaml, "domains[0].name", "longer than 253");
}

#[test]
fn io_and_syntax_errors_are_reported() {
    let err = Config::load("/nonexistent/opengslb.yaml").expect_err("missing file");
    assert!(matches!(err, ConfigError::Io { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/opengslb.yaml"));
    let err = Config::from_yaml_str("mode: 'agent").expect_err("broken YAML");
    assert!(
        matches!(
            err,
            ConfigError::Parse {
                line: Some(1),
                column: Some(13),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().ends_with("at line 1 column 7"), "{err}");
    // The key whose value the parser was reading when the text broke off.
    assert_eq!(err.key_path(), Some("mode"), "{err}");
    let err = Config::from_yaml_str("mode: agent\nmode: agent").expect_err("duplicate key");
    assert_eq!(err.key_path(), Some("mode"), "{err}");
}

#[test]
fn durations_parse_as_go_does() {
    let ms = Duration::from_millis;
    for (text, want) in [
        ("0", Duration::ZERO),
        ("5s", ms(5000)),
        ("500ms", ms(500)),
        ("1m30s", ms(90_000)),
        ("2h", ms(7_200_000)),
        ("1.5s", ms(1500)),
        (".5m", ms(30_000)),
        ("1h2m3s4ms5us6ns", Duration::new(3723, 4_005_006)),
        ("3µs", Duration::from_micros(3)),
        ("+1s", ms(1000)),
    ] {
        assert_eq!(parse_duration(text), Ok(want), "{text}");
    }
    for (text, why) in [
        ("", "empty"),
        ("5", "missing unit"),
        ("5x", "unknown unit \"x\""),
        ("-1s", "negative"),
        ("s", "expected a number"),
        (".s", "expected a number"),
        ("1s2", "missing unit"),
        ("3000000h", "too large"),
    ] {
        let err = parse_duration(text).expect_err(text);
        assert!(
            err.contains(why) && err.contains(&format!("{text:?}")),
            "{text}: {err}"
        );
    }
}

#[test]
fn routing_aliases_map_to_canonical_names() {
    use RoutingAlgorithm::*;
    for (alias, want) in [
        ("round-robin", RoundRobin),
        ("roundrobin", RoundRobin),
        ("RR", RoundRobin),
        ("", RoundRobin),
        ("weight", Weighted),
        ("active-standby", Failover),
        ("activestandby", Failover),
        ("geo", Geolocation),
        ("latency", Latency),
        ("learned_latency", LearnedLatency),
        ("learned-latency", LearnedLatency),
    ] {
        assert_eq!(alias.parse::<RoutingAlgorithm>(), Ok(want), "{alias}");
    }
    for algorithm in RoutingAlgorithm::ALL {
        assert_eq!(
            algorithm.as_str().parse::<RoutingAlgorithm>(),
            Ok(algorithm)
        );
    }
    let config = Config::from_yaml_str(&base_with("ttl: 30", "routing_algorithm: active-standby"))
        .expect("alias");
    assert_eq!(config.domain_records()[0].algorithm, Failover);
}

#[test]
fn domain_records_gather_dedupe_and_split() {
    let yaml = "\
dns: { zones: [example.com, sub.example.com], default_ttl: 7 }
regions:
  - name: a
    servers:
      - { address: 192.0.2.1, service: WWW.sub.example.com. }
      - { address: '::ffff:192.0.2.2', service: www.sub.example.com }
      - { address: 192.0.2.1, port: 8080, service: www.sub.example.com }
      - { address: 192.0.2.9, service: other.example.com }
  - name: b
    servers:
      - { address: '2001:db8::1', service: www.sub.example.com }
      - { address: 192.0.2.3, service: www.sub.example.com }
  - name: unused
    servers: [{ address: 192.0.2.4, service: www.sub.example.com }]
domains:
  - { name: www.sub.example.com, regions: [b, a], routing_algorithm: weighted, max_answers: 4 }
  - { name: other.example.com, regions: [a], ttl: 9 }
";
    let records = Config::from_yaml_str(yaml)
        .expect("config")
        .domain_records();
    let www = &records[0];
    assert_eq!(
        (www.zone.as_str(), www.ttl, www.max_answers),
        ("sub.example.com", 7, 4)
    );
    assert_eq!(www.v4, [3, 1, 2].map(|i| Ipv4Addr::new(192, 0, 2, i)));
    assert_eq!(www.v6, ["2001:db8::1".parse::<Ipv6Addr>().expect("v6")]);
    let other = &records[1];
    assert_eq!(
        (other.zone.as_str(), other.ttl, other.v4.as_slice()),
        ("example.com", 9, &[Ipv4Addr::new(192, 0, 2, 9)][..])
    );
    assert!(other.v6.is_empty());
}

#[test]
fn unused_sections_are_listed() {
    let yaml = format!(
        "{BASE}geolocation: {{ default_region: r1 }}\nlatency_config: {{ min_samples: 3 }}\n"
    );
    let yaml = yaml.replacen(
        "max_answers: 1",
        "max_answers: 1, latency_config: { max_latency_ms: 500 }",
        1,
    );
    let config = Config::from_yaml_str(&yaml).expect("config");
    assert!(
        config.unused_sections().is_empty(),
        "latency_config is acted on"
    );
    // A key written empty is named too, once however many list elements hold it.
    let yaml = format!("{BASE}overwatch:\n").replacen(
        "max_answers: 1 }",
        "max_answers: 1, all_down: empty }\n  - { name: b.example.com, all_down: all }",
        1,
    );
    let config = Config::from_yaml_str(&yaml).expect("config");
    assert_eq!(config.unused_sections(), ["overwatch"]);
}

#[test]
fn acted_on_keys_follow_the_longest_entry() {
    use super::keys::acted_on;
    for path in [
        "mode",
        "dns.xdp.interfaces",
        "regions[].servers[].address",
        "domains[].name",
        "metrics.enabled",
        "api.enabled",
        "logging.level",
        "logging.format",
    ] {
        assert!(acted_on(path), "{path}");
    }
    for path in [
        "overwatch.validation.check_interval",
        "overwatch.validation.check_timeout",
        "overwatch.identity.region",
        "overwatch.dnssec.enabled",
        "overwatch.dnssec.key_sync.peers",
        "agent.heartbeat.interval",
        "geolocation.ecs_enabled",
        "overwatch.geolocation.ecs_enabled",
        "includes",
        "domains[].latency_config.smoothing_factor",
        "domains[].latency_config.min_samples",
        "latency_config.min_samples",
        "agent.latency_learning.enabled",
    ] {
        assert!(acted_on(path), "{path}");
    }
    // A key the original's format does not have.
    assert!(!acted_on("dnsx"));
}

/// A small valid agent config that the failing cases below each break in one place.
const AGENT_BASE: &str = "\
mode: agent
agent:
  identity: { region: r1, service_token: \"0123456789abcdef\" }
  backends:
    - { service: app.example.com, address: 127.0.0.1, port: 80, weight: 100, health_check: { interval: 2s, timeout: 1s } }
  gossip: { encryption_key: \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\", overwatch_nodes: [\"10.0.0.1:7946\"] }
  heartbeat: { interval: 5s, missed_threshold: 3 }
";

/// Runs a table of cases, one a line, `from | to | key path | part of the message` (`\n` for a newline):
/// `base` with `from` replaced by `to` must be refused with an error about that key. A `from` of `$` means
/// the end of `base` (`to` is appended); a `to` of `~` means nothing (`from` is deleted).
fn refuse_all(base: &str, table: &str) {
    for line in table.lines().filter(|l| !l.is_empty()) {
        let fields: Vec<String> = line.split(" | ").map(|f| f.replace("\\n", "\n")).collect();
        let [from, to, path, fragment] = fields.as_slice() else {
            panic!("malformed case {line:?}");
        };
        let to = if to == "~" { "" } else { to.as_str() };
        let yaml = if from == "$" {
            format!("{base}{to}\n")
        } else {
            assert!(base.contains(from.as_str()), "{from:?} is not in the base");
            base.replacen(from.as_str(), to, 1)
        };
        expect_error(&yaml, path, fragment);
    }
}

/// Unknown keys in every section we added, and the validation rules of the overwatch-side sections.
const OVERWATCH_REFUSED: &str = r#"
$ | overwatch: { bogus: 1 } | overwatch.bogus | unknown field `bogus`
$ | overwatch: { identity: { name: x } } | overwatch.identity.name | unknown field
$ | overwatch: { gossip: { port: 7946 } } | overwatch.gossip.port | unknown field
$ | overwatch: { validation: { interval: 5s } } | overwatch.validation.interval | unknown field
$ | overwatch: { stale: { after: 5s } } | overwatch.stale.after | unknown field
$ | overwatch: { dnssec: { keys: [] } } | overwatch.dnssec.keys | unknown field
$ | overwatch: { dnssec: { key_sync: { peer: x } } } | overwatch.dnssec.key_sync.peer | unknown field
$ | overwatch: { geolocation: { database: x } } | overwatch.geolocation.database | unknown field
$ | overwatch: { geolocation: { custom_mappings: [{ cidr: 10.0.0.0/8, region: r1, note: x }] } } | overwatch.geolocation.custom_mappings[0].note | unknown field
$ | geolocation: { ecs: true } | geolocation.ecs | unknown field
$ | latency_config: { alpha: 0.3 } | latency_config.alpha | unknown field
max_answers: 1 | max_answers: 1, latency_config: { samples: 3 } | domains[0].latency_config.samples | unknown field
$ | api: { port: 8080 } | api.port | unknown field
$ | api: { token: short } | api.token | at least 16 characters (got 5)
$ | logging: { output: stderr } | logging.output | unknown field
$ | agent: { drain: /tmp/drain } | agent.drain | unknown field
$ | overwatch: { gossip: { encryption_key: "AAAA" } } | overwatch.gossip.encryption_key | exactly 32 bytes, got 3
$ | overwatch: { gossip: { encryption_key: "not base64!" } } | overwatch.gossip.encryption_key | not valid base64
$ | overwatch: { gossip: { encryption_keys: ["AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "AAAA"] } } | overwatch.gossip.encryption_keys[1] | exactly 32 bytes
$ | overwatch: { gossip: { encryption_key: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", encryption_keys: ["AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="] } } | overwatch.gossip.encryption_keys | not both
$ | overwatch: { gossip: { encryption_keys: ["AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="] } } | overwatch.gossip.encryption_keys[1] | duplicate key
$ | overwatch: { gossip: { bind_address: "localhost:7946" } } | overwatch.gossip.bind_address | invalid listen address
$ | overwatch: { gossip: { probe_interval: 50ms } } | overwatch.gossip.probe_interval | below the 100ms minimum
$ | overwatch: { gossip: { probe_timeout: 1s } } | overwatch.gossip.probe_timeout | shorter than probe_interval (1s)
$ | overwatch: { gossip: { gossip_interval: 1ms } } | overwatch.gossip.gossip_interval | below the 10ms minimum
$ | overwatch: { validation: { check_interval: 500ms } } | overwatch.validation.check_interval | below the 1s minimum
$ | overwatch: { validation: { check_timeout: 30s } } | overwatch.validation.check_timeout | shorter than check_interval (30s)
$ | overwatch: { validation: { check_timeout: 50ms } } | overwatch.validation.check_timeout | below the 100ms minimum
$ | overwatch: { validation: { enabled: maybe } } | overwatch.validation.enabled | invalid type
$ | overwatch: { stale: { threshold: 500ms } } | overwatch.stale.threshold | below the 1s minimum
$ | overwatch: { stale: { threshold: 15s, remove_after: 15s } } | overwatch.stale.remove_after | longer than threshold (15s)
$ | overwatch: { stale: { remove_after: 10 } } | overwatch.stale.remove_after | missing unit
$ | overwatch: { dnssec: { enabled: true } } | overwatch.dnssec.enabled | DNSSEC signing is not supported
$ | overwatch: { dnssec: { enabled: true } } | overwatch.dnssec.enabled | sign upstream
$ | overwatch: { dnssec: { key_sync: { timeout: 2h } } } | overwatch.dnssec.key_sync.timeout | shorter than poll_interval
$ | overwatch: { dnssec: { key_sync: { poll_interval: 0 } } } | overwatch.dnssec.key_sync.poll_interval | below the 1s minimum
$ | overwatch: { data_dir: "" } | overwatch.data_dir | must not be empty
$ | overwatch: { store: { etcd: { endpoints: [] } } } | overwatch.store.etcd.endpoints | at least one etcd client URL
$ | overwatch: { store: { etcd: {} } } | overwatch.store.etcd.endpoints | missing field `endpoints`
$ | overwatch: { store: { etcd: { endpoints: ["10.0.0.1:2379"] } } } | overwatch.store.etcd.endpoints[0] | must start with http://
$ | overwatch: { store: { etcd: { endpoints: ["http://10.0.0.1"] } } } | overwatch.store.etcd.endpoints[0] | a host and a port
$ | overwatch: { store: { etcd: { endpoints: ["http://10.0.0.1:2379"], tls: {} } } } | overwatch.store.etcd.endpoints[0] | must start with https://
$ | overwatch: { store: { etcd: { endpoints: ["http://10.0.0.1:2379"], prefix: opengslb } } } | overwatch.store.etcd.prefix | must start and end with /
$ | overwatch: { store: { etcd: { endpoints: ["http://10.0.0.1:2379"], request_timeout: 10ms } } } | overwatch.store.etcd.request_timeout | between 100ms and 60s
$ | overwatch: { store: { etcd: { endpoints: ["http://10.0.0.1:2379"], username: root } } } | overwatch.store.etcd.username | go together
$ | overwatch: { store: { etcd: { endpoints: ["https://10.0.0.1:2379"], tls: { cert_file: /c.pem } } } } | overwatch.store.etcd.tls.cert_file | go together
$ | overwatch: { store: { redis: {} } } | overwatch.store.redis | unknown field
$ | overwatch: { identity: { node_id: "" } } | overwatch.identity.node_id | must not be empty
$ | overwatch: { agent_tokens: { www.example.com: short } } | overwatch.agent_tokens.www.example.com[0] | at least 16 characters (got 5)
$ | overwatch: { agent_tokens: { www.example.com: [0123456789abcdef, short] } } | overwatch.agent_tokens.www.example.com[1] | at least 16 characters
$ | overwatch: { agent_tokens: { api.example.com: 0123456789abcdef } } | overwatch.agent_tokens.api.example.com | no domain "api.example.com"
$ | overwatch: { agent_tokens: { www.example.com: [] } } | overwatch.agent_tokens.www.example.com | at least one token
$ | overwatch: { agent_tokens: { "bad name.example.com": 0123456789abcdef } } | overwatch.agent_tokens.bad name.example.com | label "bad name" may hold only letters, digits
$ | api: { address: "nope" } | api.address | invalid listen address "nope"
$ | api: { allowed_networks: [10.0.0.0/8, 10.0.0.1] } | api.allowed_networks[1] | invalid CIDR "10.0.0.1"
$ | api: { allowed_networks: [10.0.0.0/33] } | api.allowed_networks[0] | invalid CIDR
$ | metrics: { address: "9090" } | metrics.address | invalid listen address
$ | logging: { level: verbose } | logging.level | unknown log level "verbose" (expected one of error, warn, info, debug, trace)
$ | logging: { format: xml } | logging.format | unknown log format "xml"
$ | overwatch: { geolocation: { database_path: /nonexistent/GeoLite2-Country.mmdb } } | overwatch.geolocation.database_path | /nonexistent/GeoLite2-Country.mmdb does not exist
$ | overwatch: { geolocation: { database_path: /tmp } } | overwatch.geolocation.database_path | not a file
$ | overwatch: { geolocation: { default_region: r9 } } | overwatch.geolocation.default_region | no region named "r9"
$ | overwatch: { geolocation: { custom_mappings: [{ cidr: 10.0.0.0/40, region: r1 }] } } | overwatch.geolocation.custom_mappings[0].cidr | invalid CIDR
$ | overwatch: { geolocation: { custom_mappings: [{ cidr: 10.0.0.0/8, region: r9 }] } } | overwatch.geolocation.custom_mappings[0].region | no region named "r9"
$ | overwatch: { geolocation: { custom_mappings: [{ cidr: 10.0.0.0/8, region: r1 }, { cidr: 10.1.0.0/8, region: r1 }] } } | overwatch.geolocation.custom_mappings[1].cidr | duplicate mapping of 10.0.0.0/8
$ | overwatch: { geolocation: { custom_mappings: [{ region: r1 }] } } | overwatch.geolocation.custom_mappings[0].cidr | missing field
$ | geolocation: { default_region: r9 } | geolocation.default_region | no region named "r9"
$ | geolocation: {}\noverwatch: { geolocation: {} } | geolocation | also set as overwatch.geolocation
$ | latency_config: { smoothing_factor: 0 } | latency_config.smoothing_factor | 0 is outside (0, 1]
$ | latency_config: { smoothing_factor: 1.5 } | latency_config.smoothing_factor | outside (0, 1]
$ | latency_config: { max_latency_ms: 0 } | latency_config.max_latency_ms | at least 1
$ | latency_config: { min_samples: 0 } | latency_config.min_samples | at least 1
max_answers: 1 | max_answers: 1, latency_config: { smoothing_factor: 2 } | domains[0].latency_config.smoothing_factor | outside (0, 1]
$ | latency_config: { min_samples: 0 }\n | latency_config.min_samples | at least 1
max_answers: 1 | max_answers: 1, all_down: never | domains[0].all_down | unknown all-down policy "never" (expected one of all, last_healthy, empty)
weight: 1, | weight: 1001, | regions[0].servers[0].weight | 1001 is above the maximum of 1000
name: r1\n | name: r1\n    countries: [USA]\n | regions[0].countries[0] | invalid country code "USA"
name: r1\n | name: r1\n    continents: [EU, XX]\n | regions[0].continents[1] | invalid continent code "XX"
success_threshold: 2 | success_threshold: 2, expected_status: 600 | regions[0].health_check.expected_status | invalid HTTP status "600"
success_threshold: 2 | success_threshold: 2, expected_status: "6xx" | regions[0].health_check.expected_status | invalid HTTP status "6xx"
success_threshold: 2 | success_threshold: 2, expected_status: [200, "2x"] | regions[0].health_check.expected_status[1] | invalid HTTP status "2x"
success_threshold: 2 | success_threshold: 2, expected_status: [] | regions[0].health_check.expected_status | must not be empty
success_threshold: 2 | success_threshold: 2, tls_verify: sometimes | regions[0].health_check.tls_verify | invalid type
"#;

#[test]
fn overwatch_side_keys_are_checked_naming_the_key() {
    refuse_all(BASE, OVERWATCH_REFUSED);
}

/// Unknown keys and the validation rules of the agent section, on `AGENT_BASE`.
const AGENT_REFUSED: &str = r#"
region: r1, | region: r1, name: a, | agent.identity.name | unknown field `name`
port: 80, | port: 80, protocol: tcp, | agent.backends[0].protocol | unknown field
timeout: 1s } | timeout: 1s, retries: 2 } | agent.backends[0].health_check.retries | unknown field
overwatch_nodes: | bind_address: ":7946", overwatch_nodes: | agent.gossip.bind_address | unknown field
missed_threshold: 3 | missed_threshold: 3, jitter: 1s | agent.heartbeat.jitter | unknown field
$ |   predictive: { cpu: { limit: 80 } } | agent.predictive.cpu.limit | unknown field
$ |   predictive: { memory: { limit: 80 } } | agent.predictive.memory.limit | unknown field
$ |   predictive: { error_rate: { source: { url: "http://a/metrics", total_metric: a, failed_metric: b, job: x } } } | agent.predictive.error_rate.source.job | unknown field
$ |   predictive: { error_rate: { source: { url: "http://a/metrics", total_metric: a } } } | agent.predictive.error_rate.source.failed_metric | missing field
$ |   latency_learning: { prefix: 24 } | agent.latency_learning.prefix | unknown field
$ |   maintenance: { window: [] } | agent.maintenance.window | unknown field
$ |   maintenance: { windows: [{ start: "02:00", duration: 1h, until: x }] } | agent.maintenance.windows[0].until | unknown field
service_token: "0123456789abcdef" | service_token: "short" | agent.identity.service_token | at least 16 characters (got 5)
region: r1, service_token: "0123456789abcdef" | region: r1 | agent.identity.service_token | required in agent mode
region: r1, | region: "", | agent.identity.region | must not be empty
backends:\n    - { service: app.example.com, address: 127.0.0.1, port: 80, weight: 100, health_check: { interval: 2s, timeout: 1s } } | backends: [] | agent.backends | at least one backend
address: 127.0.0.1 | address: localhost | agent.backends[0].address | invalid IP address "localhost"
port: 80 | port: 0 | agent.backends[0].port | between 1 and 65535
port: 80, | ~ | agent.backends[0].port | missing field `port`
service: app.example.com, | ~ | agent.backends[0].service | missing field `service`
service: app.example.com | service: -app.example.com | agent.backends[0].service | start or end with '-'
weight: 100 | weight: 5000 | agent.backends[0].weight | 5000 is above the maximum of 1000
weight: 100 | weight: 100, advertise_address: 127.0.0.2 | agent.backends[0].advertise_address | loopback
weight: 100 | weight: 100, advertise_address: "::" | agent.backends[0].advertise_address | unspecified
weight: 100 | weight: 100, advertise_address: 10.0.0.300 | agent.backends[0].advertise_address | invalid IP address
timeout: 1s } } | timeout: 1s } }\n    - { service: App.example.com., address: 127.0.0.1, port: 80 } | agent.backends[1].port | duplicate backend app.example.com 127.0.0.1:80
timeout: 1s } | timeout: 2s } | agent.backends[0].health_check.timeout | shorter than interval (2s)
interval: 2s | interval: 100ms | agent.backends[0].health_check.interval | below the 1s minimum
interval: 2s | interval: 2s, type: udp | agent.backends[0].health_check.type | unknown health check type "udp"
encryption_key: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", | ~ | agent.gossip.encryption_key | required in agent mode
AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8= | AAECAwQFBgcICQoLDA0ODw== | agent.gossip.encryption_key | exactly 32 bytes, got 16
AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8= | AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh-_ | agent.gossip.encryption_key | not valid base64
overwatch_nodes: ["10.0.0.1:7946"] | overwatch_nodes: [] | agent.gossip.overwatch_nodes | at least one overwatch address
10.0.0.1:7946 | 10.0.0.1 | agent.gossip.overwatch_nodes[0] | no port
"10.0.0.1:7946"] | "10.0.0.1:7946", "2001:db8::1:7946"] | agent.gossip.overwatch_nodes[1] | must be in brackets
10.0.0.1:7946 | overwatch:0 | agent.gossip.overwatch_nodes[0] | between 1 and 65535
10.0.0.1:7946 | over watch:7946 | agent.gossip.overwatch_nodes[0] | IP address or a DNS name
interval: 5s | interval: 50ms | agent.heartbeat.interval | below the 100ms minimum
interval: 5s | interval: 0s | agent.heartbeat.interval | below the 100ms minimum
region: r1, | region: r1, cert_path: /var/lib/opengslb/agent.crt, | agent.identity.cert_path | agents use no certificate
region: r1, | region: r1, key_path: /var/lib/opengslb/agent.key, | agent.identity.key_path | Remove this key
region: r1, | region: r1, cert_path: /a.crt, | agent.identity.cert_path | agent.identity.service_token
missed_threshold: 3 | missed_threshold: 0 | agent.heartbeat.missed_threshold | between 1 and 10
missed_threshold: 3 | missed_threshold: 11 | agent.heartbeat.missed_threshold | between 1 and 10
$ |   predictive: { cpu: { threshold: 150 } } | agent.predictive.cpu.threshold | 150 is outside (0, 100]
$ |   predictive: { memory: { threshold: 0 } } | agent.predictive.memory.threshold | outside (0, 100]
$ |   predictive: { error_rate: { threshold: -1 } } | agent.predictive.error_rate.threshold | outside (0, 100]
$ |   predictive: { error_rate: { window: 10ms } } | agent.predictive.error_rate.window | below the 1s minimum
$ |   predictive: { cpu: { bleed_duration: 0 } } | agent.predictive.cpu.bleed_duration | longer than 0
$ |   predictive: { check_interval: 100ms } | agent.predictive.check_interval | below the 1s minimum
$ |   predictive: { error_rate: { source: { url: "ftp://a/metrics", total_metric: a, failed_metric: b } } } | agent.predictive.error_rate.source.url | invalid URL "ftp://a/metrics"
$ |   predictive: { error_rate: { source: { url: "http:///metrics", total_metric: a, failed_metric: b } } } | agent.predictive.error_rate.source.url | invalid URL "http:///metrics": no host
$ |   predictive: { error_rate: { source: { url: "http://a:99999/metrics", total_metric: a, failed_metric: b } } } | agent.predictive.error_rate.source.url | invalid URL "http://a:99999/metrics": invalid port number
$ |   predictive: { error_rate: { source: { url: "http://[::1/metrics", total_metric: a, failed_metric: b } } } | agent.predictive.error_rate.source.url | invalid URL "http://[::1/metrics": invalid IPv6 address
$ |   predictive: { error_rate: { source: { url: "http://a b/metrics", total_metric: a, failed_metric: b } } } | agent.predictive.error_rate.source.url | contains whitespace
$ |   predictive: { error_rate: { source: { url: "http://a/metrics", total_metric: 1abc, failed_metric: b } } } | agent.predictive.error_rate.source.total_metric | invalid metric selector "1abc": invalid metric name "1abc"
$ |   predictive: { error_rate: { source: { url: "http://a/metrics", total_metric: a, failed_metric: 'b{code="5"' } } } | agent.predictive.error_rate.source.failed_metric | invalid metric selector
$ |   predictive: { error_rate: { source: { url: "http://a/metrics", total_metric: a, failed_metric: 'b{code=~"[45"}' } } } | agent.predictive.error_rate.source.failed_metric | invalid regex "[45" for label "code"
$ |   latency_learning: { ipv4_prefix: 33 } | agent.latency_learning.ipv4_prefix | between 1 and 32
$ |   latency_learning: { ipv6_prefix: 0 } | agent.latency_learning.ipv6_prefix | between 1 and 128
$ |   latency_learning: { ewma_alpha: 0 } | agent.latency_learning.ewma_alpha | outside (0, 1]
$ |   latency_learning: { max_subnets: 0 } | agent.latency_learning.max_subnets | at least 1
$ |   latency_learning: { min_samples: 0 } | agent.latency_learning.min_samples | at least 1
$ |   latency_learning: { poll_interval: 10ms } | agent.latency_learning.poll_interval | below the 1s minimum
$ |   latency_learning: { report_interval: 0 } | agent.latency_learning.report_interval | below the 1s minimum
$ |   latency_learning: { subnet_ttl: 0 } | agent.latency_learning.subnet_ttl | below the 1s minimum
$ |   drain_file: drain | agent.drain_file | drain is not an absolute path
$ |   control_socket: agent.sock | agent.control_socket | agent.sock is not an absolute path
$ |   maintenance: { windows: [{ start: "25:00", duration: 1h }] } | agent.maintenance.windows[0].start | invalid time of day "25:00"
$ |   maintenance: { windows: [{ start: "2026-13-01T00:00:00Z", duration: 1h }] } | agent.maintenance.windows[0].start | month out of range
$ |   maintenance: { windows: [{ start: "2026-02-29T00:00:00Z", duration: 1h }] } | agent.maintenance.windows[0].start | out of range
$ |   maintenance: { windows: [{ start: "2026-03-01T00:00:00", duration: 1h }] } | agent.maintenance.windows[0].start | missing time zone
$ |   maintenance: { windows: [{ start: "2026-03-01T00:00:00Z", end: "tomorrow" }] } | agent.maintenance.windows[0].end | invalid timestamp "tomorrow"
$ |   maintenance: { windows: [{ start: "2026-03-01T00:00:00Z" }] } | agent.maintenance.windows[0].end | needs end or duration
$ |   maintenance: { windows: [{ start: "2026-03-01T00:00:00Z", end: "2026-03-01T01:00:00Z", duration: 1h }] } | agent.maintenance.windows[0].end | needs end or duration (one of them)
$ |   maintenance: { windows: [{ start: "2026-03-01T02:00:00Z", end: "2026-03-01T03:00:00+02:00" }] } | agent.maintenance.windows[0].end | must be after start
$ |   maintenance: { windows: [{ start: "2026-03-01T02:00:00Z", duration: 1h, days: [mon] }] } | agent.maintenance.windows[0].days | only a recurring window
$ |   maintenance: { windows: [{ start: "02:00" }] } | agent.maintenance.windows[0].duration | required for a recurring window
$ |   maintenance: { windows: [{ start: "02:00", end: "2026-03-01T03:00:00Z", duration: 1h }] } | agent.maintenance.windows[0].end | takes duration, not end
$ |   maintenance: { windows: [{ start: "02:00", duration: 192h }] } | agent.maintenance.windows[0].duration | longer than a week
$ |   maintenance: { windows: [{ start: "02:00", duration: 0 }] } | agent.maintenance.windows[0].duration | longer than 0
$ |   maintenance: { windows: [{ start: "02:00", duration: 1h, days: [mon, funday] }] } | agent.maintenance.windows[0].days[1] | unknown weekday "funday"
"#;

#[test]
fn agent_keys_are_checked_naming_the_key() {
    Config::from_yaml_str(AGENT_BASE).expect("agent base");
    refuse_all(AGENT_BASE, AGENT_REFUSED);
}

/// Validation once used a looser check than the agent's parser and accepted `(4|5)..`, which the agent
/// then refused at start; the selector is now parsed, once, while the config is read.
#[test]
fn metric_selectors_take_prometheus_regexes() {
    let yaml = format!(
        "{AGENT_BASE}  predictive: {{ error_rate: {{ source: {{ url: \"http://a/metrics\", \
         total_metric: http_requests_total, failed_metric: 'http_requests_total{{code=~\"(4|5)..\"}}' }} }} }}\n"
    );
    let config = Config::from_yaml_str(&yaml).expect("(4|5).. is a valid Prometheus regex");
    let source = config.agent.predictive.error_rate.source.expect("source");
    let failed = &source.failed_metric;
    assert_eq!(
        failed.to_string(),
        r#"http_requests_total{code=~"(4|5).."}"#
    );
    assert_eq!(failed.name(), "http_requests_total");
    let code = |value: &str| failed.matches_labels(&[("code", value.to_owned())]);
    assert!(code("404") && code("503"));
    assert!(!code("200") && !code("5030"));
}

#[test]
fn agent_requirements_apply_in_agent_mode_only() {
    let yaml = AGENT_BASE.replacen(
        "mode: agent",
        "mode: overwatch\ndns: { zones: [example.com] }",
        1,
    );
    let yaml = yaml
        .replacen(
            "region: r1, service_token: \"0123456789abcdef\"",
            "region: r1",
            1,
        )
        .replacen(
            "overwatch_nodes: [\"10.0.0.1:7946\"]",
            "overwatch_nodes: []",
            1,
        );
    let config = Config::from_yaml_str(&yaml).expect("agent keys in overwatch mode");
    assert_eq!(config.agent.identity.service_token, None);
    // Range rules still hold: a typo is a typo in either mode.
    expect_error(
        &yaml.replacen("missed_threshold: 3", "missed_threshold: 0", 1),
        "agent.heartbeat.missed_threshold",
        "between 1 and 10",
    );
}

#[test]
fn every_overwatch_key_arrives() {
    let c = Config::from_yaml_str(ALL_KEYS_OVERWATCH).expect("all overwatch keys");
    let ow = &c.overwatch;
    assert_eq!(ow.identity.node_id.as_deref(), Some("ow-1"));
    assert_eq!(ow.identity.region.as_deref(), Some("eu"));
    let tokens: Vec<(&str, Vec<&str>)> = ow
        .agent_tokens
        .iter()
        .map(|(k, v)| (k.as_str(), v.iter().map(Secret::expose).collect()))
        .collect();
    assert_eq!(
        tokens,
        [
            (
                "api.example.com",
                vec!["token-for-api-0001", "token-for-api-0002"]
            ),
            ("app.example.com", vec!["token-for-app-0123"]),
        ]
    );
    let g = &ow.gossip;
    assert_eq!(
        g.bind_address,
        "0.0.0.0:7947".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(g.key_ring().len(), 2);
    assert_eq!(g.key_ring()[0], demo_key(), "the first key seals");
    assert_eq!(
        (g.probe_interval, g.probe_timeout, g.gossip_interval),
        (
            Duration::from_secs(2),
            Duration::from_secs(1),
            Duration::from_millis(300)
        )
    );
    let v = &ow.validation;
    assert_eq!(
        (v.enabled, v.check_interval, v.check_timeout),
        (false, Duration::from_secs(10), Duration::from_secs(3))
    );
    assert_eq!(
        (ow.stale.threshold, ow.stale.remove_after),
        (Duration::from_secs(20), Duration::from_secs(120))
    );
    let d = &ow.dnssec;
    assert_eq!(
        (
            d.enabled,
            d.security_acknowledgment.as_deref(),
            d.algorithm.as_str()
        ),
        (false, Some("I understand"), "RSASHA256")
    );
    assert_eq!(d.key_sync.peers, ["10.0.0.2:8080"]);
    assert_eq!(
        (d.key_sync.poll_interval, d.key_sync.timeout),
        (Duration::from_secs(1800), Duration::from_secs(10))
    );
    let geo = c.geolocation().expect("geolocation");
    assert_eq!(
        geo.database_path.as_deref(),
        Some(Path::new("./Cargo.toml"))
    );
    assert_eq!(geo.default_region.as_deref(), Some("eu"));
    assert!(!geo.ecs_enabled);
    let maps: Vec<(String, &str, Option<&str>)> = geo
        .custom_mappings
        .iter()
        .map(|m| (m.cidr.to_string(), m.region.as_str(), m.comment.as_deref()))
        .collect();
    assert_eq!(
        maps,
        [
            ("10.1.0.0/16".to_owned(), "us", Some("office")),
            ("2001:db8::/32".to_owned(), "eu", None),
        ]
    );
    assert_eq!(ow.data_dir, Path::new("/srv/opengslb"));
    let eu = &c.regions[0];
    assert_eq!(
        (eu.countries.clone(), eu.continents.clone()),
        (vec!["DE".into(), "FR".into()], vec!["EU".into()])
    );
    let server = &eu.servers[0];
    assert_eq!(
        (server.port, server.weight, server.host.as_deref()),
        (8443, 1000, Some("eu.app.example.com"))
    );
    let hc = &eu.health_check;
    assert_eq!(
        (hc.kind, hc.path.as_str(), hc.host.as_deref()),
        (HealthCheckType::Https, "/ready", Some("app.example.com"))
    );
    assert_eq!(
        (hc.failure_threshold, hc.success_threshold, hc.tls_verify),
        (4, 3, false)
    );
    assert_eq!(hc.expected_status.ranges(), [(200, 200), (300, 399)]);
    assert_eq!(c.regions[1].health_check.kind, HealthCheckType::Tcp);
    assert_eq!(c.regions[1].servers[0].weight, 0);
    let app = &c.domains[0];
    assert_eq!(
        (app.routing_algorithm, app.ttl, app.max_answers),
        (RoutingAlgorithm::Latency, Some(15), 2)
    );
    assert_eq!(app.all_down, Some(AllDownPolicy::Empty));
    assert_eq!(
        c.latency_config_of(app),
        LatencyConfig {
            smoothing_factor: 0.2,
            max_latency_ms: 250,
            min_samples: 3
        }
    );
    assert_eq!(
        c.latency_config_of(&c.domains[1]),
        LatencyConfig {
            smoothing_factor: 0.5,
            max_latency_ms: 400,
            min_samples: 4
        }
    );
    // return_last_healthy gives last_healthy to a domain that sets no policy of its own.
    let policies: Vec<AllDownPolicy> = c.domain_records().iter().map(|r| r.all_down).collect();
    assert_eq!(policies, [AllDownPolicy::Empty, AllDownPolicy::LastHealthy]);
    assert_eq!(
        c.api,
        ApiConfig {
            enabled: true,
            address: "0.0.0.0:9080".parse().expect("addr"),
            allowed_networks: vec![
                "10.0.0.0/8".parse().expect("net"),
                "2001:db8::/32".parse().expect("net")
            ],
            trust_proxy_headers: true,
            token: None,
        }
    );
    assert_eq!(
        (c.logging.level, c.logging.format),
        (LogLevel::Trace, LogFormat::Text)
    );
    assert_eq!(c.metrics.address.port(), 9091);
    // Every key of the file is acted on.
    assert!(c.unused_sections().is_empty(), "{:?}", c.unused_sections());
}

#[test]
fn every_agent_key_arrives() {
    let c = Config::from_yaml_str(ALL_KEYS_AGENT).expect("all agent keys");
    let a = &c.agent;
    assert_eq!(
        a.identity.service_token.as_ref().map(Secret::expose),
        Some("agent-token-0123456789")
    );
    assert_eq!(a.identity.region.as_deref(), Some("eu"));
    let b = &a.backends[0];
    assert_eq!(
        b.service, "app.example.com",
        "lowercased, without the trailing dot"
    );
    assert_eq!(
        (b.address, b.port, b.weight),
        (IpAddr::from(Ipv4Addr::LOCALHOST), 8080, 50)
    );
    assert_eq!(
        b.advertise_address,
        Some(IpAddr::from(Ipv4Addr::new(10, 20, 0, 22)))
    );
    let hc = &b.health_check;
    assert_eq!(
        (hc.path.as_str(), hc.host.as_deref()),
        ("/healthz", Some("app.example.com"))
    );
    assert!(hc.expected_status.matches(204) && !hc.expected_status.matches(200));
    assert_eq!(a.gossip.key_ring(), [demo_key()]);
    let nodes: Vec<String> = a
        .gossip
        .overwatch_nodes
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        nodes,
        [
            "10.20.0.10:7946",
            "overwatch-2.internal:7946",
            "[2001:db8::10]:7946"
        ]
    );
    assert_eq!(a.gossip.overwatch_nodes[2].host, "2001:db8::10");
    assert_eq!(
        (a.heartbeat.interval, a.heartbeat.missed_threshold),
        (Duration::from_secs(2), 5)
    );
    let p = &a.predictive;
    assert!(p.enabled);
    assert_eq!(p.check_interval, Duration::from_secs(5));
    assert_eq!(
        (p.cpu.threshold, p.cpu.bleed_duration),
        (80.0, Duration::from_secs(10))
    );
    assert_eq!(
        (p.memory.threshold, p.memory.bleed_duration),
        (75.5, Duration::from_secs(20))
    );
    let e = &p.error_rate;
    assert_eq!(
        (e.threshold, e.window, e.bleed_duration),
        (5.0, Duration::from_secs(30), Duration::from_secs(15))
    );
    assert_eq!(
        e.source,
        Some(ErrorRateSource {
            url: "http://127.0.0.1:8080/metrics".parse().expect("URL"),
            total_metric: "http_requests_total".parse().expect("selector"),
            failed_metric: "http_requests_total{code=~\"5..\"}"
                .parse()
                .expect("selector"),
        })
    );
    let ll = &a.latency_learning;
    assert!(ll.enabled);
    assert_eq!(
        (
            ll.poll_interval,
            ll.min_connection_age,
            ll.subnet_ttl,
            ll.report_interval
        ),
        (
            Duration::from_secs(5),
            Duration::from_secs(2),
            Duration::from_secs(86_400),
            Duration::from_secs(15)
        )
    );
    assert_eq!(
        (
            ll.ipv4_prefix,
            ll.ipv6_prefix,
            ll.ewma_alpha,
            ll.max_subnets,
            ll.min_samples
        ),
        (22, 56, 0.5, 5000, 3)
    );
    assert_eq!(a.drain_file, Path::new("/run/opengslb/drain"));
    assert_eq!(a.control_socket, Path::new("/run/opengslb/agent.sock"));
    let w = &a.maintenance.windows;
    let at = |s: &str| parse_timestamp(s).expect(s);
    assert_eq!(w[0].start, WindowStart::At(at("2026-03-01T02:00:00Z")));
    assert_eq!(w[0].end, Some(at("2026-03-01T04:00:00Z")));
    assert_eq!(w[1].start, WindowStart::At(at("2026-03-08T01:00:00Z")));
    assert_eq!(w[1].duration, Some(Duration::from_secs(5400)));
    assert_eq!(
        w[2].start,
        WindowStart::Daily {
            minute: 23 * 60 + 30
        }
    );
    assert_eq!(w[2].days, [Weekday::Sat, Weekday::Sun]);
    assert_eq!(
        (c.logging.level, c.logging.format),
        (LogLevel::Warn, LogFormat::Json)
    );
}

#[test]
fn every_agent_key_is_acted_on() {
    let c = Config::from_yaml_str(ALL_KEYS_AGENT).expect("all agent keys");
    let unused = c.unused_sections();
    assert!(unused.is_empty(), "{unused:?}");
}

#[test]
fn the_heartbeat_interval_bounds_the_report_period() {
    let period = |interval: &str| {
        let yaml = AGENT_BASE.replacen("interval: 5s", &format!("interval: {interval}"), 1);
        let c = Config::from_yaml_str(&yaml).unwrap_or_else(|e| panic!("{interval}: {e}"));
        c.agent.heartbeat.report_interval()
    };
    // The original's values (10 s by default, Demo 2's 5 s) keep our 300 ms; a shorter one is taken.
    for (interval, ms) in [
        ("10s", 300),
        ("5s", 300),
        ("300ms", 300),
        ("200ms", 200),
        ("100ms", 100),
    ] {
        assert_eq!(period(interval), Duration::from_millis(ms), "{interval}");
    }
    assert_eq!(
        AgentConfig::default().heartbeat.report_interval(),
        REPORT_INTERVAL
    );
}

#[test]
fn ecs_is_honoured_unless_turned_off() {
    for (geo, want) in [
        ("overwatch: { geolocation: { default_region: r1 } }", true),
        (
            "geolocation: { default_region: r1, ecs_enabled: true }",
            true,
        ),
        (
            "geolocation: { default_region: r1, ecs_enabled: false }",
            false,
        ),
        ("overwatch: { geolocation: { ecs_enabled: false } }", false),
    ] {
        let c = Config::from_yaml_str(&format!("{BASE}{geo}\n")).expect(geo);
        assert_eq!(c.geolocation().map(|g| g.ecs_enabled), Some(want), "{geo}");
        assert!(
            c.unused_sections().is_empty(),
            "{geo}: {:?}",
            c.unused_sections()
        );
    }
}

#[test]
fn dnssec_off_is_accepted_silently_whatever_its_other_keys() {
    let yaml = format!(
        "{BASE}overwatch:\n  dnssec: {{ enabled: false, security_acknowledgment: x, algorithm: RSASHA256, \
         key_sync: {{ peers: [a], poll_interval: 1h, timeout: 5s }} }}\n"
    );
    let c = Config::from_yaml_str(&yaml).expect("dnssec off");
    assert!(c.unused_sections().is_empty(), "{:?}", c.unused_sections());
}

/// A scratch directory for the include tests, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ogs-cfg-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }

    /// Writes `text` to `name` (under the directory; parents created), mode 0600.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
        std::fs::write(&path, text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn region(name: &str, addr: &str, service: &str) -> String {
    format!(
        "regions:\n  - {{ name: {name}, servers: [{{ address: {addr}, service: {service} }}] }}\n"
    )
}

#[test]
fn includes_are_merged_relative_to_the_file_that_names_them() {
    let d = Scratch::new("inc");
    // Main file: r1 and www. It includes conf.d/*.yaml (two files, read in name order) and sub/b.yaml,
    // which includes c.yaml next to itself.
    let main = d.write(
        "main.yaml",
        &format!(
            "{BASE}includes: [\"conf.d/*.yaml\", sub/b.yaml]\n\
             overwatch:\n  agent_tokens: {{ www.example.com: main-token-0123456 }}\n  \
             geolocation: {{ default_region: r1, custom_mappings: [{{ cidr: 10.0.0.0/8, region: r1 }}] }}\n"
        ),
    );
    d.write(
        "conf.d/10-api.yaml",
        &format!(
            "{}domains:\n  - {{ name: api.example.com, regions: [r2], latency_config: {{ min_samples: 2 }} }}\n\
             overwatch:\n  agent_tokens: {{ WWW.example.com.: included-token-01, api.example.com: api-token-0123456 }}\n",
            region("r2", "192.0.2.2", "api.example.com")
        ),
    );
    d.write(
        "conf.d/20-geo.yaml",
        "overwatch: { geolocation: { custom_mappings: [{ cidr: 10.1.0.0/16, region: r2 }] } }\n",
    );
    std::fs::create_dir_all(d.0.join("conf.d/skipped.d")).expect("a directory the glob skips");
    d.write(
        "sub/b.yaml",
        &format!(
            "includes: [c.yaml]\n{}",
            region("r3", "192.0.2.3", "www.example.com")
        ),
    );
    d.write(
        "sub/c.yaml",
        "agent:\n  backends: [{ service: www.example.com, address: 127.0.0.1, port: 80 }]\n",
    );
    let c = Config::load(&main).expect("merged config");
    let regions: Vec<&str> = c.regions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(regions, ["r1", "r2", "r3"]);
    let domains: Vec<&str> = c.domains.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(domains, ["www.example.com", "api.example.com"]);
    assert_eq!(c.agent.backends.len(), 1);
    // Tokens merge by service: the included file's replace the main file's for the same service.
    let tokens: Vec<(String, Vec<&str>)> = c
        .overwatch
        .agent_tokens
        .iter()
        .map(|(s, t)| (s.to_string(), t.iter().map(Secret::expose).collect()))
        .collect();
    assert_eq!(
        tokens,
        [
            ("api.example.com".to_owned(), vec!["api-token-0123456"]),
            ("www.example.com".to_owned(), vec!["included-token-01"]),
        ]
    );
    let maps: Vec<String> = c
        .geolocation()
        .expect("geolocation")
        .custom_mappings
        .iter()
        .map(|m| m.cidr.to_string())
        .collect();
    assert_eq!(maps, ["10.0.0.0/8", "10.1.0.0/16"]);
    // An included domain serves the servers of an included region.
    assert_eq!(c.domain_records()[1].v4, [Ipv4Addr::new(192, 0, 2, 2)]);
    // Every key of the included files is acted on, as those of the main file.
    assert!(c.unused_sections().is_empty(), "{:?}", c.unused_sections());
}

/// As in the original, a relative include resolves from the directory the file was named in, so a
/// symlinked main file includes the files beside the link.
#[test]
fn includes_resolve_beside_a_symlinked_file() {
    let d = Scratch::new("inclink");
    let real = d.write("real/main.yaml", &format!("{BASE}includes: [extra.yaml]\n"));
    d.write(
        "etc/extra.yaml",
        &region("rx", "192.0.2.8", "www.example.com"),
    );
    let link = d.0.join("etc/main.yaml");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let c = Config::load(&link).expect("through the link");
    assert_eq!(c.regions.last().map(|r| r.name.as_str()), Some("rx"));
    let err = Config::load(&real).expect_err("no extra.yaml beside the real file");
    assert!(err.to_string().contains("real/extra.yaml"), "{err}");
}

#[test]
fn bad_includes_are_refused_naming_the_file() {
    let d = Scratch::new("badinc");
    let refused = |main_tail: &str, files: &[(&str, &str)], fragment: &str| {
        for (name, text) in files {
            d.write(name, text);
        }
        let main = d.write("main.yaml", &format!("{BASE}{main_tail}"));
        let err = Config::load(&main).expect_err(fragment);
        let text = err.to_string();
        assert_eq!(err.key_path(), Some("includes"), "{text}");
        assert!(text.starts_with("includes: "), "{text}");
        assert!(text.contains(fragment), "{text:?} lacks {fragment:?}");
        text
    };
    let text = refused("includes: [missing.yaml]\n", &[], "No such file");
    assert!(
        text.contains("missing.yaml") && text.contains("main.yaml"),
        "{text}"
    );
    // A cycle, named file by file.
    let text = refused(
        "includes: [a.yaml]\n",
        &[
            ("a.yaml", "includes: [b.yaml]\n"),
            ("b.yaml", "includes: [a.yaml]\n"),
        ],
        "include cycle",
    );
    assert!(
        text.contains("a.yaml -> ") && text.contains("b.yaml -> "),
        "{text}"
    );
    refused("includes: [main.yaml]\n", &[], "include cycle");
    refused(
        "includes: [a.yaml, a.yaml]\n",
        &[("a.yaml", "regions: []\n")],
        "included twice",
    );
    // Keys only the main file may set.
    let text = refused(
        "includes: [a.yaml]\n",
        &[("a.yaml", "dns: { default_ttl: 5 }\n")],
        "unknown field `dns`",
    );
    assert!(text.contains("set the rest in the main file"), "{text}");
    refused(
        "includes: [a.yaml]\n",
        &[("a.yaml", "overwatch: { stale: { threshold: 5s } }\n")],
        "overwatch.stale",
    );
    refused(
        "includes: [a.yaml]\n",
        &[("a.yaml", &region("r1", "192.0.2.9", "www.example.com"))],
        "duplicate region name \"r1\"",
    );
    refused(
        "includes: [sub]\n",
        &[("sub/x.yaml", "regions: []\n")],
        "is a directory",
    );
    refused(
        "includes: [a.yaml]\n",
        &[(
            "a.yaml",
            "regions: [ { name: x, servers: [{ address: nope }] } ]\n",
        )],
        "regions[0].servers[0].address",
    );
    // Nesting is bounded.
    let mut files = Vec::new();
    for i in 0..=includes::MAX_DEPTH {
        files.push((
            format!("deep{i}.yaml"),
            format!("includes: [deep{}.yaml]\n", i + 1),
        ));
    }
    files.push((
        format!("deep{}.yaml", includes::MAX_DEPTH + 1),
        String::new(),
    ));
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    refused("includes: [deep0.yaml]\n", &files, "nest deeper than 10");
    // A glob that matches nothing is no error (an empty conf.d); text given without a file may not include.
    let main = d.write("ok.yaml", &format!("{BASE}includes: [\"none.d/*.yaml\"]\n"));
    assert!(Config::load(&main).is_ok());
}

#[test]
fn an_included_file_others_may_write_or_read_with_tokens_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let d = Scratch::new("incmode");
    let main = d.write("main.yaml", &format!("{BASE}includes: [a.yaml]\n"));
    let inc = d.write("a.yaml", "regions: []\n");
    let chmod = |mode: u32| {
        std::fs::set_permissions(&inc, std::fs::Permissions::from_mode(mode)).expect("chmod")
    };
    chmod(0o646);
    let err = Config::load(&main).expect_err("world-writable").to_string();
    assert!(err.contains("lets anyone write it"), "{err}");
    chmod(0o644);
    assert!(Config::load(&main).is_ok());
    std::fs::write(
        &inc,
        "overwatch: { agent_tokens: { www.example.com: tok-0123456789abcdef } }\n",
    )
    .expect("write");
    let err = Config::load(&main).expect_err("tokens readable by others");
    assert!(matches!(err, ConfigError::Exposed { .. }), "{err}");
    assert!(err.to_string().contains("overwatch.agent_tokens"), "{err}");
    chmod(0o600);
    assert!(Config::load(&main).is_ok());
}

#[test]
fn documented_defaults_are_the_applied_defaults() {
    // Each section written empty, as `{}` and as a bare key, gives its documented `Default`.
    for body in ["{}", ""] {
        let yaml = format!(
            "mode: overwatch\ndns: {{ zones: [example.com] }}\noverwatch: {body}\nagent: {body}\napi: {body}\n\
             logging: {body}\nlatency_config: {body}\nmetrics: {body}\n"
        );
        let c = Config::from_yaml_str(&yaml).expect(&yaml);
        assert_eq!(c.overwatch, OverwatchConfig::default());
        assert_eq!(c.agent, AgentConfig::default());
        assert_eq!(c.api, ApiConfig::default());
        assert_eq!(c.logging, LoggingConfig::default());
        assert_eq!(c.latency_config, LatencyConfig::default());
        assert_eq!(c.metrics, MetricsConfig::default());
    }
    let nested = "mode: overwatch\ndns: { zones: [example.com] }\noverwatch: { identity: {}, gossip: {}, validation: {}, \
                  stale: {}, dnssec: { key_sync: {} }, geolocation: {} }\nagent: { identity: {}, gossip: {}, heartbeat: {}, \
                  predictive: { cpu: {}, memory: {}, error_rate: {} }, latency_learning: {}, maintenance: {}, \
                  backends: [{ service: a.example.com, address: 192.0.2.1, port: 80 }] }\n";
    let c = Config::from_yaml_str(nested).expect("nested empty sections");
    assert_eq!(
        c.overwatch,
        OverwatchConfig {
            geolocation: Some(GeolocationConfig::default()),
            ..OverwatchConfig::default()
        }
    );
    assert_eq!(
        c.agent,
        AgentConfig {
            backends: c.agent.backends.clone(),
            ..AgentConfig::default()
        }
    );
    let b = &c.agent.backends[0];
    assert_eq!((b.weight, b.advertise_address), (100, None));
    assert_eq!(b.health_check, HealthCheck::default());

    // The values the field docs (and the README table) give.
    let (ow, secs) = (OverwatchConfig::default(), Duration::from_secs);
    assert_eq!(
        ow.identity,
        OverwatchIdentity {
            node_id: None,
            region: None
        }
    );
    assert!(ow.agent_tokens.is_empty());
    assert_eq!(
        ow.gossip.bind_address,
        "0.0.0.0:7946".parse::<SocketAddr>().expect("addr")
    );
    assert!(ow.gossip.key_ring().is_empty());
    assert_eq!(
        (
            ow.gossip.probe_interval,
            ow.gossip.probe_timeout,
            ow.gossip.gossip_interval
        ),
        (
            secs(1),
            Duration::from_millis(500),
            Duration::from_millis(200)
        )
    );
    assert_eq!(
        (
            ow.validation.enabled,
            ow.validation.check_interval,
            ow.validation.check_timeout
        ),
        (true, secs(30), secs(5))
    );
    assert_eq!(
        (ow.stale.threshold, ow.stale.remove_after),
        (secs(30), secs(300))
    );
    assert_eq!(
        (
            ow.dnssec.enabled,
            ow.dnssec.security_acknowledgment.clone(),
            ow.dnssec.algorithm.as_str()
        ),
        (false, None, "ECDSAP256SHA256")
    );
    assert_eq!(
        (
            ow.dnssec.key_sync.peers.len(),
            ow.dnssec.key_sync.poll_interval,
            ow.dnssec.key_sync.timeout
        ),
        (0, secs(3600), secs(30))
    );
    assert_eq!(ow.geolocation, None);
    assert_eq!(
        GeolocationConfig::default(),
        GeolocationConfig {
            database_path: None,
            default_region: None,
            ecs_enabled: true,
            custom_mappings: vec![]
        }
    );
    assert_eq!(ow.data_dir, Path::new("/var/lib/opengslb"));

    let a = AgentConfig::default();
    assert_eq!(a.identity.service_token, None);
    assert_eq!(a.identity.region, None);
    assert_eq!(
        (&a.identity.cert_path, &a.identity.key_path),
        (&None, &None)
    );
    assert!(
        a.backends.is_empty()
            && a.gossip.overwatch_nodes.is_empty()
            && a.gossip.key_ring().is_empty()
    );
    assert_eq!(
        (a.heartbeat.interval, a.heartbeat.missed_threshold),
        (secs(10), 3)
    );
    let p = &a.predictive;
    assert!(!p.enabled);
    assert_eq!(p.check_interval, secs(10));
    assert_eq!((p.cpu.threshold, p.cpu.bleed_duration), (90.0, secs(30)));
    assert_eq!(
        (p.memory.threshold, p.memory.bleed_duration),
        (85.0, secs(30))
    );
    assert_eq!(
        (
            p.error_rate.threshold,
            p.error_rate.window,
            p.error_rate.bleed_duration,
            p.error_rate.source.clone()
        ),
        (10.0, secs(60), secs(30), None)
    );
    let ll = &a.latency_learning;
    assert!(!ll.enabled);
    assert_eq!(
        (
            ll.poll_interval,
            ll.min_connection_age,
            ll.subnet_ttl,
            ll.report_interval
        ),
        (secs(10), secs(5), secs(168 * 3600), secs(30))
    );
    assert_eq!(
        (
            ll.ipv4_prefix,
            ll.ipv6_prefix,
            ll.ewma_alpha,
            ll.max_subnets,
            ll.min_samples
        ),
        (24, 48, 0.3, 100_000, 5)
    );
    assert_eq!(a.drain_file, Path::new("/tmp/drain"));
    assert_eq!(
        a.control_socket,
        Path::new("/run/opengslb-agent/agent.sock")
    );
    assert!(a.maintenance.windows.is_empty());

    let api = ApiConfig::default();
    assert!(!api.enabled && !api.trust_proxy_headers);
    assert_eq!(
        api.address,
        "127.0.0.1:8080".parse::<SocketAddr>().expect("addr")
    );
    let nets: Vec<String> = api
        .allowed_networks
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(nets, ["127.0.0.1/32", "::1/128"]);
    assert_eq!(
        LoggingConfig::default(),
        LoggingConfig {
            level: LogLevel::Info,
            format: LogFormat::Json
        }
    );
    assert_eq!(
        LatencyConfig::default(),
        LatencyConfig {
            smoothing_factor: 0.3,
            max_latency_ms: 500,
            min_samples: 1
        }
    );
    let hc = HealthCheck::default();
    assert!(hc.tls_verify);
    assert_eq!(hc.expected_status.to_string(), "2xx");
    assert_eq!(
        DomainLatencyConfig::default().over(LatencyConfig::default()),
        LatencyConfig::default()
    );
}

#[test]
fn empty_allowed_networks_mean_loopback_and_host_bits_are_cleared() {
    let c =
        Config::from_yaml_str(&format!("{BASE}api: {{ allowed_networks: [] }}\n")).expect("config");
    assert_eq!(
        c.api.allowed_networks,
        ApiConfig::default().allowed_networks
    );
    let c = Config::from_yaml_str(&format!(
        "{BASE}api: {{ allowed_networks: [10.1.2.3/8] }}\n"
    ))
    .expect("config");
    assert_eq!(c.api.allowed_networks[0].to_string(), "10.0.0.0/8");
}

#[test]
fn all_down_follows_the_domain_then_return_last_healthy() {
    let records = |yaml: &str| {
        Config::from_yaml_str(yaml)
            .expect(yaml)
            .domain_records()
            .into_iter()
            .map(|r| r.all_down)
            .collect::<Vec<_>>()
    };
    assert_eq!(records(BASE), [AllDownPolicy::All]);
    let last = base_with(
        "default_ttl: 60",
        "default_ttl: 60, return_last_healthy: true",
    );
    assert_eq!(records(&last), [AllDownPolicy::LastHealthy]);
    let own = last.replacen("max_answers: 1", "max_answers: 1, all_down: All", 1);
    assert_eq!(records(&own), [AllDownPolicy::All]);
    for (text, want) in [
        ("last_healthy", AllDownPolicy::LastHealthy),
        ("last-healthy", AllDownPolicy::LastHealthy),
        ("EMPTY", AllDownPolicy::Empty),
    ] {
        assert_eq!(text.parse::<AllDownPolicy>(), Ok(want));
        assert_eq!(want.as_str().parse::<AllDownPolicy>(), Ok(want));
    }
}

#[test]
fn top_level_geolocation_is_accepted_alone() {
    let yaml = format!("{BASE}geolocation: {{ default_region: r1, ecs_enabled: true }}\n");
    let c = Config::from_yaml_str(&yaml).expect("config");
    let geo = c.geolocation().expect("geolocation");
    assert_eq!(
        (geo.default_region.as_deref(), geo.ecs_enabled),
        (Some("r1"), true)
    );
    assert_eq!(c.overwatch.geolocation, None);
    assert!(
        Config::from_yaml_str(BASE)
            .expect("base")
            .geolocation()
            .is_none()
    );
}

#[test]
fn agent_tokens_take_one_or_many_and_merge_by_normalized_name() {
    let yaml = format!(
        "{BASE}overwatch:\n  agent_tokens:\n    www.example.com: aaaaaaaaaaaaaaaa\n    WWW.Example.com.: [bbbbbbbbbbbbbbbb, cccccccccccccccc]\n"
    );
    let c = Config::from_yaml_str(&yaml).expect("config");
    let tokens: Vec<&str> = c.overwatch.agent_tokens
        [&"www.example.com".parse::<DnsName>().unwrap()]
        .iter()
        .map(Secret::expose)
        .collect();
    assert_eq!(tokens.len(), 3);
    assert!(tokens.contains(&"aaaaaaaaaaaaaaaa") && tokens.contains(&"cccccccccccccccc"));
    // An empty key, as Go accepts it: no tokens.
    let c = Config::from_yaml_str(&format!("{BASE}overwatch:\n  agent_tokens:\n")).expect("config");
    assert!(c.overwatch.agent_tokens.is_empty());
}

#[test]
fn secrets_never_show_in_debug_output_or_errors() {
    let c = Config::from_yaml_str(DEMO2_AGENT).expect("agent");
    let debug = format!("{c:?}");
    assert!(!debug.contains("demo-token-0123456789"), "{debug}");
    assert!(!debug.contains(DEMO_KEY));
    assert!(debug.contains("GossipKey(<redacted>)") && debug.contains("Secret(<21 chars>)"));
    let short_key = "c2VjcmV0LWJ1dC10b28tc2hvcnQ=";
    let yaml = DEMO2_AGENT.replacen(DEMO_KEY, short_key, 1);
    let err = Config::from_yaml_str(&yaml)
        .expect_err("short key")
        .to_string();
    assert!(!err.contains(short_key) && err.contains("got 20"), "{err}");
}

#[test]
fn base64_decodes_rfc4648_vectors() {
    use super::secret::decode_base64;
    for (text, want) in [
        ("", ""),
        ("Zg==", "f"),
        ("Zm8=", "fo"),
        ("Zm9v", "foo"),
        ("Zm9vYg==", "foob"),
        ("Zm9vYmE=", "fooba"),
        ("Zm9vYmFy", "foobar"),
        ("Zm9vYg", "foob"),
    ] {
        assert_eq!(
            decode_base64(text).as_deref(),
            Some(want.as_bytes()),
            "{text}"
        );
    }
    for text in [
        "Z", "Zg=", "Zg===", "Zm9v!", "Zh==", "Zm9=v", "Zm-v", "====",
    ] {
        assert_eq!(decode_base64(text), None, "{text}");
    }
    assert_eq!(GossipKey::from_base64(DEMO_KEY), Ok(demo_key()));
    let bytes: Vec<u8> = (0..=255).collect();
    let encoded = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn+AgYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2en6ChoqOkpaanqKmqq6ytrq+wsbKztLW2t7i5uru8vb6/wMHCw8TFxsfIycrLzM3Oz9DR0tPU1dbX2Nna29zd3t/g4eLj5OXm5+jp6uvs7e7v8PHy8/T19vf4+fr7/P3+/w==";
    assert_eq!(decode_base64(encoded), Some(bytes));
}

#[test]
fn expected_status_forms() {
    let parse = |yaml: &str| serde_norway::from_str::<ExpectedStatus>(yaml);
    let s = parse("200").expect("code");
    assert!(s.matches(200) && !s.matches(201));
    let s = parse("\"2XX\"").expect("class");
    assert!(s.matches(200) && s.matches(299) && !s.matches(300) && !s.matches(199));
    let s = parse("[204, \"3xx\", \"404\"]").expect("list");
    assert_eq!(s.ranges(), [(204, 204), (300, 399), (404, 404)]);
    assert_eq!(s.to_string(), "204, 3xx, 404");
    for bad in ["99", "600", "\"0xx\"", "\"6xx\"", "\"20x\"", "[]", "-200"] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn node_addresses_parse_and_print() {
    for (text, host, port) in [
        ("10.20.0.10:7946", "10.20.0.10", 7946),
        ("overwatch-1.internal:7946", "overwatch-1.internal", 7946),
        ("[2001:db8::1]:53", "2001:db8::1", 53),
    ] {
        let addr: NodeAddress = text.parse().expect(text);
        assert_eq!((addr.host.as_str(), addr.port), (host, port));
        assert_eq!(addr.to_string(), text);
    }
    for bad in [
        "",
        ":7946",
        "host",
        "host:",
        "host:65536",
        "[::1:7946",
        "[nothost]:1",
        "a b:1",
    ] {
        assert!(bad.parse::<NodeAddress>().is_err(), "{bad}");
    }
}

#[test]
fn timestamps_parse_as_rfc3339() {
    let secs = |s: &str| {
        parse_timestamp(s)
            .expect(s)
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .expect("after 1970")
    };
    assert_eq!(secs("1970-01-01T00:00:00Z"), Duration::ZERO);
    assert_eq!(
        secs("2000-03-01T00:00:00Z"),
        Duration::from_secs(951_868_800)
    );
    assert_eq!(
        secs("2024-02-29T12:30:15.25Z"),
        Duration::new(1_709_209_815, 250_000_000)
    );
    assert_eq!(
        secs("2026-03-01t04:00:00+02:00"),
        secs("2026-03-01 02:00:00z")
    );
    assert_eq!(
        secs("2026-03-01T00:00:00-01:30"),
        secs("2026-03-01T01:30:00Z")
    );
    for bad in [
        "2026-03-01",
        "2026-03-01T00:00Z",
        "2026-03-01T24:00:00Z",
        "2023-02-29T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "2026-03-01T00:00:00+2:00",
        "2026-03-01T00:00:00.Z",
        "2026-3-01T00:00:00Z",
    ] {
        assert!(parse_timestamp(bad).is_err(), "{bad}");
    }
}

#[test]
fn maintenance_windows_open_and_close() {
    let at = |s: &str| parse_timestamp(s).expect(s);
    let c = Config::from_yaml_str(ALL_KEYS_AGENT).expect("agent");
    let m = &c.agent.maintenance;
    // One-off, with end: [02:00, 04:00) on 2026-03-01 (a Sunday).
    assert!(m.windows[0].contains(at("2026-03-01T02:00:00Z")));
    assert!(m.windows[0].contains(at("2026-03-01T03:59:59.999Z")));
    assert!(!m.windows[0].contains(at("2026-03-01T04:00:00Z")));
    assert!(!m.windows[0].contains(at("2026-03-01T01:59:59Z")));
    // One-off, with duration: 01:00Z plus 90 minutes.
    assert!(m.windows[1].contains(at("2026-03-08T02:29:00Z")));
    assert!(!m.windows[1].contains(at("2026-03-08T02:30:00Z")));
    // Weekly, Saturday and Sunday 23:30 for an hour: runs past midnight into Sunday and Monday.
    let weekly = &m.windows[2];
    assert!(
        weekly.contains(at("2026-02-28T23:45:00Z")),
        "Saturday night"
    );
    assert!(weekly.contains(at("2026-03-01T00:15:00Z")), "into Sunday");
    assert!(weekly.contains(at("2026-03-02T00:29:59Z")), "into Monday");
    assert!(!weekly.contains(at("2026-03-02T00:30:00Z")));
    assert!(!weekly.contains(at("2026-03-02T23:45:00Z")), "Monday night");
    assert!(!weekly.contains(at("2026-02-28T23:29:59Z")));
    assert!(m.active_at(at("2026-03-01T03:00:00Z")));
    assert!(!m.active_at(at("2026-03-04T12:00:00Z")));
    // Without days, a recurring window opens every day.
    let daily = MaintenanceWindow {
        start: "12:00".parse().expect("time"),
        end: None,
        duration: Some(Duration::from_secs(60)),
        days: vec![],
    };
    assert!(daily.contains(at("2026-03-04T12:00:30Z")));
    assert!(!daily.contains(at("2026-03-04T12:01:00Z")));
    for bad in ["24:00", "2:5", "12:60", "+1:00", "ab:cd"] {
        assert!(bad.parse::<WindowStart>().is_err(), "{bad}");
    }
    assert_eq!(
        "7:05".parse::<WindowStart>(),
        Ok(WindowStart::Daily { minute: 425 })
    );
}

#[test]
fn log_settings_are_case_insensitive_and_accept_the_originals_empty_value() {
    let c = Config::from_yaml_str(&format!(
        "{BASE}logging: {{ level: WARNING, format: JSON }}\n"
    ))
    .expect("config");
    assert_eq!(
        (c.logging.level, c.logging.format),
        (LogLevel::Warn, LogFormat::Json)
    );
    let c = Config::from_yaml_str(&format!("{BASE}logging: {{ level: '', format: '' }}\n"))
        .expect("config");
    assert_eq!(c.logging, LoggingConfig::default());
    assert_eq!(LogLevel::Debug.to_string(), "debug");
}

#[test]
fn an_agent_reports_at_most_64_backends() {
    let backend = "    - { service: app.example.com, address: 127.0.0.1, port: 80, weight: 100, health_check: { interval: 2s, timeout: 1s } }\n";
    let with = |n: u16| {
        let list: String = (0..n)
            .map(|i| backend.replace("port: 80", &format!("port: {}", 1000 + i)))
            .collect();
        AGENT_BASE.replace(backend, &list)
    };
    assert!(Config::from_yaml_str(&with(64)).is_ok());
    let err = Config::from_yaml_str(&with(65)).unwrap_err().to_string();
    assert!(
        err.contains("agent.backends") && err.contains("at most 64"),
        "{err}"
    );
}

#[test]
fn secret_keys_name_every_secret_a_file_holds() {
    let keys = |yaml: &str| Config::from_yaml_str(yaml).expect("config").secret_keys();
    assert!(keys(DEFAULT_CONFIG_YAML).is_empty());
    assert!(keys(BASE).is_empty());
    assert_eq!(keys(DEMO2_OVERWATCH), ["overwatch.gossip.encryption_key"]);
    assert_eq!(
        keys(DEMO2_AGENT),
        [
            "agent.identity.service_token",
            "agent.gossip.encryption_key"
        ]
    );
    assert_eq!(
        keys(ALL_KEYS_OVERWATCH),
        ["overwatch.gossip.encryption_keys", "overwatch.agent_tokens"]
    );
    assert_eq!(keys(ALL_KEYS_AGENT), keys(DEMO2_AGENT));
    assert_eq!(
        keys(&format!(
            "{BASE}api: {{ token: \"api-token-0123456789\" }}\n"
        )),
        ["api.token"]
    );
}

#[test]
fn a_file_with_secrets_must_be_private_to_its_owner() {
    let path = Path::new("/etc/opengslb/config.yaml");
    let secrets = ["overwatch.gossip.encryption_key", "api.token"];
    for mode in [0o600, 0o400, 0o200, 0o700, 0o711, 0o1600] {
        assert!(secret::exposure(path, mode, &secrets).is_ok(), "{mode:04o}");
    }
    for (mode, who, what) in [
        (0o644, "its group and others", "read"),
        (0o640, "its group", "read"),
        (0o604, "others", "read"),
        (0o620, "its group", "write"),
        (0o602, "others", "write"),
        (0o660, "its group", "read and write"),
        (0o666, "its group and others", "read and write"),
        (0o622, "its group and others", "write"),
    ] {
        let err = secret::exposure(path, mode, &secrets).expect_err("refused");
        assert!(
            matches!(err, ConfigError::Exposed { mode: m, .. } if m == mode),
            "{err:?}"
        );
        assert_eq!(err.key_path(), None);
        assert_eq!(
            err.to_string(),
            format!(
                "config /etc/opengslb/config.yaml holds secrets (overwatch.gossip.encryption_key, \
                 api.token) but its mode {mode:04o} lets {who} {what} it: run `chmod 600 \
                 /etc/opengslb/config.yaml` (the user opengslb runs as must own it)"
            )
        );
    }
    // A file without secrets may have any mode.
    assert!(secret::exposure(path, 0o666, &[]).is_ok());
}

#[test]
fn the_file_mode_check_reads_the_files_mode_only_when_it_holds_secrets() {
    let missing = Path::new("/nonexistent/opengslb.yaml");
    let plain = Config::from_yaml_str(BASE).expect("config");
    assert!(check_file_mode(missing, &plain).is_ok());
    let keyed = Config::from_yaml_str(DEMO2_OVERWATCH).expect("config");
    let err = check_file_mode(missing, &keyed).expect_err("no such file");
    assert!(matches!(err, ConfigError::Io { .. }), "{err}");
    // A real file: this checkout's copy of the demo config, whatever mode the checkout gave it.
    use std::os::unix::fs::PermissionsExt as _;
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/testdata/demo2-overwatch.yaml");
    let mode = std::fs::metadata(&file).expect("stat").permissions().mode();
    let result = check_file_mode(&file, &keyed);
    assert_eq!(result.is_err(), mode & 0o066 != 0, "{mode:o}: {result:?}");
}
