//! The CPU oracle: every op of the model as plain loops in f64, forward and backward side by
//! side, plus one whole training step. Nothing here is fast; everything here is plainly right.
//! The GPU kernels (f32) are checked against it, and it is checked against finite differences.
//!
//! Shapes: B = batch, L = latent samples per datapoint, D = pixels, Z = latent size.
//! Rows of decoder tensors are ordered l * B + b (sample-major), as on the GPU.

use crate::model::{Config, Layout, Likelihood, LinearLayout};
use crate::rng;

/// Element-wise nonlinearity applied after a linear layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Identity,
    Relu,
    Tanh,
}

impl Activation {
    /// The code the WGSL kernels switch on.
    pub fn code(self) -> u32 {
        match self {
            Activation::Identity => 0,
            Activation::Relu => 1,
            Activation::Tanh => 2,
        }
    }

    pub fn apply(self, z: f64) -> f64 {
        match self {
            Activation::Identity => z,
            Activation::Relu => z.max(0.0),
            Activation::Tanh => z.tanh(),
        }
    }

    /// d act / d z, written in terms of the output y = act(z).
    pub fn derivative_from_output(self, y: f64) -> f64 {
        match self {
            Activation::Identity => 1.0,
            Activation::Relu => (y > 0.0) as u8 as f64,
            Activation::Tanh => 1.0 - y * y,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Linear layer, PyTorch nn.Linear layout: x [rows, inner], W [cols, inner], b [cols].

/// y = act(x W^T + b) -> [rows, cols].
pub fn linear_forward(x: &[f64], w: &[f64], b: &[f64], rows: usize, inner: usize, cols: usize, act: Activation) -> Vec<f64> {
    assert_eq!((x.len(), w.len(), b.len()), (rows * inner, cols * inner, cols));
    let mut y = vec![0.0; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            let mut z = b[c];
            for k in 0..inner {
                z += x[r * inner + k] * w[c * inner + k];
            }
            y[r * cols + c] = act.apply(z);
        }
    }
    y
}

/// Given dz = dL/d(pre-activation) [rows, cols]: dW = dz^T x [cols, inner], db = column sums.
pub fn linear_backward_weight(x: &[f64], dz: &[f64], rows: usize, inner: usize, cols: usize) -> (Vec<f64>, Vec<f64>) {
    let mut dw = vec![0.0; cols * inner];
    let mut db = vec![0.0; cols];
    for r in 0..rows {
        for c in 0..cols {
            let g = dz[r * cols + c];
            db[c] += g;
            for k in 0..inner {
                dw[c * inner + k] += g * x[r * inner + k];
            }
        }
    }
    (dw, db)
}

/// dL/d(pre-activation of the previous layer) = (dz W) * act'(x), where x = act(previous z)
/// is this layer's input, so act' is computed from it.
pub fn linear_backward_input(dz: &[f64], w: &[f64], x: &[f64], rows: usize, inner: usize, cols: usize, act_of_x: Activation) -> Vec<f64> {
    let mut dx = vec![0.0; rows * inner];
    for r in 0..rows {
        for k in 0..inner {
            let mut g = 0.0;
            for c in 0..cols {
                g += dz[r * cols + c] * w[c * inner + k];
            }
            dx[r * inner + k] = g * act_of_x.derivative_from_output(x[r * inner + k]);
        }
    }
    dx
}

// ---------------------------------------------------------------------------------------------
// Reconstruction loss: -log p(x|z) per decoder row, and its gradient w.r.t. the decoder outputs.

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

// ---------------------------------------------------------------------------------------------
// Latent layer: reparameterisation z = mu + exp(0.5 logvar) * eps, and the analytic KL.

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

/// Backward through reparameterisation and `kl_weight * KL`: dz [L*B, Z] -> d ml [B, 2Z].
pub fn latent_backward(ml: &[f64], eps: &[f64], dz: &[f64], batch: usize, latent: usize, kl_weight: f64) -> Vec<f64> {
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

// ---------------------------------------------------------------------------------------------
// Adam (Kingma & Ba), as PyTorch writes it, over the whole flat parameter buffer.

pub const ADAM_BETA1: f64 = 0.9;
pub const ADAM_BETA2: f64 = 0.999;
pub const ADAM_EPSILON: f64 = 1e-8;

/// One update at step `t` (1-based).
pub fn adam(params: &mut [f64], grads: &[f64], m: &mut [f64], v: &mut [f64], t: u32, lr: f64) {
    let (c1, c2) = (1.0 - ADAM_BETA1.powi(t as i32), 1.0 - ADAM_BETA2.powi(t as i32));
    for i in 0..params.len() {
        m[i] = ADAM_BETA1 * m[i] + (1.0 - ADAM_BETA1) * grads[i];
        v[i] = ADAM_BETA2 * v[i] + (1.0 - ADAM_BETA2) * grads[i] * grads[i];
        params[i] -= lr * (m[i] / c1) / ((v[i] / c2).sqrt() + ADAM_EPSILON);
    }
}

// ---------------------------------------------------------------------------------------------
// The whole model.

/// Everything the forward pass computed, kept for the backward pass.
#[derive(Clone, Debug)]
pub struct Forward {
    /// Encoder trunk activations: [x, h1, h2, ...], each [B, width].
    pub encoder: Vec<Vec<f64>>,
    /// mu and logvar, [B, 2Z].
    pub ml: Vec<f64>,
    pub eps: Vec<f64>,
    /// Decoder activations: [z, g1, ..., outputs], each [L*B, width].
    pub decoder: Vec<Vec<f64>>,
    /// Per decoder row [L*B].
    pub recon_rows: Vec<f64>,
    /// Per datapoint [B].
    pub kl: Vec<f64>,
}

/// Losses of one batch, in nats per datapoint.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Losses {
    /// E_q[-log p(x|z)], averaged over the L samples and the batch.
    pub reconstruction: f64,
    pub kl: f64,
    /// reconstruction + beta * kl: what training minimises.
    pub loss: f64,
}

fn params_of<'a>(params: &'a [f64], l: &LinearLayout) -> (&'a [f64], &'a [f64]) {
    (&params[l.weight..l.weight + l.inputs * l.outputs], &params[l.bias..l.bias + l.outputs])
}

/// Forward pass on x [B, D] with noise eps [L*B, Z].
pub fn forward(config: &Config, layout: &Layout, params: &[f64], x: &[f64], eps: &[f64]) -> Forward {
    let (encoder, ml) = encode(config, layout, params, x);
    let (decoder, recon_rows, kl) = decode(config, layout, params, x, &ml, eps);
    Forward { encoder, ml, eps: eps.to_vec(), decoder, recon_rows, kl }
}

/// The encoder: x [B, D] -> (trunk activations [x, h1, ...], ml [B, 2Z]).
pub fn encode(config: &Config, layout: &Layout, params: &[f64], x: &[f64]) -> (Vec<Vec<f64>>, Vec<f64>) {
    let batch = x.len() / config.input;
    let mut encoder = vec![x.to_vec()];
    for l in &layout.encoder {
        let (w, b) = params_of(params, l);
        let h = linear_forward(encoder.last().unwrap(), w, b, batch, l.inputs, l.outputs, config.activation);
        encoder.push(h);
    }
    let (w, b) = params_of(params, &layout.head);
    let ml = linear_forward(encoder.last().unwrap(), w, b, batch, layout.head.inputs, layout.head.outputs, Activation::Identity);
    (encoder, ml)
}

/// From the encoder's outputs on: sample z, decode, and score.
/// Returns (decoder activations [z, g1, ..., outputs], recon per row [L*B], KL per datapoint [B]).
pub fn decode(config: &Config, layout: &Layout, params: &[f64], x: &[f64], ml: &[f64], eps: &[f64]) -> (Vec<Vec<f64>>, Vec<f64>, Vec<f64>) {
    let batch = x.len() / config.input;
    let rows = eps.len() / config.latent;
    let mut decoder = vec![reparameterize(ml, eps, batch, config.latent)];
    for (i, l) in layout.decoder.iter().enumerate() {
        let act = if i + 1 == layout.decoder.len() { Activation::Identity } else { config.activation };
        let (w, b) = params_of(params, l);
        let y = linear_forward(decoder.last().unwrap(), w, b, rows, l.inputs, l.outputs, act);
        decoder.push(y);
    }
    let (recon_rows, _) = reconstruction(decoder.last().unwrap(), x, batch, config.input, config.likelihood, 0.0);
    let kl = kl(ml, batch, config.latent);
    (decoder, recon_rows, kl)
}

impl Forward {
    pub fn losses(&self, beta: f64) -> Losses {
        let batch = self.kl.len() as f64;
        let reconstruction = self.recon_rows.iter().sum::<f64>() / self.recon_rows.len() as f64;
        let kl = self.kl.iter().sum::<f64>() / batch;
        Losses { reconstruction, kl, loss: reconstruction + beta * kl }
    }
}

/// Gradients of the training objective (mean over the batch and the L samples of
/// reconstruction + beta * KL) w.r.t. every parameter, in the flat layout; also d ml.
pub fn backward(config: &Config, layout: &Layout, params: &[f64], x: &[f64], fwd: &Forward) -> (Vec<f64>, Vec<f64>) {
    let batch = x.len() / config.input;
    let rows = fwd.eps.len() / config.latent;
    let mut grads = vec![0.0; layout.len];
    let mut put = |l: &LinearLayout, dw: Vec<f64>, db: Vec<f64>| {
        grads[l.weight..l.weight + dw.len()].copy_from_slice(&dw);
        grads[l.bias..l.bias + db.len()].copy_from_slice(&db);
    };
    // Decoder, output layer first. dz is the gradient w.r.t. the current layer's pre-activation.
    let (_, mut dz) = reconstruction(fwd.decoder.last().unwrap(), x, batch, config.input, config.likelihood, 1.0 / rows as f64);
    for (i, l) in layout.decoder.iter().enumerate().rev() {
        let input = &fwd.decoder[i];
        let (dw, db) = linear_backward_weight(input, &dz, rows, l.inputs, l.outputs);
        put(l, dw, db);
        let act_of_input = if i == 0 { Activation::Identity } else { config.activation };
        dz = linear_backward_input(&dz, params_of(params, l).0, input, rows, l.inputs, l.outputs, act_of_input);
    }
    let dml = latent_backward(&fwd.ml, &fwd.eps, &dz, batch, config.latent, config.beta as f64 / batch as f64);
    // Encoder: heads, then the trunk.
    let mut dz = dml.clone();
    let n = layout.encoder.len();
    for (i, l) in std::iter::once(&layout.head).chain(layout.encoder.iter().rev()).enumerate() {
        let input = &fwd.encoder[n - i];
        let (dw, db) = linear_backward_weight(input, &dz, batch, l.inputs, l.outputs);
        put(l, dw, db);
        if i < n {
            dz = linear_backward_input(&dz, params_of(params, l).0, input, batch, l.inputs, l.outputs, config.activation);
        }
    }
    (grads, dml)
}

/// Noise for one training step: eps [L*B, Z] keyed by (seed, step, row, dim).
pub fn step_eps(config: &Config, step: u32, batch: usize) -> Vec<f64> {
    let rows = batch * config.samples;
    let mut e = vec![0.0; rows * config.latent];
    for r in 0..rows {
        for j in 0..config.latent {
            e[r * config.latent + j] = eps(config.seed, step, r as u32, j as u32);
        }
    }
    e
}

/// A CPU trainer with the GPU trainer's semantics, for parity tests.
#[derive(Clone, Debug)]
pub struct Trainer {
    pub config: Config,
    pub layout: Layout,
    pub params: Vec<f64>,
    pub m: Vec<f64>,
    pub v: Vec<f64>,
    /// Steps taken so far.
    pub step: u32,
}

impl Trainer {
    pub fn new(config: Config, params: &[f32]) -> Trainer {
        let layout = Layout::new(&config);
        let n = layout.len;
        Trainer { config, layout, params: params.iter().map(|&p| p as f64).collect(), m: vec![0.0; n], v: vec![0.0; n], step: 0 }
    }

    /// One step of Adam on the batch x [B, D]; returns the batch's losses before the update.
    pub fn step(&mut self, x: &[f64]) -> Losses {
        let batch = x.len() / self.config.input;
        let eps = step_eps(&self.config, self.step, batch);
        let fwd = forward(&self.config, &self.layout, &self.params, x, &eps);
        let (grads, _) = backward(&self.config, &self.layout, &self.params, x, &fwd);
        self.step += 1;
        adam(&mut self.params, &grads, &mut self.m, &mut self.v, self.step, self.config.learning_rate as f64);
        fwd.losses(self.config.beta as f64)
    }
}
