use std::{collections::HashMap, net::Ipv4Addr};

use super::*;
use crate::table::{AnswerTable, NameSpec, weight_slots};

fn cand(last: u8, weight: u32, region: u8) -> Candidate {
    Candidate {
        addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)),
        weight,
        region,
        latency: None,
        ramp: None,
    }
}

fn with_latency(mut c: Candidate, ms: u64) -> Candidate {
    c.latency = Some(Duration::from_millis(ms));
    c
}

fn routing(algorithm: RoutingAlgorithm) -> Routing {
    Routing {
        algorithm,
        ..Routing::ROUND_ROBIN
    }
}

/// What one answer of at most `max` records carries at each rotation in `rotations`, for `cands`
/// routed by `r`: through the table, as both DNS paths answer.
fn answers(
    r: &Routing,
    cands: &[Candidate],
    max: u8,
    rotations: std::ops::Range<u32>,
) -> Vec<Vec<IpAddr>> {
    let mut spec = NameSpec::new("r.test".parse().unwrap(), 5, Policy::RoundRobin, max, []);
    spec.v4 = r.family(cands);
    let table = AnswerTable::from_specs([&spec]);
    let Some(e) = table.get(&"r.test".parse().unwrap(), opengslb_common::maps::QTYPE_A) else {
        return rotations.map(|_| Vec::new()).collect();
    };
    rotations.map(|rot| e.answer(rot, 0)).collect()
}

fn addrs(cands: &[Candidate], idx: &[usize]) -> Vec<IpAddr> {
    idx.iter().map(|&i| cands[i].addr).collect()
}

/// Asserts every candidate's share of first records is within 1 % (relative) of its weight share.
fn assert_shares(cands: &[Candidate]) {
    const PICKS: u32 = 100_000;
    let mut counts: HashMap<IpAddr, u32> = HashMap::new();
    for a in answers(&routing(RoutingAlgorithm::Weighted), cands, 1, 0..PICKS) {
        *counts.entry(a[0]).or_default() += 1;
    }
    let total: f64 = cands.iter().map(|c| f64::from(c.weight)).sum();
    for c in cands {
        let want = f64::from(c.weight) / total;
        let got = f64::from(*counts.get(&c.addr).unwrap_or(&0)) / f64::from(PICKS);
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

#[test]
fn round_robin_rotates_max_answers_at_a_time() {
    let cands = [cand(1, 1, 0), cand(2, 1, 0), cand(3, 1, 0)];
    let got = answers(&Routing::ROUND_ROBIN, &cands, 2, 0..4);
    assert_eq!(
        got,
        [
            addrs(&cands, &[0, 1]),
            addrs(&cands, &[1, 2]),
            addrs(&cands, &[2, 0]),
            addrs(&cands, &[0, 1])
        ]
    );
    // 0 answers means 1; no candidate, no entry.
    assert_eq!(
        answers(&Routing::ROUND_ROBIN, &cands, 0, 1..2),
        [addrs(&cands, &[1])]
    );
    assert_eq!(
        answers(&Routing::ROUND_ROBIN, &[], 2, 0..1),
        [Vec::<IpAddr>::new()]
    );
}

#[test]
fn weighted_shares_follow_weights() {
    assert_shares(&[cand(1, 100, 0), cand(2, 50, 0), cand(3, 25, 0)]);
    assert_shares(&[cand(1, 3, 0), cand(2, 1, 0)]);
    // 700/200/101 has no common divisor and sums past 64: the table is scaled (7/2/1 in 10 slots), still
    // within 1 % of each weight.
    assert_eq!(weight_slots(&[700, 200, 101]).len(), 10);
    assert_shares(&[cand(1, 700, 0), cand(2, 200, 0), cand(3, 101, 0)]);
}

#[test]
fn weight_zero_is_excluded() {
    let cands = [cand(1, 0, 0), cand(2, 10, 0), cand(3, 0, 0), cand(4, 30, 0)];
    assert_shares(&cands);
    for a in answers(&routing(RoutingAlgorithm::Weighted), &cands, 4, 0..100) {
        // Only the two positive ones, even when more records are asked for.
        assert_eq!(a.len(), 2);
        assert!(!a.contains(&cands[0].addr) && !a.contains(&cands[2].addr));
    }
}

#[test]
fn weighted_all_zero_rotates_over_everyone() {
    let cands = [cand(1, 0, 0), cand(2, 0, 0), cand(3, 0, 0)];
    let firsts: Vec<IpAddr> = answers(&routing(RoutingAlgorithm::Weighted), &cands, 1, 0..3)
        .into_iter()
        .map(|a| a[0])
        .collect();
    assert_eq!(firsts, addrs(&cands, &[0, 1, 2]));
}

#[test]
fn weighted_further_records_are_the_next_positive_ones() {
    let cands = [cand(1, 3, 0), cand(2, 0, 0), cand(3, 1, 0), cand(4, 2, 0)];
    let positive = [0usize, 2, 3];
    for a in answers(&routing(RoutingAlgorithm::Weighted), &cands, 3, 0..50) {
        let at = positive
            .iter()
            .position(|&i| cands[i].addr == a[0])
            .unwrap();
        let want: Vec<IpAddr> = (0..3).map(|k| cands[positive[(at + k) % 3]].addr).collect();
        assert_eq!(a, want);
    }
}

#[test]
fn two_ports_on_one_address_are_one_record_with_both_weights() {
    let f =
        routing(RoutingAlgorithm::Weighted).family(&[cand(1, 2, 0), cand(2, 1, 0), cand(1, 3, 0)]);
    let got: Vec<(IpAddr, u32)> = f.records.iter().map(|r| (r.addr, r.weight)).collect();
    assert_eq!(got, [(cand(1, 0, 0).addr, 5), (cand(2, 0, 0).addr, 1)]);
}

#[test]
fn failover_takes_config_order() {
    let cands = [cand(1, 1, 0), cand(2, 1, 0), cand(3, 1, 0)];
    let r = routing(RoutingAlgorithm::Failover);
    for a in answers(&r, &cands, 2, 0..5) {
        assert_eq!(a, addrs(&cands, &[0, 1]));
    }
    // The primary is unhealthy (the registry left it out): the next in order answers.
    assert_eq!(answers(&r, &cands[1..], 1, 0..1), [addrs(&cands, &[1])]);
}

#[test]
fn latency_picks_the_fastest() {
    let cands = [
        with_latency(cand(1, 1, 0), 40),
        with_latency(cand(2, 1, 0), 12),
        cand(3, 1, 0),
        with_latency(cand(4, 1, 0), 12),
    ];
    let r = routing(RoutingAlgorithm::Latency);
    for a in answers(&r, &cands, 1, 0..4) {
        assert_eq!(a, addrs(&cands, &[1]));
    }
    // Ties by config order; the unmeasured one is not answered while others have data.
    assert_eq!(answers(&r, &cands, 4, 0..1), [addrs(&cands, &[1, 3, 0])]);
    assert_eq!(r.family(&cands).policy, Policy::FixedOrder);
}

#[test]
fn latency_drops_backends_above_max_latency_unless_all_are() {
    let r = Routing {
        max_latency: Duration::from_millis(100),
        ..routing(RoutingAlgorithm::Latency)
    };
    let cands = [
        with_latency(cand(1, 1, 0), 150),
        with_latency(cand(2, 1, 0), 90),
    ];
    assert_eq!(answers(&r, &cands, 2, 0..1), [addrs(&cands, &[1])]);
    let slow = [
        with_latency(cand(1, 1, 0), 300),
        with_latency(cand(2, 1, 0), 200),
    ];
    assert_eq!(answers(&r, &slow, 2, 0..1), [addrs(&slow, &[1, 0])]);
}

#[test]
fn latency_without_data_is_round_robin() {
    let cands = [cand(1, 1, 0), cand(2, 1, 0), cand(3, 1, 0)];
    let r = routing(RoutingAlgorithm::Latency);
    assert_eq!(r.family(&cands).policy, Policy::RoundRobin);
    assert_eq!(
        answers(&r, &cands, 2, 0..6),
        answers(&Routing::ROUND_ROBIN, &cands, 2, 0..6)
    );
}

#[test]
fn learned_latency_falls_back_to_geolocation_then_round_robin() {
    // Probe latency does not order a learned-latency name: the per-query choice is the agents'.
    let cands = [
        with_latency(cand(1, 1, 2), 90),
        with_latency(cand(2, 1, 1), 5),
        cand(3, 1, 0),
    ];
    let r = Routing {
        default_region: 2,
        ..routing(RoutingAlgorithm::LearnedLatency)
    };
    let f = r.family(&cands);
    assert_eq!(
        f.policy,
        Policy::Learned {
            default_region: 2,
            min_samples: 1
        }
    );
    assert_eq!(
        f.records.iter().map(|r| r.region).collect::<Vec<_>>(),
        [2, 1, 0]
    );
    // Drawn as geolocation would: a client placed nowhere gets the default region's backend.
    assert_eq!(answers(&r, &cands, 1, 0..3), vec![addrs(&cands, &[0]); 3]);
    // Without regions, round-robin among all.
    let flat = [cand(1, 1, 0), cand(2, 1, 0), cand(3, 1, 0)];
    let r = routing(RoutingAlgorithm::LearnedLatency);
    assert_eq!(
        answers(&r, &flat, 2, 0..6),
        answers(&Routing::ROUND_ROBIN, &flat, 2, 0..6)
    );
}

#[test]
fn geolocation_draws_from_the_clients_region_then_the_default_then_all() {
    let cands = [cand(1, 1, 1), cand(2, 1, 1), cand(3, 1, 2), cand(4, 1, 3)];
    let r = Routing {
        default_region: 1,
        ..routing(RoutingAlgorithm::Geolocation)
    };
    let f = r.family(&cands);
    assert_eq!(f.policy, Policy::Geo { default_region: 1 });
    let mut spec = NameSpec::new("g.test".parse().unwrap(), 5, Policy::RoundRobin, 1, []);
    spec.v4 = f;
    let table = AnswerTable::from_specs([&spec]);
    let e = table
        .get(&"g.test".parse().unwrap(), opengslb_common::maps::QTYPE_A)
        .unwrap();
    let firsts =
        |region: u8| -> Vec<IpAddr> { (0..4).map(|rot| e.answer(rot, region)[0]).collect() };
    assert_eq!(firsts(2), addrs(&cands, &[2, 2, 2, 2]));
    // Round-robin within the region; no region, or one with nothing healthy: the default region.
    assert_eq!(firsts(1), addrs(&cands, &[0, 1, 0, 1]));
    assert_eq!(firsts(0), firsts(1));
    assert_eq!(firsts(9), firsts(1));
    // Neither the client's nor the default region has anything: everyone.
    let only_3 = Routing {
        default_region: 1,
        ..routing(RoutingAlgorithm::Geolocation)
    };
    assert_eq!(
        answers(&only_3, &cands[2..], 1, 0..2),
        [addrs(&cands, &[2]), addrs(&cands, &[3])]
    );
}

fn ramping(mut c: Candidate, step: u32) -> Candidate {
    c.ramp = Some(step);
    c
}

/// The share of first records `addr` gets over `picks` rotations.
fn first_share(r: &Routing, cands: &[Candidate], addr: IpAddr, picks: u32) -> f64 {
    let hits = answers(r, cands, 1, 0..picks)
        .iter()
        .filter(|a| a.first() == Some(&addr))
        .count();
    hits as f64 / f64::from(picks)
}

#[test]
fn a_ramping_backend_gets_its_step_s_part_of_its_weight() {
    let w = routing(RoutingAlgorithm::Weighted);
    // 3:1, the second in step 1 of 10: 33:1 (weights scaled by 11).
    let cands = [cand(1, 3, 0), ramping(cand(2, 1, 0), 1)];
    let fam = w.family(&cands);
    assert_eq!(fam.policy, Policy::Weighted);
    let weights: Vec<u32> = fam.records.iter().map(|r| r.weight).collect();
    assert_eq!(weights, [33, 1]);
    assert!((first_share(&w, &cands, cands[1].addr, 34 * 4) - 1.0 / 34.0).abs() < 1e-9);
    // Not ramping: the family as before, unscaled.
    let full = [cand(1, 3, 0), cand(2, 1, 0)];
    assert_eq!(
        w.family(&full)
            .records
            .iter()
            .map(|r| r.weight)
            .collect::<Vec<_>>(),
        [3, 1]
    );
}

#[test]
fn a_ramping_round_robin_family_is_drawn_as_equal_weights_ramped() {
    let rr = routing(RoutingAlgorithm::RoundRobin);
    let cands = [cand(1, 100, 0), cand(2, 5, 0), ramping(cand(3, 0, 0), 5)];
    let fam = rr.family(&cands);
    assert_eq!(fam.policy, Policy::Weighted);
    let weights: Vec<u32> = fam.records.iter().map(|r| r.weight).collect();
    assert_eq!(weights, [11, 11, 5], "configured weights play no part");
    // Two ports on one address are one record: it ramps only while both do.
    let ports = [
        cand(1, 1, 0),
        ramping(cand(2, 1, 0), 2),
        ramping(cand(2, 1, 0), 4),
    ];
    let weights: Vec<u32> = rr.family(&ports).records.iter().map(|r| r.weight).collect();
    assert_eq!(weights, [11, 4]);
    let half = [cand(1, 1, 0), ramping(cand(2, 1, 0), 2), cand(2, 1, 0)];
    assert_eq!(
        rr.family(&half),
        rr.family(&[cand(1, 1, 0), cand(2, 1, 0), cand(2, 1, 0)]),
        "served at full by its other port: plain round-robin"
    );
}
