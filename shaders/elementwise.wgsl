// The element-wise ops of residual cells (ops::elementwise): SiLU and its slope, the residual
// add, the sum a value read by two ops gets of their gradients, and a layer's fused activation's
// slope applied on its own (where a graph's gradient reaches the layer as such a sum). Forward
// and backward side by side; one invocation per element, in rows of at most 65,535 workgroups
// of 256.

struct Elementwise {
    len: u32,
    a_off: u32,       // silu: z; add: a; add_into: the gradient added
    b_off: u32,       // silu_backward: dy; add: b
    y_off: u32,       // silu_forward: y; silu_backward: dz; add: a + b; add_into: the sum;
                      // activation_backward: dy, made dz in place
    accumulate: u32,  // silu_backward, add_into: 1 adds to y_off's values, 0 writes them
    activation: u32,  // activation_backward: the layer's activation (ops::Activation::code)
}

@group(0) @binding(0) var<uniform> op: Elementwise;
@group(0) @binding(4) var<storage, read_write> acts: array<f32>;

fn element(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * 256u;
}

// ---- y = z sigmoid(z). exp(-z) overflows to inf below z = -88: s = 0, y = -0, as it should be.
@compute @workgroup_size(256)
fn silu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = element(gid, groups);
    if i >= op.len { return; }
    let z = acts[op.a_off + i];
    acts[op.y_off + i] = z / (1.0 + exp(-z));
}

// ---- dz = dy (s + z s (1 - s)), s = sigmoid(z): SiLU's slope needs its input, not its output.
@compute @workgroup_size(256)
fn silu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = element(gid, groups);
    if i >= op.len { return; }
    let z = acts[op.a_off + i];
    let s = 1.0 / (1.0 + exp(-z));
    let dz = acts[op.b_off + i] * s * (1.0 + z * (1.0 - s));
    if op.accumulate != 0u {
        acts[op.y_off + i] += dz;
    } else {
        acts[op.y_off + i] = dz;
    }
}

// ---- the residual add y = a + b (its backward pass hands dy to both inputs).
@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = element(gid, groups);
    if i >= op.len { return; }
    acts[op.y_off + i] = acts[op.a_off + i] + acts[op.b_off + i];
}

// ---- a value read by two ops: its gradient is the sum of theirs, sum += g (or, for the first
// to arrive, sum = g).
@compute @workgroup_size(256)
fn add_into(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = element(gid, groups);
    if i >= op.len { return; }
    if op.accumulate != 0u {
        acts[op.y_off + i] += acts[op.a_off + i];
    } else {
        acts[op.y_off + i] = acts[op.a_off + i];
    }
}

// ---- dz = dy act'(y) in place, from the layer's output y at a_off: the slope a layer's dX
// kernel fuses, for a layer whose gradient is a sum of several ops' (or of a SiLU's, an add's).
@compute @workgroup_size(256)
fn activation_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = element(gid, groups);
    if i >= op.len { return; }
    acts[op.y_off + i] *= activation_slope(op.activation, vec4<f32>(acts[op.a_off + i])).x;
}
