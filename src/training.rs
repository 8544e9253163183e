//! What both trainers share (the GPU's, `trainer`, and the CPU path's, `cpu`): the metrics and
//! evaluations they report, the errors they return, the check of a model against its data that
//! each makes before anything else, and the row counts their passes are cut into.

use std::fmt;

use crate::data::Dataset;
use crate::gpu::GpuError;
use crate::model::{Config, ConfigError, Shape};

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

