//! Bytes in, bytes out: the responder against hand-built queries, for each behaviour of `docs/dns-behaviour.md`'s
//! "DNS behaviour" list. Replies are checked on the wire (header bits, counts, exact bytes where the layout
//! is fixed) and, for record contents, parsed back with hickory-proto.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{RData, RecordType},
};

use rand::{RngExt as _, SeedableRng as _, rngs::StdRng};

use super::{DropReason, Outcome, QueryContext, ReplyKind, Snapshot, Transport, Zone, respond};
use crate::{config::Config, overwatch::table_from_config};

const SERIAL: u32 = 2_024_010_101;
const OUR_UDP: u16 = 1232;

/// A 63-byte label, so that sixteen AAAA records under it do not fit in 512 bytes.
const LONG: &str = "big-answer-0123456789-0123456789-0123456789-0123456789-01234567";

fn yaml(soa_ttl: u32, negative_ttl: u32) -> String {
    let mut servers = String::new();
    let mut add = |addr: &str, service: &str| {
        servers.push_str(&format!(
            "      - {{ address: \"{addr}\", service: {service} }}\n"
        ));
    };
    for a in [
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.3",
        "2001:db8::1",
        "2001:db8::2",
    ] {
        add(a, "app.demo.local");
    }
    add("192.0.2.10", "v4only.demo.local");
    add("2001:db8::10", "v6only.demo.local");
    add("192.0.2.20", "leaf.ent.demo.local");
    add("192.0.2.30", "weighted.demo.local");
    add("192.0.2.40", "www.example.test");
    for i in 1..=16 {
        add(&format!("2001:db8:1::{i:x}"), &format!("{LONG}.demo.local"));
    }
    format!(
        "\
dns:
  listen_address: \"127.0.0.1:5353\"
  zones: [demo.local, example.test]
  default_ttl: 30
  soa: {{ ttl: {soa_ttl}, negative_ttl: {negative_ttl} }}
regions:
  - name: r
    servers:
{servers}domains:
  - {{ name: app.demo.local, regions: [r], ttl: 5, max_answers: 2 }}
  - {{ name: v4only.demo.local, regions: [r] }}
  - {{ name: v6only.demo.local, regions: [r] }}
  - {{ name: leaf.ent.demo.local, regions: [r] }}
  - {{ name: weighted.demo.local, routing_algorithm: weighted, regions: [r] }}
  - {{ name: www.example.test, regions: [r] }}
  - {{ name: {LONG}.demo.local, regions: [r], max_answers: 16 }}
"
    )
}

fn snapshot_with(soa_ttl: u32, negative_ttl: u32) -> Snapshot {
    let cfg = Config::from_yaml_str(&yaml(soa_ttl, negative_ttl)).expect("test config is valid");
    let zones = Zone::from_config(&cfg).expect("zones");
    let table = table_from_config(&cfg);
    let rendered = table.render();
    Snapshot::new(table, &rendered, zones, SERIAL, OUR_UDP)
}

fn snapshot() -> Snapshot {
    snapshot_with(60, 5)
}

// ---------------------------------------------------------------------------------------------------
// Building queries by hand.

const A: u16 = 1;
const NS: u16 = 2;
const SOA: u16 = 6;
const MX: u16 = 15;
const AAAA: u16 = 28;
const ANY: u16 = 255;
const IN: u16 = 1;
const CH: u16 = 3;

const QR: u16 = 0x8000;
const AA: u16 = 0x0400;
const TC: u16 = 0x0200;
const RD: u16 = 0x0100;
const RA: u16 = 0x0080;
const AD: u16 = 0x0020;
const CD: u16 = 0x0010;

/// A dotted name in wire format, case kept; "" is the root.
fn wire(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(u8::try_from(label.len()).expect("label length fits a byte"));
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// An EDNS OPT record.
#[derive(Clone)]
struct Opt {
    udp: u16,
    version: u8,
    dnssec_ok: bool,
    options: Vec<(u16, Vec<u8>)>,
}

impl Opt {
    fn new(udp: u16) -> Self {
        Self {
            udp,
            version: 0,
            dnssec_ok: false,
            options: Vec::new(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut rdata = Vec::new();
        for (code, data) in &self.options {
            rdata.extend_from_slice(&code.to_be_bytes());
            rdata.extend_from_slice(&(data.len() as u16).to_be_bytes());
            rdata.extend_from_slice(data);
        }
        let mut out = vec![0];
        out.extend_from_slice(&41u16.to_be_bytes());
        out.extend_from_slice(&self.udp.to_be_bytes());
        out.push(0); // extended RCODE
        out.push(self.version);
        out.extend_from_slice(&(if self.dnssec_ok { 0x8000u16 } else { 0 }).to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
        out
    }
}

/// The question section for one name, type and class.
fn question(name: &str, qtype: u16, qclass: u16) -> Vec<u8> {
    let mut q = wire(name);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&qclass.to_be_bytes());
    q
}

/// A header with these counts.
fn header(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    [id, flags, qd, an, ns, ar]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

/// A query: one question, then the OPT records given.
fn query_full(id: u16, flags: u16, name: &str, qtype: u16, qclass: u16, opts: &[Opt]) -> Vec<u8> {
    let mut m = header(id, flags, 1, 0, 0, opts.len() as u16);
    m.extend(question(name, qtype, qclass));
    for o in opts {
        m.extend(o.bytes());
    }
    m
}

fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    query_full(id, RD, name, qtype, IN, &[])
}

fn query_edns(id: u16, name: &str, qtype: u16, opt: Opt) -> Vec<u8> {
    query_full(id, RD, name, qtype, IN, &[opt])
}

// ---------------------------------------------------------------------------------------------------
// Reading replies.

fn udp_at(rotation: u32) -> QueryContext {
    QueryContext {
        transport: Transport::Udp,
        rotation: Some(rotation),
        client: None,
    }
}

fn tcp_at(rotation: u32) -> QueryContext {
    QueryContext {
        transport: Transport::Tcp,
        rotation: Some(rotation),
        client: None,
    }
}

/// The reply, which must exist.
#[track_caller]
fn ask(snap: &Snapshot, q: &[u8], ctx: &QueryContext) -> (Vec<u8>, ReplyKind) {
    match respond(snap, q, ctx) {
        Outcome::Reply(bytes, kind) => (bytes, kind),
        Outcome::Drop(why) => panic!("expected a reply to {q:02x?}, got a drop: {why:?}"),
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn flags(b: &[u8]) -> u16 {
    be16(b, 2)
}

fn rcode(b: &[u8]) -> u8 {
    (flags(b) & 0x000f) as u8
}

/// (QD, AN, NS, AR).
fn counts(b: &[u8]) -> (u16, u16, u16, u16) {
    (be16(b, 4), be16(b, 6), be16(b, 8), be16(b, 10))
}

#[track_caller]
fn parse(b: &[u8]) -> Message {
    Message::from_vec(b).unwrap_or_else(|e| panic!("reply does not parse ({e}): {b:02x?}"))
}

/// The header checks every reply to a query must pass: the ID, QR=1, RA=0, AD=0, RD and CD copied.
#[track_caller]
fn check_common(reply: &[u8], query: &[u8]) {
    assert!(
        reply.len() >= 12,
        "reply shorter than a header: {reply:02x?}"
    );
    assert_eq!(reply[..2], query[..2], "ID copied");
    let f = flags(reply);
    let qf = be16(query, 2);
    assert_ne!(f & QR, 0, "QR=1");
    assert_eq!(f & 0x7800, qf & 0x7800, "opcode copied");
    assert_eq!(f & RD, qf & RD, "RD copied");
    assert_eq!(f & RA, 0, "RA=0");
    assert_eq!(f & AD, 0, "AD=0");
}

/// As `check_common`, plus CD copied (for every reply that got as far as parsing the query).
#[track_caller]
fn check_parsed(reply: &[u8], query: &[u8]) {
    check_common(reply, query);
    assert_eq!(flags(reply) & CD, be16(query, 2) & CD, "CD copied");
}

/// The question section of a message with one question, exactly as on the wire.
fn question_bytes(msg: &[u8]) -> &[u8] {
    let mut at = 12;
    while msg[at] != 0 {
        at += 1 + usize::from(msg[at]);
    }
    &msg[12..at + 5]
}

fn addresses(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

fn v6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last))
}

/// The negative-answer SOA of demo.local: one record in authority, with this TTL and our serial.
#[track_caller]
fn check_negative_soa(m: &Message, ttl: u32) {
    assert!(m.answers.is_empty(), "no answers: {m}");
    assert_eq!(m.authorities.len(), 1, "one SOA in authority: {m}");
    let soa = &m.authorities[0];
    assert_eq!(soa.name.to_ascii().to_lowercase(), "demo.local.");
    assert_eq!(soa.ttl, ttl, "negative SOA TTL = min(SOA TTL, MINIMUM)");
    let RData::SOA(s) = &soa.data else {
        panic!("authority is not a SOA: {soa}");
    };
    assert_eq!(s.serial, SERIAL);
    assert_eq!(s.mname.to_ascii(), "ns1.demo.local.");
    assert_eq!(s.rname.to_ascii(), "hostmaster.demo.local.");
}

// ---------------------------------------------------------------------------------------------------
// A and AAAA.

/// The reply XDP and userspace give to `app.demo.local A` at a rotation position, byte by byte.
fn expected_app_a(
    id: u16,
    flags: u16,
    qname: &str,
    records: [u8; 2],
    edns: Option<bool>,
) -> Vec<u8> {
    let mut want = header(
        id,
        QR | AA | (flags & (RD | CD)),
        1,
        2,
        0,
        u16::from(edns.is_some()),
    );
    want.extend(question(qname, A, IN));
    for last in records {
        // Owner: a pointer to the question name; A IN, TTL 5, RDLENGTH 4.
        want.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 192, 0, 2, last]);
    }
    if let Some(dnssec_ok) = edns {
        // A bare OPT: root, type 41, our UDP size, RCODE 0, version 0, DO copied, no options.
        let [u0, u1] = OUR_UDP.to_be_bytes();
        let d = if dnssec_ok { 0x80 } else { 0 };
        want.extend_from_slice(&[0, 0, 41, u0, u1, 0, 0, d, 0, 0, 0]);
    }
    want
}

#[test]
fn a_answer_bytes_and_rotation() {
    let snap = snapshot();
    let q = query(0x1234, "app.demo.local", A);
    // Three records, max_answers 2: positions 0, 1, 2 give .1 .2, .2 .3, .3 .1.
    for (rotation, records) in [(0, [1, 2]), (1, [2, 3]), (2, [3, 1]), (3, [1, 2])] {
        let (r, kind) = ask(&snap, &q, &udp_at(rotation));
        assert_eq!(kind, ReplyKind::Fast);
        assert_eq!(
            r,
            expected_app_a(0x1234, RD, "app.demo.local", records, None),
            "rotation {rotation}"
        );
    }
}

#[test]
fn a_rotation_advances_per_query_without_a_fixed_position() {
    let snap = snapshot();
    let q = query(7, "app.demo.local", A);
    let got: Vec<Vec<IpAddr>> = (0..4)
        .map(|_| addresses(&parse(&ask(&snap, &q, &QueryContext::udp()).0)))
        .collect();
    assert_eq!(
        got,
        [
            vec![v4(1), v4(2)],
            vec![v4(2), v4(3)],
            vec![v4(3), v4(1)],
            vec![v4(1), v4(2)]
        ]
    );
}

/// A name rotates on one counter whichever way a query is answered: by the fast path, or by the full
/// path (a query with Client Subnet, which XDP passes; one whose answer does not fit UDP), each
/// advancing it once.
#[test]
fn one_rotation_per_name_across_the_fast_and_full_paths() {
    let snap = snapshot();
    let plain = query(7, "app.demo.local", A);
    let ecs = query_edns(
        7,
        "app.demo.local",
        A,
        Opt {
            options: vec![(8, vec![0, 1, 24, 0, 198, 51, 100])],
            ..Opt::new(4096)
        },
    );
    let mut kinds = Vec::new();
    let got: Vec<Vec<IpAddr>> = [&plain, &ecs, &plain]
        .iter()
        .map(|q| {
            let (bytes, kind) = ask(&snap, q, &QueryContext::udp());
            kinds.push(kind);
            addresses(&parse(&bytes))
        })
        .collect();
    assert_eq!(kinds[0], ReplyKind::Fast);
    assert_ne!(
        kinds[1],
        ReplyKind::Fast,
        "Client Subnet takes the full path"
    );
    assert_eq!(
        got,
        [vec![v4(1), v4(2)], vec![v4(2), v4(3)], vec![v4(3), v4(1)]]
    );

    // Sixteen AAAA records do not fit 512 bytes: the fast path takes a position, then leaves the query
    // to the full path, which answers it (TC=1, no records) at that same position; so the TCP queries
    // before and after it are two positions apart.
    let q = query(8, &format!("{LONG}.demo.local"), AAAA);
    let first = ask(&snap, &q, &QueryContext::tcp());
    let truncated = ask(&snap, &q, &QueryContext::udp());
    let third = ask(&snap, &q, &QueryContext::tcp());
    assert_ne!(truncated.1, ReplyKind::Fast);
    assert_ne!(flags(&truncated.0) & TC, 0);
    let (a, c) = (addresses(&parse(&first.0)), addresses(&parse(&third.0)));
    assert_eq!(a.len(), 16);
    assert_eq!(c[0], a[2], "two answers since the first: {a:?} then {c:?}");
}

#[test]
fn aaaa_answer_with_rotation() {
    let snap = snapshot();
    let q = query(9, "app.demo.local", AAAA);
    for (rotation, want) in [(0, [1, 2]), (1, [2, 1])] {
        let (r, kind) = ask(&snap, &q, &udp_at(rotation));
        assert_eq!(kind, ReplyKind::Fast);
        check_parsed(&r, &q);
        assert_eq!(counts(&r), (1, 2, 0, 0));
        assert_ne!(flags(&r) & AA, 0, "AA=1");
        let m = parse(&r);
        assert_eq!(addresses(&m), want.map(v6));
        assert!(m.answers.iter().all(|a| a.ttl == 5));
        // Each owner is a pointer to the question; RDLENGTH 16.
        assert_eq!(
            r[question_bytes(&r).len() + 12..][..12],
            [0xc0, 0x0c, 0, 28, 0, 1, 0, 0, 0, 5, 0, 16]
        );
    }
}

#[test]
fn a_weighted_name_is_answered_by_the_fast_path() {
    // Weighted is a table policy the XDP code implements, so the fast path answers it as XDP would.
    let snap = snapshot();
    let q = query(10, "weighted.demo.local", A);
    let (r, kind) = ask(&snap, &q, &udp_at(0));
    assert_eq!(kind, ReplyKind::Fast);
    check_parsed(&r, &q);
    assert_ne!(flags(&r) & AA, 0);
    assert_eq!(addresses(&parse(&r)), [v4(30)]);
    assert_eq!(parse(&r).answers[0].ttl, 30, "default_ttl");
}

/// Queries without EDNS, with it, and with DO set, with RD and CD in turn.
fn edns_and_flags() -> [(Vec<Opt>, u16); 3] {
    [
        (vec![], RD),
        (vec![Opt::new(4096)], RD | CD),
        (
            vec![Opt {
                dnssec_ok: true,
                ..Opt::new(1400)
            }],
            0,
        ),
    ]
}

#[test]
fn fast_and_full_paths_give_the_same_bytes() {
    // A query with TC=1 is never taken by the XDP code (it counts `tc`), so the full path answers it; the
    // reply must be the very bytes the fast path gives the same query without TC.
    let snap = snapshot();
    for (opts, flags) in edns_and_flags() {
        for (name, qtype) in [("ApP.demo.LOCAL", A), ("app.demo.local", AAAA)] {
            let fast_q = query_full(0x4242, flags, name, qtype, IN, &opts);
            let full_q = query_full(0x4242, flags | TC, name, qtype, IN, &opts);
            let (fast_r, fast_kind) = ask(&snap, &fast_q, &udp_at(1));
            let (full_r, full_kind) = ask(&snap, &full_q, &udp_at(1));
            assert_eq!(fast_kind, ReplyKind::Fast);
            assert_eq!(full_kind, ReplyKind::Answer);
            assert_eq!(full_r, fast_r, "{name} {qtype} flags {flags:#06x}");
        }
    }
}

#[test]
fn a_slipped_reply_is_the_xdp_programs_truncated_reply() {
    // Rate limiting's slip: the userspace server truncates the reply it would have sent; the XDP program
    // builds its truncated reply from the query. They must be the same bytes.
    let snap = snapshot();
    for (opts, qflags) in edns_and_flags() {
        for (name, qtype) in [("ApP.demo.LOCAL", A), ("app.demo.local", AAAA)] {
            let q = query_full(0x5151, qflags, name, qtype, IN, &opts);
            let (reply, kind) = ask(&snap, &q, &udp_at(3));
            assert_eq!(kind, ReplyKind::Fast);
            let slipped = super::truncated(&reply).expect("a question to echo");
            let mut s = opengslb_common::dns::Scratch::new();
            s.msg[..q.len()].copy_from_slice(&q);
            let parsed =
                opengslb_common::dns::parse_query(&mut s, q.len()).expect("the gate takes it");
            let len =
                opengslb_common::dns::build_truncated(&mut s, &parsed, OUR_UDP).expect("fits");
            assert_eq!(slipped, &s.msg[..len], "{name} {qtype} flags {qflags:#06x}");
            assert_eq!(flags(&slipped) & TC, TC);
            assert_eq!(counts(&slipped), (1, 0, 0, u16::from(!opts.is_empty())));
            assert_eq!(
                question_bytes(&slipped),
                question_bytes(&q),
                "0x20 case kept"
            );
        }
    }
    // Other replies keep their RCODE, and lose their records.
    let (nx, _) = ask(&snap, &query(7, "nope.demo.local", A), &udp_at(0));
    let slipped = super::truncated(&nx).expect("a question to echo");
    assert_eq!(rcode(&slipped), rcode(&nx));
    assert_eq!(counts(&slipped), (1, 0, 0, 0));
    assert_eq!(
        super::truncated(&[0; 12]),
        None,
        "no question: nothing to slip"
    );
}

// ---------------------------------------------------------------------------------------------------
// The apex, NODATA, NXDOMAIN, REFUSED.

#[test]
fn soa_at_the_apex() {
    let snap = snapshot();
    let q = query(11, "demo.local", SOA);
    let (r, kind) = ask(&snap, &q, &udp_at(0));
    assert_eq!(kind, ReplyKind::Answer);
    check_parsed(&r, &q);
    assert_ne!(flags(&r) & AA, 0, "AA=1");
    assert_eq!(rcode(&r), 0);
    assert_eq!(counts(&r), (1, 1, 0, 0));
    let m = parse(&r);
    let soa = &m.answers[0];
    assert_eq!(soa.name.to_ascii(), "demo.local.");
    assert_eq!(soa.ttl, 60, "the SOA's own TTL in an answer");
    let RData::SOA(s) = &soa.data else {
        panic!("not a SOA: {soa}")
    };
    assert_eq!(s.mname.to_ascii(), "ns1.demo.local.");
    assert_eq!(s.rname.to_ascii(), "hostmaster.demo.local.");
    assert_eq!(s.serial, SERIAL);
    assert_eq!(
        (s.refresh, s.retry, s.expire, s.minimum),
        (3600, 600, 86400, 5)
    );
}

#[test]
fn ns_at_the_apex() {
    let snap = snapshot();
    let q = query(12, "example.test", NS);
    let (r, kind) = ask(&snap, &q, &udp_at(0));
    assert_eq!(kind, ReplyKind::Answer);
    check_parsed(&r, &q);
    assert_ne!(flags(&r) & AA, 0);
    let m = parse(&r);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].name.to_ascii(), "example.test.");
    assert_eq!(m.answers[0].ttl, 60);
    let RData::NS(ns) = &m.answers[0].data else {
        panic!("not NS: {}", m.answers[0])
    };
    assert_eq!(ns.0.to_ascii(), "ns1.example.test.");
}

#[test]
fn soa_and_ns_below_the_apex_are_nodata() {
    let snap = snapshot();
    for qtype in [SOA, NS] {
        let q = query(13, "app.demo.local", qtype);
        let (r, kind) = ask(&snap, &q, &udp_at(0));
        assert_eq!(kind, ReplyKind::NoData, "type {qtype}");
        assert_eq!(rcode(&r), 0);
        check_negative_soa(&parse(&r), 5);
    }
}

#[test]
fn nodata_carries_the_soa_with_the_negative_ttl() {
    let snap = snapshot();
    for (name, qtype) in [
        ("v4only.demo.local", AAAA),
        ("v6only.demo.local", A),
        ("app.demo.local", MX),
        ("demo.local", A),
    ] {
        let q = query(14, name, qtype);
        let (r, kind) = ask(&snap, &q, &udp_at(0));
        assert_eq!(kind, ReplyKind::NoData, "{name} {qtype}");
        check_parsed(&r, &q);
        assert_ne!(flags(&r) & AA, 0, "AA=1");
        assert_eq!(rcode(&r), 0, "NOERROR");
        assert_eq!(counts(&r), (1, 0, 1, 0));
        // SOA TTL 60, MINIMUM 5: the SOA goes out with 5.
        check_negative_soa(&parse(&r), 5);
    }
}

#[test]
fn negative_soa_ttl_is_the_smaller_of_ttl_and_minimum() {
    // SOA TTL 3 below MINIMUM 30: the SOA goes out with 3 (RFC 2308 §3).
    let snap = snapshot_with(3, 30);
    let q = query(15, "v4only.demo.local", AAAA);
    let (r, _) = ask(&snap, &q, &udp_at(0));
    check_negative_soa(&parse(&r), 3);
    let q = query(15, "nope.demo.local", A);
    let (r, _) = ask(&snap, &q, &udp_at(0));
    check_negative_soa(&parse(&r), 3);
}

#[test]
fn nxdomain_bytes() {
    let snap = snapshot();
    let q = query(0xbeef, "nope.demo.local", A);
    let (r, kind) = ask(&snap, &q, &udp_at(0));
    assert_eq!(kind, ReplyKind::NxDomain);
    let mut want = header(0xbeef, QR | AA | RD | 3, 1, 0, 1, 0);
    want.extend(question("nope.demo.local", A, IN));
    // The SOA: owner "demo.local" as a pointer into the question (offset 17), TYPE 6, CLASS IN, TTL 5.
    want.extend_from_slice(&[0xc0, 17, 0, 6, 0, 1, 0, 0, 0, 5]);
    let mut rdata = vec![3];
    rdata.extend_from_slice(b"ns1");
    rdata.extend_from_slice(&[0xc0, 17]);
    rdata.push(10);
    rdata.extend_from_slice(b"hostmaster");
    rdata.extend_from_slice(&[0xc0, 17]);
    for v in [SERIAL, 3600, 600, 86400, 5] {
        rdata.extend_from_slice(&v.to_be_bytes());
    }
    want.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    want.extend(rdata);
    assert_eq!(r, want);
}

#[test]
fn nxdomain_for_unknown_names_in_the_zone() {
    let snap = snapshot();
    for (name, qtype) in [
        ("nope.demo.local", A),
        ("x.app.demo.local", A),
        ("nope.demo.local", SOA),
        ("nope.example.test", AAAA),
        ("a.b.c.leaf.ent.demo.local", ANY),
    ] {
        let q = query(16, name, qtype);
        let (r, kind) = ask(&snap, &q, &udp_at(0));
        assert_eq!(kind, ReplyKind::NxDomain, "{name}");
        check_parsed(&r, &q);
        assert_ne!(flags(&r) & AA, 0, "AA=1");
        assert_eq!(rcode(&r), 3, "NXDOMAIN");
        let m = parse(&r);
        assert_eq!(m.authorities.len(), 1);
        assert!(matches!(m.authorities[0].data, RData::SOA(_)));
        assert_eq!(m.authorities[0].ttl, 5);
    }
}

#[test]
fn empty_non_terminal_is_nodata() {
    // leaf.ent.demo.local exists, so ent.demo.local exists too, with no records (RFC 8020).
    let snap = snapshot();
    for qtype in [A, AAAA, ANY] {
        let q = query(17, "ent.demo.local", qtype);
        let (r, kind) = ask(&snap, &q, &udp_at(0));
        assert_eq!(kind, ReplyKind::NoData, "type {qtype}");
        assert_eq!(rcode(&r), 0, "NOERROR, not NXDOMAIN");
        check_negative_soa(&parse(&r), 5);
    }
}

#[test]
fn a_name_without_records_is_nodata() {
    // What the registry gives a name whose answer set is empty (all-down policy `empty`, or no backend).
    let cfg = Config::from_yaml_str(&yaml(60, 5)).expect("test config is valid");
    let spec = crate::table::NameSpec::new(
        "gone.demo.local".parse().unwrap(),
        5,
        crate::table::Policy::RoundRobin,
        1,
        [],
    );
    let table = crate::table::AnswerTable::from_specs([&spec]);
    let zones = Zone::from_config(&cfg).expect("zones");
    let rendered = table.render();
    let snap = Snapshot::new(table, &rendered, zones, SERIAL, OUR_UDP);
    for qtype in [A, AAAA] {
        let q = query(17, "gone.demo.local", qtype);
        let (r, kind) = ask(&snap, &q, &udp_at(0));
        assert_eq!(kind, ReplyKind::NoData, "type {qtype}");
        assert_eq!(rcode(&r), 0, "NOERROR, not NXDOMAIN");
        check_negative_soa(&parse(&r), 5);
    }
}

#[test]
fn refused_outside_the_zones_without_aa() {
    let snap = snapshot();
    for (name, qtype, qclass) in [
        ("example.com", A, IN),
        ("local", A, IN),
        ("", NS, IN),
        ("demo.local.evil", A, IN),
        ("app.demo.local", A, CH),
    ] {
        let q = query_full(18, RD | CD, name, qtype, qclass, &[]);
        let (r, kind) = ask(&snap, &q, &udp_at(0));
        assert_eq!(kind, ReplyKind::Refused, "{name:?} class {qclass}");
        check_parsed(&r, &q);
        assert_eq!(rcode(&r), 5, "REFUSED");
        assert_eq!(flags(&r) & AA, 0, "AA=0 outside our zones");
        assert_eq!(counts(&r), (1, 0, 0, 0));
        assert_eq!(question_bytes(&r), question_bytes(&q), "question echoed");
    }
}

// ---------------------------------------------------------------------------------------------------
// Case, flags.

#[test]
fn names_match_case_insensitively_and_the_question_is_echoed_as_sent() {
    let snap = snapshot();
    let cases = [
        ("ApP.DeMo.LoCaL", A, ReplyKind::Fast),
        ("APP.DEMO.LOCAL", AAAA, ReplyKind::Fast),
        ("WeIgHtEd.Demo.Local", A, ReplyKind::Fast),
        ("DeMo.LoCaL", SOA, ReplyKind::Answer),
        ("V4ONLY.demo.local", AAAA, ReplyKind::NoData),
        ("NoPe.DEMO.local", A, ReplyKind::NxDomain),
        ("ExAmPlE.CoM", A, ReplyKind::Refused),
    ];
    for (name, qtype, want) in cases {
        let q = query(19, name, qtype);
        let (r, kind) = ask(&snap, &q, &udp_at(0));
        assert_eq!(kind, want, "{name}");
        assert_eq!(
            question_bytes(&r),
            question_bytes(&q),
            "{name}: question echoed byte for byte"
        );
        let m = parse(&r);
        for a in &m.answers {
            assert!(
                a.name.eq_case(m.queries[0].name()),
                "{name}: answer owner {} is the question name as sent",
                a.name
            );
        }
    }
    let (r, _) = ask(&snap, &query(19, "ApP.DeMo.LoCaL", A), &udp_at(0));
    assert_eq!(r, expected_app_a(19, RD, "ApP.DeMo.LoCaL", [1, 2], None));
}

#[test]
fn rd_and_cd_copied_ra_and_ad_clear_aa_set() {
    let snap = snapshot();
    for qflags in [0, RD, CD, RD | CD, RD | AD, AD | CD] {
        for (name, qtype) in [
            ("app.demo.local", A),
            ("weighted.demo.local", A),
            ("demo.local", SOA),
            ("v4only.demo.local", AAAA),
            ("nope.demo.local", A),
        ] {
            let q = query_full(20, qflags, name, qtype, IN, &[]);
            let (r, _) = ask(&snap, &q, &udp_at(0));
            check_parsed(&r, &q);
            assert_ne!(flags(&r) & AA, 0, "AA=1 for {name}");
            assert_eq!(flags(&r) & TC, 0);
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// EDNS.

/// The OPT record at the end of a reply: (UDP size, extended RCODE, version, flags, RDATA).
fn reply_opt(r: &[u8]) -> (u16, u8, u8, u16, Vec<u8>) {
    let m = parse(r);
    assert!(m.edns.is_some(), "reply has an OPT");
    // The OPT is the last record; find it from the end by its RDLENGTH.
    let mut at = 12 + question_bytes(r).len();
    let (_, an, ns, ar) = counts(r);
    let total = usize::from(an + ns + ar);
    for i in 0..total {
        // Skip the owner name.
        loop {
            let b = r[at];
            if b == 0 {
                at += 1;
                break;
            }
            if b & 0xc0 == 0xc0 {
                at += 2;
                break;
            }
            at += 1 + usize::from(b);
        }
        let rtype = be16(r, at);
        let rdlen = usize::from(be16(r, at + 8));
        if rtype == 41 {
            assert_eq!(i, total - 1, "the OPT is the last record");
            assert_eq!(at + 10 + rdlen, r.len(), "nothing after the OPT");
            return (
                be16(r, at + 2),
                r[at + 4],
                r[at + 5],
                be16(r, at + 6),
                r[at + 10..at + 10 + rdlen].to_vec(),
            );
        }
        at += 10 + rdlen;
    }
    panic!("no OPT record in {r:02x?}");
}

#[test]
fn bare_opt_with_our_size_and_do_copied() {
    let snap = snapshot();
    let cookie = (10u16, vec![1, 2, 3, 4, 5, 6, 7, 8]);
    for dnssec_ok in [false, true] {
        for (name, qtype) in [
            ("app.demo.local", A),
            ("weighted.demo.local", A),
            ("demo.local", NS),
            ("v4only.demo.local", AAAA),
            ("nope.demo.local", A),
            ("example.com", A),
        ] {
            let opt = Opt {
                dnssec_ok,
                options: vec![cookie.clone()],
                ..Opt::new(4096)
            };
            let q = query_edns(21, name, qtype, opt);
            let (r, _) = ask(&snap, &q, &udp_at(0));
            check_parsed(&r, &q);
            let (size, ext_rcode, version, eflags, rdata) = reply_opt(&r);
            assert_eq!(size, OUR_UDP, "{name}: our UDP size");
            assert_eq!((ext_rcode, version), (0, 0));
            assert_eq!(
                eflags,
                if dnssec_ok { 0x8000 } else { 0 },
                "{name}: DO copied"
            );
            assert!(rdata.is_empty(), "{name}: no options (no cookies)");
        }
    }
    // Exactly the bytes, on the fast path.
    let q = query_edns(
        22,
        "app.demo.local",
        A,
        Opt {
            dnssec_ok: true,
            options: vec![cookie],
            ..Opt::new(4096)
        },
    );
    let (r, kind) = ask(&snap, &q, &udp_at(0));
    assert_eq!(kind, ReplyKind::Fast);
    assert_eq!(
        r,
        expected_app_a(22, RD, "app.demo.local", [1, 2], Some(true))
    );
}

#[test]
fn no_opt_in_the_reply_without_one_in_the_query() {
    let snap = snapshot();
    for (name, qtype) in [("weighted.demo.local", A), ("nope.demo.local", A)] {
        let (r, _) = ask(&snap, &query(23, name, qtype), &udp_at(0));
        assert_eq!(counts(&r).3, 0);
        assert!(parse(&r).edns.is_none());
    }
}

#[test]
fn edns_version_1_gets_badvers() {
    let snap = snapshot();
    for (name, dnssec_ok) in [("app.demo.local", false), ("nope.demo.local", true)] {
        let opt = Opt {
            version: 1,
            dnssec_ok,
            ..Opt::new(4096)
        };
        let q = query_edns(24, name, A, opt);
        let (r, kind) = ask(&snap, &q, &udp_at(0));
        assert_eq!(kind, ReplyKind::BadVers);
        check_parsed(&r, &q);
        // BADVERS is 16: 0 in the header's RCODE, 1 in the OPT's extended RCODE.
        assert_eq!(rcode(&r), 0);
        let (size, ext_rcode, version, eflags, rdata) = reply_opt(&r);
        assert_eq!((ext_rcode, version), (1, 0), "BADVERS, and our version 0");
        assert_eq!(size, OUR_UDP);
        assert_eq!(eflags & 0x8000, if dnssec_ok { 0x8000 } else { 0 });
        assert!(rdata.is_empty());
        let (_, an, ns, ar) = counts(&r);
        assert_eq!((an, ns, ar), (0, 0, 1), "nothing but the OPT");
        // (hickory decodes the value 16 as BADSIG, which shares it; compare the number.)
        assert_eq!(
            u16::from(parse(&r).metadata.response_code),
            u16::from(ResponseCode::BADVERS)
        );
    }
}

#[test]
fn two_opt_records_get_formerr() {
    let snap = snapshot();
    let q = query_full(
        25,
        RD,
        "app.demo.local",
        A,
        IN,
        &[Opt::new(1232), Opt::new(1232)],
    );
    let (r, kind) = ask(&snap, &q, &udp_at(0));
    assert_eq!(kind, ReplyKind::FormErr);
    check_common(&r, &q);
    assert_eq!(rcode(&r), 1, "FORMERR");
}

#[test]
fn client_subnet_is_echoed_with_scope_zero() {
    let snap = snapshot();
    // FAMILY 1, SOURCE /24, SCOPE 0, 198.51.100.
    let ecs = vec![0, 1, 24, 0, 198, 51, 100];
    let opt = Opt {
        options: vec![(8, ecs.clone())],
        ..Opt::new(4096)
    };
    for (name, qtype, want_kind) in [
        ("app.demo.local", A, ReplyKind::Answer),
        ("weighted.demo.local", A, ReplyKind::Answer),
        ("nope.demo.local", A, ReplyKind::NxDomain),
    ] {
        let q = query_edns(26, name, qtype, opt.clone());
        let (r, kind) = ask(&snap, &q, &udp_at(0));
        assert_eq!(kind, want_kind, "{name}: ECS queries go to the full path");
        check_parsed(&r, &q);
        let (_, _, _, _, rdata) = reply_opt(&r);
        let mut want = vec![0, 8, 0, 7];
        want.extend_from_slice(&ecs);
        assert_eq!(rdata, want, "{name}: ECS echoed, scope 0");
    }
    // The answer itself is the normal one.
    let q = query_edns(27, "app.demo.local", A, opt);
    assert_eq!(
        addresses(&parse(&ask(&snap, &q, &udp_at(1)).0)),
        [v4(2), v4(3)]
    );
    // A client sending a non-zero scope still gets 0 back; IPv6 /56.
    let ecs6 = vec![0, 2, 56, 48, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0];
    let q = query_edns(
        28,
        "app.demo.local",
        AAAA,
        Opt {
            options: vec![(8, ecs6)],
            ..Opt::new(4096)
        },
    );
    let (r, _) = ask(&snap, &q, &udp_at(0));
    let (_, _, _, _, rdata) = reply_opt(&r);
    assert_eq!(
        rdata,
        [0, 8, 0, 11, 0, 2, 56, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0]
    );
}

// ---------------------------------------------------------------------------------------------------
// Sizes.

fn big_name() -> String {
    format!("{LONG}.demo.local")
}

#[test]
fn too_big_for_udp_is_truncated_and_whole_over_tcp() {
    let snap = snapshot();
    let name = big_name();
    let q = query(29, &name, AAAA);

    let (udp, kind) = ask(&snap, &q, &udp_at(0));
    assert_eq!(kind, ReplyKind::Truncated);
    check_parsed(&udp, &q);
    assert_ne!(flags(&udp) & TC, 0, "TC=1");
    assert_ne!(flags(&udp) & AA, 0);
    assert_eq!(counts(&udp), (1, 0, 0, 0), "the question only");
    assert_eq!(question_bytes(&udp), question_bytes(&q));
    assert!(udp.len() <= 512);

    let (tcp, kind) = ask(&snap, &q, &tcp_at(0));
    assert_eq!(kind, ReplyKind::Answer);
    check_parsed(&tcp, &q);
    assert_eq!(flags(&tcp) & TC, 0, "TC=0 over TCP");
    assert!(tcp.len() > 512, "{} bytes", tcp.len());
    let m = parse(&tcp);
    let want: Vec<IpAddr> = (1..=16)
        .map(|i| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, i)))
        .collect();
    assert_eq!(addresses(&m), want);
}

#[test]
fn the_clients_edns_size_decides_truncation() {
    let snap = snapshot();
    let name = big_name();
    // 4096: fits (the full path, since the XDP code only builds replies up to 512 bytes of query).
    let q = query_edns(30, &name, AAAA, Opt::new(4096));
    let (r, kind) = ask(&snap, &q, &udp_at(0));
    assert!(
        matches!(kind, ReplyKind::Answer | ReplyKind::Fast),
        "{kind:?}"
    );
    assert_eq!(flags(&r) & TC, 0);
    assert_eq!(counts(&r), (1, 16, 0, 1));
    // 512, and a size below 512 which counts as 512: truncated, with the OPT kept.
    for size in [512, 100] {
        let q = query_edns(31, &name, AAAA, Opt::new(size));
        let (r, kind) = ask(&snap, &q, &udp_at(0));
        assert_eq!(kind, ReplyKind::Truncated, "size {size}");
        assert_ne!(flags(&r) & TC, 0);
        assert_eq!(counts(&r), (1, 0, 0, 1), "question and OPT");
        assert_eq!(reply_opt(&r).0, OUR_UDP);
    }
    // Small answers to a client announcing less than 512 still go out whole.
    let q = query_edns(32, "app.demo.local", A, Opt::new(100));
    let (r, _) = ask(&snap, &q, &udp_at(0));
    assert_eq!(flags(&r) & TC, 0);
    assert_eq!(counts(&r).1, 2);
}

// ---------------------------------------------------------------------------------------------------
// Opcodes, ANY, drops, malformed input.

#[test]
fn other_opcodes_get_notimp() {
    let snap = snapshot();
    for opcode in 1..=15u16 {
        let q = query_full(33, RD | (opcode << 11), "app.demo.local", A, IN, &[]);
        let (r, kind) = ask(&snap, &q, &udp_at(0));
        assert_eq!(kind, ReplyKind::NotImp, "opcode {opcode}");
        check_parsed(&r, &q);
        assert_eq!(rcode(&r), 4, "NOTIMP for opcode {opcode}");
        assert_eq!(counts(&r).1, 0);
    }
}

#[test]
fn any_gets_one_rrset() {
    let snap = snapshot();
    for (name, want) in [
        ("app.demo.local", RecordType::A),
        ("v6only.demo.local", RecordType::AAAA),
        ("demo.local", RecordType::SOA),
    ] {
        let q = query(34, name, ANY);
        let (r, kind) = ask(&snap, &q, &udp_at(0));
        assert_eq!(kind, ReplyKind::Answer, "{name}");
        check_parsed(&r, &q);
        assert_ne!(flags(&r) & AA, 0);
        let m = parse(&r);
        assert!(!m.answers.is_empty(), "{name}");
        assert!(
            m.answers.iter().all(|a| a.record_type() == want),
            "{name}: one RRset of type {want}: {m}"
        );
    }
    // app has A and AAAA: only the A set, rotated and capped by max_answers as an A query would be.
    let (r, _) = ask(&snap, &query(35, "app.demo.local", ANY), &udp_at(0));
    assert_eq!(addresses(&parse(&r)), [v4(1), v4(2)]);
}

#[test]
fn responses_are_dropped() {
    let snap = snapshot();
    let mut q = query(36, "app.demo.local", A);
    q[2] |= 0x80;
    assert_eq!(
        respond(&snap, &q, &QueryContext::udp()),
        Outcome::Drop(DropReason::Response)
    );
    // Even a response that is otherwise garbage, and over TCP.
    let mut g = vec![0xff; 40];
    g[2] = 0x80;
    assert_eq!(
        respond(&snap, &g, &QueryContext::tcp()),
        Outcome::Drop(DropReason::Response)
    );
}

#[test]
fn messages_shorter_than_a_header_are_dropped() {
    let snap = snapshot();
    let q = query(37, "app.demo.local", A);
    for len in 0..12 {
        assert_eq!(
            respond(&snap, &q[..len], &QueryContext::udp()),
            Outcome::Drop(DropReason::TooShort),
            "{len} bytes"
        );
    }
}

/// FORMERR with the ID copied and QR=1.
#[track_caller]
fn check_formerr(snap: &Snapshot, q: &[u8], what: &str) {
    let (r, kind) = ask(snap, q, &udp_at(0));
    assert_eq!(kind, ReplyKind::FormErr, "{what}");
    check_common(&r, q);
    assert_eq!(rcode(&r), 1, "{what}: FORMERR");
}

#[test]
fn truncated_questions_get_formerr() {
    let snap = snapshot();
    for q in [
        query(38, "app.demo.local", A),
        query_edns(38, "app.demo.local", AAAA, Opt::new(1232)),
        query(38, "nope.demo.local", A),
    ] {
        // Every cut from a bare header (QDCOUNT=1 but no question) to one byte short.
        for len in 12..q.len() {
            check_formerr(&snap, &q[..len], &format!("cut at {len} of {}", q.len()));
        }
    }
}

#[test]
fn compression_in_the_question_never_loops() {
    let snap = snapshot();
    let pointer_loops: [&[u8]; 4] = [
        // A pointer to itself.
        &[0xc0, 12],
        // Two pointers pointing at each other.
        &[0xc0, 14, 0xc0, 12],
        // A label, then a pointer back to the start of the name.
        &[3, b'a', b'p', b'p', 0xc0, 12],
        // A pointer forward, past the name.
        &[0xc0, 20, 0, 0, 0, 1, 0, 1, 3, b'x', b'y', b'z', 0],
    ];
    for name in pointer_loops {
        let mut q = header(39, RD, 1, 0, 0, 0);
        q.extend_from_slice(name);
        q.extend_from_slice(&[0, 1, 0, 1]);
        check_formerr(&snap, &q, &format!("name {name:02x?}"));
    }
}

#[test]
fn a_label_over_63_bytes_gets_formerr() {
    let snap = snapshot();
    for len in [64u8, 0x7f, 0xbf] {
        let mut q = header(40, RD, 1, 0, 0, 0);
        q.push(len);
        q.extend(std::iter::repeat_n(b'a', usize::from(len & 0x3f).max(64)));
        q.extend(wire("demo.local"));
        q.extend_from_slice(&[0, 1, 0, 1]);
        check_formerr(&snap, &q, &format!("label length byte {len:#x}"));
    }
    // 63 is fine (an unknown name in the zone).
    let q = query(40, &format!("{}.demo.local", "a".repeat(63)), A);
    assert_eq!(ask(&snap, &q, &udp_at(0)).1, ReplyKind::NxDomain);
}

/// A name of exactly `wire_len` bytes on the wire, ending in demo.local.
fn name_of_wire_len(wire_len: usize) -> String {
    let tail = "demo.local";
    let mut left = wire_len - wire(tail).len();
    let mut labels = Vec::new();
    while left > 0 {
        // Each label costs its length plus one; never leave a remainder of 1 (an empty label).
        let take = (left - 1).min(63);
        let take = if left - (take + 1) == 1 {
            take - 1
        } else {
            take
        };
        labels.push("x".repeat(take));
        left -= take + 1;
    }
    labels.push(tail.to_owned());
    labels.join(".")
}

#[test]
fn a_name_over_255_bytes_gets_formerr() {
    let snap = snapshot();
    let ok = name_of_wire_len(255);
    assert_eq!(wire(&ok).len(), 255);
    assert_eq!(
        ask(&snap, &query(41, &ok, A), &udp_at(0)).1,
        ReplyKind::NxDomain,
        "255 bytes is a valid name"
    );
    for len in [256, 300, 500] {
        let long = name_of_wire_len(len);
        assert_eq!(wire(&long).len(), len);
        check_formerr(&snap, &query(41, &long, A), &format!("{len}-byte name"));
    }
}

#[test]
fn question_counts_other_than_one_get_formerr() {
    let snap = snapshot();
    let mut none = header(42, RD, 0, 0, 0, 0);
    let (r, kind) = ask(&snap, &none, &udp_at(0));
    assert_eq!(kind, ReplyKind::FormErr, "QDCOUNT 0");
    check_common(&r, &none);
    assert_eq!(rcode(&r), 1);
    none.extend(Opt::new(1232).bytes());
    none[11] = 1;
    assert_eq!(ask(&snap, &none, &udp_at(0)).1, ReplyKind::FormErr);

    let mut two = header(43, RD, 2, 0, 0, 0);
    two.extend(question("app.demo.local", A, IN));
    two.extend(question("app.demo.local", AAAA, IN));
    let (r, kind) = ask(&snap, &two, &udp_at(0));
    assert_eq!(kind, ReplyKind::FormErr, "QDCOUNT 2");
    assert_eq!(rcode(&r), 1);
}

#[test]
fn random_bytes_never_panic_and_always_get_a_verdict() {
    let snap = snapshot();
    let mut rng = StdRng::seed_from_u64(0x9e37_79b9_7f4a_7c15);
    let base = query_edns(44, "app.demo.local", A, Opt::new(1232));
    for i in 0..20_000 {
        let msg: Vec<u8> = if i % 2 == 0 {
            // Pure noise.
            let len = rng.random_range(0..600);
            (0..len).map(|_| rng.random::<u8>()).collect()
        } else {
            // A real query with a few bytes flipped, cut somewhere.
            let mut m = base.clone();
            for _ in 0..rng.random_range(1..=4) {
                let at = rng.random_range(0..m.len());
                m[at] = rng.random();
            }
            let len = rng.random_range(0..=m.len());
            m.truncate(len);
            m
        };
        for ctx in [QueryContext::udp(), QueryContext::tcp()] {
            match respond(&snap, &msg, &ctx) {
                Outcome::Reply(r, _) => {
                    assert!(r.len() >= 12);
                    assert_eq!(r[..2], msg[..2]);
                    assert_ne!(r[2] & 0x80, 0, "QR=1");
                    assert!(Message::from_vec(&r).is_ok(), "our reply parses: {r:02x?}");
                    if ctx.transport == Transport::Udp {
                        assert!(r.len() <= 4096);
                    }
                }
                Outcome::Drop(DropReason::TooShort) => assert!(msg.len() < 12),
                Outcome::Drop(DropReason::Response) => assert_ne!(msg[2] & 0x80, 0),
            }
        }
    }
}
