//! The two model families the page offers, as the layers they stand for.

use serde::{Deserialize, Serialize};

use super::{Activation, ConfigError, Layer, Shape, bad};

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
