//! UDP datagrams in and out of a listener, answered from the address each query was sent to. A socket
//! bound to a wildcard address (`0.0.0.0`, `[::]`) would otherwise reply from the address the kernel
//! picks for the route back, the interface's primary one: a client that asked another address of the
//! host (a second address, a service address) drops that reply. So a wildcard listener asks for each
//! datagram's destination (`IP_PKTINFO`, `IPV6_RECVPKTINFO`, which also covers IPv4 on a dual-stack
//! socket) and sends the reply from it; a listener bound to one address needs neither.

use std::{
    io::{self, IoSlice, IoSliceMut},
    net::SocketAddr,
    os::fd::AsRawFd as _,
};

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, sendmsg, setsockopt,
    sockopt,
};
use socket2::Socket;
use tokio::{io::Interest, net::UdpSocket};

/// The address a datagram was sent to, as the kernel gave it.
#[derive(Clone, Copy)]
pub(super) enum Dest {
    V4(libc::in_pktinfo),
    V6(libc::in6_pktinfo),
}

/// Asks the kernel for each datagram's destination when `addr` is a wildcard.
pub(super) fn want_destinations(s: &Socket, addr: SocketAddr) -> io::Result<()> {
    if !addr.ip().is_unspecified() {
        return Ok(());
    }
    if addr.is_ipv6() {
        setsockopt(s, sockopt::Ipv6RecvPacketInfo, &true)?;
    } else {
        setsockopt(s, sockopt::Ipv4PacketInfo, &true)?;
    }
    Ok(())
}

/// A listener's socket, with room for the destination of each datagram when it is a wildcard.
pub(super) struct Datagrams {
    sock: UdpSocket,
    /// The control-message buffer, when destinations are asked for.
    cmsg: Option<Vec<u8>>,
}

impl Datagrams {
    pub(super) fn new(sock: UdpSocket) -> io::Result<Self> {
        let wildcard = sock.local_addr()?.ip().is_unspecified();
        Ok(Self {
            sock,
            cmsg: wildcard.then(|| nix::cmsg_space!(libc::in6_pktinfo, libc::in_pktinfo)),
        })
    }

    /// The next datagram into `buf`: its length, its sender, and where it was sent to (wildcard
    /// listeners only).
    pub(super) async fn recv(
        &mut self,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddr, Option<Dest>)> {
        let Some(cmsg) = self.cmsg.as_mut() else {
            let (len, peer) = self.sock.recv_from(buf).await?;
            return Ok((len, peer, None));
        };
        let fd = self.sock.as_raw_fd();
        self.sock
            .async_io(Interest::READABLE, || {
                let mut iov = [IoSliceMut::new(buf)];
                let msg = recvmsg::<SockaddrStorage>(
                    fd,
                    &mut iov,
                    Some(cmsg.as_mut_slice()),
                    MsgFlags::empty(),
                )
                .map_err(io::Error::from)?;
                let peer = msg
                    .address
                    .as_ref()
                    .and_then(std_addr)
                    .ok_or_else(|| io::Error::other("a datagram without a source address"))?;
                let dest = msg.cmsgs().ok().and_then(|mut c| {
                    c.find_map(|c| match c {
                        ControlMessageOwned::Ipv4PacketInfo(i) => Some(Dest::V4(i)),
                        ControlMessageOwned::Ipv6PacketInfo(i) => Some(Dest::V6(i)),
                        _ => None,
                    })
                });
                Ok((msg.bytes, peer, dest))
            })
            .await
    }

    /// Sends `bytes` to `peer`, from `dest` when the query's destination is known.
    pub(super) async fn send(
        &self,
        bytes: &[u8],
        peer: SocketAddr,
        dest: Option<Dest>,
    ) -> io::Result<()> {
        let Some(dest) = dest else {
            return self.sock.send_to(bytes, peer).await.map(drop);
        };
        // The reply leaves by the route back to the client; only its source is fixed.
        let from = match dest {
            Dest::V4(i) => Dest::V4(libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: i.ipi_spec_dst,
                ipi_addr: libc::in_addr { s_addr: 0 },
            }),
            Dest::V6(i) => Dest::V6(libc::in6_pktinfo {
                ipi6_addr: i.ipi6_addr,
                // A link-local address means nothing without its interface.
                ipi6_ifindex: if i.ipi6_addr.s6_addr[0] == 0xfe
                    && i.ipi6_addr.s6_addr[1] & 0xc0 == 0x80
                {
                    i.ipi6_ifindex
                } else {
                    0
                },
            }),
        };
        let to = SockaddrStorage::from(peer);
        let fd = self.sock.as_raw_fd();
        self.sock
            .async_io(Interest::WRITABLE, || {
                let iov = [IoSlice::new(bytes)];
                let cmsg = match &from {
                    Dest::V4(i) => ControlMessage::Ipv4PacketInfo(i),
                    Dest::V6(i) => ControlMessage::Ipv6PacketInfo(i),
                };
                sendmsg(fd, &iov, &[cmsg], MsgFlags::empty(), Some(&to))
                    .map(drop)
                    .map_err(io::Error::from)
            })
            .await
    }
}

fn std_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}
