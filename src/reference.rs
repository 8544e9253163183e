//! The CPU oracle: every op of the model as plain loops, forward and backward side by side.
//! Nothing here is fast; everything here is obviously right, and the GPU kernels are checked
//! against it.

/// Element-wise nonlinearity applied after a linear layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Identity,
    Relu,
    Tanh,
}

impl Activation {
    /// The code the WGSL kernels switch on.
    pub fn code(self) -> u32 {
        match self {
            Activation::Identity => 0,
            Activation::Relu => 1,
            Activation::Tanh => 2,
        }
    }

    pub fn apply(self, z: f32) -> f32 {
        match self {
            Activation::Identity => z,
            Activation::Relu => z.max(0.0),
            Activation::Tanh => z.tanh(),
        }
    }
}

/// y = act(x W^T + b), PyTorch `nn.Linear` layout.
/// x: [rows, inner], w: [cols, inner], b: [cols] -> y: [rows, cols].
pub fn linear_forward(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    rows: usize,
    inner: usize,
    cols: usize,
    act: Activation,
) -> Vec<f32> {
    assert_eq!(x.len(), rows * inner);
    assert_eq!(w.len(), cols * inner);
    assert_eq!(b.len(), cols);
    let mut y = vec![0.0; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            let mut z = b[c];
            for k in 0..inner {
                z += x[r * inner + k] * w[c * inner + k];
            }
            y[r * cols + c] = act.apply(z);
        }
    }
    y
}
