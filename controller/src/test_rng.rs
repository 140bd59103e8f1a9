//! xorshift64*: deterministic numbers for the unit tests, without a rand crate.

extern crate std;

use std::vec::Vec;

/// The generator's state; `Rng(state)` takes a raw (non-zero) state,
/// [`Rng::new`] mixes a seed into one.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// A generator from any seed (0 included).
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi), as f32.
    pub(crate) fn range(&mut self, lo: f64, hi: f64) -> f32 {
        (lo + (hi - lo) * self.unit()) as f32
    }

    /// `n` values uniform in [−scale, scale), as f32.
    pub(crate) fn values(&mut self, n: usize, scale: f64) -> Vec<f32> {
        (0..n)
            .map(|_| (scale * (2.0 * self.unit() - 1.0)) as f32)
            .collect()
    }
}
