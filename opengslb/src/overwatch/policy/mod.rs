//! The one place a name's routing algorithm becomes what the answer table holds: per address family, the
//! records in answer order and the table [`Policy`] that draws from them (docs/control-plane.md,
//! "Routing"; the original's semantics with its bugs fixed):
//!
//! - **round-robin**: every record, rotating.
//! - **weighted**: every record with its weight, drawn by the weight slot table; weight 0 excludes a
//!   backend (the original treated weight ≤ 0 as 1), and the draw is deterministic (the original drew at
//!   random).
//! - **failover**: the records in config order, the first ones answering (the original's swap-delete could
//!   scramble the order).
//! - **latency**: the records with probe latency data (at least `min_samples` probes), fastest first
//!   (ties in config order), those above `max_latency` dropped unless all are; a family with no data at
//!   all rotates.
//! - **geolocation**: every record with its region id; the client's region is found per query.
//! - **learned-latency**: as geolocation, and per query the backend agents measured fastest from the
//!   client's subnet goes first ([`Policy::Learned`]).
//!
//! A backend that came back within its domain's `slow_start` window ([`ramp`]) counts for part of its
//! weight under `weighted`; under `round-robin` the family is drawn as `weighted` with equal weights while
//! one of its backends ramps, so the ramp goes through the one slot table both DNS paths index.

pub mod ramp;
#[cfg(test)]
mod tests;

use std::{net::IpAddr, time::Duration};

use crate::{
    config::RoutingAlgorithm,
    table::{Family, Policy, SpecRecord},
};

/// The `latency` policy's default threshold: slower backends are dropped (the original's hard-coded
/// 500 ms).
pub const DEFAULT_MAX_LATENCY: Duration = Duration::from_millis(500);

/// One healthy backend of a name (or the all-down policy's pick), in answer-set order: config order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The address the answer carries.
    pub addr: IpAddr,
    /// Relative share under `weighted`; 0 excludes it there.
    pub weight: u32,
    /// Its region's id (1..=255; 0: none), for `geolocation`.
    pub region: u8,
    /// Smoothed validation-probe latency; `None` until there is enough data.
    pub latency: Option<Duration>,
    /// The [`ramp::step`] of a backend ramping up after it came back; `None`: its full share.
    pub ramp: Option<u32>,
}

/// How a name routes, as the table needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Routing {
    /// The configured algorithm.
    pub algorithm: RoutingAlgorithm,
    /// The `latency` threshold (`latency_config.max_latency_ms`).
    pub max_latency: Duration,
    /// The `geolocation` default region's id (0: none).
    pub default_region: u8,
    /// Samples a latency needs before it counts (`latency_config.min_samples`): probes under `latency`,
    /// an agent's connection samples per subnet under `learned-latency`.
    pub min_samples: u32,
}

impl Routing {
    /// Round-robin.
    pub const ROUND_ROBIN: Self = Self {
        algorithm: RoutingAlgorithm::RoundRobin,
        max_latency: DEFAULT_MAX_LATENCY,
        default_region: 0,
        min_samples: 1,
    };

    /// The table form of one family's candidates (all of one family), each address once.
    pub fn family(&self, cands: &[Candidate]) -> Family {
        let (policy, ordered) = match self.algorithm {
            RoutingAlgorithm::RoundRobin => {
                let once = by_address(cands);
                if once.iter().any(|c| c.ramp.is_some()) {
                    (Policy::Weighted, ramped(&once, Some(1)))
                } else {
                    (Policy::RoundRobin, cands.to_vec())
                }
            }
            RoutingAlgorithm::Weighted if cands.iter().any(|c| c.ramp.is_some()) => {
                (Policy::Weighted, ramped(cands, None))
            }
            RoutingAlgorithm::Weighted => (Policy::Weighted, cands.to_vec()),
            RoutingAlgorithm::Failover => (Policy::FixedOrder, cands.to_vec()),
            RoutingAlgorithm::Geolocation => (
                Policy::Geo {
                    default_region: self.default_region,
                },
                cands.to_vec(),
            ),
            RoutingAlgorithm::LearnedLatency => (
                Policy::Learned {
                    default_region: self.default_region,
                    min_samples: self.min_samples,
                },
                cands.to_vec(),
            ),
            RoutingAlgorithm::Latency => match fastest_first(cands, self.max_latency) {
                Some(ordered) => (Policy::FixedOrder, ordered),
                None => (Policy::RoundRobin, cands.to_vec()),
            },
        };
        Family {
            policy,
            records: once_each(&ordered),
        }
    }
}

/// The candidates with their weights (or `equal` for each) as they count in their ramp step.
fn ramped(cands: &[Candidate], equal: Option<u32>) -> Vec<Candidate> {
    cands
        .iter()
        .map(|c| Candidate {
            weight: ramp::weight(equal.unwrap_or(c.weight), c.ramp),
            ..*c
        })
        .collect()
}

/// Each address once, as a round-robin answer counts it: two backends on one address (two ports) are one
/// record, ramping only while both do (then by the further along).
fn by_address(cands: &[Candidate]) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::with_capacity(cands.len());
    for c in cands {
        match out.iter_mut().find(|o| o.addr == c.addr) {
            Some(o) => o.ramp = o.ramp.zip(c.ramp).map(|(a, b)| a.max(b)),
            None => out.push(*c),
        }
    }
    out
}

/// The candidates with latency data, fastest first (a stable sort: ties keep config order), those
/// slower than `max_latency` dropped unless every one is (a slow answer beats none); `None` without data.
fn fastest_first(cands: &[Candidate], max_latency: Duration) -> Option<Vec<Candidate>> {
    let mut measured: Vec<Candidate> = cands
        .iter()
        .filter(|c| c.latency.is_some())
        .copied()
        .collect();
    if measured.is_empty() {
        return None;
    }
    if measured.iter().any(|c| c.latency <= Some(max_latency)) {
        measured.retain(|c| c.latency <= Some(max_latency));
    }
    measured.sort_by_key(|c| c.latency);
    Some(measured)
}

/// Each address once, where it first comes; two backends on one address (two ports) add their weights.
fn once_each(cands: &[Candidate]) -> Vec<SpecRecord> {
    let mut out: Vec<SpecRecord> = Vec::with_capacity(cands.len());
    for c in cands {
        match out.iter_mut().find(|r| r.addr == c.addr) {
            Some(r) => r.weight = r.weight.saturating_add(c.weight),
            None => out.push(SpecRecord {
                addr: c.addr,
                weight: c.weight,
                region: c.region,
            }),
        }
    }
    out
}
