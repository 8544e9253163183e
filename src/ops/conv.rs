//! Convolutions: PyTorch's `nn.Conv2d` and `nn.ConvTranspose2d` (square kernels, no dilation,
//! no groups), forward with fused bias and activation, dX, dW and db. Kernels: `shaders/conv.wgsl`.
//!
//! Both layers are written with one geometry that names the two sides of a convolution: the
//! *large* side L [N, lc, lh, lw] and the *small* side S [N, sc, sh, sw], tied by a weight
//! W [sc, lc, k, k], stride s and padding p. Three products cover everything:
//!   down    S[n, cs, y, x] = sum_{cl, ky, kx} W[cs, cl, ky, kx] L[n, cl, y s - p + ky, x s - p + kx]
//!   up      L = the transpose of down: each S element scattered through W into L
//!   weight  dW[cs, cl, ky, kx] = sum_{n, y, x} S[n, cs, y, x] L[n, cl, y s - p + ky, x s - p + kx]
//! Conv2d (input L, output S, weight [out, in, k, k]): forward = down, dX = up, dW = weight(dY, X).
//! ConvTranspose2d (input S, output L, weight [in, out, k, k]): forward = up, dX = down,
//! dW = weight(X, dY). Biases: db = channel sums of dY.

use bytemuck::{Pod, Zeroable};

use crate::kernels::{Kernel, KernelShape, Records, NONE};
use crate::model::{Activation, Layer, LayerLayout, Shape};

/// Sizes of one convolution (see the module docs), per datapoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub lc: usize,
    pub lh: usize,
    pub lw: usize,
    pub sc: usize,
    pub sh: usize,
    pub sw: usize,
    pub k: usize,
    pub s: usize,
    pub p: usize,
}

impl Geometry {
    /// From the large side (c, h, w), the small side, kernel, stride and padding.
    pub fn new(large: (usize, usize, usize), small: (usize, usize, usize), k: usize, s: usize, p: usize) -> Geometry {
        Geometry { lc: large.0, lh: large.1, lw: large.2, sc: small.0, sh: small.1, sw: small.2, k, s, p }
    }

    /// The geometry of a Conv2d or ConvTranspose2d layer with its shapes resolved.
    pub fn of(l: &LayerLayout) -> Geometry {
        let image = |s: Shape| match s {
            Shape::Image { channels, height, width } => (channels, height, width),
            Shape::Flat(_) => unreachable!("validation gives convolutions image shapes"),
        };
        match l.layer {
            Layer::Conv2d { kernel, stride, padding, .. } => Geometry::new(image(l.input), image(l.output), kernel, stride, padding),
            Layer::ConvTranspose2d { kernel, stride, padding, .. } => Geometry::new(image(l.output), image(l.input), kernel, stride, padding),
            _ => unreachable!("not a convolution"),
        }
    }

    pub fn large_len(&self) -> usize {
        self.lc * self.lh * self.lw
    }

    pub fn small_len(&self) -> usize {
        self.sc * self.sh * self.sw
    }

    pub fn weight_len(&self) -> usize {
        self.sc * self.lc * self.k * self.k
    }

    /// Where tap (ky, kx) of small position (y, x) lands on the large side, if inside it.
    pub(crate) fn tap(&self, y: usize, x: usize, ky: usize, kx: usize) -> Option<usize> {
        let yy = (y * self.s + ky).checked_sub(self.p).filter(|&v| v < self.lh)?;
        let xx = (x * self.s + kx).checked_sub(self.p).filter(|&v| v < self.lw)?;
        Some(yy * self.lw + xx)
    }

    /// Visits every (n, cs, small pixel, cl, large pixel, weight index) the products sum over.
    fn each(&self, rows: usize, mut f: impl FnMut(usize, usize, usize, usize)) {
        let (ss, ls) = (self.sh * self.sw, self.lh * self.lw);
        for n in 0..rows {
            for cs in 0..self.sc {
                for y in 0..self.sh {
                    for x in 0..self.sw {
                        let si = (n * self.sc + cs) * ss + y * self.sw + x;
                        for cl in 0..self.lc {
                            for ky in 0..self.k {
                                for kx in 0..self.k {
                                    if let Some(pix) = self.tap(y, x, ky, kx) {
                                        let li = (n * self.lc + cl) * ls + pix;
                                        let wi = ((cs * self.lc + cl) * self.k + ky) * self.k + kx;
                                        f(si, li, wi, cs);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The CPU reference: plain loops over every (small element, tap) pair, written once in
// `Geometry::each`; down gathers, up scatters, weight accumulates.

/// S = down(L) [rows, small].
pub fn down(g: &Geometry, large: &[f64], w: &[f64], rows: usize) -> Vec<f64> {
    let mut small = vec![0.0; rows * g.small_len()];
    g.each(rows, |si, li, wi, _| small[si] += w[wi] * large[li]);
    small
}

/// L = up(S) [rows, large]: the transposed convolution, as a scatter.
pub fn up(g: &Geometry, small: &[f64], w: &[f64], rows: usize) -> Vec<f64> {
    let mut large = vec![0.0; rows * g.large_len()];
    g.each(rows, |si, li, wi, _| large[li] += w[wi] * small[si]);
    large
}

/// dW [sc, lc, k, k] = weight(S, L).
pub fn weight(g: &Geometry, small: &[f64], large: &[f64], rows: usize) -> Vec<f64> {
    let mut dw = vec![0.0; g.weight_len()];
    g.each(rows, |si, li, wi, _| dw[wi] += small[si] * large[li]);
    dw
}

/// Per-channel sums of t [rows, channels, pixels]: a bias's gradient.
pub fn channel_sums(t: &[f64], rows: usize, channels: usize) -> Vec<f64> {
    let pixels = t.len() / (rows * channels).max(1);
    let mut sums = vec![0.0; channels];
    for (i, chunk) in t.chunks(pixels).enumerate() {
        sums[i % channels] += chunk.iter().sum::<f64>();
    }
    sums
}

/// Adds the bias of each channel of t [rows, channels, pixels] and applies `act`.
fn bias_act(mut t: Vec<f64>, b: &[f64], pixels: usize, act: Activation) -> Vec<f64> {
    for (i, chunk) in t.chunks_mut(pixels).enumerate() {
        let bias = b[i % b.len()];
        chunk.iter_mut().for_each(|v| *v = act.apply(*v + bias));
    }
    t
}

/// dx * act'(x), elementwise.
fn times_slope(mut dx: Vec<f64>, x: &[f64], act: Activation) -> Vec<f64> {
    dx.iter_mut().zip(x).for_each(|(d, &x)| *d *= act.derivative_from_output(x));
    dx
}

/// `nn.Conv2d`: y = act(conv(x) + b); x [rows, L], w [out, in, k, k], y [rows, S].
pub fn conv2d_forward(g: &Geometry, x: &[f64], w: &[f64], b: &[f64], rows: usize, act: Activation) -> Vec<f64> {
    bias_act(down(g, x, w, rows), b, g.sh * g.sw, act)
}

/// Given dz [rows, S]: (dW, db).
pub fn conv2d_backward_weight(g: &Geometry, x: &[f64], dz: &[f64], rows: usize) -> (Vec<f64>, Vec<f64>) {
    (weight(g, dz, x, rows), channel_sums(dz, rows, g.sc))
}

/// dL/d(pre-activation of the previous layer) = up(dz) * act'(x).
pub fn conv2d_backward_input(g: &Geometry, dz: &[f64], w: &[f64], x: &[f64], rows: usize, act_of_x: Activation) -> Vec<f64> {
    times_slope(up(g, dz, w, rows), x, act_of_x)
}

/// `nn.ConvTranspose2d`: y = act(conv_transpose(x) + b); x [rows, S], w [in, out, k, k], y [rows, L].
pub fn conv_transpose2d_forward(g: &Geometry, x: &[f64], w: &[f64], b: &[f64], rows: usize, act: Activation) -> Vec<f64> {
    bias_act(up(g, x, w, rows), b, g.lh * g.lw, act)
}

/// Given dz [rows, L]: (dW, db).
pub fn conv_transpose2d_backward_weight(g: &Geometry, x: &[f64], dz: &[f64], rows: usize) -> (Vec<f64>, Vec<f64>) {
    (weight(g, x, dz, rows), channel_sums(dz, rows, g.lc))
}

/// dL/d(pre-activation of the previous layer) = down(dz) * act'(x).
pub fn conv_transpose2d_backward_input(g: &Geometry, dz: &[f64], w: &[f64], x: &[f64], rows: usize, act_of_x: Activation) -> Vec<f64> {
    times_slope(down(g, dz, w, rows), x, act_of_x)
}

// ---------------------------------------------------------------------------------------------
// The GPU side.

/// Record of `shaders/conv.wgsl`. Offsets are in floats; `NONE` marks an absent tensor.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ConvOp {
    /// Datapoints (rows of the tensors).
    pub batch: u32,
    pub lc: u32,
    pub lh: u32,
    pub lw: u32,
    pub sc: u32,
    pub sh: u32,
    pub sw: u32,
    pub k: u32,
    pub s: u32,
    pub p: u32,
    /// Taps per dimension that reach one large pixel in `up`: k / s rounded up.
    pub taps: u32,
    /// Forward: the activation applied to the output; backward: the one that made `slope_off`'s tensor.
    pub act: u32,
    /// 0: out = act(product + bias); 1: out = product * act'(acts[slope_off + same index]).
    pub mode: u32,
    /// The tensors a product reads: L and S (in acts).
    pub large_off: u32,
    pub small_off: u32,
    /// Where the product goes (acts; grads for `weight`).
    pub out_off: u32,
    /// W (params); bias (params, forward only, or NONE).
    pub w_off: u32,
    pub b_off: u32,
    pub slope_off: u32,
    /// weight (tiled): where the row sums of S go (grads), or NONE.
    pub db_off: u32,
    /// channel_sums: a tensor [batch, sum_c, sum_hw] (acts) summed per channel into grads[db_off..].
    pub sum_off: u32,
    pub sum_c: u32,
    pub sum_hw: u32,
    /// A split product (gemm.wgsl): the reduction's parts (0 or 1: not split), where they lie
    /// in acts, and 1 in the dispatch that sums them.
    pub parts: u32,
    pub part_off: u32,
    pub gather: u32,
}

/// The three products and the bias gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Product {
    Down,
    Up,
    Weight,
}

impl ConvOp {
    /// The record's sizes for geometry `g` on `batch` rows; offsets are filled in by the caller.
    pub fn new(g: &Geometry, batch: usize) -> ConvOp {
        let u = |v: usize| v as u32;
        ConvOp {
            batch: u(batch),
            lc: u(g.lc),
            lh: u(g.lh),
            lw: u(g.lw),
            sc: u(g.sc),
            sh: u(g.sh),
            sw: u(g.sw),
            k: u(g.k),
            s: u(g.s),
            p: u(g.p),
            taps: u(g.k.div_ceil(g.s)),
            b_off: NONE,
            slope_off: NONE,
            db_off: NONE,
            ..Default::default()
        }
    }

    /// (M, N, K) of a product as a matrix product C[M, N] = A[M, K] B[K, N] (for `up`, of one
    /// of the s x s phases: large pixels sharing (y + p) mod s and (x + p) mod s use the same taps).
    pub fn extent(&self, product: Product) -> (u32, u32, u32) {
        match product {
            Product::Down => (self.batch * self.sh * self.sw, self.sc, self.lc * self.k * self.k),
            Product::Up => (self.batch * self.lh.div_ceil(self.s) * self.lw.div_ceil(self.s), self.lc, self.sc * self.taps * self.taps),
            Product::Weight => (self.sc, self.lc * self.k * self.k, self.batch * self.sh * self.sw),
        }
    }

    /// Whether a product is too narrow or too small to fill tiles (a one-channel image, the
    /// first layer's dW), where tiles would mostly compute padding.
    pub fn is_narrow(&self, product: Product) -> bool {
        let (m, n, _) = self.extent(product);
        n < 16 || m < 16 || m * n < 16384
    }

    /// The dispatches computing `product` in `shape`: tiled (64 invocations; software shape
    /// 256 x 64 outputs per workgroup, 256 x 32 for outputs at most 32 wide, 64 x 256 for dW;
    /// hardware shape 32 x 32) or, for narrow outputs, direct: down and up four outputs of a
    /// column per invocation (256 per workgroup), weight one 8 x 8 block (hardware: 4 x 4) per
    /// workgroup with the reduction split over its invocations.
    pub fn dispatches(&self, product: Product, shape: KernelShape) -> Vec<(Kernel, (u32, u32, u32))> {
        self.dispatches_as(product, self.is_narrow(product), shape)
    }

    /// As `dispatches`, choosing the kind of kernel (tests run both).
    pub fn dispatches_as(&self, product: Product, direct: bool, shape: KernelShape) -> Vec<(Kernel, (u32, u32, u32))> {
        let (m, n, _) = self.extent(product);
        let phases = if product == Product::Up { self.s * self.s } else { 1 };
        let tall = shape == KernelShape::Software && !direct && product != Product::Weight && n <= 32;
        let kernel = match (product, direct) {
            (Product::Down, false) if tall => Kernel::ConvDownTall,
            (Product::Up, false) if tall => Kernel::ConvUpTall,
            (Product::Down, false) => Kernel::ConvDown,
            (Product::Up, false) => Kernel::ConvUp,
            (Product::Weight, false) => Kernel::ConvWeight,
            (Product::Down, true) => Kernel::ConvDownDirect,
            (Product::Up, true) => Kernel::ConvUpDirect,
            (Product::Weight, true) => Kernel::ConvWeightSplit,
        };
        let groups = match direct {
            true if product == Product::Weight => {
                let split = Kernel::split(shape);
                (n.div_ceil(split), m.div_ceil(split), 1)
            }
            true => (m.div_ceil(256), n, phases),
            false => {
                let (rows, cols) = kernel.tile(shape);
                (n.div_ceil(cols), m.div_ceil(rows), phases)
            }
        };
        vec![(kernel, groups)]
    }

    /// One workgroup per channel.
    pub fn channel_sums_dispatch(&self) -> (Kernel, (u32, u32, u32)) {
        (Kernel::ChannelSums, (self.sum_c, 1, 1))
    }
}

fn geometry(l: &LayerLayout) -> Geometry {
    Geometry::of(l)
}

/// Which kernels a layer's products use: chosen by shape, or forced (tests run both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    ByShape,
    Tiled,
    Direct,
}

/// Whether `choice` runs `product` on the direct kernels.
fn is_direct(op: &ConvOp, product: Product, choice: Choice) -> bool {
    match choice {
        Choice::ByShape => op.is_narrow(product),
        Choice::Tiled => false,
        Choice::Direct => true,
    }
}

/// Adds `product`'s dispatches; returns the parts its reduction was split in (1: not split).
/// A split weight product's parts have no row sums, so its record drops `db_off`: the caller
/// sums db on its own then.
fn push(rec: &mut Records, op: ConvOp, product: Product, choice: Choice) -> u32 {
    let direct = is_direct(&op, product, choice);
    // Useful work: every (small element, tap inside the large side) pair once.
    let g = Geometry::new((op.lc as usize, op.lh as usize, op.lw as usize), (op.sc as usize, op.sh as usize, op.sw as usize), op.k as usize, op.s as usize, op.p as usize);
    let mut taps = 0usize;
    g.each(1, |_, _, _, _| taps += 1);
    let flops = 2.0 * op.batch as f64 * taps as f64;
    let (kernel, groups) = op.dispatches_as(product, direct, rec.shape)[0];
    if direct {
        rec.push_product(kernel, op, groups, flops);
        return 1;
    }
    let (m, n, k) = op.extent(product);
    rec.push_tiled(kernel, groups, k, m * n, flops, |parts, part_off, gather| {
        let db_off = if parts > 1 { NONE } else { op.db_off };
        ConvOp { parts, part_off, gather, db_off, ..op }
    })
}

/// Adds y = act(layer(x) + b) for a Conv2d or ConvTranspose2d layer on `rows` rows.
pub fn record_forward(rec: &mut Records, l: &LayerLayout, rows: usize, x: usize, y: usize) {
    record_forward_as(rec, l, rows, x, y, Choice::ByShape)
}

/// Adds dW and db from dy and x; then, if `dx` is given, dx = (dy through the layer's
/// transpose) * act'(x).
pub fn record_backward(rec: &mut Records, l: &LayerLayout, rows: usize, x: usize, dy: usize, dx: Option<(usize, Activation)>) {
    record_backward_as(rec, l, rows, x, dy, dx, Choice::ByShape)
}

/// `record_forward` with the kernels chosen.
pub fn record_forward_as(rec: &mut Records, l: &LayerLayout, rows: usize, x: usize, y: usize, choice: Choice) {
    let base = ConvOp { w_off: l.weight as u32, b_off: l.bias as u32, out_off: y as u32, act: l.activation().code(), mode: 0, ..ConvOp::new(&geometry(l), rows) };
    match l.layer {
        Layer::Conv2d { .. } => push(rec, ConvOp { large_off: x as u32, ..base }, Product::Down, choice),
        Layer::ConvTranspose2d { .. } => push(rec, ConvOp { small_off: x as u32, ..base }, Product::Up, choice),
        _ => unreachable!("not a convolution"),
    };
}

/// `record_backward` with the kernels chosen.
pub fn record_backward_as(rec: &mut Records, l: &LayerLayout, rows: usize, x: usize, dy: usize, dx: Option<(usize, Activation)>, choice: Choice) {
    let g = geometry(l);
    let base = ConvOp { w_off: l.weight as u32, ..ConvOp::new(&g, rows) };
    let transpose = matches!(l.layer, Layer::ConvTranspose2d { .. });
    // dW: S is dy for Conv2d and x for ConvTranspose2d; L the other.
    let (small, large) = if transpose { (x, dy) } else { (dy, x) };
    let weight = ConvOp { small_off: small as u32, large_off: large as u32, out_off: l.weight as u32, ..base };
    // db: a by-product of the tiled weight product for Conv2d (row sums of S = dy); otherwise
    // its own reduction over dy.
    let (channels, pixels) = if transpose { (g.lc, g.lh * g.lw) } else { (g.sc, g.sh * g.sw) };
    let by_product = !transpose && !is_direct(&weight, Product::Weight, choice);
    let db_off = if by_product { l.bias as u32 } else { NONE };
    let parts = push(rec, ConvOp { db_off, ..weight }, Product::Weight, choice);
    if !by_product || parts > 1 {
        let sums = ConvOp { sum_off: dy as u32, sum_c: channels as u32, sum_hw: pixels as u32, db_off: l.bias as u32, ..base };
        let (kernel, groups) = sums.channel_sums_dispatch();
        rec.push(kernel, sums, groups);
    }
    if let Some((dx, act)) = dx {
        let op = ConvOp { out_off: dx as u32, slope_off: x as u32, act: act.code(), mode: 1, ..base };
        if transpose {
            push(rec, ConvOp { large_off: dy as u32, ..op }, Product::Down, choice);
        } else {
            push(rec, ConvOp { small_off: dy as u32, ..op }, Product::Up, choice);
        }
    }
}
