//! The `dns` section: where the authoritative server listens, its zones, TTLs, and our `xdp` block.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use crate::name::DnsName;
use serde::Deserialize;

use super::de;

/// The `dns` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Address the DNS server listens on (UDP and TCP), as `IP:port`; `:53` means `0.0.0.0:53` (as in the
    /// original), IPv6 is written `[::]:53`. Default `0.0.0.0:53`.
    #[serde(
        default = "default_listen_address",
        deserialize_with = "de::listen_address"
    )]
    pub listen_address: SocketAddr,
    /// The zones this server is authoritative for; every domain must lie inside one. Required in overwatch
    /// mode (the original parsed but ignored it). Lowercased, without a trailing dot. Default: none.
    #[serde(default, deserialize_with = "de::nullable")]
    pub zones: Vec<DnsName>,
    /// TTL in seconds of answers for domains that set no `ttl`, at most 2^31-1 (RFC 2181 §8). Default 60.
    #[serde(default = "default_ttl")]
    pub default_ttl: u32,
    /// When every backend of a name is down, answer with the last healthy set (the original's never-built
    /// "limp mode"; here it selects the `last_healthy` all-down policy). Default false.
    #[serde(default)]
    pub return_last_healthy: bool,
    /// The XDP fast path (ours; the original has none). Default: no interface, so no XDP.
    #[serde(default, deserialize_with = "de::nullable")]
    pub xdp: XdpConfig,
    /// The SOA record at each zone's apex (ours; the original serves none). Default: see [`SoaConfig`].
    #[serde(default, deserialize_with = "de::nullable")]
    pub soa: SoaConfig,
    /// The zones' name servers (NS records at the apex), as host names. Default: `ns1.<zone>`.
    #[serde(default, deserialize_with = "de::nullable")]
    pub nameservers: Vec<DnsName>,
    /// Response rate limiting per client prefix, on both paths (ours). Default: off.
    #[serde(default, deserialize_with = "de::nullable")]
    pub rate_limit: RateLimitConfig,
}

/// The `dns.rate_limit` block: how many UDP responses a second each client prefix gets, from the XDP
/// program and from the userspace server (each keeps its own buckets). TCP is never limited: its
/// source address cannot be spoofed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Responses per second to one client prefix; 0 turns limiting off. Default 0.
    #[serde(default)]
    pub responses_per_second: u32,
    /// How many responses may go back to back before the rate applies. Default: one second's worth
    /// (`responses_per_second`).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Every `slip`-th limited response is sent truncated (TC=1, no answers), so that a real client
    /// behind the prefix retries over TCP; 0 drops them all, 1 truncates them all. Default 2.
    #[serde(default = "default_slip")]
    pub slip: u32,
    /// The IPv4 prefix length that makes one client, 8..=32. Default 24.
    #[serde(default = "default_ipv4_prefix")]
    pub ipv4_prefix: u8,
    /// The IPv6 prefix length that makes one client, 32..=128. Default 56.
    #[serde(default = "default_ipv6_prefix")]
    pub ipv6_prefix: u8,
}

impl RateLimitConfig {
    /// The limits as both paths apply them.
    pub fn limit(&self) -> opengslb_common::ratelimit::RateLimit {
        opengslb_common::ratelimit::RateLimit::new(
            self.responses_per_second,
            self.burst.unwrap_or(self.responses_per_second),
            self.slip,
            self.ipv4_prefix,
            self.ipv6_prefix,
        )
    }
}

/// Documented defaults, the same ones serde applies to missing keys.
impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            responses_per_second: 0,
            burst: None,
            slip: default_slip(),
            ipv4_prefix: default_ipv4_prefix(),
            ipv6_prefix: default_ipv6_prefix(),
        }
    }
}

fn default_slip() -> u32 {
    2
}

fn default_ipv4_prefix() -> u8 {
    24
}

fn default_ipv6_prefix() -> u8 {
    56
}

/// The `dns.soa` block: the SOA record served at each zone's apex and in negative answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoaConfig {
    /// MNAME, the primary name server. Default: the first of `dns.nameservers`, else `ns1.<zone>`.
    #[serde(default)]
    pub primary_ns: Option<DnsName>,
    /// RNAME, the contact mailbox as a name (`hostmaster.example.com` for hostmaster@example.com).
    /// Default `hostmaster.<zone>`.
    #[serde(default)]
    pub contact: Option<DnsName>,
    /// TTL of the SOA record, seconds. Default 60.
    #[serde(default = "default_soa_ttl")]
    pub ttl: u32,
    /// SOA REFRESH, seconds. Default 3600.
    #[serde(default = "default_refresh")]
    pub refresh: u32,
    /// SOA RETRY, seconds. Default 600.
    #[serde(default = "default_retry")]
    pub retry: u32,
    /// SOA EXPIRE, seconds. Default 86400.
    #[serde(default = "default_expire")]
    pub expire: u32,
    /// SOA MINIMUM: how long resolvers cache a negative answer (RFC 2308 §4). Kept short so that a name
    /// that comes back is not cached away. Default 5.
    #[serde(default = "default_negative_ttl")]
    pub negative_ttl: u32,
}

impl Default for SoaConfig {
    fn default() -> Self {
        Self {
            primary_ns: None,
            contact: None,
            ttl: default_soa_ttl(),
            refresh: default_refresh(),
            retry: default_retry(),
            expire: default_expire(),
            negative_ttl: default_negative_ttl(),
        }
    }
}

fn default_soa_ttl() -> u32 {
    60
}

fn default_refresh() -> u32 {
    3600
}

fn default_retry() -> u32 {
    600
}

fn default_expire() -> u32 {
    86400
}

fn default_negative_ttl() -> u32 {
    5
}

/// Documented defaults, the same ones serde applies to missing keys.
impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            listen_address: default_listen_address(),
            zones: Vec::new(),
            default_ttl: default_ttl(),
            return_last_healthy: false,
            xdp: XdpConfig::default(),
            soa: SoaConfig::default(),
            nameservers: Vec::new(),
            rate_limit: RateLimitConfig::default(),
        }
    }
}

fn default_listen_address() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::UNSPECIFIED, 53))
}

fn default_ttl() -> u32 {
    60
}

/// The `dns.xdp` block: where the XDP program answers A/AAAA queries in the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XdpConfig {
    /// Network interfaces to attach the XDP program to, e.g. `[eth0]`; each name 1..=15 bytes (the
    /// kernel's IFNAMSIZ). Default `[]`: no XDP, userspace answers everything.
    #[serde(default, deserialize_with = "de::nullable")]
    pub interfaces: Vec<String>,
    /// How to attach: `auto` (driver mode, falling back to skb mode where the driver has no XDP support),
    /// `driver` (native only) or `skb` (generic). Default `auto`.
    #[serde(default)]
    pub mode: XdpMode,
    /// The EDNS UDP payload size our replies advertise (RFC 6891 §6.2.3), 512..=4096. Default 1232, the
    /// size that avoids IP fragmentation on common paths (DNS Flag Day 2020).
    #[serde(default = "default_udp_size")]
    pub udp_size: u16,
    /// How long the program trusts its table without a heartbeat from the overwatch (written every
    /// second while its main loop runs); then `when_stale` applies. `0` never. Default `30s`.
    #[serde(default = "default_stale_after", deserialize_with = "de::duration")]
    pub stale_after: Duration,
    /// What a stale table does: `serve` (keep answering from it, counted as `served_stale`) or `pass`
    /// (answer nothing: every query goes to the userspace server, which is gone if the overwatch is).
    /// Default `serve`.
    #[serde(default)]
    pub when_stale: WhenStale,
}

/// What the XDP program does with a table whose heartbeat is older than `stale_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenStale {
    /// Keep answering from it: a hung overwatch leaves DNS as it was, not dark.
    #[default]
    Serve,
    /// Answer nothing from the kernel: nothing stale is ever answered.
    Pass,
}

impl std::str::FromStr for WhenStale {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "serve" => Ok(Self::Serve),
            "pass" => Ok(Self::Pass),
            _ => Err(format!(
                "unknown stale policy {s:?} (expected serve or pass)"
            )),
        }
    }
}

de::deserialize_from_str!(WhenStale, "a stale-table policy: serve or pass");

fn default_stale_after() -> Duration {
    Duration::from_secs(30)
}

/// Documented defaults, the same ones serde applies to missing keys.
impl Default for XdpConfig {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            mode: XdpMode::default(),
            udp_size: default_udp_size(),
            stale_after: default_stale_after(),
            when_stale: WhenStale::default(),
        }
    }
}

fn default_udp_size() -> u16 {
    1232
}

/// How the XDP program is attached to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// Driver mode where the driver supports it, else skb mode.
    #[default]
    Auto,
    /// Native (driver) mode only; attaching fails where the driver lacks XDP support.
    Driver,
    /// Generic (skb) mode: works on any interface, slower.
    Skb,
}

impl std::str::FromStr for XdpMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "driver" => Ok(Self::Driver),
            "skb" => Ok(Self::Skb),
            _ => Err(format!(
                "unknown XDP mode {s:?} (expected one of auto, driver, skb)"
            )),
        }
    }
}

de::deserialize_from_str!(XdpMode, "an XDP mode: auto, driver or skb");
