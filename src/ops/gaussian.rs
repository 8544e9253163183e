//! A group of Gaussian latents in a hierarchy, flat (a linear head's 2Z outputs) or spatial (a
//! convolution's 2C channels, one variable per channel and position): sampling, the analytic KL
//! between the posterior and the group's conditional prior, the bound's log-ratio, and their
//! gradients. Kernels: `shaders/gaussian.wgsl`.
//!
//! As NVAE (Vahdat & Kautz 2020) parameterises it, the posterior is relative to the prior: the
//! top-down path gives the prior p(z | z_<l) = N(mu_p, exp(lv_p)), the encoder's features a shift
//! and a scale, q(z | x, z_<l) = N(mu_p + dmu, exp(lv_p + dlv)). The top group's prior is
//! N(0, I) (no prior tensor). Then
//!   KL(q || p) = 0.5 sum_j (dmu^2 exp(-lv_p) + exp(dlv) - 1 - dlv),
//! which does not depend on mu_p, and is that of `ops::latent` when the prior is N(0, I).
//!
//! Shapes: prior and delta [rows, 2n] (means, then log-variances: a head's first n outputs, or
//! its first C of 2C channels), eps and z [rows, n]. Each row is one sample of one datapoint with
//! its own prior (a lower group's prior depends on the sample above it).

use bytemuck::{Pod, Zeroable};

use super::latent;

/// What a pass draws for z.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// z ~ q: training, and the bound.
    Posterior,
    /// z = the posterior's mean (reconstructions).
    PosteriorMean,
    /// z ~ p, the prior given the groups above (samples; delta is not read).
    Prior,
    /// z = the prior's mean.
    PriorMean,
}

impl Mode {
    /// The code the kernels switch on.
    pub fn code(self) -> u32 {
        self as u32
    }

    fn reads_delta(self) -> bool {
        matches!(self, Mode::Posterior | Mode::PosteriorMean)
    }

    fn samples(self) -> bool {
        matches!(self, Mode::Posterior | Mode::Prior)
    }
}

/// Record of `shaders/gaussian.wgsl`. Offsets are into acts; `NONE` marks an absent tensor.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct GaussianOp {
    pub rows: u32,
    /// Variables per row (Z, or C x H x W).
    pub n: u32,
    pub seed: u32,
    /// The noise of variable j is that of dimension dim_base + j, so groups draw apart.
    pub dim_base: u32,
    /// The prior's parameters [rows, 2n], or NONE for N(0, I).
    pub prior_off: u32,
    /// The posterior's shift and log-scale [rows, 2n].
    pub delta_off: u32,
    pub eps_off: u32,
    pub z_off: u32,
    pub dz_off: u32,
    /// Where the backward pass writes d prior (NONE: not wanted) and d delta.
    pub dprior_off: u32,
    pub ddelta_off: u32,
    /// KL per row [rows].
    pub kl_off: u32,
    /// gaussian_reduce adds log q(z) - log p(z) to each row's value here (NONE: skip): the
    /// importance-weighted bound's -log w, as `latent_log_ratio` does.
    pub ratio_off: u32,
    /// Weight of this group's KL in the loss (beta, balancing) over the batch.
    pub kl_weight: f32,
    /// `Mode::code`.
    pub mode: u32,
    /// KL warm-up steps: the weight is kl_weight x min(1, t / warmup) at Adam's step t
    /// (`training::Schedule::kl_weight`); 0: no warm-up.
    pub warmup: u32,
}

impl GaussianOp {
    /// Grid of `gaussian_sample` and `gaussian_backward`: 64 variables x 4 rows per workgroup.
    pub fn per_element(&self) -> (u32, u32, u32) {
        (self.n.div_ceil(64), self.rows.div_ceil(4), 1)
    }

    /// Grid of `gaussian_reduce`: a workgroup of 64 per row.
    pub fn per_row(&self) -> (u32, u32, u32) {
        (self.rows, 1, 1)
    }
}

// ---------------------------------------------------------------------------------------------
// The CPU reference.

/// (mu_p, lv_p, dmu, dlv) of variable j of row r; absent tensors are zeros.
fn at(prior: Option<&[f64]>, delta: Option<&[f64]>, n: usize, r: usize, j: usize) -> (f64, f64, f64, f64) {
    let get = |t: Option<&[f64]>| t.map_or((0.0, 0.0), |t| (t[r * 2 * n + j], t[r * 2 * n + n + j]));
    let ((mp, lp), (dm, dl)) = (get(prior), get(delta));
    (mp, lp, dm, dl)
}

/// The noise `mode` draws: standard normals of (seed, step, row, dim_base + j), or zeros.
pub fn noise(mode: Mode, seed: u32, step: u32, rows: usize, n: usize, dim_base: u32) -> Vec<f64> {
    (0..rows * n)
        .map(|i| if mode.samples() { latent::eps(seed, step, (i / n) as u32, dim_base + (i % n) as u32) } else { 0.0 })
        .collect()
}

/// z = mu + exp(0.5 lv) eps of the posterior (or, in the prior modes, of the prior).
pub fn sample(mode: Mode, prior: Option<&[f64]>, delta: Option<&[f64]>, eps: &[f64], rows: usize, n: usize) -> Vec<f64> {
    let delta = delta.filter(|_| mode.reads_delta());
    (0..rows * n)
        .map(|i| {
            let (mp, lp, dm, dl) = at(prior, delta, n, i / n, i % n);
            mp + dm + (0.5 * (lp + dl)).exp() * eps[i]
        })
        .collect()
}

/// KL(q || p) per row.
pub fn kl(prior: Option<&[f64]>, delta: &[f64], rows: usize, n: usize) -> Vec<f64> {
    (0..rows)
        .map(|r| {
            (0..n)
                .map(|j| {
                    let (_, lp, dm, dl) = at(prior, Some(delta), n, r, j);
                    0.5 * (dm * dm * (-lp).exp() + dl.exp() - 1.0 - dl)
                })
                .sum()
        })
        .collect()
}

/// log q(z) - log p(z) per row, z drawn from q with `eps` (the 2 pi terms cancel).
pub fn log_ratio(prior: Option<&[f64]>, delta: &[f64], eps: &[f64], rows: usize, n: usize) -> Vec<f64> {
    let z = sample(Mode::Posterior, prior, Some(delta), eps, rows, n);
    (0..rows)
        .map(|r| {
            (0..n)
                .map(|j| {
                    let (mp, lp, _, dl) = at(prior, Some(delta), n, r, j);
                    let (e, d) = (eps[r * n + j], z[r * n + j] - mp);
                    (-0.5 * e * e - 0.5 * (lp + dl)) - (-0.5 * d * d * (-lp).exp() - 0.5 * lp)
                })
                .sum()
        })
        .collect()
}

/// Backward through z (given dz and the eps that drew it) and `kl_weight` x KL: (d prior,
/// d delta), each [rows, 2n].
pub fn backward(prior: Option<&[f64]>, delta: &[f64], eps: &[f64], dz: &[f64], rows: usize, n: usize, kl_weight: f64) -> (Vec<f64>, Vec<f64>) {
    let (mut dprior, mut ddelta) = (vec![0.0; rows * 2 * n], vec![0.0; rows * 2 * n]);
    for r in 0..rows {
        for j in 0..n {
            let (_, lp, dm, dl) = at(prior, Some(delta), n, r, j);
            let (g, inv) = (dz[r * n + j], (-lp).exp());
            // z's log-scale is lv_p + dlv: the same slope through either.
            let through_scale = g * eps[r * n + j] * 0.5 * (0.5 * (lp + dl)).exp();
            let (mu, lv) = (r * 2 * n + j, r * 2 * n + n + j);
            dprior[mu] = g;
            dprior[lv] = through_scale - kl_weight * 0.5 * dm * dm * inv;
            ddelta[mu] = g + kl_weight * dm * inv;
            ddelta[lv] = through_scale + kl_weight * 0.5 * (dl.exp() - 1.0);
        }
    }
    (dprior, ddelta)
}
