//! Host tests of the XDP wire code, checked against hickory-proto: what hickory builds we parse the same,
//! and what we build hickory parses back to the expected message.

#![expect(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    string::{String, ToString},
    vec,
    vec::Vec,
};

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query as HQuery},
    rr::{
        DNSClass, Name, RData, RecordType,
        rdata::opt::{ClientSubnet, EdnsOption},
    },
};
use proptest::prelude::*;

use super::*;
use crate::{
    counters::Counter,
    maps::{MAX_RECORDS, MAX_SLOTS, RecordValue, policy},
};

const OUR_UDP: u16 = 1232;

#[derive(Clone, Debug)]
struct Q {
    name: String,
    qtype: RecordType,
    id: u16,
    rd: bool,
    cd: bool,
    edns: Option<(u16, bool, Vec<EdnsOption>)>,
}

impl Q {
    fn new(name: &str, qtype: RecordType) -> Self {
        Self {
            name: name.to_string(),
            qtype,
            id: 0x1234,
            rd: true,
            cd: false,
            edns: None,
        }
    }

    fn with_edns(mut self, udp: u16, dnssec_ok: bool, options: Vec<EdnsOption>) -> Self {
        self.edns = Some((udp, dnssec_ok, options));
        self
    }

    fn message(&self) -> Message {
        let mut m = Message::query();
        m.metadata.id = self.id;
        m.metadata.recursion_desired = self.rd;
        m.metadata.checking_disabled = self.cd;
        let labels = self
            .name
            .trim_end_matches('.')
            .split('.')
            .map(str::as_bytes);
        let mut name = Name::from_labels(labels).unwrap();
        name.set_fqdn(true);
        m.add_query(HQuery::query(name, self.qtype));
        if let Some((udp, dnssec_ok, options)) = &self.edns {
            let mut e = Edns::new();
            e.set_max_payload(*udp);
            e.set_dnssec_ok(*dnssec_ok);
            for o in options {
                e.options_mut().insert(o.clone());
            }
            m.set_edns(e);
        }
        m
    }

    fn wire(&self) -> Vec<u8> {
        self.message().to_vec().unwrap()
    }
}

fn scratch_of(wire: &[u8]) -> Scratch {
    let mut s = Scratch::new();
    s.msg[..wire.len()].copy_from_slice(wire);
    s.name = [0xaa; MAX_NAME];
    s
}

fn parse(wire: &[u8]) -> Result<Query, Counter> {
    parse_query(&mut scratch_of(wire), wire.len())
}

fn cookie() -> EdnsOption {
    EdnsOption::Unknown(10, vec![1, 2, 3, 4, 5, 6, 7, 8])
}

fn record_set(name: &str, qtype: RecordType, n: usize, max_answers: u8) -> RecordValue {
    let (mut v, _) = RecordValue::new(name, 300, max_answers, 0).unwrap();
    for i in 0..n {
        let ok = if qtype == RecordType::A {
            v.push(&Ipv4Addr::new(192, 0, 2, i as u8 + 1).octets())
        } else {
            v.push(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16 + 1).octets())
        };
        assert!(ok);
    }
    v
}

/// Parses the query, builds the reply, and returns both parsed by hickory.
fn answer(q: &Q, rec: &RecordValue, rotation: u32) -> (Vec<u8>, Vec<u8>, Message) {
    let wire = q.wire();
    let mut s = scratch_of(&wire);
    let parsed = parse_query(&mut s, wire.len()).expect("accepted");
    assert_eq!(parsed.hash, rec_hash(rec));
    assert!(names_equal(&s.name, &rec.name, parsed.name_len));
    let len = build_reply(&mut s, &parsed, rec, rotation, OUR_UDP).expect("built");
    let reply = s.msg[..len].to_vec();
    let msg = Message::from_vec(&reply).expect("hickory parses our reply");
    (wire, reply, msg)
}

fn rec_hash(rec: &RecordValue) -> u64 {
    name_hash(&rec.name[..usize::from(rec.name_len)])
}

fn check_reply(q: &Q, rec: &RecordValue, rotation: u32) {
    let (wire, reply, msg) = answer(q, rec, rotation);
    let md = &msg.metadata;
    assert_eq!(md.id, q.id);
    assert_eq!(md.message_type, MessageType::Response);
    assert_eq!(md.op_code, OpCode::Query);
    assert!(md.authoritative);
    assert!(!md.truncation);
    assert_eq!(md.recursion_desired, q.rd);
    assert!(!md.recursion_available);
    assert!(!md.authentic_data);
    assert_eq!(md.checking_disabled, q.cd);
    assert_eq!(u16::from(md.response_code), 0);
    // The question is echoed byte for byte, 0x20 case included.
    let qlen = wire.len() - 12 - if q.edns.is_some() { opt_len(q) } else { 0 };
    assert_eq!(&reply[12..12 + qlen], &wire[12..12 + qlen]);
    assert_eq!(msg.queries.len(), 1);
    assert_eq!(
        msg.queries[0].name().to_string(),
        q.message().queries[0].name().to_string()
    );
    let count = usize::from(rec.count);
    let n = answer_count(rec.max_answers, rec.count);
    assert_eq!(msg.answers.len(), n);
    for (k, r) in msg.answers.iter().enumerate() {
        assert_eq!(r.ttl, rec.ttl);
        assert_eq!(r.dns_class, DNSClass::IN);
        assert_eq!(r.record_type(), q.qtype);
        assert!(r.name.eq_case(msg.queries[0].name()));
        let want = rec.rdata[rotated_index(rotation, k, count)];
        match &r.data {
            RData::A(a) => assert_eq!(a.0.octets(), want[..4]),
            RData::AAAA(a) => assert_eq!(a.0.octets(), want),
            other => panic!("unexpected rdata {other:?}"),
        }
    }
    assert!(msg.authorities.is_empty());
    match (&q.edns, &msg.edns) {
        (None, None) => {}
        (Some((_, dnssec_ok, _)), Some(e)) => {
            assert_eq!(e.max_payload(), OUR_UDP);
            assert_eq!(e.version(), 0);
            assert_eq!(e.flags().dnssec_ok, *dnssec_ok);
            assert!(e.options().as_ref().is_empty(), "our OPT is bare");
        }
        other => panic!("OPT mismatch: {other:?}"),
    }
}

fn opt_len(q: &Q) -> usize {
    let (_, _, opts) = q.edns.as_ref().unwrap();
    11 + opts.iter().map(|o| 4 + usize::from(o.len())).sum::<usize>()
}

#[test]
fn plain_a_query_is_answered() {
    let rec = record_set("app.demo.local", RecordType::A, 3, 1);
    check_reply(&Q::new("app.demo.local.", RecordType::A), &rec, 0);
}

#[test]
fn dig_style_query_with_cookie_is_answered_with_a_bare_opt() {
    let rec = record_set("app.demo.local", RecordType::AAAA, 3, 2);
    let q = Q::new("App.Demo.LOCAL.", RecordType::AAAA).with_edns(1232, false, vec![cookie()]);
    check_reply(&q, &rec, 5);
}

#[test]
fn do_and_cd_are_copied() {
    let rec = record_set("app.demo.local", RecordType::A, 2, 2);
    let mut q = Q::new("app.demo.local.", RecordType::A).with_edns(4096, true, vec![]);
    q.cd = true;
    q.rd = false;
    check_reply(&q, &rec, 1);
}

#[test]
fn rotation_walks_the_set() {
    let rec = record_set("app.demo.local", RecordType::A, 3, 1);
    let q = Q::new("app.demo.local.", RecordType::A);
    let firsts: Vec<_> = (0..6)
        .map(|r| {
            let (_, _, m) = answer(&q, &rec, r);
            m.answers[0].data.clone()
        })
        .collect();
    assert_eq!(firsts[0], firsts[3]);
    assert_ne!(firsts[0], firsts[1]);
    assert_ne!(firsts[1], firsts[2]);
}

fn answer_ips(q: &Q, rec: &RecordValue, rotation: u32) -> Vec<RData> {
    let (_, _, m) = answer(q, rec, rotation);
    m.answers.iter().map(|a| a.data.clone()).collect()
}

fn a(last: u8) -> RData {
    RData::A(Ipv4Addr::new(192, 0, 2, last).into())
}

#[test]
fn fixed_order_answers_the_first_records_in_map_order_at_any_rotation() {
    let mut rec = record_set("app.demo.local", RecordType::A, 4, 2);
    rec.policy = policy::FIXED_ORDER;
    let q = Q::new("app.demo.local.", RecordType::A);
    for rotation in [0, 1, 2, 3, 7, u32::MAX] {
        assert_eq!(
            answer_ips(&q, &rec, rotation),
            [a(1), a(2)],
            "rotation {rotation}"
        );
        check_fixed(&q, &rec, rotation);
    }
    rec.max_answers = 16;
    assert_eq!(answer_ips(&q, &rec, 5), [a(1), a(2), a(3), a(4)]);
}

fn check_fixed(q: &Q, rec: &RecordValue, rotation: u32) {
    let (_, reply, m) = answer(q, rec, rotation);
    assert_eq!(m.answers.len(), answer_count(rec.max_answers, rec.count));
    assert!(m.answers.iter().all(|r| r.ttl == rec.ttl));
    assert!(reply.len() > HEADER_LEN);
}

#[test]
fn weighted_takes_the_first_record_from_the_slot_table_and_the_rest_in_order() {
    // 3:1 over records 0 and 1, plus a third record: slots [0, 0, 1, 0] (any table the renderer writes).
    let mut rec = record_set("app.demo.local", RecordType::A, 3, 2);
    rec.policy = policy::WEIGHTED;
    rec.slots[..4].copy_from_slice(&[0, 0, 1, 0]);
    rec.slot_count = 4;
    let q = Q::new("app.demo.local.", RecordType::A);
    let want = [[a(1), a(2)], [a(1), a(2)], [a(2), a(3)], [a(1), a(2)]];
    for rotation in 0..8u32 {
        assert_eq!(
            answer_ips(&q, &rec, rotation),
            want[rotation as usize % 4],
            "rotation {rotation}"
        );
    }
    // Wrapping: from the last record on to the first.
    rec.slots[..2].copy_from_slice(&[2, 1]);
    rec.slot_count = 2;
    assert_eq!(answer_ips(&q, &rec, 0), [a(3), a(1)]);
    assert_eq!(answer_ips(&q, &rec, 1), [a(2), a(3)]);
    // The counter's whole range: u32::MAX % 2 == 1.
    assert_eq!(answer_ips(&q, &rec, u32::MAX), [a(2), a(3)]);
    // Shares over the full slot table of 64.
    rec.slots = [0; MAX_SLOTS];
    for (i, s) in rec.slots.iter_mut().enumerate() {
        *s = u8::from(i % 4 == 3);
    }
    rec.slot_count = 64;
    rec.max_answers = 1;
    let firsts = (0..640u32)
        .filter(|&r| answer_ips(&q, &rec, r) == [a(1)])
        .count();
    assert_eq!(firsts, 480);
}

#[test]
fn weighted_entries_with_a_bad_slot_table_are_passed() {
    let q = Q::new("app.demo.local.", RecordType::A);
    let wire = q.wire();
    let parsed = parse(&wire).unwrap();
    let mut rec = record_set("app.demo.local", RecordType::A, 2, 1);
    rec.policy = policy::WEIGHTED;
    // No slots.
    assert_eq!(
        build_reply(&mut scratch_of(&wire), &parsed, &rec, 0, OUR_UDP),
        Err(Counter::NoRecords)
    );
    // More slots than the table has.
    rec.slot_count = MAX_SLOTS as u8 + 1;
    assert_eq!(
        build_reply(&mut scratch_of(&wire), &parsed, &rec, 0, OUR_UDP),
        Err(Counter::NoRecords)
    );
    // A slot naming a record past the set.
    rec.slot_count = 2;
    rec.slots[..2].copy_from_slice(&[1, 2]);
    assert!(build_reply(&mut scratch_of(&wire), &parsed, &rec, 0, OUR_UDP).is_ok());
    assert_eq!(
        build_reply(&mut scratch_of(&wire), &parsed, &rec, 1, OUR_UDP),
        Err(Counter::NoRecords)
    );
}

#[test]
fn first_index_per_policy() {
    let mut rec = record_set("app.demo.local", RecordType::A, 5, 1);
    assert_eq!(
        first_index(&rec, 7, 5),
        Ok(2),
        "round-robin: rotation % count"
    );
    assert_eq!(first_index(&rec, u32::MAX, 5), Ok(0));
    rec.policy = policy::FIXED_ORDER;
    assert_eq!(first_index(&rec, 7, 5), Ok(0));
    rec.policy = policy::WEIGHTED;
    rec.slots[..3].copy_from_slice(&[4, 0, 3]);
    rec.slot_count = 3;
    assert_eq!(first_index(&rec, 7, 5), Ok(0));
    assert_eq!(first_index(&rec, 8, 5), Ok(3));
    assert_eq!(first_index(&rec, 9, 5), Ok(4));
    rec.policy = 77;
    assert_eq!(first_index(&rec, 0, 5), Err(Counter::Policy));
}

#[test]
fn uppercase_and_lowercase_names_hash_alike() {
    let a = parse(&Q::new("APP.demo.Local.", RecordType::A).wire()).unwrap();
    let b = parse(&Q::new("app.demo.local.", RecordType::A).wire()).unwrap();
    assert_eq!(a.hash, b.hash);
    let mut wire = [0u8; MAX_NAME];
    let len = encode_name("app.demo.local", &mut wire).unwrap();
    assert_eq!(a.hash, name_hash(&wire[..len]));
    assert_eq!(a.name_len, len);
}

fn set_u16(wire: &mut [u8], at: usize, v: u16) {
    wire[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[test]
fn header_rejections() {
    let base = Q::new("app.demo.local.", RecordType::A).wire();
    type Mutation<'a> = &'a dyn Fn(&mut Vec<u8>);
    let cases: [(Mutation<'_>, Counter); 7] = [
        (&|w| w[2] |= 0x80, Counter::Qr),
        (&|w| w[2] |= 0x10, Counter::Opcode),
        (&|w| w[2] |= 0x02, Counter::Tc),
        (&|w| set_u16(w, 4, 0), Counter::Qdcount),
        (&|w| set_u16(w, 4, 2), Counter::Qdcount),
        (&|w| set_u16(w, 6, 1), Counter::AnNs),
        (&|w| set_u16(w, 8, 1), Counter::AnNs),
    ];
    for (f, want) in cases {
        let mut w = base.clone();
        f(&mut w);
        assert_eq!(parse(&w), Err(want));
    }
}

#[test]
fn two_opt_records_are_passed() {
    let q = Q::new("app.demo.local.", RecordType::A).with_edns(1232, false, vec![]);
    let mut w = q.wire();
    let opt = w[w.len() - 11..].to_vec();
    w.extend_from_slice(&opt);
    set_u16(&mut w, 10, 2);
    assert_eq!(parse(&w), Err(Counter::Arcount));
}

#[test]
fn edns_version_1_is_passed() {
    let q = Q::new("app.demo.local.", RecordType::A).with_edns(1232, false, vec![]);
    let mut w = q.wire();
    let at = w.len() - 11 + 6;
    w[at] = 1;
    assert_eq!(parse(&w), Err(Counter::EdnsVersion));
}

#[test]
fn ecs_is_passed() {
    let ecs = EdnsOption::Subnet(ClientSubnet::new("198.51.100.0".parse().unwrap(), 24, 0));
    let q = Q::new("app.demo.local.", RecordType::A).with_edns(1232, false, vec![cookie(), ecs]);
    assert_eq!(parse(&q.wire()), Err(Counter::Ecs));
}

#[test]
fn other_classes_and_types_are_passed() {
    let mut m = Q::new("app.demo.local.", RecordType::A).message();
    m.queries[0].set_query_class(DNSClass::CH);
    assert_eq!(parse(&m.to_vec().unwrap()), Err(Counter::Class));
    for t in [
        RecordType::MX,
        RecordType::SOA,
        RecordType::ANY,
        RecordType::TXT,
    ] {
        assert_eq!(
            parse(&Q::new("app.demo.local.", t).wire()),
            Err(Counter::Type)
        );
    }
}

#[test]
fn long_labels_and_pointers_in_the_question_are_passed() {
    let mut w = Q::new("app.demo.local.", RecordType::A).wire();
    w[12] = 64;
    assert_eq!(parse(&w), Err(Counter::BadLabel));
    let mut w = Q::new("app.demo.local.", RecordType::A).wire();
    w[12] = 0xc0;
    assert_eq!(parse(&w), Err(Counter::Compression));
}

#[test]
fn a_name_over_255_bytes_is_passed() {
    // Four 63-byte labels: 4 × 64 + 1 = 257 bytes in wire format.
    let mut w = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for _ in 0..4 {
        w.push(63);
        w.extend_from_slice(&[b'a'; 63]);
    }
    w.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert_eq!(parse(&w), Err(Counter::NameTooLong));
}

#[test]
fn trailing_bytes_are_passed() {
    let mut w = Q::new("app.demo.local.", RecordType::A).wire();
    w.push(0);
    assert_eq!(parse(&w), Err(Counter::OptMalformed));
}

#[test]
fn every_truncation_is_passed() {
    let q = Q::new("app.demo.local.", RecordType::A).with_edns(1232, true, vec![cookie()]);
    let w = q.wire();
    for len in 0..w.len() {
        let r = parse(&w[..len]);
        assert!(
            matches!(r, Err(Counter::Truncated | Counter::OptMalformed)),
            "len {len}: {r:?}"
        );
    }
    assert!(parse(&w).is_ok());
}

#[test]
fn replies_that_do_not_fit_the_client_are_passed() {
    let rec = record_set("app.demo.local", RecordType::AAAA, 16, 16);
    let q = Q::new("app.demo.local.", RecordType::AAAA);
    let wire = q.wire();
    let parsed = parse(&wire).unwrap();
    // 12 + 20 + 16 × 28 = 480 fits 512; with a longer name it would not, so shrink the limit instead.
    let small = Query {
        udp_size: 400,
        ..parsed
    };
    assert_eq!(
        build_reply(&mut scratch_of(&wire), &small, &rec, 0, OUR_UDP),
        Err(Counter::TooBig)
    );
    assert!(build_reply(&mut scratch_of(&wire), &parsed, &rec, 0, OUR_UDP).is_ok());
}

#[test]
fn other_policies_and_empty_sets_are_passed() {
    let q = Q::new("app.demo.local.", RecordType::A);
    let wire = q.wire();
    let parsed = parse(&wire).unwrap();
    let mut rec = record_set("app.demo.local", RecordType::A, 2, 1);
    rec.policy = policy::USERSPACE;
    assert_eq!(
        build_reply(&mut scratch_of(&wire), &parsed, &rec, 0, OUR_UDP),
        Err(Counter::Policy)
    );
    let empty = record_set("app.demo.local", RecordType::A, 0, 1);
    assert_eq!(
        build_reply(&mut scratch_of(&wire), &parsed, &empty, 0, OUR_UDP),
        Err(Counter::NoRecords)
    );
}

#[test]
fn names_equal_compares_exactly_len_bytes() {
    let mut a = [0u8; MAX_NAME];
    let mut b = [0u8; MAX_NAME];
    let len = encode_name("app.demo.local", &mut a).unwrap();
    encode_name("app.demo.local", &mut b).unwrap();
    b[len] = 0x55; // garbage past the name does not matter
    assert!(names_equal(&a, &b, len));
    b[len - 2] ^= 1;
    assert!(!names_equal(&a, &b, len));
    let mut c = [0u8; MAX_NAME];
    encode_name("app.demo.locak", &mut c).unwrap();
    assert!(!names_equal(&a, &c, len));
}

#[test]
fn encode_name_rejects_bad_names() {
    let mut out = [0u8; MAX_NAME];
    assert_eq!(encode_name("a..b", &mut out), Err(NameError::EmptyLabel));
    assert_eq!(
        encode_name(&"a".repeat(64), &mut out),
        Err(NameError::LabelTooLong)
    );
    let long = [&"a".repeat(63)[..]; 4].join(".");
    assert_eq!(encode_name(&long, &mut out), Err(NameError::NameTooLong));
    assert_eq!(encode_name(".", &mut out), Ok(1));
}

fn arb_label() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_-]{1,20}"
}

fn arb_name() -> impl Strategy<Value = String> {
    proptest::collection::vec(arb_label(), 1..5).prop_map(|l| l.join(".") + ".")
}

fn arb_query() -> impl Strategy<Value = Q> {
    (
        arb_name(),
        any::<bool>(),
        any::<u16>(),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of((
            0u16..=65535,
            any::<bool>(),
            proptest::collection::vec(
                (
                    prop_oneof![Just(10u16), Just(3u16), Just(12u16), 20u16..30],
                    proptest::collection::vec(any::<u8>(), 0..16),
                ),
                0..3,
            ),
        )),
    )
        .prop_map(|(name, aaaa, id, rd, cd, edns)| Q {
            name,
            qtype: if aaaa {
                RecordType::AAAA
            } else {
                RecordType::A
            },
            id,
            rd,
            cd,
            edns: edns.map(|(u, d, o)| {
                (
                    u,
                    d,
                    o.into_iter()
                        .map(|(c, v)| EdnsOption::Unknown(c, v))
                        .collect(),
                )
            }),
        })
}

proptest! {
    #[test]
    fn hickory_queries_round_trip(
        q in arb_query(),
        n in 1usize..=MAX_RECORDS,
        max in 1u8..=4,
        rotation in any::<u32>(),
    ) {
        let rec = record_set(&q.name, q.qtype, n, max);
        check_reply(&q, &rec, rotation);
    }

    #[test]
    fn the_gate_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..QBUF + 8)) {
        let len = bytes.len().min(QBUF);
        let mut s = scratch_of(&bytes[..len]);
        if let Ok(q) = parse_query(&mut s, bytes.len()) {
            // Whatever the gate accepts, hickory accepts too, as the same question.
            let m = Message::from_vec(&bytes).expect("hickory parses what we accept");
            prop_assert_eq!(m.queries.len(), 1);
            prop_assert_eq!(u16::from(m.queries[0].query_type()), q.qtype);
            let rec = record_set("x.", RecordType::A, 1, 1);
            let _ = build_reply(&mut s, &q, &rec, 0, OUR_UDP);
        }
    }

    #[test]
    fn mutated_queries_never_panic_and_hickory_agrees_on_accepted_ones(
        q in arb_query(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut w = q.wire();
        for (i, v) in flips {
            let at = i.index(w.len());
            w[at] = v;
        }
        if w.len() <= QBUF
            && let Ok(p) = parse(&w)
        {
                let m = Message::from_vec(&w).expect("hickory parses what we accept");
                prop_assert_eq!(u16::from(m.queries[0].query_type()), p.qtype);
                prop_assert_eq!(m.edns.is_some(), p.edns);
            }

    }
}

/// The records a GEO entry answers a client in `region` with, at `rotation`.
fn geo_ips(rec: &RecordValue, region: u8, rotation: u32) -> Vec<RData> {
    let q = Q::new("geo.demo.local.", RecordType::A);
    let wire = q.wire();
    let mut s = scratch_of(&wire);
    let parsed = parse_query(&mut s, wire.len()).expect("accepted");
    let len = build_reply_for(&mut s, &parsed, rec, rotation, OUR_UDP, region).expect("built");
    let msg = Message::from_vec(&s.msg[..len]).expect("hickory parses our reply");
    msg.answers.iter().map(|a| a.data.clone()).collect()
}

/// Records .1 .2 (region 1), .3 (region 2), .4 .5 .6 (region 3), .7 (no region); default region 2.
fn geo_set(max_answers: u8) -> RecordValue {
    let mut rec = record_set("geo.demo.local", RecordType::A, 7, max_answers);
    rec.policy = policy::GEO;
    rec.regions[..7].copy_from_slice(&[1, 1, 2, 3, 3, 3, 0]);
    rec.default_region = 2;
    rec
}

#[test]
fn geo_rotates_among_the_clients_region() {
    let rec = geo_set(1);
    let firsts: Vec<_> = (0..6).map(|r| geo_ips(&rec, 3, r)[0].clone()).collect();
    assert_eq!(firsts, [a(4), a(5), a(6), a(4), a(5), a(6)]);
    let firsts: Vec<_> = (0..4).map(|r| geo_ips(&rec, 1, r)[0].clone()).collect();
    assert_eq!(firsts, [a(1), a(2), a(1), a(2)]);
}

#[test]
fn geo_answers_carry_max_answers_of_the_region_only() {
    let rec = geo_set(4);
    assert_eq!(geo_ips(&rec, 3, 1), [a(5), a(6), a(4)]);
    assert_eq!(geo_ips(&rec, 1, 0), [a(1), a(2)]);
}

#[test]
fn geo_falls_back_to_the_default_region_then_to_everyone() {
    let rec = geo_set(1);
    // No region (0), or a region without records: the default region's.
    for region in [0, 9] {
        assert_eq!(geo_ips(&rec, region, 0), [a(3)]);
        assert_eq!(geo_ips(&rec, region, 5), [a(3)]);
    }
    // No default region either: every record, rotating.
    let mut rec = geo_set(2);
    rec.default_region = 0;
    assert_eq!(geo_ips(&rec, 0, 0), [a(1), a(2)]);
    assert_eq!(geo_ips(&rec, 9, 6), [a(7), a(1)]);
    // A default region with no records: everyone.
    rec.default_region = 7;
    assert_eq!(geo_ips(&rec, 0, 3), [a(4), a(5)]);
    // Region ids of 0 on records never match a client without region.
    assert_eq!(geo_ips(&rec, 0, 6), [a(7), a(1)]);
}

#[test]
fn region_is_ignored_by_other_policies() {
    let rec = record_set("geo.demo.local", RecordType::A, 3, 1);
    for region in [0, 1, 2] {
        assert_eq!(geo_ips(&rec, region, 1), [a(2)]);
    }
}

/// The record indices `build_reply_for` answers with, read back from the reply's addresses.
fn built_indices(rec: &RecordValue, region: u8, rotation: u32) -> Result<Vec<usize>, Counter> {
    let q = Q::new("any.demo.local.", RecordType::A);
    let wire = q.wire();
    let mut s = scratch_of(&wire);
    let parsed = parse_query(&mut s, wire.len()).expect("accepted");
    let len = build_reply_for(&mut s, &parsed, rec, rotation, OUR_UDP, region)?;
    let msg = Message::from_vec(&s.msg[..len]).expect("hickory parses our reply");
    Ok(msg
        .answers
        .iter()
        .map(|a| match &a.data {
            RData::A(ip) => usize::from(ip.0.octets()[3]) - 1,
            other => panic!("not an A record: {other:?}"),
        })
        .collect())
}

proptest! {
    /// The walk userspace uses for sets of any size picks what the kernel's reply builder picks.
    #[test]
    fn answer_indices_agree_with_the_reply_builder(
        count in 1usize..=MAX_RECORDS,
        max_answers in 0u8..=20,
        pol in prop::sample::select(vec![policy::ROUND_ROBIN, policy::FIXED_ORDER, policy::WEIGHTED, policy::GEO]),
        slots in proptest::collection::vec(any::<u8>(), 1..=MAX_SLOTS),
        regions in proptest::collection::vec(0u8..4, MAX_RECORDS),
        default_region in 0u8..4,
        region in 0u8..5,
        rotation in any::<u32>(),
    ) {
        let mut rec = record_set("any.demo.local", RecordType::A, count, max_answers);
        rec.policy = pol;
        rec.default_region = default_region;
        rec.regions[..count].copy_from_slice(&regions[..count]);
        for (dst, s) in rec.slots.iter_mut().zip(&slots) {
            *dst = s % count as u8;
        }
        rec.slot_count = slots.len() as u8;
        let d = Draw {
            policy: rec.policy,
            max_answers: rec.max_answers,
            count,
            slots: &rec.slots,
            slot_count: rec.slot_count,
            regions: &rec.regions[..count],
            default_region,
        };
        let mut out = [0; MAX_RECORDS];
        let walked = answer_indices(&d, rotation, region, &mut out).map(|n| out[..n].to_vec());
        prop_assert_eq!(walked, built_indices(&rec, region, rotation));
    }
}

#[test]
fn lower_word_folds_exactly_what_lower_folds() {
    for b in 0..=255u8 {
        for pos in 0..8 {
            // The byte at every position, next to bytes that must stay as they are.
            let mut bytes = [b'Z', 0xc1, b'@', b'[', b'a', 0x5a, 0xff, 0x00];
            bytes[pos] = b;
            let mut want = bytes;
            for x in &mut want {
                *x = lower(*x);
            }
            let got = lower_word(u64::from_le_bytes(bytes)).to_le_bytes();
            assert_eq!(got, want, "byte {b:#04x} at {pos}");
        }
    }
}

proptest::proptest! {
    #[test]
    fn the_gate_hashes_any_case_of_a_name_as_the_map_does(labels in proptest::collection::vec("[a-zA-Z0-9][a-zA-Z0-9_]{0,19}", 1..8)) {
        let text = labels.join(".");
        let wire = Message::query()
            .add_query(HQuery::query(Name::from_ascii(&text).unwrap(), RecordType::A))
            .to_vec()
            .unwrap();
        let q = parse(&wire).unwrap();
        let mut enc = [0u8; MAX_NAME];
        let len = encode_name(&text, &mut enc).unwrap();
        proptest::prop_assert_eq!(q.name_len, len);
        proptest::prop_assert_eq!(q.hash, name_hash(&enc[..len]));
    }
}
