//! A real GPU compiler's verdict on the hardware kernel shape: every pipeline a GPU would build
//! is compiled by AMD's compiler (ACO, inside Mesa's radv) for GFX9 (vega10) and GFX10.3
//! (navi21) on radv's null device, and none may spill a register or use scratch memory, and
//! every product must hold at least 4 waves per SIMD. No GPU is needed; radv must be installed
//! (`make setup` installs Debian's mesa-vulkan-drivers): without it this test fails, saying so.
//! `make gpu-report` prints the figures.
#![cfg(not(target_arch = "wasm32"))]

use webvae::kernels::{Kernel, KernelShape};
use webvae::radv;

#[test]
fn a_gpu_compiler_fits_every_hardware_kernel_without_spills_at_four_waves_per_simd() {
    // One test in this binary: radv reads its family from the environment, which `compile` sets.
    for family in radv::FAMILIES {
        let stats = radv::compile(family, KernelShape::Hardware).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stats.len(), KernelShape::Hardware.kernels().count(), "{family}: every hardware pipeline is compiled");
        let problems: Vec<String> = stats.iter().filter_map(|s| s.problem(4).map(|p| format!("{}: {p}", s.kernel.name()))).collect();
        assert!(problems.is_empty(), "{family}, hardware shape:\n  {}", problems.join("\n  "));
        let products = stats.iter().filter(|s| s.kernel.is_product()).count();
        assert!(products >= 7, "{family}: only {products} products compiled");
        // The check can fail: the software shape's 16 x 16 blocks are known to spill on both.
        let software = radv::compile(family, KernelShape::Software).unwrap_or_else(|e| panic!("{e}"));
        let conv_down = software.iter().find(|s| s.kernel == Kernel::ConvDown).expect("the software shape has conv_down");
        assert!(conv_down.problem(4).is_some(), "{family}: the software shape's conv_down was expected to spill: {conv_down:?}");
    }
}
