//! Client prefixes → values, with longest-prefix match: the one table that places clients by address.
//!
//! Geolocation uses it three ways, and all three must agree: the resolver's custom CIDR mappings (a
//! client's mapping and the EDNS Client Subnet scope of that decision, RFC 7871 §7.2.1), the table the
//! userspace fast path looks clients up in, and the contents of the XDP program's LPM trie
//! ([`PrefixTable::lpm_entries`]). The trie is `prefix-trie`'s, one per address family; what this type
//! adds is the normalisation of IPv4-mapped networks and clients, the scope of a match, and the key form
//! the kernel's trie uses.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use opengslb_common::maps::{GeoKey, geo_key_v4};
use prefix_trie::{AsView, Prefix, PrefixMap, TrieView};

/// Prefixes of both families → values. Networks are held as their network address (host bits
/// cleared), and an IPv4-mapped IPv6 network (`::ffff:198.51.100.0/120`) as the IPv4 network it means,
/// since clients are unmapped before every lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixTable<V> {
    v4: PrefixMap<Ipv4Net, V>,
    v6: PrefixMap<Ipv6Net, V>,
}

impl<V> Default for PrefixTable<V> {
    fn default() -> Self {
        Self {
            v4: PrefixMap::new(),
            v6: PrefixMap::new(),
        }
    }
}

/// What the table says about one address.
#[derive(Debug, PartialEq, Eq)]
pub struct PrefixMatch<'a, V> {
    /// The longest prefix holding the address, and its value.
    pub entry: Option<(IpNet, &'a V)>,
    /// The shortest prefix length around the address (in its family, after unmapping) in which every
    /// address has the same longest match: the scope a resolver may cache the decision for. It is at
    /// least the matched prefix's length, and long enough to leave out every entry that does not hold
    /// the address.
    pub scope_prefix: u8,
}

impl<V> PrefixTable<V> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many prefixes the table holds.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether the table holds no prefix.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Adds `net → value` unless the table holds `net` already (of two equal networks the first
    /// stays, as the config's order says). Returns whether it was added.
    pub fn insert_first(&mut self, net: IpNet, value: V) -> bool {
        match normalize(net) {
            IpNet::V4(n) if !self.v4.contains_key(&n) => self.v4.insert(n, value).is_none(),
            IpNet::V6(n) if !self.v6.contains_key(&n) => self.v6.insert(n, value).is_none(),
            _ => false,
        }
    }

    /// Sets `net → value`; returns the value it replaces.
    pub fn insert(&mut self, net: IpNet, value: V) -> Option<V> {
        match normalize(net) {
            IpNet::V4(n) => self.v4.insert(n, value),
            IpNet::V6(n) => self.v6.insert(n, value),
        }
    }

    /// Removes `net`; returns its value.
    pub fn remove(&mut self, net: IpNet) -> Option<V> {
        match normalize(net) {
            IpNet::V4(n) => self.v4.remove(&n),
            IpNet::V6(n) => self.v6.remove(&n),
        }
    }

    /// The value of exactly `net`.
    pub fn get(&self, net: IpNet) -> Option<&V> {
        match normalize(net) {
            IpNet::V4(n) => self.v4.get(&n),
            IpNet::V6(n) => self.v6.get(&n),
        }
    }

    /// Whether one prefix holds all of `net` (`net` itself or a shorter one).
    pub fn covers(&self, net: IpNet) -> bool {
        match normalize(net) {
            IpNet::V4(n) => self.v4.is_covered(&n),
            IpNet::V6(n) => self.v6.is_covered(&n),
        }
    }

    /// The prefixes and their values: IPv4 first, each family in address order, a prefix before the
    /// longer ones inside it.
    pub fn iter(&self) -> impl Iterator<Item = (IpNet, &V)> {
        let v4 = self.v4.iter().map(|(n, v)| (IpNet::V4(n), v));
        let v6 = self.v6.iter().map(|(n, v)| (IpNet::V6(n), v));
        v4.chain(v6)
    }

    /// The longest prefix holding `addr` (`::ffff:a.b.c.d` looked up as `a.b.c.d`), and its value.
    pub fn longest_match(&self, addr: IpAddr) -> Option<(IpNet, &V)> {
        match addr.to_canonical() {
            IpAddr::V4(a) => self
                .v4
                .get_lpm(&Ipv4Net::from(a))
                .map(|(n, v)| (IpNet::V4(n), v)),
            IpAddr::V6(a) => self
                .v6
                .get_lpm(&Ipv6Net::from(a))
                .map(|(n, v)| (IpNet::V6(n), v)),
        }
    }

    /// The longest prefix holding `addr` and the scope of that answer (see [`PrefixMatch`]).
    pub fn place(&self, addr: IpAddr) -> PrefixMatch<'_, V> {
        let (entry, apart) = match addr.to_canonical() {
            IpAddr::V4(a) => {
                let bits = u32::from(a);
                let (e, apart) = place_in(&self.v4, Ipv4Net::from(a), |i| bits << i >> 31 == 1);
                (e.map(|(n, v)| (IpNet::V4(n), v)), apart)
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                let (e, apart) = place_in(&self.v6, Ipv6Net::from(a), |i| bits << i >> 127 == 1);
                (e.map(|(n, v)| (IpNet::V6(n), v)), apart)
            }
        };
        let scope_prefix = entry.map_or(apart, |(n, _)| n.prefix_len().max(apart));
        PrefixMatch {
            entry,
            scope_prefix,
        }
    }

    /// The table as the kernel's LPM trie holds it: one key per prefix ([`lpm_key`]), so that a trie
    /// lookup of an address's key (IPv4 as `::ffff:a.b.c.d`) finds what [`longest_match`] finds.
    /// The two key spaces differ in one place: an IPv6 prefix that covers `::ffff:0:0/96` would hold
    /// IPv4 clients in the trie, which [`longest_match`] never gives them. When there is one (and no
    /// `0.0.0.0/0`, which is the same key), the entries include `::ffff:0:0/96 → None`: the trie's miss.
    ///
    /// [`longest_match`]: Self::longest_match
    pub fn lpm_entries(&self) -> impl Iterator<Item = (GeoKey, Option<&V>)> {
        let all_v4 = Ipv4Net::new_assert(Ipv4Addr::UNSPECIFIED, 0);
        let mapped = Ipv6Net::new_assert(Ipv4Addr::UNSPECIFIED.to_ipv6_mapped(), 96);
        let guard = (self.v6.is_covered(&mapped) && !self.v4.contains_key(&all_v4))
            .then(|| (lpm_key(IpNet::V4(all_v4)), None));
        self.iter().map(|(n, v)| (lpm_key(n), Some(v))).chain(guard)
    }
}

/// The longest prefix holding `host` and how many leading bits it takes to stay clear of every prefix
/// that does not hold it. One walk down `host`'s path: a prefix off the path branches away at some
/// depth, sharing exactly that many bits with `host`, so one more bit leaves it out.
fn place_in<P: Prefix + Copy, V>(
    map: &PrefixMap<P, V>,
    host: P,
    bit: impl Fn(u8) -> bool,
) -> (Option<(P, &V)>, u8) {
    let entry = map.get_lpm(&host);
    let mut apart = 0;
    let mut view = Some(map.view());
    for depth in 0..host.prefix_len() {
        let Some(v) = view else { break };
        let (on, off) = if bit(depth) {
            (v.right(), v.left())
        } else {
            (v.left(), v.right())
        };
        if off.is_some_and(|o| o.is_non_empty()) {
            apart = depth + 1;
        }
        view = on;
    }
    (entry, apart)
}

/// A network as the key of the XDP program's LPM trie: 16 address bytes, IPv4 mapped as
/// `::ffff:a.b.c.d` with its prefix length + 96, host bits cleared.
pub fn lpm_key(net: IpNet) -> GeoKey {
    match normalize(net) {
        IpNet::V4(n) => GeoKey {
            prefix_len: u32::from(n.prefix_len()) + 96,
            data: geo_key_v4(n.network().octets()),
        },
        IpNet::V6(n) => GeoKey {
            prefix_len: u32::from(n.prefix_len()),
            data: n.network().octets(),
        },
    }
}

/// An IPv4-mapped IPv6 network as the IPv4 network it means; host bits cleared.
fn normalize(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.network().to_ipv4_mapped()
        && v6.prefix_len() >= 96
        && let Ok(n) = Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(n.trunc());
    }
    net.trunc()
}
