// Convolutions (src/ops/conv.rs): Conv2d and ConvTranspose2d, forward with fused bias and
// activation, dX, dW, db. Both are written with one geometry naming the two sides of a
// convolution, the large side L [batch, lc, lh, lw] and the small side S [batch, sc, sh, sw],
// tied by W [sc, lc, k, k], stride s and padding p. Three products cover both layers:
//   down    S[n, cs, y, x] = sum_{cl, ky, kx} W[cs, cl, ky, kx] L[n, cl, y s - p + ky, x s - p + kx]
//           (Conv2d forward, ConvTranspose2d dX)
//   up      L[n, cl, Y, X] = sum over the taps that reach (Y, X) of W[cs, cl, ky, kx] S[n, cs, y, x]
//           (ConvTranspose2d forward, Conv2d dX)
//   weight  dW[cs, cl, ky, kx] = sum_{n, y, x} S[n, cs, y, x] L[n, cl, y s - p + ky, x s - p + kx]
// Each is a matrix product read in place by gemm.wgsl (implicit GEMM):
//   down    C[(n, y, x), cs]        A = L gathered through the taps, B = W rows     K = lc k k
//   up      C[(n, Y, X), cl]        A = S gathered, B = W columns                   K = sc (k/s)^2
//   weight  C[cs, (cl, ky, kx)]     A = S rows, B = L gathered                      K = batch sh sw
// `up` is computed as a gather, each output by one invocation, in s x s phases (grid z): the large
// pixels whose (Y + p) mod s and (X + p) mod s agree are reached by the same k/s x k/s taps, so
// no invocation walks taps that cannot reach it (three quarters of them at stride 2).
// Every output element is written by exactly one invocation: no atomics.
// Narrow outputs (one channel, a first layer's dW) use the direct kernels: four outputs of a
// column per invocation for down and up, split_product (gemm.wgsl) for weight; the same
// indexing, no tiles of padding.
// What makes these fast on software adapters (SwiftShader runs each invocation as a SIMD lane
// and every branch as masked control flow): `kernel` is a constant at every call, so the
// switches fold away (a selector derived from the grid cost 4x); bounds are tested with `&`
// and loads masked by `select`, not branched around; the reduction index is stepped, not
// divided.

struct Conv {
    batch: u32,
    lc: u32,
    lh: u32,
    lw: u32,
    sc: u32,
    sh: u32,
    sw: u32,
    k: u32,
    s: u32,
    p: u32,
    taps: u32,      // taps per dimension that reach a large pixel in up: ceil(k / s)
    act: u32,       // mode 0: applied to the output; mode 1: the one that made slope_off's tensor
    mode: u32,      // 0: out = act(C + bias); 1: out = C * act'(acts[slope_off + same index])
    large_off: u32, // L (acts)
    small_off: u32, // S (acts)
    out_off: u32,   // the product (acts; grads for weight)
    w_off: u32,     // W (params)
    b_off: u32,     // bias (params) or NONE
    slope_off: u32,
    db_off: u32,    // weight: row sums of S (grads) or NONE; channel_sums: the sums (grads)
    sum_off: u32,   // channel_sums: a tensor [batch, sum_c, sum_hw] (acts)
    sum_c: u32,
    sum_hw: u32,
    parts: u32,     // a split product (gemm.wgsl's SPLIT_K): the reduction's parts (0 or 1: not split)
    part_off: u32,  // where its parts lie, [parts, M, N] (acts)
    gather: u32,    // 1 in its second dispatch, which sums the parts
}

@group(0) @binding(0) var<uniform> op: Conv;
@group(0) @binding(2) var<storage, read_write> params: array<f32>;
@group(0) @binding(3) var<storage, read_write> grads: array<f32>;
@group(0) @binding(4) var<storage, read_write> acts: array<f32>;

// What gemm.wgsl's split products need from the record and the buffers.
fn split() -> vec3<u32> { return vec3<u32>(op.parts, op.part_off, op.gather); }
fn part(at: u32) -> f32 { return acts[at]; }
fn set_part(at: u32, v: f32) { acts[at] = v; }

const DOWN: u32 = 0u;
const UP: u32 = 1u;
const WEIGHT: u32 = 2u;

// up's phase, the grid's z: the residues (Y + p) mod s and (X + p) mod s of a dispatch's
// large pixels. Divided out once per row (a_row, b_row): software adapters divide integers
// lane by lane, and the per-element functions read it from the row descriptors.
fn phase_of(z: u32) -> vec2<u32> { return vec2<u32>(z / op.s, z % op.s); }

// The first large row (or column) with residue r, and how many there are in `size`.
fn phase_start(r: u32) -> u32 { return (r + op.s - op.p % op.s) % op.s; }
fn phase_count(start: u32, size: u32) -> u32 { return select(0u, (size - start + op.s - 1u) / op.s, start < size); }

fn extent(kernel: u32, z: u32) -> vec3<u32> {
    let phase = phase_of(z);
    switch kernel {
        case UP: {
            let rows = phase_count(phase_start(phase.x), op.lh) * phase_count(phase_start(phase.y), op.lw);
            return vec3<u32>(op.batch * rows, op.lc, op.sc * op.taps * op.taps);
        }
        case WEIGHT: { return vec3<u32>(op.sc, op.lc * op.k * op.k, op.batch * op.sh * op.sw); }
        default: { return vec3<u32>(op.batch * op.sh * op.sw, op.sc, op.lc * op.k * op.k); }
    }
}

// Row i of A: down, the small pixel (n, y, x); up, the large pixel (n, Y, X) of phase
// (ry, rx) as (n, (Y + p - ry) / s, (X + p - rx) / s, ry | rx << 16): tap (ty, tx) of it reads
// small pixel ((Y + p - ry) / s - ty, (X + p - rx) / s - tx), no division per tap.
fn a_row(kernel: u32, z: u32, i: u32) -> vec4<i32> {
    let phase = phase_of(z);
    switch kernel {
        case UP: {
            let sy = phase_start(phase.x);
            let sx = phase_start(phase.y);
            let cx = max(phase_count(sx, op.lw), 1u);
            let per = max(phase_count(sy, op.lh) * cx, 1u);
            let r = i % per;
            let y = r / cx + (sy + op.p - phase.x) / op.s;
            let x = r % cx + (sx + op.p - phase.y) / op.s;
            return vec4<i32>(i32(i / per), i32(y), i32(x), i32(phase.x | (phase.y << 16u)));
        }
        case WEIGHT: { return vec4<i32>(i32(i), 0, 0, 0); }
        default: {
            let r = i % (op.sh * op.sw);
            return vec4<i32>(i32(i / (op.sh * op.sw)), i32(r / op.sw), i32(r % op.sw), 0);
        }
    }
}

// The phase (ry, rx) of an up row.
fn row_phase(ra: vec4<i32>) -> vec2<u32> { return vec2<u32>(u32(ra.w) & 65535u, u32(ra.w) >> 16u); }

// Column j of B: down, an output channel; up, an output channel and the phase (cl, ry, rx);
// weight, the tap (cl, ky, kx).
fn b_row(kernel: u32, z: u32, j: u32) -> vec4<i32> {
    switch kernel {
        case UP: {
            let phase = phase_of(z);
            return vec4<i32>(i32(j), i32(phase.x), i32(phase.y), 0);
        }
        case WEIGHT: {
            let kk = op.k * op.k;
            let r = j % kk;
            return vec4<i32>(i32(j / kk), i32(r / op.k), i32(r % op.k), 0);
        }
        default: { return vec4<i32>(i32(j), 0, 0, 0); }
    }
}

// The reduction index t as a tuple: down (cl, ky, kx); up (cs, ty, tx) with taps
// ky = ry + s ty, kx = rx + s tx; weight (n, y, x).
fn term(kernel: u32, t: u32) -> vec4<u32> {
    switch kernel {
        case UP: {
            let tt = op.taps;
            let r = t % (tt * tt);
            return vec4<u32>(t / (tt * tt), r / tt, r % tt, 0u);
        }
        case WEIGHT: {
            let r = t % (op.sh * op.sw);
            return vec4<u32>(t / (op.sh * op.sw), r / op.sw, r % op.sw, 0u);
        }
        default: {
            let r = t % (op.k * op.k);
            return vec4<u32>(t / (op.k * op.k), r / op.k, r % op.k, 0u);
        }
    }
}

fn next_term(kernel: u32, d: vec4<u32>) -> vec4<u32> {
    switch kernel {
        case UP: { return odometer(d, op.taps, op.taps); }
        case WEIGHT: { return odometer(d, op.sh, op.sw); }
        default: { return odometer(d, op.k, op.k); }
    }
}

// Branch-free reads (an index clamped into the tensor, the value masked; `&`, not the
// short-circuiting `&&`, which compiles to branches): software adapters run every branch an
// element takes as masked control flow, which costs more than the load.
fn large(n: u32, c: u32, y: i32, x: i32) -> f32 {
    let inside = (y >= 0) & (x >= 0) & (u32(y) < op.lh) & (u32(x) < op.lw);
    let at = ((n * op.lc + c) * op.lh + u32(max(y, 0))) * op.lw + u32(max(x, 0));
    return select(0.0, acts[op.large_off + select(0u, at, inside)], inside);
}

fn load_a(kernel: u32, ra: vec4<i32>, d: vec4<u32>) -> f32 {
    let n = u32(ra.x);
    switch kernel {
        case UP: {
            let phase = row_phase(ra);
            let y = ra.y - i32(d.y);
            let x = ra.z - i32(d.z);
            let inside = (phase.x + op.s * d.y < op.k) & (phase.y + op.s * d.z < op.k)
                & (y >= 0) & (x >= 0) & (u32(y) < op.sh) & (u32(x) < op.sw);
            let at = ((n * op.sc + d.x) * op.sh + u32(max(y, 0))) * op.sw + u32(max(x, 0));
            return select(0.0, acts[op.small_off + select(0u, at, inside)], inside);
        }
        case WEIGHT: { return acts[op.small_off + ((d.x * op.sc + n) * op.sh + d.y) * op.sw + d.z]; }
        default: {
            let s = i32(op.s);
            let p = i32(op.p);
            return large(n, d.x, ra.y * s - p + i32(d.y), ra.z * s - p + i32(d.z));
        }
    }
}

fn load_b(kernel: u32, rb: vec4<i32>, d: vec4<u32>) -> f32 {
    switch kernel {
        case UP: {
            let ky = u32(rb.y) + op.s * d.y;
            let kx = u32(rb.z) + op.s * d.z;
            let inside = (ky < op.k) & (kx < op.k);
            let at = ((d.x * op.lc + u32(rb.x)) * op.k + ky) * op.k + kx;
            return select(0.0, params[op.w_off + select(0u, at, inside)], inside);
        }
        case WEIGHT: {
            let s = i32(op.s);
            let p = i32(op.p);
            return large(d.x, u32(rb.x), i32(d.y) * s - p + rb.y, i32(d.z) * s - p + rb.z);
        }
        default: { return params[op.w_off + ((u32(rb.x) * op.lc + d.x) * op.k + d.y) * op.k + d.z]; }
    }
}

// Where C[i, j] of a down or up product goes (i's position given by a_row), and the distance
// between channels j and j + 1 there.
fn out_at(kernel: u32, ra: vec4<i32>, j: u32) -> vec2<u32> {
    let n = u32(ra.x);
    if kernel == UP {
        let phase = row_phase(ra);
        let y = u32(ra.y) * op.s + phase.x - op.p;
        let x = u32(ra.z) * op.s + phase.y - op.p;
        return vec2<u32>(((n * op.lc + j) * op.lh + y) * op.lw + x, op.lh * op.lw);
    }
    return vec2<u32>(((n * op.sc + j) * op.sh + u32(ra.y)) * op.sw + u32(ra.z), op.sh * op.sw);
}

// Stores four channels j..j+3 of C[i, .] (`count` of them in range) with the epilogue, the
// activation applied to the four at once (software adapters pay for its switch per call).
fn store4(kernel: u32, ra: vec4<i32>, j: u32, count: u32, v: vec4<f32>) {
    let at = out_at(kernel, ra, j);
    var out: vec4<f32>;
    if op.mode == 0u {
        var bias = vec4<f32>(0.0);
        if op.b_off != NONE {
            for (var q = 0u; q < count; q++) { bias[q] = params[op.b_off + j + q]; }
        }
        out = activate(op.act, v + bias);
    } else {
        var y = vec4<f32>(0.0);
        for (var q = 0u; q < count; q++) { y[q] = acts[op.slope_off + at.x + q * at.y]; }
        out = v * activation_slope(op.act, y);
    }
    for (var q = 0u; q < count; q++) { acts[op.out_off + at.x + q * at.y] = out[q]; }
}

fn store_block(kernel: u32, wid: vec3<u32>, lid: vec3<u32>) {
    let c = tile_block(kernel, wid, lid);
    if keeps_part(kernel, wid, lid, c) { return; }
    let mnk = extent(kernel, wid.z);
    let origin = block_origin(lid);
    let i = wid.y * TILE_ROWS + origin.x;
    let j = wid.x * TILE_COLS + origin.y;
    for (var r = 0u; r < BLOCK_ROWS; r++) {
        if i + r >= mnk.x { break; }
        let ra = a_row(kernel, wid.z, i + r);
        let v = block_row(c, r);
        for (var q = 0u; q < BLOCK_COLS / 4u; q++) {
            let jq = j + 4u * q;
            store4(kernel, ra, jq, min(select(0u, mnk.y - jq, jq < mnk.y), 4u), v[q]);
        }
    }
}

// ---- tiled: grid (N / TILE_COLS, M / TILE_ROWS, phases).
@compute @workgroup_size(TILE_COLS / BLOCK_COLS, TILE_ROWS / BLOCK_ROWS)
fn conv_down(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    store_block(DOWN, wid, lid);
}

@compute @workgroup_size(TILE_COLS / BLOCK_COLS, TILE_ROWS / BLOCK_ROWS)
fn conv_up(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    store_block(UP, wid, lid);
}

// dW, and db = row sums of S (from the first column of workgroups) when db_off is given.
// The software shape sets TILE_COLS = 256: 64 rows, one copied by each invocation (a_sum); the
// hardware shape's 32 rows are copied by the first 32.
@compute @workgroup_size(TILE_COLS / BLOCK_COLS, TILE_ROWS / BLOCK_ROWS)
fn conv_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = tile_block(WEIGHT, wid, lid);
    if keeps_part(WEIGHT, wid, lid, c) { return; }
    let mnk = extent(WEIGHT, 0u);
    let origin = block_origin(lid);
    let i = wid.y * TILE_ROWS + origin.x;
    let j = wid.x * TILE_COLS + origin.y;
    for (var r = 0u; r < BLOCK_ROWS; r++) {
        if i + r >= mnk.x { break; }
        let v = block_row(c, r);
        for (var q = 0u; q < BLOCK_COLS; q++) {
            if j + q < mnk.y { grads[op.out_off + (i + r) * mnk.y + j + q] = v[q / 4u][q % 4u]; }
        }
    }
    // Invocations me < TILE_ROWS each copied (and summed) one row of A.
    let me = lid.y * (TILE_COLS / BLOCK_COLS) + lid.x;
    let row = wid.y * TILE_ROWS + me;
    if op.db_off != NONE && wid.x == 0u && me < TILE_ROWS && row < op.sc { grads[op.db_off + row] = c.a_sum; }
}

// ---- direct, four outputs of one column per invocation: grid (M / 256, N, phases).
fn store_column4(kernel: u32, z: u32, i: u32, j: u32) {
    let mnk = extent(kernel, z);
    if i >= mnk.x || j >= mnk.y { return; }
    let v = column4(kernel, z, i, j);
    for (var q = 0u; q < min(mnk.x - i, 4u); q++) { store4(kernel, a_row(kernel, z, i + q), j, 1u, vec4<f32>(v[q])); }
}

@compute @workgroup_size(64)
fn conv_down_direct(@builtin(global_invocation_id) gid: vec3<u32>) {
    store_column4(DOWN, 0u, gid.x * 4u, gid.y);
}

@compute @workgroup_size(64)
fn conv_up_direct(@builtin(global_invocation_id) gid: vec3<u32>) {
    store_column4(UP, gid.z, gid.x * 4u, gid.y);
}

// dW of a narrow weight product (see split_product): grid (N / SPLIT, M / SPLIT).
@compute @workgroup_size(64)
fn conv_weight_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) me: u32) {
    let v = split_product(WEIGHT, wid, me);
    let mnk = extent(WEIGHT, 0u);
    let i = wid.y * SPLIT + me / SPLIT;
    let j = wid.x * SPLIT + me % SPLIT;
    if me < SPLIT * SPLIT && i < mnk.x && j < mnk.y { grads[op.out_off + i * mnk.y + j] = v; }
}

// ---- a bias's gradient: per-channel sums of [batch, sum_c, sum_hw]. One workgroup per channel.
@compute @workgroup_size(64)
fn channel_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wid.x;
    var sum = 0.0;
    for (var e = lid; e < op.batch * op.sum_hw; e += WG) {
        sum += acts[op.sum_off + ((e / op.sum_hw) * op.sum_c + c) * op.sum_hw + e % op.sum_hw];
    }
    let total = workgroup_sum(lid, sum);
    if lid == 0u { grads[op.db_off + c] = total; }
}
