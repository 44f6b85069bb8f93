// pool_s1: K x K pooling (K odd), stride 1, padding K/2 never counted: the output is the
// input's size, and output pixel (y, x) pools the in-image pixels of the window centred on
// input pixel (y, x). `radius` is K/2 (capped at the image's larger side).
//   x: [N, C, H, W] -> out: [N, C, H, W] (and, for max, argmax: [N, C, H, W])
// max: argmax holds the flat input index of the first maximum in row-major window order.
// avg: the window's sum over its pixel count (count_include_pad=False).
// The backwards are gathers over input pixels, each adding its windows' terms from 0 in
// row-major window order (the CPU twin's order).

struct Params {
    batch: u32,
    channels: u32,
    height: u32,
    width: u32,
    radius: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// The first row (or column) of the window centred on `centre`, or of the windows over pixel
// `centre`: the same range, the window being symmetric.
fn span_first(centre: u32) -> u32 {
    return select(0u, centre - p.radius, centre >= p.radius);
}

// The last row (or column) of that range, inside a side of `size`.
fn span_last(centre: u32, size: u32) -> u32 {
    return min(centre + p.radius, size - 1u);
}

fn total() -> u32 {
    return p.batch * p.channels * p.height * p.width;
}

// ---- max forward: one invocation per output value ------------------------------------------
//   x: [N, C, H, W] -> out, argmax: [N, C, H, W]
@group(0) @binding(1) var<storage, read> mf_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> mf_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> mf_argmax: array<u32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn max_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= total()) {
        return;
    }
    let x = i % p.width;
    let y = (i / p.width) % p.height;
    let base = i - (y * p.width + x);
    let x0 = span_first(x);
    let x1 = span_last(x, p.width);
    let y1 = span_last(y, p.height);
    var best = base + span_first(y) * p.width + x0;
    var best_value = mf_x[best];
    // Row-major window order; strict > keeps the first maximum.
    for (var row = span_first(y); row <= y1; row++) {
        for (var column = x0; column <= x1; column++) {
            let j = base + row * p.width + column;
            let value = mf_x[j];
            if (value > best_value) {
                best = j;
                best_value = value;
            }
        }
    }
    mf_out[i] = best_value;
    mf_argmax[i] = best;
}

// ---- max backward: one invocation per input value, a gather --------------------------------
//   argmax, grad_out: [N, C, H, W] -> grad_x: [N, C, H, W]
@group(0) @binding(4) var<storage, read> mb_argmax: array<u32>;
@group(0) @binding(5) var<storage, read> mb_grad_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> mb_grad_x: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn max_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let j = flat_index(gid, groups);
    if (j >= total()) {
        return;
    }
    let x = j % p.width;
    let y = (j / p.width) % p.height;
    let base = j - (y * p.width + x);
    let x0 = span_first(x);
    let x1 = span_last(x, p.width);
    let y1 = span_last(y, p.height);
    // The windows over pixel j, in row-major order: those whose argmax is j add their gradient.
    var grad = 0.0;
    for (var row = span_first(y); row <= y1; row++) {
        for (var column = x0; column <= x1; column++) {
            let w = base + row * p.width + column;
            if (mb_argmax[w] == j) {
                grad += mb_grad_out[w];
            }
        }
    }
    mb_grad_x[j] = grad;
}

// ---- avg forward: one invocation per output value ------------------------------------------
//   x: [N, C, H, W] -> out: [N, C, H, W]
@group(0) @binding(7) var<storage, read> af_x: array<f32>;
@group(0) @binding(8) var<storage, read_write> af_out: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn avg_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= total()) {
        return;
    }
    let x = i % p.width;
    let y = (i / p.width) % p.height;
    let base = i - (y * p.width + x);
    let x0 = span_first(x);
    let x1 = span_last(x, p.width);
    let y0 = span_first(y);
    let y1 = span_last(y, p.height);
    // Row-major window order, from 0.
    var sum = 0.0;
    for (var row = y0; row <= y1; row++) {
        for (var column = x0; column <= x1; column++) {
            sum += af_x[base + row * p.width + column];
        }
    }
    af_out[i] = sum / f32((y1 - y0 + 1u) * (x1 - x0 + 1u));
}

// ---- avg backward: one invocation per input value, a gather --------------------------------
//   grad_out: [N, C, H, W] -> grad_x: [N, C, H, W]
@group(0) @binding(9) var<storage, read> ab_grad_out: array<f32>;
@group(0) @binding(10) var<storage, read_write> ab_grad_x: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn avg_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let j = flat_index(gid, groups);
    if (j >= total()) {
        return;
    }
    let x = j % p.width;
    let y = (j / p.width) % p.height;
    let base = j - (y * p.width + x);
    let x0 = span_first(x);
    let x1 = span_last(x, p.width);
    let y1 = span_last(y, p.height);
    // The windows over pixel j, in row-major order, each adding grad_out / its pixel count.
    var grad = 0.0;
    for (var row = span_first(y); row <= y1; row++) {
        let rows = span_last(row, p.height) - span_first(row) + 1u;
        for (var column = x0; column <= x1; column++) {
            let columns = span_last(column, p.width) - span_first(column) + 1u;
            grad += ab_grad_out[base + row * p.width + column] / f32(rows * columns);
        }
    }
    ab_grad_x[j] = grad;
}
