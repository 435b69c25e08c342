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
/// [`first_index_of`] with the entry's own policy and slot table. `count` is `rec.count`, already checked
/// to be in `1..=MAX_RECORDS`.
#[inline(always)]
pub fn first_index(rec: &RecordValue, rotation: u32, count: usize) -> Result<usize, Counter> {
    first_index_of(rec.policy, &rec.slots, rec.slot_count, rotation, count)
}

/// The index of an answer's first record among the `count` records it draws from (record `k` is
/// `(first + k) % count`): round-robin and geolocation `rotation % count`, fixed order 0, weighted
/// `slots[rotation % slot_count]`.
#[inline(always)]
pub fn first_index_of(
    policy: u8,
    slots: &[u8; MAX_SLOTS],
    slot_count: u8,
    rotation: u32,
    count: usize,
) -> Result<usize, Counter> {
    match policy {
        policy::ROUND_ROBIN | policy::GEO => Ok(rotated_index(rotation, 0, count)),
        policy::FIXED_ORDER => Ok(0),
        policy::WEIGHTED => {
            let slot_count = usize::from(slot_count);
            if slot_count == 0 || slot_count > MAX_SLOTS {
                return Err(Counter::NoRecords);
            }
            // verifier: the kernel does not bound `x % n`; clamp where it is used.
            let at = crate::bounds::clamp(rotation as usize % slot_count, MAX_SLOTS - 1);
            let first = usize::from(slots.get(at).copied().ok_or(Counter::NoRecords)?);
            if first >= count {
                return Err(Counter::NoRecords);
            }
            Ok(first)
        }
        _ => Err(Counter::Policy),
    }
}

/// Whether a record of region `record` is in region `region` (id 0 is no region and matches nothing), as
/// 0 or 1 so the kernel's loop can add it up without a branch.
#[inline(always)]
pub const fn in_region(record: u8, region: u8) -> u64 {
    (record == region) as u64 & (record != 0) as u64
}

/// The region a geolocation answer draws from: the client's if a record is in it, else the default
/// region if a record is in that, else 0: every record, so a region with nothing healthy does not
/// black-hole its clients.
#[inline(always)]
pub const fn draw_region(
    client_has: bool,
    default_has: bool,
    region: u8,
    default_region: u8,
) -> u8 {
    if client_has {
        region
    } else if default_has {
        default_region
    } else {
        0
    }
}

/// Whether an answer drawing from region `target` ([`draw_region`]) draws a record of region `record`.
#[inline(always)]
pub const fn draws(record: u8, target: u8) -> bool {
    target == 0 || record == target
}

/// Fills `sel` with the indices (in record order) of the records an answer draws from, and returns how
/// many there are. Every record, except under [`policy::GEO`]: there the records of the client's
/// `region` if it has any, else those of [`RecordValue::default_region`], else every record (region id 0
/// matches no record): [`draw_region`] and [`draws`]. `count` is `rec.count`, in
/// `1..=MAX_RECORDS`.
// verifier: a function of its own (a BPF-to-BPF call), so its loops' spilled state leaves with its stack
// frame instead of splitting the caller's paths.
#[inline(never)]
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
            in_client = opaque(s0, in_client + in_region(r, region));
            in_default = opaque(s1, in_default + in_region(r, default_region));
        }
    }
    // 0: every record.
    let target = if geo {
        draw_region(in_client > 0, in_default > 0, region, default_region)
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
        let take = u64::from((i as u64) < count) & u64::from(draws(r, target));
        m = opaque(s3, m + take);
    }
    clamp(m as usize, MAX_RECORDS)
}

/// How one answer draws from a record set of any size: the fields of a records-map entry, for sets too
/// large for one (userspace answers those) as well as for the ones the map holds.
#[derive(Clone, Copy, Debug)]
pub struct Draw<'a> {
    /// A [`policy`] constant.
    pub policy: u8,
    /// How many records one answer carries at most.
    pub max_answers: u8,
    /// How many records the set holds.
    pub count: usize,
    /// [`policy::WEIGHTED`]: the slot table (indices into the set) and how much of it is used.
    pub slots: &'a [u8; MAX_SLOTS],
    /// How many of `slots` are in use.
    pub slot_count: u8,
    /// [`policy::GEO`]: each record's region id (a record past the end: 0).
    pub regions: &'a [u8],
    /// [`policy::GEO`]: the region of clients the trie does not place.
    pub default_region: u8,
}

/// Fills `out` with the indices of the records one answer carries, in answer order, and returns how
/// many: what [`build_reply_for`](super::build_reply_for) answers from a map entry with the same fields at
/// `rotation` for a client in `region`, by the same rules ([`first_index_of`], [`draw_region`],
/// [`draws`], [`rotated_index`], [`answer_count`]) walked without the kernel's loop bounds.
pub fn answer_indices(
    d: &Draw<'_>,
    rotation: u32,
    region: u8,
    out: &mut [usize; MAX_RECORDS],
) -> Result<usize, Counter> {
    let region_of = |i: usize| d.regions.get(i).copied().unwrap_or(0);
    let target = if d.policy == policy::GEO {
        let has = |r: u8| (0..d.count).any(|i| in_region(region_of(i), r) == 1);
        draw_region(has(region), has(d.default_region), region, d.default_region)
    } else {
        0
    };
    let drawn = || (0..d.count).filter(move |&i| draws(region_of(i), target));
    let m = drawn().count();
    if m == 0 {
        return Err(Counter::NoRecords);
    }
    let first = first_index_of(d.policy, d.slots, d.slot_count, rotation, m)?;
    let n = answer_count(d.max_answers, u8::try_from(m).unwrap_or(u8::MAX));
    for (k, slot) in out.iter_mut().enumerate().take(n) {
        // `first` < `m`, so it fits the rotation's type.
        let at = rotated_index(first as u32, k, m);
        *slot = drawn().nth(at).ok_or(Counter::NoRecords)?;
    }
    Ok(n)
}

/// How many records an answer carries.
#[inline(always)]
pub const fn answer_count(max_answers: u8, count: u8) -> usize {
    let max = if max_answers == 0 { 1 } else { max_answers };
    let n = if max < count { max } else { count };
    let n = n as usize;
    if n > MAX_RECORDS { MAX_RECORDS } else { n }
}
