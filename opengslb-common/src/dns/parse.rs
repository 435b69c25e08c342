//! The gate: whether a DNS message is a query the XDP path can answer, and what it needs to answer it.

use super::{
    CLASS_IN, CLASSIC_UDP_SIZE, EDNS_DO, FLAG_QR, FLAG_TC, HEADER_LEN, OPCODE_MASK, OPTION_ECS,
    QBUF, RBUF, Scratch, TYPE_OPT,
    name::{HASH_SEED, hash_finish, hash_step, lower_word},
};
use crate::{
    counters::Counter,
    maps::{MAX_NAME, QTYPE_A, QTYPE_AAAA},
};

/// At most this many EDNS options are walked; a query with more goes to userspace.
const MAX_OPTIONS: usize = 16;

/// What the gate learned about an answerable query.
/// What the gate learned about an answerable query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query {
    /// The message ID.
    pub id: u16,
    /// The header's flags word as received.
    pub flags: u16,
    /// A or AAAA.
    pub qtype: u16,
    /// The question name's wire length, root label included.
    pub name_len: usize,
    /// The offset just past QCLASS.
    pub question_end: usize,
    /// [`name_hash`] of the lowercased name.
    pub hash: u64,
    /// Whether the query carried an OPT record.
    pub edns: bool,
    /// The requester's UDP payload size from its OPT record (RFC 6891 §6.2.3), or 512.
    pub udp_size: u16,
    /// The DO bit of the query's OPT record (RFC 3225).
    pub dnssec_ok: bool,
}

#[inline(always)]
fn be16<const N: usize>(buf: &[u8; N], at: usize) -> Result<u16, Counter> {
    match (buf.get(at), buf.get(at.wrapping_add(1))) {
        (Some(&a), Some(&b)) => Ok(u16::from_be_bytes([a, b])),
        _ => Err(Counter::Truncated),
    }
}

/// Checks a DNS message and, if the XDP path can answer it, returns what it needs to.
///
/// `s.msg[..len]` is the message. The lowercased question name is written to `s.name` (bytes past its
/// length are left as they were). Accepted: QR=0, opcode QUERY, TC=0, QDCOUNT=1, AN=NS=0, AR≤1 where the
/// additional record is an EDNS(0) OPT at the root without Client Subnet, class IN, type A or AAAA, and
/// nothing after the last record.
pub fn parse_query(s: &mut Scratch, len: usize) -> Result<Query, Counter> {
    let Scratch {
        msg: buf,
        name,
        opaque,
        ..
    } = s;
    if len > QBUF {
        return Err(Counter::TooLong);
    }
    if len < HEADER_LEN {
        return Err(Counter::Truncated);
    }
    let id = be16(buf, 0)?;
    let flags = be16(buf, 2)?;
    if flags & FLAG_QR != 0 {
        return Err(Counter::Qr);
    }
    if flags & OPCODE_MASK != 0 {
        return Err(Counter::Opcode);
    }
    if flags & FLAG_TC != 0 {
        return Err(Counter::Tc);
    }
    if be16(buf, 4)? != 1 {
        return Err(Counter::Qdcount);
    }
    if be16(buf, 6)? != 0 || be16(buf, 8)? != 0 {
        return Err(Counter::AnNs);
    }
    let arcount = be16(buf, 10)?;
    if arcount > 1 {
        return Err(Counter::Arcount);
    }
    let (name_len, hash) = read_name(buf, len, name, &mut opaque[2])?;
    // verifier: forget which loop iteration the name ended on (see `bounds::opaque`).
    // The loop also narrowed `len` differently on each way out of it.
    let [s0, s1, ..] = opaque;
    let name_len = crate::bounds::clamp(crate::bounds::opaque(s0, name_len as u64) as usize, 255);
    let len = crate::bounds::clamp(crate::bounds::opaque(s1, len as u64) as usize, QBUF);
    let qtype_at = HEADER_LEN + name_len;
    let question_end = qtype_at + 4;
    if question_end > len {
        return Err(Counter::Truncated);
    }
    let qtype = be16(buf, qtype_at)?;
    if be16(buf, qtype_at + 2)? != CLASS_IN {
        return Err(Counter::Class);
    }
    if qtype != QTYPE_A && qtype != QTYPE_AAAA {
        return Err(Counter::Type);
    }
    let mut query = Query {
        id,
        flags,
        qtype,
        name_len,
        question_end,
        hash,
        edns: false,
        udp_size: CLASSIC_UDP_SIZE,
        dnssec_ok: false,
    };
    let end = if arcount == 1 {
        read_opt(buf, len, question_end, &mut query)?
    } else {
        question_end
    };
    if end != len {
        return Err(Counter::OptMalformed);
    }
    Ok(query)
}

/// The most length bytes a name has: 127 one-byte labels and the root in 255 bytes.
const MAX_LABELS: usize = 128;

/// Finds the question name's end by walking its labels, then lowercases it into `out` and hashes it, a
/// word at a time. Returns the wire length (root label included) and the hash ([`super::name_hash`]).
#[inline(always)]
fn read_name(
    buf: &[u8; RBUF],
    len: usize,
    out: &mut [u8; MAX_NAME],
    slot: &mut u64,
) -> Result<(usize, u64), Counter> {
    let mut rel: usize = 0;
    let mut name_len: usize = 0;
    for _ in 0..MAX_LABELS {
        // A wire name is at most 255 bytes (RFC 1035 §3.1): its root label sits at index 254 at the latest.
        if rel >= MAX_NAME - 1 {
            return Err(if HEADER_LEN + MAX_NAME - 1 > len {
                Counter::Truncated
            } else {
                Counter::NameTooLong
            });
        }
        let at = HEADER_LEN + rel;
        if at >= len {
            return Err(Counter::Truncated);
        }
        let b = *buf.get(at).ok_or(Counter::Truncated)?;
        if b == 0 {
            name_len = rel + 1;
            break;
        }
        if b & 0xc0 == 0xc0 {
            return Err(Counter::Compression);
        }
        if b > 63 {
            return Err(Counter::BadLabel);
        }
        rel += usize::from(b) + 1;
    }
    // verifier: forget which iteration the walk ended on (see `bounds::opaque`), so that one state goes on.
    let name_len = crate::bounds::clamp(crate::bounds::opaque(slot, name_len as u64) as usize, 255);
    if name_len == 0 {
        return Err(Counter::NameTooLong);
    }
    let mut hash = HASH_SEED;
    for w in 0..MAX_NAME / 8 {
        let off = w * 8;
        if off >= name_len {
            break;
        }
        let at = HEADER_LEN + off;
        let word: [u8; 8] = buf
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .ok_or(Counter::Truncated)?;
        let left = name_len - off;
        let mask = if left >= 8 {
            u64::MAX
        } else {
            (1u64 << (left * 8)) - 1
        };
        let lowered = lower_word(u64::from_le_bytes(word)) & mask;
        if let Some(dst) = out.get_mut(off..off + 8) {
            dst.copy_from_slice(&lowered.to_le_bytes());
        }
        hash = hash_step(hash, lowered);
    }
    Ok((name_len, hash_finish(hash, name_len)))
}

/// Reads the OPT record at `at` (RFC 6891 §6.1.2) into `query`; returns the offset past it.
#[inline(always)]
fn read_opt(buf: &[u8; RBUF], len: usize, at: usize, query: &mut Query) -> Result<usize, Counter> {
    // Owner name (1: root), TYPE, CLASS, TTL (4), RDLENGTH.
    if at + 11 > len {
        return Err(Counter::Truncated);
    }
    if buf.get(at).copied() != Some(0) || be16(buf, at + 1)? != TYPE_OPT {
        return Err(Counter::NotOpt);
    }
    let udp_size = be16(buf, at + 3)?;
    // TTL: extended RCODE (at + 5), version (at + 6), flags (at + 7).
    if buf.get(at + 6).copied() != Some(0) {
        return Err(Counter::EdnsVersion);
    }
    let eflags = be16(buf, at + 7)?;
    let rdlen = usize::from(be16(buf, at + 9)?);
    let mut pos = at + 11;
    let end = pos + rdlen;
    if end > len {
        return Err(Counter::Truncated);
    }
    for _ in 0..MAX_OPTIONS {
        if pos >= end {
            break;
        }
        if pos + 4 > end {
            return Err(Counter::OptMalformed);
        }
        if be16(buf, pos)? == OPTION_ECS {
            return Err(Counter::Ecs);
        }
        pos += 4 + usize::from(be16(buf, pos + 2)?);
    }
    if pos != end {
        return Err(Counter::OptMalformed);
    }
    query.edns = true;
    // RFC 6891 §6.2.5: values below 512 are treated as 512.
    query.udp_size = if udp_size < CLASSIC_UDP_SIZE {
        CLASSIC_UDP_SIZE
    } else {
        udp_size
    };
    query.dnssec_ok = eflags & EDNS_DO != 0;
    Ok(end)
}
