//! Who is in the cluster: the SWIM identity of agents and overwatches, and how a node finds the address
//! its peers reach it at.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

use serde::{Deserialize, Serialize};

/// What a member does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Runs beside an app and reports on its backends.
    Agent,
    /// Answers DNS from the agents' reports.
    Overwatch,
}

impl Role {
    /// The name logs and metrics show.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Overwatch => "overwatch",
        }
    }
}

/// A member's SWIM identity: its role, its name (an agent's id, an overwatch's `node_id`), the address
/// its gossip socket is reached at, and an incarnation that a restart or a rejoin after being declared
/// down raises, so the newer one wins an address conflict.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    /// Agent or overwatch.
    pub role: Role,
    /// The agent's id or the overwatch's node id.
    pub name: String,
    /// Where its gossip socket is reached.
    pub addr: SocketAddr,
    /// Raised on every start and rejoin.
    pub incarnation: u64,
}

impl Member {
    /// A member starting now: the incarnation is the wall clock in ms, so a restart outranks its
    /// previous life.
    pub fn new(role: Role, name: String, addr: SocketAddr) -> Self {
        Self {
            role,
            name,
            addr,
            incarnation: super::unix_ms(),
        }
    }
}

impl foca::Identity for Member {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            incarnation: self.incarnation.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.incarnation > adversary.incarnation
    }
}

/// This host's name: an overwatch's default node id, and the start of an agent's id.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The local address the kernel would send from to reach `dst`. A UDP `connect` only looks up the
/// route: nothing is sent.
pub fn source_address_towards(dst: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = match dst {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any).ok()?;
    socket.connect(dst).ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

/// The address peers should use for a socket bound to `bound`: the bound address itself unless it is a
/// wildcard, else [`reachable_ip`] with the bound port.
pub fn advertised(bound: SocketAddr, towards: Option<SocketAddr>) -> SocketAddr {
    if !bound.ip().is_unspecified() {
        return bound;
    }
    SocketAddr::new(reachable_ip(towards), bound.port())
}

/// The address this host is reached at by a socket bound to a wildcard: the source address towards
/// `towards` (a seed), else the first non-loopback address of an interface, else loopback.
pub fn reachable_ip(towards: Option<SocketAddr>) -> IpAddr {
    towards
        .and_then(source_address_towards)
        .or_else(first_interface_address)
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// The first IPv4 address, by interface name, that is not loopback; read through `getifaddrs`, so it is
/// this network namespace's (sysfs may show another's).
fn first_interface_address() -> Option<IpAddr> {
    let mut addrs = crate::net::all().ok()?;
    addrs.sort();
    addrs
        .into_iter()
        .map(|(_, a)| a)
        .find(|a| a.is_ipv4() && !a.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity as _;

    #[test]
    fn renewal_wins_conflicts() {
        let m = Member::new(Role::Agent, "a".into(), "127.0.0.1:7000".parse().unwrap());
        let r = m.renew().unwrap();
        assert!(r.win_addr_conflict(&m));
        assert!(!m.win_addr_conflict(&r));
        assert_eq!(r.addr(), m.addr);
    }

    #[test]
    fn advertised_keeps_a_specific_bind_and_routes_a_wildcard() {
        let b: SocketAddr = "127.0.0.2:7946".parse().unwrap();
        assert_eq!(advertised(b, None), b);
        let w: SocketAddr = "0.0.0.0:7946".parse().unwrap();
        let a = advertised(w, Some("127.0.0.1:9".parse().unwrap()));
        assert_eq!(a, "127.0.0.1:7946".parse().unwrap());
    }
}
