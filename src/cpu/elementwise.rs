//! SiLU and the residual add in f32 on the pool (`ops::elementwise` is their oracle): each
//! element's arithmetic is the kernels', and parts are runs of elements, so the bits do not
//! depend on the number of threads.

use rayon::prelude::*;

use super::PARALLEL_MIN_WORK;

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// y = z sigmoid(z).
pub fn silu_forward(z: &[f32]) -> Vec<f32> {
    z.par_iter().with_min_len(PARALLEL_MIN_WORK).map(|&z| z / (1.0 + (-z).exp())).collect()
}

/// dz = dy (s + z s (1 - s)), s = sigmoid(z), written to `dz` or, with `accumulate`, added to it
/// (a value read by two ops).
pub fn silu_backward(z: &[f32], dy: &[f32], dz: &mut [f32], accumulate: bool) {
    let each = (dz.par_iter_mut().zip(z).zip(dy)).with_min_len(PARALLEL_MIN_WORK);
    each.for_each(|((dz, &z), &g)| {
        let s = sigmoid(z);
        let v = g * s * (1.0 + z * (1.0 - s));
        *dz = if accumulate { *dz + v } else { v };
    });
}

/// The residual add y = a + b.
pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    (a.par_iter().zip(b)).with_min_len(PARALLEL_MIN_WORK).map(|(a, b)| a + b).collect()
}

/// sum += g: the gradient of a value read by two ops.
pub fn add_into(sum: &mut [f32], g: &[f32]) {
    (sum.par_iter_mut().zip(g)).with_min_len(PARALLEL_MIN_WORK).for_each(|(s, g)| *s += g);
}
