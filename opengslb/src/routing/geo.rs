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
    /// Custom CIDR → region, normalised (IPv4-mapped IPv6 networks as IPv4), in config order.
    custom: Vec<(IpNet, String)>,
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
        self.custom.extend(
            mappings
                .into_iter()
                .map(|(net, region)| (normalize_net(net), region)),
        );
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

    /// The custom mappings, normalised, in the order added.
    pub fn mappings(&self) -> &[(IpNet, String)] {
        &self.custom
    }

    /// The region that serves `client`, the rule that decided, and the ECS scope of the decision.
    pub fn resolve(&self, client: IpAddr) -> GeoMatch<'_> {
        // Dual-stack sockets report IPv4 clients as ::ffff:a.b.c.d; geolocate them as IPv4.
        let client = client.to_canonical();

        // One pass over the custom mappings: the longest that contains the client, and how many leading
        // bits it takes to stay clear of every mapping that does not (so the scope covers no address that
        // one of them would claim).
        let mut best: Option<&(IpNet, String)> = None;
        let mut clear_of_others = 0u8;
        for m in &self.custom {
            let net = m.0;
            if net.contains(&client) {
                if best.is_none_or(|b| net.prefix_len() > b.0.prefix_len()) {
                    best = Some(m);
                }
            } else if let Some(common) = common_prefix(client, net.network()) {
                // The client leaves `net` at bit `common`; one more bit keeps the scope out of it.
                clear_of_others = clear_of_others.max(common.saturating_add(1));
            }
        }
        if let Some((net, region)) = best {
            return GeoMatch {
                region: Some(region),
                source: GeoSource::Custom(*net),
                scope_prefix: net.prefix_len().max(clear_of_others),
            };
        }

        let hit = self.db.as_ref().and_then(|db| db.lookup(client));
        // Without a database (or when it cannot answer) the default holds for every address no mapping
        // claims; with one, only within the database network that holds the client.
        let db_prefix = hit.as_ref().map_or(0, |h| h.prefix);
        let scope_prefix = db_prefix.max(clear_of_others);
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

/// An IPv4-mapped IPv6 network (`::ffff:198.51.100.0/120`) as the IPv4 network it means, since clients
/// are unmapped before the lookup; host bits are cleared.
fn normalize_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.network().to_ipv4_mapped()
        && v6.prefix_len() >= 96
        && let Ok(n) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(n.trunc());
    }
    net.trunc()
}

/// How many leading bits two addresses of one family share; `None` across families.
fn common_prefix(a: IpAddr, b: IpAddr) -> Option<u8> {
    // `leading_zeros` of a u32/u128 is at most 32/128, so the casts cannot truncate.
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => Some((u32::from(a) ^ u32::from(b)).leading_zeros() as u8),
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            Some((u128::from(a) ^ u128::from(b)).leading_zeros() as u8)
        }
        _ => None,
    }
}
