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
// A workgroup of 64 invocations computes a TILE_ROWS x TILE_COLS tile of C, each invocation a
// block of BLOCK_ROWS x BLOCK_COLS (4 x 4, 16 x 8 or 16 x 16). Two shapes, chosen per adapter (kernels::KernelShape) by
// the constants the pipeline sets:
// - software (CPU emulations of a GPU): blocks of 16 rows, 256 x 64 tiles of 16 x 16 blocks by
//   default; where the pipeline sets TILE_COLS = 256, 64 x 256 (few rows, many columns: dW);
//   where it sets TILE_COLS = 32 and BLOCK_COLS = 8, 256 x 32 (outputs 32 wide).
// - hardware (GPUs): 4 x 4 blocks, 32 x 32 tiles, chunks of TK = 16: 16 accumulators and 4 KB
//   of workgroup memory per 64 invocations, so that a GPU's register file and workgroup memory
//   hold many waves at once and nothing spills (a 16 x 16 block needs 256 accumulators: more
//   than AMD's 256 registers per lane, so it spills to scratch; checked by tests/radv.rs).
// Entry points are @workgroup_size(TILE_COLS / BLOCK_COLS, TILE_ROWS / BLOCK_ROWS). A block is
// held in up to 16 named 4 x 4 matrices (named, not an indexed array: several times faster on
// software adapters), those outside the block skipped by branches on constants that compilers
// fold away. The reduction runs in chunks of TK: the workgroup copies the A and B chunks into
// workgroup memory, then every invocation reads its rows of A and columns of B from there (8
// vec4 loads for 256 multiply-adds in a 16 x 16 block).
override TILE_COLS: u32 = 64u;
override BLOCK_ROWS: u32 = 16u;
override BLOCK_COLS: u32 = 16u;
override TILE_ROWS: u32 = 64u * BLOCK_ROWS * BLOCK_COLS / TILE_COLS;
// The chunk: by default the two tiles' chunks fill WebGPU's guaranteed 16 KB of workgroup memory.
override TK: u32 = 2048u / max(TILE_ROWS, TILE_COLS);
// How chunks are copied: all of an invocation's rows in one pass over the chunk, their
// descriptors computed once (the default: SwiftShader divides lane by lane), or row by row,
// each described again per chunk (set for lavapipe, which spills the live values around each
// of its lane-by-lane loads: with eight descriptors live, 8% slower per step, the other way
// round 8% slower on SwiftShader).
override ROW_BY_ROW: bool = false;

// Chunks of A and B, transposed so that four rows (columns) are one vec4 read:
// a_tile[t * TILE_ROWS / 4 + i / 4][i % 4] = A(i0 + i, t0 + t), likewise b_tile for B(j0 + j, t0 + t).
// (Array sizes may be single override names, hence these two.)
override A_TILE: u32 = TK * TILE_ROWS / 4u;
override B_TILE: u32 = TK * TILE_COLS / 4u;
var<workgroup> a_tile: array<vec4<f32>, A_TILE>;
var<workgroup> b_tile: array<vec4<f32>, B_TILE>;

// A block of C (at most 16 x 16; what lies outside BLOCK_ROWS x BLOCK_COLS stays zero):
// mIJ[r][c] = C[4 I + r, 4 J + c].
struct Block {
    m00: mat4x4<f32>, m01: mat4x4<f32>, m02: mat4x4<f32>, m03: mat4x4<f32>,
    m10: mat4x4<f32>, m11: mat4x4<f32>, m12: mat4x4<f32>, m13: mat4x4<f32>,
    m20: mat4x4<f32>, m21: mat4x4<f32>, m22: mat4x4<f32>, m23: mat4x4<f32>,
    m30: mat4x4<f32>, m31: mat4x4<f32>, m32: mat4x4<f32>, m33: mat4x4<f32>,
    // sum_t A(i0 + me, t) over the whole reduction (a bias gradient, for dW; valid where
    // TILE_ROWS = 64, i.e. each invocation copies one row of A).
    a_sum: f32,
}

// The outer product a b^T as a matrix whose column r is row r: a[r] * b.
fn outer(a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(a.x * b, a.y * b, a.z * b, a.w * b);
}

// Where this invocation's block starts in the workgroup's tile: (row, column).
fn block_origin(lid: vec3<u32>) -> vec2<u32> { return vec2<u32>(lid.y * BLOCK_ROWS, lid.x * BLOCK_COLS); }

// Row i of a chunk of A (B) at position `at` (t times the tile's stride): A(ra, d), or zero
// outside the product. Returns what it stored.
fn copy_a(kernel: u32, at: u32, i: u32, ra: vec4<i32>, d: vec4<u32>, inside: bool) -> f32 {
    let a = select(0.0, load_a(kernel, ra, d), inside);
    a_tile[at + i / 4u][i % 4u] = a;
    return a;
}

fn copy_b(kernel: u32, at: u32, j: u32, rb: vec4<i32>, d: vec4<u32>, inside: bool) {
    b_tile[at + j / 4u][j % 4u] = select(0.0, load_b(kernel, rb, d), inside);
}

// The chunk t0 .. t0 + TK of A and B copied row by row; returns A's sum over row `me`.
fn copy_by_rows(kernel: u32, z: u32, i0: u32, j0: u32, me: u32, t0: u32, mnk: vec3<u32>) -> f32 {
    var a_sum = 0.0;
    for (var i = me; i < TILE_ROWS; i += 64u) {
        let ra = a_row(kernel, z, min(i0 + i, mnk.x - 1u));
        var d = term(kernel, t0);
        for (var t = 0u; t < TK; t++) {
            let a = select(0.0, load_a(kernel, ra, d), (i0 + i < mnk.x) & (t0 + t < mnk.z));
            a_tile[t * (TILE_ROWS / 4u) + i / 4u][i % 4u] = a;
            if i == me { a_sum += a; }
            d = next_term(kernel, d);
        }
    }
    for (var j = me; j < TILE_COLS; j += 64u) {
        let rb = b_row(kernel, z, min(j0 + j, mnk.y - 1u));
        var d = term(kernel, t0);
        for (var t = 0u; t < TK; t++) {
            b_tile[t * (TILE_COLS / 4u) + j / 4u][j % 4u] = select(0.0, load_b(kernel, rb, d), (j0 + j < mnk.y) & (t0 + t < mnk.z));
            d = next_term(kernel, d);
        }
    }
    return a_sum;
}

// This invocation's block of the workgroup's tile (starting at block_origin(lid)).
fn product(kernel: u32, wid: vec3<u32>, lid: vec3<u32>) -> Block {
    // A product split in parts (SPLIT_K, below) reduces slice wid.z of K, and its op's own z is
    // 0 (only unsplit products give z a meaning of their own: up's phases). mnk.z is where
    // this workgroup's reduction ends.
    let parts = select(1u, max(split().x, 1u), SPLIT_K);
    let z = select(wid.z, 0u, parts > 1u);
    let whole = extent(kernel, z);
    let per = ((whole.z + TK - 1u) / TK + parts - 1u) / parts * TK;
    let t_first = select(0u, wid.z * per, parts > 1u);
    let mnk = select(whole, vec3<u32>(whole.xy, min(t_first + per, whole.z)), parts > 1u);
    let i0 = wid.y * TILE_ROWS;
    let j0 = wid.x * TILE_COLS;
    let me = lid.y * (TILE_COLS / BLOCK_COLS) + lid.x;
    var m00 = mat4x4<f32>(); var m01 = mat4x4<f32>(); var m02 = mat4x4<f32>(); var m03 = mat4x4<f32>();
    var m10 = mat4x4<f32>(); var m11 = mat4x4<f32>(); var m12 = mat4x4<f32>(); var m13 = mat4x4<f32>();
    var m20 = mat4x4<f32>(); var m21 = mat4x4<f32>(); var m22 = mat4x4<f32>(); var m23 = mat4x4<f32>();
    var m30 = mat4x4<f32>(); var m31 = mat4x4<f32>(); var m32 = mat4x4<f32>(); var m33 = mat4x4<f32>();
    var a_sum = 0.0;
    // Invocation `me` copies rows me + 64 q of A and of B, q < 4, those inside the tile (at
    // most one or four rows of A, one to four of B); ROW_BY_ROW says how. Where both tiles'
    // rows fit in the 64 invocations (the hardware shape's 32 + 32), the first invocations copy
    // A's rows and the rest B's, so that none copies both while others wait.
    let b_apart = TILE_ROWS + TILE_COLS <= 64u;
    let b_me = select(me, me - TILE_ROWS, b_apart && me >= TILE_ROWS);
    let copies_b = select((me < TILE_COLS), (me >= TILE_ROWS), b_apart);
    let a4 = TILE_ROWS > 64u;
    let b4 = TILE_COLS > 64u;
    let last = mnk.xy - 1u;
    let ra0 = a_row(kernel, z, min(i0 + me, last.x)); let ra1 = a_row(kernel, z, min(i0 + me + 64u, last.x));
    let ra2 = a_row(kernel, z, min(i0 + me + 128u, last.x)); let ra3 = a_row(kernel, z, min(i0 + me + 192u, last.x));
    let rb0 = b_row(kernel, z, min(j0 + b_me, last.y)); let rb1 = b_row(kernel, z, min(j0 + me + 64u, last.y));
    let rb2 = b_row(kernel, z, min(j0 + me + 128u, last.y)); let rb3 = b_row(kernel, z, min(j0 + me + 192u, last.y));
    let a_stride = TILE_ROWS / 4u;
    let b_stride = TILE_COLS / 4u;
    let origin = block_origin(lid);
    for (var t0 = t_first; t0 < mnk.z; t0 += TK) {
        // Copy (zeros past the edges).
        if ROW_BY_ROW {
            a_sum += copy_by_rows(kernel, z, i0, j0, me, t0, mnk);
        } else {
            var d = term(kernel, t0);
            for (var t = 0u; t < TK; t++) {
                let in_k = t0 + t < mnk.z;
                if me < TILE_ROWS { a_sum += copy_a(kernel, t * a_stride, me, ra0, d, (i0 + me < mnk.x) & in_k); }
                if a4 {
                    copy_a(kernel, t * a_stride, me + 64u, ra1, d, (i0 + me + 64u < mnk.x) & in_k);
                    copy_a(kernel, t * a_stride, me + 128u, ra2, d, (i0 + me + 128u < mnk.x) & in_k);
                    copy_a(kernel, t * a_stride, me + 192u, ra3, d, (i0 + me + 192u < mnk.x) & in_k);
                }
                if copies_b { copy_b(kernel, t * b_stride, b_me, rb0, d, (j0 + b_me < mnk.y) & in_k); }
                if b4 {
                    copy_b(kernel, t * b_stride, me + 64u, rb1, d, (j0 + me + 64u < mnk.y) & in_k);
                    copy_b(kernel, t * b_stride, me + 128u, rb2, d, (j0 + me + 128u < mnk.y) & in_k);
                    copy_b(kernel, t * b_stride, me + 192u, rb3, d, (j0 + me + 192u < mnk.y) & in_k);
                }
                d = next_term(kernel, d);
            }
        }
        workgroupBarrier();
        let ar = origin.x / 4u;
        let bc = origin.y / 4u;
        for (var t = 0u; t < TK; t++) {
            if BLOCK_ROWS == 4u {
                // The hardware shape's 4 x 4 block.
                m00 += outer(a_tile[t * a_stride + ar], b_tile[t * b_stride + bc]);
                continue;
            }
            // Blocks of 16 rows (the software shape), in the order measured fastest there.
            let a0 = a_tile[t * a_stride + ar]; let a1 = a_tile[t * a_stride + ar + 1u];
            let a2 = a_tile[t * a_stride + ar + 2u]; let a3 = a_tile[t * a_stride + ar + 3u];
            let b0 = b_tile[t * b_stride + bc]; let b1 = b_tile[t * b_stride + bc + 1u];
            m00 += outer(a0, b0); m01 += outer(a0, b1);
            m10 += outer(a1, b0); m11 += outer(a1, b1);
            m20 += outer(a2, b0); m21 += outer(a2, b1);
            m30 += outer(a3, b0); m31 += outer(a3, b1);
            if BLOCK_COLS > 8u {
                let b2 = b_tile[t * b_stride + bc + 2u]; let b3 = b_tile[t * b_stride + bc + 3u];
                m02 += outer(a0, b2); m03 += outer(a0, b3);
                m12 += outer(a1, b2); m13 += outer(a1, b3);
                m22 += outer(a2, b2); m23 += outer(a2, b3);
                m32 += outer(a3, b2); m33 += outer(a3, b3);
            }
        }
        workgroupBarrier();
    }
    return Block(m00, m01, m02, m03, m10, m11, m12, m13, m20, m21, m22, m23, m30, m31, m32, m33, a_sum);
}

// Row `r` (< 16) of a block as four vec4s (columns 0-3, 4-7, 8-11, 12-15).
fn block_row(c: Block, r: u32) -> array<vec4<f32>, 4> {
    let k = r % 4u;
    switch r / 4u {
        case 0u: { return array(c.m00[k], c.m01[k], c.m02[k], c.m03[k]); }
        case 1u: { return array(c.m10[k], c.m11[k], c.m12[k], c.m13[k]); }
        case 2u: { return array(c.m20[k], c.m21[k], c.m22[k], c.m23[k]); }
        default: { return array(c.m30[k], c.m31[k], c.m32[k], c.m33[k]); }
    }
}

// ---- A product split in parts (the hardware shape: SPLIT_K). A GPU needs several waves on
// each compute unit, and a product with a small output and a long reduction (a dense layer
// fed by a whole image, a convolution's dW at batch 128) has too few tiles for that: the ops
// split its reduction into `parts` and dispatch the pipeline twice. First with grid z = parts:
// workgroup z reduces the z-th slice of K (product, above) and stores its raw block at
// [z, M, N] from the record's part offset (keeps_part); then with grid z = 1 and the record's
// gather flag: each block is the sum of its parts (gathered), and the kernel's own epilogue
// stores it. The op's file gives split() = (parts, part offset, gather) from its record, and
// part / set_part to read and write the parts. Hardware blocks are 4 x 4: one matrix, m00.
override SPLIT_K: bool = false;

// The block of C at this invocation: its parts summed (a split product's second dispatch), or
// computed.
fn tile_block(kernel: u32, wid: vec3<u32>, lid: vec3<u32>) -> Block {
    if SPLIT_K && split().z != 0u {
        return gathered(kernel, wid, lid);
    }
    return product(kernel, wid, lid);
}

// Where element (r, c) of this invocation's block lies in part `part`, clamped into C.
fn part_index(kernel: u32, wid: vec3<u32>, lid: vec3<u32>, part: u32, r: u32, c: u32) -> u32 {
    let mn = extent(kernel, 0u).xy;
    let origin = block_origin(lid);
    let i = min(wid.y * TILE_ROWS + origin.x + r, mn.x - 1u);
    let j = min(wid.x * TILE_COLS + origin.y + c, mn.y - 1u);
    return split().y + (part * mn.x + i) * mn.y + j;
}

fn gathered(kernel: u32, wid: vec3<u32>, lid: vec3<u32>) -> Block {
    var m = mat4x4<f32>();
    for (var q = 0u; q < split().x; q++) {
        for (var r = 0u; r < 4u; r++) {
            m[r] += vec4<f32>(part(part_index(kernel, wid, lid, q, r, 0u)), part(part_index(kernel, wid, lid, q, r, 1u)),
                              part(part_index(kernel, wid, lid, q, r, 2u)), part(part_index(kernel, wid, lid, q, r, 3u)));
        }
    }
    let zero = mat4x4<f32>();
    return Block(m, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, 0.0);
}

// In a split product's first dispatch, stores this workgroup's part of the block and says so:
// the epilogue waits for the sum.
fn keeps_part(kernel: u32, wid: vec3<u32>, lid: vec3<u32>, c: Block) -> bool {
    if !SPLIT_K || split().x <= 1u || split().z != 0u {
        return false;
    }
    let mn = extent(kernel, 0u).xy;
    let origin = block_origin(lid);
    for (var r = 0u; r < 4u; r++) {
        for (var k = 0u; k < 4u; k++) {
            let inside = (wid.y * TILE_ROWS + origin.x + r < mn.x) & (wid.x * TILE_COLS + origin.y + k < mn.y);
            if inside { set_part(part_index(kernel, wid, lid, wid.z, r, k), c.m00[r][k]); }
        }
    }
    return true;
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
// multiply-add. A workgroup computes one SPLIT x SPLIT block of C: its 64 invocations each
// reduce one slice of K into such a block, and the slices are summed through workgroup memory.
// Software shape: 8 x 8 (16 loads per 64 multiply-adds; 64 x 64 floats, WebGPU's guaranteed
// 16 KB); hardware shape: 4 x 4 (16 accumulators, 4 KB; four times the workgroups).
// Grid (N / SPLIT, M / SPLIT).
override SPLIT: u32 = 8u;
override PARTIAL: u32 = 16u * SPLIT * SPLIT;
var<workgroup> partial: array<vec4<f32>, PARTIAL>;

// C[i0 + me / SPLIT, j0 + me % SPLIT] for invocation `me` (garbage outside M x N, or for
// me >= SPLIT * SPLIT: callers check).
fn split_product(kernel: u32, wid: vec3<u32>, me: u32) -> f32 {
    let mnk = extent(kernel, wid.z);
    let i0 = wid.y * SPLIT;
    let j0 = wid.x * SPLIT;
    let slice = (mnk.z + 63u) / 64u;
    let t_begin = min(me * slice, mnk.z);
    let t_end = min(t_begin + slice, mnk.z);
    let last_i = mnk.x - 1u;
    let last_j = mnk.y - 1u;
    let wide = SPLIT > 4u;
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
    // An 8 x 8 block in 16 named vec4s (a 4 x 4 one in r0l .. r3l), written out: a struct
    // updated through a helper returning a new one made the conv step 2-4% slower on
    // SwiftShader (measured alternating, twice each).
    var d = term(kernel, t_begin);
    for (var t = t_begin; t < t_end; t++) {
        let al = vec4<f32>(load_a(kernel, a0, d), load_a(kernel, a1, d), load_a(kernel, a2, d), load_a(kernel, a3, d));
        let bl = vec4<f32>(load_b(kernel, b0, d), load_b(kernel, b1, d), load_b(kernel, b2, d), load_b(kernel, b3, d));
        r0l += al.x * bl; r1l += al.y * bl; r2l += al.z * bl; r3l += al.w * bl;
        if wide {
            let ah = vec4<f32>(load_a(kernel, a4, d), load_a(kernel, a5, d), load_a(kernel, a6, d), load_a(kernel, a7, d));
            let bh = vec4<f32>(load_b(kernel, b4, d), load_b(kernel, b5, d), load_b(kernel, b6, d), load_b(kernel, b7, d));
            r0h += al.x * bh; r1h += al.y * bh; r2h += al.z * bh; r3h += al.w * bh;
            r4l += ah.x * bl; r4h += ah.x * bh;
            r5l += ah.y * bl; r5h += ah.y * bh;
            r6l += ah.z * bl; r6h += ah.z * bh;
            r7l += ah.w * bl; r7h += ah.w * bh;
        }
        d = next_term(kernel, d);
    }
    // partial[(output / 4) * 64 + me] holds this slice's outputs 4 (output / 4) .. + 3, outputs
    // numbered row by row.
    if wide {
        partial[0u * 64u + me] = r0l; partial[1u * 64u + me] = r0h; partial[2u * 64u + me] = r1l; partial[3u * 64u + me] = r1h;
        partial[4u * 64u + me] = r2l; partial[5u * 64u + me] = r2h; partial[6u * 64u + me] = r3l; partial[7u * 64u + me] = r3h;
        partial[8u * 64u + me] = r4l; partial[9u * 64u + me] = r4h; partial[10u * 64u + me] = r5l; partial[11u * 64u + me] = r5h;
        partial[12u * 64u + me] = r6l; partial[13u * 64u + me] = r6h; partial[14u * 64u + me] = r7l; partial[15u * 64u + me] = r7h;
    } else {
        partial[0u * 64u + me] = r0l; partial[1u * 64u + me] = r1l; partial[2u * 64u + me] = r2l; partial[3u * 64u + me] = r3l;
    }
    workgroupBarrier();
    var sum = 0.0;
    let mine = min(me, SPLIT * SPLIT - 1u);
    for (var k = 0u; k < 64u; k++) { sum += partial[(mine / 4u) * 64u + k][mine % 4u]; }
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
