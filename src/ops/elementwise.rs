//! The element-wise ops of residual cells: SiLU (swish, NVAE's activation) and the residual add,
//! forward and backward side by side. Kernels: `shaders/elementwise.wgsl`.
//!
//! SiLU is an op of its own rather than a layer's fused activation: its slope cannot be written
//! in terms of its output (as ReLU's and tanh's are, `Activation::derivative_from_output`), so
//! its backward pass reads its input, the pre-activation, which the model keeps.
//!
//! The residual add y = a + b sends dy unchanged to both inputs; a value read by two ops (the
//! skip connection's fan-out) receives the sum of both gradients, which `add_into` accumulates.
//! A layer with a fused activation whose gradient arrives as such a sum gets the activation's
//! slope from `activation_backward` (its CPU reference: `Activation::derivative_from_output`).

use bytemuck::{Pod, Zeroable};

/// Record of `shaders/elementwise.wgsl`. Offsets are into acts.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ElementwiseOp {
    /// Elements.
    pub len: u32,
    /// silu_forward: z; silu_backward: z; add: a; add_into: the gradient to add.
    pub a_off: u32,
    /// silu_backward: dy; add: b.
    pub b_off: u32,
    /// silu_forward: y; silu_backward: dz; add: a + b; add_into: the sum it adds to;
    /// activation_backward: dy, made dz in place (a_off: the layer's output).
    pub y_off: u32,
    /// silu_backward, add_into: 1 adds to what is at y_off (a value read by two ops), 0 writes.
    pub accumulate: u32,
    /// activation_backward: the layer's fused activation (`Activation::code`).
    pub activation: u32,
}

/// Invocations per workgroup of every elementwise kernel.
const WORKGROUP: u32 = 256;
/// Workgroups per row of the grid: WebGPU's default limit on one dimension.
const GRID_ROW: u32 = 65535;

impl ElementwiseOp {
    /// The grid: one invocation per element, in rows of at most 65,535 workgroups.
    pub fn groups(&self) -> (u32, u32, u32) {
        let groups = self.len.div_ceil(WORKGROUP);
        (groups.min(GRID_ROW), groups.div_ceil(GRID_ROW), 1)
    }
}

// ---------------------------------------------------------------------------------------------
// The CPU reference.

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// SiLU: y = z * sigmoid(z).
pub fn silu_forward(z: &[f64]) -> Vec<f64> {
    z.iter().map(|&z| z * sigmoid(z)).collect()
}

/// dL/dz = dy * (s + z s (1 - s)) with s = sigmoid(z).
pub fn silu_backward(z: &[f64], dy: &[f64]) -> Vec<f64> {
    z.iter().zip(dy).map(|(&z, &g)| {
        let s = sigmoid(z);
        g * s * (1.0 + z * (1.0 - s))
    }).collect()
}

/// The residual add: y = a + b. Its backward pass is dy to each input (`add_into` where an
/// input already holds another op's gradient).
pub fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a + b).collect()
}

/// A value read by two ops gets both gradients: sum += g.
pub fn add_into(sum: &mut [f64], g: &[f64]) {
    for (s, g) in sum.iter_mut().zip(g) {
        *s += g;
    }
}
