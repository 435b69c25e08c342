//! Routing by the client's address: where a client is (geolocation by the source address or by EDNS
//! Client Subnet, with the scope an answer may be cached for). Every other part of routing is decided when
//! the table is built (`overwatch::control`) and drawn per query by `opengslb_common::dns`, alike on both
//! DNS paths (docs/control-plane.md, "Routing").

mod geo;
pub mod learned;
mod prefix;

#[cfg(test)]
mod tests;

pub use geo::{DbHit, GeoDb, GeoDbError, GeoMatch, GeoResolver, GeoSource, GeoTable};
pub use prefix::{PrefixMatch, PrefixTable, lpm_key};

use std::{collections::HashMap, net::IpAddr, sync::Arc};

/// Where clients are, as region ids (1..=255; 0: none): by the geolocation table for a packet's source
/// address (what the XDP trie holds, so both DNS paths place a client alike), and by the resolver for an
/// EDNS Client Subnet address, with the scope within which every client gets the same region.
#[derive(Debug)]
pub struct Placement {
    resolver: Arc<GeoResolver>,
    ids: HashMap<String, u8>,
    table: Arc<GeoTable>,
    ecs: bool,
}

impl Placement {
    /// The placement of `resolver`'s regions, named by `ids`.
    pub fn new(resolver: Arc<GeoResolver>, ids: HashMap<String, u8>) -> Self {
        let table = Arc::new(GeoTable::build(&resolver, |name| ids.get(name).copied()));
        Self {
            resolver,
            ids,
            table,
            ecs: true,
        }
    }

    /// The same, honouring an EDNS Client Subnet option (`geolocation.ecs_enabled`, the default) or not:
    /// when not, a query with one is placed by its source address, like any other.
    pub fn with_ecs(mut self, ecs: bool) -> Self {
        self.ecs = ecs;
        self
    }

    /// Whether an EDNS Client Subnet option places the client.
    pub fn honours_ecs(&self) -> bool {
        self.ecs
    }

    /// The resolver it places by, to ask which region an address gets and why.
    pub fn resolver(&self) -> &Arc<GeoResolver> {
        &self.resolver
    }

    /// The region id of a region name (0: none).
    pub fn id(&self, region: &str) -> u8 {
        self.ids.get(region).copied().unwrap_or(0)
    }

    /// The name of a region id, if it has one.
    pub fn name(&self, id: u8) -> Option<&str> {
        (id != 0)
            .then(|| {
                self.ids
                    .iter()
                    .find(|(_, i)| **i == id)
                    .map(|(n, _)| n.as_str())
            })
            .flatten()
    }

    /// The default region's id (0: none).
    pub fn default_region(&self) -> u8 {
        self.resolver.default_region().map_or(0, |r| self.id(r))
    }

    /// The region of a packet's source address.
    pub fn by_source(&self, client: IpAddr) -> u8 {
        self.table.region_of(client)
    }

    /// The region of an EDNS Client Subnet address, and the scope prefix length to echo.
    pub fn by_subnet(&self, client: IpAddr) -> (u8, u8) {
        let m = self.resolver.resolve(client);
        (m.region.map_or(0, |r| self.id(r)), m.scope_prefix)
    }

    /// Client prefix → region id, as the XDP trie holds it.
    pub fn table(&self) -> &Arc<GeoTable> {
        &self.table
    }
}
