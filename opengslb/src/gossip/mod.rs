//! Gossip between agents and overwatches: SWIM membership and health reports over UDP. For now only the
//! datagram sealing layer ([`seal`]), which every datagram passes through in both directions.

pub mod seal;
