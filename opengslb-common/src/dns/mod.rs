//! DNS wire code for the XDP fast path: the gate that decides whether a query can be answered from the
//! records map, the one-pass name lowercasing and hashing that makes the map key, and the reply builder.
//!
//! Every function works on fixed-size buffers with explicit lengths, so the same code runs in the kernel
//! (on per-CPU scratch buffers) and in host tests. Anything this code is not sure of is a [`Counter`] pass
//! reason: userspace then answers it.

use crate::{
    counters::Counter,
    maps::{MAX_NAME, MAX_RECORDS, MAX_SLOTS, QTYPE_A, QTYPE_AAAA, RecordValue, policy},
};

/// The longest DNS message the XDP path reads; longer ones go to userspace.
pub const QBUF: usize = 512;
/// The longest reply the XDP path builds.
pub const RBUF: usize = 768;
/// The DNS header length (RFC 1035 §4.1.1).
pub const HEADER_LEN: usize = 12;
/// The UDP payload size a client without EDNS may receive (RFC 1035 §2.3.4).
pub const CLASSIC_UDP_SIZE: u16 = 512;
/// Class IN (RFC 1035 §3.2.4).
pub const CLASS_IN: u16 = 1;
/// Type OPT (RFC 6891 §6.1.1).
pub const TYPE_OPT: u16 = 41;
/// EDNS option code of Client Subnet (RFC 7871 §6).
pub const OPTION_ECS: u16 = 8;

const FLAG_QR: u16 = 0x8000;
const OPCODE_MASK: u16 = 0x7800;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_CD: u16 = 0x0010;
const EDNS_DO: u16 = 0x8000;
/// At most this many EDNS options are walked; a query with more goes to userspace.
const MAX_OPTIONS: usize = 16;
/// The longest question section: a 255-byte name plus type and class.
const MAX_QUESTION: usize = 255 + 4;
/// The length of one answer record's fixed part: a compression pointer to the question name (RFC 1035
/// §4.1.4), type, class, TTL, RDLENGTH.
const RR_FIXED: usize = 12;
/// A bare OPT record: root name, type, class (UDP size), TTL (extended RCODE, version, flags), RDLENGTH 0.
const OPT_LEN: usize = 11;

/// FNV-1a 64-bit offset basis.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Per-CPU working memory of the XDP program: the query copied out of the frame, the reply built for it,
/// and the lowercased question name.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Scratch {
    /// The DNS message as received.
    pub query: [u8; QBUF],
    /// The DNS reply being built.
    pub reply: [u8; RBUF],
    /// The lowercased wire-format question name.
    pub name: [u8; MAX_NAME],
    /// Slots for [`crate::bounds::opaque`].
    pub opaque: [u64; 4],
    /// The parsed query, passed through memory for the same reason (see [`launder_query`]).
    pub parsed: Query,
    /// The frame's headers (Ethernet to UDP), saved while the frame is grown at its head.
    pub headers: [u8; MAX_HEADERS],
    /// The indices of the records an answer draws from (see [`select`]).
    pub sel: [u8; MAX_RECORDS],
    /// Slots for [`crate::bounds::opaque`] used by [`select`].
    pub sel_opaque: [u64; 4],
    /// The geolocation trie key being looked up (the layout of an LPM trie key: prefix length, then
    /// the 16 address bytes).
    pub geo_key: GeoKey,
}

/// An LPM trie key of the geolocation map, as the kernel reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GeoKey {
    /// Prefix length in bits.
    pub prefix_len: u32,
    /// The address (IPv4 as `::ffff:a.b.c.d`).
    pub data: [u8; 16],
}

/// The longest header stack before the DNS message: Ethernet, one VLAN tag, IPv6, UDP.
pub const MAX_HEADERS: usize = 14 + 4 + 40 + 8;

/// Passes `q` through `s.parsed` with volatile accesses, so the verifier forgets how earlier loops
/// narrowed its fields (see [`crate::bounds::opaque`]); the fields are re-bounded here.
#[inline(always)]
pub fn launder_query(s: &mut Scratch, q: Query) -> Query {
    // SAFETY: a valid, aligned, exclusive reference; we read back exactly what we wrote.
    let mut q = unsafe {
        core::ptr::write_volatile(&mut s.parsed, q);
        core::ptr::read_volatile(&s.parsed)
    };
    q.name_len = crate::bounds::clamp(q.name_len, 255);
    q.question_end = crate::bounds::clamp(q.question_end, HEADER_LEN + MAX_QUESTION);
    q
}

impl Scratch {
    /// All zero.
    pub const fn new() -> Self {
        Self {
            query: [0; QBUF],
            reply: [0; RBUF],
            name: [0; MAX_NAME],
            opaque: [0; 4],
            headers: [0; MAX_HEADERS],
            sel: [0; MAX_RECORDS],
            sel_opaque: [0; 4],
            geo_key: GeoKey {
                prefix_len: 0,
                data: [0; 16],
            },
            parsed: Query {
                id: 0,
                flags: 0,
                qtype: 0,
                name_len: 0,
                question_end: 0,
                hash: 0,
                edns: false,
                udp_size: 0,
                dnssec_ok: false,
            },
        }
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

const _: () = assert!(
    size_of::<Scratch>()
        <= QBUF + RBUF + MAX_NAME + 32 + 64 + MAX_HEADERS + 8 + MAX_RECORDS + 32 + 24
);

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

/// One step of FNV-1a.
#[inline(always)]
pub const fn fnv1a_step(hash: u64, byte: u8) -> u64 {
    (hash ^ byte as u64).wrapping_mul(FNV_PRIME)
}

/// The records-map hash of a lowercased wire-format name (root label included).
pub fn name_hash(wire: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in wire {
        h = fnv1a_step(h, b);
    }
    h
}

/// ASCII lowercasing (RFC 4343 §3: only A–Z fold).
#[inline(always)]
pub const fn lower(b: u8) -> u8 {
    if b.is_ascii_uppercase() { b | 0x20 } else { b }
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
/// `s.query[..len]` is the message. The lowercased question name is written to `s.name` (bytes past its
/// length are left as they were). Accepted: QR=0, opcode QUERY, TC=0, QDCOUNT=1, AN=NS=0, AR≤1 where the
/// additional record is an EDNS(0) OPT at the root without Client Subnet, class IN, type A or AAAA, and
/// nothing after the last record.
pub fn parse_query(s: &mut Scratch, len: usize) -> Result<Query, Counter> {
    let Scratch {
        query: buf,
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
    let (name_len, hash) = read_name(buf, len, name)?;
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

/// Lowercases the question name into `out` and hashes it in the same pass.
/// Returns the wire length (root label included) and the hash.
#[inline(always)]
fn read_name(
    buf: &[u8; QBUF],
    len: usize,
    out: &mut [u8; MAX_NAME],
) -> Result<(usize, u64), Counter> {
    let mut hash = FNV_OFFSET;
    let mut label_left: u8 = 0;
    // A wire name is at most 255 bytes (RFC 1035 §3.1), so its root label sits at index 254 at the latest.
    for i in 0..MAX_NAME - 1 {
        let at = HEADER_LEN + i;
        if at >= len {
            return Err(Counter::Truncated);
        }
        let Some(&b) = buf.get(at) else {
            return Err(Counter::Truncated);
        };
        let c = if label_left == 0 {
            if b == 0 {
                if let Some(o) = out.get_mut(i) {
                    *o = 0;
                }
                return Ok((i + 1, fnv1a_step(hash, 0)));
            }
            if b & 0xc0 == 0xc0 {
                return Err(Counter::Compression);
            }
            if b > 63 {
                return Err(Counter::BadLabel);
            }
            label_left = b;
            b
        } else {
            label_left -= 1;
            lower(b)
        };
        if let Some(o) = out.get_mut(i) {
            *o = c;
        }
        hash = fnv1a_step(hash, c);
    }
    Err(Counter::NameTooLong)
}

/// Reads the OPT record at `at` (RFC 6891 §6.1.2) into `query`; returns the offset past it.
#[inline(always)]
fn read_opt(buf: &[u8; QBUF], len: usize, at: usize, query: &mut Query) -> Result<usize, Counter> {
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

/// Whether the first `len` bytes of two name buffers are equal (word-wise: this runs on every answer).
#[inline(always)]
pub fn names_equal(a: &[u8; MAX_NAME], b: &[u8; MAX_NAME], len: usize) -> bool {
    for w in 0..MAX_NAME / 8 {
        let off = w * 8;
        if off >= len {
            break;
        }
        let (Some(x), Some(y)) = (word(a, off), word(b, off)) else {
            return false;
        };
        let left = len - off;
        let mask = if left >= 8 {
            u64::MAX
        } else {
            (1u64 << (left * 8)) - 1
        };
        if (x ^ y) & mask != 0 {
            return false;
        }
    }
    true
}

#[inline(always)]
fn word(buf: &[u8; MAX_NAME], off: usize) -> Option<u64> {
    let bytes: [u8; 8] = buf.get(off..off + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Which record of a set of `count` comes `k`-th in the answer for rotation position `rotation`.
/// Both DNS paths use this, so they rotate alike.
#[inline(always)]
pub const fn rotated_index(rotation: u32, k: usize, count: usize) -> usize {
    if count == 0 {
        0
    } else {
        (rotation as usize + k) % count
    }
}

/// The index of an answer's first record under `rec`'s policy (record `k` is `(first + k) % count`):
/// round-robin `rotation % count`, fixed order 0, weighted `slots[rotation % slot_count]`. `count` is
/// `rec.count`, already checked to be in `1..=MAX_RECORDS`.
#[inline(always)]
pub fn first_index(rec: &RecordValue, rotation: u32, count: usize) -> Result<usize, Counter> {
    match rec.policy {
        policy::ROUND_ROBIN => Ok(rotated_index(rotation, 0, count)),
        policy::FIXED_ORDER => Ok(0),
        policy::WEIGHTED => {
            let slot_count = usize::from(rec.slot_count);
            if slot_count == 0 || slot_count > MAX_SLOTS {
                return Err(Counter::NoRecords);
            }
            // verifier: the kernel does not bound `x % n`; clamp where it is used.
            let at = crate::bounds::clamp(rotation as usize % slot_count, MAX_SLOTS - 1);
            let first = usize::from(rec.slots.get(at).copied().ok_or(Counter::NoRecords)?);
            if first >= count {
                return Err(Counter::NoRecords);
            }
            Ok(first)
        }
        _ => Err(Counter::Policy),
    }
}

/// Fills `sel` with the indices (in record order) of the records an answer draws from, and returns how
/// many there are. Every record, except under [`policy::GEO`]: there the records of the client's
/// `region` if it has any, else those of [`RecordValue::default_region`], else every record (region id 0
/// matches no record) — `routing::pick`'s geolocation rule. `count` is `rec.count`, in
/// `1..=MAX_RECORDS`.
#[inline(always)]
pub fn select(
    sel: &mut [u8; MAX_RECORDS],
    slots: &mut [u64; 4],
    rec: &RecordValue,
    region: u8,
    count: usize,
) -> usize {
    use crate::bounds::{clamp, opaque};
    let [s0, s1, s2, s3] = slots;
    let geo = rec.policy == policy::GEO;
    let default_region = rec.default_region;
    // verifier: the counters go through map memory on every iteration, so each iteration's two ways
    // (match or not) continue as one state.
    let mut in_client: u64 = 0;
    let mut in_default: u64 = 0;
    // verifier: no loop here leaves early (records past `count` have region 0, which matches nothing),
    // and what a loop carries goes through map memory on every iteration, so the ways through an
    // iteration continue as one state.
    if geo {
        for i in 0..MAX_RECORDS {
            let r = rec.regions.get(i).copied().unwrap_or(0);
            let nonzero = u64::from(r != 0);
            in_client = opaque(s0, in_client + (u64::from(r == region) & nonzero));
            in_default = opaque(s1, in_default + (u64::from(r == default_region) & nonzero));
        }
    }
    // 0: every record.
    let target = if !geo {
        0
    } else if in_client > 0 {
        region
    } else if in_default > 0 {
        default_region
    } else {
        0
    };
    let target = opaque(s2, u64::from(target)) as u8;
    let count = clamp(opaque(s3, count as u64) as usize, MAX_RECORDS) as u64;
    let mut m: u64 = 0;
    for i in 0..MAX_RECORDS {
        let r = rec.regions.get(i).copied().unwrap_or(0);
        // `m` ≤ `i` here, so the mask never wraps it.
        if let Some(d) = sel.get_mut((m & (MAX_RECORDS as u64 - 1)) as usize) {
            *d = i as u8;
        }
        let take = u64::from((i as u64) < count) & u64::from(target == 0 || r == target);
        m = opaque(s3, m + take);
    }
    clamp(m as usize, MAX_RECORDS)
}

/// How many records an answer carries.
#[inline(always)]
pub const fn answer_count(max_answers: u8, count: u8) -> usize {
    let max = if max_answers == 0 { 1 } else { max_answers };
    let n = if max < count { max } else { count };
    let n = n as usize;
    if n > MAX_RECORDS { MAX_RECORDS } else { n }
}

struct Writer<'a> {
    buf: &'a mut [u8; RBUF],
    pos: usize,
}

impl Writer<'_> {
    /// Writes a fixed-size piece: one bounds check and straight stores, no per-byte loop for the
    /// verifier to walk.
    #[inline(always)]
    fn put<const N: usize>(&mut self, bytes: [u8; N]) -> Result<(), Counter> {
        let end = self.pos + N;
        let dst: &mut [u8; N] = self
            .buf
            .get_mut(self.pos..end)
            .and_then(|s| s.try_into().ok())
            .ok_or(Counter::TooBig)?;
        *dst = bytes;
        self.pos = end;
        Ok(())
    }
}

/// Builds the reply to `q` (parsed from `s.query`) from `rec` into `s.reply`; returns its length.
///
/// The reply: the query's ID, QR=1, opcode QUERY, AA=1, RD and CD copied, RA=0, AD=0, RCODE NOERROR; the
/// question exactly as sent (0x20 case kept); `min(max_answers, count)` records starting at the index
/// [`first_index`] gives for the entry's policy and `rotation`, wrapping, each owned by a pointer to the question name; and, if the query had EDNS, a bare OPT record (our UDP
/// size, DO copied, no options).
pub fn build_reply(
    s: &mut Scratch,
    q: &Query,
    rec: &RecordValue,
    rotation: u32,
    our_udp_size: u16,
) -> Result<usize, Counter> {
    build_reply_for(s, q, rec, rotation, our_udp_size, 0)
}

/// [`build_reply`] for a client in `region` (a region id; 0: none), which [`policy::GEO`] entries answer
/// by (see [`select`]); other policies ignore it. Record `k` of the answer is `sel[(first + k) % m]`,
/// `first` being [`first_index`] (under geolocation `rotation % m`, as `routing::pick` rotates).
pub fn build_reply_for(
    s: &mut Scratch,
    q: &Query,
    rec: &RecordValue,
    rotation: u32,
    our_udp_size: u16,
    region: u8,
) -> Result<usize, Counter> {
    let Scratch {
        query,
        reply: out,
        opaque,
        sel,
        sel_opaque,
        ..
    } = s;
    let count = usize::from(rec.count);
    if count == 0 || count > MAX_RECORDS {
        return Err(Counter::NoRecords);
    }
    // The records the answer draws from: `sel[..m]` (all of them but under geolocation).
    let m = select(sel, sel_opaque, rec, region, count);
    if m == 0 {
        return Err(Counter::NoRecords);
    }
    // verifier: `select`'s loops narrowed `count`; forget it (see `bounds::opaque`).
    let [c0, ..] = sel_opaque;
    let count = crate::bounds::clamp(
        crate::bounds::opaque(c0, count as u64) as usize,
        MAX_RECORDS,
    );
    if count == 0 {
        return Err(Counter::NoRecords);
    }
    let first = if rec.policy == policy::GEO {
        rotated_index(rotation, 0, m)
    } else {
        first_index(rec, rotation, count)?
    };
    // verifier: one state from here on, whichever policy chose `first`.
    let [s0, s1, s2, s3] = opaque;
    let first = crate::bounds::clamp(
        crate::bounds::opaque(s0, first as u64) as usize,
        MAX_RECORDS - 1,
    );
    let m = crate::bounds::clamp(crate::bounds::opaque(s1, m as u64) as usize, MAX_RECORDS);
    if m == 0 {
        return Err(Counter::NoRecords);
    }
    let n = answer_count(rec.max_answers, m as u8);
    let rdlen: usize = if q.qtype == QTYPE_A { 4 } else { 16 };
    let question_len = q.question_end - HEADER_LEN;
    let total =
        HEADER_LEN + question_len + n * (RR_FIXED + rdlen) + if q.edns { OPT_LEN } else { 0 };
    if total > usize::from(q.udp_size) || total > RBUF || question_len > MAX_QUESTION {
        return Err(Counter::TooBig);
    }

    let mut w = Writer { buf: out, pos: 0 };
    let [i0, i1] = q.id.to_be_bytes();
    let [f0, f1] = (FLAG_QR | FLAG_AA | (q.flags & (FLAG_RD | FLAG_CD))).to_be_bytes();
    let [a0, a1] = (n as u16).to_be_bytes();
    w.put([i0, i1, f0, f1, 0, 1, a0, a1, 0, 0, 0, u8::from(q.edns)])?;
    // The question, word by word: bytes copied past its end are overwritten by what follows.
    for k in 0..MAX_QUESTION.div_ceil(8) {
        let at = HEADER_LEN + k * 8;
        if k * 8 >= question_len {
            break;
        }
        let word: [u8; 8] = query
            .get(at..at + 8)
            .and_then(|s| s.try_into().ok())
            .ok_or(Counter::Truncated)?;
        w.put(word)?;
    }
    // Set from the length, not the loop, so every way out of the loop leaves one state (see `bounds`).
    w.pos = crate::bounds::clamp(
        crate::bounds::opaque(s2, (HEADER_LEN + question_len) as u64) as usize,
        HEADER_LEN + MAX_QUESTION,
    );
    let [t0, t1, t2, t3] = rec.ttl.to_be_bytes();
    for k in 0..MAX_RECORDS {
        if k >= n {
            break;
        }
        // verifier: the kernel does not bound `x % n`, so clamp the index where it is used.
        let at = crate::bounds::clamp((first + k) % m, MAX_RECORDS - 1);
        let idx = usize::from(sel.get(at).copied().ok_or(Counter::NoRecords)?);
        let idx = crate::bounds::clamp(idx, MAX_RECORDS - 1);
        let rdata = rec.rdata.get(idx).ok_or(Counter::NoRecords)?;
        // Owner: a pointer to the question name (RFC 1035 §4.1.4).
        let [p0, p1] = (0xc000 | HEADER_LEN as u16).to_be_bytes();
        let [y0, y1] = q.qtype.to_be_bytes();
        let [l0, l1] = (rdlen as u16).to_be_bytes();
        w.put([p0, p1, y0, y1, 0, CLASS_IN as u8, t0, t1, t2, t3, l0, l1])?;
        if q.qtype == QTYPE_A {
            let [r0, r1, r2, r3, ..] = *rdata;
            w.put([r0, r1, r2, r3])?;
        } else {
            w.put(*rdata)?;
        }
    }
    if q.edns {
        let [u0, u1] = our_udp_size.to_be_bytes();
        let [d0, d1] = (if q.dnssec_ok { EDNS_DO } else { 0 }).to_be_bytes();
        let [o0, o1] = TYPE_OPT.to_be_bytes();
        w.put([0, o0, o1, u0, u1, 0, 0, d0, d1, 0, 0])?;
    }
    Ok(crate::bounds::clamp(
        crate::bounds::opaque(s3, w.pos as u64) as usize,
        RBUF,
    ))
}

/// Why a text name cannot be put in the records map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// An empty label (two dots in a row, or a leading dot).
    EmptyLabel,
    /// A label over 63 bytes.
    LabelTooLong,
    /// A name over 255 bytes in wire format.
    NameTooLong,
}

/// Encodes a dotted name (a trailing dot is optional) as lowercased wire format into `out`; returns the
/// wire length, root label included. `out` past that length is zeroed, as the records map expects.
pub fn encode_name(text: &str, out: &mut [u8; MAX_NAME]) -> Result<usize, NameError> {
    *out = [0; MAX_NAME];
    let text = text.strip_suffix('.').unwrap_or(text);
    let mut pos = 0;
    if !text.is_empty() {
        for label in text.split('.') {
            let bytes = label.as_bytes();
            if bytes.is_empty() {
                return Err(NameError::EmptyLabel);
            }
            if bytes.len() > 63 {
                return Err(NameError::LabelTooLong);
            }
            if pos + 1 + bytes.len() + 1 > 255 {
                return Err(NameError::NameTooLong);
            }
            let slot = out.get_mut(pos).ok_or(NameError::NameTooLong)?;
            *slot = bytes.len() as u8;
            pos += 1;
            for &b in bytes {
                let slot = out.get_mut(pos).ok_or(NameError::NameTooLong)?;
                *slot = lower(b);
                pos += 1;
            }
        }
    }
    // The root label: `out` is already zero there.
    Ok(pos + 1)
}

#[cfg(test)]
mod tests;
