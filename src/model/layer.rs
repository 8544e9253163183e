//! One layer of the encoder or decoder: what it maps one shape to, and its parameters.

use serde::{Deserialize, Serialize};

use super::{Activation, Shape};

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
