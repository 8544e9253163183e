//! The WGSL kernels as compute pipelines, built once per device, and the uniform records that
//! tell each dispatch where its tensors live.
//!
//! Every kernel shares one bind group layout, so one bind group serves a whole training step:
//!   0  uniform  the dispatch's record (dims, offsets), chosen by a dynamic offset
//!   1  uniform  the step's record (Adam's t, the RNG step, the batch start), dynamic offset
//!   2  params   every weight and bias, one flat f32 buffer (layout in `model::Layout`)
//!   3  grads    the same layout, gradients of the last step
//!   4  acts     activations and their gradients, one flat f32 buffer (`trainer::Acts`)
//!   5  moments  Adam's m then v
//!   6  data     the dataset's pixels, packed 4 bytes per u32 (read-only)
//!   7  indices  the epoch's order of training images, then the test images (read-only)
//!   8  metrics  losses accumulated on the GPU until the host asks

use std::num::NonZeroU64;

use bytemuck::{Pod, Zeroable};

pub const SHADERS: &[(&str, &str)] = &[
    ("data.wgsl", include_str!("../shaders/data.wgsl")),
    ("latent.wgsl", include_str!("../shaders/latent.wgsl")),
    ("linear.wgsl", include_str!("../shaders/linear.wgsl")),
    ("linear4.wgsl", include_str!("../shaders/linear4.wgsl")),
    ("loss.wgsl", include_str!("../shaders/loss.wgsl")),
    ("optim.wgsl", include_str!("../shaders/optim.wgsl")),
];

/// Bytes between uniform records: WebGPU's largest allowed `minUniformBufferOffsetAlignment`.
pub const UNIFORM_SLOT: u64 = 256;

/// Every entry point, and the shader file it lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Gather,
    LinearForward,
    LinearBackwardInput,
    LinearBackwardWeight,
    LinearForward4,
    LinearBackwardInput4,
    LinearBackwardWeight4,
    Transpose4,
    Reparameterize,
    LatentBackward,
    ImportanceWeighted,
    EpsBitsTest,
    Reconstruction,
    Accumulate,
    Adam,
}

impl Kernel {
    pub const ALL: [Kernel; 15] = [
        Kernel::Gather,
        Kernel::LinearForward,
        Kernel::LinearBackwardInput,
        Kernel::LinearBackwardWeight,
        Kernel::LinearForward4,
        Kernel::LinearBackwardInput4,
        Kernel::LinearBackwardWeight4,
        Kernel::Transpose4,
        Kernel::Reparameterize,
        Kernel::LatentBackward,
        Kernel::ImportanceWeighted,
        Kernel::EpsBitsTest,
        Kernel::Reconstruction,
        Kernel::Accumulate,
        Kernel::Adam,
    ];

    /// (shader file, entry point).
    pub fn source(self) -> (&'static str, &'static str) {
        match self {
            Kernel::Gather => ("data.wgsl", "gather"),
            Kernel::LinearForward => ("linear.wgsl", "linear_forward"),
            Kernel::LinearBackwardInput => ("linear.wgsl", "linear_backward_input"),
            Kernel::LinearBackwardWeight => ("linear.wgsl", "linear_backward_weight"),
            Kernel::LinearForward4 => ("linear4.wgsl", "linear_forward4"),
            Kernel::LinearBackwardInput4 => ("linear4.wgsl", "linear_backward_input4"),
            Kernel::LinearBackwardWeight4 => ("linear4.wgsl", "linear_backward_weight4"),
            Kernel::Transpose4 => ("linear4.wgsl", "transpose4"),
            Kernel::Reparameterize => ("latent.wgsl", "reparameterize"),
            Kernel::LatentBackward => ("latent.wgsl", "latent_backward"),
            Kernel::ImportanceWeighted => ("latent.wgsl", "importance_weighted"),
            Kernel::EpsBitsTest => ("latent.wgsl", "eps_bits_test"),
            Kernel::Reconstruction => ("loss.wgsl", "reconstruction"),
            Kernel::Accumulate => ("optim.wgsl", "accumulate"),
            Kernel::Adam => ("optim.wgsl", "adam"),
        }
    }
}

/// Record of `shaders/data.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct GatherOp {
    pub rows: u32,
    pub pixels: u32,
    pub x_off: u32,
}

/// Record of `shaders/linear.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct LinearOp {
    pub rows: u32,
    pub inner: u32,
    pub cols: u32,
    pub act: u32,
    pub x_off: u32,
    pub w_off: u32,
    pub b_off: u32,
    pub y_off: u32,
    pub dy_off: u32,
    pub dx_off: u32,
    pub dw_off: u32,
    pub db_off: u32,
    /// linear4 dX: where dy is transposed into ([cols, rows]) first.
    pub dyt_off: u32,
}

impl LinearOp {
    /// Whether every row and tensor of this product starts on a vec4 boundary (and rows come
    /// in fours), so that the `linear4.wgsl` kernels apply.
    pub fn is_vec4(&self) -> bool {
        let offsets = [self.x_off, self.w_off, self.b_off, self.y_off, self.dy_off, self.dx_off, self.dw_off, self.db_off, self.dyt_off];
        [self.rows, self.inner, self.cols].iter().chain(&offsets).all(|v| v.is_multiple_of(4))
    }

    /// One layer's products in buffers of their own, for checking and timing kernels alone:
    /// acts x | y | dy | dx | dy transposed; params W | b; grads dW | db. `act` is the
    /// activation's code; the output width is `b.len()`. Outputs lie at `y_off..dy_off`,
    /// `dx_off..dyt_off` and in `grads`.
    pub fn standalone(rows: usize, inner: usize, act: u32, x: &[f32], w: &[f32], b: &[f32], dy: &[f32]) -> (LinearOp, Scratch) {
        let cols = b.len();
        let (y_off, dy_off) = (rows * inner, rows * inner + rows * cols);
        let (dx_off, dyt_off) = (dy_off + rows * cols, dy_off + rows * cols + rows * inner);
        let scratch = Scratch {
            params: [w, b].concat(),
            grads: vec![0.0; w.len() + b.len()],
            acts: [x, &vec![0.0; rows * cols], dy, &vec![0.0; rows * inner + rows * cols]].concat(),
            ..Default::default()
        };
        let op = LinearOp {
            rows: rows as u32,
            inner: inner as u32,
            cols: cols as u32,
            act,
            x_off: 0,
            w_off: 0,
            b_off: w.len() as u32,
            y_off: y_off as u32,
            dy_off: dy_off as u32,
            dx_off: dx_off as u32,
            dw_off: 0,
            db_off: w.len() as u32,
            dyt_off: dyt_off as u32,
        };
        (op, scratch)
    }

    /// The dispatches computing `product` (LinearForward, LinearBackwardInput or
    /// LinearBackwardWeight) on this record's shape: the vec4 kernels where they apply (dX
    /// first transposes dy), otherwise the general tiled kernel (64 x 64 outputs per workgroup).
    pub fn dispatches(&self, product: Kernel) -> Vec<(Kernel, (u32, u32, u32))> {
        self.dispatches_as(product, self.is_vec4())
    }

    /// As `dispatches`, choosing the kind of kernel (tests run both on aligned shapes).
    pub fn dispatches_as(&self, product: Kernel, vec4: bool) -> Vec<(Kernel, (u32, u32, u32))> {
        assert!(!vec4 || self.is_vec4(), "the vec4 kernels need aligned shapes and offsets");
        let tiles = |n: u32| n.div_ceil(64);
        match (product, vec4) {
            (Kernel::LinearForward, false) => vec![(product, (tiles(self.cols), tiles(self.rows), 1))],
            (Kernel::LinearBackwardInput, false) => vec![(product, (tiles(self.inner), tiles(self.rows), 1))],
            (Kernel::LinearBackwardWeight, false) => vec![(product, (tiles(self.inner), tiles(self.cols), 1))],
            // Workgroups of 8 x 8 invocations; blocks per invocation as in linear4.wgsl.
            (Kernel::LinearForward, true) => vec![(Kernel::LinearForward4, (self.cols.div_ceil(32), self.rows.div_ceil(64), 1))],
            (Kernel::LinearBackwardInput, true) => vec![
                (Kernel::Transpose4, (self.cols.div_ceil(32), self.rows.div_ceil(32), 1)),
                (Kernel::LinearBackwardInput4, (self.inner.div_ceil(64), self.rows.div_ceil(64), 1)),
            ],
            (Kernel::LinearBackwardWeight, true) => vec![(Kernel::LinearBackwardWeight4, (self.inner.div_ceil(64), self.cols.div_ceil(64), 1))],
            _ => panic!("{product:?} is not a linear product"),
        }
    }
}

/// Record of `shaders/latent.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct LatentOp {
    pub batch: u32,
    pub rows: u32,
    pub latent: u32,
    pub seed: u32,
    pub ml_off: u32,
    pub eps_off: u32,
    pub z_off: u32,
    pub dz_off: u32,
    pub dml_off: u32,
    pub kl_off: u32,
    pub recon_off: u32,
    pub out_off: u32,
    pub kl_weight: f32,
    pub use_mean: u32,
}

/// Record of `shaders/loss.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct LossOp {
    pub rows: u32,
    pub pixels: u32,
    pub batch: u32,
    pub likelihood: u32,
    pub out_off: u32,
    pub x_off: u32,
    pub grad_off: u32,
    pub recon_off: u32,
    pub scale: f32,
    pub inv_var: f32,
    pub log_norm: f32,
}

/// Record of `shaders/optim.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct OptimOp {
    pub batch: u32,
    pub rows: u32,
    pub recon_off: u32,
    pub kl_off: u32,
    pub metrics_off: u32,
    pub count: u32,
    pub lr: f32,
    pub beta: f32,
    pub check: u32,
}

/// The per-step record (binding 1), shared by every shader that reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct StepRecord {
    /// Adam's step count, 1-based.
    pub t: u32,
    /// The step component of eps's key.
    pub rng_step: u32,
    /// First entry of this step's batch in the index buffer.
    pub batch_start: u32,
}

/// One dispatch: which kernel, where its record is, and how many workgroups.
#[derive(Clone, Copy, Debug)]
pub struct Dispatch {
    pub kernel: Kernel,
    /// Byte offset of the record in the ops uniform buffer.
    pub record: u32,
    pub groups: (u32, u32, u32),
}

/// The buffers behind the shared layout's bindings, in binding order (see the module docs).
#[derive(Debug)]
pub struct Buffers {
    pub ops: wgpu::Buffer,
    pub steps: wgpu::Buffer,
    pub params: wgpu::Buffer,
    pub grads: wgpu::Buffer,
    pub acts: wgpu::Buffer,
    pub moments: wgpu::Buffer,
    pub data: wgpu::Buffer,
    pub indices: wgpu::Buffer,
    pub metrics: wgpu::Buffer,
}

/// Lays records out one per `UNIFORM_SLOT` bytes, as dynamic offsets require.
pub fn pack_slots<'a>(records: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut bytes = Vec::new();
    for r in records {
        let at = bytes.len();
        bytes.resize(at + UNIFORM_SLOT as usize, 0);
        bytes[at..at + r.len()].copy_from_slice(r);
    }
    bytes
}

/// Pipelines and their shared bind group layout.
#[derive(Debug)]
pub struct Kernels {
    pub layout: wgpu::BindGroupLayout,
    pipelines: Vec<(Kernel, wgpu::ComputePipeline)>,
}

fn entry(binding: u32, ty: wgpu::BufferBindingType, dynamic: bool, min: u64) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer { ty, has_dynamic_offset: dynamic, min_binding_size: NonZeroU64::new(min) },
        count: None,
    }
}

impl Kernels {
    pub fn new(device: &wgpu::Device) -> Kernels {
        use wgpu::BufferBindingType::{Storage, Uniform};
        let rw = Storage { read_only: false };
        let ro = Storage { read_only: true };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("vae"),
            entries: &[
                entry(0, Uniform, true, UNIFORM_SLOT),
                entry(1, Uniform, true, UNIFORM_SLOT),
                // At least one vec4: linear4.wgsl reads these as vec4 arrays.
                entry(2, rw, false, 16),
                entry(3, rw, false, 16),
                entry(4, rw, false, 16),
                entry(5, rw, false, 16),
                entry(6, ro, false, 4),
                entry(7, ro, false, 4),
                entry(8, rw, false, 4),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("vae"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let modules: Vec<(&str, wgpu::ShaderModule)> = SHADERS
            .iter()
            .map(|&(name, source)| {
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(name),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                });
                (name, module)
            })
            .collect();
        let pipelines = Kernel::ALL
            .iter()
            .map(|&kernel| {
                let (file, entry_point) = kernel.source();
                let module = &modules.iter().find(|(name, _)| *name == file).expect("shader listed in SHADERS").1;
                let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry_point),
                    layout: Some(&pipeline_layout),
                    module,
                    entry_point: Some(entry_point),
                    compilation_options: Default::default(),
                    cache: None,
                });
                (kernel, pipeline)
            })
            .collect();
        Kernels { layout, pipelines }
    }

    /// The one bind group every dispatch uses; the two uniforms are bound one slot wide and
    /// moved by dynamic offsets.
    pub fn bind_group(&self, device: &wgpu::Device, b: &Buffers) -> wgpu::BindGroup {
        let slot = |buffer| wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer, offset: 0, size: NonZeroU64::new(UNIFORM_SLOT) });
        let resources = [
            slot(&b.ops),
            slot(&b.steps),
            b.params.as_entire_binding(),
            b.grads.as_entire_binding(),
            b.acts.as_entire_binding(),
            b.moments.as_entire_binding(),
            b.data.as_entire_binding(),
            b.indices.as_entire_binding(),
            b.metrics.as_entire_binding(),
        ];
        let entries: Vec<_> = resources
            .into_iter()
            .enumerate()
            .map(|(binding, resource)| wgpu::BindGroupEntry { binding: binding as u32, resource })
            .collect();
        device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some("vae"), layout: &self.layout, entries: &entries })
    }

    fn pipeline(&self, kernel: Kernel) -> &wgpu::ComputePipeline {
        &self.pipelines.iter().find(|(k, _)| *k == kernel).expect("every kernel is built").1
    }

    /// Records `dispatches` into `pass` for the step whose record is at `step_offset`.
    pub fn record(&self, pass: &mut wgpu::ComputePass, bind_group: &wgpu::BindGroup, dispatches: &[Dispatch], step_offset: u32) {
        for d in dispatches {
            pass.set_pipeline(self.pipeline(d.kernel));
            pass.set_bind_group(0, bind_group, &[d.record, step_offset]);
            pass.dispatch_workgroups(d.groups.0, d.groups.1, d.groups.2);
        }
    }
}

/// Buffers for running one kernel in isolation (parity tests, micro-benchmarks).
#[derive(Clone, Debug, Default)]
pub struct Scratch {
    pub params: Vec<f32>,
    pub grads: Vec<f32>,
    pub acts: Vec<f32>,
    pub moments: Vec<f32>,
}

/// A storage buffer holding `contents`, padded to whole vec4s (at least one): linear4.wgsl and
/// Adam read these buffers as vec4 arrays.
pub fn storage_buffer(device: &wgpu::Device, label: &str, contents: &[u8]) -> wgpu::Buffer {
    use wgpu::util::DeviceExt;
    let mut padded = contents.to_vec();
    padded.resize(contents.len().next_multiple_of(16).max(16), 0);
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: &padded,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
    })
}

/// One kernel bound to buffers of its own, filled from a `Scratch`: for checking a kernel
/// alone against the oracle, and for timing it. Other bindings get small zeroed buffers; the
/// step record has t = 1 and the given `rng_step`.
pub struct SingleKernel {
    buffers: Buffers,
    bind_group: wgpu::BindGroup,
    dispatches: Vec<Dispatch>,
    lens: [usize; 4],
}

impl SingleKernel {
    /// `dispatches` run in order, all with `record`.
    pub fn new<T: Pod>(gpu: &crate::gpu::Gpu, kernels: &Kernels, dispatches: &[(Kernel, (u32, u32, u32))], record: T, scratch: &Scratch, rng_step: u32) -> SingleKernel {
        use wgpu::util::DeviceExt;
        let device = &gpu.device;
        let storage = |label, data: &[f32]| storage_buffer(device, label, bytemuck::cast_slice(data));
        let uniform = |label, record: &[u8]| {
            let contents = pack_slots([record]);
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents: &contents, usage: wgpu::BufferUsages::UNIFORM })
        };
        let step = StepRecord { t: 1, rng_step, batch_start: 0 };
        let buffers = Buffers {
            ops: uniform("ops", bytemuck::bytes_of(&record)),
            steps: uniform("steps", bytemuck::bytes_of(&step)),
            params: storage("params", &scratch.params),
            grads: storage("grads", &scratch.grads),
            acts: storage("acts", &scratch.acts),
            moments: storage("moments", &scratch.moments),
            data: storage("unused data", &[]),
            indices: storage("unused indices", &[]),
            metrics: storage("metrics", &[0.0; 32]),
        };
        let bind_group = kernels.bind_group(device, &buffers);
        let lens = [scratch.params.len(), scratch.grads.len(), scratch.acts.len(), scratch.moments.len()];
        let dispatches = dispatches.iter().map(|&(kernel, groups)| Dispatch { kernel, record: 0, groups }).collect();
        SingleKernel { buffers, bind_group, dispatches, lens }
    }

    /// Submits the dispatches `repeats` times in one compute pass.
    pub fn submit(&self, gpu: &crate::gpu::Gpu, kernels: &Kernels, repeats: u32) {
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for _ in 0..repeats {
                kernels.record(&mut pass, &self.bind_group, &self.dispatches, 0);
            }
        }
        gpu.queue.submit([encoder.finish()]);
    }

    /// The buffers as the kernel left them.
    pub async fn read(&self, gpu: &crate::gpu::Gpu) -> Result<Scratch, crate::gpu::GpuError> {
        let b = &self.buffers;
        Ok(Scratch {
            params: gpu.read_f32(&b.params, 0, self.lens[0]).await?,
            grads: gpu.read_f32(&b.grads, 0, self.lens[1]).await?,
            acts: gpu.read_f32(&b.acts, 0, self.lens[2]).await?,
            moments: gpu.read_f32(&b.moments, 0, self.lens[3]).await?,
        })
    }
}

/// Runs one dispatch of `kernel` with `record` on `scratch`'s contents and returns the buffers
/// as the kernel left them.
pub async fn run_single<T: Pod>(
    gpu: &crate::gpu::Gpu,
    kernels: &Kernels,
    kernel: Kernel,
    record: T,
    groups: (u32, u32, u32),
    scratch: &Scratch,
    rng_step: u32,
) -> Result<Scratch, crate::gpu::GpuError> {
    let single = SingleKernel::new(gpu, kernels, &[(kernel, groups)], record, scratch, rng_step);
    single.submit(gpu, kernels, 1);
    single.read(gpu).await
}
