//! p(x|z): what the decoder's outputs parameterise, and how a likelihood is read from JSON.

use serde::{Deserialize, Serialize};

use super::Shape;

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
