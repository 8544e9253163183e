//! WGSL kernels in a real browser on WebGPU: `wasm-pack test --headless --chrome`.
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

mod common;

fn log(s: &str) {
    console_log!("{s}");
}

#[wasm_bindgen_test]
async fn linear_kernels_match_reference() {
    common::linear_parity(log).await;
}

#[wasm_bindgen_test]
async fn conv_kernels_match_reference() {
    common::conv_parity(log).await;
}

#[wasm_bindgen_test]
async fn loss_latent_and_adam_kernels_match_reference() {
    common::small_kernels_parity(log).await;
}

#[wasm_bindgen_test]
async fn rng_matches_reference_bit_for_bit() {
    common::rng_parity(log).await;
}

#[wasm_bindgen_test]
async fn training_steps_match_reference() {
    common::training_parity(log).await;
}

#[wasm_bindgen_test]
async fn cpu_training_steps_match_reference() {
    common::cpu_training_parity(log).await;
}

#[wasm_bindgen_test]
async fn hierarchy_kernels_match_reference() {
    common::hierarchy_ops_parity(log).await;
}

#[wasm_bindgen_test]
async fn cpu_graph_passes_match_reference() {
    common::cpu_graph_parity(log).await;
}

#[wasm_bindgen_test]
async fn cpu_graph_training_matches_reference() {
    common::graph_training_parity(log, webvae::backend::Device::Cpu).await;
}

#[wasm_bindgen_test]
async fn graph_training_matches_reference() {
    common::gpu_graph_training_parity(log).await;
}

#[wasm_bindgen_test]
async fn graph_passes_match_the_cpu_path() {
    common::graph_passes_agree(log).await;
}

#[wasm_bindgen_test]
async fn the_mlp_preset_trains_as_a_graph() {
    let gpu = common::gpu_or_fail(log).await;
    common::preset_trains_as_a_graph(log, webvae::backend::Device::Gpu(gpu)).await;
}

#[wasm_bindgen_test]
async fn a_graph_model_resumes_exactly() {
    let gpu = common::gpu_or_fail(log).await;
    common::graph_resumes_exactly(log, webvae::backend::Device::Gpu(gpu)).await;
}
