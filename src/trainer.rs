//! The GPU trainer: the one owner of GPU state. It holds the dataset, the parameters, Adam's
//! moments and every activation on the device, and drives a training step as one list of
//! dispatches recorded many times into one command buffer. Nothing crosses to the CPU while
//! training; metrics accumulate on the GPU and are read back when asked for.

pub mod graph;

use std::fmt;

use crate::checkpoint::OptimizerState;
use crate::data::{epoch_permutation, Dataset};
use crate::gpu::{Gpu, GpuError};
use crate::kernels::{pack_slots, storage_buffer, Buffers, Dispatch, Kernel, KernelShape, Kernels, Records, PARTS_CAPACITY, StepRecord, UNIFORM_SLOT};
use crate::latent::{self, Encoding};
use crate::model::{activation_before, initial_parameters, Activation, Config, ConfigError, LatentType, Layer, LayerLayout, Layout};
use crate::ops::categorical::{CategoricalOp, Mode};
use crate::ops::{self, data::GatherOp, latent::LatentOp, loss::{LossOp, Statistic}, optim::OptimOp};
use crate::rng::{EVAL_RNG_STEP, IWAE_RNG_STEP};
use crate::training::{check_model_and_data, check_state, Evaluation, Metrics, TrainError, IWAE_ROWS, PASS_ROWS};

/// Steps whose records fit in the step ring: the most steps one submission can hold.
pub const STEP_SLOTS: u32 = 256;
/// Record slots in the ops buffer (plans are cached; the cache is rebuilt when full).
const OP_SLOTS: u32 = 1024;
// The metrics buffer (f32): a flag, then three accumulators of 5 values:
// [sum of reconstruction, sum of KL, datapoints, batches, sum of per-batch loss]; each is
// followed by the KL of the one group (`accumulate` writes it; nothing reads it here).
const DIVERGED: usize = 0;
const TRAIN_METRICS: u32 = 4;
const EVAL_METRICS: u32 = 12;
const IWAE_METRICS: u32 = 20;
const METRICS_LEN: usize = 28;

/// Where each tensor of one pass lives in `acts`, for `batch` datapoints and `rows` decoder rows.
/// A view (flatten, reshape) has no tensor of its own: its output, and its gradient, are its
/// input's.
#[derive(Clone, Debug, PartialEq)]
struct Acts {
    x: usize,
    /// Outputs of the encoder's layers, and their gradients (w.r.t. pre-activations).
    enc: Vec<usize>,
    d_enc: Vec<usize>,
    ml: usize,
    eps: usize,
    z: usize,
    /// Outputs of the decoder's layers (the last is the decoder's output), and their gradients.
    dec: Vec<usize>,
    d_dec: Vec<usize>,
    recon: usize,
    kl: usize,
    /// Gradients of z and of ml.
    dz: usize,
    dml: usize,
    /// Scratch for one linear layer's dy, transposed (the vec4 dX kernel reads it).
    dyt: usize,
    /// Scratch for split products' parts (the hardware kernel shape): (offset, capacity).
    parts: Option<(u32, u32)>,
    len: usize,
}

/// Gives no tensor: the encoder's input has no gradient.
const NO_TENSOR: usize = usize::MAX;

impl Acts {
    fn new(config: &Config, layout: &Layout, batch: usize, rows: usize, shape: KernelShape) -> Acts {
        // Every tensor starts on a 16-byte boundary, so the vec4 matmuls can read it.
        let mut len = 0;
        let mut take = |n: usize| {
            let at = len;
            len = (len + n).next_multiple_of(4);
            at
        };
        let (z_len, heads) = (config.code_len(), config.latent_type.head_len(config.latent));
        let x = take(batch * config.pixels());
        let (enc, d_enc) = Acts::stack(&layout.encoder, batch, (x, NO_TENSOR), &mut take);
        let ml = take(batch * heads);
        let eps = take(rows * z_len);
        let z = take(rows * z_len);
        let dz = take(rows * z_len);
        let (dec, d_dec) = Acts::stack(&layout.decoder, rows, (z, dz), &mut take);
        let recon = take(rows);
        let kl = take(batch);
        let dml = take(batch * heads);
        let widest = layout.layers().filter(|l| matches!(l.layer, Layer::Linear { .. })).map(|l| l.output.len()).max().unwrap_or(0);
        let dyt = take(rows.max(batch) * widest);
        let parts = (shape == KernelShape::Hardware).then(|| (take(PARTS_CAPACITY as usize) as u32, PARTS_CAPACITY));
        Acts { x, enc, d_enc, ml, eps, z, dec, d_dec, recon, kl, dz, dml, dyt, parts, len }
    }

    /// Output and gradient offsets of each layer of a stack whose input (and its gradient) is at
    /// `input`.
    fn stack(layers: &[LayerLayout], rows: usize, input: (usize, usize), take: &mut impl FnMut(usize) -> usize) -> (Vec<usize>, Vec<usize>) {
        let (mut out, mut grad) = (Vec::new(), Vec::new());
        let mut at = input;
        for l in layers {
            if !l.layer.is_view() {
                at = (take(rows * l.output.len()), take(rows * l.output.len()));
            }
            out.push(at.0);
            grad.push(at.1);
        }
        (out, grad)
    }

    /// (output, gradient) of the tensor feeding layer i of the encoder.
    fn encoder_input(&self, i: usize) -> (usize, usize) {
        if i == 0 { (self.x, NO_TENSOR) } else { (self.enc[i - 1], self.d_enc[i - 1]) }
    }

    fn decoder_input(&self, i: usize) -> (usize, usize) {
        if i == 0 { (self.z, self.dz) } else { (self.dec[i - 1], self.d_dec[i - 1]) }
    }

    /// The encoder's output: the heads' input.
    fn trunk(&self) -> (usize, usize) {
        self.encoder_input(self.enc.len())
    }
}

/// What a plan computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// Forward, backward, metrics, Adam.
    Train,
    /// Forward with sampled z, accumulating reconstruction and KL (beta = 1).
    Evaluate,
    /// Forward with k samples per datapoint, accumulating the importance-weighted bound.
    ImportanceWeighted,
    /// x (uploaded) -> mu, logvar.
    Encode,
    /// z (uploaded) -> decoder outputs.
    Decode,
    /// x (uploaded) -> decoder outputs at z = mu.
    Reconstruct,
}

#[derive(Clone, Debug)]
struct Plan {
    pass: Pass,
    batch: usize,
    rows: usize,
    acts: Acts,
    dispatches: Vec<Dispatch>,
}

/// The device side both GPU trainers share (this one and `graph::GraphTrainer`): the buffers
/// and pipelines, the ops buffer's record slots, and submission.
pub(crate) struct Engine {
    pub gpu: Gpu,
    pub kernels: Kernels,
    pub buffers: Buffers,
    bind_group: wgpu::BindGroup,
    /// Floats the acts buffer holds.
    acts_capacity: usize,
    /// Record slots of the ops buffer taken by cached plans.
    ops_used: u32,
    metrics_len: usize,
}

impl Engine {
    /// Uploads the parameters (Adam's moments zero, `adam_len` each), the images (`pixels`, one
    /// byte each) and their `indices` (the first epoch's order, then the test images), with an
    /// acts buffer of `acts_len` floats and a metrics buffer of `metrics_len`.
    pub fn new(gpu: Gpu, params: &[f32], adam_len: usize, acts_len: usize, pixels: &[u8], indices: &[u32], metrics_len: usize) -> Engine {
        let device = &gpu.device;
        let buffers = Buffers {
            params: storage_buffer(device, "params", bytes_of_f32(params)),
            grads: storage_buffer(device, "grads", bytes_of_f32(&vec![0f32; params.len()])),
            acts: storage_buffer(device, "acts", bytes_of_f32(&vec![0f32; acts_len])),
            moments: storage_buffer(device, "moments", bytes_of_f32(&vec![0f32; 2 * adam_len])),
            data: storage_buffer(device, "data", bytemuck::cast_slice(&pack_bytes(pixels))),
            indices: storage_buffer(device, "indices", bytemuck::cast_slice(indices)),
            metrics: storage_buffer(device, "metrics", bytes_of_f32(&vec![0f32; metrics_len])),
            ops: uniform(device, "ops", OP_SLOTS),
            steps: uniform(device, "steps", STEP_SLOTS),
        };
        let kernels = Kernels::new(device, gpu.shape);
        let bind_group = kernels.bind_group(device, &buffers);
        Engine { kernels, bind_group, acts_capacity: acts_len, buffers, ops_used: 0, metrics_len, gpu }
    }

    /// Writes a new plan's records into the ops buffer after those of the plans cached so far,
    /// and grows the acts buffer to `acts_len` floats if it is smaller. Returns the plan's
    /// dispatches, and `true` if the buffer was full and the cached plans' records were
    /// overwritten: the caller then drops its cached plans.
    pub fn place(&mut self, records: Records, acts_len: usize) -> (Vec<Dispatch>, bool) {
        if acts_len > self.acts_capacity {
            // Plans hold offsets only, so a bigger scratch buffer invalidates nothing.
            self.buffers.acts = storage_buffer(&self.gpu.device, "acts", bytes_of_f32(&vec![0f32; acts_len]));
            self.acts_capacity = acts_len;
            self.bind_group = self.kernels.bind_group(&self.gpu.device, &self.buffers);
        }
        let full = self.ops_used + records.dispatches.len() as u32 > OP_SLOTS;
        if full {
            self.ops_used = 0;
        }
        let base = self.ops_used;
        let bytes = pack_slots(records.bytes.iter().map(Vec::as_slice));
        self.gpu.queue.write_buffer(&self.buffers.ops, base as u64 * UNIFORM_SLOT, &bytes);
        self.ops_used += records.dispatches.len() as u32;
        let dispatches = records
            .dispatches
            .into_iter()
            .enumerate()
            .map(|(i, mut d)| {
                d.record = (base + i as u32) * UNIFORM_SLOT as u32;
                d
            })
            .collect();
        (dispatches, full)
    }

    /// Writes the step records and records `plan` once per step, in one submission.
    pub fn submit(&self, plan: &[Dispatch], steps: &[StepRecord]) {
        let ring = pack_slots(steps.iter().map(bytemuck::bytes_of));
        self.gpu.queue.write_buffer(&self.buffers.steps, 0, &ring);
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for i in 0..steps.len() {
                self.kernels.record(&mut pass, &self.bind_group, plan, i as u32 * UNIFORM_SLOT as u32);
            }
        }
        self.gpu.queue.submit([encoder.finish()]);
    }

    /// Reads the whole metrics buffer, then zeroes the `len` accumulators at `region` and,
    /// with `clear_flag`, the divergence flag, in the same submission.
    pub async fn read_metrics_region(&self, region: usize, len: usize, clear_flag: bool) -> Result<Vec<f32>, GpuError> {
        let buffer = &self.buffers.metrics;
        self.gpu
            .read_f32_then(buffer, 0, self.metrics_len, |encoder| {
                encoder.clear_buffer(buffer, region as u64 * 4, Some(len as u64 * 4));
                if clear_flag {
                    encoder.clear_buffer(buffer, 0, Some(4));
                }
            })
            .await
    }

    /// Uploads an epoch's order of the training images.
    pub fn write_order(&self, order: &[u32]) {
        self.gpu.queue.write_buffer(&self.buffers.indices, 0, bytemuck::cast_slice(order));
    }

    /// The largest pass whose acts fit one storage binding here, in floats.
    pub fn max_acts(&self) -> usize {
        self.gpu.device.limits().max_storage_buffer_binding_size as usize / 4
    }

    /// Writes the parameters and Adam's moments (m then v, each padded to whole vec4s).
    pub fn upload(&self, params: &[f32], moments: &[f32]) {
        self.gpu.queue.write_buffer(&self.buffers.params, 0, bytes_of_f32(params));
        self.gpu.queue.write_buffer(&self.buffers.moments, 0, bytes_of_f32(moments));
    }

    /// Adam's moments of `len` parameters, each padded to `adam_len` on the device, with the
    /// trainer's `step`.
    pub async fn optimizer_state(&self, len: usize, adam_len: usize, step: u32) -> Result<OptimizerState, GpuError> {
        let moments = self.gpu.read_f32(&self.buffers.moments, 0, 2 * adam_len).await?;
        Ok(OptimizerState { m: moments[..len].to_vec(), v: moments[adam_len..adam_len + len].to_vec(), step })
    }

    /// Writes the parameters and Adam's state (checked by `training::check_state`), its
    /// moments padded to `adam_len`.
    pub fn upload_state(&self, params: &[f32], state: &OptimizerState, adam_len: usize) {
        let len = params.len();
        let mut moments = vec![0f32; 2 * adam_len];
        moments[..len].copy_from_slice(&state.m);
        moments[adam_len..adam_len + len].copy_from_slice(&state.v);
        self.upload(params, &moments);
    }
}

/// A VAE training on the GPU.
pub struct Trainer {
    engine: Engine,
    config: Config,
    layout: Layout,
    plans: Vec<Plan>,
    train_count: usize,
    test_count: usize,
    steps_per_epoch: u32,
    step: u32,
    diverged: Option<u32>,
}

impl fmt::Debug for Trainer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trainer").field("config", &self.config).field("step", &self.step).finish_non_exhaustive()
    }
}

/// Parameters as Adam sees them: padded to whole vec4s (m and v each this long).
fn adam_len(layout: &Layout) -> usize {
    layout.len.next_multiple_of(4)
}

fn uniform(device: &wgpu::Device, label: &str, slots: u32) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: slots as u64 * UNIFORM_SLOT,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// The images of both sets as the device holds them (train then test), and the index buffer's
/// start: the first epoch's order, then the test images.
fn device_data(train: &Dataset, test: &Dataset, seed: u32) -> (Vec<u8>, Vec<u32>) {
    let mut indices = epoch_permutation(train.count, seed, 0);
    indices.extend(train.count as u32..(train.count + test.count) as u32);
    ([&train.pixels[..], &test.pixels[..]].concat(), indices)
}

/// Packs bytes 4 to a u32 (little-endian), padding with zeros.
fn pack_bytes(bytes: &[u8]) -> Vec<u32> {
    bytes.chunks(4).map(|c| c.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | (b as u32) << (8 * i))).collect()
}

fn bytes_of_f32(v: &[f32]) -> &[u8] {
    bytemuck::cast_slice(v)
}

impl Trainer {
    /// Uploads the datasets and freshly initialised parameters. The configuration is checked
    /// on its own terms and against the device's limits before anything is allocated.
    pub fn new(gpu: Gpu, config: Config, train: &Dataset, test: &Dataset) -> Result<Trainer, TrainError> {
        check_model_and_data(&config, train, test)?;
        let layout = Layout::new(&config);
        let acts = Acts::new(&config, &layout, config.batch_size, config.batch_size * config.samples, gpu.shape);
        check_limits(&gpu.device.limits(), gpu.shape, &config, &layout, &acts, train, test)?;

        let params = initial_parameters(&config, &layout, Some(&train.mean_image()));
        let (pixels, indices) = device_data(train, test, config.seed);
        let engine = Engine::new(gpu, &params, adam_len(&layout), acts.len, &pixels, &indices, METRICS_LEN);
        Ok(Trainer {
            engine,
            plans: Vec::new(),
            train_count: train.count,
            test_count: test.count,
            steps_per_epoch: (train.count / config.batch_size) as u32,
            step: 0,
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

    pub fn gpu(&self) -> &Gpu {
        &self.engine.gpu
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
        self.test_count
    }

    /// Dispatches in one training step.
    pub fn dispatches_per_step(&mut self) -> usize {
        let (b, l) = (self.config.batch_size, self.config.samples);
        self.plan(Pass::Train, b, b * l).dispatches.len()
    }

    /// How many pipelines this trainer has built so far (each when a pass first needs it).
    pub fn pipelines_built(&self) -> usize {
        self.engine.kernels.built()
    }

    /// Builds the pipelines this model's training step and test-set evaluation dispatch, and
    /// waits until the device has them, so that the first step times training rather than
    /// compiling (the views' passes build theirs as they first run: see `Kernels`).
    pub async fn prepare(&mut self) -> Result<(), TrainError> {
        let (b, l) = (self.config.batch_size, self.config.samples);
        for (pass, rows) in [(Pass::Train, b * l), (Pass::Evaluate, b)] {
            let kernels: Vec<Kernel> = self.plan(pass, b, rows).dispatches.iter().map(|d| d.kernel).collect();
            self.engine.kernels.prepare(kernels);
        }
        Ok(self.engine.gpu.finish().await?)
    }

    /// The image indices of training step `step`'s batch (what the GPU gathers).
    pub fn batch_indices(config: &Config, train_count: usize, step: u32) -> Vec<u32> {
        let per_epoch = (train_count / config.batch_size) as u32;
        let order = epoch_permutation(train_count, config.seed, step / per_epoch);
        let start = (step % per_epoch) as usize * config.batch_size;
        order[start..start + config.batch_size].to_vec()
    }

    /// Encodes and submits `n` training steps without waiting for them. Many steps go into one
    /// command buffer; the epoch's order is uploaded when an epoch begins.
    pub fn train(&mut self, n: u32) -> Result<(), TrainError> {
        self.engine.gpu.check()?;
        if let Some(step) = self.diverged {
            return Err(TrainError::Diverged { step });
        }
        let (b, l) = (self.config.batch_size, self.config.samples);
        let plan = self.plan(Pass::Train, b, b * l).dispatches.clone();
        let mut remaining = n;
        while remaining > 0 {
            let in_epoch = self.step % self.steps_per_epoch;
            // Epoch 0's order was uploaded with the data; chunks never cross an epoch's end.
            if in_epoch == 0 && self.step > 0 {
                let order = epoch_permutation(self.train_count, self.config.seed, self.step / self.steps_per_epoch);
                self.engine.write_order(&order);
            }
            let chunk = remaining.min(STEP_SLOTS).min(self.steps_per_epoch - in_epoch);
            let records: Vec<StepRecord> = (0..chunk)
                .map(|i| StepRecord { t: self.step + i + 1, rng_step: self.step + i, batch_start: (in_epoch + i) * b as u32 })
                .collect();
            self.engine.submit(&plan, &records);
            self.step += chunk;
            remaining -= chunk;
        }
        Ok(())
    }

    /// For the benchmark: each dispatch of the training step, submitted `repeats` times on its
    /// own and timed with `now` (milliseconds): (dispatch, milliseconds per dispatch). Repeating
    /// Adam and friends leaves the model in no useful state; use a throwaway trainer.
    pub async fn profile_step(&mut self, repeats: u32, now: impl Fn() -> f64) -> Result<Vec<(Dispatch, f64)>, TrainError> {
        let (b, l) = (self.config.batch_size, self.config.samples);
        let plan = self.plan(Pass::Train, b, b * l).dispatches.clone();
        let records = vec![StepRecord { t: 1, rng_step: 0, batch_start: 0 }; repeats as usize];
        let mut times = Vec::with_capacity(plan.len());
        for d in &plan {
            self.engine.submit(std::slice::from_ref(d), &records[..1]);
            self.engine.gpu.finish().await?;
            let t0 = now();
            self.engine.submit(std::slice::from_ref(d), &records);
            self.engine.gpu.finish().await?;
            times.push((*d, (now() - t0) / repeats as f64));
        }
        Ok(times)
    }

    /// Averages of the training losses since the last call (waits for the GPU to get there).
    /// A non-finite loss puts the trainer in the diverged state and returns `Diverged`.
    pub async fn metrics(&mut self) -> Result<Metrics, TrainError> {
        let m = self.engine.read_metrics_region(TRAIN_METRICS as usize, 5, true).await?;
        if m[DIVERGED] != 0.0 {
            self.diverged = Some(self.step);
        }
        if let Some(step) = self.diverged {
            return Err(TrainError::Diverged { step });
        }
        let t = &m[TRAIN_METRICS as usize..];
        let (points, batches) = (t[2].max(1.0) as f64, t[3].max(1.0) as f64);
        Ok(Metrics {
            steps: t[3] as u32,
            reconstruction: t[0] as f64 / points,
            kl: t[1] as f64 / points,
            loss: t[4] as f64 / batches,
            total_steps: self.step,
            epoch: self.step / self.steps_per_epoch,
        })
    }

    /// The test set's negative ELBO (beta = 1), one sample of z per datapoint with fixed noise.
    pub async fn evaluate(&mut self) -> Result<Evaluation, TrainError> {
        self.run_over_test_set(Pass::Evaluate, 1).await?;
        let m = self.engine.read_metrics_region(EVAL_METRICS as usize, 5, false).await?;
        let e = &m[EVAL_METRICS as usize..];
        let n = e[2].max(1.0) as f64;
        let (reconstruction, kl) = (e[0] as f64 / n, e[1] as f64 / n);
        Ok(Evaluation { reconstruction, kl, nelbo: reconstruction + kl })
    }

    /// The importance-weighted estimate of -log p(x) on the test set, with k samples per
    /// datapoint (Burda et al.); k = 1 is the ELBO, and larger k gives a tighter bound.
    pub async fn importance_weighted_nll(&mut self, k: usize) -> Result<f64, TrainError> {
        if !(1..=IWAE_ROWS).contains(&k) {
            return Err(ConfigError { field: "k", message: format!("must be 1..={IWAE_ROWS}, got {k}") }.into());
        }
        self.run_over_test_set(Pass::ImportanceWeighted, k).await?;
        let m = self.engine.read_metrics_region(IWAE_METRICS as usize, 5, false).await?;
        let e = &m[IWAE_METRICS as usize..];
        Ok(e[0] as f64 / e[2].max(1.0) as f64)
    }

    /// Runs an evaluation pass over the test set in batches, `k` samples per datapoint.
    async fn run_over_test_set(&mut self, pass: Pass, k: usize) -> Result<(), TrainError> {
        let mut batch = if k == 1 { self.config.batch_size } else { (IWAE_ROWS / k).max(1) };
        // A batch's activations live in one buffer: halve the batch until they fit the device's
        // limit (a conv decoder's k samples of a digit take megabytes).
        let max = self.engine.max_acts();
        while batch > 1 && Acts::new(&self.config, &self.layout, batch, batch * k, self.engine.kernels.shape).len > max {
            batch /= 2;
        }
        if Acts::new(&self.config, &self.layout, batch, batch * k, self.engine.kernels.shape).len > max {
            let message = format!("{k} samples of one digit need more GPU memory than one buffer allows here; use a smaller k");
            return Err(ConfigError { field: "k", message }.into());
        }
        let rng_step = if pass == Pass::Evaluate { EVAL_RNG_STEP } else { IWAE_RNG_STEP };
        let mut start = 0;
        while start < self.test_count {
            let n = batch.min(self.test_count - start);
            let plan = self.plan(pass, n, n * k).dispatches.clone();
            // Each batch of n is a "step" with its own record, up to the ring's size per submission.
            let batches = ((self.test_count - start) / n).min(STEP_SLOTS as usize);
            let steps: Vec<StepRecord> = (0..batches)
                .map(|i| StepRecord { t: 0, rng_step, batch_start: (self.train_count + start + i * n) as u32 })
                .collect();
            self.engine.submit(&plan, &steps);
            start += steps.len() * n;
        }
        Ok(())
    }

    /// q(z|x) for images x [n, input] in [0, 1]: mu and log-variance [n, Z] each, or the class
    /// probabilities [n, N * K].
    pub async fn encode(&mut self, x: &[f32]) -> Result<Encoding, TrainError> {
        let (z, heads) = (self.config.latent, self.config.latent_type.head_len(self.config.latent));
        let out = self.run_pass(Pass::Encode, x, self.config.pixels(), |a| a.ml, heads).await?;
        Ok(match self.config.latent_type {
            LatentType::Gaussian {} => Encoding::Gaussian {
                mu: out.chunks(2 * z).flat_map(|r| &r[..z]).copied().collect(),
                logvar: out.chunks(2 * z).flat_map(|r| &r[z..]).copied().collect(),
            },
            LatentType::Categorical { classes, .. } => Encoding::Categorical { probabilities: latent::class_probabilities(&out, classes) },
        })
    }

    /// Images (pixel intensities in [0, 1]) decoded from latent codes z [n, Z]: p(x|z)'s means
    /// (`Statistic::Mean`).
    pub async fn decode(&mut self, z: &[f32]) -> Result<Vec<f32>, TrainError> {
        self.decoded(Pass::Decode, z, Statistic::Mean).await
    }

    /// p(x|z)'s per-pixel standard deviations for latent codes z [n, Z] (`Statistic::Std`):
    /// where the model is unsure of each pixel.
    pub async fn decode_std(&mut self, z: &[f32]) -> Result<Vec<f32>, TrainError> {
        self.decoded(Pass::Decode, z, Statistic::Std).await
    }

    /// Reconstructions of images x [n, input]: means decoded at their codes (mu, or the class
    /// probabilities).
    pub async fn reconstruct(&mut self, x: &[f32]) -> Result<Vec<f32>, TrainError> {
        self.decoded(Pass::Reconstruct, x, Statistic::Mean).await
    }

    /// The reconstructions' per-pixel standard deviations.
    pub async fn reconstruct_std(&mut self, x: &[f32]) -> Result<Vec<f32>, TrainError> {
        self.decoded(Pass::Reconstruct, x, Statistic::Std).await
    }

    /// Runs a decoding pass (Decode: input is z; Reconstruct: input is x) and turns the
    /// decoder's outputs into images of `statistic`.
    async fn decoded(&mut self, pass: Pass, input: &[f32], statistic: Statistic) -> Result<Vec<f32>, TrainError> {
        let (pixels, likelihood) = (self.config.pixels(), self.config.likelihood);
        let width = if pass == Pass::Decode { self.config.code_len() } else { pixels };
        let out = self.run_pass(pass, input, width, |a| *a.dec.last().unwrap(), likelihood.outputs_per_pixel() * pixels).await?;
        Ok(ops::loss::images(likelihood, &out, pixels, statistic))
    }

    /// Uploads `input` (rows of `width`) as the pass's x (z for Decode), runs the pass, and
    /// reads back `out_width` values per row from the tensor `output` picks; in chunks of at
    /// most `PASS_ROWS` rows, so the scratch buffer stays the size of a training batch.
    async fn run_pass(&mut self, pass: Pass, input: &[f32], width: usize, output: fn(&Acts) -> usize, out_width: usize) -> Result<Vec<f32>, TrainError> {
        if input.is_empty() || !input.len().is_multiple_of(width) {
            return Err(TrainError::Data(format!("expected rows of {width} values, got {} values", input.len())));
        }
        let mut out = Vec::with_capacity(input.len() / width * out_width);
        for chunk in input.chunks(PASS_ROWS * width) {
            let n = chunk.len() / width;
            let plan = self.plan(pass, n, n).clone();
            let at = if pass == Pass::Decode { plan.acts.z } else { plan.acts.x };
            self.engine.gpu.queue.write_buffer(&self.engine.buffers.acts, at as u64 * 4, bytes_of_f32(chunk));
            self.engine.submit(&plan.dispatches, &[StepRecord::default()]);
            out.extend(self.engine.gpu.read_f32(&self.engine.buffers.acts, output(&plan.acts), n * out_width).await?);
        }
        Ok(out)
    }

    /// `n` codes from the prior [n, code length]: z ~ N(0, I), or a uniformly random class per
    /// variable (one-hot); the same `seed` gives the same codes.
    pub fn prior_codes(&self, n: usize, seed: u32) -> Vec<f32> {
        latent::model_prior_codes(&self.config, n, seed)
    }

    /// `n` images decoded from `prior_codes(n, seed)`.
    pub async fn sample_prior(&mut self, n: usize, seed: u32) -> Result<Vec<f32>, TrainError> {
        let z = self.prior_codes(n, seed);
        self.decode(&z).await
    }

    /// The parameters, in the flat layout of `layout()`.
    pub async fn parameters(&self) -> Result<Vec<f32>, TrainError> {
        Ok(self.engine.gpu.read_f32(&self.engine.buffers.params, 0, self.layout.len).await?)
    }

    /// The gradients of the last training step, in the flat layout of `layout()`.
    pub async fn gradients(&self) -> Result<Vec<f32>, TrainError> {
        Ok(self.engine.gpu.read_f32(&self.engine.buffers.grads, 0, self.layout.len).await?)
    }

    /// Replaces the parameters (and restarts Adam's moments), e.g. from a checkpoint.
    pub fn set_parameters(&mut self, params: &[f32]) -> Result<(), TrainError> {
        self.upload(params, &vec![0f32; 2 * adam_len(&self.layout)])
    }

    /// Writes the parameters and Adam's moments (m then v, each padded to whole vec4s) and
    /// leaves the diverged state.
    fn upload(&mut self, params: &[f32], moments: &[f32]) -> Result<(), TrainError> {
        if params.len() != self.layout.len {
            return Err(TrainError::Data(format!("expected {} parameters, got {}", self.layout.len, params.len())));
        }
        self.engine.upload(params, moments);
        self.diverged = None;
        Ok(())
    }

    /// Adam's state: its moments and this trainer's step count, for a checkpoint that resumes
    /// exactly (`checkpoint::save_with_optimizer`, then `resume`).
    pub async fn optimizer_state(&self) -> Result<OptimizerState, TrainError> {
        Ok(self.engine.optimizer_state(self.layout.len, adam_len(&self.layout), self.step).await?)
    }

    /// Replaces the parameters and Adam's state and continues from the state's step: the
    /// same batches, noise and updates follow as if training had never stopped.
    pub fn resume(&mut self, params: &[f32], state: &OptimizerState) -> Result<(), TrainError> {
        check_state(self.layout.len, params, state)?;
        self.engine.upload_state(params, state, adam_len(&self.layout));
        self.diverged = None;
        self.step = state.step;
        let order = epoch_permutation(self.train_count, self.config.seed, self.step / self.steps_per_epoch);
        self.engine.write_order(&order);
        Ok(())
    }

    /// The cached plan for (pass, batch, rows), built (and its records written) if new.
    fn plan(&mut self, pass: Pass, batch: usize, rows: usize) -> &Plan {
        if let Some(i) = self.plans.iter().position(|p| p.pass == pass && p.batch == batch && p.rows == rows) {
            return &self.plans[i];
        }
        let acts = Acts::new(&self.config, &self.layout, batch, rows, self.engine.kernels.shape);
        let mut records = Records::new(self.engine.kernels.shape);
        records.parts_at = acts.parts;
        build_plan(&mut records, &self.config, &self.layout, &acts, pass, batch, rows);
        let (dispatches, full) = self.engine.place(records, acts.len);
        if full {
            self.plans.clear();
        }
        self.plans.push(Plan { pass, batch, rows, acts, dispatches });
        self.plans.last().unwrap()
    }
}

/// The useful floating-point operations of one training step of `config` (its products'
/// multiply-adds x 2, forward and backward; the element-wise kernels are not counted): what
/// the benchmark divides by time, on either device.
pub fn flops_per_step(config: &Config) -> f64 {
    step_dispatches(config, KernelShape::Software).iter().map(|d| d.flops).sum()
}

/// The dispatches of one training step of `config` in `shape`, in order (none for an invalid
/// configuration): what `make gpu-report` lists with their grids.
pub fn step_dispatches(config: &Config, shape: KernelShape) -> Vec<Dispatch> {
    let Ok(layout) = Layout::try_new(config) else { return Vec::new() };
    let (batch, rows) = (config.batch_size, config.batch_size * config.samples);
    let acts = Acts::new(config, &layout, batch, rows, shape);
    let mut rec = Records::new(shape);
    rec.parts_at = acts.parts;
    build_plan(&mut rec, config, &layout, &acts, Pass::Train, batch, rows);
    rec.dispatches
}

/// Refuses configurations the device cannot hold, naming the field to change.
fn check_limits(limits: &wgpu::Limits, shape: KernelShape, config: &Config, layout: &Layout, acts: &Acts, train: &Dataset, test: &Dataset) -> Result<(), ConfigError> {
    // Every dispatch of a training step must fit the grid's limit (the largest pass; the
    // evaluation passes use at most as many rows).
    let mut rec = Records::new(shape);
    rec.parts_at = acts.parts;
    let (batch, rows) = (config.batch_size, config.batch_size * config.samples);
    build_plan(&mut rec, config, layout, acts, Pass::Train, batch, rows);
    check_buffers_and_grid(limits, "encoder", adam_len(layout), acts.len, train, test, &rec.dispatches)
}

/// Refuses a model whose buffers or training step the device cannot hold: Adam's moments of
/// `adam_len` parameters (the largest parameter-shaped buffer; an error names `model_field`),
/// `acts_len` floats of one batch's activations, the images, and each of `step`'s grids.
fn check_buffers_and_grid(limits: &wgpu::Limits, model_field: &'static str, adam_len: usize, acts_len: usize, train: &Dataset, test: &Dataset, step: &[Dispatch]) -> Result<(), ConfigError> {
    let max = limits.max_storage_buffer_binding_size;
    let mb = |b: u64| b as f64 / (1 << 20) as f64;
    let moments = 2 * adam_len as u64 * 4;
    if moments > max {
        let message = format!("the model's parameters need {:.0} MB but this GPU allows {:.0} MB per buffer", mb(moments), mb(max));
        return Err(ConfigError { field: model_field, message });
    }
    let activations = acts_len as u64 * 4;
    if activations > max {
        let message = format!("one batch's activations need {:.0} MB but this GPU allows {:.0} MB per buffer; use a smaller batch", mb(activations), mb(max));
        return Err(ConfigError { field: "batch_size", message });
    }
    let data = (train.pixels.len() + test.pixels.len()) as u64;
    if data > max {
        let message = format!("the images need {:.0} MB but this GPU allows {:.0} MB per buffer", mb(data), mb(max));
        return Err(ConfigError { field: "data", message });
    }
    let limit = limits.max_compute_workgroups_per_dimension;
    if let Some(d) = step.iter().find(|d| d.groups.0.max(d.groups.1).max(d.groups.2) > limit) {
        let (x, y, z) = d.groups;
        let message = format!(
            "one step's {} dispatch needs {x}x{y}x{z} workgroups but this GPU allows {limit} per dimension; use a smaller batch or fewer samples",
            d.kernel.source().1
        );
        return Err(ConfigError { field: "batch_size", message });
    }
    Ok(())
}

/// Adds a stack's backward dispatches, last layer first. `input(i)` gives the tensor feeding
/// layer i and its gradient; a layer computes its dX only if a computing layer (or, for the
/// decoder, z) is there to receive it.
fn record_stack_backward(rec: &mut Records, layers: &[LayerLayout], rows: usize, input: impl Fn(usize) -> (usize, usize), d_out: &[usize], dyt: usize) {
    for i in (0..layers.len()).rev() {
        let (x, dx) = input(i);
        let dx = (dx != NO_TENSOR).then(|| (dx, activation_before(layers, i, Activation::Identity)));
        ops::record_layer_backward(rec, &layers[i], rows, x, d_out[i], dx, dyt);
    }
}

/// The latent layer's dispatches, Gaussian or categorical.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LatentStage {
    /// z from the heads' output: reparameterised (z = mu at Reconstruct), or relaxed samples
    /// (Train), one-hot samples (Evaluate, ImportanceWeighted), class probabilities (Reconstruct).
    Sample,
    /// d(heads) from dz and beta * KL (Train), and KL per datapoint (Train, Evaluate).
    Backward,
    /// The importance-weighted bound's per-row part: recon becomes -log w per row.
    ImportanceWeighted,
}

fn record_latent(rec: &mut Records, stage: LatentStage, config: &Config, a: &Acts, pass: Pass, batch: usize, rows: usize) {
    let kl_weight = if pass == Pass::Train { config.beta / batch as f32 } else { 0.0 };
    match config.latent_type {
        LatentType::Gaussian {} => {
            let op = LatentOp {
                batch: batch as u32,
                rows: rows as u32,
                latent: config.latent as u32,
                seed: config.seed,
                ml_off: a.ml as u32,
                eps_off: a.eps as u32,
                z_off: a.z as u32,
                dz_off: a.dz as u32,
                dml_off: a.dml as u32,
                kl_off: a.kl as u32,
                recon_off: a.recon as u32,
                kl_weight,
                use_mean: (pass == Pass::Reconstruct) as u32,
            };
            match stage {
                LatentStage::Sample => rec.push(Kernel::Reparameterize, op, op.per_element()),
                LatentStage::Backward => rec.push(Kernel::LatentBackward, op, op.per_datapoint()),
                LatentStage::ImportanceWeighted => rec.push(Kernel::LatentLogRatio, op, op.per_row()),
            }
        }
        LatentType::Categorical { classes, tau_start, tau_floor, tau_rate } => {
            let mode = match pass {
                Pass::Train => Mode::Relaxed,
                Pass::Reconstruct => Mode::Probabilities,
                _ => Mode::OneHot,
            };
            let op = CategoricalOp {
                batch: batch as u32,
                rows: rows as u32,
                variables: config.latent as u32,
                classes: classes as u32,
                seed: config.seed,
                logits_off: a.ml as u32,
                noise_off: a.eps as u32,
                y_off: a.z as u32,
                dy_off: a.dz as u32,
                dlogits_off: a.dml as u32,
                kl_off: a.kl as u32,
                recon_off: a.recon as u32,
                mode: mode as u32,
                kl_weight,
                tau_start,
                tau_floor,
                tau_rate,
            };
            match stage {
                LatentStage::Sample => rec.push(Kernel::GumbelSoftmax, op, op.per_variable()),
                LatentStage::Backward => rec.push(Kernel::CategoricalBackward, op, op.per_datapoint()),
                LatentStage::ImportanceWeighted => rec.push(Kernel::CategoricalLogRatio, op, op.per_row()),
            }
        }
    }
}

/// The dispatches of one pass, in order. Forward: gather, encoder layers, heads, reparameterise,
/// decoder layers, loss. Backward (training): decoder layers in reverse, latent, heads, encoder
/// layers in reverse. Then metrics and Adam.
fn build_plan(rec: &mut Records, config: &Config, layout: &Layout, a: &Acts, pass: Pass, batch: usize, rows: usize) {
    let d = config.pixels() as u32;

    // Forward.
    if matches!(pass, Pass::Train | Pass::Evaluate | Pass::ImportanceWeighted) {
        let op = GatherOp { rows: batch as u32, pixels: d, x_off: a.x as u32 };
        rec.push(Kernel::Gather, op, op.groups());
    }
    if pass != Pass::Decode {
        for (i, l) in layout.encoder.iter().enumerate() {
            ops::record_layer_forward(rec, l, batch, a.encoder_input(i).0, a.enc[i]);
        }
        ops::record_layer_forward(rec, &layout.head, batch, a.trunk().0, a.ml);
        if pass == Pass::Encode {
            return;
        }
        record_latent(rec, LatentStage::Sample, config, a, pass, batch, rows);
    }
    for (i, l) in layout.decoder.iter().enumerate() {
        ops::record_layer_forward(rec, l, rows, a.decoder_input(i).0, a.dec[i]);
    }
    if matches!(pass, Pass::Decode | Pass::Reconstruct) {
        return;
    }
    let loss = LossOp {
        out_off: *a.dec.last().unwrap() as u32,
        x_off: a.x as u32,
        grad_off: *a.d_dec.last().unwrap() as u32,
        recon_off: a.recon as u32,
        ..LossOp::new(config.likelihood, rows, d as usize, batch)
    };
    rec.push(Kernel::Reconstruction, loss, (rows as u32, 1, 1));

    let accumulate = |metrics_off: u32, check: u32, beta: f32| OptimOp {
        batch: batch as u32,
        rows: rows as u32,
        recon_off: a.recon as u32,
        kl_off: a.kl as u32,
        metrics_off,
        beta,
        check,
        groups: 1,
        ..Default::default()
    };
    match pass {
        Pass::Evaluate => {
            // The latent backward also yields KL per datapoint; with kl_weight 0 its gradients
            // are unused scratch.
            record_latent(rec, LatentStage::Backward, config, a, pass, batch, rows);
            rec.push(Kernel::Accumulate, accumulate(EVAL_METRICS, 0, 1.0), (1, 1, 1));
            return;
        }
        Pass::ImportanceWeighted => {
            record_latent(rec, LatentStage::ImportanceWeighted, config, a, pass, batch, rows);
            rec.push(Kernel::ImportanceWeighted, accumulate(IWAE_METRICS, 0, 1.0), (1, 1, 1));
            return;
        }
        _ => {}
    }

    // Backward: decoder, latent, heads, encoder.
    record_stack_backward(rec, &layout.decoder, rows, |i| a.decoder_input(i), &a.d_dec, a.dyt);
    record_latent(rec, LatentStage::Backward, config, a, pass, batch, rows);
    let (trunk, d_trunk) = a.trunk();
    let dx = (d_trunk != NO_TENSOR).then(|| (d_trunk, activation_before(&layout.encoder, layout.encoder.len(), Activation::Identity)));
    ops::record_layer_backward(rec, &layout.head, batch, trunk, a.dml, dx, a.dyt);
    record_stack_backward(rec, &layout.encoder, batch, |i| a.encoder_input(i), &a.d_enc, a.dyt);
    rec.push(Kernel::Accumulate, accumulate(TRAIN_METRICS, 1, config.beta), (1, 1, 1));
    let vec4s = (adam_len(layout) / 4) as u32;
    let adam = OptimOp { count: vec4s, lr: config.learning_rate, ..Default::default() };
    rec.push(Kernel::Adam, adam, adam.adam_groups());
}
