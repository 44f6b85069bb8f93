// gather: out[b, 0, y, x] = (images[indices[b], y, x] / 255 - mean) / std.
//   images: u8 packed four to a u32 (little-endian)   indices: [N]   out: [N, 1, H, W]

struct Params {
    batch: u32,
    pixels: u32,
    mean: f32,
    std_dev: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> images: array<u32>;
@group(0) @binding(2) var<storage, read> indices: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= p.batch * p.pixels) {
        return;
    }
    let byte_index = indices[i / p.pixels] * p.pixels + i % p.pixels;
    let byte = (images[byte_index / 4u] >> (8u * (byte_index % 4u))) & 0xffu;
    out[i] = (f32(byte) / 255.0 - p.mean) / p.std_dev;
}
