//! The WGSL kernels as compute pipelines, built once per device, and the small uniform records
//! that tell each dispatch where its tensors live.
//!
//! Every kernel shares one bind group layout:
//!   0  uniform  the op's record (dims and offsets), selected per dispatch by a dynamic offset
//!   2  storage  params: every weight and bias in one flat f32 buffer
//!   4  storage  acts: every activation of the batch in one flat f32 buffer
//! so one bind group serves every dispatch, and a training step is a list of (pipeline, record).

use std::num::NonZeroU64;

use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

use crate::gpu::{Gpu, GpuError};
use crate::reference::Activation;

pub const LINEAR_WGSL: &str = include_str!("../shaders/linear.wgsl");

/// Every shader file, for validation and for building pipelines.
pub const SHADERS: &[(&str, &str)] = &[("linear.wgsl", LINEAR_WGSL)];

/// Bytes between uniform records: WebGPU's largest allowed `minUniformBufferOffsetAlignment`.
pub const UNIFORM_SLOT: u64 = 256;

/// Uniform record of `shaders/linear.wgsl` (field for field).
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
}

/// Pipelines and their shared bind group layout.
#[derive(Debug)]
pub struct Kernels {
    pub layout: wgpu::BindGroupLayout,
    linear_forward: wgpu::ComputePipeline,
}

fn storage_entry(binding: u32) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only: false },
            has_dynamic_offset: false,
            min_binding_size: NonZeroU64::new(4),
        },
        count: None,
    }
}

impl Kernels {
    pub fn new(device: &wgpu::Device) -> Kernels {
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("vae"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: NonZeroU64::new(UNIFORM_SLOT),
                    },
                    count: None,
                },
                storage_entry(2),
                storage_entry(4),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("vae"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let linear = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("linear.wgsl"),
            source: wgpu::ShaderSource::Wgsl(LINEAR_WGSL.into()),
        });
        let pipeline = |module: &wgpu::ShaderModule, entry: &str| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&pipeline_layout),
                module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        Kernels { linear_forward: pipeline(&linear, "linear_forward"), layout }
    }

    /// Records y = act(x W^T + b); `uniform_offset` is where `op` was written.
    pub fn linear_forward(&self, pass: &mut wgpu::ComputePass, bind_group: &wgpu::BindGroup, uniform_offset: u32, op: &LinearOp) {
        pass.set_pipeline(&self.linear_forward);
        pass.set_bind_group(0, bind_group, &[uniform_offset]);
        // Each invocation computes a 4x4 block; workgroups are 8x8 invocations.
        pass.dispatch_workgroups(op.cols.div_ceil(32), op.rows.div_ceil(32), 1);
    }
}

/// Runs one linear layer on the GPU in isolation and reads y back: the parity tests' and
/// micro-benchmarks' entry point. x: [rows, inner], w: [cols, inner], b: [cols].
pub async fn run_linear_forward(
    gpu: &Gpu,
    kernels: &Kernels,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    (rows, inner, cols): (usize, usize, usize),
    act: Activation,
) -> Result<Vec<f32>, GpuError> {
    assert_eq!((x.len(), w.len(), b.len()), (rows * inner, cols * inner, cols), "shape mismatch");
    let params: Vec<f32> = [w, b].concat();
    let mut acts = x.to_vec();
    acts.resize(rows * inner + rows * cols, 0.0);
    let op = LinearOp {
        rows: rows as u32,
        inner: inner as u32,
        cols: cols as u32,
        act: act.code(),
        x_off: 0,
        w_off: 0,
        b_off: w.len() as u32,
        y_off: x.len() as u32,
    };
    let device = &gpu.device;
    let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let params_buf = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("params"),
        contents: bytemuck::cast_slice(&params),
        usage: storage,
    });
    let acts_buf = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("acts"),
        contents: bytemuck::cast_slice(&acts),
        usage: storage,
    });
    let mut record = vec![0u8; UNIFORM_SLOT as usize];
    record[..std::mem::size_of::<LinearOp>()].copy_from_slice(bytemuck::bytes_of(&op));
    let uniform_buf = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("ops"),
        contents: &record,
        usage: wgpu::BufferUsages::UNIFORM,
    });
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("vae"),
        layout: &kernels.layout,
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &uniform_buf,
                    offset: 0,
                    size: NonZeroU64::new(UNIFORM_SLOT),
                }),
            },
            wgpu::BindGroupEntry { binding: 2, resource: params_buf.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 4, resource: acts_buf.as_entire_binding() },
        ],
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        kernels.linear_forward(&mut pass, &bind_group, 0, &op);
    }
    gpu.queue.submit([encoder.finish()]);
    gpu.read_f32(&acts_buf, x.len(), rows * cols).await
}
