//! Which records an answer carries: the rotation, the policies' first record, the geolocation subset.
//! Both DNS paths choose through these, so they choose alike.

use crate::{
    counters::Counter,
    maps::{MAX_RECORDS, MAX_SLOTS, RecordValue, policy},
};

/// Which record of a set of `count` comes `k`-th in the answer for rotation position `rotation`.
/// Both DNS paths use this, so they rotate alike.
#[inline(always)]
pub const fn rotated_index(rotation: u32, k: usize, count: usize) -> usize {
    if count == 0 {
        0
    } else {
        (rotation as usize + k) % count
    }
}

/// The index of an answer's first record under `rec`'s policy (record `k` is `(first + k) % count`):
/// round-robin `rotation % count`, fixed order 0, weighted `slots[rotation % slot_count]`. `count` is
/// `rec.count`, already checked to be in `1..=MAX_RECORDS`.
#[inline(always)]
pub fn first_index(rec: &RecordValue, rotation: u32, count: usize) -> Result<usize, Counter> {
    match rec.policy {
        policy::ROUND_ROBIN => Ok(rotated_index(rotation, 0, count)),
        policy::FIXED_ORDER => Ok(0),
        policy::WEIGHTED => {
            let slot_count = usize::from(rec.slot_count);
            if slot_count == 0 || slot_count > MAX_SLOTS {
                return Err(Counter::NoRecords);
            }
            // verifier: the kernel does not bound `x % n`; clamp where it is used.
            let at = crate::bounds::clamp(rotation as usize % slot_count, MAX_SLOTS - 1);
            let first = usize::from(rec.slots.get(at).copied().ok_or(Counter::NoRecords)?);
            if first >= count {
                return Err(Counter::NoRecords);
            }
            Ok(first)
        }
        _ => Err(Counter::Policy),
    }
}

/// Fills `sel` with the indices (in record order) of the records an answer draws from, and returns how
/// many there are. Every record, except under [`policy::GEO`]: there the records of the client's
/// `region` if it has any, else those of [`RecordValue::default_region`], else every record (region id 0
/// matches no record) — `routing::pick`'s geolocation rule. `count` is `rec.count`, in
/// `1..=MAX_RECORDS`.
#[inline(always)]
pub fn select(
    sel: &mut [u8; MAX_RECORDS],
    slots: &mut [u64; 4],
    rec: &RecordValue,
    region: u8,
    count: usize,
) -> usize {
    use crate::bounds::{clamp, opaque};
    let [s0, s1, s2, s3] = slots;
    let geo = rec.policy == policy::GEO;
    let default_region = rec.default_region;
    // verifier: the counters go through map memory on every iteration, so each iteration's two ways
    // (match or not) continue as one state.
    let mut in_client: u64 = 0;
    let mut in_default: u64 = 0;
    // verifier: no loop here leaves early (records past `count` have region 0, which matches nothing),
    // and what a loop carries goes through map memory on every iteration, so the ways through an
    // iteration continue as one state.
    if geo {
        for i in 0..MAX_RECORDS {
            let r = rec.regions.get(i).copied().unwrap_or(0);
            let nonzero = u64::from(r != 0);
            in_client = opaque(s0, in_client + (u64::from(r == region) & nonzero));
            in_default = opaque(s1, in_default + (u64::from(r == default_region) & nonzero));
        }
    }
    // 0: every record.
    let target = if !geo {
        0
    } else if in_client > 0 {
        region
    } else if in_default > 0 {
        default_region
    } else {
        0
    };
    let target = opaque(s2, u64::from(target)) as u8;
    let count = clamp(opaque(s3, count as u64) as usize, MAX_RECORDS) as u64;
    let mut m: u64 = 0;
    for i in 0..MAX_RECORDS {
        let r = rec.regions.get(i).copied().unwrap_or(0);
        // `m` ≤ `i` here, so the mask never wraps it.
        if let Some(d) = sel.get_mut((m & (MAX_RECORDS as u64 - 1)) as usize) {
            *d = i as u8;
        }
        let take = u64::from((i as u64) < count) & u64::from(target == 0 || r == target);
        m = opaque(s3, m + take);
    }
    clamp(m as usize, MAX_RECORDS)
}

/// How many records an answer carries.
#[inline(always)]
pub const fn answer_count(max_answers: u8, count: u8) -> usize {
    let max = if max_answers == 0 { 1 } else { max_answers };
    let n = if max < count { max } else { count };
    let n = n as usize;
    if n > MAX_RECORDS { MAX_RECORDS } else { n }
}
