//! Per-CPU outcome counters: one bump per packet, summed by userspace.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use opengslb_common::counters::{COUNTER_COUNT, Counter};

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

/// Adds one to `c` on this CPU.
#[inline(always)]
pub fn bump(c: Counter) {
    if let Some(p) = COUNTERS.get_ptr_mut(c.index()) {
        // SAFETY: per-CPU slot; XDP programs do not nest on one CPU, so nothing else writes it meanwhile.
        unsafe { *p += 1 };
    }
}
