//! The end of a training step: metrics accumulated on the GPU, and Adam over the whole flat
//! parameter buffer. Kernels: `shaders/optim.wgsl`.

use bytemuck::{Pod, Zeroable};

/// Record of `shaders/optim.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct OptimOp {
    pub batch: u32,
    pub rows: u32,
    pub recon_off: u32,
    pub kl_off: u32,
    pub metrics_off: u32,
    pub count: u32,
    pub lr: f32,
    pub beta: f32,
    pub check: u32,
    /// accumulate: KL tensors of `batch` values, one after another from kl_off (a hierarchy's
    /// groups; 1 for the other models), each summed into the metrics too.
    pub groups: u32,
    /// accumulate: KL warm-up steps, for the loss it checks (0: none).
    pub warmup: u32,
    /// adam: the learning rate at `total_steps`, decaying from `lr` along a cosine
    /// (`training::Schedule::learning_rate`); total_steps 0 keeps `lr`.
    pub lr_final: f32,
    pub total_steps: u32,
}

impl OptimOp {
    /// Adam's grid: invocations stride over the buffer, so a bounded number of workgroups.
    pub fn adam_groups(&self) -> (u32, u32, u32) {
        (self.count.div_ceil(256).min(1024), 1, 1)
    }
}

// ---------------------------------------------------------------------------------------------
// The CPU reference.

/// Adam (Kingma & Ba), as PyTorch writes it.
pub const ADAM_BETA1: f64 = 0.9;
pub const ADAM_BETA2: f64 = 0.999;
pub const ADAM_EPSILON: f64 = 1e-8;

/// One update at step `t` (1-based).
pub fn adam(params: &mut [f64], grads: &[f64], m: &mut [f64], v: &mut [f64], t: u32, lr: f64) {
    let (c1, c2) = (1.0 - ADAM_BETA1.powi(t as i32), 1.0 - ADAM_BETA2.powi(t as i32));
    for i in 0..params.len() {
        m[i] = ADAM_BETA1 * m[i] + (1.0 - ADAM_BETA1) * grads[i];
        v[i] = ADAM_BETA2 * v[i] + (1.0 - ADAM_BETA2) * grads[i] * grads[i];
        params[i] -= lr * (m[i] / c1) / ((v[i] / c2).sqrt() + ADAM_EPSILON);
    }
}

