//! The reconstruction loss -log p(x|z) per decoder row and its gradient w.r.t. the decoder's
//! outputs (BCE with logits, a fixed-variance Gaussian, or a Gaussian with a learned mean and
//! variance per pixel). Kernel: `shaders/loss.wgsl`.

use std::f64::consts::PI;

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use crate::model::Likelihood;

/// Record of `shaders/loss.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct LossOp {
    pub rows: u32,
    pub pixels: u32,
    pub batch: u32,
    pub likelihood: u32,
    pub out_off: u32,
    pub x_off: u32,
    pub grad_off: u32,
    pub recon_off: u32,
    pub scale: f32,
    pub inv_var: f32,
    pub log_norm: f32,
    pub log_var_floor: f32,
}

impl LossOp {
    /// The record for `rows` decoder rows of this likelihood (offsets left at 0).
    pub fn new(likelihood: Likelihood, rows: usize, pixels: usize, batch: usize) -> LossOp {
        let (code, inv_var, log_norm) = match likelihood {
            Likelihood::Bernoulli => (0, 0.0, 0.0),
            Likelihood::Gaussian { sigma } => (1, 1.0 / (sigma * sigma), pixels as f32 * (sigma * (2.0 * std::f32::consts::PI).sqrt()).ln()),
            Likelihood::GaussianVar { .. } => (2, 0.0, 0.0),
        };
        LossOp {
            rows: rows as u32,
            pixels: pixels as u32,
            batch: batch as u32,
            likelihood: code,
            scale: 1.0 / rows as f32,
            inv_var,
            log_norm,
            log_var_floor: likelihood.log_variance_floor().max(f32::MIN),
            ..Default::default()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The CPU reference.

/// outputs [L*B, k*D] (k = outputs per pixel), x [B, D] -> (recon per row [L*B], d outputs
/// [L*B, k*D] scaled by `scale`).
pub fn reconstruction(outputs: &[f64], x: &[f64], batch: usize, pixels: usize, likelihood: Likelihood, scale: f64) -> (Vec<f64>, Vec<f64>) {
    let width = likelihood.outputs_per_pixel() * pixels;
    let rows = outputs.len() / width;
    let mut recon = vec![0.0; rows];
    let mut grad = vec![0.0; outputs.len()];
    // Row by row, the rows shared among rayon's threads (the CPU trainer's loss runs here).
    let each_row = recon.par_iter_mut().zip(grad.par_chunks_mut(width)).zip(outputs.par_chunks(width));
    each_row.enumerate().for_each(|(r, ((recon, g), out))| {
        let x = &x[(r % batch) * pixels..(r % batch + 1) * pixels];
        for p in 0..pixels {
            let (o, t) = (out[p], x[p]);
            *recon += match likelihood {
                // BCE with logits, stable form: softplus(o) - t * o.
                Likelihood::Bernoulli => {
                    g[p] = scale * (1.0 / (1.0 + (-o).exp()) - t);
                    o.max(0.0) + (-o.abs()).exp().ln_1p() - t * o
                }
                Likelihood::Gaussian { sigma } => {
                    let s2 = (sigma as f64).powi(2);
                    g[p] = scale * (o - t) / s2;
                    (o - t).powi(2) / (2.0 * s2) + ((sigma as f64) * (2.0 * PI).sqrt()).ln()
                }
                // mean = sigmoid(o), log-variance = max(s, floor); below the floor the loss does
                // not depend on s, so its gradient there is 0.
                Likelihood::GaussianVar { .. } => {
                    let s = out[pixels + p];
                    let floor = likelihood.log_variance_floor() as f64;
                    let (mean, lv) = (1.0 / (1.0 + (-o).exp()), s.max(floor));
                    let (d, inv_var) = (mean - t, (-lv).exp());
                    g[p] = scale * d * inv_var * mean * (1.0 - mean);
                    g[pixels + p] = if s > floor { scale * 0.5 * (1.0 - d * d * inv_var) } else { 0.0 };
                    0.5 * ((2.0 * PI).ln() + lv + d * d * inv_var)
                }
            };
        }
    });
    (recon, grad)
}

/// What a decoded image shows per pixel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Statistic {
    /// p(x|z)'s mean, in [0, 1]: sigmoid(logit) (Bernoulli, GaussianVar) or the Gaussian mean
    /// clamped to [0, 1].
    Mean,
    /// p(x|z)'s standard deviation: sqrt(p (1 - p)) (Bernoulli), sigma (Gaussian), or
    /// exp(log-variance / 2) with the log-variance clamped as in the loss (GaussianVar).
    Std,
}

/// Images [n, D] from decoder outputs [n, k*D].
pub fn images(likelihood: Likelihood, outputs: &[f32], pixels: usize, statistic: Statistic) -> Vec<f32> {
    let sigmoid = |o: f32| 1.0 / (1.0 + (-o).exp());
    let width = likelihood.outputs_per_pixel() * pixels;
    let floor = likelihood.log_variance_floor();
    outputs
        .chunks(width)
        .flat_map(|row| {
            let (first, second) = row.split_at(pixels);
            (0..pixels).map(move |p| match (likelihood, statistic) {
                (Likelihood::Bernoulli | Likelihood::GaussianVar { .. }, Statistic::Mean) => sigmoid(first[p]),
                (Likelihood::Gaussian { .. }, Statistic::Mean) => first[p].clamp(0.0, 1.0),
                (Likelihood::Bernoulli, Statistic::Std) => (sigmoid(first[p]) * (1.0 - sigmoid(first[p]))).sqrt(),
                (Likelihood::Gaussian { sigma }, Statistic::Std) => sigma,
                (Likelihood::GaussianVar { .. }, Statistic::Std) => (0.5 * second[p].max(floor)).exp(),
            })
        })
        .collect()
}
