//! A graph model (`model::Graph`, e.g. the `hvae` hierarchy) training on the GPU, as `Trainer`
//! trains the layer stacks: the same `Engine` (buffers, pipelines, submission), with a step
//! planned node by node from the graph. `cpu::graph` is the same model on the CPU path and
//! `reference::graph` the oracle both are checked against.
//!
//! The backward pass meets the nodes in reverse, so a node read by several others meets its
//! readers last first: the first gradient to arrive is written to the node's slot, and each
//! later one is added to it (SiLU's and the add's kernels add in place; a layer's or a group's
//! goes through scratch and `add_into`). A slot holds the gradient w.r.t. the node's output; a
//! layer with a fused activation turns it into its pre-activation's with `activation_backward`
//! before its own kernels run. A gradient's slot lives only from its first arrival to its
//! node's backward, and slots whose lives do not overlap share memory (`gradient_slots`).

use crate::data::{epoch_permutation, Dataset};
use crate::gpu::Gpu;
use crate::kernels::{Dispatch, Kernel, KernelShape, Records, StepRecord, NONE, PARTS_CAPACITY};
use crate::model::{initial_graph_parameters, Activation, Draw, Graph, GraphLayout, Layer, Likelihood, Op};
use crate::ops::elementwise::ElementwiseOp;
use crate::ops::gaussian::{GaussianOp, Mode};
use crate::ops::{self, data::GatherOp, loss::{LossOp, Statistic}, optim::OptimOp};
use crate::rng::{EVAL_RNG_STEP, IWAE_RNG_STEP, PRIOR_RNG_STEP};
use crate::checkpoint::OptimizerState;
use crate::training::{check_state, check_draws, check_graph_and_data, rows_of, top_posterior, Decoded, GraphEvaluation, GraphMetrics, Schedule, TrainError, IWAE_ROWS, PASS_ROWS};

use super::{device_data, Engine, STEP_SLOTS};

/// What a plan computes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pass {
    /// Forward, backward, metrics, Adam.
    Train,
    /// Forward (z ~ q, the evaluation's noise), accumulating reconstruction and each group's KL.
    Evaluate,
    /// Forward with k samples of each of `rows / k` datapoints, accumulating the bound.
    ImportanceWeighted { k: usize },
    /// Forward to the output, each group's z drawn in its mode (top group first) with the noise
    /// of `seed`, or given (None: uploaded, as x is if a posterior draw reads it).
    Decode { draws: Vec<Option<Mode>>, seed: u32 },
    /// Forward to the top group's inputs alone (the bottom-up path), for its posterior.
    Encode,
}

impl Pass {
    /// How group `group` gets its z.
    fn draw(&self, group: usize) -> Option<Mode> {
        match self {
            Pass::Decode { draws, .. } => draws[group],
            Pass::Encode => Some(Mode::PosteriorMean),
            _ => Some(Mode::Posterior),
        }
    }

    fn gathers(&self) -> bool {
        !matches!(self, Pass::Decode { .. } | Pass::Encode)
    }

    /// The nodes the pass computes.
    fn needed(&self, g: &GraphLayout) -> Vec<bool> {
        match self {
            Pass::Encode => g.needed_to_encode(),
            _ => g.needed(&(0..g.groups.len()).map(|group| self.draw(group)).collect::<Vec<_>>()),
        }
    }
}

/// The node whose memory `i` is: a view (flatten, reshape) is its input's values and gradient.
fn source(g: &GraphLayout, mut i: usize) -> usize {
    while g.nodes[i].layer.as_ref().is_some_and(|l| l.layer.is_view()) {
        i = g.nodes[i].inputs[0];
    }
    i
}

/// Where each tensor of one pass on `rows` rows lives in acts. Every tensor starts on a 16-byte
/// boundary (the vec4 products read them so).
#[derive(Clone, Debug)]
struct GraphActs {
    /// Each node's output [rows, len] (x first); NONE where the pass does not compute it.
    values: Vec<u32>,
    /// Each node's gradient (w.r.t. its output) [rows, len]; NONE where there is none. Passes
    /// without a backward have only the output's, which the loss writes.
    grads: Vec<u32>,
    /// Each group's noise [rows, n].
    eps: Vec<u32>,
    /// Each group's KL per row, one [rows] after another.
    kl: u32,
    /// -log p(x|z) per row (the bound's -log w).
    recon: u32,
    /// Scratch for gradients that join a sum: a layer's dX and a group's d prior, d delta.
    fan: [u32; 2],
    /// Scratch for a linear layer's dy, transposed.
    dyt: u32,
    parts: Option<(u32, u32)>,
    len: usize,
}

/// Hands out ranges of acts, each on a 16-byte boundary (the vec4 products read them so).
#[derive(Default)]
struct Arena {
    len: usize,
}

impl Arena {
    fn take(&mut self, n: usize) -> u32 {
        let at = self.len;
        self.len = (self.len + n).next_multiple_of(4);
        at as u32
    }
}

/// Places the gradients of a training step so that those whose lives do not overlap share
/// memory. The backward pass meets a node's readers last first, so a node's gradient lives from
/// the backward of its last reader (for the output, from the loss, before any) to its own
/// backward, and is dead after it: at each node, the slots of the gradients that first arrive
/// there are taken (from freed ones where one is large enough) before the node's own is freed,
/// as the node reads its own while writing its inputs'. Returns each node's slot (x: NONE; a
/// view: its source's).
fn gradient_slots(g: &GraphLayout, rows: usize, arena: &mut Arena) -> Vec<u32> {
    let n = g.nodes.len();
    let mut arrives = vec![0usize; n];
    for (reader, node) in g.nodes.iter().enumerate() {
        for &j in &node.inputs {
            arrives[source(g, j)] = arrives[source(g, j)].max(reader);
        }
    }
    arrives[source(g, g.output)] = n;
    let size = |i: usize| (rows * g.nodes[i].output.len()).next_multiple_of(4);
    let (mut slots, mut free): (Vec<u32>, Vec<(u32, usize)>) = (vec![NONE; n], Vec::new());
    for t in (1..=n).rev() {
        for i in (1..n).filter(|&i| arrives[i] == t && source(g, i) == i) {
            // The smallest freed range that holds it, the rest freed again.
            let fits = free.iter().enumerate().filter(|(_, f)| f.1 >= size(i)).min_by_key(|(_, f)| f.1).map(|(k, _)| k);
            slots[i] = match fits {
                Some(k) => {
                    let (at, len) = free.swap_remove(k);
                    if len > size(i) {
                        free.push((at + size(i) as u32, len - size(i)));
                    }
                    at
                }
                None => arena.take(size(i)),
            };
        }
        if t < n && slots[t] != NONE {
            free.push((slots[t], size(t)));
        }
    }
    (0..n).map(|i| if i == 0 { NONE } else { slots[source(g, i)] }).collect()
}

impl GraphActs {
    fn new(g: &GraphLayout, pass: &Pass, rows: usize, shape: KernelShape) -> GraphActs {
        let mut arena = Arena::default();
        let needed = pass.needed(g);
        let backward = *pass == Pass::Train;
        let mut values = vec![NONE; g.nodes.len()];
        for (i, node) in g.nodes.iter().enumerate() {
            let s = source(g, i);
            if needed[i] {
                values[i] = if s == i { arena.take(rows * node.output.len()) } else { values[s] };
            }
        }
        // Without a backward, only the output has a gradient (the loss writes it).
        let grads = if backward {
            gradient_slots(g, rows, &mut arena)
        } else {
            let out = arena.take(rows * g.nodes[g.output].output.len());
            (0..g.nodes.len()).map(|i| if source(g, i) == source(g, g.output) { out } else { NONE }).collect()
        };
        let mut take = |n: usize| arena.take(n);
        let eps = g.groups.iter().map(|&i| take(rows * g.nodes[i].output.len())).collect();
        let kl = take(g.groups.len() * rows);
        let recon = take(rows);
        let widest = g.nodes.iter().map(|n| n.output.len()).max().unwrap_or(0);
        let fan = if backward { [take(rows * widest), take(rows * widest)] } else { [NONE; 2] };
        let linear = g.nodes.iter().filter_map(|n| n.layer.as_ref()).filter(|l| matches!(l.layer, Layer::Linear { .. }));
        let dyt = take(rows * linear.map(|l| l.output.len()).max().unwrap_or(0));
        let parts = (shape == KernelShape::Hardware).then(|| (take(PARTS_CAPACITY as usize), PARTS_CAPACITY));
        GraphActs { values, grads, eps, kl, recon, fan, dyt, parts, len: arena.len }
    }
}

#[derive(Clone, Debug)]
struct Plan {
    pass: Pass,
    rows: usize,
    acts: GraphActs,
    dispatches: Vec<Dispatch>,
}

/// Where the metrics of each kind of pass accumulate: after the divergence flag, three regions
/// of [reconstruction, KL, datapoints, batches, loss, then each group's KL].
struct Regions {
    groups: usize,
}

impl Regions {
    fn len(&self) -> usize {
        5 + self.groups
    }
    fn train(&self) -> usize {
        1
    }
    fn evaluate(&self) -> usize {
        1 + self.len()
    }
    fn importance_weighted(&self) -> usize {
        1 + 2 * self.len()
    }
    fn total(&self) -> usize {
        1 + 3 * self.len()
    }
}

/// A graph model (Bernoulli pixels) training on the GPU.
pub struct GraphTrainer {
    engine: Engine,
    layout: GraphLayout,
    schedule: Schedule,
    plans: Vec<Plan>,
    train_count: usize,
    test_count: usize,
    pixels: usize,
    steps_per_epoch: u32,
    step: u32,
    diverged: Option<u32>,
}

/// Parameters as Adam sees them: padded to whole vec4s.
fn adam_len(g: &GraphLayout) -> usize {
    g.len.next_multiple_of(4)
}

impl GraphTrainer {
    /// Uploads the datasets and `graph`'s parameters, initialised as `cpu::graph::GraphTrainer`
    /// initialises them; refuses a graph or a batch the device cannot hold, naming the field.
    pub fn new(gpu: Gpu, graph: &Graph, schedule: Schedule, train: &Dataset, test: &Dataset) -> Result<GraphTrainer, TrainError> {
        let layout = check_graph_and_data(graph, &schedule, train, test)?;
        let acts = GraphActs::new(&layout, &Pass::Train, schedule.batch_size, gpu.shape);
        let limits = gpu.device.limits();
        let mut rec = Records::new(gpu.shape);
        rec.parts_at = acts.parts;
        build_plan(&mut rec, &layout, &schedule, &acts, &Pass::Train, schedule.batch_size);
        super::check_buffers_and_grid(&limits, "graph", adam_len(&layout), acts.len, train, test, &rec.dispatches)?;
        let params = initial_graph_parameters(&layout, schedule.seed, Likelihood::Bernoulli, &train.mean_image());
        let (pixels, indices) = device_data(train, test, schedule.seed);
        let regions = Regions { groups: layout.groups.len() };
        let engine = Engine::new(gpu, &params, adam_len(&layout), acts.len, &pixels, &indices, regions.total());
        Ok(GraphTrainer {
            engine,
            plans: Vec::new(),
            train_count: train.count,
            test_count: test.count,
            pixels: train.pixels_per_image(),
            steps_per_epoch: (train.count / schedule.batch_size) as u32,
            step: 0,
            diverged: None,
            layout,
            schedule,
        })
    }

    pub fn layout(&self) -> &GraphLayout {
        &self.layout
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    pub fn gpu(&self) -> &Gpu {
        &self.engine.gpu
    }

    pub fn step(&self) -> u32 {
        self.step
    }

    pub fn steps_per_epoch(&self) -> u32 {
        self.steps_per_epoch
    }

    /// Builds the pipelines of the training step and the test-set evaluation and waits until
    /// the device has them, as `Trainer::prepare` does.
    pub async fn prepare(&mut self) -> Result<(), TrainError> {
        let b = self.schedule.batch_size;
        for pass in [Pass::Train, Pass::Evaluate] {
            let kernels: Vec<_> = self.plan(pass, b).dispatches.iter().map(|d| d.kernel).collect();
            self.engine.kernels.prepare(kernels);
        }
        Ok(self.engine.gpu.finish().await?)
    }

    /// Dispatches in one training step.
    pub fn dispatches_per_step(&mut self) -> usize {
        self.plan(Pass::Train, self.schedule.batch_size).dispatches.len()
    }

    fn regions(&self) -> Regions {
        Regions { groups: self.layout.groups.len() }
    }

    /// Encodes and submits `n` training steps without waiting for them, as `Trainer::train`.
    pub fn train(&mut self, n: u32) -> Result<(), TrainError> {
        self.engine.gpu.check()?;
        if let Some(step) = self.diverged {
            return Err(TrainError::Diverged { step });
        }
        let b = self.schedule.batch_size;
        let plan = self.plan(Pass::Train, b).dispatches.clone();
        let mut remaining = n;
        while remaining > 0 {
            let in_epoch = self.step % self.steps_per_epoch;
            if in_epoch == 0 && self.step > 0 {
                self.engine.write_order(&epoch_permutation(self.train_count, self.schedule.seed, self.step / self.steps_per_epoch));
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

    /// Averages of the training losses since the last call (waits for the GPU to get there).
    /// A non-finite loss puts the trainer in the diverged state and returns `Diverged`.
    pub async fn metrics(&mut self) -> Result<GraphMetrics, TrainError> {
        let r = self.regions();
        let m = self.engine.read_metrics_region(r.train(), r.len(), true).await?;
        if m[0] != 0.0 {
            self.diverged = Some(self.step);
        }
        if let Some(step) = self.diverged {
            return Err(TrainError::Diverged { step });
        }
        let t = &m[r.train()..r.train() + r.len()];
        let (points, batches) = (t[2].max(1.0) as f64, t[3].max(1.0) as f64);
        Ok(GraphMetrics { steps: t[3] as u32, reconstruction: t[0] as f64 / points, kl: t[5..].iter().map(|&k| k as f64 / points).collect(), loss: t[4] as f64 / batches })
    }

    /// The test set's negative ELBO (KL weight 1) with the evaluation noise, per datapoint.
    pub async fn evaluate(&mut self) -> Result<GraphEvaluation, TrainError> {
        self.run_over_test_set(Pass::Evaluate, self.schedule.batch_size).await?;
        let r = self.regions();
        let m = self.engine.read_metrics_region(r.evaluate(), r.len(), false).await?;
        let e = &m[r.evaluate()..r.evaluate() + r.len()];
        let n = e[2].max(1.0) as f64;
        Ok(GraphEvaluation::new(e[0] as f64 / n, e[5..].iter().map(|&k| k as f64 / n).collect()))
    }

    /// The importance-weighted estimate of -log p(x) on the test set, k samples per datapoint.
    pub async fn importance_weighted_nll(&mut self, k: usize) -> Result<f64, TrainError> {
        if !(1..=IWAE_ROWS).contains(&k) {
            return Err(crate::model::ConfigError { field: "k", message: format!("must be 1..={IWAE_ROWS}, got {k}") }.into());
        }
        self.run_over_test_set(Pass::ImportanceWeighted { k }, (IWAE_ROWS / k).max(1)).await?;
        let r = self.regions();
        let m = self.engine.read_metrics_region(r.importance_weighted(), r.len(), false).await?;
        let e = &m[r.importance_weighted()..];
        Ok(e[0] as f64 / e[2].max(1.0) as f64)
    }

    /// Runs `pass` over the test set in batches of at most `batch` datapoints, halved until a
    /// batch's acts fit one binding.
    async fn run_over_test_set(&mut self, pass: Pass, mut batch: usize) -> Result<(), TrainError> {
        let k = if let Pass::ImportanceWeighted { k } = pass { k } else { 1 };
        let (max, shape) = (self.engine.max_acts(), self.engine.kernels.shape);
        while batch > 1 && GraphActs::new(&self.layout, &pass, batch * k, shape).len > max {
            batch /= 2;
        }
        if GraphActs::new(&self.layout, &pass, batch * k, shape).len > max {
            let message = format!("{k} samples of one digit need more GPU memory than one buffer allows here; use a smaller k");
            return Err(crate::model::ConfigError { field: "k", message }.into());
        }
        let rng_step = if pass == Pass::Evaluate { EVAL_RNG_STEP } else { IWAE_RNG_STEP };
        let mut start = 0;
        while start < self.test_count {
            let n = batch.min(self.test_count - start);
            let plan = self.plan(pass.clone(), n * k).dispatches.clone();
            let batches = ((self.test_count - start) / n).min(STEP_SLOTS as usize);
            let steps: Vec<StepRecord> = (0..batches).map(|i| StepRecord { t: 0, rng_step, batch_start: (self.train_count + start + i * n) as u32 }).collect();
            self.engine.submit(&plan, &steps);
            start += steps.len() * n;
        }
        Ok(())
    }

    /// `n` samples from the prior, each group drawn given those above (at its mean with `mean`),
    /// decoded to pixel probabilities [n, pixels]; the same `seed` gives the same samples, and
    /// the same as the CPU path's (`cpu::graph::GraphTrainer::sample`).
    pub async fn sample(&mut self, n: usize, seed: u32, mean: bool) -> Result<Vec<f32>, TrainError> {
        let mode = if mean { Mode::PriorMean } else { Mode::Prior };
        Ok(self.decode(None, n, &vec![Draw::Sample(mode); self.layout.groups.len()], seed, false).await?.images)
    }

    /// Reconstructions of images x [n, pixels]: decoded at each group's posterior mean.
    pub async fn reconstruct(&mut self, x: &[f32]) -> Result<Vec<f32>, TrainError> {
        let rows = rows_of(x, self.pixels)?;
        Ok(self.decode(Some(x), rows, &vec![Draw::Sample(Mode::PosteriorMean); self.layout.groups.len()], 0, false).await?.images)
    }

    /// q(z1 | x) of the top group for images x [n, pixels]: its mean and log-variance [n, Z1]
    /// (the bottom-up path alone, in chunks of `PASS_ROWS`).
    pub async fn encode(&mut self, x: &[f32]) -> Result<crate::latent::Encoding, TrainError> {
        rows_of(x, self.pixels)?;
        let top = self.layout.nodes[self.layout.groups[0]].clone();
        let pass = Pass::Encode;
        let (mut prior, mut delta) = (Vec::new(), Vec::new());
        for chunk in x.chunks(PASS_ROWS * self.pixels) {
            let rows = chunk.len() / self.pixels;
            let plan = self.plan(pass.clone(), rows).clone();
            self.engine.gpu.queue.write_buffer(&self.engine.buffers.acts, plan.acts.values[0] as u64 * 4, bytemuck::cast_slice(chunk));
            self.engine.submit(&plan.dispatches, &[StepRecord { rng_step: PRIOR_RNG_STEP, ..Default::default() }]);
            let read = |i: usize| self.engine.gpu.read_f32(&self.engine.buffers.acts, plan.acts.values[i] as usize, rows * 2 * top.output.len());
            if top.inputs.len() == 2 {
                prior.extend(read(top.inputs[0]).await?);
            }
            delta.extend(read(*top.inputs.last().unwrap()).await?);
        }
        Ok(top_posterior((top.inputs.len() == 2).then_some(&prior[..]), &delta, top.output.len()))
    }

    /// `rows` rows decoded with each group's z got as `draws` says (top group first; `x`
    /// [rows, pixels] for posterior draws), noise from `seed`: the images and each group's z,
    /// as the CPU path's `decode_drawn` gives them. One pass (row r's noise is keyed by r, so
    /// passes in chunks would repeat the first one's draws): a request too large for one GPU
    /// buffer is refused.
    pub async fn decode_drawn(&mut self, x: Option<&[f32]>, rows: usize, draws: &[Draw], seed: u32) -> Result<Decoded, TrainError> {
        self.decode(x, rows, draws, seed, true).await
    }

    /// `decode_drawn`, reading the groups' codes back only with `codes` (samples and
    /// reconstructions need the images alone: one readback instead of one per group more).
    async fn decode(&mut self, x: Option<&[f32]>, rows: usize, draws: &[Draw], seed: u32, codes: bool) -> Result<Decoded, TrainError> {
        check_draws(&self.layout, x, rows, draws, self.pixels)?;
        let pass = Pass::Decode { draws: draws.iter().map(Draw::mode).collect(), seed };
        if GraphActs::new(&self.layout, &pass, rows, self.engine.kernels.shape).len > self.engine.max_acts() {
            return Err(crate::model::ConfigError { field: "n", message: format!("{rows} images at once do not fit one GPU buffer here; ask for fewer") }.into());
        }
        let plan = self.plan(pass, rows).clone();
        let write = |at: u32, values: &[f32]| self.engine.gpu.queue.write_buffer(&self.engine.buffers.acts, at as u64 * 4, bytemuck::cast_slice(values));
        if let (Some(x), true) = (x, plan.acts.values[0] != NONE) {
            write(plan.acts.values[0], x);
        }
        for (draw, &i) in draws.iter().zip(&self.layout.groups) {
            if let Draw::Given(z) = draw {
                write(plan.acts.values[i], z);
            }
        }
        self.engine.submit(&plan.dispatches, &[StepRecord { rng_step: PRIOR_RNG_STEP, ..Default::default() }]);
        let read = |i: usize, len: usize| self.engine.gpu.read_f32(&self.engine.buffers.acts, plan.acts.values[i] as usize, rows * len);
        let out = read(self.layout.output, self.pixels).await?;
        let mut z = Vec::with_capacity(draws.len());
        for &i in self.layout.groups.iter().filter(|_| codes) {
            z.push(read(i, self.layout.nodes[i].output.len()).await?);
        }
        Ok(Decoded { images: ops::loss::images(Likelihood::Bernoulli, &out, self.pixels, Statistic::Mean), z })
    }

    /// The parameters, in the flat layout of `layout()`.
    pub async fn parameters(&self) -> Result<Vec<f32>, TrainError> {
        Ok(self.engine.gpu.read_f32(&self.engine.buffers.params, 0, self.layout.len).await?)
    }

    /// Replaces the parameters (and restarts Adam's moments), e.g. from a checkpoint.
    pub fn set_parameters(&mut self, params: &[f32]) -> Result<(), TrainError> {
        if params.len() != self.layout.len {
            return Err(TrainError::Data(format!("expected {} parameters, got {}", self.layout.len, params.len())));
        }
        self.engine.upload(params, &vec![0f32; 2 * adam_len(&self.layout)]);
        self.diverged = None;
        Ok(())
    }

    /// Adam's state: its moments and this trainer's step count, for a checkpoint that resumes
    /// exactly.
    pub async fn optimizer_state(&self) -> Result<OptimizerState, TrainError> {
        Ok(self.engine.optimizer_state(self.layout.len, adam_len(&self.layout), self.step).await?)
    }

    /// Replaces the parameters and Adam's state and continues from the state's step: the same
    /// batches, noise, schedule and updates follow as if training had never stopped.
    pub fn resume(&mut self, params: &[f32], state: &OptimizerState) -> Result<(), TrainError> {
        check_state(self.layout.len, params, state)?;
        self.engine.upload_state(params, state, adam_len(&self.layout));
        self.diverged = None;
        self.step = state.step;
        self.engine.write_order(&epoch_permutation(self.train_count, self.schedule.seed, self.step / self.steps_per_epoch));
        Ok(())
    }

    /// The cached plan for (pass, rows), built (and its records written) if new.
    fn plan(&mut self, pass: Pass, rows: usize) -> &Plan {
        if let Some(i) = self.plans.iter().position(|p| p.pass == pass && p.rows == rows) {
            return &self.plans[i];
        }
        let acts = GraphActs::new(&self.layout, &pass, rows, self.engine.kernels.shape);
        let mut records = Records::new(self.engine.kernels.shape);
        records.parts_at = acts.parts;
        build_plan(&mut records, &self.layout, &self.schedule, &acts, &pass, rows);
        let (dispatches, full) = self.engine.place(records, acts.len);
        if full {
            self.plans.clear();
        }
        self.plans.push(Plan { pass, rows, acts, dispatches });
        self.plans.last().unwrap()
    }
}

/// Bytes of the acts buffer one training step of `g` at `batch` takes (values of every node,
/// gradients where they live, noise, KL, scratch): what must fit one storage binding
/// (WebGPU's default limit is 128 MiB).
pub fn step_memory(g: &GraphLayout, batch: usize, shape: KernelShape) -> usize {
    GraphActs::new(g, &Pass::Train, batch, shape).len * 4
}

/// The useful floating-point operations of one training step of `g` (its products' multiply-adds
/// x 2, as `trainer::flops_per_step` counts them).
pub fn graph_flops_per_step(g: &GraphLayout, schedule: &Schedule) -> f64 {
    let acts = GraphActs::new(g, &Pass::Train, schedule.batch_size, KernelShape::Software);
    let mut rec = Records::new(KernelShape::Software);
    build_plan(&mut rec, g, schedule, &acts, &Pass::Train, schedule.batch_size);
    rec.dispatches.iter().map(|d| d.flops).sum()
}

/// An element-wise dispatch over `len` values.
fn elementwise(rec: &mut Records, kernel: Kernel, len: usize, a: u32, b: u32, y: u32, accumulate: bool) {
    let op = ElementwiseOp { len: len as u32, a_off: a, b_off: b, y_off: y, accumulate: accumulate as u32, activation: 0 };
    rec.push(kernel, op, op.groups());
}

/// The dispatches of one pass on `rows` rows, in order. Forward: gather (k copies of each
/// datapoint for the bound), the nodes in order, the loss, each group's KL per row (and, for the
/// bound, its log-ratio). Backward (training): the nodes in reverse. Then metrics and Adam.
fn build_plan(rec: &mut Records, g: &GraphLayout, schedule: &Schedule, a: &GraphActs, pass: &Pass, rows: usize) {
    let pixels = g.nodes[0].output.len();
    let copies = if let Pass::ImportanceWeighted { k } = pass { *k } else { 1 };
    let n = rows / copies;
    if pass.gathers() {
        for c in 0..copies {
            let op = GatherOp { rows: n as u32, pixels: pixels as u32, x_off: a.values[0] + (c * n * pixels) as u32 };
            rec.push(Kernel::Gather, op, op.groups());
        }
    }
    let seed = if let Pass::Decode { seed, .. } = pass { *seed } else { schedule.seed };
    let group_op = |i: usize| {
        let node = &g.nodes[i];
        let (group, dim_base) = node.group.expect("a gaussian node's group");
        let with_prior = node.inputs.len() == 2;
        let delta = *node.inputs.last().unwrap();
        GaussianOp {
            rows: rows as u32,
            n: node.output.len() as u32,
            seed,
            dim_base,
            prior_off: if with_prior { a.values[node.inputs[0]] } else { NONE },
            delta_off: a.values[delta],
            eps_off: a.eps[group],
            z_off: a.values[i],
            dz_off: a.grads[i],
            dprior_off: NONE,
            ddelta_off: NONE,
            kl_off: a.kl + (group * rows) as u32,
            ratio_off: NONE,
            kl_weight: 1.0 / rows as f32,
            mode: pass.draw(group).unwrap_or(Mode::PosteriorMean).code(),
            warmup: schedule.kl_warmup_steps,
        }
    };

    // Forward.
    for (i, node) in g.nodes.iter().enumerate().skip(1) {
        if a.values[i] == NONE || source(g, i) != i {
            continue;
        }
        let input = a.values[node.inputs[0]];
        let len = rows * node.output.len();
        match node.op.expect("only x has no op") {
            Op::Layer { .. } | Op::Heads { .. } => ops::record_layer_forward(rec, node.layer.as_ref().expect("a layer node's layout"), rows, input as usize, a.values[i] as usize),
            Op::Silu {} => elementwise(rec, Kernel::SiluForward, len, input, 0, a.values[i], false),
            Op::Add {} => elementwise(rec, Kernel::Add, len, input, a.values[node.inputs[1]], a.values[i], false),
            Op::Gaussian {} => {
                // A given z is uploaded before the pass runs.
                if pass.draw(node.group.expect("a gaussian node's group").0).is_some() {
                    let op = group_op(i);
                    rec.push(Kernel::GaussianSample, op, op.per_element());
                }
            }
        }
    }
    if !pass.gathers() {
        return;
    }
    let loss = LossOp { out_off: a.values[g.output], x_off: a.values[0], grad_off: a.grads[g.output], recon_off: a.recon, ..LossOp::new(Likelihood::Bernoulli, rows, pixels, rows) };
    rec.push(Kernel::Reconstruction, loss, (rows as u32, 1, 1));
    for &i in &g.groups {
        let ratio_off = if matches!(pass, Pass::ImportanceWeighted { .. }) { a.recon } else { NONE };
        let op = GaussianOp { ratio_off, ..group_op(i) };
        rec.push(Kernel::GaussianReduce, op, op.per_row());
    }
    let groups = g.groups.len() as u32;
    let accumulate = |metrics_off: usize, check: u32, warmup: u32| OptimOp {
        batch: rows as u32,
        rows: rows as u32,
        recon_off: a.recon,
        kl_off: a.kl,
        metrics_off: metrics_off as u32,
        beta: 1.0,
        check,
        groups,
        warmup,
        ..Default::default()
    };
    let regions = Regions { groups: g.groups.len() };
    match pass {
        Pass::Evaluate => {
            rec.push(Kernel::Accumulate, accumulate(regions.evaluate(), 0, 0), (1, 1, 1));
            return;
        }
        Pass::ImportanceWeighted { .. } => {
            let op = OptimOp { batch: n as u32, rows: rows as u32, recon_off: a.recon, metrics_off: regions.importance_weighted() as u32, ..Default::default() };
            rec.push(Kernel::ImportanceWeighted, op, (1, 1, 1));
            return;
        }
        _ => {}
    }

    // Backward. `arrived[j]`: a gradient has reached j's slot, so the next is added to it.
    let mut arrived = vec![false; g.nodes.len()];
    let arrive = |arrived: &mut [bool], j: usize| std::mem::replace(&mut arrived[source(g, j)], true);
    // Where an op that cannot add in place writes input j's gradient: j's slot if it is the
    // first to arrive, else the scratch `fan`, then added to the slot (queued in `add_later`).
    let target = |arrived: &mut [bool], add_later: &mut Vec<(u32, u32, usize)>, j: usize, fan: u32| {
        let s = source(g, j);
        if arrive(arrived, j) {
            add_later.push((fan, a.grads[s], rows * g.nodes[s].output.len()));
            fan
        } else {
            a.grads[s]
        }
    };
    for (i, node) in g.nodes.iter().enumerate().skip(1).rev() {
        if source(g, i) != i {
            continue;
        }
        let len = rows * node.output.len();
        let dy = a.grads[i];
        let mut add_later = Vec::new();
        match node.op.expect("only x has no op") {
            Op::Layer { .. } | Op::Heads { .. } => {
                let l = node.layer.as_ref().expect("a layer node's layout");
                if l.activation() != Activation::Identity {
                    let op = ElementwiseOp { len: len as u32, a_off: a.values[i], b_off: 0, y_off: dy, accumulate: 0, activation: l.activation().code() };
                    rec.push(Kernel::ActivationBackward, op, op.groups());
                }
                let j = node.inputs[0];
                let dx = (source(g, j) != 0).then(|| (target(&mut arrived, &mut add_later, j, a.fan[0]) as usize, Activation::Identity));
                ops::record_layer_backward(rec, l, rows, a.values[j] as usize, dy as usize, dx, a.dyt as usize);
            }
            Op::Silu {} => {
                let j = node.inputs[0];
                let accumulate = arrive(&mut arrived, j);
                elementwise(rec, Kernel::SiluBackward, len, a.values[j], dy, a.grads[source(g, j)], accumulate);
            }
            Op::Add {} => {
                for &j in &node.inputs {
                    let accumulate = arrive(&mut arrived, j);
                    elementwise(rec, Kernel::AddInto, len, dy, 0, a.grads[source(g, j)], accumulate);
                }
            }
            Op::Gaussian {} => {
                let mut op = group_op(i);
                if node.inputs.len() == 2 {
                    op.dprior_off = target(&mut arrived, &mut add_later, node.inputs[0], a.fan[0]);
                }
                op.ddelta_off = target(&mut arrived, &mut add_later, *node.inputs.last().unwrap(), a.fan[1]);
                rec.push(Kernel::GaussianBackward, op, op.per_element());
            }
        }
        for (from, into, len) in add_later {
            elementwise(rec, Kernel::AddInto, len, from, 0, into, true);
        }
    }
    rec.push(Kernel::Accumulate, accumulate(regions.train(), 1, schedule.kl_warmup_steps), (1, 1, 1));
    let adam = OptimOp {
        count: (adam_len(g) / 4) as u32,
        lr: schedule.learning_rate,
        lr_final: schedule.final_learning_rate,
        total_steps: schedule.total_steps,
        ..Default::default()
    };
    rec.push(Kernel::Adam, adam, adam.adam_groups());
}
