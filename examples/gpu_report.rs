//! `make gpu-report`: what AMD's compiler makes of every kernel in both shapes, on radv's
//! null device for GFX9 (vega10) and GFX10.3 (navi21); no GPU needed. One line per kernel:
//!   gpu-report family navi21 shape hardware kernel conv_down vgprs 24 spilled_vgprs 0 scratch_bytes 0 waves_per_simd 16 ...
//! then, per family and shape, the kernels a GPU would struggle with (spills, scratch, a product
//! under 4 waves per SIMD). Only the hardware shape is held to that (tests/radv.rs).

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    use webvae::kernels::KernelShape;
    use webvae::radv;

    for family in radv::FAMILIES {
        for shape in KernelShape::ALL {
            let stats = radv::compile(family, shape).unwrap_or_else(|e| {
                eprintln!("gpu-report: {e}");
                std::process::exit(1);
            });
            for s in &stats {
                println!("{}", s.line(family, shape));
            }
            let problems: Vec<String> = stats.iter().filter_map(|s| s.problem(4).map(|p| format!("{}: {p}", s.kernel.name()))).collect();
            println!("gpu-report family {family} shape {} kernels {} problems {}", shape.name(), stats.len(), problems.len());
            for p in problems {
                println!("  {p}");
            }
        }
    }
}

// radv is native; on wasm32 (e.g. `wasm-pack test` building every target) this example is empty.
#[cfg(target_arch = "wasm32")]
fn main() {}
