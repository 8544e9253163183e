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
// A workgroup of 8x8 invocations computes a 64x64 tile of C. The reduction runs in chunks of
// TK: the workgroup copies the A and B chunks into workgroup memory (each invocation one row
// of each), then every invocation accumulates an 8x8 block from them in 16 named vec4
// registers (named, not an indexed array: several times faster on software adapters).
// Copies are guarded, so edges need no special cases; only in-range outputs are stored.

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
    dyt_off: u32, // linear4 dX: dy transposed, [cols, rows] (written by transpose4)
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


const TILE: u32 = 64u;
const TK: u32 = 16u;
const FORWARD: u32 = 0u;
const BACKWARD_INPUT: u32 = 1u;
const BACKWARD_WEIGHT: u32 = 2u;

// Chunks of A and B, transposed so that a row of eight outputs is two vec4 reads:
// a_tile[t * 16 + i / 4][i % 4] = A(i0 + i, t0 + t), likewise b_tile for B(j0 + j, t0 + t).
var<workgroup> a_tile: array<vec4<f32>, 256>;
var<workgroup> b_tile: array<vec4<f32>, 256>;

// The product's extent for each kernel: (M, N, K) = (rows of C, columns of C, reduction).
fn extent(kernel: u32) -> vec3<u32> {
    switch kernel {
        case BACKWARD_INPUT: { return vec3<u32>(op.rows, op.inner, op.cols); }
        case BACKWARD_WEIGHT: { return vec3<u32>(op.cols, op.inner, op.rows); }
        default: { return vec3<u32>(op.rows, op.cols, op.inner); }
    }
}

fn load_a(kernel: u32, i: u32, t: u32) -> f32 {
    switch kernel {
        case BACKWARD_INPUT: { return acts[op.dy_off + i * op.cols + t]; }
        case BACKWARD_WEIGHT: { return acts[op.dy_off + t * op.cols + i]; }
        default: { return acts[op.x_off + i * op.inner + t]; }
    }
}

fn load_b(kernel: u32, j: u32, t: u32) -> f32 {
    switch kernel {
        case BACKWARD_INPUT: { return params[op.w_off + t * op.inner + j]; }
        case BACKWARD_WEIGHT: { return acts[op.x_off + t * op.inner + j]; }
        default: { return params[op.w_off + j * op.inner + t]; }
    }
}

// An 8x8 block of C: rI_lo / rI_hi hold row I's columns 0-3 / 4-7.
struct Block {
    r0l: vec4<f32>, r0h: vec4<f32>, r1l: vec4<f32>, r1h: vec4<f32>,
    r2l: vec4<f32>, r2h: vec4<f32>, r3l: vec4<f32>, r3h: vec4<f32>,
    r4l: vec4<f32>, r4h: vec4<f32>, r5l: vec4<f32>, r5h: vec4<f32>,
    r6l: vec4<f32>, r6h: vec4<f32>, r7l: vec4<f32>, r7h: vec4<f32>,
    // sum_t A(i0 + lid, t) over the whole reduction: db, for dW.
    a_sum: f32,
}

// This invocation's 8x8 block of the workgroup's tile (rows 8 * lid.y.., columns 8 * lid.x..).
fn product(kernel: u32, wid: vec3<u32>, lid: vec3<u32>) -> Block {
    let mnk = extent(kernel);
    let i0 = wid.y * TILE;
    let j0 = wid.x * TILE;
    let me = lid.y * 8u + lid.x;
    var r0l = vec4<f32>(0.0); var r0h = vec4<f32>(0.0); var r1l = vec4<f32>(0.0); var r1h = vec4<f32>(0.0);
    var r2l = vec4<f32>(0.0); var r2h = vec4<f32>(0.0); var r3l = vec4<f32>(0.0); var r3h = vec4<f32>(0.0);
    var r4l = vec4<f32>(0.0); var r4h = vec4<f32>(0.0); var r5l = vec4<f32>(0.0); var r5h = vec4<f32>(0.0);
    var r6l = vec4<f32>(0.0); var r6h = vec4<f32>(0.0); var r7l = vec4<f32>(0.0); var r7h = vec4<f32>(0.0);
    var a_sum = 0.0;
    let ai = i0 + me;
    let bj = j0 + me;
    let slot = me / 4u;
    let lane = me % 4u;
    for (var t0 = 0u; t0 < mnk.z; t0 += TK) {
        // Copy: this invocation fills row `me` of both chunks (zeros past the edges).
        for (var t = 0u; t < TK; t++) {
            let in_k = t0 + t < mnk.z;
            var a = 0.0;
            if ai < mnk.x && in_k { a = load_a(kernel, ai, t0 + t); }
            var b = 0.0;
            if bj < mnk.y && in_k { b = load_b(kernel, bj, t0 + t); }
            a_tile[t * 16u + slot][lane] = a;
            b_tile[t * 16u + slot][lane] = b;
            a_sum += a;
        }
        workgroupBarrier();
        let ar = lid.y * 2u;
        let bc = lid.x * 2u;
        for (var t = 0u; t < TK; t++) {
            let al = a_tile[t * 16u + ar];
            let ah = a_tile[t * 16u + ar + 1u];
            let bl = b_tile[t * 16u + bc];
            let bh = b_tile[t * 16u + bc + 1u];
            r0l += al.x * bl; r0h += al.x * bh;
            r1l += al.y * bl; r1h += al.y * bh;
            r2l += al.z * bl; r2h += al.z * bh;
            r3l += al.w * bl; r3h += al.w * bh;
            r4l += ah.x * bl; r4h += ah.x * bh;
            r5l += ah.y * bl; r5h += ah.y * bh;
            r6l += ah.z * bl; r6h += ah.z * bh;
            r7l += ah.w * bl; r7h += ah.w * bh;
        }
        workgroupBarrier();
    }
    return Block(r0l, r0h, r1l, r1h, r2l, r2h, r3l, r3h, r4l, r4h, r5l, r5h, r6l, r6h, r7l, r7h, a_sum);
}

// Row `r` of a block as two vec4s.
fn block_row(c: Block, r: u32) -> array<vec4<f32>, 2> {
    switch r {
        case 0u: { return array(c.r0l, c.r0h); }
        case 1u: { return array(c.r1l, c.r1h); }
        case 2u: { return array(c.r2l, c.r2h); }
        case 3u: { return array(c.r3l, c.r3h); }
        case 4u: { return array(c.r4l, c.r4h); }
        case 5u: { return array(c.r5l, c.r5h); }
        case 6u: { return array(c.r6l, c.r6h); }
        default: { return array(c.r7l, c.r7h); }
    }
}

// ---- forward: y = act(x W^T + b).
@compute @workgroup_size(8, 8)
fn linear_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = product(FORWARD, wid, lid);
    let i = wid.y * TILE + lid.y * 8u;
    let j = wid.x * TILE + lid.x * 8u;
    let bl = params4(op.b_off, j, op.cols);
    let bh = params4(op.b_off, j + 4u, op.cols);
    for (var r = 0u; r < 8u; r++) {
        let v = block_row(c, r);
        store_acts4(op.y_off, i + r, j, op.cols, activate(v[0] + bl));
        store_acts4(op.y_off, i + r, j + 4u, op.cols, activate(v[1] + bh));
    }
}

// ---- backward, input side: dx = (dy W) * act'(x).
@compute @workgroup_size(8, 8)
fn linear_backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = product(BACKWARD_INPUT, wid, lid);
    let i = wid.y * TILE + lid.y * 8u;
    let j = wid.x * TILE + lid.x * 8u;
    for (var r = 0u; r < 8u; r++) {
        let v = block_row(c, r);
        let x = op.x_off + row(i + r) * op.inner;
        store_acts4(op.dx_off, i + r, j, op.inner, v[0] * activation_slope(acts4(x, j, op.inner)));
        store_acts4(op.dx_off, i + r, j + 4u, op.inner, v[1] * activation_slope(acts4(x, j + 4u, op.inner)));
    }
}

// ---- backward, weight side: dW = dy^T x, and db = column sums of dy (from the first column
// of workgroups, whose invocations each summed one row of A = dy^T while copying it).
@compute @workgroup_size(8, 8)
fn linear_backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = product(BACKWARD_WEIGHT, wid, lid);
    let i = wid.y * TILE + lid.y * 8u;
    let j = wid.x * TILE + lid.x * 8u;
    for (var r = 0u; r < 8u; r++) {
        if i + r >= op.cols { break; }
        let v = block_row(c, r);
        for (var q = 0u; q < 8u; q++) {
            if j + q < op.inner { grads[op.dw_off + (i + r) * op.inner + j + q] = v[q / 4u][q % 4u]; }
        }
    }
    let me = wid.y * TILE + lid.y * 8u + lid.x;
    if wid.x == 0u && me < op.cols { grads[op.db_off + me] = c.a_sum; }
}
