use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
};

use ipnet::IpNet;

use rand::RngExt as _;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn geo_db() -> GeoDb {
    GeoDb::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/geo-test.mmdb"
    ))
    .unwrap()
}

#[test]
fn geolocation_custom_cidr_longest_prefix_wins() {
    let r = GeoResolver::new(Some("us".into())).with_mappings([
        (net("10.0.0.0/8"), "eu".to_owned()),
        (net("10.1.0.0/16"), "ap".to_owned()),
        (net("10.1.2.0/24"), "us".to_owned()),
    ]);
    let m = r.resolve(ip("10.1.2.3"));
    assert_eq!(
        (m.region, m.source, m.scope_prefix),
        (Some("us"), GeoSource::Custom(net("10.1.2.0/24")), 24)
    );
    let m = r.resolve(ip("10.1.9.9"));
    assert_eq!(m.region, Some("ap"));
    // The /16 would claim all of 10.1.2.0/24 too, so the scope must be narrow enough to avoid it:
    // 10.1.9.9 leaves 10.1.2.0/24 at bit 20.
    assert_eq!(m.scope_prefix, 21);
    // Not /8: that would take in the /16's clients. 10.200.0.1 leaves 10.1.0.0/16 at bit 8.
    let m = r.resolve(ip("10.200.0.1"));
    assert_eq!((m.region, m.scope_prefix), (Some("eu"), 9));
    let m = r.resolve(ip("10.2.3.4"));
    // 10.2.3.4 shares 14 bits with 10.1.0.0: a /15 stays clear of the /16.
    assert_eq!((m.region, m.scope_prefix), (Some("eu"), 15));
    // Outside every mapping and without a database: the default, scoped clear of the mappings.
    let m = r.resolve(ip("192.0.2.1"));
    assert_eq!(
        (m.region, m.source, m.scope_prefix),
        (Some("us"), GeoSource::Default, 1)
    );
    // An IPv6 client is clear of IPv4 mappings at any scope.
    let m = r.resolve(ip("2001:db8::1"));
    assert_eq!((m.region, m.scope_prefix), (Some("us"), 0));
}

#[test]
fn geolocation_ipv4_mapped_mappings_and_clients_are_ipv4() {
    let r =
        GeoResolver::new(None).with_mappings([(net("::ffff:198.51.100.0/120"), "eu".to_owned())]);
    assert_eq!(
        r.mappings().iter().collect::<Vec<_>>(),
        [(net("198.51.100.0/24"), &"eu".to_owned())]
    );
    let m = r.resolve(ip("::ffff:198.51.100.9"));
    assert_eq!((m.region, m.scope_prefix), (Some("eu"), 24));
}

#[test]
fn geolocation_by_maxmind_database() {
    let db = geo_db();
    assert_eq!(db.database_type(), "GeoIP2-Country");
    let r = GeoResolver::new(Some("us".into()))
        .with_database(db)
        .with_country("de", "eu")
        .with_country("US", "us")
        .with_continent("oc", "ap")
        .with_continent("AS", "ap");

    let m = r.resolve(ip("198.51.100.7"));
    assert_eq!(
        (m.region, m.source, m.scope_prefix),
        (Some("eu"), GeoSource::Country("DE".into()), 24)
    );
    let m = r.resolve(ip("203.0.113.200"));
    assert_eq!((m.region, m.scope_prefix), (Some("us"), 24));
    // No country in the record: the continent decides.
    let m = r.resolve(ip("198.19.1.1"));
    assert_eq!(
        (m.region, m.source, m.scope_prefix),
        (Some("ap"), GeoSource::Continent("OC".into()), 15)
    );
    // Country JP is not mapped; its continent AS is.
    let m = r.resolve(ip("2001:db8:4abc::1"));
    assert_eq!(
        (m.region, m.source, m.scope_prefix),
        (Some("ap"), GeoSource::Continent("AS".into()), 36)
    );
    // A dual-stack socket's view of an IPv4 client.
    let m = r.resolve(ip("::ffff:198.51.100.7"));
    assert_eq!((m.region, m.scope_prefix), (Some("eu"), 24));
    // Not in the database: the default, scoped to the empty network holding the client (192.0.0.0/6
    // shares no bit past the 5th with 198.x/203.x, where the tree's data lies).
    let m = r.resolve(ip("192.0.2.1"));
    assert_eq!(
        (m.region, m.source, m.scope_prefix),
        (Some("us"), GeoSource::Default, 6)
    );
}

#[test]
fn geolocation_custom_mappings_come_before_the_database() {
    let r = GeoResolver::new(None)
        .with_database(geo_db())
        .with_country("DE", "eu")
        .with_mappings([(net("198.51.100.0/25"), "us".to_owned())]);
    let m = r.resolve(ip("198.51.100.5"));
    assert_eq!((m.region, m.scope_prefix), (Some("us"), 25));
    // The database says DE for the whole /24, but the scope must leave out the custom /25.
    let m = r.resolve(ip("198.51.100.200"));
    assert_eq!((m.region, m.scope_prefix), (Some("eu"), 25));
}

#[test]
fn geolocation_regions_from_config() {
    let region = |name: &str, countries: &[&str], continents: &[&str]| crate::config::Region {
        name: name.to_owned(),
        servers: Vec::new(),
        health_check: Default::default(),
        countries: countries.iter().map(|c| (*c).to_owned()).collect(),
        continents: continents.iter().map(|c| (*c).to_owned()).collect(),
    };
    let r = GeoResolver::new(None)
        .with_database(geo_db())
        .with_regions(&[
            region("eu", &["DE", "FR"], &["EU"]),
            region("us", &["us"], &["NA"]),
            // DE again: the first region listing it keeps it.
            region("late", &["DE"], &[]),
        ]);
    assert_eq!(r.resolve(ip("198.51.100.1")).region, Some("eu"));
    assert_eq!(r.resolve(ip("203.0.113.1")).region, Some("us"));
}

#[test]
fn placement_gives_region_ids_by_subnet_with_the_scope_and_by_source() {
    let r = GeoResolver::new(Some("eu".into()))
        .with_database(geo_db())
        .with_country("US", "us")
        .with_country("DE", "eu")
        .with_continent("OC", "ap");
    let ids: HashMap<String, u8> = [("eu".to_owned(), 1), ("us".to_owned(), 2)].into();
    let p = Placement::new(Arc::new(r), ids);
    assert_eq!(p.default_region(), 1);
    // The ECS address as sent (203.0.113.0 for a /24 source prefix): US, scoped to the /24.
    assert_eq!(p.by_subnet(ip("203.0.113.0")), (2, 24));
    assert_eq!(p.by_source(ip("203.0.113.9")), 2);
    assert_eq!(p.by_subnet(ip("198.51.100.1")).0, 1);
    // A region without an id (ap): none, so the answer draws from the default region.
    assert_eq!(p.by_subnet(ip("198.19.1.1")).0, 0);
    assert_eq!(p.by_source(ip("198.19.1.1")), 0);
}

#[test]
fn geo_db_errors_are_reported() {
    let e = GeoDb::open("/nonexistent/geo.mmdb").unwrap_err();
    assert!(e.to_string().contains("/nonexistent/geo.mmdb"), "{e}");
    assert!(GeoDb::from_bytes(b"not a database".to_vec()).is_err());
}

#[test]
fn geo_table_places_clients_as_the_resolver_does() {
    // A custom /26 inside a database /24 (the custom rule wins inside it, the database outside), a
    // custom /16 holding a database /15's half... and a database network inside a custom one.
    let r = GeoResolver::new(Some("eu".into()))
        .with_database(geo_db())
        .with_mappings([
            (net("198.51.100.64/26"), "ap".to_owned()),
            (net("203.0.0.0/16"), "eu".to_owned()),
            (net("2001:db8:4000::/40"), "us".to_owned()),
        ])
        .with_country("US", "us")
        .with_country("DE", "eu")
        .with_country("JP", "ap")
        .with_continent("OC", "ap");
    let ids: HashMap<&str, u8> = [("eu", 1), ("us", 2), ("ap", 3)].into();
    let t = GeoTable::build(&r, |name| ids.get(name).copied());
    // 203.0.113.0/24 (US) lies inside the custom 203.0.0.0/16 (eu): left out of the table.
    assert_eq!(t.prefixes().get(net("203.0.113.0/24")), None);
    for addr in [
        "198.51.100.1",
        "198.51.100.70",
        "198.51.100.200",
        "203.0.113.9",
        "203.0.1.1",
        "198.18.5.5",
        "198.19.0.1",
        "192.0.2.1",
        "2001:db8:4000::1",
        "2001:db8:4100::1",
        "2001:db8:4800::1",
        "2001:db8:c::7",
        "::ffff:198.51.100.70",
    ] {
        let a = ip(addr);
        let want = r.resolve(a).region.unwrap_or("eu");
        let got = match t.region_of(a) {
            0 => "eu",
            id => ids.iter().find(|(_, v)| **v == id).unwrap().0,
        };
        assert_eq!(got, want, "{addr}");
    }
    assert_eq!(t.region_of(ip("198.51.100.70")), 3);
    assert_eq!(t.region_of(ip("192.0.2.1")), 0);
}

#[test]
fn geo_table_keeps_ipv6_mappings_off_ipv4_clients() {
    let r = GeoResolver::new(None).with_mappings([(net("::/0"), "us".to_owned())]);
    let t = GeoTable::build(&r, |n| (n == "us").then_some(2));
    assert_eq!(t.region_of(ip("2001:db8::1")), 2);
    assert_eq!(
        t.region_of(ip("192.0.2.1")),
        0,
        "the resolver never matches IPv4 with ::/0"
    );
}

// ---- the prefix table (resolver, fast path and XDP trie alike) ----

fn table<V: Clone>(entries: &[(&str, V)]) -> PrefixTable<V> {
    let mut t = PrefixTable::new();
    for (n, v) in entries {
        t.insert_first(net(n), v.clone());
    }
    t
}

fn lpm(t: &PrefixTable<u8>, addr: &str) -> Option<(IpNet, u8)> {
    t.longest_match(ip(addr)).map(|(n, v)| (n, *v))
}

#[test]
fn prefix_table_longest_prefix_wins_in_each_family() {
    let t = table(&[
        ("10.0.0.0/8", 1),
        ("10.1.2.0/24", 3),
        ("10.1.0.0/16", 2),
        ("2001:db8::/32", 4),
        ("2001:db8:1::/48", 5),
        ("::/0", 6),
    ]);
    assert_eq!(lpm(&t, "10.1.2.3"), Some((net("10.1.2.0/24"), 3)));
    assert_eq!(lpm(&t, "10.1.3.3"), Some((net("10.1.0.0/16"), 2)));
    assert_eq!(lpm(&t, "10.200.0.1"), Some((net("10.0.0.0/8"), 1)));
    assert_eq!(lpm(&t, "2001:db8:1::9"), Some((net("2001:db8:1::/48"), 5)));
    assert_eq!(lpm(&t, "2001:db8:2::9"), Some((net("2001:db8::/32"), 4)));
    assert_eq!(lpm(&t, "2001:db9::1"), Some((net("::/0"), 6)));
    // IPv4 clients are placed by IPv4 prefixes only, even under an IPv6 ::/0.
    assert_eq!(lpm(&t, "192.0.2.1"), None);
    assert_eq!(t.len(), 6);
}

#[test]
fn prefix_table_keeps_the_first_of_equal_networks_without_host_bits() {
    let mut t = PrefixTable::new();
    assert!(t.insert_first(net("10.1.2.3/24"), "first"));
    assert!(!t.insert_first(net("10.1.2.0/24"), "second"));
    assert!(!t.insert_first(net("::ffff:10.1.2.0/120"), "third"));
    assert_eq!(
        t.iter().collect::<Vec<_>>(),
        [(net("10.1.2.0/24"), &"first")]
    );
    assert_eq!(t.insert(net("10.1.2.0/24"), "set"), Some("first"));
    assert_eq!(t.get(net("10.1.2.77/24")), Some(&"set"));
    assert_eq!(t.remove(net("10.1.2.0/24")), Some("set"));
    assert!(t.is_empty());
}

#[test]
fn prefix_table_holds_ipv4_mapped_networks_and_clients_as_ipv4() {
    let t = table(&[("::ffff:198.51.100.0/120", 1), ("::ffff:0:0/96", 2)]);
    assert_eq!(
        t.iter().collect::<Vec<_>>(),
        [(net("0.0.0.0/0"), &2), (net("198.51.100.0/24"), &1)]
    );
    assert_eq!(
        lpm(&t, "::ffff:198.51.100.9"),
        Some((net("198.51.100.0/24"), 1))
    );
    assert_eq!(lpm(&t, "198.51.100.9"), Some((net("198.51.100.0/24"), 1)));
    assert_eq!(lpm(&t, "::ffff:192.0.2.1"), Some((net("0.0.0.0/0"), 2)));
    assert_eq!(lpm(&t, "2001:db8::1"), None);
    assert!(t.covers(net("198.51.100.128/25")));
    assert!(t.covers(net("::ffff:198.51.100.0/120")));
    assert!(!t.covers(net("::/0")));
    // The scope of an IPv4 client is an IPv4 prefix length.
    assert_eq!(t.place(ip("::ffff:198.51.100.9")).scope_prefix, 24);
}

#[test]
fn lpm_key_is_the_kernel_tries_key() {
    use opengslb_common::maps::{GeoKey, geo_key_v4};
    let mut v4 = [0u8; 16];
    v4[10..].copy_from_slice(&[0xff, 0xff, 198, 51, 100, 0]);
    let want = GeoKey {
        prefix_len: 96 + 24,
        data: v4,
    };
    assert_eq!(lpm_key(net("198.51.100.0/24")), want);
    assert_eq!(lpm_key(net("198.51.100.7/24")), want, "host bits cleared");
    assert_eq!(lpm_key(net("::ffff:198.51.100.0/120")), want);
    // What the XDP program looks a packet's IPv4 source up with.
    assert_eq!(
        lpm_key(net("198.51.100.7/32")).data,
        geo_key_v4([198, 51, 100, 7])
    );
    let mut v6 = [0u8; 16];
    v6[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    assert_eq!(
        lpm_key(net("2001:db8::/32")),
        GeoKey {
            prefix_len: 32,
            data: v6
        }
    );
}

/// The kernel's LPM trie, modelled: the longest key holding the address's key.
fn kernel_lookup(keys: &[(u128, u32, u8)], addr: IpAddr) -> u8 {
    let key = u128::from(match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    });
    keys.iter()
        .filter(|(k, len, _)| *len == 0 || (key ^ k) >> (128 - len) == 0)
        .max_by_key(|(_, len, _)| *len)
        .map_or(0, |(_, _, v)| *v)
}

/// Random addresses and prefixes around a few bases, so that they nest and collide often.
fn near(rng: &mut impl rand::RngExt, bases: &[IpAddr]) -> IpAddr {
    let base = bases[rng.random_range(0..bases.len())];
    match base {
        IpAddr::V4(b) => {
            let flip: u32 = rng.random::<u32>() >> rng.random_range(0..32);
            IpAddr::V4(Ipv4Addr::from(u32::from(b) ^ flip))
        }
        IpAddr::V6(b) => {
            let flip: u128 = rng.random::<u128>() >> rng.random_range(0..128);
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(b) ^ flip))
        }
    }
}

fn random_table(rng: &mut impl rand::RngExt, bases: &[IpAddr], n: usize) -> PrefixTable<u8> {
    let mut t = PrefixTable::new();
    for i in 0..n {
        let a = near(rng, bases);
        let len = rng.random_range(0..=if a.is_ipv4() { 32 } else { 128 });
        let value = u8::try_from(i % 255 + 1).unwrap();
        t.insert_first(IpNet::new(a, len).unwrap(), value);
    }
    t
}

const BASES: [&str; 5] = [
    "10.1.2.3",
    "198.51.100.7",
    "2001:db8::1",
    "::ffff:0:0",
    "::",
];

#[test]
fn lpm_entries_place_clients_as_longest_match_does() {
    use rand::SeedableRng;
    let bases: Vec<IpAddr> = BASES.iter().map(|b| ip(b)).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6e07ab1e);
    for round in 0..200 {
        let n = rng.random_range(0..12);
        let mut t = random_table(&mut rng, &bases, n);
        // Half the rounds hold an IPv6 prefix over all IPv4-mapped space.
        if round % 2 == 0 {
            t.insert_first(net("::/0"), 200);
        }
        let keys: Vec<(u128, u32, u8)> = t
            .lpm_entries()
            .map(|(k, v)| {
                (
                    u128::from_be_bytes(k.data),
                    k.prefix_len,
                    v.map_or(0, |v| *v),
                )
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        assert!(
            keys.iter().all(|(k, len, _)| seen.insert((*k, *len))),
            "one key per prefix"
        );
        for _ in 0..50 {
            let a = near(&mut rng, &bases);
            let want = t.longest_match(a).map_or(0, |(_, v)| *v);
            assert_eq!(kernel_lookup(&keys, a), want, "{a} in {t:?}");
        }
    }
}

#[test]
fn place_scope_is_the_shortest_prefix_with_one_answer() {
    use rand::SeedableRng;
    let bases: Vec<IpAddr> = BASES.iter().map(|b| ip(b)).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5c09e);
    for _ in 0..300 {
        let n = rng.random_range(0..10);
        let t = random_table(&mut rng, &bases, n);
        for _ in 0..30 {
            let a = near(&mut rng, &bases).to_canonical();
            let placed = t.place(a);
            assert_eq!(
                placed.entry.map(|(n, v)| (n, *v)),
                t.longest_match(a).map(|(n, v)| (n, *v))
            );
            // Every address in a/L answers alike exactly when no entry lies strictly inside a/L.
            let max = if a.is_ipv4() { 32 } else { 128 };
            let one_answer = |len: u8| {
                let around = IpNet::new(a, len).unwrap().trunc();
                !t.iter()
                    .any(|(n, _)| n.prefix_len() > len && around.contains(&n))
            };
            let want = (0..=max).find(|&l| one_answer(l)).unwrap();
            assert_eq!(placed.scope_prefix, want, "{a} in {t:?}");
        }
    }
}
