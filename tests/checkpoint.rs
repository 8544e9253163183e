//! Checkpoints: a round trip, the exact safetensors layout (checked by the `safetensors` Python
//! package, as a PyTorch user would read it), and a clear error for every corrupt, truncated or
//! mismatched file.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use webvae::checkpoint::{load, save, CheckpointError};
use webvae::model::{initial_parameters, Config, Layout};

fn small() -> (Config, Layout, Vec<f32>) {
    let config = Config::mlp(12, &[7, 5], 3);
    let layout = Layout::new(&config);
    let params = initial_parameters(&config, &layout, None);
    (config, layout, params)
}

/// The JSON header of a file written by `save`, and where its data starts.
fn header(bytes: &[u8]) -> (serde_json::Value, usize) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), 8 + n)
}

/// Rewrites the header of `bytes` with `edit` applied, keeping the data.
fn with_header(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let (mut h, start) = header(bytes);
    edit(&mut h);
    let json = serde_json::to_vec(&h).unwrap();
    [&(json.len() as u64).to_le_bytes()[..], &json, &bytes[start..]].concat()
}

fn mismatch(bytes: &[u8]) -> String {
    match load(bytes) {
        Err(CheckpointError::Mismatch(why)) => why,
        other => panic!("expected a mismatch error, got {other:?}"),
    }
}

fn malformed(bytes: &[u8]) -> String {
    match load(bytes) {
        Err(CheckpointError::Malformed(why)) => why,
        other => panic!("expected a malformed-file error, got {other:?}"),
    }
}

#[test]
fn round_trip_keeps_config_parameters_and_step() {
    let (config, layout, params) = small();
    let loaded = load(&save(&config, &layout, &params, 1234)).unwrap();
    assert_eq!(loaded.config, config);
    assert_eq!(loaded.parameters, params);
    assert_eq!(loaded.step, 1234);
}

#[test]
fn layout_is_pytorch_shaped_aligned_and_contiguous() {
    let (config, layout, params) = small();
    let bytes = save(&config, &layout, &params, 0);
    let (h, start) = header(&bytes);
    assert_eq!(start % 8, 0, "data must start 8-byte aligned");
    assert_eq!(h["encoder.0.weight"]["shape"], serde_json::json!([7, 12]), "nn.Linear weight is [out, in]");
    assert_eq!(h["mu.weight"]["shape"], serde_json::json!([3, 5]));
    assert_eq!(h["logvar.bias"]["shape"], serde_json::json!([3]));
    // nn.Sequential(Linear, ReLU, Linear, ReLU, Linear): the output layer is module 4.
    assert_eq!(h["decoder.4.weight"]["shape"], serde_json::json!([12, 7]));
    assert_eq!(h["__metadata__"]["format"], "webvae");
    // Tensors tile the data section exactly, which safetensors requires.
    let mut ranges: Vec<(u64, u64)> = layout
        .tensors
        .iter()
        .map(|t| {
            let o = &h[&t.name]["data_offsets"];
            (o[0].as_u64().unwrap(), o[1].as_u64().unwrap())
        })
        .collect();
    ranges.sort();
    assert_eq!(ranges[0].0, 0);
    assert!(ranges.windows(2).all(|w| w[0].1 == w[1].0));
    assert_eq!(ranges.last().unwrap().1 as usize, bytes.len() - start);
}

/// The conv preset's tensors are named and shaped as the README's PyTorch module's
/// `state_dict()`: nn.Sequential indices count ReLU, Flatten and Unflatten as modules; Conv2d
/// weights are [out, in, k, k], ConvTranspose2d weights [in, out, k, k].
#[test]
fn conv_checkpoints_have_pytorch_names_and_shapes() {
    let config = Config::conv();
    let layout = Layout::new(&config);
    assert_eq!(layout.len, 1_691_369, "the conv preset's parameter count");
    let shapes: Vec<(&str, Vec<usize>)> = layout.tensors.iter().map(|t| (t.name.as_str(), t.shape.clone())).collect();
    let expected: Vec<(&str, Vec<usize>)> = vec![
        ("encoder.0.weight", vec![32, 1, 4, 4]),
        ("encoder.0.bias", vec![32]),
        ("encoder.2.weight", vec![64, 32, 4, 4]),
        ("encoder.2.bias", vec![64]),
        ("encoder.5.weight", vec![256, 3136]),
        ("encoder.5.bias", vec![256]),
        ("mu.weight", vec![20, 256]),
        ("logvar.weight", vec![20, 256]),
        ("mu.bias", vec![20]),
        ("logvar.bias", vec![20]),
        ("decoder.0.weight", vec![256, 20]),
        ("decoder.0.bias", vec![256]),
        ("decoder.2.weight", vec![3136, 256]),
        ("decoder.2.bias", vec![3136]),
        ("decoder.5.weight", vec![64, 32, 4, 4]),
        ("decoder.5.bias", vec![32]),
        ("decoder.7.weight", vec![32, 1, 4, 4]),
        ("decoder.7.bias", vec![1]),
    ];
    assert_eq!(shapes, expected);
    let params = initial_parameters(&config, &layout, None);
    let bytes = save(&config, &layout, &params, 9);
    let (h, _) = header(&bytes);
    assert!(h["__metadata__"]["layers"].as_str().unwrap().contains("conv_transpose2d 32 k4 s2 p1 relu"), "{}", h["__metadata__"]["layers"]);
    let loaded = load(&bytes).unwrap();
    assert_eq!((loaded.config, loaded.parameters, loaded.step), (config, params, 9));
}

/// A learned variance doubles the decoder's last layer (PyTorch: one Linear of 2 x 784 outputs,
/// or a ConvTranspose2d of 2 channels, split with chunk(2, dim=1)); the page's settings rebuild
/// the same layers from the architecture; the means' biases start at the mean image's logits,
/// the log-variances' keep PyTorch's initialisation.
#[test]
fn learned_variance_models_have_a_double_output_layer() {
    use webvae::model::{Architecture, Likelihood};
    let shape = |config: &Config, name: &str| Layout::new(config).tensor(name).map(|t| t.shape.clone());
    let mlp = Config::preset("mlp-gauss-var").unwrap();
    assert_eq!(mlp.likelihood, Likelihood::GaussianVar { variance_floor: 1e-3 });
    assert_eq!(shape(&mlp, "decoder.2.weight"), Some(vec![1568, 400]));
    let conv = Config::preset("conv-gauss-var").unwrap();
    assert_eq!((shape(&conv, "decoder.7.weight"), shape(&conv, "decoder.7.bias")), (Some(vec![32, 2, 4, 4]), Some(vec![2])));
    assert_eq!(conv.architecture(), Some(Architecture::Conv { channels: vec![32, 64], dense: 256 }));
    let from_page = Config::from_partial_json(serde_json::json!({
        "architecture": { "kind": "conv", "channels": [32, 64], "dense": 256 },
        "image": [28, 28],
        "likelihood": { "kind": "gaussian_var", "variance_floor": 0.001 },
    }))
    .unwrap();
    assert_eq!(from_page, conv);
    assert_eq!(Config::default().with_likelihood(Likelihood::gaussian_var()).with_likelihood(Likelihood::Bernoulli), Config::default());

    let layout = Layout::new(&mlp);
    let mean = vec![0.25f32; 784];
    let (with, without) = (initial_parameters(&mlp, &layout, Some(&mean)), initial_parameters(&mlp, &layout, None));
    let bias = layout.tensor("decoder.2.bias").unwrap().offset;
    assert!(with[bias..bias + 784].iter().all(|&b| (b - (1.0f32 / 3.0).ln()).abs() < 1e-6), "the means start at logit(0.25)");
    assert_eq!(with[bias + 784..bias + 1568], without[bias + 784..bias + 1568], "the log-variances keep PyTorch's init");
    let bytes = save(&mlp, &layout, &with, 3);
    assert_eq!(load(&bytes).unwrap().config, mlp);
}

/// Categorical latents have one head, `logits` (latent x classes outputs), and the decoder reads
/// codes of latent x classes values; the page rebuilds the same configuration from its settings.
#[test]
fn categorical_models_have_a_logits_head() {
    use webvae::model::LatentType;
    let config = Config::preset("mlp-categorical").unwrap();
    let layout = Layout::new(&config);
    let names: Vec<(&str, Vec<usize>)> = layout.tensors.iter().map(|t| (t.name.as_str(), t.shape.clone())).collect();
    assert_eq!(
        names,
        vec![
            ("encoder.0.weight", vec![400, 784]),
            ("encoder.0.bias", vec![400]),
            ("logits.weight", vec![200, 400]),
            ("logits.bias", vec![200]),
            ("decoder.0.weight", vec![400, 200]),
            ("decoder.0.bias", vec![400]),
            ("decoder.2.weight", vec![784, 400]),
            ("decoder.2.bias", vec![784]),
        ]
    );
    let from_page = Config::from_partial_json(serde_json::json!({
        "architecture": { "kind": "mlp", "hidden": [400], "activation": "relu" },
        "image": [28, 28],
        "latent_type": { "kind": "categorical", "classes": 10, "tau_start": 1.0, "tau_floor": 0.5, "tau_rate": 0.001 },
    }))
    .unwrap();
    assert_eq!(from_page, config);
    assert_eq!(config.latent_type, LatentType::categorical(10));
    let params = initial_parameters(&config, &layout, None);
    let loaded = load(&save(&config, &layout, &params, 4)).unwrap();
    assert_eq!((loaded.config, loaded.parameters), (config, params));
    // And a Gaussian model's configuration reads back as Gaussian.
    let gaussian = Config::default();
    let bytes = save(&gaussian, &Layout::new(&gaussian), &initial_parameters(&gaussian, &Layout::new(&gaussian), None), 1);
    assert_eq!(load(&bytes).unwrap().config.latent_type, LatentType::Gaussian {});
}

/// Adam's state rides along as `optimizer.exp_avg.*` / `optimizer.exp_avg_sq.*` tensors and an
/// `optimizer_step`; a file missing part of it, or with a negative second moment, is refused.
#[test]
fn adams_state_round_trips_and_is_checked() {
    use webvae::checkpoint::{save_with_optimizer, OptimizerState};
    let (config, layout, params) = small();
    let state = OptimizerState {
        m: params.iter().map(|p| p * 0.01).collect(),
        v: params.iter().map(|p| p * p * 1e-3).collect(),
        step: 17,
    };
    let bytes = save_with_optimizer(&config, &layout, &params, 40, Some(&state));
    let loaded = load(&bytes).unwrap();
    assert_eq!((loaded.step, loaded.parameters.clone(), loaded.optimizer.clone()), (40, params.clone(), Some(state.clone())));
    let (h, _) = header(&bytes);
    assert_eq!(h["__metadata__"]["optimizer_step"], "17");
    assert_eq!(h["optimizer.exp_avg_sq.encoder.0.weight"]["shape"], serde_json::json!([7, 12]));
    assert_eq!(load(&save(&config, &layout, &params, 40)).unwrap().optimizer, None);

    // Without its optimizer_step, the extra tensors are not the parameters' count.
    let no_step = with_header(&bytes, |h| {
        h["__metadata__"].as_object_mut().unwrap().remove("optimizer_step");
    });
    assert!(mismatch(&no_step).contains("holds 42 tensors but its configuration needs 14"), "{}", mismatch(&no_step));
    let bad_step = with_header(&bytes, |h| h["__metadata__"]["optimizer_step"] = "-3".into());
    assert!(malformed(&bad_step).contains("optimizer_step \"-3\" is not a whole number"), "{}", malformed(&bad_step));
    let renamed = with_header_text(&bytes, |t| t.replace("optimizer.exp_avg.decoder", "optimizer.exp_mean.decoder"));
    assert!(mismatch(&renamed).contains("tensor optimizer.exp_avg.decoder"), "{}", mismatch(&renamed));
    let negative = OptimizerState { v: state.v.iter().enumerate().map(|(i, v)| if i == 30 { -1e-9 } else { *v }).collect(), ..state.clone() };
    let why = mismatch(&save_with_optimizer(&config, &layout, &params, 40, Some(&negative)));
    assert!(why.contains("negative second moment"), "{why}");
}

#[test]
fn python_safetensors_reads_the_file() {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    assert!(
        std::path::Path::new(python).exists(),
        "this test needs the Python `safetensors` package in .venv; run `make setup`"
    );
    let (config, layout, params) = small();
    let path = std::env::temp_dir().join(format!("webvae-checkpoint-{}.safetensors", std::process::id()));
    std::fs::write(&path, save(&config, &layout, &params, 42)).unwrap();
    let out = std::process::Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check_safetensors.py"))
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).ok();
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(read["metadata"]["step"], "42");
    let saved = Config::from_json(read["metadata"]["config"].as_str().unwrap()).unwrap();
    assert_eq!(saved, config);
    assert_eq!(read["tensors"].as_object().unwrap().len(), layout.tensors.len());
    for t in &layout.tensors {
        let r = &read["tensors"][&t.name];
        assert_eq!(r["dtype"], "float32", "{}", t.name);
        assert_eq!(r["shape"], serde_json::json!(t.shape), "{}", t.name);
        let sum: f64 = params[t.range()].iter().map(|&p| p as f64).sum();
        assert!((r["sum"].as_f64().unwrap() - sum).abs() < 1e-9, "{}: sum differs", t.name);
    }
}

#[test]
fn every_truncation_is_an_error() {
    let (config, layout, params) = small();
    let bytes = save(&config, &layout, &params, 0);
    for len in 0..bytes.len() {
        assert!(load(&bytes[..len]).is_err(), "a file cut to {len} of {} bytes loaded", bytes.len());
    }
}

#[test]
fn malformed_files_say_what_is_wrong() {
    let (config, layout, params) = small();
    let good = save(&config, &layout, &params, 0);
    assert!(malformed(b"1234").contains("fewer than the 8-byte"));
    assert!(malformed(&u64::MAX.to_le_bytes()).contains("header claims"));
    let mut not_json = good.clone();
    not_json[8] = b'#';
    assert!(malformed(&not_json).contains("not valid JSON"));
    // An IDX file or a PNG is not a checkpoint.
    assert!(load(&[0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28]).is_err());
    let bad_offsets = with_header(&good, |h| h["decoder.4.bias"]["data_offsets"] = serde_json::json!([0, 4]));
    assert!(malformed(&bad_offsets).contains("does not match its shape"), "{}", malformed(&bad_offsets));
    let bad_step = with_header(&good, |h| h["__metadata__"]["step"] = "many".into());
    assert!(malformed(&bad_step).contains("step"));
}

#[test]
fn mismatched_files_name_the_problem() {
    let (config, layout, params) = small();
    let good = save(&config, &layout, &params, 0);
    let no_config = with_header(&good, |h| {
        h["__metadata__"].as_object_mut().unwrap().remove("config");
    });
    assert!(mismatch(&no_config).contains("no \"config\" or \"graph\" entry"));
    let other_latent = with_header(&good, |h| {
        let c = Config { latent: 4, ..config.clone() };
        h["__metadata__"]["config"] = serde_json::to_string(&c).unwrap().into();
    });
    assert!(mismatch(&other_latent).contains("shape"), "{}", mismatch(&other_latent));
    let invalid = with_header(&good, |h| {
        let c = Config { learning_rate: -1.0, ..config.clone() };
        h["__metadata__"]["config"] = serde_json::to_string(&c).unwrap().into();
    });
    assert!(mismatch(&invalid).contains("learning_rate"));
    let ints = with_header(&good, |h| h["encoder.0.weight"]["dtype"] = "I32".into());
    assert!(mismatch(&ints).contains("I32, expected F32"), "{}", mismatch(&ints));
    // F16 halves the tensor's bytes: its range no longer fits its shape.
    let half = with_header(&good, |h| h["encoder.0.weight"]["dtype"] = "F16".into());
    assert!(malformed(&half).contains("does not match its shape and dtype"));
    let extra = with_header(&good, |h| {
        h["extra"] = serde_json::json!({"dtype": "F32", "shape": [0], "data_offsets": [0, 0]});
    });
    assert!(mismatch(&extra).contains("tensors"));
    let mut nan = good.clone();
    let at = nan.len() - 4;
    nan[at..].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(mismatch(&nan).contains("non-finite"));
}

// ---------------------------------------------------------------------------------------------
// Hostile and mistaken files: each is refused with a message saying what is wrong.

mod peak;

/// `bytes` with its header's JSON text rewritten by `edit` (for what a JSON value cannot hold,
/// such as a key given twice), keeping the data.
fn with_header_text(bytes: &[u8], edit: impl FnOnce(String) -> String) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let text = edit(String::from_utf8(bytes[8..8 + n].to_vec()).unwrap());
    [&(text.len() as u64).to_le_bytes()[..], text.as_bytes(), &bytes[8 + n..]].concat()
}

fn with_config(bytes: &[u8], config: serde_json::Value) -> Vec<u8> {
    with_header(bytes, |h| h["__metadata__"]["config"] = config.to_string().into())
}

#[test]
fn a_tiny_file_claiming_a_huge_model_allocates_nothing_for_it() {
    // The largest configuration validation allows: about 600 M parameters, 2.4 GB of f32s.
    let config = Config::mlp(65536, &[4096; 4], 64);
    config.validate().unwrap();
    let layout = Layout::new(&config);
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({ "config": serde_json::to_string(&config).unwrap(), "step": "1" }));
    for t in &layout.tensors {
        header.insert(t.name.clone(), serde_json::json!({ "dtype": "F32", "shape": [0], "data_offsets": [0, 0] }));
    }
    let json = serde_json::to_vec(&header).unwrap();
    let bomb = [&(json.len() as u64).to_le_bytes()[..], &json].concat();
    let (result, peak) = peak::peak_bytes(|| load(&bomb));
    let why = match result {
        Err(CheckpointError::Mismatch(why)) => why,
        other => panic!("expected a mismatch, got {other:?}"),
    };
    assert!(why.contains("shape"), "{why}");
    assert!(peak < 64 * 1024 + 16 * bomb.len(), "loading a {}-byte file allocated {peak} bytes at once", bomb.len());

    // The same claim with the real shapes: the byte ranges give it away.
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({ "config": serde_json::to_string(&config).unwrap() }));
    for t in &layout.tensors {
        header.insert(t.name.clone(), serde_json::json!({ "dtype": "F32", "shape": t.shape, "data_offsets": [0, 0] }));
    }
    let json = serde_json::to_vec(&header).unwrap();
    let bomb = [&(json.len() as u64).to_le_bytes()[..], &json].concat();
    let (result, peak) = peak::peak_bytes(|| load(&bomb));
    assert!(matches!(result, Err(CheckpointError::Malformed(_))), "{result:?}");
    assert!(peak < 64 * 1024 + 16 * bomb.len(), "loading a {}-byte file allocated {peak} bytes at once", bomb.len());
}

#[test]
fn loading_costs_about_the_files_size() {
    let config = Config::default();
    let layout = Layout::new(&config);
    let bytes = save(&config, &layout, &initial_parameters(&config, &layout, None), 3);
    let (result, peak) = peak::peak_bytes(|| load(&bytes));
    result.unwrap();
    assert!(peak < 2 * bytes.len() + 64 * 1024, "a {}-byte file took {peak} bytes to load", bytes.len());
}

#[test]
fn tensors_must_tile_the_data_exactly() {
    let (config, layout, params) = small();
    let good = save(&config, &layout, &params, 0);
    // Two tensors of the same shape pointing at the same bytes.
    let same = with_header(&good, |h| h["logvar.bias"]["data_offsets"] = h["mu.bias"]["data_offsets"].clone());
    assert!(malformed(&same).contains("overlap or leave a gap"), "{}", malformed(&same));
    // Overlapping by one element.
    let overlap = with_header(&good, |h| {
        let [a, b] = [h["mu.bias"]["data_offsets"][0].as_u64().unwrap(), h["mu.bias"]["data_offsets"][1].as_u64().unwrap()];
        h["mu.bias"]["data_offsets"] = serde_json::json!([a - 4, b - 4]);
    });
    assert!(malformed(&overlap).contains("overlap or leave a gap"), "{}", malformed(&overlap));
    // A gap: every tensor moved 4 bytes on, 4 junk bytes in front.
    let (h, start) = header(&good);
    let gap = with_header(&good, |h| {
        for t in &layout.tensors {
            let o = &h[&t.name]["data_offsets"];
            h[&t.name]["data_offsets"] = serde_json::json!([o[0].as_u64().unwrap() + 4, o[1].as_u64().unwrap() + 4]);
        }
    });
    let gap = [&gap[..gap.len() - (good.len() - start)], &[0u8; 4], &good[start..]].concat();
    assert!(malformed(&gap).contains("overlap or leave a gap"), "{}", malformed(&gap));
    drop(h);
    // Junk after the last tensor.
    let junk = [&good[..], b"junk"].concat();
    assert!(malformed(&junk).contains("bytes after the last tensor"), "{}", malformed(&junk));
}

#[test]
fn no_key_may_be_given_twice() {
    let (config, layout, params) = small();
    let good = save(&config, &layout, &params, 5);
    let (h, _) = header(&good);
    let entry = h["encoder.0.bias"].to_string();
    let twice = with_header_text(&good, |t| t.replacen('{', &format!("{{\"encoder.0.bias\":{entry},"), 1));
    assert!(malformed(&twice).contains("\"encoder.0.bias\" more than once"), "{}", malformed(&twice));
    let config_json = serde_json::to_string(&serde_json::to_string(&config).unwrap()).unwrap();
    let two_configs = with_header_text(&good, |t| t.replacen("\"__metadata__\":{", &format!("\"__metadata__\":{{\"config\":{config_json},"), 1));
    assert!(malformed(&two_configs).contains("\"config\" more than once"), "{}", malformed(&two_configs));
    let two_steps = with_header_text(&good, |t| t.replacen("\"__metadata__\":{", "\"__metadata__\":{\"step\":\"9\",", 1));
    assert!(malformed(&two_steps).contains("\"step\" more than once"), "{}", malformed(&two_steps));
    let two_metadata = with_header_text(&good, |t| t.replacen('{', "{\"__metadata__\":{},", 1));
    assert!(load(&two_metadata).is_err());
    // Inside the configuration (a JSON string in the metadata), at any depth.
    let escaped = |json: &str| serde_json::to_string(json).unwrap().trim_matches('"').to_string();
    let config_text = escaped(&serde_json::to_string(&config).unwrap());
    let latent_twice = with_header_text(&good, |t| t.replacen(&config_text, &config_text.replacen('{', "{\\\"latent\\\":7,", 1), 1));
    let why = load(&latent_twice).unwrap_err().to_string();
    assert!(why.contains("its configuration gives \"latent\" more than once"), "{why}");
    let activation_twice = with_header_text(&good, |t| t.replacen(&escaped("\"activation\":"), &escaped("\"activation\":\"tanh\",\"activation\":"), 1));
    let why = load(&activation_twice).unwrap_err().to_string();
    assert!(why.contains("its configuration gives \"encoder.0.activation\" more than once"), "{why}");
}

#[test]
fn metadata_values_must_be_strings() {
    let (config, layout, params) = small();
    let good = save(&config, &layout, &params, 5);
    let number = with_header(&good, |h| h["__metadata__"]["step"] = 7.into());
    assert!(malformed(&number).contains("expected a string"), "{}", malformed(&number));
    let object = with_header(&good, |h| h["__metadata__"]["config"] = serde_json::to_value(&config).unwrap());
    assert!(malformed(&object).contains("expected a string"), "{}", malformed(&object));
    let negative = with_header(&good, |h| h["__metadata__"]["step"] = "-3".into());
    assert!(malformed(&negative).contains("not a whole number"), "{}", malformed(&negative));
}

#[test]
fn the_configuration_is_parsed_strictly() {
    let (config, layout, params) = small();
    let good = save(&config, &layout, &params, 5);
    let full = serde_json::to_value(&config).unwrap();

    let mut misspelt = full.clone();
    misspelt["latnet"] = misspelt["latent"].take();
    misspelt.as_object_mut().unwrap().remove("latent");
    let why = mismatch(&with_config(&good, misspelt));
    assert!(why.contains("unknown field `latnet`"), "{why}");

    let mut extra = full.clone();
    extra["dropout"] = 0.5.into();
    assert!(mismatch(&with_config(&good, extra)).contains("unknown field `dropout`"));

    let sparse = serde_json::json!({ "input": 12, "hidden": [7, 5], "latent": 3 });
    let why = mismatch(&with_config(&good, sparse));
    assert!(why.contains("missing field"), "{why}");

    for likelihood in [
        serde_json::json!({ "kind": "bernoulli", "sigma": 0.1 }),
        serde_json::json!({ "kind": "gaussian", "sigma": 0.1, "mean": 0 }),
        serde_json::json!({ "kind": "poisson" }),
        serde_json::json!({ "kind": "gaussian" }),
        serde_json::json!({ "kind": "gaussian", "sigma": 0.1, "variance_floor": 0.001 }),
        serde_json::json!({ "kind": "gaussian_var" }),
        serde_json::json!({ "kind": "gaussian_var", "sigma": 0.1, "variance_floor": 0.001 }),
        serde_json::json!({ "kind": "gaussian_var", "variance_floor": "small" }),
    ] {
        let mut c = full.clone();
        c["likelihood"] = likelihood.clone();
        let why = mismatch(&with_config(&good, c));
        assert!(why.contains("does not parse"), "{likelihood}: {why}");
    }
}

#[test]
fn files_saved_by_earlier_versions_keep_loading() {
    // Written by the page as of November 2026 (its own header writer, tensors in layout order,
    // the header padded with spaces): 12-7-5-z3, Gaussian sigma 0.25, step 700.
    let old = include_bytes!("fixtures/mlp-2026-11.safetensors");
    let loaded = load(old).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.step, 700);
    let expected = Config { likelihood: webvae::model::Likelihood::Gaussian { sigma: 0.25 }, ..Config::mlp(12, &[7, 5], 3) };
    assert_eq!(loaded.config, expected);
    let layout = Layout::new(&expected);
    assert_eq!(loaded.parameters, initial_parameters(&expected, &layout, None));
    // And what loads saves back to a file that loads the same.
    let again = load(&save(&loaded.config, &layout, &loaded.parameters, loaded.step)).unwrap();
    assert_eq!(again, loaded);
}

/// PyTorch's semantics pinned: each preset (MLP, conv, learned variance, categorical) trained a
/// step on the CPU path and saved; `scripts/torch_forward.py` reads the file and runs the model
/// in numpy from PyTorch's documented formulas (Linear, Conv2d, ConvTranspose2d, the heads,
/// the likelihood's reading of the output), and its codes and images match ours. A flipped
/// conv kernel, transposed linear weights or swapped mean and log-variance halves would not.
#[test]
fn a_checkpoint_computes_in_pytorchs_formulas_what_it_computes_here() {
    use webvae::backend::{Backend, Device};
    use webvae::latent::Encoding;
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    assert!(std::path::Path::new(python).exists(), "this test needs numpy and safetensors in .venv; run `make setup`");
    let (train, test) = common::small_mnist(64);
    for preset in ["mlp", "conv", "mlp-gauss-var", "conv-gauss-var", "mlp-categorical", "conv-categorical"] {
        let config = Config { batch_size: 8, ..Config::preset(preset).unwrap() };
        let mut t = Backend::new(&Device::Cpu, config.clone(), &train, &test).unwrap();
        let x: Vec<f32> = (0..3).flat_map(|i| test.image(i)).collect();
        let z = t.prior_codes(3, 7);
        let (params, encoding, mean, std) = pollster::block_on(async {
            t.train(1).unwrap();
            (t.parameters().await.unwrap(), t.encode(&x).await.unwrap(), t.decode(&z).await.unwrap(), t.decode_std(&z).await.unwrap())
        });
        let path = std::env::temp_dir().join(format!("webvae-{preset}-{}.safetensors", std::process::id()));
        std::fs::write(&path, save(&config, t.layout(), &params, 1)).unwrap();
        let mut child = std::process::Command::new(python)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/torch_forward.py"))
            .arg(&path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        serde_json::to_writer(child.stdin.take().unwrap(), &serde_json::json!({ "x": x.chunks(784).collect::<Vec<_>>(), "z": z.chunks(config.code_len()).collect::<Vec<_>>() })).unwrap();
        let out = child.wait_with_output().unwrap();
        std::fs::remove_file(&path).ok();
        assert!(out.status.success(), "{preset}: python failed: {}", String::from_utf8_lossy(&out.stderr));
        let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let read = |key: &str| -> Vec<f32> { theirs[key].as_array().unwrap_or_else(|| panic!("{preset}: no {key}")).iter().map(|v| v.as_f64().unwrap() as f32).collect() };
        let close = |what: &str, ours: &[f32], theirs: &[f32]| {
            assert_eq!(ours.len(), theirs.len(), "{preset}: {what}: length");
            let worst = ours.iter().zip(theirs).map(|(a, b)| (a - b).abs() / (1e-4 + b.abs())).fold(0f32, f32::max);
            assert!(worst < 1e-3, "{preset}: {what} differs from PyTorch's formulas by {worst} (relative)");
        };
        match encoding {
            Encoding::Gaussian { mu, logvar } => {
                close("mu", &mu, &read("mu"));
                close("logvar", &logvar, &read("logvar"));
            }
            Encoding::Categorical { probabilities } => close("class probabilities", &probabilities, &read("probabilities")),
        }
        close("decoded means", &mean, &read("mean"));
        close("decoded standard deviations", &std, &read("std"));
        println!("{preset}: codes and decoded images agree with PyTorch's formulas in numpy");
    }
}

/// A graph model's file (`save_graph`): its `GraphConfig` (input, graph, schedule) in the `graph`
/// metadata, tensors named after its nodes as the README's PyTorch module names them, Adam's
/// state beside them; `load_model` gives it all back, `load` (layer stacks only) refuses it, and
/// a corrupt graph entry gets an error that says what is wrong.
#[test]
fn a_graph_model_round_trips_and_its_errors_name_the_problem() {
    use webvae::checkpoint::{load_model, save_graph, Checkpoint, OptimizerState};
    use webvae::model::{GraphConfig, ModelConfig};
    let mut config = GraphConfig::hvae();
    config.schedule.kl_warmup_steps = 77;
    let layout = config.validate().unwrap();
    let params: Vec<f32> = (0..layout.len).map(|i| (i as f32 * 0.37).sin()).collect();
    let state = OptimizerState { m: params.iter().map(|p| p * 0.1).collect(), v: params.iter().map(|p| p * p).collect(), step: 17 };
    let bytes = save_graph(&config, &layout, &params, 40, Some(&state));
    let loaded = load_model(&bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded, Checkpoint { config: ModelConfig::Graph(config.clone()), parameters: params.clone(), step: 40, optimizer: Some(state) });
    let (h, _) = header(&bytes);
    for (name, shape) in [("encoder.stem.weight", vec![32, 1, 4, 4]), ("q1.weight", vec![40, 256]), ("decoder.out.weight", vec![32, 1, 4, 4]), ("optimizer.exp_avg.p2.bias", vec![16])] {
        assert_eq!(h[name]["shape"], serde_json::json!(shape), "tensor {name}");
    }
    assert!(h["__metadata__"]["layers"].as_str().unwrap().contains("z2 8x7x7"), "{}", h["__metadata__"]["layers"]);
    // A layer stack's file reads as one through load_model too; load refuses a graph's.
    let (stack, stack_layout, stack_params) = small();
    assert_eq!(load_model(&save(&stack, &stack_layout, &stack_params, 3)).unwrap().config, ModelConfig::Stack(stack.clone()));
    assert!(mismatch(&bytes).contains("graph model"), "{}", mismatch(&bytes));
    let model_mismatch = |bytes: &[u8]| match load_model(bytes) {
        Err(CheckpointError::Mismatch(why)) => why,
        other => panic!("expected a mismatch error, got {other:?}"),
    };
    let edited = |edit: &dyn Fn(&mut serde_json::Value)| {
        with_header(&bytes, |h| {
            let mut g: serde_json::Value = serde_json::from_str(h["__metadata__"]["graph"].as_str().unwrap()).unwrap();
            edit(&mut g);
            h["__metadata__"]["graph"] = serde_json::to_string(&g).unwrap().into();
        })
    };
    let unknown = edited(&|g| g["schedule"]["warmup"] = 3.into());
    assert!(model_mismatch(&unknown).contains("unknown field `warmup`"), "{}", model_mismatch(&unknown));
    let dangling = edited(&|g| g["graph"]["nodes"][1]["inputs"] = serde_json::json!(["encoder.nowhere"]));
    assert!(model_mismatch(&dangling).contains("encoder.nowhere"), "{}", model_mismatch(&dangling));
    let wider = edited(&|g| g["graph"]["nodes"][0]["op"]["layer"]["out"] = 16.into());
    assert!(model_mismatch(&wider).contains("graph is invalid") || model_mismatch(&wider).contains("shape"), "{}", model_mismatch(&wider));
    let zero_batch = edited(&|g| g["schedule"]["batch_size"] = 0.into());
    assert!(model_mismatch(&zero_batch).contains("batch_size"), "{}", model_mismatch(&zero_batch));
    let both = with_header(&bytes, |h| h["__metadata__"]["config"] = serde_json::to_string(&stack).unwrap().into());
    assert!(model_mismatch(&both).contains("both"), "{}", model_mismatch(&both));
    let twice = with_header_text(&bytes, |t| t.replacen("\\\"kl_warmup_steps\\\":77", "\\\"kl_warmup_steps\\\":77,\\\"kl_warmup_steps\\\":5", 1));
    assert!(model_mismatch(&twice).contains("more than once"), "{}", model_mismatch(&twice));
}

/// The page's form of the hierarchy's settings (`GraphConfig::from_partial_json`): defaults
/// filled in, what every model says of its latents accepted when it is the hierarchy's own,
/// everything else refused with the field named.
#[test]
fn the_hierarchys_settings_are_checked_field_by_field() {
    use webvae::model::GraphConfig;
    let parse = |v: serde_json::Value| GraphConfig::from_partial_json(v.as_object().unwrap().clone());
    let c = parse(serde_json::json!({ "image": [28, 28], "batch_size": 64, "kl_warmup_steps": 10, "latent": 20, "likelihood": { "kind": "bernoulli" } })).unwrap();
    assert_eq!((c.schedule.batch_size, c.schedule.kl_warmup_steps, c.schedule.learning_rate), (64, 10, GraphConfig::hvae().schedule.learning_rate));
    assert_eq!(c.preset(), Some("hvae"));
    for (partial, field, says) in [
        (serde_json::json!({ "image": [14, 14] }), "architecture", "28x28"),
        (serde_json::json!({ "beta": 2 }), "config", "unknown field \"beta\""),
        (serde_json::json!({ "latent": 8 }), "latent", "20"),
        (serde_json::json!({ "likelihood": { "kind": "gaussian", "sigma": 0.1 } }), "likelihood", "Bernoulli"),
        (serde_json::json!({ "batch_size": 0 }), "batch_size", "1..=4096"),
        (serde_json::json!({ "learning_rate": -1 }), "learning_rate", "(0, 1]"),
        (serde_json::json!({ "kl_warmup_steps": -5 }), "config", "invalid value"),
    ] {
        let e = parse(partial.clone()).unwrap_err();
        assert!(e.field == field && e.message.contains(says), "{partial}: {e:?}");
    }
}
