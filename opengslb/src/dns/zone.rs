//! The zones we are authoritative for, their apex records (SOA, NS), and the snapshot the responders
//! answer from: the answer table plus what negative answers need.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
};

use hickory_proto::rr::{
    Name, RData, Record,
    rdata::{NS, SOA},
};
use opengslb_common::maps::{RecordKey, RecordValue};
use thiserror::Error;

use crate::{
    config::Config,
    name::DnsName,
    routing::{Placement, learned::LearnedLatency},
    table::{AnswerTable, EntryKey, Rendered},
};

/// A name in the config that is not a valid DNS name (validation should have caught it).
#[derive(Debug, Error)]
#[error("invalid name {name:?} for {what}")]
pub struct ZoneError {
    /// The name.
    pub name: String,
    /// What it was for.
    pub what: &'static str,
}

/// One zone's apex data.
#[derive(Clone, Debug)]
pub struct Zone {
    /// The apex, lowercase, fully qualified.
    pub apex: Name,
    /// MNAME and RNAME.
    pub mname: Name,
    /// The contact mailbox as a name.
    pub rname: Name,
    /// TTL of the SOA record.
    pub soa_ttl: u32,
    /// REFRESH, RETRY, EXPIRE.
    pub timers: (u32, u32, u32),
    /// MINIMUM: the negative-caching TTL.
    pub negative_ttl: u32,
    /// The NS targets.
    pub nameservers: Vec<Name>,
    /// TTL of the NS records.
    pub ns_ttl: u32,
}

impl Zone {
    /// The zones of a config.
    pub fn from_config(cfg: &Config) -> Result<Vec<Self>, ZoneError> {
        cfg.dns
            .zones
            .iter()
            .map(|z| {
                // A default name under the zone, which a zone name of 249 characters or more leaves no
                // room for.
                let derived = |label: &str, what| {
                    z.child(label).map(|n| n.fqdn()).map_err(|_| ZoneError {
                        name: format!("{label}.{z}"),
                        what,
                    })
                };
                let apex = z.fqdn();
                let nameservers = if cfg.dns.nameservers.is_empty() {
                    vec![derived("ns1", "dns.nameservers")?]
                } else {
                    cfg.dns.nameservers.iter().map(DnsName::fqdn).collect()
                };
                let soa = &cfg.dns.soa;
                let mname = match &soa.primary_ns {
                    Some(n) => n.fqdn(),
                    None => nameservers.first().cloned().unwrap_or_else(|| apex.clone()),
                };
                let rname = match &soa.contact {
                    Some(n) => n.fqdn(),
                    None => derived("hostmaster", "dns.soa.contact")?,
                };
                Ok(Self {
                    apex,
                    mname,
                    rname,
                    soa_ttl: soa.ttl,
                    timers: (soa.refresh, soa.retry, soa.expire),
                    negative_ttl: soa.negative_ttl,
                    nameservers,
                    ns_ttl: soa.ttl,
                })
            })
            .collect()
    }

    /// The SOA record, with `serial`, at `ttl`.
    pub fn soa_record(&self, serial: u32, ttl: u32) -> Record {
        let (refresh, retry, expire) = self.timers;
        Record::from_rdata(
            self.apex.clone(),
            ttl,
            RData::SOA(SOA::new(
                self.mname.clone(),
                self.rname.clone(),
                serial,
                refresh as i32,
                retry as i32,
                expire as i32,
                self.negative_ttl,
            )),
        )
    }

    /// The SOA as negative answers carry it: TTL = min(SOA TTL, MINIMUM) (RFC 2308 §3).
    pub fn negative_soa(&self, serial: u32) -> Record {
        self.soa_record(serial, self.soa_ttl.min(self.negative_ttl))
    }

    /// The NS records at the apex.
    pub fn ns_records(&self) -> Vec<Record> {
        self.nameservers
            .iter()
            .map(|n| Record::from_rdata(self.apex.clone(), self.ns_ttl, RData::NS(NS(n.clone()))))
            .collect()
    }
}

/// Everything a responder needs, immutable once built; a change builds a new one.
#[derive(Debug)]
pub struct Snapshot {
    /// The answer table.
    pub table: Arc<AnswerTable>,
    /// The zones, longest apex first so the first match is the closest.
    pub zones: Vec<Zone>,
    /// The SOA serial; it changes whenever the table does.
    pub serial: u32,
    /// Our EDNS UDP payload size.
    pub udp_size: u16,
    /// Every name that exists (owns records, or is an empty non-terminal above one), lowercase.
    names: HashSet<Name>,
    /// Round-robin positions, one per entry, whichever way a query is answered (the fast path, or the
    /// full one for Client Subnet, a route, an answer too big for UDP or an entry XDP cannot hold).
    rotation: HashMap<EntryKey, AtomicU32>,
    /// The entries exactly as the XDP map holds them (by their map key), with their table key.
    fast: HashMap<RecordKey, (EntryKey, RecordValue)>,
    /// Where clients are, for `geolocation` and `learned-latency` entries.
    placement: Option<Arc<Placement>>,
    /// What agents learned of clients' latency, for `learned-latency` entries.
    learned: Option<Arc<LearnedLatency>>,
    /// The configured names (with or without records), by lowercase wire form, for the query counters.
    domains: HashMap<Box<[u8]>, Arc<str>>,
}

impl Snapshot {
    /// Builds a snapshot of `table`, whose map entries are `rendered` (what the XDP map holds).
    pub fn new(
        table: impl Into<Arc<AnswerTable>>,
        rendered: &Rendered,
        mut zones: Vec<Zone>,
        serial: u32,
        udp_size: u16,
    ) -> Self {
        let table = table.into();
        zones.sort_by_key(|z| std::cmp::Reverse(z.apex.num_labels()));
        let mut names = HashSet::new();
        for z in &zones {
            names.insert(z.apex.clone());
        }
        let owners = table
            .iter()
            .map(|(k, _)| &k.name)
            .chain(table.empty_names());
        for owner in owners {
            let n = owner.fqdn();
            // The name and every ancestor inside its zone exist (RFC 8020: an empty non-terminal is
            // NODATA, not NXDOMAIN).
            if let Some(zone) = zones.iter().find(|z| z.apex.zone_of(&n)) {
                let mut cur = n;
                while cur.num_labels() > zone.apex.num_labels() {
                    names.insert(cur.clone());
                    cur = cur.base_name();
                }
            }
        }
        let rotation = table
            .iter()
            .map(|(k, _)| (k.clone(), AtomicU32::new(0)))
            .collect();
        let domains = table
            .iter()
            .map(|(k, _)| &k.name)
            .chain(table.empty_names())
            .map(|n| {
                let (wire, len) = n.wire();
                (Box::from(&wire[..len]), Arc::from(n.as_str()))
            })
            .collect();
        let fast = rendered
            .entries
            .iter()
            .map(|(name, (k, v))| (*k, (name.clone(), *v)))
            .collect();
        Self {
            table,
            zones,
            serial,
            udp_size,
            names,
            rotation,
            fast,
            placement: None,
            learned: None,
            domains,
        }
    }

    /// Sets where clients are: the fast path places a source address as the XDP program's geolocation
    /// trie does; the full path places an EDNS Client Subnet address by the resolver.
    pub fn with_placement(mut self, placement: Option<Arc<Placement>>) -> Self {
        self.placement = placement;
        self
    }

    /// Sets the learned-latency table `learned-latency` entries answer from.
    pub fn with_learned(mut self, learned: Arc<LearnedLatency>) -> Self {
        self.learned = Some(learned);
        self
    }

    /// The learned-latency table `learned-latency` entries answer from, if one is set.
    pub fn learned(&self) -> Option<&LearnedLatency> {
        self.learned.as_deref()
    }

    /// The region id of a packet's source address, as the XDP program's trie gives it (0: none).
    pub fn geo_region(&self, client: IpAddr) -> u8 {
        self.placement.as_ref().map_or(0, |p| p.by_source(client))
    }

    /// Whether an EDNS Client Subnet option places the client (`geolocation.ecs_enabled`); when not, the
    /// option is still parsed and echoed, with scope 0.
    pub fn honours_ecs(&self) -> bool {
        self.placement.as_ref().is_none_or(|p| p.honours_ecs())
    }

    /// The region id of an EDNS Client Subnet address, and the scope prefix length to echo.
    pub fn subnet_region(&self, client: IpAddr) -> (u8, u8) {
        self.placement
            .as_ref()
            .map_or((0, 0), |p| p.by_subnet(client))
    }

    /// The zone `name` lies in, if any.
    pub fn zone_of(&self, name: &Name) -> Option<&Zone> {
        self.zones.iter().find(|z| z.apex.zone_of(name))
    }

    /// The configured domain a lowercase wire-form name is, if it is one.
    pub fn domain_of_wire(&self, wire: &[u8]) -> Option<&Arc<str>> {
        self.domains.get(wire)
    }

    /// Whether `name` (lowercase) exists: it owns records or is an empty non-terminal above one.
    pub fn exists(&self, name: &Name) -> bool {
        self.names.contains(name)
    }

    /// The entry the XDP program would find for a key, with its table key.
    pub fn fast_entry(&self, qtype: u16, hash: u64) -> Option<(&EntryKey, &RecordValue)> {
        self.fast
            .get(&RecordKey::new(qtype, hash))
            .map(|(name, v)| (name, v))
    }

    /// The next round-robin position of an entry.
    pub fn next_rotation_of(&self, key: &EntryKey) -> u32 {
        self.rotation
            .get(key)
            .map_or(0, |c| c.fetch_add(1, Ordering::Relaxed))
    }
}
