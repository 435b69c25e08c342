//! Differential test of the two DNS paths: thousands of generated queries (seeded, reproducible) go
//! through the loaded XDP program with `BPF_PROG_TEST_RUN` and through the userspace responder, both built
//! from one answer table. Where XDP answers, the two replies must be identical byte for byte; where it
//! passes, the userspace reply must be correct. Every userspace reply (so every XDP reply too) is checked
//! against an independent model of the zone: rcode, AA, the records and their rotation, the negative
//! SOA, EDNS, truncation, the echoed ID and question. The zone has round-robin, failover, weighted (equal
//! and 5/3/1 weights) and geolocation names; queries come from clients in every region (by their source
//! address, or by Client Subnet, which userspace answers with its scope).
//!
//! Rotation is made reproducible: the thread runs on CPU 0 only (the program's `ROTATION` counters are
//! per CPU), each entry's counter starts at a known value (some just below `u32::MAX`, so they wrap), and
//! the test counts every query that advances it. The program advances an entry's counter as soon as the
//! name matched the map, before the reply is built, so queries it then passes (`policy`, `too_big`) count
//! too. The userspace responder is given that position through `QueryContext::rotation`. The kernel's
//! counters are compared with the model after each such query and at the end.
//!
//! `OPENGSLB_DIFF_SEED` and `OPENGSLB_DIFF_QUERIES` override the seed and the number of random queries.
//!
//! Needs root: `cargo xtask test` runs this (`--ignored`).

mod common;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use aya::{
    maps::{Map, MapData, MapInfo, PerCpuArray, PerCpuValues},
    programs::{TestRun as _, TestRunOptions},
};
use common::{
    frames::{Wrap, client4, client6, frame, server4, server6, take_apart},
    rng::Rng,
};
use hickory_proto::{
    op::{Message, MessageType, OpCode, ResponseCode},
    rr::{
        DNSClass, Name, RData,
        rdata::{
            NS, SOA,
            opt::{ClientSubnet, EdnsCode, EdnsOption},
        },
    },
    serialize::binary::{BinDecodable as _, BinDecoder},
};
use opengslb::{
    config::Config,
    dns::{DropReason, Outcome, QueryContext, ReplyKind, Snapshot, Transport, Zone, respond},
    overwatch::control::Control,
    xdp::{Counters, Dataplane},
};
use opengslb_common::{
    counters::Counter,
    dns::{QBUF, Scratch, parse_query},
    maps::{QTYPE_A, QTYPE_AAAA, ROTATION_MAP},
};

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const OUR_UDP: u16 = 1232;
const HEADER: usize = 12;
const SERIAL: u32 = 2_024_061_501;
const SOA_TTL: u32 = 120;
const NEGATIVE_TTL: u32 = 30;
const REFRESH: u32 = 7200;
const RETRY: u32 = 900;
const EXPIRE: u32 = 1_209_600;
const DEFAULT_SEED: u64 = 0x0dd5_eed0_f0a7_2024;
const DEFAULT_QUERIES: usize = 20_000;
const ZONES: [&str; 2] = ["gslb.test", "other.test"];
const NAMESERVERS: [&str; 2] = ["ns1.gslb.test", "ns2.gslb.test"];
const TYPE_ANY: u16 = 255;
const TYPE_SOA: u16 = 6;
const TYPE_NS: u16 = 2;
const OPT_COOKIE: u16 = 10;
const OPT_PADDING: u16 = 12;
const OPT_ECS: u16 = 8;
const OPT_NSID: u16 = 3;
const OPT_KEEPALIVE: u16 = 11;
/// How many failures are printed in full.
const SHOW: usize = 12;

// ---------------------------------------------------------------------------------------------------
// The table: specs, the YAML they make, and the model the checks use.

struct Spec {
    name: String,
    algorithm: &'static str,
    ttl: u32,
    max_answers: u8,
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
    /// The weight of the i-th address of each family (none: the config's default).
    weights: Vec<u32>,
    /// The region of the i-th address of each family (none: `pool`).
    regions: Vec<&'static str>,
}

impl Spec {
    fn weights(self, weights: &[u32]) -> Self {
        Self {
            weights: weights.to_vec(),
            ..self
        }
    }

    fn regions(self, regions: &[&'static str]) -> Self {
        Self {
            regions: regions.to_vec(),
            ..self
        }
    }

    fn region(&self, i: usize) -> &'static str {
        self.regions.get(i).copied().unwrap_or(POOL)
    }
}

/// The region of every name that is not routed by geolocation.
const POOL: &str = "pool";
/// The geolocation regions, in config order after `pool` (so their ids are 2, 3, 4), and the default.
const GEO_REGIONS: [&str; 3] = ["eu", "us", "ap"];
const DEFAULT_REGION: &str = "ap";
/// Client ranges → region (`overwatch.geolocation.custom_mappings`); the /25 inside the /24 wins for its
/// clients, being the longer prefix.
const MAPPINGS: [(&str, &str); 4] = [
    ("198.51.100.0/24", "us"),
    ("198.51.100.128/25", "eu"),
    ("203.0.113.0/24", "eu"),
    ("2001:db8:c::/48", "eu"),
];

fn spec(
    net: u8,
    name: &str,
    algorithm: &'static str,
    ttl: u32,
    max_answers: u8,
    n4: u8,
    n6: u16,
) -> Spec {
    Spec {
        name: name.into(),
        algorithm,
        ttl,
        max_answers,
        v4: (1..=n4).map(|k| Ipv4Addr::new(10, net, 0, k)).collect(),
        v6: (1..=n6)
            .map(|k| Ipv6Addr::new(0x2001, 0xdb8, u16::from(net), 0, 0, 0, 0, k))
            .collect(),
        weights: Vec::new(),
        regions: Vec::new(),
    }
}

fn long_name() -> String {
    format!(
        "{}.{}.{}.gslb.test",
        "a".repeat(60),
        "b".repeat(60),
        "c".repeat(60)
    )
}

fn specs() -> Vec<Spec> {
    vec![
        spec(1, "one.gslb.test", "round-robin", 30, 1, 1, 1),
        spec(2, "three.gslb.test", "round-robin", 300, 2, 3, 3),
        spec(3, "sixteen.gslb.test", "round-robin", 60, 16, 16, 16),
        // Over the map's 16 records: left to userspace (policy), answered there with 16 of 20.
        spec(4, "twenty.gslb.test", "round-robin", 45, 16, 20, 20),
        // Weighted with equal weights (the default 100 each): the slot table is [0, 1, 2] (and [0, 1]),
        // so it answers as round-robin does; answered by XDP.
        spec(5, "weighted.gslb.test", "weighted", 20, 1, 3, 2),
        spec(6, "v4only.gslb.test", "rr", 10, 2, 2, 0),
        spec(7, "few.gslb.test", "round-robin", 15, 16, 3, 1),
        // 16 AAAA records for a 194-byte name: 658 bytes, over 512 without EDNS (too_big, then TC).
        spec(8, &long_name(), "round-robin", 5, 16, 16, 16),
        // Makes sub.gslb.test an empty non-terminal (NODATA, not NXDOMAIN).
        spec(9, "deep.sub.gslb.test", "round-robin", 25, 1, 1, 0),
        spec(10, "app.other.test", "round-robin", 50, 2, 0, 2),
        spec(11, "MiXeD.Other.Test", "failover", 7, 1, 2, 2),
        // Unequal weights: slot table [0, 1, 0, 2, 0, 1, 0, 1, 0] (see `WEIGHTED_531_SLOTS`).
        spec(12, "w531.gslb.test", "weighted", 35, 2, 3, 3).weights(&[500, 300, 100]),
        // Two A and two AAAA in eu, one A (and no AAAA: its clients get the default's) in us, one of
        // each in ap, the default region.
        spec(13, "geo.gslb.test", "geolocation", 40, 1, 4, 3).regions(&["eu", "eu", "ap", "us"]),
        spec(14, "geo2.gslb.test", "geolocation", 12, 2, 3, 2).regions(&["us", "us", "eu"]),
    ]
}

fn yaml(specs: &[Spec]) -> String {
    let mut y = String::new();
    let _ = writeln!(
        y,
        "mode: overwatch
overwatch:
  geolocation:
    default_region: {DEFAULT_REGION}
    custom_mappings:"
    );
    for (cidr, region) in MAPPINGS {
        let _ = writeln!(y, "      - {{ cidr: \"{cidr}\", region: {region} }}");
    }
    let _ = writeln!(
        y,
        "dns:
  listen_address: \"192.0.2.53:53\"
  zones: [{}]
  default_ttl: 60
  nameservers: [{}]
  soa: {{ ttl: {SOA_TTL}, refresh: {REFRESH}, retry: {RETRY}, expire: {EXPIRE}, negative_ttl: {NEGATIVE_TTL} }}
  xdp: {{ interfaces: [lo], udp_size: {OUR_UDP} }}
regions:",
        ZONES.join(", "),
        NAMESERVERS.join(", ")
    );
    for region in std::iter::once(POOL).chain(GEO_REGIONS) {
        let _ = writeln!(y, "  - name: {region}\n    servers:");
        for s in specs {
            let v4 = s.v4.iter().map(|a| IpAddr::V4(*a)).enumerate();
            let v6 = s.v6.iter().map(|a| IpAddr::V6(*a)).enumerate();
            for (i, a) in v4.chain(v6).filter(|(i, _)| s.region(*i) == region) {
                let weight = s
                    .weights
                    .get(i)
                    .map(|w| format!(", weight: {w}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    y,
                    "      - {{ address: \"{a}\", service: \"{}\"{weight} }}",
                    s.name
                );
            }
        }
    }
    y.push_str("domains:\n");
    for s in specs {
        let regions = if s.regions.is_empty() {
            POOL.to_owned()
        } else {
            GEO_REGIONS.join(", ")
        };
        let _ = writeln!(
            y,
            "  - {{ name: \"{}\", routing_algorithm: {}, regions: [{regions}], ttl: {}, max_answers: {} }}",
            s.name, s.algorithm, s.ttl, s.max_answers
        );
    }
    y
}

type Labels = Vec<Vec<u8>>;

fn labels_of(text: &str) -> Labels {
    let text = text.trim_end_matches('.');
    if text.is_empty() {
        return Vec::new();
    }
    text.split('.').map(|l| l.as_bytes().to_vec()).collect()
}

fn lower(labels: &[Vec<u8>]) -> Labels {
    labels.iter().map(|l| l.to_ascii_lowercase()).collect()
}

fn name_labels(n: &Name) -> Labels {
    n.iter().map(<[u8]>::to_vec).collect()
}

fn wire_len(labels: &[Vec<u8>]) -> usize {
    labels.iter().map(|l| l.len() + 1).sum::<usize>() + 1
}

fn encode_name(labels: &[Vec<u8>]) -> Vec<u8> {
    let mut w = Vec::new();
    for l in labels {
        w.push(l.len() as u8);
        w.extend_from_slice(l);
    }
    w.push(0);
    w
}

/// Labels from a wire-format name without compression (as the gate left it in `Scratch::name`).
fn wire_labels(mut w: &[u8]) -> Labels {
    let mut out = Vec::new();
    while let Some((&len, rest)) = w.split_first() {
        if len == 0 {
            break;
        }
        let (label, rest) = rest.split_at(usize::from(len));
        out.push(label.to_vec());
        w = rest;
    }
    out
}

/// The slot table smooth weighted round-robin makes for weights 5:3:1 (nginx's rule, worked by hand:
/// each step every backend gains its weight, the one furthest ahead, the earlier on ties, takes the
/// slot and pays the total of 9).
const WEIGHTED_531_SLOTS: [usize; 9] = [0, 1, 0, 2, 0, 1, 0, 1, 0];

/// How an entry's answers are chosen, as the config documents it.
enum Choice {
    /// `records[(rotation + k) % n]`.
    Rotate,
    /// `failover`: the first records in config order, whatever the rotation.
    Fixed,
    /// Weighted: `records[(slots[rotation % len] + k) % n]`.
    Slots(Vec<usize>),
    /// Geolocation: the region of each record; rotation among those of the client's region, else of
    /// the default region, else among all.
    Geo(Vec<&'static str>),
}

struct ModelEntry {
    ttl: u32,
    max_answers: usize,
    records: Vec<IpAddr>,
    choice: Choice,
}

impl ModelEntry {
    fn answer(&self, rotation: u32, client: IpAddr) -> Vec<IpAddr> {
        let r = rotation as usize;
        let pick = |set: &[IpAddr], first: usize| -> Vec<IpAddr> {
            let n = set.len().max(1);
            (0..self.max_answers.min(set.len()))
                .map(|k| set[(first + k) % n])
                .collect()
        };
        match &self.choice {
            Choice::Rotate => pick(&self.records, r % self.records.len()),
            Choice::Fixed => pick(&self.records, 0),
            Choice::Slots(slots) => pick(&self.records, slots[r % slots.len()]),
            Choice::Geo(regions) => {
                let of = |region: &str| -> Vec<IpAddr> {
                    self.records
                        .iter()
                        .zip(regions)
                        .filter(|(_, r)| **r == region)
                        .map(|(a, _)| *a)
                        .collect()
                };
                let (region, _) = geo_resolve(client);
                let mut set = of(region.unwrap_or(DEFAULT_REGION));
                if set.is_empty() {
                    set = of(DEFAULT_REGION);
                }
                if set.is_empty() {
                    set = self.records.clone();
                }
                pick(&set, r % set.len())
            }
        }
    }
}

/// An address as left-aligned bits and its family's width (IPv4-mapped IPv6 counts as IPv4).
fn addr_bits(ip: IpAddr) -> (u128, u32) {
    match ip.to_canonical() {
        IpAddr::V4(a) => (u128::from(u32::from(a)) << 96, 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

/// The custom mapping that places `client` (the longest that contains it; without a database nothing
/// else places anyone), and the Client Subnet scope of that answer: the mapping's prefix length, but at
/// least one bit more than the client shares with any mapping that does not contain it, so that the
/// scope claims no address another mapping places elsewhere.
fn geo_resolve(client: IpAddr) -> (Option<&'static str>, u8) {
    let (bits, width) = addr_bits(client);
    let mut best: Option<(u32, &'static str)> = None;
    let mut clear = 0u32;
    for (cidr, region) in MAPPINGS {
        let (net, len) = cidr.split_once('/').unwrap();
        let (net_bits, net_width) = addr_bits(net.parse().unwrap());
        if net_width != width {
            continue;
        }
        let len: u32 = len.parse().unwrap();
        let common = ((bits ^ net_bits).leading_zeros()).min(width);
        if common >= len {
            if best.is_none_or(|(l, _)| len > l) {
                best = Some((len, region));
            }
        } else {
            clear = clear.max(common + 1);
        }
    }
    match best {
        Some((len, region)) => (Some(region), len.max(clear) as u8),
        None => (None, clear as u8),
    }
}

/// What the zone holds, built from the specs alone (not from the config code under test).
struct Model {
    zones: Vec<Labels>,
    entries: HashMap<(Labels, u16), ModelEntry>,
    exists: HashSet<Labels>,
}

impl Model {
    fn new(specs: &[Spec]) -> Self {
        let zones: Vec<Labels> = ZONES.iter().map(|z| labels_of(z)).collect();
        let mut entries = HashMap::new();
        let mut exists: HashSet<Labels> = zones.iter().cloned().collect();
        for s in specs {
            let name = lower(&labels_of(&s.name));
            let zone = zones
                .iter()
                .filter(|z| name.ends_with(z))
                .max_by_key(|z| z.len())
                .expect("every spec lies in a zone");
            for k in zone.len()..=name.len() {
                exists.insert(name[name.len() - k..].to_vec());
            }
            let families = [
                (QTYPE_A, s.v4.iter().map(|a| IpAddr::V4(*a)).collect()),
                (QTYPE_AAAA, s.v6.iter().map(|a| IpAddr::V6(*a)).collect()),
            ];
            for (qtype, records) in families {
                let records: Vec<IpAddr> = records;
                if records.is_empty() {
                    continue;
                }
                let choice = match s.algorithm {
                    "failover" => Choice::Fixed,
                    "weighted" if !s.weights.is_empty() => {
                        assert_eq!(s.weights, [500, 300, 100], "the one table worked by hand");
                        Choice::Slots(WEIGHTED_531_SLOTS.to_vec())
                    }
                    "geolocation" => Choice::Geo((0..records.len()).map(|i| s.region(i)).collect()),
                    _ => Choice::Rotate,
                };
                // Config order is region by region (see `yaml`): the geolocation records too.
                let mut records: Vec<(IpAddr, usize)> = records
                    .into_iter()
                    .enumerate()
                    .map(|(i, a)| (a, i))
                    .collect();
                let rank = |i: usize| {
                    std::iter::once(POOL)
                        .chain(GEO_REGIONS)
                        .position(|r| r == s.region(i))
                };
                records.sort_by_key(|&(_, i)| (rank(i), i));
                let choice = match choice {
                    Choice::Geo(_) => {
                        Choice::Geo(records.iter().map(|&(_, i)| s.region(i)).collect())
                    }
                    c => c,
                };
                entries.insert(
                    (name.clone(), qtype),
                    ModelEntry {
                        ttl: s.ttl,
                        max_answers: usize::from(s.max_answers.clamp(1, 16)),
                        records: records.into_iter().map(|(a, _)| a).collect(),
                        choice,
                    },
                );
            }
        }
        Self {
            zones,
            entries,
            exists,
        }
    }

    /// The closest enclosing zone.
    fn zone_of(&self, name: &[Vec<u8>]) -> Option<&Labels> {
        self.zones
            .iter()
            .filter(|z| name.ends_with(z))
            .max_by_key(|z| z.len())
    }
}

fn fqdn(labels: &[Vec<u8>]) -> Name {
    Name::from_labels(labels.iter().map(Vec::as_slice)).expect("a valid name")
}

fn text_name(t: &str) -> Name {
    fqdn(&labels_of(t))
}

fn soa_rdata(zone: &[Vec<u8>]) -> RData {
    let mut rname = vec![b"hostmaster".to_vec()];
    rname.extend(zone.iter().cloned());
    RData::SOA(SOA::new(
        text_name(NAMESERVERS[0]),
        fqdn(&rname),
        SERIAL,
        REFRESH as i32,
        RETRY as i32,
        EXPIRE as i32,
        NEGATIVE_TTL,
    ))
}

// ---------------------------------------------------------------------------------------------------
// Query generation.

struct Generated {
    wire: Vec<u8>,
    what: String,
}

fn random_label(rng: &mut Rng, max: usize) -> Vec<u8> {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-";
    let len = 1 + rng.below_usize(max);
    (0..len).map(|_| rng.pick(CHARS)).collect()
}

fn with_zone(mut head: Labels, zone: &str) -> Labels {
    head.extend(labels_of(zone));
    head
}

/// A longest legal name (255 bytes in wire format) inside `gslb.test`.
fn max_length_name() -> Labels {
    with_zone(
        vec![
            vec![b'q'; 63],
            vec![b'r'; 63],
            vec![b's'; 63],
            vec![b't'; 51],
        ],
        "gslb.test",
    )
}

fn pick_name(rng: &mut Rng, specs: &[Spec]) -> (Labels, &'static str) {
    match rng.below(100) {
        0..=59 => (
            labels_of(&specs[rng.below_usize(specs.len())].name),
            "entry",
        ),
        60..=65 => (labels_of(rng.pick(&ZONES)), "apex"),
        66..=68 => (labels_of("sub.gslb.test"), "empty non-terminal"),
        69..=80 => {
            let name = match rng.below(6) {
                0 | 1 => with_zone(vec![random_label(rng, 20)], rng.pick(&ZONES)),
                2 => {
                    let mut n = vec![b"x".to_vec()];
                    n.extend(labels_of(&specs[rng.below_usize(specs.len())].name));
                    n
                }
                3 => labels_of(rng.pick(&NAMESERVERS)),
                4 => max_length_name(),
                _ => labels_of(rng.pick(&[
                    "thre.gslb.test",
                    "other.test.gslb.test",
                    "onee.gslb.test",
                ])),
            };
            (name, "unknown in zone")
        }
        81..=90 => {
            let name = rng.pick(&[
                "example.com",
                "test",
                "",
                "gslb.test.evil",
                "xgslb.test",
                "com",
                "one.gslb.tes",
                "other.tes",
            ]);
            (labels_of(name), "outside")
        }
        _ => {
            let name = match rng.below(6) {
                0 => {
                    let n = 1 + rng.below_usize(12);
                    with_zone(vec![rng.bytes(n)], "gslb.test")
                }
                1 => vec![b"one.gslb".to_vec(), b"test".to_vec()],
                2 => with_zone(vec![b"one\0".to_vec()], "gslb.test"),
                3 => with_zone(vec![vec![b'z'; 63]; 4], "gslb.test"), // over 255 bytes
                4 => with_zone(vec![vec![b'y'; 64]], "gslb.test"),    // a 64-byte label
                _ => with_zone(vec![b"ONE".to_vec()], "GSLB.TEST"),
            };
            (name, "odd")
        }
    }
}

/// Random 0x20 case on ASCII letters.
fn scramble_case(rng: &mut Rng, labels: &mut Labels) {
    for l in labels.iter_mut() {
        for b in l.iter_mut() {
            if b.is_ascii_alphabetic() && rng.chance(50) {
                *b ^= 0x20;
            }
        }
    }
}

struct Opt {
    udp: u16,
    ext_rcode: u8,
    version: u8,
    flags: u16,
    options: Vec<(u16, Vec<u8>)>,
}

impl Opt {
    fn options_len(&self) -> usize {
        self.options.iter().map(|(_, d)| 4 + d.len()).sum()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(0);
        out.extend_from_slice(&41u16.to_be_bytes());
        out.extend_from_slice(&self.udp.to_be_bytes());
        out.push(self.ext_rcode);
        out.push(self.version);
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&(self.options_len() as u16).to_be_bytes());
        for (code, data) in &self.options {
            out.extend_from_slice(&code.to_be_bytes());
            out.extend_from_slice(&(data.len() as u16).to_be_bytes());
            out.extend_from_slice(data);
        }
    }
}

fn ecs_option(rng: &mut Rng) -> Vec<u8> {
    let (family, bits) = if rng.chance(60) { (1u16, 32) } else { (2, 128) };
    let prefix = rng.below(bits + 1) as u8;
    let n = usize::from(prefix).div_ceil(8);
    let mut addr = rng.bytes(n);
    // Often an address in or beside a geolocation mapping, where the scope depends on the mappings.
    if rng.chance(40) {
        let near: &[u8] = match family {
            1 => rng.pick(&[&[198, 51, 100][..], &[203, 0, 113], &[198, 51, 101]]),
            _ => rng.pick(&[
                &[0x20, 0x01, 0x0d, 0xb8, 0, 0x0c][..],
                &[0x20, 0x01, 0x0d, 0xb8, 0, 0x0d],
            ]),
        };
        for (a, b) in addr.iter_mut().zip(near) {
            *a = *b;
        }
    }
    if !prefix.is_multiple_of(8)
        && let Some(last) = addr.last_mut()
    {
        *last &= 0xffu8 << (8 - prefix % 8);
    }
    let mut d = family.to_be_bytes().to_vec();
    d.push(prefix);
    d.push(0);
    d.extend_from_slice(&addr);
    d
}

fn random_opt(rng: &mut Rng, what: &mut String) -> Opt {
    let udp = match rng.below(13) {
        0 => 0,
        1 => 100,
        2 => 511,
        3 => 512,
        4 => 513,
        5 => 600,
        6 => 700,
        7 | 8 => 1232,
        9 => 1400,
        10 => 4096,
        11 => 65535,
        _ => rng.byte().into(),
    };
    let version = if rng.chance(5) {
        rng.range(1, 255) as u8
    } else {
        0
    };
    let mut flags = if rng.chance(40) { 0x8000 } else { 0 };
    if rng.chance(3) {
        flags |= rng.next_u64() as u16 & 0x7fff;
    }
    let ext_rcode = if rng.chance(3) { rng.byte() } else { 0 };
    let mut options = Vec::new();
    for _ in 0..rng.below(4) {
        let o = match rng.below(100) {
            0..=29 => (OPT_COOKIE, rng.bytes(8)),
            30..=39 => (OPT_COOKIE, rng.bytes(24)),
            40..=59 => (rng.range(65001, 65534) as u16, {
                let n = rng.below_usize(17);
                rng.bytes(n)
            }),
            60..=69 => (OPT_PADDING, vec![0; rng.below_usize(64)]),
            70..=74 => (OPT_PADDING, vec![0; rng.range(400, 700) as usize]),
            75..=86 => (OPT_ECS, ecs_option(rng)),
            87..=94 => (OPT_NSID, Vec::new()),
            _ => (OPT_KEEPALIVE, Vec::new()),
        };
        options.push(o);
    }
    let _ = write!(
        what,
        " edns(udp {udp}, v{version}, flags {flags:#06x}, ext {ext_rcode}, options {:?})",
        options
            .iter()
            .map(|(c, d)| format!("{c}/{}", d.len()))
            .collect::<Vec<_>>()
    );
    Opt {
        udp,
        ext_rcode,
        version,
        flags,
        options,
    }
}

fn set_u16(wire: &mut [u8], at: usize, v: u16) {
    if let Some(s) = wire.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

fn generate(rng: &mut Rng, specs: &[Spec]) -> Generated {
    let (mut labels, kind) = pick_name(rng, specs);
    if rng.chance(70) {
        scramble_case(rng, &mut labels);
    }
    let qtype: u16 = match rng.below(100) {
        0..=39 => QTYPE_A,
        40..=74 => QTYPE_AAAA,
        75..=96 => rng.pick(&[TYPE_SOA, TYPE_NS, 15, 16, TYPE_ANY, 5, 12, 33, 65, 257]),
        // Any other data type (not the meta-types 128-254, not OPT).
        _ => loop {
            let t = rng.range(1, 65535) as u16;
            if !(128..=254).contains(&t) && t != 41 {
                break t;
            }
        },
    };
    let class: u16 = if rng.chance(94) {
        1
    } else {
        rng.pick(&[3, 4, 254, 255])
    };
    let id = rng.next_u64() as u16;
    let mut flags: u16 = 0;
    if rng.chance(70) {
        flags |= 0x0100; // RD
    }
    if rng.chance(20) {
        flags |= 0x0010; // CD
    }
    if rng.chance(10) {
        flags |= 0x0020; // AD
    }
    let mut what = format!(
        "{kind} {:?} type {qtype} class {class} id {id:#06x} flags {flags:#06x}",
        String::from_utf8_lossy(&encode_name(&labels))
    );
    let mut opt = rng.chance(60).then(|| random_opt(rng, &mut what));

    let question = {
        let mut q = encode_name(&labels);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&class.to_be_bytes());
        q
    };
    // Sometimes an OPT padded to end exactly at byte 512, with bytes after it: the XDP path reads at
    // most 512 bytes, and what lies beyond must not go unnoticed.
    let trailing_past_512 = rng.chance(2);
    if trailing_past_512 {
        let o = opt.get_or_insert_with(|| Opt {
            udp: 1232,
            ext_rcode: 0,
            version: 0,
            flags: 0,
            options: Vec::new(),
        });
        o.options.retain(|(c, d)| *c != OPT_PADDING || d.len() < 64);
        let used = HEADER + question.len() + 11 + o.options_len();
        if used + 4 <= QBUF {
            o.options.push((OPT_PADDING, vec![0; QBUF - used - 4]));
        }
    }
    let mut wire = Vec::new();
    wire.extend_from_slice(&id.to_be_bytes());
    wire.extend_from_slice(&flags.to_be_bytes());
    wire.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(opt.is_some())]);
    wire.extend_from_slice(&question);
    if let Some(o) = &opt {
        o.encode(&mut wire);
    }
    if trailing_past_512 {
        let n = 1 + rng.below_usize(64);
        let _ = write!(what, " [{} bytes, then {n} trailing bytes]", wire.len());
        wire.extend(rng.bytes(n));
    }

    if rng.chance(15) {
        let m = rng.below(13);
        let _ = write!(what, " mutation {m}");
        match m {
            0 => {
                let n = rng.below_usize(wire.len());
                wire.truncate(n);
            }
            1 => {
                let bit = rng.below(16);
                let f = u16::from_be_bytes([wire[2], wire[3]]) ^ (1 << bit);
                set_u16(&mut wire, 2, f);
            }
            2 => set_u16(&mut wire, 4, rng.pick(&[0, 2, 3, 0xffff])),
            3 => set_u16(&mut wire, rng.pick(&[6, 8]), 1),
            4 => {
                let ar = u16::from_be_bytes([wire[10], wire[11]]);
                set_u16(&mut wire, 10, if ar == 0 { 1 } else { rng.pick(&[0, 2]) });
            }
            5 => {
                let at = rng.below_usize(wire.len());
                wire[at] ^= 1 << rng.below(8);
            }
            6 => {
                let n = 1 + rng.below_usize(8);
                wire.extend(rng.bytes(n));
            }
            7 => {
                // The question name as a compression pointer: to itself (a loop) or into the header.
                let target: u16 = rng.pick(&[12, 2, 20]);
                let end = HEADER + wire_len(&labels);
                wire.splice(HEADER..end, (0xc000 | target).to_be_bytes());
            }
            8 => {
                // The question twice.
                let end = HEADER + question.len();
                wire.splice(end..end, question.clone());
                set_u16(&mut wire, 4, 2);
            }
            9 => wire[2] |= 0x80, // QR
            10 => {
                let opcode = rng.range(1, 15) as u8;
                wire[2] = (wire[2] & 0x87) | (opcode << 3);
            }
            11 => wire[2] |= 0x02, // TC
            _ => {
                let at = HEADER + rng.below_usize(wire.len().saturating_sub(HEADER).max(1));
                if at < wire.len() {
                    wire[at] = rng.byte();
                }
            }
        }
    }
    Generated { wire, what }
}

/// Cases picked by hand, run before the random ones.
fn directed() -> Vec<Generated> {
    let mut out = Vec::new();
    let header = |qd: u16, ar: u16| {
        let mut w = vec![0x12, 0x34, 0x01, 0x00];
        w.extend_from_slice(&qd.to_be_bytes());
        w.extend_from_slice(&[0, 0, 0, 0]);
        w.extend_from_slice(&ar.to_be_bytes());
        w
    };
    let question = |labels: &[Vec<u8>], qtype: u16| {
        let mut q = encode_name(labels);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    };
    // A query for an XDP-answerable name that ends exactly at byte 512 (OPT with padding), followed by
    // 40 more bytes: 552 bytes in all.
    for qtype in [QTYPE_A, QTYPE_AAAA] {
        let mut w = header(1, 1);
        w.extend(question(&labels_of("three.gslb.test"), qtype));
        let used = w.len() + 11 + 4;
        let opt = Opt {
            udp: 1232,
            ext_rcode: 0,
            version: 0,
            flags: 0,
            options: vec![(OPT_PADDING, vec![0; QBUF - used])],
        };
        opt.encode(&mut w);
        assert_eq!(w.len(), QBUF);
        w.extend([0xee; 40]);
        out.push(Generated {
            wire: w,
            what: format!("directed: type {qtype} query of 512 bytes plus 40 trailing bytes"),
        });
    }
    // An OPT record outside the additional section: in the answer or the authority section, with or
    // without another in the additional one (RFC 6891 §6.1.1: only the additional section may hold it).
    for (section, with_additional) in [(6usize, false), (8, false), (6, true), (8, true)] {
        let mut w = header(1, u16::from(with_additional));
        w[section..section + 2].copy_from_slice(&1u16.to_be_bytes());
        w.extend(question(&labels_of("three.gslb.test"), QTYPE_A));
        let opt = Opt {
            udp: 1232,
            ext_rcode: 0,
            version: 0,
            flags: 0,
            options: Vec::new(),
        };
        opt.encode(&mut w);
        if with_additional {
            opt.encode(&mut w);
        }
        out.push(Generated {
            wire: w,
            what: format!(
                "directed: OPT in the {} section{}",
                if section == 6 { "answer" } else { "authority" },
                if with_additional {
                    " and in the additional one"
                } else {
                    ""
                }
            ),
        });
    }
    // The same query of 512 bytes exactly: answerable from XDP.
    {
        let mut w = header(1, 1);
        w.extend(question(&labels_of("three.gslb.test"), QTYPE_A));
        let used = w.len() + 11 + 4;
        Opt {
            udp: 1232,
            ext_rcode: 0,
            version: 0,
            flags: 0,
            options: vec![(OPT_PADDING, vec![0; QBUF - used])],
        }
        .encode(&mut w);
        out.push(Generated {
            wire: w,
            what: "directed: A query of exactly 512 bytes".into(),
        });
    }
    // Two different questions of 255-byte names without EDNS (a FORMERR that cannot shed its questions
    // and still fit 512 bytes).
    {
        let mut w = header(2, 0);
        w.extend(question(&max_length_name(), QTYPE_A));
        let mut other = max_length_name();
        other[0] = vec![b'p'; 63];
        w.extend(question(&other, QTYPE_A));
        out.push(Generated {
            wire: w,
            what: "directed: two questions for two different 255-byte names".into(),
        });
        // The same with nothing in common to compress: 530 bytes of questions alone.
        let mut w = header(2, 0);
        w.extend(question(&max_length_name(), QTYPE_A));
        let disjoint: Labels = vec![
            vec![b'u'; 63],
            vec![b'v'; 63],
            vec![b'w'; 63],
            vec![b'x'; 61],
        ];
        w.extend(question(&disjoint, QTYPE_A));
        out.push(Generated {
            wire: w,
            what: "directed: two questions for two 255-byte names with no common suffix".into(),
        });
    }
    // Geolocation by Client Subnet, where the scope is more than the mapping's prefix (198.51.100.7 is in
    // the /24 but one bit from the /25) or comes from the mappings around an unmapped client.
    let subnets: [(IpAddr, u8); 7] = [
        (Ipv4Addr::new(198, 51, 100, 7).into(), 32),
        (Ipv4Addr::new(198, 51, 100, 200).into(), 32),
        (Ipv4Addr::new(203, 0, 113, 0).into(), 24),
        (Ipv4Addr::new(192, 0, 2, 0).into(), 24),
        ("2001:db8:c::".parse().unwrap(), 48),
        ("2001:db8:d::".parse().unwrap(), 64),
        (Ipv4Addr::UNSPECIFIED.into(), 0),
    ];
    for (addr, prefix) in subnets {
        for (name, qtype) in [("geo.gslb.test", QTYPE_A), ("geo2.gslb.test", QTYPE_AAAA)] {
            let mut w = header(1, 1);
            w.extend(question(&labels_of(name), qtype));
            let (family, octets) = match addr {
                IpAddr::V4(a) => (1u16, a.octets().to_vec()),
                IpAddr::V6(a) => (2, a.octets().to_vec()),
            };
            let mut ecs = family.to_be_bytes().to_vec();
            ecs.extend([prefix, 0]);
            ecs.extend(&octets[..usize::from(prefix).div_ceil(8)]);
            Opt {
                udp: 1232,
                ext_rcode: 0,
                version: 0,
                flags: 0,
                options: vec![(OPT_ECS, ecs)],
            }
            .encode(&mut w);
            out.push(Generated {
                wire: w,
                what: format!("directed: {name} type {qtype} with Client Subnet {addr}/{prefix}"),
            });
        }
    }
    // 16 AAAA records for the long name: without EDNS too big (TC), with a small EDNS size too big,
    // with 1232 answered.
    for udp in [None, Some(600), Some(1232)] {
        let mut w = header(1, u16::from(udp.is_some()));
        w.extend(question(&labels_of(&long_name()), QTYPE_AAAA));
        if let Some(udp) = udp {
            Opt {
                udp,
                ext_rcode: 0,
                version: 0,
                flags: 0x8000,
                options: Vec::new(),
            }
            .encode(&mut w);
        }
        out.push(Generated {
            wire: w,
            what: format!("directed: 16 AAAA for the long name, EDNS size {udp:?}"),
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------------
// The oracle: what a correct reply to a query is.

enum Body {
    /// No records (errors, REFUSED).
    Nothing,
    /// A or AAAA records, in this order.
    Addresses { ttl: u32, ips: Vec<IpAddr> },
    /// Apex records (SOA, NS), owned by the query name.
    Apex { ttl: u32, data: Vec<RData> },
    /// NXDOMAIN or NODATA: the zone's SOA in the authority section.
    Negative { zone: Labels },
}

/// The rcode, AA, the body, and the Client Subnet scope of a correct reply to `qm` from `client` (the
/// Client Subnet address when the query has one).
fn expected(
    m: &Model,
    qm: &Message,
    rotation: u32,
    client: IpAddr,
) -> (ResponseCode, bool, Body, u8) {
    let (rcode, aa, body) = expected_body(m, qm, rotation, client);
    // Only a geolocation answer depends on the client, and so has a scope.
    let geo = qm.queries.first().is_some_and(|q| {
        let name = lower(&name_labels(q.name()));
        [QTYPE_A, QTYPE_AAAA].iter().any(|t| {
            m.entries
                .get(&(name.clone(), *t))
                .is_some_and(|e| matches!(e.choice, Choice::Geo(_)))
        })
    });
    let scope = match &body {
        Body::Addresses { .. } if geo => geo_resolve(client).1,
        _ => 0,
    };
    (rcode, aa, body, scope)
}

fn expected_body(
    m: &Model,
    qm: &Message,
    rotation: u32,
    client: IpAddr,
) -> (ResponseCode, bool, Body) {
    if qm.metadata.op_code != OpCode::Query {
        return (ResponseCode::NotImp, false, Body::Nothing);
    }
    if qm.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return (ResponseCode::BADVERS, false, Body::Nothing);
    }
    let [q] = qm.queries.as_slice() else {
        return (ResponseCode::FormErr, false, Body::Nothing);
    };
    if !qm.answers.is_empty() || !qm.authorities.is_empty() {
        return (ResponseCode::FormErr, false, Body::Nothing);
    }
    let name = lower(&name_labels(q.name()));
    let zone = match m.zone_of(&name) {
        Some(z) if q.query_class() == DNSClass::IN => z.clone(),
        _ => return (ResponseCode::Refused, false, Body::Nothing),
    };
    let at_apex = name == zone;
    let addresses = |qtype: u16| {
        m.entries
            .get(&(name.clone(), qtype))
            .map(|e| Body::Addresses {
                ttl: e.ttl,
                ips: e.answer(rotation, client),
            })
    };
    let soa = || Body::Apex {
        ttl: SOA_TTL,
        data: vec![soa_rdata(&zone)],
    };
    let body = match u16::from(q.query_type()) {
        QTYPE_A => addresses(QTYPE_A),
        QTYPE_AAAA => addresses(QTYPE_AAAA),
        TYPE_SOA if at_apex => Some(soa()),
        TYPE_NS if at_apex => Some(Body::Apex {
            ttl: SOA_TTL,
            data: NAMESERVERS
                .iter()
                .map(|n| RData::NS(NS(text_name(n))))
                .collect(),
        }),
        // RFC 8482: one RRset the name has.
        TYPE_ANY => addresses(QTYPE_A)
            .or_else(|| addresses(QTYPE_AAAA))
            .or_else(|| at_apex.then(soa)),
        _ => None,
    };
    match body {
        Some(b) => (ResponseCode::NoError, true, b),
        None if m.exists.contains(&name) => (ResponseCode::NoError, true, Body::Negative { zone }),
        None => (ResponseCode::NXDomain, true, Body::Negative { zone }),
    }
}

fn ensure(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}

/// Checks the userspace outcome for query `q` answered at rotation position `rotation`; returns a label
/// for the summary.
fn check(
    m: &Model,
    q: &[u8],
    rotation: u32,
    source: IpAddr,
    out: &Outcome,
) -> Result<String, String> {
    if q.len() < HEADER {
        return match out {
            Outcome::Drop(DropReason::TooShort) => Ok("no reply (shorter than a header)".into()),
            o => Err(format!(
                "a {}-byte message must get no reply, got {}",
                q.len(),
                show(o)
            )),
        };
    }
    if q[2] & 0x80 != 0 {
        return match out {
            Outcome::Drop(DropReason::Response) => Ok("no reply (QR=1)".into()),
            o => Err(format!(
                "a response (QR=1) must get no reply, got {}",
                show(o)
            )),
        };
    }
    let bytes = match out {
        Outcome::Reply(b, _) => b,
        Outcome::Drop(d) => return Err(format!("no reply ({d:?}) to a query")),
    };
    ensure(bytes.len() >= HEADER, || {
        "reply shorter than a header".into()
    })?;
    ensure(bytes[..2] == q[..2], || "ID not echoed".into())?;
    let mut qm = match Message::from_vec(q) {
        Ok(m) => m,
        Err(_) => {
            // Unparseable: a bare FORMERR header with ID, opcode and RD copied.
            let want = [q[0], q[1], 0x80 | (q[2] & 0x79), 1, 0, 0, 0, 0, 0, 0, 0, 0];
            ensure(bytes[..] == want, || {
                format!(
                    "unparseable query: want the bare FORMERR {}, got {}",
                    hex(&want),
                    hex(bytes)
                )
            })?;
            return Ok("FORMERR (unparseable)".into());
        }
    };
    // Bytes after the last record the counts announce make the message malformed: FORMERR.
    let trailing = {
        let mut d = BinDecoder::new(q);
        Message::read(&mut d).is_ok() && !d.is_empty()
    };
    if trailing {
        // Nor is the OPT of such a message trusted: the FORMERR carries none.
        qm.edns = None;
    }
    let r = Message::from_vec(bytes).map_err(|e| format!("the reply does not parse: {e}"))?;
    let md = &r.metadata;
    ensure(md.message_type == MessageType::Response, || "QR=0".into())?;
    ensure(md.op_code == qm.metadata.op_code, || {
        format!("opcode {:?} not echoed", qm.metadata.op_code)
    })?;
    ensure(
        md.recursion_desired == qm.metadata.recursion_desired,
        || "RD not copied".into(),
    )?;
    ensure(
        md.checking_disabled == qm.metadata.checking_disabled,
        || "CD not copied".into(),
    )?;
    ensure(!md.recursion_available, || "RA set".into())?;
    ensure(!md.authentic_data, || "AD set".into())?;
    ensure(r.additionals.is_empty(), || {
        "records in the additional section".into()
    })?;
    // A truncated reply whose echoed questions alone would not fit leaves them out.
    let same_question = (md.truncation && r.queries.is_empty())
        || r.queries.len() == qm.queries.len()
            && r.queries.iter().zip(&qm.queries).all(|(a, b)| {
                name_labels(a.name()) == name_labels(b.name())
                    && a.query_type() == b.query_type()
                    && a.query_class() == b.query_class()
            });
    ensure(same_question, || {
        format!(
            "question not echoed: sent {:?}, got {:?}",
            qm.queries, r.queries
        )
    })?;
    let client_size = qm
        .edns
        .as_ref()
        .map_or(512, |e| usize::from(e.max_payload()).max(512));
    ensure(bytes.len() <= client_size, || {
        format!(
            "a {}-byte reply to a client that takes {client_size}",
            bytes.len()
        )
    })?;

    let ecs = qm
        .edns
        .as_ref()
        .and_then(|e| match e.option(EdnsCode::Subnet) {
            Some(EdnsOption::Subnet(s)) => Some(*s),
            _ => None,
        });
    let client = ecs.map_or(source, |s| s.addr());
    let (rcode, aa, body, scope) = if trailing {
        (ResponseCode::FormErr, false, Body::Nothing, 0)
    } else {
        expected(m, &qm, rotation, client)
    };
    // By value: hickory reads 16 back as BADSIG, which shares the code with BADVERS.
    ensure(u16::from(md.response_code) == u16::from(rcode), || {
        format!("rcode {:?}, want {rcode:?}", md.response_code)
    })?;
    ensure(md.authoritative == aa, || {
        format!("AA {}, want {aa}", md.authoritative)
    })?;

    // EDNS: our OPT (version 0, our size, DO copied) when the query had one; ECS echoed with the scope
    // of the answer (0 unless it depends on the client).
    let ecs = ecs.filter(|_| rcode != ResponseCode::BADVERS);
    match (&qm.edns, &r.edns) {
        (None, None) => {}
        (Some(qe), Some(re)) => {
            ensure(re.version() == 0, || "OPT version not 0".into())?;
            ensure(re.max_payload() == OUR_UDP, || {
                format!("OPT size {}", re.max_payload())
            })?;
            ensure(re.flags().dnssec_ok == qe.flags().dnssec_ok, || {
                "DO not copied".into()
            })?;
            let want: Vec<EdnsOption> = ecs
                .iter()
                .map(|s| EdnsOption::Subnet(ClientSubnet::new(s.addr(), s.source_prefix(), scope)))
                .collect();
            let got: Vec<EdnsOption> = re
                .options()
                .as_ref()
                .iter()
                .map(|(_, o)| o.clone())
                .collect();
            ensure(got == want, || {
                format!("OPT options {got:?}, want {want:?}")
            })?;
        }
        (q, r) => return Err(format!("OPT: query {q:?}, reply {r:?}")),
    }
    let opt_len = match (&qm.edns, ecs) {
        (None, _) => 0,
        (Some(_), None) => 11,
        (Some(_), Some(s)) => 11 + 4 + 4 + usize::from(s.source_prefix()).div_ceil(8),
    };

    let query_name = qm.queries.first().map(|q| name_labels(q.name()));
    let label = format!("{rcode:?}");
    match body {
        Body::Nothing | Body::Apex { .. } | Body::Negative { .. } => {
            // TC only where even the echoed questions did not fit (then they are left out).
            ensure(!md.truncation || r.queries.is_empty(), || {
                "TC set on a small reply".into()
            })?;
        }
        Body::Addresses { .. } => {}
    }
    match body {
        Body::Nothing => {
            ensure(r.answers.is_empty() && r.authorities.is_empty(), || {
                "records in an error reply".into()
            })?;
            Ok(label)
        }
        Body::Addresses { ttl, ips } => {
            let rdlen = if ips.first().is_some_and(IpAddr::is_ipv4) {
                4
            } else {
                16
            };
            let qname = query_name.unwrap_or_default();
            let size = HEADER + wire_len(&qname) + 4 + ips.len() * (12 + rdlen) + opt_len;
            if size > client_size {
                ensure(md.truncation, || {
                    format!("{size} bytes do not fit {client_size}, but TC is not set")
                })?;
                ensure(r.answers.is_empty() && r.authorities.is_empty(), || {
                    "records in a truncated reply".into()
                })?;
                return Ok(format!("{label} (TC)"));
            }
            ensure(!md.truncation, || {
                format!("TC set though {size} bytes fit {client_size}")
            })?;
            ensure(bytes.len() == size, || {
                format!("reply of {} bytes, want {size}", bytes.len())
            })?;
            let got: Vec<(Labels, u32, DNSClass, Option<IpAddr>)> = r
                .answers
                .iter()
                .map(|a| {
                    let ip = match &a.data {
                        RData::A(x) => Some(IpAddr::V4(x.0)),
                        RData::AAAA(x) => Some(IpAddr::V6(x.0)),
                        _ => None,
                    };
                    (name_labels(&a.name), a.ttl, a.dns_class, ip)
                })
                .collect();
            let want: Vec<(Labels, u32, DNSClass, Option<IpAddr>)> = ips
                .iter()
                .map(|ip| (qname.clone(), ttl, DNSClass::IN, Some(*ip)))
                .collect();
            ensure(got == want, || {
                format!("answers {got:?}, want {want:?} (rotation {rotation})")
            })?;
            ensure(r.authorities.is_empty(), || {
                "authority records in an answer".into()
            })?;
            Ok(label)
        }
        Body::Apex { ttl, data } => {
            let qname = query_name.unwrap_or_default();
            let got: Vec<(Labels, u32, &RData)> = r
                .answers
                .iter()
                .map(|a| (name_labels(&a.name), a.ttl, &a.data))
                .collect();
            let want: Vec<(Labels, u32, &RData)> =
                data.iter().map(|d| (qname.clone(), ttl, d)).collect();
            ensure(got == want, || format!("answers {got:?}, want {want:?}"))?;
            ensure(r.authorities.is_empty(), || {
                "authority records in an answer".into()
            })?;
            Ok(format!("{label} (apex)"))
        }
        Body::Negative { zone } => {
            ensure(r.answers.is_empty(), || {
                "answers in a negative reply".into()
            })?;
            let want = soa_rdata(&zone);
            let ok = matches!(r.authorities.as_slice(), [soa]
                if soa.ttl == NEGATIVE_TTL
                    && lower(&name_labels(&soa.name)) == zone
                    && soa.data == want);
            ensure(ok, || {
                format!(
                    "authority {:?}, want the SOA of {:?} at TTL {NEGATIVE_TTL}",
                    r.authorities,
                    fqdn(&zone)
                )
            })?;
            Ok(if rcode == ResponseCode::NoError {
                format!("{label} (NODATA)")
            } else {
                label
            })
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn show(o: &Outcome) -> String {
    match o {
        Outcome::Reply(b, k) => format!("{k:?} reply {}", hex(b)),
        Outcome::Drop(d) => format!("no reply ({d:?})"),
    }
}

// ---------------------------------------------------------------------------------------------------
// The XDP side.

/// The program's per-CPU rotation counters, found through the program's map IDs.
fn rotation_map(dp: &mut Dataplane) -> PerCpuArray<MapData, u64> {
    let info = dp.program_mut().unwrap().info().unwrap();
    let ids = info
        .map_ids()
        .unwrap()
        .expect("the kernel reports the program's maps");
    for id in ids {
        let mi = MapInfo::from_id(id).unwrap();
        if mi.name_as_str() == Some(ROTATION_MAP) {
            let data = MapData::from_id(id).unwrap();
            return PerCpuArray::try_from(Map::PerCpuArray(data)).unwrap();
        }
    }
    panic!("no {ROTATION_MAP} map among the program's maps");
}

/// Runs one frame; returns the action, the output frame, and the one outcome counter that moved.
fn run(dp: &mut Dataplane, before: &mut Counters, input: &[u8]) -> (u32, Vec<u8>, Counter) {
    let mut out = vec![0u8; 4096];
    let res = dp
        .program_mut()
        .unwrap()
        .test_run(TestRunOptions {
            data_in: Some(input),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(res.data_size_out as usize);
    let after = dp.counters().unwrap();
    let moved: Vec<(Counter, u64)> = Counter::ALL
        .iter()
        .filter(|c| !c.is_event())
        .map(|&c| (c, after.get(c) - before.get(c)))
        .filter(|(_, d)| *d != 0)
        .collect();
    *before = after;
    let [(c, 1)] = moved.as_slice() else {
        panic!("exactly one outcome counter per packet, got {moved:?}");
    };
    (res.return_value, out, *c)
}

/// Outcomes after which the program has advanced the entry's rotation counter (it does so as soon as the
/// name matched, before building the reply; `opengslb-ebpf/src/dns.rs`).
fn advances_rotation(c: Counter) -> bool {
    matches!(
        c,
        Counter::AnsweredA
            | Counter::AnsweredAaaa
            | Counter::Policy
            | Counter::NoRecords
            | Counter::TooBig
    )
}

/// The entry the gate (shared code) finds for a message, as the program runs it: the lowercased name and
/// the type. The program hands the gate at most the first 512 bytes of the message.
fn gate_key(q: &[u8]) -> Option<(Labels, u16)> {
    let q = &q[..q.len().min(QBUF)];
    let mut s = Box::new(Scratch::new());
    s.msg[..q.len()].copy_from_slice(q);
    let p = parse_query(&mut s, q.len()).ok()?;
    Some((wire_labels(&s.name[..p.name_len]), p.qtype))
}

/// The entry whose rotation userspace would use for a message, by hickory's reading of it.
fn oracle_key(q: &[u8]) -> Option<(Labels, u16)> {
    let m = Message::from_vec(q).ok()?;
    let [query] = m.queries.as_slice() else {
        return None;
    };
    let qtype = match u16::from(query.query_type()) {
        TYPE_ANY => QTYPE_A,
        t => t,
    };
    Some((lower(&name_labels(query.name())), qtype))
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| {
            let v = v.trim();
            match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok()?.to_string().parse().ok(),
                None => v.parse().ok(),
            }
        })
        .unwrap_or(default)
}

#[derive(Default)]
struct Failures {
    by_kind: BTreeMap<&'static str, usize>,
    shown: Vec<String>,
}

impl Failures {
    fn add(&mut self, kind: &'static str, detail: String) {
        let n = self.by_kind.entry(kind).or_default();
        *n += 1;
        // The first few of each kind, and at most SHOW in all.
        if *n <= 3 && self.shown.len() < SHOW {
            self.shown.push(format!("[{kind}] {detail}"));
        }
    }

    fn total(&self) -> usize {
        self.by_kind.values().sum()
    }
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn xdp_and_userspace_agree() {
    common::require_root();
    common::pin_to_cpu0();
    let seed: u64 = env_or("OPENGSLB_DIFF_SEED", DEFAULT_SEED);
    let queries: usize = env_or("OPENGSLB_DIFF_QUERIES", DEFAULT_QUERIES);

    // One table, from one config, for both paths.
    let specs = specs();
    let cfg = Config::from_yaml_str(&yaml(&specs)).expect("the test config is valid");
    // As the overwatch publishes: the table and where clients are (the geolocation trie's contents).
    let published = Control::new(&cfg).publish(std::time::Instant::now());
    let table = published.table;
    let placement = published.placement.expect("the config has geolocation");
    let model = Model::new(&specs);
    assert_eq!(
        table.len(),
        model.entries.len(),
        "the table has every entry"
    );
    let zones = Zone::from_config(&cfg).unwrap();
    // Rendered once, for both paths, as the overwatch's publisher does.
    let rendered = table.render();
    let snap = Snapshot::new(table.clone(), &rendered, zones, SERIAL, OUR_UDP)
        .with_placement(Some(placement.clone()));

    let mut dp = Dataplane::load(None).expect("the program loads and passes the verifier");
    dp.configure(53, OUR_UDP).unwrap();
    dp.set_listen(&[server4(), server6()]).unwrap();
    let plan = dp.apply(&rendered).unwrap();
    assert_eq!(
        dp.set_geo(placement.table().prefixes()).unwrap(),
        MAPPINGS.len()
    );
    assert!(plan.skipped.is_empty(), "skipped: {:?}", plan.skipped);
    assert_eq!(plan.upserts.len(), model.entries.len());

    // Known counter starts: some just below u32::MAX so that they wrap during the run.
    let mut rng = Rng::new(seed);
    let cpus = aya::util::nr_cpus().expect("possible CPUs");
    let mut rotation_kernel = rotation_map(&mut dp);
    let mut slots: HashMap<(Labels, u16), u32> = HashMap::new();
    let mut rotation: HashMap<(Labels, u16), u32> = HashMap::new();
    for (_, (k, v)) in &plan.upserts {
        let key = (wire_labels(&v.name[..usize::from(v.name_len)]), k.qtype);
        assert!(model.entries.contains_key(&key), "{key:?} is in the model");
        let start = if rng.chance(50) {
            u32::MAX - rng.below(40) as u32
        } else {
            rng.next_u64() as u32
        };
        // The low 32 bits are the rotation; the whole counts answers, and goes on past the wrap.
        let mut per_cpu = vec![0u64; cpus];
        per_cpu[0] = u64::from(start);
        rotation_kernel
            .set(v.slot, PerCpuValues::try_from(per_cpu).unwrap(), 0)
            .unwrap();
        slots.insert(key.clone(), v.slot);
        rotation.insert(key, start);
    }

    let wraps = [
        Wrap::new(client4(), server4()),
        Wrap::new(client6(), server6()),
        Wrap {
            vlan: Some(7),
            ..Wrap::new(client4(), server4())
        },
        Wrap {
            vlan: Some(4094),
            ..Wrap::new(client6(), server6())
        },
        // Clients of each geolocation region (client4 is in us, client6 in eu), and of none.
        Wrap::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 200)), server4()),
        Wrap::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)), server4()),
        Wrap::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99)), server4()),
        Wrap::new("2001:db8:ff::1".parse().unwrap(), server6()),
    ];
    // Each client's region by the model, to count answers per region.
    let regions_of: Vec<&str> = wraps
        .iter()
        .map(|w| geo_resolve(w.src).0.unwrap_or(DEFAULT_REGION))
        .collect();
    assert_eq!(
        regions_of.iter().collect::<HashSet<_>>().len(),
        GEO_REGIONS.len(),
        "clients in every region"
    );
    // XDP answers of the weighted and geolocation names, by first label and client region.
    let mut routed: BTreeMap<(String, &str), usize> = BTreeMap::new();

    let mut counters = dp.counters().unwrap();
    let mut failures = Failures::default();
    let mut xdp_answered = 0usize;
    let mut identical = 0usize;
    let mut passes: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut replies: BTreeMap<String, usize> = BTreeMap::new();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut wrapped = 0usize;

    let mut cases = directed();
    let n_directed = cases.len();
    cases.extend((0..queries).map(|_| generate(&mut rng, &specs)));
    let started = std::time::Instant::now();
    for (i, g) in cases.iter().enumerate() {
        let q = &g.wire;
        let wi = rng.below_usize(wraps.len());
        let w = &wraps[wi];
        let input = frame(w, q);
        let (action, out, why) = run(&mut dp, &mut counters, &input);

        // The rotation position: the one XDP used if it advanced the counter, else the one it would use.
        let used = if advances_rotation(why) {
            let key = gate_key(q).expect("the gate accepted what XDP matched");
            let slot = slots[&key];
            let pos = rotation.get_mut(&key).expect("a map entry");
            let used = *pos;
            *pos = pos.wrapping_add(1);
            if *pos == 0 {
                wrapped += 1;
            }
            let kernel = rotation_kernel.get(&slot, 0).unwrap();
            assert_eq!(
                kernel[0] as u32, *pos,
                "#{i}: the kernel's rotation counter for {key:?} (slot {slot}) after {why:?}"
            );
            Some(used)
        } else {
            None
        };
        let r = used.unwrap_or_else(|| {
            oracle_key(q)
                .and_then(|k| rotation.get(&k).copied())
                .unwrap_or(0)
        });
        let ctx = QueryContext {
            transport: Transport::Udp,
            rotation: Some(r),
            client: Some(w.src),
        };
        let user = respond(&snap, q, &ctx);
        let xdp_dns = (action == XDP_TX).then(|| take_apart(w, &out).dns);
        let detail = |e: &str| {
            format!(
                "#{i} {}\n    query ({} bytes) {}\n    XDP   {} ({}) {}\n    user  {}\n    rotation {r}: {e}",
                g.what,
                q.len(),
                hex(q),
                if action == XDP_TX { "TX" } else { "PASS" },
                why.name(),
                xdp_dns.as_deref().map(hex).unwrap_or_default(),
                show(&user)
            )
        };

        match action {
            XDP_TX => {
                xdp_answered += 1;
                let xdp_dns = xdp_dns.as_deref().unwrap_or_default();
                match &user {
                    Outcome::Reply(b, _) if b.as_slice() == xdp_dns => identical += 1,
                    Outcome::Reply(b, _) => failures.add(
                        "XDP and userspace replies differ",
                        detail(&format!("differ from byte {:?}", first_diff(b, xdp_dns))),
                    ),
                    Outcome::Drop(_) => failures.add(
                        "XDP answered what userspace does not answer",
                        detail("no userspace reply"),
                    ),
                }
                if q.len() > QBUF {
                    // The program reads the first 512 bytes only: the rest went unseen.
                    failures.add(
                        "XDP answered a message over 512 bytes",
                        detail(
                            "answered from its first 512 bytes; the userspace fast path refuses it",
                        ),
                    );
                } else if !matches!(user, Outcome::Reply(_, ReplyKind::Fast)) {
                    failures.add(
                        "XDP answered what the userspace fast path does not",
                        detail("the userspace fast path did not take it"),
                    );
                }
            }
            XDP_PASS => {
                *passes.entry(why.name()).or_default() += 1;
                if why.is_answer() {
                    failures.add("XDP_PASS counted as an answer", detail("answer counter"));
                }
                if matches!(user, Outcome::Reply(_, ReplyKind::Fast)) {
                    failures.add(
                        "userspace fast path answered what XDP passed",
                        detail("fast reply"),
                    );
                }
                if out != input {
                    failures.add("a passed frame was modified", detail("frame changed"));
                }
                // The documented pass reason for DNS messages over 512 bytes.
                if q.len() > QBUF && why != Counter::TooLong {
                    failures.add(
                        "message over 512 bytes not counted too_long",
                        detail(&format!("counted {}", why.name())),
                    );
                }
            }
            other => panic!("#{i}: XDP action {other}"),
        }
        if action == XDP_TX
            && let Some((name, _)) = gate_key(q)
            && let Some(e) = model.entries.get(&(name.clone(), QTYPE_A))
            && !matches!(e.choice, Choice::Rotate | Choice::Fixed)
        {
            let first = String::from_utf8_lossy(&name[0]).into_owned();
            *routed.entry((first, regions_of[wi])).or_default() += 1;
        }
        match check(&model, q, r, w.src, &user) {
            Ok(label) => *replies.entry(label).or_default() += 1,
            Err(e) => failures.add("incorrect userspace reply", detail(&e)),
        }
        let kind = match &user {
            Outcome::Reply(_, k) => format!("{k:?}"),
            Outcome::Drop(d) => format!("Drop({d:?})"),
        };
        *kinds.entry(kind).or_default() += 1;
    }
    let elapsed = started.elapsed();

    // The kernel's counters end where the model says, on CPU 0 only.
    for (key, slot) in &slots {
        let v = rotation_kernel.get(slot, 0).unwrap();
        assert_eq!(v[0] as u32, rotation[key], "rotation counter of {key:?}");
        assert!(
            v.iter().skip(1).all(|&x| x == 0),
            "{key:?}: other CPUs' counters moved: the test did not stay on CPU 0"
        );
    }

    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "differential: {} queries ({n_directed} directed, {queries} generated with seed {seed:#x}) in {:.1?}",
        cases.len(),
        elapsed
    );
    let _ = writeln!(
        summary,
        "  answered by XDP: {xdp_answered}, byte-identical to userspace: {identical}; rotation counters wrapped {wrapped} times"
    );
    let _ = writeln!(
        summary,
        "  passed by XDP: {}",
        passes.values().sum::<usize>()
    );
    for (why, n) in &passes {
        let _ = writeln!(summary, "    {why:<16} {n}");
    }
    let _ = writeln!(
        summary,
        "  XDP answers of weighted and geolocation names, by client region:"
    );
    for ((name, region), n) in &routed {
        let _ = writeln!(summary, "    {name:<34} {region:<4} {n}");
    }
    let _ = writeln!(summary, "  userspace outcomes (checked):");
    for (label, n) in &replies {
        let _ = writeln!(summary, "    {label:<34} {n}");
    }
    let _ = writeln!(summary, "  userspace reply kinds:");
    for (k, n) in &kinds {
        let _ = writeln!(summary, "    {k:<34} {n}");
    }
    println!("{summary}");

    if failures.total() > 0 {
        let mut msg = format!("{} failures:\n", failures.total());
        for (kind, n) in &failures.by_kind {
            let _ = writeln!(msg, "  {n:>5}  {kind}");
        }
        msg.push_str("first ones:\n");
        for s in &failures.shown {
            let _ = writeln!(msg, "{s}");
        }
        panic!("{msg}");
    }
    assert!(
        xdp_answered > cases.len() / 10,
        "too few XDP answers ({xdp_answered}) for a differential test"
    );
    // The routed names were answered by XDP too, for clients of every region (so the comparison above
    // covered them), unless the run is too short to expect it.
    if queries >= DEFAULT_QUERIES {
        for name in ["w531", "geo", "geo2"] {
            for region in GEO_REGIONS {
                let n = routed.get(&(name.to_owned(), region)).copied().unwrap_or(0);
                assert!(
                    n > 10,
                    "{name} answered by XDP {n} times for {region} clients"
                );
            }
        }
    }
}

fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))
}
