//! Checkpoints: a round trip, the exact safetensors layout (checked by the `safetensors` Python
//! package, as a PyTorch user would read it), and a clear error for every corrupt, truncated or
//! mismatched file.
#![cfg(not(target_arch = "wasm32"))]

use webvae::checkpoint::{load, save, CheckpointError};
use webvae::model::{initial_parameters, Config, Layout};

fn small() -> (Config, Layout, Vec<f32>) {
    let config = Config { input: 12, hidden: vec![7, 5], latent: 3, ..Config::default() };
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
    assert_eq!(h["encoder.mu.weight"]["shape"], serde_json::json!([3, 5]));
    assert_eq!(h["encoder.logvar.bias"]["shape"], serde_json::json!([3]));
    assert_eq!(h["decoder.out.weight"]["shape"], serde_json::json!([12, 7]));
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
    let saved: Config = serde_json::from_str(read["metadata"]["config"].as_str().unwrap()).unwrap();
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
    let bad_offsets = with_header(&good, |h| h["decoder.out.bias"]["data_offsets"] = serde_json::json!([0, 4]));
    assert!(malformed(&bad_offsets).contains("decoder.out.bias"));
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
    assert!(mismatch(&no_config).contains("no \"config\""));
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
    let half = with_header(&good, |h| h["encoder.0.weight"]["dtype"] = "F16".into());
    assert!(mismatch(&half).contains("F16"));
    let extra = with_header(&good, |h| {
        h["extra"] = serde_json::json!({"dtype": "F32", "shape": [0], "data_offsets": [0, 0]});
    });
    assert!(mismatch(&extra).contains("tensors"));
    let mut nan = good.clone();
    let at = nan.len() - 4;
    nan[at..].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(mismatch(&nan).contains("non-finite"));
}
