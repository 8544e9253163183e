//! The wasm-bindgen surface the page calls. Errors reach JavaScript as objects
//! `{ kind, message, field? }` so the page can say precisely what went wrong.

use wasm_bindgen::prelude::*;

use crate::data::Dataset;
use crate::gpu::{Gpu, GpuError};
use crate::model::Config;
use crate::trainer::{self, TrainError, Trainer};

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

fn set(obj: &js_sys::Object, key: &str, value: f64) {
    let _ = js_sys::Reflect::set(obj, &key.into(), &value.into());
}

/// Finds the WebGPU adapter and returns one line describing it. On failure the promise rejects
/// with `{ kind, message }`: kind is "no-webgpu", "no-adapter" or "device".
#[wasm_bindgen(js_name = probeGpu)]
pub async fn probe_gpu() -> Result<String, JsValue> {
    let gpu = Gpu::new().await.map_err(gpu_error_to_js)?;
    Ok(gpu.adapter_summary())
}

/// A VAE training on the page's GPU, with its test set kept for picking digits.
#[wasm_bindgen]
pub struct WebTrainer {
    trainer: Trainer,
    test: Dataset,
}

#[wasm_bindgen]
impl WebTrainer {
    /// `config`: an object with any of `Config`'s fields (the rest take the reference values);
    /// the four files are IDX images/labels, raw or gzipped.
    pub async fn create(
        config: JsValue,
        train_images: Vec<u8>,
        train_labels: Vec<u8>,
        test_images: Vec<u8>,
        test_labels: Vec<u8>,
    ) -> Result<WebTrainer, JsValue> {
        let config: Config = if config.is_undefined() || config.is_null() {
            Config::default()
        } else {
            serde_wasm_bindgen::from_value(config).map_err(|e| error("config", e.to_string(), None))?
        };
        let data = |what: &str, images: &[u8], labels: &[u8]| {
            Dataset::from_idx(images, labels).map_err(|e| error("data", format!("{what} set: {e}"), None))
        };
        let train = data("training", &train_images, &train_labels)?;
        let test = data("test", &test_images, &test_labels)?;
        let gpu = Gpu::new().await.map_err(gpu_error_to_js)?;
        let trainer = Trainer::new(gpu, config, &train, &test).map_err(train_error_to_js)?;
        Ok(WebTrainer { trainer, test })
    }

    pub fn adapter(&self) -> String {
        self.trainer.gpu().adapter_summary()
    }

    /// The configuration in use, as a plain object.
    pub fn config(&self) -> Result<JsValue, JsValue> {
        serde_wasm_bindgen::to_value(self.trainer.config()).map_err(|e| error("config", e.to_string(), None))
    }

    /// Submits `n` training steps to the GPU and returns without waiting.
    pub fn train(&mut self, n: u32) -> Result<(), JsValue> {
        self.trainer.train(n).map_err(train_error_to_js)
    }

    pub fn step(&self) -> u32 {
        self.trainer.step()
    }

    pub fn epoch(&self) -> f64 {
        self.trainer.epoch()
    }

    #[wasm_bindgen(js_name = stepsPerEpoch)]
    pub fn steps_per_epoch(&self) -> u32 {
        self.trainer.steps_per_epoch()
    }

    #[wasm_bindgen(js_name = dispatchesPerStep)]
    pub fn dispatches_per_step(&mut self) -> usize {
        self.trainer.dispatches_per_step()
    }

    /// `{ steps, loss, reconstruction, kl, totalSteps, epoch }` averaged since the last call.
    pub async fn metrics(&mut self) -> Result<JsValue, JsValue> {
        let m = self.trainer.metrics().await.map_err(train_error_to_js)?;
        let obj = js_sys::Object::new();
        set(&obj, "steps", m.steps as f64);
        set(&obj, "loss", m.loss);
        set(&obj, "reconstruction", m.reconstruction);
        set(&obj, "kl", m.kl);
        set(&obj, "totalSteps", m.total_steps as f64);
        set(&obj, "epoch", m.epoch as f64);
        Ok(obj.into())
    }

    /// The test set's `{ nelbo, reconstruction, kl }` in nats per digit.
    pub async fn evaluate(&mut self) -> Result<JsValue, JsValue> {
        let e = self.trainer.evaluate().await.map_err(train_error_to_js)?;
        let obj = js_sys::Object::new();
        set(&obj, "nelbo", e.nelbo);
        set(&obj, "reconstruction", e.reconstruction);
        set(&obj, "kl", e.kl);
        Ok(obj.into())
    }

    /// The importance-weighted estimate of -log p(x) on the test set with `k` samples.
    #[wasm_bindgen(js_name = importanceWeightedNll)]
    pub async fn importance_weighted_nll(&mut self, k: usize) -> Result<f64, JsValue> {
        self.trainer.importance_weighted_nll(k).await.map_err(train_error_to_js)
    }

    /// mu and log-variance for images x [n * pixels]: `{ mu, logvar }`, each [n * latent].
    pub async fn encode(&mut self, x: Vec<f32>) -> Result<JsValue, JsValue> {
        let (mu, logvar) = self.trainer.encode(&x).await.map_err(train_error_to_js)?;
        let obj = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&obj, &"mu".into(), &js_sys::Float32Array::from(&mu[..]).into());
        let _ = js_sys::Reflect::set(&obj, &"logvar".into(), &js_sys::Float32Array::from(&logvar[..]).into());
        Ok(obj.into())
    }

    /// Images [n * pixels] in [0, 1] decoded from codes z [n * latent].
    pub async fn decode(&mut self, z: Vec<f32>) -> Result<Vec<f32>, JsValue> {
        self.trainer.decode(&z).await.map_err(train_error_to_js)
    }

    /// Reconstructions (decoded at z = mu) of images x [n * pixels].
    pub async fn reconstruct(&mut self, x: Vec<f32>) -> Result<Vec<f32>, JsValue> {
        self.trainer.reconstruct(&x).await.map_err(train_error_to_js)
    }

    /// `n` images decoded from the prior; the same seed gives the same codes.
    #[wasm_bindgen(js_name = samplePrior)]
    pub async fn sample_prior(&mut self, n: usize, seed: u32) -> Result<Vec<f32>, JsValue> {
        self.trainer.sample_prior(n, seed).await.map_err(train_error_to_js)
    }

    #[wasm_bindgen(js_name = testCount)]
    pub fn test_count(&self) -> usize {
        self.test.count
    }

    /// Test image `i` as floats in [0, 1].
    #[wasm_bindgen(js_name = testImage)]
    pub fn test_image(&self, i: usize) -> Result<Vec<f32>, JsValue> {
        if i >= self.test.count {
            return Err(error("data", format!("test image {i} does not exist (there are {})", self.test.count), None));
        }
        Ok(self.test.image(i))
    }

    #[wasm_bindgen(js_name = testLabel)]
    pub fn test_label(&self, i: usize) -> Option<u8> {
        self.test.labels.get(i).copied()
    }
}

/// `steps` codes from a to b inclusive, flattened [steps * latent]; spherical = slerp.
#[wasm_bindgen]
pub fn interpolate(a: Vec<f32>, b: Vec<f32>, steps: usize, spherical: bool) -> Result<Vec<f32>, JsValue> {
    if a.len() != b.len() || a.is_empty() {
        return Err(error("data", "the two codes must have the same, nonzero length".into(), None));
    }
    Ok(crate::latent::interpolate(&a, &b, steps, spherical).concat())
}
