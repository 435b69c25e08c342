//! The `domains` list: the names we answer for, and how each one picks among its backends; and the
//! latency routing tuning (`latency_config`, top-level and per domain).

use std::{fmt, time::Duration};

use crate::name::DnsName;
use serde::Deserialize;

use super::de;

/// One entry of `domains`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    /// The name answered for, inside one of `dns.zones`. Required.
    pub name: DnsName,
    /// How answers pick among healthy backends (see [`RoutingAlgorithm`]). Default `round-robin`.
    #[serde(default)]
    pub routing_algorithm: RoutingAlgorithm,
    /// Names of the regions whose servers (those with `service` equal to this name) back this domain.
    /// Default: none (agents may still report backends).
    #[serde(default, deserialize_with = "de::nullable")]
    pub regions: Vec<String>,
    /// TTL in seconds of this domain's answers, at most 2^31-1. Default: `dns.default_ttl`.
    #[serde(default)]
    pub ttl: Option<u32>,
    /// How many A or AAAA records one answer carries, 1..=16 (ours; the original always gave one).
    /// Default 1.
    #[serde(default = "default_max_answers")]
    pub max_answers: u8,
    /// What to answer when every backend is out (ours; see [`AllDownPolicy`]). Default: `last_healthy` if
    /// `dns.return_last_healthy` is true, else `all`; [`Config::all_down_of`](super::Config::all_down_of)
    /// resolves it.
    #[serde(default)]
    pub all_down: Option<AllDownPolicy>,
    /// Latency routing tuning for this domain: each key set here overrides the top-level `latency_config`
    /// (the original parsed this block and ignored it). Default: none, i.e. the top-level values;
    /// [`Config::latency_config_of`](super::Config::latency_config_of) resolves it.
    #[serde(default, deserialize_with = "de::nullable")]
    pub latency_config: DomainLatencyConfig,
    /// How long a backend that comes back (recovered, drain off, override cleared) takes to reach its
    /// full share of `weighted` and `round-robin` answers, [`MIN_SLOW_START`]..=[`MAX_SLOW_START`]
    /// (ours; docs/control-plane.md, "Slow start"). Default: none, a backend takes its full share at once.
    #[serde(default, deserialize_with = "de::opt_duration")]
    pub slow_start: Option<Duration>,
}

/// The shortest `slow_start`: the overwatch re-renders a ramp at most once a second.
pub const MIN_SLOW_START: Duration = Duration::from_secs(1);
/// The longest `slow_start`: a backend kept off its share for longer is better left out.
pub const MAX_SLOW_START: Duration = Duration::from_secs(3600);

fn default_max_answers() -> u8 {
    1
}

/// What a domain answers when every one of its backends is out (`docs/control-plane.md`, "All down").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AllDownPolicy {
    /// `all`: every configured backend, so one bad signal cannot black-hole a service (gdnsd's way).
    #[default]
    All,
    /// `last_healthy` (also `last-healthy`): the last set that was healthy, the original's never-built
    /// "limp mode" (`dns.return_last_healthy: true`).
    LastHealthy,
    /// `empty`: NOERROR with no answer and the SOA (NODATA), negatively cached for `dns.soa.negative_ttl`.
    Empty,
}

impl AllDownPolicy {
    /// The canonical name, as written in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::LastHealthy => "last_healthy",
            Self::Empty => "empty",
        }
    }
}

impl fmt::Display for AllDownPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AllDownPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "all" => Ok(Self::All),
            "last_healthy" | "last-healthy" => Ok(Self::LastHealthy),
            "empty" => Ok(Self::Empty),
            _ => Err(format!(
                "unknown all-down policy {s:?} (expected one of all, last_healthy, empty)"
            )),
        }
    }
}

de::deserialize_from_str!(
    AllDownPolicy,
    "an all-down policy: all, last_healthy or empty"
);

/// The top-level `latency_config` block: how `latency` (and `learned-latency`) routing treats measured
/// latencies. The original documents this block at the top level and per domain, but its code ignores both
/// and hard-codes α 0.3, 500 ms and 1 sample (5 per subnet for learned latency, where the agents'
/// `latency_learning.min_samples` also applies); the defaults here are the `latency` values.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyConfig {
    /// Weight of a new sample in the moving average of a backend's latency, in (0, 1]; higher follows
    /// changes faster, lower is steadier. Default 0.3.
    #[serde(default = "default_smoothing_factor")]
    pub smoothing_factor: f64,
    /// Backends whose average latency is above this many milliseconds are skipped (unless all are), at least
    /// 1. Default 500.
    #[serde(default = "default_max_latency_ms")]
    pub max_latency_ms: u32,
    /// Samples a backend needs before its latency is used, at least 1. Default 1 (what the original's code
    /// does; its docs say 3).
    #[serde(default = "default_min_samples")]
    pub min_samples: u32,
}

/// Documented defaults, the same ones serde applies to missing keys.
impl Default for LatencyConfig {
    fn default() -> Self {
        Self {
            smoothing_factor: default_smoothing_factor(),
            max_latency_ms: default_max_latency_ms(),
            min_samples: default_min_samples(),
        }
    }
}

fn default_smoothing_factor() -> f64 {
    0.3
}

fn default_max_latency_ms() -> u32 {
    500
}

fn default_min_samples() -> u32 {
    1
}

/// A domain's `latency_config` block: the keys it sets override the top-level [`LatencyConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainLatencyConfig {
    /// As [`LatencyConfig::smoothing_factor`]. Default: the top-level value.
    #[serde(default)]
    pub smoothing_factor: Option<f64>,
    /// As [`LatencyConfig::max_latency_ms`]. Default: the top-level value.
    #[serde(default)]
    pub max_latency_ms: Option<u32>,
    /// As [`LatencyConfig::min_samples`]. Default: the top-level value.
    #[serde(default)]
    pub min_samples: Option<u32>,
}

impl DomainLatencyConfig {
    /// `base` with the keys this block sets replaced.
    pub fn over(&self, base: LatencyConfig) -> LatencyConfig {
        LatencyConfig {
            smoothing_factor: self.smoothing_factor.unwrap_or(base.smoothing_factor),
            max_latency_ms: self.max_latency_ms.unwrap_or(base.max_latency_ms),
            min_samples: self.min_samples.unwrap_or(base.min_samples),
        }
    }
}

/// A routing policy, in canonical form; the original's aliases map onto these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RoutingAlgorithm {
    /// `round-robin` (aliases `roundrobin`, `rr`): rotate through the healthy backends.
    #[default]
    RoundRobin,
    /// `weighted` (alias `weight`): pick in proportion to `weight`.
    Weighted,
    /// `failover` (aliases `active-standby`, `activestandby`): the first healthy backend in config order.
    Failover,
    /// `geolocation` (alias `geo`): backends of the region that serves the client's location.
    Geolocation,
    /// `latency`: the backend with the lowest measured probe latency.
    Latency,
    /// `learned-latency` (alias `learned_latency`): lowest latency as the agents observe it per client subnet.
    LearnedLatency,
}

impl RoutingAlgorithm {
    /// Every algorithm, in the order the docs list them.
    pub const ALL: [Self; 6] = [
        Self::RoundRobin,
        Self::Weighted,
        Self::Failover,
        Self::Geolocation,
        Self::Latency,
        Self::LearnedLatency,
    ];

    /// The canonical name, as written in config files and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round-robin",
            Self::Weighted => "weighted",
            Self::Failover => "failover",
            Self::Geolocation => "geolocation",
            Self::Latency => "latency",
            Self::LearnedLatency => "learned-latency",
        }
    }
}

impl fmt::Display for RoutingAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RoutingAlgorithm {
    type Err = String;

    /// Accepts the canonical names and the original's aliases, in any case; an empty string means the
    /// default, as in the original.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "" | "round-robin" | "roundrobin" | "rr" => Ok(Self::RoundRobin),
            "weighted" | "weight" => Ok(Self::Weighted),
            "failover" | "active-standby" | "activestandby" => Ok(Self::Failover),
            "geolocation" | "geo" => Ok(Self::Geolocation),
            "latency" => Ok(Self::Latency),
            "learned-latency" | "learned_latency" => Ok(Self::LearnedLatency),
            _ => {
                let names: Vec<&str> = Self::ALL.iter().map(|a| a.as_str()).collect();
                Err(format!(
                    "unknown algorithm {s:?} (expected one of {})",
                    names.join(", ")
                ))
            }
        }
    }
}

de::deserialize_from_str!(RoutingAlgorithm, "a routing algorithm such as round-robin");
