//! The kernel's TCP connections and their round-trip times, by `NETLINK_SOCK_DIAG` (`INET_DIAG`, the
//! interface `ss -ti` reads): one dump per family of the established TCP sockets, each with its
//! `struct tcp_info`. Nothing is captured; the kernel's own smoothed RTT (`tcpi_rtt`) is read as it is.
//! Only the sockets of the agent's network namespace are seen, and reading them needs no privilege.
//!
//! The messages are laid out by hand (`linux/inet_diag.h`, `linux/sock_diag.h`, `linux/tcp.h`): they are
//! fixed, small and stable ABI, and a malformed or truncated reply is an error, never a panic.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::Duration,
};

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const TCP_ESTABLISHED: u32 = 1;
/// `INET_DIAG_INFO`: the attribute holding `struct tcp_info`.
const INET_DIAG_INFO: u16 = 2;
/// `struct nlmsghdr`.
const NLMSG_HDR: usize = 16;
/// `struct inet_diag_msg`: family, state, timer, retrans, the 48-byte socket id, then five u32.
const DIAG_MSG: usize = 72;
/// The offset of `tcpi_rtt` (µs) in `struct tcp_info`: eight u8 fields, then u32s from `tcpi_rto`.
const TCPI_RTT: usize = 68;

/// One established TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conn {
    /// Our end.
    pub local: SocketAddr,
    /// The client's address (an IPv4-mapped IPv6 one as IPv4).
    pub remote: IpAddr,
    /// The kernel's smoothed round-trip time.
    pub rtt: Duration,
    /// The socket's cookie: the same connection across reads.
    pub cookie: u64,
}

/// Every established TCP connection of this network namespace, IPv4 and IPv6, whose local port is in
/// `ports`.
pub fn established(ports: &[u16]) -> io::Result<Vec<Conn>> {
    let mut out = Vec::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        dump(family, ports, &mut out)?;
    }
    Ok(out)
}

fn netlink_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned from here on.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let timeout = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: a valid timeval for SO_RCVTIMEO, so a kernel that never answers cannot hang the poller.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::from_ref(&timeout).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    Ok(fd)
}

/// The dump request: `nlmsghdr` then `inet_diag_req_v2` asking for established TCP sockets with
/// their `tcp_info`.
fn request(family: libc::c_int) -> Vec<u8> {
    let len: u32 = 16 + 56;
    let mut m = Vec::with_capacity(len as usize);
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    m.push(u8::try_from(family).unwrap_or(0)); // sdiag_family
    m.push(libc::IPPROTO_TCP as u8); // sdiag_protocol
    m.push(1 << (INET_DIAG_INFO - 1)); // idiag_ext
    m.push(0); // pad
    m.extend_from_slice(&(1u32 << TCP_ESTABLISHED).to_ne_bytes()); // idiag_states
    m.resize(len as usize, 0); // the socket id: all wildcards
    m
}

fn dump(family: libc::c_int, ports: &[u16], out: &mut Vec<Conn>) -> io::Result<()> {
    let fd = netlink_socket()?;
    let req = request(family);
    // SAFETY: sends a buffer we own; an unbound netlink socket sends to the kernel.
    let sent = unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: receives into a buffer we own, at most its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = usize::try_from(n).unwrap_or(0);
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "sock_diag: empty read",
            ));
        }
        if parse(&buf[..n], ports, out)? {
            return Ok(());
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag: {what}"))
}

/// Reads one datagram of netlink messages into `out`; true once the dump is done.
fn parse(mut b: &[u8], ports: &[u16], out: &mut Vec<Conn>) -> io::Result<bool> {
    while b.len() >= NLMSG_HDR {
        let len = u32_at(b, 0).ok_or_else(|| malformed("header"))? as usize;
        let kind = u16_at(b, 4).ok_or_else(|| malformed("header"))?;
        if len < NLMSG_HDR || len > b.len() {
            return Err(malformed("message length"));
        }
        let body = &b[NLMSG_HDR..len];
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = u32_at(body, 0).map_or(0, |e| e as i32);
                return Err(io::Error::from_raw_os_error(-errno));
            }
            SOCK_DIAG_BY_FAMILY => {
                if let Some(c) = conn(body)
                    && ports.contains(&c.local.port())
                {
                    out.push(c);
                }
            }
            _ => {}
        }
        b = b.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    Ok(false)
}

/// One `inet_diag_msg` and its attributes; `None` when it is not a usable TCP connection.
fn conn(m: &[u8]) -> Option<Conn> {
    let family = i32::from(*m.first()?);
    let id = m.get(4..52)?;
    let sport = u16::from_be_bytes(id.get(0..2)?.try_into().ok()?);
    let addr = |at: usize| -> Option<IpAddr> {
        let raw = id.get(at..at + 16)?;
        Some(if family == libc::AF_INET {
            IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(raw).ok()?)).to_canonical()
        })
    };
    let local = SocketAddr::new(addr(4)?, sport);
    let remote = addr(20)?;
    let cookie = u64::from(u32_at(id, 40)?) | (u64::from(u32_at(id, 44)?) << 32);
    let mut attrs = m.get(DIAG_MSG..)?;
    while attrs.len() >= 4 {
        let len = usize::from(u16_at(attrs, 0)?);
        let kind = u16_at(attrs, 2)?;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == INET_DIAG_INFO {
            let rtt_us = u32_at(&attrs[4..len], TCPI_RTT)?;
            return Some(Conn {
                local,
                remote,
                rtt: Duration::from_micros(u64::from(rtt_us)),
                cookie,
            });
        }
        attrs = attrs.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    None
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;

    #[test]
    fn reads_the_established_connections_of_a_port_with_their_rtt() {
        for host in ["127.0.0.1", "::1"] {
            let Ok(listener) = TcpListener::bind((host, 0)) else {
                println!("{host}: no such address here, skipped");
                continue;
            };
            let port = listener.local_addr().unwrap().port();
            let other = TcpListener::bind((host, 0)).unwrap();
            let _clients: Vec<TcpStream> = (0..3)
                .map(|_| TcpStream::connect(listener.local_addr().unwrap()).unwrap())
                .collect();
            let _elsewhere = TcpStream::connect(other.local_addr().unwrap()).unwrap();
            let accepted: Vec<TcpStream> = (0..3).map(|_| listener.accept().unwrap().0).collect();
            let conns = established(&[port]).expect("sock_diag");
            println!("{host}: {conns:?}");
            // Our accepted ends: the local port is the listener's, the remote a client's.
            let ours: Vec<&Conn> = conns.iter().filter(|c| c.local.port() == port).collect();
            assert_eq!(ours.len(), accepted.len(), "{conns:?}");
            let want: IpAddr = host.parse().unwrap();
            for c in &ours {
                assert_eq!(c.remote, want);
                assert!(
                    c.rtt > Duration::ZERO && c.rtt < Duration::from_secs(1),
                    "{c:?}"
                );
            }
            let mut cookies: Vec<u64> = ours.iter().map(|c| c.cookie).collect();
            cookies.dedup();
            assert_eq!(cookies.len(), 3, "each connection its own cookie");
            assert!(
                conns.iter().all(|c| c.local.port() == port),
                "no other port"
            );
        }
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        let mut out = Vec::new();
        assert!(parse(&[0xff; 16], &[80], &mut out).is_err());
        assert!(parse(&[16, 0, 0, 0, 20, 0], &[80], &mut out).is_ok_and(|done| !done));
        let mut short = vec![0u8; 40];
        short[0] = 40;
        short[4] = 20;
        assert!(parse(&short, &[80], &mut out).is_ok());
        assert!(out.is_empty());
        assert_eq!(conn(&[2; 10]), None);
    }
}
