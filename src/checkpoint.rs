//! Weights and configuration as a `.safetensors` file (https://huggingface.co/docs/safetensors):
//! an 8-byte little-endian header length, a JSON header naming each tensor's dtype, shape and
//! byte range, then the raw little-endian data. Names and shapes are those of the PyTorch module
//! in the README (an `nn.Sequential` encoder and decoder, where activations, flatten and
//! unflatten count as modules, and `mu` / `logvar` heads): `encoder.0.weight` of a Conv2d is
//! [out, in, k, k], of a ConvTranspose2d [in, out, k, k], of a Linear [out, in]. The
//! configuration (with its layer list) sits in the header's `__metadata__`, so
//! `safetensors.numpy.load_file` / `safe_open` read the file as it is, and `load_state_dict`
//! takes it. Files saved before layers existed (an MLP described by `hidden` widths, tensors
//! named `encoder.mu.weight`, `decoder.out.bias`, ...) still load.
//!
//! The format layer is Hugging Face's `safetensors` crate, which checks what its reference
//! implementation checks: the header's length and JSON, string-only metadata, tensors that
//! cover the data exactly (no overlaps, no gaps, no junk after the last one), sizes that match
//! shapes. On top of it we check what the format leaves open: no key given twice, our names,
//! shapes and dtype, finite values, and a configuration parsed strictly (every field, nothing
//! unknown). Nothing is allocated in proportion to what the header claims until the claim has
//! been checked against the bytes present, so loading a file costs about its own size.
//!
//! A graph model (`model::GraphConfig`, e.g. the `hvae` preset) is saved the same way, its
//! tensors named after the graph's nodes (`encoder.stem.weight`, `z1`'s heads `q1.weight`, ...:
//! the PyTorch module in the README) and its `GraphConfig` (input, graph, schedule) in the
//! `graph` metadata entry instead of `config`; `load_model` reads either kind.
//!
//! A file may also carry Adam's state, so that training resumes exactly where it stopped: the
//! moments as `optimizer.exp_avg.<name>` and `optimizer.exp_avg_sq.<name>` (PyTorch's names for
//! them) and the trainer's own step count as the `optimizer_step` metadata. Such a file is no
//! longer a plain `state_dict` (`load_state_dict(strict=False)` skips the extra tensors).

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::model::{Config, GraphConfig, GraphLayout, Layout, ModelConfig, Tensor};

/// Headers larger than this are refused before parsing (ours are about 100 bytes per tensor).
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

/// What a checkpoint holds: the configuration (`Config` for `load`, which reads layer stacks;
/// `ModelConfig` for `load_model`, which reads graph models too), the flat parameters in its
/// layout's order, the training step they were saved at, and Adam's state if it was saved.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint<C = Config> {
    pub config: C,
    pub parameters: Vec<f32>,
    pub step: u32,
    pub optimizer: Option<OptimizerState>,
}

/// Adam's state: its first and second moments (flat, in layout order), and the trainer's own
/// step count, which Adam's bias correction, the epoch's order of the data and the noise follow
/// (it can be less than the checkpoint's `step` when the trainer started from loaded weights).
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub step: u32,
}

const EXP_AVG: &str = "optimizer.exp_avg.";
const EXP_AVG_SQ: &str = "optimizer.exp_avg_sq.";

/// Serialises `parameters` (flat, in `layout` order) with `config` and `step` in the metadata.
pub fn save(config: &Config, layout: &Layout, parameters: &[f32], step: u32) -> Vec<u8> {
    save_with_optimizer(config, layout, parameters, step, None)
}

/// `save`, and Adam's state too if given: a file that resumes training exactly.
pub fn save_with_optimizer(config: &Config, layout: &Layout, parameters: &[f32], step: u32, optimizer: Option<&OptimizerState>) -> Vec<u8> {
    let described = [("config", serde_json::to_string(config).expect("a Config serialises")), ("layers", config.summary())];
    write(&described, &layout.tensors, layout.len, parameters, step, optimizer)
}

/// A graph model's parameters (flat, in `layout` order: `config.validate()`'s), with its
/// `GraphConfig` as the `graph` metadata, `step`, and Adam's state if given.
pub fn save_graph(config: &GraphConfig, layout: &GraphLayout, parameters: &[f32], step: u32, optimizer: Option<&OptimizerState>) -> Vec<u8> {
    let described = [("graph", serde_json::to_string(config).expect("a GraphConfig serialises")), ("layers", config.summary())];
    write(&described, &layout.tensors, layout.len, parameters, step, optimizer)
}

fn write(described: &[(&str, String)], tensors: &[Tensor], len: usize, parameters: &[f32], step: u32, optimizer: Option<&OptimizerState>) -> Vec<u8> {
    assert_eq!(parameters.len(), len, "parameters do not match the layout");
    let mut buffers = vec![(String::new(), parameters)];
    if let Some(o) = optimizer {
        assert!(o.m.len() == len && o.v.len() == len, "Adam's moments do not match the layout");
        buffers.extend([(EXP_AVG.to_string(), &o.m[..]), (EXP_AVG_SQ.to_string(), &o.v[..])]);
    }
    let bytes: Vec<(String, Vec<u8>)> = buffers.into_iter().map(|(prefix, v)| (prefix, v.iter().flat_map(|p| p.to_le_bytes()).collect())).collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .flat_map(|(prefix, bytes)| {
            tensors.iter().map(move |t| {
                let data = &bytes[t.offset * 4..(t.offset + t.len()) * 4];
                (format!("{prefix}{}", t.name), TensorView::new(Dtype::F32, t.shape.clone(), data).expect("a tensor's bytes match its shape"))
            })
        })
        .collect();
    let mut metadata = HashMap::from([("format".to_string(), FORMAT.to_string()), ("step".to_string(), step.to_string())]);
    metadata.extend(described.iter().map(|(k, v)| (k.to_string(), v.clone())));
    if let Some(o) = optimizer {
        metadata.insert("optimizer_step".to_string(), o.step.to_string());
    }
    safetensors::serialize(views, Some(metadata)).expect("F32 tensors with matching shapes serialise")
}

/// Parses and checks a layer stack's checkpoint written by `save` (or by any tool, given the
/// same names, shapes, F32 dtype and our `config` metadata); a graph model's is refused
/// (`load_model` reads both).
pub fn load(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let c = load_model(bytes)?;
    match c.config {
        ModelConfig::Stack(config) => Ok(Checkpoint { config, parameters: c.parameters, step: c.step, optimizer: c.optimizer }),
        ModelConfig::Graph(_) => Err(mismatch("it holds a graph model (its metadata has \"graph\", not \"config\")")),
    }
}

/// Parses and checks a checkpoint of either kind of model: a layer stack's (`config` metadata,
/// `save`) or a graph's (`graph` metadata, `save_graph`).
pub fn load_model(bytes: &[u8]) -> Result<Checkpoint<ModelConfig>, CheckpointError> {
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
    let (header_len, header) = SafeTensors::read_metadata(bytes).map_err(|e| malformed(describe(e)))?;
    unique_keys(&bytes[8..8 + header_len])?;
    let data = &bytes[8 + header_len..];

    let metadata = header.metadata().as_ref();
    let meta = |key: &str| metadata.and_then(|m| m.get(key));
    // The layout's few entries cost nothing; its tensors are compared with the file's before
    // any parameter is read, and the file's tensors cover its data exactly (checked above), so
    // the allocation below is the size of the file's data.
    let (config, tensors, names, len) = match (meta("config"), meta("graph")) {
        (Some(_), Some(_)) => return Err(mismatch("its metadata has both \"config\" and \"graph\" entries: it describes two models")),
        (None, None) => return Err(mismatch("its metadata has no \"config\" or \"graph\" entry (it was not saved by this page)")),
        (Some(config_json), None) => {
            unique_config_keys(config_json)?;
            let config = Config::from_json(config_json).map_err(|e| mismatch(format!("its configuration does not parse ({e})")))?;
            // Saved before layers existed: the same tensors under their old names.
            let legacy = serde_json::from_str::<serde_json::Value>(config_json).is_ok_and(|v| v.get("hidden").is_some());
            config.validate().map_err(|e| mismatch(format!("its configuration is invalid ({e})")))?;
            let layout = Layout::new(&config);
            let names: Vec<String> = if legacy { layout.legacy_names() } else { layout.tensors.iter().map(|t| t.name.clone()).collect() };
            (ModelConfig::Stack(config), layout.tensors, names, layout.len)
        }
        (None, Some(graph_json)) => {
            unique_config_keys(graph_json)?;
            let config: GraphConfig = serde_json::from_str(graph_json).map_err(|e| mismatch(format!("its graph does not parse ({e})")))?;
            let layout = config.validate().map_err(|e| mismatch(format!("its graph is invalid ({e})")))?;
            let names = layout.tensors.iter().map(|t| t.name.clone()).collect();
            (ModelConfig::Graph(config), layout.tensors, names, layout.len)
        }
    };
    let whole = |key: &str, s: &str| -> Result<u32, CheckpointError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed(format!("its {key} \"{s}\" is not a whole number")));
        }
        s.parse().map_err(|_| malformed(format!("its {key} \"{s}\" is out of range")))
    };
    let step = meta("step").map_or(Ok(0), |s| whole("step", s))?;
    let optimizer_step = meta("optimizer_step").map(|s| whole("optimizer_step", s)).transpose()?;

    // The parameters, then (with optimizer_step) Adam's two moments under their prefixes.
    let prefixes: &[&str] = if optimizer_step.is_some() { &["", EXP_AVG, EXP_AVG_SQ] } else { &[""] };
    let found = header.tensors().len();
    let expected = prefixes.len() * tensors.len();
    if found != expected {
        let with = if optimizer_step.is_some() { " with Adam's state" } else { "" };
        return Err(mismatch(format!("it holds {found} tensors but its configuration{with} needs {expected}")));
    }
    let mut ranges = Vec::with_capacity(expected);
    for prefix in prefixes {
        for (t, name) in tensors.iter().zip(&names) {
            let name = format!("{prefix}{name}");
            let info = header.info(&name).ok_or_else(|| mismatch(format!("tensor {name} is missing")))?;
            if info.dtype != Dtype::F32 {
                return Err(mismatch(format!("tensor {name} is {}, expected F32", info.dtype)));
            }
            if info.shape != t.shape {
                return Err(mismatch(format!("tensor {name} has shape {:?}, expected {:?}", info.shape, t.shape)));
            }
            ranges.push((name, t.range(), info.data_offsets.0..info.data_offsets.1));
        }
    }
    let mut buffers = vec![vec![0f32; len]; prefixes.len()];
    for (i, (name, target, range)) in ranges.into_iter().enumerate() {
        let target = &mut buffers[i / tensors.len()][target];
        for (p, b) in target.iter_mut().zip(data[range].chunks_exact(4)) {
            *p = f32::from_le_bytes(b.try_into().unwrap());
        }
        if let Some(i) = target.iter().position(|p| !p.is_finite()) {
            return Err(mismatch(format!("tensor {name} holds a non-finite value at element {i}")));
        }
        // Adam divides by the square root of the second moment.
        if name.starts_with(EXP_AVG_SQ) {
            if let Some(i) = target.iter().position(|p| *p < 0.0) {
                return Err(mismatch(format!("tensor {name} holds a negative second moment at element {i}")));
            }
        }
    }
    let mut buffers = buffers.into_iter();
    let parameters = buffers.next().expect("the parameters");
    let optimizer = optimizer_step.map(|step| OptimizerState { m: buffers.next().expect("exp_avg"), v: buffers.next().expect("exp_avg_sq"), step });
    Ok(Checkpoint { config, parameters, step, optimizer })
}

/// The format crate's errors, worded for someone holding the file.
fn describe(e: safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::InvalidHeader(_) => "the header is not UTF-8 text".into(),
        E::InvalidHeaderDeserialization(e) => format!("the header is not valid JSON of the safetensors form ({e})"),
        E::HeaderTooLarge | E::HeaderTooSmall | E::InvalidHeaderLength => {
            "the header's length does not fit the file (truncated, or another format)".into()
        }
        E::InvalidOffset(name) => format!(
            "tensor {name}'s bytes do not start where the previous tensor's end (tensors overlap or leave a gap)"
        ),
        E::MetadataIncompleteBuffer => {
            "the tensors do not cover the file's data exactly (it is truncated, or has bytes after the last tensor)".into()
        }
        E::TensorInvalidInfo | E::InvalidTensorView(..) | E::ValidationOverflow | E::MisalignedSlice => {
            "a tensor's byte range does not match its shape and dtype".into()
        }
        other => other.to_string(),
    }
}

/// JSON allows a key twice in an object and most parsers keep the last; in a checkpoint that
/// would mean two tensors or configurations, or two values of one setting, of which one is
/// silently dropped. Refuses a repeat in the header (the top level, `__metadata__` and each
/// tensor's entry).
fn unique_keys(header: &[u8]) -> Result<(), CheckpointError> {
    let mut de = serde_json::Deserializer::from_slice(header);
    match serde::de::DeserializeSeed::deserialize(Repeats, &mut de) {
        Err(e) => Err(malformed(format!("the header is not valid JSON ({e})"))),
        Ok(None) => Ok(()),
        Ok(Some(mut path)) => {
            let key = path.pop().unwrap_or_default();
            Err(malformed(match path.is_empty() {
                true => format!("the header names \"{key}\" more than once"),
                false => format!("{} gives \"{key}\" more than once", path.join(".")),
            }))
        }
    }
}

/// The path (keys and indices, outermost first) of the first key given twice in an object of a
/// JSON value, at any depth; None when there is none.
struct Repeats;

impl<'de> serde::de::DeserializeSeed<'de> for Repeats {
    type Value = Option<Vec<String>>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Repeats {
    type Value = Option<Vec<String>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut seen, mut first) = (BTreeSet::new(), None);
        while let Some(key) = map.next_key::<String>()? {
            let inner = map.next_value_seed(Repeats)?;
            if first.is_none() {
                first = if seen.contains(&key) { Some(vec![key.clone()]) } else { inner.map(|p| [vec![key.clone()], p].concat()) };
            }
            seen.insert(key);
        }
        Ok(first)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut first = None;
        let mut i = 0;
        while let Some(inner) = seq.next_element_seed(Repeats)? {
            if first.is_none() {
                first = inner.map(|p| [vec![i.to_string()], p].concat());
            }
            i += 1;
        }
        Ok(first)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// The configuration's JSON (a string in the metadata, so the header's check cannot see into
/// it) with no key given twice at any depth.
fn unique_config_keys(config_json: &str) -> Result<(), CheckpointError> {
    let mut de = serde_json::Deserializer::from_str(config_json);
    match serde::de::DeserializeSeed::deserialize(Repeats, &mut de) {
        Ok(Some(path)) => Err(mismatch(format!("its configuration gives \"{}\" more than once", path.join(".")))),
        // Not JSON at all: the configuration's own parser says so.
        _ => Ok(()),
    }
}
