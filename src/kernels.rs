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
use std::sync::OnceLock;

use bytemuck::{Pod, Zeroable};

/// What every shader starts with (the Step record, activations, the workgroup sum).
pub const COMMON: &str = include_str!("../shaders/common.wgsl");
/// The tiled matrix product that linear.wgsl and conv.wgsl read their operands into.
pub const GEMM: &str = include_str!("../shaders/gemm.wgsl");

/// The shader files of the op families: (file, source, whether it builds on gemm.wgsl).
pub const SHADERS: &[(&str, &str, bool)] = &[
    ("categorical.wgsl", include_str!("../shaders/categorical.wgsl"), false),
    ("conv.wgsl", include_str!("../shaders/conv.wgsl"), true),
    ("data.wgsl", include_str!("../shaders/data.wgsl"), false),
    ("elementwise.wgsl", include_str!("../shaders/elementwise.wgsl"), false),
    ("gaussian.wgsl", include_str!("../shaders/gaussian.wgsl"), false),
    ("latent.wgsl", include_str!("../shaders/latent.wgsl"), false),
    ("linear.wgsl", include_str!("../shaders/linear.wgsl"), true),
    ("loss.wgsl", include_str!("../shaders/loss.wgsl"), false),
    ("optim.wgsl", include_str!("../shaders/optim.wgsl"), false),
];

/// A shader file as it is compiled: common.wgsl, then gemm.wgsl if it builds on it, then the
/// file itself (plain concatenation, so line numbers in errors are offset by the prefix).
pub fn joined(file: &str) -> String {
    let &(_, source, gemm) = SHADERS.iter().find(|s| s.0 == file).unwrap_or_else(|| panic!("{file} is not in SHADERS"));
    [COMMON, if gemm { GEMM } else { "" }, source].concat()
}

/// Marks an absent tensor in an offset field (`NONE` in common.wgsl).
pub const NONE: u32 = u32::MAX;

/// Bytes between uniform records: WebGPU's largest allowed `minUniformBufferOffsetAlignment`.
pub const UNIFORM_SLOT: u64 = 256;

/// Declares the entry points once: the enum, `Kernel::ALL`, and each one's (file, entry point).
macro_rules! kernels {
    ($($kernel:ident => $file:literal, $entry:literal $(, $constant:literal = $value:literal)*;)*) => {
        /// Every entry point, and the shader file it lives in.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Kernel { $($kernel),* }

        impl Kernel {
            pub const ALL: &[Kernel] = &[$(Kernel::$kernel),*];

            /// (shader file, entry point).
            pub fn source(self) -> (&'static str, &'static str) {
                match self { $(Kernel::$kernel => ($file, $entry)),* }
            }

            /// The pipeline-overridable constants this pipeline sets in the software shape
            /// (gemm.wgsl's tile shape).
            fn software_constants(self) -> &'static [(&'static str, f64)] {
                match self { $(Kernel::$kernel => &[$(($constant, $value)),*]),* }
            }

            /// The entry point's name as the report prints it, e.g. "conv_down_tall".
            pub fn name(self) -> String {
                let mut name = String::new();
                for (i, c) in stringify_kernel(self).chars().enumerate() {
                    if c.is_uppercase() && i > 0 { name.push('_'); }
                    name.push(c.to_ascii_lowercase());
                }
                name
            }
        }

        fn stringify_kernel(kernel: Kernel) -> &'static str {
            match kernel { $(Kernel::$kernel => stringify!($kernel)),* }
        }
    };
}

/// How the products (gemm.wgsl) are shaped, chosen once per device in `Kernels::new`.
///
/// Software adapters (lavapipe, SwiftShader: a GPU emulated on the CPU) pay per load, so big
/// blocks per invocation (16 x 16 outputs, 256 accumulators) and the vec4 MLP kernels win
/// there. A GPU pays for registers: each wave's come out of a fixed file, and a 16 x 16 block
/// spills to scratch on every real GPU (AMD's compiler: 1 wave per SIMD on GFX9). GPUs get
/// 4 x 4 blocks in 32 x 32 tiles with 4 KB of workgroup memory per 64 invocations, and long
/// reductions over few tiles split in parts (`Records::push_tiled`); `make gpu-report` prints
/// what AMD's compiler makes of both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelShape {
    Software,
    Hardware,
}

/// The hardware shape's constants, the same for every pipeline built on gemm.wgsl.
const HARDWARE: &[(&str, f64)] =
    &[("BLOCK_ROWS", 4.0), ("BLOCK_COLS", 4.0), ("TILE_COLS", 32.0), ("TK", HARDWARE_TK as f64), ("SPLIT", 4.0), ("SPLIT_K", 1.0)];
/// The hardware shape's chunk of the reduction (gemm.wgsl's TK).
const HARDWARE_TK: u32 = 16;

impl KernelShape {
    pub const ALL: [KernelShape; 2] = [KernelShape::Software, KernelShape::Hardware];

    pub fn name(self) -> &'static str {
        match self {
            KernelShape::Software => "software",
            KernelShape::Hardware => "hardware",
        }
    }

    pub fn parse(name: &str) -> Option<KernelShape> {
        KernelShape::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The shape for an adapter: software for a CPU device, a fallback adapter, or one whose
    /// name says it emulates a GPU (llvmpipe, SwiftShader); hardware for every other.
    /// `description` is what a browser says of its adapter (wgpu's info is empty there).
    pub fn for_adapter(info: &wgpu::AdapterInfo, description: &str, fallback: bool) -> KernelShape {
        let names = format!("{} {} {}", info.name, info.driver, description).to_lowercase();
        let emulated = ["llvmpipe", "lavapipe", "swiftshader", "software"].iter().any(|n| names.contains(n));
        if fallback || emulated || info.device_type == wgpu::DeviceType::Cpu {
            KernelShape::Software
        } else {
            KernelShape::Hardware
        }
    }

    /// The shape `WEBVAE_KERNELS` forces (natively: tests and benchmarks), if it names one.
    pub fn forced() -> Result<Option<KernelShape>, String> {
        #[cfg(not(target_arch = "wasm32"))]
        if let Ok(name) = std::env::var("WEBVAE_KERNELS") {
            return KernelShape::parse(&name).map(Some).ok_or_else(|| format!("WEBVAE_KERNELS={name}: say software or hardware"));
        }
        Ok(None)
    }

    /// The kernels a step in this shape may dispatch: the hardware shape runs every product on
    /// gemm.wgsl's tiles, so it builds neither the vec4 MLP kernels nor the tall conv tiles.
    pub fn kernels(self) -> impl Iterator<Item = Kernel> {
        Kernel::ALL.iter().copied().filter(move |k| self == KernelShape::Software || !k.software_only())
    }
}

impl Kernel {
    /// Whether this kernel is a matrix product (what occupancy matters most for).
    pub fn is_product(self) -> bool {
        use Kernel::*;
        matches!(
            self,
            LinearForward | LinearBackwardInput | LinearBackwardWeight | LinearForward4 | LinearBackwardInput4 | LinearBackwardWeight4
                | ConvDown | ConvUp | ConvDownTall | ConvUpTall | ConvWeight | ConvDownDirect | ConvUpDirect | ConvWeightSplit
        )
    }

    /// Kernels only the software shape uses.
    fn software_only(self) -> bool {
        use Kernel::*;
        matches!(self, LinearForward4 | LinearBackwardInput4 | LinearBackwardWeight4 | Transpose4 | ConvDownTall | ConvUpTall)
    }

    /// Whether the kernel's file builds on gemm.wgsl (and so has its constants).
    fn uses_gemm(self) -> bool {
        SHADERS.iter().any(|&(name, _, gemm)| name == self.source().0 && gemm)
    }

    /// The pipeline-overridable constants this pipeline sets in `shape`; `row_by_row` adds
    /// gemm.wgsl's ROW_BY_ROW (lavapipe's way of copying chunks).
    pub fn constants(self, shape: KernelShape, row_by_row: bool) -> Vec<(&'static str, f64)> {
        if !self.uses_gemm() {
            return Vec::new();
        }
        let mut constants = match shape {
            KernelShape::Software => self.software_constants().to_vec(),
            KernelShape::Hardware => HARDWARE.to_vec(),
        };
        if row_by_row {
            constants.push(("ROW_BY_ROW", 1.0));
        }
        constants
    }

    /// The (rows, columns) of C a tiled pipeline computes per workgroup in `shape`: gemm.wgsl's
    /// TILE_ROWS and TILE_COLS, from the constants it sets.
    pub fn tile(self, shape: KernelShape) -> (u32, u32) {
        let constants = self.constants(shape, false);
        let constant = |name: &str, default: u32| constants.iter().find(|c| c.0 == name).map_or(default, |c| c.1 as u32);
        let cols = constant("TILE_COLS", 64);
        (64 * constant("BLOCK_ROWS", 16) * constant("BLOCK_COLS", 16) / cols, cols)
    }

    /// The side of split_product's block in `shape`: gemm.wgsl's SPLIT, from the constants
    /// conv_weight_split sets.
    pub fn split(shape: KernelShape) -> u32 {
        Kernel::ConvWeightSplit.constants(shape, false).iter().find(|c| c.0 == "SPLIT").map_or(8, |c| c.1 as u32)
    }
}

kernels! {
    Gather => "data.wgsl", "gather";
    LinearForward => "linear.wgsl", "linear_forward", "TILE_COLS" = 256.0;
    LinearBackwardInput => "linear.wgsl", "linear_backward_input", "TILE_COLS" = 256.0;
    LinearBackwardWeight => "linear.wgsl", "linear_backward_weight", "TILE_COLS" = 256.0;
    LinearForward4 => "linear.wgsl", "linear_forward4";
    LinearBackwardInput4 => "linear.wgsl", "linear_backward_input4";
    LinearBackwardWeight4 => "linear.wgsl", "linear_backward_weight4";
    Transpose4 => "linear.wgsl", "transpose4";
    ConvDown => "conv.wgsl", "conv_down";
    ConvUp => "conv.wgsl", "conv_up";
    ConvDownTall => "conv.wgsl", "conv_down", "TILE_COLS" = 32.0, "BLOCK_COLS" = 8.0;
    ConvUpTall => "conv.wgsl", "conv_up", "TILE_COLS" = 32.0, "BLOCK_COLS" = 8.0;
    ConvWeight => "conv.wgsl", "conv_weight", "TILE_COLS" = 256.0;
    ConvDownDirect => "conv.wgsl", "conv_down_direct";
    ConvUpDirect => "conv.wgsl", "conv_up_direct";
    ConvWeightSplit => "conv.wgsl", "conv_weight_split";
    ChannelSums => "conv.wgsl", "channel_sums";
    Reparameterize => "latent.wgsl", "reparameterize";
    LatentBackward => "latent.wgsl", "latent_backward";
    LatentLogRatio => "latent.wgsl", "latent_log_ratio";
    EpsBitsTest => "latent.wgsl", "eps_bits_test";
    GumbelSoftmax => "categorical.wgsl", "gumbel_softmax";
    CategoricalBackward => "categorical.wgsl", "categorical_backward";
    CategoricalLogRatio => "categorical.wgsl", "categorical_log_ratio";
    GaussianSample => "gaussian.wgsl", "gaussian_sample";
    GaussianReduce => "gaussian.wgsl", "gaussian_reduce";
    GaussianBackward => "gaussian.wgsl", "gaussian_backward";
    SiluForward => "elementwise.wgsl", "silu_forward";
    SiluBackward => "elementwise.wgsl", "silu_backward";
    Add => "elementwise.wgsl", "add";
    AddInto => "elementwise.wgsl", "add_into";
    ActivationBackward => "elementwise.wgsl", "activation_backward";

    Reconstruction => "loss.wgsl", "reconstruction";
    Accumulate => "optim.wgsl", "accumulate";
    ImportanceWeighted => "optim.wgsl", "importance_weighted";
    Adam => "optim.wgsl", "adam";
}

/// The per-step record (binding 1): `Step` in common.wgsl.
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

/// Records of one plan before they are placed in the ops buffer: each op module's
/// `record_*` functions push their dispatches here, in step order, choosing kernels and grids
/// for the device's kernel shape.
pub struct Records {
    pub shape: KernelShape,
    /// Where split products keep their parts in acts, and how many floats fit there: (offset,
    /// capacity). None: products are not split.
    pub parts_at: Option<(u32, u32)>,
    pub bytes: Vec<Vec<u8>>,
    pub dispatches: Vec<Dispatch>,
}

/// Workgroups a GPU wants from one product: about 4 waves of 64 on each of 40 compute units.
pub const GROUPS_WANTED: u32 = 160;

/// Floats of acts for split products' parts that any product's split fits in: a product is split
/// only while it has fewer than GROUPS_WANTED tiles of 32 x 32, into at most GROUPS_WANTED / tiles
/// + 1 parts, so its parts take less than twice GROUPS_WANTED tiles.
pub const PARTS_CAPACITY: u32 = 2 * GROUPS_WANTED * 32 * 32;

impl Records {
    pub fn new(shape: KernelShape) -> Records {
        Records { shape, parts_at: None, bytes: Vec::new(), dispatches: Vec::new() }
    }

    /// These records with room for split products' parts at the end of `scratch.acts` (for
    /// kernels run alone, in the hardware shape).
    pub fn with_parts_in(mut self, scratch: &mut Scratch) -> Records {
        if self.shape == KernelShape::Hardware {
            let at = scratch.acts.len().next_multiple_of(4);
            scratch.acts.resize(at + PARTS_CAPACITY as usize, 0.0);
            self.parts_at = Some((at as u32, PARTS_CAPACITY));
        }
        self
    }

    /// How many parts to split a tiled product's reduction into, given its grid's workgroups,
    /// its reduction length `k` and its `outputs` (M x N): in the hardware shape, enough for about
    /// GROUPS_WANTED workgroups where there are fewer, each part at least 4 chunks of the
    /// reduction, all parts fitting `parts_at`; otherwise 1 (not split).
    pub fn reduction_parts(&self, groups: u32, k: u32, outputs: u32) -> u32 {
        let Some((_, capacity)) = self.parts_at else { return 1 };
        if self.shape != KernelShape::Hardware || groups >= GROUPS_WANTED {
            return 1;
        }
        let chunks = k.div_ceil(HARDWARE_TK);
        GROUPS_WANTED.div_ceil(groups.max(1)).min(chunks / 4).min(capacity / outputs.max(1)).max(1)
    }

    /// Adds a tiled product on a grid of `groups`, split in parts where `reduction_parts` says
    /// (see gemm.wgsl; never a grid whose z is the op's own): `record(parts, part_offset,
    /// gather)` makes each dispatch's record. Returns the parts (1: not split).
    pub fn push_tiled<T: Pod>(&mut self, kernel: Kernel, groups: (u32, u32, u32), k: u32, outputs: u32, flops: f64, record: impl Fn(u32, u32, u32) -> T) -> u32 {
        let parts = if groups.2 == 1 { self.reduction_parts(groups.0 * groups.1, k, outputs) } else { 1 };
        if parts == 1 {
            self.push_product(kernel, record(1, 0, 0), groups, flops);
            return 1;
        }
        let at = self.parts_at.expect("parts only with room for them").0;
        self.push_product(kernel, record(parts, at, 0), (groups.0, groups.1, parts), flops);
        self.push(kernel, record(parts, at, 1), groups);
        parts
    }

    pub fn push<T: Pod>(&mut self, kernel: Kernel, record: T, groups: (u32, u32, u32)) {
        self.push_product(kernel, record, groups, 0.0);
    }

    /// `push` for a product whose useful floating-point operations are known (for the benchmark).
    pub fn push_product<T: Pod>(&mut self, kernel: Kernel, record: T, groups: (u32, u32, u32), flops: f64) {
        self.bytes.push(bytemuck::bytes_of(&record).to_vec());
        self.dispatches.push(Dispatch { kernel, record: 0, groups, flops });
    }
}

/// One dispatch: which kernel, where its record is, and how many workgroups.
#[derive(Clone, Copy, Debug)]
pub struct Dispatch {
    pub kernel: Kernel,
    /// Byte offset of the record in the ops uniform buffer.
    pub record: u32,
    pub groups: (u32, u32, u32),
    /// Multiply-adds x 2 of a product (0 for other kernels): what the benchmark divides by time.
    pub flops: f64,
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

/// Pipelines and their shared bind group layout. A pipeline is built when a dispatch first
/// needs it: a browser's GPU process compiles every pipeline created before it runs the next
/// submission (on SwiftShader about 0.7 s each), so a page that wants its first samples at once
/// must not wait for the training kernels (`prepare` builds them ahead, when wanted).
#[derive(Debug)]
pub struct Kernels {
    pub shape: KernelShape,
    pub layout: wgpu::BindGroupLayout,
    device: wgpu::Device,
    pipeline_layout: wgpu::PipelineLayout,
    /// gemm.wgsl copies its chunks row by row (lavapipe; see ROW_BY_ROW there).
    row_by_row: bool,
    /// SHADERS' modules, each made with its first pipeline.
    modules: Vec<OnceLock<wgpu::ShaderModule>>,
    /// Kernel::ALL's pipelines, by the kernel's index there.
    pipelines: Vec<OnceLock<wgpu::ComputePipeline>>,
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
    /// The layout for `shape`'s pipelines (`Gpu::shape`: the adapter's, unless forced); the
    /// pipelines themselves are built as dispatches need them.
    pub fn new(device: &wgpu::Device, shape: KernelShape) -> Kernels {
        use wgpu::BufferBindingType::{Storage, Uniform};
        let rw = Storage { read_only: false };
        let ro = Storage { read_only: true };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("vae"),
            entries: &[
                entry(0, Uniform, true, UNIFORM_SLOT),
                entry(1, Uniform, true, UNIFORM_SLOT),
                // At least one vec4: the vec4 linear kernels read these as vec4 arrays.
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
        // gemm.wgsl copies its chunks row by row on lavapipe (see ROW_BY_ROW there; measured).
        // Browsers are left out: GPUDevice.adapterInfo is recent, and they do not run lavapipe.
        let row_by_row = shape == KernelShape::Software && !cfg!(target_arch = "wasm32") && device.adapter_info().name.contains("llvmpipe");
        Kernels {
            shape,
            layout,
            device: device.clone(),
            pipeline_layout,
            row_by_row,
            modules: SHADERS.iter().map(|_| OnceLock::new()).collect(),
            pipelines: Kernel::ALL.iter().map(|_| OnceLock::new()).collect(),
        }
    }

    /// Builds the pipelines of `kernels` not built yet (e.g. a training step's, while the page
    /// waits for nothing).
    pub fn prepare(&self, kernels: impl IntoIterator<Item = Kernel>) {
        for kernel in kernels {
            self.pipeline(kernel);
        }
    }

    /// Every pipeline of the shape (tests: each must build).
    pub fn prepare_all(&self) {
        self.prepare(self.shape.kernels());
    }

    /// How many pipelines are built.
    pub fn built(&self) -> usize {
        self.pipelines.iter().filter(|p| p.get().is_some()).count()
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

    /// `kernel`'s pipeline, built now if no dispatch has needed it before.
    fn pipeline(&self, kernel: Kernel) -> &wgpu::ComputePipeline {
        self.pipelines[kernel as usize].get_or_init(|| {
            assert!(self.shape.kernels().any(|k| k == kernel), "{kernel:?} is not built in the {} shape", self.shape.name());
            let (file, entry_point) = kernel.source();
            let at = SHADERS.iter().position(|s| s.0 == file).expect("shader listed in SHADERS");
            let module = self.modules[at].get_or_init(|| {
                self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(file),
                    source: wgpu::ShaderSource::Wgsl(joined(file).into()),
                })
            });
            let constants = kernel.constants(self.shape, self.row_by_row);
            self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry_point),
                layout: Some(&self.pipeline_layout),
                module,
                entry_point: Some(entry_point),
                compilation_options: wgpu::PipelineCompilationOptions { constants: &constants, ..Default::default() },
                cache: None,
            })
        })
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
    /// Read back only: the metrics buffer (METRICS_READ values, zeroed before the run).
    pub metrics: Vec<f32>,
}

/// Values of the metrics buffer a `SingleKernel` holds and reads back.
const METRICS_READ: usize = 32;

/// A storage buffer holding `contents`, padded to whole vec4s (at least one): the vec4 linear kernels and
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
        let mut records = Records::new(kernels.shape);
        for &(kernel, groups) in dispatches {
            records.push(kernel, record, groups);
        }
        SingleKernel::with_records(gpu, kernels, &records, scratch, rng_step)
    }

    /// The dispatches of `records` run in order, each with its own record (e.g. all of one
    /// layer's backward pass, as a step adds them).
    pub fn with_records(gpu: &crate::gpu::Gpu, kernels: &Kernels, records: &Records, scratch: &Scratch, rng_step: u32) -> SingleKernel {
        use wgpu::util::DeviceExt;
        let device = &gpu.device;
        let storage = |label, data: &[f32]| storage_buffer(device, label, bytemuck::cast_slice(data));
        let uniform = |label, contents: Vec<u8>| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents: &contents, usage: wgpu::BufferUsages::UNIFORM })
        };
        let step = StepRecord { t: 1, rng_step, batch_start: 0 };
        let buffers = Buffers {
            ops: uniform("ops", pack_slots(records.bytes.iter().map(Vec::as_slice))),
            steps: uniform("steps", pack_slots([bytemuck::bytes_of(&step)])),
            params: storage("params", &scratch.params),
            grads: storage("grads", &scratch.grads),
            acts: storage("acts", &scratch.acts),
            moments: storage("moments", &scratch.moments),
            data: storage("unused data", &[]),
            indices: storage("unused indices", &[]),
            metrics: storage("metrics", &[0.0; METRICS_READ]),
        };
        let bind_group = kernels.bind_group(device, &buffers);
        let lens = [scratch.params.len(), scratch.grads.len(), scratch.acts.len(), scratch.moments.len()];
        let dispatches = records
            .dispatches
            .iter()
            .enumerate()
            .map(|(i, d)| Dispatch { record: (i as u64 * UNIFORM_SLOT) as u32, ..*d })
            .collect();
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
            metrics: gpu.read_f32(&b.metrics, 0, METRICS_READ).await?,
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
