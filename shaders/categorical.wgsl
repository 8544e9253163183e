// Categorical latents relaxed by Gumbel-softmax: samples, the analytic KL to the uniform prior,
// their gradients, and the importance-weighted bound. Forward and backward side by side.
//   logits [batch, N * K]   the encoder head's output; variable n's classes at n*K..(n+1)*K
//   noise, y [rows, N * K]  Gumbel noise and the codes decoded, rows = samples * batch ordered
//                           l * batch + b
// The noise comes from the counter-based hash of (seed, step, row, dim) in common.wgsl, which the
// CPU oracle (src/ops/categorical.rs) computes bit for bit.

struct Categorical {
    batch: u32,
    rows: u32,
    variables: u32,
    classes: u32,
    seed: u32,
    logits_off: u32,
    noise_off: u32,
    y_off: u32,
    dy_off: u32,
    dlogits_off: u32,
    kl_off: u32,      // KL per datapoint [batch]
    recon_off: u32,   // -log p(x|z) per row [rows] (categorical_log_ratio makes it -log w)
    mode: u32,        // 0: relaxed samples, 1: one-hot samples, 2: class probabilities
    kl_weight: f32,   // beta / batch
    tau_start: f32,   // the temperature at step s: max(tau_floor, tau_start exp(-tau_rate s))
    tau_floor: f32,
    tau_rate: f32,
}

@group(0) @binding(0) var<uniform> op: Categorical;
@group(0) @binding(4) var<storage, read_write> acts: array<f32>;
@group(0) @binding(8) var<storage, read_write> metrics: array<f32>;

const RELAXED: u32 = 0u;
const ONE_HOT: u32 = 1u;

// -ln(u) for u in (0, 1) to about 1e-7 relative. WGSL's log promises only 2^-21 absolute on
// [0.5, 2], which near u = 1 (where -ln u is tiny) leaves no digits at all, so there the series
// -ln u = 2 atanh(w) = 2 (w + w^3/3 + ... + w^15/15), w = (1 - u) / (1 + u) <= 1/3, is used
// (1 - u is exact there); the terms left out are below 1e-8 of the sum.
fn neg_log_unit(u: f32) -> f32 {
    if u < 0.5 { return -log(u); }
    let w = (1.0 - u) / (1.0 + u);
    let w2 = w * w;
    var s = 1.0 / 15.0;
    s = s * w2 + 1.0 / 13.0;
    s = s * w2 + 1.0 / 11.0;
    s = s * w2 + 1.0 / 9.0;
    s = s * w2 + 1.0 / 7.0;
    s = s * w2 + 1.0 / 5.0;
    s = s * w2 + 1.0 / 3.0;
    s = s * w2 + 1.0;
    return 2.0 * w * s;
}

// Gumbel(0, 1): -ln(-ln u), u = (2m + 1) / 2^24 from the hash's top 23 bits (exact in f32, never 0 or 1).
fn gumbel(row: u32, dim: u32) -> f32 {
    let m = noise_bits(op.seed, row, dim).x >> 9u;
    return -log(neg_log_unit(f32(2u * m + 1u) / 16777216.0));
}

// The temperature at this step (common.wgsl's step record); model::LatentType::temperature.
fn temperature() -> f32 {
    return max(op.tau_floor, op.tau_start * exp(-op.tau_rate * f32(step.rng_step)));
}

fn logit(b: u32, i: u32) -> f32 { return acts[op.logits_off + b * op.variables * op.classes + i]; }

// The largest logit of variable n of datapoint b, and log sum_k exp(logit_k): log q_k = logit_k - lse.
fn log_sum_exp(b: u32, n: u32) -> f32 {
    var best = -3.0e38;
    for (var k = 0u; k < op.classes; k++) { best = max(best, logit(b, n * op.classes + k)); }
    var sum = 0.0;
    for (var k = 0u; k < op.classes; k++) { sum += exp(logit(b, n * op.classes + k) - best); }
    return best + log(sum);
}

// ---- forward: one code per (variable, row). Grid: x over variables, y over rows.
//   relaxed: y = softmax((logits + g) / tau); one-hot: y = one_hot(argmax(logits + g));
//   probabilities: y = softmax(logits).
@compute @workgroup_size(16, 4)
fn gumbel_softmax(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = gid.x;
    let r = gid.y;
    if n >= op.variables || r >= op.rows { return; }
    let b = r % op.batch;
    let width = op.variables * op.classes;
    let at = r * width + n * op.classes;
    let tau = temperature();
    // s_k = (logit_k + g_k) / t, with t = tau (relaxed) or 1 (the others; no noise for probabilities).
    var best = -3.0e38;
    var best_k = 0u;
    for (var k = 0u; k < op.classes; k++) {
        var g = 0.0;
        if op.mode <= ONE_HOT { g = gumbel(r, n * op.classes + k); }
        acts[op.noise_off + at + k] = g;
        var s = logit(b, n * op.classes + k) + g;
        if op.mode == RELAXED { s /= tau; }
        acts[op.y_off + at + k] = s;
        if s > best { best = s; best_k = k; }
    }
    var sum = 0.0;
    for (var k = 0u; k < op.classes; k++) {
        let e = exp(acts[op.y_off + at + k] - best);
        acts[op.y_off + at + k] = e;
        sum += e;
    }
    for (var k = 0u; k < op.classes; k++) {
        var y = acts[op.y_off + at + k] / sum;
        if op.mode == ONE_HOT { y = select(0.0, 1.0, k == best_k); }
        acts[op.y_off + at + k] = y;
    }
}

// ---- backward through relaxed samples and kl_weight * KL; also KL per datapoint. Grid: one
// invocation per datapoint.
//   d logits_k = sum_l (y_k / tau) (dy_k - <y, dy>) + kl_weight q_k (log q_k - <q, log q>)
//   KL = sum_n (<q, log q> + log K)
// Evaluation (one-hot samples, kl_weight 0) wants only the KL; its gradients are unused scratch.
@compute @workgroup_size(64)
fn categorical_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let b = gid.x;
    if b >= op.batch { return; }
    let width = op.variables * op.classes;
    let tau = temperature();
    var kl = 0.0;
    for (var n = 0u; n < op.variables; n++) {
        let lse = log_sum_exp(b, n);
        var q_log_q = 0.0;
        for (var k = 0u; k < op.classes; k++) {
            let log_q = logit(b, n * op.classes + k) - lse;
            q_log_q += exp(log_q) * log_q;
        }
        kl += q_log_q + log(f32(op.classes));
        for (var k = 0u; k < op.classes; k++) {
            let log_q = logit(b, n * op.classes + k) - lse;
            acts[op.dlogits_off + b * width + n * op.classes + k] = op.kl_weight * exp(log_q) * (log_q - q_log_q);
        }
        if op.mode != RELAXED { continue; }
        for (var r = b; r < op.rows; r += op.batch) {
            let at = r * width + n * op.classes;
            var dot = 0.0;
            for (var k = 0u; k < op.classes; k++) { dot += acts[op.y_off + at + k] * acts[op.dy_off + at + k]; }
            for (var k = 0u; k < op.classes; k++) {
                let y = acts[op.y_off + at + k];
                acts[op.dlogits_off + b * width + n * op.classes + k] += y / tau * (acts[op.dy_off + at + k] - dot);
            }
        }
    }
    acts[op.kl_off + b] = kl;
}

// ---- the importance-weighted bound's per-row part, with one-hot samples:
//   log w_l = -recon_l + log p(z_l) - log q(z_l|x) = -recon_l - N log K - sum_n log q_n(z_ln)
// Per row (grid: rows / 64): recon_l += N log K + sum_n log q_n(z_ln), so that it holds -log w_l;
// optim.wgsl's importance_weighted then takes the log-sum-exp over each datapoint's rows.
@compute @workgroup_size(64)
fn categorical_log_ratio(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if r >= op.rows { return; }
    let b = r % op.batch;
    let width = op.variables * op.classes;
    var ratio = f32(op.variables) * log(f32(op.classes));
    for (var n = 0u; n < op.variables; n++) {
        let lse = log_sum_exp(b, n);
        for (var k = 0u; k < op.classes; k++) {
            ratio += acts[op.y_off + r * width + n * op.classes + k] * (logit(b, n * op.classes + k) - lse);
        }
    }
    acts[op.recon_off + r] += ratio;
}
