//! Geolocation: which region serves a client address.
//!
//! The order is the original's: custom CIDR mappings (longest prefix wins), then the MaxMind database's
//! country, then its continent, else the default region. What we add is the scope of the decision: the
//! prefix length a resolver may cache the answer for under EDNS Client Subnet (RFC 7871), computed so that
//! no address inside that prefix would have been sent to another region.

use std::{
    collections::HashMap,
    net::IpAddr,
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use maxminddb::{PathElement, Reader};

use super::PrefixTable;
use crate::config::Region;

/// Why a geolocation database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GeoDbError {
    /// The file could not be read or is not a MaxMind DB.
    #[error("geolocation database {path}: {source}")]
    Open {
        /// The file given.
        path: PathBuf,
        /// What the reader said.
        source: maxminddb::MaxMindDbError,
    },
    /// The bytes given are not a MaxMind DB.
    #[error("geolocation database: {0}")]
    Invalid(#[source] maxminddb::MaxMindDbError),
}

/// A MaxMind DB in the GeoIP2/GeoLite2 Country or City layout (`country.iso_code`,
/// `continent.code`), held in memory.
#[derive(Debug)]
pub struct GeoDb {
    reader: Reader<Vec<u8>>,
}

impl GeoDb {
    /// Reads the whole file into memory (a Country database is a few MB; reading it keeps a file that is
    /// replaced on disk from changing under a live reader, which memory mapping would not).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GeoDbError> {
        let path = path.as_ref();
        Reader::open_readfile(path)
            .map(|reader| Self { reader })
            .map_err(|source| GeoDbError::Open {
                path: path.to_owned(),
                source,
            })
    }

    /// A database from its bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, GeoDbError> {
        Reader::from_source(bytes)
            .map(|reader| Self { reader })
            .map_err(GeoDbError::Invalid)
    }

    /// The database's `database_type` metadata, e.g. `GeoLite2-Country`.
    pub fn database_type(&self) -> &str {
        &self.reader.metadata.database_type
    }

    /// Looks an address up: its country and continent codes (uppercase, as the database holds them) and
    /// the prefix length of the database network that holds the address, in the address's own family
    /// (also when nothing is found: then it is the network known to hold no data). `None` when the lookup
    /// is impossible (an IPv6 address in an IPv4-only database) or the record is malformed.
    pub fn lookup(&self, addr: IpAddr) -> Option<DbHit> {
        // An IPv6 address cannot be looked up in an IPv4-only database: the reader refuses it.
        if addr.is_ipv6() && self.reader.metadata.ip_version == 4 {
            return None;
        }
        let found = match self.reader.lookup(addr) {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(%addr, error = %e, "geolocation database lookup failed");
                return None;
            }
        };
        let prefix = match found.network() {
            // An IPv4 address that hit a record above the IPv4 subtree (a record covering all of
            // ::/96 or more): the whole IPv4 space shares it.
            Ok(net) if addr.is_ipv4() && net.is_ipv6() => 0,
            Ok(net) => net.prefix(),
            Err(e) => {
                tracing::debug!(%addr, error = %e, "geolocation database network failed");
                return None;
            }
        };
        let code = |outer: &'static str, inner: &'static str| -> Option<String> {
            match found.decode_path::<&str>(&[PathElement::Key(outer), PathElement::Key(inner)]) {
                Ok(code) => code.map(str::to_ascii_uppercase),
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "geolocation record malformed");
                    None
                }
            }
        };
        Some(DbHit {
            country: code("country", "iso_code"),
            continent: code("continent", "code"),
            prefix,
        })
    }
}

/// What the database says about one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbHit {
    /// ISO 3166-1 alpha-2 country code, uppercase.
    pub country: Option<String>,
    /// Continent code (AF, AN, AS, EU, NA, OC, SA), uppercase.
    pub continent: Option<String>,
    /// Prefix length of the database network holding the address.
    pub prefix: u8,
}

/// Which rule decided a client's region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeoSource {
    /// A custom CIDR mapping (the longest that contains the address).
    Custom(IpNet),
    /// The database's country code, mapped to a region.
    Country(String),
    /// The database's continent code, mapped to a region.
    Continent(String),
    /// Nothing matched: the default region (if any).
    Default,
}

/// A client's region and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeoMatch<'a> {
    /// The region; `None` only when nothing matched and there is no default region.
    pub region: Option<&'a str>,
    /// The rule that decided.
    pub source: GeoSource,
    /// The ECS scope prefix length: every address sharing this many leading bits with the client gets the
    /// same region (in the client's family, after unmapping `::ffff:a.b.c.d`).
    pub scope_prefix: u8,
}

/// Maps client addresses to regions. Built once per config (it is immutable, shared through an `Arc`).
#[derive(Debug, Default)]
pub struct GeoResolver {
    /// Custom CIDR → region.
    custom: PrefixTable<String>,
    db: Option<GeoDb>,
    /// Uppercase country code → region.
    countries: HashMap<String, String>,
    /// Uppercase continent code → region.
    continents: HashMap<String, String>,
    default_region: Option<String>,
}

impl GeoResolver {
    /// A resolver that sends every client to `default_region` (none: to no region, so routing falls back
    /// to every candidate) until mappings, a database or country/continent tables are added.
    pub fn new(default_region: Option<String>) -> Self {
        Self {
            default_region: default_region.filter(|r| !r.is_empty()),
            ..Self::default()
        }
    }

    /// Adds custom CIDR → region mappings (`geolocation.custom_mappings`). The longest prefix that
    /// contains a client wins; of two equal networks the first added wins.
    pub fn with_mappings(mut self, mappings: impl IntoIterator<Item = (IpNet, String)>) -> Self {
        for (net, region) in mappings {
            self.custom.insert_first(net, region);
        }
        self
    }

    /// Uses a MaxMind database for clients no custom mapping covers.
    pub fn with_database(mut self, db: GeoDb) -> Self {
        self.db = Some(db);
        self
    }

    /// Maps a country code to a region (case-insensitive). A code already mapped keeps its first region.
    pub fn with_country(mut self, code: &str, region: &str) -> Self {
        insert_code(&mut self.countries, "country", code, region);
        self
    }

    /// Maps a continent code to a region (case-insensitive). A code already mapped keeps its first region.
    pub fn with_continent(mut self, code: &str, region: &str) -> Self {
        insert_code(&mut self.continents, "continent", code, region);
        self
    }

    /// Takes the country and continent tables from the config's `regions[].countries` and
    /// `regions[].continents`. When two regions list the same code the first listed keeps it, with a
    /// warning (the original let the later one win silently).
    pub fn with_regions(mut self, regions: &[Region]) -> Self {
        for r in regions {
            for c in &r.countries {
                insert_code(&mut self.countries, "country", c, &r.name);
            }
            for c in &r.continents {
                insert_code(&mut self.continents, "continent", c, &r.name);
            }
        }
        self
    }

    /// The default region, if any.
    pub fn default_region(&self) -> Option<&str> {
        self.default_region.as_deref()
    }

    /// The custom mappings.
    pub fn mappings(&self) -> &PrefixTable<String> {
        &self.custom
    }

    /// The region that serves `client`, the rule that decided, and the ECS scope of the decision.
    pub fn resolve(&self, client: IpAddr) -> GeoMatch<'_> {
        // Dual-stack sockets report IPv4 clients as ::ffff:a.b.c.d; geolocate them as IPv4.
        let client = client.to_canonical();

        // The scope also stays clear of every mapping that does not hold the client, so it covers no
        // address one of them would claim.
        let custom = self.custom.place(client);
        if let Some((net, region)) = custom.entry {
            return GeoMatch {
                region: Some(region),
                source: GeoSource::Custom(net),
                scope_prefix: custom.scope_prefix,
            };
        }

        let hit = self.db.as_ref().and_then(|db| db.lookup(client));
        // Without a database (or when it cannot answer) the default holds for every address no mapping
        // claims; with one, only within the database network that holds the client.
        let db_prefix = hit.as_ref().map_or(0, |h| h.prefix);
        let scope_prefix = db_prefix.max(custom.scope_prefix);
        if let Some(hit) = hit {
            if let Some((code, region)) = hit
                .country
                .and_then(|c| self.countries.get(&c).map(|r| (c, r)))
            {
                return GeoMatch {
                    region: Some(region),
                    source: GeoSource::Country(code),
                    scope_prefix,
                };
            }
            if let Some((code, region)) = hit
                .continent
                .and_then(|c| self.continents.get(&c).map(|r| (c, r)))
            {
                return GeoMatch {
                    region: Some(region),
                    source: GeoSource::Continent(code),
                    scope_prefix,
                };
            }
        }
        GeoMatch {
            region: self.default_region.as_deref(),
            source: GeoSource::Default,
            scope_prefix,
        }
    }
}

fn insert_code(table: &mut HashMap<String, String>, what: &str, code: &str, region: &str) {
    let code = code.trim().to_ascii_uppercase();
    match table.get(&code) {
        Some(first) if first != region => {
            tracing::warn!(
                code = %code,
                kept = %first,
                ignored = %region,
                "{what} code listed by two regions: the first keeps it"
            );
        }
        Some(_) => {}
        None => {
            table.insert(code, region.to_owned());
        }
    }
}

/// The geolocation table of the fast paths: client prefix → region id (1..=255; 0: no region), what
/// the XDP program's trie holds ([`PrefixTable::lpm_entries`]) and what the userspace fast path looks
/// clients up in, so both place a client alike. Built once per config from a [`GeoResolver`] and the
/// regions' ids.
///
/// The entries: every custom mapping, then every database network whose country or continent maps to a
/// region, except those that lie inside a custom mapping. That keeps the resolver's precedence (custom
/// mappings first) under longest-prefix matching: a database network longer than a custom mapping that
/// contains it would otherwise win inside it. A database network containing a custom mapping is fine as
/// it is: the mapping is the longer prefix. Networks in `::ffff:0:0/96` are read from the IPv4 side
/// only, and aliased networks (6to4, Teredo) are not read, so at most
/// [`MAX_GEO_ENTRIES`](opengslb_common::maps::MAX_GEO_ENTRIES) prefixes stay enough for a GeoLite2
/// database; past that the rest is left out with a warning (those clients get the default region).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GeoTable {
    prefixes: PrefixTable<u8>,
}

impl GeoTable {
    /// The table for `resolver`, `region_id` naming each region's id (regions it does not know get 0).
    pub fn build(resolver: &GeoResolver, region_id: impl Fn(&str) -> Option<u8>) -> Self {
        let mut t = PrefixTable::new();
        let id = |r: &str| region_id(r).unwrap_or(0);
        for (net, region) in resolver.custom.iter() {
            t.insert_first(net, id(region));
        }
        let mapped: IpNet = IpNet::V6(ipnet::Ipv6Net::new_assert(
            std::net::Ipv4Addr::UNSPECIFIED.to_ipv6_mapped(),
            96,
        ));
        if let Some(db) = &resolver.db {
            let mut left_out = 0usize;
            let mut nets: Vec<(IpNet, u8)> = Vec::new();
            let mut families = vec!["0.0.0.0/0"];
            if db.reader.metadata.ip_version == 6 {
                families.push("::/0");
            }
            for all in families {
                let Ok(all) = all.parse() else { continue };
                let iter = match db.reader.within(all, maxminddb::WithinOptions::default()) {
                    Ok(iter) => iter,
                    Err(e) => {
                        tracing::warn!(error = %e, "geolocation database cannot be iterated");
                        continue;
                    }
                };
                for found in iter {
                    let Ok(found) = found else { continue };
                    let Ok(network) = found.network() else {
                        continue;
                    };
                    let Ok(net) = IpNet::new(network.ip(), network.prefix()) else {
                        continue;
                    };
                    let net = net.trunc();
                    if matches!(net, IpNet::V6(_)) && mapped.contains(&net) {
                        // IPv4 clients are looked up on the IPv4 side.
                        continue;
                    }
                    let code = |outer: &'static str, inner: &'static str| -> Option<String> {
                        found
                            .decode_path::<&str>(&[
                                PathElement::Key(outer),
                                PathElement::Key(inner),
                            ])
                            .ok()
                            .flatten()
                            .map(str::to_ascii_uppercase)
                    };
                    let region = code("country", "iso_code")
                        .and_then(|c| resolver.countries.get(&c))
                        .or_else(|| {
                            code("continent", "code").and_then(|c| resolver.continents.get(&c))
                        });
                    let Some(region) = region else { continue };
                    if resolver.custom.covers(net) {
                        continue;
                    }
                    // One key stays free for the trie's `::ffff:0:0/96` guard (see `lpm_entries`).
                    if t.len() + nets.len() + 1 >= opengslb_common::maps::MAX_GEO_ENTRIES {
                        left_out += 1;
                        continue;
                    }
                    nets.push((net, id(region)));
                }
            }
            if left_out > 0 {
                tracing::warn!(
                    left_out,
                    max = opengslb_common::maps::MAX_GEO_ENTRIES,
                    "geolocation database has more networks than XDP holds: the rest get the default region"
                );
            }
            for (net, region) in nets {
                t.insert_first(net, region);
            }
        }
        Self { prefixes: t }
    }

    /// The prefixes and their region ids.
    pub fn prefixes(&self) -> &PrefixTable<u8> {
        &self.prefixes
    }

    /// The region id of the longest prefix holding `client`, or 0.
    pub fn region_of(&self, client: IpAddr) -> u8 {
        self.prefixes.longest_match(client).map_or(0, |(_, r)| *r)
    }
}
