//! What both trainers share (the GPU's, `trainer`, and the CPU path's, `cpu`): the metrics and
//! evaluations they report, the errors they return, the check of a model against its data that
//! each makes before anything else, and the row counts their passes are cut into.

use std::fmt;

use crate::data::Dataset;
use crate::gpu::GpuError;
use crate::model::{Config, ConfigError, Draw, Graph, GraphLayout, Shape};
use crate::ops::gaussian::Mode;

/// Decoder rows per importance-weighted batch (datapoints x k).
pub const IWAE_ROWS: usize = 2048;
/// Rows per submission of the encode/decode/reconstruct passes.
pub const PASS_ROWS: usize = 256;

#[derive(Clone, Debug, PartialEq)]
pub enum TrainError {
    Config(ConfigError),
    Gpu(GpuError),
    /// The dataset does not fit the model (e.g. image size differs from `config.input`).
    Data(String),
    /// A non-finite loss was seen at or before `step`; the weights are those before it.
    Diverged { step: u32 },
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainError::Config(e) => write!(f, "invalid configuration: {e}"),
            TrainError::Gpu(e) => write!(f, "{e}"),
            TrainError::Data(e) => write!(f, "{e}"),
            TrainError::Diverged { step } => write!(
                f,
                "training diverged (the loss became infinite or NaN by step {step}); the last good \
                 weights were kept. Lower the learning rate or beta, then reset"
            ),
        }
    }
}

impl std::error::Error for TrainError {}

impl From<GpuError> for TrainError {
    fn from(e: GpuError) -> Self {
        TrainError::Gpu(e)
    }
}

impl From<ConfigError> for TrainError {
    fn from(e: ConfigError) -> Self {
        TrainError::Config(e)
    }
}

/// Training progress since the last read, in nats per datapoint.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Metrics {
    /// Steps the losses were averaged over.
    pub steps: u32,
    pub reconstruction: f64,
    pub kl: f64,
    /// reconstruction + beta * kl.
    pub loss: f64,
    /// Totals so far.
    pub total_steps: u32,
    pub epoch: u32,
}

/// The test set's negative ELBO (beta = 1) and its parts, in nats per datapoint.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Evaluation {
    pub reconstruction: f64,
    pub kl: f64,
    pub nelbo: f64,
}

/// How a graph model trains: Adam on minibatches with a cosine learning-rate decay and a linear
/// KL warm-up (NVAE's), both over steps. As JSON (in `GraphConfig`) every field is required.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub batch_size: usize,
    pub learning_rate: f32,
    /// The learning rate at `total_steps` (cosine decay from `learning_rate`).
    pub final_learning_rate: f32,
    /// Steps of the cosine decay; 0 keeps `learning_rate` throughout.
    pub total_steps: u32,
    /// The KL's weight rises linearly from 1 / kl_warmup_steps to 1 over these steps (0: no
    /// warm-up).
    pub kl_warmup_steps: u32,
    pub seed: u32,
}

impl Schedule {
    /// The learning rate at `step` (0-based): constant when `total_steps` is 0.
    pub fn learning_rate(&self, step: u32) -> f32 {
        if self.total_steps == 0 {
            return self.learning_rate;
        }
        let done = (step as f64 / self.total_steps.max(1) as f64).min(1.0);
        let (hi, lo) = (self.learning_rate as f64, self.final_learning_rate as f64);
        (lo + 0.5 * (hi - lo) * (1.0 + (std::f64::consts::PI * done).cos())) as f32
    }

    pub fn kl_weight(&self, step: u32) -> f64 {
        ((step + 1) as f64 / self.kl_warmup_steps.max(1) as f64).min(1.0)
    }
}

/// A graph model's training losses since the last `metrics`, in nats per datapoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GraphMetrics {
    pub steps: u32,
    pub reconstruction: f64,
    /// Each group's KL, top group first.
    pub kl: Vec<f64>,
    /// What training minimised (the KL warmed up).
    pub loss: f64,
}

/// A graph model's test-set negative ELBO (KL weight 1) and its parts, per datapoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GraphEvaluation {
    pub reconstruction: f64,
    /// Each group's KL, top group first.
    pub kl: Vec<f64>,
    pub nelbo: f64,
}

impl GraphEvaluation {
    pub fn new(reconstruction: f64, kl: Vec<f64>) -> GraphEvaluation {
        GraphEvaluation { nelbo: reconstruction + kl.iter().sum::<f64>(), reconstruction, kl }
    }
}

/// Refuses an invalid configuration, and data that does not fit it (image size, a batch larger
/// than the training set). Both trainers check this before anything else.
pub(crate) fn check_model_and_data(config: &Config, train: &Dataset, test: &Dataset) -> Result<(), TrainError> {
    config.validate()?;
    for (name, d) in [("training", train), ("test", test)] {
        let fits = match config.input {
            Shape::Flat(n) => d.pixels_per_image() == n,
            Shape::Image { height, width, .. } => (d.rows, d.cols) == (height, width),
        };
        if !fits {
            return Err(TrainError::Data(format!(
                "the {name} images have {} pixels ({}x{}) but the model expects {}",
                d.pixels_per_image(), d.rows, d.cols, config.input
            )));
        }
    }
    if train.count < config.batch_size {
        return Err(ConfigError { field: "batch_size", message: format!("is larger than the {} training images", train.count) }.into());
    }
    Ok(())
}


/// A graph model's layout on the images of `train` (checked against `test`'s size and the
/// schedule's batch): its output must be the datapoint's shape (a Bernoulli decoder's logits).
pub(crate) fn check_graph_and_data(graph: &Graph, schedule: &Schedule, train: &Dataset, test: &Dataset) -> Result<GraphLayout, TrainError> {
    let input = Shape::Image { channels: 1, height: train.rows, width: train.cols };
    if (test.rows, test.cols) != (train.rows, train.cols) {
        return Err(TrainError::Data(format!("the test images are {}x{} but the training images {}x{}", test.rows, test.cols, train.rows, train.cols)));
    }
    // The datapoint is the image, or its pixels in a row for a model that reads them so (the
    // MLP presets as graphs).
    let (layout, input) = match graph.layout(input) {
        Ok(layout) => (layout, input),
        Err(e) => {
            let flat = Shape::Flat(input.len());
            (graph.layout(flat).map_err(|_| e)?, flat)
        }
    };
    let output = layout.nodes[layout.output].output;
    if output != input {
        return Err(ConfigError { field: "graph", message: format!("the output is {output} but the images need {input}") }.into());
    }
    if schedule.batch_size == 0 || train.count < schedule.batch_size {
        return Err(ConfigError { field: "batch_size", message: format!("must be 1 to the {} training images", train.count) }.into());
    }
    Ok(layout)
}

/// What a graph model's decoding pass gives: images [rows, pixels] (pixel probabilities) and
/// each group's z [rows, n], top group first.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    pub images: Vec<f32>,
    pub z: Vec<Vec<f32>>,
}

/// The top group's posterior, q(z1 | x) = N(mu, exp(logvar)), from its prior's parameters
/// (None: N(0, I)) and the encoder's shift, each [rows, 2n] (means, then log-variances): what
/// the page's latent views show of a graph model (`encode`).
pub(crate) fn top_posterior(prior: Option<&[f32]>, delta: &[f32], n: usize) -> crate::latent::Encoding {
    let (mut mu, mut logvar) = (Vec::with_capacity(delta.len() / 2), Vec::with_capacity(delta.len() / 2));
    for (r, row) in delta.chunks(2 * n).enumerate() {
        let p = |j: usize| prior.map_or(0.0, |p| p[r * 2 * n + j]);
        mu.extend((0..n).map(|j| p(j) + row[j]));
        logvar.extend((0..n).map(|j| p(n + j) + row[n + j]));
    }
    crate::latent::Encoding::Gaussian { mu, logvar }
}

/// Refuses parameters and Adam's state that are not for `len` parameters.
pub(crate) fn check_state(len: usize, params: &[f32], state: &crate::checkpoint::OptimizerState) -> Result<(), TrainError> {
    if params.len() != len {
        return Err(TrainError::Data(format!("expected {len} parameters, got {}", params.len())));
    }
    if state.m.len() != len || state.v.len() != len {
        return Err(TrainError::Data(format!("expected Adam's moments for {len} parameters, got {} and {}", state.m.len(), state.v.len())));
    }
    Ok(())
}

/// Rows of `width` values in `x`, or an error saying what was expected.
pub(crate) fn rows_of(x: &[f32], width: usize) -> Result<usize, TrainError> {
    if x.is_empty() || !x.len().is_multiple_of(width) {
        return Err(TrainError::Data(format!("expected rows of {width} values, got {} values", x.len())));
    }
    Ok(x.len() / width)
}

/// Checks a decoding pass's request: a draw per group, data exactly when a posterior draw needs
/// it, and given codes of the group's size.
pub(crate) fn check_draws(g: &GraphLayout, x: Option<&[f32]>, rows: usize, draws: &[Draw], pixels: usize) -> Result<(), TrainError> {
    if rows == 0 {
        return Err(TrainError::Data("no rows to decode".into()));
    }
    if draws.len() != g.groups.len() {
        return Err(TrainError::Data(format!("the model has {} groups of latents but {} draws were given", g.groups.len(), draws.len())));
    }
    let posterior = draws.iter().any(|d| matches!(d, Draw::Sample(Mode::Posterior | Mode::PosteriorMean)));
    match x {
        Some(x) if posterior && x.len() != rows * pixels => return Err(TrainError::Data(format!("expected {rows} images of {pixels} pixels, got {} values", x.len()))),
        None if posterior => return Err(TrainError::Data("a draw from the posterior needs images".into())),
        _ => {}
    }
    for (draw, &i) in draws.iter().zip(&g.groups) {
        let n = g.nodes[i].output.len();
        if let Draw::Given(z) = draw {
            if z.len() != rows * n {
                return Err(TrainError::Data(format!("group {} takes {rows} codes of {n} values, got {} values", g.nodes[i].name, z.len())));
            }
        }
    }
    Ok(())
}
