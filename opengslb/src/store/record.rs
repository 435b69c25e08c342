//! The records the store holds, one kind per table, and their keys. They are the stored format, a
//! contract with other versions (and other overwatches sharing a store), so they are types of their own
//! rather than the config's: the config may change its YAML without changing what is on disk.

use std::{fmt, net::IpAddr, str::FromStr, time::Duration};

use ipnet::IpNet;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{Event, Table, codec, codec::DecodeError};
use crate::{
    config::{
        AllDownPolicy, CustomMapping, Domain, DomainLatencyConfig, ExpectedStatus, HealthCheck,
        HealthCheckType, Region, RoutingAlgorithm,
    },
    name::DnsName,
};

/// A kind of record: its table, its key, and how the key is written.
pub trait Kind: sealed::Sealed {
    /// What identifies a record.
    type Key;
    /// The record.
    type Value: Serialize + DeserializeOwned;
    /// Where records of this kind are.
    const TABLE: Table;
    /// A record's key, which is part of it.
    fn key_of(value: &Self::Value) -> Self::Key;
    /// The key as the backend holds it.
    fn encode_key(key: &Self::Key) -> String;
}

mod sealed {
    pub trait Sealed {}
}

/// A backend, as the store names it: the service, the address (IPv4-mapped IPv6 as IPv4) and the port.
/// Written `service/address/port`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BackendId {
    /// The domain the backend serves.
    pub service: DnsName,
    /// Its address.
    pub address: IpAddr,
    /// Its port.
    pub port: u16,
}

impl BackendId {
    /// The id in canonical form, as the registry keys backends.
    pub fn new(service: DnsName, address: IpAddr, port: u16) -> Self {
        Self {
            service,
            address: address.to_canonical(),
            port,
        }
    }
}

impl fmt::Display for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.service, self.address, self.port)
    }
}

impl FromStr for BackendId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not service/address/port");
        let (service, rest) = s.split_once('/').ok_or_else(bad)?;
        let (address, port) = rest.rsplit_once('/').ok_or_else(bad)?;
        Ok(Self::new(
            service.parse().map_err(|_| bad())?,
            address.parse().map_err(|_| bad())?,
            port.parse().map_err(|_| bad())?,
        ))
    }
}

/// An operator's override of a backend's status (the registry's `set_override`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverrideRecord {
    /// The backend.
    pub backend: BackendId,
    /// In (`true`) or out (`false`) of DNS.
    pub healthy: bool,
    /// Why, as the operator wrote it.
    pub reason: String,
    /// Who set it (the API's `X-User`).
    pub by: String,
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
}

/// A domain made through the API: the config's `domains[]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DomainRecord {
    /// The name answered for.
    pub name: DnsName,
    /// How answers pick among healthy backends.
    #[serde(with = "text")]
    pub routing_algorithm: RoutingAlgorithm,
    /// The regions whose servers back it.
    pub regions: Vec<String>,
    /// Answer TTL; `None`: `dns.default_ttl`.
    pub ttl: Option<u32>,
    /// Records per answer.
    pub max_answers: u8,
    /// When every backend is out; `None`: the config's default.
    #[serde(with = "text_opt")]
    pub all_down: Option<AllDownPolicy>,
    /// Latency routing tuning over the top-level values.
    pub latency_config: LatencyRecord,
    /// `slow_start` in milliseconds; `None` (and records written before it existed): off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start_ms: Option<u64>,
}

/// A domain's `latency_config`.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct LatencyRecord {
    /// As the config's.
    pub smoothing_factor: Option<f64>,
    /// As the config's.
    pub max_latency_ms: Option<u32>,
    /// As the config's.
    pub min_samples: Option<u32>,
}

impl DomainRecord {
    /// The record of a config domain.
    pub fn from_config(d: &Domain) -> Self {
        let l = d.latency_config;
        Self {
            name: d.name.clone(),
            routing_algorithm: d.routing_algorithm,
            regions: d.regions.clone(),
            ttl: d.ttl,
            max_answers: d.max_answers,
            all_down: d.all_down,
            latency_config: LatencyRecord {
                smoothing_factor: l.smoothing_factor,
                max_latency_ms: l.max_latency_ms,
                min_samples: l.min_samples,
            },
            slow_start_ms: d
                .slow_start
                .map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// The config domain it describes.
    pub fn to_config(&self) -> Domain {
        let l = self.latency_config;
        Domain {
            name: self.name.clone(),
            routing_algorithm: self.routing_algorithm,
            regions: self.regions.clone(),
            ttl: self.ttl,
            max_answers: self.max_answers,
            all_down: self.all_down,
            latency_config: DomainLatencyConfig {
                smoothing_factor: l.smoothing_factor,
                max_latency_ms: l.max_latency_ms,
                min_samples: l.min_samples,
            },
            slow_start: self.slow_start_ms.map(Duration::from_millis),
        }
    }
}

/// A server made through the API: a backend with its weight and region (the registry's
/// `add_api_backend`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRecord {
    /// The backend: service, address, port.
    pub backend: BackendId,
    /// Relative share under `weighted` routing.
    pub weight: u32,
    /// The region it is in; empty when none.
    pub region: String,
}

/// A region made through the API: the config's `regions[]` entry without its servers, which are
/// [`ServerRecord`]s naming it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionRecord {
    /// The region's name.
    pub name: String,
    /// How its servers are validated.
    pub health_check: HealthCheckRecord,
    /// ISO country codes it serves.
    pub countries: Vec<String>,
    /// Continent codes it serves.
    pub continents: Vec<String>,
}

/// A region's `health_check`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheckRecord {
    /// `http`, `https` or `tcp`.
    #[serde(with = "text")]
    pub kind: HealthCheckType,
    /// Request path.
    pub path: String,
    /// Host header and TLS name.
    pub host: Option<String>,
    /// Time between probes, in ms.
    pub interval_ms: u64,
    /// Time a probe may take, in ms.
    pub timeout_ms: u64,
    /// Failures that take a server out.
    pub failure_threshold: u32,
    /// Successes that bring it back.
    pub success_threshold: u32,
    /// Statuses that pass, each a code (`"204"`) or a class (`"2xx"`).
    pub expected_status: Vec<String>,
    /// Verify certificates.
    pub tls_verify: bool,
}

impl RegionRecord {
    /// The record of a config region (its servers are left out).
    pub fn from_config(r: &Region) -> Self {
        let h = &r.health_check;
        Self {
            name: r.name.clone(),
            health_check: HealthCheckRecord {
                kind: h.kind,
                path: h.path.clone(),
                host: h.host.clone(),
                interval_ms: millis(h.interval),
                timeout_ms: millis(h.timeout),
                failure_threshold: h.failure_threshold,
                success_threshold: h.success_threshold,
                expected_status: h
                    .expected_status
                    .ranges()
                    .iter()
                    .map(|&(lo, hi)| {
                        if lo == hi {
                            lo.to_string()
                        } else {
                            format!("{}xx", lo / 100)
                        }
                    })
                    .collect(),
                tls_verify: h.tls_verify,
            },
            countries: r.countries.clone(),
            continents: r.continents.clone(),
        }
    }

    /// The config region it describes, without servers; fails on an expected status that is neither a
    /// code nor a class.
    pub fn to_config(&self) -> Result<Region, String> {
        let h = &self.health_check;
        let statuses = serde::de::value::SeqDeserializer::<_, serde::de::value::Error>::new(
            h.expected_status.iter().map(String::as_str),
        );
        let expected_status = ExpectedStatus::deserialize(statuses).map_err(|e| e.to_string())?;
        Ok(Region {
            name: self.name.clone(),
            servers: Vec::new(),
            health_check: HealthCheck {
                kind: h.kind,
                path: h.path.clone(),
                host: h.host.clone(),
                interval: Duration::from_millis(h.interval_ms),
                timeout: Duration::from_millis(h.timeout_ms),
                failure_threshold: h.failure_threshold,
                success_threshold: h.success_threshold,
                expected_status,
                tls_verify: h.tls_verify,
            },
            countries: self.countries.clone(),
            continents: self.continents.clone(),
        })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A custom geolocation mapping made through the API: `custom_mappings[]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeoMappingRecord {
    /// The client range.
    #[serde(with = "text")]
    pub cidr: IpNet,
    /// The region its clients go to.
    pub region: String,
    /// A note for people.
    pub comment: Option<String>,
}

impl GeoMappingRecord {
    /// The record of a config mapping.
    pub fn from_config(m: &CustomMapping) -> Self {
        Self {
            cidr: m.cidr,
            region: m.region.clone(),
            comment: m.comment.clone(),
        }
    }

    /// The config mapping it describes.
    pub fn to_config(&self) -> CustomMapping {
        CustomMapping {
            cidr: self.cidr.trunc(),
            region: self.region.clone(),
            comment: self.comment.clone(),
        }
    }
}

/// A trust-on-first-use pin: the SHA-256 of the first token seen for a service, never the token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinRecord {
    /// The service.
    pub service: DnsName,
    /// The token's digest, as hex in the record.
    #[serde(with = "hex32")]
    pub digest: [u8; 32],
}

macro_rules! kinds {
    ($($(#[$doc:meta])* $kind:ident: $key:ty => $value:ident, $table:ident, |$v:ident| $key_of:expr, |$k:ident| $encode:expr;)*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy)]
            pub enum $kind {}

            impl sealed::Sealed for $kind {}

            impl Kind for $kind {
                type Key = $key;
                type Value = $value;
                const TABLE: Table = Table::$table;

                fn key_of($v: &$value) -> $key {
                    $key_of
                }

                fn encode_key($k: &$key) -> String {
                    $encode
                }
            }
        )*

        /// Any record, as a change carries it.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Record {
            $(
                #[doc = concat!("A [`", stringify!($value), "`].")]
                $kind($value),
            )*
        }

        /// Any record's key, as a deletion carries it.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Key {
            $(
                #[doc = concat!("The key of a [`", stringify!($value), "`].")]
                $kind($key),
            )*
        }

        /// The event of a raw change: `value` decoded, or the key parsed for a deletion.
        pub(super) fn event(
            table: Table,
            key: &str,
            value: Option<&[u8]>,
        ) -> Result<Event, DecodeError> {
            match (table, value) {
                $(
                    (Table::$table, Some(bytes)) => {
                        Ok(Event::Put(Record::$kind(codec::decode(bytes)?)))
                    }
                    (Table::$table, None) => key
                        .parse()
                        .map(|k| Event::Delete(Key::$kind(k)))
                        .map_err(|e| DecodeError::Corrupt(format!("bad key: {e}"))),
                )*
            }
        }
    };
}

kinds! {
    /// Overrides, by backend.
    Overrides: BackendId => OverrideRecord, Overrides, |v| v.backend.clone(), |k| k.to_string();
    /// Domains, by name.
    Domains: DnsName => DomainRecord, Domains, |v| v.name.clone(), |k| k.to_string();
    /// Servers, by backend.
    Servers: BackendId => ServerRecord, Servers, |v| v.backend.clone(), |k| k.to_string();
    /// Regions, by name.
    Regions: String => RegionRecord, Regions, |v| v.name.clone(), |k| k.clone();
    /// Custom geolocation mappings, by CIDR (host bits cleared).
    GeoMappings: IpNet => GeoMappingRecord, GeoMappings, |v| v.cidr.trunc(), |k| k.trunc().to_string();
    /// Token pins, by service.
    Pins: DnsName => PinRecord, Pins, |v| v.service.clone(), |k| k.to_string();
}

/// A field held as its text form (`Display` and `FromStr`).
mod text {
    use std::{fmt::Display, str::FromStr};

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr<Err: Display>,
        D: Deserializer<'de>,
    {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// As [`text`], for an optional field.
mod text_opt {
    use std::{fmt::Display, str::FromStr};

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr<Err: Display>,
        D: Deserializer<'de>,
    {
        Option::<String>::deserialize(d)?
            .map(|s| s.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// 32 bytes as 64 hex digits.
mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::to_hex(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        super::from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// 32 bytes as 64 lowercase hex digits.
pub fn to_hex(d: &[u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 hex digits as 32 bytes.
pub fn from_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
