//! Weights and configuration as a `.safetensors` file (https://huggingface.co/docs/safetensors):
//! an 8-byte little-endian header length, a JSON header naming each tensor's dtype, shape and
//! byte range, then the raw little-endian data. Names and shapes follow PyTorch's `nn.Linear`
//! (`encoder.0.weight` is [out, in]); the configuration sits in the header's `__metadata__`, so
//! `safetensors.numpy.load_file` / `safe_open` read the file as it is.
//!
//! Loading checks everything before returning anything: a corrupt, truncated or mismatched file
//! is an `Err` saying what is wrong.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{Config, Layout};

/// Headers larger than this are refused before parsing (ours are a few hundred bytes per tensor).
const MAX_HEADER: u64 = 1 << 20;
const FORMAT: &str = "webvae";

#[derive(Clone, Debug, PartialEq)]
pub enum CheckpointError {
    /// Not a safetensors file at all, or cut short.
    Malformed(String),
    /// A valid safetensors file, but not one this model can use.
    Mismatch(String),
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::Malformed(why) => write!(f, "not a readable .safetensors file: {why}"),
            CheckpointError::Mismatch(why) => write!(f, "this .safetensors file does not fit the model: {why}"),
        }
    }
}

impl std::error::Error for CheckpointError {}

fn malformed(why: impl Into<String>) -> CheckpointError {
    CheckpointError::Malformed(why.into())
}

fn mismatch(why: impl Into<String>) -> CheckpointError {
    CheckpointError::Mismatch(why.into())
}

#[derive(Debug, Serialize, Deserialize)]
struct TensorInfo {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// What a checkpoint holds: the configuration, the flat parameters in `Layout::new(&config)`
/// order, and the training step they were saved at.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub config: Config,
    pub parameters: Vec<f32>,
    pub step: u32,
}

/// Serialises `parameters` (flat, in `layout` order) with `config` and `step` in the metadata.
pub fn save(config: &Config, layout: &Layout, parameters: &[f32], step: u32) -> Vec<u8> {
    assert_eq!(parameters.len(), layout.len, "parameters do not match the layout");
    let mut header = serde_json::Map::new();
    let metadata = BTreeMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("config".to_string(), serde_json::to_string(config).expect("a Config serialises")),
        ("step".to_string(), step.to_string()),
    ]);
    header.insert("__metadata__".into(), serde_json::to_value(metadata).expect("strings serialise"));
    for t in &layout.tensors {
        let info = TensorInfo {
            dtype: "F32".into(),
            shape: t.shape.clone(),
            data_offsets: [t.offset as u64 * 4, (t.offset + t.len()) as u64 * 4],
        };
        header.insert(t.name.clone(), serde_json::to_value(info).expect("tensor info serialises"));
    }
    let mut json = serde_json::to_string(&header).expect("the header serialises").into_bytes();
    // The data section starts 8-byte aligned, as the format recommends; pad with spaces.
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut bytes = Vec::with_capacity(8 + json.len() + parameters.len() * 4);
    bytes.extend_from_slice(&(json.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&json);
    bytes.extend(parameters.iter().flat_map(|p| p.to_le_bytes()));
    bytes
}

/// Parses and checks a checkpoint written by `save` (or by any tool, given the same names,
/// shapes, F32 dtype and our `config` metadata).
pub fn load(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    if bytes.len() < 8 {
        return Err(malformed(format!("the file has {} bytes, fewer than the 8-byte header length", bytes.len())));
    }
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    if header_len > MAX_HEADER || header_len > (bytes.len() - 8) as u64 {
        return Err(malformed(format!(
            "the header claims {header_len} bytes but the file has {} after the length (truncated, or another format)",
            bytes.len() - 8
        )));
    }
    let (header, data) = bytes[8..].split_at(header_len as usize);
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| malformed(format!("the header is not valid JSON ({e})")))?;

    let metadata = header.get("__metadata__").and_then(|m| m.as_object());
    let meta = |key: &str| metadata.and_then(|m| m.get(key)).and_then(|v| v.as_str());
    let config_json = meta("config").ok_or_else(|| mismatch("its metadata has no \"config\" entry (it was not saved by this page)"))?;
    let config: Config = serde_json::from_str(config_json).map_err(|e| mismatch(format!("its configuration does not parse ({e})")))?;
    config.validate().map_err(|e| mismatch(format!("its configuration is invalid ({e})")))?;
    let step = match meta("step") {
        Some(s) => s.parse().map_err(|_| malformed(format!("its step \"{s}\" is not a number")))?,
        None => 0,
    };

    let layout = Layout::new(&config);
    let expected = layout.tensors.len();
    let found = header.keys().filter(|k| *k != "__metadata__").count();
    if found != expected {
        return Err(mismatch(format!("it holds {found} tensors but its configuration needs {expected}")));
    }
    let mut parameters = vec![0f32; layout.len];
    for t in &layout.tensors {
        let value = header.get(&t.name).ok_or_else(|| mismatch(format!("tensor {} is missing", t.name)))?;
        let info: TensorInfo =
            serde_json::from_value(value.clone()).map_err(|e| malformed(format!("tensor {}'s entry is malformed ({e})", t.name)))?;
        if info.dtype != "F32" {
            return Err(mismatch(format!("tensor {} is {}, expected F32", t.name, info.dtype)));
        }
        if info.shape != t.shape {
            return Err(mismatch(format!("tensor {} has shape {:?}, expected {:?}", t.name, info.shape, t.shape)));
        }
        let [begin, end] = info.data_offsets;
        if begin > end || end > data.len() as u64 || end - begin != t.len() as u64 * 4 {
            return Err(malformed(format!(
                "tensor {}'s bytes {begin}..{end} do not fit its shape or the {} data bytes present (truncated?)",
                t.name,
                data.len()
            )));
        }
        let target = &mut parameters[t.range()];
        for (p, b) in target.iter_mut().zip(data[begin as usize..end as usize].chunks_exact(4)) {
            *p = f32::from_le_bytes(b.try_into().unwrap());
        }
        if let Some(i) = target.iter().position(|p| !p.is_finite()) {
            return Err(mismatch(format!("tensor {} holds a non-finite value at element {i}", t.name)));
        }
    }
    Ok(Checkpoint { config, parameters, step })
}
