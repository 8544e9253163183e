//! Test bodies shared by the native tests (lavapipe or a real GPU) and the browser tests
//! (headless Chromium on WebGPU): each runs a WGSL kernel and checks it against the CPU oracle.

use webvae::gpu::Gpu;
use webvae::kernels::{run_linear_forward, Kernels};
use webvae::reference::{linear_forward, Activation};
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

/// The linear layer with fused bias and activation, on shapes that exercise the 4x4 blocks'
/// edges (sizes not multiples of 4 or 32) and the reference model's largest layer.
pub async fn linear_forward_parity(log: impl Fn(&str)) {
    let gpu = gpu_or_fail(&log).await;
    let kernels = Kernels::new(&gpu.device);
    let mut rng = Rng::new(7);
    let cases = [
        (1, 1, 1, Activation::Identity),
        (5, 7, 3, Activation::Relu),
        (33, 20, 17, Activation::Tanh),
        (37, 2, 400, Activation::Relu),
        (128, 784, 400, Activation::Relu),
    ];
    for (rows, inner, cols, act) in cases {
        let x = rng.vec(rows * inner, 0.0, 1.0);
        let w = rng.vec(cols * inner, -0.1, 0.1);
        let b = rng.vec(cols, -0.5, 0.5);
        let want = f32s(&linear_forward(&f64s(&x), &f64s(&w), &f64s(&b), rows, inner, cols, act));
        let got = run_linear_forward(&gpu, &kernels, &x, &w, &b, (rows, inner, cols), act)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_close(&format!("linear_forward {rows}x{inner}x{cols} {act:?}"), &got, &want, 1e-4, 1e-5);
        // A kernel that wrote nothing would leave zeros: make sure the check could fail.
        assert!(want.iter().any(|&v| v != 0.0));
        log(&format!("linear_forward {rows}x{inner}x{cols} {act:?}: matches the CPU reference"));
    }
}
