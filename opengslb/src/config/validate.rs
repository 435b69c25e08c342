//! The rules a parsed config must follow; each failure names the key path it is about.
//!
//! Rules that a value's own syntax decides (IP literals, listen addresses, durations, enums, integer types)
//! are checked while parsing, in `de.rs` and by serde; the ones here bound values further or relate them to
//! each other.

use std::collections::HashSet;
use std::time::Duration;

use super::{
    Config, ConfigError, GeolocationConfig, GossipKey, HealthCheck, HealthCheckType,
    MAX_SLOW_START, MIN_SLOW_START, Mode, WindowStart,
};

/// The largest TTL a record may carry (RFC 2181 §8).
const MAX_TTL: u32 = (1 << 31) - 1;

/// The most records one answer carries: what one XDP map entry holds.
const MAX_ANSWERS: u8 = opengslb_common::maps::MAX_RECORDS as u8;

/// The longest interface name the kernel accepts (IFNAMSIZ less the NUL).
const MAX_IFNAME: usize = 15;
/// The highest `dns.rate_limit.responses_per_second`: beyond a million a second per prefix, a limit
/// limits nothing.
const MAX_RATE: u32 = 1_000_000;
/// The shortest `dns.xdp.stale_after` other than 0.
const MIN_STALE_AFTER: Duration = Duration::from_secs(3);

/// The largest weight (the original's docs give 1..=1000; 0 is ours, for "no weighted answers").
const MAX_WEIGHT: u32 = 1000;

/// The shortest service token (the original's `config validate` rule).
const MIN_TOKEN_LEN: usize = 16;

/// The shortest interval of anything that repeats on a timer we document in seconds.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The shortest timeout of a probe.
const MIN_TIMEOUT: Duration = Duration::from_millis(100);

/// The continent codes of MaxMind's databases.
const CONTINENTS: [&str; 7] = ["AF", "AN", "AS", "EU", "NA", "OC", "SA"];

/// Returns an [`ConfigError::Invalid`] at `$path` unless `$cond` holds; the rest is a `format!` message.
macro_rules! ensure {
    ($cond:expr, $path:expr, $($message:tt)+) => {
        if !$cond {
            return Err(ConfigError::invalid($path, format!($($message)+)));
        }
    };
}

/// Checks every rule; the first failure is returned.
pub(super) fn validate(config: &Config) -> Result<(), ConfigError> {
    validate_dns(config)?;
    // Before the domains, which inherit it: a bad top-level value is named where it is written.
    validate_latency("latency_config", &config.latency_config)?;
    // Names before references: domains refer to regions, and servers to domains.
    validate_region_names(config)?;
    validate_domains(config)?;
    validate_servers(config)?;
    validate_overwatch(config)?;
    validate_geolocation(config)?;
    validate_agent(config)
}

fn validate_dns(config: &Config) -> Result<(), ConfigError> {
    let dns = &config.dns;
    // An authoritative server must know where its authority ends: out-of-zone queries get REFUSED, and
    // the zone apex carries the SOA that negative answers need.
    ensure!(
        config.mode == Mode::Agent || !dns.zones.is_empty(),
        "dns.zones",
        "at least one zone is required in overwatch mode (the zones this server is authoritative for)"
    );
    let mut seen = HashSet::new();
    for (i, zone) in dns.zones.iter().enumerate() {
        let path = format!("dns.zones[{i}]");
        ensure!(seen.insert(zone), path, "duplicate zone {zone:?}");
    }
    ensure!(
        dns.default_ttl <= MAX_TTL,
        "dns.default_ttl",
        "must be at most {MAX_TTL}"
    );
    let mut seen = HashSet::new();
    for (i, name) in dns.xdp.interfaces.iter().enumerate() {
        let path = format!("dns.xdp.interfaces[{i}]");
        let bad_char = name.contains(|c: char| c == '/' || c.is_whitespace());
        ensure!(
            !name.is_empty() && name.len() <= MAX_IFNAME && !bad_char,
            &path,
            "invalid interface name {name:?} (1 to {MAX_IFNAME} bytes, no '/' or whitespace)"
        );
        ensure!(seen.insert(name), path, "duplicate interface {name:?}");
    }
    ensure!(
        (512..=4096).contains(&dns.xdp.udp_size),
        "dns.xdp.udp_size",
        "must be between 512 and 4096"
    );
    // The heartbeat comes every second: less than three would call a busy overwatch dead.
    ensure!(
        dns.xdp.stale_after.is_zero() || dns.xdp.stale_after >= MIN_STALE_AFTER,
        "dns.xdp.stale_after",
        "must be 0 (never) or at least {}s",
        MIN_STALE_AFTER.as_secs()
    );
    let rl = &dns.rate_limit;
    ensure!(
        (8..=32).contains(&rl.ipv4_prefix),
        "dns.rate_limit.ipv4_prefix",
        "must be between 8 and 32"
    );
    ensure!(
        (32..=128).contains(&rl.ipv6_prefix),
        "dns.rate_limit.ipv6_prefix",
        "must be between 32 and 128"
    );
    ensure!(
        rl.burst != Some(0),
        "dns.rate_limit.burst",
        "must be at least 1 (or left out: one second's worth)"
    );
    ensure!(
        rl.responses_per_second <= MAX_RATE,
        "dns.rate_limit.responses_per_second",
        "must be at most {MAX_RATE} (0 turns limiting off)"
    );
    for (key, value) in [
        ("ttl", dns.soa.ttl),
        ("refresh", dns.soa.refresh),
        ("retry", dns.soa.retry),
        ("expire", dns.soa.expire),
        ("negative_ttl", dns.soa.negative_ttl),
    ] {
        ensure!(
            value <= MAX_TTL,
            format!("dns.soa.{key}"),
            "must be at most {MAX_TTL}"
        );
    }
    Ok(())
}

fn validate_region_names(config: &Config) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (i, region) in config.regions.iter().enumerate() {
        let path = format!("regions[{i}].name");
        ensure!(!region.name.is_empty(), &path, "must not be empty");
        ensure!(
            seen.insert(&region.name),
            path,
            "duplicate region name {:?}",
            region.name
        );
    }
    Ok(())
}

fn validate_domains(config: &Config) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (i, domain) in config.domains.iter().enumerate() {
        let (key, name) = (|k: &str| format!("domains[{i}].{k}"), &domain.name);
        ensure!(seen.insert(name), key("name"), "duplicate domain {name:?}");
        let zones = &config.dns.zones;
        ensure!(
            (config.mode == Mode::Agent && zones.is_empty()) || config.zone_of(name).is_some(),
            key("name"),
            "{name:?} is not inside any of dns.zones {zones:?}"
        );
        for (j, region) in domain.regions.iter().enumerate() {
            let known = config.regions.iter().any(|r| &r.name == region);
            ensure!(
                known,
                key(&format!("regions[{j}]")),
                "no region named {region:?} is configured"
            );
        }
        let ttl = domain.ttl.unwrap_or_default();
        ensure!(ttl <= MAX_TTL, key("ttl"), "must be at most {MAX_TTL}");
        let answers = domain.max_answers;
        ensure!(
            (1..=MAX_ANSWERS).contains(&answers),
            key("max_answers"),
            "must be between 1 and {MAX_ANSWERS}"
        );
        let latency = config.latency_config_of(domain);
        validate_latency(&key("latency_config"), &latency)?;
        if let Some(window) = domain.slow_start {
            ensure!(
                (MIN_SLOW_START..=MAX_SLOW_START).contains(&window),
                key("slow_start"),
                "{window:?} is outside 1s..=1h (leave the key out to turn slow start off)"
            );
        }
    }
    Ok(())
}

fn validate_latency(path: &str, latency: &super::LatencyConfig) -> Result<(), ConfigError> {
    let alpha = latency.smoothing_factor;
    ensure!(
        alpha > 0.0 && alpha <= 1.0,
        format!("{path}.smoothing_factor"),
        "{alpha} is outside (0, 1]"
    );
    ensure!(
        latency.max_latency_ms >= 1,
        format!("{path}.max_latency_ms"),
        "must be at least 1"
    );
    ensure!(
        latency.min_samples >= 1,
        format!("{path}.min_samples"),
        "must be at least 1"
    );
    Ok(())
}

fn validate_servers(config: &Config) -> Result<(), ConfigError> {
    for (i, region) in config.regions.iter().enumerate() {
        for (j, server) in region.servers.iter().enumerate() {
            let key = |k: &str| format!("regions[{i}].servers[{j}].{k}");
            ensure!(server.port != 0, key("port"), "must be between 1 and 65535");
            let service = &server.service;
            // A service no domain claims would never be answered: almost always a typo.
            ensure!(
                config.domains.iter().any(|d| &d.name == service),
                key("service"),
                "no domain {service:?} is configured (add it under domains)"
            );
        }
        ensure_weight(server_weights(region), |j| {
            format!("regions[{i}].servers[{j}].weight")
        })?;
        validate_health_check(&format!("regions[{i}].health_check"), &region.health_check)?;
        for (j, code) in region.countries.iter().enumerate() {
            ensure!(
                code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic()),
                format!("regions[{i}].countries[{j}]"),
                "invalid country code {code:?} (expected an ISO 3166-1 alpha-2 code such as \"US\")"
            );
        }
        for (j, code) in region.continents.iter().enumerate() {
            ensure!(
                CONTINENTS.contains(&code.as_str()),
                format!("regions[{i}].continents[{j}]"),
                "invalid continent code {code:?} (expected one of {})",
                CONTINENTS.join(", ")
            );
        }
    }
    Ok(())
}

fn server_weights(region: &super::Region) -> impl Iterator<Item = u32> + '_ {
    region.servers.iter().map(|s| s.weight)
}

/// Every weight at most [`MAX_WEIGHT`]; `path(j)` names the `j`th.
fn ensure_weight(
    weights: impl Iterator<Item = u32>,
    path: impl Fn(usize) -> String,
) -> Result<(), ConfigError> {
    for (j, weight) in weights.enumerate() {
        ensure!(
            weight <= MAX_WEIGHT,
            path(j),
            "{weight} is above the maximum of {MAX_WEIGHT}"
        );
    }
    Ok(())
}

fn validate_health_check(prefix: &str, hc: &HealthCheck) -> Result<(), ConfigError> {
    let key = |k: &str| format!("{prefix}.{k}");
    let path_ok = hc.kind == HealthCheckType::Tcp || hc.path.starts_with('/');
    ensure!(path_ok, key("path"), "{:?} must start with '/'", hc.path);
    check_interval_timeout(
        (&key("interval"), hc.interval),
        (&key("timeout"), hc.timeout),
        MIN_INTERVAL,
        MIN_TIMEOUT,
    )?;
    ensure!(
        hc.failure_threshold >= 1,
        key("failure_threshold"),
        "must be at least 1"
    );
    ensure!(
        hc.success_threshold >= 1,
        key("success_threshold"),
        "must be at least 1"
    );
    Ok(())
}

/// `interval` at least `min_interval`, `timeout` at least `min_timeout` and shorter than `interval`.
fn check_interval_timeout(
    (interval_key, interval): (&str, Duration),
    (timeout_key, timeout): (&str, Duration),
    min_interval: Duration,
    min_timeout: Duration,
) -> Result<(), ConfigError> {
    check_min(interval_key, interval, min_interval)?;
    check_min(timeout_key, timeout, min_timeout)?;
    let interval_name = interval_key.rsplit('.').next().unwrap_or(interval_key);
    ensure!(
        timeout < interval,
        timeout_key,
        "{timeout:?} must be shorter than {interval_name} ({interval:?})"
    );
    Ok(())
}

fn check_min(key: &str, value: Duration, min: Duration) -> Result<(), ConfigError> {
    ensure!(value >= min, key, "{value:?} is below the {min:?} minimum");
    Ok(())
}

fn check_key_ring(
    prefix: &str,
    key: Option<&GossipKey>,
    keys: &[GossipKey],
) -> Result<(), ConfigError> {
    ensure!(
        key.is_none() || keys.is_empty(),
        format!("{prefix}.encryption_keys"),
        "set either encryption_key or encryption_keys, not both"
    );
    for (i, k) in keys.iter().enumerate() {
        ensure!(
            !keys[..i].contains(k),
            format!("{prefix}.encryption_keys[{i}]"),
            "duplicate key"
        );
    }
    Ok(())
}

fn validate_overwatch(config: &Config) -> Result<(), ConfigError> {
    if let Some(token) = &config.api.token {
        ensure!(
            token.len() >= MIN_TOKEN_LEN,
            "api.token",
            "must be at least {MIN_TOKEN_LEN} characters (got {})",
            token.len()
        );
    }
    let ow = &config.overwatch;
    for (key, value) in [
        ("node_id", &ow.identity.node_id),
        ("region", &ow.identity.region),
    ] {
        if let Some(v) = value {
            ensure!(
                !v.is_empty(),
                format!("overwatch.identity.{key}"),
                "must not be empty"
            );
        }
    }
    for (service, tokens) in &ow.agent_tokens {
        let path = format!("overwatch.agent_tokens.{service}");
        ensure!(!tokens.is_empty(), &path, "give at least one token");
        for (i, token) in tokens.iter().enumerate() {
            ensure!(
                token.len() >= MIN_TOKEN_LEN,
                format!("{path}[{i}]"),
                "a token must be at least {MIN_TOKEN_LEN} characters (got {})",
                token.len()
            );
        }
        ensure!(
            config.mode == Mode::Agent || config.domains.iter().any(|d| &d.name == service),
            path,
            "no domain {service:?} is configured (services are domain names)"
        );
    }
    let gossip = &ow.gossip;
    check_key_ring(
        "overwatch.gossip",
        gossip.encryption_key.as_ref(),
        &gossip.encryption_keys,
    )?;
    check_interval_timeout(
        ("overwatch.gossip.probe_interval", gossip.probe_interval),
        ("overwatch.gossip.probe_timeout", gossip.probe_timeout),
        Duration::from_millis(100),
        Duration::from_millis(10),
    )?;
    check_min(
        "overwatch.gossip.gossip_interval",
        gossip.gossip_interval,
        Duration::from_millis(10),
    )?;
    let v = &ow.validation;
    check_interval_timeout(
        ("overwatch.validation.check_interval", v.check_interval),
        ("overwatch.validation.check_timeout", v.check_timeout),
        MIN_INTERVAL,
        MIN_TIMEOUT,
    )?;
    let stale = &ow.stale;
    check_min("overwatch.stale.threshold", stale.threshold, MIN_INTERVAL)?;
    ensure!(
        stale.remove_after > stale.threshold,
        "overwatch.stale.remove_after",
        "{:?} must be longer than threshold ({:?})",
        stale.remove_after,
        stale.threshold
    );
    let dnssec = &ow.dnssec;
    ensure!(
        !dnssec.enabled,
        "overwatch.dnssec.enabled",
        "DNSSEC signing is not supported: answers are unsigned (the Go original never signed either). \
         Set enabled: false (or remove the overwatch.dnssec section), and sign upstream if the zone must be \
         signed: serve it from a signing primary or a signing proxy in front of this server"
    );
    let sync = &dnssec.key_sync;
    check_interval_timeout(
        (
            "overwatch.dnssec.key_sync.poll_interval",
            sync.poll_interval,
        ),
        ("overwatch.dnssec.key_sync.timeout", sync.timeout),
        MIN_INTERVAL,
        MIN_TIMEOUT,
    )?;
    ensure!(
        !ow.data_dir.as_os_str().is_empty(),
        "overwatch.data_dir",
        "must not be empty"
    );
    if let Some(etcd) = &ow.store.etcd {
        validate_etcd(etcd)?;
    }
    Ok(())
}

fn validate_etcd(etcd: &crate::config::EtcdConfig) -> Result<(), ConfigError> {
    ensure!(
        !etcd.endpoints.is_empty(),
        "overwatch.store.etcd.endpoints",
        "must name at least one etcd client URL"
    );
    let tls = etcd.tls.is_some();
    for (i, e) in etcd.endpoints.iter().enumerate() {
        let path = format!("overwatch.store.etcd.endpoints[{i}]");
        let rest = e
            .strip_prefix("http://")
            .filter(|_| !tls)
            .or_else(|| e.strip_prefix("https://").filter(|_| tls));
        let Some(rest) = rest else {
            return Err(ConfigError::invalid(
                &path,
                format!(
                    "{e:?} must start with {} (with tls, https://; without, http://)",
                    if tls { "https://" } else { "http://" }
                ),
            ));
        };
        let host_port = rest.strip_suffix('/').unwrap_or(rest);
        let port = host_port
            .rsplit_once(':')
            .map(|(h, p)| (h, p.parse::<u16>()));
        ensure!(
            matches!(port, Some((h, Ok(p))) if !h.is_empty() && p != 0 && !h.contains('/')),
            &path,
            "{e:?} must be a URL with a host and a port, such as http://10.0.0.1:2379"
        );
    }
    ensure!(
        etcd.prefix.starts_with('/') && etcd.prefix.ends_with('/') && etcd.prefix.len() > 1,
        "overwatch.store.etcd.prefix",
        "{:?} must start and end with / and name something, such as /opengslb/",
        etcd.prefix
    );
    for (name, d) in [
        ("dial_timeout", etcd.dial_timeout),
        ("request_timeout", etcd.request_timeout),
    ] {
        ensure!(
            d >= Duration::from_millis(100) && d <= Duration::from_secs(60),
            &format!("overwatch.store.etcd.{name}"),
            "must be between 100ms and 60s"
        );
    }
    ensure!(
        etcd.username.is_some() == etcd.password.is_some(),
        "overwatch.store.etcd.username",
        "username and password go together"
    );
    if let Some(t) = &etcd.tls {
        ensure!(
            t.cert_file.is_some() == t.key_file.is_some(),
            "overwatch.store.etcd.tls.cert_file",
            "cert_file and key_file go together"
        );
    }
    Ok(())
}

fn validate_geolocation(config: &Config) -> Result<(), ConfigError> {
    let (prefix, geo): (&str, &GeolocationConfig) = match (
        &config.overwatch.geolocation,
        &config.geolocation,
    ) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                "geolocation",
                "also set as overwatch.geolocation: keep one (overwatch.geolocation is where the \
                     original's code reads it)",
            ));
        }
        (Some(geo), None) => ("overwatch.geolocation", geo),
        (None, Some(geo)) => ("geolocation", geo),
        (None, None) => return Ok(()),
    };
    let region_known = |name: &str| config.regions.iter().any(|r| r.name == name);
    if let Some(path) = &geo.database_path {
        ensure!(
            path.is_file(),
            format!("{prefix}.database_path"),
            "{} does not exist or is not a file",
            path.display()
        );
    }
    if let Some(region) = &geo.default_region {
        ensure!(
            region_known(region),
            format!("{prefix}.default_region"),
            "no region named {region:?} is configured"
        );
    }
    let mut seen = HashSet::new();
    for (i, mapping) in geo.custom_mappings.iter().enumerate() {
        let key = |k: &str| format!("{prefix}.custom_mappings[{i}].{k}");
        ensure!(
            seen.insert(mapping.cidr),
            key("cidr"),
            "duplicate mapping of {}",
            mapping.cidr
        );
        ensure!(
            region_known(&mapping.region),
            key("region"),
            "no region named {:?} is configured",
            mapping.region
        );
    }
    Ok(())
}

fn validate_agent(config: &Config) -> Result<(), ConfigError> {
    let agent = &config.agent;
    let is_agent = config.mode == Mode::Agent;
    match &agent.identity.service_token {
        None => ensure!(
            !is_agent,
            "agent.identity.service_token",
            "required in agent mode (at least {MIN_TOKEN_LEN} characters)"
        ),
        Some(token) => ensure!(
            token.len() >= MIN_TOKEN_LEN,
            "agent.identity.service_token",
            "must be at least {MIN_TOKEN_LEN} characters (got {})",
            token.len()
        ),
    }
    if let Some(region) = &agent.identity.region {
        ensure!(
            !region.is_empty(),
            "agent.identity.region",
            "must not be empty"
        );
    }
    for (key, value) in [
        ("cert_path", &agent.identity.cert_path),
        ("key_path", &agent.identity.key_path),
    ] {
        ensure!(
            value.is_none(),
            format!("agent.identity.{key}"),
            "agents use no certificate: they are authenticated by the shared gossip key \
             (agent.gossip.encryption_key) that seals every report and by agent.identity.service_token, \
             checked against overwatch.agent_tokens. Remove this key"
        );
    }
    ensure!(
        !is_agent || !agent.backends.is_empty(),
        "agent.backends",
        "at least one backend is required in agent mode"
    );
    ensure!(
        agent.backends.len() <= super::MAX_BACKENDS,
        "agent.backends",
        "{} backends; one agent reports at most {} (run another agent for more)",
        agent.backends.len(),
        super::MAX_BACKENDS
    );
    let mut seen = HashSet::new();
    for (i, backend) in agent.backends.iter().enumerate() {
        let key = |k: &str| format!("agent.backends[{i}].{k}");
        ensure!(
            backend.port != 0,
            key("port"),
            "must be between 1 and 65535"
        );
        ensure_weight(std::iter::once(backend.weight), |_| key("weight"))?;
        if let Some(adv) = backend.advertise_address {
            ensure!(
                !(adv.is_loopback() || adv.is_unspecified() || adv.is_multicast()),
                key("advertise_address"),
                "{adv} is a loopback, unspecified or multicast address, which clients cannot reach"
            );
        }
        let id = (&backend.service, backend.address, backend.port);
        ensure!(
            seen.insert(id),
            key("port"),
            "duplicate backend {} {}:{}",
            backend.service,
            backend.address,
            backend.port
        );
        validate_health_check(&key("health_check"), &backend.health_check)?;
    }
    let gossip = &agent.gossip;
    check_key_ring(
        "agent.gossip",
        gossip.encryption_key.as_ref(),
        &gossip.encryption_keys,
    )?;
    ensure!(
        !is_agent || !gossip.key_ring().is_empty(),
        "agent.gossip.encryption_key",
        "required in agent mode: base64 of 32 bytes, the overwatches' key (generate one with \
         `openssl rand -base64 32`)"
    );
    ensure!(
        !is_agent || !gossip.overwatch_nodes.is_empty(),
        "agent.gossip.overwatch_nodes",
        "at least one overwatch address (host:port) is required in agent mode"
    );
    let beat = agent.heartbeat.interval;
    ensure!(
        beat >= super::MIN_HEARTBEAT,
        "agent.heartbeat.interval",
        "{beat:?} is below the {:?} minimum: reports that often load every overwatch for nothing, and a \
         pause of a few of them would call the agent dead",
        super::MIN_HEARTBEAT
    );
    ensure!(
        (1..=super::MAX_MISSED).contains(&agent.heartbeat.missed_threshold),
        "agent.heartbeat.missed_threshold",
        "must be between 1 and {} (reports go every {:?})",
        super::MAX_MISSED,
        agent.heartbeat.report_interval()
    );
    validate_predictive(&agent.predictive)?;
    validate_latency_learning(&agent.latency_learning)?;
    ensure!(
        agent.drain_file.is_absolute(),
        "agent.drain_file",
        "{} is not an absolute path",
        agent.drain_file.display()
    );
    ensure!(
        agent.control_socket.is_absolute(),
        "agent.control_socket",
        "{} is not an absolute path",
        agent.control_socket.display()
    );
    for (i, window) in agent.maintenance.windows.iter().enumerate() {
        let key = |k: &str| format!("agent.maintenance.windows[{i}].{k}");
        if let Some(d) = window.duration {
            ensure!(!d.is_zero(), key("duration"), "must be longer than 0");
        }
        match window.start {
            WindowStart::At(start) => {
                ensure!(
                    window.days.is_empty(),
                    key("days"),
                    "only a recurring window (start: \"HH:MM\") has days"
                );
                ensure!(
                    window.end.is_some() != window.duration.is_some(),
                    key("end"),
                    "a one-off window needs end or duration (one of them)"
                );
                if let Some(end) = window.end {
                    ensure!(end > start, key("end"), "must be after start");
                }
            }
            WindowStart::Daily { .. } => {
                ensure!(
                    window.end.is_none(),
                    key("end"),
                    "a recurring window (start: \"HH:MM\") takes duration, not end"
                );
                let week = Duration::from_secs(7 * 86_400);
                match window.duration {
                    None => ensure!(
                        false,
                        key("duration"),
                        "required for a recurring window (start: \"HH:MM\")"
                    ),
                    Some(d) => ensure!(d <= week, key("duration"), "{d:?} is longer than a week"),
                }
            }
        }
    }
    Ok(())
}

fn validate_predictive(p: &super::PredictiveConfig) -> Result<(), ConfigError> {
    let key = |k: &str| format!("agent.predictive.{k}");
    for (name, threshold, bleed) in [
        ("cpu", p.cpu.threshold, p.cpu.bleed_duration),
        ("memory", p.memory.threshold, p.memory.bleed_duration),
        (
            "error_rate",
            p.error_rate.threshold,
            p.error_rate.bleed_duration,
        ),
    ] {
        ensure!(
            threshold > 0.0 && threshold <= 100.0,
            key(&format!("{name}.threshold")),
            "{threshold} is outside (0, 100] (a percentage)"
        );
        ensure!(
            !bleed.is_zero(),
            key(&format!("{name}.bleed_duration")),
            "must be longer than 0"
        );
    }
    check_min(&key("error_rate.window"), p.error_rate.window, MIN_INTERVAL)?;
    check_min(&key("check_interval"), p.check_interval, MIN_INTERVAL)?;
    Ok(())
}

fn validate_latency_learning(ll: &super::LatencyLearningConfig) -> Result<(), ConfigError> {
    let key = |k: &str| format!("agent.latency_learning.{k}");
    check_min(&key("poll_interval"), ll.poll_interval, MIN_INTERVAL)?;
    check_min(&key("report_interval"), ll.report_interval, MIN_INTERVAL)?;
    check_min(&key("subnet_ttl"), ll.subnet_ttl, MIN_INTERVAL)?;
    ensure!(
        (1..=32).contains(&ll.ipv4_prefix),
        key("ipv4_prefix"),
        "must be between 1 and 32"
    );
    ensure!(
        (1..=128).contains(&ll.ipv6_prefix),
        key("ipv6_prefix"),
        "must be between 1 and 128"
    );
    let alpha = ll.ewma_alpha;
    ensure!(
        alpha > 0.0 && alpha <= 1.0,
        key("ewma_alpha"),
        "{alpha} is outside (0, 1]"
    );
    ensure!(
        ll.max_subnets >= 1,
        key("max_subnets"),
        "must be at least 1"
    );
    ensure!(
        ll.min_samples >= 1,
        key("min_samples"),
        "must be at least 1"
    );
    Ok(())
}
