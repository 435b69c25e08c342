//! The eBPF maps' names and their key and value layouts, shared byte for byte by the XDP program and the
//! loader. Every type is `#[repr(C)]` with explicit padding and no `bool`, `Option` or enum fields, so the
//! layout is the same on both sides; a const assertion pins each size.

use core::mem::size_of;

use crate::ratelimit::{MAX_RATE_ENTRIES, RateLimit, RateState};

/// Records: [`RecordKey`] → [`RecordValue`].
pub const RECORDS_MAP: &str = "RECORDS";
/// Addresses the XDP program answers on: [`ListenKey`] → `u8` (1).
pub const LISTEN_MAP: &str = "LISTEN";
/// One-entry array of [`XdpConfig`].
pub const CONFIG_MAP: &str = "CONFIG";
/// Per-CPU `u64` counters indexed by [`crate::counters::Counter`].
pub const COUNTERS_MAP: &str = "COUNTERS";
/// Per-CPU `u64` counts of the XDP answers of each entry, indexed by [`RecordValue::slot`]: the low 32
/// bits are the entry's round-robin position on that CPU, and their sum over CPUs is how many queries
/// the program answered for it.
pub const ROTATION_MAP: &str = "ROTATION";
/// Per-CPU `dns::Scratch` buffers (the 512-byte stack is too small for them).
pub const SCRATCH_MAP: &str = "SCRATCH";
/// Client prefixes → region id (`u8`, 1..=255; 0: no region), an LPM trie keyed by [`GeoKey`]-style
/// 16-byte addresses: IPv6 as is, IPv4 mapped as `::ffff:a.b.c.d` with the prefix length + 96, so one
/// trie serves both families.
pub const GEO_MAP: &str = "GEO";
/// Client prefixes → their response rate bucket ([`RateState`]), an LRU hash keyed by the 16-byte
/// prefix ([`RateLimit::key`]).
pub const RATE_MAP: &str = "RATE";
/// The XDP program's function name in the object.
pub const PROGRAM_NAME: &str = "opengslb_xdp";
/// The floor program's function name: the least an XDP DNS responder does, which the bench measures ours
/// against (never attached by the overwatch).
pub const FLOOR_PROGRAM_NAME: &str = "opengslb_floor";

/// The largest question name in wire format, plus one byte so word-wise comparison stays in bounds.
pub const MAX_NAME: usize = 256;
/// The most records of one type one name holds in the map.
pub const MAX_RECORDS: usize = 16;
/// The length of a `weighted` entry's slot table ([`RecordValue::slots`]).
pub const MAX_SLOTS: usize = 64;
/// Capacity of the records map (names × types).
pub const MAX_ENTRIES: u32 = 262_144;
/// Capacity of the geolocation trie (the control plane fills at most [`MAX_GEO_ENTRIES`]).
pub const MAX_GEO: u32 = 1 << 20;
/// How many prefixes the control plane puts in the geolocation trie at most.
pub const MAX_GEO_ENTRIES: usize = 1_000_000;
/// Capacity of the listen-address map.
pub const MAX_LISTEN: u32 = 256;

/// DNS type A (RFC 1035 §3.2.2).
pub const QTYPE_A: u16 = 1;
/// DNS type AAAA (RFC 3596 §2.1).
pub const QTYPE_AAAA: u16 = 28;

/// Routing policies as stored in [`RecordValue::policy`].
pub mod policy {
    /// Rotate through the record set, `max_answers` at a time.
    pub const ROUND_ROBIN: u8 = 0;
    /// Records `0..max_answers` in map order, no rotation: `failover` and `latency`, whose order the
    /// overwatch computes (and republishes when it changes).
    pub const FIXED_ORDER: u8 = 1;
    /// The first record is `slots[rotation % slot_count]`, record `k` is `(first + k) % count`.
    pub const WEIGHTED: u8 = 2;
    /// Geolocation by the packet's source address: its region from the geolocation trie (else
    /// [`RecordValue::default_region`](super::RecordValue::default_region)), then round-robin among the
    /// records of that region ([`RecordValue::regions`](super::RecordValue::regions)), else among those of
    /// the default region, else among all.
    pub const GEO: u8 = 3;
    /// Any policy the XDP program does not implement: the query goes to userspace.
    pub const USERSPACE: u8 = 255;
}

/// The records map key: the type and the 64-bit hash (`dns::name_hash`) of the lowercased wire-format name.
///
/// Kept at 16 bytes because the kernel hashes the whole key on every lookup; the full name lives in the
/// value and is compared before answering.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RecordKey {
    /// [`QTYPE_A`] or [`QTYPE_AAAA`].
    pub qtype: u16,
    /// Zero (two fields rather than a byte array: zeroing one cost a call to `memset` per packet in
    /// the XDP program).
    pub _pad2: u16,
    /// Zero.
    pub _pad4: u32,
    /// The hash (`dns::name_hash`) of the lowercased wire-format name.
    pub hash: u64,
}

impl RecordKey {
    /// The key for a type and a name hash.
    pub const fn new(qtype: u16, hash: u64) -> Self {
        Self {
            qtype,
            _pad2: 0,
            _pad4: 0,
            hash,
        }
    }
}

/// The records map value: everything needed to answer one name and type.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordValue {
    /// TTL of the answer records, seconds.
    pub ttl: u32,
    /// Index into the rotation map for this entry.
    pub slot: u32,
    /// Length of `name` in wire format, including the root label.
    pub name_len: u16,
    /// A [`policy`] constant.
    pub policy: u8,
    /// How many of `rdata` are records.
    pub count: u8,
    /// How many records one answer carries (at most `count`).
    pub max_answers: u8,
    /// How many of `slots` are in use ([`policy::WEIGHTED`] only; 1..=[`MAX_SLOTS`]).
    pub slot_count: u8,
    /// [`policy::GEO`]: the region id of clients the trie does not place (0: none).
    pub default_region: u8,
    /// Zero.
    pub _pad: [u8; 9],
    /// The lowercased wire-format name, zero-padded.
    pub name: [u8; MAX_NAME],
    /// Record data: 4 bytes (A) or 16 bytes (AAAA) at the start of each slot.
    pub rdata: [[u8; 16]; MAX_RECORDS],
    /// [`policy::WEIGHTED`]: the weight slot table, indices into `rdata`, each record appearing in
    /// proportion to its weight (the userspace `routing::weight_slots`).
    pub slots: [u8; MAX_SLOTS],
    /// [`policy::GEO`]: the region id of each record (0: none).
    pub regions: [u8; MAX_RECORDS],
}

impl Default for RecordValue {
    fn default() -> Self {
        Self {
            ttl: 0,
            slot: 0,
            name_len: 0,
            policy: policy::ROUND_ROBIN,
            count: 0,
            max_answers: 1,
            slot_count: 0,
            default_region: 0,
            _pad: [0; 9],
            name: [0; MAX_NAME],
            rdata: [[0; 16]; MAX_RECORDS],
            slots: [0; MAX_SLOTS],
            regions: [0; MAX_RECORDS],
        }
    }
}

impl RecordValue {
    /// Appends one record's data (4 bytes for A, 16 for AAAA); false when the entry is full.
    pub fn push(&mut self, rdata: &[u8]) -> bool {
        let Some(slot) = self.rdata.get_mut(usize::from(self.count)) else {
            return false;
        };
        let Some(dst) = slot.get_mut(..rdata.len()) else {
            return false;
        };
        dst.copy_from_slice(rdata);
        self.count += 1;
        true
    }
}

/// An LPM trie key of the geolocation map, as the kernel reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GeoKey {
    /// Prefix length in bits.
    pub prefix_len: u32,
    /// The address (IPv4 as `::ffff:a.b.c.d`).
    pub data: [u8; 16],
}

/// The geolocation trie's key data for an IPv4 address: `::ffff:a.b.c.d` (the prefix length is then
/// the IPv4 one + 96).
pub const fn geo_key_v4(octets: [u8; 4]) -> [u8; 16] {
    let [a, b, c, d] = octets;
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d]
}

/// The listen-address map key. IPv4 addresses sit in the first 4 bytes of `addr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ListenKey {
    /// 4 or 6.
    pub family: u8,
    /// Zero.
    pub _pad: [u8; 3],
    /// Network-order address bytes.
    pub addr: [u8; 16],
}

impl ListenKey {
    /// The key of an IPv4 address.
    pub const fn v4(octets: [u8; 4]) -> Self {
        let mut addr = [0; 16];
        let [a, b, c, d] = octets;
        addr[0] = a;
        addr[1] = b;
        addr[2] = c;
        addr[3] = d;
        Self {
            family: 4,
            _pad: [0; 3],
            addr,
        }
    }

    /// The key of an IPv6 address.
    pub const fn v6(octets: [u8; 16]) -> Self {
        Self {
            family: 6,
            _pad: [0; 3],
            addr: octets,
        }
    }
}

/// How many IPv4 listen addresses the config holds inline.
pub const INLINE_LISTEN4: usize = 4;
/// How many IPv6 listen addresses the config holds inline.
pub const INLINE_LISTEN6: usize = 2;
/// [`XdpConfig::flags`]: the listen map holds addresses the inline ones do not.
pub const LISTEN_MORE: u8 = 1;
/// [`XdpConfig::flags`]: a stale table (see [`XdpConfig::stale`]) answers nothing; every query goes to
/// userspace. Without it a stale table keeps answering, counted.
pub const STALE_PASS: u8 = 2;

/// The XDP program's settings (entry 0 of the config map).
///
/// The first few listen addresses are held here as well as in the listen map, so that the usual case
/// (an address or two per family) is decided by a few compares instead of a hash lookup per packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct XdpConfig {
    /// The DNS port, host order. 0 means "not configured": everything passes.
    pub port: u16,
    /// The UDP payload size we advertise in our OPT record.
    pub udp_size: u16,
    /// How many of `listen4` are in use.
    pub listen4_count: u8,
    /// How many of `listen6` are in use.
    pub listen6_count: u8,
    /// [`LISTEN_MORE`], or 0.
    pub flags: u8,
    /// Zero.
    pub _pad: u8,
    /// IPv4 listen addresses, network order.
    pub listen4: [[u8; 4]; INLINE_LISTEN4],
    /// IPv6 listen addresses.
    pub listen6: [[u8; 16]; INLINE_LISTEN6],
    /// When the overwatch last said it is alive, `CLOCK_MONOTONIC_COARSE` ns (the clock of
    /// `bpf_ktime_get_coarse_ns`).
    pub heartbeat_ns: u64,
    /// The table is stale once the heartbeat is older than this, ns; 0: never.
    pub stale_after_ns: u64,
    /// Response rate limiting per client prefix (off when its interval is 0).
    pub rate: RateLimit,
}

impl XdpConfig {
    /// Adds a listen address inline if there is room; false if not (it is then only in the listen map,
    /// and [`LISTEN_MORE`] is set).
    pub fn add_listen(&mut self, key: &ListenKey) -> bool {
        let added = if key.family == 4 {
            let [a, b, c, d, ..] = key.addr;
            match self.listen4.get_mut(usize::from(self.listen4_count)) {
                Some(slot) => {
                    *slot = [a, b, c, d];
                    self.listen4_count += 1;
                    true
                }
                None => false,
            }
        } else {
            match self.listen6.get_mut(usize::from(self.listen6_count)) {
                Some(slot) => {
                    *slot = key.addr;
                    self.listen6_count += 1;
                    true
                }
                None => false,
            }
        };
        if !added {
            self.flags |= LISTEN_MORE;
        }
        added
    }

    /// Whether the table is stale now: the overwatch has not said it is alive for longer than
    /// [`XdpConfig::stale_after_ns`]. `now_ns` reads the clock (`CLOCK_MONOTONIC_COARSE`), and only
    /// when staleness is on: in the program it is a helper call.
    #[inline(always)]
    pub fn stale(&self, now_ns: impl FnOnce() -> u64) -> bool {
        self.stale_after_ns != 0 && now_ns().saturating_sub(self.heartbeat_ns) > self.stale_after_ns
    }

    /// Whether we listen on the IPv4 address `dst` by the inline addresses: `Some(answer)`, or `None`
    /// when only the listen map can say.
    #[inline(always)]
    pub fn listens4(&self, dst: [u8; 4]) -> Option<bool> {
        let dst = u32::from_ne_bytes(dst);
        let mut found = false;
        for (i, a) in self.listen4.iter().enumerate() {
            found |= i < usize::from(self.listen4_count) && u32::from_ne_bytes(*a) == dst;
        }
        self.decided(found)
    }

    /// [`XdpConfig::listens4`] for IPv6.
    #[inline(always)]
    pub fn listens6(&self, dst: &[u8; 16]) -> Option<bool> {
        let (hi, lo) = halves(dst);
        let mut found = false;
        for (i, a) in self.listen6.iter().enumerate() {
            found |= i < usize::from(self.listen6_count) && halves(a) == (hi, lo);
        }
        self.decided(found)
    }

    #[inline(always)]
    fn decided(&self, found: bool) -> Option<bool> {
        (found || self.flags & LISTEN_MORE == 0).then_some(found)
    }
}

#[inline(always)]
fn halves(a: &[u8; 16]) -> (u64, u64) {
    let [
        a0,
        a1,
        a2,
        a3,
        a4,
        a5,
        a6,
        a7,
        b0,
        b1,
        b2,
        b3,
        b4,
        b5,
        b6,
        b7,
    ] = *a;
    (
        u64::from_ne_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
        u64::from_ne_bytes([b0, b1, b2, b3, b4, b5, b6, b7]),
    )
}

const _: () = assert!(size_of::<RecordKey>() == 16);
const _: () =
    assert!(size_of::<RecordValue>() == 24 + MAX_NAME + 16 * MAX_RECORDS + MAX_SLOTS + MAX_RECORDS);
const _: () = assert!(size_of::<ListenKey>() == 20);
// The kernel's LPM trie key: a u32 prefix length, then the data, no padding.
const _: () = assert!(size_of::<GeoKey>() == 4 + 16);
const _: () = assert!(
    size_of::<XdpConfig>()
        == 8 + 4 * INLINE_LISTEN4 + 16 * INLINE_LISTEN6 + 16 + size_of::<RateLimit>()
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_stale_only_past_stale_after_and_the_clock_is_read_only_when_that_is_set() {
        let mut cfg = XdpConfig {
            heartbeat_ns: 1_000,
            ..XdpConfig::default()
        };
        let reads = core::cell::Cell::new(0);
        let clock = || {
            reads.set(reads.get() + 1);
            u64::MAX
        };
        assert!(!cfg.stale(clock), "0: never stale");
        assert_eq!(reads.get(), 0, "the clock is not read with staleness off");
        cfg.stale_after_ns = 500;
        assert!(!cfg.stale(|| 1_500), "exactly stale_after old");
        assert!(cfg.stale(|| 1_501));
        assert!(!cfg.stale(|| 900), "a heartbeat from the future is fresh");
    }

    #[test]
    fn inline_listen_addresses_decide_until_the_map_holds_more() {
        let mut cfg = XdpConfig::default();
        assert_eq!(cfg.listens4([10, 0, 0, 1]), Some(false), "nothing listens");
        for i in 1..=INLINE_LISTEN4 as u8 {
            assert!(cfg.add_listen(&ListenKey::v4([10, 0, 0, i])));
        }
        assert_eq!(cfg.listens4([10, 0, 0, 4]), Some(true));
        assert_eq!(cfg.listens4([10, 0, 0, 5]), Some(false));
        assert!(
            !cfg.add_listen(&ListenKey::v4([10, 0, 0, 5])),
            "no room left"
        );
        assert_eq!(cfg.listens4([10, 0, 0, 1]), Some(true));
        assert_eq!(cfg.listens4([10, 0, 0, 5]), None, "the map must say");
        assert_eq!(cfg.listens6(&[0; 16]), None, "for either family");

        let mut cfg = XdpConfig::default();
        let v6 = |last| {
            let mut a = [0u8; 16];
            a[0] = 0xfd;
            a[15] = last;
            a
        };
        assert!(cfg.add_listen(&ListenKey::v6(v6(1))));
        assert_eq!(cfg.listens6(&v6(1)), Some(true));
        assert_eq!(cfg.listens6(&v6(2)), Some(false));
        assert_eq!(
            cfg.listens4([0, 0, 0, 0]),
            Some(false),
            "an unused slot is no address"
        );
        assert!(cfg.add_listen(&ListenKey::v6(v6(2))));
        assert!(!cfg.add_listen(&ListenKey::v6(v6(3))));
        assert_eq!(cfg.listens6(&v6(2)), Some(true));
        assert_eq!(cfg.listens6(&v6(3)), None);
    }
}

// SAFETY: all of these are `#[repr(C)]`, made only of integers and integer arrays, with every padding byte
// an explicit field, so any bit pattern is valid and no byte is uninitialised.
#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::RecordKey {}
    unsafe impl aya::Pod for super::RecordValue {}
    unsafe impl aya::Pod for super::ListenKey {}
    unsafe impl aya::Pod for super::XdpConfig {}
    unsafe impl aya::Pod for crate::ratelimit::RateState {}
}

/// A hash of the map layouts, so an upgrade never adopts pinned maps of another layout. It names the
/// bpffs directory the maps and link are pinned in.
pub const LAYOUT_VERSION: u32 = {
    let parts = [
        size_of::<RecordKey>() as u32,
        size_of::<RecordValue>() as u32,
        size_of::<ListenKey>() as u32,
        size_of::<XdpConfig>() as u32,
        // The rotation map's value.
        size_of::<u64>() as u32,
        crate::counters::COUNTER_COUNT,
        MAX_ENTRIES,
        MAX_NAME as u32,
        MAX_RECORDS as u32,
        MAX_SLOTS as u32,
        MAX_GEO,
        size_of::<RateState>() as u32,
        MAX_RATE_ENTRIES,
        // Bump when a field's meaning changes without a size change.
        4,
    ];
    let mut h: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < parts.len() {
        #[expect(clippy::indexing_slicing, reason = "const loop bounded by len")]
        let p = parts[i];
        h ^= p;
        h = h.wrapping_mul(0x0100_0193);
        i += 1;
    }
    h
};
