//! The gate and the reply: parse Ethernet (one 802.1Q tag), IPv4 or IPv6, UDP to a listen address and the
//! DNS port; copy the DNS message to scratch and let the shared wire code decide; then rebuild the frame
//! in place as the reply.

use aya_ebpf::{
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    maps::lpm_trie::Key,
    programs::XdpContext,
};
use opengslb_common::{
    bounds::opaque,
    counters::Counter,
    csum,
    dns::{QBUF, RBUF, Scratch, build_reply_for, launder_query, names_equal, parse_query},
    maps::{GeoKey, ListenKey, QTYPE_A, RecordKey, RecordValue, geo_key_v4, policy},
};

use crate::{
    CONFIG, GEO, LISTEN, RECORDS, ROTATION, SCRATCH,
    ptr::{be16, load_bytes, read, store_bytes, verifier_clamp, write},
    stats,
};

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_ICMPV6: u8 = 58;
const REPLY_HOP_LIMIT: u8 = 64;

/// Where the headers sit in this frame.
struct Frame {
    l3: usize,
    v6: bool,
    dns: usize,
    dns_len: usize,
}

/// Answers the frame in place (`Ok`: send it back with `XDP_TX`) or says why not (`Err`: pass it).
#[inline(always)]
pub fn answer(ctx: &XdpContext) -> Result<Counter, Counter> {
    // SAFETY: the array has one entry, always present; the value is plain data.
    let cfg = unsafe { *CONFIG.get_ptr(0).ok_or(Counter::Internal)? };
    let f = frame(ctx, cfg.port)?;
    // Longer messages are not read at all (clamping the length below would parse a prefix of them).
    if f.dns_len > QBUF {
        return Err(Counter::TooLong);
    }
    let scratch = SCRATCH.get_ptr_mut(0).ok_or(Counter::Internal)?;
    // SAFETY: a per-CPU map value; XDP does not nest on a CPU, so we are its only user now.
    let scratch: &mut Scratch = unsafe { &mut *scratch };
    // verifier: merge the VLAN and address-family paths here rather than walk the rest once per path.
    let f = {
        let [a, b, c, _] = &mut scratch.opaque;
        let l3 = verifier_clamp(opaque(a, f.l3 as u64) as usize, 18);
        let v6 = opaque(b, u64::from(f.v6)) != 0;
        let dns_len = verifier_clamp(opaque(c, f.dns_len as u64) as usize, QBUF);
        Frame {
            l3,
            v6,
            dns: l3 + if v6 { 48 } else { 28 },
            dns_len,
        }
    };

    let len = verifier_clamp(f.dns_len, QBUF);
    if len == 0 {
        return Err(Counter::Truncated);
    }
    if !load_bytes(ctx, f.dns, &mut scratch.query, len) {
        return Err(Counter::LoadStore);
    }
    let q = parse_query(scratch, len)?;

    let key = RecordKey::new(q.qtype, q.hash);
    let rec = RECORDS.get_ptr(&key).ok_or(Counter::UnknownName)?;
    // SAFETY: with BPF_F_NO_PREALLOC the element stays valid for this RCU read section even if userspace
    // replaces it meanwhile.
    let rec: &RecordValue = unsafe { &*rec };
    if usize::from(rec.name_len) != q.name_len || !names_equal(&scratch.name, &rec.name, q.name_len)
    {
        return Err(Counter::Collision);
    }
    let rot = ROTATION.get_ptr_mut(rec.slot).ok_or(Counter::Internal)?;
    // SAFETY: per-CPU slot, as for the scratch buffer.
    let rotation = unsafe {
        let r = *rot;
        *rot = r.wrapping_add(1);
        r
    };
    let q = launder_query(scratch, q);
    // Geolocation: the source address's region (0: the trie does not place it). After the query is
    // laundered (before, this would be walked once per name length), and from laundered copies of the
    // frame's fields, so the branches here narrow nothing the rest uses.
    let is_geo = opaque(&mut scratch.opaque[2], u64::from(rec.policy)) == u64::from(policy::GEO);
    let region = if is_geo {
        let [a, b, ..] = &mut scratch.opaque;
        let l3 = verifier_clamp(opaque(a, f.l3 as u64) as usize, 18);
        let v6 = opaque(b, u64::from(f.v6)) != 0;
        client_region(ctx, scratch, l3, v6)
    } else {
        0
    };
    // verifier: one state whether or not (and how) the trie was asked.
    let region = opaque(&mut scratch.opaque[0], u64::from(region)) as u8;
    let reply_len = build_reply_for(scratch, &q, rec, rotation, cfg.udp_size, region)?;
    let reply_len = verifier_clamp(reply_len, RBUF);
    if reply_len == 0 {
        return Err(Counter::Internal);
    }

    // verifier: merge every path that got here (record type, EDNS, answer count, ...) before growing the
    // frame and rewriting its headers, which would otherwise be walked once per path.
    let (f, reply_len, is_a) = merge(scratch, &f, reply_len, q.qtype == QTYPE_A)?;
    let old_len = (ctx.data_end() - ctx.data()) as i64;
    let delta = (f.dns + reply_len) as i64 - old_len;
    // SAFETY: helper calls on our own context; they invalidate every packet pointer, and none is kept
    // across them (the ptr helpers re-derive from `ctx` on each access).
    if delta != 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta as i32) } != 0 {
        // No tailroom: frames a local socket sent over veth in native mode have almost none. Grow at the
        // head instead (native XDP guarantees 256 bytes of headroom) and move the headers forward.
        grow_head(ctx, scratch, f.dns, delta)?;
        stats::bump(Counter::GrewHead);
    }
    // verifier: and merge the grown-at-the-tail and grown-at-the-head paths.
    let (f, reply_len, is_a) = merge(scratch, &f, reply_len, is_a)?;
    // The frame now ends at dns + reply_len.
    if !store_bytes(ctx, f.dns, &mut scratch.reply, reply_len) {
        return Err(Counter::LoadStore);
    }
    let Scratch {
        reply,
        opaque: [.., slot],
        ..
    } = scratch;
    turn_around(ctx, &f, reply_len, reply, slot)?;
    Ok(if is_a {
        Counter::AnsweredA
    } else {
        Counter::AnsweredAaaa
    })
}

/// The region id the geolocation trie gives the packet's source address (IPv4 as `::ffff:a.b.c.d`), or 0.
#[inline(always)]
fn client_region(ctx: &XdpContext, scratch: &mut Scratch, l3: usize, v6: bool) -> u8 {
    // The key lives in map memory, as the lookup helper allows, so the paths that fill it leave no
    // different stack behind.
    let data = if v6 {
        read::<16>(ctx, l3 + 8)
    } else {
        read::<4>(ctx, l3 + 12).map(geo_key_v4)
    };
    let Some(data) = data else {
        return 0;
    };
    scratch.geo_key = GeoKey {
        prefix_len: 128,
        data,
    };
    // SAFETY: `GeoKey` is `#[repr(C)]` u32 + [u8; 16] with no padding, the layout of `Key<[u8; 16]>`
    // (packed, alignment 1; the assertion below pins the size), and at least as aligned.
    let key: &Key<[u8; 16]> = unsafe { &*(&raw const scratch.geo_key).cast() };
    GEO.get(key).copied().unwrap_or(0)
}

const _: () = assert!(
    size_of::<GeoKey>() == size_of::<Key<[u8; 16]>>()
        && align_of::<GeoKey>() >= align_of::<Key<[u8; 16]>>()
);

/// Passes what the rest of the program needs through map memory (see `bounds::opaque`), so that every
/// path arriving here continues as one.
#[inline(always)]
fn merge(
    scratch: &mut Scratch,
    f: &Frame,
    reply_len: usize,
    is_a: bool,
) -> Result<(Frame, usize, bool), Counter> {
    let [a, b, c, d] = &mut scratch.opaque;
    let l3 = verifier_clamp(opaque(a, f.l3 as u64) as usize, 18);
    let v6 = opaque(b, u64::from(f.v6)) != 0;
    let reply_len = verifier_clamp(opaque(c, reply_len as u64) as usize, RBUF);
    let is_a = opaque(d, u64::from(is_a)) != 0;
    let dns = l3 + if v6 { 48 } else { 28 };
    // verifier: the helpers that take `reply_len` as a size refuse a possible zero.
    if reply_len == 0 {
        return Err(Counter::Internal);
    }
    Ok((
        Frame {
            l3,
            v6,
            dns,
            dns_len: 0,
        },
        reply_len,
        is_a,
    ))
}

/// Grows the frame by `delta` bytes at its head, keeping the first `hdr_len` bytes (the headers) at the
/// new start, so the frame looks as if it had been grown at its tail.
#[inline(always)]
fn grow_head(
    ctx: &XdpContext,
    scratch: &mut Scratch,
    hdr_len: usize,
    delta: i64,
) -> Result<(), Counter> {
    if delta <= 0 || delta > RBUF as i64 || !load_bytes(ctx, 0, &mut scratch.headers, hdr_len) {
        return Err(Counter::AdjustTail);
    }
    // SAFETY: a helper call on our own context; no packet pointer is kept across it.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(delta as i32)) } != 0 {
        return Err(Counter::AdjustTail);
    }
    if !store_bytes(ctx, 0, &mut scratch.headers, hdr_len) {
        return Err(Counter::LoadStore);
    }
    Ok(())
}

/// Parses the headers down to the DNS message.
#[inline(always)]
fn frame(ctx: &XdpContext, port: u16) -> Result<Frame, Counter> {
    let mut ethertype = be16(ctx, 12).ok_or(Counter::Malformed)?;
    let mut l3 = 14;
    if ethertype == ETH_P_8021Q {
        ethertype = be16(ctx, 16).ok_or(Counter::Malformed)?;
        l3 = 18;
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            return Err(Counter::Vlan);
        }
    } else if ethertype == ETH_P_8021AD {
        return Err(Counter::Vlan);
    }
    let frame_len = ctx.data_end() - ctx.data();
    match ethertype {
        ETH_P_IPV4 => {
            let ip: [u8; 20] = read(ctx, l3).ok_or(Counter::Malformed)?;
            let [vihl, _, tl0, tl1, _, _, fr0, fr1, _, proto, ..] = ip;
            if vihl >> 4 != 4 {
                return Err(Counter::Malformed);
            }
            if vihl != 0x45 {
                return Err(Counter::Ipv4Options);
            }
            if u16::from_be_bytes([fr0, fr1]) & 0x3fff != 0 {
                return Err(Counter::Fragment);
            }
            if proto != IPPROTO_UDP {
                return Err(Counter::NotUdp);
            }
            let udp: [u8; 8] = read(ctx, l3 + 20).ok_or(Counter::Malformed)?;
            let [_, _, dp0, dp1, ul0, ul1, _, _] = udp;
            if u16::from_be_bytes([dp0, dp1]) != port || port == 0 {
                return Err(Counter::WrongPort);
            }
            let [.., d0, d1, d2, d3] = ip;
            if LISTEN.get_ptr(&ListenKey::v4([d0, d1, d2, d3])).is_none() {
                return Err(Counter::WrongAddr);
            }
            let total = usize::from(u16::from_be_bytes([tl0, tl1]));
            let udp_len = usize::from(u16::from_be_bytes([ul0, ul1]));
            if udp_len < 8 || udp_len + 20 != total || l3 + total > frame_len {
                return Err(Counter::Malformed);
            }
            Ok(Frame {
                l3,
                v6: false,
                dns: l3 + 28,
                dns_len: udp_len - 8,
            })
        }
        ETH_P_IPV6 => {
            let ip: [u8; 40] = read(ctx, l3).ok_or(Counter::Malformed)?;
            let [v, _, _, _, pl0, pl1, next, ..] = ip;
            if v >> 4 != 6 {
                return Err(Counter::Malformed);
            }
            match next {
                IPPROTO_UDP => {}
                IPPROTO_TCP | IPPROTO_ICMPV6 => return Err(Counter::NotUdp),
                _ => return Err(Counter::Ipv6Ext),
            }
            let udp: [u8; 8] = read(ctx, l3 + 40).ok_or(Counter::Malformed)?;
            let [_, _, dp0, dp1, ul0, ul1, _, _] = udp;
            if u16::from_be_bytes([dp0, dp1]) != port || port == 0 {
                return Err(Counter::WrongPort);
            }
            let dst: [u8; 16] = read(ctx, l3 + 24).ok_or(Counter::Malformed)?;
            if LISTEN.get_ptr(&ListenKey::v6(dst)).is_none() {
                return Err(Counter::WrongAddr);
            }
            let payload = usize::from(u16::from_be_bytes([pl0, pl1]));
            let udp_len = usize::from(u16::from_be_bytes([ul0, ul1]));
            if udp_len < 8 || udp_len != payload || l3 + 40 + payload > frame_len {
                return Err(Counter::Malformed);
            }
            Ok(Frame {
                l3,
                v6: true,
                dns: l3 + 48,
                dns_len: udp_len - 8,
            })
        }
        _ => Err(Counter::NotIp),
    }
}

/// Swaps MACs, addresses and ports, and sets lengths and checksums for a reply of `dns_len` bytes.
#[inline(always)]
fn turn_around(
    ctx: &XdpContext,
    f: &Frame,
    dns_len: usize,
    reply: &[u8; RBUF],
    slot: &mut u64,
) -> Result<(), Counter> {
    let macs: [u8; 12] = read(ctx, 0).ok_or(Counter::Malformed)?;
    let [d0, d1, d2, d3, d4, d5, s0, s1, s2, s3, s4, s5] = macs;
    if !write(ctx, 0, [s0, s1, s2, s3, s4, s5, d0, d1, d2, d3, d4, d5]) {
        return Err(Counter::Malformed);
    }
    let udp_len = (dns_len + 8) as u16;
    let l4 = if f.v6 { f.l3 + 40 } else { f.l3 + 20 };
    let ports: [u8; 4] = read(ctx, l4).ok_or(Counter::Malformed)?;
    let [sp0, sp1, dp0, dp1] = ports;
    let [ul0, ul1] = udp_len.to_be_bytes();
    let mut udp = [dp0, dp1, sp0, sp1, ul0, ul1, 0, 0];
    if f.v6 {
        let mut ip: [u8; 40] = read(ctx, f.l3).ok_or(Counter::Malformed)?;
        // From the one read: the verifier wants every access checked on the pointer it uses.
        let src = sub16(&ip, 8);
        let dst = sub16(&ip, 24);
        // Payload length, hop limit, then the addresses swapped.
        let [p0, p1] = udp_len.to_be_bytes();
        set(&mut ip, 4, p0);
        set(&mut ip, 5, p1);
        set(&mut ip, 7, REPLY_HOP_LIMIT);
        for i in 0..16 {
            set(&mut ip, 8 + i, dst.get(i).copied().unwrap_or(0));
            set(&mut ip, 24 + i, src.get(i).copied().unwrap_or(0));
        }
        // verifier: forget which iteration the summing loop left on.
        let payload_sum = opaque(slot, csum::add_bytes(0, reply, dns_len));
        let [c0, c1] = csum::udp6(&dst, &src, &udp, dns_len, payload_sum).to_be_bytes();
        set(&mut udp, 6, c0);
        set(&mut udp, 7, c1);
        if !write(ctx, f.l3, ip) {
            return Err(Counter::Malformed);
        }
    } else {
        let mut ip: [u8; 20] = read(ctx, f.l3).ok_or(Counter::Malformed)?;
        let [t0, t1] = (dns_len as u16 + 28).to_be_bytes();
        set(&mut ip, 2, t0);
        set(&mut ip, 3, t1);
        set(&mut ip, 8, REPLY_HOP_LIMIT);
        set(&mut ip, 10, 0);
        set(&mut ip, 11, 0);
        let [.., s0, s1, s2, s3, d0, d1, d2, d3] = ip;
        let (src, dst) = ([s0, s1, s2, s3], [d0, d1, d2, d3]);
        for i in 0..4 {
            set(&mut ip, 12 + i, dst.get(i).copied().unwrap_or(0));
            set(&mut ip, 16 + i, src.get(i).copied().unwrap_or(0));
        }
        let [c0, c1] = csum::ipv4_header(&ip).to_be_bytes();
        set(&mut ip, 10, c0);
        set(&mut ip, 11, c1);
        // UDP checksum 0: legal over IPv4 (RFC 768), and the query's own is only partial on veth.
        if !write(ctx, f.l3, ip) {
            return Err(Counter::Malformed);
        }
    }
    if !write(ctx, l4, udp) {
        return Err(Counter::Malformed);
    }
    Ok(())
}

#[inline(always)]
fn sub16(buf: &[u8; 40], at: usize) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = buf.get(at + i).copied().unwrap_or(0);
    }
    out
}

#[inline(always)]
fn set<const N: usize>(buf: &mut [u8; N], at: usize, v: u8) {
    if let Some(b) = buf.get_mut(at) {
        *b = v;
    }
}
