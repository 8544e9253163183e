//! The latent space as the page shows it: prior samples, paths between two codes, traversals of
//! one dimension, the decoded manifold over the prior's quantiles (the paper's figure 4), and
//! which dimensions the model actually uses. Plain functions on codes [n, Z], row after row.

use crate::ops::latent::eps;
use crate::rng::PRIOR_RNG_STEP;

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

/// Dimension indices from most to least used (by `kl_per_dimension`).
pub fn dimensions_by_use(kl: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..kl.len()).collect();
    order.sort_by(|&a, &b| kl[b].total_cmp(&kl[a]));
    order
}
