// The tiled matrix product shared by linear.wgsl and conv.wgsl, joined (after common.wgsl) in
// front of each of them. It computes C[i, j] = sum_t A(i, t) B(j, t) for i < M, j < N, t < K,
// reading A and B through functions the op's file defines, so the same engine serves a plain
// matmul and a convolution read as one (implicit GEMM, no im2col buffer):
//   fn extent(kernel: u32) -> vec3<u32>                       (M, N, K)
//   fn a_row(kernel: u32, i: u32) -> vec4<i32>                what row i needs, computed once
//   fn b_row(kernel: u32, j: u32) -> vec4<i32>
//   fn term(kernel: u32, t: u32) -> vec4<u32>                 the reduction index t, decomposed
//   fn next_term(kernel: u32, d: vec4<u32>) -> vec4<u32>      term(t + 1) from term(t)
//   fn load_a(kernel: u32, ra: vec4<i32>, d: vec4<u32>) -> f32      A(i, t)
//   fn load_b(kernel: u32, rb: vec4<i32>, d: vec4<u32>) -> f32      B(j, t)
// A convolution's reduction index is a tuple (channel, tap row, tap column, ...); decomposing
// it by division for every element costs more than the multiply-adds on software adapters, so
// it is decomposed once per chunk and stepped like an odometer (`odometer` below).
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
    let mnk = extent(kernel);
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
    let ra = a_row(kernel, min(ai, mnk.x - 1u));
    let ra2 = a_row(kernel, min(ai2, mnk.x - 1u));
    let rb = b_row(kernel, min(bj, mnk.y - 1u));
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

// C[i, j] alone, for outputs too narrow to fill tiles (i < M, j < N).
fn single(kernel: u32, i: u32, j: u32) -> f32 {
    let mnk = extent(kernel);
    let ra = a_row(kernel, i);
    let rb = b_row(kernel, j);
    var sum = 0.0;
    var d = term(kernel, 0u);
    for (var t = 0u; t < mnk.z; t++) {
        sum += load_a(kernel, ra, d) * load_b(kernel, rb, d);
        d = next_term(kernel, d);
    }
    return sum;
}

// Steps a decomposed index (x, y, z) whose z runs to `inner` and y to `middle`: z + 1, carrying.
fn odometer(d: vec4<u32>, middle: u32, inner: u32) -> vec4<u32> {
    var e = d;
    e.z += 1u;
    if e.z == inner {
        e.z = 0u;
        e.y += 1u;
        if e.y == middle {
            e.y = 0u;
            e.x += 1u;
        }
    }
    return e;
}
