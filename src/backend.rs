//! One trainer interface, two backends: what trains (the page, the benchmark, the tests that
//! should not care) goes through `Backend`, which holds the GPU trainer or the CPU one and
//! passes every call on. The two have the same methods with the same meaning: the same
//! batches, noise, updates, checkpoints and errors.

use crate::checkpoint::OptimizerState;
use crate::cpu::CpuTrainer;
use crate::data::Dataset;
use crate::gpu::Gpu;
use crate::latent::Encoding;
use crate::model::{Config, Draw, Graph, GraphLayout, Keep, Layout};
use crate::ops::gaussian::Mode;
use crate::trainer::Trainer;
use crate::training::{Decoded, Evaluation, GraphEvaluation, GraphMetrics, Metrics, Schedule, TrainError};
use crate::{cpu, trainer};

/// Where a model trains.
// One or two per page, never copied in a loop: their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Device {
    Gpu(Gpu),
    /// f32 on the CPU, on rayon's threads (`cpu`).
    Cpu,
}

impl Device {
    /// "gpu" or "cpu".
    pub fn kind(&self) -> &'static str {
        match self {
            Device::Gpu(_) => "gpu",
            Device::Cpu => "cpu",
        }
    }
}

/// A VAE training on a `Device`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Backend {
    Gpu(Trainer),
    Cpu(CpuTrainer),
}

/// The same call on whichever trainer is inside.
macro_rules! either {
    ($self:expr, $t:ident => $call:expr) => {
        match $self {
            Backend::Gpu($t) => $call,
            Backend::Cpu($t) => $call,
        }
    };
}

impl Backend {
    /// A freshly initialised model on `device` (the same initial weights on either).
    pub fn new(device: &Device, config: Config, train: &Dataset, test: &Dataset) -> Result<Backend, TrainError> {
        Ok(match device {
            Device::Gpu(gpu) => Backend::Gpu(Trainer::new(gpu.clone(), config, train, test)?),
            Device::Cpu => Backend::Cpu(CpuTrainer::new(config, train, test)?),
        })
    }

    /// "gpu" or "cpu".
    pub fn kind(&self) -> &'static str {
        match self {
            Backend::Gpu(_) => "gpu",
            Backend::Cpu(_) => "cpu",
        }
    }

    /// How a training step runs here, for the model's summary.
    pub fn step_summary(&mut self) -> String {
        match self {
            Backend::Gpu(t) => format!("{} GPU dispatches per step", t.dispatches_per_step()),
            Backend::Cpu(_) => cpu_summary(),
        }
    }

    pub fn config(&self) -> &Config {
        either!(self, t => t.config())
    }

    pub fn layout(&self) -> &Layout {
        either!(self, t => t.layout())
    }

    pub fn step(&self) -> u32 {
        either!(self, t => t.step())
    }

    pub fn epoch(&self) -> f64 {
        either!(self, t => t.epoch())
    }

    pub fn steps_per_epoch(&self) -> u32 {
        either!(self, t => t.steps_per_epoch())
    }

    pub fn test_count(&self) -> usize {
        either!(self, t => t.test_count())
    }

    /// `n` training steps: submitted without waiting (GPU), or taken (CPU).
    pub fn train(&mut self, n: u32) -> Result<(), TrainError> {
        either!(self, t => t.train(n))
    }

    pub async fn metrics(&mut self) -> Result<Metrics, TrainError> {
        either!(self, t => t.metrics().await)
    }

    /// Makes ready what training will need (on the GPU, its pipelines: `Trainer::prepare`).
    pub async fn prepare(&mut self) -> Result<(), TrainError> {
        match self {
            Backend::Gpu(t) => t.prepare().await,
            Backend::Cpu(_) => Ok(()),
        }
    }

    pub async fn evaluate(&mut self) -> Result<Evaluation, TrainError> {
        either!(self, t => t.evaluate().await)
    }

    pub async fn importance_weighted_nll(&mut self, k: usize) -> Result<f64, TrainError> {
        either!(self, t => t.importance_weighted_nll(k).await)
    }

    pub async fn encode(&mut self, x: &[f32]) -> Result<Encoding, TrainError> {
        either!(self, t => t.encode(x).await)
    }

    pub async fn decode(&mut self, z: &[f32]) -> Result<Vec<f32>, TrainError> {
        either!(self, t => t.decode(z).await)
    }

    pub async fn decode_std(&mut self, z: &[f32]) -> Result<Vec<f32>, TrainError> {
        either!(self, t => t.decode_std(z).await)
    }

    pub async fn reconstruct(&mut self, x: &[f32]) -> Result<Vec<f32>, TrainError> {
        either!(self, t => t.reconstruct(x).await)
    }

    pub async fn reconstruct_std(&mut self, x: &[f32]) -> Result<Vec<f32>, TrainError> {
        either!(self, t => t.reconstruct_std(x).await)
    }

    pub fn prior_codes(&self, n: usize, seed: u32) -> Vec<f32> {
        either!(self, t => t.prior_codes(n, seed))
    }

    pub async fn parameters(&self) -> Result<Vec<f32>, TrainError> {
        either!(self, t => t.parameters().await)
    }

    pub async fn gradients(&self) -> Result<Vec<f32>, TrainError> {
        either!(self, t => t.gradients().await)
    }

    pub fn set_parameters(&mut self, params: &[f32]) -> Result<(), TrainError> {
        either!(self, t => t.set_parameters(params))
    }

    pub async fn optimizer_state(&self) -> Result<OptimizerState, TrainError> {
        either!(self, t => t.optimizer_state().await)
    }

    pub fn resume(&mut self, params: &[f32], state: &OptimizerState) -> Result<(), TrainError> {
        either!(self, t => t.resume(params, state))
    }
}

/// A graph model (`model::Graph`, e.g. the `hvae` hierarchy) training on a `Device`: the GPU's
/// `trainer::graph::GraphTrainer` or the CPU path's `cpu::graph::GraphTrainer`, with the same
/// batches, noise, schedule and updates.
// One per page, never copied in a loop: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum GraphBackend {
    Gpu(trainer::graph::GraphTrainer),
    Cpu(cpu::graph::GraphTrainer),
}

macro_rules! either_graph {
    ($self:expr, $t:ident => $call:expr) => {
        match $self {
            GraphBackend::Gpu($t) => $call,
            GraphBackend::Cpu($t) => $call,
        }
    };
}

impl GraphBackend {
    /// A freshly initialised model on `device` (the same initial weights on either).
    pub fn new(device: &Device, graph: &Graph, schedule: Schedule, train: &Dataset, test: &Dataset) -> Result<GraphBackend, TrainError> {
        Ok(match device {
            Device::Gpu(gpu) => GraphBackend::Gpu(trainer::graph::GraphTrainer::new(gpu.clone(), graph, schedule, train, test)?),
            Device::Cpu => GraphBackend::Cpu(cpu::graph::GraphTrainer::new(graph, schedule, train, test)?),
        })
    }

    /// "gpu" or "cpu".
    pub fn kind(&self) -> &'static str {
        match self {
            GraphBackend::Gpu(_) => "gpu",
            GraphBackend::Cpu(_) => "cpu",
        }
    }

    /// How a step runs, as `Backend::step_summary` says it.
    pub fn step_summary(&mut self) -> String {
        match self {
            GraphBackend::Gpu(t) => format!("{} GPU dispatches per step", t.dispatches_per_step()),
            GraphBackend::Cpu(_) => cpu_summary(),
        }
    }

    /// Makes ready what training needs (on the GPU, the step's pipelines), as `Backend::prepare`.
    pub async fn prepare(&mut self) -> Result<(), TrainError> {
        match self {
            GraphBackend::Gpu(t) => t.prepare().await,
            GraphBackend::Cpu(_) => Ok(()),
        }
    }

    pub fn layout(&self) -> &GraphLayout {
        either_graph!(self, t => t.layout())
    }

    pub fn schedule(&self) -> &Schedule {
        either_graph!(self, t => t.schedule())
    }

    pub fn step(&self) -> u32 {
        either_graph!(self, t => t.step())
    }

    pub fn steps_per_epoch(&self) -> u32 {
        either_graph!(self, t => t.steps_per_epoch())
    }

    /// `n` training steps: submitted without waiting (GPU), or taken (CPU).
    pub fn train(&mut self, n: u32) -> Result<(), TrainError> {
        either_graph!(self, t => t.train(n))
    }

    pub async fn metrics(&mut self) -> Result<GraphMetrics, TrainError> {
        either_graph!(self, t => t.metrics().await)
    }

    pub async fn evaluate(&mut self) -> Result<GraphEvaluation, TrainError> {
        either_graph!(self, t => t.evaluate().await)
    }

    pub async fn importance_weighted_nll(&mut self, k: usize) -> Result<f64, TrainError> {
        either_graph!(self, t => t.importance_weighted_nll(k).await)
    }

    pub async fn sample(&mut self, n: usize, seed: u32, mean: bool) -> Result<Vec<f32>, TrainError> {
        either_graph!(self, t => t.sample(n, seed, mean).await)
    }

    pub async fn reconstruct(&mut self, x: &[f32]) -> Result<Vec<f32>, TrainError> {
        either_graph!(self, t => t.reconstruct(x).await)
    }

    /// q(z1 | x) of the top group: what the page's latent views show.
    pub async fn encode(&mut self, x: &[f32]) -> Result<Encoding, TrainError> {
        either_graph!(self, t => t.encode(x).await)
    }

    /// `rows` rows decoded with each group's z got as `draws` says: see
    /// `trainer::graph::GraphTrainer::decode_drawn`.
    pub async fn decode_drawn(&mut self, x: Option<&[f32]>, rows: usize, draws: &[Draw], seed: u32) -> Result<Decoded, TrainError> {
        either_graph!(self, t => t.decode_drawn(x, rows, draws, seed).await)
    }

    /// Images decoded from top-group codes z [n, Z1] (the page's latent views act on the top
    /// group), every lower group at its conditional prior's mean: deterministic, so that an
    /// interpolation or a traversal changes only what the top code changes.
    pub async fn decode_top(&mut self, z: &[f32]) -> Result<Vec<f32>, TrainError> {
        let g = self.layout();
        let latent = g.nodes[g.groups[0]].output.len();
        if z.is_empty() || !z.len().is_multiple_of(latent) {
            return Err(TrainError::Data(format!("expected codes of {latent} values for the top group, got {} values", z.len())));
        }
        let mut draws = vec![Draw::Given(z.to_vec())];
        draws.resize(g.groups.len(), Draw::Sample(Mode::PriorMean));
        Ok(self.decode_drawn(None, z.len() / latent, &draws, 0).await?.images)
    }

    /// `n` variations of each image x [rows, pixels] (rows after rows: [rows * n]) with one part
    /// of its code kept and the rest drawn afresh from `seed`: `Keep::Top`, the top group at its
    /// posterior mean and every lower group drawn from its conditional prior (the same digit,
    /// its details redrawn); `Keep::Lower`, every lower group at its posterior mean and the top
    /// group drawn from N(0, I). Gives the images and each group's z.
    pub async fn variations(&mut self, x: &[f32], n: usize, keep: Keep, seed: u32) -> Result<Decoded, TrainError> {
        let g = self.layout();
        let (groups, pixels) = (g.groups.len(), g.nodes[0].output.len());
        let rows = crate::training::rows_of(x, pixels)?;
        if n == 0 || groups < 2 {
            return Err(TrainError::Data(format!("variations need at least one per image and two groups of latents (the model has {groups})")));
        }
        let repeat = |v: &[f32], len: usize| -> Vec<f32> { v.chunks(len).flat_map(|row| std::iter::repeat_n(row, n).flatten().copied()).collect() };
        let (x, draws) = match keep {
            Keep::Top => {
                let mut draws = vec![Draw::Sample(Mode::PosteriorMean)];
                draws.resize(groups, Draw::Sample(Mode::Prior));
                (Some(repeat(x, pixels)), draws)
            }
            Keep::Lower => {
                let codes = self.decode_drawn(Some(x), rows, &vec![Draw::Sample(Mode::PosteriorMean); groups], 0).await?.z;
                let g = self.layout();
                let lower = codes.iter().zip(&g.groups).skip(1).map(|(z, &i)| Draw::Given(repeat(z, g.nodes[i].output.len())));
                (None, std::iter::once(Draw::Sample(Mode::Prior)).chain(lower).collect())
            }
        };
        self.decode_drawn(x.as_deref(), rows * n, &draws, seed).await
    }

    pub async fn parameters(&self) -> Result<Vec<f32>, TrainError> {
        either_graph!(self, t => t.parameters().await)
    }

    pub fn set_parameters(&mut self, params: &[f32]) -> Result<(), TrainError> {
        either_graph!(self, t => t.set_parameters(params))
    }

    pub async fn optimizer_state(&self) -> Result<OptimizerState, TrainError> {
        either_graph!(self, t => t.optimizer_state().await)
    }

    pub fn resume(&mut self, params: &[f32], state: &OptimizerState) -> Result<(), TrainError> {
        either_graph!(self, t => t.resume(params, state))
    }
}

fn cpu_summary() -> String {
    match rayon::current_num_threads() {
        1 => "each step on one CPU thread".to_string(),
        n => format!("each step on {n} CPU threads"),
    }
}
