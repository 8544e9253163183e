//! The shape of one datapoint's tensor: flat, or channels x height x width.

use std::fmt;

use serde::{Deserialize, Serialize};

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
