//! The latent layer: reparameterisation z = mu + exp(0.5 logvar) * eps with eps from the
//! counter-based hash, the analytic KL to N(0, I), their gradients, and the importance-weighted
//! bound. Kernels: `shaders/latent.wgsl`.
//!
//! Shapes: B = batch, L = latent samples per datapoint, Z = latent size; rows of z are ordered
//! l * B + b (sample-major).

use bytemuck::{Pod, Zeroable};

use crate::rng;

/// Record of `shaders/latent.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct LatentOp {
    pub batch: u32,
    pub rows: u32,
    pub latent: u32,
    pub seed: u32,
    pub ml_off: u32,
    pub eps_off: u32,
    pub z_off: u32,
    pub dz_off: u32,
    pub dml_off: u32,
    pub kl_off: u32,
    pub recon_off: u32,
    pub kl_weight: f32,
    pub use_mean: u32,
}

impl LatentOp {
    /// Grid of `reparameterize` and `eps_bits_test`: 16 dims x 4 rows per workgroup.
    pub fn per_element(&self) -> (u32, u32, u32) {
        (self.latent.div_ceil(16), self.rows.div_ceil(4), 1)
    }

    /// Grid of `latent_log_ratio`: one invocation per row.
    pub fn per_row(&self) -> (u32, u32, u32) {
        (self.rows.div_ceil(64), 1, 1)
    }

    /// Grid of `latent_backward`: one invocation per datapoint.
    pub fn per_datapoint(&self) -> (u32, u32, u32) {
        (self.batch.div_ceil(64), 1, 1)
    }
}

// ---------------------------------------------------------------------------------------------
// The CPU reference.

/// The standard normal the GPU draws for (seed, step, row, dim), via the shared hash.
pub fn eps(seed: u32, step: u32, row: u32, dim: u32) -> f64 {
    let (h1, h2) = rng::eps_bits(seed, step, row, dim);
    let u1 = ((h1 >> 8) + 1) as f64 / 16_777_216.0; // (0, 1]
    let u2 = (h2 >> 8) as f64 / 16_777_216.0; // [0, 1)
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// ml [B, 2Z] (mu then logvar per row), eps [L*B, Z] -> z [L*B, Z].
pub fn reparameterize(ml: &[f64], eps: &[f64], batch: usize, latent: usize) -> Vec<f64> {
    let rows = eps.len() / latent;
    let mut z = vec![0.0; rows * latent];
    for r in 0..rows {
        let b = r % batch;
        for j in 0..latent {
            let (mu, lv) = (ml[b * 2 * latent + j], ml[b * 2 * latent + latent + j]);
            z[r * latent + j] = mu + (0.5 * lv).exp() * eps[r * latent + j];
        }
    }
    z
}

/// KL(q(z|x) || N(0, I)) per datapoint: -0.5 sum_j (1 + logvar - mu^2 - exp(logvar)).
pub fn kl(ml: &[f64], batch: usize, latent: usize) -> Vec<f64> {
    (0..batch)
        .map(|b| {
            (0..latent)
                .map(|j| {
                    let (mu, lv) = (ml[b * 2 * latent + j], ml[b * 2 * latent + latent + j]);
                    -0.5 * (1.0 + lv - mu * mu - lv.exp())
                })
                .sum()
        })
        .collect()
}

/// The importance-weighted estimate of -log p(x), summed over the batch, from k = L samples per
/// datapoint: log w = -recon + log N(z; 0, I) - log N(z; mu, sigma^2) (the 2 pi terms cancel).
pub fn importance_weighted(ml: &[f64], eps: &[f64], recon: &[f64], batch: usize, latent: usize) -> f64 {
    let z = reparameterize(ml, eps, batch, latent);
    let rows = recon.len();
    (0..batch)
        .map(|b| {
            let log_w: Vec<f64> = (b..rows)
                .step_by(batch)
                .map(|r| {
                    -recon[r]
                        + (0..latent)
                            .map(|j| {
                                let (z, e, lv) = (z[r * latent + j], eps[r * latent + j], ml[b * 2 * latent + latent + j]);
                                -0.5 * z * z + 0.5 * e * e + 0.5 * lv
                            })
                            .sum::<f64>()
                })
                .collect();
            let max = log_w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            -(max + log_w.iter().map(|w| (w - max).exp()).sum::<f64>().ln() - (log_w.len() as f64).ln())
        })
        .sum()
}

/// Backward through reparameterisation and `kl_weight * KL`: dz [L*B, Z] -> d ml [B, 2Z].
pub fn backward(ml: &[f64], eps: &[f64], dz: &[f64], batch: usize, latent: usize, kl_weight: f64) -> Vec<f64> {
    let rows = eps.len() / latent;
    let mut dml = vec![0.0; batch * 2 * latent];
    for b in 0..batch {
        for j in 0..latent {
            let (mu, lv) = (ml[b * 2 * latent + j], ml[b * 2 * latent + latent + j]);
            let (mut dmu, mut dlv) = (kl_weight * mu, kl_weight * 0.5 * (lv.exp() - 1.0));
            for r in (b..rows).step_by(batch) {
                let g = dz[r * latent + j];
                dmu += g;
                dlv += g * eps[r * latent + j] * 0.5 * (0.5 * lv).exp();
            }
            dml[b * 2 * latent + j] = dmu;
            dml[b * 2 * latent + latent + j] = dlv;
        }
    }
    dml
}

