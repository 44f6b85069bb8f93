// conv2d: stride 1, "same" padding (dilation * (kernel - 1) / 2), with bias, taps dilation
// apart, in groups (output o reads the C / G input channels of group o / (O / G)).
//   x: [N, C, H, W]   weight: [O, C / G, K, K]   bias: [O]   out: [N, O, H, W]
// Each entry point declares its own buffers, with binding numbers unique in the file (see
// `Entry` in src/engine/backends/gpu/kernels.rs); the uniform at binding 0 is shared.

struct Params {
    batch: u32,
    in_channels: u32,
    out_channels: u32,
    height: u32,
    width: u32,
    kernel: u32,
    dilation: u32,
    groups: u32,
    // The weight's input channels, C / G: a uniform, so no weight index divides by G.
    weight_channels: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// ---- forward: one invocation per pixel (n, y, x) and block of 8 output channels -------------
// The sums are shaders/include/conv_at.wgsl's.
const LANES: u32 = 8u;

@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read> fwd_weight: array<f32>;
@group(0) @binding(3) var<storage, read> fwd_bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> fwd_out: array<f32>;

// The weight of output o, its group's input channel i, tap.
fn forward_weight(o: u32, i: u32, tap: u32) -> f32 {
    return fwd_weight[(o * p.weight_channels + i) * p.kernel * p.kernel + tap];
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    let hw = p.height * p.width;
    let blocks = (p.out_channels + LANES - 1u) / LANES;
    if (i >= p.batch * blocks * hw) {
        return;
    }
    let pixel = i % hw;
    let px = i32(pixel % p.width);
    let py = i32(pixel / p.width);
    let first = ((i / hw) % blocks) * LANES;
    let n = i / (hw * blocks);
    let acc = conv_at(n, first, py, px);
    for (var lane = 0u; lane < LANES; lane++) {
        if (first + lane < p.out_channels) {
            fwd_out[(n * p.out_channels + first + lane) * hw + pixel] = acc[lane];
        }
    }
}

// ---- backward_input: one invocation per input pixel (n, iy, ix) and block of 8 channels -----
// The sums are shaders/include/grad_input_at.wgsl's.
@group(0) @binding(5) var<storage, read> bin_weight: array<f32>;
@group(0) @binding(6) var<storage, read> bin_grad_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> bin_grad_x: array<f32>;

fn output_grad(n: u32, o: u32, y: u32, x: u32) -> f32 {
    return bin_grad_out[((n * p.out_channels + o) * p.height + y) * p.width + x];
}

fn input_weight(o: u32, i: u32, tap: u32) -> f32 {
    return bin_weight[(o * p.weight_channels + i) * p.kernel * p.kernel + tap];
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    let hw = p.height * p.width;
    let blocks = (p.in_channels + LANES - 1u) / LANES;
    if (i >= p.batch * blocks * hw) {
        return;
    }
    let pixel = i % hw;
    let ix = i32(pixel % p.width);
    let iy = i32(pixel / p.width);
    let first = ((i / hw) % blocks) * LANES;
    let n = i / (hw * blocks);
    let acc = grad_input_at(n, first, iy, ix);
    for (var lane = 0u; lane < LANES; lane++) {
        if (first + lane < p.in_channels) {
            bin_grad_x[(n * p.in_channels + first + lane) * hw + pixel] = acc[lane];
        }
    }
}

// ---- param_grads (shaders/include/param_grads.wgsl): per image, its partial sums ----------
//   grad_weight: [O, C / G, K, K]   grad_bias: [O]
@group(0) @binding(8) var<storage, read> pg_x: array<f32>;
@group(0) @binding(9) var<storage, read> pg_grad_out: array<f32>;
@group(0) @binding(10) var<storage, read_write> pg_grad_weight: array<f32>;
@group(0) @binding(11) var<storage, read_write> pg_grad_bias: array<f32>;

fn weight_channels() -> u32 {
    return p.weight_channels;
}

fn reads_input(i: u32) -> bool {
    return true;
}

// One image's partial sums of the 8 weights (first + lane, i, ky, kx), i a channel of each
// output's group: x at the tap's pixel times the output gradient, pixels in row-major order.
// The branch is uniform: a plain convolution reads one plane of x for all 8 lanes.
fn weight_partial(n: u32, first: u32, i: u32, ky: u32, kx: u32) -> array<f32, 8> {
    let hw = p.height * p.width;
    if (p.groups == 1u) {
        return weight_partial_dense(n, first, (n * p.in_channels + i) * hw, ky, kx);
    }
    // Each lane's group's channel i, found once, not per pixel.
    let in_per_group = p.in_channels / p.groups;
    let out_per_group = p.out_channels / p.groups;
    var x_planes: array<u32, 8>;
    for (var lane = 0u; lane < LANES; lane++) {
        let o = min(first + lane, p.out_channels - 1u);
        x_planes[lane] = (n * p.in_channels + (o / out_per_group) * in_per_group + i) * hw;
    }
    return weight_partial_grouped(n, first, x_planes, ky, kx);
}

// One group: each value of x's plane x_base is read once for the 8 lanes.
fn weight_partial_dense(n: u32, first: u32, x_base: u32, ky: u32, kx: u32) -> array<f32, 8> {
    let hw = p.height * p.width;
    let pad = i32(p.dilation * (p.kernel - 1u) / 2u);
    var acc: array<f32, 8>;
    for (var y = 0u; y < p.height; y++) {
        let iy = i32(y) + i32(ky * p.dilation) - pad;
        if (iy < 0 || iy >= i32(p.height)) {
            continue;
        }
        for (var px = 0u; px < p.width; px++) {
            let ix = i32(px) + i32(kx * p.dilation) - pad;
            if (ix < 0 || ix >= i32(p.width)) {
                continue;
            }
            let value = pg_x[x_base + u32(iy) * p.width + u32(ix)];
            for (var lane = 0u; lane < LANES; lane++) {
                let o = min(first + lane, p.out_channels - 1u);
                acc[lane] += pg_grad_out[(n * p.out_channels + o) * hw + y * p.width + px] * value;
            }
        }
    }
    return acc;
}

// Groups: lane reads x's plane x_planes[lane].
fn weight_partial_grouped(
    n: u32,
    first: u32,
    x_planes: array<u32, 8>,
    ky: u32,
    kx: u32,
) -> array<f32, 8> {
    let hw = p.height * p.width;
    let pad = i32(p.dilation * (p.kernel - 1u) / 2u);
    var acc: array<f32, 8>;
    for (var y = 0u; y < p.height; y++) {
        let iy = i32(y) + i32(ky * p.dilation) - pad;
        if (iy < 0 || iy >= i32(p.height)) {
            continue;
        }
        for (var px = 0u; px < p.width; px++) {
            let ix = i32(px) + i32(kx * p.dilation) - pad;
            if (ix < 0 || ix >= i32(p.width)) {
                continue;
            }
            let at = u32(iy) * p.width + u32(ix);
            for (var lane = 0u; lane < LANES; lane++) {
                let o = min(first + lane, p.out_channels - 1u);
                let x = pg_x[x_planes[lane] + at];
                acc[lane] += pg_grad_out[(n * p.out_channels + o) * hw + y * p.width + px] * x;
            }
        }
    }
    return acc;
}

// One image's partial sums of the 8 biases first + lane: its output gradients' plane sums.
fn bias_partial(n: u32, first: u32) -> array<f32, 8> {
    let hw = p.height * p.width;
    var acc: array<f32, 8>;
    for (var lane = 0u; lane < LANES; lane++) {
        let o = min(first + lane, p.out_channels - 1u);
        for (var j = 0u; j < hw; j++) {
            acc[lane] += pg_grad_out[(n * p.out_channels + o) * hw + j];
        }
    }
    return acc;
}
