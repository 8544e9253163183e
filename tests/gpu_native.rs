//! WGSL kernels on the native adapter wgpu finds (Mesa's lavapipe on a machine without a GPU).
#![cfg(not(target_arch = "wasm32"))]

mod common;

#[test]
fn linear_forward_matches_reference() {
    pollster::block_on(common::linear_forward_parity(|s| println!("{s}")));
}
