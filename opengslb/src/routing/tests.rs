use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::Duration,
};

use ipnet::IpNet;
use opengslb_common::dns::{answer_count, rotated_index};

use rand::RngExt as _;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn cand(last: u8, weight: u32, region: &str, order: usize) -> Candidate {
    Candidate {
        addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)),
        weight,
        region: region.to_owned(),
        order,
        latency: None,
    }
}

fn with_latency(mut c: Candidate, ms: u64) -> Candidate {
    c.latency = Some(Duration::from_millis(ms));
    c
}

fn ctx(counter: u64, max_answers: usize) -> PickCtx {
    PickCtx {
        client: None,
        counter,
        max_answers,
    }
}

fn client_ctx(client: &str, counter: u64) -> PickCtx {
    PickCtx {
        client: Some(ip(client)),
        counter,
        max_answers: 1,
    }
}

/// How often each address comes first over `picks` consecutive counters.
fn first_counts(policy: &Policy, cands: &[Candidate], picks: u64) -> HashMap<IpAddr, u64> {
    let mut counts = HashMap::new();
    for counter in 0..picks {
        let p = pick(policy, cands, &ctx(counter, 1));
        *counts.entry(p.addrs[0]).or_insert(0) += 1;
    }
    counts
}

/// Asserts every candidate's share of first picks is within 1 % (relative) of its weight share.
fn assert_shares(cands: &[Candidate]) {
    const PICKS: u64 = 100_000;
    let counts = first_counts(&Policy::Weighted, cands, PICKS);
    let total: f64 = cands.iter().map(|c| f64::from(c.weight)).sum();
    for c in cands {
        let want = f64::from(c.weight) / total;
        let got = *counts.get(&c.addr).unwrap_or(&0) as f64 / PICKS as f64;
        if c.weight == 0 {
            assert_eq!(got, 0.0, "{} has weight 0", c.addr);
        } else {
            assert!(
                (got - want).abs() <= 0.01 * want,
                "{}: share {got}, weight share {want}",
                c.addr
            );
        }
    }
}

// ---- round-robin ----

#[test]
fn round_robin_agrees_with_rotated_index() {
    for n in 1..=5u8 {
        let cands: Vec<Candidate> = (0..n).map(|i| cand(i + 1, 100, "r", i.into())).collect();
        for max in 1..=4u8 {
            let counters = (0..40u64).chain(u64::from(u32::MAX) - 5..=u64::from(u32::MAX));
            for counter in counters {
                let got = pick(&Policy::RoundRobin, &cands, &ctx(counter, max.into()));
                // The XDP path: answer_count records, record k at rotated_index(counter, k, n).
                let want: Vec<IpAddr> = (0..answer_count(max, n))
                    .map(|k| cands[rotated_index(counter as u32, k, n.into())].addr)
                    .collect();
                assert_eq!(got.addrs, want, "n={n} max={max} counter={counter}");
                assert_eq!(got.scope_prefix, Some(0));
            }
        }
    }
}

#[test]
fn round_robin_zero_max_answers_means_one_and_empty_gives_nothing() {
    let cands = [cand(1, 1, "r", 0), cand(2, 1, "r", 1)];
    assert_eq!(
        pick(&Policy::RoundRobin, &cands, &ctx(1, 0)).addrs,
        [cands[1].addr]
    );
    for policy in [Policy::RoundRobin, Policy::Weighted, Policy::Failover] {
        assert!(pick(&policy, &[], &ctx(3, 2)).addrs.is_empty());
    }
}

// ---- weighted ----

#[test]
fn weighted_shares_follow_weights_100_50_25() {
    assert_shares(&[
        cand(1, 100, "r", 0),
        cand(2, 50, "r", 1),
        cand(3, 25, "r", 2),
    ]);
}

#[test]
fn weighted_shares_follow_weights_3_to_1() {
    assert_shares(&[cand(1, 3, "r", 0), cand(2, 1, "r", 1)]);
}

#[test]
fn weighted_shares_follow_weights_that_need_scaling() {
    // 700/200/101 has no common divisor and sums past 64: the table is scaled (7/2/1 in 10 slots here,
    // the length with the smallest error), still within 1 % of each weight.
    let cands = [
        cand(1, 700, "r", 0),
        cand(2, 200, "r", 1),
        cand(3, 101, "r", 2),
    ];
    assert_eq!(weight_slots(&cands).len(), 10);
    assert_shares(&cands);
}

#[test]
fn weight_zero_is_excluded() {
    let cands = [
        cand(1, 0, "r", 0),
        cand(2, 10, "r", 1),
        cand(3, 0, "r", 2),
        cand(4, 30, "r", 3),
    ];
    assert_shares(&cands);
    for counter in 0..100 {
        let p = pick(&Policy::Weighted, &cands, &ctx(counter, 4));
        // Only the two positive ones, even when more records are asked for.
        assert_eq!(p.addrs.len(), 2);
        assert!(!p.addrs.contains(&cands[0].addr) && !p.addrs.contains(&cands[2].addr));
    }
}

#[test]
fn weighted_all_zero_rotates_over_everyone() {
    let cands = [cand(1, 0, "r", 0), cand(2, 0, "r", 1), cand(3, 0, "r", 2)];
    assert_eq!(weight_slots(&cands), [0, 1, 2]);
    let firsts: Vec<IpAddr> = (0..3)
        .map(|i| pick(&Policy::Weighted, &cands, &ctx(i, 1)).addrs[0])
        .collect();
    assert_eq!(firsts, cands.iter().map(|c| c.addr).collect::<Vec<_>>());
}

#[test]
fn weighted_further_records_are_the_next_distinct_ones() {
    let cands = [
        cand(1, 3, "r", 0),
        cand(2, 0, "r", 1),
        cand(3, 1, "r", 2),
        cand(4, 2, "r", 3),
    ];
    for counter in 0..50 {
        let p = pick(&Policy::Weighted, &cands, &ctx(counter, 3));
        let first = cands.iter().position(|c| c.addr == p.addrs[0]).unwrap();
        let positive = [0usize, 2, 3];
        let at = positive.iter().position(|&i| i == first).unwrap();
        let want: Vec<IpAddr> = (0..3).map(|k| cands[positive[(at + k) % 3]].addr).collect();
        assert_eq!(p.addrs, want, "counter {counter}");
    }
}

#[test]
fn weight_slots_are_exact_for_small_reduced_weights() {
    let slots = weight_slots(&[
        cand(1, 100, "r", 0),
        cand(2, 50, "r", 1),
        cand(3, 25, "r", 2),
    ]);
    assert_eq!(slots.len(), 7);
    let count = |i| slots.iter().filter(|&&s| s == i).count();
    assert_eq!((count(0), count(1), count(2)), (4, 2, 1));
    // 3:1 in four slots, interleaved (not 0,0,0,1).
    assert_eq!(
        weight_slots(&[cand(1, 3, "r", 0), cand(2, 1, "r", 1)]),
        [0, 0, 1, 0]
    );
    assert_eq!(weight_slots(&[cand(1, 7, "r", 0)]), [0]);
    assert!(weight_slots(&[]).is_empty());
}

/// Seeded draws below a bound, so that every run sees the same weights.
fn seeded(seed: u64) -> impl FnMut(u64) -> u64 {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    move |bound| rng.random_range(0..bound)
}

fn slot_counts(slots: &[u8], n: usize) -> Vec<usize> {
    (0..n)
        .map(|i| slots.iter().filter(|&&s| usize::from(s) == i).count())
        .collect()
}

#[test]
fn weight_slots_scaled_stay_within_one_slot_of_the_weights() {
    // Weights of at least 1/64 of the total (so no one-slot minimum lifts anyone): every share within
    // one slot in 64 of its weight share.
    let mut next = seeded(0x2545_f491_4f6c_dd1d);
    for _ in 0..2000 {
        let n = 1 + next(16) as usize;
        let weights: Vec<u32> = (0..n)
            .map(|_| {
                if next(5) == 0 {
                    0
                } else {
                    50_000 + next(50_000) as u32
                }
            })
            .collect();
        let cands: Vec<Candidate> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| cand(i as u8, w, "r", i))
            .collect();
        let slots = weight_slots(&cands);
        assert!(!slots.is_empty() && slots.len() <= MAX_WEIGHT_SLOTS);
        let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
        for (i, (&w, got)) in weights.iter().zip(slot_counts(&slots, n)).enumerate() {
            let share = got as f64 / slots.len() as f64;
            let want = if total > 0.0 {
                f64::from(w) / total
            } else {
                1.0 / n as f64
            };
            assert!(
                (share - want).abs() <= 1.0 / MAX_WEIGHT_SLOTS as f64 + 1e-12,
                "{weights:?}: index {i} share {share} weight share {want} ({slots:?})"
            );
        }
    }
}

#[test]
fn weight_slots_give_every_positive_weight_a_slot() {
    // Wild weights (1 next to 4 000 000 000, up to 70 backends): weight 0 never has a slot, every other
    // weight of the 64 heaviest has at least one, and the table never exceeds 64 slots.
    let mut next = seeded(0x9e37_79b9_7f4a_7c15);
    for _ in 0..2000 {
        let n = 1 + next(70) as usize;
        let weights: Vec<u32> = (0..n)
            .map(|_| match next(4) {
                0 => 0,
                1 => 1 + next(10) as u32,
                2 => 1 + next(1000) as u32,
                _ => 1 + next(4_000_000_000) as u32,
            })
            .collect();
        let cands: Vec<Candidate> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| cand(i as u8, w, "r", i))
            .collect();
        let slots = weight_slots(&cands);
        assert!(
            !slots.is_empty() && slots.len() <= MAX_WEIGHT_SLOTS,
            "{weights:?}"
        );
        let counts = slot_counts(&slots, n);
        let positive = weights.iter().filter(|&&w| w > 0).count();
        for (i, &w) in weights.iter().enumerate() {
            if w == 0 && positive > 0 {
                assert_eq!(counts[i], 0, "{weights:?}");
            } else if positive <= MAX_WEIGHT_SLOTS {
                assert!(counts[i] >= 1, "{weights:?}: index {i} has no slot");
            }
        }
    }
}

#[test]
fn weight_slots_ignore_zero_weight_candidates() {
    // The XDP renderer may leave weight-0 backends out of the map: its table must be this one renumbered.
    let full = [
        cand(1, 0, "r", 0),
        cand(2, 700, "r", 1),
        cand(3, 0, "r", 2),
        cand(4, 200, "r", 3),
        cand(5, 101, "r", 4),
    ];
    let kept: Vec<Candidate> = full.iter().filter(|c| c.weight > 0).cloned().collect();
    let renumber = [None, Some(0u8), None, Some(1), Some(2)];
    let mapped: Vec<u8> = weight_slots(&full)
        .iter()
        .map(|&s| renumber[usize::from(s)].unwrap())
        .collect();
    assert_eq!(mapped, weight_slots(&kept));
}

#[test]
fn weighted_pick_agrees_with_the_xdp_model() {
    // The XDP path: the positive-weight records in the map, slot = slots[rotation % len], then record k
    // at rotated_index(slot, k, n).
    let full = [
        cand(1, 5, "r", 0),
        cand(2, 0, "r", 1),
        cand(3, 2, "r", 2),
        cand(4, 9, "r", 3),
    ];
    let map: Vec<Candidate> = full.iter().filter(|c| c.weight > 0).cloned().collect();
    let slots = weight_slots(&map);
    for rotation in 0..200u32 {
        for max in 1..=3u8 {
            let first = slots[rotation as usize % slots.len()];
            let want: Vec<IpAddr> = (0..answer_count(max, map.len() as u8))
                .map(|k| map[rotated_index(first.into(), k, map.len())].addr)
                .collect();
            let got = pick(&Policy::Weighted, &full, &ctx(rotation.into(), max.into()));
            assert_eq!(got.addrs, want, "rotation {rotation} max {max}");
        }
    }
}

// ---- failover ----

#[test]
fn failover_takes_config_order() {
    // Table order differs from config order (an agent-reported backend arrived before a static one).
    let cands = [cand(3, 1, "r", 2), cand(1, 1, "r", 0), cand(2, 1, "r", 1)];
    for counter in 0..5 {
        let p = pick(&Policy::Failover, &cands, &ctx(counter, 1));
        assert_eq!(p.addrs, [cands[1].addr]);
        let p = pick(&Policy::Failover, &cands, &ctx(counter, 2));
        assert_eq!(p.addrs, [cands[1].addr, cands[2].addr]);
    }
    // The primary is unhealthy (the registry left it out): the next in order answers.
    let without_primary = [cands[0].clone(), cands[2].clone()];
    let p = pick(&Policy::Failover, &without_primary, &ctx(0, 1));
    assert_eq!(p.addrs, [cands[2].addr]);
    assert_eq!(p.scope_prefix, Some(0));
}

// ---- geolocation ----

fn geo_db() -> GeoDb {
    GeoDb::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/geo-test.mmdb"
    ))
    .unwrap()
}

fn geo_cands() -> Vec<Candidate> {
    vec![
        cand(1, 1, "eu", 0),
        cand(2, 1, "eu", 1),
        cand(3, 1, "us", 2),
        cand(4, 1, "ap", 3),
    ]
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

    let policy = Policy::Geolocation(Arc::new(r));
    let p = pick(&policy, &geo_cands(), &client_ctx("10.1.2.3", 0));
    assert_eq!(
        p,
        Picked {
            addrs: vec![ip("192.0.2.3")],
            scope_prefix: Some(24)
        }
    );
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
fn geolocation_uses_the_client_subnet_address_and_falls_back() {
    let r = GeoResolver::new(Some("eu".into()))
        .with_database(geo_db())
        .with_country("US", "us")
        .with_country("DE", "eu")
        .with_continent("OC", "ap");
    let policy = Policy::Geolocation(Arc::new(r));
    let cands = geo_cands();

    // The caller passes the ECS address (as sent: 203.0.113.0 for a /24 source prefix) as the client.
    let p = pick(&policy, &cands, &client_ctx("203.0.113.0", 7));
    assert_eq!(
        p,
        Picked {
            addrs: vec![ip("192.0.2.3")],
            scope_prefix: Some(24)
        }
    );

    // Round-robin within the region.
    let eu: Vec<IpAddr> = (0..4)
        .map(|i| pick(&policy, &cands, &client_ctx("198.51.100.1", i)).addrs[0])
        .collect();
    assert_eq!(
        eu,
        [
            ip("192.0.2.1"),
            ip("192.0.2.2"),
            ip("192.0.2.1"),
            ip("192.0.2.2")
        ]
    );

    // The client's region has nothing healthy: the default region answers.
    let no_us: Vec<Candidate> = cands.iter().filter(|c| c.region != "us").cloned().collect();
    let p = pick(&policy, &no_us, &client_ctx("203.0.113.5", 0));
    assert_eq!(p.addrs, [ip("192.0.2.1")]);
    // Neither the client's nor the default region has anything: everyone does.
    let only_ap = [cand(4, 1, "ap", 3), cand(5, 1, "ap", 4)];
    let p = pick(&policy, &only_ap, &client_ctx("203.0.113.5", 1));
    assert_eq!(p.addrs, [ip("192.0.2.5")]);

    // No client address: the default region, nothing to scope.
    let p = pick(&policy, &cands, &ctx(0, 2));
    assert_eq!(
        p,
        Picked {
            addrs: vec![ip("192.0.2.1"), ip("192.0.2.2")],
            scope_prefix: None
        }
    );
}

#[test]
fn geo_db_errors_are_reported() {
    let e = GeoDb::open("/nonexistent/geo.mmdb").unwrap_err();
    assert!(e.to_string().contains("/nonexistent/geo.mmdb"), "{e}");
    assert!(GeoDb::from_bytes(b"not a database".to_vec()).is_err());
}

// ---- latency ----

#[test]
fn latency_picks_the_fastest() {
    let cands = [
        with_latency(cand(1, 1, "r", 0), 40),
        with_latency(cand(2, 1, "r", 1), 12),
        cand(3, 1, "r", 2),
        with_latency(cand(4, 1, "r", 3), 12),
    ];
    let policy = Policy::Latency {
        max_latency: DEFAULT_MAX_LATENCY,
    };
    for counter in 0..4 {
        let p = pick(&policy, &cands, &ctx(counter, 1));
        assert_eq!(
            p,
            Picked {
                addrs: vec![cands[1].addr],
                scope_prefix: Some(0)
            }
        );
    }
    // Ties by config order; the unmeasured one is not answered while others have data.
    let p = pick(&policy, &cands, &ctx(0, 4));
    assert_eq!(p.addrs, [cands[1].addr, cands[3].addr, cands[0].addr]);
}

#[test]
fn latency_drops_backends_above_max_latency_unless_all_are() {
    let policy = Policy::Latency {
        max_latency: Duration::from_millis(100),
    };
    let cands = [
        with_latency(cand(1, 1, "r", 0), 150),
        with_latency(cand(2, 1, "r", 1), 90),
    ];
    assert_eq!(pick(&policy, &cands, &ctx(0, 2)).addrs, [cands[1].addr]);
    let slow = [
        with_latency(cand(1, 1, "r", 0), 300),
        with_latency(cand(2, 1, "r", 1), 200),
    ];
    assert_eq!(
        pick(&policy, &slow, &ctx(0, 2)).addrs,
        [slow[1].addr, slow[0].addr]
    );
}

#[test]
fn latency_without_data_is_round_robin() {
    let policy = Policy::Latency {
        max_latency: DEFAULT_MAX_LATENCY,
    };
    let cands = [cand(1, 1, "r", 0), cand(2, 1, "r", 1), cand(3, 1, "r", 2)];
    for counter in 0..6 {
        assert_eq!(
            pick(&policy, &cands, &ctx(counter, 2)),
            pick(&Policy::RoundRobin, &cands, &ctx(counter, 2))
        );
    }
}

// ---- policies ----

#[test]
fn policy_from_algorithm() {
    let settings = PolicySettings {
        geo: Some(Arc::new(GeoResolver::new(None))),
        max_latency: Duration::from_millis(250),
    };
    for alg in RoutingAlgorithm::ALL {
        let p = Policy::from_algorithm(alg, &settings).unwrap();
        let want = if alg == RoutingAlgorithm::LearnedLatency {
            RoutingAlgorithm::Latency
        } else {
            alg
        };
        assert_eq!(p.algorithm(), want);
        assert_eq!(p.depends_on_client(), alg == RoutingAlgorithm::Geolocation);
    }
    assert!(matches!(
        Policy::from_algorithm(RoutingAlgorithm::Latency, &settings),
        Ok(Policy::Latency { max_latency }) if max_latency == Duration::from_millis(250)
    ));
    assert!(matches!(
        Policy::from_algorithm(RoutingAlgorithm::Geolocation, &PolicySettings::default()),
        Err(PolicyError::NoGeoResolver)
    ));
}

// ---- the geolocation trie's table (XDP and the userspace fast path) ----

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
