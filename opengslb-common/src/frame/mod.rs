//! The frame around a DNS query, Ethernet to UDP: the parse that decides whether the XDP program looks at
//! the DNS message at all, and the rewrite that turns the query's headers into the reply's.
//!
//! Both work on a copy of the frame's first [`MAX_HEADERS`] bytes (the program copies them into per-CPU
//! scratch with one helper call and writes them back with another), so host tests run the very code the
//! kernel runs. Accepted: Ethernet with at most one 802.1Q tag; IPv4 without options or fragmentation, or
//! IPv6 without extension headers; UDP to the DNS port and to an address we listen on, with lengths that
//! agree with each other and with the frame. Everything else is a [`Counter`] pass reason.

mod turn;

#[cfg(test)]
mod tests;

pub use turn::{REPLY_HOP_LIMIT, turn_around};

use crate::{counters::Counter, maps::ListenKey};

/// Ethernet header length (IEEE 802.3; no FCS in an XDP frame).
pub const ETH_HLEN: usize = 14;
/// Length of a MAC address.
pub const ETH_ALEN: usize = 6;
/// Offset of the destination MAC.
pub const ETH_DEST: usize = 0;
/// Offset of the source MAC.
pub const ETH_SOURCE: usize = ETH_ALEN;
/// Offset of the EtherType (or of the TPID of a VLAN tag).
pub const ETH_PROTO: usize = 2 * ETH_ALEN;
/// Length of one 802.1Q tag (TPID + TCI).
pub const VLAN_HLEN: usize = 4;

/// EtherType of IPv4.
pub const ETH_P_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// TPID of an 802.1Q tag.
pub const ETH_P_8021Q: u16 = 0x8100;
/// TPID of an 802.1ad (QinQ service) tag.
pub const ETH_P_8021AD: u16 = 0x88a8;

/// IPv4 header length without options (RFC 791 §3.1).
pub const IPV4_HLEN: usize = 20;
/// Offset of version and IHL.
pub const IPV4_VIHL: usize = 0;
/// Version 4, IHL 5: the one IPv4 header shape we parse.
pub const IPV4_VIHL_PLAIN: u8 = 0x45;
/// Offset of the total length.
pub const IPV4_TOT_LEN: usize = 2;
/// Offset of the flags and fragment offset word.
pub const IPV4_FRAG_OFF: usize = 6;
/// MF and the fragment offset: any of them set means a fragment.
pub const IPV4_FRAG_MASK: u16 = 0x3fff;
/// Offset of the TTL.
pub const IPV4_TTL: usize = 8;
/// Offset of the protocol.
pub const IPV4_PROTO: usize = 9;
/// Offset of the header checksum.
pub const IPV4_CHECK: usize = 10;
/// Offset of the source address.
pub const IPV4_SADDR: usize = 12;
/// Offset of the destination address.
pub const IPV4_DADDR: usize = 16;

/// IPv6 header length (RFC 8200 §3).
pub const IPV6_HLEN: usize = 40;
/// Offset of the payload length.
pub const IPV6_PAYLOAD_LEN: usize = 4;
/// Offset of the next header.
pub const IPV6_NEXTHDR: usize = 6;
/// Offset of the hop limit.
pub const IPV6_HOP_LIMIT: usize = 7;
/// Offset of the source address.
pub const IPV6_SADDR: usize = 8;
/// Offset of the destination address.
pub const IPV6_DADDR: usize = 24;

/// UDP header length (RFC 768).
pub const UDP_HLEN: usize = 8;
/// Offset of the source port.
pub const UDP_SOURCE: usize = 0;
/// Offset of the destination port.
pub const UDP_DEST: usize = 2;
/// Offset of the length.
pub const UDP_LEN: usize = 4;
/// Offset of the checksum.
pub const UDP_CHECK: usize = 6;

/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;

/// Where the network header starts in the longest frame we parse (one VLAN tag).
pub const MAX_L3: usize = ETH_HLEN + VLAN_HLEN;
/// The longest header stack before the DNS message: Ethernet, one VLAN tag, IPv6, UDP.
pub const MAX_HEADERS: usize = MAX_L3 + IPV6_HLEN + UDP_HLEN;

/// A datagram's destination address, which [`parse`] asks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// IPv4, network order.
    V4([u8; 4]),
    /// IPv6.
    V6([u8; 16]),
}

impl Dest {
    /// Its key in the listen map.
    pub const fn key(self) -> ListenKey {
        match self {
            Self::V4(a) => ListenKey::v4(a),
            Self::V6(a) => ListenKey::v6(a),
        }
    }
}

/// Where the headers sit in an accepted frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Offset of the IP header: [`ETH_HLEN`], or [`MAX_L3`] after a VLAN tag.
    pub l3: usize,
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// Offset of the DNS message, just past the UDP header.
    pub dns: usize,
    /// Length of the DNS message, from the UDP length.
    pub dns_len: usize,
}

/// Offset of the UDP header for a network header at `l3`.
#[inline(always)]
pub const fn l4_offset(l3: usize, v6: bool) -> usize {
    l3 + if v6 { IPV6_HLEN } else { IPV4_HLEN }
}

/// Offset of the DNS message for a network header at `l3`.
#[inline(always)]
pub const fn dns_offset(l3: usize, v6: bool) -> usize {
    l4_offset(l3, v6) + UDP_HLEN
}

/// Parses the headers of a frame of `frame_len` bytes whose first `min(frame_len, MAX_HEADERS)` bytes
/// are in `hdr` (bytes past that are never read). `port` is the DNS port (0: answer nothing);
/// `listening` says whether a destination address is ours, and is asked only about a UDP datagram to
/// `port`. Each check fails with the counter the program has always used for it, in the same order.
#[inline(always)]
pub fn parse(
    hdr: &[u8; MAX_HEADERS],
    frame_len: usize,
    port: u16,
    listening: impl FnOnce(Dest) -> bool,
) -> Result<Frame, Counter> {
    let b = Bytes { hdr, frame_len };
    let mut ethertype = b.be16(ETH_PROTO).ok_or(Counter::Malformed)?;
    let mut l3 = ETH_HLEN;
    if ethertype == ETH_P_8021Q {
        ethertype = b.be16(ETH_HLEN + VLAN_HLEN - 2).ok_or(Counter::Malformed)?;
        l3 = MAX_L3;
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            return Err(Counter::Vlan);
        }
    } else if ethertype == ETH_P_8021AD {
        return Err(Counter::Vlan);
    }
    match ethertype {
        ETH_P_IPV4 => {
            b.has(l3, IPV4_HLEN).ok_or(Counter::Malformed)?;
            let vihl = b.u8(l3 + IPV4_VIHL).ok_or(Counter::Malformed)?;
            if vihl >> 4 != 4 {
                return Err(Counter::Malformed);
            }
            if vihl != IPV4_VIHL_PLAIN {
                return Err(Counter::Ipv4Options);
            }
            let frag = b.be16(l3 + IPV4_FRAG_OFF).ok_or(Counter::Malformed)?;
            if frag & IPV4_FRAG_MASK != 0 {
                return Err(Counter::Fragment);
            }
            if b.u8(l3 + IPV4_PROTO) != Some(IPPROTO_UDP) {
                return Err(Counter::NotUdp);
            }
            let l4 = l4_offset(l3, false);
            let udp_len = b.udp(l4, port)?;
            let dst = b.array::<4>(l3 + IPV4_DADDR).ok_or(Counter::Malformed)?;
            if !listening(Dest::V4(dst)) {
                return Err(Counter::WrongAddr);
            }
            let total = usize::from(b.be16(l3 + IPV4_TOT_LEN).ok_or(Counter::Malformed)?);
            if udp_len < UDP_HLEN || udp_len + IPV4_HLEN != total || l3 + total > frame_len {
                return Err(Counter::Malformed);
            }
            Ok(Frame {
                l3,
                v6: false,
                dns: dns_offset(l3, false),
                dns_len: udp_len - UDP_HLEN,
            })
        }
        ETH_P_IPV6 => {
            b.has(l3, IPV6_HLEN).ok_or(Counter::Malformed)?;
            if b.u8(l3).ok_or(Counter::Malformed)? >> 4 != 6 {
                return Err(Counter::Malformed);
            }
            match b.u8(l3 + IPV6_NEXTHDR).ok_or(Counter::Malformed)? {
                IPPROTO_UDP => {}
                IPPROTO_TCP | IPPROTO_ICMPV6 => return Err(Counter::NotUdp),
                _ => return Err(Counter::Ipv6Ext),
            }
            let l4 = l4_offset(l3, true);
            let udp_len = b.udp(l4, port)?;
            let dst = b.array::<16>(l3 + IPV6_DADDR).ok_or(Counter::Malformed)?;
            if !listening(Dest::V6(dst)) {
                return Err(Counter::WrongAddr);
            }
            let payload = usize::from(b.be16(l3 + IPV6_PAYLOAD_LEN).ok_or(Counter::Malformed)?);
            if udp_len < UDP_HLEN || udp_len != payload || l3 + IPV6_HLEN + payload > frame_len {
                return Err(Counter::Malformed);
            }
            Ok(Frame {
                l3,
                v6: true,
                dns: dns_offset(l3, true),
                dns_len: udp_len - UDP_HLEN,
            })
        }
        _ => Err(Counter::NotIp),
    }
}

/// The client's address as the geolocation trie keys it (IPv4 mapped as `::ffff:a.b.c.d`), from the
/// headers of an accepted frame whose network header is at `l3`.
#[inline(always)]
pub fn client_key(hdr: &[u8; MAX_HEADERS], l3: usize, v6: bool) -> Option<[u8; 16]> {
    let b = Bytes {
        hdr,
        frame_len: MAX_HEADERS,
    };
    if v6 {
        b.array::<16>(l3 + IPV6_SADDR)
    } else {
        b.array::<4>(l3 + IPV4_SADDR).map(crate::maps::geo_key_v4)
    }
}

/// The frame's leading bytes, of which the first `frame_len` (at most all) exist.
struct Bytes<'a> {
    hdr: &'a [u8; MAX_HEADERS],
    frame_len: usize,
}

impl Bytes<'_> {
    /// Whether `len` bytes at `at` exist: the program checks each header as a whole before reading its
    /// fields, so a cut-short header is `malformed` whatever field it lacks.
    #[inline(always)]
    fn has(&self, at: usize, len: usize) -> Option<()> {
        (at + len <= self.frame_len && at + len <= MAX_HEADERS).then_some(())
    }

    #[inline(always)]
    fn u8(&self, at: usize) -> Option<u8> {
        self.has(at, 1)?;
        self.hdr.get(at).copied()
    }

    #[inline(always)]
    fn be16(&self, at: usize) -> Option<u16> {
        Some(u16::from_be_bytes(self.array::<2>(at)?))
    }

    #[inline(always)]
    fn array<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        self.has(at, N)?;
        let mut out = [0u8; N];
        for (i, o) in out.iter_mut().enumerate() {
            *o = *self.hdr.get(at + i)?;
        }
        Some(out)
    }

    /// The UDP header at `l4`: present (else `malformed`) and to `port` (else `wrong_port`); returns
    /// its length field.
    #[inline(always)]
    fn udp(&self, l4: usize, port: u16) -> Result<usize, Counter> {
        self.has(l4, UDP_HLEN).ok_or(Counter::Malformed)?;
        let dport = self.be16(l4 + UDP_DEST).ok_or(Counter::Malformed)?;
        if dport != port || port == 0 {
            return Err(Counter::WrongPort);
        }
        Ok(usize::from(
            self.be16(l4 + UDP_LEN).ok_or(Counter::Malformed)?,
        ))
    }
}
