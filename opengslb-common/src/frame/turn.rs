//! The query's headers turned into the reply's: MACs, addresses and ports swapped, lengths for the reply,
//! a fresh TTL or hop limit, and checksums computed in full. Nothing is updated incrementally: a query
//! sent over veth carries only a partial UDP checksum (CHECKSUM_PARTIAL), which an update would carry on.

use super::{
    ETH_ALEN, ETH_DEST, ETH_HLEN, ETH_SOURCE, Frame, IPV4_CHECK, IPV4_DADDR, IPV4_HLEN, IPV4_SADDR,
    IPV4_TOT_LEN, IPV4_TTL, IPV6_DADDR, IPV6_HOP_LIMIT, IPV6_PAYLOAD_LEN, IPV6_SADDR, MAX_HEADERS,
    MAX_L3, UDP_CHECK, UDP_DEST, UDP_HLEN, UDP_LEN, UDP_SOURCE, l4_offset,
};
use crate::{counters::Counter, csum};

/// The TTL or hop limit of a reply: the query's says how far it came, not how far the reply may go.
pub const REPLY_HOP_LIMIT: u8 = 64;

/// Rewrites the headers of frame `f` (in `hdr`, as [`super::parse`] accepted them) into those of a
/// reply carrying a DNS message of `dns_len` bytes whose [`csum::add_bytes`] sum is `payload_sum` (used
/// over IPv6 only; summed by the caller, which holds the message). Over IPv4 the UDP checksum is 0, which
/// RFC 768 allows; over IPv6 it is computed in full (RFC 8200 §8.1 forbids 0). Fails only for a header shape
/// [`super::parse`] never accepts (the network header at neither [`ETH_HLEN`] nor [`MAX_L3`]).
#[inline(always)]
pub fn turn_around(
    hdr: &mut [u8; MAX_HEADERS],
    f: &Frame,
    dns_len: usize,
    payload_sum: u64,
) -> Result<(), Counter> {
    // One copy of the rewrite per header shape, so that every offset is a constant and each access
    // compiles to a plain load or store (no bounds check, no per-byte loop).
    match (f.l3, f.v6) {
        (ETH_HLEN, false) => turn::<ETH_HLEN, false>(hdr, dns_len, payload_sum),
        (ETH_HLEN, true) => turn::<ETH_HLEN, true>(hdr, dns_len, payload_sum),
        (MAX_L3, false) => turn::<MAX_L3, false>(hdr, dns_len, payload_sum),
        (MAX_L3, true) => turn::<MAX_L3, true>(hdr, dns_len, payload_sum),
        _ => Err(Counter::Malformed),
    }
}

#[inline(always)]
fn turn<const L3: usize, const V6: bool>(
    hdr: &mut [u8; MAX_HEADERS],
    dns_len: usize,
    payload_sum: u64,
) -> Result<(), Counter> {
    let f = Frame {
        l3: L3,
        v6: V6,
        dns: 0,
        dns_len: 0,
    };
    let l4 = l4_offset(L3, V6);
    if l4 + UDP_HLEN > MAX_HEADERS {
        return Err(Counter::Malformed);
    }
    swap::<ETH_ALEN>(hdr, ETH_DEST, ETH_SOURCE);
    swap::<2>(hdr, l4 + UDP_SOURCE, l4 + UDP_DEST);
    let udp_len = (dns_len + UDP_HLEN) as u16;
    put(hdr, l4 + UDP_LEN, udp_len.to_be_bytes());
    put(hdr, l4 + UDP_CHECK, [0, 0]);
    if f.v6 {
        put(hdr, f.l3 + IPV6_PAYLOAD_LEN, udp_len.to_be_bytes());
        put(hdr, f.l3 + IPV6_HOP_LIMIT, [REPLY_HOP_LIMIT]);
        swap::<16>(hdr, f.l3 + IPV6_SADDR, f.l3 + IPV6_DADDR);
        let src = get::<16>(hdr, f.l3 + IPV6_SADDR);
        let dst = get::<16>(hdr, f.l3 + IPV6_DADDR);
        let udp = get::<UDP_HLEN>(hdr, l4);
        let check = csum::udp6(&src, &dst, &udp, dns_len, payload_sum);
        put(hdr, l4 + UDP_CHECK, check.to_be_bytes());
    } else {
        // Wrapping, as the kernel's arithmetic does: `dns_len` is at most `RBUF` there.
        let total = (dns_len as u16).wrapping_add((IPV4_HLEN + UDP_HLEN) as u16);
        put(hdr, f.l3 + IPV4_TOT_LEN, total.to_be_bytes());
        put(hdr, f.l3 + IPV4_TTL, [REPLY_HOP_LIMIT]);
        put(hdr, f.l3 + IPV4_CHECK, [0, 0]);
        swap::<4>(hdr, f.l3 + IPV4_SADDR, f.l3 + IPV4_DADDR);
        let check = csum::ipv4_header(&get::<IPV4_HLEN>(hdr, f.l3));
        put(hdr, f.l3 + IPV4_CHECK, check.to_be_bytes());
    }
    Ok(())
}

/// The `N` bytes at `at` (zeros for any past the end, which callers have ruled out).
#[inline(always)]
fn get<const N: usize>(hdr: &[u8; MAX_HEADERS], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = hdr.get(at + i).copied().unwrap_or(0);
    }
    out
}

#[inline(always)]
fn put<const N: usize>(hdr: &mut [u8; MAX_HEADERS], at: usize, bytes: [u8; N]) {
    for (i, v) in bytes.into_iter().enumerate() {
        if let Some(b) = hdr.get_mut(at + i) {
            *b = v;
        }
    }
}

#[inline(always)]
fn swap<const N: usize>(hdr: &mut [u8; MAX_HEADERS], a: usize, b: usize) {
    let (x, y) = (get::<N>(hdr, a), get::<N>(hdr, b));
    put(hdr, a, y);
    put(hdr, b, x);
}
