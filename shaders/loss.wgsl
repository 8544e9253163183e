// Reconstruction loss -log p(x|z) per decoder row, and its gradient w.r.t. the decoder's outputs.
//   out [rows, k * pixels]  decoder outputs: logits, Gaussian means, or (k = 2) the means'
//                           logits then the log-variances
//   x   [batch, pixels]     the batch; row r of `out` decodes datapoint r % batch
//   grad [rows, k * pixels] = scale * d(-log p)/d out, scale = 1 / rows (the mean over rows)
//   recon [rows]            -log p(x|z) per row, summed over pixels
// Bernoulli: BCE with logits in its stable form softplus(o) - x o, gradient sigmoid(o) - x.
// Gaussian (fixed sigma): (o - x)^2 / (2 sigma^2) + log(sigma sqrt(2 pi)), gradient (o - x) / sigma^2.
// Gaussian (learned variance): m = sigmoid(o), lv = max(s, floor);
//   (log(2 pi) + lv + (m - x)^2 / e^lv) / 2, gradients (m - x) / e^lv * m (1 - m) for o and
//   (1 - (m - x)^2 / e^lv) / 2 for s above the floor (0 below it, where the loss ignores s).

struct Loss {
    rows: u32,
    pixels: u32,
    batch: u32,
    likelihood: u32,  // 0 = Bernoulli, 1 = Gaussian, 2 = Gaussian with learned variance
    out_off: u32,
    x_off: u32,
    grad_off: u32,
    recon_off: u32,
    scale: f32,
    inv_var: f32,     // Gaussian: 1 / sigma^2
    log_norm: f32,    // Gaussian: pixels * log(sigma sqrt(2 pi))
    log_var_floor: f32,  // learned variance: the log-variance's lower bound
}

@group(0) @binding(0) var<uniform> op: Loss;
@group(0) @binding(4) var<storage, read_write> acts: array<f32>;

const LOG_2PI: f32 = 1.8378770664093453;

// One workgroup per row: each invocation takes every 64th pixel, then a workgroup sum.
@compute @workgroup_size(64)
fn reconstruction(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = wid.x;  // the grid is exactly `rows` workgroups: uniform control flow for barriers
    let width = select(op.pixels, 2u * op.pixels, op.likelihood == 2u);
    let o_base = op.out_off + r * width;
    let x_base = op.x_off + (r % op.batch) * op.pixels;
    let g_base = op.grad_off + r * width;
    var sum = 0.0;
    for (var p = lid; p < op.pixels; p += WG) {
        let o = acts[o_base + p];
        let x = acts[x_base + p];
        if op.likelihood == 0u {
            sum += max(o, 0.0) + log(1.0 + exp(-abs(o))) - x * o;
            acts[g_base + p] = op.scale * (1.0 / (1.0 + exp(-o)) - x);
        } else if op.likelihood == 1u {
            let d = o - x;
            sum += 0.5 * d * d * op.inv_var;
            acts[g_base + p] = op.scale * d * op.inv_var;
        } else {
            let s = acts[o_base + op.pixels + p];
            let m = 1.0 / (1.0 + exp(-o));
            let lv = max(s, op.log_var_floor);
            let d = m - x;
            let d2 = d * d * exp(-lv);
            sum += 0.5 * (LOG_2PI + lv + d2);
            acts[g_base + p] = op.scale * d * exp(-lv) * m * (1.0 - m);
            acts[g_base + op.pixels + p] = select(0.0, op.scale * 0.5 * (1.0 - d2), s > op.log_var_floor);
        }
    }
    var total = workgroup_sum(lid, sum);
    if lid == 0u {
        if op.likelihood == 1u { total += op.log_norm; }
        acts[op.recon_off + r] = total;
    }
}
