//! The reply builder: the answer written into the per-CPU scratch, byte for byte what userspace sends
//! for the same query and entry.

use super::{
    CLASS_IN, EDNS_DO, FLAG_AA, FLAG_CD, FLAG_QR, FLAG_RD, FLAG_TC, HEADER_LEN, MAX_QUESTION,
    Query, RBUF, Scratch, TYPE_OPT,
    select::{answer_count, first_index, rotated_index, select},
};
use crate::{
    counters::Counter,
    maps::{MAX_RECORDS, QTYPE_A, RecordValue, policy},
};

/// The length of one answer record's fixed part: a compression pointer to the question name (RFC 1035
/// §4.1.4), type, class, TTL, RDLENGTH.
const RR_FIXED: usize = 12;
/// A bare OPT record: root name, type, class (UDP size), TTL (extended RCODE, version, flags), RDLENGTH 0.
const OPT_LEN: usize = 11;

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

/// Builds the reply to `q` (parsed from `s.msg`) from `rec` in place in `s.msg`; returns its length.
///
/// The reply: the query's ID, QR=1, opcode QUERY, AA=1, RD and CD copied, RA=0, AD=0, RCODE NOERROR; the
/// question exactly as sent (0x20 case kept: it is left where the query had it); `min(max_answers,
/// count)` records starting at the index [`first_index`] gives for the entry's policy and `rotation`,
/// wrapping, each owned by a pointer to the question name; and, if the query had EDNS, a bare OPT record
/// (our UDP size, DO copied, no options), written over the query's.
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
/// by (see [`select`]); other policies ignore it and draw from every record. Record `k` of the answer is
/// record `(first + k) % m` of the `m` drawn from, `first` being [`first_index`] (under geolocation
/// `rotation % m`).
pub fn build_reply_for(
    s: &mut Scratch,
    q: &Query,
    rec: &RecordValue,
    rotation: u32,
    our_udp_size: u16,
    region: u8,
) -> Result<usize, Counter> {
    let Scratch {
        msg: out,
        opaque,
        sel,
        sel_opaque,
        ..
    } = s;
    let count = usize::from(rec.count);
    if count == 0 || count > MAX_RECORDS {
        return Err(Counter::NoRecords);
    }
    let geo = rec.policy == policy::GEO;
    // The records the answer draws from: under geolocation `sel[..m]`, else all of them (no table to
    // fill: the common case pays for no loop).
    let (m, first) = if geo {
        let m = select(sel, sel_opaque, rec, region, count);
        (m, rotated_index(rotation, 0, m))
    } else {
        (count, first_index(rec, rotation, count)?)
    };
    // verifier: one state from here on, whichever policy chose `first` (see `bounds::opaque`).
    let [s0, s1, s2, s3] = opaque;
    let first = crate::bounds::clamp(
        crate::bounds::opaque(s0, first as u64) as usize,
        MAX_RECORDS - 1,
    );
    let m = crate::bounds::clamp(crate::bounds::opaque(s1, m as u64) as usize, MAX_RECORDS);
    // All ones under geolocation, else zero; through map memory so that the compiler cannot turn the
    // masking below back into a branch (the verifier would walk the rest of the loop once per way).
    let from_sel =
        crate::bounds::opaque(&mut sel_opaque[0], u64::from(geo).wrapping_neg()) as usize;
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
    // The question stays where the query had it; the answers follow it.
    w.pos = crate::bounds::clamp(
        crate::bounds::opaque(s2, (HEADER_LEN + question_len) as u64) as usize,
        HEADER_LEN + MAX_QUESTION,
    );
    // Owner: a pointer to the question name (RFC 1035 §4.1.4); the same fixed part for every record.
    let [p0, p1] = (0xc000 | HEADER_LEN as u16).to_be_bytes();
    let [y0, y1] = q.qtype.to_be_bytes();
    let [t0, t1, t2, t3] = rec.ttl.to_be_bytes();
    let [l0, l1] = (rdlen as u16).to_be_bytes();
    let fixed = [p0, p1, y0, y1, 0, CLASS_IN as u8, t0, t1, t2, t3, l0, l1];
    for k in 0..MAX_RECORDS {
        if k >= n {
            break;
        }
        // verifier: the kernel does not bound `x % n`, so clamp the index where it is used. (A
        // subtraction instead of `%` would branch on `m` in every iteration.)
        let at = crate::bounds::clamp((first + k) % m, MAX_RECORDS - 1);
        let picked = usize::from(sel.get(at).copied().unwrap_or(0));
        let idx = (picked & from_sel) | (at & !from_sel);
        let idx = crate::bounds::clamp(idx, MAX_RECORDS - 1);
        let rdata = rec.rdata.get(idx).ok_or(Counter::NoRecords)?;
        w.put(fixed)?;
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
    // verifier: and forget which iteration the answer loop left on.
    Ok(crate::bounds::clamp(
        crate::bounds::opaque(s3, w.pos as u64) as usize,
        RBUF,
    ))
}

/// The truncated reply rate limiting slips to `q` (parsed from `s.msg`) in place of an answer: the
/// answer's header with TC=1 and no records, the question as sent, and the OPT record if the query had
/// EDNS; returns its length. The userspace server's truncation of the same answer gives the same bytes.
pub fn build_truncated(s: &mut Scratch, q: &Query, our_udp_size: u16) -> Result<usize, Counter> {
    let question_len = q.question_end - HEADER_LEN;
    if question_len > MAX_QUESTION {
        return Err(Counter::TooBig);
    }
    let mut w = Writer {
        buf: &mut s.msg,
        pos: 0,
    };
    let [i0, i1] = q.id.to_be_bytes();
    let [f0, f1] = (FLAG_QR | FLAG_AA | FLAG_TC | (q.flags & (FLAG_RD | FLAG_CD))).to_be_bytes();
    w.put([i0, i1, f0, f1, 0, 1, 0, 0, 0, 0, 0, u8::from(q.edns)])?;
    w.pos = crate::bounds::clamp(
        crate::bounds::opaque(&mut s.opaque[2], (HEADER_LEN + question_len) as u64) as usize,
        HEADER_LEN + MAX_QUESTION,
    );
    if q.edns {
        let [u0, u1] = our_udp_size.to_be_bytes();
        let [d0, d1] = (if q.dnssec_ok { EDNS_DO } else { 0 }).to_be_bytes();
        let [o0, o1] = TYPE_OPT.to_be_bytes();
        w.put([0, o0, o1, u0, u1, 0, 0, d0, d1, 0, 0])?;
    }
    Ok(w.pos)
}
