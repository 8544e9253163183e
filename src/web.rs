//! The wasm-bindgen surface the page calls. Errors reach JavaScript as objects
//! `{ kind, message, field? }` so the page can say precisely what went wrong.

use std::cell::Cell;

use futures_util::lock::Mutex;
use wasm_bindgen::prelude::*;

use crate::backend::{Backend, Device, GraphBackend};
use crate::checkpoint::{self, CheckpointError};
use crate::data::{self, DataError, Dataset};
use crate::gpu::{Gpu, GpuError};
use crate::kernels::KernelShape;
use crate::latent::{self, Encoding};
use crate::model::{Config, ConfigError, GraphConfig, Keep, LatentType, Likelihood, ModelConfig};
use crate::training::TrainError;

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

fn error(kind: &str, message: String, field: Option<&str>) -> JsValue {
    let obj = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&obj, &"kind".into(), &kind.into());
    let _ = js_sys::Reflect::set(&obj, &"message".into(), &message.into());
    if let Some(field) = field {
        let _ = js_sys::Reflect::set(&obj, &"field".into(), &field.into());
    }
    obj.into()
}

fn gpu_error_to_js(e: GpuError) -> JsValue {
    let kind = match e {
        GpuError::NoWebGpu => "no-webgpu",
        GpuError::NoAdapter(_) => "no-adapter",
        GpuError::Device(_) => "device",
        GpuError::Readback(_) => "readback",
        GpuError::Lost(_) => "lost",
        GpuError::Shape(_) => "shape",
    };
    error(kind, e.to_string(), None)
}

fn train_error_to_js(e: TrainError) -> JsValue {
    match e {
        TrainError::Gpu(g) => gpu_error_to_js(g),
        TrainError::Config(c) => error("config", c.to_string(), Some(c.field)),
        TrainError::Data(_) => error("data", e.to_string(), None),
        TrainError::Diverged { .. } => error("diverged", e.to_string(), None),
    }
}

fn data_error_to_js(e: DataError) -> JsValue {
    error("data", e.to_string(), None)
}

fn checkpoint_error_to_js(e: CheckpointError) -> JsValue {
    error("checkpoint", e.to_string(), None)
}

fn set(obj: &js_sys::Object, key: &str, value: impl Into<JsValue>) {
    let _ = js_sys::Reflect::set(obj, &key.into(), &value.into());
}

/// A model's configuration from a plain object: with `architecture: { kind: "hvae" }`, the
/// hierarchy of latents and any of its schedule's fields (`GraphConfig::from_partial_json`);
/// otherwise a layer stack's `Config` with any of its fields (the rest take the reference
/// values), or with an `architecture` and the `image` size instead of the layers (see
/// `Config::from_partial_json`). Validated: errors name the field; unknown fields are refused.
fn config_from_js(config: JsValue) -> Result<ModelConfig, JsValue> {
    let config_error = |e: ConfigError| error("config", e.to_string(), Some(e.field));
    if config.is_undefined() || config.is_null() {
        return Ok(ModelConfig::Stack(Config::default()));
    }
    let partial: serde_json::Value = serde_wasm_bindgen::from_value(config).map_err(|e| error("config", e.to_string(), None))?;
    if let serde_json::Value::Object(fields) = &partial {
        if fields.get("architecture").and_then(|a| a.get("kind")).and_then(|k| k.as_str()) == Some("hvae") {
            let mut fields = fields.clone();
            fields.remove("architecture");
            return GraphConfig::from_partial_json(fields).map(ModelConfig::Graph).map_err(config_error);
        }
    }
    let config = Config::from_partial_json(partial).map_err(config_error)?;
    config.validate().map_err(config_error)?;
    Ok(ModelConfig::Stack(config))
}

fn to_js<T: serde::Serialize>(value: &T) -> Result<JsValue, JsValue> {
    // Plain objects rather than Maps, so the page can read fields directly.
    let serializer = serde_wasm_bindgen::Serializer::json_compatible();
    value.serialize(&serializer).map_err(|e| error("config", e.to_string(), None))
}

/// The configuration as the page's settings read it: a layer stack's `Config`, with its
/// `architecture` when its layers are an instance of one (the page's settings show it, and a
/// new image size rebuilds it); a graph's schedule fields, with what the views read of every
/// model (`likelihood`, `latent_type`, `latent`: the top group's size) and `architecture:
/// { kind: "hvae" }` when the graph is that preset.
fn config_to_js(config: &ModelConfig) -> Result<JsValue, JsValue> {
    let obj = match config {
        ModelConfig::Stack(c) => {
            let obj = to_js(c)?;
            if let Some(arch) = c.architecture() {
                set(obj.unchecked_ref(), "architecture", to_js(&arch)?);
            }
            obj
        }
        ModelConfig::Graph(g) => {
            let obj = to_js(&g.schedule)?;
            let layout = g.validate().map_err(|e| error("config", e.to_string(), Some(e.field)))?;
            set(obj.unchecked_ref(), "latent", layout.nodes[layout.groups[0]].output.len());
            set(obj.unchecked_ref(), "likelihood", to_js(&Likelihood::Bernoulli)?);
            set(obj.unchecked_ref(), "latent_type", to_js(&LatentType::Gaussian {})?);
            if let Some(kind) = g.preset() {
                set(obj.unchecked_ref(), "architecture", to_js(&serde_json::json!({ "kind": kind }))?);
            }
            obj
        }
    };
    Ok(obj)
}

/// The configuration with defaults filled in, or `{ kind: "config", field, message }`.
#[wasm_bindgen(js_name = validateConfig)]
pub fn validate_config(config: JsValue) -> Result<JsValue, JsValue> {
    config_to_js(&config_from_js(config)?)
}

/// Where models train: an open GPU device (trainers share it; after it is lost, request a new
/// one), or the CPU in WebAssembly, which every browser has.
#[wasm_bindgen]
pub struct WebDevice {
    device: Device,
}

/// The most image bytes the CPU path takes: the data lives in the module's memory, which a
/// browser gives at most 4 GB (some 2 GB), beside the model and its activations.
const CPU_MAX_DATA_BYTES: f64 = (1u64 << 30) as f64;

#[wasm_bindgen]
impl WebDevice {
    /// Opens the GPU adapter's device; rejects with kind "no-webgpu", "no-adapter", "device",
    /// or "shape" for a `kernels` that is neither "software" nor "hardware". `kernels` forces
    /// the kernel shape (the page's `?kernels=` parameter); otherwise the adapter chooses.
    #[wasm_bindgen(js_name = requestGpu)]
    pub async fn request_gpu(kernels: Option<String>) -> Result<WebDevice, JsValue> {
        Ok(WebDevice { device: Device::Gpu(open_gpu(kernels).await?) })
    }

    /// The CPU path: f32 with WebAssembly SIMD, on this module's threads (`threads()`).
    pub fn cpu() -> WebDevice {
        WebDevice { device: Device::Cpu }
    }

    /// "gpu" or "cpu".
    pub fn kind(&self) -> String {
        self.device.kind().into()
    }

    /// What trains, in a few words: the GPU adapter, or the CPU path.
    pub fn describe(&self) -> String {
        match &self.device {
            Device::Gpu(gpu) => format!("WebGPU adapter: {}", gpu.adapter_summary()),
            Device::Cpu => match threads() {
                1 => "CPU in WebAssembly (f32 with SIMD, one thread)".into(),
                n => format!("CPU in WebAssembly (f32 with SIMD, {n} threads)"),
            },
        }
    }

    /// The GPU adapter's name in a few words, and whether it emulates a GPU on the CPU: e.g.
    /// "google swiftshader, a software adapter"; "the CPU" for the CPU path.
    #[wasm_bindgen(js_name = adapterName)]
    pub fn adapter_name(&self) -> String {
        match &self.device {
            Device::Gpu(gpu) if gpu.emulated => format!("{}, a software adapter", gpu.adapter_name()),
            Device::Gpu(gpu) => gpu.adapter_name(),
            Device::Cpu => "the CPU".into(),
        }
    }

    /// The most bytes the dataset's images may take here: one storage buffer on a GPU.
    #[wasm_bindgen(js_name = maxBufferBytes)]
    pub fn max_buffer_bytes(&self) -> f64 {
        match &self.device {
            Device::Gpu(gpu) => gpu.device.limits().max_storage_buffer_binding_size as f64,
            Device::Cpu => CPU_MAX_DATA_BYTES,
        }
    }

    /// Destroys a GPU device as a driver reset would, to try the recovery path (the CPU cannot
    /// be lost).
    pub fn lose(&self) {
        if let Device::Gpu(gpu) = &self.device {
            gpu.lose();
        }
    }
}

/// A training set and a test set, parsed and checked.
#[wasm_bindgen]
pub struct WebData {
    train: Dataset,
    test: Dataset,
}

#[wasm_bindgen]
impl WebData {
    /// From IDX files (raw or gzipped) in any order: 4 (training and test images and labels)
    /// or 2 (images and labels; the last tenth becomes the test set). Errors name the file.
    /// Images needing more than `max_image_bytes` (`WebGpu.maxBufferBytes()`) are refused
    /// before they are decompressed.
    #[wasm_bindgen(js_name = fromFiles)]
    pub fn from_files(names: Vec<String>, files: Vec<js_sys::Uint8Array>, max_image_bytes: f64) -> Result<WebData, JsValue> {
        if names.len() != files.len() {
            return Err(error("data", "each file needs a name".into(), None));
        }
        let bytes: Vec<Vec<u8>> = files.iter().map(|f| f.to_vec()).collect();
        let pairs: Vec<(&str, &[u8])> = names.iter().map(String::as_str).zip(bytes.iter().map(Vec::as_slice)).collect();
        let (train, test) = data::datasets_from_files(&pairs, max_image_bytes as usize).map_err(data_error_to_js)?;
        Ok(WebData { train, test })
    }

    #[wasm_bindgen(js_name = trainCount)]
    pub fn train_count(&self) -> usize {
        self.train.count
    }

    #[wasm_bindgen(js_name = testCount)]
    pub fn test_count(&self) -> usize {
        self.test.count
    }

    pub fn rows(&self) -> usize {
        self.test.rows
    }

    pub fn cols(&self) -> usize {
        self.test.cols
    }

    /// Test images `start..start + n` (clamped to the set) as floats in [0, 1], image after image.
    #[wasm_bindgen(js_name = testImages)]
    pub fn test_images(&self, start: usize, n: usize) -> Vec<f32> {
        let end = (start + n).min(self.test.count);
        (start.min(end)..end).flat_map(|i| self.test.image(i)).collect()
    }

    #[wasm_bindgen(js_name = testLabels)]
    pub fn test_labels(&self) -> Vec<u8> {
        self.test.labels.clone()
    }

    /// Every test image's bytes (0-255), image after image: what the page's views read (as
    /// `testImages` does, each byte / 255), so that the page need not parse the files itself.
    #[wasm_bindgen(js_name = testPixels)]
    pub fn test_pixels(&self) -> Vec<u8> {
        self.test.pixels.clone()
    }
}

/// `{ config, step, resumes }` of a `.safetensors` checkpoint, after checking all of it
/// (`resumes`: it holds Adam's state, and training continues exactly from `step`); rejects
/// with kind "checkpoint" saying what is wrong.
#[wasm_bindgen(js_name = checkpointInfo)]
pub fn checkpoint_info(bytes: &[u8]) -> Result<JsValue, JsValue> {
    let c = checkpoint::load_model(bytes).map_err(checkpoint_error_to_js)?;
    let obj = js_sys::Object::new();
    set(&obj, "config", config_to_js(&c.config)?);
    set(&obj, "step", c.step);
    set(&obj, "resumes", c.optimizer.is_some());
    Ok(obj.into())
}

/// What a `WebTrainer` trains: a layer stack (`Backend`) or a graph (`GraphBackend`), on
/// either device.
#[allow(clippy::large_enum_variant)] // one per page
enum Model {
    Stack(Backend),
    Graph(GraphBackend, GraphConfig),
}

/// `$call` on the trainer of either kind of model, as `$t`: for the methods both have.
macro_rules! on_model {
    ($model:expr, $t:ident => $call:expr) => {
        match $model {
            Model::Stack($t) => $call,
            Model::Graph($t, _) => $call,
        }
    };
}

/// A VAE training on the page's GPU or in WebAssembly on the CPU (`backend::Backend`, or
/// `backend::GraphBackend` for a graph such as `hvae`): the page calls the same methods either
/// way. Of a graph, the page's latent views see the top group: `encode` gives its posterior,
/// `decode` decodes its codes (every lower group at its conditional prior's mean), and
/// `variations` redraws one part of a digit's code.
///
/// Any call may come at any moment, also while another is in flight (a user presses Train
/// while the first samples are being decoded): no call can find the object borrowed. Every
/// method takes `&self` (wasm-bindgen holds an async `&mut self` method's borrow until it
/// resolves, and any call meanwhile throws "recursive use of an object"); what describes the
/// model is read once, when it is made; and every call that uses the trainer waits its turn
/// at one async lock (which makes them safe, not ordered: the page's queue, `Training.task`,
/// keeps their order).
#[wasm_bindgen]
pub struct WebTrainer {
    trainer: Mutex<Model>,
    config: ModelConfig,
    parameters: usize,
    steps_per_epoch: u32,
    step_summary: String,
    kind: &'static str,
    /// Values per code (the top group's, for a graph).
    code_length: usize,
    /// Each group's name and shape, top first ("z1 20"); empty for a layer stack.
    groups: Vec<String>,
    /// The trainer's step after the last call that trained or loaded weights.
    step: Cell<u32>,
}

impl WebTrainer {
    fn new_model(device: &Device, config: &ModelConfig, data: &WebData) -> Result<Model, JsValue> {
        match config {
            ModelConfig::Stack(c) => Backend::new(device, c.clone(), &data.train, &data.test).map(Model::Stack),
            ModelConfig::Graph(g) => GraphBackend::new(device, &g.graph, g.schedule.clone(), &data.train, &data.test).map(|t| Model::Graph(t, g.clone())),
        }
        .map_err(train_error_to_js)
    }

    fn wrap(mut model: Model) -> WebTrainer {
        let (config, code_length, groups) = match &model {
            Model::Stack(t) => (ModelConfig::Stack(t.config().clone()), t.config().code_len(), vec![]),
            Model::Graph(t, g) => {
                let l = t.layout();
                let groups = l.groups.iter().map(|&i| format!("{} {}", l.nodes[i].name, l.nodes[i].output)).collect();
                (ModelConfig::Graph(g.clone()), l.nodes[l.groups[0]].output.len(), groups)
            }
        };
        WebTrainer {
            config,
            code_length,
            groups,
            parameters: on_model!(&model, t => t.layout().len),
            steps_per_epoch: on_model!(&model, t => t.steps_per_epoch()),
            step_summary: on_model!(&mut model, t => t.step_summary()),
            kind: on_model!(&model, t => t.kind()),
            step: Cell::new(on_model!(&model, t => t.step())),
            trainer: Mutex::new(model),
        }
    }

    fn stack(&self) -> Option<&Config> {
        match &self.config {
            ModelConfig::Stack(c) => Some(c),
            ModelConfig::Graph(_) => None,
        }
    }
}

/// The Bernoulli standard deviation sqrt(p (1 - p)) of each pixel probability: a graph's
/// decoder is Bernoulli.
fn bernoulli_std(p: Vec<f32>) -> Vec<f32> {
    p.into_iter().map(|p| (p * (1.0 - p)).max(0.0).sqrt()).collect()
}

/// A loss's KL as the page reads it: a layer stack's total, or a graph's per group (top first),
/// given as `klGroups` beside their sum, `kl`.
enum Kl {
    Total(f64),
    Groups(Vec<f64>),
}

impl Kl {
    fn set_on(&self, obj: &js_sys::Object) {
        match self {
            Kl::Total(kl) => set(obj, "kl", *kl),
            Kl::Groups(kl) => {
                set(obj, "kl", kl.iter().sum::<f64>());
                set(obj, "klGroups", kl.iter().map(|&k| JsValue::from(k)).collect::<js_sys::Array>());
            }
        }
    }
}

#[wasm_bindgen]
impl WebTrainer {
    /// A freshly initialised model; `config` is an object with any of `Config`'s fields, or
    /// `architecture: { kind: "hvae" }` and any of the hierarchy's schedule fields.
    #[wasm_bindgen(constructor)]
    pub fn new(device: &WebDevice, config: JsValue, data: &WebData) -> Result<WebTrainer, JsValue> {
        let config = config_from_js(config)?;
        Ok(WebTrainer::wrap(WebTrainer::new_model(&device.device, &config, data)?))
    }

    /// A model with the configuration and weights of a `.safetensors` checkpoint (a layer
    /// stack's or a graph's). With Adam's state in the file, training resumes exactly (`step()`
    /// continues from the file's); otherwise Adam starts afresh at step 0. Nothing is created
    /// unless the whole file checks out.
    #[wasm_bindgen(js_name = fromCheckpoint)]
    pub fn from_checkpoint(device: &WebDevice, bytes: &[u8], data: &WebData) -> Result<WebTrainer, JsValue> {
        let c = checkpoint::load_model(bytes).map_err(checkpoint_error_to_js)?;
        let mut model = WebTrainer::new_model(&device.device, &c.config, data)?;
        match &c.optimizer {
            Some(state) => on_model!(&mut model, t => t.resume(&c.parameters, state)),
            None => on_model!(&mut model, t => t.set_parameters(&c.parameters)),
        }
        .map_err(train_error_to_js)?;
        Ok(WebTrainer::wrap(model))
    }

    /// The weights and configuration as a `.safetensors` file, recording `step` (the steps
    /// behind these weights, counting those before they were loaded); with `optimizer`, Adam's
    /// state too, so that the file resumes training exactly.
    pub async fn save(&self, step: u32, optimizer: bool) -> Result<Vec<u8>, JsValue> {
        let model = self.trainer.lock().await;
        let params = on_model!(&*model, t => t.parameters().await).map_err(train_error_to_js)?;
        let state = if optimizer { Some(on_model!(&*model, t => t.optimizer_state().await).map_err(train_error_to_js)?) } else { None };
        Ok(match &*model {
            Model::Stack(t) => checkpoint::save_with_optimizer(t.config(), t.layout(), &params, step, state.as_ref()),
            Model::Graph(t, g) => checkpoint::save_graph(g, t.layout(), &params, step, state.as_ref()),
        })
    }

    /// The configuration in use, as a plain object (see `config_to_js`).
    pub fn config(&self) -> Result<JsValue, JsValue> {
        config_to_js(&self.config)
    }

    /// Latent dimensions (categorical variables; of a graph, the top group's dimensions).
    pub fn latent(&self) -> usize {
        self.stack().map_or(self.code_length, |c| c.latent)
    }

    /// Each group of latents' name and shape, top first (e.g. "z1 20", "z2 8x7x7"); none for a
    /// layer stack, whose one group is its code.
    pub fn groups(&self) -> Vec<String> {
        self.groups.clone()
    }

    /// The model in a line, e.g. "1x28x28 → conv2d 32 k4 s2 p1 relu → ... → z20 → ...".
    pub fn summary(&self) -> String {
        match &self.config {
            ModelConfig::Stack(c) => c.summary(),
            ModelConfig::Graph(g) => g.summary(),
        }
    }

    /// Trainable parameters.
    pub fn parameters(&self) -> usize {
        self.parameters
    }

    /// Takes `n` training steps (on the GPU: submits them and waits for them to finish) and
    /// returns their metrics, `{ steps, loss, reconstruction, kl, totalSteps, epoch }`, averaged
    /// over the steps since the last call; a graph's also `klGroups`, each group's KL, top first
    /// (`kl` is their sum).
    pub async fn train(&self, n: u32) -> Result<JsValue, JsValue> {
        let mut model = self.trainer.lock().await;
        let trained = on_model!(&mut *model, t => t.train(n));
        let step = on_model!(&*model, t => t.step());
        self.step.set(step);
        trained.map_err(train_error_to_js)?;
        let (steps, loss, reconstruction, kl) = match &mut *model {
            Model::Stack(t) => t.metrics().await.map(|m| (m.steps, m.loss, m.reconstruction, Kl::Total(m.kl))),
            Model::Graph(t, _) => t.metrics().await.map(|m| (m.steps, m.loss, m.reconstruction, Kl::Groups(m.kl))),
        }
        .map_err(train_error_to_js)?;
        let obj = js_sys::Object::new();
        set(&obj, "steps", steps);
        set(&obj, "loss", loss);
        set(&obj, "reconstruction", reconstruction);
        kl.set_on(&obj);
        set(&obj, "totalSteps", step);
        set(&obj, "epoch", step / self.steps_per_epoch);
        Ok(obj.into())
    }

    /// Steps taken (submitted, on the GPU) by this trainer, counting from the checkpoint's with
    /// Adam's state.
    pub fn step(&self) -> u32 {
        self.step.get()
    }

    pub fn epoch(&self) -> f64 {
        f64::from(self.step.get()) / f64::from(self.steps_per_epoch)
    }

    #[wasm_bindgen(js_name = stepsPerEpoch)]
    pub fn steps_per_epoch(&self) -> u32 {
        self.steps_per_epoch
    }

    /// "gpu" or "cpu".
    pub fn backend(&self) -> String {
        self.kind.into()
    }

    /// How a step runs, e.g. "43 GPU dispatches per step".
    #[wasm_bindgen(js_name = stepSummary)]
    pub fn step_summary(&self) -> String {
        self.step_summary.clone()
    }

    /// Makes ready what training needs and resolves when it is (on the GPU, compiles the
    /// training step's pipelines, which a browser otherwise does before the first step runs).
    pub async fn prepare(&self) -> Result<(), JsValue> {
        on_model!(&mut *self.trainer.lock().await, t => t.prepare().await).map_err(train_error_to_js)
    }

    /// The test set's `{ nelbo, reconstruction, kl }` in nats per digit; a graph's also
    /// `klGroups` (`kl` is their sum).
    pub async fn evaluate(&self) -> Result<JsValue, JsValue> {
        let (nelbo, reconstruction, kl) = match &mut *self.trainer.lock().await {
            Model::Stack(t) => t.evaluate().await.map(|e| (e.nelbo, e.reconstruction, Kl::Total(e.kl))),
            Model::Graph(t, _) => t.evaluate().await.map(|e| (e.nelbo, e.reconstruction, Kl::Groups(e.kl))),
        }
        .map_err(train_error_to_js)?;
        let obj = js_sys::Object::new();
        set(&obj, "nelbo", nelbo);
        set(&obj, "reconstruction", reconstruction);
        kl.set_on(&obj);
        Ok(obj.into())
    }

    /// The importance-weighted estimate of -log p(x) on the test set with `k` samples.
    #[wasm_bindgen(js_name = importanceWeightedNll)]
    pub async fn importance_weighted_nll(&self, k: usize) -> Result<f64, JsValue> {
        on_model!(&mut *self.trainer.lock().await, t => t.importance_weighted_nll(k).await).map_err(train_error_to_js)
    }

    /// q(z|x) for images x [n * pixels]: `{ code, mu, logvar }` (Gaussian latents, each
    /// [n * latent]; of a graph, the top group's) or `{ code, probabilities }` (categorical,
    /// [n * latent * classes]); `code` is what `reconstruct` decodes (mu, or the class
    /// probabilities).
    pub async fn encode(&self, x: Vec<f32>) -> Result<JsValue, JsValue> {
        let encoding = on_model!(&mut *self.trainer.lock().await, t => t.encode(&x).await).map_err(train_error_to_js)?;
        let obj = js_sys::Object::new();
        set(&obj, "code", js_sys::Float32Array::from(encoding.code()));
        match &encoding {
            Encoding::Gaussian { mu, logvar } => {
                set(&obj, "mu", js_sys::Float32Array::from(&mu[..]));
                set(&obj, "logvar", js_sys::Float32Array::from(&logvar[..]));
            }
            Encoding::Categorical { probabilities } => set(&obj, "probabilities", js_sys::Float32Array::from(&probabilities[..])),
        }
        Ok(obj.into())
    }

    /// Values per code z (latent, or latent x classes; of a graph, the top group's).
    #[wasm_bindgen(js_name = codeLength)]
    pub fn code_length(&self) -> usize {
        self.code_length
    }

    /// Classes per categorical variable; 0 for Gaussian latents.
    pub fn classes(&self) -> usize {
        self.stack().and_then(|c| c.latent_type.classes()).unwrap_or(0)
    }

    /// `n` codes from the prior [n * codeLength]: z ~ N(0, I), or a uniformly random class per
    /// variable (one-hot); the same seed gives the same codes.
    #[wasm_bindgen(js_name = priorCodes)]
    pub fn prior_codes(&self, n: usize, seed: u32) -> Vec<f32> {
        match self.stack() {
            Some(c) => latent::model_prior_codes(c, n, seed),
            None => latent::prior_codes(n, self.code_length, seed),
        }
    }

    /// Images [n * pixels] in [0, 1] decoded from codes z [n * codeLength] (of a graph, top-group
    /// codes, every lower group at its conditional prior's mean).
    pub async fn decode(&self, z: Vec<f32>) -> Result<Vec<f32>, JsValue> {
        match &mut *self.trainer.lock().await {
            Model::Stack(t) => t.decode(&z).await,
            Model::Graph(t, _) => t.decode_top(&z).await,
        }
        .map_err(train_error_to_js)
    }

    /// Reconstructions (decoded at z = mu; of a graph, every group at its posterior mean) of
    /// images x [n * pixels].
    pub async fn reconstruct(&self, x: Vec<f32>) -> Result<Vec<f32>, JsValue> {
        on_model!(&mut *self.trainer.lock().await, t => t.reconstruct(&x).await).map_err(train_error_to_js)
    }

    /// The per-pixel standard deviations of p(x|z) [n * pixels] for codes z [n * codeLength].
    #[wasm_bindgen(js_name = decodeStd)]
    pub async fn decode_std(&self, z: Vec<f32>) -> Result<Vec<f32>, JsValue> {
        match &mut *self.trainer.lock().await {
            Model::Stack(t) => t.decode_std(&z).await,
            Model::Graph(t, _) => t.decode_top(&z).await.map(bernoulli_std),
        }
        .map_err(train_error_to_js)
    }

    /// The per-pixel standard deviations of the reconstructions of images x [n * pixels].
    #[wasm_bindgen(js_name = reconstructStd)]
    pub async fn reconstruct_std(&self, x: Vec<f32>) -> Result<Vec<f32>, JsValue> {
        match &mut *self.trainer.lock().await {
            Model::Stack(t) => t.reconstruct_std(&x).await,
            Model::Graph(t, _) => t.reconstruct(&x).await.map(bernoulli_std),
        }
        .map_err(train_error_to_js)
    }

    /// A hierarchy's `n` variations of each image x [rows * pixels], rows after rows ([rows * n
    /// * pixels]): `keep` "top" keeps the top group at its posterior mean and redraws the lower
    /// ones from their conditional priors; "lower" keeps the lower groups and redraws the top
    /// one (`GraphBackend::variations`); the same seed gives the same images.
    pub async fn variations(&self, x: Vec<f32>, n: usize, keep: String, seed: u32) -> Result<Vec<f32>, JsValue> {
        let keep = match keep.as_str() {
            "top" => Keep::Top,
            "lower" => Keep::Lower,
            other => return Err(error("data", format!("keep \"{other}\": say top or lower"), None)),
        };
        match &mut *self.trainer.lock().await {
            Model::Stack(_) => Err(error("data", "only a hierarchy of latents has groups to keep and redraw".into(), None)),
            Model::Graph(t, _) => Ok(t.variations(&x, n, keep, seed).await.map_err(train_error_to_js)?.images),
        }
    }
}

fn check_code(code: &[f32], dims: &[usize]) -> Result<(), JsValue> {
    match dims.iter().find(|&&d| d >= code.len()) {
        Some(d) => Err(error("data", format!("dimension {d} is outside a code of {} dimensions", code.len()), None)),
        None => Ok(()),
    }
}

/// `steps` codes from a to b inclusive, flattened [steps * latent]; spherical = slerp.
#[wasm_bindgen]
pub fn interpolate(a: Vec<f32>, b: Vec<f32>, steps: usize, spherical: bool) -> Result<Vec<f32>, JsValue> {
    if a.len() != b.len() || a.is_empty() {
        return Err(error("data", "the two codes must have the same, nonzero length".into(), None));
    }
    Ok(latent::interpolate(&a, &b, steps, spherical).concat())
}

/// For each of `dims`, `steps` copies of `code` sweeping that dimension over the prior's range.
#[wasm_bindgen(js_name = traversalCodes)]
pub fn traversal_codes(code: Vec<f32>, dims: Vec<usize>, steps: usize) -> Result<Vec<f32>, JsValue> {
    check_code(&code, &dims)?;
    Ok(latent::traversal_codes(&code, &dims, steps))
}

/// An n x n grid of codes over the prior's quantiles in dimensions x and y.
#[wasm_bindgen(js_name = manifoldCodes)]
pub fn manifold_codes(code: Vec<f32>, x: usize, y: usize, n: usize) -> Result<Vec<f32>, JsValue> {
    check_code(&code, &[x, y])?;
    Ok(latent::manifold_codes(&code, x, y, n))
}

/// The average KL of each latent dimension over the rows of mu and logvar [n * latent].
#[wasm_bindgen(js_name = klPerDimension)]
pub fn kl_per_dimension(mu: Vec<f32>, logvar: Vec<f32>, latent: usize) -> Vec<f64> {
    latent::kl_per_dimension(&mu, &logvar, latent)
}

/// The average KL to the uniform prior of each of `variables` categorical variables over rows of
/// class probabilities [n * variables * classes].
#[wasm_bindgen(js_name = klPerVariable)]
pub fn kl_per_variable(probabilities: Vec<f32>, variables: usize, classes: usize) -> Vec<f64> {
    latent::kl_per_variable(&probabilities, variables, classes)
}

/// Each variable's most likely class in each row of class probabilities: [n * variables].
#[wasm_bindgen(js_name = mostLikelyClasses)]
pub fn most_likely_classes(probabilities: Vec<f32>, classes: usize) -> Vec<u32> {
    latent::most_likely_classes(&probabilities, classes)
}

/// For each of `variables`, `classes` copies of `code` with that variable switched to each class.
#[wasm_bindgen(js_name = classTraversalCodes)]
pub fn class_traversal_codes(code: Vec<f32>, variables: Vec<usize>, classes: usize) -> Result<Vec<f32>, JsValue> {
    match variables.iter().find(|&&v| classes == 0 || (v + 1) * classes > code.len()) {
        Some(v) => Err(error("data", format!("variable {v} of {classes} classes is outside a code of {} values", code.len()), None)),
        None => Ok(latent::class_traversal_codes(&code, &variables, classes)),
    }
}

/// Latent dimensions from most to least used, given `klPerDimension`'s values.
#[wasm_bindgen(js_name = dimensionsByUse)]
pub fn dimensions_by_use(kl: Vec<f64>) -> Vec<u32> {
    latent::dimensions_by_use(&kl).into_iter().map(|d| d as u32).collect()
}

/// A hand drawing (ink in [0, 1], width x height) as an MNIST-style digit of `rows` x `cols`
/// (the dataset's image size): scaled to 20/28 of the shorter side, centred by mass.
#[wasm_bindgen(js_name = centreDigit)]
pub fn centre_digit(ink: Vec<f32>, width: usize, height: usize, rows: usize, cols: usize) -> Result<Vec<f32>, JsValue> {
    if ink.len() != width * height {
        return Err(error("data", format!("{} values do not make a {width}x{height} drawing", ink.len()), None));
    }
    if rows == 0 || cols == 0 {
        return Err(error("data", format!("a digit of {rows}x{cols} pixels has no room for a drawing"), None));
    }
    Ok(data::centre_digit(&ink, width, height, rows, cols))
}

/// The threads the CPU path uses: rayon's pool in the `threads` build once `initThreadPool`
/// has started it, otherwise 1.
#[wasm_bindgen]
pub fn threads() -> usize {
    rayon::current_num_threads()
}

/// The GPU, its kernel shape forced where `kernels` names one ("software" or "hardware").
async fn open_gpu(kernels: Option<String>) -> Result<Gpu, JsValue> {
    let gpu = Gpu::new().await.map_err(gpu_error_to_js)?;
    match kernels.filter(|k| !k.is_empty()) {
        None => Ok(gpu),
        Some(name) => match KernelShape::parse(&name) {
            Some(shape) => Ok(gpu.with_shape(shape)),
            None => Err(gpu_error_to_js(GpuError::Shape(format!("kernels={name}: say software or hardware")))),
        },
    }
}

/// `make bench`, browser half: times the training step of each preset in `models` (e.g.
/// "mlp conv") on this page's GPU (its kernels forced to `kernels` if given), or with `device`
/// "cpu" on the CPU path, and returns the lines to print (see `bench::Report::lines`):
/// `bench browser ...` or `bench browser-cpu ...`.
#[wasm_bindgen]
pub async fn benchmark(models: String, samples: usize, device: String, kernels: Option<String>) -> Result<Vec<String>, JsValue> {
    let performance = js_sys::Reflect::get(&js_sys::global(), &"performance".into())?;
    let now_fn: js_sys::Function = js_sys::Reflect::get(&performance, &"now".into())?.into();
    let now = move || now_fn.call0(&performance).ok().and_then(|v| v.as_f64()).unwrap_or(0.0);
    let mut lines = Vec::new();
    if device == "cpu" {
        for model in models.split_whitespace() {
            lines.extend(crate::bench::run_cpu(model, samples, &now).map_err(train_error_to_js)?.lines("browser-cpu"));
        }
        return Ok(lines);
    }
    let gpu = open_gpu(kernels).await?;
    for model in models.split_whitespace() {
        let report = crate::bench::run(gpu.clone(), model, samples, &now).await.map_err(train_error_to_js)?;
        lines.extend(report.lines("browser"));
    }
    Ok(lines)
}
