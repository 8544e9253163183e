//! Where every parameter lives (one flat buffer plus an offset table, PyTorch names), and
//! the parameters' initialisation.

use crate::rng::Rng;

use super::{Activation, Config, ConfigError, LatentType, Layer, Likelihood, Shape, bad};

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
pub(super) struct LayoutBuilder {
    pub(super) tensors: Vec<Tensor>,
    pub(super) len: usize,
}

impl LayoutBuilder {
    /// Appends a tensor and returns its offset.
    pub(super) fn push(&mut self, name: String, shape: Vec<usize>) -> usize {
        let t = Tensor { name, shape, offset: self.len };
        self.len += t.len();
        let offset = t.offset;
        self.tensors.push(t);
        offset
    }

    /// Places one layer named `name` (a module's name: its tensors are `{name}.weight` and
    /// `{name}.bias`) on `input`, or says why the layer cannot take it.
    pub(super) fn place(&mut self, name: String, layer: Layer, input: Shape) -> Result<LayerLayout, String> {
        let output = layer.output_shape(input)?;
        let (weight, bias) = match (layer, input) {
            (Layer::Linear { out, .. }, Shape::Flat(inputs)) => {
                (self.push(format!("{name}.weight"), vec![out, inputs]), self.push(format!("{name}.bias"), vec![out]))
            }
            (Layer::Conv2d { out, kernel, .. }, Shape::Image { channels, .. }) => (
                self.push(format!("{name}.weight"), vec![out, channels, kernel, kernel]),
                self.push(format!("{name}.bias"), vec![out]),
            ),
            (Layer::ConvTranspose2d { out, kernel, .. }, Shape::Image { channels, .. }) => (
                self.push(format!("{name}.weight"), vec![channels, out, kernel, kernel]),
                self.push(format!("{name}.bias"), vec![out]),
            ),
            _ => (0, 0),
        };
        Ok(LayerLayout { layer, name, input, output, weight, bias })
    }

    /// Places the heads of `latent` Gaussian latents on a flat input of `inputs`: PyTorch's `mu`
    /// and `logvar` linear modules, stored both weights then both biases, so that together they
    /// are one linear layer [2 latent, inputs] and [2 latent] (means first), one matmul.
    pub(super) fn place_gaussian_heads(&mut self, latent: usize, inputs: usize) -> LayerLayout {
        let weight = self.push("mu.weight".into(), vec![latent, inputs]);
        self.push("logvar.weight".into(), vec![latent, inputs]);
        let bias = self.push("mu.bias".into(), vec![latent]);
        self.push("logvar.bias".into(), vec![latent]);
        let layer = Layer::linear(2 * latent, Activation::Identity);
        LayerLayout { layer, name: "mu+logvar".into(), input: Shape::Flat(inputs), output: Shape::Flat(2 * latent), weight, bias }
    }

    /// Places a stack of layers named as the modules of an `nn.Sequential` called `prefix`
    /// (where each activation other than identity is a module of its own).
    pub(super) fn stack(&mut self, field: &'static str, prefix: &str, input: Shape, layers: &[Layer]) -> Result<Vec<LayerLayout>, ConfigError> {
        let mut shape = input;
        let mut index = 0;
        let mut out = Vec::with_capacity(layers.len());
        for layer in layers {
            let name = format!("{prefix}.{index}");
            let placed = self.place(name.clone(), *layer, shape).map_err(|e| bad(field, format!("layer {name} ({}): {e}", layer.kind())))?;
            index += 1 + (layer.activation() != Activation::Identity) as usize;
            shape = placed.output;
            out.push(placed);
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
        let head = match config.latent_type {
            LatentType::Gaussian {} => b.place_gaussian_heads(z, h),
            LatentType::Categorical { .. } => {
                let (weight, bias) = (b.push("logits.weight".into(), vec![heads, h]), b.push("logits.bias".into(), vec![heads]));
                LayerLayout { layer: Layer::linear(heads, Activation::Identity), name: "logits".into(), input: trunk, output: Shape::Flat(heads), weight, bias }
            }
        };
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
    let mut params = vec![0.0; layout.len];
    initialise(&mut params, layout.layers(), config.seed);
    if let (Some(mean), Some(out)) = (mean_pixel, layout.decoder.last()) {
        start_output_bias(&mut params, out, config.likelihood, mean);
    }
    params
}

/// The output layer's bias for the means at the logit of the mean pixel (Bernoulli, and the
/// sigmoid means of GaussianVar) or at the mean pixel (Gaussian); a convolutional output layer
/// has one bias for all pixels, so it starts at the mean over the image.
fn start_output_bias(params: &mut [f32], out: &LayerLayout, likelihood: Likelihood, mean: &[f32]) {
    let start = |m: f32| match likelihood {
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

/// W and b of each layer uniform in +-1/sqrt(fan_in), from one stream seeded with `seed`.
fn initialise<'a>(params: &mut [f32], layers: impl Iterator<Item = &'a LayerLayout>, seed: u32) {
    let mut rng = Rng::new(seed);
    for l in layers {
        let Some((weights, biases, fan_in)) = l.parameter_sizes() else { continue };
        let bound = 1.0 / (fan_in as f32).sqrt();
        for v in &mut params[l.weight..l.weight + weights] {
            *v = rng.range(-bound, bound);
        }
        for v in &mut params[l.bias..l.bias + biases] {
            *v = rng.range(-bound, bound);
        }
    }
}

/// A graph model's initial parameters, as `initial_parameters` makes a model's: PyTorch's
/// initialisation in node order, and an output layer's bias started from `mean_pixel`.
pub fn initial_graph_parameters(layout: &super::GraphLayout, seed: u32, likelihood: Likelihood, mean_pixel: &[f32]) -> Vec<f32> {
    let mut params = vec![0.0; layout.len];
    initialise(&mut params, layout.nodes.iter().filter_map(|p| p.layer.as_ref()), seed);
    if let Some(out) = &layout.nodes[layout.output].layer {
        start_output_bias(&mut params, out, likelihood, mean_pixel);
    }
    params
}
