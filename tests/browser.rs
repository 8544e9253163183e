//! WGSL kernels in a real browser on WebGPU: `wasm-pack test --headless --chrome`.
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

mod common;

fn log(s: &str) {
    console_log!("{s}");
}

#[wasm_bindgen_test]
async fn linear_forward_matches_reference() {
    common::linear_forward_parity(log).await;
}
