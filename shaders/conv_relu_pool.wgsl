// conv_relu_pool: maxpool2(relu(conv2d(x, weight, bias))) as one op: a block with one active
// convolution (Sum), or a Concat block's 1x1 mix reading the one active slot.
//   x: [N, C, H, W]   weight: [O, CW, K, K], x being its channels first_channel .. + C
//     (with groups G > 1: [O, C / G, K, K], CW = C / G, first_channel 0)
//   bias: [O]   out, route: [N, O, H/2, W/2]
// The convolution is conv2d's: taps dilation apart, padding dilation * (K - 1) / 2, output o
// reading the C / G channels of group o / (O / G).
// route holds, per window, the flat index into the convolution's [N, O, H, W] output of the
// window's first maximum after ReLU, or NO_ROUTE where that maximum is not positive: the one
// place the window's gradient goes, if any (what maxpool2's argmax and relu's mask were).
// The convolution's terms are added in conv2d.wgsl's order: bias, then channel by channel,
// kernel row by kernel row.
// The two backward entries share the read-only route and grad_out bindings.

struct Params {
    batch: u32,
    in_channels: u32,
    out_channels: u32,
    height: u32,
    width: u32,
    kernel: u32,
    dilation: u32,
    groups: u32,
    weight_channels: u32,
    first_channel: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

const LANES: u32 = 8u;
const NO_ROUTE: u32 = 0xffffffffu;

// Index of weight (o, x's channel i of o's group, tap) in [O, CW, K, K].
fn weight_at(o: u32, i: u32, tap: u32) -> u32 {
    return (o * p.weight_channels + p.first_channel + i) * p.kernel * p.kernel + tap;
}

// ---- forward: one invocation per window (n, oy, ox) and block of 8 output channels ---------
@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read> fwd_weight: array<f32>;
@group(0) @binding(3) var<storage, read> fwd_bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> fwd_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> fwd_route: array<u32>;

// The convolution's sums: shaders/include/conv_at.wgsl's, reading x's channels of the weight.
fn forward_weight(o: u32, i: u32, tap: u32) -> f32 {
    return fwd_weight[weight_at(o, i, tap)];
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    let oh = p.height / 2u;
    let ow = p.width / 2u;
    let windows = oh * ow;
    let blocks = (p.out_channels + LANES - 1u) / LANES;
    if (i >= p.batch * blocks * windows) {
        return;
    }
    let window = i % windows;
    let oy = window / ow;
    let ox = window % ow;
    let first = ((i / windows) % blocks) * LANES;
    let n = i / (windows * blocks);
    // The window's pixels in maxpool2's row-major order; strict > keeps the first maximum.
    var best: array<f32, 8>;
    var winner: array<u32, 8>;
    for (var k = 0u; k < 4u; k++) {
        let py = 2u * oy + k / 2u;
        let px = 2u * ox + k % 2u;
        let z = conv_at(n, first, i32(py), i32(px));
        for (var lane = 0u; lane < LANES; lane++) {
            let activated = max(z[lane], 0.0);
            if (k == 0u || activated > best[lane]) {
                best[lane] = activated;
                winner[lane] = py * p.width + px;
            }
        }
    }
    for (var lane = 0u; lane < LANES; lane++) {
        let o = first + lane;
        if (o < p.out_channels) {
            let plane = n * p.out_channels + o;
            fwd_out[plane * windows + window] = best[lane];
            let routed = plane * p.height * p.width + winner[lane];
            fwd_route[plane * windows + window] = select(NO_ROUTE, routed, best[lane] > 0.0);
        }
    }
}

// ---- the convolution's output gradient, recomputed where it is read ------------------------
@group(0) @binding(6) var<storage, read> bwd_route: array<u32>;
@group(0) @binding(7) var<storage, read> bwd_grad_out: array<f32>;

// d loss / d conv output at (n, o, y, x): its window's gradient if it is the window's route,
// else 0 (not the maximum, not positive, or in no window: an odd last row or column).
fn routed_grad(n: u32, o: u32, y: u32, x: u32) -> f32 {
    let oh = p.height / 2u;
    let ow = p.width / 2u;
    if (y / 2u >= oh || x / 2u >= ow) {
        return 0.0;
    }
    let plane = n * p.out_channels + o;
    let window = plane * oh * ow + (y / 2u) * ow + x / 2u;
    let here = plane * p.height * p.width + y * p.width + x;
    return select(0.0, bwd_grad_out[window], bwd_route[window] == here);
}

// ---- backward_input: one invocation per input pixel (n, iy, ix) and block of 8 channels -----
// shaders/include/grad_input_at.wgsl's sums over the routed gradient (4 in 5 or more of its
// terms zero, and skipped).
@group(0) @binding(8) var<storage, read> bin_weight: array<f32>;
@group(0) @binding(9) var<storage, read_write> bin_grad_x: array<f32>;

fn output_grad(n: u32, o: u32, y: u32, x: u32) -> f32 {
    return routed_grad(n, o, y, x);
}

fn input_weight(o: u32, i: u32, tap: u32) -> f32 {
    return bin_weight[weight_at(o, i, tap)];
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
//   grad_weight: [O, CW, K, K] (zero outside x's channels; CW = C / G with groups)
//   grad_bias: [O]
@group(0) @binding(10) var<storage, read> pg_x: array<f32>;
@group(0) @binding(11) var<storage, read_write> pg_grad_weight: array<f32>;
@group(0) @binding(12) var<storage, read_write> pg_grad_bias: array<f32>;

fn weight_channels() -> u32 {
    return p.weight_channels;
}

// x is the weight's channels first_channel .. first_channel + in_channels (with groups, all
// of the weight's C / G).
fn reads_input(wc: u32) -> bool {
    return wc >= p.first_channel && wc < p.first_channel + p.in_channels / p.groups;
}

// One image's partial sums of the 8 weights (first + lane, weight channel wc, ky, kx), wc one
// of x's (of each output's group): x at the tap's pixel times the routed gradient, pixels in
// row-major order. The branch is uniform: a plain convolution reads one plane of x for all 8
// lanes.
fn weight_partial(n: u32, first: u32, wc: u32, ky: u32, kx: u32) -> array<f32, 8> {
    let i = wc - p.first_channel;
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
                acc[lane] += routed_grad(n, o, y, px) * value;
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
                acc[lane] += routed_grad(n, o, y, px) * pg_x[x_planes[lane] + at];
            }
        }
    }
    return acc;
}

// One image's partial sums of the 8 biases first + lane.
fn bias_partial(n: u32, first: u32) -> array<f32, 8> {
    var acc: array<f32, 8>;
    for (var lane = 0u; lane < LANES; lane++) {
        let o = min(first + lane, p.out_channels - 1u);
        for (var y = 0u; y < p.height; y++) {
            for (var x = 0u; x < p.width; x++) {
                acc[lane] += routed_grad(n, o, y, x);
            }
        }
    }
    return acc;
}
