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
// Each invocation computes a 4x4 block held in named vec4 registers: on software adapters
// (SwiftShader, lavapipe) named variables are much faster than an indexed local array, and
// these kernels need no workgroup barriers. Reads past the edges are clamped to the last
// row/column; those results are never stored.

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
}

@group(0) @binding(0) var<uniform> op: Linear;
@group(0) @binding(2) var<storage, read_write> params: array<f32>;
@group(0) @binding(3) var<storage, read_write> grads: array<f32>;
@group(0) @binding(4) var<storage, read_write> acts: array<f32>;

// Activation codes (reference::Activation::code); 0, identity, is every switch's default.
const RELU: u32 = 1u;
const TANH: u32 = 2u;

fn activate(z: vec4<f32>) -> vec4<f32> {
    switch op.act {
        case RELU: { return max(z, vec4<f32>(0.0)); }
        case TANH: { return tanh(z); }
        default: { return z; }
    }
}

// d act / d z in terms of the activation's output.
fn activation_slope(y: vec4<f32>) -> vec4<f32> {
    switch op.act {
        case RELU: { return select(vec4<f32>(0.0), vec4<f32>(1.0), y > vec4<f32>(0.0)); }
        case TANH: { return 1.0 - y * y; }
        default: { return vec4<f32>(1.0); }
    }
}

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

// ---- forward: y = act(x W^T + b). Grid: x over column blocks of 4, y over row blocks of 4.
@compute @workgroup_size(8, 8)
fn linear_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c0 = gid.x * 4u;
    let r0 = gid.y * 4u;
    if c0 >= op.cols || r0 >= op.rows { return; }
    let xa = op.x_off + row(r0) * op.inner;
    let xb = op.x_off + row(r0 + 1u) * op.inner;
    let xc = op.x_off + row(r0 + 2u) * op.inner;
    let xd = op.x_off + row(r0 + 3u) * op.inner;
    let wa = op.w_off + col(c0) * op.inner;
    let wb = op.w_off + col(c0 + 1u) * op.inner;
    let wc = op.w_off + col(c0 + 2u) * op.inner;
    let wd = op.w_off + col(c0 + 3u) * op.inner;
    // acc_i[j] = sum_k x[r0 + i, k] * W[c0 + j, k]
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let k4 = op.inner & ~3u;
    for (var k = 0u; k < k4; k += 4u) {
        let x0 = vec4<f32>(acts[xa + k], acts[xa + k + 1u], acts[xa + k + 2u], acts[xa + k + 3u]);
        let x1 = vec4<f32>(acts[xb + k], acts[xb + k + 1u], acts[xb + k + 2u], acts[xb + k + 3u]);
        let x2 = vec4<f32>(acts[xc + k], acts[xc + k + 1u], acts[xc + k + 2u], acts[xc + k + 3u]);
        let x3 = vec4<f32>(acts[xd + k], acts[xd + k + 1u], acts[xd + k + 2u], acts[xd + k + 3u]);
        // The 4x4 block of W, transposed: wt_t[j] = W[c0 + j, k + t].
        let wt0 = vec4<f32>(params[wa + k], params[wb + k], params[wc + k], params[wd + k]);
        let wt1 = vec4<f32>(params[wa + k + 1u], params[wb + k + 1u], params[wc + k + 1u], params[wd + k + 1u]);
        let wt2 = vec4<f32>(params[wa + k + 2u], params[wb + k + 2u], params[wc + k + 2u], params[wd + k + 2u]);
        let wt3 = vec4<f32>(params[wa + k + 3u], params[wb + k + 3u], params[wc + k + 3u], params[wd + k + 3u]);
        acc0 += x0.x * wt0 + x0.y * wt1 + x0.z * wt2 + x0.w * wt3;
        acc1 += x1.x * wt0 + x1.y * wt1 + x1.z * wt2 + x1.w * wt3;
        acc2 += x2.x * wt0 + x2.y * wt1 + x2.z * wt2 + x2.w * wt3;
        acc3 += x3.x * wt0 + x3.y * wt1 + x3.z * wt2 + x3.w * wt3;
    }
    // Leftover k when inner is not a multiple of 4 (e.g. a latent size of 2).
    for (var k = k4; k < op.inner; k++) {
        let w = vec4<f32>(params[wa + k], params[wb + k], params[wc + k], params[wd + k]);
        acc0 += acts[xa + k] * w;
        acc1 += acts[xb + k] * w;
        acc2 += acts[xc + k] * w;
        acc3 += acts[xd + k] * w;
    }
    let bias = params4(op.b_off, c0, op.cols);
    store_acts4(op.y_off, r0, c0, op.cols, activate(acc0 + bias));
    store_acts4(op.y_off, r0 + 1u, c0, op.cols, activate(acc1 + bias));
    store_acts4(op.y_off, r0 + 2u, c0, op.cols, activate(acc2 + bias));
    store_acts4(op.y_off, r0 + 3u, c0, op.cols, activate(acc3 + bias));
}

// ---- backward, input side: dx = (dy W) * act'(x). Grid: x over k blocks of 4, y over row blocks.
@compute @workgroup_size(8, 8)
fn linear_backward_input(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k0 = gid.x * 4u;
    let r0 = gid.y * 4u;
    if k0 >= op.inner || r0 >= op.rows { return; }
    let da = op.dy_off + row(r0) * op.cols;
    let db = op.dy_off + row(r0 + 1u) * op.cols;
    let dc = op.dy_off + row(r0 + 2u) * op.cols;
    let dd = op.dy_off + row(r0 + 3u) * op.cols;
    // acc_i[t] = sum_c dy[r0 + i, c] * W[c, k0 + t]: rows of W are contiguous along k.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var c = 0u; c < op.cols; c++) {
        let w = params4(op.w_off + c * op.inner, k0, op.inner);
        acc0 += acts[da + c] * w;
        acc1 += acts[db + c] * w;
        acc2 += acts[dc + c] * w;
        acc3 += acts[dd + c] * w;
    }
    let xa = op.x_off + row(r0) * op.inner;
    let xb = op.x_off + row(r0 + 1u) * op.inner;
    let xc = op.x_off + row(r0 + 2u) * op.inner;
    let xd = op.x_off + row(r0 + 3u) * op.inner;
    store_acts4(op.dx_off, r0, k0, op.inner, acc0 * activation_slope(acts4(xa, k0, op.inner)));
    store_acts4(op.dx_off, r0 + 1u, k0, op.inner, acc1 * activation_slope(acts4(xb, k0, op.inner)));
    store_acts4(op.dx_off, r0 + 2u, k0, op.inner, acc2 * activation_slope(acts4(xc, k0, op.inner)));
    store_acts4(op.dx_off, r0 + 3u, k0, op.inner, acc3 * activation_slope(acts4(xd, k0, op.inner)));
}

// ---- backward, weight side: dW = dy^T x and db = column sums of dy.
// Grid: x over k blocks of 4, y over column blocks of 4. The invocations of the first k block
// also sum db.
@compute @workgroup_size(8, 8)
fn linear_backward_weight(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k0 = gid.x * 4u;
    let c0 = gid.y * 4u;
    if k0 >= op.inner || c0 >= op.cols { return; }
    // acc_j[t] = sum_r dy[r, c0 + j] * x[r, k0 + t]
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var bias = vec4<f32>(0.0);
    for (var r = 0u; r < op.rows; r++) {
        let dy = acts4(op.dy_off + r * op.cols, c0, op.cols);
        let x = acts4(op.x_off + r * op.inner, k0, op.inner);
        acc0 += dy.x * x;
        acc1 += dy.y * x;
        acc2 += dy.z * x;
        acc3 += dy.w * x;
        bias += dy;
    }
    let accs = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var j = 0u; j < 4u; j++) {
        let c = c0 + j;
        if c >= op.cols { break; }
        for (var t = 0u; t < 4u; t++) {
            if k0 + t < op.inner { grads[op.dw_off + c * op.inner + k0 + t] = accs[j][t]; }
        }
        if k0 == 0u { grads[op.db_off + c] = bias[j]; }
    }
}
