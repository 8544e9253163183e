//! Categorical latents relaxed by Gumbel-softmax (Jang, Gu & Poole 2017; Maddison, Mnih & Teh
//! 2017): sampling (relaxed, one-hot, or the class probabilities themselves), the analytic KL to
//! the uniform prior, their gradients, and the importance-weighted bound with one-hot samples.
//! Kernels: `shaders/categorical.wgsl`.
//!
//! Shapes: B = batch, R = L * B rows (ordered l * B + b), N = variables, K = classes; the
//! encoder's logits are [B, N*K], the noise and the codes y [R, N*K], variable n of a row at
//! n*K..(n+1)*K.

use bytemuck::{Pod, Zeroable};

use crate::rng;

/// What `gumbel_softmax` writes as the code y.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// softmax((logits + g) / tau): training.
    Relaxed = 0,
    /// one_hot(argmax(logits + g)), an exact sample of the categorical (Gumbel-max):
    /// evaluation and the importance-weighted bound.
    OneHot = 1,
    /// softmax(logits), the class probabilities, without noise: reconstructions.
    Probabilities = 2,
}

/// Record of `shaders/categorical.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct CategoricalOp {
    pub batch: u32,
    pub rows: u32,
    pub variables: u32,
    pub classes: u32,
    pub seed: u32,
    pub logits_off: u32,
    pub noise_off: u32,
    pub y_off: u32,
    pub dy_off: u32,
    pub dlogits_off: u32,
    pub kl_off: u32,
    pub recon_off: u32,
    pub mode: u32,
    pub kl_weight: f32,
    pub tau_start: f32,
    pub tau_floor: f32,
    pub tau_rate: f32,
}

impl CategoricalOp {
    /// Grid of `gumbel_softmax`: 16 variables x 4 rows per workgroup.
    pub fn per_variable(&self) -> (u32, u32, u32) {
        (self.variables.div_ceil(16), self.rows.div_ceil(4), 1)
    }

    /// Grid of `categorical_log_ratio`: one invocation per row.
    pub fn per_row(&self) -> (u32, u32, u32) {
        (self.rows.div_ceil(64), 1, 1)
    }

    /// Grid of `categorical_backward`: one invocation per datapoint.
    pub fn per_datapoint(&self) -> (u32, u32, u32) {
        (self.batch.div_ceil(64), 1, 1)
    }
}

// ---------------------------------------------------------------------------------------------
// The CPU reference.

/// The Gumbel(0, 1) noise the GPU draws for (seed, step, row, dim): -ln(-ln u) with u uniform
/// in (0, 1) from the shared hash's top 23 bits, (2m + 1) / 2^24 (exact in f32).
pub fn gumbel(seed: u32, step: u32, row: u32, dim: u32) -> f64 {
    let (h, _) = rng::eps_bits(seed, step, row, dim);
    let u = (2 * (h >> 9) + 1) as f64 / 16_777_216.0;
    -(-u.ln()).ln()
}

/// log softmax of one variable's values, stable (the largest subtracted first).
fn log_softmax(v: &[f64]) -> Vec<f64> {
    let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let log_sum = max + v.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
    v.iter().map(|x| x - log_sum).collect()
}

fn softmax(v: &[f64]) -> Vec<f64> {
    log_softmax(v).into_iter().map(f64::exp).collect()
}

/// logits [B, N*K], noise [R, N*K] -> y [R, N*K] (`mode`; tau only matters when relaxed).
pub fn sample(logits: &[f64], noise: &[f64], batch: usize, classes: usize, mode: Mode, tau: f64) -> Vec<f64> {
    let width = logits.len() / batch;
    let mut y = vec![0.0; noise.len()];
    for (r, (y_row, g_row)) in y.chunks_mut(width).zip(noise.chunks(width)).enumerate() {
        let l_row = &logits[(r % batch) * width..(r % batch + 1) * width];
        for ((y, l), g) in y_row.chunks_mut(classes).zip(l_row.chunks(classes)).zip(g_row.chunks(classes)) {
            let perturbed: Vec<f64> = l.iter().zip(g).map(|(l, g)| l + g).collect();
            match mode {
                Mode::Relaxed => y.copy_from_slice(&softmax(&perturbed.iter().map(|s| s / tau).collect::<Vec<_>>())),
                Mode::OneHot => {
                    // The first of equal maxima, as the kernel picks.
                    let best = (0..classes).fold(0, |best, k| if perturbed[k] > perturbed[best] { k } else { best });
                    y[best] = 1.0;
                }
                Mode::Probabilities => y.copy_from_slice(&softmax(l)),
            }
        }
    }
    y
}

/// KL(q(z|x) || uniform) per datapoint: sum over variables of sum_k q_k ln q_k + ln K.
pub fn kl(logits: &[f64], batch: usize, classes: usize) -> Vec<f64> {
    let width = logits.len() / batch;
    logits
        .chunks(width)
        .map(|row| {
            row.chunks(classes)
                .map(|l| log_softmax(l).iter().map(|lq| lq.exp() * lq).sum::<f64>() + (classes as f64).ln())
                .sum()
        })
        .collect()
}

/// Backward through relaxed samples and `kl_weight * KL`: dy [R, N*K] -> d logits [B, N*K].
///   d logits_k = sum_l (y_k / tau) (dy_k - <y, dy>) + kl_weight q_k (ln q_k - <q, ln q>)
pub fn backward(logits: &[f64], y: &[f64], dy: &[f64], batch: usize, classes: usize, tau: f64, kl_weight: f64) -> Vec<f64> {
    let width = logits.len() / batch;
    let rows = y.len() / width;
    let mut d = vec![0.0; logits.len()];
    for b in 0..batch {
        for v in (0..width).step_by(classes) {
            let log_q = log_softmax(&logits[b * width + v..b * width + v + classes]);
            let q: Vec<f64> = log_q.iter().map(|l| l.exp()).collect();
            let q_log_q: f64 = q.iter().zip(&log_q).map(|(q, l)| q * l).sum();
            for k in 0..classes {
                d[b * width + v + k] = kl_weight * q[k] * (log_q[k] - q_log_q);
            }
            for r in (b..rows).step_by(batch) {
                let (y, dy) = (&y[r * width + v..r * width + v + classes], &dy[r * width + v..r * width + v + classes]);
                let dot: f64 = y.iter().zip(dy).map(|(y, d)| y * d).sum();
                for k in 0..classes {
                    d[b * width + v + k] += y[k] / tau * (dy[k] - dot);
                }
            }
        }
    }
    d
}

/// The importance-weighted estimate of -log p(x), summed over the batch, from k = R / B one-hot
/// samples per datapoint: log w = -recon + log p(z) - log q(z|x) = -recon - N ln K - sum_n ln q_n(z_n).
pub fn importance_weighted(logits: &[f64], y: &[f64], recon: &[f64], batch: usize, classes: usize) -> f64 {
    let width = logits.len() / batch;
    let rows = recon.len();
    let variables = width / classes;
    (0..batch)
        .map(|b| {
            let log_q: Vec<f64> = logits[b * width..(b + 1) * width].chunks(classes).flat_map(log_softmax).collect();
            let log_w: Vec<f64> = (b..rows)
                .step_by(batch)
                .map(|r| {
                    let chosen: f64 = y[r * width..(r + 1) * width].iter().zip(&log_q).map(|(y, l)| y * l).sum();
                    -recon[r] - variables as f64 * (classes as f64).ln() - chosen
                })
                .collect();
            let max = log_w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let k = log_w.len() as f64;
            -(max + log_w.iter().map(|w| (w - max).exp()).sum::<f64>().ln() - k.ln())
        })
        .sum()
}
