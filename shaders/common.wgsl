// Shared by every kernel: joined in front of each shader file when it is loaded (plain
// concatenation; see kernels.rs). Holds the per-step record, the activations and the workgroup
// sum. The Rust twins: kernels::StepRecord, ops::Activation.

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
