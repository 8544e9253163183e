//! Everything that defines a model and how it trains, its checks, and the errors that name
//! the field at fault.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Activation, Architecture, LatentType, Layer, Layout, Likelihood, Shape};

/// Everything that defines a model and how it trains. As JSON (checkpoints) every field is
/// required and unknown fields are refused, so a misspelt field is an error rather than a
/// silently filled-in default; `from_partial_json` fills in what a caller leaves out.
/// Checkpoints saved before layers existed (`hidden` and `activation` instead of `encoder` and
/// `decoder`) are read as the MLP they describe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// One datapoint's shape: `[pixels]` for an MLP, `[1, rows, cols]` for a convolutional encoder.
    pub input: Shape,
    /// Layers from the input to the trunk's output, which must be flat: the mu and log-variance
    /// heads are linear layers on it.
    pub encoder: Vec<Layer>,
    /// Latent dimensions (categorical variables), 1..=64.
    pub latent: usize,
    /// Gaussian or categorical latents (absent in files saved before categorical ones existed:
    /// Gaussian).
    #[serde(default)]
    pub latent_type: LatentType,
    /// Layers from z to the decoder's output, which must have the input's shape.
    pub decoder: Vec<Layer>,
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
        Config::mlp(784, &[400], 20)
    }
}

impl Config {
    /// An MLP with ReLU hidden layers of these widths (mirrored in the decoder), otherwise the
    /// reference settings.
    pub fn mlp(pixels: usize, hidden: &[usize], latent: usize) -> Config {
        let arch = Architecture::Mlp { hidden: hidden.to_vec(), activation: Activation::Relu };
        let (input, encoder, decoder) = arch.layers(1, pixels, 1).expect("an MLP fits any image");
        Config {
            input,
            encoder,
            latent,
            latent_type: LatentType::Gaussian {},
            decoder,
            likelihood: Likelihood::Bernoulli,
            beta: 1.0,
            samples: 1,
            learning_rate: 1e-3,
            batch_size: 128,
            seed: 1,
        }
    }

    /// The `conv` preset on 28x28 digits: Conv2d 1->32->64 (4x4, stride 2, padding 1, ReLU),
    /// flatten, Linear 3136->256 + ReLU, z20; the decoder mirrors it with ConvTranspose2d.
    pub fn conv() -> Config {
        let arch = Architecture::Conv { channels: vec![32, 64], dense: 256 };
        let (input, encoder, decoder) = arch.layers(28, 28, 1).expect("the preset fits 28x28");
        Config { input, encoder, decoder, ..Config::default() }
    }

    /// This configuration with another likelihood, its decoder's last layer resized to the
    /// likelihood's outputs per pixel (linear: outputs x pixels; convolution: outputs x the
    /// image's channels).
    pub fn with_likelihood(mut self, likelihood: Likelihood) -> Config {
        let per_pixel = |shape: Shape| match shape {
            Shape::Flat(n) => n,
            Shape::Image { channels, .. } => channels,
        };
        let (from, to) = (self.likelihood.outputs_per_pixel(), likelihood.outputs_per_pixel());
        if let Some(Layer::Linear { out, .. } | Layer::Conv2d { out, .. } | Layer::ConvTranspose2d { out, .. }) = self.decoder.last_mut() {
            if *out == from * per_pixel(self.input) {
                *out = to * per_pixel(self.input);
            }
        }
        self.likelihood = likelihood;
        self
    }

    /// A named preset: "mlp" (the reference), "conv", or either with a suffix: "-gauss-var"
    /// (Kingma & Welling's Gaussian decoder, a mean and a variance per pixel, default floor) or
    /// "-categorical" (20 categorical variables of 10 classes, default schedule).
    pub fn preset(name: &str) -> Option<Config> {
        let (base, variant) = name.split_once('-').unwrap_or((name, ""));
        let config = match base {
            "mlp" => Config::default(),
            "conv" => Config::conv(),
            _ => return None,
        };
        match variant {
            "" => Some(config),
            "gauss-var" => Some(config.with_likelihood(Likelihood::gaussian_var())),
            "categorical" => Some(Config { latent_type: LatentType::categorical(10), ..config }),
            _ => None,
        }
    }

    /// A configuration from a JSON object holding any of the fields; the rest take the
    /// reference values. Unknown fields (a misspelling) and wrongly typed values are refused,
    /// naming the field. Instead of `input`, `encoder` and `decoder`, the object may give an
    /// `architecture` (`{"kind": "mlp", "hidden": [400], "activation": "relu"}` or
    /// `{"kind": "conv", "channels": [32, 64], "dense": 256}`) and the `image` size
    /// `[rows, cols]`, as the page's settings do.
    pub fn from_partial_json(partial: serde_json::Value) -> Result<Config, ConfigError> {
        let serde_json::Value::Object(mut partial) = partial else {
            return Err(bad("config", "must be an object of configuration fields"));
        };
        if let Some(arch) = partial.remove("architecture") {
            if let Some(key) = ["input", "encoder", "decoder"].into_iter().find(|k| partial.contains_key(*k)) {
                return Err(bad("architecture", format!("give either an architecture or \"{key}\", not both")));
            }
            let arch: Architecture = serde_json::from_value(arch).map_err(|e| bad("architecture", e.to_string()))?;
            let image = partial.remove("image").ok_or_else(|| bad("architecture", "an architecture needs the image size, \"image\": [rows, cols]"))?;
            let [rows, cols]: [usize; 2] = serde_json::from_value(image).map_err(|e| bad("image", e.to_string()))?;
            let likelihood: Likelihood = match partial.get("likelihood") {
                Some(v) => serde_json::from_value(v.clone()).map_err(|e| bad("likelihood", e.to_string()))?,
                None => Config::default().likelihood,
            };
            let (input, encoder, decoder) = arch.layers(rows, cols, likelihood.outputs_per_pixel())?;
            let to_value = |v: serde_json::Result<serde_json::Value>| v.expect("layers serialise");
            partial.insert("input".into(), to_value(serde_json::to_value(input)));
            partial.insert("encoder".into(), to_value(serde_json::to_value(encoder)));
            partial.insert("decoder".into(), to_value(serde_json::to_value(decoder)));
        }
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

    /// The architecture these layers are an instance of, if they are one (the page's settings
    /// show it; a checkpoint with other layers has none).
    pub fn architecture(&self) -> Option<Architecture> {
        let (rows, cols) = match self.input {
            Shape::Flat(n) => (1, n),
            Shape::Image { height, width, .. } => (height, width),
        };
        let linear_outs = |layers: &[Layer]| layers.iter().filter_map(|l| if let Layer::Linear { out, .. } = l { Some(*out) } else { None }).collect::<Vec<_>>();
        let candidate = if matches!(self.input, Shape::Flat(_)) {
            let activation = self.encoder.first().map_or(Activation::Relu, Layer::activation);
            Architecture::Mlp { hidden: linear_outs(&self.encoder), activation }
        } else {
            let channels = self.encoder.iter().filter_map(|l| if let Layer::Conv2d { out, .. } = l { Some(*out) } else { None }).collect();
            Architecture::Conv { channels, dense: *linear_outs(&self.encoder).first()? }
        };
        let (input, encoder, decoder) = candidate.layers(rows, cols, self.likelihood.outputs_per_pixel()).ok()?;
        (input == self.input && encoder == self.encoder && decoder == self.decoder).then_some(candidate)
    }

    /// Reads a configuration as a checkpoint stores it: today's form, or the form saved before
    /// layers existed (`input` pixels, `hidden` widths, one `activation`), which describes an MLP.
    pub fn from_json(json: &str) -> Result<Config, String> {
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        if value.get("hidden").is_some() {
            let old: LegacyConfig = serde_json::from_value(value).map_err(|e| e.to_string())?;
            Ok(old.into())
        } else {
            serde_json::from_value(value).map_err(|e| e.to_string())
        }
    }

    /// Checks every field on its own terms and infers every layer's shape; device limits are
    /// checked by the GPU trainer. Errors name the layer and the shapes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Layout::try_new(self).map(|_| ())
    }

    pub(super) fn validate_settings(&self) -> Result<(), ConfigError> {
        let pixels = self.input.len();
        if pixels == 0 || pixels > 1 << 16 {
            return Err(bad("input", format!("must be 1..=65536 pixels, got {}", self.input)));
        }
        if let Shape::Image { channels, .. } = self.input {
            if channels != 1 {
                return Err(bad("input", format!("images have one channel, got {}", self.input)));
            }
        }
        for (field, layers) in [("encoder", &self.encoder), ("decoder", &self.decoder)] {
            if layers.len() > 12 {
                return Err(bad(field, format!("at most 12 layers, got {}", layers.len())));
            }
        }
        if !(1..=64).contains(&self.latent) {
            return Err(bad("latent", format!("must be 1..=64, got {}", self.latent)));
        }
        if let LatentType::Categorical { classes, tau_start, tau_floor, tau_rate } = self.latent_type {
            let field = "latent_type";
            if !(2..=64).contains(&classes) {
                return Err(bad(field, format!("classes must be 2..=64, got {classes}")));
            }
            if !(tau_start.is_finite() && tau_start > 0.0) {
                return Err(bad(field, format!("tau_start must be a positive number, got {tau_start}")));
            }
            // The relaxed samples' gradients scale with 1 / tau: below 0.05 they are too steep for
            // Adam's step size to follow.
            if !(tau_floor >= 0.05 && tau_floor <= tau_start) {
                return Err(bad(field, format!("tau_floor must be in [0.05, tau_start = {tau_start}], got {tau_floor}")));
            }
            if !(tau_rate.is_finite() && tau_rate >= 0.0) {
                return Err(bad(field, format!("tau_rate must be a number >= 0, got {tau_rate}")));
            }
        }
        match self.likelihood {
            Likelihood::Gaussian { sigma } if !(sigma.is_finite() && sigma > 0.0) => {
                return Err(bad("likelihood", format!("Gaussian sigma must be positive, got {sigma}")));
            }
            // Pixels lie in [0, 1]: a variance above 1 is never needed; one below 1e-6 gives
            // densities (and gradients) beyond what f32 sums keep accurate.
            Likelihood::GaussianVar { variance_floor: v } if !(1e-6..=1.0).contains(&v) => {
                return Err(bad("likelihood", format!("the variance floor must be in [1e-6, 1], got {v}")));
            }
            _ => {}
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

    /// Pixels per image.
    pub fn pixels(&self) -> usize {
        self.input.len()
    }

    /// Values per code z (the decoder's input).
    pub fn code_len(&self) -> usize {
        self.latent_type.code_len(self.latent)
    }

    /// "1x28x28 → conv2d 32 k4 s2 p1 relu → ... → z20 → ... → 1x28x28": the page's summary.
    pub fn summary(&self) -> String {
        let enc = self.encoder.iter().map(Layer::describe);
        let dec = self.decoder.iter().map(Layer::describe);
        let parts: Vec<String> = std::iter::once(self.input.to_string())
            .chain(enc)
            .chain([match self.latent_type.classes() {
                None => format!("z{}", self.latent),
                Some(k) => format!("z{}x{k} categorical", self.latent),
            }])
            .chain(dec)
            .collect();
        parts.join(" → ")
    }
}

/// A configuration as saved before layers existed: an MLP of `hidden` widths.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyConfig {
    input: usize,
    hidden: Vec<usize>,
    latent: usize,
    activation: Activation,
    likelihood: Likelihood,
    beta: f32,
    samples: usize,
    learning_rate: f32,
    batch_size: usize,
    seed: u32,
}

impl From<LegacyConfig> for Config {
    fn from(c: LegacyConfig) -> Config {
        let arch = Architecture::Mlp { hidden: c.hidden, activation: c.activation };
        let (input, encoder, decoder) = arch.layers(1, c.input, c.likelihood.outputs_per_pixel()).expect("an MLP fits any image");
        Config {
            input,
            encoder,
            latent: c.latent,
            latent_type: LatentType::Gaussian {},
            decoder,
            likelihood: c.likelihood,
            beta: c.beta,
            samples: c.samples,
            learning_rate: c.learning_rate,
            batch_size: c.batch_size,
            seed: c.seed,
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

pub(super) fn bad(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError { field, message: message.into() }
}
