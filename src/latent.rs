//! The latent space as the page shows it: prior samples, paths between two codes, traversals of
//! one dimension, the decoded manifold over the prior's quantiles (the paper's figure 4), and
//! which dimensions the model actually uses. Plain functions on codes [n, Z], row after row.
//! Categorical latents have their own: one-hot prior samples, traversals switching one
//! variable through its classes, and each variable's use and most likely class.

use crate::model::{Config, LatentType};
use crate::ops::latent::eps;
use crate::rng::{eps_bits, PRIOR_RNG_STEP};

/// q(z|x) for a batch of images, as `Trainer::encode` gives it.
#[derive(Clone, Debug, PartialEq)]
pub enum Encoding {
    /// mu and log-variance, [n, Z] each.
    Gaussian { mu: Vec<f32>, logvar: Vec<f32> },
    /// The class probabilities of each variable, [n, N * K].
    Categorical { probabilities: Vec<f32> },
}

impl Encoding {
    /// The code each image is reconstructed from: mu, or the class probabilities.
    pub fn code(&self) -> &[f32] {
        match self {
            Encoding::Gaussian { mu, .. } => mu,
            Encoding::Categorical { probabilities } => probabilities,
        }
    }
}

/// `n` codes from the prior of `config`'s latent space [n, code_len]: `prior_codes` for
/// Gaussian latents, `categorical_prior_codes` for categorical ones; the same seed gives the
/// same codes.
pub fn model_prior_codes(config: &Config, n: usize, seed: u32) -> Vec<f32> {
    match config.latent_type {
        LatentType::Gaussian {} => prior_codes(n, config.latent, seed),
        LatentType::Categorical { classes, .. } => categorical_prior_codes(n, config.latent, classes, seed),
    }
}

/// The prior codes z ~ N(0, I) [n, Z] for `seed`, from the same hash as the GPU's eps.
pub fn prior_codes(n: usize, latent: usize, seed: u32) -> Vec<f32> {
    (0..n * latent).map(|i| eps(seed, PRIOR_RNG_STEP, (i / latent) as u32, (i % latent) as u32) as f32).collect()
}

/// `steps` codes from `a` to `b` inclusive: linear, or spherical (slerp, which keeps codes at
/// the typical radius of a Gaussian prior instead of cutting through its low-density centre).
pub fn interpolate(a: &[f32], b: &[f32], steps: usize, spherical: bool) -> Vec<Vec<f32>> {
    assert_eq!(a.len(), b.len());
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let (na, nb) = (a.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt(), b.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt());
    let omega = (dot / (na * nb).max(1e-12)).clamp(-1.0, 1.0).acos();
    (0..steps)
        .map(|i| {
            let t = if steps == 1 { 0.0 } else { i as f64 / (steps - 1) as f64 };
            // Nearly parallel codes: slerp degenerates to lerp.
            let (wa, wb) = if spherical && omega.sin() > 1e-6 {
                (((1.0 - t) * omega).sin() / omega.sin(), (t * omega).sin() / omega.sin())
            } else {
                (1.0 - t, t)
            };
            a.iter().zip(b).map(|(&x, &y)| (wa * x as f64 + wb * y as f64) as f32).collect()
        })
        .collect()
}

/// The standard normal's quantile function Phi^-1(p) for p in (0, 1) (Acklam's rational
/// approximation, relative error below 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
    const B: [f64; 5] = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    const C: [f64; 6] = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let tail = |q: f64| (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5]) / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0);
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// `n` values spanning the prior's range at equal probability steps: Phi^-1((i + 0.5) / n).
pub fn prior_quantiles(n: usize) -> Vec<f32> {
    (0..n).map(|i| normal_quantile((i as f64 + 0.5) / n as f64) as f32).collect()
}

/// For each dimension in `dims`, `steps` copies of `code` with that dimension swept across the
/// prior's quantiles: [dims.len() * steps, Z], one row of the traversal after another.
pub fn traversal_codes(code: &[f32], dims: &[usize], steps: usize) -> Vec<f32> {
    let values = prior_quantiles(steps);
    let mut codes = Vec::with_capacity(dims.len() * steps * code.len());
    for &d in dims {
        for &v in &values {
            let start = codes.len();
            codes.extend_from_slice(code);
            codes[start + d] = v;
        }
    }
    codes
}

/// An n x n grid of codes over the prior's quantiles in dimensions `x` and `y` (others held at
/// `code`), row-major with y decreasing downwards, as in a plot: [n * n, Z].
pub fn manifold_codes(code: &[f32], x: usize, y: usize, n: usize) -> Vec<f32> {
    let values = prior_quantiles(n);
    let mut codes = Vec::with_capacity(n * n * code.len());
    for &vy in values.iter().rev() {
        for &vx in &values {
            let start = codes.len();
            codes.extend_from_slice(code);
            codes[start + x] = vx;
            codes[start + y] = vy;
        }
    }
    codes
}

/// The average KL(q(z_d|x) || N(0, 1)) of each dimension d over the rows of mu and logvar
/// [n, Z]: how much information the model sends through it. Unused dimensions sit near 0.
pub fn kl_per_dimension(mu: &[f32], logvar: &[f32], latent: usize) -> Vec<f64> {
    let mut kl = vec![0.0; latent];
    for (m, lv) in mu.chunks_exact(latent).zip(logvar.chunks_exact(latent)) {
        for d in 0..latent {
            let (m, lv) = (m[d] as f64, lv[d] as f64);
            kl[d] += -0.5 * (1.0 + lv - m * m - lv.exp());
        }
    }
    let rows = (mu.len() / latent.max(1)).max(1) as f64;
    kl.iter_mut().for_each(|k| *k /= rows);
    kl
}

/// Class probabilities from logits [rows, N * K]: a softmax over each variable's K classes.
pub fn class_probabilities(logits: &[f32], classes: usize) -> Vec<f32> {
    logits
        .chunks(classes)
        .flat_map(|l| {
            let max = l.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = l.iter().map(|v| (v - max).exp()).collect();
            let sum: f32 = e.iter().sum();
            e.into_iter().map(move |v| v / sum)
        })
        .collect()
}

/// `n` prior codes of `variables` categorical variables: each a one-hot vector of `classes`,
/// its class uniform from the shared hash: [n, variables * classes].
pub fn categorical_prior_codes(n: usize, variables: usize, classes: usize, seed: u32) -> Vec<f32> {
    let mut codes = vec![0.0; n * variables * classes];
    for i in 0..n * variables {
        let (h, _) = eps_bits(seed, PRIOR_RNG_STEP, (i / variables) as u32, (i % variables) as u32);
        let class = ((h as u64 * classes as u64) >> 32) as usize;
        codes[i * classes + class] = 1.0;
    }
    codes
}

/// For each variable in `variables`, `classes` copies of `code` with that variable switched to
/// each class in turn (one-hot): [variables.len() * classes, N * K].
pub fn class_traversal_codes(code: &[f32], variables: &[usize], classes: usize) -> Vec<f32> {
    let mut codes = Vec::with_capacity(variables.len() * classes * code.len());
    for &v in variables {
        for k in 0..classes {
            let start = codes.len();
            codes.extend_from_slice(code);
            codes[start + v * classes..start + (v + 1) * classes].fill(0.0);
            codes[start + v * classes + k] = 1.0;
        }
    }
    codes
}

/// The average KL(q(z_n|x) || uniform) of each of `variables` categorical variables over the
/// rows of class probabilities [rows, variables * K]: 0 for a variable the model ignores, up
/// to ln K.
pub fn kl_per_variable(probabilities: &[f32], variables: usize, classes: usize) -> Vec<f64> {
    let mut kl = vec![0.0; variables];
    let rows = probabilities.chunks_exact(variables * classes);
    let n = rows.len().max(1) as f64;
    for row in rows {
        for (k, q) in kl.iter_mut().zip(row.chunks(classes)) {
            *k += q.iter().filter(|&&q| q > 0.0).map(|&q| q as f64 * (q as f64).ln()).sum::<f64>() + (classes as f64).ln();
        }
    }
    kl.iter_mut().for_each(|k| *k /= n);
    kl
}

/// Each variable's most likely class in each row of class probabilities [rows, N * K]:
/// [rows, N] (the first of equal maxima).
pub fn most_likely_classes(probabilities: &[f32], classes: usize) -> Vec<u32> {
    probabilities
        .chunks(classes)
        .map(|q| (0..q.len()).fold(0, |best, k| if q[k] > q[best] { k } else { best }) as u32)
        .collect()
}

/// Dimension indices from most to least used (by `kl_per_dimension`).
pub fn dimensions_by_use(kl: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..kl.len()).collect();
    order.sort_by(|&a, &b| kl[b].total_cmp(&kl[a]));
    order
}
