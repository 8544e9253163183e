//! Every shader, as the crate compiles it (common.wgsl, gemm.wgsl where used, then the file),
//! parses and validates with naga; every file in shaders/ is used; and every uniform record's
//! members sit at the offsets of its Rust `#[repr(C)]` twin, so the two cannot drift apart.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::BTreeSet;
use std::mem::{offset_of, size_of};

use webvae::kernels::{joined, Kernel, KernelShape, StepRecord, SHADERS};
use webvae::ops::{categorical::CategoricalOp, conv::ConvOp, data::GatherOp, elementwise::ElementwiseOp, gaussian::GaussianOp, latent::LatentOp, linear::LinearOp, loss::LossOp, optim::OptimOp};

fn module(file: &str) -> naga::Module {
    let source = joined(file);
    let module = naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| panic!("{file} (joined):\n{}", e.emit_to_string(&source)));
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::default())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{file} (joined):\n{}", e.emit_to_string(&source)));
    module
}

#[test]
fn every_shader_parses_and_validates() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    let on_disk: BTreeSet<String> = std::fs::read_dir(dir)
        .expect("shaders/ exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wgsl"))
        .collect();
    let mut used: BTreeSet<String> = ["common.wgsl", "gemm.wgsl"].map(String::from).into();
    for &(file, _, _) in SHADERS {
        module(file);
        used.insert(file.to_string());
    }
    assert_eq!(on_disk, used, "shaders/ and kernels::SHADERS disagree");
}

/// Member names and byte offsets of WGSL struct `name` in `file`'s joined module, and its size.
fn wgsl_layout(file: &str, name: &str) -> (Vec<(String, usize)>, usize) {
    let module = module(file);
    let (_, ty) = module.types.iter().find(|(_, t)| t.name.as_deref() == Some(name)).unwrap_or_else(|| panic!("no struct {name} in {file}"));
    match &ty.inner {
        naga::TypeInner::Struct { members, span } => {
            (members.iter().map(|m| (m.name.clone().unwrap_or_default(), m.offset as usize)).collect(), *span as usize)
        }
        other => panic!("{name} in {file} is not a struct: {other:?}"),
    }
}

/// (field name, offset) of a Rust record, listed by name; `offset_of!` fails to compile if a
/// listed field does not exist, and the size check catches one that is not listed.
macro_rules! fields {
    ($t:ty { $($f:ident),* $(,)? }) => {
        (vec![$((stringify!($f).to_string(), offset_of!($t, $f))),*], size_of::<$t>())
    };
}

#[test]
fn uniform_records_match_their_rust_twins() {
    let records = [
        ("common.wgsl", "Step", fields!(StepRecord { t, rng_step, batch_start })),
        ("data.wgsl", "Gather", fields!(GatherOp { rows, pixels, x_off })),
        (
            "linear.wgsl",
            "Linear",
            fields!(LinearOp { rows, inner, cols, act, x_off, w_off, b_off, y_off, dy_off, dx_off, dw_off, db_off, dyt_off, parts, part_off, gather }),
        ),
        (
            "conv.wgsl",
            "Conv",
            fields!(ConvOp {
                batch, lc, lh, lw, sc, sh, sw, k, s, p, taps, act, mode, large_off, small_off, out_off, w_off, b_off, slope_off, db_off,
                sum_off, sum_c, sum_hw, parts, part_off, gather
            }),
        ),
        (
            "categorical.wgsl",
            "Categorical",
            fields!(CategoricalOp {
                batch, rows, variables, classes, seed, logits_off, noise_off, y_off, dy_off, dlogits_off, kl_off, recon_off, mode,
                kl_weight, tau_start, tau_floor, tau_rate
            }),
        ),
        (
            "latent.wgsl",
            "Latent",
            fields!(LatentOp { batch, rows, latent, seed, ml_off, eps_off, z_off, dz_off, dml_off, kl_off, recon_off, kl_weight, use_mean }),
        ),
        ("elementwise.wgsl", "Elementwise", fields!(ElementwiseOp { len, a_off, b_off, y_off, accumulate, activation })),
        (
            "gaussian.wgsl",
            "Gaussian",
            fields!(GaussianOp {
                rows, n, seed, dim_base, prior_off, delta_off, eps_off, z_off, dz_off, dprior_off, ddelta_off, kl_off, ratio_off, kl_weight, mode, warmup
            }),
        ),
        (
            "loss.wgsl",
            "Loss",
            fields!(LossOp { rows, pixels, batch, likelihood, out_off, x_off, grad_off, recon_off, scale, inv_var, log_norm, log_var_floor }),
        ),
        ("optim.wgsl", "Optim", fields!(OptimOp { batch, rows, recon_off, kl_off, metrics_off, count, lr, beta, check, groups, warmup, lr_final, total_steps })),
    ];
    for (file, name, (rust, rust_size)) in records {
        // The Step record is in common.wgsl, which every joined module starts with.
        let file = if file == "common.wgsl" { "data.wgsl" } else { file };
        let (wgsl, span) = wgsl_layout(file, name);
        assert_eq!(wgsl, rust, "{name} in {file}: WGSL members vs the Rust record's fields");
        assert_eq!(span, rust_size, "{name} in {file}: WGSL size vs the Rust record's");
    }
}

/// The tiled products' pipelines, with the constants each sets in each kernel shape, have 64
/// invocations covering exactly the tile the dispatch geometry assumes (`Kernel::tile`), and
/// their workgroup memory holds exactly one chunk of each tile: gemm.wgsl's override
/// expressions and their Rust mirror cannot drift apart.
#[test]
fn tiled_pipelines_cover_the_tiles_dispatched() {
    use naga::back::{pipeline_constants::process_overrides, PipelineConstants};
    for shape in KernelShape::ALL {
        // The tiled pipelines: every entry point whose workgroup size the tile constants set.
        let tiled: Vec<Kernel> = shape
            .kernels()
            .filter(|k| {
                let (file, entry) = k.source();
                let source = joined(file);
                let at = source.find(&format!("fn {entry}(")).unwrap_or_else(|| panic!("{k:?}: no fn {entry}"));
                let attribute = source[..at].rfind("@workgroup_size(").map(|a| &source[a..at]).unwrap_or("");
                attribute.contains("TILE_")
            })
            .collect();
        // Linear x 3, conv down and up (in the software shape each in two tile shapes), conv weight.
        assert!(tiled.len() >= 6, "{shape:?}: tiled pipelines found: {tiled:?}");
        for kernel in tiled {
            let (file, entry) = kernel.source();
            let module = module(file);
            let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::default())
                .validate(&module)
                .unwrap();
            let constants: PipelineConstants = kernel.constants(shape, false).iter().map(|&(k, v)| (k.to_string(), v)).collect();
            let (module, _) = process_overrides(&module, &info, Some((naga::ShaderStage::Compute, entry)), &constants)
                .unwrap_or_else(|e| panic!("{kernel:?}: {e}"));
            // A constant of the entry point (those it does not use are compacted away).
            let constant = |name: &str| {
                let (_, c) = module.constants.iter().find(|(_, c)| c.name.as_deref() == Some(name))?;
                match module.global_expressions[c.init] {
                    naga::Expression::Literal(naga::Literal::U32(v)) => Some(v),
                    ref e => panic!("{kernel:?}: {name} = {e:?}"),
                }
            };
            let value = |name: &str| constant(name).unwrap_or_else(|| panic!("{kernel:?} has no constant {name}"));
            let what = format!("{kernel:?} ({} shape)", shape.name());
            let tile = (value("TILE_ROWS"), value("TILE_COLS"));
            assert_eq!(tile, kernel.tile(shape), "{what}: the shader's tile and the dispatches' disagree");
            let size = module.entry_points.iter().find(|e| e.name == entry).unwrap().workgroup_size;
            assert_eq!(size[0] * size[1] * size[2], 64, "{what}: workgroup {size:?}");
            assert_eq!((size[1] * value("BLOCK_ROWS"), size[0] * value("BLOCK_COLS")), tile, "{what}: blocks do not cover the tile");
            assert_eq!((value("A_TILE"), value("B_TILE")), (value("TK") * tile.0 / 4, value("TK") * tile.1 / 4), "{what}: workgroup memory");
        }
        let (file, entry) = Kernel::ConvWeightSplit.source();
        let module = module(file);
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::default()).validate(&module).unwrap();
        let constants: PipelineConstants = Kernel::ConvWeightSplit.constants(shape, false).iter().map(|&(k, v)| (k.to_string(), v)).collect();
        let (module, _) = process_overrides(&module, &info, Some((naga::ShaderStage::Compute, entry)), &constants).unwrap();
        let split = module.constants.iter().find(|(_, c)| c.name.as_deref() == Some("SPLIT")).map(|(_, c)| &module.global_expressions[c.init]);
        assert!(
            matches!(split, Some(naga::Expression::Literal(naga::Literal::U32(v))) if *v == Kernel::split(shape)),
            "{shape:?}: split_product's block {split:?} and the dispatches' ({}) disagree",
            Kernel::split(shape)
        );
    }
}
