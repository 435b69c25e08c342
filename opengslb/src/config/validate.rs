//! The rules a parsed config must follow; each failure names the key path it is about.
//!
//! Rules that a value's own syntax decides (IP literals, listen addresses, durations, enums, integer types)
//! are checked while parsing, in `de.rs` and by serde; the ones here bound values further or relate them to
//! each other.

use std::collections::HashSet;
use std::time::Duration;

use super::{Config, ConfigError, HealthCheckType, Mode};

/// The largest TTL a record may carry (RFC 2181 §8).
const MAX_TTL: u32 = (1 << 31) - 1;

/// The most records one answer may carry.
const MAX_ANSWERS: u8 = 16;

/// The longest interface name the kernel accepts (IFNAMSIZ less the NUL).
const MAX_IFNAME: usize = 15;

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
    ensure!(
        config.includes.is_none(),
        "includes",
        "not supported yet: merge the included files into this one"
    );
    validate_dns(config)?;
    // Names before references: domains refer to regions, and servers to domains.
    validate_region_names(config)?;
    validate_domains(config)?;
    validate_servers(config)
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
        check_dns_name(zone).map_err(|m| ConfigError::invalid(&path, m))?;
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
    for (i, ns) in dns.nameservers.iter().enumerate() {
        check_dns_name(ns).map_err(|m| ConfigError::invalid(format!("dns.nameservers[{i}]"), m))?;
    }
    for (key, value) in [
        ("primary_ns", &dns.soa.primary_ns),
        ("contact", &dns.soa.contact),
    ] {
        if let Some(name) = value {
            check_dns_name(name).map_err(|m| ConfigError::invalid(format!("dns.soa.{key}"), m))?;
        }
    }
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
        check_dns_name(name).map_err(|m| ConfigError::invalid(key("name"), m))?;
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
    }
    Ok(())
}

fn validate_servers(config: &Config) -> Result<(), ConfigError> {
    for (i, region) in config.regions.iter().enumerate() {
        for (j, server) in region.servers.iter().enumerate() {
            let key = |k: &str| format!("regions[{i}].servers[{j}].{k}");
            ensure!(server.port != 0, key("port"), "must be between 1 and 65535");
            let service = &server.service;
            check_dns_name(service).map_err(|m| ConfigError::invalid(key("service"), m))?;
            // A service no domain claims would never be answered: almost always a typo.
            ensure!(
                config.domains.iter().any(|d| &d.name == service),
                key("service"),
                "no domain {service:?} is configured (add it under domains)"
            );
        }
        let (hc, key) = (&region.health_check, |k: &str| {
            format!("regions[{i}].health_check.{k}")
        });
        let path_ok = hc.kind == HealthCheckType::Tcp || hc.path.starts_with('/');
        ensure!(path_ok, key("path"), "{:?} must start with '/'", hc.path);
        let (interval, timeout) = (hc.interval, hc.timeout);
        ensure!(
            interval >= Duration::from_secs(1),
            key("interval"),
            "{interval:?} is below the 1s minimum"
        );
        ensure!(
            timeout >= Duration::from_millis(100),
            key("timeout"),
            "{timeout:?} is below the 100ms minimum"
        );
        ensure!(
            timeout < interval,
            key("timeout"),
            "{timeout:?} must be shorter than interval ({interval:?})"
        );
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
    }
    Ok(())
}

/// Checks a DNS name in presentation form, already lowercased and without its trailing dot (RFC 1035
/// §2.3.4 lengths; letters, digits, '-' and '_' only, so an IDN must be written in its A-label form).
fn check_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.len() > 253 {
        return Err(format!("{name:?} is longer than 253 characters"));
    }
    for label in name.split('.') {
        let why = if label.is_empty() {
            "is empty"
        } else if label.len() > 63 {
            "is longer than 63 characters"
        } else if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            "may hold only letters, digits, '-' and '_'"
        } else if label.starts_with('-') || label.ends_with('-') {
            "must not start or end with '-'"
        } else {
            continue;
        };
        return Err(format!("{name:?}: label {label:?} {why}"));
    }
    Ok(())
}
