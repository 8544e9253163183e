//! Counter-based random numbers: a value is a pure function of its key, so the GPU and the CPU
//! produce the same stream without sharing state. The same hash is written in WGSL.

/// PCG-style 32-bit permutation hash (Jarzynski & Olano, "Hash Functions for GPU Rendering", 2020).
pub fn pcg_hash(input: u32) -> u32 {
    let state = input.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// The RNG "steps" of noise that is not training noise, never reached by training: evaluation,
/// the importance-weighted bound and prior samples are repeatable, and unlike any step's.
pub const EVAL_RNG_STEP: u32 = u32::MAX;
pub const IWAE_RNG_STEP: u32 = u32::MAX - 1;
pub const PRIOR_RNG_STEP: u32 = u32::MAX - 2;

/// A small seeded generator for host-side needs (initialisation, shuffling, test inputs):
/// the n-th value is `pcg_hash(seed_hash + n)`.
#[derive(Clone, Debug)]
pub struct Rng {
    key: u32,
    counter: u32,
}

impl Rng {
    pub fn new(seed: u32) -> Self {
        Rng { key: pcg_hash(seed ^ 0x9E37_79B9), counter: 0 }
    }

    pub fn next_u32(&mut self) -> u32 {
        self.counter = self.counter.wrapping_add(1);
        pcg_hash(self.key ^ pcg_hash(self.counter))
    }

    /// Uniform in [0, 1): the top 24 bits, so every value is exactly representable.
    pub fn uniform(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform()
    }

    /// `n` values uniform in [lo, hi).
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.range(lo, hi)).collect()
    }
}

/// The two 32-bit words behind eps for (seed, step, row, dim); `shaders/latent.wgsl` computes
/// the same words. Each key component goes through the hash before the next is mixed in, so
/// nearby keys give unrelated words.
pub fn eps_bits(seed: u32, step: u32, row: u32, dim: u32) -> (u32, u32) {
    let h = pcg_hash(pcg_hash(pcg_hash(pcg_hash(seed) ^ step) ^ row) ^ dim);
    (h, pcg_hash(h ^ 0x68E3_1DA4))
}
