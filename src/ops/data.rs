//! Batch assembly on the GPU: images gathered by index from the packed dataset.
//! Kernel: `shaders/data.wgsl`.

use bytemuck::{Pod, Zeroable};

/// Record of `shaders/data.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct GatherOp {
    pub rows: u32,
    pub pixels: u32,
    pub x_off: u32,
}


impl GatherOp {
    /// 64 pixels by one row per workgroup.
    pub fn groups(&self) -> (u32, u32, u32) {
        (self.pixels.div_ceil(64), self.rows, 1)
    }
}
