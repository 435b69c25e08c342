//! Gossip between agents and overwatches over UDP: SWIM membership (foca) and agents' health reports,
//! every datagram sealed ([`seal`]). [`node`] runs the socket; [`wire`] is what reports look like;
//! [`member`] is who is in the cluster.

pub mod member;
pub mod node;
pub mod seal;
pub mod wire;
