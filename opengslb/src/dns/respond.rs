//! The responder: bytes in, bytes out. Queries the XDP program would answer are answered here by the very
//! same code (`opengslb_common::dns`), so both paths give identical bytes; everything else is parsed with
//! hickory-proto and answered as an authoritative server for the configured zones.

use std::{
    cell::{Cell, RefCell},
    net::IpAddr,
};

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{
        DNSClass, Name, RData, Record, RecordType,
        rdata::{
            A, AAAA, NS,
            opt::{ClientSubnet, EdnsCode, EdnsOption},
        },
    },
    serialize::binary::{BinDecodable as _, BinDecoder},
};
use opengslb_common::{
    dns::{QBUF, Scratch, build_reply_for, names_equal, parse_query},
    maps::{QTYPE_A, QTYPE_AAAA, policy},
};

use super::zone::{Snapshot, Zone};
use crate::{
    name::DnsName,
    table::{EntryKey, Policy},
};

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
    /// The client's address (the packet's source), for routing policies that depend on it; an EDNS
    /// Client Subnet option in the query takes its place.
    pub client: Option<IpAddr>,
}

impl QueryContext {
    /// A UDP query with the snapshot's rotation.
    pub const fn udp() -> Self {
        Self {
            transport: Transport::Udp,
            rotation: None,
            client: None,
        }
    }

    /// A TCP query with the snapshot's rotation.
    pub const fn tcp() -> Self {
        Self {
            transport: Transport::Tcp,
            rotation: None,
            client: None,
        }
    }

    /// The same, from `client`.
    pub const fn from_client(mut self, client: IpAddr) -> Self {
        self.client = Some(client);
        self
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
    // A query the fast path took a rotation position for, and then left to the full path (too big for
    // UDP, say), is answered at that position: each answer advances its name's rotation once.
    let ctx = &match fast(snap, query, ctx) {
        Ok(bytes) => return Outcome::Reply(bytes, ReplyKind::Fast),
        Err(taken) => QueryContext {
            rotation: ctx.rotation.or(taken),
            ..*ctx
        },
    };
    let mut decoder = BinDecoder::new(query);
    let parsed = Message::read(&mut decoder);
    let trailing = !decoder.is_empty();
    let msg = match parsed {
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
    if trailing {
        // Bytes after the last record the counts announce: not a well-formed message (Knot says FORMERR
        // too, and the XDP program passes it as `opt_malformed`). Its OPT is not trusted either, so the
        // FORMERR carries none, as Knot's does.
        let (reply, kind) = formerr(&msg);
        let mut untrusted = msg;
        untrusted.edns = None;
        let (bytes, kind) = encode(snap, reply, &untrusted, ctx, kind, 0);
        return Outcome::Reply(bytes, kind);
    }
    let scope = Cell::new(None);
    let (reply, kind) = full(snap, &msg, ctx, &scope);
    let (bytes, kind) = encode(snap, reply, &msg, ctx, kind, scope.get().unwrap_or(0));
    Outcome::Reply(bytes, kind)
}

/// `reply` (one of ours) as rate limiting slips it: TC=1, its header and question, its OPT record, and
/// no records. For a reply the XDP program could have sent, these are the bytes it slips
/// (`opengslb_common::dns::build_truncated`). `None` for a reply without a question to echo.
pub fn truncated(reply: &[u8]) -> Option<Vec<u8>> {
    let mut r = Message::from_vec(reply).ok()?;
    if r.queries.is_empty() {
        return None;
    }
    r.metadata.truncation = true;
    r.answers.clear();
    r.authorities.clear();
    r.additionals.clear();
    r.to_vec().ok()
}

/// FORMERR to a message that parsed, echoing its question.
fn formerr(msg: &Message) -> (Message, ReplyKind) {
    let mut r = reply_to(msg);
    r.metadata.response_code = ResponseCode::FormErr;
    (r, ReplyKind::FormErr)
}

/// A response to `msg`: its ID, opcode and question, RD and CD copied, everything else clear.
fn reply_to(msg: &Message) -> Message {
    let mut r = Message::new(msg.metadata.id, MessageType::Response, msg.metadata.op_code);
    r.metadata.recursion_desired = msg.metadata.recursion_desired;
    r.metadata.checking_disabled = msg.metadata.checking_disabled;
    r.queries = msg.queries.clone();
    r
}

/// The XDP path's answer, if the XDP program would answer this query from this table; else the rotation
/// position it took, if it took one.
fn fast(snap: &Snapshot, query: &[u8], ctx: &QueryContext) -> Result<Vec<u8>, Option<u32>> {
    if query.len() > QBUF {
        return Err(None);
    }
    // One scratch per thread, reused like the XDP program's per-CPU one: no 2 KiB allocation and
    // zeroing per query. The shared code reads nothing it did not write for this query.
    SCRATCH.with_borrow_mut(|s| fast_in(s, snap, query, ctx))
}

thread_local! {
    static SCRATCH: RefCell<Box<Scratch>> = RefCell::new(Box::new(Scratch::new()));
}

fn fast_in(
    s: &mut Scratch,
    snap: &Snapshot,
    query: &[u8],
    ctx: &QueryContext,
) -> Result<Vec<u8>, Option<u32>> {
    s.msg
        .get_mut(..query.len())
        .ok_or(None)?
        .copy_from_slice(query);
    let q = parse_query(s, query.len()).map_err(|_| None)?;
    let (key, rec) = snap.fast_entry(q.qtype, q.hash).ok_or(None)?;
    if usize::from(rec.name_len) != q.name_len || !names_equal(&s.name, &rec.name, q.name_len) {
        return Err(None);
    }
    // Geolocation by the source address, as the XDP program does; without one, the full path.
    let region = if rec.policy == policy::GEO {
        snap.geo_region(ctx.client.ok_or(None)?)
    } else {
        0
    };
    let rotation = ctx.rotation.unwrap_or_else(|| snap.next_rotation_of(key));
    match build_reply_for(s, &q, rec, rotation, snap.udp_size, region) {
        Ok(len) => Ok(s.msg.get(..len).ok_or(Some(rotation))?.to_vec()),
        // Too big for UDP, a policy only userspace has, ...: the full path handles it.
        Err(_) => Err(Some(rotation)),
    }
}

/// The reply to a parsed query, before encoding.
fn full(
    snap: &Snapshot,
    msg: &Message,
    ctx: &QueryContext,
    scope: &Cell<Option<u8>>,
) -> (Message, ReplyKind) {
    let mut r = reply_to(msg);

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
    if matches!(q.query_type(), RecordType::AXFR | RecordType::IXFR) {
        // Zone transfers: we serve none (the zones live in the config; there are no secondaries). Refusing
        // one is RFC 1035 §4.1.1's own example of REFUSED; answering AXFR or IXFR like an ordinary query
        // (NOERROR, an empty answer) would be a malformed transfer, which must start with the zone's SOA
        // (RFC 5936 §2.2, RFC 1995 §4).
        r.metadata.response_code = ResponseCode::Refused;
        return (r, ReplyKind::Refused);
    }
    r.metadata.authoritative = true;
    let answers = records_for(snap, zone, msg, q, &name, ctx, scope);
    if !answers.is_empty() {
        r.additionals = additional_for(snap, zone, &answers);
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

/// The EDNS Client Subnet address of a query, if it has one.
fn subnet_of(msg: &Message) -> Option<IpAddr> {
    match msg.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(ecs) => Some(ecs.addr()),
        _ => None,
    }
}

/// An A or AAAA record for `ip`.
fn address_record(owner: &Name, ttl: u32, ip: IpAddr) -> Record {
    let rdata = match ip {
        IpAddr::V4(a) => RData::A(A(a)),
        IpAddr::V6(a) => RData::AAAA(AAAA(a)),
    };
    Record::from_rdata(owner.clone(), ttl, rdata)
}

/// The answer records for a question in `zone`.
fn records_for(
    snap: &Snapshot,
    zone: &Zone,
    query_msg: &Message,
    q: &Query,
    name: &Name,
    ctx: &QueryContext,
    scope: &Cell<Option<u8>>,
) -> Vec<Record> {
    let owner = q.name().clone();
    let at_apex = *name == zone.apex;
    let table_name = DnsName::from_hickory(name);
    let addresses = |qtype: u16| -> Vec<Record> {
        let Some(name) = table_name.clone() else {
            return Vec::new();
        };
        let key = EntryKey { name, qtype };
        let Some(entry) = snap.table.entry(&key) else {
            return Vec::new();
        };
        // Geolocation by the Client Subnet address if the query has one and ECS is honoured (echoing the
        // scope the answer holds for), else by the source address as the XDP program places it.
        let ecs = subnet_of(query_msg).filter(|_| snap.honours_ecs());
        let region = match entry.policy {
            Policy::Geo { .. } | Policy::Learned { .. } => match ecs {
                Some(addr) => {
                    let (region, prefix) = snap.subnet_region(addr);
                    scope.set(Some(prefix));
                    region
                }
                None => ctx.client.map_or(0, |c| snap.geo_region(c)),
            },
            _ => 0,
        };
        let rotation = ctx.rotation.unwrap_or_else(|| snap.next_rotation_of(&key));
        let mut answer = entry.answer(rotation, region);
        if let Policy::Learned { .. } = entry.policy
            && let Some(client) = ecs.or(ctx.client)
            && let Some(learned) = snap.learned()
        {
            // Under Client Subnet the scope is at least the longest learned prefix, with or without a
            // learned choice, since another subnet inside the geolocation rule's may have one.
            if ecs.is_some() {
                let learned_scope = learned.read(|t| t.scope_of(client));
                scope.set(Some(scope.get().unwrap_or(0).max(learned_scope)));
            }
            answer = entry.learned_first(answer, learned, client);
        }
        answer
            .into_iter()
            .map(|ip| address_record(&owner, entry.ttl, ip))
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

/// Additional-section processing for an NS answer (RFC 1034 §4.3.2 step 6; RFC 1035 §3.3.11: NS records
/// "cause ... the usual additional section processing to locate a type A record"): the A and AAAA records
/// we have for each name server inside the answer's zone, all of them, with their TTLs. Name servers in
/// other zones, ours included, are left out: resolvers do not trust out-of-zone additional data (RFC 2181
/// §5.4.1), and Knot DNS, whose answers the conformance test compares with ours, leaves them out too.
fn additional_for(snap: &Snapshot, zone: &Zone, answers: &[Record]) -> Vec<Record> {
    let mut out = Vec::new();
    let mut seen: Vec<Name> = Vec::new();
    for rec in answers {
        let RData::NS(NS(target)) = &rec.data else {
            continue;
        };
        let target = target.to_lowercase();
        if seen.contains(&target) || snap.zone_of(&target).is_none_or(|z| z.apex != zone.apex) {
            continue;
        }
        let Some(table_name) = DnsName::from_hickory(&target) else {
            continue;
        };
        for qtype in [QTYPE_A, QTYPE_AAAA] {
            let Some(entry) = snap.table.get(&table_name, qtype) else {
                continue;
            };
            out.extend(
                entry
                    .records
                    .iter()
                    .map(|ip| address_record(&target, entry.ttl, *ip)),
            );
        }
        seen.push(target);
    }
    out
}

/// Adds the OPT record, encodes, and truncates for UDP when the reply does not fit.
fn encode(
    snap: &Snapshot,
    mut r: Message,
    query: &Message,
    ctx: &QueryContext,
    kind: ReplyKind,
    scope: u8,
) -> (Vec<u8>, ReplyKind) {
    let client_size = query.edns.as_ref().map_or(CLASSIC_UDP, |e| {
        usize::from(e.max_payload()).max(CLASSIC_UDP)
    });
    if let Some(qe) = &query.edns {
        let mut e = Edns::new();
        e.set_max_payload(snap.udp_size);
        e.set_dnssec_ok(qe.flags().dnssec_ok);
        // RFC 7871 §7.2.1: echo the option with the scope our answer used (0: the same for everyone;
        // geolocation sets the prefix its rule covers).
        if kind != ReplyKind::BadVers
            && let Some(EdnsOption::Subnet(ecs)) = qe.option(EdnsCode::Subnet)
        {
            let echoed = ClientSubnet::new(ecs.addr(), ecs.source_prefix(), scope);
            e.options_mut().insert(EdnsOption::Subnet(echoed));
        }
        r.set_edns(e);
    }
    let mut bytes = r.to_vec().unwrap_or_default();
    if ctx.transport == Transport::Udp && bytes.len() > client_size && !r.additionals.is_empty() {
        // RFC 2181 §9: TC=1 means data the client needs did not fit. The additional section (name server
        // addresses for an NS answer) is a courtesy: it keeps the whole RRsets that fit, in order, and the
        // rest is left out without TC (as Knot DNS does).
        let extra = std::mem::take(&mut r.additionals);
        bytes = r.to_vec().unwrap_or_default();
        let mut rest = extra.as_slice();
        while let Some(first) = rest.first() {
            let n = rest
                .iter()
                .take_while(|x| x.name == first.name && x.record_type() == first.record_type())
                .count();
            let (rrset, tail) = rest.split_at(n);
            r.additionals.extend_from_slice(rrset);
            match r.to_vec() {
                Ok(b) if b.len() <= client_size => bytes = b,
                _ => {
                    r.additionals.truncate(r.additionals.len() - n);
                    break;
                }
            }
            rest = tail;
        }
    }
    if ctx.transport == Transport::Udp && bytes.len() > client_size {
        // RFC 2181 §9: set TC and send what fits; the question and OPT always do.
        r.metadata.truncation = true;
        r.answers.clear();
        r.authorities.clear();
        r.additionals.clear();
        let mut truncated = r.to_vec().unwrap_or_default();
        if truncated.len() > client_size {
            // Only a message with several long questions (itself a FORMERR) gets here: drop them too.
            r.queries.clear();
            truncated = r.to_vec().unwrap_or_default();
        }
        return (truncated, ReplyKind::Truncated);
    }
    (bytes, kind)
}

#[cfg(test)]
mod tests {
    //! The behaviours the Knot DNS conformance test (`tests/knot_conformance.rs`) brought in: zone
    //! transfers refused, and name server addresses in the additional section of NS answers.

    use std::net::IpAddr;

    use hickory_proto::{
        op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
        rr::{DNSClass, Name, RData, RecordType},
    };

    use super::{Outcome, QueryContext, ReplyKind, respond};
    use crate::{
        config::Config,
        dns::{Snapshot, Zone},
        overwatch::table_from_config,
    };

    /// ns1 has one address of each family, ns2 none, ns3 sixteen of each; ns.elsewhere.test lies in the
    /// other zone.
    fn snapshot() -> Snapshot {
        let mut servers = String::new();
        let mut add = |addr: String, service: &str| {
            servers.push_str(&format!(
                "      - {{ address: \"{addr}\", service: {service} }}\n"
            ));
        };
        add("192.0.2.53".into(), "ns1.demo.local");
        add("2001:db8::53".into(), "ns1.demo.local");
        for i in 1..=16 {
            add(format!("198.51.100.{i}"), "ns3.demo.local");
            add(format!("2001:db8:53::{i:x}"), "ns3.demo.local");
        }
        add("203.0.113.1".into(), "ns.elsewhere.test");
        add("192.0.2.1".into(), "app.demo.local");
        let yaml = format!(
            "\
dns:
  zones: [demo.local, elsewhere.test]
  nameservers: [ns1.demo.local, ns2.demo.local, ns3.demo.local, ns.elsewhere.test]
regions:
  - name: r
    servers:
{servers}domains:
  - {{ name: ns1.demo.local, regions: [r], ttl: 300 }}
  - {{ name: ns3.demo.local, regions: [r], ttl: 300, max_answers: 2 }}
  - {{ name: ns.elsewhere.test, regions: [r], ttl: 300 }}
  - {{ name: app.demo.local, regions: [r] }}
"
        );
        let cfg = Config::from_yaml_str(&yaml).expect("test config is valid");
        let zones = Zone::from_config(&cfg).expect("zones");
        let table = table_from_config(&cfg);
        let rendered = table.render();
        Snapshot::new(table, &rendered, zones, 7, 1232)
    }

    fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    fn ask(snap: &Snapshot, q: &[u8], ctx: &QueryContext) -> (Message, ReplyKind, usize) {
        match respond(snap, q, ctx) {
            Outcome::Reply(bytes, kind) => (Message::from_vec(&bytes).unwrap(), kind, bytes.len()),
            Outcome::Drop(why) => panic!("dropped: {why:?}"),
        }
    }

    /// (owner, address) of every additional record, OPT aside.
    fn additional(m: &Message) -> Vec<(String, IpAddr)> {
        m.additionals
            .iter()
            .map(|r| {
                let ip = match &r.data {
                    RData::A(a) => IpAddr::V4(a.0),
                    RData::AAAA(a) => IpAddr::V6(a.0),
                    other => panic!("not an address: {other}"),
                };
                assert_eq!(r.dns_class, DNSClass::IN);
                assert_eq!(r.ttl, 300, "the name server's own TTL");
                (r.name.to_ascii(), ip)
            })
            .collect()
    }

    #[test]
    fn zone_transfers_are_refused() {
        let snap = snapshot();
        for qtype in [RecordType::AXFR, RecordType::IXFR] {
            for ctx in [QueryContext::udp(), QueryContext::tcp()] {
                let (m, kind, _) = ask(&snap, &query("demo.local.", qtype, None), &ctx);
                assert_eq!(kind, ReplyKind::Refused, "{qtype}");
                assert_eq!(m.metadata.response_code, ResponseCode::Refused);
                assert!(!m.metadata.authoritative, "{qtype}: AA=0");
                assert_eq!(m.queries.len(), 1, "question echoed");
                assert!(
                    m.answers.is_empty() && m.authorities.is_empty() && m.additionals.is_empty()
                );
            }
        }
    }

    #[test]
    fn ns_answers_carry_the_in_zone_name_server_addresses() {
        let snap = snapshot();
        let (m, kind, _) = ask(
            &snap,
            &query("DeMo.LoCaL.", RecordType::NS, Some(1232)),
            &QueryContext::udp(),
        );
        assert_eq!(kind, ReplyKind::Answer);
        assert_eq!(m.answers.len(), 4);
        let got = additional(&m);
        // ns1's two, then all 32 of ns3 (max_answers limits answers, not the additional section); nothing
        // for ns2 (no address) or ns.elsewhere.test (another zone).
        assert_eq!(got.len(), 2 + 32, "{got:?}");
        assert_eq!(
            got[0],
            ("ns1.demo.local.".into(), "192.0.2.53".parse().unwrap())
        );
        assert_eq!(
            got[1],
            ("ns1.demo.local.".into(), "2001:db8::53".parse().unwrap())
        );
        assert!(
            got[2..18]
                .iter()
                .all(|(n, ip)| n == "ns3.demo.local." && ip.is_ipv4())
        );
        assert!(
            got[18..]
                .iter()
                .all(|(n, ip)| n == "ns3.demo.local." && ip.is_ipv6())
        );
        assert!(!m.metadata.truncation);

        // The other zone's NS answer: only its own name server's address; those in demo.local are in
        // another zone.
        let (m, _, _) = ask(
            &snap,
            &query("elsewhere.test.", RecordType::NS, Some(1232)),
            &QueryContext::udp(),
        );
        assert_eq!(m.answers.len(), 4);
        assert_eq!(
            additional(&m),
            [(
                "ns.elsewhere.test.".to_owned(),
                "203.0.113.1".parse().unwrap()
            )],
            "only the in-zone name server"
        );
    }

    #[test]
    fn name_server_addresses_that_do_not_fit_are_left_out_without_tc() {
        let snap = snapshot();
        // Without EDNS (512 bytes): ns1's A and AAAA and ns3's 16 A fit, ns3's 16 AAAA (448 bytes) do not.
        let q = query("demo.local.", RecordType::NS, None);
        let (m, kind, len) = ask(&snap, &q, &QueryContext::udp());
        assert_eq!(kind, ReplyKind::Answer);
        assert!(len <= 512, "{len} bytes");
        assert!(
            !m.metadata.truncation,
            "RFC 2181 §9: no TC for additional data"
        );
        assert_eq!(m.answers.len(), 4, "the answer is whole");
        let got = additional(&m);
        assert_eq!(got.len(), 2 + 16, "{got:?}");
        assert!(
            got[2..]
                .iter()
                .all(|(n, ip)| n == "ns3.demo.local." && ip.is_ipv4())
        );
        // Over TCP, everything.
        let (m, _, _) = ask(&snap, &q, &QueryContext::tcp());
        assert_eq!(additional(&m).len(), 2 + 32);
    }

    #[test]
    fn other_answers_have_no_additional_records() {
        let snap = snapshot();
        for (name, qtype) in [
            ("app.demo.local.", RecordType::A),
            ("demo.local.", RecordType::SOA),
            ("demo.local.", RecordType::ANY),
            ("ns1.demo.local.", RecordType::A),
        ] {
            let (m, kind, _) = ask(&snap, &query(name, qtype, None), &QueryContext::udp());
            assert!(
                matches!(kind, ReplyKind::Answer | ReplyKind::Fast),
                "{name} {qtype}: {kind:?}"
            );
            assert!(m.additionals.is_empty(), "{name} {qtype}");
        }
    }
}
