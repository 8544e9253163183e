//! The CPU trainer, for browsers without WebGPU (and, where there is one, for comparison): the
//! same model, batches, noise and Adam as the GPU trainer, in f32 on the CPU, behind the same
//! API (`backend::Backend` puts the two behind one interface).
//!
//! What costs time is the products: linear layers, and convolutions as products with patch
//! matrices (im2col). They go through matrixmultiply's sgemm (packed, cache-blocked), which
//! has a wasm simd128 kernel (`.cargo/config.toml` switches simd128 on) and AVX/FMA kernels
//! natively. The per-element stages between them (sampling z, the KL, the loss, and their
//! gradients; a few percent of a step) run the oracle's own f64 code from `ops::latent`,
//! `ops::categorical` and `ops::loss` on converted values: that math has one definition,
//! checked against finite differences.
//!
//! Threads: the products, the convolutions' datapoints, the loss and Adam are split across
//! rayon's pool (natively every core; in the browser the Web Workers of the `threads` build,
//! where the page is cross-origin isolated, and otherwise one thread). Every split keeps each
//! value's own arithmetic as one thread does it (rows of a product, datapoints, taps of a
//! weight gradient; never a sum cut in two), so training gives the same bits on any number of
//! threads.

pub mod elementwise;
pub mod graph;

use rayon::prelude::*;

use crate::checkpoint::OptimizerState;
use crate::data::{epoch_permutation, Dataset};
use crate::latent::{self, Encoding};
use crate::model::{activation_before, initial_parameters, Activation, Config, LatentType, Layer, LayerLayout, Layout};
use crate::ops::categorical::{self, Mode};
use crate::ops::conv::Geometry;
use crate::ops::loss::{self, Statistic};
use crate::ops::{latent as gaussian, optim};
use crate::reference;
use crate::rng::{EVAL_RNG_STEP, IWAE_RNG_STEP};
use crate::training::{check_model_and_data, Evaluation, Metrics, TrainError, IWAE_ROWS, PASS_ROWS};

/// A VAE training on the CPU.
pub struct CpuTrainer {
    config: Config,
    layout: Layout,
    params: Vec<f32>,
    grads: Vec<f32>,
    /// Adam's first and second moments.
    m: Vec<f32>,
    v: Vec<f32>,
    train: Dataset,
    test: Dataset,
    steps_per_epoch: u32,
    step: u32,
    /// The epoch whose order `order` holds.
    order: (u32, Vec<u32>),
    /// Since the last `metrics`: sums of reconstruction and KL, datapoints, steps, sum of losses.
    totals: [f64; 5],
    diverged: Option<u32>,
}

impl std::fmt::Debug for CpuTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuTrainer").field("config", &self.config).field("step", &self.step).finish_non_exhaustive()
    }
}

/// What a forward pass samples for z.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sampling {
    /// Training: eps, or relaxed Gumbel-softmax samples at the step's temperature.
    Train,
    /// Evaluation and the bound: eps, or one-hot samples.
    Exact,
    /// Reconstructions: z = mu, or the class probabilities.
    Mean,
}

/// One forward pass, kept for the backward pass.
struct Forward {
    /// [x, output of each encoder layer].
    encoder: Vec<Vec<f32>>,
    /// The heads' output: mu and logvar [B, 2Z], or the logits [B, Z].
    ml: Vec<f32>,
    /// eps or Gumbel noise [rows, Z].
    noise: Vec<f64>,
    /// [z, output of each decoder layer].
    decoder: Vec<Vec<f32>>,
    /// KL per datapoint [B].
    kl: Vec<f64>,
}

impl CpuTrainer {
    /// A freshly initialised model (the GPU trainer's initial parameters) on these datasets.
    pub fn new(config: Config, train: &Dataset, test: &Dataset) -> Result<CpuTrainer, TrainError> {
        check_model_and_data(&config, train, test)?;
        let layout = Layout::new(&config);
        let params = initial_parameters(&config, &layout, Some(&train.mean_image()));
        let n = layout.len;
        Ok(CpuTrainer {
            steps_per_epoch: (train.count / config.batch_size) as u32,
            order: (0, epoch_permutation(train.count, config.seed, 0)),
            params,
            grads: vec![0.0; n],
            m: vec![0.0; n],
            v: vec![0.0; n],
            train: train.clone(),
            test: test.clone(),
            step: 0,
            totals: [0.0; 5],
            diverged: None,
            config,
            layout,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Steps taken so far.
    pub fn step(&self) -> u32 {
        self.step
    }

    /// Completed epochs (plus a fraction: step / steps per epoch).
    pub fn epoch(&self) -> f64 {
        self.step as f64 / self.steps_per_epoch as f64
    }

    pub fn steps_per_epoch(&self) -> u32 {
        self.steps_per_epoch
    }

    pub fn test_count(&self) -> usize {
        self.test.count
    }

    /// Takes `n` training steps (and returns when they are done). A non-finite loss stops
    /// training before that step's update: the weights stay the last good ones.
    pub fn train(&mut self, n: u32) -> Result<(), TrainError> {
        in_pool(|| {
            for _ in 0..n {
                if let Some(step) = self.diverged {
                    return Err(TrainError::Diverged { step });
                }
                self.train_step();
            }
            Ok(())
        })
    }

    /// One step of Adam on the step's batch, as the GPU takes it.
    fn train_step(&mut self) {
        let (batch, pixels) = (self.config.batch_size, self.config.pixels());
        let x = step_batch(&self.train, &mut self.order, self.config.seed, self.step, self.steps_per_epoch, batch);
        let rows = batch * self.config.samples;

        let fwd = self.forward(&x, batch, rows, self.step, Sampling::Train);
        let (x64, out64) = (widen(&x), widen(fwd.decoder.last().unwrap()));
        let (recon, dout) = loss::reconstruction(&out64, &x64, batch, pixels, self.config.likelihood, 1.0 / rows as f64);
        let (recon_sum, kl_sum) = (recon.iter().sum::<f64>() / self.config.samples as f64, fwd.kl.iter().sum::<f64>());
        let loss = (recon_sum + self.config.beta as f64 * kl_sum) / batch as f64;
        if !loss.is_finite() {
            self.diverged = Some(self.step);
            return;
        }
        for (t, v) in self.totals.iter_mut().zip([recon_sum, kl_sum, batch as f64, 1.0, loss]) {
            *t += v;
        }

        // Backward: decoder, latent, heads, encoder (the input x needs no gradient).
        // Taken out while the layers borrow the parameters (and put back before Adam).
        let mut grads = std::mem::take(&mut self.grads);
        let dz = self.stack_backward(&self.layout.decoder, &fwd.decoder, narrow(&dout), rows, true, &mut grads);
        let (dz, ml64) = (widen(&dz), widen(&fwd.ml));
        let kl_weight = self.config.beta as f64 / batch as f64;
        let dml = match self.config.latent_type {
            LatentType::Gaussian {} => gaussian::backward(&ml64, &fwd.noise, &dz, batch, self.config.latent, kl_weight),
            LatentType::Categorical { classes, .. } => {
                let tau = self.config.latent_type.temperature(self.step) as f64;
                categorical::backward(&ml64, &widen(&fwd.decoder[0]), &dz, batch, classes, tau, kl_weight)
            }
        };
        let has_trunk_gradient = self.layout.encoder.iter().any(|l| !l.layer.is_view());
        let act = activation_before(&self.layout.encoder, self.layout.encoder.len(), Activation::Identity);
        let trunk = fwd.encoder.last().unwrap();
        let dtrunk = layer_backward(&self.layout.head, &self.params, trunk, &narrow(&dml), batch, act, has_trunk_gradient, &mut grads);
        if let Some(dtrunk) = dtrunk {
            self.stack_backward(&self.layout.encoder, &fwd.encoder, dtrunk, batch, false, &mut grads);
        }
        self.grads = grads;

        self.step += 1;
        adam(&mut self.params, &self.grads, &mut self.m, &mut self.v, self.step, self.config.learning_rate);
    }

    /// The encoder, z and the decoder on images x [batch, D], with `rows` = samples x batch
    /// decoder rows and the noise of RNG step `rng_step`.
    fn forward(&self, x: &[f32], batch: usize, rows: usize, rng_step: u32, sampling: Sampling) -> Forward {
        let encoder = run(&self.layout.encoder, &self.params, x.to_vec(), batch);
        let ml = layer_forward(&self.layout.head, &self.params, encoder.last().unwrap(), batch);
        let (z, noise, kl) = self.sample(&ml, batch, rows, rng_step, sampling);
        let decoder = run(&self.layout.decoder, &self.params, z, rows);
        Forward { encoder, ml, noise, decoder, kl }
    }

    /// z [rows, Z] from the heads' output, the noise it used, and the KL per datapoint.
    fn sample(&self, ml: &[f32], batch: usize, rows: usize, rng_step: u32, sampling: Sampling) -> (Vec<f32>, Vec<f64>, Vec<f64>) {
        let ml64 = widen(ml);
        // Means need no noise, only its shape.
        let noise = match sampling {
            Sampling::Mean => vec![0.0; rows * self.config.code_len()],
            _ => reference::noise(&self.config, rng_step, rows),
        };
        let latent = self.config.latent;
        let (z, kl) = match self.config.latent_type {
            LatentType::Gaussian {} => {
                let z = match sampling {
                    Sampling::Mean => ml.chunks(2 * latent).flat_map(|r| &r[..latent]).copied().collect(),
                    _ => narrow(&gaussian::reparameterize(&ml64, &noise, batch, latent)),
                };
                (z, gaussian::kl(&ml64, batch, latent))
            }
            LatentType::Categorical { classes, .. } => {
                let (mode, tau) = match sampling {
                    Sampling::Train => (Mode::Relaxed, self.config.latent_type.temperature(rng_step) as f64),
                    Sampling::Exact => (Mode::OneHot, 1.0),
                    Sampling::Mean => (Mode::Probabilities, 1.0),
                };
                (narrow(&categorical::sample(&ml64, &noise, batch, classes, mode, tau)), categorical::kl(&ml64, batch, classes))
            }
        };
        (z, noise, kl)
    }

    /// Backward through `layers` from dz (w.r.t. the last layer's pre-activation), writing
    /// their gradients; returns the gradient w.r.t. the stack's input (empty when
    /// `input_gradient` is false).
    fn stack_backward(&self, layers: &[LayerLayout], acts: &[Vec<f32>], mut dz: Vec<f32>, rows: usize, input_gradient: bool, grads: &mut [f32]) -> Vec<f32> {
        for i in (0..layers.len()).rev() {
            // dX is needed if anything before this layer computes (or the input wants it).
            let wanted = input_gradient || layers[..i].iter().any(|l| !l.layer.is_view());
            let act = activation_before(layers, i, Activation::Identity);
            match layer_backward(&layers[i], &self.params, &acts[i], &dz, rows, act, wanted, grads) {
                Some(dx) => dz = dx,
                None => return Vec::new(),
            }
        }
        dz
    }

    /// Averages of the training losses since the last call.
    pub async fn metrics(&mut self) -> Result<Metrics, TrainError> {
        if let Some(step) = self.diverged {
            return Err(TrainError::Diverged { step });
        }
        let [recon, kl, points, steps, loss] = std::mem::take(&mut self.totals);
        Ok(Metrics {
            steps: steps as u32,
            reconstruction: recon / points.max(1.0),
            kl: kl / points.max(1.0),
            loss: loss / steps.max(1.0),
            total_steps: self.step,
            epoch: self.step / self.steps_per_epoch,
        })
    }

    /// The test set's negative ELBO (beta = 1), one sample of z per datapoint with the GPU's
    /// evaluation noise (and its batches, which the noise is keyed by).
    pub async fn evaluate(&mut self) -> Result<Evaluation, TrainError> {
        let (recon, kl) = in_pool(|| {
            let (mut recon, mut kl) = (0.0, 0.0);
            for (x, n) in test_batches(&self.test, self.config.batch_size) {
                let fwd = self.forward(&x, n, n, EVAL_RNG_STEP, Sampling::Exact);
                recon += self.reconstruction(&fwd, &x, n).iter().sum::<f64>();
                kl += fwd.kl.iter().sum::<f64>();
            }
            (recon, kl)
        });
        let count = self.test.count.max(1) as f64;
        let (reconstruction, kl) = (recon / count, kl / count);
        Ok(Evaluation { reconstruction, kl, nelbo: reconstruction + kl })
    }

    /// The importance-weighted estimate of -log p(x) on the test set with k samples per
    /// datapoint (Burda et al.); k = 1 is the ELBO.
    pub async fn importance_weighted_nll(&mut self, k: usize) -> Result<f64, TrainError> {
        if !(1..=IWAE_ROWS).contains(&k) {
            return Err(crate::model::ConfigError { field: "k", message: format!("must be 1..={IWAE_ROWS}, got {k}") }.into());
        }
        let total = in_pool(|| self.importance_weighted_sum(k));
        Ok(total / self.test.count.max(1) as f64)
    }

    /// The sum over the test set of each datapoint's importance-weighted bound.
    fn importance_weighted_sum(&self, k: usize) -> f64 {
        let mut total = 0.0;
        for (x, n) in test_batches(&self.test, (IWAE_ROWS / k).max(1)) {
            let fwd = self.forward(&x, n, n * k, IWAE_RNG_STEP, Sampling::Exact);
            let recon = self.reconstruction(&fwd, &x, n);
            let ml = widen(&fwd.ml);
            total += match self.config.latent_type {
                LatentType::Gaussian {} => gaussian::importance_weighted(&ml, &fwd.noise, &recon, n, self.config.latent),
                LatentType::Categorical { classes, .. } => categorical::importance_weighted(&ml, &widen(&fwd.decoder[0]), &recon, n, classes),
            };
        }
        total
    }

    /// -log p(x|z) per decoder row.
    fn reconstruction(&self, fwd: &Forward, x: &[f32], batch: usize) -> Vec<f64> {
        let out = widen(fwd.decoder.last().unwrap());
        loss::reconstruction(&out, &widen(x), batch, self.config.pixels(), self.config.likelihood, 0.0).0
    }

    /// q(z|x) for images x [n, input] in [0, 1].
    pub async fn encode(&mut self, x: &[f32]) -> Result<Encoding, TrainError> {
        let (latent, pixels) = (self.config.latent, self.config.pixels());
        let ml = self.in_chunks(x, pixels, |t, chunk, n| t.heads(chunk, n))?;
        Ok(match self.config.latent_type {
            LatentType::Gaussian {} => Encoding::Gaussian {
                mu: ml.chunks(2 * latent).flat_map(|r| &r[..latent]).copied().collect(),
                logvar: ml.chunks(2 * latent).flat_map(|r| &r[latent..]).copied().collect(),
            },
            LatentType::Categorical { classes, .. } => Encoding::Categorical { probabilities: latent::class_probabilities(&ml, classes) },
        })
    }

    /// The encoder and heads on images x [n, D]: mu and logvar [n, 2Z], or the logits.
    fn heads(&self, x: &[f32], n: usize) -> Vec<f32> {
        let acts = run(&self.layout.encoder, &self.params, x.to_vec(), n);
        layer_forward(&self.layout.head, &self.params, acts.last().unwrap(), n)
    }

    /// Images decoded from codes z [n, Z]: p(x|z)'s means.
    pub async fn decode(&mut self, z: &[f32]) -> Result<Vec<f32>, TrainError> {
        self.decoded(z, true, Statistic::Mean)
    }

    /// p(x|z)'s per-pixel standard deviations for codes z [n, Z].
    pub async fn decode_std(&mut self, z: &[f32]) -> Result<Vec<f32>, TrainError> {
        self.decoded(z, true, Statistic::Std)
    }

    /// Reconstructions of images x [n, input], decoded at their codes (mu, or the class
    /// probabilities).
    pub async fn reconstruct(&mut self, x: &[f32]) -> Result<Vec<f32>, TrainError> {
        self.decoded(x, false, Statistic::Mean)
    }

    /// The reconstructions' per-pixel standard deviations.
    pub async fn reconstruct_std(&mut self, x: &[f32]) -> Result<Vec<f32>, TrainError> {
        self.decoded(x, false, Statistic::Std)
    }

    /// Decoder outputs from codes (`from_codes`) or from images (through the encoder at
    /// z = its mean), as images of `statistic`.
    fn decoded(&self, input: &[f32], from_codes: bool, statistic: Statistic) -> Result<Vec<f32>, TrainError> {
        let width = if from_codes { self.config.code_len() } else { self.config.pixels() };
        let out = self.in_chunks(input, width, |t, chunk, n| {
            let z = if from_codes { chunk.to_vec() } else { t.sample(&t.heads(chunk, n), n, n, 0, Sampling::Mean).0 };
            run(&t.layout.decoder, &t.params, z, n).pop().unwrap()
        })?;
        Ok(loss::images(self.config.likelihood, &out, self.config.pixels(), statistic))
    }

    /// `pass` over rows of `width` values, at most `PASS_ROWS` rows at a time.
    fn in_chunks(&self, input: &[f32], width: usize, pass: impl Fn(&Self, &[f32], usize) -> Vec<f32> + Sync) -> Result<Vec<f32>, TrainError> {
        if input.is_empty() || !input.len().is_multiple_of(width) {
            return Err(TrainError::Data(format!("expected rows of {width} values, got {} values", input.len())));
        }
        Ok(in_pool(|| input.chunks(PASS_ROWS * width).flat_map(|chunk| pass(self, chunk, chunk.len() / width)).collect()))
    }

    /// `n` codes from the prior: z ~ N(0, I), or a uniformly random class per variable.
    pub fn prior_codes(&self, n: usize, seed: u32) -> Vec<f32> {
        latent::model_prior_codes(&self.config, n, seed)
    }

    /// The parameters, in the flat layout of `layout()`.
    pub async fn parameters(&self) -> Result<Vec<f32>, TrainError> {
        Ok(self.params.clone())
    }

    /// The gradients of the last training step, in the flat layout of `layout()`.
    pub async fn gradients(&self) -> Result<Vec<f32>, TrainError> {
        Ok(self.grads.clone())
    }

    /// Replaces the parameters (and restarts Adam's moments), e.g. from a checkpoint.
    pub fn set_parameters(&mut self, params: &[f32]) -> Result<(), TrainError> {
        let zeros = vec![0.0; self.layout.len];
        self.resume(params, &OptimizerState { m: zeros.clone(), v: zeros, step: self.step })
    }

    /// Adam's state and this trainer's step count, for a checkpoint that resumes exactly.
    pub async fn optimizer_state(&self) -> Result<OptimizerState, TrainError> {
        Ok(OptimizerState { m: self.m.clone(), v: self.v.clone(), step: self.step })
    }

    /// Replaces the parameters and Adam's state and continues from the state's step.
    pub fn resume(&mut self, params: &[f32], state: &OptimizerState) -> Result<(), TrainError> {
        crate::training::check_state(self.layout.len, params, state)?;
        self.params = params.to_vec();
        self.m = state.m.clone();
        self.v = state.v.clone();
        self.step = state.step;
        self.diverged = None;
        Ok(())
    }
}

/// The images of training step `step`'s batch, in the order of its epoch (`order` holds the
/// epoch whose order it is, and is replaced when the step is in another).
fn step_batch(train: &Dataset, order: &mut (u32, Vec<u32>), seed: u32, step: u32, steps_per_epoch: u32, batch: usize) -> Vec<f32> {
    let epoch = step / steps_per_epoch;
    if order.0 != epoch {
        *order = (epoch, epoch_permutation(train.count, seed, epoch));
    }
    let start = (step % steps_per_epoch) as usize * batch;
    order.1[start..start + batch].iter().flat_map(|&i| train.image(i as usize)).collect()
}

/// The test set in batches of at most `batch`: (images, count).
fn test_batches(test: &Dataset, batch: usize) -> impl Iterator<Item = (Vec<f32>, usize)> + '_ {
    (0..test.count).step_by(batch).map(move |start| {
        let n = batch.min(test.count - start);
        ((start..start + n).flat_map(|i| test.image(i)).collect(), n)
    })
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.par_iter().with_min_len(PARALLEL_MIN_WORK).map(|&v| v as f64).collect()
}

fn narrow(v: &[f64]) -> Vec<f32> {
    v.par_iter().with_min_len(PARALLEL_MIN_WORK).map(|&v| v as f32).collect()
}

/// Adam in f32, as the GPU's kernel computes it (`shaders/optim.wgsl`).
fn adam(params: &mut [f32], grads: &[f32], m: &mut [f32], v: &mut [f32], t: u32, lr: f32) {
    let (b1, b2, eps) = (optim::ADAM_BETA1 as f32, optim::ADAM_BETA2 as f32, optim::ADAM_EPSILON as f32);
    let (c1, c2) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32));
    let part = params.len().div_ceil(parts(params.len())).max(1);
    let parts = params.par_chunks_mut(part).zip(grads.par_chunks(part)).zip(m.par_chunks_mut(part)).zip(v.par_chunks_mut(part));
    parts.for_each(|(((params, grads), m), v)| {
        for (((p, &g), m), v) in params.iter_mut().zip(grads).zip(m.iter_mut()).zip(v.iter_mut()) {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *p -= lr * (*m / c1) / ((*v / c2).sqrt() + eps);
        }
    });
}

/// Runs `op` as a task of rayon's pool with the pool's other threads kept awake until it ends:
/// each takes the parts of `op`'s parallel work as they appear, rather than sleeping between
/// them and being woken for each (which in a browser costs about as much as a small product).
/// A training step alternates short serial stretches with many parallel ones.
///
/// A keeper waits for `op` to end, so none may run beneath a pass that is not finished: on the
/// pass's own thread (which, waiting for a part it handed out, may pick up any queued task), or
/// anywhere while another pass shares the pool (tests run trainers side by side: a keeper taken
/// up inside a part of one pass would hold that pass until the other ends). So a keeper ends
/// at once on a thread inside a pass, and as soon as a second pass is running; the pool then
/// works as rayon alone does. (Within one pass, its keepers are queued before any of its parts
/// and other threads take the oldest first, so no keeper is taken up inside a part.)
fn in_pool<R: Send>(op: impl FnOnce() -> R + Send) -> R {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    static PASSES: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static IN_PASS: Cell<bool> = const { Cell::new(false) });
    let done = AtomicBool::new(false);
    PASSES.fetch_add(1, Ordering::AcqRel);
    let result = rayon::scope(|s| {
        for _ in 1..rayon::current_num_threads() {
            s.spawn(|_| {
                while !done.load(Ordering::Acquire) && !IN_PASS.get() && PASSES.load(Ordering::Acquire) == 1 {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        // Not at once again: looking for work touches the queues `op` uses.
                        (0..64).for_each(|_| std::hint::spin_loop());
                    }
                }
            });
        }
        let outer = IN_PASS.replace(true);
        let result = op();
        IN_PASS.set(outer);
        done.store(true, Ordering::Release);
        result
    });
    PASSES.fetch_sub(1, Ordering::AcqRel);
    result
}

/// Work (multiply-adds, or elements touched) below which splitting does not pay: waking the
/// pool's threads costs tens of microseconds in a browser.
const PARALLEL_MIN_WORK: usize = 1 << 16;

/// How many parts to split `work` into: one per thread, or one if it is too small to share.
/// (A product split finer would pack its shared operand once more per part.)
fn parts(work: usize) -> usize {
    if work < PARALLEL_MIN_WORK {
        1
    } else {
        rayon::current_num_threads()
    }
}

// ---------------------------------------------------------------------------------------------
// The layers in f32. Shapes as in `ops`: x [rows, input], y [rows, output], W and b at the
// layer's offsets in the flat parameter buffer.

/// Runs `layers` on `rows` rows: [input, output of each layer].
fn run(layers: &[LayerLayout], params: &[f32], input: Vec<f32>, rows: usize) -> Vec<Vec<f32>> {
    let mut acts = vec![input];
    for l in layers {
        let y = layer_forward(l, params, acts.last().unwrap(), rows);
        acts.push(y);
    }
    acts
}

fn weights<'a>(params: &'a [f32], l: &LayerLayout) -> (&'a [f32], &'a [f32]) {
    let (w, b, _) = l.parameter_sizes().expect("a layer with parameters");
    (&params[l.weight..l.weight + w], &params[l.bias..l.bias + b])
}

/// One layer's forward pass: act(layer(x)). Each part of the work adds the bias and applies
/// the activation to its rows (or datapoints) as soon as its product is done, while they are
/// in cache.
fn layer_forward(l: &LayerLayout, params: &[f32], x: &[f32], rows: usize) -> Vec<f32> {
    let (inner, cols) = (l.input.len(), l.output.len());
    let (w, b) = match l.layer {
        Layer::Flatten {} | Layer::Reshape { .. } => return x.to_vec(),
        _ => weights(params, l),
    };
    let act = l.activation();
    let mut y = vec![0.0; rows * cols];
    // y [rows, cols] = x [rows, inner] W^T.
    match l.layer {
        Layer::Linear { .. } => par_gemm(rows, inner, cols, (x, inner, 1), (w, 1, inner), &mut y, |_, y| bias_and_activation(y, b, 1, act)),
        Layer::Conv2d { .. } => {
            let g = Geometry::of(l);
            down(&g, x, w, rows, &mut y, |_, y| bias_and_activation(y, b, g.sh * g.sw, act));
        }
        _ => {
            let g = Geometry::of(l);
            up(&g, x, w, rows, &mut y, |_, y| bias_and_activation(y, b, g.lh * g.lw, act));
        }
    }
    y
}

/// y = act(y + b) for whole rows or datapoints of y, whose channels are `per_channel` values each.
fn bias_and_activation(y: &mut [f32], b: &[f32], per_channel: usize, act: Activation) {
    for (i, chunk) in y.chunks_mut(per_channel).enumerate() {
        let bias = b[i % b.len()];
        chunk.iter_mut().for_each(|v| *v = apply(act, *v + bias));
    }
}

/// One layer's backward pass from dz (w.r.t. its pre-activation): writes dW and db into
/// `grads`, and returns dL/d(the previous pre-activation) = dL/dx * act_of_x'(x) if
/// `input_gradient`. The weights' gradients and the input's are computed side by side.
#[allow(clippy::too_many_arguments)]
fn layer_backward(l: &LayerLayout, params: &[f32], x: &[f32], dz: &[f32], rows: usize, act_of_x: Activation, input_gradient: bool, grads: &mut [f32]) -> Option<Vec<f32>> {
    let (inner, cols) = (l.input.len(), l.output.len());
    let Some((wn, bn, _)) = l.parameter_sizes() else {
        return input_gradient.then(|| dz.to_vec());
    };
    let w = &params[l.weight..l.weight + wn];
    let (dw, db) = (l.weight..l.weight + wn, l.bias..l.bias + bn);
    let mut dx = vec![0.0; if input_gradient { rows * inner } else { 0 }];
    // dL/dx's rows (or datapoints) from `first` on, times act_of_x'(x).
    let derivative = |first: usize, dx: &mut [f32]| {
        if act_of_x != Activation::Identity {
            dx.iter_mut().zip(&x[first * inner..]).for_each(|(d, &x)| *d *= act_of_x.derivative_from_output(x as f64) as f32);
        }
    };
    let input = |dx: &mut Vec<f32>| match l.layer {
        // dx [rows, inner] = dz W.
        Layer::Linear { .. } => par_gemm(rows, cols, inner, (dz, cols, 1), (w, inner, 1), dx, derivative),
        Layer::Conv2d { .. } => up(&Geometry::of(l), dz, w, rows, dx, derivative),
        _ => down(&Geometry::of(l), dz, w, rows, dx, derivative),
    };
    let weights = |grads: &mut [f32]| match l.layer {
        Layer::Linear { .. } => {
            // dW [cols, inner] = dz^T x; db = column sums.
            par_gemm(cols, rows, inner, (dz, 1, cols), (x, inner, 1), &mut grads[dw], |_, _| {});
            let db = &mut grads[db];
            db.fill(0.0);
            for row in dz.chunks(cols) {
                db.iter_mut().zip(row).for_each(|(s, &g)| *s += g);
            }
        }
        Layer::Conv2d { .. } => {
            let g = Geometry::of(l);
            weight(&g, dz, x, rows, &mut grads[dw]);
            channel_sums(dz, rows, g.sc, &mut grads[db]);
        }
        _ => {
            let g = Geometry::of(l);
            weight(&g, x, dz, rows, &mut grads[dw]);
            channel_sums(dz, rows, g.lc, &mut grads[db]);
        }
    };
    if !input_gradient {
        weights(grads);
        return None;
    }
    rayon::join(|| weights(grads), || input(&mut dx));
    Some(dx)
}

fn apply(act: Activation, z: f32) -> f32 {
    match act {
        Activation::Identity => z,
        Activation::Relu => z.max(0.0),
        Activation::Tanh => z.tanh(),
    }
}

/// A matrix operand of `gemm`: (values, row stride, column stride).
type Strided<'a> = (&'a [f32], usize, usize);

/// c [m, n] = a [m, k] b [k, n], or c += a b with `accumulate`; a transposed operand is the
/// same values with its strides swapped.
fn gemm(m: usize, k: usize, n: usize, a: Strided, b: Strided, c: &mut [f32], accumulate: bool) {
    let last = |(v, rs, cs): Strided, rows: usize, cols: usize| {
        assert!(rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < v.len(), "operand out of bounds");
    };
    last(a, m, k);
    last(b, k, n);
    assert!(c.len() >= m * n, "result out of bounds");
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the checks above keep every element sgemm reads or writes inside the slices
    // (strides are positive; c is [m, n] row-major), and c does not alias a or b (&mut).
    unsafe {
        matrixmultiply::sgemm(
            m, k, n, 1.0,
            a.0.as_ptr(), a.1 as isize, a.2 as isize,
            b.0.as_ptr(), b.1 as isize, b.2 as isize,
            if accumulate { 1.0 } else { 0.0 },
            c.as_mut_ptr(), n as isize, 1,
        );
    }
}

/// c [m, n] = a [m, k] b [k, n] with c's rows split across the pool, then `then(first row,
/// those rows of c)` on each part: each row is computed exactly as `gemm` computes it alone
/// (sgemm's blocking follows k, not m).
fn par_gemm(m: usize, k: usize, n: usize, a: Strided, b: Strided, c: &mut [f32], then: impl Fn(usize, &mut [f32]) + Sync) {
    if m == 0 || n == 0 {
        return;
    }
    let part = m.div_ceil(parts(m * k * n)).max(1);
    let (values, rs, cs) = a;
    c[..m * n].par_chunks_mut(part * n).enumerate().for_each(|(i, c)| {
        gemm(c.len() / n, k, n, (&values[i * part * rs..], rs, cs), b, c, false);
        then(i * part, c);
    });
}

// Convolutions as products with patch matrices (see `ops::conv` for the geometry). For one
// datapoint, P [lc k k, sh sw] holds the large side's value under each tap of each small
// position (0 in the padding). Then, with W [sc, lc k k]:
//   down    S = W P
//   up      L = patches^T(W^T S)   (the patch matrix scattered back)
//   weight  dW = sum over datapoints of S P^T

/// Rows `taps` of the patch matrix of one datapoint's large side, into `p` ([taps, sh sw],
/// reused across datapoints).
fn patches(g: &Geometry, large: &[f32], taps: std::ops::Range<usize>, p: &mut [f32]) {
    let (ss, ls) = (g.sh * g.sw, g.lh * g.lw);
    p.fill(0.0);
    for (tap, row) in taps.zip(p.chunks_mut(ss)) {
        let (cl, ky, kx) = (tap / (g.k * g.k), tap / g.k % g.k, tap % g.k);
        for y in 0..g.sh {
            for x in 0..g.sw {
                if let Some(pix) = g.tap(y, x, ky, kx) {
                    row[y * g.sw + x] = large[cl * ls + pix];
                }
            }
        }
    }
}

/// Adds a patch matrix back into one datapoint's large side: the transpose of `patches`.
fn add_patches(g: &Geometry, p: &[f32], large: &mut [f32]) {
    let (ss, ls) = (g.sh * g.sw, g.lh * g.lw);
    for cl in 0..g.lc {
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = &p[((cl * g.k + ky) * g.k + kx) * ss..][..ss];
                for y in 0..g.sh {
                    for x in 0..g.sw {
                        if let Some(pix) = g.tap(y, x, ky, kx) {
                            large[cl * ls + pix] += row[y * g.sw + x];
                        }
                    }
                }
            }
        }
    }
}

/// `each(index, input, output, scratch)` for each of `rows` datapoints of `input` and `output`
/// (`in_len` and `out_len` values each), the datapoints split across the pool; `scratch` is a
/// buffer of `scratch_len` values, one per part, reused across its datapoints.
fn per_datapoint(input: (&[f32], usize), output: (&mut [f32], usize), rows: usize, scratch_len: usize, work: usize, each: impl Fn(usize, &[f32], &mut [f32], &mut [f32]) + Sync) {
    let ((input, in_len), (output, out_len)) = (input, output);
    // Four parts per thread: datapoints share nothing, and a thread slowed by another (the
    // browser's own threads share the cores) leaves parts to the rest.
    let part = match parts(rows * work) {
        1 => rows.max(1),
        n => rows.div_ceil(4 * n).max(1),
    };
    let inputs = input[..rows * in_len].par_chunks(part * in_len);
    output[..rows * out_len].par_chunks_mut(part * out_len).zip(inputs).enumerate().for_each(|(p, (output, input))| {
        let mut scratch = vec![0.0; scratch_len];
        for (j, (i, o)) in input.chunks(in_len).zip(output.chunks_mut(out_len)).enumerate() {
            each(p * part + j, i, o, &mut scratch);
        }
    });
}

/// small [rows, S] = down(large [rows, L]), then `then(datapoint, its small side)`.
fn down(g: &Geometry, large: &[f32], w: &[f32], rows: usize, small: &mut [f32], then: impl Fn(usize, &mut [f32]) + Sync) {
    let (taps, ss) = (g.lc * g.k * g.k, g.sh * g.sw);
    per_datapoint((large, g.large_len()), (small, g.small_len()), rows, taps * ss, g.sc * taps * ss, |i, l, s, p| {
        patches(g, l, 0..taps, p);
        gemm(g.sc, taps, ss, (w, taps, 1), (p, ss, 1), s, false);
        then(i, s);
    });
}

/// large [rows, L] = up(small [rows, S]) (`large` starts at zero), then `then(datapoint, its
/// large side)`.
fn up(g: &Geometry, small: &[f32], w: &[f32], rows: usize, large: &mut [f32], then: impl Fn(usize, &mut [f32]) + Sync) {
    let (taps, ss) = (g.lc * g.k * g.k, g.sh * g.sw);
    per_datapoint((small, g.small_len()), (large, g.large_len()), rows, taps * ss, g.sc * taps * ss, |i, s, l, p| {
        gemm(taps, g.sc, ss, (w, 1, taps), (s, ss, 1), p, false);
        add_patches(g, p, l);
        then(i, l);
    });
}

/// dW [sc, lc k k] = weight(small, large), summed over the rows. The taps (dW's columns) are
/// split across the pool, each part summing over every datapoint in order, so each value is
/// the same sum whatever the split.
fn weight(g: &Geometry, small: &[f32], large: &[f32], rows: usize, dw: &mut [f32]) {
    let (taps, ss) = (g.lc * g.k * g.k, g.sh * g.sw);
    let part = taps.div_ceil(parts(rows * g.sc * taps * ss)).max(1);
    let blocks: Vec<(usize, Vec<f32>)> = (0..taps)
        .into_par_iter()
        .step_by(part)
        .map(|t0| {
            let t = t0..(t0 + part).min(taps);
            let (mut p, mut block) = (vec![0.0; t.len() * ss], vec![0.0; g.sc * t.len()]);
            for (s, l) in small.chunks(g.small_len()).zip(large.chunks(g.large_len())).take(rows) {
                patches(g, l, t.clone(), &mut p);
                gemm(g.sc, ss, t.len(), (s, ss, 1), (&p, 1, ss), &mut block, true);
            }
            (t0, block)
        })
        .collect();
    for (t0, block) in blocks {
        let width = block.len() / g.sc;
        for (row, values) in dw.chunks_mut(taps).zip(block.chunks(width)) {
            row[t0..t0 + width].copy_from_slice(values);
        }
    }
}

/// Per-channel sums of t [rows, channels, pixels] into `sums`.
fn channel_sums(t: &[f32], rows: usize, channels: usize, sums: &mut [f32]) {
    let pixels = t.len() / (rows * channels).max(1);
    sums.fill(0.0);
    for (i, chunk) in t.chunks(pixels).enumerate() {
        sums[i % channels] += chunk.iter().sum::<f32>();
    }
}
