//! The weighted slot table: the one precomputed form of `weighted` routing that both DNS paths index with
//! their rotation counter, so they pick alike.
//!
//! Precision. Weights are divided by their greatest common divisor. When the reduced weights sum to at
//! most [`MAX_WEIGHT_SLOTS`] the table is exact: one slot per unit (100/50/25 → 4/2/1, seven slots;
//! 3:1 → four slots). Otherwise the table length `L ≤ 64` and the slot counts are the ones that minimise
//! the largest gap between any backend's share of slots and its share of the weight (counts by the
//! Sainte-Laguë/Webster divisor method, every length from the number of backends up to 64 tried): when
//! every weight is at least 1/64 of the total, each share is within one slot in 64 (1.6 percentage points)
//! of its weight share, usually within half of one. A backend with a positive weight always gets at least
//! one slot, so a weight under 1/64 of the total gets 1/64 of the first picks rather than none, and those
//! lifted slots come out of the others' shares.

/// The most slots a table has (the XDP map's slot array has this many).
pub const MAX_WEIGHT_SLOTS: usize = 64;

/// The slot table of a set of records with `weights`: indices into `weights`, each appearing in proportion to its weight
/// (see the module docs for the precision), interleaved by smooth weighted round-robin so that
/// consecutive slots spread over the backends instead of running in blocks. Rotation position `r`
/// picks record `slots[r % slots.len()]`.
///
/// Weight 0 gets no slot. If no record has a positive weight, every record counts as weight 1
/// (weights give no proportion to honour, and an empty answer would take the name off the air). Only the
/// first 256 records can be indexed by a `u8`, and at most 64 records can have a slot (the 64
/// heaviest, the earlier on ties); both are far beyond what one answer or the XDP map holds. Empty input,
/// empty table.
///
/// Records with weight 0 do not influence the table: the table of `weights` with the zero weights removed
/// is this one with the indices renumbered.
pub fn weight_slots(weights: &[u32]) -> Vec<u8> {
    // (index, weight) of the records that get slots.
    let indexable = weights.iter().take(usize::from(u8::MAX) + 1).enumerate();
    let mut elig: Vec<(u8, u64)> = indexable
        .clone()
        .filter(|&(_, &w)| w > 0)
        .filter_map(|(i, &w)| Some((u8::try_from(i).ok()?, u64::from(w))))
        .collect();
    if elig.is_empty() {
        elig = indexable
            .filter_map(|(i, _)| Some((u8::try_from(i).ok()?, 1)))
            .collect();
    }
    if elig.is_empty() {
        return Vec::new();
    }
    if elig.len() > MAX_WEIGHT_SLOTS {
        elig.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        elig.truncate(MAX_WEIGHT_SLOTS);
        elig.sort_by_key(|e| e.0);
    }

    let g = elig.iter().fold(0, |g, e| gcd(g, e.1));
    let weights: Vec<u64> = elig.iter().map(|e| e.1 / g.max(1)).collect();
    let counts = apportion(&weights);
    let len: u64 = counts.iter().sum();

    // Smooth weighted round-robin over the counts (nginx's): each step every backend gains its count and
    // the one furthest ahead takes the slot and pays the table length; over `len` steps each backend takes
    // exactly its count, spread out. Ties go to the earlier backend, so the table is deterministic.
    let mut current = vec![0i64; counts.len()];
    let mut slots = Vec::with_capacity(MAX_WEIGHT_SLOTS);
    for _ in 0..len {
        for (cur, &c) in current.iter_mut().zip(&counts) {
            *cur += c as i64;
        }
        let mut top = 0;
        for (i, &cur) in current.iter().enumerate() {
            if cur > current[top] {
                top = i;
            }
        }
        current[top] -= len as i64;
        slots.push(elig[top].0);
    }
    slots
}

/// Slot counts for `weights` (all positive, at most 64 of them): at least one each, at most 64 in all,
/// with the table length that brings every share closest to its weight share; the exact counts when the
/// weights sum to at most 64.
fn apportion(weights: &[u64]) -> Vec<u64> {
    let total: u64 = weights.iter().sum();
    // Every backend starts with its one slot; slots are then added one at a time by the Webster priority
    // w / (c + 1/2) (integer form: w·2 / (2c + 1)). Each length's counts extend the previous length's, so
    // one pass visits every length; keep the first with the smallest error.
    let mut counts = vec![1u64; weights.len()];
    let mut len = weights.len() as u64;
    let mut best = counts.clone();
    let mut best_err = max_error(weights, &counts, total, len);
    while len < MAX_WEIGHT_SLOTS as u64 && best_err.0 != 0 {
        let mut next = 0;
        for i in 1..weights.len() {
            // weights[i] / (2c_i + 1) > weights[next] / (2c_next + 1), cross-multiplied (≤ 2^32 · 2^7).
            if u128::from(weights[i]) * u128::from(2 * counts[next] + 1)
                > u128::from(weights[next]) * u128::from(2 * counts[i] + 1)
            {
                next = i;
            }
        }
        counts[next] += 1;
        len += 1;
        let err = max_error(weights, &counts, total, len);
        // err.0 / err.1 < best.0 / best.1, cross-multiplied.
        if err.0 * best_err.1 < best_err.0 * err.1 {
            best = counts.clone();
            best_err = err;
        }
    }
    best
}

/// The largest `|c_i / len − w_i / total|`, as the fraction `(max |c_i·total − w_i·len|, len)` (the common
/// factor `1/total` dropped, since `total` is the same for every length compared).
fn max_error(weights: &[u64], counts: &[u64], total: u64, len: u64) -> (u128, u128) {
    let worst = weights
        .iter()
        .zip(counts)
        .map(|(&w, &c)| {
            // c ≤ 64 and total < 2^39; w < 2^32 and len ≤ 64: no product comes near u128's range.
            (u128::from(c) * u128::from(total)).abs_diff(u128::from(w) * u128::from(len))
        })
        .max()
        .unwrap_or(0);
    (worst, u128::from(len))
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_slots_are_exact_for_small_reduced_weights() {
        let slots = weight_slots(&[100, 50, 25]);
        assert_eq!(slots.len(), 7);
        let count = |i| slots.iter().filter(|&&s| s == i).count();
        assert_eq!((count(0), count(1), count(2)), (4, 2, 1));
        // 3:1 in four slots, interleaved (not 0,0,0,1).
        assert_eq!(weight_slots(&[3, 1]), [0, 0, 1, 0]);
        assert_eq!(weight_slots(&[7]), [0]);
        assert!(weight_slots(&[]).is_empty());
    }

    /// Random draws below a bound from rand's seeded generator: the same draws every run.
    fn seeded(seed: u64) -> impl FnMut(u64) -> u64 {
        use rand::{RngExt as _, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        move |bound| rng.random_range(0..bound)
    }

    fn slot_counts(slots: &[u8], n: usize) -> Vec<usize> {
        (0..n)
            .map(|i| slots.iter().filter(|&&s| usize::from(s) == i).count())
            .collect()
    }

    #[test]
    fn weight_slots_scaled_stay_within_one_slot_of_the_weights() {
        // Weights of at least 1/64 of the total (so no one-slot minimum lifts anyone): every share within
        // one slot in 64 of its weight share.
        let mut next = seeded(0x2545_f491_4f6c_dd1d);
        for _ in 0..2000 {
            let n = 1 + next(16) as usize;
            let weights: Vec<u32> = (0..n)
                .map(|_| {
                    if next(5) == 0 {
                        0
                    } else {
                        50_000 + next(50_000) as u32
                    }
                })
                .collect();
            let slots = weight_slots(&weights);
            assert!(!slots.is_empty() && slots.len() <= MAX_WEIGHT_SLOTS);
            let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
            for (i, (&w, got)) in weights.iter().zip(slot_counts(&slots, n)).enumerate() {
                let share = got as f64 / slots.len() as f64;
                let want = if total > 0.0 {
                    f64::from(w) / total
                } else {
                    1.0 / n as f64
                };
                assert!(
                    (share - want).abs() <= 1.0 / MAX_WEIGHT_SLOTS as f64 + 1e-12,
                    "{weights:?}: index {i} share {share} weight share {want} ({slots:?})"
                );
            }
        }
    }

    #[test]
    fn weight_slots_give_every_positive_weight_a_slot() {
        // Wild weights (1 next to 4 000 000 000, up to 70 backends): weight 0 never has a slot, every other
        // weight of the 64 heaviest has at least one, and the table never exceeds 64 slots.
        let mut next = seeded(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let n = 1 + next(70) as usize;
            let weights: Vec<u32> = (0..n)
                .map(|_| match next(4) {
                    0 => 0,
                    1 => 1 + next(10) as u32,
                    2 => 1 + next(1000) as u32,
                    _ => 1 + next(4_000_000_000) as u32,
                })
                .collect();
            let slots = weight_slots(&weights);
            assert!(
                !slots.is_empty() && slots.len() <= MAX_WEIGHT_SLOTS,
                "{weights:?}"
            );
            let counts = slot_counts(&slots, n);
            let positive = weights.iter().filter(|&&w| w > 0).count();
            for (i, &w) in weights.iter().enumerate() {
                if w == 0 && positive > 0 {
                    assert_eq!(counts[i], 0, "{weights:?}");
                } else if positive <= MAX_WEIGHT_SLOTS {
                    assert!(counts[i] >= 1, "{weights:?}: index {i} has no slot");
                }
            }
        }
    }

    #[test]
    fn weight_slots_ignore_zero_weights() {
        // The table leaves weight-0 records out of an entry: its slot table must be this one renumbered.
        let full = [0, 700, 0, 200, 101];
        let kept: Vec<u32> = full.iter().copied().filter(|&w| w > 0).collect();
        let renumber = [None, Some(0u8), None, Some(1), Some(2)];
        let mapped: Vec<u8> = weight_slots(&full)
            .iter()
            .map(|&s| renumber[usize::from(s)].unwrap())
            .collect();
        assert_eq!(mapped, weight_slots(&kept));
    }
}
