// Linear layers, PyTorch nn.Linear layout, forward and backward side by side.
//   x [rows, inner]   the layer's input (in acts)
//   W [cols, inner]   weight, "[out, in]" (in params), b [cols] bias (in params)
//   y [rows, cols]    y = act(x W^T + b) (in acts)
//   dy [rows, cols]   dL/d(pre-activation of y) (in acts)
//   dx [rows, inner]  dL/d(pre-activation of x) = (dy W) * act'(x) (in acts)
//   dW [cols, inner] = dy^T x, db [cols] = column sums of dy (in grads)
// Every tensor lives in a flat buffer at the offset the record gives, so one bind group serves
// every layer. Each output element is written by exactly one invocation: no atomics.
//
// All three are one tiled product C[i, j] = sum_t A(i, t) B(j, t), read through each kernel's
// own indexing (`load_a`, `load_b`) and stored by its own epilogue:
//   forward  C = y  [rows, cols]:  A(i, t) = x[i, t],   B(j, t) = W[j, t],  t < inner
//   dX       C = dx [rows, inner]: A(i, t) = dy[i, t],  B(j, t) = W[t, j],  t < cols
//   dW       C = dW [cols, inner]: A(i, t) = dy[t, i],  B(j, t) = x[t, j],  t < rows
// The tiles, blocks and the reduction loop are gemm.wgsl's; this file supplies the indexing and
// the epilogues.

struct Linear {
    rows: u32,
    inner: u32,
    cols: u32,
    act: u32,     // forward: the activation applied to y; backward_input: the one that made x
    x_off: u32,
    w_off: u32,
    b_off: u32,
    y_off: u32,
    dy_off: u32,
    dx_off: u32,
    dw_off: u32,
    db_off: u32,
    dyt_off: u32, // vec4 dX: dy transposed, [cols, rows] (written by transpose4)
    parts: u32,   // a split product (gemm.wgsl's SPLIT_K): the reduction's parts (0 or 1: not split)
    part_off: u32, // where its parts lie, [parts, M, N] (acts)
    gather: u32,  // 1 in its second dispatch, which sums the parts
}

@group(0) @binding(0) var<uniform> op: Linear;
@group(0) @binding(2) var<storage, read_write> params: array<f32>;
@group(0) @binding(3) var<storage, read_write> grads: array<f32>;
@group(0) @binding(4) var<storage, read_write> acts: array<f32>;

// What gemm.wgsl's split products need from the record and the buffers.
fn split() -> vec3<u32> { return vec3<u32>(op.parts, op.part_off, op.gather); }
fn part(at: u32) -> f32 { return acts[at]; }
fn set_part(at: u32, v: f32) { acts[at] = v; }

fn row(r: u32) -> u32 { return min(r, op.rows - 1u); }
fn col(c: u32) -> u32 { return min(c, op.cols - 1u); }

// Four consecutive elements of a row-major matrix in acts / params, columns clamped at `width`.
fn acts4(base: u32, k: u32, width: u32) -> vec4<f32> {
    let last = width - 1u;
    return vec4<f32>(acts[base + min(k, last)], acts[base + min(k + 1u, last)],
                     acts[base + min(k + 2u, last)], acts[base + min(k + 3u, last)]);
}

fn params4(base: u32, k: u32, width: u32) -> vec4<f32> {
    let last = width - 1u;
    return vec4<f32>(params[base + min(k, last)], params[base + min(k + 1u, last)],
                     params[base + min(k + 2u, last)], params[base + min(k + 3u, last)]);
}

// Stores up to four consecutive elements of row `r` of a [*, width] matrix in acts.
fn store_acts4(base: u32, r: u32, c0: u32, width: u32, v: vec4<f32>) {
    if r >= op.rows { return; }
    for (var j = 0u; j < 4u; j++) {
        if c0 + j < width { acts[base + r * width + c0 + j] = v[j]; }
    }
}


const FORWARD: u32 = 0u;
const BACKWARD_INPUT: u32 = 1u;
const BACKWARD_WEIGHT: u32 = 2u;

// The product's extent for each kernel: (M, N, K) = (rows of C, columns of C, reduction).
fn extent(kernel: u32, z: u32) -> vec3<u32> {
    switch kernel {
        case BACKWARD_INPUT: { return vec3<u32>(op.rows, op.inner, op.cols); }
        case BACKWARD_WEIGHT: { return vec3<u32>(op.cols, op.inner, op.rows); }
        default: { return vec3<u32>(op.rows, op.cols, op.inner); }
    }
}

// Rows of A and B need nothing precomputed: the index is enough.
fn a_row(kernel: u32, z: u32, i: u32) -> vec4<i32> { return vec4<i32>(i32(i), 0, 0, 0); }
fn b_row(kernel: u32, z: u32, j: u32) -> vec4<i32> { return vec4<i32>(i32(j), 0, 0, 0); }

// The reduction index needs no decomposing either.
fn term(kernel: u32, t: u32) -> vec4<u32> { return vec4<u32>(t, 0u, 0u, 0u); }
fn next_term(kernel: u32, d: vec4<u32>) -> vec4<u32> { return vec4<u32>(d.x + 1u, 0u, 0u, 0u); }

fn load_a(kernel: u32, ra: vec4<i32>, d: vec4<u32>) -> f32 {
    let i = u32(ra.x);
    let t = d.x;
    switch kernel {
        case BACKWARD_INPUT: { return acts[op.dy_off + i * op.cols + t]; }
        case BACKWARD_WEIGHT: { return acts[op.dy_off + t * op.cols + i]; }
        default: { return acts[op.x_off + i * op.inner + t]; }
    }
}

fn load_b(kernel: u32, rb: vec4<i32>, d: vec4<u32>) -> f32 {
    let j = u32(rb.x);
    let t = d.x;
    switch kernel {
        case BACKWARD_INPUT: { return params[op.w_off + t * op.inner + j]; }
        case BACKWARD_WEIGHT: { return acts[op.x_off + t * op.inner + j]; }
        default: { return params[op.w_off + j * op.inner + t]; }
    }
}

// The general kernels run with TILE_COLS = 256 in the software shape (the pipeline sets it):
// tiles of 64 x 256, one row of A copied by each invocation (a_sum); in the hardware shape
// with 32 x 32 tiles (all of gemm.wgsl's products there), one row by each of the first 32.
// ---- forward: y = act(x W^T + b).
@compute @workgroup_size(TILE_COLS / BLOCK_COLS, TILE_ROWS / BLOCK_ROWS)
fn linear_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = tile_block(FORWARD, wid, lid);
    if keeps_part(FORWARD, wid, lid, c) { return; }
    let origin = block_origin(lid);
    let i = wid.y * TILE_ROWS + origin.x;
    let j = wid.x * TILE_COLS + origin.y;
    // The block's biases, loaded once for its rows.
    let bias = array<vec4<f32>, 4>(params4(op.b_off, j, op.cols), params4(op.b_off, j + 4u, op.cols),
                                   params4(op.b_off, j + 8u, op.cols), params4(op.b_off, j + 12u, op.cols));
    for (var r = 0u; r < BLOCK_ROWS; r++) {
        let v = block_row(c, r);
        for (var q = 0u; q < BLOCK_COLS / 4u; q++) {
            store_acts4(op.y_off, i + r, j + 4u * q, op.cols, activate(op.act, v[q] + bias[q]));
        }
    }
}

// ---- backward, input side: dx = (dy W) * act'(x).
@compute @workgroup_size(TILE_COLS / BLOCK_COLS, TILE_ROWS / BLOCK_ROWS)
fn linear_backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = tile_block(BACKWARD_INPUT, wid, lid);
    if keeps_part(BACKWARD_INPUT, wid, lid, c) { return; }
    let origin = block_origin(lid);
    let i = wid.y * TILE_ROWS + origin.x;
    let j = wid.x * TILE_COLS + origin.y;
    for (var r = 0u; r < BLOCK_ROWS; r++) {
        let v = block_row(c, r);
        let x = op.x_off + row(i + r) * op.inner;
        for (var q = 0u; q < BLOCK_COLS / 4u; q++) {
            let jq = j + 4u * q;
            store_acts4(op.dx_off, i + r, jq, op.inner, v[q] * activation_slope(op.act, acts4(x, jq, op.inner)));
        }
    }
}

// ---- backward, weight side: dW = dy^T x, and db = column sums of dy (from the first column
// of workgroups, whose invocations each summed one row of A = dy^T while copying it).
@compute @workgroup_size(TILE_COLS / BLOCK_COLS, TILE_ROWS / BLOCK_ROWS)
fn linear_backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    // (Never split: db is a by-product of its copies.)
    let c = product(BACKWARD_WEIGHT, wid, lid);
    let origin = block_origin(lid);
    let i = wid.y * TILE_ROWS + origin.x;
    let j = wid.x * TILE_COLS + origin.y;
    for (var r = 0u; r < BLOCK_ROWS; r++) {
        if i + r >= op.cols { break; }
        let v = block_row(c, r);
        for (var q = 0u; q < BLOCK_COLS; q++) {
            if j + q < op.inner { grads[op.dw_off + (i + r) * op.inner + j + q] = v[q / 4u][q % 4u]; }
        }
    }
    // Invocations me < TILE_ROWS each copied (and summed) one row of A.
    let me = lid.y * (TILE_COLS / BLOCK_COLS) + lid.x;
    let row = wid.y * TILE_ROWS + me;
    if wid.x == 0u && me < TILE_ROWS && row < op.cols { grads[op.db_off + row] = c.a_sum; }
}

// =============================================================================================
// The three linear-layer products of linear.wgsl, for shapes whose rows are whole vec4s
// (inner and cols multiples of 4, every offset a multiple of 4): the buffers are read as
// vec4s, one load per four floats. On software adapters (SwiftShader, lavapipe) loads, not
// arithmetic, bound these kernels, so each is arranged to need the fewest loads per
// multiply-add for its operands' layout:
//   forward  y = act(x W^T + b): x and W are both contiguous along the reduction (inner), so
//            each invocation takes dot products of vec4s: 8 rows x 4 columns of y.
//   dX       dx = (dy W) * act'(x): W is contiguous along the output (inner); dy is first
//            transposed (transpose4, one cheap pass), so that both operands are, and each
//            invocation accumulates outer products: 8 x 8 of dx, summing over cols.
//   dW       dW = dy^T x, db = column sums of dy: both contiguous along the outputs, so each
//            invocation accumulates outer products: 8 x 8 of dW, summing over rows.
// Outer products load the fewest elements per multiply-add (a quarter of an element each);
// the forward kernel would need transposed x and W to use them.
// The record is `Linear` above; offsets and widths are in floats, divided by 4 here.
// Rows must be a multiple of 4 too (dy transposed has rows of `rows` floats).
// Reads past the edges are clamped to the last row/vec4; those results are never stored.

// The same buffers as above, seen as vec4s. (A binding may be declared twice in one module as
// long as no entry point uses both declarations.)
@group(0) @binding(2) var<storage, read_write> params_v4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> grads_v4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> acts_v4: array<vec4<f32>>;


// Index of the first vec4 of row r (clamped to the last row) of a [rows, width] matrix at `off`.
fn row4(off: u32, r: u32, width: u32) -> u32 {
    return (off + min(r, op.rows - 1u) * width) / 4u;
}

// ---- forward. Grid: x over column blocks of 4, y over row blocks of 8.
@compute @workgroup_size(8, 8)
fn linear_forward4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c0 = gid.x * 4u;
    let r0 = gid.y * 8u;
    if c0 >= op.cols || r0 >= op.rows { return; }
    let n = op.inner / 4u;
    let x0_row = row4(op.x_off, r0, op.inner);
    let x1_row = row4(op.x_off, r0 + 1u, op.inner);
    let x2_row = row4(op.x_off, r0 + 2u, op.inner);
    let x3_row = row4(op.x_off, r0 + 3u, op.inner);
    let x4_row = row4(op.x_off, r0 + 4u, op.inner);
    let x5_row = row4(op.x_off, r0 + 5u, op.inner);
    let x6_row = row4(op.x_off, r0 + 6u, op.inner);
    let x7_row = row4(op.x_off, r0 + 7u, op.inner);
    let wa_row = (op.w_off + c0 * op.inner) / 4u;
    let wb_row = wa_row + n;
    let wc_row = wb_row + n;
    let wd_row = wc_row + n;
    // yIj = (x W^T)[r0 + I, c0 + j], in scalars: SwiftShader runs these dot products fastest.
    var y0a = 0.0; var y0b = 0.0; var y0c = 0.0; var y0d = 0.0;
    var y1a = 0.0; var y1b = 0.0; var y1c = 0.0; var y1d = 0.0;
    var y2a = 0.0; var y2b = 0.0; var y2c = 0.0; var y2d = 0.0;
    var y3a = 0.0; var y3b = 0.0; var y3c = 0.0; var y3d = 0.0;
    var y4a = 0.0; var y4b = 0.0; var y4c = 0.0; var y4d = 0.0;
    var y5a = 0.0; var y5b = 0.0; var y5c = 0.0; var y5d = 0.0;
    var y6a = 0.0; var y6b = 0.0; var y6c = 0.0; var y6d = 0.0;
    var y7a = 0.0; var y7b = 0.0; var y7c = 0.0; var y7d = 0.0;
    for (var k = 0u; k < n; k++) {
        let wa = params_v4[wa_row + k];
        let wb = params_v4[wb_row + k];
        let wc = params_v4[wc_row + k];
        let wd = params_v4[wd_row + k];
        let x0 = acts_v4[x0_row + k];
        y0a += dot(x0, wa); y0b += dot(x0, wb); y0c += dot(x0, wc); y0d += dot(x0, wd);
        let x1 = acts_v4[x1_row + k];
        y1a += dot(x1, wa); y1b += dot(x1, wb); y1c += dot(x1, wc); y1d += dot(x1, wd);
        let x2 = acts_v4[x2_row + k];
        y2a += dot(x2, wa); y2b += dot(x2, wb); y2c += dot(x2, wc); y2d += dot(x2, wd);
        let x3 = acts_v4[x3_row + k];
        y3a += dot(x3, wa); y3b += dot(x3, wb); y3c += dot(x3, wc); y3d += dot(x3, wd);
        let x4 = acts_v4[x4_row + k];
        y4a += dot(x4, wa); y4b += dot(x4, wb); y4c += dot(x4, wc); y4d += dot(x4, wd);
        let x5 = acts_v4[x5_row + k];
        y5a += dot(x5, wa); y5b += dot(x5, wb); y5c += dot(x5, wc); y5d += dot(x5, wd);
        let x6 = acts_v4[x6_row + k];
        y6a += dot(x6, wa); y6b += dot(x6, wb); y6c += dot(x6, wc); y6d += dot(x6, wd);
        let x7 = acts_v4[x7_row + k];
        y7a += dot(x7, wa); y7b += dot(x7, wb); y7c += dot(x7, wc); y7d += dot(x7, wd);
    }
    let b = params_v4[(op.b_off + c0) / 4u];
    let ys = array<vec4<f32>, 8>(vec4<f32>(y0a, y0b, y0c, y0d), vec4<f32>(y1a, y1b, y1c, y1d), vec4<f32>(y2a, y2b, y2c, y2d), vec4<f32>(y3a, y3b, y3c, y3d), vec4<f32>(y4a, y4b, y4c, y4d), vec4<f32>(y5a, y5b, y5c, y5d), vec4<f32>(y6a, y6b, y6c, y6d), vec4<f32>(y7a, y7b, y7c, y7d));
    let out = (op.y_off + c0) / 4u;
    for (var i = 0u; i < 8u; i++) {
        if r0 + i < op.rows { acts_v4[out + (r0 + i) * op.cols / 4u] = activate(op.act, ys[i] + b); }
    }
}

// ---- dy [rows, cols] -> dyt [cols, rows], a 4x4 block per invocation.
// Grid: x over column blocks of 4, y over row blocks of 4.
@compute @workgroup_size(8, 8)
fn transpose4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c0 = gid.x * 4u;
    let r0 = gid.y * 4u;
    if c0 >= op.cols || r0 >= op.rows { return; }
    let src = (op.dy_off + r0 * op.cols + c0) / 4u;
    let n = op.cols / 4u;
    let a = acts_v4[src];
    let b = acts_v4[src + n];
    let c = acts_v4[src + 2u * n];
    let d = acts_v4[src + 3u * n];
    let dst = (op.dyt_off + c0 * op.rows + r0) / 4u;
    let m = op.rows / 4u;
    acts_v4[dst] = vec4<f32>(a.x, b.x, c.x, d.x);
    acts_v4[dst + m] = vec4<f32>(a.y, b.y, c.y, d.y);
    acts_v4[dst + 2u * m] = vec4<f32>(a.z, b.z, c.z, d.z);
    acts_v4[dst + 3u * m] = vec4<f32>(a.w, b.w, c.w, d.w);
}

// ---- backward, input side, from dyt (transpose4 first). Grid: x over column blocks of 8 (of
// inner), y over row blocks of 8.
@compute @workgroup_size(8, 8)
fn linear_backward_input4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k0 = gid.x * 8u;
    let r0 = gid.y * 8u;
    if k0 >= op.inner || r0 >= op.rows { return; }
    // Second vec4s past the edge (widths are multiples of 4, not 8) are clamped, not stored.
    let m = op.rows / 4u;
    let n = op.inner / 4u;
    let dr = r0 / 4u;
    let dr2 = min(dr + 1u, m - 1u);
    let wk = k0 / 4u;
    let wk2 = min(wk + 1u, n - 1u);
    // dx rows r0 + i: aIl holds columns k0..k0 + 3, aIh columns k0 + 4..k0 + 7.
    var a0l = vec4<f32>(0.0); var a0h = vec4<f32>(0.0); var a1l = vec4<f32>(0.0); var a1h = vec4<f32>(0.0);
    var a2l = vec4<f32>(0.0); var a2h = vec4<f32>(0.0); var a3l = vec4<f32>(0.0); var a3h = vec4<f32>(0.0);
    var a4l = vec4<f32>(0.0); var a4h = vec4<f32>(0.0); var a5l = vec4<f32>(0.0); var a5h = vec4<f32>(0.0);
    var a6l = vec4<f32>(0.0); var a6h = vec4<f32>(0.0); var a7l = vec4<f32>(0.0); var a7h = vec4<f32>(0.0);
    var dyt = op.dyt_off / 4u;
    var w = op.w_off / 4u;
    for (var c = 0u; c < op.cols; c++) {
        let g = acts_v4[dyt + dr];
        let h = acts_v4[dyt + dr2];
        let wl = params_v4[w + wk];
        let wh = params_v4[w + wk2];
        dyt += m;
        w += n;
        a0l += g.x * wl; a0h += g.x * wh;
        a1l += g.y * wl; a1h += g.y * wh;
        a2l += g.z * wl; a2h += g.z * wh;
        a3l += g.w * wl; a3h += g.w * wh;
        a4l += h.x * wl; a4h += h.x * wh;
        a5l += h.y * wl; a5h += h.y * wh;
        a6l += h.z * wl; a6h += h.z * wh;
        a7l += h.w * wl; a7h += h.w * wh;
    }
    let lo = array<vec4<f32>, 8>(a0l, a1l, a2l, a3l, a4l, a5l, a6l, a7l);
    let hi = array<vec4<f32>, 8>(a0h, a1h, a2h, a3h, a4h, a5h, a6h, a7h);
    let high_k = k0 + 4u < op.inner;
    for (var i = 0u; i < 8u; i++) {
        let r = r0 + i;
        if r >= op.rows { break; }
        let at = (r * op.inner + k0) / 4u;
        acts_v4[op.dx_off / 4u + at] = lo[i] * activation_slope(op.act, acts_v4[op.x_off / 4u + at]);
        if high_k { acts_v4[op.dx_off / 4u + at + 1u] = hi[i] * activation_slope(op.act, acts_v4[op.x_off / 4u + at + 1u]); }
    }
}

// ---- backward, weight side. Grid: x over column blocks of 8 (of inner), y over row blocks
// of 8 (of cols). The invocations of the first column block also sum db.
@compute @workgroup_size(8, 8)
fn linear_backward_weight4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k0 = gid.x * 8u;
    let c0 = gid.y * 8u;
    if k0 >= op.inner || c0 >= op.cols { return; }
    // The second vec4 of each block may lie past the edge (widths are multiples of 4, not 8):
    // clamp its reads; its results are not stored.
    let last_c = op.cols / 4u - 1u;
    let last_k = op.inner / 4u - 1u;
    let gc = c0 / 4u;
    let gc2 = min(gc + 1u, last_c);
    let xk = k0 / 4u;
    let xk2 = min(xk + 1u, last_k);
    // dW rows c0 + j: aJl holds columns k0..k0 + 3, aJh columns k0 + 4..k0 + 7.
    var a0l = vec4<f32>(0.0); var a0h = vec4<f32>(0.0); var a1l = vec4<f32>(0.0); var a1h = vec4<f32>(0.0);
    var a2l = vec4<f32>(0.0); var a2h = vec4<f32>(0.0); var a3l = vec4<f32>(0.0); var a3h = vec4<f32>(0.0);
    var a4l = vec4<f32>(0.0); var a4h = vec4<f32>(0.0); var a5l = vec4<f32>(0.0); var a5h = vec4<f32>(0.0);
    var a6l = vec4<f32>(0.0); var a6h = vec4<f32>(0.0); var a7l = vec4<f32>(0.0); var a7h = vec4<f32>(0.0);
    var bl = vec4<f32>(0.0);
    var bh = vec4<f32>(0.0);
    var dy = op.dy_off / 4u;
    var x = op.x_off / 4u;
    for (var r = 0u; r < op.rows; r++) {
        let g = acts_v4[dy + gc];
        let h = acts_v4[dy + gc2];
        let xl = acts_v4[x + xk];
        let xh = acts_v4[x + xk2];
        dy += op.cols / 4u;
        x += op.inner / 4u;
        a0l += g.x * xl; a0h += g.x * xh;
        a1l += g.y * xl; a1h += g.y * xh;
        a2l += g.z * xl; a2h += g.z * xh;
        a3l += g.w * xl; a3h += g.w * xh;
        a4l += h.x * xl; a4h += h.x * xh;
        a5l += h.y * xl; a5h += h.y * xh;
        a6l += h.z * xl; a6h += h.z * xh;
        a7l += h.w * xl; a7h += h.w * xh;
        bl += g;
        bh += h;
    }
    let lo = array<vec4<f32>, 8>(a0l, a1l, a2l, a3l, a4l, a5l, a6l, a7l);
    let hi = array<vec4<f32>, 8>(a0h, a1h, a2h, a3h, a4h, a5h, a6h, a7h);
    let high_k = k0 + 4u < op.inner;
    for (var j = 0u; j < 8u; j++) {
        let c = c0 + j;
        if c >= op.cols { break; }
        let at = (op.dw_off + c * op.inner + k0) / 4u;
        grads_v4[at] = lo[j];
        if high_k { grads_v4[at + 1u] = hi[j]; }
    }
    if k0 == 0u {
        grads_v4[(op.db_off + c0) / 4u] = bl;
        if c0 + 4u < op.cols { grads_v4[(op.db_off + c0) / 4u + 1u] = bh; }
    }
}
