// A group of Gaussian latents in a hierarchy (ops::gaussian): flat, or spatial (one variable per
// channel and position of a convolution's output). The posterior is relative to the group's
// prior, as in NVAE: q = N(mu_p + dmu, exp(lv_p + dlv)), p = N(mu_p, exp(lv_p)) (N(0, I) for the
// top group), so
//   KL(q || p) = 0.5 sum_j (dmu^2 exp(-lv_p) + exp(dlv) - 1 - dlv).
//   prior, delta  [rows, 2n]  means then log-variances (a head's outputs, or 2C channels)
//   eps, z        [rows, n]
// Forward and backward side by side.

struct Gaussian {
    rows: u32,
    n: u32,
    seed: u32,
    dim_base: u32,    // variable j draws the noise of dimension dim_base + j
    prior_off: u32,   // NONE: N(0, I)
    delta_off: u32,
    eps_off: u32,
    z_off: u32,
    dz_off: u32,
    dprior_off: u32,  // NONE: not wanted
    ddelta_off: u32,
    kl_off: u32,      // KL per row [rows]
    ratio_off: u32,   // NONE, or where gaussian_reduce adds log q(z) - log p(z) per row
    kl_weight: f32,   // over the batch; times kl_warmup(warmup) at this step
    mode: u32,        // ops::gaussian::Mode
    warmup: u32,      // KL warm-up steps (0: none)
}

@group(0) @binding(0) var<uniform> op: Gaussian;
@group(0) @binding(4) var<storage, read_write> acts: array<f32>;

const POSTERIOR: u32 = 0u;
const POSTERIOR_MEAN: u32 = 1u;
const PRIOR: u32 = 2u;

// The prior's mean and log-variance of variable j of row r.
fn prior(r: u32, j: u32) -> vec2<f32> {
    if op.prior_off == NONE { return vec2<f32>(0.0); }
    let o = op.prior_off + r * 2u * op.n + j;
    return vec2<f32>(acts[o], acts[o + op.n]);
}

fn delta(r: u32, j: u32) -> vec2<f32> {
    let o = op.delta_off + r * 2u * op.n + j;
    return vec2<f32>(acts[o], acts[o + op.n]);
}

// ---- z = mu + exp(0.5 lv) eps, of the posterior or (prior modes) the prior. Grid: x over
// variables, y over rows.
@compute @workgroup_size(64, 4)
fn gaussian_sample(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let r = gid.y;
    if j >= op.n || r >= op.rows { return; }
    var p = prior(r, j);
    if op.mode <= POSTERIOR_MEAN { p += delta(r, j); }
    var e = 0.0;
    if op.mode == POSTERIOR || op.mode == PRIOR { e = standard_normal(op.seed, r, op.dim_base + j); }
    acts[op.eps_off + r * op.n + j] = e;
    acts[op.z_off + r * op.n + j] = p.x + exp(0.5 * p.y) * e;
}

// ---- per row: the KL, and (unless ratio_off is NONE) log q(z) - log p(z) added to the row's
// value there (the 2 pi terms cancel). A workgroup per row.
@compute @workgroup_size(64)
fn gaussian_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = wid.x;
    var kl = 0.0;
    var ratio = 0.0;
    for (var j = lid; j < op.n; j += WG) {
        let p = prior(r, j);
        let d = delta(r, j);
        let inv = exp(-p.y);
        kl += 0.5 * (d.x * d.x * inv + exp(d.y) - 1.0 - d.y);
        let e = acts[op.eps_off + r * op.n + j];
        let s = acts[op.z_off + r * op.n + j] - p.x;
        ratio += (-0.5 * e * e - 0.5 * (p.y + d.y)) + 0.5 * s * s * inv + 0.5 * p.y;
    }
    kl = workgroup_sum(lid, kl);
    ratio = workgroup_sum(lid, ratio);
    if lid == 0u {
        acts[op.kl_off + r] = kl;
        if op.ratio_off != NONE { acts[op.ratio_off + r] += ratio; }
    }
}

// ---- backward through z and w x KL, w = kl_weight x the warm-up's factor. z's log-scale is
// lv_p + dlv, so both get the same slope through it:
//   d mu_p = dz                         d lv_p = dz eps 0.5 sigma - w 0.5 dmu^2 exp(-lv_p)
//   d dmu  = dz + w dmu exp(-lv_p)      d dlv  = dz eps 0.5 sigma + w 0.5 (exp(dlv) - 1)
@compute @workgroup_size(64, 4)
fn gaussian_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let r = gid.y;
    if j >= op.n || r >= op.rows { return; }
    let p = prior(r, j);
    let d = delta(r, j);
    let inv = exp(-p.y);
    let g = acts[op.dz_off + r * op.n + j];
    let through_scale = g * acts[op.eps_off + r * op.n + j] * 0.5 * exp(0.5 * (p.y + d.y));
    let w = op.kl_weight * kl_warmup(op.warmup);
    let o = r * 2u * op.n + j;
    if op.dprior_off != NONE {
        acts[op.dprior_off + o] = g;
        acts[op.dprior_off + o + op.n] = through_scale - w * 0.5 * d.x * d.x * inv;
    }
    acts[op.ddelta_off + o] = g + w * d.x * inv;
    acts[op.ddelta_off + o + op.n] = through_scale + w * 0.5 * (exp(d.y) - 1.0);
}
