//! Seeded random inputs for tests: `rand`'s `StdRng` from a seed the test names, so every run sees the
//! same inputs, and the seed is printed so a failure's inputs can be had again (with the same
//! `Cargo.lock`: `StdRng`'s algorithm may change between `rand` versions).

use rand::{RngExt as _, SeedableRng as _, rngs::StdRng};

/// A seeded generator with the draws the tests use.
pub struct Rng(StdRng);

impl Rng {
    /// A generator from `seed`. The seed goes to the test's output (shown when it fails).
    pub fn new(seed: u64) -> Self {
        println!("random inputs from seed {seed:#x}");
        Self(StdRng::seed_from_u64(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.random()
    }

    /// Uniform in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.0.random_range(0..n) }
    }

    /// [`below`](Self::below) for `usize`.
    pub fn below_usize(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { self.0.random_range(0..n) }
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        self.0.random_range(lo..=hi)
    }

    /// True `percent` times in 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A fair coin.
    pub fn coin(&mut self) -> bool {
        self.0.random()
    }

    /// One of `items` (not empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below_usize(items.len())]
    }

    pub fn byte(&mut self) -> u8 {
        self.0.random()
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    /// Random 0x20 case: each letter of `name` upper or lower at random.
    pub fn random_case(&mut self, name: &str) -> String {
        name.chars()
            .map(|c| {
                if self.coin() {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    }
}
