// The latent layer: reparameterisation z = mu + exp(0.5 logvar) * eps, the analytic KL to the
// N(0, I) prior, their gradients, and the importance-weighted bound. Forward and backward side
// by side.
//   ml   [batch, 2 * latent]  mu then logvar, per datapoint (the encoder heads' output)
//   eps  [rows, latent], z [rows, latent], with rows = samples * batch ordered l * batch + b
// eps comes from a counter-based hash of (seed, step, row, dim): no RNG state, and the CPU
// oracle (src/rng.rs, src/reference.rs) computes the same words bit for bit.

struct Latent {
    batch: u32,
    rows: u32,
    latent: u32,
    seed: u32,
    ml_off: u32,
    eps_off: u32,
    z_off: u32,
    dz_off: u32,
    dml_off: u32,
    kl_off: u32,      // KL per datapoint [batch]
    recon_off: u32,   // -log p(x|z) per row [rows] (latent_log_ratio makes it -log w)
    kl_weight: f32,   // beta / batch
    use_mean: u32,    // 1: z = mu (reconstructions), 0: sample
}

@group(0) @binding(0) var<uniform> op: Latent;
@group(0) @binding(4) var<storage, read_write> acts: array<f32>;
@group(0) @binding(8) var<storage, read_write> metrics: array<f32>;

fn eps_bits(row: u32, dim: u32) -> vec2<u32> { return noise_bits(op.seed, row, dim); }

fn mu(b: u32, j: u32) -> f32 { return acts[op.ml_off + b * 2u * op.latent + j]; }
fn logvar(b: u32, j: u32) -> f32 { return acts[op.ml_off + b * 2u * op.latent + op.latent + j]; }

// ---- forward: z = mu + exp(0.5 logvar) * eps. Grid: x over latent dims, y over rows.
@compute @workgroup_size(16, 4)
fn reparameterize(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let r = gid.y;
    if j >= op.latent || r >= op.rows { return; }
    let b = r % op.batch;
    var e = 0.0;
    if op.use_mean == 0u { e = standard_normal(op.seed, r, j); }
    acts[op.eps_off + r * op.latent + j] = e;
    acts[op.z_off + r * op.latent + j] = mu(b, j) + exp(0.5 * logvar(b, j)) * e;
}

// ---- backward through z and kl_weight * KL; also KL per datapoint. Grid: one per datapoint.
//   dmu     = sum_l dz + kl_weight * mu
//   dlogvar = sum_l dz * eps * 0.5 * exp(0.5 logvar) + kl_weight * 0.5 * (exp(logvar) - 1)
@compute @workgroup_size(64)
fn latent_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let b = gid.x;
    if b >= op.batch { return; }
    var kl = 0.0;
    for (var j = 0u; j < op.latent; j++) {
        let m = mu(b, j);
        let lv = logvar(b, j);
        let sigma = exp(0.5 * lv);
        kl += -0.5 * (1.0 + lv - m * m - sigma * sigma);
        var dmu = op.kl_weight * m;
        var dlv = op.kl_weight * 0.5 * (sigma * sigma - 1.0);
        for (var r = b; r < op.rows; r += op.batch) {
            let g = acts[op.dz_off + r * op.latent + j];
            dmu += g;
            dlv += g * acts[op.eps_off + r * op.latent + j] * 0.5 * sigma;
        }
        acts[op.dml_off + b * 2u * op.latent + j] = dmu;
        acts[op.dml_off + b * 2u * op.latent + op.latent + j] = dlv;
    }
    acts[op.kl_off + b] = kl;
}

// ---- the importance-weighted bound's per-row part (Burda et al.):
//   log w_l = -recon_l + log p(z_l) - log q(z_l|x) = -recon_l + sum_j (-0.5 z^2 + 0.5 eps^2 + 0.5 logvar)
// (the 2 pi terms cancel). Per row (grid: rows / 64): recon_l -= that sum, so that it holds
// -log w_l; optim.wgsl's importance_weighted then takes the log-sum-exp over each datapoint's rows.
@compute @workgroup_size(64)
fn latent_log_ratio(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if r >= op.rows { return; }
    let b = r % op.batch;
    var ratio = 0.0;
    for (var j = 0u; j < op.latent; j++) {
        let z = acts[op.z_off + r * op.latent + j];
        let e = acts[op.eps_off + r * op.latent + j];
        ratio += 0.5 * z * z - 0.5 * e * e - 0.5 * logvar(b, j);
    }
    acts[op.recon_off + r] += ratio;
}

// ---- test hook: the raw hash words for (seed, step, row, dim), as 16-bit halves (exact in f32),
// so the CPU can check them bit for bit. Writes [rows, latent, 4] floats at eps_off.
@compute @workgroup_size(16, 4)
fn eps_bits_test(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let r = gid.y;
    if j >= op.latent || r >= op.rows { return; }
    let h = eps_bits(r, j);
    let o = op.eps_off + (r * op.latent + j) * 4u;
    acts[o] = f32(h.x >> 16u);
    acts[o + 1u] = f32(h.x & 0xffffu);
    acts[o + 2u] = f32(h.y >> 16u);
    acts[o + 3u] = f32(h.y & 0xffffu);
}
