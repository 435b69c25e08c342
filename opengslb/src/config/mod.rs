//! Configuration: the original OpenGSLB's YAML format, parsed with serde and validated before use.
//!
//! [`Config::load`] parses **and** validates (the original never ran its validator at start-up). Every key
//! of the original's config is modelled by a typed struct; keys the original does not know either are
//! refused, so a typo is an error, and every error names the key path it is about, e.g.
//! `domains[0].routing_algorithm: unknown algorithm "foo" (...)`. Keys we accept but do not act on yet are
//! listed by [`Config::unused_sections`] (see `keys.rs`), so the binary can warn about them; a file's
//! `includes` are merged in by [`Config::load`] (see `includes.rs`).
//! [`Config::domain_records`] gives the ready-to-serve view of the static records.
//!
//! Defaults are the original's code defaults unless `docs/config.md` says otherwise; where the original's docs and
//! code disagree, the field's documentation says which one we took.

mod agent;
mod api;
mod de;
mod dns;
mod domain;
mod includes;
mod keys;
mod logging;
mod overwatch;
mod region;
mod secret;
mod selector;
#[cfg(test)]
mod tests;
mod validate;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::name::DnsName;
use serde::Deserialize;
use serde_norway::Value;

pub use agent::{
    AgentBackend, AgentConfig, AgentGossip, AgentIdentity, CpuThreshold, ErrorRateConfig,
    ErrorRateSource, HeartbeatConfig, LatencyLearningConfig, MAX_BACKENDS, MAX_MISSED,
    MIN_HEARTBEAT, MaintenanceConfig, MaintenanceWindow, MemoryThreshold, NodeAddress,
    PredictiveConfig, REPORT_INTERVAL, Weekday, WindowStart,
};
pub use api::ApiConfig;
pub use de::{parse_duration, parse_timestamp};
pub use dns::{DnsConfig, SoaConfig, WhenStale, XdpConfig, XdpMode};
pub use domain::{
    AllDownPolicy, Domain, DomainLatencyConfig, LatencyConfig, MAX_SLOW_START, MIN_SLOW_START,
    RoutingAlgorithm,
};
pub use logging::{LogFormat, LogLevel, LoggingConfig};
pub use overwatch::{
    CustomMapping, DnssecConfig, EtcdConfig, EtcdTls, GeolocationConfig, KeySyncConfig,
    OverwatchConfig, OverwatchGossip, OverwatchIdentity, StaleConfig, StoreConfig,
    ValidationConfig,
};
pub use region::{ExpectedStatus, HealthCheck, HealthCheckType, Region, Server};
pub use secret::{GOSSIP_KEY_LEN, GossipKey, Secret, check_file_mode};
// The agent reads scraped exposition text with the same scanner as the selectors.
pub(crate) use selector::Cursor;
pub use selector::{MetricSelector, SelectorError};

/// Where the bare `opengslb` and `opengslb agent` look for their config, as the original does.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/opengslb/config.yaml";

/// The config built into the binary: a demo zone served on 127.0.0.1 with documentation addresses.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("../../config/default.yaml");

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The role of this process: `overwatch` (authoritative DNS, registry, validation) or `agent` (health
    /// reports from beside the app). Default `overwatch`.
    #[serde(default)]
    pub mode: Mode,
    /// The authoritative DNS server. Default: see [`DnsConfig`].
    #[serde(default, deserialize_with = "de::nullable")]
    pub dns: DnsConfig,
    /// Static backend servers, grouped by region. Default: none.
    #[serde(default, deserialize_with = "de::nullable")]
    pub regions: Vec<Region>,
    /// The names answered for. Default: none.
    #[serde(default, deserialize_with = "de::nullable")]
    pub domains: Vec<Domain>,
    /// Overwatch settings. Default: see [`OverwatchConfig`].
    #[serde(default, deserialize_with = "de::nullable")]
    pub overwatch: OverwatchConfig,
    /// Agent settings. Default: see [`AgentConfig`].
    #[serde(default, deserialize_with = "de::nullable")]
    pub agent: AgentConfig,
    /// The overwatch's HTTP API. Default: see [`ApiConfig`].
    #[serde(default, deserialize_with = "de::nullable")]
    pub api: ApiConfig,
    /// Prometheus metrics. Default: see [`MetricsConfig`].
    #[serde(default, deserialize_with = "de::nullable")]
    pub metrics: MetricsConfig,
    /// Logging. Default: see [`LoggingConfig`].
    #[serde(default, deserialize_with = "de::nullable")]
    pub logging: LoggingConfig,
    /// Geolocation at the top level, where the original's docs write it (its code reads only
    /// `overwatch.geolocation`, and ignored this). Set one of the two; [`Config::geolocation`] gives
    /// whichever is set. Default: none.
    #[serde(default)]
    pub geolocation: Option<GeolocationConfig>,
    /// Latency routing tuning for every domain, where the original's docs write it (its code ignored it);
    /// a domain's own `latency_config` overrides it key by key ([`Config::latency_config_of`]). Default: see
    /// [`LatencyConfig`].
    #[serde(default, deserialize_with = "de::nullable")]
    pub latency_config: LatencyConfig,
    /// Other files merged into this one, each a path or glob pattern relative to this file's directory:
    /// their regions, domains, agent backends and geolocation mappings are appended, their agent tokens
    /// merged by service (see `includes.rs`). Only a config read from a file may have it. Default: none.
    #[serde(default, deserialize_with = "de::nullable")]
    pub includes: Vec<String>,
    /// The paths of the keys written in the file that are not acted on yet, filled by
    /// [`Config::from_yaml_str`].
    #[serde(skip)]
    unused: Vec<String>,
}

/// The `metrics` section: the Prometheus endpoint (`/metrics`, and `/health` answering `OK`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve metrics. Default false, as in the original.
    #[serde(default)]
    pub enabled: bool,
    /// `IP:port` to serve on; `:9090` means `0.0.0.0:9090`. Default `0.0.0.0:9090`.
    #[serde(
        default = "default_metrics_address",
        deserialize_with = "de::listen_address"
    )]
    pub address: std::net::SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            address: default_metrics_address(),
        }
    }
}

fn default_metrics_address() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([0, 0, 0, 0], 9090))
}

/// The role this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Authoritative DNS, backend registry and validation.
    #[default]
    Overwatch,
    /// Health checks and reports from beside the app.
    Agent,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "" | "overwatch" => Ok(Self::Overwatch),
            "agent" => Ok(Self::Agent),
            _ => Err(format!("unknown mode {s:?} (expected overwatch or agent)")),
        }
    }
}

de::deserialize_from_str!(Mode, "a mode: overwatch or agent");

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed, a value has the wrong type or syntax, or a key is unknown.
    #[error("{}{message}{}", key_prefix(.path), location_suffix(.message, *.line, *.column))]
    Parse {
        /// Key path of the offending value (`dns.listen_address`), or empty for the document itself.
        path: String,
        /// What is wrong.
        message: String,
        /// 1-based line in the file, when known.
        line: Option<usize>,
        /// 1-based column in the file, when known.
        column: Option<usize>,
    },
    /// The YAML parsed but a value breaks a rule.
    #[error("{path}: {message}")]
    Invalid {
        /// Key path of the offending value (`domains[0].ttl`).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A file named by `includes` is missing, unreadable, exposed, malformed, holds a key only the main
    /// file may set, or closes a cycle.
    #[error("includes: {}: {message}", .file.display())]
    Include {
        /// The included file (or the one that names it, for a bad entry).
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The file holds secrets and users other than its owner may read or write it
    /// ([`check_file_mode`]).
    #[error(
        "config {} {detail}: run `chmod 600 {}` (the user opengslb runs as must own it)",
        .path.display(),
        .path.display()
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// Which secrets it holds and who else may read or write it.
        detail: String,
    },
}

impl ConfigError {
    /// The key path the error is about, if any.
    pub fn key_path(&self) -> Option<&str> {
        match self {
            Self::Io { .. } | Self::Exposed { .. } => None,
            Self::Include { .. } => Some("includes"),
            Self::Parse { path, .. } | Self::Invalid { path, .. } => {
                Some(path.as_str()).filter(|p| !p.is_empty())
            }
        }
    }

    fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The key path from `serde_path_to_error` (which names an unknown key itself), the message from
    /// serde_norway's `path: message at line L column C`, with the name of a duplicate or missing key
    /// moved into the path (so that the path ends at that key), and type errors worded for config
    /// authors rather than Rust programmers.
    fn from_yaml(err: &serde_path_to_error::Error<serde_norway::Error>) -> Self {
        let mut path = err.path().to_string();
        if path == "." {
            path.clear();
        }
        let err = err.inner();
        let mut text = err.to_string();
        // serde_norway prints no position for errors at the document root (where it would say line 1),
        // and libyaml's syntax errors hold theirs inside the text: keep a position only where one is printed.
        let location = err.location().filter(|loc| {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            let at_end = text.ends_with(&suffix);
            if at_end {
                text.truncate(text.len() - suffix.len());
            }
            at_end || text.contains(" at line ")
        });
        // serde_norway starts the message with its own record of the path: the same, or for an unknown
        // key the mapping that holds it.
        let mut message = match text.split_once(": ") {
            Some((p, m)) if !p.is_empty() && path.starts_with(p) => m.to_owned(),
            _ => text,
        };
        let named_key = ["duplicate field `", "missing field `"]
            .iter()
            .find_map(|prefix| message.strip_prefix(prefix))
            .and_then(|m| m.split('`').next());
        if let Some(key) = named_key {
            path = if path.is_empty() {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            };
        }
        for (ty, range) in [
            ("u8", "0 to 255"),
            ("u16", "0 to 65535"),
            ("u32", "0 to 4294967295"),
        ] {
            message = message.replace(
                &format!("expected {ty}"),
                &format!("expected an integer from {range}"),
            );
        }
        if let Some(at) = message.find("expected struct ") {
            message.replace_range(at.., "expected a mapping of keys");
        }
        Self::Parse {
            path,
            message,
            line: location.as_ref().map(serde_norway::Location::line),
            column: location.as_ref().map(serde_norway::Location::column),
        }
    }
}

fn key_prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

fn location_suffix(message: &str, line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) if !message.contains(" at line ") => format!(" (line {l}, column {c})"),
        _ => String::new(),
    }
}

/// The static records of one domain, ready to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRecords {
    /// The name.
    pub name: DnsName,
    /// TTL of the answers, in seconds.
    pub ttl: u32,
    /// How many records one answer carries at most.
    pub max_answers: u8,
    /// How answers pick among the records.
    pub algorithm: RoutingAlgorithm,
    /// IPv4 addresses of the domain's servers, in config order, without duplicates.
    pub v4: Vec<Ipv4Addr>,
    /// IPv6 addresses of the domain's servers, in config order, without duplicates.
    pub v6: Vec<Ipv6Addr>,
    /// The configured zone the name lies in (the longest one that contains it); empty if none does
    /// (an agent's config needs no zones).
    pub zone: String,
    /// What to answer when every backend is out ([`Config::all_down_of`]).
    pub all_down: AllDownPolicy,
    /// How long a backend that comes back ramps up to its full share; `None`: at once.
    pub slow_start: Option<Duration>,
}

impl Config {
    /// Reads, parses and validates the config file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, Some(path))
    }

    /// Parses and validates a config from YAML text. Text has no directory to resolve `includes`
    /// against, so a config with includes must be read with [`Self::load`].
    pub fn from_yaml_str(yaml: &str) -> Result<Self, ConfigError> {
        Self::parse(yaml, None)
    }

    /// Parses `yaml`, read from `file` if it was, merges its includes, and validates the whole.
    fn parse(yaml: &str, file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config: Self =
            serde_path_to_error::deserialize(serde_norway::Deserializer::from_str(yaml))
                .map_err(|e| ConfigError::from_yaml(&e))?;
        // The typed parse succeeded, so the text is valid YAML.
        let mut unused = serde_norway::from_str::<Value>(yaml)
            .map(|doc| keys::unused_keys(&doc))
            .unwrap_or_default();
        if !config.includes.is_empty() {
            let Some(file) = file else {
                return Err(ConfigError::invalid(
                    "includes",
                    "only a config read from a file may include others (their paths are relative to it)",
                ));
            };
            includes::merge(&mut config, file, &mut unused)?;
        }
        config.normalize();
        validate::validate(&config)?;
        config.unused = unused;
        Ok(config)
    }

    /// Checks every rule [`Self::load`] checks after parsing: for a config assembled in code (the file's
    /// with the objects made through the API), which must follow the same rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::validate(self)
    }

    /// Where the bare `opengslb` and `opengslb agent` look for their config, as the original does.
    pub const DEFAULT_CONFIG_PATH: &str = "/etc/opengslb/config.yaml";

    /// The config built into the binary ([`DEFAULT_CONFIG_YAML`]), parsed and validated.
    pub fn embedded_default() -> Result<Self, ConfigError> {
        Self::from_yaml_str(DEFAULT_CONFIG_YAML)
    }

    /// The keys written in the file that are accepted but not acted on yet, for the binary to warn about:
    /// the deepest keys, by path, with `[]` for any list element, in file order, e.g.
    /// `["overwatch.stale.threshold", "agent.backends[].port", "domains[].latency_config.min_samples"]`.
    /// Which keys are acted on is the list in `config/keys.rs`, which shrinks as features are wired.
    pub fn unused_sections(&self) -> Vec<String> {
        self.unused.clone()
    }

    /// The geolocation settings: `overwatch.geolocation` or the top-level `geolocation`, whichever is set
    /// (validation refuses both).
    pub fn geolocation(&self) -> Option<&GeolocationConfig> {
        self.overwatch
            .geolocation
            .as_ref()
            .or(self.geolocation.as_ref())
    }

    /// The latency routing settings of `domain`: its own `latency_config` keys over the top-level ones.
    pub fn latency_config_of(&self, domain: &Domain) -> LatencyConfig {
        domain.latency_config.over(self.latency_config)
    }

    /// The all-down policy of `domain`: its own `all_down`, else `last_healthy` if
    /// `dns.return_last_healthy` is true, else `all`.
    pub fn all_down_of(&self, domain: &Domain) -> AllDownPolicy {
        domain.all_down.unwrap_or(if self.dns.return_last_healthy {
            AllDownPolicy::LastHealthy
        } else {
            AllDownPolicy::All
        })
    }

    /// The zone of `dns.zones` that contains `name` (lowercase, no trailing dot); the longest if several do.
    pub fn zone_of(&self, name: &DnsName) -> Option<&DnsName> {
        self.dns
            .zones
            .iter()
            .filter(|zone| name.is_within(zone))
            .max_by_key(|zone| zone.as_str().len())
    }

    /// For each domain, in config order: the addresses of the servers of its regions whose `service` is the
    /// domain's name, split by family, duplicates removed. IPv4-mapped IPv6 addresses count as IPv4.
    pub fn domain_records(&self) -> Vec<DomainRecords> {
        self.domains
            .iter()
            .map(|domain| {
                let mut records = DomainRecords {
                    name: domain.name.clone(),
                    ttl: domain.ttl.unwrap_or(self.dns.default_ttl),
                    max_answers: domain.max_answers,
                    algorithm: domain.routing_algorithm,
                    v4: Vec::new(),
                    v6: Vec::new(),
                    zone: self
                        .zone_of(&domain.name)
                        .map(DnsName::to_string)
                        .unwrap_or_default(),
                    all_down: self.all_down_of(domain),
                    slow_start: domain.slow_start,
                };
                let servers = domain
                    .regions
                    .iter()
                    .filter_map(|name| self.regions.iter().find(|r| &r.name == name))
                    .flat_map(|region| &region.servers)
                    .filter(|server| server.service == domain.name);
                for server in servers {
                    match server.address.to_canonical() {
                        IpAddr::V4(a) if !records.v4.contains(&a) => records.v4.push(a),
                        IpAddr::V6(a) if !records.v6.contains(&a) => records.v6.push(a),
                        _ => {}
                    }
                }
                records
            })
            .collect()
    }

    /// Uppercases country and continent codes, and gives an empty `api.allowed_networks` its meaning,
    /// loopback only. (DNS names are in their one form already: [`DnsName`].)
    fn normalize(&mut self) {
        for region in &mut self.regions {
            let codes = region.countries.iter_mut().chain(&mut region.continents);
            codes.for_each(|c| c.make_ascii_uppercase());
        }
        if self.api.allowed_networks.is_empty() {
            self.api.allowed_networks = api::default_allowed_networks();
        }
    }
}
