//! Routing: which of a name's healthy backends one answer carries.
//!
//! One implementation of the per-query choice, used by both DNS paths: the userspace server calls
//! [`pick`] per query; the XDP path is rendered from the same primitives ([`weight_slots`] for `weighted`,
//! the rotation of [`opengslb_common::dns::rotated_index`] for `round-robin`), so for the same rotation
//! counter both paths give the same records in the same order.
//!
//! The policies (`docs/control-plane.md`, "Routing"; the original's semantics in its §4.6, with its bugs fixed):
//!
//! - **round-robin**: `max_answers` records starting at `counter % n`, in candidate order.
//! - **weighted**: the first record by the weight slot table at `counter`, the next ones the following
//!   candidates with a positive weight in candidate order. Weight 0 excludes a backend (the original
//!   treated weight ≤ 0 as 1); deterministic given the counter (the original drew at random).
//! - **failover**: the candidates in config `order` (the original's swap-delete could scramble it).
//! - **geolocation**: the client's region by [`GeoResolver`], then round-robin among that region's
//!   candidates, else the default region's, else all; the answer carries the ECS scope of the rule.
//! - **latency**: the candidates with probe latency data, those above `max_latency` dropped (unless all
//!   are), fastest first, ties by config order; with no data at all, round-robin.
//!
//! Candidates are the healthy backends of one name and one address family, in the order the answer table
//! holds them (config order); the registry does the filtering.

mod geo;
mod prefix;
mod weights;

#[cfg(test)]
mod tests;

use std::{net::IpAddr, sync::Arc, time::Duration};

pub use geo::{DbHit, GeoDb, GeoDbError, GeoMatch, GeoResolver, GeoSource, GeoTable};
pub use prefix::{Placement, PrefixTable, lpm_key};
pub use weights::{MAX_WEIGHT_SLOTS, weight_slots};

use crate::config::RoutingAlgorithm;

/// The `latency` policy's default threshold: slower backends are dropped (the original's hard-coded
/// 500 ms).
pub const DEFAULT_MAX_LATENCY: Duration = Duration::from_millis(500);

/// One healthy backend of a name, as routing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The address the answer carries.
    pub addr: IpAddr,
    /// Relative share under `weighted`; 0 excludes it there.
    pub weight: u32,
    /// The region it belongs to (the config region's name), for `geolocation`.
    pub region: String,
    /// Its position in the config (static servers first, then dynamic ones as they arrived): the
    /// `failover` order and the `latency` tie-break.
    pub order: usize,
    /// Smoothed validation-probe latency (see [`ewma`](crate::health::ewma)); `None` until there is enough data.
    pub latency: Option<Duration>,
}

/// How one name chooses among its candidates.
#[derive(Debug, Clone)]
pub enum Policy {
    /// Rotate through the candidates.
    RoundRobin,
    /// In proportion to the weights, by the slot table.
    Weighted,
    /// The first in config order.
    Failover,
    /// By the client's region.
    Geolocation(Arc<GeoResolver>),
    /// The fastest by probe latency.
    Latency {
        /// Backends slower than this are dropped, unless every one with data is.
        max_latency: Duration,
    },
}

/// What a [`Policy`] needs beyond the algorithm's name.
#[derive(Debug, Clone)]
pub struct PolicySettings {
    /// The resolver `geolocation` uses (one per config, shared by its domains).
    pub geo: Option<Arc<GeoResolver>>,
    /// The `latency` threshold (`latency_config.max_latency_ms`).
    pub max_latency: Duration,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            geo: None,
            max_latency: DEFAULT_MAX_LATENCY,
        }
    }
}

/// Why a policy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// `geolocation` was asked for without a resolver.
    #[error("geolocation routing needs a geolocation resolver")]
    NoGeoResolver,
}

impl Policy {
    /// The policy for a configured algorithm.
    ///
    /// `learned-latency` is answered as `latency`: the per-client-subnet data it would need (agents'
    /// latency reports) does not exist yet, and the overwatch's own probe latency is the nearest measure
    /// we have; with no data both fall back to round-robin, as the original's did.
    pub fn from_algorithm(
        algorithm: RoutingAlgorithm,
        settings: &PolicySettings,
    ) -> Result<Self, PolicyError> {
        Ok(match algorithm {
            RoutingAlgorithm::RoundRobin => Self::RoundRobin,
            RoutingAlgorithm::Weighted => Self::Weighted,
            RoutingAlgorithm::Failover => Self::Failover,
            RoutingAlgorithm::Geolocation => {
                Self::Geolocation(settings.geo.clone().ok_or(PolicyError::NoGeoResolver)?)
            }
            RoutingAlgorithm::Latency | RoutingAlgorithm::LearnedLatency => Self::Latency {
                max_latency: settings.max_latency,
            },
        })
    }

    /// The algorithm this policy implements (its canonical config name).
    pub fn algorithm(&self) -> RoutingAlgorithm {
        match self {
            Self::RoundRobin => RoutingAlgorithm::RoundRobin,
            Self::Weighted => RoutingAlgorithm::Weighted,
            Self::Failover => RoutingAlgorithm::Failover,
            Self::Geolocation(_) => RoutingAlgorithm::Geolocation,
            Self::Latency { .. } => RoutingAlgorithm::Latency,
        }
    }

    /// Whether the answer depends on the client's address (so ECS matters to it).
    pub fn depends_on_client(&self) -> bool {
        matches!(self, Self::Geolocation(_))
    }
}

/// The per-query input of [`pick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PickCtx {
    /// The client: the EDNS Client Subnet address if the query has one, else the source address.
    pub client: Option<IpAddr>,
    /// The name's rotation counter, advanced by the caller once per query. The XDP path's counter is a
    /// `u32`; passed here as is, both paths pick alike.
    pub counter: u64,
    /// How many records the answer carries at most (the domain's `max_answers`); 0 counts as 1.
    pub max_answers: usize,
}

/// The outcome of [`pick`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Picked {
    /// The records, in answer order; empty only when there are no candidates.
    pub addrs: Vec<IpAddr>,
    /// The ECS scope prefix length to echo: for `geolocation`, the prefix within which every client gets
    /// the same region; 0 for policies that do not depend on the client; `None` for `geolocation` without
    /// a client address (there is nothing to scope).
    pub scope_prefix: Option<u8>,
}

/// Chooses the records of one answer. See the module docs for each policy's rule.
pub fn pick(policy: &Policy, cands: &[Candidate], ctx: &PickCtx) -> Picked {
    let want = ctx.max_answers.max(1);
    let client_independent = |addrs| Picked {
        addrs,
        scope_prefix: Some(0),
    };
    match policy {
        Policy::RoundRobin => {
            let all: Vec<&Candidate> = cands.iter().collect();
            client_independent(rotate(&all, ctx.counter, want))
        }
        Policy::Weighted => client_independent(weighted(cands, ctx.counter, want)),
        Policy::Failover => {
            let mut all: Vec<&Candidate> = cands.iter().collect();
            // Stable: candidates sharing an `order` keep their table order.
            all.sort_by_key(|c| c.order);
            client_independent(all.iter().take(want).map(|c| c.addr).collect())
        }
        Policy::Geolocation(resolver) => geolocation(resolver, cands, ctx, want),
        Policy::Latency { max_latency } => {
            client_independent(latency(cands, *max_latency, ctx.counter, want))
        }
    }
}

/// `want` records from `list`, starting at `counter % n` and wrapping: record `k` is
/// `list[rotated_index(counter, k, n)]`.
fn rotate(list: &[&Candidate], counter: u64, want: usize) -> Vec<IpAddr> {
    let n = list.len();
    if n == 0 {
        return Vec::new();
    }
    // `counter % n` < n, so it fits a usize; (start + k) % n is rotated_index's (counter + k) % n.
    let start = (counter % n as u64) as usize;
    (0..want.min(n))
        .map(|k| list[(start + k) % n].addr)
        .collect()
}

fn weighted(cands: &[Candidate], counter: u64, want: usize) -> Vec<IpAddr> {
    let slots = weight_slots(cands);
    if slots.is_empty() {
        return Vec::new();
    }
    let first = usize::from(slots[(counter % slots.len() as u64) as usize]);
    // Further records: the next candidates in table order that weighted routing may answer with, so the
    // XDP map (which holds only those) takes them by plain rotation from the first.
    let any_positive = cands.iter().any(|c| c.weight > 0);
    let n = cands.len();
    (0..n)
        .map(|k| &cands[(first + k) % n])
        .filter(|c| c.weight > 0 || !any_positive)
        .take(want)
        .map(|c| c.addr)
        .collect()
}

fn geolocation(resolver: &GeoResolver, cands: &[Candidate], ctx: &PickCtx, want: usize) -> Picked {
    let (region, scope_prefix) = match ctx.client {
        Some(client) => {
            let m = resolver.resolve(client);
            (m.region, Some(m.scope_prefix))
        }
        None => (resolver.default_region(), None),
    };
    let in_region = |r: Option<&str>| -> Vec<&Candidate> {
        r.map_or_else(Vec::new, |r| {
            cands.iter().filter(|c| c.region == r).collect()
        })
    };
    // The client's region, else the default region, else everyone: a region with nothing healthy must
    // not black-hole its clients.
    let mut set = in_region(region);
    if set.is_empty() {
        set = in_region(resolver.default_region());
    }
    if set.is_empty() {
        set = cands.iter().collect();
    }
    Picked {
        addrs: rotate(&set, ctx.counter, want),
        scope_prefix,
    }
}

fn latency(cands: &[Candidate], max_latency: Duration, counter: u64, want: usize) -> Vec<IpAddr> {
    let mut measured: Vec<(&Candidate, Duration)> = cands
        .iter()
        .filter_map(|c| c.latency.map(|l| (c, l)))
        .collect();
    if measured.is_empty() {
        let all: Vec<&Candidate> = cands.iter().collect();
        return rotate(&all, counter, want);
    }
    // Drop the slow ones, unless that would drop everyone: a slow answer beats none.
    if measured.iter().any(|&(_, l)| l <= max_latency) {
        measured.retain(|&(_, l)| l <= max_latency);
    }
    measured.sort_by_key(|&(c, l)| (l, c.order));
    measured.iter().take(want).map(|(c, _)| c.addr).collect()
}
