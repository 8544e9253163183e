//! The model's configuration, its parameter layout (one flat buffer plus an offset table) and
//! its initialisation.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::reference::Activation;
use crate::rng::Rng;

/// p(x|z): what the decoder's outputs parameterise. As JSON: `{"kind": "bernoulli"}` or
/// `{"kind": "gaussian", "sigma": 0.1}`, nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", try_from = "LikelihoodJson")]
pub enum Likelihood {
    /// Pixels in [0, 1] as Bernoulli probabilities; outputs are logits; loss = BCE with logits.
    Bernoulli,
    /// Pixels as Gaussian with mean = output and a fixed standard deviation `sigma`;
    /// loss = sum (x - mean)^2 / (2 sigma^2) + D log(sigma sqrt(2 pi)).
    Gaussian { sigma: f32 },
}

/// How a likelihood is read: serde's internally tagged enums let a unit variant carry unknown
/// fields (`{"kind": "bernoulli", "sigma": 0.1}` would load), so the fields are checked here.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LikelihoodJson {
    kind: String,
    sigma: Option<f32>,
}

impl TryFrom<LikelihoodJson> for Likelihood {
    type Error = String;
    fn try_from(j: LikelihoodJson) -> Result<Self, String> {
        match (j.kind.as_str(), j.sigma) {
            ("bernoulli", None) => Ok(Likelihood::Bernoulli),
            ("bernoulli", Some(_)) => Err("a Bernoulli likelihood has no sigma".into()),
            ("gaussian", Some(sigma)) => Ok(Likelihood::Gaussian { sigma }),
            ("gaussian", None) => Err("a Gaussian likelihood needs its sigma".into()),
            (other, _) => Err(format!("unknown likelihood \"{other}\" (expected \"bernoulli\" or \"gaussian\")")),
        }
    }
}

/// Everything that defines a model and how it trains. As JSON (checkpoints) every field is
/// required and unknown fields are refused, so a misspelt field is an error rather than a
/// silently filled-in default; `from_partial_json` fills in what a caller leaves out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Pixels per image (784 for MNIST).
    pub input: usize,
    /// Encoder hidden layer sizes, input side first; the decoder mirrors them.
    pub hidden: Vec<usize>,
    /// Latent dimensions, 1..=64.
    pub latent: usize,
    pub activation: Activation,
    pub likelihood: Likelihood,
    /// Weight of the KL term (1 = the true ELBO).
    pub beta: f32,
    /// Latent samples per datapoint (L of the SGVB estimator).
    pub samples: usize,
    pub learning_rate: f32,
    pub batch_size: usize,
    pub seed: u32,
}

impl Default for Config {
    /// The reference configuration: PyTorch's examples/vae model (784-400-20, ReLU, Bernoulli,
    /// batch 128, Adam 1e-3).
    fn default() -> Self {
        Config {
            input: 784,
            hidden: vec![400],
            latent: 20,
            activation: Activation::Relu,
            likelihood: Likelihood::Bernoulli,
            beta: 1.0,
            samples: 1,
            learning_rate: 1e-3,
            batch_size: 128,
            seed: 1,
        }
    }
}

/// A configuration that cannot be used, naming the field at fault.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigError {
    pub field: &'static str,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn bad(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError { field, message: message.into() }
}

impl Config {
    /// A configuration from a JSON object holding any of the fields; the rest take the
    /// reference values. Unknown fields (a misspelling) and wrongly typed values are refused,
    /// naming the field.
    pub fn from_partial_json(partial: serde_json::Value) -> Result<Config, ConfigError> {
        let serde_json::Value::Object(partial) = partial else {
            return Err(bad("config", "must be an object of configuration fields"));
        };
        let serde_json::Value::Object(mut full) = serde_json::to_value(Config::default()).expect("a Config serialises") else {
            unreachable!("a Config serialises to an object")
        };
        for (key, value) in partial {
            let Some(field) = full.get_mut(&key) else {
                return Err(bad("config", format!("unknown field \"{key}\"")));
            };
            *field = value;
        }
        serde_json::from_value(serde_json::Value::Object(full)).map_err(|e| bad("config", e.to_string()))
    }

    /// Checks every field on its own terms; device limits are checked by the GPU trainer.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.input == 0 || self.input > 1 << 16 {
            return Err(bad("input", format!("must be 1..=65536 pixels, got {}", self.input)));
        }
        if self.hidden.len() > 4 {
            return Err(bad("hidden", format!("at most 4 hidden layers, got {}", self.hidden.len())));
        }
        if let Some(&h) = self.hidden.iter().find(|&&h| h == 0 || h > 4096) {
            return Err(bad("hidden", format!("layer sizes must be 1..=4096, got {h}")));
        }
        if !(1..=64).contains(&self.latent) {
            return Err(bad("latent", format!("must be 1..=64, got {}", self.latent)));
        }
        if let Likelihood::Gaussian { sigma } = self.likelihood {
            if !(sigma.is_finite() && sigma > 0.0) {
                return Err(bad("likelihood", format!("Gaussian sigma must be positive, got {sigma}")));
            }
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return Err(bad("beta", format!("must be a finite number >= 0, got {}", self.beta)));
        }
        if !(1..=1024).contains(&self.samples) {
            return Err(bad("samples", format!("must be 1..=1024, got {}", self.samples)));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return Err(bad("learning_rate", format!("must be in (0, 1], got {}", self.learning_rate)));
        }
        if !(1..=4096).contains(&self.batch_size) {
            return Err(bad("batch_size", format!("must be 1..=4096, got {}", self.batch_size)));
        }
        if self.batch_size * self.samples > 1 << 16 {
            return Err(bad("samples", "batch_size x samples must be at most 65536"));
        }
        Ok(())
    }

    /// Layer widths of the encoder trunk: input, hidden...
    pub fn encoder_widths(&self) -> Vec<usize> {
        std::iter::once(self.input).chain(self.hidden.iter().copied()).collect()
    }

    /// Layer widths of the decoder: latent, hidden reversed..., input.
    pub fn decoder_widths(&self) -> Vec<usize> {
        std::iter::once(self.latent)
            .chain(self.hidden.iter().rev().copied())
            .chain(std::iter::once(self.input))
            .collect()
    }
}

/// One tensor in the flat parameter buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// PyTorch-style name, e.g. "encoder.0.weight".
    pub name: String,
    /// [out, in] for weights, [out] for biases.
    pub shape: Vec<usize>,
    pub offset: usize,
}

impl Tensor {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// A linear layer's place in the parameter buffer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearLayout {
    pub inputs: usize,
    pub outputs: usize,
    /// Offset of W [outputs, inputs].
    pub weight: usize,
    /// Offset of b [outputs].
    pub bias: usize,
}

/// Where every parameter lives. The mu and log-variance heads are stored so that together they
/// form one [2 * latent, hidden] layer (mu rows first), computed by a single matmul.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub encoder: Vec<LinearLayout>,
    /// mu and logvar heads as one layer with 2 * latent outputs.
    pub head: LinearLayout,
    pub decoder: Vec<LinearLayout>,
    pub tensors: Vec<Tensor>,
    pub len: usize,
}

/// Appends tensors to the flat buffer in order.
#[derive(Default)]
struct LayoutBuilder {
    tensors: Vec<Tensor>,
    len: usize,
}

impl LayoutBuilder {
    /// Appends a tensor and returns its offset.
    fn push(&mut self, name: String, shape: Vec<usize>) -> usize {
        let t = Tensor { name, shape, offset: self.len };
        self.len += t.len();
        let offset = t.offset;
        self.tensors.push(t);
        offset
    }

    fn linear(&mut self, prefix: &str, inputs: usize, outputs: usize) -> LinearLayout {
        let weight = self.push(format!("{prefix}.weight"), vec![outputs, inputs]);
        let bias = self.push(format!("{prefix}.bias"), vec![outputs]);
        LinearLayout { inputs, outputs, weight, bias }
    }
}

impl Layout {
    pub fn new(config: &Config) -> Layout {
        let mut b = LayoutBuilder::default();
        let enc = config.encoder_widths();
        let encoder: Vec<_> = enc.windows(2).enumerate().map(|(i, w)| b.linear(&format!("encoder.{i}"), w[0], w[1])).collect();
        let h = *enc.last().unwrap();
        let z = config.latent;
        // Heads: both weights, then both biases, so that they are contiguous [2z, h] and [2z].
        let weight = b.push("encoder.mu.weight".into(), vec![z, h]);
        b.push("encoder.logvar.weight".into(), vec![z, h]);
        let bias = b.push("encoder.mu.bias".into(), vec![z]);
        b.push("encoder.logvar.bias".into(), vec![z]);
        let head = LinearLayout { inputs: h, outputs: 2 * z, weight, bias };
        let dec = config.decoder_widths();
        let n = dec.len() - 1;
        let decoder = dec
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let name = if i + 1 == n { "decoder.out".to_string() } else { format!("decoder.{i}") };
                b.linear(&name, w[0], w[1])
            })
            .collect();
        Layout { encoder, head, decoder, tensors: b.tensors, len: b.len }
    }

    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// All linear layers in forward order (encoder, head, decoder).
    pub fn layers(&self) -> impl Iterator<Item = &LinearLayout> {
        self.encoder.iter().chain(std::iter::once(&self.head)).chain(&self.decoder)
    }
}

/// Initial parameters, as PyTorch's `nn.Linear` does: W and b uniform in +-1/sqrt(fan_in).
/// The decoder's output bias starts at the logit of the mean pixel (Bernoulli) or at the mean
/// pixel (Gaussian), when `mean_pixel` is given, so the first samples are the average image
/// rather than uniform grey.
pub fn initial_parameters(config: &Config, layout: &Layout, mean_pixel: Option<&[f32]>) -> Vec<f32> {
    let mut rng = Rng::new(config.seed);
    let mut params = vec![0.0; layout.len];
    for layer in layout.layers() {
        let bound = 1.0 / (layer.inputs as f32).sqrt();
        for v in &mut params[layer.weight..layer.weight + layer.inputs * layer.outputs] {
            *v = rng.range(-bound, bound);
        }
        for v in &mut params[layer.bias..layer.bias + layer.outputs] {
            *v = rng.range(-bound, bound);
        }
    }
    if let Some(mean) = mean_pixel {
        let out = layout.decoder.last().unwrap();
        for (b, &m) in params[out.bias..out.bias + out.outputs].iter_mut().zip(mean) {
            *b = match config.likelihood {
                Likelihood::Bernoulli => {
                    let p = m.clamp(1e-3, 1.0 - 1e-3);
                    (p / (1.0 - p)).ln()
                }
                Likelihood::Gaussian { .. } => m,
            };
        }
    }
    params
}
