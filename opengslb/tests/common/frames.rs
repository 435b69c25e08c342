//! Crafting Ethernet/IP/UDP frames around DNS messages, and taking replies apart, for the
//! `BPF_PROG_TEST_RUN` tests.

use std::net::{IpAddr, Ipv4Addr};

/// The client's MAC in test frames.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// The server's MAC in test frames.
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// The client's UDP port.
pub const CLIENT_PORT: u16 = 40_000;

/// The client's IPv4 address in test frames.
pub fn client4() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))
}
/// The server's IPv4 address in test frames.
pub fn server4() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53))
}
/// The client's IPv6 address in test frames.
pub fn client6() -> IpAddr {
    IpAddr::V6("2001:db8:c::7".parse().unwrap())
}
/// The server's IPv6 address in test frames.
pub fn server6() -> IpAddr {
    IpAddr::V6("2001:db8:5::53".parse().unwrap())
}

/// How to wrap a DNS message.
#[derive(Clone, Debug)]
pub struct Wrap {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub dport: u16,
    pub vlan: Option<u16>,
    /// IPv4 only: the flags and fragment offset word.
    pub frag: u16,
    /// IPv4 only: 4 bytes of options (IHL 6).
    pub ip_options: bool,
    /// IPv6 only: a hop-by-hop extension header before UDP.
    pub ext_header: bool,
}

impl Wrap {
    pub fn new(src: IpAddr, dst: IpAddr) -> Self {
        Self {
            src,
            dst,
            dport: 53,
            vlan: None,
            frag: 0x4000,
            ip_options: false,
            ext_header: false,
        }
    }
}

fn sum16(mut sum: u32, bytes: &[u8]) -> u32 {
    for c in bytes.chunks(2) {
        let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum += u32::from(w);
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The whole frame around `dns`.
pub fn frame(w: &Wrap, dns: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&SERVER_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    if let Some(tag) = w.vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&tag.to_be_bytes());
    }
    let udp_len = (8 + dns.len()) as u16;
    let mut udp = Vec::new();
    udp.extend_from_slice(&CLIENT_PORT.to_be_bytes());
    udp.extend_from_slice(&w.dport.to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(dns);
    match (w.src, w.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&[0x08, 0x00]);
            let opt_len = if w.ip_options { 4 } else { 0 };
            let ihl = 5 + opt_len / 4;
            let total = (20 + opt_len + udp.len()) as u16;
            let mut ip = vec![0x40 | ihl as u8, 0];
            ip.extend_from_slice(&total.to_be_bytes());
            ip.extend_from_slice(&[0xab, 0xcd]);
            ip.extend_from_slice(&w.frag.to_be_bytes());
            ip.extend_from_slice(&[64, 17, 0, 0]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            if w.ip_options {
                ip.extend_from_slice(&[1, 1, 1, 0]);
            }
            let c = fold(sum16(0, &ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&[0x86, 0xdd]);
            let ext = if w.ext_header { 8 } else { 0 };
            let mut ip = vec![0x60, 0, 0, 0];
            ip.extend_from_slice(&((udp.len() + ext) as u16).to_be_bytes());
            ip.push(if w.ext_header { 0 } else { 17 });
            ip.push(64);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            f.extend_from_slice(&ip);
            if w.ext_header {
                f.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
            }
        }
        _ => panic!("mixed address families"),
    }
    f.extend_from_slice(&udp);
    f
}

/// A reply frame taken apart, with every header checked against the query it answers.
pub struct Reply {
    pub dns: Vec<u8>,
}

/// Checks the reply frame's L2–L4 headers (swapped MACs, addresses and ports; lengths; checksums) and
/// returns its DNS payload.
pub fn take_apart(w: &Wrap, out: &[u8]) -> Reply {
    assert_eq!(&out[0..6], &CLIENT_MAC, "dst MAC is the client's");
    assert_eq!(&out[6..12], &SERVER_MAC, "src MAC is ours");
    let mut l3 = 14;
    if let Some(tag) = w.vlan {
        assert_eq!(&out[12..14], &[0x81, 0x00]);
        assert_eq!(&out[14..16], &tag.to_be_bytes());
        l3 = 18;
    }
    let (udp_at, pseudo) = match (w.src, w.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let ip = &out[l3..l3 + 20];
            assert_eq!(ip[0], 0x45);
            assert_eq!(
                u16::from_be_bytes([ip[2], ip[3]]) as usize,
                out.len() - l3,
                "IPv4 total length"
            );
            assert_eq!(fold(sum16(0, ip)), 0, "IPv4 header checksum");
            assert_eq!(&ip[12..16], &d.octets(), "src is the server");
            assert_eq!(&ip[16..20], &s.octets(), "dst is the client");
            (l3 + 20, None)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let ip = &out[l3..l3 + 40];
            assert_eq!(ip[0] >> 4, 6);
            assert_eq!(
                u16::from_be_bytes([ip[4], ip[5]]) as usize,
                out.len() - l3 - 40,
                "payload length"
            );
            assert_eq!(&ip[8..24], &d.octets());
            assert_eq!(&ip[24..40], &s.octets());
            let mut p = Vec::new();
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&s.octets());
            (l3 + 40, Some(p))
        }
        _ => unreachable!(),
    };
    let udp = &out[udp_at..];
    assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), w.dport, "src port");
    assert_eq!(
        u16::from_be_bytes([udp[2], udp[3]]),
        CLIENT_PORT,
        "dst port"
    );
    assert_eq!(
        u16::from_be_bytes([udp[4], udp[5]]) as usize,
        udp.len(),
        "UDP length"
    );
    let csum = u16::from_be_bytes([udp[6], udp[7]]);
    match pseudo {
        None => assert_eq!(csum, 0, "IPv4 UDP checksum is left at 0"),
        Some(p) => {
            assert_ne!(csum, 0, "IPv6 UDP checksum is mandatory");
            let mut sum = sum16(0, &p);
            sum += udp.len() as u32 + 17;
            sum = sum16(sum, udp);
            assert_eq!(fold(sum), 0, "IPv6 UDP checksum verifies");
        }
    }
    Reply {
        dns: udp[8..].to_vec(),
    }
}
