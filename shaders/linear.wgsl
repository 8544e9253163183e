// Linear layers, PyTorch nn.Linear layout: y = act(x W^T + b).
//   x [rows, inner], W [cols, inner] (row-major, "weight" is [out, in]), b [cols], y [rows, cols].
// All tensors live in flat buffers (parameters in `params`, activations in `acts`); the
// uniform gives each tensor's offset, so one bind group serves every layer of the model.
//
// Each invocation computes a 4x4 block of y held in named vec4 registers: on software adapters
// (SwiftShader, lavapipe) named variables are much faster than an indexed local array, and the
// kernel needs no workgroup barriers.

struct Linear {
    rows: u32,   // batch size
    inner: u32,  // input features
    cols: u32,   // output features
    act: u32,    // 0 = identity, 1 = ReLU, 2 = tanh
    x_off: u32,  // offset of x in acts
    w_off: u32,  // offset of W in params
    b_off: u32,  // offset of b in params
    y_off: u32,  // offset of y in acts
}

@group(0) @binding(0) var<uniform> op: Linear;
@group(0) @binding(2) var<storage, read_write> params: array<f32>;
@group(0) @binding(4) var<storage, read_write> acts: array<f32>;

fn activate(z: vec4<f32>) -> vec4<f32> {
    switch op.act {
        case 1u: { return max(z, vec4<f32>(0.0)); }
        case 2u: { return tanh(z); }
        default: { return z; }
    }
}

// x[r, k..k+4], with rows past the end clamped to the last row (their results are discarded).
fn x4(r: u32, k: u32) -> vec4<f32> {
    let i = op.x_off + min(r, op.rows - 1u) * op.inner + k;
    return vec4<f32>(acts[i], acts[i + 1u], acts[i + 2u], acts[i + 3u]);
}

fn w4(c: u32, k: u32) -> vec4<f32> {
    let i = op.w_off + min(c, op.cols - 1u) * op.inner + k;
    return vec4<f32>(params[i], params[i + 1u], params[i + 2u], params[i + 3u]);
}

fn x1(r: u32, k: u32) -> f32 {
    return acts[op.x_off + min(r, op.rows - 1u) * op.inner + k];
}

fn w1(c: u32, k: u32) -> f32 {
    return params[op.w_off + min(c, op.cols - 1u) * op.inner + k];
}

fn store_row(r: u32, c0: u32, z: vec4<f32>) {
    if r >= op.rows { return; }
    let bias = vec4<f32>(
        params[op.b_off + min(c0, op.cols - 1u)],
        params[op.b_off + min(c0 + 1u, op.cols - 1u)],
        params[op.b_off + min(c0 + 2u, op.cols - 1u)],
        params[op.b_off + min(c0 + 3u, op.cols - 1u)],
    );
    let y = activate(z + bias);
    let base = op.y_off + r * op.cols;
    for (var j = 0u; j < 4u; j++) {
        if c0 + j < op.cols { acts[base + c0 + j] = y[j]; }
    }
}

// Grid: x covers columns in blocks of 4, y covers rows in blocks of 4.
@compute @workgroup_size(8, 8)
fn linear_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c0 = gid.x * 4u;
    let r0 = gid.y * 4u;
    if c0 >= op.cols || r0 >= op.rows { return; }

    // acc_i[j] = sum_k x[r0 + i, k] * W[c0 + j, k]
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let k4 = op.inner & ~3u;
    for (var k = 0u; k < k4; k += 4u) {
        let xa = x4(r0, k);
        let xb = x4(r0 + 1u, k);
        let xc = x4(r0 + 2u, k);
        let xd = x4(r0 + 3u, k);
        let wa = w4(c0, k);
        let wb = w4(c0 + 1u, k);
        let wc = w4(c0 + 2u, k);
        let wd = w4(c0 + 3u, k);
        // Transpose the 4x4 block of W so each step is a vec4 multiply-add over columns.
        let wt0 = vec4<f32>(wa.x, wb.x, wc.x, wd.x);
        let wt1 = vec4<f32>(wa.y, wb.y, wc.y, wd.y);
        let wt2 = vec4<f32>(wa.z, wb.z, wc.z, wd.z);
        let wt3 = vec4<f32>(wa.w, wb.w, wc.w, wd.w);
        acc0 += xa.x * wt0 + xa.y * wt1 + xa.z * wt2 + xa.w * wt3;
        acc1 += xb.x * wt0 + xb.y * wt1 + xb.z * wt2 + xb.w * wt3;
        acc2 += xc.x * wt0 + xc.y * wt1 + xc.z * wt2 + xc.w * wt3;
        acc3 += xd.x * wt0 + xd.y * wt1 + xd.z * wt2 + xd.w * wt3;
    }
    // Leftover k when inner is not a multiple of 4 (e.g. a latent size of 2).
    for (var k = k4; k < op.inner; k++) {
        let w = vec4<f32>(w1(c0, k), w1(c0 + 1u, k), w1(c0 + 2u, k), w1(c0 + 3u, k));
        acc0 += x1(r0, k) * w;
        acc1 += x1(r0 + 1u, k) * w;
        acc2 += x1(r0 + 2u, k) * w;
        acc3 += x1(r0 + 3u, k) * w;
    }
    store_row(r0, c0, acc0);
    store_row(r0 + 1u, c0, acc1);
    store_row(r0 + 2u, c0, acc2);
    store_row(r0 + 3u, c0, acc3);
}
