//! Test bodies shared by the native tests (lavapipe or a real GPU) and the browser tests
//! (headless Chromium on WebGPU): each runs a WGSL kernel, or the CPU path, and checks it
//! against the f64 oracle.
// Each test binary uses a different part of this module.
#![allow(dead_code)]

use webvae::backend::{Backend, Device};
use webvae::gpu::Gpu;
use webvae::kernels::{run_single, Kernel, KernelShape, Kernels, Scratch, SingleKernel};
use webvae::ops::latent::{self, LatentOp};
use webvae::ops::linear::{self, LinearOp};
use webvae::ops::loss::{self, LossOp};
use webvae::ops::optim::{self, OptimOp};
use webvae::model::Activation;
use webvae::rng::Rng;

/// Opens the GPU or fails the test with the reason and how to get an adapter: a GPU test must
/// never pass by doing nothing.
pub async fn gpu_or_fail(log: impl Fn(&str)) -> Gpu {
    match Gpu::new().await {
        Ok(gpu) => {
            log(&format!("GPU adapter: {}", gpu.adapter_summary()));
            gpu
        }
        Err(e) => panic!("this test needs a GPU adapter and found none: {e}"),
    }
}

pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

pub fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Asserts |got - want| <= atol + rtol * |want| elementwise, naming the first offender.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], rtol: f32, atol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= atol + rtol * w.abs(),
            "{what}: element {i}: GPU {g} vs CPU {w} (rtol {rtol}, atol {atol})"
        );
    }
}

/// The linear layer's three products (forward with fused bias and activation, dX, dW/db), by
/// the general tiled kernels in both kernel shapes and, where the shape allows, the software
/// shape's vec4 kernels, on shapes that exercise the edges of tiles and blocks (sizes not
/// multiples of 4, 8, 32 or 64) and on the reference model's largest layer.
pub async fn linear_parity(log: impl Fn(&str)) {
    let gpu = gpu_or_fail(&log).await;
    let shapes = KernelShape::ALL.map(|shape| Kernels::new(&gpu.device, shape));
    let mut rng = Rng::new(7);
    let cases = [
        (1, 1, 1, Activation::Identity),
        (5, 7, 3, Activation::Relu),
        (33, 20, 17, Activation::Tanh),
        (37, 2, 400, Activation::Relu),
        (36, 20, 12, Activation::Tanh),
        (68, 36, 68, Activation::Relu),
        (65, 36, 68, Activation::Relu),
        (128, 784, 400, Activation::Relu),
    ];
    for (rows, inner, cols, act) in cases {
        let x = rng.vec(rows * inner, 0.0, 1.0);
        let w = rng.vec(cols * inner, -0.1, 0.1);
        let b = rng.vec(cols, -0.5, 0.5);
        let dy = rng.vec(rows * cols, -1.0, 1.0);
        let (op, scratch) = LinearOp::standalone(rows, inner, act.code(), &x, &w, &b, &dy);
        let (y_off, dy_off, dx_off, dyt_off) = (op.y_off as usize, op.dy_off as usize, op.dx_off as usize, op.dyt_off as usize);
        for (kernels, vec4) in [(&shapes[0], false), (&shapes[0], true), (&shapes[1], false)] {
            if vec4 && !op.is_vec4() {
                continue;
            }
            let what = format!("{rows}x{inner}x{cols} {act:?} ({} shape{})", kernels.shape.name(), if vec4 { ", vec4 kernels" } else { "" });
            let run = |product| run_product(&gpu, kernels, op, product, vec4, &scratch);

            let out = run(Kernel::LinearForward).await.unwrap();
            let want = linear::forward(&f64s(&x), &f64s(&w), &f64s(&b), rows, inner, cols, act);
            assert_close(&format!("linear_forward {what}"), &out.acts[y_off..dy_off], &f32s(&want), 1e-4, 1e-5);
            assert!(want.iter().any(|&v| v != 0.0), "a kernel that wrote nothing must fail this check");

            // Backward, with x standing for the activation's output (x = act(previous z)).
            let out = run(Kernel::LinearBackwardInput).await.unwrap();
            let want = linear::backward_input(&f64s(&dy), &f64s(&w), &f64s(&x), rows, inner, cols, act);
            assert_close(&format!("linear_backward_input {what}"), &out.acts[dx_off..dyt_off], &f32s(&want), 1e-4, 1e-5);

            let out = run(Kernel::LinearBackwardWeight).await.unwrap();
            let (dw, db) = linear::backward_weight(&f64s(&x), &f64s(&dy), rows, inner, cols);
            assert_close(&format!("linear_backward_weight dW {what}"), &out.grads[..w.len()], &f32s(&dw), 1e-4, 1e-4);
            assert_close(&format!("linear_backward_weight db {what}"), &out.grads[w.len()..], &f32s(&db), 1e-4, 1e-4);
            log(&format!("linear forward, dX, dW/db {what}: match the CPU reference"));
        }
    }
    // The hardware shape splits a long reduction over few tiles in parts (gemm.wgsl), so the
    // checks above ran the split path: at the reference model's largest shape, forward (52
    // tiles of 32 x 32, K = 784) and dX (100 tiles, K = 400).
    let (op, mut scratch) = LinearOp::standalone(128, 784, 1, &[0.0; 128 * 784], &[0.0; 400 * 784], &[0.0; 400], &[0.0; 128 * 400]);
    for product in [Kernel::LinearForward, Kernel::LinearBackwardInput] {
        let mut rec = webvae::kernels::Records::new(KernelShape::Hardware).with_parts_in(&mut scratch);
        linear::record_product(&mut rec, product, op, Some(false));
        let first: LinearOp = bytemuck::pod_read_unaligned(&rec.bytes[0]);
        assert!(first.parts > 1 && rec.dispatches.len() == 2, "{product:?} at 128 x 784 x 400 is not split in the hardware shape");
    }
}

/// Runs the dispatches of one linear product on `scratch`'s contents (with room for a split
/// product's parts after them).
async fn run_product(gpu: &Gpu, kernels: &Kernels, op: LinearOp, product: Kernel, vec4: bool, scratch: &Scratch) -> Result<Scratch, webvae::gpu::GpuError> {
    let mut scratch = scratch.clone();
    let mut rec = webvae::kernels::Records::new(kernels.shape).with_parts_in(&mut scratch);
    linear::record_product(&mut rec, product, op, Some(vec4));
    let single = SingleKernel::with_records(gpu, kernels, &rec, &scratch, 0);
    single.submit(gpu, kernels, 1);
    single.read(gpu).await
}

/// The loss, latent and Adam kernels, each alone, against the oracle on random inputs.
pub async fn small_kernels_parity(log: impl Fn(&str)) {
    let gpu = gpu_or_fail(&log).await;
    let kernels = Kernels::new(&gpu.device, gpu.shape);
    let mut rng = Rng::new(21);
    let (b, l, z, d) = (7usize, 3usize, 5usize, 70usize);
    let r = b * l;

    // Reconstruction loss and its gradient, every likelihood; the learned variance's
    // log-variances (the second half of each row) straddle its floor, ln 1e-3 = -6.9.
    // acts: out | x | grad | recon
    for lik in [Likelihood::Bernoulli, Likelihood::Gaussian { sigma: 0.4 }, Likelihood::gaussian_var()] {
        let w = lik.outputs_per_pixel() * d;
        let out: Vec<f32> = (0..r * w).map(|i| if i % w < d { rng.range(-6.0, 6.0) } else { rng.range(-9.0, 1.0) }).collect();
        let x = rng.vec(b * d, 0.0, 1.0);
        let (g0, recon_off) = (r * w + b * d, 2 * r * w + b * d);
        let op = LossOp { out_off: 0, x_off: (r * w) as u32, grad_off: g0 as u32, recon_off: recon_off as u32, ..LossOp::new(lik, r, d, b) };
        let scratch = Scratch { acts: [out.clone(), x.clone(), vec![0.0; r * w + r]].concat(), ..Default::default() };
        let got = run_single(&gpu, &kernels, Kernel::Reconstruction, op, (r as u32, 1, 1), &scratch, 0).await.unwrap();
        let (recon, grad) = loss::reconstruction(&f64s(&out), &f64s(&x), b, d, lik, 1.0 / r as f64);
        assert_close(&format!("reconstruction {lik:?}"), &got.acts[recon_off..], &f32s(&recon), 1e-5, 1e-3);
        assert_close(&format!("reconstruction gradient {lik:?}"), &got.acts[g0..recon_off], &f32s(&grad), 1e-4, 1e-7);
        if lik.outputs_per_pixel() == 2 {
            let clamped = (0..r * w).filter(|&i| i % w >= d && out[i] < lik.log_variance_floor()).count();
            assert!(clamped > r * d / 10 && clamped < r * d * 9 / 10, "{clamped} log-variances below the floor: the test should cover both sides");
        }
    }

    // Reparameterisation, then its backward with KL. acts: ml | eps | z | dz | dml | kl
    let mut ml = vec![0.0f32; b * 2 * z];
    for (i, v) in ml.iter_mut().enumerate() {
        *v = if i % (2 * z) < z { rng.range(-1.5, 1.5) } else { rng.range(-2.0, 1.0) };
    }
    let dz = rng.vec(r * z, -0.5, 0.5);
    let (eps_off, z_off, dz_off, dml_off, kl_off) = (b * 2 * z, b * 2 * z + r * z, b * 2 * z + 2 * r * z, b * 2 * z + 3 * r * z, 2 * b * 2 * z + 3 * r * z);
    let op = LatentOp {
        batch: b as u32, rows: r as u32, latent: z as u32, seed: 77,
        ml_off: 0, eps_off: eps_off as u32, z_off: z_off as u32, dz_off: dz_off as u32, dml_off: dml_off as u32, kl_off: kl_off as u32,
        kl_weight: 0.3, ..Default::default()
    };
    let scratch = Scratch { acts: [ml.clone(), vec![0.0; 2 * r * z], dz.clone(), vec![0.0; b * 2 * z + b]].concat(), ..Default::default() };
    let step = 12;
    let got = run_single(&gpu, &kernels, Kernel::Reparameterize, op, ((z as u32).div_ceil(16), (r as u32).div_ceil(4), 1), &scratch, step).await.unwrap();
    let eps: Vec<f64> = (0..r * z).map(|i| latent::eps(77, step, (i / z) as u32, (i % z) as u32)).collect();
    assert_close("reparameterize eps", &got.acts[eps_off..z_off], &f32s(&eps), 1e-5, 1e-6);
    let want_z = latent::reparameterize(&f64s(&ml), &eps, b, z);
    assert_close("reparameterize z", &got.acts[z_off..dz_off], &f32s(&want_z), 1e-5, 1e-6);
    let got = run_single(&gpu, &kernels, Kernel::LatentBackward, op, (1, 1, 1), &got, step).await.unwrap();
    let want = latent::backward(&f64s(&ml), &f64s(&got.acts[eps_off..z_off]), &f64s(&dz), b, z, 0.3);
    assert_close("latent_backward d(mu, logvar)", &got.acts[dml_off..kl_off], &f32s(&want), 1e-5, 1e-6);
    assert_close("latent_backward KL", &got.acts[kl_off..], &f32s(&latent::kl(&f64s(&ml), b, z)), 1e-5, 1e-6);
    // The importance-weighted bound over the l samples, with recon after the KL.
    let recon = rng.vec(r, 50.0, 150.0);
    let scratch = Scratch { acts: [&got.acts[..kl_off + b], &recon[..]].concat(), ..Default::default() };
    let op = LatentOp { recon_off: (kl_off + b) as u32, ..op };
    let reduce = OptimOp { batch: b as u32, rows: r as u32, recon_off: op.recon_off, metrics_off: 4, ..Default::default() };
    let mut rec = webvae::kernels::Records::new(kernels.shape);
    rec.push(Kernel::LatentLogRatio, op, op.per_row());
    rec.push(Kernel::ImportanceWeighted, reduce, (1, 1, 1));
    let got = run_records(&gpu, &kernels, &rec, &scratch, step).await;
    let want = latent::importance_weighted(&f64s(&ml), &f64s(&got.acts[eps_off..z_off]), &f64s(&recon), b, z);
    assert_close("latent_log_ratio + importance_weighted", &got.metrics[4..7], &[want as f32, 0.0, b as f32], 1e-5, 1e-4);

    categorical_kernels_parity(&gpu, &kernels, &mut rng).await;

    // Adam: one step (t = 1) from nonzero moments over a flat buffer (of whole vec4s).
    let n = 1000;
    let (params, grads) = (rng.vec(n, -1.0, 1.0), rng.vec(n, -0.01, 0.01));
    let (m, v) = (rng.vec(n, -0.01, 0.01), rng.vec(n, 0.0, 1e-4));
    let op = OptimOp { count: n as u32 / 4, lr: 0.01, ..Default::default() };
    let scratch = Scratch { params: params.clone(), grads: grads.clone(), moments: [m.clone(), v.clone()].concat(), ..Default::default() };
    let got = run_single(&gpu, &kernels, Kernel::Adam, op, (2, 1, 1), &scratch, 0).await.unwrap();
    let (mut p, mut mm, mut vv) = (f64s(&params), f64s(&m), f64s(&v));
    optim::adam(&mut p, &f64s(&grads), &mut mm, &mut vv, 1, 0.01);
    // Updates are about lr = 0.01; f32 bias corrections (1 - 0.999^t) hold them to ~1e-3 relative.
    assert_close("adam parameters", &got.params, &f32s(&p), 1e-6, 1e-5);
    assert_close("adam moments", &got.moments, &f32s(&[mm, vv].concat()), 1e-5, 1e-9);
    log("reconstruction, reparameterize, latent_backward, importance_weighted, the categorical kernels and adam: match the CPU reference");
}

/// The Gumbel-softmax kernels against the oracle: each mode's samples and noise, the backward
/// pass with the KL at a temperature on the schedule, and the bound from one-hot samples.
async fn categorical_kernels_parity(gpu: &Gpu, kernels: &Kernels, rng: &mut Rng) {
    use webvae::ops::categorical::{self, CategoricalOp, Mode};
    // acts: logits [b, w] | noise [r, w] | y [r, w] | dy [r, w] | dlogits [b, w] | kl [b] | recon [r]
    // 100 samples of 20 variables: enough work per datapoint to trip lavapipe's loop limit
    // (65535 iterations per invocation) had the bound been one dispatch.
    let (b, l, n, k) = (6usize, 100usize, 20usize, 10usize);
    let (r, w) = (b * l, n * k);
    let logits = rng.vec(b * w, -3.0, 3.0);
    let dy = rng.vec(r * w, -0.5, 0.5);
    let recon = rng.vec(r, 50.0, 150.0);
    let (noise_off, y_off, dy_off, dl_off, kl_off) = (b * w, b * w + r * w, b * w + 2 * r * w, b * w + 3 * r * w, 2 * b * w + 3 * r * w);
    let recon_off = kl_off + b;
    let op = CategoricalOp {
        batch: b as u32, rows: r as u32, variables: n as u32, classes: k as u32, seed: 31,
        logits_off: 0, noise_off: noise_off as u32, y_off: y_off as u32, dy_off: dy_off as u32, dlogits_off: dl_off as u32,
        kl_off: kl_off as u32, recon_off: recon_off as u32,
        kl_weight: 0.3, tau_start: 1.0, tau_floor: 0.4, tau_rate: 0.05, ..Default::default()
    };
    let scratch = Scratch { acts: [logits.clone(), vec![0.0; 2 * r * w], dy.clone(), vec![0.0; b * w + b], recon.clone()].concat(), ..Default::default() };
    let step = 9; // tau = max(0.4, e^-0.45) = 0.64
    let tau = webvae::model::LatentType::Categorical { classes: k, tau_start: 1.0, tau_floor: 0.4, tau_rate: 0.05 }.temperature(step) as f64;
    let noise: Vec<f64> = (0..r * w).map(|i| categorical::gumbel(31, step, (i / w) as u32, (i % w) as u32)).collect();
    for mode in [Mode::Relaxed, Mode::OneHot, Mode::Probabilities] {
        let op = CategoricalOp { mode: mode as u32, ..op };
        let got = run_single(gpu, kernels, Kernel::GumbelSoftmax, op, op.per_variable(), &scratch, step).await.unwrap();
        let want_noise = if mode == Mode::Probabilities { vec![0.0; r * w] } else { noise.clone() };
        assert_close(&format!("gumbel_softmax {mode:?} noise"), &got.acts[noise_off..y_off], &f32s(&want_noise), 1e-5, 2e-6);
        let want_y = categorical::sample(&f64s(&logits), &noise, b, k, mode, tau);
        assert_close(&format!("gumbel_softmax {mode:?} y"), &got.acts[y_off..dy_off], &f32s(&want_y), 1e-5, 1e-6);
        let mut rec = webvae::kernels::Records::new(kernels.shape);
        if mode == Mode::OneHot {
            let reduce = OptimOp { batch: b as u32, rows: r as u32, recon_off: recon_off as u32, metrics_off: 4, ..Default::default() };
            rec.push(Kernel::CategoricalLogRatio, op, op.per_row());
            rec.push(Kernel::ImportanceWeighted, reduce, (1, 1, 1));
        } else {
            rec.push(Kernel::CategoricalBackward, op, op.per_datapoint());
        }
        let done = run_records(gpu, kernels, &rec, &got, step).await;
        let y = f64s(&got.acts[y_off..dy_off]);
        match mode {
            // Relaxed: the gradient through the samples and the KL's; otherwise (codes that are
            // not relaxed samples) the KL's alone, as if dy were 0.
            Mode::Relaxed | Mode::Probabilities => {
                let dy = if mode == Mode::Relaxed { f64s(&dy) } else { vec![0.0; r * w] };
                let want = categorical::backward(&f64s(&logits), &y, &dy, b, k, tau, 0.3);
                assert_close(&format!("categorical_backward {mode:?} d logits"), &done.acts[dl_off..kl_off], &f32s(&want), 1e-4, 1e-6);
                let kl = categorical::kl(&f64s(&logits), b, k);
                assert_close(&format!("categorical_backward {mode:?} KL"), &done.acts[kl_off..recon_off], &f32s(&kl), 1e-5, 1e-5);
            }
            Mode::OneHot => {
                let want = categorical::importance_weighted(&f64s(&logits), &y, &f64s(&recon), b, k);
                assert_close("categorical_log_ratio + importance_weighted", &done.metrics[4..7], &[want as f32, 0.0, b as f32], 1e-5, 1e-4);
            }
        }
    }
}

/// The counter-based RNG: the GPU's hash words equal the CPU's bit for bit.
pub async fn rng_parity(log: impl Fn(&str)) {
    let gpu = gpu_or_fail(&log).await;
    let kernels = Kernels::new(&gpu.device, gpu.shape);
    let (rows, latent) = (37u32, 11u32);
    for (seed, step) in [(0u32, 0u32), (1, 17), (0xDEAD_BEEF, u32::MAX)] {
        let op = LatentOp { rows, latent, seed, eps_off: 0, ..Default::default() };
        let scratch = Scratch { acts: vec![0.0; (rows * latent * 4) as usize], ..Default::default() };
        let out = run_single(&gpu, &kernels, Kernel::EpsBitsTest, op, (latent.div_ceil(16), rows.div_ceil(4), 1), &scratch, step)
            .await
            .unwrap();
        for r in 0..rows {
            for j in 0..latent {
                let o = ((r * latent + j) * 4) as usize;
                let word = |i: usize| ((out.acts[o + i] as u32) << 16) | out.acts[o + i + 1] as u32;
                let want = webvae::rng::eps_bits(seed, step, r, j);
                assert_eq!((word(0), word(2)), want, "hash words for seed {seed} step {step} row {r} dim {j}");
            }
        }
    }
    log("eps hash words: GPU equals CPU bit for bit");
}

use webvae::data::Dataset;
use webvae::model::{Architecture, Config, LatentType, Layer, LayerLayout, Likelihood, Shape};
use webvae::reference;
use webvae::trainer::Trainer;

/// A small slice of the bundled digits, parsed from the same files the page loads.
pub fn small_mnist(n: usize) -> (Dataset, Dataset) {
    let train = Dataset::from_idx(
        include_bytes!("../../www/data/train-images-idx3-ubyte.gz"),
        include_bytes!("../../www/data/train-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    let test = Dataset::from_idx(
        include_bytes!("../../www/data/t10k-images-idx3-ubyte.gz"),
        include_bytes!("../../www/data/t10k-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    (train.take(n), test.take(n / 4))
}

/// An MLP whose hidden layers use `activation`.
pub fn mlp_with(pixels: usize, hidden: &[usize], latent: usize, activation: Activation) -> Config {
    let arch = Architecture::Mlp { hidden: hidden.to_vec(), activation };
    let (input, encoder, decoder) = arch.layers(1, pixels, 1).unwrap();
    Config { input, encoder, decoder, latent, ..Config::default() }
}

/// Configurations for the whole-step parity test: between them, both activations, every
/// likelihood (the learned variance on both architectures), both latent types, L = 1 and 2, beta != 1, one and two hidden layers, a convolutional model (both
/// convolutions, kernels 3 and 4, flatten and reshape), and sizes that are not multiples of 4
/// (batch 13, latent 5, hidden 18, 3 and 5 channels) so every kernel's edges are exercised; and
/// one large enough that Adam's grid-stride loop goes round several times.
pub fn parity_configs() -> Vec<Config> {
    vec![
        Config { batch_size: 13, seed: 5, ..Config::mlp(784, &[32], 5) },
        Config {
            likelihood: Likelihood::Gaussian { sigma: 0.5 },
            beta: 0.5,
            samples: 2,
            batch_size: 16,
            learning_rate: 3e-3,
            seed: 9,
            ..mlp_with(784, &[24, 18], 3, Activation::Tanh)
        },
        // The learned variance with a high floor, 0.6 (log -0.51), near where the untrained
        // log-variances lie, so that clamped ones (no gradient) are likely among them.
        Config { batch_size: 8, seed: 4, ..Config::mlp(784, &[20], 2).with_likelihood(Likelihood::GaussianVar { variance_floor: 0.6 }) },
        // Categorical latents, two relaxed samples per digit, tau falling through the 20 steps.
        Config {
            latent_type: LatentType::Categorical { classes: 5, tau_start: 1.0, tau_floor: 0.5, tau_rate: 0.03 },
            samples: 2,
            batch_size: 12,
            seed: 6,
            learning_rate: 3e-3,
            ..Config::mlp(784, &[28], 6)
        },
        Config {
            input: image(1, 28, 28),
            encoder: vec![conv(3, 3, 2, 1, Activation::Relu), conv(5, 4, 2, 1, Activation::Tanh), Layer::Flatten {}, Layer::linear(12, Activation::Relu)],
            latent: 4,
            decoder: vec![
                Layer::linear(12, Activation::Relu),
                Layer::linear(245, Activation::Relu),
                Layer::Reshape { shape: [5, 7, 7] },
                convt(3, 4, 2, 1, Activation::Relu),
                convt(2, 4, 2, 1, Activation::Identity),
            ],
            likelihood: Likelihood::gaussian_var(),
            batch_size: 13,
            learning_rate: 3e-3,
            seed: 2,
            ..Config::default()
        },
        // 826,556 parameters: Adam's invocations stride over the buffer (at most 1,024
        // workgroups of 256), and here each takes three or four rounds, as in the presets.
        Config { batch_size: 6, seed: 8, ..Config::mlp(784, &[520], 6) },
    ]
}

/// 20 training steps on the GPU and on the f64 oracle, from the same initial weights, with the
/// same batches and the same eps: every step's losses agree, and so do the final weights. In
/// both kernel shapes, whichever the adapter would choose.
pub async fn training_parity(log: impl Fn(&str)) {
    for shape in KernelShape::ALL {
        for config in parity_configs() {
            let gpu = gpu_or_fail(&log).await.with_shape(shape);
            log(&format!("{} kernels:", shape.name()));
            parity_with_oracle(&log, Device::Gpu(gpu), config).await;
        }
    }
}

/// The same 20 steps on the CPU path (f32, sgemm) against the f64 oracle.
pub async fn cpu_training_parity(log: impl Fn(&str)) {
    for config in parity_configs() {
        parity_with_oracle(&log, Device::Cpu, config).await;
    }
}

async fn parity_with_oracle(log: impl Fn(&str), device: Device, config: Config) {
    let (train, test) = small_mnist(208);
    {
        let mut trainer = Backend::new(&device, config.clone(), &train, &test).unwrap_or_else(|e| panic!("{e}"));
        let initial = trainer.parameters().await.unwrap();
        let mut cpu = reference::Trainer::new(config.clone(), &initial);
        for step in 0..20u32 {
            let indices = Trainer::batch_indices(&config, train.count, step);
            let x: Vec<f64> = indices.iter().flat_map(|&i| train.image(i as usize)).map(|p| p as f64).collect();
            if step == 0 {
                // The first step's gradients, before Adam's normalisation can amplify rounding.
                let eps = reference::step_eps(&config, 0, config.batch_size);
                let fwd = reference::forward(&cpu.config, &cpu.layout, &cpu.params, &x, &eps, 0);
                let (want, _) = reference::backward(&cpu.config, &cpu.layout, &cpu.params, &x, &fwd);
                trainer.train(1).unwrap();
                let got = trainer.gradients().await.unwrap();
                // Sums with cancellation make small gradients' relative error large: absolute slack.
                assert_close("gradients of step 0", &got, &f32s(&want), 2e-3, 1e-6);
            } else {
                trainer.train(1).unwrap();
            }
            let want = cpu.step(&x);
            let got = trainer.metrics().await.unwrap_or_else(|e| panic!("{e}"));
            let what = format!("{} step {step}", config.summary());
            assert_close(&format!("{what} loss"), &[got.loss as f32], &[want.loss as f32], 2e-4, 1e-3);
            assert_close(&format!("{what} reconstruction"), &[got.reconstruction as f32], &[want.reconstruction as f32], 2e-4, 1e-3);
            assert_close(&format!("{what} KL"), &[got.kl as f32], &[want.kl as f32], 2e-3, 1e-3);
        }
        let got = trainer.parameters().await.unwrap();
        let want = f32s(&cpu.params);
        let worst = assert_tensors_agree(&format!("{} after 20 steps", config.summary()), &cpu.layout.tensors, &got, &want, &initial);
        let changed = got.iter().zip(&initial).filter(|(a, b)| a != b).count();
        assert!(changed > got.len() / 2, "only {changed} of {} parameters changed", got.len());
        log(&format!(
            "training parity on the {}: {} {:?} L={}: 20 steps match the f64 oracle (largest weight difference {worst:.2} of its tensor's tolerance)",
            device.kind(), config.summary(), config.likelihood, config.samples
        ));
    }
}

/// Two results of the same training agree tensor by tensor: in every tensor (by name), at least
/// 99% of the elements lie within 5% of how far that tensor moved in training (the RMS of
/// `want - initial` over its elements), and none beyond four times that.
///
/// Adam moves each weight by about the learning rate per step whatever the gradient's size, so a
/// weight whose gradient is within rounding of zero (e.g. from an almost-always-blank pixel) can
/// step either way on both sides: a few elements may differ, never a whole tensor or a
/// slice of one (a bias left out, a transposed weight, a wrong tap in a convolution).
/// Returns the largest difference as a multiple of its tensor's tolerance.
pub fn assert_tensors_agree(what: &str, tensors: &[webvae::model::Tensor], got: &[f32], want: &[f32], initial: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut largest = 0f32;
    for t in tensors {
        let r = t.range();
        let (g, w, i0) = (&got[r.clone()], &want[r.clone()], &initial[r]);
        let moved = (w.iter().zip(i0).map(|(w, i)| ((w - i) as f64).powi(2)).sum::<f64>() / w.len() as f64).sqrt() as f32;
        let tol = 0.05 * moved.max(1e-6);
        let diffs: Vec<f32> = g.iter().zip(w).map(|(g, w)| (g - w).abs()).collect();
        let close = diffs.iter().filter(|&&d| d <= tol).count();
        let (worst, at) = diffs.iter().enumerate().fold((0f32, 0), |(m, k), (i, &d)| if d > m { (d, i) } else { (m, k) });
        assert!(close as f64 >= 0.99 * g.len() as f64, "{what}: {}: only {close} of {} elements within {tol:.2e} (5% of its movement)", t.name, g.len());
        assert!(worst <= 4.0 * tol, "{what}: {}: element {at} is {} vs {} (more than four times {tol:.2e})", t.name, g[at], w[at]);
        largest = largest.max(worst / tol);
    }
    largest
}

/// One layer with its parameters at the start of a flat buffer.
pub fn lone_layer(layer: Layer, input: Shape) -> LayerLayout {
    let output = layer.output_shape(input).unwrap_or_else(|e| panic!("{e}"));
    let mut l = LayerLayout { layer, name: "layer".into(), input, output, weight: 0, bias: 0 };
    l.bias = l.parameter_sizes().map_or(0, |(w, _, _)| w);
    l
}

pub fn image(channels: usize, height: usize, width: usize) -> Shape {
    Shape::Image { channels, height, width }
}

pub fn conv(out: usize, kernel: usize, stride: usize, padding: usize, activation: Activation) -> Layer {
    Layer::Conv2d { out, kernel, stride, padding, activation }
}

pub fn convt(out: usize, kernel: usize, stride: usize, padding: usize, activation: Activation) -> Layer {
    Layer::ConvTranspose2d { out, kernel, stride, padding, activation }
}

/// Odd sizes, stride 1 and 2, padding 0 and 1, kernels 3 and 4, channel counts that are not
/// multiples of 4, every activation.
pub fn awkward_convolutions() -> Vec<(Layer, Shape)> {
    vec![
        (conv(5, 3, 2, 1, Activation::Relu), image(3, 7, 5)),
        (conv(3, 4, 1, 0, Activation::Tanh), image(2, 6, 7)),
        (conv(6, 4, 2, 1, Activation::Identity), image(1, 9, 8)),
        (conv(2, 3, 1, 1, Activation::Tanh), image(3, 5, 5)),
        (convt(5, 3, 2, 1, Activation::Relu), image(3, 4, 3)),
        (convt(3, 4, 1, 0, Activation::Tanh), image(2, 3, 5)),
        (convt(2, 4, 2, 1, Activation::Identity), image(5, 3, 4)),
        (convt(1, 3, 1, 1, Activation::Tanh), image(3, 5, 4)),
    ]
}

/// A small convolutional VAE: odd channel counts, both strides, a reshape and a flatten.
pub fn tiny_conv(likelihood: Likelihood) -> Config {
    Config {
        input: image(1, 6, 6),
        encoder: vec![
            conv(3, 3, 2, 1, Activation::Relu),
            conv(5, 2, 1, 0, Activation::Tanh),
            Layer::Flatten {},
            Layer::linear(4, Activation::Tanh),
        ],
        latent: 3,
        decoder: vec![
            Layer::linear(7, Activation::Relu),
            Layer::linear(12, Activation::Tanh),
            Layer::Reshape { shape: [3, 2, 2] },
            convt(2, 3, 2, 1, Activation::Relu),
            convt(1, 4, 2, 1, Activation::Identity),
        ],
        likelihood,
        beta: 0.7,
        samples: 2,
        batch_size: 4,
        seed: 3,
        ..Config::default()
    }
}


/// Every convolution kernel against the oracle: forward (bias, activation), then the backward
/// pass as a step adds it (dW, db, dX times the slope of the activation that made x), on the
/// awkward shapes and on shapes spanning several tiles, each with the tiled and the direct
/// kernels.
pub async fn conv_parity(log: impl Fn(&str)) {
    use webvae::ops::conv::{record_backward_as, record_forward_as, Choice};
    let gpu = gpu_or_fail(&log).await;
    let shapes = KernelShape::ALL.map(|shape| Kernels::new(&gpu.device, shape));
    let mut rng = Rng::new(13);
    let mut cases: Vec<(Layer, Shape, usize)> = awkward_convolutions().into_iter().map(|(l, s)| (l, s, 3)).collect();
    cases.push((conv(20, 3, 2, 1, Activation::Relu), image(3, 17, 15), 16));
    cases.push((convt(3, 4, 2, 1, Activation::Identity), image(20, 9, 7), 16));
    cases.push((conv(33, 4, 2, 1, Activation::Relu), image(18, 14, 14), 8));
    cases.push((convt(18, 4, 2, 1, Activation::Relu), image(33, 7, 7), 8));
    let mut any_split = false;
    for (layer, input, rows) in cases {
        let l = lone_layer(layer, input);
        let (wn, bn, _) = l.parameter_sizes().unwrap();
        let (xn, yn) = (rows * input.len(), rows * l.output.len());
        let w = rng.vec(wn, -0.3, 0.3);
        let b = rng.vec(bn, -0.5, 0.5);
        // x as the output of the activation before it, so dX's slope has something to do.
        let act_x = if xn % 2 == 0 { Activation::Tanh } else { Activation::Relu };
        let x: Vec<f32> = rng.vec(xn, -1.5, 1.5).iter().map(|&u| act_x.apply(u as f64) as f32).collect();
        let dy = rng.vec(yn, -1.0, 1.0);
        let (x_off, y_off, dy_off, dx_off) = (0, xn, xn + yn, xn + 2 * yn);
        let scratch = Scratch {
            params: [w.clone(), b.clone()].concat(),
            grads: vec![0.0; wn + bn],
            acts: [x.clone(), vec![0.0; yn], dy.clone(), vec![0.0; xn]].concat(),
            ..Default::default()
        };
        let params = f64s(&scratch.params);
        let want_y = webvae::ops::layer_forward(&l, &params, &f64s(&x), rows);
        let mut want_grads = vec![0.0; wn + bn];
        let want_dx = webvae::ops::layer_backward(&l, &params, &f64s(&x), &f64s(&dy), rows, act_x, &mut want_grads);
        for (kernels, choice) in shapes.iter().flat_map(|k| [(k, Choice::Tiled), (k, Choice::Direct)]) {
            let what = format!("{} on {rows} rows of {input} ({choice:?}, {} shape)", layer.describe(), kernels.shape.name());
            // Room for split products' parts after the tensors (the hardware shape splits the
            // reductions of products with few tiles).
            let mut scratch = scratch.clone();
            let mut rec = webvae::kernels::Records::new(kernels.shape).with_parts_in(&mut scratch);
            record_forward_as(&mut rec, &l, rows, x_off, y_off, choice);
            let split_forward = rec.dispatches.len() > 1;
            any_split |= split_forward;
            let out = run_records(&gpu, kernels, &rec, &scratch, 0).await;
            assert_close(&format!("{what} forward"), &out.acts[y_off..dy_off], &f32s(&want_y), 1e-4, 1e-5);
            let mut rec = webvae::kernels::Records::new(kernels.shape).with_parts_in(&mut scratch);
            record_backward_as(&mut rec, &l, rows, x_off, dy_off, Some((dx_off, act_x)), choice);
            let out = run_records(&gpu, kernels, &rec, &scratch, 0).await;
            assert_close(&format!("{what} dW"), &out.grads[..wn], &f32s(&want_grads[..wn]), 1e-4, 1e-4);
            assert_close(&format!("{what} db"), &out.grads[wn..], &f32s(&want_grads[wn..]), 1e-4, 1e-4);
            assert_close(&format!("{what} dX"), &out.acts[dx_off..dx_off + xn], &f32s(&want_dx), 1e-4, 1e-5);
            let split = if split_forward { " (forward split in parts)" } else { "" };
            log(&format!("{what}: forward, dW, db, dX match the CPU reference{split}"));
        }
    }
    assert!(any_split, "no convolution was split in parts in the hardware shape: the split path went unchecked");
}

async fn run_records(gpu: &Gpu, kernels: &Kernels, rec: &webvae::kernels::Records, scratch: &Scratch, rng_step: u32) -> Scratch {
    let single = SingleKernel::with_records(gpu, kernels, rec, scratch, rng_step);
    single.submit(gpu, kernels, 1);
    single.read(gpu).await.unwrap()
}

/// The ops a hierarchy of latents adds, against the oracle: SiLU forward and backward (written
/// and added to a gradient already there), the residual add and the fan-out's sum, on the GPU
/// and on the CPU path; then a Gaussian group, flat with N(0, I) as its prior and spatial (8 x
/// 7 x 7) with a prior from the layer above: its samples in each mode, the KL and the bound's
/// log-ratio per row, and the backward pass with the KL weighted. (The CPU path runs the
/// oracle's own code for the Gaussian group, as for the other latent layers.)
pub async fn hierarchy_ops_parity(log: impl Fn(&str)) {
    use webvae::cpu::elementwise as cpu;
    use webvae::kernels::NONE;
    use webvae::ops::elementwise::{self, ElementwiseOp};
    use webvae::ops::gaussian::{self, GaussianOp, Mode};
    let gpu = gpu_or_fail(&log).await;
    let kernels = Kernels::new(&gpu.device, gpu.shape);
    let mut rng = Rng::new(31);

    // acts: a | b | out. SiLU's inputs reach its tails, where sigmoid saturates.
    let len = 70_001;
    let a: Vec<f32> = (0..len).map(|i| if i % 101 == 0 { rng.range(-120.0, 120.0) } else { rng.range(-8.0, 8.0) }).collect();
    let b = rng.vec(len, -1.0, 1.0);
    let before = rng.vec(len, -1.0, 1.0);
    let op = ElementwiseOp { len: len as u32, a_off: 0, b_off: len as u32, y_off: 2 * len as u32, accumulate: 0, activation: 0 };
    let scratch = |out: &[f32]| Scratch { acts: [&a[..], &b[..], out].concat(), ..Default::default() };
    let run = |kernel, op: ElementwiseOp, out: Vec<f32>| {
        let s = scratch(&out);
        let (gpu, kernels) = (&gpu, &kernels);
        async move { run_single(gpu, kernels, kernel, op, op.groups(), &s, 0).await.unwrap().acts[2 * len..].to_vec() }
    };
    let (a64, b64) = (f64s(&a), f64s(&b));
    let silu = f32s(&elementwise::silu_forward(&a64));
    assert_close("silu_forward", &run(Kernel::SiluForward, op, vec![0.0; len]).await, &silu, 1e-5, 1e-6);
    assert_close("CPU path silu_forward", &cpu::silu_forward(&a), &silu, 1e-5, 1e-6);
    let slope = elementwise::silu_backward(&a64, &b64);
    let added: Vec<f32> = slope.iter().zip(&before).map(|(s, &o)| (s + o as f64) as f32).collect();
    assert_close("silu_backward", &run(Kernel::SiluBackward, op, before.clone()).await, &f32s(&slope), 1e-5, 1e-6);
    assert_close("silu_backward, accumulating", &run(Kernel::SiluBackward, ElementwiseOp { accumulate: 1, ..op }, before.clone()).await, &added, 1e-5, 1e-6);
    let mut got = before.clone();
    cpu::silu_backward(&a, &b, &mut got, true);
    assert_close("CPU path silu_backward, accumulating", &got, &added, 1e-5, 1e-6);
    cpu::silu_backward(&a, &b, &mut got, false);
    assert_close("CPU path silu_backward", &got, &f32s(&slope), 1e-5, 1e-6);
    let sum = f32s(&elementwise::add(&a64, &b64));
    assert_close("add", &run(Kernel::Add, op, before.clone()).await, &sum, 1e-6, 1e-6);
    assert_close("CPU path add", &cpu::add(&a, &b), &sum, 1e-6, 1e-6);
    let mut want = f64s(&before);
    elementwise::add_into(&mut want, &a64);
    let op_into = ElementwiseOp { a_off: 0, y_off: 2 * len as u32, accumulate: 1, ..op };
    assert_close("add_into", &run(Kernel::AddInto, op_into, before.clone()).await, &f32s(&want), 1e-6, 1e-6);
    assert_close("add_into, the first gradient (written)", &run(Kernel::AddInto, ElementwiseOp { accumulate: 0, ..op_into }, before.clone()).await, &a, 0.0, 0.0);
    let mut got = before.clone();
    cpu::add_into(&mut got, &a);
    assert_close("CPU path add_into", &got, &f32s(&want), 1e-6, 1e-6);
    // A fused activation's slope, in place: b holds the layer's outputs (in tanh's range), the
    // output region dy.
    for act in [Activation::Relu, Activation::Tanh] {
        let op = ElementwiseOp { a_off: len as u32, activation: act.code(), ..op };
        let want: Vec<f32> = b64.iter().zip(&before).map(|(&y, &g)| (g as f64 * act.derivative_from_output(y)) as f32).collect();
        assert_close(&format!("activation_backward ({act:?})"), &run(Kernel::ActivationBackward, op, before.clone()).await, &want, 1e-6, 1e-7);
    }

    // Gaussian groups. acts: prior | delta | eps | z | dz | dprior | ddelta | kl | ratio
    let step = 9;
    for (rows, n, with_prior) in [(6usize, 20usize, false), (5, 8 * 7 * 7, true)] {
        let params = |rng: &mut Rng| -> Vec<f32> { (0..rows * 2 * n).map(|i| if i % (2 * n) < n { rng.range(-1.5, 1.5) } else { rng.range(-2.0, 1.0) }).collect() };
        let (prior, delta, dz) = (params(&mut rng), params(&mut rng), rng.vec(rows * n, -0.5, 0.5));
        let ratio_before = rng.vec(rows, 50.0, 150.0);
        let (p, v) = (rows * 2 * n, rows * n);
        let at = [0, p, 2 * p, 2 * p + v, 2 * p + 2 * v, 2 * p + 3 * v, 3 * p + 3 * v, 4 * p + 3 * v, 4 * p + 3 * v + rows].map(|o| o as u32);
        let [prior_off, delta_off, eps_off, z_off, dz_off, dprior_off, ddelta_off, kl_off, ratio_off] = at;
        let acts = [&prior[..], &delta, &vec![0.0; 2 * v], &dz, &vec![0.0; 2 * p + rows], &ratio_before].concat();
        let (kl_weight, dim_base, seed) = (0.3, 100, 55);
        let op = GaussianOp {
            rows: rows as u32, n: n as u32, seed, dim_base, prior_off: if with_prior { prior_off } else { NONE }, delta_off, eps_off, z_off, dz_off,
            dprior_off: if with_prior { dprior_off } else { NONE }, ddelta_off, kl_off, ratio_off, kl_weight, mode: 0, warmup: 0,
        };
        let (prior64, delta64) = (f64s(&prior), f64s(&delta));
        let prior64 = with_prior.then_some(&prior64[..]);
        let what = |s: &str| format!("{s} ({rows} x {n}, {})", if with_prior { "prior from above" } else { "N(0, I) prior" });
        for mode in [Mode::Posterior, Mode::PosteriorMean, Mode::Prior, Mode::PriorMean] {
            let op = GaussianOp { mode: mode.code(), ..op };
            let s = Scratch { acts: acts.clone(), ..Default::default() };
            let got = run_single(&gpu, &kernels, Kernel::GaussianSample, op, op.per_element(), &s, step).await.unwrap();
            let eps = gaussian::noise(mode, seed, step, rows, n, dim_base);
            assert_close(&what(&format!("gaussian_sample eps, {mode:?}")), &got.acts[eps_off as usize..z_off as usize], &f32s(&eps), 1e-5, 1e-6);
            let z = gaussian::sample(mode, prior64, Some(&delta64), &eps, rows, n);
            assert_close(&what(&format!("gaussian_sample z, {mode:?}")), &got.acts[z_off as usize..dz_off as usize], &f32s(&z), 1e-5, 1e-5);
        }
        let mut rec = webvae::kernels::Records::new(kernels.shape);
        rec.push(Kernel::GaussianSample, op, op.per_element());
        rec.push(Kernel::GaussianReduce, op, op.per_row());
        rec.push(Kernel::GaussianBackward, op, op.per_element());
        let got = run_records(&gpu, &kernels, &rec, &Scratch { acts: acts.clone(), ..Default::default() }, step).await;
        let eps = gaussian::noise(Mode::Posterior, seed, step, rows, n, dim_base);
        let kl = gaussian::kl(prior64, &delta64, rows, n);
        assert_close(&what("gaussian_reduce KL"), &got.acts[kl_off as usize..ratio_off as usize], &f32s(&kl), 1e-5, 1e-4);
        let ratio = gaussian::log_ratio(prior64, &delta64, &eps, rows, n);
        let ratio: Vec<f64> = ratio.iter().zip(&ratio_before).map(|(r, &b)| r + b as f64).collect();
        assert_close(&what("gaussian_reduce log-ratio"), &got.acts[ratio_off as usize..], &f32s(&ratio), 1e-5, 1e-3);
        let (dprior, ddelta) = gaussian::backward(prior64, &delta64, &eps, &f64s(&dz), rows, n, kl_weight as f64);
        assert_close(&what("gaussian_backward d delta"), &got.acts[ddelta_off as usize..kl_off as usize], &f32s(&ddelta), 1e-5, 1e-6);
        let dprior_got = &got.acts[dprior_off as usize..ddelta_off as usize];
        if with_prior {
            assert_close(&what("gaussian_backward d prior"), dprior_got, &f32s(&dprior), 1e-5, 1e-6);
        } else {
            assert!(dprior_got.iter().all(|&v| v == 0.0), "{}: wrote a prior gradient with no prior tensor", what("gaussian_backward"));
        }
        // Under a warm-up of 4 steps, at Adam's step 1 the KL weighs a quarter.
        let mut rec = webvae::kernels::Records::new(kernels.shape);
        rec.push(Kernel::GaussianBackward, GaussianOp { warmup: 4, ..op }, op.per_element());
        let warm = run_records(&gpu, &kernels, &rec, &got, step).await;
        let (_, ddelta) = gaussian::backward(prior64, &delta64, &eps, &f64s(&dz), rows, n, kl_weight as f64 / 4.0);
        assert_close(&what("gaussian_backward d delta, warming up"), &warm.acts[ddelta_off as usize..kl_off as usize], &f32s(&ddelta), 1e-5, 1e-6);
    }
    log("silu_forward, silu_backward, add, add_into, activation_backward (GPU and CPU path), gaussian_sample in each mode, gaussian_reduce and gaussian_backward: match the CPU reference");
}

/// Two groups (3 flat latents with prior N(0, I); 2 x 4 x 4 spatial with a prior from the
/// top-down path and a posterior from path + encoder features) on 8 x 8 images: a residual cell,
/// SiLU, a fused tanh, the fan-out of the encoder's features and of the decoder's state.
pub fn small_hierarchy() -> webvae::model::Graph {
    serde_json::from_value(serde_json::json!({
        "output": "d.out",
        "nodes": [
            {"name": "e.stem", "op": {"type": "layer", "layer": {"type": "conv2d", "out": 4, "kernel": 4, "stride": 2, "padding": 1, "activation": "identity"}}, "inputs": ["x"]},
            {"name": "e.act1", "op": {"type": "silu"}, "inputs": ["e.stem"]},
            {"name": "e.conv1", "op": {"type": "layer", "layer": {"type": "conv2d", "out": 4, "kernel": 3, "stride": 1, "padding": 1, "activation": "identity"}}, "inputs": ["e.act1"]},
            {"name": "e.cell", "op": {"type": "add"}, "inputs": ["e.stem", "e.conv1"]},
            {"name": "e.act", "op": {"type": "silu"}, "inputs": ["e.cell"]},
            {"name": "e.flat", "op": {"type": "layer", "layer": {"type": "flatten"}}, "inputs": ["e.act"]},
            {"name": "e.dense", "op": {"type": "layer", "layer": {"type": "linear", "out": 6, "activation": "tanh"}}, "inputs": ["e.flat"]},
            {"name": "q1", "op": {"type": "layer", "layer": {"type": "linear", "out": 6, "activation": "identity"}}, "inputs": ["e.dense"]},
            {"name": "z1", "op": {"type": "gaussian"}, "inputs": ["q1"]},
            {"name": "d.in", "op": {"type": "layer", "layer": {"type": "linear", "out": 64, "activation": "tanh"}}, "inputs": ["z1"]},
            {"name": "d.view", "op": {"type": "layer", "layer": {"type": "reshape", "shape": [4, 4, 4]}}, "inputs": ["d.in"]},
            {"name": "p2", "op": {"type": "layer", "layer": {"type": "conv2d", "out": 4, "kernel": 3, "stride": 1, "padding": 1, "activation": "identity"}}, "inputs": ["d.view"]},
            {"name": "q2.in", "op": {"type": "add"}, "inputs": ["d.view", "e.cell"]},
            {"name": "q2", "op": {"type": "layer", "layer": {"type": "conv2d", "out": 4, "kernel": 3, "stride": 1, "padding": 1, "activation": "identity"}}, "inputs": ["q2.in"]},
            {"name": "z2", "op": {"type": "gaussian"}, "inputs": ["p2", "q2"]},
            {"name": "d.z2", "op": {"type": "layer", "layer": {"type": "conv2d", "out": 4, "kernel": 3, "stride": 1, "padding": 1, "activation": "identity"}}, "inputs": ["z2"]},
            {"name": "d.merge", "op": {"type": "add"}, "inputs": ["d.view", "d.z2"]},
            {"name": "d.act", "op": {"type": "silu"}, "inputs": ["d.merge"]},
            {"name": "d.out", "op": {"type": "layer", "layer": {"type": "conv_transpose2d", "out": 1, "kernel": 4, "stride": 2, "padding": 1, "activation": "identity"}}, "inputs": ["d.act"]}
        ]
    }))
    .expect("the small graph parses")
}

/// The CPU path's passes of a graph model against the graph oracle, on the small hierarchy:
/// the output and each group's KL of a posterior pass, every parameter's gradient, and a pass
/// from the prior.
pub async fn cpu_graph_parity(log: impl Fn(&str)) {
    use webvae::model::{Likelihood, Shape};
    use webvae::ops::gaussian::Mode;
    use webvae::reference::graph as oracle;
    let g = small_hierarchy().layout(Shape::Image { channels: 1, height: 8, width: 8 }).unwrap();
    let mut rng = Rng::new(17);
    let params = rng.vec(g.len, -0.4, 0.4);
    let rows = 5;
    let x = rng.vec(rows * 64, 0.0, 1.0);
    let weights = [0.3, 0.2];
    let want = oracle::forward(&g, &f64s(&params), Some(&f64s(&x)), rows, Mode::Posterior, 4, 6);
    let got = webvae::cpu::graph::forward(&g, &params, Some(&x), rows, Mode::Posterior, 4, 6);
    assert_close("CPU path graph output", &got.values[g.output], &f32s(&want.values[g.output]), 1e-4, 1e-5);
    for (l, kl) in want.kl(&g).iter().enumerate() {
        assert_close(&format!("CPU path graph KL of group {l}"), &f32s(&got.kl[l]), &f32s(kl), 1e-4, 1e-5);
    }
    let scale = 1.0 / rows as f64;
    let want_grads = oracle::backward(&g, &f64s(&params), &want, &f64s(&x), Likelihood::Bernoulli, &weights, scale);
    let (_, d_out) = webvae::ops::loss::reconstruction(&f64s(&got.values[g.output]), &f64s(&x), rows, 64, Likelihood::Bernoulli, scale);
    let mut grads = vec![0.0; g.len];
    let scaled: Vec<f64> = weights.iter().map(|w| w * scale).collect();
    webvae::cpu::graph::backward(&g, &params, &got, f32s(&d_out), &scaled, &mut grads);
    for t in &g.tensors {
        assert_close(&format!("CPU path graph gradient of {}", t.name), &grads[t.range()], &f32s(&want_grads[t.range()]), 1e-3, 1e-5);
    }
    let want = oracle::forward(&g, &f64s(&params), None, rows, Mode::Prior, 4, 6);
    let got = webvae::cpu::graph::forward(&g, &params, None, rows, Mode::Prior, 4, 6);
    assert_close("CPU path graph output from the prior", &got.values[g.output], &f32s(&want.values[g.output]), 1e-4, 1e-5);
    log("the CPU path's graph passes (posterior and prior) and gradients: match the graph oracle");
}

/// 8 x 8 digits: every third pixel of the middle of `n` training images (and a quarter as many
/// test images), for the small hierarchy.
pub fn tiny_mnist(n: usize) -> (Dataset, Dataset) {
    let shrink = |d: Dataset| {
        let pixels = (0..d.count).flat_map(|i| (0..64).map(move |p| (i, 3 + 3 * (p / 8), 3 + 3 * (p % 8)))).map(|(i, r, c)| d.pixels[i * 784 + r * 28 + c]).collect();
        Dataset { rows: 8, cols: 8, pixels, ..d }
    };
    let (train, test) = small_mnist(n);
    (shrink(train), shrink(test))
}

/// 20 steps of the small hierarchy on `device` (the GPU's or the CPU path's graph trainer:
/// batches, noise, the schedule's learning rate and KL warm-up, Adam) against the same steps by
/// the graph oracle in f64: every step's losses, and every tensor after 20 steps.
pub async fn graph_training_parity(log: impl Fn(&str), device: Device) {
    use webvae::backend::GraphBackend;
    use webvae::ops::gaussian::Mode;
    use webvae::reference::graph as oracle;
    use webvae::training::Schedule;
    let (train, test) = tiny_mnist(96);
    let schedule = Schedule { batch_size: 16, learning_rate: 3e-3, final_learning_rate: 1e-3, total_steps: 20, kl_warmup_steps: 8, seed: 3 };
    let mut trainer = GraphBackend::new(&device, &small_hierarchy(), schedule.clone(), &train, &test).unwrap_or_else(|e| panic!("{e}"));
    let g = trainer.layout().clone();
    let initial = trainer.parameters().await.unwrap();
    let mut params = f64s(&initial);
    let (mut m, mut v) = (vec![0.0; g.len], vec![0.0; g.len]);
    let steps_per_epoch = (train.count / schedule.batch_size) as u32;
    for step in 0..20u32 {
        let epoch = step / steps_per_epoch;
        let order = webvae::data::epoch_permutation(train.count, schedule.seed, epoch);
        let start = (step % steps_per_epoch) as usize * schedule.batch_size;
        let x: Vec<f64> = order[start..start + schedule.batch_size].iter().flat_map(|&i| train.image(i as usize)).map(|p| p as f64).collect();
        let rows = schedule.batch_size;
        let pass = oracle::forward(&g, &params, Some(&x), rows, Mode::Posterior, schedule.seed, step);
        let warm = schedule.kl_weight(step);
        let kl: Vec<f64> = pass.kl(&g).iter().map(|k| k.iter().sum::<f64>() / rows as f64).collect();
        let recon = pass.reconstruction(&g, &x, webvae::model::Likelihood::Bernoulli).iter().sum::<f64>() / rows as f64;
        let grads = oracle::backward(&g, &params, &pass, &x, webvae::model::Likelihood::Bernoulli, &vec![warm; kl.len()], 1.0 / rows as f64);
        optim::adam(&mut params, &grads, &mut m, &mut v, step + 1, schedule.learning_rate(step) as f64);
        trainer.train(1).unwrap();
        let got = trainer.metrics().await.unwrap_or_else(|e| panic!("{e}"));
        let what = format!("small hierarchy on the {} step {step}", device.kind());
        assert_close(&format!("{what} reconstruction"), &[got.reconstruction as f32], &[recon as f32], 2e-4, 1e-3);
        assert_close(&format!("{what} KL per group"), &f32s(&got.kl), &f32s(&kl), 2e-3, 1e-3);
        assert_close(&format!("{what} loss"), &[got.loss as f32], &[(recon + warm * kl.iter().sum::<f64>()) as f32], 2e-4, 1e-3);
    }
    let got = trainer.parameters().await.unwrap();
    let worst = assert_tensors_agree(&format!("small hierarchy on the {} after 20 steps", device.kind()), &g.tensors, &got, &f32s(&params), &initial);
    let changed = got.iter().zip(&initial).filter(|(a, b)| a != b).count();
    assert!(changed > g.len / 2, "only {changed} of {} parameters changed", g.len);
    log(&format!("training parity of the small hierarchy on the {}: 20 steps match the graph oracle (largest weight difference {worst:.2} of its tensor's tolerance)", device.kind()));
}

/// `graph_training_parity` on the GPU in both kernel shapes.
pub async fn gpu_graph_training_parity(log: impl Fn(&str)) {
    for shape in KernelShape::ALL {
        let gpu = gpu_or_fail(&log).await.with_shape(shape);
        log(&format!("{} kernels:", shape.name()));
        graph_training_parity(&log, Device::Gpu(gpu)).await;
    }
}

/// The same model's evaluation, bound, samples and reconstructions on the GPU and on the CPU
/// path after a few steps of the same training: the GPU graph trainer's passes against the CPU
/// path's (itself checked against the oracle above).
pub async fn graph_passes_agree(log: impl Fn(&str)) {
    use webvae::backend::GraphBackend;
    use webvae::training::Schedule;
    let (train, test) = tiny_mnist(96);
    let schedule = Schedule { batch_size: 16, learning_rate: 3e-3, final_learning_rate: 1e-3, total_steps: 20, kl_warmup_steps: 8, seed: 3 };
    let gpu = gpu_or_fail(&log).await;
    let on = |device: Device| GraphBackend::new(&device, &small_hierarchy(), schedule.clone(), &train, &test).unwrap_or_else(|e| panic!("{e}"));
    let (mut a, mut b) = (on(Device::Gpu(gpu)), on(Device::Cpu));
    a.train(6).unwrap();
    b.train(6).unwrap();
    let (ea, eb) = (a.evaluate().await.unwrap(), b.evaluate().await.unwrap());
    assert_close("test -ELBO, reconstruction and KL per group", &f32s(&[[ea.nelbo, ea.reconstruction].as_slice(), &ea.kl].concat()), &f32s(&[[eb.nelbo, eb.reconstruction].as_slice(), &eb.kl].concat()), 2e-4, 1e-3);
    let (ia, ib) = (a.importance_weighted_nll(5).await.unwrap(), b.importance_weighted_nll(5).await.unwrap());
    assert_close("importance-weighted bound, k = 5", &[ia as f32], &[ib as f32], 2e-4, 1e-3);
    assert!(ia < ea.nelbo, "the bound {ia} is not below the ELBO {}", ea.nelbo);
    for mean in [false, true] {
        let (sa, sb) = (a.sample(12, 7, mean).await.unwrap(), b.sample(12, 7, mean).await.unwrap());
        assert_close(&format!("samples from the prior (means: {mean})"), &sa, &sb, 1e-3, 1e-4);
    }
    let x: Vec<f32> = (0..5).flat_map(|i| test.image(i)).collect();
    assert_close("reconstructions", &a.reconstruct(&x).await.unwrap(), &b.reconstruct(&x).await.unwrap(), 1e-3, 1e-4);
    // What a hierarchy shows: the top group kept (at x's posterior mean) and the lower one drawn
    // from its prior, and the reverse (the lower group's code kept, the top one redrawn); the
    // top group's code decoded with the lower one at its prior mean.
    use webvae::model::Draw;
    use webvae::ops::gaussian::Mode;
    let rows = 5;
    let kept = b.decode_drawn(Some(&x), rows, &[Draw::Sample(Mode::PosteriorMean), Draw::Sample(Mode::PosteriorMean)], 0).await.unwrap();
    let views: [(&str, Vec<Draw>, u32); 4] = [
        ("the top group kept, the lower one redrawn", vec![Draw::Sample(Mode::PosteriorMean), Draw::Sample(Mode::Prior)], 11),
        ("the same with other noise", vec![Draw::Sample(Mode::PosteriorMean), Draw::Sample(Mode::Prior)], 12),
        ("the lower group kept, the top one redrawn", vec![Draw::Sample(Mode::Prior), Draw::Given(kept.z[1].clone())], 11),
        ("the top group's code decoded", vec![Draw::Given(kept.z[0].clone()), Draw::Sample(Mode::PriorMean)], 0),
    ];
    let mut images = Vec::new();
    for (what, draws, seed) in views {
        let (da, db) = (a.decode_drawn(Some(&x), rows, &draws, seed).await.unwrap(), b.decode_drawn(Some(&x), rows, &draws, seed).await.unwrap());
        assert_close(what, &da.images, &db.images, 1e-3, 1e-4);
        for (group, (za, zb)) in da.z.iter().zip(&db.z).enumerate() {
            assert_close(&format!("{what}: group {group}'s code"), za, zb, 1e-3, 1e-4);
        }
        // A kept group's code is the one given, or x's posterior mean again.
        for (group, draw) in draws.iter().enumerate() {
            match draw {
                Draw::Given(z) => assert!(&da.z[group] == z && &db.z[group] == z, "{what}: group {group}'s given code changed"),
                Draw::Sample(Mode::PosteriorMean) => assert_eq!(db.z[group], kept.z[group], "{what}: group {group}'s code was not kept"),
                _ => {}
            }
        }
        images.push(db.images);
    }
    let moved = images[0].iter().zip(&images[1]).filter(|(p, q)| (*p - *q).abs() > 1e-3).count();
    assert!(moved > 0, "redrawing the lower group with other noise changed no pixel");
    // The top group's posterior: its mean is the code the posterior-mean pass decoded.
    let (code_a, code_b) = (a.encode(&x).await.unwrap(), b.encode(&x).await.unwrap());
    let (webvae::latent::Encoding::Gaussian { mu: mu_a, logvar: lv_a }, webvae::latent::Encoding::Gaussian { mu: mu_b, logvar: lv_b }) = (&code_a, &code_b) else { panic!("a Gaussian top group") };
    assert_close("the top group's posterior means", mu_a, mu_b, 1e-3, 1e-4);
    assert_close("the top group's posterior log-variances", lv_a, lv_b, 1e-3, 1e-4);
    assert_eq!(mu_b, &kept.z[0], "the posterior mean is not the code a posterior-mean pass decodes");
    assert_eq!(mu_b.len(), rows * 3);
    let refused = b.decode_drawn(None, rows, &[Draw::Sample(Mode::PosteriorMean), Draw::Sample(Mode::Prior)], 0).await.unwrap_err().to_string();
    assert!(refused.contains("needs images"), "{refused}");
    let refused = a.decode_drawn(None, rows, &[Draw::Given(vec![0.0; 3]), Draw::Sample(Mode::Prior)], 0).await.unwrap_err().to_string();
    assert!(refused.contains("takes 5 codes"), "{refused}");
    // The page's calls: each digit's variations (rows after rows), one part of its code kept at
    // x's posterior mean and the rest redrawn; and top-group codes decoded, the lower group at
    // its prior mean.
    use webvae::model::Keep;
    for (keep, kept_group, redrawn) in [(Keep::Top, 0, 1), (Keep::Lower, 1, 0)] {
        let (va, vb) = (a.variations(&x, 3, keep, 4).await.unwrap(), b.variations(&x, 3, keep, 4).await.unwrap());
        assert_close(&format!("variations keeping {keep:?}"), &va.images, &vb.images, 1e-3, 1e-4);
        assert_eq!(vb.images.len(), x.len() * 3);
        let (n, m) = (kept.z[kept_group].len() / rows, kept.z[redrawn].len() / rows);
        for (r, v) in (0..rows).flat_map(|r| (0..3).map(move |v| (r, v))) {
            let at = (r * 3 + v) * n;
            assert_close(&format!("keeping {keep:?}: digit {r}'s variation {v}'s kept code"), &vb.z[kept_group][at..at + n], &kept.z[kept_group][r * n..(r + 1) * n], 1e-5, 1e-6);
        }
        let (first, second) = (&vb.z[redrawn][..m], &vb.z[redrawn][m..2 * m]);
        assert!(first.iter().zip(second).any(|(p, q)| (p - q).abs() > 1e-3), "keeping {keep:?}: a digit's two variations drew the same code");
    }
    let refused = b.variations(&x, 0, Keep::Top, 1).await.unwrap_err().to_string();
    assert!(refused.contains("at least one"), "{refused}");
    let top = &kept.z[0];
    assert_close("top-group codes decoded", &a.decode_top(top).await.unwrap(), &b.decode_top(top).await.unwrap(), 1e-3, 1e-4);
    assert_eq!(b.decode_top(top).await.unwrap(), images[3], "decode_top is not the top group's code decoded with the lower one at its prior mean");
    log(&format!("the GPU's graph passes (evaluation {:.3} nats, bound {ia:.3}, samples, reconstructions, each group kept or redrawn, variations, the top group's posterior): match the CPU path's", ea.nelbo));
}

/// The MLP preset trained as a graph (`Graph::from_config`, by the graph trainers) and as the
/// layer stack it is (`Backend`) on `device`: the same initial weights, and 6 steps with the same
/// batches, noise and updates give the same losses and weights.
pub async fn preset_trains_as_a_graph(log: impl Fn(&str), device: Device) {
    use webvae::backend::GraphBackend;
    use webvae::model::{Config, Graph};
    use webvae::training::Schedule;
    let (train, test) = small_mnist(208);
    let config = Config { batch_size: 32, ..Config::preset("mlp").unwrap() };
    let schedule = Schedule { batch_size: 32, learning_rate: config.learning_rate, final_learning_rate: config.learning_rate, total_steps: 0, kl_warmup_steps: 0, seed: config.seed };
    let mut stack = Backend::new(&device, config.clone(), &train, &test).unwrap_or_else(|e| panic!("{e}"));
    let mut graph = GraphBackend::new(&device, &Graph::from_config(&config).unwrap(), schedule, &train, &test).unwrap_or_else(|e| panic!("{e}"));
    let initial = stack.parameters().await.unwrap();
    assert_eq!(graph.parameters().await.unwrap(), initial, "initial weights");
    for step in 0..6 {
        stack.train(1).unwrap();
        graph.train(1).unwrap();
        let (a, b) = (stack.metrics().await.unwrap(), graph.metrics().await.unwrap());
        let what = format!("the MLP preset as a graph on the {}, step {step}", device.kind());
        assert_close(&format!("{what}: loss, reconstruction, KL"), &f32s(&[b.loss, b.reconstruction, b.kl[0]]), &f32s(&[a.loss, a.reconstruction, a.kl]), 1e-4, 1e-3);
    }
    let layout = stack.layout().tensors.clone();
    let worst = assert_tensors_agree(&format!("the MLP preset as a graph on the {}, after 6 steps", device.kind()), &layout, &graph.parameters().await.unwrap(), &stack.parameters().await.unwrap(), &initial);
    log(&format!("the MLP preset trained as a graph on the {}: 6 steps match the layer stack's (largest weight difference {worst:.2} of its tensor's tolerance)", device.kind()));
}

/// A graph model saved with Adam's state mid-training resumes exactly on `device`: a fresh
/// trainer given the weights and the state after 8 steps (in the second epoch) takes the next 6
/// (across an epoch's end, the learning rate decaying) to the same bits as the trainer that
/// never stopped.
pub async fn graph_resumes_exactly(log: impl Fn(&str), device: Device) {
    use webvae::backend::GraphBackend;
    use webvae::training::Schedule;
    let (train, test) = tiny_mnist(96);
    let schedule = Schedule { batch_size: 16, learning_rate: 3e-3, final_learning_rate: 1e-3, total_steps: 20, kl_warmup_steps: 8, seed: 3 };
    let new = || GraphBackend::new(&device, &small_hierarchy(), schedule.clone(), &train, &test).unwrap_or_else(|e| panic!("{e}"));
    let (mut straight, mut resumed) = (new(), new());
    straight.train(8).unwrap();
    straight.metrics().await.unwrap();
    let (params, state) = (straight.parameters().await.unwrap(), straight.optimizer_state().await.unwrap());
    assert_eq!(state.step, 8);
    resumed.resume(&params, &state).unwrap();
    straight.train(6).unwrap();
    resumed.train(6).unwrap();
    let (a, b) = (straight.metrics().await.unwrap(), resumed.metrics().await.unwrap());
    assert_eq!((a.loss, a.reconstruction, &a.kl), (b.loss, b.reconstruction, &b.kl), "the resumed steps' losses differ on the {}", device.kind());
    let (pa, pb) = (straight.parameters().await.unwrap(), resumed.parameters().await.unwrap());
    let differ = pa.iter().zip(&pb).filter(|(x, y)| x != y).count();
    assert_eq!(differ, 0, "{differ} weights differ after resuming on the {}", device.kind());
    let refused = resumed.resume(&params[1..], &state).unwrap_err().to_string();
    assert!(refused.contains("parameters"), "{refused}");
    log(&format!("a graph model resumed from its weights and Adam's state after 8 steps trains 6 more to the same bits on the {}", device.kind()));
}
