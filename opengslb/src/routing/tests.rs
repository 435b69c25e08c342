use std::{collections::HashMap, net::IpAddr, sync::Arc};

use ipnet::IpNet;

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
    assert_eq!(r.mappings()[0].0, net("198.51.100.0/24"));
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
    assert!(!t.entries().iter().any(|(n, _)| *n == net("203.0.113.0/24")));
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
