//! The `regions` list: groups of static backend servers, with the health check that validates them.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::name::DnsName;
use serde::Deserialize;
use serde::de::{Deserializer, Error as _, SeqAccess, Visitor};

use super::de;

/// One entry of `regions`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// The region's name, unique; domains refer to it in their `regions`. Required.
    pub name: String,
    /// The static backend servers of this region. Default: none (agents may still report backends).
    #[serde(default, deserialize_with = "de::nullable")]
    pub servers: Vec<Server>,
    /// How the overwatch validates this region's servers. Default: see [`HealthCheck`].
    #[serde(default, deserialize_with = "de::nullable")]
    pub health_check: HealthCheck,
    /// ISO 3166-1 alpha-2 country codes this region serves, for `geolocation` routing; two letters each,
    /// uppercased on load. Default: none.
    #[serde(default, deserialize_with = "de::nullable")]
    pub countries: Vec<String>,
    /// Continent codes (AF, AN, AS, EU, NA, OC, SA) this region serves, for `geolocation` routing;
    /// uppercased on load. Default: none.
    #[serde(default, deserialize_with = "de::nullable")]
    pub continents: Vec<String>,
}

/// One entry of `regions[].servers`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// The address DNS answers carry and health checks probe, IPv4 or IPv6. Required.
    #[serde(deserialize_with = "de::ip")]
    pub address: IpAddr,
    /// The port health checks probe, 1..=65535. Default 80.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Relative share of answers under `weighted` routing, 0..=1000 (the original's docs give 1..=1000; its
    /// code bounds nothing); 0 takes the server out of weighted answers, as the original's docs say (its
    /// code counted 0 as 1). Default 100.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// The domain this server serves (a name under `domains`). Required.
    pub service: DnsName,
    /// Host header (and TLS server name for `https`) of this server's health checks, overriding
    /// `health_check.host`. Default: none.
    #[serde(default)]
    pub host: Option<String>,
}

fn default_port() -> u16 {
    80
}

fn default_weight() -> u32 {
    100
}

/// The `health_check` block of a region, and of an agent's backend (`agent.backends[].health_check`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// The probe: `http`, `https` or `tcp` (connect only). Default `http`.
    #[serde(rename = "type", default)]
    pub kind: HealthCheckType,
    /// Request path of `http`/`https` probes; must start with `/`. Default `/health`.
    #[serde(default = "default_path")]
    pub path: String,
    /// Host header (and TLS server name for `https`) of the probes. Default: none (the server's address).
    #[serde(default)]
    pub host: Option<String>,
    /// Time between probes, at least 1s. Default 30s.
    #[serde(default = "default_interval", deserialize_with = "de::duration")]
    pub interval: Duration,
    /// Time one probe may take, at least 100ms and less than `interval`. Default 5s.
    #[serde(default = "default_timeout", deserialize_with = "de::duration")]
    pub timeout: Duration,
    /// Consecutive failures that mark a healthy server down, at least 1. Default 3.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// Consecutive successes that mark a down server healthy again, at least 1. Default 2.
    #[serde(default = "default_success_threshold")]
    pub success_threshold: u32,
    /// The HTTP statuses that pass an `http`/`https` probe (ours; the original passes 2xx only): a code
    /// (`200`), a class (`"2xx"`) or a list of them (`[200, "3xx"]`). Redirects are never followed. Default
    /// `"2xx"`.
    #[serde(default)]
    pub expected_status: ExpectedStatus,
    /// Verify the server's certificate in `https` probes, against `host` when set (ours; the original
    /// always verifies). Default true.
    #[serde(default = "default_tls_verify")]
    pub tls_verify: bool,
}

/// Documented defaults, the same ones serde applies to missing keys (those of the original).
impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            kind: HealthCheckType::default(),
            path: default_path(),
            host: None,
            interval: default_interval(),
            timeout: default_timeout(),
            failure_threshold: default_failure_threshold(),
            success_threshold: default_success_threshold(),
            expected_status: ExpectedStatus::default(),
            tls_verify: default_tls_verify(),
        }
    }
}

fn default_tls_verify() -> bool {
    true
}

fn default_path() -> String {
    "/health".to_owned()
}

fn default_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_failure_threshold() -> u32 {
    3
}

fn default_success_threshold() -> u32 {
    2
}

/// The kind of probe a health check sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HealthCheckType {
    /// `GET http://address:port/path`; only a 2xx status passes.
    #[default]
    Http,
    /// As `Http`, over TLS with the certificate verified.
    Https,
    /// A TCP connect, closed at once.
    Tcp,
}

impl std::str::FromStr for HealthCheckType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "http" => Ok(Self::Http),
            "https" => Ok(Self::Https),
            "tcp" => Ok(Self::Tcp),
            _ => Err(format!(
                "unknown health check type {s:?} (expected one of http, https, tcp)"
            )),
        }
    }
}

impl HealthCheckType {
    /// The name, as written in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::Tcp => "tcp",
        }
    }
}

impl fmt::Display for HealthCheckType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

de::deserialize_from_str!(HealthCheckType, "a health check type: http, https or tcp");

/// The HTTP statuses an `http`/`https` health check accepts: a union of inclusive ranges of codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedStatus(Vec<(u16, u16)>);

impl ExpectedStatus {
    /// Whether `status` passes.
    pub fn matches(&self, status: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
    }

    /// The accepted ranges of codes, inclusive, in config order.
    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.0
    }
}

/// 2xx, as in the original.
impl Default for ExpectedStatus {
    fn default() -> Self {
        Self(vec![(200, 299)])
    }
}

impl fmt::Display for ExpectedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(lo, hi)) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            if lo % 100 == 0 && hi == lo + 99 {
                write!(f, "{sep}{}xx", lo / 100)?;
            } else {
                write!(f, "{sep}{lo}")?;
            }
        }
        Ok(())
    }
}

/// One code (`204`, `"204"`) or class (`"2xx"`) as an inclusive range.
fn status_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || {
        format!(
            "invalid HTTP status {text:?} (expected a code from 100 to 599 such as 200, or a class such as \"2xx\")"
        )
    };
    let lower = text.to_ascii_lowercase();
    if let Some(class) = lower.strip_suffix("xx") {
        return match class.parse::<u16>() {
            Ok(c @ 1..=5) if class.len() == 1 => Ok((c * 100, c * 100 + 99)),
            _ => Err(bad()),
        };
    }
    match lower.parse::<u16>() {
        Ok(code @ 100..=599) => Ok((code, code)),
        _ => Err(bad()),
    }
}

/// Reads a code, a class or a list of them, converting inside the visitor so errors name the key.
struct StatusVisitor;

impl<'de> Visitor<'de> for StatusVisitor {
    type Value = ExpectedStatus;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an HTTP status such as 200 or \"2xx\", or a list of them")
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ExpectedStatus, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ExpectedStatus, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ExpectedStatus, E> {
        status_range(v)
            .map(|r| ExpectedStatus(vec![r]))
            .map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ExpectedStatus, A::Error> {
        let mut ranges = Vec::new();
        while let Some(ExpectedStatus(r)) = seq.next_element::<ExpectedStatus>()? {
            ranges.extend(r);
        }
        if ranges.is_empty() {
            return Err(A::Error::custom(
                "the list of expected statuses must not be empty",
            ));
        }
        Ok(ExpectedStatus(ranges))
    }
}

impl<'de> Deserialize<'de> for ExpectedStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StatusVisitor)
    }
}
