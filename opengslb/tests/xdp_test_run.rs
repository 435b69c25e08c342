//! The XDP program run on crafted frames with `BPF_PROG_TEST_RUN` (kernel ≥ 5.8 for XDP with a grown
//! tail, commit 2b44d9c6c0a2 "bpf: add frame_sz..." era): every case it must answer, checked field by
//! field with hickory-proto, and every case it must pass, checked against its counter.
//!
//! Needs root: `cargo xtask test` runs these (`--ignored`).

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::programs::{TestRun as _, TestRunOptions};
use common::frames::{Wrap, client4, client6, frame, server4, server6, take_apart};
use hickory_proto::{
    op::{Edns, Message, MessageType, Query},
    rr::{
        DNSClass, Name, RData, RecordType,
        rdata::opt::{ClientSubnet, EdnsOption},
    },
};
use opengslb::{
    routing::PrefixTable,
    table::{AnswerTable, Family, NameSpec, Policy, SpecRecord, weight_slots},
    xdp::{Counters, Dataplane},
};
use opengslb_common::{
    counters::Counter,
    maps::{QTYPE_A, policy},
    ratelimit::RateLimit,
};

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const OUR_UDP: u16 = 1232;

fn v4(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(203, 0, 113, n)
}
fn v6(n: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, n)
}

/// A name with addresses `v4(n)` and `v6(n)` for the numbers given.
fn spec(
    name: &str,
    ttl: u32,
    policy: Policy,
    max_answers: u8,
    v4s: impl IntoIterator<Item = u8>,
    v6s: impl IntoIterator<Item = u16>,
) -> NameSpec {
    let addrs = v4s
        .into_iter()
        .map(|n| IpAddr::V4(v4(n)))
        .chain(v6s.into_iter().map(|n| IpAddr::V6(v6(n))));
    NameSpec::new(name.parse().expect("name"), ttl, policy, max_answers, addrs)
}

struct Harness {
    dp: Dataplane,
}

impl Harness {
    fn new() -> Self {
        common::require_root();
        let mut dp = Dataplane::load(None).expect("the program loads and passes the verifier");
        dp.configure(53, OUR_UDP).unwrap();
        dp.set_listen(&[server4(), server6()]).unwrap();
        let rr = Policy::RoundRobin;
        let specs = [
            spec("app.demo.local", 5, rr, 1, [1, 2, 3], [1, 2, 3]),
            spec("multi.demo.local", 300, rr, 2, [11, 12, 13], [11]),
            // More records than a map entry holds: answered by userspace.
            spec("many.demo.local", 30, rr, 1, 100..117, []),
        ];
        let plan = dp.apply(&AnswerTable::from_specs(&specs).render()).unwrap();
        assert_eq!(plan.upserts.len(), 5);
        Self { dp }
    }

    /// Runs one frame; returns the action, the output frame, and the counters' change.
    fn run(&mut self, input: &[u8]) -> (u32, Vec<u8>, Counters) {
        let before = self.dp.counters().unwrap();
        let mut out = vec![0u8; 4096];
        let prog = self.dp.program_mut().unwrap();
        let res = prog
            .test_run(TestRunOptions {
                data_in: Some(input),
                data_out: Some(&mut out),
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        out.truncate(res.data_size_out as usize);
        let after = self.dp.counters().unwrap();
        let mut delta = after.clone();
        for (d, b) in delta.0.iter_mut().zip(before.0) {
            *d -= b;
        }
        assert_eq!(
            delta.0.iter().sum::<u64>(),
            1,
            "exactly one counter per packet: {delta:?}"
        );
        (res.return_value, out, delta)
    }

    fn expect_pass(&mut self, input: &[u8], why: Counter) {
        let (action, out, delta) = self.run(input);
        assert_eq!(action, XDP_PASS, "expected a pass for {why:?}");
        assert_eq!(delta.get(why), 1, "expected counter {why:?}, got {delta}");
        assert_eq!(out, input, "a passed frame is left untouched");
    }

    fn expect_answer(&mut self, w: &Wrap, query: &Message) -> Message {
        let qwire = query.to_vec().unwrap();
        let (action, out, delta) = self.run(&frame(w, &qwire));
        assert_eq!(action, XDP_TX, "expected an answer, counters: {delta}");
        assert_eq!(delta.answered(), 1);
        let reply = take_apart(w, &out);
        let msg = Message::from_vec(&reply.dns).expect("hickory parses the reply");
        check_reply(query, &qwire, &reply.dns, &msg);
        msg
    }
}

fn check_reply(q: &Message, qwire: &[u8], rwire: &[u8], r: &Message) {
    assert_eq!(r.metadata.id, q.metadata.id);
    assert_eq!(r.metadata.message_type, MessageType::Response);
    assert!(r.metadata.authoritative);
    assert!(!r.metadata.truncation);
    assert!(!r.metadata.recursion_available);
    assert!(!r.metadata.authentic_data);
    assert_eq!(r.metadata.recursion_desired, q.metadata.recursion_desired);
    assert_eq!(r.metadata.checking_disabled, q.metadata.checking_disabled);
    assert_eq!(u16::from(r.metadata.response_code), 0);
    // The question, byte for byte (0x20 case kept).
    let qname_len = q.queries[0].name().len() + 1;
    let qend = 12 + qname_len + 4;
    assert_eq!(&rwire[12..qend], &qwire[12..qend]);
    for a in &r.answers {
        assert_eq!(a.dns_class, DNSClass::IN);
        assert_eq!(a.record_type(), q.queries[0].query_type());
    }
    match (&q.edns, &r.edns) {
        (None, None) => {}
        (Some(qe), Some(re)) => {
            assert_eq!(re.max_payload(), OUR_UDP);
            assert_eq!(re.version(), 0);
            assert_eq!(re.flags().dnssec_ok, qe.flags().dnssec_ok);
            assert!(re.options().as_ref().is_empty());
        }
        other => panic!("OPT mismatch {other:?}"),
    }
}

fn query(name: &str, t: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.id = 0xbeef;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    m
}

fn with_edns(mut m: Message, dnssec_ok: bool, options: Vec<EdnsOption>) -> Message {
    let mut e = Edns::new();
    e.set_max_payload(4096);
    e.set_dnssec_ok(dnssec_ok);
    for o in options {
        e.options_mut().insert(o);
    }
    m.set_edns(e);
    m
}

fn cookie() -> EdnsOption {
    EdnsOption::Unknown(10, vec![0x11; 8])
}

fn addrs(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn answers_a_and_aaaa_over_ipv4_and_ipv6() {
    let mut h = Harness::new();
    for (c, s) in [(client4(), server4()), (client6(), server6())] {
        let w = Wrap::new(c, s);
        for (t, want) in [
            (
                RecordType::A,
                [IpAddr::V4(v4(1)), IpAddr::V4(v4(2)), IpAddr::V4(v4(3))],
            ),
            (
                RecordType::AAAA,
                [IpAddr::V6(v6(1)), IpAddr::V6(v6(2)), IpAddr::V6(v6(3))],
            ),
        ] {
            for q in [
                query("app.demo.local.", t),
                with_edns(query("App.Demo.LOCAL.", t), false, vec![cookie()]),
                with_edns(query("aPP.demo.local.", t), true, vec![]),
            ] {
                let r = h.expect_answer(&w, &q);
                assert_eq!(r.answers.len(), 1);
                assert_eq!(r.answers[0].ttl, 5);
                assert!(want.contains(&addrs(&r)[0]));
            }
        }
    }
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn rotates_and_honours_max_answers() {
    common::pin_to_cpu0();
    let mut h = Harness::new();
    let w = Wrap::new(client4(), server4());
    let mut seen = Vec::new();
    for _ in 0..3 {
        let r = h.expect_answer(&w, &query("multi.demo.local.", RecordType::A));
        let a = addrs(&r);
        assert_eq!(a.len(), 2, "max_answers 2");
        assert_ne!(a[0], a[1]);
        assert_eq!(r.answers[0].ttl, 300);
        seen.push(a[0]);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3, "the first record rotates through the set");
    // One record of the type: one answer, whatever max_answers says.
    let r = h.expect_answer(&w, &query("multi.demo.local.", RecordType::AAAA));
    assert_eq!(addrs(&r), vec![IpAddr::V6(v6(11))]);
}

/// A table of routed names: weighted 3:1 (plus a zero-weight record), failover, weighted all-zero.
fn routed_specs() -> Vec<NameSpec> {
    let weighted = |name: &str, weights: &[(u8, u32)]| {
        let mut s = spec(name, 20, Policy::Weighted, 1, [], []);
        s.v4 = Family {
            policy: Policy::Weighted,
            records: weights
                .iter()
                .map(|&(n, weight)| SpecRecord {
                    weight,
                    ..SpecRecord::from(IpAddr::V4(v4(n)))
                })
                .collect(),
        };
        s
    };
    vec![
        weighted("weighted.demo.local", &[(31, 3), (32, 1), (33, 0)]),
        spec(
            "failover.demo.local",
            20,
            Policy::FixedOrder,
            2,
            [41, 42, 43],
            [41, 42],
        ),
        weighted("zero.demo.local", &[(51, 0), (52, 0)]),
    ]
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn answers_weighted_names_by_the_slot_table() {
    common::pin_to_cpu0();
    let mut h = Harness::new();
    let specs = routed_specs();
    let table = AnswerTable::from_specs(&specs);
    let plan = h.dp.apply(&table.render()).unwrap();
    assert!(plan.skipped.is_empty(), "{:?}", plan.skipped);
    let (_, (_, rec)) = plan
        .upserts
        .iter()
        .find(|(_, (_, v))| v.name[1..9] == *b"weighted")
        .unwrap();
    assert_eq!(rec.policy, policy::WEIGHTED);
    assert_eq!(rec.count, 2, "the zero-weight record is left out");
    // The slot table is the table entry's, over the records XDP holds.
    let entry = table
        .get(&"weighted.demo.local".parse().unwrap(), QTYPE_A)
        .unwrap();
    let slots = weight_slots(&[3, 1]);
    assert_eq!(entry.slots, slots);
    assert_eq!(usize::from(rec.slot_count), slots.len());
    assert_eq!(rec.slots[..slots.len()], slots[..]);
    assert_eq!(slots.len(), 4, "3:1 is exact in four slots");

    let w = Wrap::new(client4(), server4());
    let mut firsts = Vec::new();
    for _ in 0..400 {
        let r = h.expect_answer(&w, &query("weighted.demo.local.", RecordType::A));
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].ttl, 20);
        firsts.push(addrs(&r)[0]);
    }
    let heavy = firsts.iter().filter(|&&a| a == IpAddr::V4(v4(31))).count();
    let light = firsts.iter().filter(|&&a| a == IpAddr::V4(v4(32))).count();
    assert_eq!((heavy, light), (300, 100), "exact 3:1 shares on one CPU");
    // The sequence is the slot table's, from wherever the counter stood.
    let by_slot: Vec<IpAddr> = slots
        .iter()
        .map(|&i| entry.records[usize::from(i)])
        .collect();
    let shift = (0..4)
        .find(|&s| (0..4).all(|k| firsts[k] == by_slot[(s + k) % 4]))
        .expect("the answers follow the slot table");
    for (k, a) in firsts.iter().enumerate() {
        assert_eq!(*a, by_slot[(shift + k) % 4], "query {k}");
    }

    // Every weight zero: every record counts as weight 1.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let r = h.expect_answer(&w, &query("zero.demo.local.", RecordType::A));
        seen.extend(addrs(&r));
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen, [IpAddr::V4(v4(51)), IpAddr::V4(v4(52))]);
}

/// `domains[].slow_start`: the tables the control plane publishes during a ramp are ordinary weighted
/// entries, and XDP answers each step by its slot table: the returning backend's share rises step by step
/// (round-robin names drawn as equal weights while they ramp) and is the full one once the window is over.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn answers_a_slow_start_ramp_by_each_step_s_slot_table() {
    use std::time::{Duration, Instant};

    use opengslb::{
        config::Config,
        overwatch::control::Control,
        registry::{BackendKey, Override},
    };

    common::pin_to_cpu0();
    let mut h = Harness::new();
    let cfg = Config::from_yaml_str(&format!(
        "dns: {{ zones: [demo.local] }}
regions:
  - name: eu
    servers:
      - {{ address: {}, service: w.demo.local, weight: 3 }}
      - {{ address: {}, service: w.demo.local, weight: 1 }}
      - {{ address: {}, service: rr.demo.local }}
      - {{ address: {}, service: rr.demo.local }}
domains:
  - {{ name: w.demo.local, regions: [eu], routing_algorithm: weighted, slow_start: 10s }}
  - {{ name: rr.demo.local, regions: [eu], slow_start: 10s }}
",
        v4(61),
        v4(62),
        v4(63),
        v4(64)
    ))
    .unwrap();
    let mut control = Control::new(&cfg);
    let t0 = Instant::now();
    let returning = [("w.demo.local", v4(62)), ("rr.demo.local", v4(64))];
    let keys = returning.map(|(n, a)| BackendKey::new(n.parse().unwrap(), IpAddr::V4(a), 80));
    control.publish(t0);
    for k in &keys {
        let out = Override {
            healthy: false,
            reason: "test".into(),
            by: "test".into(),
            at_ms: 0,
        };
        control.registry.set_override(k, out).unwrap();
    }
    control.publish(t0 + Duration::from_secs(1));
    for k in &keys {
        control.registry.clear_override(k).unwrap();
    }
    let back = t0 + Duration::from_secs(2);

    let w = Wrap::new(client4(), server4());
    let mut shares: Vec<[f64; 2]> = Vec::new();
    for after in [0, 3, 6, 9, 10] {
        let table = control.publish(back + Duration::from_secs(after)).table;
        let plan = h.dp.apply(&table.render()).unwrap();
        assert!(plan.skipped.is_empty(), "{:?}", plan.skipped);
        let mut step = [0.0; 2];
        for (share, (name, addr)) in step.iter_mut().zip(returning) {
            let entry = table.get(&name.parse().unwrap(), QTYPE_A).unwrap();
            // Every rotation of the slot table (or of the records, round-robin) four times over: exact.
            let n = 4 * entry.slots.len().max(entry.records.len());
            let qname = format!("{name}.");
            let hits = (0..n)
                .filter(|_| {
                    addrs(&h.expect_answer(&w, &query(&qname, RecordType::A))) == [IpAddr::V4(addr)]
                })
                .count();
            *share = hits as f64 / n as f64;
            // The share XDP gives is the one the slot table (userspace's draw) gives.
            let by_table = (0..n as u32)
                .filter(|&r| entry.answer(r, 0) == [IpAddr::V4(addr)])
                .count();
            assert_eq!(hits, by_table, "{name} {after} s after its return");
        }
        println!(
            "{after:2} s after the return: XDP shares weighted {:.3}, round-robin {:.3}",
            step[0], step[1]
        );
        shares.push(step);
    }
    for i in 0..2 {
        assert!(
            shares.windows(2).all(|p| p[0][i] < p[1][i]),
            "rising step by step: {shares:?}"
        );
    }
    assert!(shares[0][0] < 0.05 && shares[0][1] < 0.1, "{shares:?}");
    assert_eq!(shares[4], [0.25, 0.5], "the full shares after the window");
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn answers_failover_names_in_order_without_rotation() {
    common::pin_to_cpu0();
    let mut h = Harness::new();
    h.dp.apply(&AnswerTable::from_specs(&routed_specs()).render())
        .unwrap();
    for (c, s) in [(client4(), server4()), (client6(), server6())] {
        let w = Wrap::new(c, s);
        for _ in 0..20 {
            let r = h.expect_answer(&w, &query("failover.demo.local.", RecordType::A));
            assert_eq!(addrs(&r), [IpAddr::V4(v4(41)), IpAddr::V4(v4(42))]);
            let r = h.expect_answer(
                &w,
                &with_edns(
                    query("FailOver.demo.local.", RecordType::AAAA),
                    false,
                    vec![],
                ),
            );
            assert_eq!(addrs(&r), [IpAddr::V6(v6(41)), IpAddr::V6(v6(42))]);
        }
    }
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn handles_one_vlan_tag() {
    let mut h = Harness::new();
    let mut w = Wrap::new(client6(), server6());
    w.vlan = Some(42);
    h.expect_answer(
        &w,
        &with_edns(
            query("app.demo.local.", RecordType::AAAA),
            false,
            vec![cookie()],
        ),
    );
}

/// Frames shorter than the longest header stack (Ethernet, a VLAN tag, IPv6, UDP) are parsed from a
/// copy of their headers and turned around there, not in place as longer ones are: both ways answer.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn answers_frames_shorter_than_the_longest_headers() {
    use opengslb_common::frame::MAX_HEADERS;
    let mut h = Harness::new();
    let specs = [spec("x.io", 7, Policy::RoundRobin, 2, [21, 22], [21])];
    h.dp.apply(&AnswerTable::from_specs(&specs).render())
        .unwrap();
    for vlan in [None, Some(7)] {
        let mut w = Wrap::new(client4(), server4());
        w.vlan = vlan;
        let q = query("X.io.", RecordType::A);
        let len = frame(&w, &q.to_vec().unwrap()).len();
        assert_eq!(
            len < MAX_HEADERS,
            vlan.is_none(),
            "a {len}-byte frame, {MAX_HEADERS} bytes of headers at most"
        );
        let r = h.expect_answer(&w, &q);
        let mut got = addrs(&r);
        got.sort();
        assert_eq!(got, [IpAddr::V4(v4(21)), IpAddr::V4(v4(22))]);
        assert_eq!(r.answers[0].ttl, 7);
    }
}

fn set_u16(wire: &mut [u8], at: usize, v: u16) {
    wire[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn passes_what_it_must_not_answer() {
    let mut h = Harness::new();
    let w4 = Wrap::new(client4(), server4());
    let base = query("app.demo.local.", RecordType::A).to_vec().unwrap();
    let edns = with_edns(query("app.demo.local.", RecordType::A), false, vec![])
        .to_vec()
        .unwrap();

    let mutate = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut q = base.clone();
        f(&mut q);
        q
    };
    let cases: Vec<(Vec<u8>, Counter)> = vec![
        (mutate(&|q| set_u16(q, 4, 0)), Counter::Qdcount),
        (mutate(&|q| set_u16(q, 4, 2)), Counter::Qdcount),
        (mutate(&|q| q[2] |= 0x80), Counter::Qr),
        (mutate(&|q| q[2] |= 0x20), Counter::Opcode),
        (mutate(&|q| q[2] |= 0x02), Counter::Tc),
        (mutate(&|q| set_u16(q, 6, 1)), Counter::AnNs),
        (mutate(&|q| q[12] = 64), Counter::BadLabel),
        (mutate(&|q| q[12] = 0xc0), Counter::Compression),
        (
            {
                let mut q = edns.clone();
                let at = q.len() - 11 + 6;
                q[at] = 1;
                q
            },
            Counter::EdnsVersion,
        ),
        (
            {
                let mut q = edns.clone();
                let opt = q[q.len() - 11..].to_vec();
                q.extend_from_slice(&opt);
                set_u16(&mut q, 10, 2);
                q
            },
            Counter::Arcount,
        ),
        (
            with_edns(
                query("app.demo.local.", RecordType::A),
                false,
                vec![EdnsOption::Subnet(ClientSubnet::new(
                    "198.51.100.0".parse().unwrap(),
                    24,
                    0,
                ))],
            )
            .to_vec()
            .unwrap(),
            Counter::Ecs,
        ),
        (
            {
                let mut m = query("app.demo.local.", RecordType::A);
                m.queries[0].set_query_class(DNSClass::CH);
                m.to_vec().unwrap()
            },
            Counter::Class,
        ),
        (
            query("app.demo.local.", RecordType::MX).to_vec().unwrap(),
            Counter::Type,
        ),
        (
            query("nope.demo.local.", RecordType::A).to_vec().unwrap(),
            Counter::UnknownName,
        ),
        (
            query("many.demo.local.", RecordType::A).to_vec().unwrap(),
            Counter::Policy,
        ),
        (mutate(&|q| q.push(0)), Counter::OptMalformed),
        (
            // Padded past the 512 bytes the program reads.
            with_edns(
                query("app.demo.local.", RecordType::A),
                false,
                vec![EdnsOption::Unknown(12, vec![0; 560])],
            )
            .to_vec()
            .unwrap(),
            Counter::TooLong,
        ),
    ];
    for (dns, why) in cases {
        h.expect_pass(&frame(&w4, &dns), why);
    }

    // Wrong destination address and port, fragments, IPv4 options, IPv6 extension headers, two VLAN tags.
    let mut w = w4.clone();
    w.dst = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53));
    h.expect_pass(&frame(&w, &base), Counter::WrongAddr);
    let mut w = w4.clone();
    w.dport = 5353;
    h.expect_pass(&frame(&w, &base), Counter::WrongPort);
    let mut w = w4.clone();
    w.frag = 0x2000;
    h.expect_pass(&frame(&w, &base), Counter::Fragment);
    let mut w = w4.clone();
    w.ip_options = true;
    h.expect_pass(&frame(&w, &base), Counter::Ipv4Options);
    let mut w = Wrap::new(client6(), server6());
    w.ext_header = true;
    h.expect_pass(&frame(&w, &base), Counter::Ipv6Ext);
    let mut f = frame(&w4, &base);
    f.splice(12..12, [0x88, 0xa8, 0, 1]);
    h.expect_pass(&f, Counter::Vlan);
    let mut f = frame(&w4, &base);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    h.expect_pass(&f, Counter::NotIp);
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn passes_every_truncation() {
    let mut h = Harness::new();
    let w = Wrap::new(client4(), server4());
    let dns = with_edns(
        query("app.demo.local.", RecordType::A),
        true,
        vec![cookie()],
    )
    .to_vec()
    .unwrap();
    // A DNS message cut short inside consistent IP/UDP headers: the gate's own truncation checks.
    for len in 0..dns.len() {
        h.expect_pass(&frame(&w, &dns[..len]), Counter::Truncated);
    }
    // The frame itself cut short at every length: the headers no longer add up.
    let full = frame(&w, &dns);
    for len in 14..full.len() {
        let (action, out, delta) = h.run(&full[..len]);
        assert_eq!(action, XDP_PASS, "frame cut at {len}");
        assert_eq!(delta.answered(), 0);
        assert_eq!(
            delta.get(Counter::Malformed),
            1,
            "frame cut at {len}: {delta}"
        );
        assert_eq!(out, &full[..len]);
    }
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn replies_too_big_for_the_client_are_passed() {
    let mut h = Harness::new();
    let w = Wrap::new(client4(), server4());
    let specs = [spec(
        &format!("{}.demo.local", vec!["x".repeat(60); 3].join(".")),
        5,
        Policy::RoundRobin,
        16,
        [],
        1..=16,
    )];
    h.dp.apply(&AnswerTable::from_specs(&specs).render())
        .unwrap();
    let q = query(&format!("{}.", specs[0].name), RecordType::AAAA);
    // 12 + 198 + 16 × 28 = 658 bytes: over 512 without EDNS.
    h.expect_pass(&frame(&w, &q.to_vec().unwrap()), Counter::TooBig);
    // With EDNS and 4096 it fits.
    let r = h.expect_answer(&w, &with_edns(q, false, vec![]));
    assert_eq!(r.answers.len(), 16);
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn table_changes_reach_the_map() {
    let mut h = Harness::new();
    let w = Wrap::new(client4(), server4());
    h.expect_answer(&w, &query("app.demo.local.", RecordType::A));
    let plan = h.dp.apply(&AnswerTable::default().render()).unwrap();
    assert_eq!(plan.removals.len(), 5);
    h.expect_pass(
        &frame(
            &w,
            &query("app.demo.local.", RecordType::A).to_vec().unwrap(),
        ),
        Counter::UnknownName,
    );
}

/// More listen addresses than the config holds inline: the rest are looked up in the listen map, for
/// either family, and an address in neither is still passed.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn listen_addresses_past_the_inline_ones_are_answered_on() {
    use opengslb_common::maps::{INLINE_LISTEN4, INLINE_LISTEN6};
    let mut h = Harness::new();
    let v4 = |i: u8| IpAddr::V4(Ipv4Addr::new(198, 18, 7, i));
    let v6 = |i: u16| IpAddr::V6(Ipv6Addr::new(0xfd00, 7, 0, 0, 0, 0, 0, i));
    // With server4 and server6, these fill the inline slots and go past them.
    let extra: Vec<IpAddr> = [server4(), server6()]
        .into_iter()
        .chain((1..=INLINE_LISTEN4 as u8 + 1).map(v4))
        .chain((1..=INLINE_LISTEN6 as u16 + 1).map(v6))
        .collect();
    h.dp.set_listen(&extra).unwrap();
    let q = query("app.demo.local.", RecordType::A);
    for dst in [
        v4(1),
        v4(INLINE_LISTEN4 as u8 + 1),
        v6(1),
        v6(INLINE_LISTEN6 as u16 + 1),
    ] {
        let w = Wrap::new(if dst.is_ipv4() { client4() } else { client6() }, dst);
        h.expect_answer(&w, &q);
    }
    for dst in [v4(99), v6(99)] {
        let w = Wrap::new(if dst.is_ipv4() { client4() } else { client6() }, dst);
        h.expect_pass(&frame(&w, &q.to_vec().unwrap()), Counter::WrongAddr);
    }
    // Setting fewer addresses removes the others, inline or in the map.
    h.dp.set_listen(&[server4(), server6()]).unwrap();
    for dst in [
        v4(1),
        v4(INLINE_LISTEN4 as u8 + 1),
        v6(INLINE_LISTEN6 as u16 + 1),
    ] {
        let w = Wrap::new(if dst.is_ipv4() { client4() } else { client6() }, dst);
        h.expect_pass(&frame(&w, &q.to_vec().unwrap()), Counter::WrongAddr);
    }
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn the_verifier_has_headroom() {
    // The verifier gives up at 1,000,000 processed instructions; a change that multiplies its paths shows
    // up here long before a kernel refuses the program.
    let mut h = Harness::new();
    let n =
        h.dp.program_mut()
            .unwrap()
            .info()
            .unwrap()
            .verified_instruction_count()
            .expect("kernel reports verified_insns (≥ 5.16)");
    println!("the verifier processed {n} instructions");
    assert!(
        n < 500_000,
        "{n} verified instructions: within 2x of the kernel's limit"
    );
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn answers_geolocation_names_by_the_source_address() {
    let mut h = Harness::new();
    // Regions: eu = 1, us = 2, ap = 3 (the default).
    let (eu, us, ap) = (1u8, 2u8, 3u8);
    let geo = Policy::Geo { default_region: ap };
    let mut spec = spec("geo.demo.local", 30, geo, 1, [31, 32, 33], [31, 32, 33]);
    for family in [&mut spec.v4, &mut spec.v6] {
        for (r, region) in family.records.iter_mut().zip([eu, us, ap]) {
            r.region = region;
        }
    }
    let plan =
        h.dp.apply(&AnswerTable::from_specs([&spec]).render())
            .unwrap();
    assert!(
        plan.upserts
            .iter()
            .all(|(_, (_, v))| v.policy == policy::GEO)
    );
    h.dp.set_geo(&geo_table(&[
        ("198.51.100.0/24", us),
        ("2001:db8:c::/48", eu),
    ]))
    .unwrap();
    let nowhere: IpAddr = "203.0.113.9".parse().unwrap();
    let cases = [
        (client4(), server4(), IpAddr::V4(v4(32)), IpAddr::V6(v6(32))),
        (nowhere, server4(), IpAddr::V4(v4(33)), IpAddr::V6(v6(33))),
        (client6(), server6(), IpAddr::V4(v4(31)), IpAddr::V6(v6(31))),
    ];
    for (src, dst, want_a, want_aaaa) in cases {
        let w = Wrap::new(src, dst);
        for _ in 0..3 {
            let r = h.expect_answer(&w, &query("geo.demo.local.", RecordType::A));
            assert_eq!(addrs(&r), [want_a], "A from {src}");
            let r = h.expect_answer(&w, &query("Geo.Demo.Local.", RecordType::AAAA));
            assert_eq!(addrs(&r), [want_aaaa], "AAAA from {src}");
        }
    }
    // With Client Subnet: userspace routes by the ECS address and echoes the scope.
    let ecs = with_edns(
        query("geo.demo.local.", RecordType::A),
        false,
        vec![EdnsOption::Subnet(ClientSubnet::new(
            "198.51.100.0".parse().unwrap(),
            24,
            0,
        ))],
    );
    h.expect_pass(
        &frame(&Wrap::new(client4(), server4()), &ecs.to_vec().unwrap()),
        Counter::Ecs,
    );
    // The trie follows set_geo: the IPv6 mapping gone, that client gets the default region's.
    h.dp.set_geo(&geo_table(&[("198.51.100.0/24", us)]))
        .unwrap();
    let r = h.expect_answer(
        &Wrap::new(client6(), server6()),
        &query("geo.demo.local.", RecordType::A),
    );
    assert_eq!(addrs(&r), [IpAddr::V4(v4(33))]);
    // An IPv6 prefix over all of `::ffff:0:0/96` places IPv6 clients only, as userspace does: IPv4
    // clients are looked up as `::ffff:a.b.c.d` and must miss it.
    let table = geo_table(&[("198.51.100.0/24", us), ("::/0", eu)]);
    assert_eq!(table.longest_match(nowhere), None);
    h.dp.set_geo(&table).unwrap();
    for (src, dst, want) in [
        (nowhere, server4(), IpAddr::V4(v4(33))),
        (client4(), server4(), IpAddr::V4(v4(32))),
        (client6(), server6(), IpAddr::V4(v4(31))),
    ] {
        let r = h.expect_answer(
            &Wrap::new(src, dst),
            &query("geo.demo.local.", RecordType::A),
        );
        assert_eq!(addrs(&r), [want], "A from {src}");
    }
}

/// A geolocation table of these prefixes and region ids.
fn geo_table(entries: &[(&str, u8)]) -> PrefixTable<u8> {
    let mut t = PrefixTable::new();
    for (net, region) in entries {
        t.insert_first(net.parse().unwrap(), *region);
    }
    t
}

/// 100 000 distinct random names (random case, A and AAAA, over IPv4 and IPv6) beside the ones in the
/// map: every one is passed as an unknown name and left untouched, and the names in the map are still
/// answered afterwards.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn a_hundred_thousand_random_names_are_passed_as_unknown() {
    let mut h = Harness::new();
    let mut rng = common::rng::Rng::new(0x5eed_0100_0000_0001);
    let mut seen = std::collections::HashSet::new();
    let started = std::time::Instant::now();
    while seen.len() < 100_000 {
        let len = 1 + (rng.next_u64() % 40) as usize;
        let label: String = (0..len)
            .map(|_| {
                let c = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"
                    [(rng.next_u64() % 63) as usize];
                c as char
            })
            .collect();
        if label.starts_with('-') || label.ends_with('-') || !seen.insert(label.to_lowercase()) {
            continue;
        }
        let name = format!("{label}.demo.local");
        let (t, w) = if rng.next_u64().is_multiple_of(2) {
            (RecordType::A, Wrap::new(client4(), server4()))
        } else {
            (RecordType::AAAA, Wrap::new(client6(), server6()))
        };
        let wire = query(&name, t).to_vec().unwrap();
        h.expect_pass(&frame(&w, &wire), Counter::UnknownName);
    }
    println!(
        "100 000 random names passed as unknown in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    h.expect_answer(
        &Wrap::new(client4(), server4()),
        &query("app.demo.local.", RecordType::A),
    );
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn limits_the_responses_of_each_client_prefix_and_slips_truncated_ones() {
    const XDP_DROP: u32 = 1;
    let mut h = Harness::new();
    // One response a second and bursts of 4: the few milliseconds this test takes refill nothing, or
    // a token a second on a machine that stalls (counted below).
    h.dp.set_rate_limit(RateLimit::new(1, 4, 2, 24, 56))
        .unwrap();
    let started = std::time::Instant::now();
    let flood = Wrap::new(client4(), server4());
    let q = query("app.demo.local.", RecordType::A);
    let mut verdicts = Vec::new();
    for _ in 0..20 {
        let (action, out, delta) = h.run(&frame(&flood, &q.to_vec().unwrap()));
        let verdict = match action {
            XDP_TX if delta.answered() == 1 => "answer",
            XDP_TX => {
                assert_eq!(delta.get(Counter::RateSlipped), 1, "{delta}");
                let reply = take_apart(&flood, &out);
                let m = Message::from_vec(&reply.dns).expect("hickory parses the slipped reply");
                assert!(m.metadata.truncation, "TC set");
                assert!(m.answers.is_empty(), "no records");
                assert_eq!(m.metadata.id, q.metadata.id);
                assert_eq!(m.queries, q.queries);
                "slip"
            }
            XDP_DROP => {
                assert_eq!(delta.get(Counter::RateLimited), 1, "{delta}");
                "drop"
            }
            other => panic!("unexpected action {other}: {delta}"),
        };
        verdicts.push(verdict);
    }
    let refilled = started.elapsed().as_secs() as usize + 1;
    let answered = verdicts.iter().filter(|v| **v == "answer").count();
    println!("20 queries from one prefix: {verdicts:?} ({refilled} s of refill at most)");
    assert_eq!(verdicts[..4], ["answer"; 4], "the burst");
    assert!((4..=4 + refilled).contains(&answered), "{answered}");
    let slipped = verdicts.iter().filter(|v| **v == "slip").count();
    assert!(
        slipped.abs_diff((20 - answered) / 2) <= 1,
        "every second limited reply slips: {verdicts:?}"
    );
    // The rest of the /24 shares the bucket; another /24 and IPv6 clients do not.
    let neighbour = Wrap::new("198.51.100.200".parse().unwrap(), server4());
    let (action, _, delta) = h.run(&frame(&neighbour, &q.to_vec().unwrap()));
    assert!(
        action == XDP_DROP || delta.get(Counter::RateSlipped) == 1,
        "{delta}"
    );
    for src in ["198.51.101.7", "2001:db8:c::7"] {
        let src: IpAddr = src.parse().unwrap();
        let server = if src.is_ipv4() { server4() } else { server6() };
        h.expect_answer(&Wrap::new(src, server), &q);
    }
    // Queries XDP passes are left to userspace, which limits them by its own buckets.
    h.expect_pass(
        &frame(
            &flood,
            &query("nope.demo.local.", RecordType::A).to_vec().unwrap(),
        ),
        Counter::UnknownName,
    );
    // Off again: the flooding prefix is answered.
    h.dp.set_rate_limit(RateLimit::default()).unwrap();
    h.expect_answer(&flood, &q);
}
