//! The wasm-bindgen surface the page calls.

use wasm_bindgen::prelude::*;

use crate::gpu::{Gpu, GpuError};

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// Finds the WebGPU adapter and returns one line describing it. On failure the promise rejects
/// with an object `{ kind, message }`: kind is "no-webgpu", "no-adapter" or "device".
#[wasm_bindgen(js_name = probeGpu)]
pub async fn probe_gpu() -> Result<String, JsValue> {
    let gpu = Gpu::new().await.map_err(gpu_error_to_js)?;
    Ok(gpu.adapter_summary())
}

pub(crate) fn gpu_error_to_js(e: GpuError) -> JsValue {
    let kind = match e {
        GpuError::NoWebGpu => "no-webgpu",
        GpuError::NoAdapter(_) => "no-adapter",
        GpuError::Device(_) => "device",
        GpuError::Readback(_) => "readback",
    };
    let obj = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&obj, &"kind".into(), &kind.into());
    let _ = js_sys::Reflect::set(&obj, &"message".into(), &e.to_string().into());
    obj.into()
}
