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
    dyt_off: u32, // linear4 dX: dy transposed, [cols, rows] (written by transpose4)
}

@group(0) @binding(0) var<uniform> op: Linear;
@group(0) @binding(2) var<storage, read_write> params: array<f32>;
@group(0) @binding(3) var<storage, read_write> grads: array<f32>;
@group(0) @binding(4) var<storage, read_write> acts: array<f32>;

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
fn extent(kernel: u32) -> vec3<u32> {
    switch kernel {
        case BACKWARD_INPUT: { return vec3<u32>(op.rows, op.inner, op.cols); }
        case BACKWARD_WEIGHT: { return vec3<u32>(op.cols, op.inner, op.rows); }
        default: { return vec3<u32>(op.rows, op.cols, op.inner); }
    }
}

// Rows of A and B need nothing precomputed: the index is enough.
fn a_row(kernel: u32, i: u32) -> vec4<i32> { return vec4<i32>(i32(i), 0, 0, 0); }
fn b_row(kernel: u32, j: u32) -> vec4<i32> { return vec4<i32>(i32(j), 0, 0, 0); }

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

// ---- forward: y = act(x W^T + b).
@compute @workgroup_size(8, 8)
fn linear_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = product(FORWARD, wid, lid);
    let i = wid.y * TILE_ROWS + lid.y * 8u;
    let j = wid.x * TILE_COLS + lid.x * 8u;
    let bl = params4(op.b_off, j, op.cols);
    let bh = params4(op.b_off, j + 4u, op.cols);
    for (var r = 0u; r < 8u; r++) {
        let v = block_row(c, r);
        store_acts4(op.y_off, i + r, j, op.cols, activate(op.act, v[0] + bl));
        store_acts4(op.y_off, i + r, j + 4u, op.cols, activate(op.act, v[1] + bh));
    }
}

// ---- backward, input side: dx = (dy W) * act'(x).
@compute @workgroup_size(8, 8)
fn linear_backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = product(BACKWARD_INPUT, wid, lid);
    let i = wid.y * TILE_ROWS + lid.y * 8u;
    let j = wid.x * TILE_COLS + lid.x * 8u;
    for (var r = 0u; r < 8u; r++) {
        let v = block_row(c, r);
        let x = op.x_off + row(i + r) * op.inner;
        store_acts4(op.dx_off, i + r, j, op.inner, v[0] * activation_slope(op.act, acts4(x, j, op.inner)));
        store_acts4(op.dx_off, i + r, j + 4u, op.inner, v[1] * activation_slope(op.act, acts4(x, j + 4u, op.inner)));
    }
}

// ---- backward, weight side: dW = dy^T x, and db = column sums of dy (from the first column
// of workgroups, whose invocations each summed one row of A = dy^T while copying it).
@compute @workgroup_size(8, 8)
fn linear_backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = product(BACKWARD_WEIGHT, wid, lid);
    let i = wid.y * TILE_ROWS + lid.y * 8u;
    let j = wid.x * TILE_COLS + lid.x * 8u;
    for (var r = 0u; r < 8u; r++) {
        if i + r >= op.cols { break; }
        let v = block_row(c, r);
        for (var q = 0u; q < 8u; q++) {
            if j + q < op.inner { grads[op.dw_off + (i + r) * op.inner + j + q] = v[q / 4u][q % 4u]; }
        }
    }
    let me = wid.y * TILE_ROWS + lid.y * 8u + lid.x;
    if wid.x == 0u && me < op.cols { grads[op.db_off + me] = c.a_sum; }
}
