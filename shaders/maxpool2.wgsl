// maxpool2: 2x2 max-pool, stride 2, floor on odd sizes.
//   x: [N, C, H, W] -> out, argmax: [N, C, H/2, W/2]
// argmax holds the flat input index of the first maximum in row-major window order.

struct Params {
    batch: u32,
    channels: u32,
    height: u32,
    width: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// ---- forward: one invocation per output element --------------------------------------------
@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> fwd_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> fwd_argmax: array<u32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    let oh = p.height / 2u;
    let ow = p.width / 2u;
    if (i >= p.batch * p.channels * oh * ow) {
        return;
    }
    let ox = i % ow;
    let oy = (i / ow) % oh;
    let plane = i / (ow * oh);
    let base = plane * p.height * p.width;
    let top_left = base + 2u * oy * p.width + 2u * ox;
    // Row-major window order; strict > keeps the first maximum.
    let offsets = array<u32, 3>(1u, p.width, p.width + 1u);
    var best = top_left;
    for (var k = 0u; k < 3u; k++) {
        let j = top_left + offsets[k];
        if (fwd_x[j] > fwd_x[best]) {
            best = j;
        }
    }
    fwd_out[i] = fwd_x[best];
    fwd_argmax[i] = best;
}

// ---- backward: one invocation per input element, a gather ----------------------------------
@group(0) @binding(4) var<storage, read> bwd_argmax: array<u32>;
@group(0) @binding(5) var<storage, read> bwd_grad_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> bwd_grad_x: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let j = flat_index(gid, groups);
    if (j >= p.batch * p.channels * p.height * p.width) {
        return;
    }
    let oh = p.height / 2u;
    let ow = p.width / 2u;
    let ix = j % p.width;
    let iy = (j / p.width) % p.height;
    let plane = j / (p.width * p.height);
    let oy = iy / 2u;
    let ox = ix / 2u;
    var grad = 0.0;
    if (oy < oh && ox < ow) {
        let window = (plane * oh + oy) * ow + ox;
        if (bwd_argmax[window] == j) {
            grad = bwd_grad_out[window];
        }
    }
    bwd_grad_x[j] = grad;
}
