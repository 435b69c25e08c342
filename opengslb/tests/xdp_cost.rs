//! What the XDP program costs per packet, in the kernel's own accounting: `BPF_ENABLE_STATS` (the
//! syscall behind `kernel.bpf_stats_enabled`, held only while this test runs) makes the kernel add each
//! run's time to the program's `run_time_ns` and `run_cnt`. Every run is one `BPF_PROG_TEST_RUN` with
//! `repeat = 1` on a fresh copy of the frame: with `repeat > 1` the program would be fed its own reply
//! after the first `XDP_TX`, and time passing that instead.
//!
//! Prints the median and the minimum over rounds of ns per packet for each case (docs/xdp.md, "Cost per
//! packet", quotes such figures). `OPENGSLB_COST_PACKETS` (default 10,000) and `OPENGSLB_COST_ROUNDS` (default 15) set
//! the sample size;
//! `OPENGSLB_COST_OBJECT` names another object file to measure instead of the embedded one, so that two
//! builds can be compared on one machine under the same load.
//!
//! Needs root: `cargo xtask test` runs this (`--ignored`).

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::{
    programs::{TestRun as _, TestRunOptions},
    sys::{Stats, enable_stats},
};
use common::frames::{Wrap, client4, client6, frame, server4, server6};
use hickory_proto::{
    op::{Edns, Message, Query},
    rr::{Name, RecordType, rdata::opt::EdnsOption},
};
use opengslb::{
    table::{AnswerTable, NameSpec, Policy},
    xdp::Dataplane,
};

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

fn query(name: &str, t: RecordType, cookie: bool) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 0x1234;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    if cookie {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.options_mut()
            .insert(EdnsOption::Unknown(10, vec![0x11; 8]));
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn specs() -> Vec<NameSpec> {
    let v4 = |n| IpAddr::V4(Ipv4Addr::new(203, 0, 113, n));
    let v6 = |n| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, n));
    let app = NameSpec::new(
        "app.demo.local".parse().unwrap(),
        30,
        Policy::RoundRobin,
        1,
        [v4(1), v4(2), v4(3), v6(1), v6(2), v6(3)],
    );
    // Region 1 (the default) and region 2.
    let mut geo = NameSpec::new(
        "geo.demo.local".parse().unwrap(),
        30,
        Policy::Geo { default_region: 1 },
        1,
        [v4(31), v4(32)],
    );
    for (r, region) in geo.v4.records.iter_mut().zip([1, 2]) {
        r.region = region;
    }
    vec![app, geo]
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn cost_per_packet() {
    common::require_root();
    common::pin_to_cpu0();
    let packets = env_or("OPENGSLB_COST_PACKETS", 10_000);
    let rounds = env_or("OPENGSLB_COST_ROUNDS", 15);

    let mut dp = match std::env::var_os("OPENGSLB_COST_OBJECT") {
        Some(path) => {
            let bytes = std::fs::read(&path).expect("OPENGSLB_COST_OBJECT is readable");
            println!("measuring {}", path.display());
            Dataplane::load_bytes(&bytes, None)
        }
        None => Dataplane::load(None),
    }
    .expect("the program loads and passes the verifier");
    dp.configure(53, 1232).unwrap();
    dp.add_listen(&[server4(), server6()]).unwrap();
    dp.apply(&AnswerTable::from_specs(&specs()).render())
        .unwrap();
    let mut geo = opengslb::routing::PrefixTable::new();
    geo.insert("198.51.100.0/24".parse().unwrap(), 2);
    dp.set_geo(&geo).unwrap();

    let w4 = Wrap::new(client4(), server4());
    let w6 = Wrap::new(client6(), server6());
    let vlan = Wrap {
        vlan: Some(7),
        ..w4.clone()
    };
    let port = Wrap {
        dport: 5353,
        ..w4.clone()
    };
    let a = query("app.demo.local.", RecordType::A, false);
    let cases: [(&str, Vec<u8>, u32); 6] = [
        ("A, IPv4", frame(&w4, &a), XDP_TX),
        (
            "AAAA, IPv6, EDNS+cookie",
            frame(&w6, &query("App.Demo.Local.", RecordType::AAAA, true)),
            XDP_TX,
        ),
        ("A, IPv4, 802.1Q", frame(&vlan, &a), XDP_TX),
        (
            "A, geolocation, IPv4",
            frame(&w4, &query("geo.demo.local.", RecordType::A, false)),
            XDP_TX,
        ),
        ("pass: wrong port", frame(&port, &a), XDP_PASS),
        (
            "pass: unknown name",
            frame(&w4, &query("nope.demo.local.", RecordType::A, false)),
            XDP_PASS,
        ),
    ];

    let verified = dp
        .program_mut()
        .unwrap()
        .info()
        .unwrap()
        .verified_instruction_count()
        .expect("kernel reports verified_insns (≥ 5.16)");
    println!("the verifier processed {verified} instructions");

    let _stats = enable_stats(Stats::RunTime).expect("BPF_ENABLE_STATS (kernel ≥ 5.8)");
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut out = vec![0u8; 4096];
    for _ in 0..rounds {
        for ((what, input, want), s) in cases.iter().zip(&mut samples) {
            let prog = dp.program_mut().unwrap();
            let before = prog.info().unwrap();
            for _ in 0..packets {
                let res = prog
                    .test_run(TestRunOptions {
                        data_in: Some(input),
                        data_out: Some(&mut out),
                        ..Default::default()
                    })
                    .expect("BPF_PROG_TEST_RUN");
                assert_eq!(res.return_value, *want, "{what}");
            }
            let after = prog.info().unwrap();
            let runs = after.run_count() - before.run_count();
            assert_eq!(runs, packets, "{what}: the kernel counted every run");
            let ns = (after.run_time() - before.run_time()).as_nanos() as f64;
            s.push(ns / runs as f64);
        }
    }
    // The minimum as well as the median: on a shared machine other load only ever adds time.
    println!(
        "ns per packet (kernel run_time_ns / run_cnt), over {rounds} rounds of {packets}: median, min"
    );
    for ((what, ..), mut s) in cases.iter().zip(samples) {
        s.sort_by(f64::total_cmp);
        let (median, min) = (s[s.len() / 2], s[0]);
        assert!(min > 0.0, "{what}: no time accounted");
        println!("  {what:<26} {median:>6.1} {min:>6.1}");
    }
}
