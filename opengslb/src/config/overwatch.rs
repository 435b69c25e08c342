//! The `overwatch` section: the node's identity, the gossip receiver, external validation, stale agents,
//! DNSSEC (refused when enabled: we do not sign), geolocation, the data directory and the agents' tokens.
//!
//! Defaults are the original's code defaults (`pkg/config/config.go`) unless `docs/config.md` says otherwise; where
//! the original's docs and code disagree, each field says which one we took.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::name::DnsName;
use ipnet::IpNet;
use serde::Deserialize;

use super::de;
use super::secret::{GossipKey, Secret};

/// The `overwatch` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverwatchConfig {
    /// Who this overwatch node is. Default: see [`OverwatchIdentity`].
    #[serde(default, deserialize_with = "de::nullable")]
    pub identity: OverwatchIdentity,
    /// The tokens agents must present, per service (a domain name): `service: token` or
    /// `service: [token, ...]` (a list is ours, for rotation); each token at least 16 characters. Without
    /// it, the first token seen for a service is pinned in `data_dir` (trust on first use). Service names
    /// are lowercased, without a trailing dot. Default: none.
    #[serde(default, deserialize_with = "agent_tokens")]
    pub agent_tokens: BTreeMap<DnsName, Vec<Secret>>,
    /// The gossip receiver. Default: see [`OverwatchGossip`].
    #[serde(default, deserialize_with = "de::nullable")]
    pub gossip: OverwatchGossip,
    /// External validation of backends by this node. Default: see [`ValidationConfig`].
    #[serde(default, deserialize_with = "de::nullable")]
    pub validation: ValidationConfig,
    /// When a silent agent's backends go stale and are removed. Default: see [`StaleConfig`].
    #[serde(default, deserialize_with = "de::nullable")]
    pub stale: StaleConfig,
    /// DNSSEC signing, which we do not implement. Default: see [`DnssecConfig`].
    #[serde(default, deserialize_with = "de::nullable")]
    pub dnssec: DnssecConfig,
    /// Geolocation routing data, where the original's code reads it (its docs write it at the top level,
    /// which we accept too, but not both). Default: none.
    #[serde(default)]
    pub geolocation: Option<GeolocationConfig>,
    /// Directory for persistent state (overrides, pinned agent tokens). Must not be empty. Default
    /// `/var/lib/opengslb`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Where operators' changes are kept (ours): the embedded store in `data_dir`, or an etcd cluster
    /// shared by several overwatches. Default: embedded.
    #[serde(default, deserialize_with = "de::nullable")]
    pub store: StoreConfig,
}

/// The `overwatch.store` block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// An etcd cluster holding overrides, API-made objects and token pins for every overwatch that
    /// names it. Default: none (the embedded store in `data_dir`).
    #[serde(default)]
    pub etcd: Option<EtcdConfig>,
}

/// The `overwatch.store.etcd` block.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// The cluster's client URLs (`http://host:2379`, `https://...` with `tls`), at least one.
    pub endpoints: Vec<String>,
    /// The prefix of every key, so several deployments can share a cluster. Default `/opengslb/`.
    #[serde(default = "default_etcd_prefix")]
    pub prefix: String,
    /// How long connecting to an endpoint may take. Default 2s.
    #[serde(default = "default_etcd_timeout", deserialize_with = "de::duration")]
    pub dial_timeout: Duration,
    /// How long one request (a write, a health check) may take before etcd counts as unreachable.
    /// Default 2s.
    #[serde(default = "default_etcd_timeout", deserialize_with = "de::duration")]
    pub request_timeout: Duration,
    /// The etcd user, with `password`. Default: none (no authentication).
    #[serde(default)]
    pub username: Option<String>,
    /// The etcd user's password. Default: none.
    #[serde(default)]
    pub password: Option<Secret>,
    /// TLS to the cluster. Default: none (plain HTTP/2).
    #[serde(default)]
    pub tls: Option<EtcdTls>,
}

/// The `overwatch.store.etcd.tls` block.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdTls {
    /// The CA that signed the members' certificates (PEM). Default: none (the system's roots are not
    /// read: name the CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM), with `key_file`, for clusters that ask for one. Default: none.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM). Default: none.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The name the members' certificates must carry, when it is not the endpoint's host. Default:
    /// the endpoint's host.
    #[serde(default)]
    pub server_name: Option<String>,
}

fn default_etcd_prefix() -> String {
    "/opengslb/".to_owned()
}

fn default_etcd_timeout() -> Duration {
    Duration::from_secs(2)
}

/// Documented defaults, the same ones serde applies to missing keys.
impl Default for OverwatchConfig {
    fn default() -> Self {
        Self {
            identity: OverwatchIdentity::default(),
            agent_tokens: BTreeMap::new(),
            gossip: OverwatchGossip::default(),
            validation: ValidationConfig::default(),
            stale: StaleConfig::default(),
            dnssec: DnssecConfig::default(),
            geolocation: None,
            data_dir: default_data_dir(),
            store: StoreConfig::default(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/opengslb")
}

/// Reads `agent_tokens`: a mapping of service to one token or a list of tokens. Two spellings of one
/// name (`App.example.com`, `app.example.com.`) are one service with both lists.
pub(super) fn agent_tokens<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<DnsName, Vec<Secret>>, D::Error> {
    #[derive(Deserialize)]
    struct Tokens(#[serde(deserialize_with = "de::one_or_many")] Vec<Secret>);
    struct Services;
    impl<'de> serde::de::Visitor<'de> for Services {
        type Value = BTreeMap<DnsName, Vec<Secret>>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a mapping of service names to tokens")
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out: BTreeMap<DnsName, Vec<Secret>> = BTreeMap::new();
            while let Some((service, tokens)) = map.next_entry::<DnsName, Tokens>()? {
                out.entry(service).or_default().extend(tokens.0);
            }
            Ok(out)
        }
    }
    d.deserialize_any(Services)
}

/// The `overwatch.identity` block.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverwatchIdentity {
    /// This node's name in gossip and the API. Default: none, meaning the host name.
    #[serde(default)]
    pub node_id: Option<String>,
    /// The region this node serves from, shown by `/api/v1/cluster/status` (the original put it in its
    /// gossip metadata, which nothing read). Default: none.
    #[serde(default)]
    pub region: Option<String>,
}

/// The `overwatch.gossip` block: where agents' reports arrive and how they are opened.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverwatchGossip {
    /// `IP:port` to listen on for gossip and reports (UDP); `:7946` means `0.0.0.0:7946`. Default
    /// `0.0.0.0:7946`.
    #[serde(
        default = "default_bind_address",
        deserialize_with = "de::listen_address"
    )]
    pub bind_address: SocketAddr,
    /// The shared key that seals every datagram: base64 of exactly 32 bytes (`openssl rand -base64 32`).
    /// Without a key (here or in `encryption_keys`) gossip is off, as in the original. Default: none.
    #[serde(default)]
    pub encryption_key: Option<GossipKey>,
    /// A key ring for rotation (ours): the first key seals, every key opens. Set this or
    /// `encryption_key`, not both. Default: none.
    #[serde(default, deserialize_with = "de::nullable")]
    pub encryption_keys: Vec<GossipKey>,
    /// Time between failure-detector probes, at least 100ms. Default 1s.
    #[serde(default = "default_probe_interval", deserialize_with = "de::duration")]
    pub probe_interval: Duration,
    /// Time a probe may take, at least 10ms and less than `probe_interval`. Default 500ms.
    #[serde(default = "default_probe_timeout", deserialize_with = "de::duration")]
    pub probe_timeout: Duration,
    /// Time between gossip rounds, at least 10ms. Default 200ms.
    #[serde(default = "default_gossip_interval", deserialize_with = "de::duration")]
    pub gossip_interval: Duration,
}

impl OverwatchGossip {
    /// The keys in use: the first seals, all open. Empty when gossip is off.
    pub fn key_ring(&self) -> &[GossipKey] {
        key_ring(self.encryption_key.as_ref(), &self.encryption_keys)
    }
}

/// `encryption_key` as a ring of one, or `encryption_keys`.
pub(super) fn key_ring<'a>(key: Option<&'a GossipKey>, keys: &'a [GossipKey]) -> &'a [GossipKey] {
    key.map_or(keys, std::slice::from_ref)
}

/// Documented defaults, the same ones serde applies to missing keys.
impl Default for OverwatchGossip {
    fn default() -> Self {
        Self {
            bind_address: default_bind_address(),
            encryption_key: None,
            encryption_keys: Vec::new(),
            probe_interval: default_probe_interval(),
            probe_timeout: default_probe_timeout(),
            gossip_interval: default_gossip_interval(),
        }
    }
}

fn default_bind_address() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7946))
}

fn default_probe_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_probe_timeout() -> Duration {
    Duration::from_millis(500)
}

fn default_gossip_interval() -> Duration {
    Duration::from_millis(200)
}

/// The `overwatch.validation` block: this node's own checks of the backends (the safety net of `docs/control-plane.md`'s
/// rule 4). How a static server is probed (path, host, expected status, thresholds) is its region's
/// `health_check`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationConfig {
    /// Run external validation. Default true: the original's docs say true and its code false, which left
    /// static backends never removed from DNS (original-opengslb.md §0.3); we follow the docs.
    #[serde(default = "default_validation_enabled")]
    pub enabled: bool,
    /// The longest time between two probes of a backend, at least 1s; a region's shorter
    /// `health_check.interval` applies to its servers. Default 30s.
    #[serde(default = "default_check_interval", deserialize_with = "de::duration")]
    pub check_interval: Duration,
    /// The longest time one probe may take, at least 100ms and less than `check_interval`; a region's
    /// shorter `health_check.timeout` applies to its servers. Default 5s.
    #[serde(default = "default_check_timeout", deserialize_with = "de::duration")]
    pub check_timeout: Duration,
}

/// Documented defaults, the same ones serde applies to missing keys.
impl Default for ValidationConfig {
    fn default() -> Self {
        Self {
            enabled: default_validation_enabled(),
            check_interval: default_check_interval(),
            check_timeout: default_check_timeout(),
        }
    }
}

fn default_validation_enabled() -> bool {
    true
}

fn default_check_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_check_timeout() -> Duration {
    Duration::from_secs(5)
}

/// The `overwatch.stale` block: what happens to the backends of an agent that stops reporting.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaleConfig {
    /// Silence after which an agent's backends are out (`stale`), at least 1s. Default 30s.
    #[serde(default = "default_stale_threshold", deserialize_with = "de::duration")]
    pub threshold: Duration,
    /// Silence after which an agent-only backend is removed from the registry; longer than `threshold`.
    /// Default 5m.
    #[serde(default = "default_remove_after", deserialize_with = "de::duration")]
    pub remove_after: Duration,
}

/// Documented defaults, the same ones serde applies to missing keys.
impl Default for StaleConfig {
    fn default() -> Self {
        Self {
            threshold: default_stale_threshold(),
            remove_after: default_remove_after(),
        }
    }
}

fn default_stale_threshold() -> Duration {
    Duration::from_secs(30)
}

fn default_remove_after() -> Duration {
    Duration::from_secs(300)
}

/// The `overwatch.dnssec` block. We do not sign (`docs/dns-behaviour.md`: DO=1 queries get unsigned answers), and neither
/// did the original, whose signer was never wired in. `enabled: true` is therefore refused at start-up,
/// rather than letting an operator believe the zones are signed; with nothing to sign, the other keys have
/// nothing to configure and are accepted silently.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnssecConfig {
    /// Sign the zones. Must be false: signing is not implemented. Default false (the original's code; its
    /// docs say true).
    #[serde(default)]
    pub enabled: bool,
    /// The text the original's `config validate` wants when DNSSEC is off. Accepted whatever it says (the
    /// original's server never checked it, and Demo 2's does not match). Default: none.
    #[serde(default)]
    pub security_acknowledgment: Option<String>,
    /// The signing algorithm. Default `ECDSAP256SHA256`.
    #[serde(default = "default_dnssec_algorithm")]
    pub algorithm: String,
    /// Key synchronisation between overwatch nodes. Default: see [`KeySyncConfig`].
    #[serde(default, deserialize_with = "de::nullable")]
    pub key_sync: KeySyncConfig,
}

/// Documented defaults, the same ones serde applies to missing keys.
impl Default for DnssecConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            security_acknowledgment: None,
            algorithm: default_dnssec_algorithm(),
            key_sync: KeySyncConfig::default(),
        }
    }
}

fn default_dnssec_algorithm() -> String {
    "ECDSAP256SHA256".to_owned()
}

/// The `overwatch.dnssec.key_sync` block (the original never used it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySyncConfig {
    /// API addresses of the other overwatch nodes. Default: none.
    #[serde(default, deserialize_with = "de::nullable")]
    pub peers: Vec<String>,
    /// Time between polls, at least 1s. Default 1h.
    #[serde(default = "default_poll_interval", deserialize_with = "de::duration")]
    pub poll_interval: Duration,
    /// Time one poll may take, less than `poll_interval`. Default 30s.
    #[serde(default = "default_sync_timeout", deserialize_with = "de::duration")]
    pub timeout: Duration,
}

/// Documented defaults, the same ones serde applies to missing keys.
impl Default for KeySyncConfig {
    fn default() -> Self {
        Self {
            peers: Vec::new(),
            poll_interval: default_poll_interval(),
            timeout: default_sync_timeout(),
        }
    }
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(3600)
}

fn default_sync_timeout() -> Duration {
    Duration::from_secs(30)
}

/// The geolocation block (`overwatch.geolocation`, or top-level `geolocation` as the original's docs write
/// it): how `geolocation` routing maps a client address to a region.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeolocationConfig {
    /// A MaxMind GeoIP2/GeoLite2 country database (`.mmdb`); must exist when set. Without it, only
    /// `custom_mappings` and `default_region` place clients. Default: none.
    #[serde(default)]
    pub database_path: Option<PathBuf>,
    /// The region of clients that nothing else places; must be a configured region. Default: none (such
    /// clients get any healthy backend).
    #[serde(default)]
    pub default_region: Option<String>,
    /// Place a query that carries an EDNS Client Subnet option (RFC 7871) by that subnet rather than by
    /// the resolver's address. `false`: the option is still parsed and echoed, with scope 0 (the answer
    /// holds for every client of the resolver), and the client is placed by the source address. Default
    /// true (the original's docs; its code said false).
    #[serde(default = "default_ecs_enabled")]
    pub ecs_enabled: bool,
    /// Address ranges placed in a region before the database is asked; the longest prefix wins.
    /// Default: none.
    #[serde(default, deserialize_with = "de::nullable")]
    pub custom_mappings: Vec<CustomMapping>,
}

/// Documented defaults, the same ones serde applies to missing keys.
impl Default for GeolocationConfig {
    fn default() -> Self {
        Self {
            database_path: None,
            default_region: None,
            ecs_enabled: default_ecs_enabled(),
            custom_mappings: Vec::new(),
        }
    }
}

fn default_ecs_enabled() -> bool {
    true
}

/// One entry of `custom_mappings`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomMapping {
    /// The client range, e.g. `10.0.0.0/8`; host bits are cleared. Required.
    #[serde(deserialize_with = "de::cidr")]
    pub cidr: IpNet,
    /// The region its clients go to; must be a configured region. Required.
    pub region: String,
    /// A note for people. Default: none.
    #[serde(default)]
    pub comment: Option<String>,
}
