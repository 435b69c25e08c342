//! Gossip between agents and overwatches over UDP: SWIM membership (foca) and agents' health reports,
//! every datagram sealed ([`seal`]). [`node`] runs the socket; [`wire`] is what reports look like;
//! [`member`] is who is in the cluster.

/// The wall clock in ms since the Unix epoch, as reports and SWIM incarnations carry it (0 before 1970).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub mod member;
mod metrics;
pub mod node;
pub mod seal;
pub mod wire;
