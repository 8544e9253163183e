//! The GPU device and queue, found once, and the one readback helper.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::kernels::KernelShape;

/// Why the GPU could not be used. Each message says what the user can do about it.
#[derive(Clone, Debug, PartialEq)]
pub enum GpuError {
    /// The browser has no `navigator.gpu`.
    NoWebGpu,
    /// WebGPU exists (or we are native) but no adapter was offered.
    NoAdapter(String),
    /// The adapter refused to create a device.
    Device(String),
    /// Copying results back to the CPU failed (often: the device was lost).
    Readback(String),
    /// A setting names no kernel shape (`WEBVAE_KERNELS`).
    Shape(String),
    /// The device was lost (driver reset, GPU removed, browser reclaimed it) or hit an error
    /// it cannot continue after. Everything on it is gone; a new device must be opened.
    Lost(String),
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuError::NoWebGpu => write!(
                f,
                "this browser does not expose WebGPU (navigator.gpu is missing); try a recent \
                 Chrome, Edge or Firefox, or Safari 26+, with WebGPU enabled"
            ),
            GpuError::NoAdapter(why) => write!(f, "no GPU adapter was found ({why}); {}", NO_ADAPTER_HINT),
            GpuError::Device(why) => write!(f, "the GPU adapter refused to create a device: {why}"),
            GpuError::Readback(why) => write!(f, "reading results back from the GPU failed: {why}"),
            GpuError::Lost(why) => write!(f, "the GPU device was lost ({why})"),
            GpuError::Shape(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for GpuError {}

#[cfg(not(target_arch = "wasm32"))]
const NO_ADAPTER_HINT: &str = "install a Vulkan driver; with no GPU, Mesa's lavapipe runs on the \
    CPU (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`, or run `make setup`)";
#[cfg(target_arch = "wasm32")]
const NO_ADAPTER_HINT: &str = "the browser has WebGPU but offered no adapter: check that hardware \
    acceleration is on, or in Chromium pass --enable-unsafe-webgpu (headless: also \
    --enable-features=Vulkan for the SwiftShader adapter)";

/// The device and queue every kernel runs on, and what we know of the adapter. Clones share
/// the device.
#[derive(Clone, Debug)]
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    /// What the browser says of its adapter (vendor, architecture); empty natively, where
    /// `info.name` says it all.
    pub browser_description: String,
    /// How the products are shaped on this device: chosen from the adapter's information
    /// (`KernelShape::for_adapter`) unless forced (`WEBVAE_KERNELS`, `with_shape`).
    pub shape: KernelShape,
    /// Whether the adapter emulates a GPU on the CPU (lavapipe, SwiftShader, a fallback
    /// adapter): its own choice of shape is the software one.
    pub emulated: bool,
    /// Why the device stopped working, once it has: set by the device-lost callback and by the
    /// uncaptured-error handler (which would otherwise panic).
    failure: Arc<Mutex<Option<String>>>,
    /// Readbacks so far (the benchmark checks that training needs none per step).
    readbacks: Arc<AtomicU64>,
}

impl Gpu {
    /// Finds an adapter (a high-performance one if there is a choice) and opens a device with
    /// the adapter's full limits, so that large configurations fit where the hardware allows;
    /// configurations are checked against `device.limits()` before anything is allocated.
    pub async fn new() -> Result<Gpu, GpuError> {
        #[cfg(target_arch = "wasm32")]
        if !browser_has_webgpu() {
            return Err(GpuError::NoWebGpu);
        }
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("webvae"),
                required_limits: adapter.limits(),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::Device(e.to_string()))?;
        #[cfg(target_arch = "wasm32")]
        let (browser_description, fallback) = browser_adapter_description().await;
        #[cfg(not(target_arch = "wasm32"))]
        let (browser_description, fallback) = (String::new(), false);
        let info = adapter.get_info();
        let own = KernelShape::for_adapter(&info, &browser_description, fallback);
        let shape = KernelShape::forced().map_err(GpuError::Shape)?.unwrap_or(own);
        let failure = Arc::new(Mutex::new(None));
        let record = |failure: &Arc<Mutex<Option<String>>>| {
            let failure = failure.clone();
            move |why: String| {
                let mut slot = failure.lock().unwrap_or_else(|e| e.into_inner());
                slot.get_or_insert(why);
            }
        };
        let on_lost = record(&failure);
        device.set_device_lost_callback(move |reason, message| on_lost(format!("{reason:?}: {message}")));
        let on_error = record(&failure);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| on_error(e.to_string())));
        let emulated = own == KernelShape::Software;
        Ok(Gpu { device, queue, info, browser_description, shape, emulated, failure, readbacks: Arc::default() })
    }

    /// This device with its products shaped as `shape` (tests and benchmarks run both).
    pub fn with_shape(&self, shape: KernelShape) -> Gpu {
        Gpu { shape, ..self.clone() }
    }

    /// `Err(Lost)` once the device has been lost or has failed; everything on it is gone.
    pub fn check(&self) -> Result<(), GpuError> {
        match &*self.failure.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(why) => Err(GpuError::Lost(why.clone())),
            None => Ok(()),
        }
    }

    /// How many readbacks (GPU to CPU copies) have been made on this device.
    pub fn readbacks(&self) -> u64 {
        self.readbacks.load(Ordering::Relaxed)
    }

    /// Waits until the GPU has finished everything submitted so far, without reading anything.
    pub async fn finish(&self) -> Result<(), GpuError> {
        let (sender, receiver) = futures_channel::oneshot::channel();
        self.queue.on_submitted_work_done(move || {
            let _ = sender.send(());
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| GpuError::Lost(e.to_string()))?;
        receiver.await.map_err(|_| GpuError::Lost("the device dropped the work-done callback".into()))?;
        self.check()
    }

    /// Destroys the device, as a driver reset would: for exercising the recovery path.
    pub fn lose(&self) {
        self.device.destroy();
    }

    /// The adapter's name, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)" or, in a browser, "google swiftshader".
    pub fn adapter_name(&self) -> String {
        [&self.info.name, &self.browser_description].into_iter().find(|n| !n.is_empty()).cloned().unwrap_or_else(|| "unnamed adapter".into())
    }

    /// One line naming the adapter and the kernel shape, e.g.
    /// "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu), software kernels".
    pub fn adapter_summary(&self) -> String {
        format!("{} ({:?}, {:?}), {} kernels", self.adapter_name(), self.info.backend, self.info.device_type, self.shape.name())
    }

    /// Reads `len` f32 values starting at element `offset` of a buffer with COPY_SRC usage.
    ///
    /// The readback dance, written once: copy into a MAP_READ staging buffer, ask to map it,
    /// wait for the GPU (natively by polling the device; in the browser the event loop does
    /// it), then copy the mapped bytes out.
    pub async fn read_f32(&self, src: &wgpu::Buffer, offset: usize, len: usize) -> Result<Vec<f32>, GpuError> {
        self.read_f32_then(src, offset, len, |_| {}).await
    }

    /// As `read_f32`, with `then` recording more commands (e.g. clearing what was read) into the
    /// same submission, right after the copy.
    pub async fn read_f32_then(
        &self,
        src: &wgpu::Buffer,
        offset: usize,
        len: usize,
        then: impl FnOnce(&mut wgpu::CommandEncoder),
    ) -> Result<Vec<f32>, GpuError> {
        self.check()?;
        self.readbacks.fetch_add(1, Ordering::Relaxed);
        let bytes = (len * 4) as u64;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(src, (offset * 4) as u64, &staging, 0, bytes);
        then(&mut encoder);
        self.queue.submit([encoder.finish()]);

        // A lost device fails the map; say so rather than "readback failed".
        let fail = |why: String| self.check().err().unwrap_or(GpuError::Readback(why));
        let (sender, receiver) = futures_channel::oneshot::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |result| {
            let _ = sender.send(result);
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| fail(e.to_string()))?;
        receiver
            .await
            .map_err(|_| fail("the map request was dropped".into()))?
            .map_err(|e| fail(e.to_string()))?;
        let data = staging.get_mapped_range(..).map_err(|e| fail(e.to_string()))?;
        let values = bytemuck::cast_slice(&data).to_vec();
        drop(data);
        staging.unmap();
        Ok(values)
    }
}

/// Whether `navigator.gpu` exists (in a window or a worker).
#[cfg(target_arch = "wasm32")]
pub fn browser_has_webgpu() -> bool {
    let global = js_sys::global();
    let navigator = js_sys::Reflect::get(&global, &"navigator".into()).unwrap_or_default();
    !navigator.is_undefined()
        && js_sys::Reflect::get(&navigator, &"gpu".into())
            .map(|gpu| !gpu.is_undefined() && !gpu.is_null())
            .unwrap_or(false)
}

/// "vendor architecture" from `GPUAdapter.info`, which wgpu does not pass on (browsers leave
/// `description` empty), and whether the browser says the adapter is a fallback (software)
/// one. Asks for the default adapter again; an empty string if anything fails.
#[cfg(target_arch = "wasm32")]
async fn browser_adapter_description() -> (String, bool) {
    use js_sys::{Function, Promise, Reflect};
    use wasm_bindgen::JsCast;
    let get = |obj: &wasm_bindgen::JsValue, key: &str| Reflect::get(obj, &key.into()).ok();
    let Some(gpu) = get(&js_sys::global(), "navigator").and_then(|n| get(&n, "gpu")) else {
        return (String::new(), false);
    };
    let Some(request) = get(&gpu, "requestAdapter").and_then(|f| f.dyn_into::<Function>().ok()) else {
        return (String::new(), false);
    };
    let Ok(promise) = request.call0(&gpu).and_then(|p| p.dyn_into::<Promise>()) else {
        return (String::new(), false);
    };
    let Ok(adapter) = wasm_bindgen_futures::JsFuture::from(promise).await else {
        return (String::new(), false);
    };
    let Some(info) = get(&adapter, "info").filter(|i| i.is_object()) else {
        return (String::new(), false);
    };
    // Where the flag lives moved from the adapter into its info; either says it.
    let fallback = [get(&info, "isFallbackAdapter"), get(&adapter, "isFallbackAdapter")].iter().flatten().any(|v| v.as_bool() == Some(true));
    let description = ["vendor", "architecture", "device", "description"]
        .iter()
        .filter_map(|key| get(&info, key).and_then(|v| v.as_string()))
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    (description, fallback)
}
