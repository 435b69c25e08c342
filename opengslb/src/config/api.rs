//! The `api` section: the overwatch's HTTP API and who may call it.

use std::net::SocketAddr;

use ipnet::IpNet;
use serde::Deserialize;

use super::de;

/// The `api` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Serve the API. Default false.
    #[serde(default)]
    pub enabled: bool,
    /// `IP:port` to serve on; `:8080` means `0.0.0.0:8080`. Default `127.0.0.1:8080`.
    #[serde(default = "default_address", deserialize_with = "de::listen_address")]
    pub address: SocketAddr,
    /// Client networks allowed to call the API (CIDRs; IPv4 rules never match IPv6 clients, so
    /// `0.0.0.0/0` does not admit `::1`). An empty list means loopback only, as in the original. Health,
    /// readiness and version endpoints are open to all. Default `[127.0.0.1/32, ::1/128]`.
    #[serde(
        default = "default_allowed_networks",
        deserialize_with = "de::cidr_list"
    )]
    pub allowed_networks: Vec<IpNet>,
    /// Take the client address from the last `X-Forwarded-For` entry (the one the proxy appended), else
    /// `X-Real-IP`; only behind a proxy that every client goes through. Default false.
    #[serde(default)]
    pub trust_proxy_headers: bool,
    /// A bearer token every change (any method but GET and HEAD) must present as
    /// `Authorization: Bearer <token>` (ours: the original had no authentication). Default: none.
    #[serde(default)]
    pub token: Option<super::Secret>,
}

/// Documented defaults, the same ones serde applies to missing keys.
impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            address: default_address(),
            allowed_networks: default_allowed_networks(),
            trust_proxy_headers: false,
            token: None,
        }
    }
}

fn default_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// Loopback only: `127.0.0.1/32` and `::1/128`.
pub(super) fn default_allowed_networks() -> Vec<IpNet> {
    ["127.0.0.1/32", "::1/128"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}
