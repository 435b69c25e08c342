//! The gate and the reply, as glue around the shared code: copy the frame's headers to scratch and let
//! `opengslb_common::frame` parse them; copy the DNS message to scratch and let the shared wire code
//! decide; then write the reply, grow or shrink the frame to fit, and write back the headers `frame`
//! turned around.

use aya_ebpf::{
    helpers::{bpf_ktime_get_coarse_ns, bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use opengslb_common::{
    bounds::opaque,
    counters::Counter,
    csum,
    dns::{
        QBUF, Query, RBUF, Scratch, build_reply_for, build_truncated, launder_query, names_equal,
        parse_query,
    },
    frame::{self, Dest, Frame, IPV4_SADDR, IPV6_SADDR, MAX_HEADERS, MAX_L3, dns_offset},
    maps::{GeoKey, QTYPE_A, RecordKey, RecordValue, STALE_PASS, XdpConfig, geo_key_v4, policy},
    ratelimit::Verdict,
};

use crate::{
    maps,
    ptr::{headers, load_bytes, store_bytes, verifier_clamp},
};

/// The outcomes of a reply sent, passed through [`merge`] as a number.
const SENT_A: u64 = 0;
const SENT_AAAA: u64 = 1;
const SENT_SLIPPED: u64 = 2;
/// The rate limiter's verdicts that send something, passed through map memory as a number.
const ANSWER: u64 = 0;
const SLIP: u64 = 1;

/// Answers the frame in place (`Ok`: send it back with `XDP_TX`) or says why not (`Err`: pass it, or
/// drop it if [`Counter::RateLimited`]).
#[inline(always)]
pub fn answer(ctx: &XdpContext) -> Result<Counter, Counter> {
    let cfg = maps::config().ok_or(Counter::Internal)?;
    let scratch = maps::scratch().ok_or(Counter::Internal)?;
    let frame_len = ctx.data_end() - ctx.data();
    // A frame that holds the longest header stack is parsed where it lies, and turned around there if
    // answered: two helper calls fewer than through the copy in scratch, which shorter frames take.
    let (f, direct) = match headers(ctx) {
        Some(hdr) => (
            frame::parse(hdr, frame_len, cfg.port, listening(cfg))?,
            true,
        ),
        None => {
            // A frame too short for any header leaves the copy empty; `parse` then reads nothing of it.
            let copied = verifier_clamp(frame_len, MAX_HEADERS);
            if copied != 0 && !load_bytes(ctx, 0, &mut scratch.headers, copied) {
                return Err(Counter::LoadStore);
            }
            let f = frame::parse(&scratch.headers, frame_len, cfg.port, listening(cfg))?;
            (f, false)
        }
    };
    // Longer messages are not read at all (clamping the length below would parse a prefix of them).
    if f.dns_len > QBUF {
        return Err(Counter::TooLong);
    }
    // verifier: merge the VLAN, address-family and header-access paths here rather than walk the rest
    // once per path.
    let (f, direct) = {
        let [a, b, c, _] = &mut scratch.opaque;
        let l3 = verifier_clamp(opaque(a, f.l3 as u64) as usize, MAX_L3);
        let (v6, direct) = unpack(opaque(b, pack(f.v6, direct)));
        let dns_len = verifier_clamp(opaque(c, f.dns_len as u64) as usize, QBUF);
        let f = Frame {
            l3,
            v6,
            dns: dns_offset(l3, v6),
            dns_len,
        };
        (f, direct)
    };

    let len = verifier_clamp(f.dns_len, QBUF);
    if len == 0 {
        return Err(Counter::Truncated);
    }
    if !load_bytes(ctx, f.dns, &mut scratch.msg, len) {
        return Err(Counter::LoadStore);
    }
    let q = parse_query(scratch, len)?;

    let rec = maps::record(&RecordKey::new(q.qtype, q.hash)).ok_or(Counter::UnknownName)?;
    if usize::from(rec.name_len) != q.name_len || !names_equal(&scratch.name, &rec.name, q.name_len)
    {
        return Err(Counter::Collision);
    }
    // One clock read for staleness and rate limiting, and none when both are off.
    let now = if cfg.stale_after_ns != 0 || cfg.rate.enabled() {
        // SAFETY: a helper without arguments.
        unsafe { bpf_ktime_get_coarse_ns() }
    } else {
        0
    };
    // A table the overwatch has stopped vouching for: answered anyway (counted), or left to userspace.
    if cfg.stale(|| now) {
        if cfg.flags & STALE_PASS != 0 {
            return Err(Counter::Stale);
        }
        maps::bump(Counter::ServedStale);
    }
    let q = launder_query(scratch, q);
    // Rate limiting comes before the rotation moves on: a response not sent is not counted as an
    // answer of the name.
    let verdict = if cfg.rate.enabled() {
        match rate_verdict(ctx, scratch, cfg, &f, now)? {
            Verdict::Answer => ANSWER,
            Verdict::Drop => return Err(Counter::RateLimited),
            Verdict::Slip => SLIP,
        }
    } else {
        ANSWER
    };
    // verifier: one state whether or not (and how) the limiter was asked.
    let verdict = opaque(&mut scratch.opaque[1], verdict);
    let (reply_len, sent) = if verdict == SLIP {
        (build_truncated(scratch, &q, cfg.udp_size)?, SENT_SLIPPED)
    } else {
        let sent = if q.qtype == QTYPE_A {
            SENT_A
        } else {
            SENT_AAAA
        };
        (
            answer_records(ctx, scratch, cfg, rec, &q, &f, direct)?,
            sent,
        )
    };
    let reply_len = verifier_clamp(reply_len, RBUF);
    if reply_len == 0 {
        return Err(Counter::Internal);
    }

    // verifier: merge every path that got here (record type, EDNS, answer count, ...) before growing the
    // frame and rewriting its headers, which would otherwise be walked once per path.
    let (f, reply_len, sent, mut direct) = merge(scratch, &f, reply_len, sent, direct)?;
    let old_len = (ctx.data_end() - ctx.data()) as i64;
    let delta = (f.dns + reply_len) as i64 - old_len;
    // SAFETY: helper calls on our own context; they invalidate every packet pointer, and none is kept
    // across them (the ptr helpers re-derive from `ctx` on each access).
    if delta != 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta as i32) } != 0 {
        // No tailroom: frames a local socket sent over veth in native mode have almost none. Grow at the
        // head instead (native XDP guarantees 256 bytes of headroom); the headers are written at the new
        // start below, from the copy in scratch (made now if the frame was parsed in place).
        if direct {
            copy_headers(ctx, scratch)?;
        }
        grow_head(ctx, delta)?;
        maps::bump(Counter::GrewHead);
        direct = false;
    }
    // verifier: and merge the grown-at-the-tail and grown-at-the-head paths.
    let (f, reply_len, sent, direct) = merge(scratch, &f, reply_len, sent, direct)?;
    // The frame now ends at dns + reply_len.
    if !store_bytes(ctx, f.dns, &mut scratch.msg, reply_len) {
        return Err(Counter::LoadStore);
    }
    let payload_sum = if f.v6 {
        // verifier: forget which iteration the summing loop left on.
        opaque(
            &mut scratch.opaque[3],
            csum::add_bytes(0, &scratch.msg, reply_len),
        )
    } else {
        0
    };
    if direct {
        // The frame only grew or shrank at its tail: the query's headers are still where they were.
        let hdr = headers(ctx).ok_or(Counter::LoadStore)?;
        frame::turn_around(hdr, &f, reply_len, payload_sum)?;
    } else {
        frame::turn_around(&mut scratch.headers, &f, reply_len, payload_sum)?;
        if !store_bytes(ctx, 0, &mut scratch.headers, f.dns) {
            return Err(Counter::LoadStore);
        }
    }
    Ok(match sent {
        SENT_A => Counter::AnsweredA,
        SENT_AAAA => Counter::AnsweredAaaa,
        _ => Counter::RateSlipped,
    })
}

/// The answer to `q` from `rec`, built in scratch; returns its length. The rotation moves on.
#[inline(always)]
fn answer_records(
    ctx: &XdpContext,
    scratch: &mut Scratch,
    cfg: &XdpConfig,
    rec: &RecordValue,
    q: &Query,
    f: &Frame,
    direct: bool,
) -> Result<usize, Counter> {
    let rotation = maps::next_rotation(rec.slot).ok_or(Counter::Internal)?;
    // Geolocation: the source address's region (0: the trie does not place it). After the query is
    // laundered (before, this would be walked once per name length), and from laundered copies of the
    // frame's fields, so the branches here narrow nothing the rest uses.
    let is_geo = opaque(&mut scratch.opaque[2], u64::from(rec.policy)) == u64::from(policy::GEO);
    let region = if is_geo {
        // The source address is read from the copy: make one if the frame was parsed in place.
        if direct {
            copy_headers(ctx, scratch)?;
        }
        let [a, b, ..] = &mut scratch.opaque;
        let l3 = verifier_clamp(opaque(a, f.l3 as u64) as usize, MAX_L3);
        let v6 = opaque(b, u64::from(f.v6)) != 0;
        client_region(scratch, l3, v6)
    } else {
        0
    };
    // verifier: one state whether or not (and how) the trie was asked.
    let region = opaque(&mut scratch.opaque[0], u64::from(region)) as u8;
    build_reply_for(scratch, q, rec, rotation, cfg.udp_size, region)
}

/// The rate limiter's verdict on a response to the frame's source address.
#[inline(always)]
fn rate_verdict(
    ctx: &XdpContext,
    scratch: &mut Scratch,
    cfg: &XdpConfig,
    f: &Frame,
    now: u64,
) -> Result<Verdict, Counter> {
    // The source address is read with a helper call whether or not the headers were parsed in place:
    // a branch on that here would make the verifier walk the rest once per way.
    let [a, b, ..] = &mut scratch.opaque;
    let l3 = verifier_clamp(opaque(a, f.l3 as u64) as usize, MAX_L3);
    let v6 = opaque(b, u64::from(f.v6)) != 0;
    let addr = if v6 {
        let mut addr = [0u8; 16];
        if !load_bytes(ctx, l3 + IPV6_SADDR, &mut addr, 16) {
            return Err(Counter::LoadStore);
        }
        addr
    } else {
        let mut addr = [0u8; 4];
        if !load_bytes(ctx, l3 + IPV4_SADDR, &mut addr, 4) {
            return Err(Counter::LoadStore);
        }
        geo_key_v4(addr)
    };
    Ok(maps::rate_check(&cfg.rate.key(addr, v6), now, &cfg.rate))
}

/// Copies the headers of a frame parsed in place (so at least [`MAX_HEADERS`] long) into scratch, for
/// the paths that need them there.
#[inline(always)]
fn copy_headers(ctx: &XdpContext, scratch: &mut Scratch) -> Result<(), Counter> {
    if load_bytes(ctx, 0, &mut scratch.headers, MAX_HEADERS) {
        Ok(())
    } else {
        Err(Counter::LoadStore)
    }
}

/// The listen check `frame::parse` asks for, inlined: as a function of its own it cost a BPF call per
/// packet.
#[inline(always)]
fn listening(cfg: &XdpConfig) -> impl FnOnce(Dest) -> bool {
    #[inline(always)]
    |d| maps::listening(cfg, d)
}

/// The region id the geolocation trie gives the packet's source address, or 0.
#[inline(always)]
fn client_region(scratch: &mut Scratch, l3: usize, v6: bool) -> u8 {
    let Some(data) = frame::client_key(&scratch.headers, l3, v6) else {
        return 0;
    };
    scratch.geo_key = GeoKey {
        prefix_len: 128,
        data,
    };
    maps::region(&scratch.geo_key)
}

/// Passes what the rest of the program needs through map memory (see `bounds::opaque`), so that every
/// path arriving here continues as one.
#[inline(always)]
fn merge(
    scratch: &mut Scratch,
    f: &Frame,
    reply_len: usize,
    sent: u64,
    direct: bool,
) -> Result<(Frame, usize, u64, bool), Counter> {
    let [a, b, c, d] = &mut scratch.opaque;
    let l3 = verifier_clamp(opaque(a, f.l3 as u64) as usize, MAX_L3);
    let (v6, direct) = unpack(opaque(b, pack(f.v6, direct)));
    let reply_len = verifier_clamp(opaque(c, reply_len as u64) as usize, RBUF);
    let sent = opaque(d, sent);
    // verifier: the helpers that take `reply_len` as a size refuse a possible zero.
    if reply_len == 0 {
        return Err(Counter::Internal);
    }
    Ok((
        Frame {
            l3,
            v6,
            dns: dns_offset(l3, v6),
            dns_len: 0,
        },
        reply_len,
        sent,
        direct,
    ))
}

/// Two flags in one opaque slot: the address family, and whether the headers are read in place.
#[inline(always)]
fn pack(v6: bool, direct: bool) -> u64 {
    u64::from(v6) | u64::from(direct) << 1
}

#[inline(always)]
fn unpack(v: u64) -> (bool, bool) {
    (v & 1 != 0, v & 2 != 0)
}

/// Grows the frame by `delta` bytes at its head. The bytes before the old start are headroom, not
/// headers: the caller writes the headers there from its copy.
#[inline(always)]
fn grow_head(ctx: &XdpContext, delta: i64) -> Result<(), Counter> {
    if delta <= 0 || delta > RBUF as i64 {
        return Err(Counter::AdjustTail);
    }
    // SAFETY: a helper call on our own context; no packet pointer is kept across it.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(delta as i32)) } != 0 {
        return Err(Counter::AdjustTail);
    }
    Ok(())
}
