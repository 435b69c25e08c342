//! The `domains` list: the names we answer for, and how each one picks among its backends.

use std::fmt;

use serde::Deserialize;

use super::de;

/// One entry of `domains`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    /// The name answered for, inside one of `dns.zones`; lowercased on load, without a trailing dot.
    /// Required.
    pub name: String,
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
    /// Latency routing tuning (`smoothing_factor`, `max_latency_ms`, `min_samples`): accepted, not acted on
    /// yet (the original ignored it too). Default: none.
    #[serde(default)]
    pub latency_config: Option<serde_norway::Value>,
}

fn default_max_answers() -> u8 {
    1
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
