//! A table with more entries than the XDP records map holds: it loads, the entries past the capacity are
//! left to userspace and counted, the XDP program passes their queries (run with `BPF_PROG_TEST_RUN`),
//! and the userspace responder answers them from the same snapshot.
//!
//! Needs root: `cargo xtask test` runs it (`--ignored`).

mod common;

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
};

use aya::programs::{TestRun as _, TestRunOptions};
use common::frames::{Wrap, client4, frame, server4, take_apart};
use hickory_proto::{
    op::{Message, Query},
    rr::{Name, RData, RecordType},
};
use opengslb::{
    config::Config,
    dns::{Outcome, QueryContext, ReplyKind, Snapshot, Zone, respond},
    table::{AnswerTable, MAP_FULL, NameSpec, Policy, Renderer},
    xdp::Dataplane,
};
use opengslb_common::{counters::Counter, maps::MAX_ENTRIES};

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
/// Names past the map's capacity.
const OVER: usize = 100;

fn addr(i: usize) -> Ipv4Addr {
    let [_, a, b, c] = (i as u32).to_be_bytes();
    Ipv4Addr::new(10, a, b, c)
}

fn query(name: &str) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 0x1234;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

/// The A records of a reply.
fn answers(reply: &[u8]) -> Vec<Ipv4Addr> {
    Message::from_vec(reply)
        .unwrap()
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn a_table_larger_than_the_map_loads_and_userspace_answers_the_rest() {
    common::require_root();
    // One A entry per name: MAX_ENTRIES + OVER entries.
    let count = MAX_ENTRIES as usize + OVER;
    let names: Vec<String> = (0..count).map(|i| format!("n{i}.cap.test")).collect();
    let specs: Vec<NameSpec> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            NameSpec::new(
                n.parse().unwrap(),
                5,
                Policy::RoundRobin,
                1,
                [IpAddr::V4(addr(i))],
            )
        })
        .collect();
    let table = AnswerTable::from_specs(&specs);
    let rendered = Renderer::default().render(&table);
    assert_eq!(
        rendered.left_by_reason(),
        BTreeMap::from([(MAP_FULL, OVER as u64)]),
        "the entries past the capacity are counted"
    );

    let mut dp = Dataplane::load(None).expect("the program loads");
    dp.configure(53, 1232).unwrap();
    dp.set_listen(&[server4()]).unwrap();
    let plan = dp
        .apply(&rendered)
        .expect("a table larger than the map loads");
    assert_eq!(plan.upserts.len(), MAX_ENTRIES as usize, "the map is full");
    assert_eq!(plan.skipped.len(), OVER);

    // The first name in the map, and the first left out (which ones is the table's order).
    let (inside, left) = (
        rendered.entries.keys().next().unwrap().name.to_string(),
        plan.skipped[0].0.name.to_string(),
    );
    let index = |n: &str| -> usize { n[1..n.find('.').unwrap()].parse().unwrap() };
    let w = Wrap::new(client4(), server4());

    let mut run = |name: &str| {
        let before = dp.counters().unwrap();
        let input = frame(&w, &query(name));
        let mut out = vec![0u8; 4096];
        let res = dp
            .program_mut()
            .unwrap()
            .test_run(TestRunOptions {
                data_in: Some(&input),
                data_out: Some(&mut out),
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        out.truncate(res.data_size_out as usize);
        let after = dp.counters().unwrap();
        (
            res.return_value,
            out,
            after.get(Counter::UnknownName) - before.get(Counter::UnknownName),
        )
    };
    let (action, out, _) = run(&inside);
    assert_eq!(action, XDP_TX, "{inside} is answered from XDP");
    assert_eq!(answers(&take_apart(&w, &out).dns), [addr(index(&inside))]);
    let (action, _, unknown) = run(&left);
    assert_eq!(action, XDP_PASS, "{left} is passed to userspace");
    assert_eq!(unknown, 1, "as a name the map does not hold");

    // Userspace answers it, from the snapshot of the same rendering.
    let cfg = Config::from_yaml_str(
        "mode: overwatch\ndns: { zones: [cap.test] }\nregions: [{ name: r, servers: [{ address: 192.0.2.1, service: x.cap.test }] }]\ndomains: [{ name: x.cap.test, regions: [r] }]\n",
    )
    .expect("the test config is valid");
    let zones = Zone::from_config(&cfg).unwrap();
    let snap = Snapshot::new(table, &rendered, zones, 1, 1232);
    match respond(&snap, &query(&left), &QueryContext::udp()) {
        Outcome::Reply(bytes, kind) => {
            assert_eq!(
                kind,
                ReplyKind::Answer,
                "the full path answers, not the fast one"
            );
            assert_eq!(answers(&bytes), [addr(index(&left))]);
        }
        other => panic!("no answer for {left}: {other:?}"),
    }
}
