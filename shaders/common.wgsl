// Shared by every kernel: joined in front of each shader file when it is loaded (plain
// concatenation; see kernels.rs). Holds the per-step record, the activations, the noise and the
// workgroup sum. The Rust twins: kernels::StepRecord, ops::Activation.

struct Step {
    t: u32,           // Adam's step count, 1-based
    rng_step: u32,    // the step component of eps's key
    batch_start: u32, // first entry of this step's batch in `indices`
}

@group(0) @binding(1) var<uniform> step: Step;

// Activation codes (ops::Activation::code); 0, identity, is every switch's default.
const RELU: u32 = 1u;
const TANH: u32 = 2u;

fn activate(act: u32, z: vec4<f32>) -> vec4<f32> {
    switch act {
        case RELU: { return max(z, vec4<f32>(0.0)); }
        case TANH: { return tanh(z); }
        default: { return z; }
    }
}

// d act / d z in terms of the activation's output y.
fn activation_slope(act: u32, y: vec4<f32>) -> vec4<f32> {
    switch act {
        case RELU: { return select(vec4<f32>(0.0), vec4<f32>(1.0), y > vec4<f32>(0.0)); }
        case TANH: { return 1.0 - y * y; }
        default: { return vec4<f32>(1.0); }
    }
}

// PCG-style permutation hash (Jarzynski & Olano 2020); the same as rng::pcg_hash.
fn pcg_hash(input: u32) -> u32 {
    let state = input * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// rng::eps_bits: the two words behind the noise of (seed, this step, row, dim).
fn noise_bits(seed: u32, row: u32, dim: u32) -> vec2<u32> {
    let h = pcg_hash(pcg_hash(pcg_hash(pcg_hash(seed) ^ step.rng_step) ^ row) ^ dim);
    return vec2<u32>(h, pcg_hash(h ^ 0x68E31DA4u));
}

const TAU: f32 = 6.283185307179586;

// cos(2 pi u) to about 1e-7 from + and * alone: WGSL's cos only promises 2^-11 absolute, and
// some adapters (SwiftShader) use that freedom, which would put eps 1e-3 away from the oracle's.
fn cos_turns(u: f32) -> f32 {
    let t = abs(u - round(u));          // [0, 0.5], same cosine
    let flip = t > 0.25;
    let x = TAU * select(t, 0.5 - t, flip);  // [0, pi / 2]
    let x2 = x * x;
    // Taylor series to x^14: the remainder is below 1e-10 on [0, pi / 2].
    var c = -1.0 / 87178291200.0;
    c = c * x2 + 1.0 / 479001600.0;
    c = c * x2 - 1.0 / 3628800.0;
    c = c * x2 + 1.0 / 40320.0;
    c = c * x2 - 1.0 / 720.0;
    c = c * x2 + 1.0 / 24.0;
    c = c * x2 - 0.5;
    c = c * x2 + 1.0;
    return select(c, -c, flip);
}

// The standard normal of (seed, this step, row, dim), as ops::latent::eps draws it: Box-Muller
// on the top 24 bits of each word; u1 in (0, 1] so the log is finite.
fn standard_normal(seed: u32, row: u32, dim: u32) -> f32 {
    let h = noise_bits(seed, row, dim);
    let u1 = f32((h.x >> 8u) + 1u) / 16777216.0;
    let u2 = f32(h.y >> 8u) / 16777216.0;
    return sqrt(-2.0 * log(u1)) * cos_turns(u2);
}

// The KL's weight at this step under a linear warm-up over `warmup` steps (NVAE's): it rises
// from 1 / warmup at step 1 to 1 (training::Schedule::kl_weight); 0 means no warm-up.
fn kl_warmup(warmup: u32) -> f32 {
    if warmup == 0u { return 1.0; }
    return min(1.0, f32(step.t) / f32(warmup));
}

// A marker for "no tensor" in offset fields (kernels::NONE).
const NONE: u32 = 0xffffffffu;

// The sum of `value` over a workgroup of 64 invocations (a tree in workgroup memory); every
// invocation gets the total. Call from uniform control flow.
const WG: u32 = 64u;
var<workgroup> partial_sums: array<f32, WG>;

fn workgroup_sum(lid: u32, value: f32) -> f32 {
    partial_sums[lid] = value;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        if lid < half { partial_sums[lid] += partial_sums[lid + half]; }
        workgroupBarrier();
    }
    let total = partial_sums[0];
    workgroupBarrier();  // everyone has read it before the next call writes again
    return total;
}
