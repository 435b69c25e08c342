//! The OpenGSLB XDP program: answers A/AAAA queries for names in the records map with `XDP_TX`, and passes
//! everything else to the userspace server, counting why.
#![no_std]
#![no_main]
#![expect(
    clippy::needless_borrows_for_generic_args,
    reason = "map keys by reference: newer aya-ebpf takes &K, so this compiles on both (STYLE.md)"
)]
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

mod dns;
mod ptr;
mod stats;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, HashMap, LpmTrie, PerCpuArray},
    programs::XdpContext,
};
use opengslb_common::{
    dns::Scratch,
    maps::{ListenKey, MAX_ENTRIES, MAX_GEO, MAX_LISTEN, RecordKey, RecordValue, XdpConfig},
};

/// `BPF_F_NO_PREALLOC`: elements are freed by RCU, so a value being read is never reused for another key
/// while an update replaces it (the aliasing caveat on aya-ebpf's `HashMap::get`).
const BPF_F_NO_PREALLOC: u32 = 1;

#[map]
static RECORDS: HashMap<RecordKey, RecordValue> =
    HashMap::with_max_entries(MAX_ENTRIES, BPF_F_NO_PREALLOC);

#[map]
static LISTEN: HashMap<ListenKey, u8> = HashMap::with_max_entries(MAX_LISTEN, 0);

#[map]
static CONFIG: Array<XdpConfig> = Array::with_max_entries(1, 0);

#[map]
static ROTATION: PerCpuArray<u32> = PerCpuArray::with_max_entries(MAX_ENTRIES, 0);

/// Client prefix (16 bytes, IPv4 mapped as `::ffff:a.b.c.d`) → region id (see `maps::GEO_MAP`).
#[map]
static GEO: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(MAX_GEO, 0);

#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// The entry point.
#[xdp]
pub fn opengslb_xdp(ctx: XdpContext) -> u32 {
    match dns::answer(&ctx) {
        Ok(c) => {
            stats::bump(c);
            xdp_action::XDP_TX
        }
        Err(c) => {
            stats::bump(c);
            xdp_action::XDP_PASS
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
