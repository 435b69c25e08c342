//! The responder: bytes in, bytes out. Queries the XDP program would answer are answered here by the very
//! same code (`opengslb_common::dns`), so both paths give identical bytes; everything else is parsed with
//! hickory-proto and answered as an authoritative server for the configured zones.

use std::net::IpAddr;

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{
        DNSClass, Name, RData, Record, RecordType,
        rdata::{
            A, AAAA,
            opt::{ClientSubnet, EdnsCode, EdnsOption},
        },
    },
};
use opengslb_common::{
    dns::{QBUF, Scratch, answer_count, build_reply, names_equal, parse_query, rotated_index},
    maps::{QTYPE_A, QTYPE_AAAA},
};

use super::zone::{Snapshot, Zone};

/// How the query arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP: replies larger than the client's size are truncated (TC=1).
    Udp,
    /// TCP: replies up to 65535 bytes.
    Tcp,
}

/// Per-query context.
#[derive(Clone, Copy, Debug)]
pub struct QueryContext {
    /// UDP or TCP.
    pub transport: Transport,
    /// A fixed round-robin position instead of the snapshot's counters (tests make rotation
    /// reproducible with it).
    pub rotation: Option<u32>,
}

impl QueryContext {
    /// A UDP query with the snapshot's rotation.
    pub const fn udp() -> Self {
        Self {
            transport: Transport::Udp,
            rotation: None,
        }
    }

    /// A TCP query with the snapshot's rotation.
    pub const fn tcp() -> Self {
        Self {
            transport: Transport::Tcp,
            rotation: None,
        }
    }
}

/// What kind of reply was sent, for counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplyKind {
    /// By the shared XDP code.
    Fast,
    /// A positive answer.
    Answer,
    /// NOERROR without the type asked for.
    NoData,
    /// NXDOMAIN.
    NxDomain,
    /// Outside our zones, or a class we do not serve.
    Refused,
    /// Malformed query.
    FormErr,
    /// Opcode other than QUERY.
    NotImp,
    /// EDNS version above 0.
    BadVers,
    /// Did not fit the client's UDP size.
    Truncated,
}

/// Why a message got no reply at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than a DNS header: there is no ID to answer to.
    TooShort,
    /// QR=1: never answer a response (no reflection loops).
    Response,
}

/// The responder's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send these bytes.
    Reply(Vec<u8>, ReplyKind),
    /// Send nothing.
    Drop(DropReason),
}

const CLASSIC_UDP: usize = 512;

/// Answers one DNS message.
pub fn respond(snap: &Snapshot, query: &[u8], ctx: &QueryContext) -> Outcome {
    let Some(&[i0, i1, f0, f1]) = query.get(..4).and_then(|h| <&[u8; 4]>::try_from(h).ok()) else {
        return Outcome::Drop(DropReason::TooShort);
    };
    if query.len() < 12 {
        return Outcome::Drop(DropReason::TooShort);
    }
    if f0 & 0x80 != 0 {
        return Outcome::Drop(DropReason::Response);
    }
    if let Some(bytes) = fast(snap, query, ctx) {
        return Outcome::Reply(bytes, ReplyKind::Fast);
    }
    let msg = match Message::from_vec(query) {
        Ok(m) => m,
        Err(_) => {
            // Unparseable: a bare header with the ID, opcode and RD copied (RFC 1035 §4.1.1).
            let rd = f0 & 0x01;
            let mut reply = vec![i0, i1, 0x80 | (f0 & 0x78) | rd, ResponseCode::FormErr.low()];
            reply.extend_from_slice(&[0; 8]);
            let _ = f1;
            return Outcome::Reply(reply, ReplyKind::FormErr);
        }
    };
    let (reply, kind) = full(snap, &msg, ctx);
    let (bytes, kind) = encode(snap, reply, &msg, ctx, kind);
    Outcome::Reply(bytes, kind)
}

/// The XDP path's answer, if the XDP program would answer this query from this table.
fn fast(snap: &Snapshot, query: &[u8], ctx: &QueryContext) -> Option<Vec<u8>> {
    if query.len() > QBUF {
        return None;
    }
    let mut s = Box::new(Scratch::new());
    s.query.get_mut(..query.len())?.copy_from_slice(query);
    let q = parse_query(&mut s, query.len()).ok()?;
    let (key, rec) = snap.fast_entry(q.qtype, q.hash)?;
    if usize::from(rec.name_len) != q.name_len || !names_equal(&s.name, &rec.name, q.name_len) {
        return None;
    }
    let rotation = ctx.rotation.unwrap_or_else(|| snap.next_fast_rotation(key));
    match build_reply(&mut s, &q, rec, rotation, snap.udp_size) {
        Ok(len) => Some(s.reply.get(..len)?.to_vec()),
        // Too big for UDP, a policy only userspace has, ...: the full path handles it.
        Err(_) => None,
    }
}

/// The reply to a parsed query, before encoding.
fn full(snap: &Snapshot, msg: &Message, ctx: &QueryContext) -> (Message, ReplyKind) {
    let mut r = Message::new(msg.metadata.id, MessageType::Response, msg.metadata.op_code);
    r.metadata.recursion_desired = msg.metadata.recursion_desired;
    r.metadata.checking_disabled = msg.metadata.checking_disabled;
    r.queries = msg.queries.clone();

    if msg.metadata.op_code != OpCode::Query {
        r.metadata.response_code = ResponseCode::NotImp;
        return (r, ReplyKind::NotImp);
    }
    if let Some(e) = &msg.edns
        && e.version() > 0
    {
        // RFC 6891 §6.1.3: BADVERS, with our (version 0) OPT, nothing else.
        r.metadata.response_code = ResponseCode::BADVERS;
        return (r, ReplyKind::BadVers);
    }
    let [q] = msg.queries.as_slice() else {
        r.metadata.response_code = ResponseCode::FormErr;
        return (r, ReplyKind::FormErr);
    };
    if msg.answers.len() + msg.authorities.len() > 0 {
        r.metadata.response_code = ResponseCode::FormErr;
        return (r, ReplyKind::FormErr);
    }
    let name = q.name().to_lowercase();
    let zone = match snap.zone_of(&name) {
        Some(z) if q.query_class() == DNSClass::IN => z,
        _ => {
            r.metadata.response_code = ResponseCode::Refused;
            return (r, ReplyKind::Refused);
        }
    };
    r.metadata.authoritative = true;
    let answers = records_for(snap, zone, q, &name, ctx);
    if !answers.is_empty() {
        r.answers = answers;
        return (r, ReplyKind::Answer);
    }
    r.authorities.push(zone.negative_soa(snap.serial));
    if snap.exists(&name) {
        (r, ReplyKind::NoData)
    } else {
        r.metadata.response_code = ResponseCode::NXDomain;
        (r, ReplyKind::NxDomain)
    }
}

/// The answer records for a question in `zone`.
fn records_for(
    snap: &Snapshot,
    zone: &Zone,
    q: &Query,
    name: &Name,
    ctx: &QueryContext,
) -> Vec<Record> {
    let owner = q.name().clone();
    let at_apex = *name == zone.apex;
    let addresses = |qtype: u16| -> Vec<Record> {
        let text = name.to_ascii();
        let Some(entry) = snap.table.get(&text, qtype) else {
            return Vec::new();
        };
        let count = entry.records.len();
        let n = answer_count(entry.max_answers, count.min(255) as u8).min(count);
        let rotation = ctx
            .rotation
            .unwrap_or_else(|| snap.next_rotation(&text, qtype));
        (0..n)
            .filter_map(|k| entry.records.get(rotated_index(rotation, k, count)))
            .map(|ip| {
                let rdata = match ip {
                    IpAddr::V4(a) => RData::A(A(*a)),
                    IpAddr::V6(a) => RData::AAAA(AAAA(*a)),
                };
                Record::from_rdata(owner.clone(), entry.ttl, rdata)
            })
            .collect()
    };
    let with_owner = |mut recs: Vec<Record>| {
        for r in &mut recs {
            r.name = owner.clone();
        }
        recs
    };
    match q.query_type() {
        RecordType::A => addresses(QTYPE_A),
        RecordType::AAAA => addresses(QTYPE_AAAA),
        RecordType::SOA if at_apex => with_owner(vec![zone.soa_record(snap.serial, zone.soa_ttl)]),
        RecordType::NS if at_apex => with_owner(zone.ns_records()),
        // RFC 8482 §4.2: answer ANY with one RRset the name has, not all of them.
        RecordType::ANY => {
            let a = addresses(QTYPE_A);
            if !a.is_empty() {
                return a;
            }
            let aaaa = addresses(QTYPE_AAAA);
            if !aaaa.is_empty() || !at_apex {
                return aaaa;
            }
            with_owner(vec![zone.soa_record(snap.serial, zone.soa_ttl)])
        }
        _ => Vec::new(),
    }
}

/// Adds the OPT record, encodes, and truncates for UDP when the reply does not fit.
fn encode(
    snap: &Snapshot,
    mut r: Message,
    query: &Message,
    ctx: &QueryContext,
    kind: ReplyKind,
) -> (Vec<u8>, ReplyKind) {
    let client_size = query.edns.as_ref().map_or(CLASSIC_UDP, |e| {
        usize::from(e.max_payload()).max(CLASSIC_UDP)
    });
    if let Some(qe) = &query.edns {
        let mut e = Edns::new();
        e.set_max_payload(snap.udp_size);
        e.set_dnssec_ok(qe.flags().dnssec_ok);
        // RFC 7871 §7.2.1: echo the option with the scope our answer used (0: the same for everyone).
        if kind != ReplyKind::BadVers
            && let Some(EdnsOption::Subnet(ecs)) = qe.option(EdnsCode::Subnet)
        {
            let echoed = ClientSubnet::new(ecs.addr(), ecs.source_prefix(), 0);
            e.options_mut().insert(EdnsOption::Subnet(echoed));
        }
        r.set_edns(e);
    }
    let bytes = r.to_vec().unwrap_or_default();
    if ctx.transport == Transport::Udp && bytes.len() > client_size {
        // RFC 2181 §9: set TC and send what fits; the question and OPT always do.
        r.metadata.truncation = true;
        r.answers.clear();
        r.authorities.clear();
        r.additionals.clear();
        return (r.to_vec().unwrap_or(bytes), ReplyKind::Truncated);
    }
    (bytes, kind)
}
