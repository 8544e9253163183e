//! The op families, one module each. A module holds its uniform record (the `#[repr(C)]` twin of
//! the WGSL struct in its shader), its dispatch geometry, its plain-loop CPU reference forward
//! and backward (f64, the oracle), and how it adds its dispatches to a step. Its WGSL sits in
//! `shaders/<family>.wgsl`, joined after `shaders/common.wgsl`.
//!
//! Adding a layer type = one module here, one shader, one `model::Layer` variant (with its
//! shape rule), one arm in `layer_forward` / `layer_backward` below and in the GPU step
//! (`trainer::build_plan`), and one parity case in `tests/common`. The ops of graph models
//! (`elementwise`, `gaussian`) are nodes of `model::Graph` rather than layers: their arms are in
//! `reference::graph` and `cpu::graph`.

pub mod categorical;
pub mod conv;
pub mod data;
pub mod elementwise;
pub mod gaussian;
pub mod latent;
pub mod linear;
pub mod loss;
pub mod optim;

use crate::kernels::Records;
use crate::model::{Activation, Layer, LayerLayout};

fn weights<'a>(params: &'a [f64], l: &LayerLayout) -> (&'a [f64], &'a [f64]) {
    let (w, b, _) = l.parameter_sizes().expect("a layer with parameters");
    (&params[l.weight..l.weight + w], &params[l.bias..l.bias + b])
}

/// One layer's forward pass on `rows` datapoints: x [rows, input] -> act(layer(x)) [rows, output].
pub fn layer_forward(l: &LayerLayout, params: &[f64], x: &[f64], rows: usize) -> Vec<f64> {
    let act = l.activation();
    match l.layer {
        Layer::Linear { out, .. } => {
            let (w, b) = weights(params, l);
            linear::forward(x, w, b, rows, l.input.len(), out, act)
        }
        Layer::Conv2d { .. } => {
            let (w, b) = weights(params, l);
            conv::conv2d_forward(&conv::Geometry::of(l), x, w, b, rows, act)
        }
        Layer::ConvTranspose2d { .. } => {
            let (w, b) = weights(params, l);
            conv::conv_transpose2d_forward(&conv::Geometry::of(l), x, w, b, rows, act)
        }
        Layer::Flatten {} | Layer::Reshape { .. } => x.to_vec(),
    }
}

/// One layer's backward pass. `dz` is dL/d(this layer's pre-activation) [rows, output], `x` its
/// input. Writes dW and db into `grads` (the flat layout) and returns dL/d(x) times
/// `act_of_x'(x)`: the gradient w.r.t. the previous layer's pre-activation (for a view, whose
/// input and output are the same values, dz passes through unchanged).
pub fn layer_backward(l: &LayerLayout, params: &[f64], x: &[f64], dz: &[f64], rows: usize, act_of_x: Activation, grads: &mut [f64]) -> Vec<f64> {
    let mut put = |dw: Vec<f64>, db: Vec<f64>| {
        grads[l.weight..l.weight + dw.len()].copy_from_slice(&dw);
        grads[l.bias..l.bias + db.len()].copy_from_slice(&db);
    };
    match l.layer {
        Layer::Linear { out, .. } => {
            let (dw, db) = linear::backward_weight(x, dz, rows, l.input.len(), out);
            put(dw, db);
            linear::backward_input(dz, weights(params, l).0, x, rows, l.input.len(), out, act_of_x)
        }
        Layer::Conv2d { .. } => {
            let g = conv::Geometry::of(l);
            let (dw, db) = conv::conv2d_backward_weight(&g, x, dz, rows);
            put(dw, db);
            conv::conv2d_backward_input(&g, dz, weights(params, l).0, x, rows, act_of_x)
        }
        Layer::ConvTranspose2d { .. } => {
            let g = conv::Geometry::of(l);
            let (dw, db) = conv::conv_transpose2d_backward_weight(&g, x, dz, rows);
            put(dw, db);
            conv::conv_transpose2d_backward_input(&g, dz, weights(params, l).0, x, rows, act_of_x)
        }
        Layer::Flatten {} | Layer::Reshape { .. } => dz.to_vec(),
    }
}

/// Adds one layer's forward dispatches to a GPU step: x [rows, input] at `x` (in acts) ->
/// act(layer(x)) at `y`. Views add nothing (their output is their input's memory).
pub fn record_layer_forward(rec: &mut Records, l: &LayerLayout, rows: usize, x: usize, y: usize) {
    match l.layer {
        Layer::Linear { .. } => linear::record_forward(rec, l, rows, x, y),
        Layer::Conv2d { .. } | Layer::ConvTranspose2d { .. } => conv::record_forward(rec, l, rows, x, y),
        Layer::Flatten {} | Layer::Reshape { .. } => {}
    }
}

/// Adds one layer's backward dispatches: dW and db from dy (w.r.t. its pre-activation) and x;
/// then, if `dx` = (where, activation that made x) is given, the gradient w.r.t. the previous
/// pre-activation. `dyt` is scratch for a transposed dy.
pub fn record_layer_backward(rec: &mut Records, l: &LayerLayout, rows: usize, x: usize, dy: usize, dx: Option<(usize, Activation)>, dyt: usize) {
    match l.layer {
        Layer::Linear { .. } => linear::record_backward(rec, l, rows, x, dy, dx, dyt),
        Layer::Conv2d { .. } | Layer::ConvTranspose2d { .. } => conv::record_backward(rec, l, rows, x, dy, dx),
        Layer::Flatten {} | Layer::Reshape { .. } => {}
    }
}
