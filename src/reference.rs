//! The CPU oracle: the whole model as plain loops in f64, a loop over the layers using each op
//! family's reference (`ops::*`), plus one whole training step. Nothing here is fast;
//! everything here is plainly right. The GPU kernels (f32) are checked against it, and it is
//! checked against finite differences.
//!
//! Shapes: B = batch, L = latent samples per datapoint, D = pixels, Z = code length (latent
//! dimensions, or variables x classes). Rows of decoder tensors are ordered l * B + b
//! (sample-major), as on the GPU.

pub mod graph;

use crate::model::{activation_before, Activation, Config, LatentType, LayerLayout, Layout};
use crate::ops::categorical::{self, Mode};
use crate::ops::{self, latent, loss, optim};
use crate::rng::{EVAL_RNG_STEP, IWAE_RNG_STEP};

/// Everything the forward pass computed, kept for the backward pass.
#[derive(Clone, Debug)]
pub struct Forward {
    /// Encoder activations: [x, output of layer 0, output of layer 1, ...], each [B, size].
    pub encoder: Vec<Vec<f64>>,
    /// The heads' output: mu and logvar [B, 2Z], or the logits [B, Z].
    pub ml: Vec<f64>,
    /// The noise: eps (Gaussian) or Gumbel (categorical), [L*B, Z].
    pub eps: Vec<f64>,
    /// The training step the noise and the temperature belong to.
    pub step: u32,
    /// Decoder activations: [z, output of layer 0, ..., outputs], each [L*B, size].
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

/// Forward pass of training step `step` on x [B, D] with noise eps [L*B, Z].
pub fn forward(config: &Config, layout: &Layout, params: &[f64], x: &[f64], eps: &[f64], step: u32) -> Forward {
    let (encoder, ml) = encode(config, layout, params, x);
    let (decoder, recon_rows, kl) = decode(config, layout, params, x, &ml, eps, step);
    Forward { encoder, ml, eps: eps.to_vec(), step, decoder, recon_rows, kl }
}

/// Runs `layers` on `rows` rows from `input`: [input, output of each layer].
fn run(layers: &[LayerLayout], params: &[f64], input: &[f64], rows: usize) -> Vec<Vec<f64>> {
    let mut acts = vec![input.to_vec()];
    for l in layers {
        let y = ops::layer_forward(l, params, acts.last().unwrap(), rows);
        acts.push(y);
    }
    acts
}

/// The encoder: x [B, D] -> (activations [x, ...], ml [B, 2Z]).
pub fn encode(config: &Config, layout: &Layout, params: &[f64], x: &[f64]) -> (Vec<Vec<f64>>, Vec<f64>) {
    let batch = x.len() / config.pixels();
    let encoder = run(&layout.encoder, params, x, batch);
    let ml = ops::layer_forward(&layout.head, params, encoder.last().unwrap(), batch);
    (encoder, ml)
}

/// From the encoder's outputs on: sample z (relaxed, for categorical latents, at step `step`'s
/// temperature), decode, and score.
/// Returns (decoder activations [z, ..., outputs], recon per row [L*B], KL per datapoint [B]).
pub fn decode(config: &Config, layout: &Layout, params: &[f64], x: &[f64], ml: &[f64], eps: &[f64], step: u32) -> (Vec<Vec<f64>>, Vec<f64>, Vec<f64>) {
    let batch = x.len() / config.pixels();
    let rows = eps.len() / config.code_len();
    let (z, kl) = match config.latent_type {
        LatentType::Gaussian {} => (latent::reparameterize(ml, eps, batch, config.latent), latent::kl(ml, batch, config.latent)),
        LatentType::Categorical { classes, .. } => {
            let tau = config.latent_type.temperature(step) as f64;
            (categorical::sample(ml, eps, batch, classes, Mode::Relaxed, tau), categorical::kl(ml, batch, classes))
        }
    };
    let decoder = run(&layout.decoder, params, &z, rows);
    let (recon_rows, _) = loss::reconstruction(decoder.last().unwrap(), x, batch, config.pixels(), config.likelihood, 0.0);
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

/// Backward through `layers` from dz = dL/d(pre-activation of the last layer's output), writing
/// their gradients into `grads`; returns dL/d(the stack's input).
fn run_backward(layers: &[LayerLayout], params: &[f64], acts: &[Vec<f64>], mut dz: Vec<f64>, rows: usize, grads: &mut [f64]) -> Vec<f64> {
    for i in (0..layers.len()).rev() {
        let act = activation_before(layers, i, Activation::Identity);
        dz = ops::layer_backward(&layers[i], params, &acts[i], &dz, rows, act, grads);
    }
    dz
}

/// Gradients of the training objective (mean over the batch and the L samples of
/// reconstruction + beta * KL) w.r.t. every parameter, in the flat layout; also d ml.
pub fn backward(config: &Config, layout: &Layout, params: &[f64], x: &[f64], fwd: &Forward) -> (Vec<f64>, Vec<f64>) {
    let batch = x.len() / config.pixels();
    let rows = fwd.eps.len() / config.code_len();
    let mut grads = vec![0.0; layout.len];
    let (_, dout) = loss::reconstruction(fwd.decoder.last().unwrap(), x, batch, config.pixels(), config.likelihood, 1.0 / rows as f64);
    let dz = run_backward(&layout.decoder, params, &fwd.decoder, dout, rows, &mut grads);
    let kl_weight = config.beta as f64 / batch as f64;
    let dml = match config.latent_type {
        LatentType::Gaussian {} => latent::backward(&fwd.ml, &fwd.eps, &dz, batch, config.latent, kl_weight),
        LatentType::Categorical { classes, .. } => {
            let tau = config.latent_type.temperature(fwd.step) as f64;
            categorical::backward(&fwd.ml, &fwd.decoder[0], &dz, batch, classes, tau, kl_weight)
        }
    };
    // The heads' input is the encoder's output, made by the encoder's last computing layer.
    let act = activation_before(&layout.encoder, layout.encoder.len(), Activation::Identity);
    let dtrunk = ops::layer_backward(&layout.head, params, fwd.encoder.last().unwrap(), &dml, batch, act, &mut grads);
    run_backward(&layout.encoder, params, &fwd.encoder, dtrunk, batch, &mut grads);
    (grads, dml)
}

/// Noise for one training step, [L*B, Z] keyed by (seed, step, row, dim): standard normal eps,
/// or Gumbel noise for categorical latents.
pub fn step_eps(config: &Config, step: u32, batch: usize) -> Vec<f64> {
    noise(config, step, batch * config.samples)
}

/// The noise of `rows` decoder rows at RNG step `rng_step` (a training step, or one of
/// `rng`'s evaluation steps), [rows, Z].
pub fn noise(config: &Config, rng_step: u32, rows: usize) -> Vec<f64> {
    let z = config.code_len();
    let draw = match config.latent_type {
        LatentType::Gaussian {} => latent::eps,
        LatentType::Categorical { .. } => categorical::gumbel,
    };
    (0..rows * z).map(|i| draw(config.seed, rng_step, (i / z) as u32, (i % z) as u32)).collect()
}

/// The test set's (reconstruction, KL) in nats per image, as the trainers' `evaluate` computes
/// them: `images` [n, D] in batches of `batch` in order (the last one partial), one sample of z
/// per image with the noise of RNG step `EVAL_RNG_STEP` (rows numbered within each batch), and
/// categorical latents sampled one-hot (the discrete ELBO).
pub fn evaluate(config: &Config, layout: &Layout, params: &[f64], images: &[f64], batch: usize) -> (f64, f64) {
    let (mut reconstruction, mut kl) = (0.0, 0.0);
    for x in images.chunks(batch * config.pixels()) {
        let (recon_rows, kls, _, _) = exact_pass(config, layout, params, x, 1, EVAL_RNG_STEP);
        reconstruction += recon_rows.iter().sum::<f64>();
        kl += kls.iter().sum::<f64>();
    }
    let n = (images.len() / config.pixels()).max(1) as f64;
    (reconstruction / n, kl / n)
}

/// The importance-weighted estimate of -log p(x) (Burda et al.) with `k` samples per image, as
/// the trainers compute it: batches of 2048 / k images, noise of RNG step `IWAE_RNG_STEP`.
pub fn importance_weighted_nll(config: &Config, layout: &Layout, params: &[f64], images: &[f64], k: usize) -> f64 {
    let batch = (crate::training::IWAE_ROWS / k).max(1);
    let mut total = 0.0;
    for x in images.chunks(batch * config.pixels()) {
        let n = x.len() / config.pixels();
        let (recon_rows, _, ml, z) = exact_pass(config, layout, params, x, k, IWAE_RNG_STEP);
        total += match config.latent_type {
            LatentType::Gaussian {} => {
                let eps = noise(config, IWAE_RNG_STEP, n * k);
                latent::importance_weighted(&ml, &eps, &recon_rows, n, config.latent)
            }
            LatentType::Categorical { classes, .. } => categorical::importance_weighted(&ml, &z, &recon_rows, n, classes),
        };
    }
    total / (images.len() / config.pixels()).max(1) as f64
}

/// One evaluation pass over x [B, D] with `k` samples per image (exact: z from the Gaussian,
/// or one-hot classes): (reconstruction per decoder row [k*B], KL per image [B], the heads'
/// output, z [k*B, Z]).
fn exact_pass(config: &Config, layout: &Layout, params: &[f64], x: &[f64], k: usize, rng_step: u32) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let batch = x.len() / config.pixels();
    let (_, ml) = encode(config, layout, params, x);
    let eps = noise(config, rng_step, batch * k);
    let (z, kl) = match config.latent_type {
        LatentType::Gaussian {} => (latent::reparameterize(&ml, &eps, batch, config.latent), latent::kl(&ml, batch, config.latent)),
        LatentType::Categorical { classes, .. } => {
            (categorical::sample(&ml, &eps, batch, classes, Mode::OneHot, 1.0), categorical::kl(&ml, batch, classes))
        }
    };
    let decoder = run(&layout.decoder, params, &z, batch * k);
    let (recon_rows, _) = loss::reconstruction(decoder.last().unwrap(), x, batch, config.pixels(), config.likelihood, 0.0);
    (recon_rows, kl, ml, z)
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
        let batch = x.len() / self.config.pixels();
        let eps = step_eps(&self.config, self.step, batch);
        let fwd = forward(&self.config, &self.layout, &self.params, x, &eps, self.step);
        let (grads, _) = backward(&self.config, &self.layout, &self.params, x, &fwd);
        self.step += 1;
        optim::adam(&mut self.params, &grads, &mut self.m, &mut self.v, self.step, self.config.learning_rate as f64);
        fwd.losses(self.config.beta as f64)
    }
}
