// Metrics and the optimiser: the last two dispatches of a training step.
//
// accumulate: adds the batch's reconstruction and KL (nats, summed over datapoints; a
//   hierarchy's KL group by group too) into the metrics buffer, and raises the `diverged` flag if
//   the loss is not finite. Read back only when the host asks; the host clears it after reading.
// adam: one update of every parameter in the flat buffer (PyTorch's Adam), skipped once
//   `diverged` is raised so that the last good weights are kept; its learning rate constant, or
//   decaying along a cosine (training::Schedule). Memory-bound, so it reads and writes vec4s: the
//   host pads the parameter count to a multiple of 4 (padding stays zero).

struct Optim {
    batch: u32,       // accumulate: datapoints in the batch
    rows: u32,        // accumulate: decoder rows (samples * batch)
    recon_off: u32,   // accumulate: -log p(x|z) per row, in acts
    kl_off: u32,      // accumulate: KL per datapoint, in acts: `groups` tensors of `batch`
    metrics_off: u32, // accumulate: where this kind of step accumulates
    count: u32,       // adam: number of parameters / 4 (vec4s)
    lr: f32,
    beta: f32,        // accumulate: weight of KL in the loss (for the divergence check)
    check: u32,       // accumulate: 1 = raise the divergence flag on a non-finite loss
    groups: u32,      // accumulate: KL tensors (a hierarchy's groups), one after another
    warmup: u32,      // accumulate: KL warm-up steps, as kl_warmup (0: none)
    lr_final: f32,    // adam: the learning rate at total_steps
    total_steps: u32, // adam: cosine decay from lr to lr_final over these steps (0: lr throughout)
}

// Layout of the metrics buffer (f32), mirrored in src/trainer.rs.
const DIVERGED: u32 = 0u;   // nonzero once a non-finite loss was seen
// at metrics_off: [sum of reconstruction, sum of KL, datapoints, batches, sum of per-batch loss,
//   then the sum of each group's KL]

@group(0) @binding(0) var<uniform> op: Optim;
@group(0) @binding(2) var<storage, read_write> params: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> grads: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> acts: array<f32>;
@group(0) @binding(5) var<storage, read_write> moments: array<vec4<f32>>;  // m then v, `count` vec4s each
@group(0) @binding(8) var<storage, read_write> metrics: array<f32>;

// A single workgroup.
@compute @workgroup_size(64)
fn accumulate(@builtin(local_invocation_index) lid: u32) {
    let samples = op.rows / op.batch;
    var recon = 0.0;
    for (var b = lid; b < op.batch; b += WG) {
        for (var r = b; r < op.rows; r += op.batch) { recon += acts[op.recon_off + r]; }
    }
    let recon_sum = workgroup_sum(lid, recon / f32(samples));
    var kl_sum = 0.0;
    for (var g = 0u; g < op.groups; g++) {
        var kl = 0.0;
        for (var b = lid; b < op.batch; b += WG) { kl += acts[op.kl_off + g * op.batch + b]; }
        let group_sum = workgroup_sum(lid, kl);
        if lid == 0u { metrics[op.metrics_off + 5u + g] += group_sum; }
        kl_sum += group_sum;
    }
    if lid == 0u {
        let n = f32(op.batch);
        let loss = (recon_sum + op.beta * kl_warmup(op.warmup) * kl_sum) / n;
        // NaN compares false with everything, so this also catches NaN.
        if op.check != 0u && !(abs(loss) < 3.0e38) { metrics[DIVERGED] = 1.0; }
        let m = op.metrics_off;
        metrics[m] += recon_sum;
        metrics[m + 1u] += kl_sum;
        metrics[m + 2u] += n;
        metrics[m + 3u] += 1.0;
        metrics[m + 4u] += loss;
    }
}

// The importance-weighted estimate of -log p(x) with k = rows / batch samples per datapoint
// (Burda et al.), from -log w per row in recon (the latent family's *_log_ratio kernel put it there):
//   -log p(x) ~ -(logsumexp_l log w_l - log k)
// One workgroup: each invocation takes every 64th datapoint, then a workgroup sum, added to
// metrics[metrics_off] (sum of -log p(x)) and metrics[metrics_off + 2] (datapoints). The latent
// terms are added per row by a separate dispatch because lavapipe (Mesa 22) silently stops an
// invocation's loops after 65535 iterations in all, which k samples of many dimensions reach.
@compute @workgroup_size(64)
fn importance_weighted(@builtin(local_invocation_index) lid: u32) {
    var sum = 0.0;
    for (var b = lid; b < op.batch; b += WG) {
        var best = -3.0e38;
        for (var r = b; r < op.rows; r += op.batch) { best = max(best, -acts[op.recon_off + r]); }
        var total = 0.0;
        for (var r = b; r < op.rows; r += op.batch) { total += exp(-acts[op.recon_off + r] - best); }
        sum += -(best + log(total) - log(f32(op.rows / op.batch)));
    }
    let total = workgroup_sum(lid, sum);
    if lid == 0u {
        metrics[op.metrics_off] += total;
        metrics[op.metrics_off + 2u] += f32(op.batch);
    }
}

const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPSILON: f32 = 1e-8;

// Grid: any number of workgroups; each invocation strides over the buffer.
@compute @workgroup_size(256)
fn adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    if metrics[DIVERGED] != 0.0 { return; }
    let t = f32(step.t);
    let c1 = 1.0 - pow(BETA1, t);
    let c2 = 1.0 - pow(BETA2, t);
    var lr = op.lr;
    if op.total_steps != 0u {
        // cos(pi done) as cos_turns(done / 2): WGSL's cos is too loose on some adapters.
        let done = min(1.0, f32(step.t - 1u) / f32(op.total_steps));
        lr = op.lr_final + 0.5 * (op.lr - op.lr_final) * (1.0 + cos_turns(0.5 * done));
    }
    let stride = groups.x * 256u;
    for (var i = gid.x; i < op.count; i += stride) {
        let g = grads[i];
        let m = BETA1 * moments[i] + (1.0 - BETA1) * g;
        let v = BETA2 * moments[op.count + i] + (1.0 - BETA2) * g * g;
        moments[i] = m;
        moments[op.count + i] = v;
        params[i] -= lr * (m / c1) / (sqrt(v / c2) + EPSILON);
    }
}
