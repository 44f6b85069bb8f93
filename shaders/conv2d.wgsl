// conv2d: stride 1, "same" padding (kernel / 2), with bias.
//   x: [N, C, H, W]   weight: [O, C, K, K]   bias: [O]   out: [N, O, H, W]
// Each entry point declares its own buffers, with binding numbers unique in the file (see
// `Entry` in src/engine/backends/gpu/kernels.rs); the uniform at binding 0 is shared.

struct Params {
    batch: u32,
    in_channels: u32,
    out_channels: u32,
    height: u32,
    width: u32,
    kernel: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// ---- forward: one invocation per output element (n, o, y, x) --------------------------------
@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read> fwd_weight: array<f32>;
@group(0) @binding(3) var<storage, read> fwd_bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> fwd_out: array<f32>;

@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    let hw = p.height * p.width;
    if (i >= p.batch * p.out_channels * hw) {
        return;
    }
    let px = i32(i % p.width);
    let py = i32((i / p.width) % p.height);
    let o = (i / hw) % p.out_channels;
    let n = i / (hw * p.out_channels);
    let pad = i32(p.kernel / 2u);
    var acc = fwd_bias[o];
    for (var c = 0u; c < p.in_channels; c++) {
        let x_base = (n * p.in_channels + c) * hw;
        let w_base = (o * p.in_channels + c) * p.kernel * p.kernel;
        for (var ky = 0u; ky < p.kernel; ky++) {
            let iy = py + i32(ky) - pad;
            if (iy < 0 || iy >= i32(p.height)) {
                continue;
            }
            for (var kx = 0u; kx < p.kernel; kx++) {
                let ix = px + i32(kx) - pad;
                if (ix < 0 || ix >= i32(p.width)) {
                    continue;
                }
                acc += fwd_x[x_base + u32(iy) * p.width + u32(ix)] * fwd_weight[w_base + ky * p.kernel + kx];
            }
        }
    }
    fwd_out[i] = acc;
}

// ---- backward_input: one invocation per input element (n, c, iy, ix), a gather -------------
@group(0) @binding(5) var<storage, read> bin_weight: array<f32>;
@group(0) @binding(6) var<storage, read> bin_grad_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> bin_grad_x: array<f32>;

@compute @workgroup_size(64)
fn backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    let hw = p.height * p.width;
    if (i >= p.batch * p.in_channels * hw) {
        return;
    }
    let ix = i32(i % p.width);
    let iy = i32((i / p.width) % p.height);
    let c = (i / hw) % p.in_channels;
    let n = i / (hw * p.in_channels);
    let pad = i32(p.kernel / 2u);
    var acc = 0.0;
    // Kernel taps in reverse order: the CPU twin computes this as a forward pass with the
    // kernel flipped, and the same order gives the same rounding.
    for (var o = 0u; o < p.out_channels; o++) {
        let dy_base = (n * p.out_channels + o) * hw;
        let w_base = (o * p.in_channels + c) * p.kernel * p.kernel;
        for (var kyr = 0u; kyr < p.kernel; kyr++) {
            let ky = p.kernel - 1u - kyr;
            let y = iy - i32(ky) + pad;
            if (y < 0 || y >= i32(p.height)) {
                continue;
            }
            for (var kxr = 0u; kxr < p.kernel; kxr++) {
                let kx = p.kernel - 1u - kxr;
                let x = ix - i32(kx) + pad;
                if (x < 0 || x >= i32(p.width)) {
                    continue;
                }
                acc += bin_grad_out[dy_base + u32(y) * p.width + u32(x)] * bin_weight[w_base + ky * p.kernel + kx];
            }
        }
    }
    bin_grad_x[i] = acc;
}

// ---- weight_partials: per image, one invocation per weight (n, o, c, ky, kx) -----------------
//   partials: [N, O, C, K, K]; summed over N in order by reduce.wgsl (no float atomics).
//   The image's pixels are visited in row-major order, as in the CPU twin.
@group(0) @binding(8) var<storage, read> wp_x: array<f32>;
@group(0) @binding(9) var<storage, read> wp_grad_out: array<f32>;
@group(0) @binding(10) var<storage, read_write> wp_partials: array<f32>;

@compute @workgroup_size(64)
fn weight_partials(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    let k = p.kernel;
    let weight_len = p.out_channels * p.in_channels * k * k;
    if (i >= p.batch * weight_len) {
        return;
    }
    let kx = i % k;
    let ky = (i / k) % k;
    let c = (i / (k * k)) % p.in_channels;
    let o = (i / (k * k * p.in_channels)) % p.out_channels;
    let n = i / weight_len;
    let hw = p.height * p.width;
    let dy_base = (n * p.out_channels + o) * hw;
    let x_base = (n * p.in_channels + c) * hw;
    let pad = i32(k / 2u);
    var acc = 0.0;
    for (var y = 0u; y < p.height; y++) {
        let iy = i32(y) + i32(ky) - pad;
        if (iy < 0 || iy >= i32(p.height)) {
            continue;
        }
        for (var px = 0u; px < p.width; px++) {
            let ix = i32(px) + i32(kx) - pad;
            if (ix < 0 || ix >= i32(p.width)) {
                continue;
            }
            acc += wp_grad_out[dy_base + y * p.width + px] * wp_x[x_base + u32(iy) * p.width + u32(ix)];
        }
    }
    wp_partials[i] = acc;
}

// ---- bias_partials: per image, one invocation per (n, o) -------------------------------------
//   partials: [N, O]
@group(0) @binding(11) var<storage, read> bp_grad_out: array<f32>;
@group(0) @binding(12) var<storage, read_write> bp_partials: array<f32>;

@compute @workgroup_size(64)
fn bias_partials(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= p.batch * p.out_channels) {
        return;
    }
    let hw = p.height * p.width;
    var acc = 0.0;
    for (var j = 0u; j < hw; j++) {
        acc += bp_grad_out[i * hw + j];
    }
    bp_partials[i] = acc;
}
