//! The `regions` list: groups of static backend servers, with the health check that validates them.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

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
    /// ISO 3166-1 alpha-2 country codes this region serves, for `geolocation` routing. Default: none.
    #[serde(default, deserialize_with = "de::nullable")]
    pub countries: Vec<String>,
    /// Continent codes (AF, AN, AS, EU, NA, OC, SA) this region serves, for `geolocation` routing. Default:
    /// none.
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
    /// Relative share of answers under `weighted` routing; 0 takes the server out of weighted answers.
    /// Default 100.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// The domain this server serves (a name under `domains`); lowercased, without a trailing dot. Required.
    pub service: String,
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

/// The `health_check` block of a region.
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
        }
    }
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

de::deserialize_from_str!(HealthCheckType, "a health check type: http, https or tcp");
