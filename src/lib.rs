//! A variational autoencoder (Kingma & Welling, "Auto-Encoding Variational Bayes") whose
//! forward and backward passes are hand-written WGSL compute shaders, run through `wgpu`
//! natively (Vulkan, Metal, DX12) and in the browser (WebGPU).
//!
//! - [`model`]: the configuration (layers), shapes, parameter layout and initialisation.
//! - [`ops`]: one module per op family: its uniform record, dispatches and CPU reference.
//!   Dependencies run one way: model <- ops <- reference, trainer; latent and rng depend on
//!   neither trainer nor reference; cpu depends on training, not on trainer.
//! - [`reference`]: the whole model as plain loops over the layers: the oracle the GPU is checked against.
//! - [`trainer`]: the one owner of GPU state; the training step as a loop over the layers.
//! - [`cpu`]: the same trainer on the CPU in f32 (sgemm), for browsers without WebGPU.
//! - [`training`]: what both trainers share: metrics, evaluations, errors, the model-and-data check.
//! - [`backend`]: one interface over the two trainers.
//! - [`gpu`]: the device, its queue, and the one readback helper.
//! - [`kernels`]: the WGSL pipelines, each built when a pass first needs it, and the uniforms
//!   that drive them.
//! - [`latent`]: prior samples, interpolation, traversals and the manifold the page draws.
//! - [`bench`]: the timing behind `make bench`.
//! - [`checkpoint`]: weights and configuration as a `.safetensors` file.
//! - `radv` (native only): what AMD's compiler makes of every kernel, on radv's null device.
//! - `web` (wasm32 only): the surface the page calls through wasm-bindgen.

pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod cpu;
pub mod data;
pub mod gpu;
pub mod kernels;
pub mod latent;
pub mod model;
pub mod ops;
pub mod reference;
pub mod rng;
pub mod trainer;
pub mod training;

#[cfg(not(target_arch = "wasm32"))]
pub mod radv;

#[cfg(target_arch = "wasm32")]
pub mod web;

// The `threads` build: `initThreadPool(n)` starts rayon's pool as n Web Workers sharing this
// module's memory (the page's worker calls it once, before any trainer exists).
#[cfg(all(target_arch = "wasm32", feature = "threads"))]
pub use wasm_bindgen_rayon::init_thread_pool;
