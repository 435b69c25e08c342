//! Host tests of the frame parse and rewrite: each frame shape with its counter, and property tests over
//! generated and arbitrary frames. Frames are built here byte by byte, and checksums verified with a sum
//! written here, not with [`crate::csum`].

#![expect(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

use std::{vec, vec::Vec};

use proptest::prelude::*;

use super::*;

const PORT: u16 = 53;
const CLIENT_PORT: u16 = 40_000;
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const SERVER4: [u8; 4] = [192, 0, 2, 53];
const CLIENT4: [u8; 4] = [198, 51, 100, 7];
const SERVER6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53];
const CLIENT6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0xc, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];

/// One way to wrap a DNS message.
#[derive(Clone, Debug)]
struct Shape {
    /// TPIDs of the tags before the EtherType, outermost first.
    tags: Vec<u16>,
    v6: bool,
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    /// IPv4: 4 bytes of options (IHL 6).
    ip_options: bool,
    /// IPv4: the flags and fragment offset word.
    frag: u16,
    /// The IP protocol or IPv6 next header.
    proto: u8,
    /// Bytes after the datagram (Ethernet padding).
    padding: usize,
}

impl Shape {
    fn v4() -> Self {
        let mut src = [0; 16];
        let mut dst = [0; 16];
        src[..4].copy_from_slice(&CLIENT4);
        dst[..4].copy_from_slice(&SERVER4);
        Self {
            tags: vec![],
            v6: false,
            src,
            dst,
            sport: CLIENT_PORT,
            dport: PORT,
            ip_options: false,
            frag: 0x4000,
            proto: IPPROTO_UDP,
            padding: 0,
        }
    }

    fn v6() -> Self {
        Self {
            v6: true,
            src: CLIENT6,
            dst: SERVER6,
            ..Self::v4()
        }
    }

    fn tagged(self, tags: &[u16]) -> Self {
        Self {
            tags: tags.to_vec(),
            ..self
        }
    }

    fn l3(&self) -> usize {
        14 + 4 * self.tags.len()
    }

    fn build(&self, dns: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&SERVER_MAC);
        f.extend_from_slice(&CLIENT_MAC);
        for (i, tpid) in self.tags.iter().enumerate() {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&(100 + i as u16).to_be_bytes());
        }
        let mut udp = Vec::new();
        udp.extend_from_slice(&self.sport.to_be_bytes());
        udp.extend_from_slice(&self.dport.to_be_bytes());
        udp.extend_from_slice(&((8 + dns.len()) as u16).to_be_bytes());
        udp.extend_from_slice(&[0xab, 0xcd]);
        udp.extend_from_slice(dns);
        if self.v6 {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            f.extend_from_slice(&[0x60, 0x0a, 0xbc, 0xde]);
            f.extend_from_slice(&(udp.len() as u16).to_be_bytes());
            f.extend_from_slice(&[self.proto, 3]);
            f.extend_from_slice(&self.src);
            f.extend_from_slice(&self.dst);
        } else {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let opts = if self.ip_options { 4 } else { 0 };
            let total = (20 + opts + udp.len()) as u16;
            let mut ip = vec![0x45 + opts as u8 / 4, 0x10];
            ip.extend_from_slice(&total.to_be_bytes());
            ip.extend_from_slice(&[0x12, 0x34]);
            ip.extend_from_slice(&self.frag.to_be_bytes());
            ip.extend_from_slice(&[7, self.proto, 0, 0]);
            ip.extend_from_slice(&self.src[..4]);
            ip.extend_from_slice(&self.dst[..4]);
            if self.ip_options {
                ip.extend_from_slice(&[1, 1, 1, 0]);
            }
            let c = !fold(sum(0, &ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
        }
        f.extend_from_slice(&udp);
        f.extend(core::iter::repeat_n(0, self.padding));
        f
    }
}

/// RFC 1071 sum of big-endian words, an odd last byte padded with zero.
fn sum(mut s: u64, bytes: &[u8]) -> u64 {
    for c in bytes.chunks(2) {
        s += u64::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]));
    }
    s
}

/// Folded to 16 bits, not complemented: a header whose checksum is right folds to 0xffff.
fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn headers(frame: &[u8]) -> [u8; MAX_HEADERS] {
    let mut h = [0u8; MAX_HEADERS];
    let n = frame.len().min(MAX_HEADERS);
    h[..n].copy_from_slice(&frame[..n]);
    h
}

/// Parses as the program does, listening on the server addresses.
fn parse_frame(frame: &[u8], port: u16) -> Result<Frame, Counter> {
    parse(&headers(frame), frame.len(), port, |d| {
        d.key() == ListenKey::v4(SERVER4) || d.key() == ListenKey::v6(SERVER6)
    })
}

const DNS: &[u8] = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03app\x00\x00\x01\x00\x01";

#[test]
fn accepts_ipv4_ipv6_and_one_8021q_tag() {
    for (shape, l3, dns) in [
        (Shape::v4(), 14, 42),
        (Shape::v6(), 14, 62),
        (Shape::v4().tagged(&[ETH_P_8021Q]), 18, 46),
        (Shape::v6().tagged(&[ETH_P_8021Q]), 18, 66),
    ] {
        let f = parse_frame(&shape.build(DNS), PORT).unwrap();
        let want = Frame {
            l3,
            v6: shape.v6,
            dns,
            dns_len: DNS.len(),
        };
        assert_eq!(f, want, "{shape:?}");
    }
}

#[test]
fn passes_other_vlan_stacks() {
    for tags in [
        &[ETH_P_8021AD][..],
        &[ETH_P_8021AD, ETH_P_8021Q],
        &[ETH_P_8021Q, ETH_P_8021Q],
        &[ETH_P_8021Q, ETH_P_8021AD],
    ] {
        for shape in [Shape::v4(), Shape::v6()] {
            let frame = shape.tagged(tags).build(DNS);
            assert_eq!(parse_frame(&frame, PORT), Err(Counter::Vlan), "{tags:x?}");
        }
    }
}

#[test]
fn passes_each_ip_feature_with_its_counter() {
    let cases = [
        (
            Shape {
                ip_options: true,
                ..Shape::v4()
            },
            Counter::Ipv4Options,
        ),
        (
            Shape {
                frag: 0x2000, // MF
                ..Shape::v4()
            },
            Counter::Fragment,
        ),
        (
            Shape {
                frag: 0x0001, // a later fragment
                ..Shape::v4()
            },
            Counter::Fragment,
        ),
        (
            Shape {
                proto: IPPROTO_TCP,
                ..Shape::v4()
            },
            Counter::NotUdp,
        ),
        (
            Shape {
                proto: 1, // ICMP
                ..Shape::v4()
            },
            Counter::NotUdp,
        ),
        (
            Shape {
                proto: IPPROTO_TCP,
                ..Shape::v6()
            },
            Counter::NotUdp,
        ),
        (
            Shape {
                proto: IPPROTO_ICMPV6,
                ..Shape::v6()
            },
            Counter::NotUdp,
        ),
        (
            Shape {
                proto: 0, // hop-by-hop options
                ..Shape::v6()
            },
            Counter::Ipv6Ext,
        ),
        (
            Shape {
                proto: 44, // fragment header
                ..Shape::v6()
            },
            Counter::Ipv6Ext,
        ),
    ];
    for (shape, why) in cases {
        assert_eq!(parse_frame(&shape.build(DNS), PORT), Err(why), "{shape:?}");
    }
    // DF alone is not a fragment.
    let df = Shape {
        frag: 0x4000,
        ..Shape::v4()
    };
    assert!(parse_frame(&df.build(DNS), PORT).is_ok());
}

#[test]
fn passes_other_ports_and_addresses() {
    for shape in [Shape::v4(), Shape::v6()] {
        let other_port = Shape {
            dport: 5353,
            ..shape.clone()
        };
        assert_eq!(
            parse_frame(&other_port.build(DNS), PORT),
            Err(Counter::WrongPort)
        );
        // Port 0 is "not configured": nothing is ours, not even a datagram to port 0.
        let zero = Shape {
            dport: 0,
            ..shape.clone()
        };
        assert_eq!(parse_frame(&zero.build(DNS), 0), Err(Counter::WrongPort));
        let other_addr = Shape {
            dst: shape.src,
            ..shape.clone()
        };
        assert_eq!(
            parse_frame(&other_addr.build(DNS), PORT),
            Err(Counter::WrongAddr)
        );
    }
}

#[test]
fn asks_about_the_address_only_for_the_dns_port() {
    let frame = Shape {
        dport: 80,
        ..Shape::v4()
    }
    .build(DNS);
    let r = parse(&headers(&frame), frame.len(), PORT, |_| {
        panic!("asked about the address of a datagram to another port")
    });
    assert_eq!(r, Err(Counter::WrongPort));
}

#[test]
fn passes_what_is_not_ip() {
    let mut arp = Shape::v4().build(DNS);
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    assert_eq!(parse_frame(&arp, PORT), Err(Counter::NotIp));
    // The EtherType and the version field disagree.
    let mut v6_in_v4 = Shape::v4().build(DNS);
    v6_in_v4[14] = 0x65;
    assert_eq!(parse_frame(&v6_in_v4, PORT), Err(Counter::Malformed));
    let mut v4_in_v6 = Shape::v6().build(DNS);
    v4_in_v6[14] = 0x45;
    assert_eq!(parse_frame(&v4_in_v6, PORT), Err(Counter::Malformed));
}

#[test]
fn every_cut_short_frame_is_malformed() {
    for shape in [
        Shape::v4(),
        Shape::v6(),
        Shape::v4().tagged(&[ETH_P_8021Q]),
        Shape::v6().tagged(&[ETH_P_8021Q]),
    ] {
        let frame = shape.build(DNS);
        for len in 0..frame.len() {
            let cut = &frame[..len];
            assert_eq!(
                parse_frame(cut, PORT),
                Err(Counter::Malformed),
                "{shape:?} cut to {len}"
            );
        }
    }
}

#[test]
fn lengths_must_agree() {
    for shape in [Shape::v4(), Shape::v6()] {
        let frame = shape.build(DNS);
        let l4 = l4_offset(shape.l3(), shape.v6);
        for udp_len in [0u16, 7, DNS.len() as u16 + 7, DNS.len() as u16 + 9] {
            let mut f = frame.clone();
            f[l4 + UDP_LEN..l4 + UDP_LEN + 2].copy_from_slice(&udp_len.to_be_bytes());
            assert_eq!(parse_frame(&f, PORT), Err(Counter::Malformed), "{udp_len}");
        }
    }
    // Ethernet padding after the datagram is not part of the message.
    for shape in [Shape::v4(), Shape::v6()] {
        let padded = Shape {
            padding: 17,
            ..shape
        };
        let f = parse_frame(&padded.build(DNS), PORT).unwrap();
        assert_eq!(f.dns_len, DNS.len());
    }
    // A UDP datagram with no payload at all is accepted here; the DNS gate counts it truncated.
    assert_eq!(
        parse_frame(&Shape::v4().build(&[]), PORT).unwrap().dns_len,
        0
    );
}

#[test]
fn client_key_maps_ipv4() {
    let f4 = Shape::v4().tagged(&[ETH_P_8021Q]).build(DNS);
    assert_eq!(
        client_key(&headers(&f4), 18, false),
        Some(crate::maps::geo_key_v4(CLIENT4))
    );
    let f6 = Shape::v6().build(DNS);
    assert_eq!(client_key(&headers(&f6), 14, true), Some(CLIENT6));
}

/// Checks that `out` (headers rewritten by [`turn_around`], then `payload`) is the reply to the query
/// frame `query`, every header field compared with the query's.
fn check_reply(query: &[u8], shape: &Shape, out: &[u8; MAX_HEADERS], payload: &[u8]) {
    let f = parse_frame(query, PORT).unwrap();
    let mut reply = out[..f.dns].to_vec();
    reply.extend_from_slice(payload);
    assert_eq!(&reply[0..6], &query[6..12], "dst MAC is the client's");
    assert_eq!(&reply[6..12], &query[0..6], "src MAC is ours");
    assert_eq!(&reply[12..f.l3], &query[12..f.l3], "the tag is kept");
    let l3 = f.l3;
    let l4 = l4_offset(l3, shape.v6);
    let udp = &reply[l4..];
    assert_eq!(&udp[0..2], &query[l4 + 2..l4 + 4], "ports swapped");
    assert_eq!(&udp[2..4], &query[l4..l4 + 2], "ports swapped");
    assert_eq!(
        usize::from(u16::from_be_bytes([udp[4], udp[5]])),
        udp.len(),
        "UDP length"
    );
    if shape.v6 {
        let ip = &reply[l3..l3 + 40];
        assert_eq!(&ip[..4], &query[l3..l3 + 4], "version, class and flow kept");
        assert_eq!(usize::from(u16::from_be_bytes([ip[4], ip[5]])), udp.len());
        assert_eq!(ip[6], IPPROTO_UDP);
        assert_eq!(ip[7], REPLY_HOP_LIMIT);
        assert_eq!(&ip[8..24], &query[l3 + 24..l3 + 40], "src is the server");
        assert_eq!(&ip[24..40], &query[l3 + 8..l3 + 24], "dst is the client");
        let mut s = sum(0, &ip[8..40]);
        s += udp.len() as u64 + u64::from(IPPROTO_UDP);
        s = sum(s, udp);
        assert_eq!(fold(s), 0xffff, "the UDP checksum verifies");
        assert_ne!(&udp[6..8], &[0, 0], "IPv6 needs a UDP checksum");
    } else {
        let ip = &reply[l3..l3 + 20];
        assert_eq!(&ip[..2], &query[l3..l3 + 2]);
        assert_eq!(
            usize::from(u16::from_be_bytes([ip[2], ip[3]])),
            20 + udp.len()
        );
        assert_eq!(&ip[4..8], &query[l3 + 4..l3 + 8], "ID and flags kept");
        assert_eq!(ip[8], REPLY_HOP_LIMIT);
        assert_eq!(ip[9], IPPROTO_UDP);
        assert_eq!(fold(sum(0, ip)), 0xffff, "the header checksum verifies");
        assert_eq!(&ip[12..16], &query[l3 + 16..l3 + 20], "src is the server");
        assert_eq!(&ip[16..20], &query[l3 + 12..l3 + 16], "dst is the client");
        assert_eq!(&udp[6..8], &[0, 0], "no UDP checksum over IPv4");
    }
}

fn answer(query: &[u8], payload: &[u8]) -> [u8; MAX_HEADERS] {
    let f = parse_frame(query, PORT).unwrap();
    let mut hdr = headers(query);
    let mut buf = [0u8; 600];
    buf[..payload.len()].copy_from_slice(payload);
    let payload_sum = crate::csum::add_bytes(0, &buf, payload.len());
    turn_around(&mut hdr, &f, payload.len(), payload_sum).unwrap();
    hdr
}

#[test]
fn turns_each_shape_around() {
    let payload: Vec<u8> = (0..77u8).collect();
    for shape in [
        Shape::v4(),
        Shape::v6(),
        Shape::v4().tagged(&[ETH_P_8021Q]),
        Shape::v6().tagged(&[ETH_P_8021Q]),
    ] {
        let query = shape.build(DNS);
        check_reply(&query, &shape, &answer(&query, &payload), &payload);
    }
}

#[test]
fn an_ipv6_checksum_of_zero_is_sent_as_ffff() {
    // Find a payload whose checksum computes to 0 by adjusting its last word: a sum of 0xffff folds to
    // a complement of 0.
    let shape = Shape::v6();
    let query = shape.build(DNS);
    let mut payload = vec![0u8; 20];
    let probe = answer(&query, &payload);
    let l4 = l4_offset(14, true);
    let check = u16::from_be_bytes([probe[l4 + 6], probe[l4 + 7]]);
    // With the last word 0 the checksum is `check`; adding `check` to the sum makes it 0xffff.
    payload[18..20].copy_from_slice(&check.to_be_bytes());
    let out = answer(&query, &payload);
    assert_eq!(&out[l4 + 6..l4 + 8], &[0xff, 0xff]);
    check_reply(&query, &shape, &out, &payload);
}

#[test]
fn turn_around_refuses_a_frame_that_does_not_fit() {
    let mut hdr = [0u8; MAX_HEADERS];
    let f = Frame {
        l3: MAX_L3 + 1,
        v6: true,
        dns: 0,
        dns_len: 0,
    };
    assert_eq!(turn_around(&mut hdr, &f, 0, 0), Err(Counter::Malformed));
    assert_eq!(hdr, [0u8; MAX_HEADERS], "left untouched");
}

fn arb_shape() -> impl Strategy<Value = Shape> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<[u8; 16]>(),
        any::<u16>(),
        0usize..40,
    )
        .prop_map(|(v6, vlan, src, sport, padding)| {
            let base = if v6 { Shape::v6() } else { Shape::v4() };
            let mut s = Shape {
                sport,
                padding,
                ..base
            };
            // Any client; the server keeps its listen address (its first 4 bytes for IPv4).
            s.src = src;
            if vlan {
                s.tags = vec![ETH_P_8021Q];
            }
            s
        })
}

proptest! {
    #[test]
    fn valid_frames_parse_and_turn_around(
        shape in arb_shape(),
        payload in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let query = shape.build(&payload);
        let f = parse_frame(&query, PORT).unwrap();
        let l3 = shape.l3();
        prop_assert_eq!(f, Frame {
            l3,
            v6: shape.v6,
            dns: l3 + if shape.v6 { 48 } else { 28 },
            dns_len: payload.len(),
        });
        prop_assert_eq!(&query[f.dns..f.dns + f.dns_len], &payload[..]);
        check_reply(&query, &shape, &answer(&query, &payload), &payload);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..120),
        extra in 0usize..2000,
        port in any::<u16>(),
        listening in any::<bool>(),
    ) {
        let frame_len = bytes.len() + extra;
        if let Ok(f) = parse(&headers(&bytes), frame_len, port, |_| listening) {
            prop_assert!(f.dns + f.dns_len <= frame_len);
            prop_assert!(f.dns <= MAX_HEADERS);
            let mut hdr = headers(&bytes);
            prop_assert!(turn_around(&mut hdr, &f, f.dns_len, 0).is_ok());
        }
    }

    #[test]
    fn mutated_frames_never_panic_and_stay_within_the_frame(
        shape in arb_shape(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        flips in proptest::collection::vec((0usize..MAX_HEADERS, any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut frame = shape.build(&payload);
        for (at, v) in flips {
            if let Some(b) = frame.get_mut(at) {
                *b = v;
            }
        }
        frame.truncate(cut.index(frame.len() + 1));
        if let Ok(f) = parse_frame(&frame, PORT) {
            prop_assert!(f.l3 == ETH_HLEN || f.l3 == MAX_L3);
            prop_assert!(f.dns + f.dns_len <= frame.len());
            let mut hdr = headers(&frame);
            prop_assert!(turn_around(&mut hdr, &f, f.dns_len, 0).is_ok());
        }
    }

    #[test]
    fn turn_around_never_panics(
        l3 in 0usize..100,
        v6 in any::<bool>(),
        dns_len in any::<u16>(),
        payload_sum in any::<u64>(),
        mut hdr in any::<[u8; MAX_HEADERS]>(),
    ) {
        let f = Frame { l3, v6, dns: 0, dns_len: 0 };
        // The shapes `parse` accepts (which all fit), and no other.
        let accepted = l3 == ETH_HLEN || l3 == MAX_L3;
        prop_assert_eq!(turn_around(&mut hdr, &f, usize::from(dns_len), payload_sum).is_ok(), accepted);
    }
}
