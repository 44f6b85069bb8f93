// masked_concat: channel concatenation with a factor per slot.
//   part: [N, C, H, W]  <->  slot `slot` of out: [N, slots * C, H, W]
// One invocation per element of a part.

struct Params {
    batch: u32,
    channels: u32,
    pixels: u32,
    slots: u32,
    slot: u32,
    factor: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Flat index in the concatenation of element i of the part in slot `p.slot`.
fn concat_index(i: u32) -> u32 {
    let plane = p.channels * p.pixels;
    return ((i / plane) * p.slots + p.slot) * plane + i % plane;
}

// ---- write_slot: out[slot] = factor * part --------------------------------------------------
@group(0) @binding(1) var<storage, read> ws_part: array<f32>;
@group(0) @binding(2) var<storage, read_write> ws_out: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn write_slot(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= p.batch * p.channels * p.pixels) {
        return;
    }
    ws_out[concat_index(i)] = p.factor * ws_part[i];
}

// ---- read_slot: grad_part = factor * grad_out[slot] -----------------------------------------
@group(0) @binding(3) var<storage, read> rs_grad_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> rs_grad_part: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn read_slot(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= p.batch * p.channels * p.pixels) {
        return;
    }
    rs_grad_part[i] = p.factor * rs_grad_out[concat_index(i)];
}
