// Batch assembly on the GPU: the dataset lives on the device as packed bytes, and a batch is
// gathered by index, so no pixels cross from the CPU during training.
//   data     all images, 4 pixels per u32 (little-endian bytes), image after image
//   indices  which image each batch row takes: rows of batch s are indices[step.batch_start + r]
//   x        [rows, pixels] floats in [0, 1] (in acts)

struct Gather {
    rows: u32,
    pixels: u32,
    x_off: u32,
}

@group(0) @binding(0) var<uniform> op: Gather;
@group(0) @binding(4) var<storage, read_write> acts: array<f32>;
@group(0) @binding(6) var<storage, read> data: array<u32>;
@group(0) @binding(7) var<storage, read> indices: array<u32>;

// Grid: x over pixels, y over rows.
@compute @workgroup_size(64, 1)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = gid.x;
    let r = gid.y;
    if p >= op.pixels || r >= op.rows { return; }
    let image = indices[step.batch_start + r];
    let byte = image * op.pixels + p;
    let value = (data[byte / 4u] >> (8u * (byte % 4u))) & 0xffu;
    acts[op.x_off + r * op.pixels + p] = f32(value) / 255.0;
}
