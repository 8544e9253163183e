//! The reconstruction loss -log p(x|z) per decoder row and its gradient w.r.t. the decoder's
//! outputs (BCE with logits, or a fixed-variance Gaussian). Kernel: `shaders/loss.wgsl`.

use bytemuck::{Pod, Zeroable};

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
}

// ---------------------------------------------------------------------------------------------
// The CPU reference.

/// outputs [L*B, D], x [B, D] -> (recon per row [L*B], d outputs [L*B, D] scaled by `scale`).
pub fn reconstruction(outputs: &[f64], x: &[f64], batch: usize, pixels: usize, likelihood: Likelihood, scale: f64) -> (Vec<f64>, Vec<f64>) {
    let rows = outputs.len() / pixels;
    let mut recon = vec![0.0; rows];
    let mut grad = vec![0.0; outputs.len()];
    for r in 0..rows {
        let b = r % batch;
        for p in 0..pixels {
            let (o, t) = (outputs[r * pixels + p], x[b * pixels + p]);
            let (loss, d) = match likelihood {
                // BCE with logits, stable form: softplus(o) - t * o.
                Likelihood::Bernoulli => (o.max(0.0) + (-o.abs()).exp().ln_1p() - t * o, 1.0 / (1.0 + (-o).exp()) - t),
                Likelihood::Gaussian { sigma } => {
                    let s2 = (sigma as f64).powi(2);
                    ((o - t).powi(2) / (2.0 * s2), (o - t) / s2)
                }
            };
            recon[r] += loss;
            grad[r * pixels + p] = d * scale;
        }
        if let Likelihood::Gaussian { sigma } = likelihood {
            recon[r] += pixels as f64 * ((sigma as f64) * (2.0 * std::f64::consts::PI).sqrt()).ln();
        }
    }
    (recon, grad)
}

