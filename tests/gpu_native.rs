//! WGSL kernels on the native adapter wgpu finds (Mesa's lavapipe on a machine without a GPU).
#![cfg(not(target_arch = "wasm32"))]

mod common;

fn log(s: &str) {
    println!("{s}");
}

#[test]
fn linear_kernels_match_reference() {
    pollster::block_on(common::linear_parity(log));
}

#[test]
fn conv_kernels_match_reference() {
    pollster::block_on(common::conv_parity(log));
}

#[test]
fn loss_latent_and_adam_kernels_match_reference() {
    pollster::block_on(common::small_kernels_parity(log));
}

#[test]
fn rng_matches_reference_bit_for_bit() {
    pollster::block_on(common::rng_parity(log));
}

#[test]
fn training_steps_match_reference() {
    pollster::block_on(common::training_parity(log));
}

#[test]
fn cpu_training_steps_match_reference() {
    pollster::block_on(common::cpu_training_parity(log));
}

#[test]
fn hierarchy_kernels_match_reference() {
    pollster::block_on(common::hierarchy_ops_parity(log));
}

#[test]
fn graph_training_steps_match_reference() {
    pollster::block_on(common::gpu_graph_training_parity(log));
}

#[test]
fn graph_passes_match_the_cpu_path() {
    pollster::block_on(common::graph_passes_agree(log));
}

#[test]
fn the_mlp_preset_trains_as_a_graph() {
    let gpu = pollster::block_on(common::gpu_or_fail(log));
    pollster::block_on(common::preset_trains_as_a_graph(log, webvae::backend::Device::Gpu(gpu)));
}

#[test]
fn a_graph_model_resumes_exactly() {
    let gpu = pollster::block_on(common::gpu_or_fail(log));
    pollster::block_on(common::graph_resumes_exactly(log, webvae::backend::Device::Gpu(gpu)));
}
