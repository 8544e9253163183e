// The tiled matrix product shared by linear.wgsl and conv.wgsl, joined (after common.wgsl) in
// front of each of them. It computes C[i, j] = sum_t A(i, t) B(j, t) for i < M, j < N, t < K,
// reading A and B through functions the op's file defines, so the same engine serves a plain
// matmul and a convolution read as one (implicit GEMM, no im2col buffer):
//   fn extent(kernel: u32, z: u32) -> vec3<u32>               (M, N, K)
//   fn a_row(kernel: u32, z: u32, i: u32) -> vec4<i32>        what row i needs, computed once
//   fn b_row(kernel: u32, z: u32, j: u32) -> vec4<i32>
//   fn term(kernel: u32, t: u32) -> vec4<u32>                 the reduction index t, decomposed
//   fn next_term(kernel: u32, d: vec4<u32>) -> vec4<u32>      term(t + 1) from term(t)
//   fn load_a(kernel: u32, ra: vec4<i32>, d: vec4<u32>) -> f32      A(i, t)
//   fn load_b(kernel: u32, rb: vec4<i32>, d: vec4<u32>) -> f32      B(j, t)
// A convolution's reduction index is a tuple (channel, tap row, tap column, ...); decomposing
// it by division for every element costs more than the multiply-adds on software adapters, so
// it is decomposed once per chunk and stepped like an odometer (`odometer` below).
// `kernel` is a constant at every call (it selects the op's product in `switch`es that software
// adapters fold away only when it is); `z` is the grid's z, for ops that compute several
// products in one dispatch (a transposed convolution's phases), and reaches the per-element
// functions only through what a_row and b_row return.
// A workgroup of 64 invocations computes a tile of C: 64x64 by default, or 128x32 where the
// pipeline sets TILE_COLS = 32 (outputs 32 wide, e.g. a 32-channel convolution, would leave
// half of a square tile idle); its entry points are @workgroup_size(TILE_COLS / 8, 512 / TILE_COLS). The reduction runs in chunks of
// TK: the workgroup copies the A and B chunks into workgroup memory (each invocation one row
// of each), then every invocation accumulates an 8x8 block from them in 16 named vec4
// registers (named, not an indexed array: several times faster on software adapters).
// Copies are guarded, so edges need no special cases; callers store only in-range outputs.

override TILE_COLS: u32 = 64u;
override TILE_ROWS: u32 = 4096u / TILE_COLS;
const TK: u32 = 16u;

// Chunks of A and B, transposed so that a row of eight outputs is two vec4 reads:
// a_tile[t * TILE_ROWS / 4 + i / 4][i % 4] = A(i0 + i, t0 + t), likewise b_tile for B(j0 + j, t0 + t).
var<workgroup> a_tile: array<vec4<f32>, 512>;
var<workgroup> b_tile: array<vec4<f32>, 256>;

// An 8x8 block of C: rIl / rIh hold row I's columns 0-3 / 4-7.
struct Block {
    r0l: vec4<f32>, r0h: vec4<f32>, r1l: vec4<f32>, r1h: vec4<f32>,
    r2l: vec4<f32>, r2h: vec4<f32>, r3l: vec4<f32>, r3h: vec4<f32>,
    r4l: vec4<f32>, r4h: vec4<f32>, r5l: vec4<f32>, r5h: vec4<f32>,
    r6l: vec4<f32>, r6h: vec4<f32>, r7l: vec4<f32>, r7h: vec4<f32>,
    // sum_t A(i0 + me, t) over the whole reduction (a bias gradient, for dW; square tiles).
    a_sum: f32,
}

// Where this invocation's 8x8 block starts in the workgroup's tile: (row, column). Neighbouring
// invocations (which software adapters run as the lanes of one SIMD instruction) share their
// B columns in tall tiles and their A rows in square ones, so one of the two reads from
// workgroup memory below is the same for all lanes.
fn block_origin(lid: vec3<u32>) -> vec2<u32> {
    if TILE_ROWS > 64u {
        let me = lid.y * (TILE_COLS / 8u) + lid.x;
        return vec2<u32>(me % (TILE_ROWS / 8u), me / (TILE_ROWS / 8u)) * 8u;
    }
    return vec2<u32>(lid.y, lid.x) * 8u;
}

// This invocation's 8x8 block of the workgroup's tile (starting at block_origin(lid)).
fn product(kernel: u32, wid: vec3<u32>, lid: vec3<u32>) -> Block {
    let mnk = extent(kernel, wid.z);
    let i0 = wid.y * TILE_ROWS;
    let j0 = wid.x * TILE_COLS;
    let me = lid.y * (TILE_COLS / 8u) + lid.x;
    var r0l = vec4<f32>(0.0); var r0h = vec4<f32>(0.0); var r1l = vec4<f32>(0.0); var r1h = vec4<f32>(0.0);
    var r2l = vec4<f32>(0.0); var r2h = vec4<f32>(0.0); var r3l = vec4<f32>(0.0); var r3h = vec4<f32>(0.0);
    var r4l = vec4<f32>(0.0); var r4h = vec4<f32>(0.0); var r5l = vec4<f32>(0.0); var r5h = vec4<f32>(0.0);
    var r6l = vec4<f32>(0.0); var r6h = vec4<f32>(0.0); var r7l = vec4<f32>(0.0); var r7h = vec4<f32>(0.0);
    var a_sum = 0.0;
    // Invocation `me` copies rows me (and me + 64 in tall tiles) of A and row me of B.
    let ai = i0 + me;
    let ai2 = ai + 64u;
    let bj = j0 + me;
    let ra = a_row(kernel, wid.z, min(ai, mnk.x - 1u));
    let ra2 = a_row(kernel, wid.z, min(ai2, mnk.x - 1u));
    let rb = b_row(kernel, wid.z, min(bj, mnk.y - 1u));
    let tall = TILE_ROWS > 64u;
    let origin = block_origin(lid);
    let copies_b = me < TILE_COLS;
    let a_stride = TILE_ROWS / 4u;
    let b_stride = TILE_COLS / 4u;
    for (var t0 = 0u; t0 < mnk.z; t0 += TK) {
        // Copy (zeros past the edges).
        var d = term(kernel, t0);
        for (var t = 0u; t < TK; t++) {
            let in_k = t0 + t < mnk.z;
            var a = 0.0;
            if ai < mnk.x && in_k { a = load_a(kernel, ra, d); }
            a_tile[t * a_stride + me / 4u][me % 4u] = a;
            a_sum += a;
            if tall {
                var a2 = 0.0;
                if ai2 < mnk.x && in_k { a2 = load_a(kernel, ra2, d); }
                a_tile[t * a_stride + (me + 64u) / 4u][me % 4u] = a2;
            }
            if copies_b {
                var b = 0.0;
                if bj < mnk.y && in_k { b = load_b(kernel, rb, d); }
                b_tile[t * b_stride + me / 4u][me % 4u] = b;
            }
            d = next_term(kernel, d);
        }
        workgroupBarrier();
        let ar = origin.x / 4u;
        let bc = origin.y / 4u;
        for (var t = 0u; t < TK; t++) {
            let al = a_tile[t * a_stride + ar];
            let ah = a_tile[t * a_stride + ar + 1u];
            let bl = b_tile[t * b_stride + bc];
            let bh = b_tile[t * b_stride + bc + 1u];
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

// C[i .. i + 3, j], for outputs too narrow to fill tiles (i < M, j < N; rows past M repeat the
// last): four rows share each load of B.
fn column4(kernel: u32, z: u32, i: u32, j: u32) -> vec4<f32> {
    let mnk = extent(kernel, z);
    let ra0 = a_row(kernel, z, i);
    let ra1 = a_row(kernel, z, min(i + 1u, mnk.x - 1u));
    let ra2 = a_row(kernel, z, min(i + 2u, mnk.x - 1u));
    let ra3 = a_row(kernel, z, min(i + 3u, mnk.x - 1u));
    let rb = b_row(kernel, z, j);
    var sum = vec4<f32>(0.0);
    var d = term(kernel, 0u);
    for (var t = 0u; t < mnk.z; t++) {
        let a = vec4<f32>(load_a(kernel, ra0, d), load_a(kernel, ra1, d), load_a(kernel, ra2, d), load_a(kernel, ra3, d));
        sum += a * load_b(kernel, rb, d);
        d = next_term(kernel, d);
    }
    return sum;
}

// ---- A product with few outputs and a long reduction (a first layer's dW: 32 x 16 outputs
// summed over batch x pixels), which tiles would leave to one workgroup, i.e. one thread of a
// software adapter, and one output per invocation would compute with two loads per
// multiply-add. A workgroup computes one 8x8 block of C: its 64 invocations each reduce one
// slice of K into an 8x8 block (16 loads per 64 multiply-adds), and the slices are summed
// through workgroup memory (64 x 64 floats: WebGPU's guaranteed 16 KB). Grid (N / 8, M / 8).
var<workgroup> partial: array<vec4<f32>, 1024>;

// C[i0 + me / 8, j0 + me % 8] for invocation `me` (garbage outside M x N: callers check).
fn split_product(kernel: u32, wid: vec3<u32>, me: u32) -> f32 {
    let mnk = extent(kernel, wid.z);
    let i0 = wid.y * 8u;
    let j0 = wid.x * 8u;
    let slice = (mnk.z + 63u) / 64u;
    let t_begin = min(me * slice, mnk.z);
    let t_end = min(t_begin + slice, mnk.z);
    let last_i = mnk.x - 1u;
    let last_j = mnk.y - 1u;
    let a0 = a_row(kernel, wid.z, min(i0, last_i)); let a1 = a_row(kernel, wid.z, min(i0 + 1u, last_i));
    let a2 = a_row(kernel, wid.z, min(i0 + 2u, last_i)); let a3 = a_row(kernel, wid.z, min(i0 + 3u, last_i));
    let a4 = a_row(kernel, wid.z, min(i0 + 4u, last_i)); let a5 = a_row(kernel, wid.z, min(i0 + 5u, last_i));
    let a6 = a_row(kernel, wid.z, min(i0 + 6u, last_i)); let a7 = a_row(kernel, wid.z, min(i0 + 7u, last_i));
    let b0 = b_row(kernel, wid.z, min(j0, last_j)); let b1 = b_row(kernel, wid.z, min(j0 + 1u, last_j));
    let b2 = b_row(kernel, wid.z, min(j0 + 2u, last_j)); let b3 = b_row(kernel, wid.z, min(j0 + 3u, last_j));
    let b4 = b_row(kernel, wid.z, min(j0 + 4u, last_j)); let b5 = b_row(kernel, wid.z, min(j0 + 5u, last_j));
    let b6 = b_row(kernel, wid.z, min(j0 + 6u, last_j)); let b7 = b_row(kernel, wid.z, min(j0 + 7u, last_j));
    var r0l = vec4<f32>(0.0); var r0h = vec4<f32>(0.0); var r1l = vec4<f32>(0.0); var r1h = vec4<f32>(0.0);
    var r2l = vec4<f32>(0.0); var r2h = vec4<f32>(0.0); var r3l = vec4<f32>(0.0); var r3h = vec4<f32>(0.0);
    var r4l = vec4<f32>(0.0); var r4h = vec4<f32>(0.0); var r5l = vec4<f32>(0.0); var r5h = vec4<f32>(0.0);
    var r6l = vec4<f32>(0.0); var r6h = vec4<f32>(0.0); var r7l = vec4<f32>(0.0); var r7h = vec4<f32>(0.0);
    // The same 16 named accumulators as `product`, written out again: a Block updated through a
    // helper returning a new Block made the conv step 2-4% slower on SwiftShader (measured
    // alternating, twice each).
    var d = term(kernel, t_begin);
    for (var t = t_begin; t < t_end; t++) {
        let al = vec4<f32>(load_a(kernel, a0, d), load_a(kernel, a1, d), load_a(kernel, a2, d), load_a(kernel, a3, d));
        let ah = vec4<f32>(load_a(kernel, a4, d), load_a(kernel, a5, d), load_a(kernel, a6, d), load_a(kernel, a7, d));
        let bl = vec4<f32>(load_b(kernel, b0, d), load_b(kernel, b1, d), load_b(kernel, b2, d), load_b(kernel, b3, d));
        let bh = vec4<f32>(load_b(kernel, b4, d), load_b(kernel, b5, d), load_b(kernel, b6, d), load_b(kernel, b7, d));
        r0l += al.x * bl; r0h += al.x * bh;
        r1l += al.y * bl; r1h += al.y * bh;
        r2l += al.z * bl; r2h += al.z * bh;
        r3l += al.w * bl; r3h += al.w * bh;
        r4l += ah.x * bl; r4h += ah.x * bh;
        r5l += ah.y * bl; r5h += ah.y * bh;
        r6l += ah.z * bl; r6h += ah.z * bh;
        r7l += ah.w * bl; r7h += ah.w * bh;
        d = next_term(kernel, d);
    }
    // partial[(output / 4) * 64 + me] holds this slice's outputs 4 (output / 4) .. + 3.
    partial[0u * 64u + me] = r0l; partial[1u * 64u + me] = r0h; partial[2u * 64u + me] = r1l; partial[3u * 64u + me] = r1h;
    partial[4u * 64u + me] = r2l; partial[5u * 64u + me] = r2h; partial[6u * 64u + me] = r3l; partial[7u * 64u + me] = r3h;
    partial[8u * 64u + me] = r4l; partial[9u * 64u + me] = r4h; partial[10u * 64u + me] = r5l; partial[11u * 64u + me] = r5h;
    partial[12u * 64u + me] = r6l; partial[13u * 64u + me] = r6h; partial[14u * 64u + me] = r7l; partial[15u * 64u + me] = r7h;
    workgroupBarrier();
    var sum = 0.0;
    for (var k = 0u; k < 64u; k++) { sum += partial[(me / 4u) * 64u + k][me % 4u]; }
    return sum;
}

// Steps a decomposed index (x, y, z) whose z runs to `inner` and y to `middle`: z + 1, carrying.
// Branch-free: software adapters run a branch as masked control flow, dearer than the selects.
fn odometer(d: vec4<u32>, middle: u32, inner: u32) -> vec4<u32> {
    var e = d;
    e.z += 1u;
    let carry_z = e.z == inner;
    e.z = select(e.z, 0u, carry_z);
    e.y += select(0u, 1u, carry_z);
    let carry_y = e.y == middle;
    e.y = select(e.y, 0u, carry_y);
    e.x += select(0u, 1u, carry_y);
    return e;
}
