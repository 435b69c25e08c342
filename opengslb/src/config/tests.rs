//! Tests of the config module: the shipped and demo files load, unknown keys and broken rules are refused
//! with the key named, and the derived records are right.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::*;

const DEMO2_OVERWATCH: &str = include_str!("testdata/demo2-overwatch.yaml");
const DEMO2_AGENT: &str = include_str!("testdata/demo2-agent.yaml");

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
    assert_eq!(config.unused_sections(), ["overwatch", "api", "logging"]);
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
    assert_eq!(config.unused_sections(), ["agent", "logging"]);
    assert_eq!(config.metrics.address.port(), 9100);
}

#[test]
fn defaults_apply_to_missing_keys() {
    let yaml = "dns: { zones: [example.com] }\nregions: [{ name: r, servers: [{ address: '::1', service: \
                example.com }] }]\ndomains: [{ name: Example.COM., regions: [r] }]";
    let config = Config::from_yaml_str(yaml).expect("minimal config");
    assert_eq!(
        config.dns,
        DnsConfig {
            zones: vec!["example.com".into()],
            ..DnsConfig::default()
        }
    );
    assert_eq!(
        config.dns.listen_address,
        "0.0.0.0:53".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(
        (config.dns.xdp.mode, config.dns.xdp.udp_size),
        (XdpMode::Auto, 1232)
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
dns: | includes: [more.yaml]\ndns: | includes | not supported
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
    assert_eq!(
        config.unused_sections(),
        ["geolocation", "latency_config", "domains[0].latency_config"]
    );
}
