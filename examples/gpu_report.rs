//! `make gpu-report`: what AMD's compiler makes of every kernel in both shapes, on radv's
//! null device for GFX9 (vega10) and GFX10.3 (navi21); no GPU needed. One line per kernel:
//!   gpu-report family navi21 shape hardware kernel conv_down vgprs 24 spilled_vgprs 0 scratch_bytes 0 waves_per_simd 16 ...
//! then, per family and shape, the kernels a GPU would struggle with (spills, scratch, a product
//! under 4 waves per SIMD). Only the hardware shape is held to that (tests/radv.rs). Last, the
//! grid of every product of each preset's training step at batch 128 in the hardware shape
//! (`gpu-grid preset conv kernel linear_forward grid 8x4x5 workgroups 160`; a z of parts is a
//! split reduction), against the 160 workgroups a 40-compute-unit GPU wants (4 waves each).

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
    for preset in ["mlp", "conv"] {
        let config = webvae::model::Config::preset(preset).expect("a preset");
        // The fewest workgroups of a tiled product doing real work (at least 50 MFLOP: the
        // latent heads' and the direct kernels' few workgroups are short work).
        let mut fewest = u32::MAX;
        for d in webvae::trainer::step_dispatches(&config, KernelShape::Hardware).iter().filter(|d| d.flops > 0.0) {
            let (x, y, z) = d.groups;
            if d.flops >= 50e6 {
                fewest = fewest.min(x * y * z);
            }
            println!("gpu-grid preset {preset} kernel {} grid {x}x{y}x{z} workgroups {} mflop {:.1}", d.kernel.name(), x * y * z, d.flops / 1e6);
        }
        println!("gpu-grid preset {preset} fewest_workgroups_over_50_mflop {fewest} wanted {}", webvae::kernels::GROUPS_WANTED);
    }
}

// radv is native; on wasm32 (e.g. `wasm-pack test` building every target) this example is empty.
#[cfg(target_arch = "wasm32")]
fn main() {}
