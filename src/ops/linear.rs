//! Linear layers, PyTorch's `nn.Linear` layout (W [out, in]): forward with fused bias and
//! activation, dX, dW and db. Kernels: `shaders/linear.wgsl` (tiled, any shape) and
//! the vec4 kernels beside them (vec4 loads and outer products, for aligned shapes).

use bytemuck::{Pod, Zeroable};

use crate::kernels::{Kernel, KernelShape, Records, Scratch};
use crate::model::{Activation, LayerLayout};

/// Record of `shaders/linear.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct LinearOp {
    pub rows: u32,
    pub inner: u32,
    pub cols: u32,
    pub act: u32,
    pub x_off: u32,
    pub w_off: u32,
    pub b_off: u32,
    pub y_off: u32,
    pub dy_off: u32,
    pub dx_off: u32,
    pub dw_off: u32,
    pub db_off: u32,
    /// linear4 dX: where dy is transposed into ([cols, rows]) first.
    pub dyt_off: u32,
    /// A split product (gemm.wgsl): the reduction's parts (0 or 1: not split), where they lie
    /// in acts, and 1 in the dispatch that sums them.
    pub parts: u32,
    pub part_off: u32,
    pub gather: u32,
}

impl LinearOp {
    /// Whether every row and tensor of this product starts on a vec4 boundary (and rows come
    /// in fours), so that the vec4 kernels apply.
    pub fn is_vec4(&self) -> bool {
        let offsets = [self.x_off, self.w_off, self.b_off, self.y_off, self.dy_off, self.dx_off, self.dw_off, self.db_off, self.dyt_off];
        [self.rows, self.inner, self.cols].iter().chain(&offsets).all(|v| v.is_multiple_of(4))
    }

    /// One layer's products in buffers of their own, for checking and timing kernels alone:
    /// acts x | y | dy | dx | dy transposed; params W | b; grads dW | db. `act` is the
    /// activation's code; the output width is `b.len()`. Outputs lie at `y_off..dy_off`,
    /// `dx_off..dyt_off` and in `grads`.
    pub fn standalone(rows: usize, inner: usize, act: u32, x: &[f32], w: &[f32], b: &[f32], dy: &[f32]) -> (LinearOp, Scratch) {
        let cols = b.len();
        let (y_off, dy_off) = (rows * inner, rows * inner + rows * cols);
        let (dx_off, dyt_off) = (dy_off + rows * cols, dy_off + rows * cols + rows * inner);
        let scratch = Scratch {
            params: [w, b].concat(),
            grads: vec![0.0; w.len() + b.len()],
            acts: [x, &vec![0.0; rows * cols], dy, &vec![0.0; rows * inner + rows * cols]].concat(),
            ..Default::default()
        };
        let op = LinearOp {
            rows: rows as u32,
            inner: inner as u32,
            cols: cols as u32,
            act,
            x_off: 0,
            w_off: 0,
            b_off: w.len() as u32,
            y_off: y_off as u32,
            dy_off: dy_off as u32,
            dx_off: dx_off as u32,
            dw_off: 0,
            db_off: w.len() as u32,
            dyt_off: dyt_off as u32,
            ..Default::default()
        };
        (op, scratch)
    }
}

/// Adds y = act(x W^T + b) for layer `l` on `rows` rows to a step.
pub fn record_forward(rec: &mut Records, l: &LayerLayout, rows: usize, x: usize, y: usize) {
    let op = LinearOp { w_off: l.weight as u32, b_off: l.bias as u32, x_off: x as u32, y_off: y as u32, act: l.activation().code(), ..dims(l, rows) };
    record_product(rec, Kernel::LinearForward, op, None);
}

/// Adds dW, db from dy and x; then, if `dx` is given, dx = (dy W) * act'(x), using `dyt` as
/// scratch for dy transposed.
pub fn record_backward(rec: &mut Records, l: &LayerLayout, rows: usize, x: usize, dy: usize, dx: Option<(usize, Activation)>, dyt: usize) {
    let dims = dims(l, rows);
    let op = LinearOp { x_off: x as u32, dy_off: dy as u32, dw_off: l.weight as u32, db_off: l.bias as u32, ..dims };
    record_product(rec, Kernel::LinearBackwardWeight, op, None);
    if let Some((dx, act)) = dx {
        let op = LinearOp { x_off: x as u32, dy_off: dy as u32, w_off: l.weight as u32, dx_off: dx as u32, dyt_off: dyt as u32, act: act.code(), ..dims };
        record_product(rec, Kernel::LinearBackwardInput, op, None);
    }
}

/// Adds the dispatches of one linear product (LinearForward, LinearBackwardInput or
/// LinearBackwardWeight) on `op`'s shape: in the software kernel shape the vec4 kernels where
/// they apply (dX first transposes dy), otherwise the general tiled kernel (64 x 256 outputs per
/// workgroup in the software shape, 32 x 32 in the hardware one, where a reduction too long for
/// its few tiles is split in parts: see gemm.wgsl; never dW, whose db is a by-product of its
/// tiles). `vec4` forces the kind of kernel (tests run both on aligned shapes).
pub fn record_product(rec: &mut Records, product: Kernel, op: LinearOp, vec4: Option<bool>) {
    let software = rec.shape == KernelShape::Software;
    let vec4 = vec4.unwrap_or(software && op.is_vec4());
    assert!(!vec4 || op.is_vec4(), "the vec4 kernels need aligned shapes and offsets");
    assert!(!vec4 || software, "the vec4 kernels are the software shape's");
    let flops = 2.0 * op.rows as f64 * op.inner as f64 * op.cols as f64;
    let (tile_rows, tile_cols) = product.tile(rec.shape);
    let tiles = |cols: u32, rows: u32| (cols.div_ceil(tile_cols), rows.div_ceil(tile_rows), 1);
    let with_parts = |parts, part_off, gather| LinearOp { parts, part_off, gather, ..op };
    match (product, vec4) {
        (Kernel::LinearForward, false) => {
            rec.push_tiled(product, tiles(op.cols, op.rows), op.inner, op.rows * op.cols, flops, with_parts);
        }
        (Kernel::LinearBackwardInput, false) => {
            rec.push_tiled(product, tiles(op.inner, op.rows), op.cols, op.rows * op.inner, flops, with_parts);
        }
        (Kernel::LinearBackwardWeight, false) => rec.push_product(product, op, tiles(op.inner, op.cols), flops),
        // Workgroups of 8 x 8 invocations; blocks per invocation as in the vec4 kernels of linear.wgsl.
        (Kernel::LinearForward, true) => rec.push_product(Kernel::LinearForward4, op, (op.cols.div_ceil(32), op.rows.div_ceil(64), 1), flops),
        (Kernel::LinearBackwardInput, true) => {
            rec.push(Kernel::Transpose4, op, (op.cols.div_ceil(32), op.rows.div_ceil(32), 1));
            rec.push_product(Kernel::LinearBackwardInput4, op, (op.inner.div_ceil(64), op.rows.div_ceil(64), 1), flops);
        }
        (Kernel::LinearBackwardWeight, true) => rec.push_product(Kernel::LinearBackwardWeight4, op, (op.inner.div_ceil(64), op.cols.div_ceil(64), 1), flops),
        _ => panic!("{product:?} is not a linear product"),
    }
}

fn dims(l: &LayerLayout, rows: usize) -> LinearOp {
    LinearOp { rows: rows as u32, inner: l.input.len() as u32, cols: l.output.len() as u32, ..Default::default() }
}

// ---------------------------------------------------------------------------------------------
// The CPU reference. x [rows, inner], W [cols, inner], b [cols].

/// y = act(x W^T + b) -> [rows, cols].
pub fn forward(x: &[f64], w: &[f64], b: &[f64], rows: usize, inner: usize, cols: usize, act: Activation) -> Vec<f64> {
    assert_eq!((x.len(), w.len(), b.len()), (rows * inner, cols * inner, cols));
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

/// Given dz = dL/d(pre-activation) [rows, cols]: dW = dz^T x [cols, inner], db = column sums.
pub fn backward_weight(x: &[f64], dz: &[f64], rows: usize, inner: usize, cols: usize) -> (Vec<f64>, Vec<f64>) {
    let mut dw = vec![0.0; cols * inner];
    let mut db = vec![0.0; cols];
    for r in 0..rows {
        for c in 0..cols {
            let g = dz[r * cols + c];
            db[c] += g;
            for k in 0..inner {
                dw[c * inner + k] += g * x[r * inner + k];
            }
        }
    }
    (dw, db)
}

/// dL/d(pre-activation of the previous layer) = (dz W) * act'(x), where x = act(previous z)
/// is this layer's input, so act' is computed from it.
pub fn backward_input(dz: &[f64], w: &[f64], x: &[f64], rows: usize, inner: usize, cols: usize, act_of_x: Activation) -> Vec<f64> {
    let mut dx = vec![0.0; rows * inner];
    for r in 0..rows {
        for k in 0..inner {
            let mut g = 0.0;
            for c in 0..cols {
                g += dz[r * cols + c] * w[c * inner + k];
            }
            dx[r * inner + k] = g * act_of_x.derivative_from_output(x[r * inner + k]);
        }
    }
    dx
}

