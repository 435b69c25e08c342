//! What the XDP program costs per packet, in the kernel's own accounting: `BPF_ENABLE_STATS` (the
//! syscall behind `kernel.bpf_stats_enabled`, held only while measuring) makes the kernel add each run's
//! time to the program's `run_time_ns` and `run_cnt`. Every run is one `BPF_PROG_TEST_RUN` with
//! `repeat = 1` on a fresh copy of the frame: with `repeat > 1` the program would be fed its own reply
//! after the first `XDP_TX`, and time passing that instead. Shared by the `xdp_cost` test and bench.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::{
    Ebpf,
    programs::{ProgramInfo, TestRun as _, TestRunOptions, Xdp},
    sys::{Stats, enable_stats},
};
use hickory_proto::{
    op::{Edns, Message, Query},
    rr::{Name, RecordType, rdata::opt::EdnsOption},
};
use opengslb::{
    table::{AnswerTable, NameSpec, Policy},
    xdp::Dataplane,
};
use opengslb_common::{maps::FLOOR_PROGRAM_NAME, ratelimit::RateLimit};

use super::frames::{Wrap, client4, client6, frame, server4, server6};

/// `XDP_DROP`.
pub const XDP_DROP: u32 = 1;
/// `XDP_PASS`.
pub const XDP_PASS: u32 = 2;
/// `XDP_TX`.
pub const XDP_TX: u32 = 3;

/// One kind of query, as a frame, with the action it must get.
pub struct Case {
    /// What it is, for the report.
    pub name: &'static str,
    /// The frame.
    pub frame: Vec<u8>,
    /// `XDP_TX` or `XDP_PASS`.
    pub want: u32,
    /// Run by the floor program rather than ours.
    pub floor: bool,
    /// Run by ours with response rate limiting on, as this says.
    pub limit: Limit,
}

/// Response rate limiting for a case: off (the default), or on with a limit that lets every response
/// through, or none (dropped or slipped after the first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Off.
    Off,
    /// On, never reached: the cost of keeping the client's bucket.
    Answers,
    /// On and reached: every response dropped.
    Drops,
    /// On and reached: every response sent truncated.
    Slips,
}

impl Limit {
    /// The settings that make a flood of one client behave as this says (after its first response,
    /// which [`ours`] sends: no token comes back for ages after it).
    fn settings(self) -> RateLimit {
        let never_again = |slip| RateLimit {
            interval_ns: 1 << 62,
            ..RateLimit::new(1, 1, slip, 24, 56)
        };
        match self {
            Self::Off => RateLimit::default(),
            Self::Answers => RateLimit::new(1_000_000, 1_000_000, 2, 24, 56),
            Self::Drops => never_again(0),
            Self::Slips => never_again(1),
        }
    }
}

/// A query for `name` of type `t`, with EDNS and a cookie if `cookie`.
pub fn query(name: &str, t: RecordType, cookie: bool) -> Vec<u8> {
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

/// A name of about 200 bytes in wire form, under demo.local.
pub fn long_name() -> String {
    format!(
        "{}.{}.{}.demo.local.",
        "a".repeat(60),
        "b".repeat(60),
        "c".repeat(60)
    )
}

fn specs() -> Vec<NameSpec> {
    let v4 = |n| IpAddr::V4(Ipv4Addr::new(203, 0, 113, n));
    let v6 = |n| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, n));
    let three = |name: &str, policy| {
        NameSpec::new(
            name.parse().unwrap(),
            30,
            policy,
            1,
            [v4(1), v4(2), v4(3), v6(1), v6(2), v6(3)],
        )
    };
    let mut weighted = three("weighted.demo.local", Policy::Weighted);
    for (r, w) in weighted.v4.records.iter_mut().zip([5, 3, 1]) {
        r.weight = w;
    }
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
    let mut all3 = three("all3.demo.local", Policy::RoundRobin);
    all3.max_answers = 3;
    vec![
        three("app.demo.local", Policy::RoundRobin),
        all3,
        three(&long_name(), Policy::RoundRobin),
        weighted,
        geo,
    ]
}

/// The query kinds measured.
pub fn cases() -> Vec<Case> {
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
    let case = |name, frame, want| Case {
        name,
        frame,
        want,
        floor: false,
        limit: Limit::Off,
    };
    let limited = |name, want, limit| Case {
        name,
        frame: frame(&w4, &a),
        want,
        floor: false,
        limit,
    };
    vec![
        case("A, IPv4", frame(&w4, &a), XDP_TX),
        case(
            "A, IPv4, 3 records per answer",
            frame(&w4, &query("all3.demo.local.", RecordType::A, false)),
            XDP_TX,
        ),
        case(
            "AAAA, IPv6",
            frame(&w6, &query("app.demo.local.", RecordType::AAAA, false)),
            XDP_TX,
        ),
        case(
            "A, IPv4, EDNS + cookie",
            frame(&w4, &query("App.Demo.Local.", RecordType::A, true)),
            XDP_TX,
        ),
        case(
            "AAAA, IPv6, EDNS + cookie",
            frame(&w6, &query("App.Demo.Local.", RecordType::AAAA, true)),
            XDP_TX,
        ),
        case(
            "A, IPv4, 200-byte name",
            frame(&w4, &query(&long_name(), RecordType::A, false)),
            XDP_TX,
        ),
        case("A, IPv4, 802.1Q", frame(&vlan, &a), XDP_TX),
        case(
            "A, weighted, IPv4",
            frame(&w4, &query("weighted.demo.local.", RecordType::A, false)),
            XDP_TX,
        ),
        case(
            "A, geolocation, IPv4",
            frame(&w4, &query("geo.demo.local.", RecordType::A, false)),
            XDP_TX,
        ),
        case(
            "miss: unknown name",
            frame(&w4, &query("nope.demo.local.", RecordType::A, false)),
            XDP_PASS,
        ),
        case("pass: wrong port", frame(&port, &a), XDP_PASS),
        limited(
            "A, IPv4, rate limiting on, answered",
            XDP_TX,
            Limit::Answers,
        ),
        limited("A, IPv4, rate limited: dropped", XDP_DROP, Limit::Drops),
        limited("A, IPv4, rate limited: truncated", XDP_TX, Limit::Slips),
        Case {
            name: "floor: minimal responder, A, IPv4",
            frame: frame(&w4, &a),
            want: XDP_TX,
            floor: true,
            limit: Limit::Off,
        },
    ]
}

/// Our program loaded with the cases' names (from `object` if given, else the embedded one), and the
/// floor program loaded from the same object.
pub struct Programs {
    /// Ours, with its maps.
    pub dp: Dataplane,
    /// Ours again, each with rate limiting on as [`Limit::Answers`], [`Limit::Drops`] and
    /// [`Limit::Slips`] say.
    pub limited: [Dataplane; 3],
    /// The object holding the floor program.
    pub floor: Ebpf,
}

impl Programs {
    /// Loads both.
    pub fn load(object: Option<&[u8]>) -> Self {
        let bytes =
            object.unwrap_or_else(|| opengslb::xdp::object::bytes().expect("an XDP object"));
        Self {
            dp: ours(bytes, Limit::Off),
            limited: [Limit::Answers, Limit::Drops, Limit::Slips].map(|l| ours(bytes, l)),
            floor: load_floor(bytes),
        }
    }

    /// The program a case runs on.
    pub fn program(&mut self, case: &Case) -> &mut Xdp {
        if case.floor {
            return floor_program(&mut self.floor);
        }
        let dp = match case.limit {
            Limit::Off => &mut self.dp,
            Limit::Answers => &mut self.limited[0],
            Limit::Drops => &mut self.limited[1],
            Limit::Slips => &mut self.limited[2],
        };
        dp.program_mut().unwrap()
    }

    /// How many instructions the verifier processed for our program.
    pub fn verified_instructions(&mut self) -> u32 {
        self.dp
            .program_mut()
            .unwrap()
            .info()
            .unwrap()
            .verified_instruction_count()
            .expect("kernel reports verified_insns (≥ 5.16)")
    }
}

/// Our program from the object `bytes`, with the cases' names and rate limiting as `limit` says.
fn ours(bytes: &[u8], limit: Limit) -> Dataplane {
    let mut dp = Dataplane::load_bytes(bytes, None).expect("the program passes the verifier");
    dp.configure(53, 1232).unwrap();
    dp.set_rate_limit(limit.settings()).unwrap();
    // As the overwatch runs it by default: the stale check (one clock read per answer) included.
    dp.set_staleness(std::time::Duration::from_secs(30), false)
        .unwrap();
    dp.set_listen(&[server4(), server6()]).unwrap();
    dp.apply(&AnswerTable::from_specs(&specs()).render())
        .unwrap();
    let mut geo = opengslb::routing::PrefixTable::new();
    geo.insert("198.51.100.0/24".parse().unwrap(), 2);
    dp.set_geo(&geo).unwrap();
    // The first response a client gets: the rest are what a limited client gets.
    let first = frame(
        &Wrap::new(client4(), server4()),
        &query("app.demo.local.", RecordType::A, false),
    );
    let mut out = vec![0u8; 4096];
    let res = dp
        .program_mut()
        .unwrap()
        .test_run(TestRunOptions {
            data_in: Some(&first),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    assert_eq!(res.return_value, XDP_TX, "the first response is sent");
    dp
}

/// The object `bytes` with its floor program loaded into the kernel (and nothing else).
pub fn load_floor(bytes: &[u8]) -> Ebpf {
    let mut floor = Ebpf::load(bytes).expect("the object loads");
    floor_program(&mut floor)
        .load()
        .expect("the floor program passes the verifier");
    floor
}

/// The floor program of an object.
pub fn floor_program(object: &mut Ebpf) -> &mut Xdp {
    object
        .program_mut(FLOOR_PROGRAM_NAME)
        .expect("the floor program is in the object")
        .try_into()
        .expect("the floor program is an XDP program")
}

/// One case's ns per packet: the median and the minimum over rounds.
#[derive(Clone, Copy, Debug)]
pub struct Cost {
    /// The median of the rounds.
    pub median: f64,
    /// The lowest round: on a shared machine other load only ever adds time.
    pub min: f64,
}

/// Measures every case over `rounds` rounds of `packets` runs each, the cases interleaved round by round.
/// Checks each run's action, and that the kernel counted every run.
pub fn measure(p: &mut Programs, cases: &[Case], packets: u64, rounds: u64) -> Vec<Cost> {
    let _stats = enable_stats(Stats::RunTime).expect("BPF_ENABLE_STATS (kernel ≥ 5.8)");
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut out = vec![0u8; 4096];
    let info = |prog: &mut Xdp| -> ProgramInfo { prog.info().unwrap() };
    for _ in 0..rounds {
        for (case, s) in cases.iter().zip(&mut samples) {
            let prog = p.program(case);
            let before = info(prog);
            for _ in 0..packets {
                let res = prog
                    .test_run(TestRunOptions {
                        data_in: Some(&case.frame),
                        data_out: Some(&mut out),
                        ..Default::default()
                    })
                    .expect("BPF_PROG_TEST_RUN");
                assert_eq!(res.return_value, case.want, "{}", case.name);
            }
            let after = info(prog);
            let runs = after.run_count() - before.run_count();
            assert_eq!(runs, packets, "{}: the kernel counted every run", case.name);
            let ns = (after.run_time() - before.run_time()).as_nanos() as f64;
            s.push(ns / runs as f64);
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            Cost {
                median: s[s.len() / 2],
                min: s[0],
            }
        })
        .collect()
}
