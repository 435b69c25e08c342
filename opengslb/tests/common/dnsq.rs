//! A small DNS client for the tests: A queries over UDP, plain (XDP answers them) or with EDNS Client
//! Subnet (XDP passes those to userspace).

use std::{
    io::ErrorKind,
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Edns, Message, Query},
    rr::{Name, RData, RecordType, rdata::opt::ClientSubnet, rdata::opt::EdnsOption},
};

/// An OPT record carrying Client Subnet 198.51.100.0/24 (a documentation prefix).
pub fn ecs_edns() -> Edns {
    subnet_edns(Ipv4Addr::new(198, 51, 100, 0).into(), 24)
}

/// An OPT record carrying Client Subnet `addr`/`prefix`.
pub fn subnet_edns(addr: IpAddr, prefix: u8) -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(1232);
    e.options_mut()
        .insert(EdnsOption::Subnet(ClientSubnet::new(addr, prefix, 0)));
    e
}

/// A UDP socket connected to one server; create it inside the namespace the server runs in.
pub struct Asker {
    sock: UdpSocket,
    id: u16,
    timeout: Duration,
}

impl Asker {
    /// A socket connected to `server`.
    pub fn new(server: SocketAddr) -> Self {
        Self::from("127.0.0.1:0".parse().expect("address"), server)
    }

    /// A socket bound to `local` (`0.0.0.0:0` for a server across a veth pair: a loopback source
    /// never leaves `lo`), connected to `server`.
    pub fn from(local: SocketAddr, server: SocketAddr) -> Self {
        let sock = UdpSocket::bind(local).expect("bind");
        sock.connect(server).expect("connect");
        Self {
            sock,
            id: 1,
            timeout: Duration::from_secs(3),
        }
    }

    /// How long [`a`](Self::a) waits for a reply (3 s unless set): a poller that measures times sets it
    /// short, so one lost datagram costs a retry rather than seconds of blindness.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The A records of `name`, sorted; `None` when no reply came within the timeout, 3 s by default (a
    /// debug-build server on a loaded machine can be slow; inside a wait loop only a failure waits that
    /// long). With `ecs` the query carries Client Subnet.
    pub fn a(&mut self, name: &str, ecs: bool) -> Option<Vec<Ipv4Addr>> {
        self.a_with(name, ecs.then(ecs_edns))
    }

    /// [`a`](Self::a), the query carrying Client Subnet `addr`/`prefix`.
    pub fn a_for(&mut self, name: &str, addr: IpAddr, prefix: u8) -> Option<Vec<Ipv4Addr>> {
        self.a_with(name, Some(subnet_edns(addr, prefix)))
    }

    fn a_with(&mut self, name: &str, edns: Option<Edns>) -> Option<Vec<Ipv4Addr>> {
        self.id = self.id.wrapping_add(1);
        let mut m = Message::query();
        m.metadata.id = self.id;
        m.add_query(Query::query(
            Name::from_ascii(name).expect("name"),
            RecordType::A,
        ));
        if let Some(e) = edns {
            m.set_edns(e);
        }
        self.sock.send(&m.to_vec().expect("encode")).ok()?;
        let deadline = Instant::now() + self.timeout;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).ok()?;
            match self.sock.recv(&mut buf) {
                Ok(n) if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == self.id => {
                    let r = Message::from_vec(&buf[..n]).ok()?;
                    let mut v: Vec<Ipv4Addr> = r
                        .answers
                        .iter()
                        .filter_map(|rr| match &rr.data {
                            RData::A(a) => Some(a.0),
                            _ => None,
                        })
                        .collect();
                    v.sort();
                    return Some(v);
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    /// The answers of both paths, when they agree.
    pub fn both(&mut self, name: &str) -> Option<Vec<Ipv4Addr>> {
        let xdp = self.a(name, false)?;
        let user = self.a(name, true)?;
        (xdp == user).then_some(xdp)
    }
}
