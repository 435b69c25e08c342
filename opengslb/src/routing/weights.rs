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

use super::Candidate;

/// The most slots a table has (the XDP map's slot array has this many).
pub const MAX_WEIGHT_SLOTS: usize = 64;

/// The slot table of a set of candidates: indices into `cands`, each appearing in proportion to its weight
/// (see the module docs for the precision), interleaved by smooth weighted round-robin so that
/// consecutive slots spread over the backends instead of running in blocks. Rotation position `r`
/// picks `cands[slots[r % slots.len()]]`.
///
/// Weight 0 gets no slot. If no candidate has a positive weight, every candidate counts as weight 1
/// (weights give no proportion to honour, and an empty answer would take the name off the air). Only the
/// first 256 candidates can be indexed by a `u8`, and at most 64 candidates can have a slot (the 64
/// heaviest, the earlier on ties); both are far beyond what one answer or the XDP map holds. Empty input,
/// empty table.
///
/// Candidates with weight 0 do not influence the table: the table of `cands` with the zero-weight
/// entries removed is this one with the indices renumbered, so a renderer that leaves those out of the XDP
/// map agrees with [`super::pick`] on the full list.
pub fn weight_slots(cands: &[Candidate]) -> Vec<u8> {
    // (index into cands, weight) of the candidates that get slots.
    let indexable = cands.iter().take(usize::from(u8::MAX) + 1).enumerate();
    let mut elig: Vec<(u8, u64)> = indexable
        .clone()
        .filter(|(_, c)| c.weight > 0)
        .filter_map(|(i, c)| Some((u8::try_from(i).ok()?, u64::from(c.weight))))
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
