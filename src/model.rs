//! The model's configuration (an encoder and a decoder, each a list of layers, around the latent
//! heads), its shapes inferred and checked layer by layer, its parameter layout (one flat buffer
//! plus an offset table, PyTorch names) and its initialisation.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// p(x|z): what the decoder's outputs parameterise. As JSON: `{"kind": "bernoulli"}`,
/// `{"kind": "gaussian", "sigma": 0.1}` or `{"kind": "gaussian_var", "variance_floor": 0.001}`,
/// nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", try_from = "LikelihoodJson")]
pub enum Likelihood {
    /// Pixels in [0, 1] as Bernoulli probabilities; outputs are logits; loss = BCE with logits.
    Bernoulli,
    /// Pixels as Gaussian with mean = output and a fixed standard deviation `sigma`;
    /// loss = sum (x - mean)^2 / (2 sigma^2) + D log(sigma sqrt(2 pi)).
    Gaussian { sigma: f32 },
    /// Kingma & Welling's Gaussian decoder: per pixel a mean and a variance. The decoder
    /// outputs two values per pixel, all the means' logits first, then all the log-variances
    /// (a flat output of 2 x pixels, or two channels): mean = sigmoid(first), log-variance =
    /// max(second, ln variance_floor). loss = sum (x - mean)^2 / (2 var) + log(2 pi var) / 2.
    GaussianVar { variance_floor: f32 },
}

/// The default variance floor of `Likelihood::GaussianVar` (a standard deviation of 0.032,
/// about 8 grey levels of 255). Without a floor, pixels that are always 0 (a digit's borders)
/// drive their variance to zero and the density to infinity.
pub const DEFAULT_VARIANCE_FLOOR: f32 = 1e-3;

impl Likelihood {
    /// The learned-variance Gaussian with the default floor.
    pub fn gaussian_var() -> Likelihood {
        Likelihood::GaussianVar { variance_floor: DEFAULT_VARIANCE_FLOOR }
    }

    /// Decoder outputs per pixel: 2 (mean and log-variance) for `GaussianVar`, else 1.
    pub fn outputs_per_pixel(self) -> usize {
        match self {
            Likelihood::GaussianVar { .. } => 2,
            Likelihood::Bernoulli | Likelihood::Gaussian { .. } => 1,
        }
    }

    /// The decoder's output shape for images of shape `input`: the outputs per pixel as
    /// channels of an image, or as blocks of a flat vector.
    pub fn output_shape(self, input: Shape) -> Shape {
        let k = self.outputs_per_pixel();
        match input {
            Shape::Flat(n) => Shape::Flat(k * n),
            Shape::Image { channels, height, width } => Shape::Image { channels: k * channels, height, width },
        }
    }

    /// The lower bound on the log-variance (`GaussianVar`), as the kernels clamp it.
    pub fn log_variance_floor(self) -> f32 {
        match self {
            Likelihood::GaussianVar { variance_floor } => variance_floor.ln(),
            Likelihood::Bernoulli | Likelihood::Gaussian { .. } => f32::NEG_INFINITY,
        }
    }
}

/// How a likelihood is read: serde's internally tagged enums let a unit variant carry unknown
/// fields (`{"kind": "bernoulli", "sigma": 0.1}` would load), so the fields are checked here.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LikelihoodJson {
    kind: String,
    sigma: Option<f32>,
    variance_floor: Option<f32>,
}

impl TryFrom<LikelihoodJson> for Likelihood {
    type Error = String;
    fn try_from(j: LikelihoodJson) -> Result<Self, String> {
        match (j.kind.as_str(), j.sigma, j.variance_floor) {
            ("bernoulli", None, None) => Ok(Likelihood::Bernoulli),
            ("bernoulli", ..) => Err("a Bernoulli likelihood has no sigma or variance_floor".into()),
            ("gaussian", Some(sigma), None) => Ok(Likelihood::Gaussian { sigma }),
            ("gaussian", None, None) => Err("a Gaussian likelihood needs its sigma".into()),
            ("gaussian", _, Some(_)) => Err("a fixed-variance Gaussian has no variance_floor (use \"gaussian_var\" to learn the variance)".into()),
            ("gaussian_var", None, Some(variance_floor)) => Ok(Likelihood::GaussianVar { variance_floor }),
            ("gaussian_var", None, None) => Err("a learned-variance Gaussian needs its variance_floor (e.g. 0.001)".into()),
            ("gaussian_var", Some(_), _) => Err("a learned-variance Gaussian has no sigma (its variance is learned)".into()),
            (other, ..) => Err(format!("unknown likelihood \"{other}\" (expected \"bernoulli\", \"gaussian\" or \"gaussian_var\")")),
        }
    }
}

/// q(z|x) and p(z): the family of the latent variables. As JSON `{"kind": "gaussian"}` or
/// `{"kind": "categorical", "classes": 10, "tau_start": 1.0, "tau_floor": 0.5, "tau_rate": 0.001}`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LatentType {
    /// `latent` Gaussian dimensions: q = N(mu, diag(exp(logvar))), p = N(0, I), and training
    /// decodes z = mu + exp(logvar / 2) eps (Kingma & Welling).
    Gaussian {},
    /// `latent` categorical variables of `classes` classes each, relaxed by Gumbel-softmax (Jang,
    /// Gu & Poole; Maddison et al.): the encoder gives latent x classes logits; training decodes
    /// y = softmax((logits + g) / tau) with Gumbel noise g, tau = max(tau_floor, tau_start
    /// exp(-tau_rate step)); p is uniform and the KL is analytic on the class probabilities.
    /// Evaluation decodes one-hot samples (the discrete ELBO); reconstructions decode the class
    /// probabilities.
    Categorical { classes: usize, tau_start: f32, tau_floor: f32, tau_rate: f32 },
}

impl Default for LatentType {
    fn default() -> Self {
        LatentType::Gaussian {}
    }
}

impl LatentType {
    /// Categorical latents of `classes` classes with the default schedule: tau from 1 down to its
    /// floor 0.5 in about 700 steps (10 epochs of the bundled digits at batch 128).
    pub fn categorical(classes: usize) -> LatentType {
        LatentType::Categorical { classes, tau_start: 1.0, tau_floor: 0.5, tau_rate: 1e-3 }
    }

    /// Classes per variable (None for Gaussian latents).
    pub fn classes(self) -> Option<usize> {
        match self {
            LatentType::Gaussian {} => None,
            LatentType::Categorical { classes, .. } => Some(classes),
        }
    }

    /// The length of one code z, the decoder's input: `latent` values, or `latent` one-hot
    /// (relaxed: probability) vectors of `classes`.
    pub fn code_len(self, latent: usize) -> usize {
        latent * self.classes().unwrap_or(1)
    }

    /// Outputs of the encoder's heads: mu and log-variance, or the logits.
    pub fn head_len(self, latent: usize) -> usize {
        match self {
            LatentType::Gaussian {} => 2 * latent,
            LatentType::Categorical { classes, .. } => latent * classes,
        }
    }

    /// The Gumbel-softmax temperature at training step `step` (as the kernel computes it, in f32).
    pub fn temperature(self, step: u32) -> f32 {
        match self {
            LatentType::Gaussian {} => 1.0,
            LatentType::Categorical { tau_start, tau_floor, tau_rate, .. } => tau_floor.max(tau_start * (-tau_rate * step as f32).exp()),
        }
    }
}

/// Element-wise nonlinearity applied after a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Identity,
    Relu,
    Tanh,
}

impl Activation {
    /// The code the WGSL kernels switch on (`common.wgsl`).
    pub fn code(self) -> u32 {
        match self {
            Activation::Identity => 0,
            Activation::Relu => 1,
            Activation::Tanh => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
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

/// The shape of one datapoint's tensor: flat (what a linear layer takes) or channels x height x
/// width (what a convolution takes), in PyTorch's C, H, W memory order. As JSON: `[784]` or
/// `[1, 28, 28]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Flat(usize),
    Image { channels: usize, height: usize, width: usize },
}

impl Shape {
    pub fn len(self) -> usize {
        match self {
            Shape::Flat(n) => n,
            Shape::Image { channels, height, width } => channels * height * width,
        }
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Flat(n) => write!(f, "{n}"),
            Shape::Image { channels, height, width } => write!(f, "{channels}x{height}x{width}"),
        }
    }
}

impl Serialize for Shape {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Shape::Flat(n) => [n].serialize(s),
            Shape::Image { channels, height, width } => [channels, height, width].serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Vec::<usize>::deserialize(d)?[..] {
            [n] => Ok(Shape::Flat(n)),
            [channels, height, width] => Ok(Shape::Image { channels, height, width }),
            ref other => Err(serde::de::Error::custom(format!("a shape is [n] or [channels, height, width], got {other:?}"))),
        }
    }
}

/// One layer of the encoder or decoder. Each maps one shape to the next; PyTorch's modules of
/// the same name and arguments compute the same function with the same parameters. As JSON,
/// e.g. `{"type": "conv2d", "out": 32, "kernel": 4, "stride": 2, "padding": 1, "activation": "relu"}`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Layer {
    /// `nn.Linear(in, out)` on a flat input, then the activation.
    Linear { out: usize, activation: Activation },
    /// `nn.Conv2d(in, out, kernel, stride, padding)` (square kernel), then the activation.
    Conv2d { out: usize, kernel: usize, stride: usize, padding: usize, activation: Activation },
    /// `nn.ConvTranspose2d(in, out, kernel, stride, padding)`, then the activation.
    ConvTranspose2d { out: usize, kernel: usize, stride: usize, padding: usize, activation: Activation },
    /// `nn.Flatten()`: C x H x W to C * H * W (the same memory).
    Flatten {},
    /// `nn.Unflatten(1, shape)`: a flat input viewed as channels x height x width.
    Reshape { shape: [usize; 3] },
}

impl Layer {
    pub fn linear(out: usize, activation: Activation) -> Layer {
        Layer::Linear { out, activation }
    }

    /// The activation applied to this layer's output (identity for flatten and reshape).
    pub fn activation(&self) -> Activation {
        match *self {
            Layer::Linear { activation, .. } | Layer::Conv2d { activation, .. } | Layer::ConvTranspose2d { activation, .. } => activation,
            Layer::Flatten {} | Layer::Reshape { .. } => Activation::Identity,
        }
    }

    /// Whether the layer only views its input differently (no parameters, no computation).
    pub fn is_view(&self) -> bool {
        matches!(self, Layer::Flatten {} | Layer::Reshape { .. })
    }

    /// Lower-case name, as in the JSON and in error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Linear { .. } => "linear",
            Layer::Conv2d { .. } => "conv2d",
            Layer::ConvTranspose2d { .. } => "conv_transpose2d",
            Layer::Flatten {} => "flatten",
            Layer::Reshape { .. } => "reshape",
        }
    }

    /// Short description for the page's model summary, e.g. "conv2d 32 k4 s2 p1 relu".
    pub fn describe(&self) -> String {
        let act = |a: Activation| if a == Activation::Identity { String::new() } else { format!(" {}", a.name()) };
        match *self {
            Layer::Linear { out, activation } => format!("linear {out}{}", act(activation)),
            Layer::Conv2d { out, kernel, stride, padding, activation } | Layer::ConvTranspose2d { out, kernel, stride, padding, activation } => {
                format!("{} {out} k{kernel} s{stride} p{padding}{}", self.kind(), act(activation))
            }
            Layer::Flatten {} => "flatten".into(),
            Layer::Reshape { shape: [c, h, w] } => format!("reshape {c}x{h}x{w}"),
        }
    }

    /// The output shape for `input`, or why this layer cannot take it.
    pub fn output_shape(&self, input: Shape) -> Result<Shape, String> {
        let image = |what: &str| match input {
            Shape::Image { channels, height, width } => Ok((channels, height, width)),
            Shape::Flat(n) => Err(format!("{what} needs a channels x height x width input, got a flat {n} (add a reshape before it)")),
        };
        let positive = |what: &str, v: usize, max: usize| {
            if (1..=max).contains(&v) { Ok(()) } else { Err(format!("{what} must be 1..={max}, got {v}")) }
        };
        match *self {
            Layer::Linear { out, .. } => {
                positive("out", out, 1 << 16)?;
                match input {
                    Shape::Flat(_) => Ok(Shape::Flat(out)),
                    Shape::Image { .. } => Err(format!("linear needs a flat input, got {input} (add a flatten before it)")),
                }
            }
            Layer::Conv2d { out, kernel, stride, padding, .. } | Layer::ConvTranspose2d { out, kernel, stride, padding, .. } => {
                let (_, height, width) = image(self.kind())?;
                positive("out channels", out, 1024)?;
                positive("kernel", kernel, 8)?;
                positive("stride", stride, 4)?;
                if padding >= kernel {
                    return Err(format!("padding {padding} must be smaller than the kernel {kernel}"));
                }
                let size = |n: usize| -> Option<usize> {
                    if matches!(self, Layer::Conv2d { .. }) {
                        (n + 2 * padding).checked_sub(kernel).map(|v| v / stride + 1)
                    } else {
                        ((n - 1) * stride + kernel).checked_sub(2 * padding).filter(|&v| v > 0)
                    }
                };
                match (size(height), size(width)) {
                    (Some(h), Some(w)) => Ok(Shape::Image { channels: out, height: h, width: w }),
                    _ => Err(format!("kernel {kernel}, stride {stride}, padding {padding} do not fit a {input} input")),
                }
            }
            Layer::Flatten {} => Ok(Shape::Flat(input.len())),
            Layer::Reshape { shape: [channels, height, width] } => {
                let to = Shape::Image { channels, height, width };
                match input {
                    Shape::Flat(n) if n == to.len() => Ok(to),
                    _ => Err(format!("cannot view a {input} input as {to} (a reshape takes a flat input of the same size)")),
                }
            }
        }
    }
}

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

/// The two model families the page offers, as the layers they stand for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Architecture {
    /// Fully connected: `hidden` widths in the encoder, mirrored in the decoder.
    Mlp { hidden: Vec<usize>, activation: Activation },
    /// Convolutional: a 4x4, stride-2, padding-1 Conv2d + ReLU per entry of `channels` (each
    /// halves the image), flatten, a `dense` linear layer; the decoder mirrors it with
    /// ConvTranspose2d layers up to one channel of logits (two for a learned variance).
    Conv { channels: Vec<usize>, dense: usize },
}

impl Architecture {
    /// The input shape and the layers for images of `height` x `width`, the decoder ending in
    /// `outputs` values per pixel (`Likelihood::outputs_per_pixel`).
    pub fn layers(&self, height: usize, width: usize, outputs: usize) -> Result<(Shape, Vec<Layer>, Vec<Layer>), ConfigError> {
        let pixels = height * width;
        match self {
            Architecture::Mlp { hidden, activation } => {
                let encoder = hidden.iter().map(|&h| Layer::linear(h, *activation)).collect();
                let last = Layer::linear(outputs * pixels, Activation::Identity);
                let decoder = hidden.iter().rev().map(|&h| Layer::linear(h, *activation)).chain([last]).collect();
                Ok((Shape::Flat(pixels), encoder, decoder))
            }
            Architecture::Conv { channels, dense } => {
                let halvings = channels.len() as u32;
                if channels.is_empty() || channels.len() > 4 {
                    return Err(bad("channels", format!("give 1 to 4 channel counts, got {}", channels.len())));
                }
                let (h, w) = (height >> halvings, width >> halvings);
                if h == 0 || w == 0 || h << halvings != height || w << halvings != width {
                    return Err(bad("channels", format!("{} stride-2 layers need image sides divisible by {}; the images are {height}x{width}", halvings, 1 << halvings)));
                }
                let conv = |out| Layer::Conv2d { out, kernel: 4, stride: 2, padding: 1, activation: Activation::Relu };
                let convt = |out, activation| Layer::ConvTranspose2d { out, kernel: 4, stride: 2, padding: 1, activation };
                let last = *channels.last().unwrap();
                let mut encoder: Vec<Layer> = channels.iter().map(|&c| conv(c)).collect();
                encoder.extend([Layer::Flatten {}, Layer::linear(*dense, Activation::Relu)]);
                let mut decoder = vec![
                    Layer::linear(*dense, Activation::Relu),
                    Layer::linear(last * h * w, Activation::Relu),
                    Layer::Reshape { shape: [last, h, w] },
                ];
                decoder.extend(channels.iter().rev().skip(1).map(|&c| convt(c, Activation::Relu)));
                decoder.push(convt(outputs, Activation::Identity));
                Ok((Shape::Image { channels: 1, height, width }, encoder, decoder))
            }
        }
    }
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

    fn validate_settings(&self) -> Result<(), ConfigError> {
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

fn bad(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError { field, message: message.into() }
}

/// One tensor in the flat parameter buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// The name PyTorch gives it, e.g. "encoder.0.weight".
    pub name: String,
    /// Linear: [out, in] and [out]; Conv2d: [out, in, k, k]; ConvTranspose2d: [in, out, k, k].
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

/// One layer with its shapes resolved and its parameters placed.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerLayout {
    pub layer: Layer,
    /// PyTorch's name for the module, e.g. "encoder.3".
    pub name: String,
    pub input: Shape,
    pub output: Shape,
    /// Offsets of the weight and bias in the flat buffer (0 for views).
    pub weight: usize,
    pub bias: usize,
}

impl LayerLayout {
    pub fn activation(&self) -> Activation {
        self.layer.activation()
    }

    /// (weight elements, bias elements, fan_in as PyTorch computes it for initialisation), or
    /// None for a view. ConvTranspose2d's weight is [in, out, k, k] and PyTorch takes fan_in
    /// from its size(1), the output channels.
    pub fn parameter_sizes(&self) -> Option<(usize, usize, usize)> {
        match (self.layer, self.input) {
            (Layer::Linear { out, .. }, input) => Some((out * input.len(), out, input.len())),
            (Layer::Conv2d { out, kernel, .. }, Shape::Image { channels, .. }) => {
                Some((out * channels * kernel * kernel, out, channels * kernel * kernel))
            }
            (Layer::ConvTranspose2d { out, kernel, .. }, Shape::Image { channels, .. }) => {
                Some((out * channels * kernel * kernel, out, out * kernel * kernel))
            }
            _ => None,
        }
    }
}

/// Where every parameter lives. The mu and log-variance heads are stored so that together they
/// form one linear layer [2 * latent, trunk] (mu rows first), computed by a single matmul.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub encoder: Vec<LayerLayout>,
    /// mu and logvar heads as one linear layer with 2 * latent outputs.
    pub head: LayerLayout,
    pub decoder: Vec<LayerLayout>,
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

    /// Places a stack of layers named as the modules of an `nn.Sequential` called `prefix`
    /// (where each activation other than identity is a module of its own).
    fn stack(&mut self, field: &'static str, prefix: &str, input: Shape, layers: &[Layer]) -> Result<Vec<LayerLayout>, ConfigError> {
        let mut shape = input;
        let mut index = 0;
        let mut out = Vec::with_capacity(layers.len());
        for layer in layers {
            let name = format!("{prefix}.{index}");
            let output = layer
                .output_shape(shape)
                .map_err(|e| bad(field, format!("layer {name} ({}): {e}", layer.kind())))?;
            let (weight, bias) = match (*layer, shape, output) {
                (Layer::Linear { out, .. }, Shape::Flat(inputs), _) => {
                    (self.push(format!("{name}.weight"), vec![out, inputs]), self.push(format!("{name}.bias"), vec![out]))
                }
                (Layer::Conv2d { out, kernel, .. }, Shape::Image { channels, .. }, _) => (
                    self.push(format!("{name}.weight"), vec![out, channels, kernel, kernel]),
                    self.push(format!("{name}.bias"), vec![out]),
                ),
                (Layer::ConvTranspose2d { out, kernel, .. }, Shape::Image { channels, .. }, _) => (
                    self.push(format!("{name}.weight"), vec![channels, out, kernel, kernel]),
                    self.push(format!("{name}.bias"), vec![out]),
                ),
                _ => (0, 0),
            };
            out.push(LayerLayout { layer: *layer, name, input: shape, output, weight, bias });
            index += 1 + (layer.activation() != Activation::Identity) as usize;
            shape = output;
        }
        Ok(out)
    }
}

impl Layout {
    /// The layout of a valid configuration.
    pub fn new(config: &Config) -> Layout {
        Layout::try_new(config).unwrap_or_else(|e| panic!("Layout::new needs a valid configuration: {e}"))
    }

    /// Validates `config` and places its parameters.
    pub fn try_new(config: &Config) -> Result<Layout, ConfigError> {
        config.validate_settings()?;
        let mut b = LayoutBuilder::default();
        let encoder = b.stack("encoder", "encoder", config.input, &config.encoder)?;
        let trunk = encoder.last().map_or(config.input, |l| l.output);
        let Shape::Flat(h) = trunk else {
            return Err(bad("encoder", format!("the encoder ends in a {trunk} output; the latent heads need a flat one (end with flatten or linear)")));
        };
        let (z, heads) = (config.latent, config.latent_type.head_len(config.latent));
        let (name, weight, bias) = match config.latent_type {
            // Both weights, then both biases, so that they are contiguous [2z, h] and [2z].
            LatentType::Gaussian {} => {
                let weight = b.push("mu.weight".into(), vec![z, h]);
                b.push("logvar.weight".into(), vec![z, h]);
                let bias = b.push("mu.bias".into(), vec![z]);
                b.push("logvar.bias".into(), vec![z]);
                ("mu+logvar", weight, bias)
            }
            LatentType::Categorical { .. } => ("logits", b.push("logits.weight".into(), vec![heads, h]), b.push("logits.bias".into(), vec![heads])),
        };
        let head = LayerLayout { layer: Layer::linear(heads, Activation::Identity), name: name.into(), input: trunk, output: Shape::Flat(heads), weight, bias };
        let code = Shape::Flat(config.code_len());
        let decoder = b.stack("decoder", "decoder", code, &config.decoder)?;
        let output = decoder.last().map_or(code, |l| l.output);
        let wanted = config.likelihood.output_shape(config.input);
        if output != wanted {
            let per_pixel = match config.likelihood.outputs_per_pixel() {
                1 => String::new(),
                _ => " (a mean and a log-variance per pixel)".into(),
            };
            return Err(bad("decoder", format!("the decoder ends in a {output} output but {} images need {wanted}{per_pixel}", config.input)));
        }
        if decoder.last().is_some_and(|l| l.activation() != Activation::Identity) {
            return Err(bad("decoder", "the last decoder layer outputs the likelihood's parameters (logits or means): give it no activation"));
        }
        Ok(Layout { encoder, head, decoder, tensors: b.tensors, len: b.len })
    }

    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// All layers in forward order (encoder, heads, decoder).
    pub fn layers(&self) -> impl Iterator<Item = &LayerLayout> {
        self.encoder.iter().chain(std::iter::once(&self.head)).chain(&self.decoder)
    }

    /// The names checkpoints used before layers existed, in `tensors` order, for an MLP:
    /// encoder.i and decoder.i counted over linear layers only, encoder.mu / encoder.logvar
    /// for the heads, decoder.out for the last layer.
    pub fn legacy_names(&self) -> Vec<String> {
        let linear = |prefix: &str, layers: &[LayerLayout], last: Option<&str>| -> Vec<String> {
            (0..layers.len())
                .flat_map(|i| {
                    let module = match last {
                        Some(last) if i + 1 == layers.len() => format!("{prefix}.{last}"),
                        _ => format!("{prefix}.{i}"),
                    };
                    [format!("{module}.weight"), format!("{module}.bias")]
                })
                .collect()
        };
        let heads = ["encoder.mu.weight", "encoder.logvar.weight", "encoder.mu.bias", "encoder.logvar.bias"].map(String::from);
        [linear("encoder", &self.encoder, None), heads.to_vec(), linear("decoder", &self.decoder, Some("out"))].concat()
    }
}

/// The activation whose derivative turns dL/d(input of layer i) into dL/d(pre-activation) of
/// whatever computed that input: that of the nearest layer before i that computes (views keep
/// their input's values), or `first` (identity: x or z) if there is none.
pub fn activation_before(layers: &[LayerLayout], i: usize, first: Activation) -> Activation {
    layers[..i].iter().rev().find(|l| !l.layer.is_view()).map_or(first, |l| l.activation())
}

/// Initial parameters, as PyTorch initialises `nn.Linear`, `nn.Conv2d` and
/// `nn.ConvTranspose2d`: W and b uniform in +-1/sqrt(fan_in), where fan_in is the weight's
/// size(1) times the kernel's area (for ConvTranspose2d, PyTorch's size(1) is the output
/// channels). The decoder's output bias for the means starts at the logit of the mean pixel
/// (Bernoulli, and the sigmoid means of GaussianVar) or at the mean pixel (Gaussian), when
/// `mean_pixel` is given, so the first samples are the average image rather than uniform grey;
/// a convolutional output layer has one bias for all pixels, so it starts at the mean over the
/// image. The log-variances' biases keep PyTorch's initialisation.
pub fn initial_parameters(config: &Config, layout: &Layout, mean_pixel: Option<&[f32]>) -> Vec<f32> {
    let mut rng = Rng::new(config.seed);
    let mut params = vec![0.0; layout.len];
    for l in layout.layers() {
        let Some((weights, biases, fan_in)) = l.parameter_sizes() else { continue };
        let bound = 1.0 / (fan_in as f32).sqrt();
        for v in &mut params[l.weight..l.weight + weights] {
            *v = rng.range(-bound, bound);
        }
        for v in &mut params[l.bias..l.bias + biases] {
            *v = rng.range(-bound, bound);
        }
    }
    if let (Some(mean), Some(out)) = (mean_pixel, layout.decoder.last()) {
        let start = |m: f32| match config.likelihood {
            Likelihood::Bernoulli | Likelihood::GaussianVar { .. } => {
                let p = m.clamp(1e-3, 1.0 - 1e-3);
                (p / (1.0 - p)).ln()
            }
            Likelihood::Gaussian { .. } => m,
        };
        match out.layer {
            Layer::Linear { .. } => {
                // The means are the first `pixels` outputs (zip stops at the mean image's end).
                for (b, &m) in params[out.bias..].iter_mut().zip(mean) {
                    *b = start(m);
                }
            }
            Layer::Conv2d { .. } | Layer::ConvTranspose2d { .. } => {
                params[out.bias] = start(mean.iter().sum::<f32>() / mean.len().max(1) as f32);
            }
            _ => {}
        }
    }
    params
}
